//! Scalar functions held to --memory-limit.
//!
//! DataFusion's memory pool bounds what operators hold (sorts, joins,
//! aggregates), but a scalar function allocates its result outside it:
//! `repeat('x', 700000000)` made 700 MB (and 2.4 GB of peak RSS) under a
//! 256 MiB limit. Every scalar function of a session is therefore wrapped
//! ([`budget_functions`]):
//!
//! - a function whose result can be far larger than its arguments (an
//!   *amplifier*: `repeat`, `lpad`, `rpad`, `array_repeat`, `array_resize`,
//!   `range`, `generate_series`, `replace`, `regexp_replace`,
//!   `array_replace*`, `array_to_string`) has its result's size bounded
//!   from its arguments first, for the whole batch, and is refused before
//!   it allocates if that is more than an eighth of what the pool has
//!   left (see [`SHARE`]);
//! - every function's result is measured after it returns, and refused if
//!   it is larger than that. For every other function
//!   the result is at most a small multiple of its arguments (concat,
//!   translate, overlay, to_char, encode, string_to_array), so chains of
//!   them overshoot by one step at most.
//!
//! A refusal is DataFusion's `ResourcesExhausted`, the error the pool
//! itself gives, so every front end reports it as a memory error (pg
//! SQLSTATE 53200). Constant arguments are evaluated while planning
//! (DataFusion's simplifier calls the same function), so this holds there
//! too.
//!
//! Why not a process-level guard (osquery's watchdog): RLIMIT_AS or a
//! cgroup limit on sockql makes an allocation fail, and Rust aborts the
//! whole process on that, so one client's query would take the server
//! and every other client's query down with it; running each query in a
//! child that can be killed means sending every batch across a process
//! boundary and giving each child the live tables' privileges. Checking
//! the size before the allocation keeps the process and refuses only the
//! query that asked.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Wrap every scalar function registered in `ctx` so that its results are
/// held to the session's memory pool (see the module comment; without a
/// finite pool, no --memory-limit, nothing is refused for its size) and
/// its calls to the run's deadline (query/deadline.rs).
pub fn budget_functions(ctx: &SessionContext) {
    let pool = ctx.runtime_env().memory_pool.clone();
    let state = ctx.state();
    let mut seen = std::collections::HashSet::new();
    let functions: Vec<Arc<ScalarUDF>> =
        state.scalar_functions().values().filter(|f| seen.insert(f.name().to_string())).cloned().collect();
    for f in functions {
        if is_budgeted(&f) {
            continue;
        }
        ctx.register_udf(Arc::unwrap_or_clone(budgeted(f.inner().clone(), pool.clone())));
    }
    // Functions that planners and rewrites call without the registry, and
    // the `||` operator, are held to the pool by a rule of their own.
    ctx.add_analyzer_rule(Arc::new(super::budget_plan::BudgetRule { pool }));
}

/// A scalar function whose results are held to a memory pool.
#[derive(Debug)]
struct Budgeted {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Budgeted {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}
impl Eq for Budgeted {}
impl Hash for Budgeted {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state)
    }
}

/// A single result may take this share of what the pool has left: a value
/// is copied on its way (a constant folded while planning is cloned by
/// the optimizer's passes, several times; a result is copied again when
/// it is encoded for output), so its copies stay within the limit. The
/// table output format holds at most a quarter.
const SHARE: usize = 8;

/// Bytes one result may take: a [`SHARE`] of the pool's limit less what is
/// reserved now.
fn allowed(pool: &dyn MemoryPool) -> Option<usize> {
    match pool.memory_limit() {
        MemoryLimit::Finite(limit) => Some(limit.saturating_sub(pool.reserved()) / SHARE),
        _ => None,
    }
}

fn refuse(name: &str, what: &str, bytes: u128, allowed: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name} would {what} {bytes} bytes; one value may take {allowed} (an eighth of what is left of --memory-limit)"
    ))
}

impl Budgeted {
    fn check(&self, what: &str, bytes: u128) -> Result<()> {
        match allowed(self.pool.as_ref()) {
            Some(allowed) if bytes > allowed as u128 => Err(refuse(self.inner.name(), what, bytes, allowed)),
            _ => Ok(()),
        }
    }
}

