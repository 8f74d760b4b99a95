//! The drop program: for each `kfree_skb` (raw tracepoint; its context
//! is TP_PROTO's arguments as u64s: skb, location, reason, rx_sk), apply
//! the query's filter on reason/ethertype/location, then read through
//! bpf_probe_read_kernel what the tracepoint only points to (the device's
//! ifindex and namespace, the socket's namespace and inode, the IPv4/IPv6
//! addresses and TCP/UDP ports when they lie in the linear data) into a
//! [`RECORD`]-byte record on the stack, and hand it to the current CPU's
//! BPF_OUTPUT perf ring (bpf_perf_event_output).
//!
//! Struct offsets come from the running kernel's BTF ([`Offsets`]) and
//! are written into the instructions as immediates, so there is no
//! relocation step: the program is built for the kernel it loads into.
//! Every read is a bpf_probe_read_kernel of a fixed size (the helper
//! zero-fills on a fault), header reads are checked against the skb's
//! linear length first (`tail`), and the record starts zeroed, so a field
//! the program could not read is 0 and its flag bit says so.

use super::btf::{Btf, BtfError};
use super::insn::{Asm, Cond, Insn, Label, Reg, Size, R0, R1, R10, R2, R3, R4, R5, R6, R7, R8, R9};
use super::sys::{BPF_F_CURRENT_CPU, HELPER_PERF_EVENT_OUTPUT, HELPER_PROBE_READ_KERNEL};
use crate::trace::filter::{Cmp, Filter, Op};

/// Every (struct, member path) the program reads, with the size it reads
/// it at.
pub const OFFSETS: &[(&str, &[&str])] = &[
    ("sk_buff", &["dev"]),
    ("sk_buff", &["head"]),
    ("sk_buff", &["network_header"]),
    ("sk_buff", &["transport_header"]),
    ("sk_buff", &["protocol"]),
    ("sk_buff", &["tail"]),
    ("net_device", &["ifindex"]),
    ("net_device", &["nd_net", "net"]),
    ("net", &["ns", "inum"]),
    ("sock", &["__sk_common", "skc_net", "net"]),
    ("sock", &["sk_socket"]),
    ("socket_alloc", &["vfs_inode", "i_ino"]),
];

/// The sizes the program reads each of [`OFFSETS`] at (a kernel whose
/// member has another size is refused rather than misread).
const SIZES: [u32; 12] = [8, 8, 2, 2, 2, 4, 4, 8, 4, 8, 8, 8];

/// The byte offsets, in the order of [`OFFSETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub skb_dev: i32,
    pub skb_head: i32,
    pub skb_network_header: i32,
    pub skb_transport_header: i32,
    pub skb_protocol: i32,
    pub skb_tail: i32,
    pub dev_ifindex: i32,
    pub dev_net: i32,
    pub net_inum: i32,
    pub sk_net: i32,
    pub sk_socket: i32,
    /// From a `struct socket` to its inode's i_ino: struct socket_alloc
    /// holds the socket first and its inode after (`SOCK_INODE`).
    pub socket_ino: i32,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> Result<Offsets, BtfError> {
        let mut v = [0i32; 12];
        for (i, ((s, path), want)) in OFFSETS.iter().zip(SIZES).enumerate() {
            let m = btf.offset_of(s, path)?;
            if m.size != want {
                return Err(BtfError(format!(
                    "the kernel's {s}.{} is {} bytes, the drop program reads {want}",
                    path.join("."),
                    m.size
                )));
            }
            v[i] = i32::try_from(m.offset).map_err(|_| BtfError("offset too large".into()))?;
        }
        // socket_alloc's socket member must be first for SOCK_INODE's
        // arithmetic from a struct socket pointer.
        let socket = btf.offset_of("socket_alloc", &["socket"])?;
        if socket.offset != 0 {
            return Err(BtfError("the kernel's socket_alloc does not start with its socket".into()));
        }
        let [skb_dev, skb_head, skb_network_header, skb_transport_header, skb_protocol, skb_tail, dev_ifindex, dev_net, net_inum, sk_net, sk_socket, socket_ino] =
            v;
        Ok(Offsets {
            skb_dev,
            skb_head,
            skb_network_header,
            skb_transport_header,
            skb_protocol,
            skb_tail,
            dev_ifindex,
            dev_net,
            net_inum,
            sk_net,
            sk_socket,
            socket_ino,
        })
    }
}

