//! What a TCP packet means within its connection, as Wireshark's TCP
//! analysis reads it: sequence and acknowledgement numbers relative to each
//! side's first, the window scaled by the shift its sender announced in its
//! SYN, the handshake's round trip, zero-window advertisements, and
//! Wireshark's sequence analysis (tcp_analyze_sequence_number in its
//! packet-tcp.c, read, not copied): duplicate ACKs, window updates,
//! keep-alives, window-full segments, retransmissions told apart as fast,
//! spurious or out-of-order, and the round trip from a segment to the ACK
//! that covers it exactly. The state is kept per connection while a capture is read
//! in order.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::decode::{Tcp, ACK, FIN, RST, SYN};

/// The most connections followed at once: a capture of a scan or flood
/// holds more, and the oldest half is forgotten (their packets then read as
/// if first seen), so memory stays bounded.
const MAX_FLOWS: usize = 1 << 20;

/// The most unacknowledged segments remembered per direction, as
/// Wireshark's TCP_MAX_UNACKED_SEGMENTS (a capture that misses the ACKs
/// would otherwise grow without end); further segments get no ack_rtt.
const MAX_UNACKED_PER_SIDE: usize = 10_000;
/// And across all connections, so a capture of many one-way flows stays
/// within about 64 MB of this state.
const MAX_UNACKED_TOTAL: usize = 4 << 20;

/// One direction of a connection.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    /// The sequence number relative ones count from.
    base: Option<u32>,
    /// The window shift its SYN announced: Some(None) for a SYN without
    /// the option (no scaling), None before its SYN was seen.
    wscale: Option<Option<u8>>,
    /// One past the highest sequence number sent (0: none yet), and when.
    nextseq: u32,
    nextseq_ns: i64,
    /// The last acknowledgement number sent, and when.
    lastack: u32,
    lastack_ns: i64,
    /// The last window sent (scaled).
    window: u32,
    /// Duplicate ACKs in a row.
    dupacks: u32,
    /// What the last segment was, for the ACKs that answer it.
    last_keepalive: bool,
    last_zero_window_probe: bool,
}

/// Sequence-space comparisons that survive wrap-around.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[derive(Debug, Default)]
struct Flow {
    /// Indexed by which side sent: 0 the lower endpoint, 1 the higher.
    sides: [Side; 2],
    syn_ns: Option<i64>,
    synack_ns: Option<i64>,
    handshake_rtt_ns: Option<i64>,
    last_seen: u64,
    /// Per side, the segments (data, SYN or FIN) it sent that no ACK has
    /// covered yet, oldest first: where each ends and when it was seen.
    unacked: [VecDeque<(u32, i64)>; 2],
}

/// What the analysis adds to one TCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Analysis {
    pub rel_seq: u32,
    /// None without ACK.
    pub rel_ack: Option<u32>,
    /// What relative numbers in the peer's sequence space count from (the
    /// base of rel_ack and of relative SACK blocks): 0 while that space is
    /// unknown, as tshark's rev->base_seq.
    pub peer_base: u32,
    /// The window in bytes: scaled when both SYNs were seen (a SYN's own
    /// window is never scaled), else as sent.
    pub window: u32,
    /// SYN to the ACK of the SYN/ACK (tshark's tcp.analysis.initial_rtt),
    /// on that ACK and every later packet of the connection (tshark shows
    /// it on most of them, not all).
    pub handshake_rtt_ms: Option<f64>,
    /// A window of 0 on a packet without SYN, FIN or RST.
    pub zero_window: bool,
    /// Wireshark's tcp.analysis.duplicate_ack: same ACK, window and
    /// sequence as the sender's previous segment, no data.
    pub dup_ack: bool,
    /// tcp.analysis.retransmission: data (or SYN/FIN) that does not advance
    /// the sequence, including fast and spurious ones (not out-of-order).
    pub retransmission: bool,
    /// tcp.analysis.fast_retransmission: after two or more duplicate ACKs
    /// for it, within 20 ms of the last.
    pub fast_retransmission: bool,
    /// tcp.analysis.spurious_retransmission: data the peer had already acknowledged.
    pub spurious_retransmission: bool,
    /// tcp.analysis.out_of_order: arrived within the handshake RTT (3 ms
    /// without one) of the highest sequence, not a resend of it.
    pub out_of_order: bool,
    /// tcp.analysis.keep_alive.
    pub keep_alive: bool,
    /// tcp.analysis.window_update: no data, same ACK, a new window.
    pub window_update: bool,
    /// tcp.analysis.window_full: data that reaches the right edge of the
    /// window the peer last advertised (its scaling known).
    pub window_full: bool,
    /// tcp.analysis.ack_rtt: on an ACK that ends exactly where a segment
    /// of the peer's ended, the time since the first such segment.
    pub ack_rtt_ms: Option<f64>,
}

