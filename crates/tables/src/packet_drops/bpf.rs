//! The eBPF reader's rows: each [`PacketDrop`] the program hands over,
//! with its namespace, interface, headers and socket named, listened to
//! until the stream's bound, a LIMIT or Ctrl-C, as `tracepoints.rs`
//! listens to perf rings (read at every 100 ms tick and once more at the
//! end, so none that happened within the bound is left unread).

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::Duration;

use super::context::Context;
use super::{Col, Common, Comms, Plan};
use crate::container_fill::{Cols, ContainerLookup};
use crate::live::Emitter;
use crate::streams;
use sockql_collect::trace::bpf::{DropReader, PacketDrop};

/// An IP protocol number as the row names it.
fn l4_name(protocol: u8) -> Option<&'static str> {
    Some(match protocol {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "ipv6-icmp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

/// Everything a row needs besides the drop.
struct Rows<'p> {
    plan: &'p Plan,
    common: Common,
    context: Context,
    comms: Comms,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC: the drop's time in UTC.
    offset: i64,
    /// The containers rows are named by (read only when projected).
    containers: ContainerLookup,
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

impl Rows<'_> {
    /// Append `d`'s row (`lost`: events lost before it), or skip a drop
    /// of a namespace the scan does not cover.
    fn row(
        &mut self,
        d: &PacketDrop,
        lost: u64,
        out: &mut Emitter<'_>,
        failed: &mut Option<anyhow::Error>,
    ) -> ControlFlow<()> {
        use Col::*;
        let netns = d.netns.map(u64::from);
        // The kernel kept only these already (with those of no known
        // namespace); the check also covers lists it could not hold.
        if !self.plan.trace.covers(netns) {
            return ControlFlow::Continue(());
        }
        let r = &mut out.rows;
        self.common.write(r, (d.time_ns as i64).saturating_add(self.offset), d.reason, d.location, d.ethertype);
        let t = d.tuple;
        match t.map(|t| (t.protocol, l4_name(t.protocol))) {
            Some((_, Some(name))) => r.str(Protocol, Some(name)),
            Some((n, None)) => r.display(Protocol, &n),
            None => r.null(Protocol),
        }
        // Written in place (no String per row), and only when wanted.
        for (column, a) in [(SrcAddr, t.map(|t| t.src)), (DstAddr, t.map(|t| t.dst))] {
            match a {
                Some(a) if r.wants(column) => r.display(column, &a),
                _ => r.null(column),
            }
        }
        let ports = t.and_then(|t| t.ports);
        r.u16(SrcPort, ports.map(|p| p.0));
        r.u16(DstPort, ports.map(|p| p.1));
        r.u64(Netns, netns);
        let name = if self.plan.netns_names { netns.and_then(|n| self.context.netns_name(n)) } else { None };
        r.str(NetnsName, name);
        r.u32(Ifindex, d.ifindex);
        let interface = match (self.plan.interfaces, netns, d.ifindex) {
            // The device's namespace is the one the program read, unless
            // it was the socket's (no device: no interface either).
            (true, Some(n), Some(i)) if !d.netns_of_socket => self.context.interface(n, i),
            _ => None,
        };
        r.str(Interface, interface);
        r.bool(RxSk, Some(d.rx_sk));
        let holder = if self.plan.holders { self.context.holder(d) } else { Default::default() };
        r.u64(Inode, holder.inode);
        r.i32(Pid, holder.pid);
        r.str(Process, holder.process.as_deref());
        self.containers.fill_event(r, CONTAINER, holder.pid, netns);
        r.i32(CurrentPid, i32::try_from(d.pid).ok());
        r.i32(CurrentTid, i32::try_from(d.tid).ok());
        r.str(CurrentProcess, if self.plan.comm { self.comms.of(d.tid) } else { None });
        r.str(Reader, Some("bpf"));
        r.u64(Overruns, Some(lost));
        out.end_row_in(failed)
    }
}

/// Read every drop waiting; Break once the stream has what it wants.
fn read_waiting(
    reader: &mut DropReader,
    rows: &mut Rows<'_>,
    out: &mut Emitter<'_>,
) -> anyhow::Result<ControlFlow<()>> {
    let lost = reader.lost();
    let mut failed = None;
    reader
        .read_waiting(|d| rows.row(d, lost, out, &mut failed))
        .map_err(|e| anyhow::Error::from(e).context("reading packet drops"))?;
    out.settle(failed)
}

pub(super) fn read(plan: &Plan, mut reader: DropReader, out: &mut Emitter<'_>) -> anyhow::Result<()> {
    let mut rows = Rows {
        plan,
        common: Common::new(plan),
        context: Context::default(),
        comms: Comms::default(),
        offset: streams::realtime_offset_ns(),
        containers: ContainerLookup::for_stream(&out.rows, CONTAINER),
    };
    streams::note_start("listening", plan.trace.bound);
    let fd = reader.raw_fd();
    let state = RefCell::new((&mut reader, &mut rows, &mut *out));
    let read = || {
        let mut state = state.borrow_mut();
        let (reader, rows, out) = &mut *state;
        read_waiting(reader, rows, out)
    };
    streams::poll_for(
        &plan.trace.session,
        &[fd],
        plan.trace.bound,
        Duration::ZERO,
        |_| read(),
        || {
            if read()?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            let mut state = state.borrow_mut();
            let (_, _, out) = &mut *state;
            out.tick()?;
            Ok(out.flow())
        },
    )?;
    if !out.done() {
        // The stream ends here whether or not a LIMIT is reached.
        let _ = read_waiting(&mut reader, &mut rows, out)?;
    }
    let lost = reader.lost();
    if lost > 0 {
        sockql_collect::notice::warn_once(
            "packet drops-lost",
            format!("packet drops: {lost} events lost: the kernel's ring was full; the overruns column counts them"),
        );
    }
    Ok(())
}