/// The record's size and layout (host byte order unless said).
pub const RECORD: usize = 72;
pub mod at {
    pub const LOCATION: i16 = 0; // u64
    pub const REASON: i16 = 8; // u32
    pub const IFINDEX: i16 = 12; // u32, 0: no device
    pub const NETNS: i16 = 16; // u32 inode, 0: unknown
    pub const ETHERTYPE: i16 = 20; // u16 (skb->protocol in host order)
    pub const L4: i16 = 22; // u8 IP protocol / IPv6 next header
    pub const FLAGS: i16 = 23; // u8, flag::*
    pub const INODE: i16 = 24; // u64 rx_sk's socket inode, 0: none
    pub const SADDR: i16 = 32; // [u8; 16] network order (IPv4: first 4)
    pub const DADDR: i16 = 48; // [u8; 16]
    pub const SPORT: i16 = 64; // u16 network order
    pub const DPORT: i16 = 66; // u16 network order
}
pub mod flag {
    /// Addresses and L4 were read from the network header.
    pub const ADDRS: u8 = 1;
    /// Ports were read from the transport header.
    pub const PORTS: u8 = 2;
    /// A header lay beyond the linear data (`tail`): not read.
    pub const NOT_LINEAR: u8 = 4;
    /// The namespace is rx_sk's (the skb had no device).
    pub const NETNS_OF_SOCKET: u8 = 8;
    /// The kernel named a receiving socket (rx_sk non-null).
    pub const RX_SK: u8 = 16;
}

/// Stack: the record at r10-RECORD, two scratch slots below it.
const REC: i16 = -(RECORD as i16);
const SCRATCH: i16 = REC - 8; // dev, net, socket
/// The skb's header fields (protocol, transport_header, network_header,
/// tail, head): one read of the span they lie in when it is at most
/// [`WINDOW`] bytes (24 on 6.18), else one read each into fixed places.
const WINDOW: i16 = 32;
const WIN: i16 = SCRATCH - WINDOW;
/// Tests: build the field-by-field reads even where a window would do.
#[cfg(test)]
pub(crate) static FIELDWISE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn fieldwise() -> bool {
    #[cfg(test)]
    return FIELDWISE.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(test))]
    false
}
/// An IPv4 header, read whole.
const IPH: i16 = WIN - 24;

/// The lowest kernel address on the 64-bit architectures sockql runs on
/// (x86-64: 0xffff8000_00000000; arm64: 0xffff0000_00000000).
const KERNEL_MIN: i64 = 0xffff_0000_0000_0000_u64 as i64;

fn rec(off: i16) -> i16 {
    REC + off
}

/// The fields of kfree_skb's format a filter can name that the program
/// has, where it keeps each and how it compares them.
fn field(name: &str) -> Option<(i16, Size, bool)> {
    match name {
        "reason" => Some((at::REASON, Size::W, true)),
        "protocol" => Some((at::ETHERTYPE, Size::H, true)),
        // An address: compared unsigned, as the kernel compares pointers.
        "location" => Some((at::LOCATION, Size::DW, false)),
        _ => None,
    }
}

/// The part of `filter` the program applies: every group whose
/// comparisons all name [`field`]s (a group with another field is left to
/// user space; leaving a group out only lets more drops through).
pub fn in_kernel(filter: &Filter) -> Filter {
    Filter(
        filter.0.iter().filter(|g| !g.0.is_empty() && g.0.iter().all(|c| field(&c.field).is_some())).cloned().collect(),
    )
}