/// An address and port.
type Endpoint = (IpAddr, u16);

#[derive(Debug, Default)]
pub struct Flows {
    /// By (lower endpoint, higher endpoint).
    flows: HashMap<(Endpoint, Endpoint), Flow>,
    packets: u64,
    /// Segments held in all flows' `unacked` lists.
    unacked: usize,
}

impl Flows {
    /// Follow one TCP packet from `src` to `dst`, captured at `ts_ns`.
    /// `seglen` is the TCP payload length the headers declare.
    pub fn track(&mut self, ts_ns: i64, src: Endpoint, dst: Endpoint, t: &Tcp, seglen: u32) -> Analysis {
        self.packets += 1;
        if self.flows.len() >= MAX_FLOWS {
            self.forget_oldest_half();
        }
        let (key, me) = if src <= dst { ((src, dst), 0) } else { ((dst, src), 1) };
        let flow = self.flows.entry(key).or_default();
        flow.last_seen = self.packets;
        let (syn, ack) = (t.flags & SYN != 0, t.flags & ACK != 0);
        // A side's base is its SYN's sequence number; seen mid-stream, one
        // before its first (so its first byte reads 1, as Wireshark does).
        if syn || flow.sides[me].base.is_none() {
            flow.sides[me].base = Some(if syn { t.seq } else { t.seq.wrapping_sub(1) });
        }
        if syn {
            flow.sides[me].wscale = Some(t.wscale);
            if ack {
                flow.synack_ns = Some(ts_ns);
            } else {
                flow.syn_ns = Some(ts_ns);
            }
        }
        if ack && flow.sides[1 - me].base.is_none() {
            flow.sides[1 - me].base = Some(t.ack_seq.wrapping_sub(1));
        }
        if !syn && ack && flow.handshake_rtt_ns.is_none() {
            if let (Some(s), Some(_)) = (flow.syn_ns, flow.synack_ns) {
                flow.handshake_rtt_ns = Some(ts_ns - s);
            }
        }
        let window = match (syn, flow.sides[me].wscale, flow.sides[1 - me].wscale) {
            (false, Some(Some(mine)), Some(Some(_))) => (t.window as u32) << mine.min(14),
            _ => t.window as u32,
        };
        let mut a = Analysis {
            rel_seq: t.seq.wrapping_sub(flow.sides[me].base.unwrap_or(t.seq)),
            rel_ack: ack.then(|| t.ack_seq.wrapping_sub(flow.sides[1 - me].base.unwrap_or(t.ack_seq))),
            peer_base: flow.sides[1 - me].base.unwrap_or(0),
            window,
            handshake_rtt_ms: flow.handshake_rtt_ns.map(|n| n as f64 / 1e6),
            zero_window: t.window == 0 && t.flags & (SYN | FIN | RST) == 0,
            ..Analysis::default()
        };
        sequence_analysis(flow, me, ts_ns, t, seglen, window, &mut a);
        self.unacked -= ack_rtt(flow, me, ts_ns, t.ack_seq, &mut a);
        if (seglen > 0 || t.flags & (SYN | FIN) != 0)
            && flow.unacked[me].len() < MAX_UNACKED_PER_SIDE
            && self.unacked < MAX_UNACKED_TOTAL
        {
            let end = t.seq.wrapping_add(seglen).wrapping_add((t.flags & (SYN | FIN) != 0) as u32);
            flow.unacked[me].push_back((end, ts_ns));
            self.unacked += 1;
        }
        a
    }

    fn forget_oldest_half(&mut self) {
        let mut ages: Vec<u64> = self.flows.values().map(|f| f.last_seen).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        self.flows.retain(|_, f| f.last_seen > cut);
        self.unacked = self.flows.values().map(|f| f.unacked[0].len() + f.unacked[1].len()).sum();
    }
}

