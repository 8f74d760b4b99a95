//! What a TCP packet means within its connection, as Wireshark's TCP
//! analysis reads it: sequence and acknowledgement numbers relative to each
//! side's first, the window scaled by the shift its sender announced in its
//! SYN, the handshake's round trip, and zero-window advertisements. The
//! state is kept per connection while a capture is read in order.

use std::collections::HashMap;
use std::net::IpAddr;

use super::decode::{Tcp, ACK, FIN, RST, SYN};

/// The most connections followed at once: a capture of a scan or flood
/// holds more, and the oldest half is forgotten (their packets then read as
/// if first seen), so memory stays bounded.
const MAX_FLOWS: usize = 1 << 20;

/// One direction of a connection.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    /// The sequence number relative ones count from.
    base: Option<u32>,
    /// The window shift its SYN announced: Some(None) for a SYN without
    /// the option (no scaling), None before its SYN was seen.
    wscale: Option<Option<u8>>,
}

#[derive(Debug, Default)]
struct Flow {
    /// Indexed by which side sent: 0 the lower endpoint, 1 the higher.
    sides: [Side; 2],
    syn_ns: Option<i64>,
    synack_ns: Option<i64>,
    handshake_rtt_ns: Option<i64>,
    last_seen: u64,
}

/// What the analysis adds to one TCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Analysis {
    pub rel_seq: u32,
    /// None without ACK.
    pub rel_ack: Option<u32>,
    /// The window in bytes: scaled when both SYNs were seen (a SYN's own
    /// window is never scaled), else as sent.
    pub window: u32,
    /// SYN to the ACK of the SYN/ACK (tshark's tcp.analysis.initial_rtt),
    /// on that ACK and every later packet of the connection (tshark shows
    /// it on most of them, not all).
    pub handshake_rtt_ms: Option<f64>,
    /// A window of 0 on a packet without SYN, FIN or RST.
    pub zero_window: bool,
}

/// An address and port.
type Endpoint = (IpAddr, u16);

#[derive(Debug, Default)]
pub struct Flows {
    /// By (lower endpoint, higher endpoint).
    flows: HashMap<(Endpoint, Endpoint), Flow>,
    packets: u64,
}

impl Flows {
    /// Follow one TCP packet from `src` to `dst`, captured at `ts_ns`.
    pub fn track(&mut self, ts_ns: i64, src: Endpoint, dst: Endpoint, t: &Tcp) -> Analysis {
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
        Analysis {
            rel_seq: t.seq.wrapping_sub(flow.sides[me].base.unwrap_or(t.seq)),
            rel_ack: ack.then(|| t.ack_seq.wrapping_sub(flow.sides[1 - me].base.unwrap_or(t.ack_seq))),
            window,
            handshake_rtt_ms: flow.handshake_rtt_ns.map(|n| n as f64 / 1e6),
            zero_window: t.window == 0 && t.flags & (SYN | FIN | RST) == 0,
        }
    }

    fn forget_oldest_half(&mut self) {
        let mut ages: Vec<u64> = self.flows.values().map(|f| f.last_seen).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        self.flows.retain(|_, f| f.last_seen > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(flags: u8, seq: u32, ack_seq: u32, window: u16, wscale: Option<u8>) -> Tcp {
        Tcp { flags, seq, ack_seq, window, wscale, ..Tcp::default() }
    }

    #[test]
    fn a_handshake_then_data_reads_as_wireshark_shows_it() {
        let c = ("10.0.0.1".parse().unwrap(), 40000);
        let s = ("10.0.0.2".parse().unwrap(), 80);
        let mut f = Flows::default();
        let syn = f.track(0, c, s, &tcp(SYN, 1000, 0, 64240, Some(7)));
        assert_eq!((syn.rel_seq, syn.rel_ack, syn.window), (0, None, 64240));
        let synack = f.track(2_000_000, s, c, &tcp(SYN | ACK, 5000, 1001, 65160, Some(9)));
        assert_eq!((synack.rel_seq, synack.rel_ack, synack.window), (0, Some(1), 65160));
        let ack = f.track(3_500_000, c, s, &tcp(ACK, 1001, 5001, 502, None));
        assert_eq!((ack.rel_seq, ack.rel_ack, ack.window), (1, Some(1), 502 << 7));
        assert_eq!(ack.handshake_rtt_ms, Some(3.5));
        let data = f.track(4_000_000, s, c, &tcp(ACK | super::super::decode::PSH, 5001, 1001, 0, None));
        assert_eq!((data.rel_seq, data.window, data.zero_window), (1, 0, true));
        assert_eq!(data.handshake_rtt_ms, Some(3.5));
    }

    #[test]
    fn mid_stream_and_unscaled() {
        let a = ("::1".parse().unwrap(), 1);
        let b = ("::1".parse().unwrap(), 2);
        let mut f = Flows::default();
        let first = f.track(0, a, b, &tcp(ACK, 777, 999, 100, None));
        assert_eq!((first.rel_seq, first.rel_ack, first.window, first.handshake_rtt_ms), (1, Some(1), 100, None));
        // A SYN without window scaling: no scaling either way.
        let mut g = Flows::default();
        g.track(0, a, b, &tcp(SYN, 1, 0, 1000, None));
        g.track(1, b, a, &tcp(SYN | ACK, 1, 2, 1000, Some(7)));
        assert_eq!(g.track(2, a, b, &tcp(ACK, 2, 2, 1000, None)).window, 1000);
    }
}
