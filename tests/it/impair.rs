//! Loss, reordering and a slow handshake on a veth link the test made.
//!
//! `tc qdisc … netem` is what the tests would use, but this kernel is built
//! without sch_netem (nor prio, fq or sfq: "Specified qdisc kind is
//! unknown"). It has nftables with numgen and HTB, which make the same
//! evidence, deterministically:
//! - every `drop_every`th data segment to the port is dropped on its way
//!   out of the sender: the receiver sees a hole, sends duplicate ACKs, and
//!   the sender retransmits (fast, or on timeout);
//! - every `slow_every`th is steered (skb priority) into an HTB class of
//!   2 Mbit/s, behind which it arrives milliseconds late: reordered;
//! - the first pure ACK to the port is dropped: the handshake's last ACK,
//!   so the listener resends its SYN/ACK a second later and the handshake's
//!   round trip as the receiver sees it is about a second (tshark then
//!   calls the late segments out-of-order, as it does within one RTT).

use crate::conntrack::NftExt;
use crate::netns::Netns;

pub struct Impairment {
    pub drop_every: u32,
    pub slow_every: u32,
    pub slow_handshake: bool,
}

/// Impair what `ns` sends on `dev` to TCP port `dport`.
pub fn impair(ns: &Netns, dev: &str, dport: u16, how: &Impairment) {
    // Segments, not bursts: no autocorking, no GSO, so each write of the
    // sender is one packet the rules count.
    ns.sysctl("net.ipv4.tcp_autocorking", "0");
    ns.exec_ok("ip", &["link", "set", "dev", dev, "gso_max_size", "1500"]);
    let handshake = if how.slow_handshake {
        format!("tcp dport {dport} tcp flags == ack ip length < 100 numgen inc mod 1000000 == 0 drop")
    } else {
        String::new()
    };
    ns.nft(&format!(
        "table inet impair {{
            chain out {{
                type filter hook output priority 0;
                {handshake}
                tcp dport {dport} ip length > 500 numgen inc mod {drop} == {drop_at} drop
                tcp dport {dport} ip length > 500 numgen inc mod {slow} == {slow_at} meta priority set 0x10020
            }}
        }}",
        drop = how.drop_every,
        drop_at = how.drop_every / 2,
        slow = how.slow_every,
        slow_at = how.slow_every / 2,
    ));
    ns.exec_ok("tc", &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000"]);
    ns.exec_ok("tc", &["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
    ns.exec_ok(
        "tc",
        &[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", "2mbit", "burst", "1600",
            "cburst", "1600",
        ],
    );
}
