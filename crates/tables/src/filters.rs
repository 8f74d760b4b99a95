//! Recognising the filter shapes sockql can push into the kernel or into
//! its readers: `column = literal`, `literal = column` and
//! `column IN (literal, ...)`. Anything else stays with DataFusion.

use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
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
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (strip_cast(left), strip_cast(right)) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                Some((c.name.as_str(), vec![v]))
            }
            _ => None,
        },
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

/// A comparison of a column with a literal, as `(column, op, value)` with
/// the column on the left (`5 < port` becomes `port > 5`). Handles `=`,
/// `<`, `<=`, `>`, `>=`.
pub fn column_compare(expr: &Expr) -> Option<(&str, Operator, &ScalarValue)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else { return None };
    let flipped = match op {
        Operator::Eq => Operator::Eq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        _ => return None,
    };
    match (strip_cast(left), strip_cast(right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => Some((c.name.as_str(), *op, v)),
        (Expr::Literal(v, _), Expr::Column(c)) => Some((c.name.as_str(), flipped, v)),
        _ => None,
    }
}

/// `(column, low, high)` of `column BETWEEN low AND high`.
pub fn column_between(expr: &Expr) -> Option<(&str, &ScalarValue, &ScalarValue)> {
    let Expr::Between(b) = expr else { return None };
    if b.negated {
        return None;
    }
    match (strip_cast(&b.expr), strip_cast(&b.low), strip_cast(&b.high)) {
        (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) => Some((c.name.as_str(), lo, hi)),
        _ => None,
    }
}

/// The ports (within 0..=65535) a set of filters confines a port
/// `column` to: None when no filter constrains it, Some(None) when no port
/// can pass (an empty range).
pub fn port_range(filters: &[&Expr], column: &str) -> Option<Option<(u16, u16)>> {
    let (lo, hi) = int_range(filters, column)?;
    let (lo, hi) = (lo.max(0), hi.min(65535));
    Some((lo <= hi).then_some((lo as u16, hi as u16)))
}

/// An inclusive integer range a set of filters confines `column` to, or
/// `None` if no filter constrains it. Understands =, <, <=, >, >=,
/// BETWEEN and IN lists (as their min..max).
pub fn int_range(filters: &[&Expr], column: &str) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    let mut narrow = |lo: i64, hi: i64| {
        let (l, h) = range.unwrap_or((i64::MIN, i64::MAX));
        range = Some((l.max(lo), h.min(hi)));
    };
    for f in filters {
        if let Some((c, op, v)) = column_compare(f) {
            if c != column {
                continue;
            }
            let Some(v) = as_i64(v) else { continue };
            match op {
                Operator::Eq => narrow(v, v),
                Operator::Lt => narrow(i64::MIN, v.saturating_sub(1)),
                Operator::LtEq => narrow(i64::MIN, v),
                Operator::Gt => narrow(v.saturating_add(1), i64::MAX),
                Operator::GtEq => narrow(v, i64::MAX),
                _ => {}
            }
        } else if let Some((c, lo, hi)) = column_between(f) {
            if let (true, Some(lo), Some(hi)) = (c == column, as_i64(lo), as_i64(hi)) {
                narrow(lo, hi);
            }
        } else if let Some((c, values)) = column_in_literals(f) {
            let ints: Option<Vec<i64>> = values.iter().map(|v| as_i64(v)).collect();
            if let (true, Some(ints)) = (c == column, ints) {
                if let (Some(lo), Some(hi)) = (ints.iter().min(), ints.iter().max()) {
                    narrow(*lo, *hi);
                }
            }
        }
    }
    range
}

/// True if `int_range` understands this filter for `column`.
pub fn is_int_range_filter(f: &Expr, column: &str) -> bool {
    int_range(&[f], column).is_some()
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
        let pids: Option<Vec<i32>> = values.iter().map(|v| as_i64(v).and_then(|p| i32::try_from(p).ok())).collect();
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
pub fn pid_pushdown(filters: &[&Expr], column: &str) -> Vec<bool> {
    filters
        .iter()
        .map(|f| matches!(column_in_literals(f), Some((c, v)) if c == column && v.iter().all(|v| as_i64(v).is_some())))
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
    fn integer_ranges_fold() {
        let f1 = col("local_port").gt_eq(lit(1000));
        let f2 = lit(2000).gt(col("local_port"));
        let f3 = col("remote_port").eq(lit(5));
        assert_eq!(int_range(&[&f1, &f2, &f3], "local_port"), Some((1000, 1999)));
        assert_eq!(int_range(&[&f3], "remote_port"), Some((5, 5)));
        let b = col("local_port").between(lit(10), lit(20));
        assert_eq!(int_range(&[&b], "local_port"), Some((10, 20)));
        let i = col("local_port").in_list(vec![lit(443), lit(80)], false);
        assert_eq!(int_range(&[&i], "local_port"), Some((80, 443)));
        assert_eq!(int_range(&[&f3], "local_port"), None);
        assert!(!is_int_range_filter(&col("local_port").not_eq(lit(1)), "local_port"));
    }

    #[test]
    fn pid_filters_intersect() {
        let f = vec![col("pid").in_list(vec![lit(3), lit(5), lit(3)], false), col("pid").eq(lit(5i64))];
        assert_eq!(pids_in(&f, "pid"), Some(vec![5]));
        assert_eq!(pids_in(&[col("fd").eq(lit(1))], "pid"), None);
    }
}