/// Drop the peer's segments that acknowledgement number `ackno` covers;
/// where one ends exactly at it, the ACK's round trip is the time since
/// the oldest such (Wireshark walks its list newest first and keeps the
/// last match). Returns how many segments were dropped. Like Wireshark,
/// on every segment, ACK flag or not.
fn ack_rtt(flow: &mut Flow, me: usize, ts_ns: i64, ackno: u32, a: &mut Analysis) -> usize {
    let list = &mut flow.unacked[1 - me];
    let before = list.len();
    let mut sent = None;
    list.retain(|&(end, ts)| {
        if end == ackno {
            sent.get_or_insert(ts);
        }
        seq_gt(end, ackno)
    });
    if let Some(sent) = sent {
        let rtt = ts_ns - sent;
        // Wireshark shows no ack_rtt of zero.
        a.ack_rtt_ms = (rtt != 0).then(|| rtt as f64 / 1e6);
    }
    before - list.len()
}

/// Wireshark's checks, in its order, on one segment from side `me`.
fn sequence_analysis(flow: &mut Flow, me: usize, ts_ns: i64, t: &Tcp, seglen: u32, window: u32, a: &mut Analysis) {
    let (seq, ackno) = (t.seq, t.ack_seq);
    let sfr = t.flags & (SYN | FIN | RST) != 0;
    let (fwd, rev) = (flow.sides[me], flow.sides[1 - me]);
    let mut zero_window_probe = false;
    if seglen == 1 && seq == fwd.nextseq && rev.window == 0 {
        zero_window_probe = true;
    } else {
        if (seglen == 0 || seglen == 1) && seq == fwd.nextseq.wrapping_sub(1) && !sfr {
            a.keep_alive = true;
        }
        let same = seglen == 0 && seq == fwd.nextseq && ackno == fwd.lastack && !sfr;
        if same && window != 0 && window != fwd.window {
            a.window_update = true;
        }
        // The peer's window is kept scaled, so its right edge is its last
        // ACK plus that window.
        if seglen > 0
            && flow.sides[1 - me].wscale.is_some()
            && !sfr
            && seq.wrapping_add(seglen) == rev.lastack.wrapping_add(rev.window)
        {
            a.window_full = true;
        }
        // An ACK answering a keep-alive or a zero-window probe repeats the
        // last one without being a duplicate.
        let answers_probe = (window != 0 && rev.last_keepalive) || (window == 0 && rev.last_zero_window_probe);
        if same && window == fwd.window && !answers_probe && window != 0 {
            a.dup_ack = true;
            flow.sides[me].dupacks += 1;
        }
    }
    if ackno != fwd.lastack {
        flow.sides[me].dupacks = 0;
    }
    let synfin = t.flags & (SYN | FIN) != 0;
    if (seglen > 0 || synfin) && !a.keep_alive {
        let mut not_advanced = fwd.nextseq != 0 && seq_lt(seq, fwd.nextseq);
        if seglen > 1 && fwd.nextseq.wrapping_sub(1) == seq {
            not_advanced = false;
        }
        let end = seq.wrapping_add(seglen);
        if seglen > 0 && rev.lastack != 0 && !seq_gt(end, rev.lastack) {
            a.spurious_retransmission = true;
            a.retransmission = true;
        } else if not_advanced && rev.dupacks >= 2 && rev.lastack == seq && ts_ns - rev.lastack_ns < 20_000_000 {
            a.fast_retransmission = true;
            a.retransmission = true;
        } else {
            let threshold = flow.handshake_rtt_ns.filter(|&r| r > 0).unwrap_or(3_000_000);
            let next = end.wrapping_add(synfin as u32);
            if not_advanced && ts_ns - fwd.nextseq_ns < threshold && fwd.nextseq != next {
                a.out_of_order = true;
            } else if not_advanced {
                a.retransmission = true;
            }
        }
    }
    let side = &mut flow.sides[me];
    let nextseq = seq.wrapping_add(seglen).wrapping_add(if seglen > 0 || synfin { synfin as u32 } else { 0 });
    if (seq_gt(nextseq, side.nextseq) || side.nextseq == 0) && !zero_window_probe {
        side.nextseq = nextseq;
        side.nextseq_ns = ts_ns;
    }
    side.window = window;
    side.lastack = ackno;
    side.lastack_ns = ts_ns;
    side.last_keepalive = a.keep_alive;
    side.last_zero_window_probe = zero_window_probe;
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Flows {
        fn track_test(&mut self, ts: i64, src: Endpoint, dst: Endpoint, t: &Tcp) -> Analysis {
            self.track(ts, src, dst, t, 0)
        }
    }

    fn tcp(flags: u8, seq: u32, ack_seq: u32, window: u16, wscale: Option<u8>) -> Tcp {
        Tcp { flags, seq, ack_seq, window, wscale, ..Tcp::default() }
    }

    #[test]
    fn a_handshake_then_data_reads_as_wireshark_shows_it() {
        let c = ("10.0.0.1".parse().unwrap(), 40000);
        let s = ("10.0.0.2".parse().unwrap(), 80);
        let mut f = Flows::default();
        let syn = f.track_test(0, c, s, &tcp(SYN, 1000, 0, 64240, Some(7)));
        assert_eq!((syn.rel_seq, syn.rel_ack, syn.window), (0, None, 64240));
        let synack = f.track_test(2_000_000, s, c, &tcp(SYN | ACK, 5000, 1001, 65160, Some(9)));
        assert_eq!((synack.rel_seq, synack.rel_ack, synack.window), (0, Some(1), 65160));
        let ack = f.track_test(3_500_000, c, s, &tcp(ACK, 1001, 5001, 502, None));
        assert_eq!((ack.rel_seq, ack.rel_ack, ack.window), (1, Some(1), 502 << 7));
        assert_eq!(ack.handshake_rtt_ms, Some(3.5));
        let data = f.track_test(4_000_000, s, c, &tcp(ACK | super::super::decode::PSH, 5001, 1001, 0, None));
        assert_eq!((data.rel_seq, data.window, data.zero_window), (1, 0, true));
        assert_eq!(data.handshake_rtt_ms, Some(3.5));
    }

    #[test]
    fn mid_stream_and_unscaled() {
        let a = ("::1".parse().unwrap(), 1);
        let b = ("::1".parse().unwrap(), 2);
        let mut f = Flows::default();
        let first = f.track_test(0, a, b, &tcp(ACK, 777, 999, 100, None));
        assert_eq!((first.rel_seq, first.rel_ack, first.window, first.handshake_rtt_ms), (1, Some(1), 100, None));
        // A SYN without window scaling: no scaling either way.
        let mut g = Flows::default();
        g.track_test(0, a, b, &tcp(SYN, 1, 0, 1000, None));
        g.track_test(1, b, a, &tcp(SYN | ACK, 1, 2, 1000, Some(7)));
        assert_eq!(g.track_test(2, a, b, &tcp(ACK, 2, 2, 1000, None)).window, 1000);
    }

    #[test]
    fn ack_rtt_from_the_oldest_copy_and_window_full_at_the_edge() {
        let c = ("10.0.0.1".parse().unwrap(), 40000);
        let s = ("10.0.0.2".parse().unwrap(), 80);
        let mut f = Flows::default();
        f.track(0, c, s, &tcp(SYN, 1000, 0, 1000, Some(0)), 0);
        f.track(1_000_000, s, c, &tcp(SYN | ACK, 5000, 1001, 3000, Some(0)), 0);
        f.track(2_000_000, c, s, &tcp(ACK, 1001, 5001, 1000, None), 0);
        // The server's window is 3000 from its last ACK (5001 of ours is
        // 1001 of theirs): 1000 bytes do not fill it, 2000 more do.
        let first = f.track(3_000_000, c, s, &tcp(ACK, 1001, 5001, 1000, None), 1000);
        assert!(!first.window_full);
        let second = f.track(4_000_000, c, s, &tcp(ACK, 2001, 5001, 1000, None), 2000);
        assert!(second.window_full);
        // Sent again a millisecond later; the ACK of both is timed from
        // the first copy, as Wireshark times it.
        f.track(5_000_000, c, s, &tcp(ACK, 2001, 5001, 1000, None), 2000);
        let ack = f.track(9_000_000, s, c, &tcp(ACK, 5001, 4001, 3000, None), 0);
        assert_eq!(ack.ack_rtt_ms, Some(5.0));
        // Nothing left to time: a repeat of the ACK has none.
        assert_eq!(f.track(9_500_000, s, c, &tcp(ACK, 5001, 4001, 3000, None), 0).ack_rtt_ms, None);
        assert_eq!(f.unacked, 0);
    }
}
