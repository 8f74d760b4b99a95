//! Recognising the filter shapes sockql can push into the kernel or into
//! its readers: `column = literal`, `literal = column` and
//! `column IN (literal, ...)`. Anything else stays with DataFusion.

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::logical_expr::expr::InList;
use datafusion::scalar::ScalarValue;

/// `(column, values)` if `expr` says the column equals one of the values.
/// DataFusion rewrites short `IN` lists into `OR` chains of equalities, so
/// those are recognised too.
pub fn column_in_literals(expr: &Expr) -> Option<(&str, Vec<&ScalarValue>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (lc, mut lv) = column_in_literals(left)?;
            let (rc, rv) = column_in_literals(right)?;
            if lc != rc {
                return None;
            }
            lv.extend(rv);
            Some((lc, lv))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            match (strip_cast(left), strip_cast(right)) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    Some((c.name.as_str(), vec![v]))
                }
                _ => None,
            }
        }
        Expr::InList(InList { expr, list, negated: false }) => {
            let Expr::Column(c) = strip_cast(expr) else { return None };
            let values = list
                .iter()
                .map(|e| match strip_cast(e) {
                    Expr::Literal(v, _) => Some(v),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some((c.name.as_str(), values))
        }
        _ => None,
    }
}

/// Type coercion may wrap a column in a cast (`CAST(local_port AS Int64)`);
/// the comparison still means the same value.
fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// The string inside a string literal of any string type.
pub fn as_str(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Some(s.as_str())
        }
        _ => None,
    }
}

/// The integer value of an integer literal of any width.
pub fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(x)) => Some(*x as i64),
        ScalarValue::Int16(Some(x)) => Some(*x as i64),
        ScalarValue::Int32(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt8(Some(x)) => Some(*x as i64),
        ScalarValue::UInt16(Some(x)) => Some(*x as i64),
        ScalarValue::UInt32(Some(x)) => Some(*x as i64),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

/// The pids a set of filters restricts `column` to (`pid = 5`, `pid IN
/// (5, 6)`; several such filters intersect), or `None` if unrestricted.
pub fn pids_in(filters: &[Expr], column: &str) -> Option<Vec<i32>> {
    let mut out: Option<Vec<i32>> = None;
    for f in filters {
        let Some((c, values)) = column_in_literals(f) else { continue };
        if c != column {
            continue;
        }
        let pids: Option<Vec<i32>> =
            values.iter().map(|v| as_i64(v).and_then(|p| i32::try_from(p).ok())).collect();
        if let Some(mut pids) = pids {
            pids.sort_unstable();
            pids.dedup();
            out = Some(match out {
                None => pids,
                Some(prev) => prev.into_iter().filter(|p| pids.contains(p)).collect(),
            });
        }
    }
    out
}

/// Inexact for filters on `column` that [`pids_in`] understands.
pub fn pid_pushdown(filters: &[&Expr], column: &str) -> Vec<datafusion::logical_expr::TableProviderFilterPushDown> {
    use datafusion::logical_expr::TableProviderFilterPushDown::*;
    filters
        .iter()
        .map(|f| match column_in_literals(f) {
            Some((c, v)) if c == column && v.iter().all(|v| as_i64(v).is_some()) => Inexact,
            _ => Unsupported,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn recognises_equalities_and_in_lists() {
        let e = col("state").eq(lit("LISTEN"));
        let (c, v) = column_in_literals(&e).unwrap();
        assert_eq!((c, as_str(v[0])), ("state", Some("LISTEN")));
        let e = lit(80i64).eq(col("local_port"));
        let (c, v) = column_in_literals(&e).unwrap();
        assert_eq!((c, as_i64(v[0])), ("local_port", Some(80)));
        let e = col("state").in_list(vec![lit("A"), lit("B")], false);
        assert_eq!(column_in_literals(&e).unwrap().1.len(), 2);
        assert!(column_in_literals(&col("state").in_list(vec![lit("A")], true)).is_none());
        assert!(column_in_literals(&col("state").not_eq(lit("A"))).is_none());
        assert!(column_in_literals(&col("a").eq(col("b"))).is_none());
        let or = col("state").eq(lit("A")).or(col("state").eq(lit("B")).or(col("state").eq(lit("C"))));
        assert_eq!(column_in_literals(&or).unwrap().1.len(), 3);
        assert!(column_in_literals(&col("state").eq(lit("A")).or(col("family").eq(lit("B")))).is_none());
    }

    #[test]
    fn pid_filters_intersect() {
        let f = vec![col("pid").in_list(vec![lit(3), lit(5), lit(3)], false), col("pid").eq(lit(5i64))];
        assert_eq!(pids_in(&f, "pid"), Some(vec![5]));
        assert_eq!(pids_in(&[col("fd").eq(lit(1))], "pid"), None);
    }
}