fn cond(op: Op, signed: bool) -> Cond {
    match (op, signed) {
        (Op::Eq, _) => Cond::Eq,
        (Op::Ne, _) => Cond::Ne,
        (Op::Lt, true) => Cond::Slt,
        (Op::Le, true) => Cond::Sle,
        (Op::Gt, true) => Cond::Sgt,
        (Op::Ge, true) => Cond::Sge,
        (Op::Lt, false) => Cond::Lt,
        (Op::Le, false) => Cond::Le,
        (Op::Gt, false) => Cond::Gt,
        (Op::Ge, false) => Cond::Ge,
    }
}

/// r1 = r10 + dst; r2 = size; r3 = src + off; probe_read_kernel.
fn probe_read(a: &mut Asm, dst: i16, size: i32, src: Reg, off: i32) {
    a.mov(R1, R10).add_imm(R1, dst as i32).mov_imm(R2, size).mov(R3, src);
    if off != 0 {
        a.add_imm(R3, off);
    }
    a.call(HELPER_PROBE_READ_KERNEL);
}

/// flags |= bits.
fn set_flag(a: &mut Asm, bits: u8) {
    a.load(Size::B, R1, R10, rec(at::FLAGS)).or_imm(R1, bits as i32).store(Size::B, R10, rec(at::FLAGS), R1);
}

/// Jump to `skip` unless every compiled group holds.
fn compile_filter(a: &mut Asm, filter: &Filter, skip: Label) {
    for group in &filter.0 {
        let ok = a.label();
        for Cmp { field: name, op, value } in &group.0 {
            let Some((off, size, signed)) = field(name) else { continue };
            a.load(size, R1, R10, rec(off)).ld_imm64(R2, *value).jump_reg(cond(*op, signed), R1, R2, ok);
        }
        a.goto(skip).bind(ok);
    }
}

/// At most this many namespaces are compared in the program; a longer
/// list is not applied there (every namespace's drops come through).
pub const MAX_NETNS: usize = 64;

