//! The functions psql's meta-commands (and pgjdbc's metadata calls) call
//! beyond catalog/functions.rs: sizes (`\dt+`), visibility
//! on the search path (`\df`, `\dT`, `\do`), and the signatures of
//! sockql's own functions (`\df`). Descriptions (`col_description`,
//! `obj_description`) are rewritten into pg_description lookups by
//! `psql_rewrite.rs`; pg_description and pg_proc are filled by
//! `pg_overlay.rs`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_int32_array, as_int64_array};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

/// A function of sockql's own, as pg_proc lists it (psql's `\df`).
#[derive(Debug)]
pub struct OwnFunction {
    pub name: &'static str,
    /// `pg_get_function_arguments`, as PostgreSQL prints a signature.
    pub arguments: &'static str,
    /// `pg_get_function_result`.
    pub result: &'static str,
    /// A table function (set-returning); else scalar.
    pub table: bool,
    /// proargtypes: the argument types' OIDs, space-separated.
    pub arg_types: &'static str,
    pub nargs: i16,
    /// provariadic: the variadic element type's OID, or 0.
    pub variadic: i32,
    pub rettype: i32,
    /// provolatile: i, s or v.
    pub volatility: &'static str,
    pub about: &'static str,
}

/// sockql's functions a PostgreSQL client can call. `read_pcap` is left
/// out: the server refuses it (it reads files on the server's host).
pub const OWN_FUNCTIONS: &[OwnFunction] = &[
    OwnFunction {
        name: crate::tables::packets::capture_seconds::NAME,
        arguments: "",
        result: "double precision",
        table: false,
        arg_types: "",
        nargs: 0,
        variadic: 0,
        rettype: 701, // float8
        volatility: "i",
        about: "Seconds a live capture of the packets table runs (--capture-for); null under --follow",
    },
    OwnFunction {
        name: "report",
        arguments: "name text, VARIADIC params text[]",
        result: "SETOF record",
        table: true,
        arg_types: "25 1009", // text, text[]
        nargs: 2,
        variadic: 25,
        rettype: 2249, // record
        volatility: "v",
        about: "A saved report as a table: report('name', 'param=value', ...); report() lists the saved reports",
    },
];

/// The OID of `OWN_FUNCTIONS[0]`; the others follow. Far above the OIDs
/// pg_class hands out (from 16384, one per schema and table) and those of
/// PostgreSQL's own catalog rows (below 16384).
pub const FUNCTION_OID_BASE: i32 = 0x4000_0000;

/// The function with this OID, if it is one of sockql's.
fn own_function(oid: i32) -> Option<&'static OwnFunction> {
    let index = usize::try_from(oid.checked_sub(FUNCTION_OID_BASE)?).ok()?;
    OWN_FUNCTIONS.get(index)
}

/// sockql's functions that `ctx` has, each with its OID.
pub fn registered(ctx: &SessionContext) -> Vec<(i32, &'static OwnFunction)> {
    let state = ctx.state();
    (FUNCTION_OID_BASE..)
        .zip(OWN_FUNCTIONS)
        .filter(|(_, f)| {
            if f.table {
                state.table_functions().contains_key(f.name)
            } else {
                state.scalar_functions().contains_key(f.name)
            }
        })
        .collect()
}

/// PostgreSQL's pg_size_pretty (src/backend/utils/adt/dbsize.c, 15):
/// bytes below 10 kB, then kB, MB, GB, TB and PB, each below 20 x 1024 - 1
/// after rounding half away from zero.
pub fn size_pretty(bytes: i64) -> String {
    // (name, limit, rounds, bits of the unit)
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    let mut size = bytes;
    for (i, (name, limit, rounds, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1);
        if next.is_none() || size.unsigned_abs() < *limit as u64 {
            return format!("{} {name}", if *rounds { half_rounded(size) } else { size });
        }
        if let Some((_, _, next_rounds, next_bits)) = next {
            // One bit less when the next unit rounds (it keeps a bit to
            // round with), one more when this one did.
            size /= 1i64 << (next_bits - bits - u32::from(*next_rounds) + u32::from(*rounds));
        }
    }
    format!("{size} bytes")
}

