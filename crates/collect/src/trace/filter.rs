//! A tracepoint filter as sockql builds one from a query's WHERE clause:
//! a conjunction of disjunctions of `field OP number` (`(reason == 2 ||
//! reason == 77) && dport == 8080`). Kept as structure, not text, so the
//! one built from SQL can be written as the kernel's filter expression
//! for a perf event (PERF_EVENT_IOC_SET_FILTER; `Display`), or compiled
//! into another in-kernel program, and so it can only ever hold field
//! names the format file declared and integers: nothing from a query is
//! pasted into the text the kernel parses.

use std::fmt;

use super::format::Format;

/// A comparison operator the kernel's filter grammar knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// `field OP value`: `field` is a scalar integer field of the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmp {
    pub field: String,
    pub op: Op,
    pub value: i64,
}

/// Comparisons of which one must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnyOf(pub Vec<Cmp>);

/// Groups that must all hold; none: every event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter(pub Vec<AnyOf>);

/// At most this many comparisons: the kernel's filter text is limited to
/// a page, and a long IN list is better checked in user space.
pub const MAX_CMPS: usize = 64;

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add a group that must hold, if every comparison in it names a
    /// scalar integer field `format` has (else the group is left out: the
    /// filter only ever lets more events through, never fewer) and the
    /// whole stays within [`MAX_CMPS`]. True if added.
    pub fn require(&mut self, format: &Format, group: AnyOf) -> bool {
        let known = |c: &Cmp| {
            format.field(&c.field).is_some_and(|f| {
                f.layout == super::format::Layout::Scalar
                    && matches!(f.size, 1 | 2 | 4 | 8)
                    && !f.name.starts_with("common_")
            })
        };
        let count: usize = self.0.iter().map(|g| g.0.len()).sum();
        if group.0.is_empty() || !group.0.iter().all(known) || count + group.0.len() > MAX_CMPS {
            return false;
        }
        if !self.0.contains(&group) {
            self.0.push(group);
        }
        true
    }
}

impl fmt::Display for Filter {
    /// The kernel's filter expression (tracefs `events/.../filter` syntax).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" && ")?;
            }
            let paren = self.0.len() > 1 && group.0.len() > 1;
            if paren {
                f.write_str("(")?;
            }
            for (j, c) in group.0.iter().enumerate() {
                if j > 0 {
                    f.write_str(" || ")?;
                }
                write!(f, "{} {} {}", c.field, c.op.text(), c.value)?;
            }
            if paren {
                f.write_str(")")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::format::parse;

    fn cmp(field: &str, op: Op, value: i64) -> Cmp {
        Cmp { field: field.into(), op, value }
    }

    #[test]
    fn writes_the_kernel_grammar_and_keeps_only_known_scalar_fields() {
        let f = parse(include_str!("../../../../tests/fixtures/tracepoints/skb_kfree_skb.format")).unwrap();
        let mut filter = Filter::default();
        assert!(filter.require(&f, AnyOf(vec![cmp("reason", Op::Eq, 2), cmp("reason", Op::Eq, 77)])));
        assert!(filter.require(&f, AnyOf(vec![cmp("protocol", Op::Eq, 0x800)])));
        // Unknown field, a common_ field, an empty group: left out.
        assert!(!filter.require(&f, AnyOf(vec![cmp("reason", Op::Eq, 1), cmp("nope", Op::Eq, 1)])));
        assert!(!filter.require(&f, AnyOf(vec![cmp("common_pid", Op::Eq, 1)])));
        assert!(!filter.require(&f, AnyOf(vec![])));
        assert_eq!(filter.to_string(), "(reason == 2 || reason == 77) && protocol == 2048");
        let one = Filter(vec![AnyOf(vec![cmp("reason", Op::Ge, 3), cmp("reason", Op::Ne, 9)])]);
        assert_eq!(one.to_string(), "reason >= 3 || reason != 9");
        assert!(Filter::default().is_empty());
    }

    #[test]
    fn stays_within_the_cap() {
        let f = parse(include_str!("../../../../tests/fixtures/tracepoints/skb_kfree_skb.format")).unwrap();
        let mut filter = Filter::default();
        let many = AnyOf((0..MAX_CMPS as i64 + 1).map(|v| cmp("reason", Op::Eq, v)).collect());
        assert!(!filter.require(&f, many));
        assert!(filter.is_empty());
    }
}
