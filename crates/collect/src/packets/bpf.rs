//! A kernel socket filter (classic BPF) for a live capture, compiled from
//! conditions on protocol, ports and addresses, so packets no query row
//! could match are dropped in the kernel and never copied to sockql.
//!
//! The program must never drop a packet the query could match: every
//! condition only rejects packets that certainly fail it, and anything it
//! cannot read the same way the decoder does (IPv6 extension headers) is
//! let through for DataFusion, which checks every row again.
//!
//! The socket is cooked (SOCK_DGRAM): offsets count from the network
//! header, and the EtherType is the ancillary field SKF_AD_PROTOCOL.

use std::fmt;
use std::net::IpAddr;

/// One condition; a filter is their conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// IP protocol number of the transport header (6, 17, 1, 58, ...).
    Protocol(u8),
    /// Source port within lo..=hi (TCP or UDP).
    SrcPort(u16, u16),
    DstPort(u16, u16),
    SrcAddr(IpAddr),
    DstAddr(IpAddr),
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |f: &mut fmt::Formatter<'_>, dir: &str, lo: u16, hi: u16| {
            if lo == hi {
                write!(f, "{dir} port {lo}")
            } else {
                write!(f, "{dir} portrange {lo}-{hi}")
            }
        };
        match self {
            Cond::Protocol(6) => write!(f, "tcp"),
            Cond::Protocol(17) => write!(f, "udp"),
            Cond::Protocol(1) => write!(f, "icmp"),
            Cond::Protocol(58) => write!(f, "icmp6"),
            Cond::Protocol(p) => write!(f, "ip proto {p}"),
            Cond::SrcPort(lo, hi) => range(f, "src", *lo, *hi),
            Cond::DstPort(lo, hi) => range(f, "dst", *lo, *hi),
            Cond::SrcAddr(a) => write!(f, "src host {a}"),
            Cond::DstAddr(a) => write!(f, "dst host {a}"),
        }
    }
}

/// The conditions as tcpdump would write them ("tcp and dst port 80").
pub fn describe(conds: &[Cond]) -> String {
    conds.iter().map(Cond::to_string).collect::<Vec<_>>().join(" and ")
}

// Classic BPF opcodes (linux/bpf_common.h, linux/filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const RET: u16 = 0x06;
const JMP: u16 = 0x05;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
/// SKF_AD_OFF + SKF_AD_PROTOCOL: the packet's EtherType.
const AD_PROTOCOL: u32 = (-0x1000i32) as u32;
/// Bytes a capture keeps of an accepted packet.
const ACCEPT_LEN: u32 = 0x40000;

/// IPv6 extension headers the program does not walk: such packets are
/// passed up for the decoder and DataFusion to judge.
const V6_EXTENSIONS: [u8; 8] = [0, 43, 44, 50, 51, 60, 135, 139];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Accept,
    Reject,
    /// An instruction index, once known.
    At(usize),
}

#[derive(Debug, Clone, Copy)]
struct Ins {
    code: u16,
    jt: To,
    jf: To,
    k: u32,
}

#[derive(Default)]
struct Asm {
    code: Vec<Ins>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push(Ins { code, jt: To::Next, jf: To::Next, k });
    }
    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.code.push(Ins { code, jt, jf, k });
    }
    fn here(&self) -> usize {
        self.code.len()
    }
}