/// One shim: a name, how many arguments it takes, what it returns, and how.
struct Shim {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: fn(&[ArrayRef]) -> Result<ArrayRef>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

// Shims are told apart by name (a function pointer does not compare well).
impl PartialEq for Shim {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Shim {}
impl Hash for Shim {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for Shim {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.body)(&arrays)?;
        Ok(if scalar && out.len() == 1 {
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

pub(crate) fn shim(
    name: &'static str,
    args: &[usize],
    returns: DataType,
    body: fn(&[ArrayRef]) -> Result<ArrayRef>,
) -> ScalarUDF {
    let signature = match args {
        [n] => Signature::any(*n, Volatility::Stable),
        many => Signature::one_of(many.iter().map(|n| TypeSignature::Any(*n)).collect(), Volatility::Stable),
    };
    ScalarUDF::new_from_impl(Shim { name, signature, returns, body })
}

/// The first argument as OIDs (int4), nulls kept.
fn oids(args: &[ArrayRef]) -> Result<Vec<Option<i32>>> {
    let Some(first) = args.first() else { return Ok(Vec::new()) };
    let as_int = cast(first, &DataType::Int32)?;
    Ok(as_int32_array(&as_int)?.iter().collect())
}

/// True for every non-null OID: every object is on the search path
/// (public, then pg_catalog), and no two share a name and signature.
fn visible(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(oids(args)?.into_iter().map(|o| o.map(|_| true)).collect::<BooleanArray>()))
}

/// 0 for every non-null relation: sockql's tables are read from the
/// kernel when scanned and keep nothing on disk.
pub(crate) fn no_storage(args: &[ArrayRef]) -> Result<ArrayRef> {
    let rows = args.first().map_or(1, |a| a.len());
    let nulls = args.first().map(|a| a.logical_nulls());
    Ok(Arc::new(
        (0..rows)
            .map(|i| {
                if nulls.as_ref().is_some_and(|n| n.as_ref().is_some_and(|n| n.is_null(i))) {
                    None
                } else {
                    Some(0i64)
                }
            })
            .collect::<Int64Array>(),
    ))
}

fn pretty(args: &[ArrayRef]) -> Result<ArrayRef> {
    let Some(first) = args.first() else { return Ok(Arc::new(StringArray::from(Vec::<Option<String>>::new()))) };
    let bytes = cast(first, &DataType::Int64)?;
    Ok(Arc::new(as_int64_array(&bytes)?.iter().map(|b| b.map(size_pretty)).collect::<StringArray>()))
}

/// A text of sockql's functions by OID; null for any other function (its
/// signature is PostgreSQL's, which pg_proc describes by type OIDs).
fn of_own(args: &[ArrayRef], text: fn(&OwnFunction) -> &'static str) -> Result<ArrayRef> {
    Ok(Arc::new(oids(args)?.into_iter().map(|o| o.and_then(own_function).map(text)).collect::<StringArray>()))
}

fn function_result(args: &[ArrayRef]) -> Result<ArrayRef> {
    of_own(args, |f| f.result)
}

fn function_arguments(args: &[ArrayRef]) -> Result<ArrayRef> {
    of_own(args, |f| f.arguments)
}

/// The `pg_*_is_visible` family: psql filters every list with one.
const VISIBILITY: &[&str] = &[
    "pg_function_is_visible",
    "pg_type_is_visible",
    "pg_operator_is_visible",
    "pg_opclass_is_visible",
    "pg_opfamily_is_visible",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_statistics_obj_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_template_is_visible",
    "pg_ts_config_is_visible",
];

/// Register the functions psql calls, and pg_catalog's own rows for
/// sockql (descriptions, functions, the role), on a client's session.
pub fn install(ctx: &SessionContext) -> anyhow::Result<()> {
    for name in VISIBILITY {
        ctx.register_udf(shim(name, &[1], DataType::Boolean, visible));
    }
    for name in ["pg_table_size", "pg_indexes_size", "pg_database_size"] {
        ctx.register_udf(shim(name, &[1], DataType::Int64, no_storage));
    }
    ctx.register_udf(shim("pg_size_pretty", &[1], DataType::Utf8, pretty));
    ctx.register_udf(shim("pg_get_function_result", &[1], DataType::Utf8, function_result));
    ctx.register_udf(shim("pg_get_function_arguments", &[1], DataType::Utf8, function_arguments));
    ctx.register_udf(shim("pg_get_function_identity_arguments", &[1], DataType::Utf8, function_arguments));
    super::pg_overlay::install(ctx, registered(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_postgresql_15_prints_them() {
        // SELECT pg_size_pretty(n::bigint) on PostgreSQL 15.
        for (bytes, pg) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (-10240, "-10 kB"),
            (1_000_000, "977 kB"),
            (20_970_496, "20 MB"),
            (1_000_000_000, "954 MB"),
            (1_099_511_627_776, "1024 GB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(size_pretty(bytes), pg, "{bytes}");
        }
    }

    #[test]
    fn own_functions_are_found_by_oid_and_others_are_not() {
        assert_eq!(own_function(FUNCTION_OID_BASE).map(|f| f.name), Some("capture_seconds"));
        assert_eq!(own_function(FUNCTION_OID_BASE + 1).map(|f| f.name), Some("report"));
        assert!(own_function(FUNCTION_OID_BASE + 2).is_none());
        assert!(own_function(2288).is_none());
        assert!(own_function(i32::MIN).is_none());
        let oids: ArrayRef =
            Arc::new(datafusion::arrow::array::Int32Array::from(vec![Some(FUNCTION_OID_BASE + 1), None, Some(7)]));
        let results = function_result(&[oids]).unwrap();
        let results = results.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(results.iter().collect::<Vec<_>>(), vec![Some("SETOF record"), None, None]);
    }
}
