//! Packet rows: the columns every packet source shares, filled from one
//! decoded packet. Sources: [`capture`] (the live `packets` table) and
//! [`read_pcap`] (capture files).

pub mod capture;
pub mod capture_owners;
pub mod capture_seconds;
pub mod read_pcap;

use crate::columns::RowBuilder;
use crate::table_columns;
use sockql_collect::packets::decode::{self, Decoded};
use sockql_collect::packets::flows::Flows;
use sockql_collect::packets::Direction;

table_columns!(Col {
    Frame: "frame", U64, false, "Packet number in the capture, from 1 (tshark frame.number)";
    Ts: "ts", TimestampNs, true, "When the packet was captured, UTC, to the nanosecond the file holds (NULL for a file's time outside the years 1677 to 2262)";
    Interface: "interface", Utf8, true, "Interface the packet was captured on, where the file names it (pcapng)";
    Ifindex: "ifindex", U32, true, "Interface index on the capturing host (Linux cooked v2 captures, tcpdump -i any)";
    Direction: "direction", Utf8, true, "in or out, where the capture says (pcapng flags, Linux cooked packet type)";
    Length: "length", U32, false, "Length on the wire, bytes";
    CapturedLength: "captured_length", U32, false, "Bytes captured (at most the snap length)";
    EtherType: "ether_type", U16, true, "EtherType of the network header (2048 IPv4, 34525 IPv6, 2054 ARP): after VLAN tags the inner one (tshark vlan.etype), in MPLS, PPPoE, NFLOG and raw IP that of the IP version carried";
    VlanId: "vlan_id", U16, true, "VLAN ID of the innermost 802.1Q/802.1ad tag (tshark vlan.id; ieee8021ad.id when that is the only tag)";
    OuterVlanId: "outer_vlan_id", U16, true, "VLAN ID of the outermost tag when a frame has two or more (QinQ: tshark ieee8021ad.id)";
    MplsLabel: "mpls_label", U32, true, "Top MPLS label of the stack (tshark's first mpls.label)";
    SrcAddr: "src_addr", Utf8, true, "Source IP address";
    DstAddr: "dst_addr", Utf8, true, "Destination IP address";
    Protocol: "protocol", Utf8, true, "Transport protocol: tcp, udp, icmp, icmpv6, or the IP protocol number";
    SrcPort: "src_port", U16, true, "Source port (TCP, UDP); of a fragmented datagram, on its first fragment only (nothing is reassembled: as tshark -o ip.defragment:FALSE and tcpdump)";
    DstPort: "dst_port", U16, true, "Destination port (TCP, UDP); on a first fragment only, like src_port";
    Ttl: "ttl", U8, true, "IPv4 TTL or IPv6 hop limit";
    IpId: "ip_id", U16, true, "IPv4 identification";
    Dscp: "dscp", U8, true, "Differentiated services code point";
    Ecn: "ecn", U8, true, "ECN bits of the IP header (0 not ECT, 1 ECT(1), 2 ECT(0), 3 CE)";
    Flags: "flags", Utf8, true, "TCP flags as tcpdump 4.99 prints them: F S R P, '.' for ACK, then U E W (S, S., P., F., R., ., P.E, S.W); none without any";
    Syn: "syn", Bool, true, "TCP SYN";
    Ack: "ack", Bool, true, "TCP ACK";
    Fin: "fin", Bool, true, "TCP FIN";
    Rst: "rst", Bool, true, "TCP RST";
    Psh: "psh", Bool, true, "TCP PSH";
    Urg: "urg", Bool, true, "TCP URG";
    Ece: "ece", Bool, true, "TCP ECE (ECN echo)";
    Cwr: "cwr", Bool, true, "TCP CWR (congestion window reduced)";
    Seq: "seq", U32, true, "TCP sequence number (absolute)";
    AckSeq: "ack_seq", U32, true, "TCP acknowledgement number (absolute); null without ACK";
    RelSeq: "rel_seq", U32, true, "Sequence number relative to the sender's SYN (or, seen mid-stream, to one before its first), as tshark tcp.seq";
    RelAck: "rel_ack", U32, true, "Acknowledgement number relative to the peer's SYN, as tshark tcp.ack; null without ACK";
    Window: "window", U32, true, "Receive window in bytes: the field scaled by the shift its sender announced, when both SYNs were seen (tshark tcp.window_size)";
    WindowRaw: "window_raw", U16, true, "TCP window field as sent, before scaling";
    HandshakeRttMs: "handshake_rtt_ms", F64, true, "SYN to the ACK of the SYN/ACK, ms (tshark tcp.analysis.initial_rtt), on that ACK and every later packet of the connection";
    ZeroWindow: "zero_window", Bool, true, "A window of 0 advertised (not on SYN, FIN, RST): the receiver is not reading (tshark tcp.analysis.zero_window)";
    DupAck: "dup_ack", Bool, true, "Duplicate ACK: same ACK, window and sequence as the sender's last segment, no data (tshark tcp.analysis.duplicate_ack)";
    Retransmission: "retransmission", Bool, true, "Data (or SYN/FIN) sent again: fast and spurious ones included, out-of-order ones not (tshark tcp.analysis.retransmission)";
    FastRetransmission: "fast_retransmission", Bool, true, "Resent after two or more duplicate ACKs asked for it (tshark tcp.analysis.fast_retransmission)";
    SpuriousRetransmission: "spurious_retransmission", Bool, true, "Resent data the peer had already acknowledged (tshark tcp.analysis.spurious_retransmission)";
    OutOfOrder: "out_of_order", Bool, true, "Behind the highest sequence seen but sent too soon after it to be a resend (tshark tcp.analysis.out_of_order)";
    KeepAlive: "keep_alive", Bool, true, "A keep-alive probe (tshark tcp.analysis.keep_alive)";
    WindowUpdate: "window_update", Bool, true, "No data, same ACK, a new window (tshark tcp.analysis.window_update)";
    WindowFull: "window_full", Bool, true, "Data reaching the right edge of the window the peer advertised: the sender is held back by the receiver (tshark tcp.analysis.window_full)";
    AckRttMs: "ack_rtt_ms", F64, true, "On an ACK that ends exactly where a peer's segment ended: ms since that segment was seen (tshark tcp.analysis.ack_rtt)";
    PayloadLength: "payload_length", U32, true, "Transport payload bytes as the headers declare them (tshark tcp.len, tcpdump length): UDP's from its length field (on a first fragment, the whole datagram's), TCP's from the IP length. An IPv4 total length of 0 (GSO/TSO over 64 KB, BIG TCP) counts the frame's length on the wire, as tshark does (tcpdump 4.99 prints bad-len 0); an IPv6 jumbogram, its jumbo payload option; IPv6 payload length 0 without that option, null (no transport header read, as tshark and tcpdump)";
    Payload: "payload", Binary, true, "The captured payload bytes, only with --payload (they may carry secrets); null otherwise";
    Mss: "mss", U16, true, "TCP MSS option";
    Wscale: "wscale", U8, true, "TCP window scale option";
    SackPermitted: "sack_permitted", Bool, true, "TCP SACK-permitted option";
    TsVal: "ts_val", U32, true, "TCP timestamp option: the sender's value";
    TsEcr: "ts_ecr", U32, true, "TCP timestamp option: the echoed value";
    SackBlocks: "sack_blocks", Utf8, true, "TCP SACK blocks, 'left-right' pairs separated by spaces, relative to the peer's SYN like rel_ack (tshark tcp.options.sack_le, tcp.options.sack_re)";
    SackBlocksRaw: "sack_blocks_raw", Utf8, true, "TCP SACK blocks as sent (absolute sequence numbers, like ack_seq)";
    IcmpType: "icmp_type", U8, true, "ICMP or ICMPv6 type; on a first fragment only, like src_port";
    IcmpCode: "icmp_code", U8, true, "ICMP or ICMPv6 code";
    Netns: "netns", U64, true, "Network namespace the packet was captured in (packets; null for a file)";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
    Container: "container", Utf8, true, "Live capture: name of the container of the packet's holder on this host (src_pid, else dst_pid: where the query asks for them, or a container shares the namespace without owning it, --network host), else of the container whose network namespace it was captured in (podman ps / docker ps NAMES); null for the host's, when the runtime gives no name, and for a file (read_pcap: a file does not say)";
    ContainerId: "container_id", Utf8, true, "Live capture: full id of that container (64 hex digits); null for the host's and for a file";
});