#[warn(clippy::missing_trait_methods)] // Delegates: every method must be forwarded.
impl ScalarUDFImpl for Budgeted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[allow(deprecated)]
        self.inner.display_name(args)
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Budgeted { inner: updated.inner().clone().into(), pool: self.pool.clone() }))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.is_nullable(args, schema)
    }
    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if allowed(self.pool.as_ref()).is_none() {
            return super::deadline::invoke_within_deadline(&**self.inner, args);
        }
        if let Some(bytes) = estimate(self.inner.name(), &args.args, args.number_rows)? {
            self.check("make", bytes)?;
        }
        let out = super::deadline::invoke_within_deadline(&**self.inner, args)?;
        let made = match &out {
            ColumnarValue::Array(a) => a.get_array_memory_size(),
            ColumnarValue::Scalar(s) => s.size(),
        };
        self.check("hold", made as u128)?;
        Ok(out)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }
    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }
    fn evaluate_bounds(
        &self,
        input: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<datafusion::logical_expr::interval_arithmetic::Interval> {
        self.inner.evaluate_bounds(input)
    }
    fn propagate_constraints(
        &self,
        interval: &datafusion::logical_expr::interval_arithmetic::Interval,
        inputs: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<Option<Vec<datafusion::logical_expr::interval_arithmetic::Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }
    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }
    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn struct_field_mapping(
        &self,
        literal_args: &[Option<datafusion::scalar::ScalarValue>],
    ) -> Option<datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}

/// One argument, one number per row (a constant is the same in every row).
pub(crate) struct PerRow(pub(crate) Vec<u128>);

impl PerRow {
    pub(crate) fn at(&self, row: usize) -> u128 {
        match self.0.as_slice() {
            [one] => *one,
            all => all.get(row).copied().unwrap_or(0),
        }
    }
    fn max(&self) -> u128 {
        self.0.iter().copied().max().unwrap_or(0)
    }
    /// Rows it has numbers for (1 for a constant).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

fn array(v: &ColumnarValue) -> Result<ArrayRef> {
    match v {
        ColumnarValue::Array(a) => Ok(a.clone()),
        ColumnarValue::Scalar(s) => s.to_array_of_size(1),
    }
}

/// Non-negative integers as numbers per row (null and negative: 0).
fn counts(a: &ArrayRef) -> Result<PerRow> {
    let ints = cast(a, &DataType::Int64)?;
    let ints = ints.as_primitive::<Int64Type>();
    Ok(PerRow((0..ints.len()).map(|i| if ints.is_null(i) { 0 } else { ints.value(i).max(0) as u128 }).collect()))
}

/// Bytes of each value: exact for strings and binary, the average of the
/// a number's width, the average of the array's memory for anything else
/// (at least 8).
pub(crate) fn sizes(a: &ArrayRef) -> Result<PerRow> {
    if matches!(
        a.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    ) {
        return counts(&length(a)?);
    }
    if let Some(width) = a.data_type().primitive_width() {
        return Ok(PerRow(vec![width as u128]));
    }
    let average = (a.get_array_memory_size() / a.len().max(1)).max(8) as u128;
    Ok(PerRow(vec![average]))
}

/// Elements of each list, counting the leaves of nested lists (their
/// values arrays' lengths: an upper bound for a slice).
fn elements(a: &ArrayRef) -> Result<(PerRow, ArrayRef)> {
    fn child(a: &ArrayRef) -> Option<ArrayRef> {
        Some(match a.data_type() {
            DataType::List(_) => a.as_list::<i32>().values().clone(),
            DataType::LargeList(_) => a.as_list::<i64>().values().clone(),
            DataType::FixedSizeList(_, _) => a.as_fixed_size_list().values().clone(),
            _ => return None,
        })
    }
    let top = counts(&length(a)?)?;
    let Some(mut leaves) = child(a) else { return Ok((top, a.clone())) };
    let mut nested = false;
    while let Some(next) = child(&leaves) {
        nested = true;
        leaves = next;
    }
    if nested {
        // Every leaf counted once, in the first row (a constant list is
        // the same in every row, so it counts in each).
        let mut per_row = vec![0; a.len().max(1)];
        if let Some(first) = per_row.first_mut() {
            *first = leaves.len() as u128;
        }
        return Ok((PerRow(per_row), leaves));
    }
    Ok((top, leaves))
}

/// How many values `range`/`generate_series` makes per row: integers, or
/// dates and timestamps stepped by an interval (its shortest length).
fn series(args: &[ArrayRef]) -> Result<Option<PerRow>> {
    let (start, stop, step) = match args {
        [stop] => (None, stop, None),
        [start, stop] => (Some(start), stop, None),
        [start, stop, step] => (Some(start), stop, Some(step)),
        _ => return Ok(None),
    };
    let rows = args.iter().map(|a| a.len()).max().unwrap_or(0);
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let (points, unit): (Vec<Option<PerRowI>>, bool) = if stop.data_type().is_integer() || stop.data_type().is_null() {
        let f = |a: &ArrayRef| -> Result<PerRowI> { ints(&cast(a, &DataType::Int64)?) };
        (vec![start.map(f).transpose()?, Some(f(stop)?)], true)
    } else if matches!(stop.data_type(), DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)) {
        let f = |a: &ArrayRef| -> Result<PerRowI> { ints(&cast(&cast(a, &ts)?, &DataType::Int64)?) };
        (vec![start.map(f).transpose()?, Some(f(stop)?)], false)
    } else {
        return Ok(None);
    };
    let steps: PerRowI = match step {
        None => PerRowI(vec![Some(if unit { 1 } else { 86_400_000_000_000 })]),
        Some(s) if unit => ints(&cast(s, &DataType::Int64)?)?,
        Some(s) => {
            let iv = cast(s, &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano))?;
            let iv = iv.as_primitive::<IntervalMonthDayNanoType>();
            PerRowI(
                (0..iv.len())
                    .map(|i| {
                        (!iv.is_null(i)).then(|| {
                            let v = iv.value(i);
                            // The shortest a month or day can be (28 days,
                            // 23 hours), so the count is an upper bound.
                            v.months as i128 * 28 * 86_400_000_000_000
                                + v.days as i128 * 82_800_000_000_000
                                + v.nanoseconds as i128
                        })
                    })
                    .collect(),
            )
        }
    };
    let (from, to) = (points[0].as_ref(), points[1].as_ref());
    Ok(Some(PerRow(
        (0..rows)
            .map(|r| {
                let a = from.map_or(Some(0), |f| f.at(r));
                match (a, to.and_then(|t| t.at(r)), steps.at(r)) {
                    (Some(a), Some(b), Some(s)) if s != 0 => ((b - a) / s).max(0) as u128 + 1,
                    _ => 0,
                }
            })
            .collect(),
    )))
}

