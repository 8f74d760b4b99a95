//! What PostgreSQL's catalog says of each type sockql sends: the name
//! format_type() prints, the pg_type name (information_schema's udt_name),
//! information_schema's data_type, and the storage facts pg_attribute and
//! RowDescription carry. The type itself is chosen in one place,
//! [`super::pg_encode::column_type`]; everything that describes a column
//! (RowDescription, information_schema.columns, pg_attribute, format_type,
//! `::regtype::text`) describes it from here, so they cannot disagree.

use pgwire::api::Type;

/// The field metadata naming the PostgreSQL type of an oid column
/// (`oid`, `regclass`, `regtype`, `regnamespace`): int4 in Arrow, sent
/// as that type (pg_encode.rs), as PostgreSQL's catalog declares it.
pub const OID_KIND_KEY: &str = "pg.oid_alias";

/// The PostgreSQL type an oid column is sent as.
pub fn oid_type(kind: &str) -> Option<Type> {
    Some(match kind {
        "oid" => Type::OID,
        "regclass" => Type::REGCLASS,
        "regtype" => Type::REGTYPE,
        "regnamespace" => Type::REGNAMESPACE,
        "regproc" => Type::REGPROC,
        _ => return None,
    })
}

/// The facts of one scalar type, as PostgreSQL's pg_type holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// format_type(oid, NULL): `bigint`, `timestamp with time zone`.
    pub sql_name: &'static str,
    /// pg_type.typname: `int8`, `timestamptz`.
    pub typname: &'static str,
    /// pg_type.typlen: bytes, or -1 for a variable-length type.
    pub len: i16,
    pub byval: bool,
    /// pg_type.typalign: c, s, i or d.
    pub align: char,
    /// pg_type.typstorage: p (plain), m (main) or x (extended).
    pub storage: char,
}

const fn facts(
    sql_name: &'static str,
    typname: &'static str,
    len: i16,
    byval: bool,
    align: char,
    storage: char,
) -> Facts {
    Facts { sql_name, typname, len, byval, align, storage }
}

/// The scalar types PostgreSQL spells differently in format_type than in
/// pg_type, and every type the encoder sends (see pg_encode.rs).
fn scalar(oid: u32) -> Option<Facts> {
    Some(match oid {
        16 => facts("boolean", "bool", 1, true, 'c', 'p'),
        17 => facts("bytea", "bytea", -1, false, 'i', 'x'),
        18 => facts("\"char\"", "char", 1, true, 'c', 'p'),
        19 => facts("name", "name", 64, false, 'c', 'p'),
        20 => facts("bigint", "int8", 8, true, 'd', 'p'),
        21 => facts("smallint", "int2", 2, true, 's', 'p'),
        23 => facts("integer", "int4", 4, true, 'i', 'p'),
        24 => facts("regproc", "regproc", 4, true, 'i', 'p'),
        25 => facts("text", "text", -1, false, 'i', 'x'),
        26 => facts("oid", "oid", 4, true, 'i', 'p'),
        114 => facts("json", "json", -1, false, 'i', 'x'),
        700 => facts("real", "float4", 4, true, 'i', 'p'),
        701 => facts("double precision", "float8", 8, true, 'd', 'p'),
        1042 => facts("character", "bpchar", -1, false, 'i', 'x'),
        1043 => facts("character varying", "varchar", -1, false, 'i', 'x'),
        1082 => facts("date", "date", 4, true, 'i', 'p'),
        1083 => facts("time without time zone", "time", 8, true, 'd', 'p'),
        1114 => facts("timestamp without time zone", "timestamp", 8, true, 'd', 'p'),
        1184 => facts("timestamp with time zone", "timestamptz", 8, true, 'd', 'p'),
        1186 => facts("interval", "interval", 16, false, 'd', 'p'),
        1266 => facts("time with time zone", "timetz", 12, false, 'd', 'p'),
        1560 => facts("bit", "bit", -1, false, 'i', 'x'),
        1562 => facts("bit varying", "varbit", -1, false, 'i', 'x'),
        1700 => facts("numeric", "numeric", -1, false, 'i', 'm'),
        2202 => facts("regprocedure", "regprocedure", 4, true, 'i', 'p'),
        2203 => facts("regoper", "regoper", 4, true, 'i', 'p'),
        2204 => facts("regoperator", "regoperator", 4, true, 'i', 'p'),
        2205 => facts("regclass", "regclass", 4, true, 'i', 'p'),
        2206 => facts("regtype", "regtype", 4, true, 'i', 'p'),
        2950 => facts("uuid", "uuid", 16, false, 'c', 'p'),
        3802 => facts("jsonb", "jsonb", -1, false, 'i', 'x'),
        4089 => facts("regnamespace", "regnamespace", 4, true, 'i', 'p'),
        4096 => facts("regrole", "regrole", 4, true, 'i', 'p'),
        _ => return None,
    })
}