/// Say once why `payload` is null when a query names it (not when it only
/// comes with `SELECT *`) without `--payload`.
pub fn note_payload_hidden(projection: Option<&[usize]>, payload: bool) {
    if let Some(p) = projection {
        if !payload && p.len() < Col::DEFS.len() && p.contains(&crate::columns::Column::index(Col::Payload)) {
            sockql_collect::notice::note_once(
                "payload-hidden",
                "payload is null: pass --payload to keep payload bytes (they may carry secrets)",
            );
        }
    }
}

/// SACK blocks as "left-right" pairs separated by spaces, less `base`.
struct SackText<'a> {
    blocks: &'a [(u32, u32)],
    base: u32,
}

impl std::fmt::Display for SackText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (l, r)) in self.blocks.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}-{}", l.wrapping_sub(self.base), r.wrapping_sub(self.base))?;
        }
        Ok(())
    }
}

/// What the source knows of a packet besides its bytes.
pub struct Meta<'a> {
    /// None: a file's time outside what a timestamp holds.
    pub ts_ns: Option<i64>,
    pub interface: Option<&'a str>,
    pub ifindex: Option<u32>,
    pub direction: Option<Direction>,
    pub length: u32,
    pub captured_length: u32,
    /// The namespace a live capture ran in.
    pub netns: Option<(u64, Option<&'a str>)>,
    /// The payload's captured bytes, when the operator asked (`--payload`).
    pub payload: Option<&'a [u8]>,
    /// A live capture's container of the packet: (name, id).
    pub container: Option<(Option<&'a str>, &'a str)>,
}