/// Signed numbers per row (wide enough to subtract without overflow).
struct PerRowI(Vec<Option<i128>>);

impl PerRowI {
    fn at(&self, row: usize) -> Option<i128> {
        match self.0.as_slice() {
            [one] => *one,
            all => all.get(row).copied().flatten(),
        }
    }
}

fn ints(a: &ArrayRef) -> Result<PerRowI> {
    let v = a.as_primitive::<Int64Type>();
    Ok(PerRowI((0..v.len()).map(|i| (!v.is_null(i)).then(|| v.value(i) as i128)).collect()))
}

/// Is every value of `a` ASCII (one byte a character)? Not a string: no.
fn ascii(a: &ArrayRef) -> bool {
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().is_ascii(),
        DataType::LargeUtf8 => a.as_string::<i64>().is_ascii(),
        DataType::Utf8View => a.as_string_view().iter().all(|s| s.is_none_or(str::is_ascii)),
        _ => false,
    }
}

fn sum(rows: usize, f: impl Fn(usize) -> u128) -> u128 {
    (0..rows).map(f).fold(0u128, u128::saturating_add)
}

/// An upper bound on the bytes an amplifier's result takes for this
/// batch; None for other functions (checked after they return).
fn estimate(name: &str, args: &[ColumnarValue], number_rows: usize) -> Result<Option<u128>> {
    const AMPLIFIERS: &[&str] = &[
        "repeat",
        "lpad",
        "rpad",
        "array_repeat",
        "array_resize",
        "range",
        "generate_series",
        "replace",
        "regexp_replace",
        "array_replace",
        "array_replace_n",
        "array_replace_all",
        "array_to_string",
    ];
    if !AMPLIFIERS.contains(&name) {
        return Ok(None);
    }
    // Constant arguments give a constant (one value) or one value a row.
    let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) { 1 } else { number_rows.max(1) };
    let arrays = args.iter().map(array).collect::<Result<Vec<_>>>()?;
    let arg = |i: usize| {
        arrays.get(i).ok_or_else(|| DataFusionError::Execution(format!("{name}: missing argument {}", i + 1)))
    };
    let bytes = match name {
        "repeat" => {
            let (s, n) = (sizes(arg(0)?)?, counts(arg(1)?)?);
            sum(rows, |r| s.at(r).saturating_mul(n.at(r)))
        }
        "lpad" | "rpad" => {
            let n = counts(arg(1)?)?;
            let narrow = ascii(arg(0)?) && arrays.get(2).is_none_or(ascii);
            let width = if narrow { 1 } else { 4 };
            sum(rows, |r| n.at(r).saturating_mul(width))
        }
        "array_repeat" => {
            let (e, n) = (sizes(arg(0)?)?, counts(arg(1)?)?);
            sum(rows, |r| n.at(r).saturating_mul(e.at(r).max(1)) + 8)
        }
        "array_resize" => {
            let n = counts(arg(1)?)?;
            let (_, leaves) = elements(arg(0)?)?;
            let each =
                sizes(&leaves)?.max().max(arrays.get(2).map(sizes).transpose()?.map_or(0, |f| f.max())).max(8) + 8;
            sum(rows, |r| n.at(r).saturating_mul(each))
        }
        "range" | "generate_series" => match series(&arrays)? {
            Some(n) => sum(rows, |r| n.at(r).saturating_mul(8)),
            None => return Ok(None),
        },
        "replace" => {
            let (s, from, to) = (sizes(arg(0)?)?, sizes(arg(1)?)?, sizes(arg(2)?)?);
            sum(rows, |r| s.at(r) + (s.at(r) / from.at(r).max(1) + 1).saturating_mul(to.at(r)))
        }
        "regexp_replace" => {
            // Each match (at most one per byte, and an empty one at the
            // end) gets the replacement; each of its group references
            // (at most one per two bytes of it) adds at most the whole
            // text over all the matches, which do not overlap.
            let (s, repl) = (sizes(arg(0)?)?, sizes(arg(2)?)?);
            sum(rows, |r| s.at(r) + (s.at(r) + 1).saturating_mul(repl.at(r)) + (repl.at(r) / 2).saturating_mul(s.at(r)))
        }
        "array_replace" | "array_replace_n" | "array_replace_all" => {
            let (n, _) = elements(arg(0)?)?;
            let to = sizes(arg(2)?)?;
            let whole = arg(0)?.get_array_memory_size() as u128;
            whole + sum(rows, |r| n.at(r).saturating_mul(to.at(r) + 8))
        }
        "array_to_string" => {
            // Every leaf printed (a number at most 40 bytes; strings as
            // they are, counted by the array's memory) with a delimiter or
            // the null text after it.
            let (n, leaves) = elements(arg(0)?)?;
            let sep = sizes(arg(1)?)?.max() + arrays.get(2).map(sizes).transpose()?.map_or(0, |s| s.max());
            let text = leaves.get_array_memory_size() as u128;
            text + sum(rows, |r| n.at(r).saturating_mul(sep + 40))
        }
        _ => return Ok(None),
    };
    Ok(Some(bytes))
}

/// `inner` held to `pool` (see [`budget_functions`]).
pub(crate) fn budgeted(inner: Arc<dyn ScalarUDFImpl>, pool: Arc<dyn MemoryPool>) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Budgeted { inner: inner.into(), pool }))
}

/// Is `f` held to a pool already?
pub(crate) fn is_budgeted(f: &ScalarUDF) -> bool {
    f.inner().downcast_ref::<Budgeted>().is_some()
}

/// Give large buffers back to the kernel when they are freed.
///
/// glibc raises its mmap threshold each time a large mapped block is freed
/// (up to 32 MiB), after which blocks of that size come from the heap and
/// its per-thread arenas, which keep them after they are freed: a query
/// refused for a 16 MB value left 200 MB more resident. A fixed threshold
/// keeps every buffer of 1 MiB or more mapped, so the memory a refused or
/// finished query held is returned and --memory-limit is what the process
/// keeps. Called once per process, before any query.
pub fn return_large_allocations() {
    #[cfg(target_env = "gnu")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // once, and the allocator is thread-safe.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        });
    }
}
