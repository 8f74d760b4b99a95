//! One `sockets` row from what the reader found: a sock_diag answer (every
//! column) or a /proc/net line (the rest null).

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Col, BBR_COLS, MEM_COLS, TCP_INFO_COLS};
use crate::columns::RowBuilder;
use sockql_collect::cgroups::CgroupPaths;
use sockql_collect::netns::Netns;
use sockql_collect::sock_diag::inet::{self, InetDiagMsg};
use sockql_collect::sock_diag::{family_name, protocol_name};
use sockql_collect::{proc_net, tcp_state};

/// Interface index → name, cached per scan.
#[derive(Default)]
pub(super) struct Interfaces(HashMap<u32, Option<String>>);

impl Interfaces {
    fn name(&mut self, index: u32) -> Option<&str> {
        if index == 0 {
            return None;
        }
        self.0
            .entry(index)
            .or_insert_with(|| {
                // An index with no interface (it went away) shows as the number.
                Some(
                    nix::net::if_::if_indextoname(index)
                        .map_or_else(|_| index.to_string(), |n| n.to_string_lossy().into_owned()),
                )
            })
            .as_deref()
    }
}

/// The columns both sources fill.
struct CommonRow {
    protocol: u8,
    family: u8,
    state: u8,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    recv_q: u32,
    send_q: Option<u32>,
    uid: u32,
    inode: u64,
    timer: u8,
    expires_ms: u32,
    retransmits: u32,
}

fn timer_name(timer: u8) -> Option<&'static str> {
    match timer {
        1 => Some("on"),
        2 => Some("keepalive"),
        3 => Some("timewait"),
        4 => Some("persist"),
        _ => None,
    }
}

fn append_common(r: &mut RowBuilder, c: &CommonRow, ns: &Netns) {
    use Col::*;
    r.u64(Col::Netns as usize, Some(ns.inode));
    r.str(NetnsName as usize, ns.name.as_deref());
    r.str(Protocol as usize, Some(protocol_name(c.protocol)));
    r.str(Family as usize, Some(family_name(c.family)));
    r.str(State as usize, Some(tcp_state::name(c.state)));
    r.display(LocalAddr as usize, &c.local.0);
    r.u16(LocalPort as usize, Some(c.local.1));
    r.display(RemoteAddr as usize, &c.remote.0);
    r.u16(RemotePort as usize, Some(c.remote.1));
    r.u32(RecvQ as usize, Some(c.recv_q));
    r.u32(SendQ as usize, c.send_q);
    r.u32(Uid as usize, Some(c.uid));
    r.u64(Inode as usize, Some(c.inode));
    let timer = timer_name(c.timer);
    r.str(Timer as usize, timer);
    r.u32(TimerExpiresMs as usize, timer.map(|_| c.expires_ms));
    r.u32(Retransmits as usize, Some(c.retransmits));
    if r.wants(TimerText as usize) {
        let text = timer.map(|t| format!("({t},{},{})", ss_ms_timer(c.expires_ms), c.retransmits));
        r.str(TimerText as usize, text.as_deref());
    }
    // pid and process are filled after the dump: see `with_owners`.
}

