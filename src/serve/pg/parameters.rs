//! A client's parameter values (Bind) as DataFusion scalars.
//!
//! Each value is decoded by its PostgreSQL type: the one the client named
//! in Parse, else the one the plan infers for `$n` (as RowDescription
//! would name it, [`super::encode::pg_type`]). Numbers, text, booleans,
//! bytes and one-dimensional arrays of them decode through pgwire (text
//! or binary); any other type sent as text is taken as text and cast by
//! DataFusion to the inferred type, as PostgreSQL's input functions would
//! read it (timestamps, dates, numeric, intervals). A binary value of a
//! type not listed is refused with an error, not guessed at.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use pgwire::api::portal::Portal;
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// `$1`, `$2`, ... -> value, for the portal's parameters.
pub fn decode<S: Clone>(
    portal: &Portal<S>,
    inferred: &[Option<&DataType>],
) -> PgWireResult<HashMap<String, ScalarValue>> {
    let mut out = HashMap::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let target = inferred.get(i).copied().flatten();
        let named = portal.statement.parameter_types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN);
        let ty = named.or_else(|| target.map(super::encode::pg_type)).unwrap_or(Type::UNKNOWN);
        let value = scalar(portal, i, &ty)?;
        // Cast to the type the plan infers, as PostgreSQL coerces a value
        // to its parameter's type; an array the client sent stays an array
        // (the plan may infer text where it compares elements).
        let value = match target {
            Some(t) if value.data_type() != *t && !matches!(value, ScalarValue::List(_)) => {
                value.cast_to(t).map_err(|e| invalid(format!("${}: {e}", i + 1)))?
            }
            _ => value,
        };
        out.insert((i + 1).to_string(), value);
    }
    Ok(out)
}

fn invalid(message: String) -> PgWireError {
    // 22P02: invalid_text_representation, as PostgreSQL reports a bad value.
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "22P02".into(), message)))
}

/// A list scalar of `values` with element type `element`.
fn list(values: Option<Vec<ScalarValue>>, element: &DataType) -> ScalarValue {
    match values {
        Some(v) => ScalarValue::List(ScalarValue::new_list_nullable(&v, element)),
        None => ScalarValue::try_new_null(&DataType::new_list(element.clone(), true)).unwrap_or(ScalarValue::Null),
    }
}

/// Parameter `i` decoded as `ty` says.
fn scalar<S: Clone>(portal: &Portal<S>, i: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    macro_rules! array {
        ($rust:ty, $variant:ident, $element:expr) => {{
            let v = portal.parameter::<Vec<Option<$rust>>>(i, ty)?;
            list(v.map(|v| v.into_iter().map(ScalarValue::$variant).collect()), &$element)
        }};
    }
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, ty)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, ty)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, ty)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, ty)?),
        Type::OID => ScalarValue::Int64(portal.parameter::<u32>(i, ty)?.map(i64::from)),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, ty)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, ty)?),
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, ty)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ScalarValue::Utf8(portal.parameter::<String>(i, ty)?),
        Type::UNKNOWN => untyped(portal, i)?,
        Type::BOOL_ARRAY => array!(bool, Boolean, DataType::Boolean),
        Type::INT2_ARRAY => array!(i16, Int16, DataType::Int16),
        Type::INT4_ARRAY => array!(i32, Int32, DataType::Int32),
        Type::INT8_ARRAY => array!(i64, Int64, DataType::Int64),
        Type::FLOAT4_ARRAY => array!(f32, Float32, DataType::Float32),
        Type::FLOAT8_ARRAY => array!(f64, Float64, DataType::Float64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY => array!(String, Utf8, DataType::Utf8),
        _ => as_text(portal, i, ty)?,
    })
}

/// A value neither the client nor the plan gives a type: text, or an
/// array of text if it is written as one (`{r,p,f}`). psycopg sends a
/// Python list of str untyped (pgcli's `relkind = ANY(%s)`), where
/// PostgreSQL would infer an array from `ANY`; the rewritten membership
/// test (`array_contains($1, x)`) leaves DataFusion nothing to infer from.
fn untyped<S: Clone>(portal: &Portal<S>, i: usize) -> PgWireResult<ScalarValue> {
    let text = portal.parameter::<String>(i, &Type::UNKNOWN)?;
    match text {
        Some(t) if t.starts_with('{') && t.ends_with('}') && !portal.parameter_format.is_binary(i) => {
            let items = portal.parameter::<Vec<Option<String>>>(i, &Type::TEXT_ARRAY)?;
            Ok(list(items.map(|v| v.into_iter().map(ScalarValue::Utf8).collect()), &DataType::Utf8))
        }
        other => Ok(ScalarValue::Utf8(other)),
    }
}

/// A value of another type sent as text: its text, for DataFusion's cast.
fn as_text<S: Clone>(portal: &Portal<S>, i: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    if portal.parameter_format.is_binary(i) {
        return Err(invalid(format!(
            "${}: binary parameters of type {} are not supported; send it as text",
            i + 1,
            ty.name()
        )));
    }
    // Read as `text`, which accepts any bytes that are UTF-8.
    Ok(ScalarValue::Utf8(portal.parameter::<String>(i, &Type::TEXT)?))
}
