//! One captured packet's headers as typed fields: the link layers and
//! encapsulations [`link`](super::link) peels (Ethernet with VLAN tags,
//! MPLS, PPPoE, Linux cooked v1 and v2, NFLOG, raw IP, BSD loopback), then
//! IPv4 and IPv6, TCP with its options, UDP, ICMP. Header parsing past the
//! link layer is etherparse's, in its lax mode: a packet cut short by the
//! snap length still gives every header it holds. What etherparse leaves
//! out is read here as tshark 4.0 reads it: TCP options after a kind it
//! does not know, the length of BIG TCP packets (IPv4 total length 0, IPv6
//! jumbo payload option), and the transport header of a first fragment.

use std::net::IpAddr;

use etherparse::{
    Icmpv4Slice, Icmpv6Slice, IpNumber, Ipv6ExtensionSlice, Ipv6ExtensionsSlice, LaxNetSlice, LaxSlicedPacket,
    TcpSlice, TransportSlice, UdpSlice,
};

use super::link::{self, be16, be32};
use super::Direction;

pub use super::link::{
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL,
    LINKTYPE_RAW,
};

/// TCP's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tcp {
    /// The flag bits of byte 13: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08,
    /// ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80.
    pub flags: u8,
    pub seq: u32,
    pub ack_seq: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    pub header_length: u8,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ts_val: Option<u32>,
    pub ts_ecr: Option<u32>,
    /// SACK blocks (left edge, right edge) as sent, absolute: the first
    /// `sack_len` of them (an option holds at most 4).
    pub sack: [(u32, u32); 4],
    pub sack_len: u8,
}

impl Tcp {
    /// The SACK blocks the options carried, absolute.
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        self.sack.get(..self.sack_len as usize).unwrap_or(&[])
    }
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// Flags as tcpdump 4.99 prints them (tcp_flag_values in its
/// print-tcp.c): F S R P, then '.' for ACK, then U E W ("S.", "P.E",
/// "S.W"); "none" without any.
pub fn tcpdump_flags(flags: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(FIN, 'F'), (SYN, 'S'), (RST, 'R'), (PSH, 'P'), (ACK, '.'), (URG, 'U'), (ECE, 'E'), (CWR, 'W')] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// What the headers of one packet say; None where a header is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub ether_type: Option<u16>,
    /// Linux cooked captures carry the direction and interface index.
    pub direction: Option<Direction>,
    pub ifindex: Option<u32>,
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    /// IP protocol number of the transport header.
    pub ip_protocol: Option<u8>,
    pub ttl: Option<u8>,
    pub ip_id: Option<u16>,
    pub dscp: Option<u8>,
    pub ecn: Option<u8>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp: Option<Tcp>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Transport payload bytes as the headers declare them (not as captured).
    pub payload_length: Option<u32>,
    /// Where the captured part of the transport payload (TCP, UDP, ICMP
    /// after its 8-byte header) lies in the bytes decoded: link padding
    /// excluded, cut where the capture was.
    pub payload: Option<std::ops::Range<usize>>,
    /// The IP header declares no length (IPv4 total length 0, as GSO and
    /// TSO send packets over 64 KB): `payload_length` counts to the end of
    /// the bytes decoded until [`Decoded::on_wire`] extends it to the
    /// frame's length on the wire, as tshark does.
    pub sized_by_frame: bool,
    /// The link layer's tags (see [`link`]): the innermost VLAN ID, the
    /// outermost when there are two or more, the top MPLS label.
    pub vlan_id: Option<u16>,
    pub outer_vlan_id: Option<u16>,
    pub mpls_label: Option<u32>,
    /// What stopped decoding before an IP header, when sockql does not
    /// decode it (another link type, EtherType, PPP protocol, ...).
    pub undecoded: Option<link::Undecoded>,
}