/// The conditions of one address family's branch, or None when no packet
/// of that family can match.
fn branch(a: &mut Asm, conds: &[Cond], v6: bool) -> Option<()> {
    let fam = |ip: &IpAddr| ip.is_ipv6() == v6;
    // Addresses: four words for IPv6 (source at 8, destination at 24),
    // one for IPv4 (12, 16).
    for c in conds {
        let (ip, base) = match c {
            Cond::SrcAddr(ip) => (ip, if v6 { 8 } else { 12 }),
            Cond::DstAddr(ip) => (ip, if v6 { 24 } else { 16 }),
            _ => continue,
        };
        if !fam(ip) {
            return None;
        }
        let words: Vec<u32> = match ip {
            IpAddr::V4(v) => vec![u32::from_be_bytes(v.octets())],
            IpAddr::V6(v) => v.octets().chunks(4).map(|w| u32::from_be_bytes(w.try_into().expect("4 bytes"))).collect(),
        };
        for (i, w) in words.iter().enumerate() {
            a.op(LD | W | ABS, base + 4 * i as u32);
            a.jump(JMP | JEQ | K, *w, To::Next, To::Reject);
        }
    }
    let proto = conds.iter().find_map(|c| if let Cond::Protocol(p) = c { Some(*p) } else { None });
    let ports: Vec<&Cond> = conds.iter().filter(|c| matches!(c, Cond::SrcPort(..) | Cond::DstPort(..))).collect();
    if proto.is_none() && ports.is_empty() {
        return Some(());
    }
    // Which transport protocols may pass: the one named, or, for a port
    // condition alone, TCP and UDP (the only ones with ports here).
    let wanted: Vec<u8> = match proto {
        Some(p) => vec![p],
        None => vec![6, 17],
    };
    if !ports.is_empty() && wanted.iter().any(|p| *p != 6 && *p != 17) {
        return None; // ports of a protocol without ports: nothing matches
    }
    a.op(LD | B | ABS, if v6 { 6 } else { 9 });
    let checks_start = a.here() + wanted.len() + if v6 { V6_EXTENSIONS.len() } else { 0 } + 1;
    for p in &wanted {
        a.jump(JMP | JEQ | K, *p as u32, To::At(checks_start), To::Next);
    }
    if v6 {
        for e in V6_EXTENSIONS {
            a.jump(JMP | JEQ | K, e as u32, To::Accept, To::Next);
        }
    }
    a.jump(JMP | JEQ | K, 0, To::Reject, To::Reject);
    debug_assert_eq!(a.here(), checks_start);
    if ports.is_empty() {
        return Some(());
    }
    if v6 {
        // Ports right after the fixed 40-byte header.
        for c in ports {
            let (off, lo, hi) = match c {
                Cond::SrcPort(lo, hi) => (40, *lo, *hi),
                Cond::DstPort(lo, hi) => (42, *lo, *hi),
                _ => unreachable!(),
            };
            a.op(LD | H | ABS, off);
            range(a, lo, hi);
        }
    } else {
        // Only the first fragment carries the ports; X = header length.
        a.op(LD | H | ABS, 6);
        a.jump(JMP | JSET | K, 0x1fff, To::Reject, To::Next);
        a.op(LDX | B | MSH, 0);
        for c in ports {
            let (off, lo, hi) = match c {
                Cond::SrcPort(lo, hi) => (0, *lo, *hi),
                Cond::DstPort(lo, hi) => (2, *lo, *hi),
                _ => unreachable!(),
            };
            a.op(LD | H | IND, off);
            range(a, lo, hi);
        }
    }
    Some(())
}

/// Reject unless lo <= A <= hi.
fn range(a: &mut Asm, lo: u16, hi: u16) {
    if lo == hi {
        a.jump(JMP | JEQ | K, lo as u32, To::Next, To::Reject);
    } else {
        a.jump(JMP | JGE | K, lo as u32, To::Next, To::Reject);
        a.jump(JMP | JGT | K, hi as u32, To::Reject, To::Next);
    }
}