/// Time left on a timer as `ss -o` writes it: minutes, then seconds
/// ("sec" when whole), then milliseconds; under ten minutes seconds are
/// kept, under ten seconds milliseconds are ("6.692ms" is 6 s 692 ms).
pub(super) fn ss_ms_timer(ms: u32) -> String {
    let (minutes, mut secs, mut msecs) = (ms / 60_000, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if minutes > 0 {
        msecs = 0;
        out.push_str(&format!("{minutes}min"));
        if minutes > 9 {
            secs = 0;
        }
    }
    if secs > 0 {
        if secs > 9 {
            msecs = 0;
        }
        out.push_str(&format!("{secs}{}", if msecs > 0 { "." } else { "sec" }));
    }
    if msecs > 0 {
        out.push_str(&format!("{msecs:03}ms"));
    }
    out
}

fn us_to_ms(us: Option<u32>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

/// ss's "send": the rate the congestion window allows, cwnd * mss * 8 / rtt.
fn send_bps(cwnd: Option<u32>, mss: Option<u32>, rtt_us: Option<u32>) -> Option<u64> {
    let (cwnd, mss, rtt) = (cwnd?, mss?, rtt_us?);
    (cwnd != 0 && mss != 0 && rtt != 0).then(|| (cwnd as f64 * mss as f64 * 8e6 / rtt as f64).round() as u64)
}

/// Which groups of columns a scan builds, decided once per scan: a group
/// with no projected column is not decoded at all, so `count(*)` reads
/// nothing of each answer and `GROUP BY state` only its state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    any: bool,
    tcp_info: bool,
    bbr: bool,
    mem: bool,
}

impl Wanted {
    pub(super) fn of(r: &RowBuilder) -> Self {
        let any_of = |cols: &[Col]| cols.iter().any(|&c| r.wants(c as usize));
        Wanted {
            any: (0..Col::DEFS.len()).any(|c| r.wants(c)),
            tcp_info: any_of(TCP_INFO_COLS),
            bbr: any_of(BBR_COLS),
            mem: any_of(MEM_COLS),
        }
    }
}

pub(super) fn append_diag(
    r: &mut RowBuilder,
    wanted: Wanted,
    protocol: u8,
    m: &InetDiagMsg<'_>,
    ifs: &mut Interfaces,
    cgroups: &CgroupPaths,
    ns: &Netns,
) {
    use Col::*;
    if !wanted.any {
        return;
    }
    let common = CommonRow {
        protocol,
        family: m.family(),
        state: m.state(),
        local: (m.local_addr(), m.local_port()),
        remote: (m.remote_addr(), m.remote_port()),
        recv_q: m.recv_q(),
        send_q: Some(m.send_q()),
        uid: m.uid(),
        inode: m.inode() as u64,
        timer: m.timer(),
        expires_ms: m.expires_ms(),
        retransmits: m.retransmits() as u32,
    };
    append_common(r, &common, ns);
    if r.wants(Interface as usize) {
        r.str(Interface as usize, ifs.name(m.interface()));
    }
    r.u64(Cookie as usize, Some(m.cookie()));
    if wanted.tcp_info {
        append_tcp_info(r, m);
    }
    if wanted.bbr {
        let bbr = m.bbr_info();
        r.u64(BbrBwBps as usize, bbr.map(|b| b.bw_bytes_per_sec.saturating_mul(8)));
        r.f64(BbrMinRttMs as usize, bbr.map(|b| b.min_rtt_us as f64 / 1000.0));
        r.f64(BbrPacingGain as usize, bbr.map(|b| b.pacing_gain as f64 / 256.0));
        r.f64(BbrCwndGain as usize, bbr.map(|b| b.cwnd_gain as f64 / 256.0));
    }
    if r.wants(Congestion as usize) {
        r.str(Congestion as usize, m.congestion());
    }
    if wanted.mem {
        let mem = m.meminfo();
        let mi = |f: &dyn Fn(&inet::MemInfo<'_>) -> Option<u32>| mem.as_ref().and_then(f);
        r.u32(RmemAlloc as usize, mi(&|x| x.rmem_alloc()));
        r.u32(RcvBuf as usize, mi(&|x| x.rcv_buf()));
        r.u32(WmemAlloc as usize, mi(&|x| x.wmem_alloc()));
        r.u32(SndBuf as usize, mi(&|x| x.snd_buf()));
        r.u32(FwdAlloc as usize, mi(&|x| x.fwd_alloc()));
        r.u32(WmemQueued as usize, mi(&|x| x.wmem_queued()));
        r.u32(Drops as usize, mi(&|x| x.drops()));
        r.u32(OptMem as usize, mi(&|x| x.opt_mem()));
        r.u32(Backlog as usize, mi(&|x| x.backlog()));
    }
    // Each of these looks its attribute up: only when projected.
    let attr = |r: &RowBuilder, c: Col| r.wants(c as usize);
    if attr(r, Fwmark) {
        r.u32(Fwmark as usize, m.mark());
    }
    if attr(r, Tos) {
        r.u8(Tos as usize, m.tos());
    }
    if attr(r, Tclass) {
        r.u8(Tclass as usize, m.tclass());
    }
    if attr(r, ClassId) {
        r.u32(ClassId as usize, m.class_id());
    }
    if attr(r, CgroupId) {
        r.u64(CgroupId as usize, m.cgroup_id());
    }
    if attr(r, CgroupPath) {
        r.str(CgroupPath as usize, m.cgroup_id().and_then(|id| cgroups.path(id)));
    }
}

/// The tcp_info columns (INET_DIAG_INFO).
fn append_tcp_info(r: &mut RowBuilder, m: &InetDiagMsg<'_>) {
    use Col::*;
    let ti = m.tcp_info();
    // A listener has no connection: the kernel fills only its congestion
    // window and (as unacked) its accept queue, and ss -i prints only cwnd
    // for it. Its other tcp_info columns are null, not 0, so that
    // min(rtt_ms) and the like are not dragged to 0 by listeners.
    let conn = m.state() != tcp_state::LISTEN;
    let t = |f: &dyn Fn(&inet::TcpInfo<'_>) -> Option<u32>| ti.as_ref().and_then(f);
    let t64 = |f: &dyn Fn(&inet::TcpInfo<'_>) -> Option<u64>| ti.as_ref().and_then(f);
    let c = |v: Option<u32>| v.filter(|_| conn);
    let c64 = |v: Option<u64>| v.filter(|_| conn);
    // Estimates the kernel has not made yet read 0 (no RTT sample before
    // the handshake ends): null, as ss omits them.
    let made = |v: Option<u32>| c(v).filter(|&x| x != 0);
    let rtt = made(t(&|i| i.rtt_us()));
    r.f64(RttMs as usize, us_to_ms(rtt));
    r.f64(RttvarMs as usize, us_to_ms(rtt.and(t(&|i| i.rttvar_us()))));
    r.f64(RtoMs as usize, us_to_ms(made(t(&|i| i.rto_us()))));
    r.u32(Mss as usize, made(t(&|i| i.snd_mss())));
    r.u32(Cwnd as usize, t(&|i| i.snd_cwnd()));
    r.u32(Ssthresh as usize, made(t(&|i| i.snd_ssthresh())).filter(|&v| v < 0x7fff_ffff));
    r.u32(TotalRetrans as usize, c(t(&|i| i.total_retrans())));
    r.u32(Lost as usize, c(t(&|i| i.lost())));
    r.u32(Unacked as usize, t(&|i| i.unacked()));
    r.u64(BytesSent as usize, c64(t64(&|i| i.bytes_sent())));
    r.u64(BytesAcked as usize, c64(t64(&|i| i.bytes_acked())));
    r.u64(BytesReceived as usize, c64(t64(&|i| i.bytes_received())));
    r.u64(BytesRetrans as usize, c64(t64(&|i| i.bytes_retrans())));
    r.u32(SegsIn as usize, c(t(&|i| i.segs_in())));
    r.u32(SegsOut as usize, c(t(&|i| i.segs_out())));
    r.u32(LastSendMs as usize, c(t(&|i| i.last_data_sent_ms())));
    r.u32(LastRecvMs as usize, c(t(&|i| i.last_data_recv_ms())));
    r.u32(LastAckMs as usize, c(t(&|i| i.last_ack_recv_ms())));
    r.u64(DeliveryRateBps as usize, c64(t64(&|i| i.delivery_rate())).map(|v| v.saturating_mul(8)));
    r.u64(
        PacingRateBps as usize,
        c64(t64(&|i| i.pacing_rate())).filter(|&v| v != u64::MAX).map(|v| v.saturating_mul(8)),
    );
    r.f64(MinRttMs as usize, us_to_ms(made(t(&|i| i.min_rtt_us()))).filter(|&v| v < 4_294_967.0));
    r.u64(BusyMs as usize, c64(t64(&|i| i.busy_time_us())).map(|v| v / 1000));
    let options = ti.as_ref().and_then(|i| i.options()).filter(|_| conn);
    let opt = |bit: u8| options.map(|o| o & bit != 0);
    let wscale = ti.as_ref().and_then(|i| i.wscale()).filter(|_| opt(4) == Some(true));
    r.u8(SndWscale as usize, wscale.map(|w| w.0));
    r.u8(RcvWscale as usize, wscale.map(|w| w.1));
    r.bool(OptTs as usize, opt(1));
    r.bool(OptSack as usize, opt(2));
    r.bool(OptEcn as usize, opt(8));
    r.bool(OptEcnSeen as usize, opt(16));
    r.u32(Pmtu as usize, made(t(&|i| i.pmtu())));
    r.u32(RcvMss as usize, made(t(&|i| i.rcv_mss())));
    r.u32(AdvMss as usize, made(t(&|i| i.advmss())));
    r.u32(RcvSpace as usize, made(t(&|i| i.rcv_space())));
    r.u32(RcvSsthresh as usize, made(t(&|i| i.rcv_ssthresh())));
    // Older kernels' tcp_info ends before snd_wnd: the offset reads None.
    r.u32(SndWnd as usize, c(t(&|i| i.snd_wnd())));
    r.f64(RcvRttMs as usize, us_to_ms(made(t(&|i| i.rcv_rtt_us()))));
    r.u32(NotsentBytes as usize, c(t(&|i| i.notsent_bytes())));
    r.u32(Delivered as usize, c(t(&|i| i.delivered())));
    r.u32(DeliveredCe as usize, c(t(&|i| i.delivered_ce())));
    r.bool(AppLimited as usize, ti.as_ref().and_then(|i| i.app_limited()).filter(|_| conn));
    r.u32(Reordering as usize, c(t(&|i| i.reordering())));
    r.u32(DsackDups as usize, c(t(&|i| i.dsack_dups())));
    r.u8(Backoff as usize, ti.as_ref().and_then(|i| i.backoff()).filter(|_| conn));
    r.f64(AtoMs as usize, us_to_ms(c(t(&|i| i.ato_us()))));
    r.u32(Sacked as usize, c(t(&|i| i.sacked())));
    r.u32(Retrans as usize, c(t(&|i| i.retrans())));
    r.u32(DataSegsIn as usize, c(t(&|i| i.data_segs_in())));
    r.u32(DataSegsOut as usize, c(t(&|i| i.data_segs_out())));
    r.u64(SendBps as usize, send_bps(t(&|i| i.snd_cwnd()), t(&|i| i.snd_mss()), rtt).filter(|_| conn));
    r.u64(
        MaxPacingRateBps as usize,
        c64(t64(&|i| i.max_pacing_rate())).filter(|&v| v != u64::MAX).map(|v| v.saturating_mul(8)),
    );
    r.u64(RwndLimitedMs as usize, c64(t64(&|i| i.rwnd_limited_us())).map(|v| v / 1000));
    r.u64(SndbufLimitedMs as usize, c64(t64(&|i| i.sndbuf_limited_us())).map(|v| v / 1000));
    r.u32(ReordSeen as usize, c(t(&|i| i.reord_seen())));
    r.u32(RcvOoopack as usize, c(t(&|i| i.rcv_ooopack())));
    r.bool(OptFastopen as usize, opt(32));
}

/// Fill every column the /proc/net row does not carry with null.
pub(super) fn append_proc(
    r: &mut RowBuilder,
    protocol: u8,
    family: u8,
    s: &proc_net::ProcNetSocket,
    hz: u64,
    ns: &Netns,
) {
    let common = CommonRow {
        protocol,
        family,
        state: s.state,
        local: (s.local_addr, s.local_port),
        remote: (s.remote_addr, s.remote_port),
        recv_q: s.rx_queue,
        // /proc/net/tcp has no backlog for listeners; it prints 0 there.
        send_q: if s.state == 10 && protocol == inet::IPPROTO_TCP { None } else { Some(s.tx_queue) },
        uid: s.uid,
        inode: s.inode,
        timer: s.timer,
        expires_ms: (s.timer_ticks.saturating_mul(1000) / hz.max(1)).min(u32::MAX as u64) as u32,
        retransmits: s.retransmits,
    };
    append_common(r, &common, ns);
    for c in TCP_INFO_COLS.iter().chain(MEM_COLS).chain(BBR_COLS).chain(&[
        Col::Congestion,
        Col::Interface,
        Col::Cookie,
        Col::Fwmark,
        Col::Tos,
        Col::Tclass,
        Col::ClassId,
        Col::CgroupId,
        Col::CgroupPath,
    ]) {
        match c.def_ty() {
            crate::columns::Ty::F64 => r.f64(*c as usize, None),
            crate::columns::Ty::U64 => r.u64(*c as usize, None),
            crate::columns::Ty::U32 => r.u32(*c as usize, None),
            crate::columns::Ty::Utf8 => r.str(*c as usize, None),
            crate::columns::Ty::U8 => r.u8(*c as usize, None),
            crate::columns::Ty::Bool => r.bool(*c as usize, None),
            other => unreachable!("no {other:?} column among the sock_diag-only ones"),
        }
    }
}

impl Col {
    fn def_ty(self) -> crate::columns::Ty {
        Self::DEFS[self as usize].ty
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timers_read_as_ss_prints_them() {
        // Values and texts taken from ss -o on this machine.
        assert_eq!(super::ss_ms_timer(6692), "6.692ms");
        assert_eq!(super::ss_ms_timer(699_668), "11min");
        assert_eq!(super::ss_ms_timer(64_668), "1min4sec");
        assert_eq!(super::ss_ms_timer(200), "200ms");
        assert_eq!(super::ss_ms_timer(59_000), "59sec");
        assert_eq!(super::ss_ms_timer(12_345), "12sec");
    }
}
