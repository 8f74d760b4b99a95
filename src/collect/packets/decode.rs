//! One captured packet's headers as typed fields: the link layers and
//! encapsulations [`link`](super::link) peels (Ethernet with VLAN tags,
//! MPLS, PPPoE, Linux cooked v1 and v2, NFLOG, raw IP, BSD loopback), then
//! IPv4 and IPv6, TCP with its options, UDP, ICMP. Header parsing past the
//! link layer is etherparse's, in its lax mode: a packet cut short by the
//! snap length still gives every header it holds.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TcpOptionElement, TransportSlice};

use super::link;
use super::Direction;

pub use super::link::{LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL, LINKTYPE_RAW};

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
    /// SACK blocks as "left-right" pairs, space-separated.
    pub sack_blocks: Option<String>,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// Flags as tcpdump prints them: F S R P U E W in that order, then '.'
/// for ACK ("S.", "P.", "F."); "none" without any.
pub fn tcpdump_flags(flags: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(FIN, 'F'), (SYN, 'S'), (RST, 'R'), (PSH, 'P'), (URG, 'U'), (ECE, 'E'), (CWR, 'W'), (ACK, '.')] {
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

/// The network and transport fields of a sliced packet; `data` is what was sliced.
fn fill(mut d: Decoded, p: &LaxSlicedPacket<'_>, data: &[u8]) -> Decoded {
    let mut ip_payload_len: Option<usize> = None;
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
            d.ip_protocol = Some(v4.payload().ip_number.0);
            ip_payload_len = (h.total_len() as usize).checked_sub(h.ihl() as usize * 4);
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            d.ether_type.get_or_insert(0x86dd);
            d.src_addr = Some(IpAddr::V6(h.source_addr()));
            d.dst_addr = Some(IpAddr::V6(h.destination_addr()));
            d.ttl = Some(h.hop_limit());
            d.dscp = Some(h.dscp().value());
            d.ecn = Some(h.ecn().value());
            d.ip_protocol = Some(v6.payload().ip_number.0);
            ip_payload_len = (h.payload_length() as usize).checked_sub(v6.extensions().slice().len());
        }
        _ => {}
    }
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            d.src_port = Some(t.source_port());
            d.dst_port = Some(t.destination_port());
            let header_length = t.data_offset() * 4;
            d.payload_length = ip_payload_len.and_then(|l| l.checked_sub(header_length as usize)).map(|l| l as u32);
            let mut tcp = Tcp {
                flags: t.header_slice().get(13).copied().unwrap_or(0),
                seq: t.sequence_number(),
                ack_seq: t.acknowledgment_number(),
                window: t.window_size(),
                header_length,
                ..Tcp::default()
            };
            let mut sacks = Vec::new();
            for o in t.options_iterator().flatten() {
                match o {
                    TcpOptionElement::MaximumSegmentSize(m) => tcp.mss = Some(m),
                    TcpOptionElement::WindowScale(w) => tcp.wscale = Some(w),
                    TcpOptionElement::SelectiveAcknowledgementPermitted => tcp.sack_permitted = true,
                    TcpOptionElement::Timestamp(v, e) => {
                        tcp.ts_val = Some(v);
                        tcp.ts_ecr = Some(e);
                    }
                    TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                        sacks.extend(std::iter::once(first).chain(rest.into_iter().flatten()).map(|(l, r)| format!("{l}-{r}")));
                    }
                    TcpOptionElement::Noop => {}
                }
            }
            tcp.sack_blocks = (!sacks.is_empty()).then(|| sacks.join(" "));
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
        assert_eq!(tcpdump_flags(ACK), ".");
        assert_eq!(tcpdump_flags(0), "none");
    }

    #[test]
    fn decodes_a_syn_on_ethernet_and_cooked_links() {
        // A SYN with MSS, SACK-permitted, timestamps and window scale, as
        // tcpdump -w wrote it on lo (Ethernet with zero addresses).
        let ip = crate::collect::packets::tests::SYN_IPV4;
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
}