/// The columns that need TCP connections followed across packets.
const FLOW_COLUMNS: &[Col] = &[
    Col::RelSeq,
    Col::RelAck,
    Col::Window,
    Col::HandshakeRttMs,
    Col::ZeroWindow,
    Col::DupAck,
    Col::Retransmission,
    Col::FastRetransmission,
    Col::SpuriousRetransmission,
    Col::OutOfOrder,
    Col::KeepAlive,
    Col::WindowUpdate,
    Col::WindowFull,
    Col::AckRttMs,
    Col::SackBlocks,
];

/// True if the query asked for a column that needs connections followed:
/// otherwise a scan keeps no per-connection state at all.
pub fn follows_flows(r: &RowBuilder) -> bool {
    FLOW_COLUMNS.iter().any(|&c| r.wants(c))
}

/// One packet's row; `flows`, when the query needs it (see
/// [`follows_flows`]), follows TCP connections across rows.
pub fn append(r: &mut RowBuilder, flows: Option<&mut Flows>, frame: u64, m: &Meta<'_>, d: &Decoded) {
    use Col::*;
    let analysis = match (flows, &d.tcp, d.src_addr, d.dst_addr, d.src_port, d.dst_port) {
        (Some(flows), Some(t), Some(sa), Some(da), Some(sp), Some(dp)) => {
            Some(flows.track(m.ts_ns.unwrap_or(0), (sa, sp), (da, dp), t, d.payload_length.unwrap_or(0)))
        }
        _ => None,
    };
    let a = analysis.as_ref();
    r.u64(Frame, Some(frame));
    r.timestamp_ns(Ts, m.ts_ns);
    r.str(Interface, m.interface);
    r.u32(Ifindex, m.ifindex);
    r.str(Col::Direction, m.direction.map(|d| d.name()));
    r.u32(Length, Some(m.length));
    r.u32(CapturedLength, Some(m.captured_length));
    r.u16(EtherType, d.ether_type);
    r.u16(VlanId, d.vlan_id);
    r.u16(OuterVlanId, d.outer_vlan_id);
    r.u32(MplsLabel, d.mpls_label);
    match d.src_addr {
        Some(a) => r.display(SrcAddr, &a),
        None => r.str(SrcAddr, None),
    }
    match d.dst_addr {
        Some(a) => r.display(DstAddr, &a),
        None => r.str(DstAddr, None),
    }
    r.str(Protocol, d.protocol_name().as_deref());
    r.u16(SrcPort, d.src_port);
    r.u16(DstPort, d.dst_port);
    r.u8(Ttl, d.ttl);
    r.u16(IpId, d.ip_id);
    r.u8(Dscp, d.dscp);
    r.u8(Ecn, d.ecn);
    let t = d.tcp.as_ref();
    let flag = |bit: u8| t.map(|t| t.flags & bit != 0);
    // Spelled out only when asked for: it is a string per packet.
    if r.wants(Flags) {
        r.str(Flags, t.map(|t| decode::tcpdump_flags(t.flags)).as_deref());
    }
    r.bool(Syn, flag(decode::SYN));
    r.bool(Ack, flag(decode::ACK));
    r.bool(Fin, flag(decode::FIN));
    r.bool(Rst, flag(decode::RST));
    r.bool(Psh, flag(decode::PSH));
    r.bool(Urg, flag(decode::URG));
    r.bool(Ece, flag(decode::ECE));
    r.bool(Cwr, flag(decode::CWR));
    r.u32(Seq, t.map(|t| t.seq));
    // As tcpdump and tshark: no acknowledgement number without ACK.
    r.u32(AckSeq, t.filter(|t| t.flags & decode::ACK != 0).map(|t| t.ack_seq));
    r.u32(RelSeq, a.map(|a| a.rel_seq));
    r.u32(RelAck, a.and_then(|a| a.rel_ack));
    r.u32(Window, a.map(|a| a.window));
    r.u16(WindowRaw, t.map(|t| t.window));
    r.f64(HandshakeRttMs, a.and_then(|a| a.handshake_rtt_ms));
    r.bool(ZeroWindow, a.map(|a| a.zero_window));
    r.bool(DupAck, a.map(|a| a.dup_ack));
    r.bool(Retransmission, a.map(|a| a.retransmission));
    r.bool(FastRetransmission, a.map(|a| a.fast_retransmission));
    r.bool(SpuriousRetransmission, a.map(|a| a.spurious_retransmission));
    r.bool(OutOfOrder, a.map(|a| a.out_of_order));
    r.bool(KeepAlive, a.map(|a| a.keep_alive));
    r.bool(WindowUpdate, a.map(|a| a.window_update));
    r.bool(WindowFull, a.map(|a| a.window_full));
    r.f64(AckRttMs, a.and_then(|a| a.ack_rtt_ms));
    r.u32(PayloadLength, d.payload_length);
    r.binary(Payload, m.payload);
    r.u16(Mss, t.and_then(|t| t.mss));
    r.u8(Wscale, t.and_then(|t| t.wscale));
    r.bool(SackPermitted, t.map(|t| t.sack_permitted));
    r.u32(TsVal, t.and_then(|t| t.ts_val));
    r.u32(TsEcr, t.and_then(|t| t.ts_ecr));
    match t.map(|t| t.sack_blocks()).filter(|b| !b.is_empty()) {
        Some(blocks) => {
            // Relative to what rel_ack counts from, as tshark shows them.
            if let Some(a) = a {
                r.display(SackBlocks, &SackText { blocks, base: a.peer_base });
            } else {
                r.str(SackBlocks, None);
            }
            r.display(SackBlocksRaw, &SackText { blocks, base: 0 });
        }
        None => {
            r.str(SackBlocks, None);
            r.str(SackBlocksRaw, None);
        }
    }
    r.u8(IcmpType, d.icmp_type);
    r.u8(IcmpCode, d.icmp_code);
    r.u64(Col::Netns, m.netns.map(|n| n.0));
    r.str(NetnsName, m.netns.and_then(|n| n.1));
    r.str(Container, m.container.and_then(|c| c.0));
    r.str(ContainerId, m.container.map(|c| c.1));
}