/// The facts of `ty`: a scalar's own, an array's as PostgreSQL gives
/// them (`bigint[]`, `_int8`, variable length, extended storage).
pub fn facts_of(ty: &Type) -> Option<Facts> {
    if let Some((element, typname)) = array_of(ty.oid()) {
        let e = scalar(element)?;
        return Some(Facts {
            sql_name: e.sql_name,
            typname,
            len: -1,
            byval: false,
            align: if e.align == 'd' { 'd' } else { 'i' },
            storage: 'x',
        });
    }
    scalar(ty.oid())
}

/// The element type of an array type (its pg_type.typelem) and the
/// array's pg_type name, or None.
fn array_of(oid: u32) -> Option<(u32, &'static str)> {
    Some(match oid {
        1000 => (16, "_bool"),
        1001 => (17, "_bytea"),
        1002 => (18, "_char"),
        1003 => (19, "_name"),
        1005 => (21, "_int2"),
        1007 => (23, "_int4"),
        1016 => (20, "_int8"),
        1008 => (24, "_regproc"),
        1009 => (25, "_text"),
        1028 => (26, "_oid"),
        199 => (114, "_json"),
        1021 => (700, "_float4"),
        1022 => (701, "_float8"),
        1014 => (1042, "_bpchar"),
        1015 => (1043, "_varchar"),
        1182 => (1082, "_date"),
        1183 => (1083, "_time"),
        1115 => (1114, "_timestamp"),
        1185 => (1184, "_timestamptz"),
        1187 => (1186, "_interval"),
        1270 => (1266, "_timetz"),
        1231 => (1700, "_numeric"),
        2210 => (2205, "_regclass"),
        2211 => (2206, "_regtype"),
        2951 => (2950, "_uuid"),
        3807 => (3802, "_jsonb"),
        _ => return None,
    })
}

/// `format_type(oid, typmod)` as PostgreSQL prints it; None for an oid it
/// does not know (PostgreSQL prints `???`).
pub fn format_type(oid: u32, typmod: i32) -> Option<String> {
    let ty = Type::from_oid(oid)?;
    if let Some((e, _)) = array_of(oid) {
        return Some(format!("{}[]", format_type(e, typmod)?));
    }
    let Some(f) = scalar(oid) else { return Some(ty.name().to_string()) };
    let name = f.sql_name;
    Some(match (oid, typmod) {
        (1700, m) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        (1042 | 1043, m) if m >= 4 => format!("{name}({})", m - 4),
        (1560 | 1562, m) if m >= 0 => format!("{name}({m})"),
        (1083 | 1114 | 1184 | 1266, m) if m >= 0 => {
            let (base, zone) = name.split_once(' ').unwrap_or((name, ""));
            format!("{base}({m}) {zone}")
        }
        _ => name.to_string(),
    })
}

/// information_schema's data_type: `ARRAY` for an array, else the name
/// format_type gives without a modifier.
pub fn data_type(ty: &Type) -> String {
    if array_of(ty.oid()).is_some() || ty.name().starts_with('_') {
        return "ARRAY".into();
    }
    format_type(ty.oid(), -1).unwrap_or_else(|| ty.name().to_string())
}

/// The atttypmod of `numeric(precision, scale)`.
pub fn numeric_typmod(precision: u8, scale: i8) -> i32 {
    ((i32::from(precision) << 16) | i32::from(scale)) + 4
}

/// (precision, scale) of a numeric typmod, or None without one.
pub fn numeric_parts(typmod: i32) -> Option<(i32, i32)> {
    (typmod >= 4).then(|| (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgresql_prints_them() {
        assert_eq!(format_type(20, -1).as_deref(), Some("bigint"));
        assert_eq!(format_type(1184, -1).as_deref(), Some("timestamp with time zone"));
        assert_eq!(format_type(1184, 3).as_deref(), Some("timestamp(3) with time zone"));
        assert_eq!(format_type(1700, numeric_typmod(20, 0)).as_deref(), Some("numeric(20,0)"));
        assert_eq!(format_type(1700, -1).as_deref(), Some("numeric"));
        assert_eq!(format_type(1016, -1).as_deref(), Some("bigint[]"));
        assert_eq!(format_type(1043, 14).as_deref(), Some("character varying(10)"));
        assert_eq!(format_type(18, -1).as_deref(), Some("\"char\""));
        assert_eq!(format_type(2276, -1).as_deref(), Some("any"));
        assert_eq!(format_type(999_999, -1), None);
        assert_eq!(data_type(&Type::INT8_ARRAY), "ARRAY");
        assert_eq!(data_type(&Type::FLOAT8), "double precision");
        assert_eq!(facts_of(&Type::INT8_ARRAY).map(|f| (f.typname, f.len, f.align)), Some(("_int8", -1, 'd')));
        assert_eq!(facts_of(&Type::TIMESTAMPTZ).map(|f| f.typname), Some("timestamptz"));
        assert_eq!(numeric_parts(numeric_typmod(38, 10)), Some((38, 10)));
    }
}
