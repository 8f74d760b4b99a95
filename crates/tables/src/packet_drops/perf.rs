//! The perf reader's rows: the tracepoint's own record (reason, location,
//! protocol, rx_sk) and the sample's task. It names no namespace, so its
//! rows are the whole host's and their namespace, interface, header and
//! socket columns null.

use std::ops::ControlFlow;

use super::{Col, Common, Comms, Plan};
use crate::live::Emitter;
use sockql_collect::trace::event::need;

pub(super) fn read(plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
    let Some(Ok(format)) = plan.trace.points.first().map(|p| &p.format) else {
        // Missing tracepoint or no tracefs: `read` says so.
        return plan.trace.read("packet drops", out, |_, _, _| ControlFlow::Continue(()));
    };
    let fields = (|| {
        Ok::<_, sockql_collect::trace::TraceError>((
            need(format, "skb", "reason", &[4])?.clone(),
            need(format, "skb", "location", &[8])?.clone(),
            need(format, "skb", "protocol", &[2])?.clone(),
        ))
    })();
    let (reason_f, location_f, proto_f) = match fields {
        Ok(f) => f,
        Err(e) if e.is_missing() => {
            sockql_collect::notice::note_once("packet-drops-field", format!("packet drops: {e}; no rows"));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    // Older kernels have no rx_sk: the column is null there.
    let rx_sk_f = format.field("rx_sk").filter(|f| f.size == 8).cloned();
    let mut common = Common::new(plan);
    let mut comms = Comms::default();
    plan.trace.read("packet drops", out, |hit, out, failed| {
        use Col::*;
        let s = hit.sample;
        let (Some(code), Some(addr), Some(ethertype)) = (s.u64(&reason_f), s.u64(&location_f), s.u64(&proto_f)) else {
            // A record too short for its own format: not a drop we can show.
            return ControlFlow::Continue(());
        };
        let r = &mut out.rows;
        common.write(r, hit.ts_ns, code as u32, addr, ethertype as u16);
        for c in [
            Protocol,
            SrcAddr,
            SrcPort,
            DstAddr,
            DstPort,
            Netns,
            NetnsName,
            Ifindex,
            Interface,
            Inode,
            Pid,
            Process,
            Container,
            ContainerId,
        ] {
            r.null(c);
        }
        r.bool(RxSk, rx_sk_f.as_ref().and_then(|f| s.u64(f)).map(|p| p != 0));
        r.i32(CurrentPid, i32::try_from(s.pid).ok());
        r.i32(CurrentTid, i32::try_from(s.tid).ok());
        r.str(CurrentProcess, if plan.comm { comms.of(s.tid) } else { None });
        r.str(Reader, Some("perf"));
        r.u64(Overruns, Some(hit.lost));
        out.end_row_in(failed)
    })
}
