//! Every time a session makes carries its zone, UTC.
//!
//! Table columns are `Timestamp(_, "UTC")`. DataFusion gives `now()`,
//! `current_timestamp`, `to_timestamp*` and casts to `TIMESTAMP WITH TIME
//! ZONE` the session's `datafusion.execution.time_zone`, which is unset by
//! default: they came back zone-less (PostgreSQL's `timestamp`, OID 1114),
//! so Grafana took them for local times and the command line printed them
//! without `Z`. The session starts with the zone set to UTC
//! ([`configure`]); `RESET` (or `SET` to '') of the zone sets UTC again
//! rather than no zone ([`keep_zone`]); `from_unixtime(n)`, which ignores
//! the setting, answers in the session's zone ([`FromUnixtime`]).
//!
//! What stays zone-less is what a query asks for by name, as in
//! PostgreSQL: `CAST(x AS TIMESTAMP)`, `x::timestamp`, `TIMESTAMP '...'`
//! (timestamp without time zone) and `to_local_time`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::datetime::from_unixtime::FromUnixtimeFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Statement,
};
use datafusion::logical_expr::{ResetVariable, SetVariable};
use datafusion::prelude::{SessionConfig, SessionContext};

/// The zone of every time sockql makes, and of the PostgreSQL endpoint's
/// `TimeZone`.
pub const ZONE: &str = "UTC";

const OPTION: &str = "datafusion.execution.time_zone";

/// `config` with the session's zone set to [`ZONE`].
pub fn configure(mut config: SessionConfig) -> SessionConfig {
    config.options_mut().execution.time_zone = Some(ZONE.to_string());
    config
}

/// Register what makes times in the session's zone beyond the setting
/// itself (call after the context is made, before functions are wrapped).
pub fn register(ctx: &SessionContext) {
    let zone = zone_of(ctx.state().config().options());
    ctx.register_udf(ScalarUDF::new_from_impl(FromUnixtime { inner: FromUnixtimeFunc::new(), zone }));
}

/// `RESET datafusion.execution.time_zone` (DataFusion's default is no zone)
/// and `SET` to '' become `SET ... = 'UTC'`: a session never loses its zone.
pub fn keep_zone(plan: LogicalPlan) -> LogicalPlan {
    let utc = |variable: String| {
        LogicalPlan::Statement(Statement::SetVariable(SetVariable { variable, value: ZONE.to_string() }))
    };
    match plan {
        LogicalPlan::Statement(Statement::ResetVariable(ResetVariable { variable })) if is_zone(&variable) => {
            utc(variable)
        }
        LogicalPlan::Statement(Statement::SetVariable(SetVariable { variable, value }))
            if is_zone(&variable) && value.trim().is_empty() =>
        {
            utc(variable)
        }
        plan => plan,
    }
}

fn is_zone(variable: &str) -> bool {
    variable.eq_ignore_ascii_case(OPTION)
}

fn zone_of(options: &ConfigOptions) -> Arc<str> {
    match options.execution.time_zone.as_deref().map(str::trim) {
        Some(zone) if !zone.is_empty() => zone.into(),
        _ => ZONE.into(),
    }
}

/// `from_unixtime(n)` in the session's zone (DataFusion's gives no zone
/// unless a second argument names one; that form is unchanged).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FromUnixtime {
    inner: FromUnixtimeFunc,
    zone: Arc<str>,
}

impl FromUnixtime {
    fn zoned(&self) -> DataType {
        DataType::Timestamp(TimeUnit::Second, Some(self.zone.clone()))
    }
}

impl ScalarUDFImpl for FromUnixtime {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        match args.arg_fields.len() {
            1 => Ok(Arc::new(Field::new(self.name(), self.zoned(), true))),
            _ => self.inner.return_field_from_args(args),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match args.args.as_slice() {
            [seconds] if seconds.data_type() == DataType::Int64 => seconds.cast_to(&self.zoned(), None),
            [seconds] => Err(DataFusionError::Execution(format!(
                "Unsupported data type {} for function from_unixtime",
                seconds.data_type()
            ))),
            _ => self.inner.invoke_with_args(args),
        }
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(FromUnixtime { inner: FromUnixtimeFunc::new(), zone: zone_of(config) }))
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
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_and_empty_set_keep_utc() {
        let reset = LogicalPlan::Statement(Statement::ResetVariable(ResetVariable { variable: OPTION.to_uppercase() }));
        let empty =
            LogicalPlan::Statement(Statement::SetVariable(SetVariable { variable: OPTION.into(), value: " ".into() }));
        for plan in [reset, empty] {
            match keep_zone(plan) {
                LogicalPlan::Statement(Statement::SetVariable(s)) => assert_eq!(s.value, ZONE),
                other => panic!("{other:?}"),
            }
        }
        let other = LogicalPlan::Statement(Statement::ResetVariable(ResetVariable {
            variable: "datafusion.format.null".into(),
        }));
        assert!(matches!(keep_zone(other), LogicalPlan::Statement(Statement::ResetVariable(_))));
    }
}