impl Decoded {
    /// Correct for a packet `captured` bytes of which were decoded, of
    /// `wire` on the wire: a length taken from the frame counts them all.
    pub fn on_wire(mut self, captured: usize, wire: u32) -> Decoded {
        if self.sized_by_frame {
            let cut = (wire as usize).saturating_sub(captured);
            self.payload_length = self.payload_length.map(|l| l.saturating_add(u32::try_from(cut).unwrap_or(u32::MAX)));
        }
        self
    }

    /// The `protocol` column: tcp, udp, icmp, icmpv6, or the number.
    pub fn protocol_name(&self) -> Option<std::borrow::Cow<'static, str>> {
        self.ip_protocol.map(|p| match p {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 => "icmp".into(),
            58 => "icmpv6".into(),
            other => other.to_string().into(),
        })
    }
}

/// Decode `data` captured with link type `linktype`.
pub fn decode(linktype: u32, data: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let peeled = link::peel(linktype, data, &mut d);
    network(d, peeled, data)
}

/// Decode what a cooked capture hands over: the header its EtherType
/// announces on.
pub fn decode_network(ether_type: u16, data: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let peeled = link::cooked(ether_type, data, 0, &mut d);
    network(d, peeled, data)
}

/// The IP header on, where the link layers put it.
fn network(mut d: Decoded, peeled: link::Peeled, data: &[u8]) -> Decoded {
    match peeled {
        Ok(Some(ip)) => match data.get(ip).map(LaxSlicedPacket::from_ip) {
            Some(Ok(p)) => fill(d, &p, data),
            _ => d,
        },
        Ok(None) => d,
        Err(what) => {
            d.undecoded = Some(what);
            d
        }
    }
}

/// Where `part`, a slice of `whole`, lies in it.
fn range_in(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The TCP option kinds read (RFC 9293, 2018, 7323); every other kind is
/// stepped over by its length.
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;

/// Walk TCP options as tshark 4.0 does: an unknown kind is stepped over by
/// its length; a known kind with the wrong length is not read but stepped
/// over too; end-of-options, a length under 2 or one past the header's end
/// ends the walk (what came before stays). SACK keeps the whole blocks
/// that fit. Nothing is allocated.
fn read_options(opts: &[u8], tcp: &mut Tcp) {
    let mut at = 0;
    while let Some(&kind) = opts.get(at) {
        match kind {
            OPT_EOL => break,
            OPT_NOP => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(at + 1) else { break };
        let Some(body) = opts.get(at + 2..at + len as usize).filter(|_| len >= 2) else { break };
        match (kind, body.len()) {
            (OPT_MSS, 2) => tcp.mss = be16(body, 0),
            (OPT_WSCALE, 1) => tcp.wscale = body.first().copied(),
            (OPT_SACK_PERMITTED, 0) => tcp.sack_permitted = true,
            (OPT_TIMESTAMP, 8) => {
                tcp.ts_val = be32(body, 0);
                tcp.ts_ecr = be32(body, 4);
            }
            (OPT_SACK, _) => {
                tcp.sack_len = 0;
                for (slot, block) in tcp.sack.iter_mut().zip(body.chunks_exact(8)) {
                    if let (Some(l), Some(r)) = (be32(block, 0), be32(block, 4)) {
                        *slot = (l, r);
                        tcp.sack_len += 1;
                    }
                }
            }
            _ => {}
        }
        at += len as usize;
    }
}

/// The Jumbo Payload option (RFC 2675, type 0xC2) of a hop-by-hop header
/// that comes first: the length of everything after the IPv6 header.
fn jumbo_length(exts: &Ipv6ExtensionsSlice<'_>) -> Option<u32> {
    let Some(Ipv6ExtensionSlice::HopByHop(hbh)) = exts.clone().into_iter().next() else { return None };
    let opts = hbh.payload();
    let mut at = 0;
    while let Some(&kind) = opts.get(at) {
        if kind == 0 {
            // Pad1
            at += 1;
            continue;
        }
        let len = *opts.get(at + 1)? as usize;
        if kind == 0xC2 && len == 4 {
            return be32(opts, at + 2);
        }
        at += 2 + len;
    }
    None
}

/// The transport header of a first fragment, which etherparse leaves
/// unsliced (it slices no fragment); tcpdump and tshark (without
/// reassembly) decode it.
fn first_fragment_transport<'a>(proto: IpNumber, payload: &'a [u8]) -> Option<TransportSlice<'a>> {
    match proto {
        IpNumber::TCP => TcpSlice::from_slice(payload).ok().map(TransportSlice::Tcp),
        IpNumber::UDP => UdpSlice::from_slice_lax(payload).ok().map(TransportSlice::Udp),
        IpNumber::ICMP => Icmpv4Slice::from_slice(payload).ok().map(TransportSlice::Icmpv4),
        IpNumber::IPV6_ICMP => Icmpv6Slice::from_slice(payload).ok().map(TransportSlice::Icmpv6),
        _ => None,
    }
}