/// The program for `conds`, as the kernel takes it: (code, jt, jf, k).
pub fn compile(conds: &[Cond]) -> Vec<(u16, u8, u8, u32)> {
    let mut a = Asm::default();
    a.op(LD | H | ABS, AD_PROTOCOL);
    // jeq IPv4 -> v4 branch (next), else -> v6 test (patched below)
    let first_jump = a.here();
    a.jump(JMP | JEQ | K, 0x0800, To::Next, To::Next);
    if branch(&mut a, conds, false).is_some() {
        a.op(RET | K, ACCEPT_LEN);
    } else {
        a.op(RET | K, 0);
    }
    let v6_test = a.here();
    a.code[first_jump].jf = To::At(v6_test);
    a.jump(JMP | JEQ | K, 0x86dd, To::Next, To::Reject);
    if branch(&mut a, conds, true).is_some() {
        a.op(RET | K, ACCEPT_LEN);
    } else {
        a.op(RET | K, 0);
    }
    let accept = a.here();
    a.op(RET | K, ACCEPT_LEN);
    let reject = a.here();
    a.op(RET | K, 0);
    let target = |i: usize, t: To| -> u8 {
        let to = match t {
            To::Next => i + 1,
            To::Accept => accept,
            To::Reject => reject,
            To::At(n) => n,
        };
        u8::try_from(to - i - 1).expect("a filter this short jumps less than 256")
    };
    a.code.iter().enumerate().map(|(i, ins)| (ins.code, target(i, ins.jt), target(i, ins.jf), ins.k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a classic BPF program over a cooked packet, as the kernel does
    /// for the subset compile() emits.
    pub(crate) fn run(prog: &[(u16, u8, u8, u32)], ether_type: u16, pkt: &[u8]) -> u32 {
        let (mut acc, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: usize, size: usize| -> Option<u32> {
            let b = pkt.get(off..off + size)?;
            Some(b.iter().fold(0u32, |v, &x| v << 8 | x as u32))
        };
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            match code {
                c if c == LD | H | ABS && k == AD_PROTOCOL => acc = ether_type as u32,
                c if c == LD | W | ABS => match load(k as usize, 4) {
                    Some(v) => acc = v,
                    None => return 0,
                },
                c if c == LD | H | ABS => match load(k as usize, 2) {
                    Some(v) => acc = v,
                    None => return 0,
                },
                c if c == LD | B | ABS => match load(k as usize, 1) {
                    Some(v) => acc = v,
                    None => return 0,
                },
                c if c == LD | H | IND => match load(x as usize + k as usize, 2) {
                    Some(v) => acc = v,
                    None => return 0,
                },
                c if c == LDX | B | MSH => match load(k as usize, 1) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                c if c == RET | K => return k,
                c => {
                    let hit = match c & 0xf0 {
                        JEQ => acc == k,
                        JGT => acc > k,
                        JGE => acc >= k,
                        JSET => acc & k != 0,
                        _ => panic!("opcode {c:#x}"),
                    };
                    pc += if hit { jt } else { jf } as usize;
                }
            }
        }
    }

    fn syn(dst_port: u16) -> Vec<u8> {
        let mut p = crate::packets::tests::SYN_IPV4.to_vec();
        p[22..24].copy_from_slice(&dst_port.to_be_bytes());
        p
    }

    #[test]
    fn ports_protocols_and_addresses() {
        let tcp80 = compile(&[Cond::Protocol(6), Cond::DstPort(80, 80)]);
        assert_eq!(run(&tcp80, 0x0800, &syn(80)), ACCEPT_LEN);
        assert_eq!(run(&tcp80, 0x0800, &syn(81)), 0);
        assert_eq!(run(&tcp80, 0x0806, &syn(80)), 0, "ARP");
        let range = compile(&[Cond::DstPort(8000, 8100)]);
        assert_eq!(run(&range, 0x0800, &syn(8080)), ACCEPT_LEN);
        assert_eq!(run(&range, 0x0800, &syn(8101)), 0);
        let src = compile(&[Cond::SrcAddr("127.0.0.1".parse().unwrap())]);
        assert_eq!(run(&src, 0x0800, &syn(1)), ACCEPT_LEN);
        assert_eq!(run(&compile(&[Cond::SrcAddr("127.0.0.2".parse().unwrap())]), 0x0800, &syn(1)), 0);
        // An IPv6 address condition drops every IPv4 packet.
        assert_eq!(run(&compile(&[Cond::DstAddr("::1".parse().unwrap())]), 0x0800, &syn(1)), 0);
        assert_eq!(run(&compile(&[Cond::Protocol(17)]), 0x0800, &syn(1)), 0);
        assert_eq!(run(&compile(&[]), 0x0800, &syn(1)), ACCEPT_LEN);
        // A later fragment has no ports: dropped by a port condition.
        let mut frag = syn(80);
        frag[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert_eq!(run(&tcp80, 0x0800, &frag), 0);
        assert_eq!(
            describe(&[Cond::Protocol(6), Cond::DstPort(80, 80), Cond::SrcPort(1, 1023)]),
            "tcp and dst port 80 and src portrange 1-1023"
        );
    }

    #[test]
    fn ipv6_with_extension_headers_is_let_through() {
        // IPv6 header: next header 6 (TCP), then ports 1234 -> 443.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        v6.extend([0u8; 15]);
        v6.push(1);
        v6.extend([0u8; 15]);
        v6.push(1);
        v6.extend([0x04, 0xd2, 0x01, 0xbb]);
        v6.extend([0u8; 16]);
        let p443 = compile(&[Cond::Protocol(6), Cond::DstPort(443, 443), Cond::DstAddr("::1".parse().unwrap())]);
        assert_eq!(run(&p443, 0x86dd, &v6), ACCEPT_LEN);
        let p80 = compile(&[Cond::DstPort(80, 80)]);
        assert_eq!(run(&p80, 0x86dd, &v6), 0);
        // Hop-by-hop options first: the program cannot see the port, so it passes.
        v6[6] = 0;
        assert_eq!(run(&p80, 0x86dd, &v6), ACCEPT_LEN);
    }
}
