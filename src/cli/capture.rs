//! `sockql capture --out FILE [FILTER]`: live packets written as pcap.
//!
//! The filter is SQL over the `packets` table, planned by DataFusion so it
//! reads exactly as it would in a query; only conditions the capture
//! applies itself (interface, namespace, and the kernel filter's protocol,
//! ports and addresses) are accepted, since no row is built to check the
//! rest against. A kernel-filtered condition is a pre-filter, so each
//! packet is checked again here against the decoded headers before it is
//! written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{utils::split_conjunction, Expr, LogicalPlan};

use crate::collect::packets::bpf::Cond;
use crate::collect::packets::decode;
use crate::collect::packets::live::snap_len;
use crate::collect::packets::write::PcapOut;
use crate::query::engine::Engine;
use crate::tables::packets::capture::CapturePlan;

/// The filters the planner handed to the `packets` scan, and whatever it
/// left above it.
fn scan_filters(plan: &LogicalPlan) -> (Vec<Expr>, Vec<Expr>) {
    let mut pushed = Vec::new();
    let mut above = Vec::new();
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) => pushed.extend(scan.filters.iter().cloned()),
            LogicalPlan::Filter(f) => above.extend(split_conjunction(&f.predicate).into_iter().cloned()),
            _ => {}
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    (pushed, above)
}

/// Does the decoded packet pass the kernel filter's conditions? (The
/// kernel program passes a superset; this is the exact check.)
fn passes(conds: &[Cond], d: &decode::Decoded) -> bool {
    conds.iter().all(|c| match c {
        Cond::Protocol(p) => d.ip_protocol == Some(*p),
        Cond::SrcPort(lo, hi) => d.src_port.is_some_and(|p| (*lo..=*hi).contains(&p)),
        Cond::DstPort(lo, hi) => d.dst_port.is_some_and(|p| (*lo..=*hi).contains(&p)),
        Cond::SrcAddr(a) => d.src_addr == Some(*a),
        Cond::DstAddr(a) => d.dst_addr == Some(*a),
    })
}

pub async fn to_pcap(engine: &Engine, filter: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let sql = format!("SELECT frame FROM packets{}", filter.map(|f| format!(" WHERE {f}")).unwrap_or_default());
    let state = engine.context().state();
    let plan = state.create_logical_plan(&sql).await.context("the capture filter")?;
    let plan = state.optimize(&plan)?;
    let (pushed, above) = scan_filters(&plan);
    // `packets` takes every filter (a stream applies them itself), so
    // each one pushed must be one the capture applies, and any left above
    // is refused.
    for f in pushed.iter().chain(&above) {
        if !pushed.contains(f) || !CapturePlan::takes(f) {
            bail!(
                "capture --out cannot apply {f}: it takes conditions on protocol, src_port/dst_port, src_addr/dst_addr, interface and netns/netns_name, joined with AND"
            );
        }
    }
    let plan = CapturePlan::new(&pushed, engine.source());
    // A filter that can never match is refused before the file exists.
    plan.check().context("the capture filter")?;
    let conds = plan.conds.clone().unwrap_or_default();
    // A new file only, never through a link, readable by its group.
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    let mut pcap = PcapOut::new(std::io::BufWriter::new(file), snap_len(plan.payload))?;
    // The first Ctrl-C ends the capture like a query's, and the file is
    // completed.
    crate::tables::streams::end_on_ctrl_c(engine.streams().clone());
    let written = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        plan.run(
            || Ok(std::ops::ControlFlow::Continue(())),
            |_, _, p| {
                if passes(&conds, &decode::decode_network(p.ether_type, p.data)) {
                    pcap.write(p)?;
                }
                Ok(std::ops::ControlFlow::Continue(()))
            },
        )?;
        let written = pcap.packets();
        pcap.into_inner().flush()?;
        Ok(written)
    })
    .await??;
    crate::stderrln!(
        "sockql capture: {written} packets written to {}",
        crate::notice::escape_controls(&out.display().to_string())
    );
    Ok(())
}