/// The network and transport fields of a sliced packet; `data` is what was sliced.
fn fill(mut d: Decoded, p: &LaxSlicedPacket<'_>, data: &[u8]) -> Decoded {
    let mut ip_payload_len: Option<usize> = None;
    // The IP length came from the frame (IPv4 total length 0).
    let mut frame_sized = false;
    // The IP payload when it is a first fragment (offset 0, more to come).
    let mut first_fragment = None;
    // False where the IP header says there is no payload to read.
    let mut has_transport = true;
    match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            d.ether_type.get_or_insert(0x0800);
            d.src_addr = Some(IpAddr::V4(h.source_addr()));
            d.dst_addr = Some(IpAddr::V4(h.destination_addr()));
            d.ttl = Some(h.ttl());
            d.ip_id = Some(h.identification());
            d.dscp = Some(h.dcp().value());
            d.ecn = Some(h.ecn().value());
            let payload = v4.payload();
            d.ip_protocol = Some(payload.ip_number.0);
            if h.total_len() == 0 {
                // GSO/TSO: the frame's length is the packet's (tshark's
                // ip.tso_support, on by default; tcpdump 4.99 prints "bad-len 0").
                ip_payload_len = range_in(data, payload.payload).map(|r| data.len() - r.start);
                frame_sized = true;
            } else {
                ip_payload_len = (h.total_len() as usize).checked_sub(h.ihl() as usize * 4);
            }
            if payload.fragmented && h.fragments_offset().value() == 0 {
                first_fragment = Some((payload.ip_number, payload.payload));
            }
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            d.ether_type.get_or_insert(0x86dd);
            d.src_addr = Some(IpAddr::V6(h.source_addr()));
            d.dst_addr = Some(IpAddr::V6(h.destination_addr()));
            d.ttl = Some(h.hop_limit());
            d.dscp = Some(h.dscp().value());
            d.ecn = Some(h.ecn().value());
            let payload = v6.payload();
            d.ip_protocol = Some(payload.ip_number.0);
            let exts = v6.extensions();
            let declared = match h.payload_length() {
                // A jumbogram (BIG TCP over IPv6). Without the option, tshark
                // (ipv6.tso_support off by default) and tcpdump read no
                // payload at all, and neither does this.
                0 => jumbo_length(exts),
                n => Some(n as u32),
            };
            has_transport = declared.is_some();
            ip_payload_len = declared.and_then(|l| (l as usize).checked_sub(exts.slice().len()));
            if payload.fragmented {
                let offset = exts.clone().into_iter().find_map(|e| match e {
                    Ipv6ExtensionSlice::Fragment(f) => Some(f.fragment_offset().value()),
                    _ => None,
                });
                if offset == Some(0) {
                    first_fragment = Some((payload.ip_number, payload.payload));
                }
            }
        }
        _ => {}
    }
    let own;
    let transport = match (&p.transport, first_fragment) {
        _ if !has_transport => None,
        (Some(t), _) => Some(t),
        (None, Some((proto, payload))) => {
            own = first_fragment_transport(proto, payload);
            own.as_ref()
        }
        (None, None) => None,
    };
    match transport {
        Some(TransportSlice::Tcp(t)) => {
            d.src_port = Some(t.source_port());
            d.dst_port = Some(t.destination_port());
            let header_length = t.data_offset() * 4;
            d.payload_length = ip_payload_len
                .and_then(|l| l.checked_sub(header_length as usize))
                .map(|l| u32::try_from(l).unwrap_or(u32::MAX));
            // Only TCP's length comes from the IP header; UDP has its own.
            d.sized_by_frame = frame_sized && d.payload_length.is_some();
            let mut tcp = Tcp {
                flags: t.header_slice().get(13).copied().unwrap_or(0),
                seq: t.sequence_number(),
                ack_seq: t.acknowledgment_number(),
                window: t.window_size(),
                header_length,
                ..Tcp::default()
            };
            read_options(t.options(), &mut tcp);
            d.tcp = Some(tcp);
            d.payload = range_in(data, t.payload());
        }
        Some(TransportSlice::Udp(u)) => {
            d.src_port = Some(u.source_port());
            d.dst_port = Some(u.destination_port());
            d.payload_length = (u.length() as u32).checked_sub(8);
            d.payload = range_in(data, u.payload());
        }
        Some(TransportSlice::Icmpv4(i)) => {
            d.icmp_type = Some(i.type_u8());
            d.icmp_code = Some(i.code_u8());
            d.payload = range_in(data, i.payload());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            d.icmp_type = Some(i.type_u8());
            d.icmp_code = Some(i.code_u8());
            d.payload = range_in(data, i.payload());
        }
        _ => {}
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_tcpdump_prints_them() {
        assert_eq!(tcpdump_flags(SYN), "S");
        assert_eq!(tcpdump_flags(SYN | ACK), "S.");
        assert_eq!(tcpdump_flags(PSH | ACK), "P.");
        assert_eq!(tcpdump_flags(FIN | PSH | ACK), "FP.");
        assert_eq!(tcpdump_flags(RST | ACK), "R.");
        assert_eq!(tcpdump_flags(SYN | ECE | CWR), "SEW");
        // tcpdump 4.99's order: the '.' for ACK before U, E and W.
        assert_eq!(tcpdump_flags(SYN | ACK | CWR), "S.W");
        assert_eq!(tcpdump_flags(PSH | ACK | ECE), "P.E");
        assert_eq!(tcpdump_flags(0xff), "FSRP.UEW");
        assert_eq!(tcpdump_flags(ACK), ".");
        assert_eq!(tcpdump_flags(0), "none");
    }

    #[test]
    fn decodes_a_syn_on_ethernet_and_cooked_links() {
        // A SYN with MSS, SACK-permitted, timestamps and window scale, as
        // tcpdump -w wrote it on lo (Ethernet with zero addresses).
        let ip = crate::packets::tests::SYN_IPV4;
        let mut eth = vec![0u8; 12];
        eth.extend([0x08, 0x00]);
        eth.extend(ip);
        let d = decode(LINKTYPE_ETHERNET, &eth);
        assert_eq!(d.src_addr, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((d.src_port, d.dst_port), (Some(41234), Some(8080)));
        assert_eq!(d.protocol_name().as_deref(), Some("tcp"));
        let t = d.tcp.clone().unwrap();
        assert_eq!(tcpdump_flags(t.flags), "S");
        assert_eq!((t.mss, t.wscale, t.sack_permitted), (Some(65495), Some(7), true));
        assert_eq!((t.ts_val, t.ts_ecr), (Some(0x0102_0304), Some(0)));
        assert_eq!(d.payload_length, Some(0));
        assert_eq!(d.ttl, Some(64));
        // Linux cooked v2, as tcpdump -i any writes: outgoing on ifindex 1.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0x03, 0x04, 4, 6];
        sll2.extend([0u8; 8]);
        sll2.extend(ip);
        let c = decode(LINKTYPE_LINUX_SLL2, &sll2);
        assert_eq!((c.direction, c.ifindex), (Some(Direction::Out), Some(1)));
        assert_eq!(c.tcp, d.tcp);
        // Cut short by the snap length inside the options: IP still reads.
        let cut = decode(LINKTYPE_ETHERNET, &eth[..14 + 20 + 10]);
        assert_eq!(cut.src_addr, d.src_addr);
        assert_eq!(cut.tcp, None);
        assert_eq!(decode(LINKTYPE_ETHERNET, &[0u8; 3]), Decoded::default());
    }

    fn options(opts: &[u8]) -> Tcp {
        let mut t = Tcp::default();
        read_options(opts, &mut t);
        t
    }

    #[test]
    fn options_walk_past_unknown_kinds_and_stop_where_tshark_stops() {
        // Kind 254 before window scale, MSS and SACK-permitted: all kept.
        let t = options(&[254, 4, 0xab, 0xcd, 3, 3, 7, 2, 4, 5, 0xb4, 4, 2]);
        assert_eq!((t.wscale, t.mss, t.sack_permitted), (Some(7), Some(1460), true));
        // A length under 2, or past the end: the walk ends, what came before stays.
        assert_eq!(options(&[254, 0, 3, 3, 7]).wscale, None);
        assert_eq!(options(&[254, 1, 3, 3, 7]).wscale, None);
        let t = options(&[3, 3, 7, 254, 30, 2, 4, 5, 0xb4]);
        assert_eq!((t.wscale, t.mss), (Some(7), None));
        // End of options ends it; a truncated length byte too.
        assert_eq!(options(&[0, 3, 3, 7]).wscale, None);
        assert_eq!(options(&[1, 1, 3]).wscale, None);
        // A known kind of the wrong length is stepped over, not read.
        let t = options(&[3, 4, 7, 0, 2, 4, 5, 0xb4]);
        assert_eq!((t.wscale, t.mss), (None, Some(1460)));
        // Timestamps; SACK keeps the whole blocks that fit, at most four.
        let t = options(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 5, 12, 0, 0, 0, 5, 0, 0, 0, 6, 9, 9]);
        assert_eq!((t.ts_val, t.ts_ecr, t.sack_blocks()), (Some(1), Some(2), &[(5, 6)][..]));
        let mut five = vec![5, 42];
        for i in 0..5u32 {
            five.extend((i * 10).to_be_bytes());
            five.extend((i * 10 + 5).to_be_bytes());
        }
        assert_eq!(options(&five).sack_blocks(), &[(0, 5), (10, 15), (20, 25), (30, 35)]);
        assert_eq!(options(&[]), Tcp::default());
    }

    /// Ethernet + IPv6 with `plen`, next header `nh`, then `rest`.
    fn ipv6(plen: u16, nh: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
        p.extend(plen.to_be_bytes());
        p.extend([nh, 64]);
        p.extend([0u8; 32]);
        p.extend(rest);
        p
    }

    /// A bare TCP header (20 bytes, ACK|PSH).
    const TCP: [u8; 20] = [0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0, 100, 0, 0, 0, 0];

    #[test]
    fn big_tcp_lengths() {
        // IPv4 total length 0: the frame's length, once it is known.
        let mut v4 = vec![0u8; 12];
        v4.extend([0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        v4.extend(TCP);
        let d = decode(LINKTYPE_ETHERNET, &v4);
        assert!(d.sized_by_frame);
        assert_eq!(d.payload_length, Some(0));
        assert_eq!(d.on_wire(v4.len(), v4.len() as u32 + 80_000).payload_length, Some(80_000));
        // UDP has a length of its own: the frame's does not replace it.
        let mut udp = v4.clone();
        udp[23] = 17;
        udp.truncate(34);
        udp.extend([0x9c, 0x40, 0x13, 0x89, 0, 20, 0, 0]);
        udp.extend([0u8; 12]);
        let d = decode(LINKTYPE_ETHERNET, &udp);
        assert_eq!((d.sized_by_frame, d.on_wire(udp.len(), 90_000).payload_length), (false, Some(12)));
        // A jumbogram: a hop-by-hop header with padding and the jumbo option.
        let mut hbh = vec![6, 0, 0, 0, 0xC2, 4];
        hbh.extend((8 + 20 + 131_072u32).to_be_bytes());
        hbh.truncate(8);
        hbh.extend(TCP);
        // 16 bytes: PadN (4), the option (6), four Pad1.
        let mut hbh_ok = vec![6, 1, 1, 2, 0, 0, 0xC2, 4];
        hbh_ok.extend((16 + 20 + 131_072u32).to_be_bytes());
        hbh_ok.extend([0, 0, 0, 0]);
        hbh_ok.extend(TCP);
        let d = decode(LINKTYPE_ETHERNET, &ipv6(0, 0, &hbh_ok));
        assert_eq!((d.payload_length, d.src_port, d.sized_by_frame), (Some(131_072), Some(40000), false));
        // The option cut off by the header's end: no length, no transport.
        let d = decode(LINKTYPE_ETHERNET, &ipv6(0, 0, &hbh));
        assert_eq!((d.payload_length, d.src_port, d.ip_protocol), (None, None, Some(6)));
        // Payload length 0 without a hop-by-hop header: the same.
        let d = decode(LINKTYPE_ETHERNET, &ipv6(0, 6, &TCP));
        assert_eq!((d.payload_length, d.tcp.is_none(), d.on_wire(200, 90_000).payload_length), (None, true, None));
        // An ordinary length is the header's, whatever the wire says.
        let d = decode(LINKTYPE_ETHERNET, &ipv6(20, 6, &TCP));
        assert_eq!(d.on_wire(74, 9000).payload_length, Some(0));
    }

    #[test]
    fn first_fragments_keep_their_transport_header() {
        // IPv4 UDP, more fragments, offset 0: ports and the datagram's length.
        let mut v4 = vec![0u8; 12];
        v4.extend([0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 1, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        v4.extend([0x9c, 0x40, 0x13, 0x89, 0x0f, 0xa8, 0, 0]);
        v4.extend([b'u'; 1472]);
        let d = decode(LINKTYPE_ETHERNET, &v4);
        assert_eq!((d.src_port, d.dst_port, d.payload_length), (Some(40000), Some(5001), Some(4000)));
        assert_eq!(d.payload, Some(42..v4.len()));
        // The next fragment (offset 1480): no transport header.
        v4[20..22].copy_from_slice(&[0x20, 185]);
        let d = decode(LINKTYPE_ETHERNET, &v4);
        assert_eq!((d.src_port, d.payload_length, d.ip_protocol), (None, None, Some(17)));
        // IPv6 ICMPv6 echo request behind a fragment header at offset 0, M set.
        let mut frag = vec![58, 0, 0, 1, 0, 0, 0, 7];
        frag.extend([128, 0, 0, 0, 0, 1, 0, 1]);
        frag.extend([0u8; 16]);
        let d = decode(LINKTYPE_ETHERNET, &ipv6(frag.len() as u16, 44, &frag));
        assert_eq!((d.icmp_type, d.icmp_code), (Some(128), Some(0)));
        // At offset 8 (bytes), no ICMPv6 header.
        frag[2..4].copy_from_slice(&[0, 8 | 1]);
        let d = decode(LINKTYPE_ETHERNET, &ipv6(frag.len() as u16, 44, &frag));
        assert_eq!((d.icmp_type, d.ip_protocol), (None, Some(58)));
    }
}