/// The program for kfree_skb with `args` arguments (4 since 6.10 added
/// rx_sk; 3 before), writing to the perf event array `map_fd`, keeping
/// only drops `filter` (already [`in_kernel`]) lets through and, when
/// `netns` lists namespace inodes, only drops of those namespaces or of
/// none known.
pub fn build(o: &Offsets, map_fd: i32, filter: &Filter, netns: &[u32], has_rx_sk: bool) -> Result<Vec<Insn>, String> {
    let mut a = Asm::new();
    let (skip, send) = (a.label(), a.label());
    let (no_dev, sock, headers, common, rd6, ports, tp, not_linear) =
        (a.label(), a.label(), a.label(), a.label(), a.label(), a.label(), a.label(), a.label());
    let needs_protocol = filter.0.iter().flat_map(|g| &g.0).any(|c| c.field == "protocol");
    // Where each skb field lands on the stack.
    let fields =
        [(o.skb_protocol, 2), (o.skb_transport_header, 2), (o.skb_network_header, 2), (o.skb_tail, 4), (o.skb_head, 8)];
    let lo = fields.iter().map(|f| f.0).min().unwrap_or(0);
    let hi = fields.iter().map(|f| f.0 + f.1).max().unwrap_or(0);
    let windowed = hi - lo <= WINDOW as i32 && !fieldwise();
    let slot = |i: usize| -> i16 {
        if windowed {
            WIN + (fields[i].0 - lo) as i16
        } else {
            WIN + [0, 2, 4, 8, 16][i]
        }
    };
    let (protocol, transport, network, tail, head) = (slot(0), slot(1), slot(2), slot(3), slot(4));
    let read_skb = |a: &mut Asm| {
        if windowed {
            probe_read(a, WIN, hi - lo, R7, lo);
        } else {
            for (i, (off, size)) in fields.iter().enumerate() {
                probe_read(a, slot(i), *size, R7, *off);
            }
        }
        a.load(Size::H, R1, R10, protocol).be16(R1).store(Size::H, R10, rec(at::ETHERTYPE), R1);
    };

    a.mov(R6, R1);
    for i in 0..(RECORD as i16 / 8) {
        a.store_imm(Size::DW, R10, REC + 8 * i, 0);
    }
    a.load(Size::DW, R7, R6, 0); // skb
    a.load(Size::DW, R1, R6, 8).store(Size::DW, R10, rec(at::LOCATION), R1);
    a.load(Size::DW, R1, R6, 16).store(Size::W, R10, rec(at::REASON), R1);
    if needs_protocol {
        read_skb(&mut a);
    }
    compile_filter(&mut a, filter, skip);
    if !needs_protocol {
        read_skb(&mut a);
    }

    // The device: its ifindex and namespace.
    // skb->dev shares a union with UDP's dev_scratch (a packed length,
    // far below any kernel address) once a packet is queued to a
    // socket: only what looks like a kernel pointer is followed.
    probe_read(&mut a, SCRATCH, 8, R7, o.skb_dev);
    a.load(Size::DW, R8, R10, SCRATCH).ld_imm64(R2, KERNEL_MIN).jump_reg(Cond::Lt, R8, R2, no_dev);
    probe_read(&mut a, rec(at::IFINDEX), 4, R8, o.dev_ifindex);
    probe_read(&mut a, SCRATCH, 8, R8, o.dev_net);
    a.load(Size::DW, R8, R10, SCRATCH).jump_imm(Cond::Eq, R8, 0, no_dev);
    probe_read(&mut a, rec(at::NETNS), 4, R8, o.net_inum);
    a.bind(no_dev);

    // The receiving socket: its namespace when the device gave none, and
    // its inode.
    a.bind(sock);
    if has_rx_sk {
        let inode = a.label();
        a.load(Size::DW, R8, R6, 24).jump_imm(Cond::Eq, R8, 0, headers);
        set_flag(&mut a, flag::RX_SK);
        a.load(Size::W, R1, R10, rec(at::NETNS)).jump_imm(Cond::Ne, R1, 0, inode);
        probe_read(&mut a, SCRATCH, 8, R8, o.sk_net);
        a.load(Size::DW, R9, R10, SCRATCH).jump_imm(Cond::Eq, R9, 0, inode);
        probe_read(&mut a, rec(at::NETNS), 4, R9, o.net_inum);
        set_flag(&mut a, flag::NETNS_OF_SOCKET);
        a.bind(inode);
        probe_read(&mut a, SCRATCH, 8, R8, o.sk_socket);
        a.load(Size::DW, R9, R10, SCRATCH).jump_imm(Cond::Eq, R9, 0, headers);
        probe_read(&mut a, rec(at::INODE), 8, R9, o.socket_ino);
    }

    // The network header: IPv4 (20 bytes) or IPv6 (40), if it lies in
    // the linear data (network_header + length <= tail).
    a.bind(headers);
    if !netns.is_empty() && netns.len() <= MAX_NETNS {
        let keep = a.label();
        a.load(Size::W, R1, R10, rec(at::NETNS)).jump_imm(Cond::Eq, R1, 0, keep);
        for &n in netns {
            a.ld_imm64(R2, n as i64).jump_reg(Cond::Eq, R1, R2, keep);
        }
        a.goto(skip).bind(keep);
    }
    a.load(Size::H, R1, R10, rec(at::ETHERTYPE));
    a.mov_imm(R8, 20).jump_imm(Cond::Eq, R1, 0x0800, common);
    a.mov_imm(R8, 40).jump_imm(Cond::Eq, R1, 0x86dd, common);
    a.goto(send);
    a.bind(common);
    a.load(Size::H, R1, R10, network).jump_imm(Cond::Eq, R1, 0xffff, send);
    a.mov(R2, R1).add(R2, R8).load(Size::W, R3, R10, tail).jump_reg(Cond::Gt, R2, R3, not_linear);
    a.load(Size::DW, R9, R10, head).add(R9, R1); // the network header
    a.jump_imm(Cond::Eq, R8, 40, rd6);
    probe_read(&mut a, IPH, 20, R9, 0);
    a.load(Size::W, R1, R10, IPH + 12).store(Size::W, R10, rec(at::SADDR), R1);
    a.load(Size::W, R1, R10, IPH + 16).store(Size::W, R10, rec(at::DADDR), R1);
    a.load(Size::B, R1, R10, IPH + 9).store(Size::B, R10, rec(at::L4), R1);
    a.goto(ports);
    a.bind(rd6);
    probe_read(&mut a, rec(at::SADDR), 32, R9, 8);
    probe_read(&mut a, rec(at::L4), 1, R9, 6);

    // TCP or UDP ports from the transport header, likewise bounded.
    a.bind(ports);
    set_flag(&mut a, flag::ADDRS);
    a.load(Size::B, R1, R10, rec(at::L4));
    a.jump_imm(Cond::Eq, R1, 6, tp).jump_imm(Cond::Eq, R1, 17, tp).goto(send);
    a.bind(tp);
    a.load(Size::H, R1, R10, transport).jump_imm(Cond::Eq, R1, 0xffff, send);
    a.mov(R2, R1).add_imm(R2, 4).load(Size::W, R3, R10, tail).jump_reg(Cond::Gt, R2, R3, not_linear);
    a.load(Size::DW, R9, R10, head).add(R9, R1);
    probe_read(&mut a, rec(at::SPORT), 4, R9, 0);
    set_flag(&mut a, flag::PORTS);
    a.goto(send);
    a.bind(not_linear);
    set_flag(&mut a, flag::NOT_LINEAR);

    a.bind(send);
    a.mov(R1, R6).ld_map_fd(R2, map_fd).ld_imm64(R3, BPF_F_CURRENT_CPU).mov(R4, R10).add_imm(R4, REC as i32);
    a.mov_imm(R5, RECORD as i32).call(HELPER_PERF_EVENT_OUTPUT);
    a.bind(skip);
    a.mov_imm(R0, 0).exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::filter::AnyOf;

    fn cmp(field: &str, op: Op, value: i64) -> Cmp {
        Cmp { field: field.into(), op, value }
    }

    #[test]
    fn offsets_from_the_fixture_and_a_bounded_program() {
        let btf = Btf::parse(include_bytes!("../../../../../tests/fixtures/btf/drops.btf")).unwrap();
        let o = Offsets::from_btf(&btf).unwrap();
        assert_eq!((o.skb_dev, o.skb_network_header, o.skb_protocol), (16, 180, 176));
        let filter = Filter(vec![AnyOf(vec![cmp("reason", Op::Eq, 2), cmp("protocol", Op::Eq, 0x86dd)])]);
        let n = build(&o, 3, &filter, &[4026531840], true).unwrap().len();
        assert!((100..300).contains(&n), "{n}");
    }

    #[test]
    fn only_groups_of_known_fields_go_to_the_kernel() {
        let f = Filter(vec![
            AnyOf(vec![cmp("reason", Op::Eq, 2), cmp("location", Op::Gt, 7)]),
            AnyOf(vec![cmp("reason", Op::Eq, 2), cmp("rx_sk", Op::Eq, 0)]),
            AnyOf(vec![cmp("protocol", Op::Eq, 0x800)]),
        ]);
        let k = in_kernel(&f);
        assert_eq!(k.to_string(), "(reason == 2 || location > 7) && protocol == 2048");
    }
}
