//! What `net_counters` and `sockstat` share: per-namespace (group, name,
//! value) readings of a /proc/net text file. Each table file declares its
//! columns in this order: group, name, value, netns, netns_name.

use crate::live::Emitter;
use crate::scope;
use sockql_collect::counters::Counter;
use sockql_collect::netns::Netns;

/// A counter table's reader of the calling thread's namespace.
pub type Reader = fn() -> Result<Vec<Counter>, sockql_collect::Error>;

/// What EXPLAIN shows for a scan of table `name`.
pub fn label(name: &str, targets: &[Netns]) -> String {
    format!("{name}: /proc/net {}", scope::describe(targets))
}

/// One row per counter `read` gives in each namespace.
pub fn read(targets: &[Netns], read: Reader, out: &mut Emitter<'_>) -> anyhow::Result<()> {
    scope::each(targets, |ns| {
        for c in read()? {
            // The shared layout: group, name, value, netns, netns_name.
            out.rows.str(0, Some(&c.mib));
            out.rows.str(1, Some(&c.name));
            out.rows.i64(2, Some(c.value));
            out.rows.u64(3, Some(ns.inode));
            out.rows.str(4, ns.name.as_deref());
            if out.end_row()?.is_break() {
                return Ok(std::ops::ControlFlow::Break(()));
            }
        }
        Ok(std::ops::ControlFlow::Continue(()))
    })
}
