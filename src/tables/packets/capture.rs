//! `packets`: a live capture of the current network namespace, one row per
//! packet, for as long as the query reads it and never longer than
//! `--capture-for` (10 s unless given; said on stderr when the capture
//! starts). A LIMIT ends it at that many rows.
//!
//! Pushed down: `interface = 'NAME'` binds the capture to that interface
//! (Exact); everything else is filtered by DataFusion after capture.

use std::collections::HashMap;
use std::time::Instant;

use datafusion::logical_expr::Expr;

use super::{append, Col, Meta};
use crate::collect::packets::{decode, Direction};
use crate::collect::packets::flows::Flows;
use crate::collect::packets::live::{LiveCapture, DEFAULT_DURATION};
use crate::tables::columns::{ColumnDef, RowBuilder};
use crate::tables::filters::{as_str, column_in_literals};
use crate::tables::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::tables::live_table::LiveSource;
use crate::tables::SourceOptions;

pub const NAME: &str = "packets";
pub const ABOUT: &str = "Packets captured live while the query runs (tcpdump), headers only, bounded by --capture-for (default 10 s) or LIMIT";

#[derive(Debug)]
pub struct PacketsTable {
    options: SourceOptions,
}

impl PacketsTable {
    pub fn new(options: SourceOptions) -> Self {
        PacketsTable { options }
    }
}

/// The one interface `interface = '...'` names, if a filter does.
fn pinned_interface(filters: &[&Expr]) -> Option<String> {
    filters.iter().find_map(|f| match column_in_literals(f) {
        Some(("interface", v)) if v.len() == 1 => as_str(v[0]).map(str::to_string),
        _ => None,
    })
}

fn is_interface_filter(f: &Expr) -> bool {
    matches!(column_in_literals(f), Some(("interface", v)) if v.len() == 1 && as_str(v[0]).is_some())
}

impl LiveSource for PacketsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        filters.iter().map(|f| is_interface_filter(f)).collect()
    }

    fn exact(&self, filter: &Expr) -> bool {
        is_interface_filter(filter)
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let interface = pinned_interface(&filters.iter().collect::<Vec<_>>());
        let duration = self.options.capture_for.unwrap_or(DEFAULT_DURATION);
        let all_netns = self.options.all_netns();
        let projection = projection.cloned();
        let on = interface.clone().unwrap_or_else(|| "every interface".into());
        let label = format!("packets: AF_PACKET on {} for {} (limit {limit:?})", crate::notice::escape_controls(&on), humantime::format_duration(duration));
        LivePartition::projected(Col::DEFS, projection.clone().as_deref(), label, move |sink| {
            if all_netns {
                crate::notice::warn_once("packets-netns", "packets captures in the current network namespace only (run sockql inside another with ip netns exec)");
            }
            let ifindex = match &interface {
                None => 0,
                Some(name) => match nix::net::if_::if_nametoindex(name.as_str()) {
                    Ok(i) => i,
                    // No such interface: no packet can match.
                    Err(_) => return Ok(()),
                },
            };
            let mut cap = LiveCapture::open(ifindex)?;
            crate::notice::note_once(
                "packets-capture",
                format!("capturing on {on} for {} (--capture-for; a LIMIT or Ctrl-C ends it sooner)", humantime::format_duration(duration)),
            );
            let deadline = Instant::now() + duration;
            let rows = RowBuilder::new(Col::DEFS, projection.as_deref(), BATCH_ROWS);
            let mut out = Emitter::new(rows, sink, limit);
            let mut flows = Flows::default();
            let mut names: HashMap<u32, Option<String>> = HashMap::new();
            let mut frame = 0u64;
            while !out.done() && Instant::now() < deadline {
                let Some(p) = cap.next_packet()? else { continue };
                let name = names
                    .entry(p.ifindex)
                    .or_insert_with(|| nix::net::if_::if_indextoname(p.ifindex).ok().map(|n| n.to_string_lossy().into_owned()));
                // On loopback the kernel hands every packet over twice, as
                // sent and as received; libpcap (so tcpdump) keeps one.
                if p.direction == Direction::Out && name.as_deref() == Some("lo") {
                    continue;
                }
                frame += 1;
                let d = decode::decode_network(p.ether_type, p.data);
                let meta = Meta {
                    ts_ns: p.ts_ns,
                    interface: name.as_deref(),
                    ifindex: Some(p.ifindex),
                    direction: Some(p.direction),
                    length: p.length,
                    captured_length: p.data.len() as u32,
                };
                append(&mut out.rows, &mut flows, frame, &meta, &d);
                if out.end_row()?.is_break() {
                    break;
                }
            }
            if let Some((_, dropped)) = cap.statistics().filter(|s| s.1 > 0) {
                crate::notice::warn_once("packets-drops", format!("the kernel dropped {dropped} packets this capture could not keep up with"));
            }
            out.finish()
        })
    }
}
