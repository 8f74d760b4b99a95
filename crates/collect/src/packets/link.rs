//! Link layers and encapsulations, peeled down to the network header as
//! tshark 4.0 dissects them: Ethernet with any number of 802.1Q / 802.1ad
//! tags, MPLS label stacks, PPPoE sessions, Linux cooked v1 and v2, NFLOG,
//! raw IP, BSD loopback. What is not decoded is named ([`Undecoded`]) so
//! that the reader can say so once per file instead of leaving rows
//! silently empty.
//!
//! Nothing here allocates: a packet's link headers are walked in place and
//! only where the network header lies is handed on.

use std::ops::Range;

use super::decode::Decoded;
use super::Direction;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_NFLOG: u32 = 239;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The pre-802.1ad QinQ outer tag some switches still send (tshark: vlan).
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

/// What stopped decoding before an IP header, when it is something sockql
/// does not decode (not a packet merely cut short by the snap length).
/// Small and `Copy`: a reader counts them per kind without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undecoded {
    /// A link type other than those above.
    LinkType(u32),
    /// An EtherType other than IPv4, IPv6, ARP, VLAN, MPLS, PPPoE session.
    EtherType(u16),
    /// IEEE 802.3 frames (a length where the EtherType would be): LLC,
    /// STP, CDP and the like.
    Llc,
    /// A PPP protocol other than IPv4 (0x0021) and IPv6 (0x0057) in a
    /// PPPoE session (LCP, IPCP, CHAP, ...).
    PppProtocol(u16),
    /// What follows the bottom MPLS label is neither IPv4 nor IPv6 (a
    /// pseudowire: Ethernet over MPLS, with or without control word).
    MplsPayload,
    /// An NFLOG record of an address family other than IPv4 and IPv6.
    NflogFamily(u8),
    /// A BSD loopback header with an address family other than IP's.
    LoopbackFamily(u32),
    /// A Linux cooked capture whose protocol is not an EtherType (802.2
    /// LLC, CAN, netlink, ...).
    CookedProtocol(u16),
    /// A raw-IP link type whose packet's version is neither 4 nor 6.
    NotIp,
}

impl std::fmt::Display for Undecoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Undecoded::LinkType(n) => match linktype_name(n) {
                Some(name) => write!(f, "link type {name} ({n})"),
                None => write!(f, "link type {n}"),
            },
            Undecoded::EtherType(t) => match ethertype_name(t) {
                Some(name) => write!(f, "EtherType 0x{t:04x} ({name})"),
                None => write!(f, "EtherType 0x{t:04x}"),
            },
            Undecoded::Llc => write!(f, "IEEE 802.3 frames with LLC (STP, CDP, ...)"),
            Undecoded::PppProtocol(p) => write!(
                f,
                "PPP protocol 0x{p:04x}{} in PPPoE sessions",
                ppp_name(p).map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            Undecoded::MplsPayload => write!(f, "MPLS payloads that are not IP (pseudowires)"),
            Undecoded::NflogFamily(af) => write!(f, "NFLOG records of address family {af}"),
            Undecoded::LoopbackFamily(af) => write!(f, "BSD loopback address family {af}"),
            Undecoded::CookedProtocol(p) => write!(f, "Linux cooked protocol 0x{p:04x}"),
            Undecoded::NotIp => write!(f, "raw IP packets that are neither IPv4 nor IPv6"),
        }
    }
}

/// pcap-linktype's names (LINKTYPE_*) of the link types one meets.
fn linktype_name(n: u32) -> Option<&'static str> {
    Some(match n {
        0 => "NULL",
        1 => "ETHERNET",
        6 => "IEEE802_5",
        8 => "SLIP",
        9 => "PPP",
        10 => "FDDI",
        50 => "PPP_HDLC",
        51 => "PPP_ETHER",
        100 => "ATM_RFC1483",
        101 => "RAW",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        107 => "FRELAY",
        108 => "LOOP",
        113 => "LINUX_SLL",
        114 => "LTALK",
        119 => "IEEE802_11_PRISM",
        127 => "IEEE802_11_RADIOTAP",
        138 => "APPLE_IP_OVER_IEEE1394",
        147..=162 => "USER0..USER15",
        163 => "IEEE802_11_AVS",
        187 => "BLUETOOTH_HCI_H4",
        189 => "USB_LINUX",
        192 => "PPI",
        195 => "IEEE802_15_4_WITHFCS",
        197 => "ERF",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        215 => "IEEE802_15_4_NONASK_PHY",
        220 => "USB_LINUX_MMAPPED",
        227 => "CAN_SOCKETCAN",
        228 => "IPV4",
        229 => "IPV6",
        239 => "NFLOG",
        240 => "NETANALYZER",
        249 => "USBPCAP",
        253 => "NETLINK",
        254 => "BLUETOOTH_LINUX_MONITOR",
        263 => "PROFIBUS_DL",
        276 => "LINUX_SLL2",
        _ => return None,
    })
}

/// Names of EtherTypes one meets beside IP (tshark's names, shortened).
fn ethertype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        0x0842 => "Wake-on-LAN",
        0x22f3 => "TRILL",
        0x6558 => "transparent Ethernet bridging",
        0x8035 => "RARP",
        0x809b => "AppleTalk",
        0x8137 => "IPX",
        0x8808 => "MAC control",
        0x8809 => "slow protocols, LACP",
        0x880b => "PPP",
        0x8863 => "PPPoE discovery",
        0x888e => "802.1X EAPOL",
        0x8892 => "PROFINET",
        0x88b5 | 0x88b6 => "local experimental",
        0x88cc => "LLDP",
        0x88e5 => "MACsec",
        0x88e7 => "802.1ah PBB",
        0x88f7 => "PTP",
        0x8902 => "802.1ag CFM",
        0x8906 => "FCoE",
        0x8914 => "FIP",
        0x893a => "IEEE 1905.1",
        0x9000 => "loopback",
        _ => return None,
    })
}

fn ppp_name(p: u16) -> Option<&'static str> {
    Some(match p {
        0xc021 => "LCP",
        0x8021 => "IPCP",
        0x8057 => "IPv6CP",
        0xc023 => "PAP",
        0xc223 => "CHAP",
        0x80fd => "CCP",
        _ => return None,
    })
}

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at.checked_add(1)?)?]))
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Where the IP header (and what follows it) lies in a packet's bytes;
/// `Ok(None)` where there is none to decode (ARP, a packet cut short).
pub type Peeled = Result<Option<Range<usize>>, Undecoded>;

/// Linux cooked packet types: 4 is "sent by us", the rest arrived.
fn sll_direction(pkttype: u16) -> Direction {
    if pkttype == 4 {
        Direction::Out
    } else {
        Direction::In
    }
}

/// Walk the link layers of `data` captured with `linktype`, filling the
/// link fields of `d` (EtherType, VLAN tags, MPLS label, cooked direction
/// and interface).
pub fn peel(linktype: u32, data: &[u8], d: &mut Decoded) -> Peeled {
    match linktype {
        LINKTYPE_ETHERNET => match be16(data, 12) {
            Some(t) => ether(t, data, 14, d),
            None => Ok(None),
        },
        LINKTYPE_LINUX_SLL => {
            let (Some(pkttype), Some(proto)) = (be16(data, 0), be16(data, 14)) else { return Ok(None) };
            d.direction = Some(sll_direction(pkttype));
            cooked(proto, data, 16, d)
        }
        LINKTYPE_LINUX_SLL2 => {
            let (Some(proto), Some(idx), Some(&pkttype)) = (be16(data, 0), be32(data, 4), data.get(10)) else {
                return Ok(None);
            };
            d.direction = Some(sll_direction(pkttype as u16));
            d.ifindex = Some(idx);
            cooked(proto, data, 20, d)
        }
        // DLT_RAW is 12 or 14 in some BSDs' files.
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 | 12 | 14 => raw_ip(data, 0),
        LINKTYPE_NULL | LINKTYPE_LOOP => loopback(data),
        LINKTYPE_NFLOG => nflog(data),
        other => Err(Undecoded::LinkType(other)),
    }
}

/// A cooked capture's protocol field (a file's, or what a live AF_PACKET
/// socket hands over at `at` 0): an EtherType from 0x0600 on; below,
/// Linux's own numbers for what has none (802.2 LLC, CAN, ...).
pub fn cooked(proto: u16, data: &[u8], at: usize, d: &mut Decoded) -> Peeled {
    if proto < 0x0600 {
        return Err(Undecoded::CookedProtocol(proto));
    }
    ether(proto, data, at, d)
}

/// From the header an EtherType announces at `at` on: what a live cooked
/// capture hands over starts here.
pub fn ether(mut ether_type: u16, data: &[u8], mut at: usize, d: &mut Decoded) -> Peeled {
    // Each pass consumes a header's bytes: the walk ends with the data.
    loop {
        if ether_type < 0x0600 {
            // 802.3: a length, not a type (tshark: eth.len, then LLC).
            return Err(Undecoded::Llc);
        }
        d.ether_type = Some(ether_type);
        match ether_type {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Ok(Some(at..data.len())),
            ETHERTYPE_ARP => return Ok(None),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                let (Some(tci), Some(next)) = (be16(data, at), be16(data, at + 2)) else { return Ok(None) };
                // The outermost stays outer; the innermost is the last seen.
                if let Some(inner) = d.vlan_id {
                    d.outer_vlan_id.get_or_insert(inner);
                }
                d.vlan_id = Some(tci & 0x0fff);
                ether_type = next;
                at += 4;
            }
            ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => return mpls(data, at, d),
            ETHERTYPE_PPPOE_SESSION => return pppoe(data, at, d),
            other => return Err(Undecoded::EtherType(other)),
        }
    }
}

/// An MPLS label stack: 4 bytes a label, the bottom one marked; after it
/// IPv4 or IPv6, told as tshark tells it: by an explicit-null bottom
/// label, else by the first nibble.
fn mpls(data: &[u8], mut at: usize, d: &mut Decoded) -> Peeled {
    loop {
        let Some(entry) = be32(data, at) else { return Ok(None) };
        at += 4;
        let label = entry >> 12;
        d.mpls_label.get_or_insert(label);
        if entry & 0x100 == 0 {
            continue;
        }
        let version = match label {
            0 => 4,
            2 => 6,
            _ => match data.get(at) {
                Some(b) => b >> 4,
                None => return Ok(None),
            },
        };
        return match version {
            4 => {
                d.ether_type = Some(ETHERTYPE_IPV4);
                Ok(Some(at..data.len()))
            }
            6 => {
                d.ether_type = Some(ETHERTYPE_IPV6);
                Ok(Some(at..data.len()))
            }
            _ => Err(Undecoded::MplsPayload),
        };
    }
}

/// A PPPoE session header (6 bytes), then PPP's protocol field (one byte
/// when compressed: an odd first byte, as tshark reads it).
fn pppoe(data: &[u8], at: usize, d: &mut Decoded) -> Peeled {
    let at = at + 6;
    let Some(&first) = data.get(at) else { return Ok(None) };
    let (protocol, at) = if first & 1 == 1 {
        (first as u16, at + 1)
    } else {
        match be16(data, at) {
            Some(p) => (p, at + 2),
            None => return Ok(None),
        }
    };
    let ether_type = match protocol {
        0x0021 => ETHERTYPE_IPV4,
        0x0057 => ETHERTYPE_IPV6,
        other => return Err(Undecoded::PppProtocol(other)),
    };
    d.ether_type = Some(ether_type);
    Ok(Some(at..data.len()))
}

/// IP with nothing before it: the version nibble says which.
fn raw_ip(data: &[u8], at: usize) -> Peeled {
    match data.get(at).map(|b| b >> 4) {
        Some(4 | 6) => Ok(Some(at..data.len())),
        Some(_) => Err(Undecoded::NotIp),
        None => Ok(None),
    }
}

/// BSD loopback: a 4-byte address family, in the writer's byte order
/// (LINKTYPE_NULL) or big-endian (LINKTYPE_LOOP); a family is small, so
/// high bits set mean the other order. IPv6's number differs by system.
fn loopback(data: &[u8]) -> Peeled {
    let Some(word) = data.get(0..4) else { return Ok(None) };
    let le = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    let family = if le & 0xffff_0000 != 0 { le.swap_bytes() } else { le };
    match family {
        // AF_INET; AF_INET6 on NetBSD/OpenBSD, FreeBSD, Darwin (tshark's
        // list: Linux's 10 is not among them).
        2 | 24 | 28 | 30 => raw_ip(data, 4),
        other => Err(Undecoded::LoopbackFamily(other)),
    }
}

/// NFULA_PAYLOAD: the packet, from its network header on.
const NFULA_PAYLOAD: u16 = 9;

/// LINKTYPE_NFLOG: family (1 byte), version (1), resource id (2), then
/// netlink TLVs (length and type in the logging host's byte order, each
/// padded to 4 bytes); NFULA_PAYLOAD holds the IP packet.
fn nflog(data: &[u8]) -> Peeled {
    let Some(&family) = data.first() else { return Ok(None) };
    let little = nflog_little_endian(data);
    let rd = |at: usize| -> Option<u16> {
        let v = be16(data, at)?;
        Some(if little { v.swap_bytes() } else { v })
    };
    let mut payload = None;
    let mut at = 4usize;
    while at + 4 <= data.len() {
        let (Some(len), Some(ty)) = (rd(at), rd(at + 2)) else { break };
        if len < 4 {
            break;
        }
        if ty & 0x7fff == NFULA_PAYLOAD {
            // As tshark: the last payload attribute, cut where the capture was.
            payload = Some(at + 4..(at + len as usize).min(data.len()));
        }
        at += (len as usize + 3) & !3;
    }
    let Some(payload) = payload else { return Ok(None) };
    match family {
        // AF_INET, AF_INET6: tshark hands the payload to ip / ipv6.
        2 | 10 => Ok(raw_ip(data, payload.start)?.map(|_| payload)),
        other => Err(Undecoded::NflogFamily(other)),
    }
}

/// The byte order of NFLOG's TLVs, guessed as tshark guesses it: the
/// first order in which a TLV's type reads as a small nonzero number
/// (big-endian tried first, and the answer when neither fits).
fn nflog_little_endian(data: &[u8]) -> bool {
    let fits = |little: bool| {
        let rd = |at: usize| be16(data, at).map(|v| if little { v.swap_bytes() } else { v });
        let mut at = 4usize;
        while at + 4 < data.len() {
            let (Some(len), Some(ty)) = (rd(at), rd(at + 2)) else { return false };
            if len < 4 {
                return false;
            }
            let ty = ty & 0x7fff;
            if ty >= 0x100 {
                return false;
            }
            if ty != 0 {
                return true;
            }
            at += (len as usize + 3) & !3;
        }
        false
    };
    !fits(false) && fits(true)
}

/// Counts of what a file held that was not decoded, a few kinds each
/// counted, without allocating per packet: the reader says it once, at
/// the end ([`Tally::describe`]).
#[derive(Debug, Default)]
pub struct Tally {
    kinds: [Option<(Undecoded, u64)>; Tally::KINDS],
    /// Packets of kinds past the first `KINDS`.
    others: u64,
}

impl Tally {
    const KINDS: usize = 8;

    pub fn add(&mut self, what: Undecoded) {
        for slot in self.kinds.iter_mut() {
            match slot {
                Some((k, n)) if *k == what => {
                    *n += 1;
                    return;
                }
                None => {
                    *slot = Some((what, 1));
                    return;
                }
                Some(_) => {}
            }
        }
        self.others += 1;
    }

    /// "3 packets not decoded ...: EtherType 0x88cc (LLDP): 2; ...", or None
    /// when everything was decoded.
    pub fn describe(&self) -> Option<String> {
        let total: u64 = self.kinds.iter().flatten().map(|(_, n)| n).sum::<u64>() + self.others;
        if total == 0 {
            return None;
        }
        let mut kinds: Vec<String> = self.kinds.iter().flatten().map(|(k, n)| format!("{k}: {n}")).collect();
        if self.others > 0 {
            kinds.push(format!("others: {}", self.others));
        }
        let s = if total == 1 { "" } else { "s" };
        Some(format!(
            "{total} packet{s} not decoded past the link layer (their rows have frame, time and lengths only): {}",
            kinds.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peeled(linktype: u32, data: &[u8]) -> (Peeled, Decoded) {
        let mut d = Decoded::default();
        (peel(linktype, data, &mut d), d)
    }

    fn eth(ether_type: u16) -> Vec<u8> {
        let mut f = vec![2u8; 12];
        f.extend(ether_type.to_be_bytes());
        f
    }

    #[test]
    fn vlan_tags_give_the_inner_ether_type_and_both_ids() {
        let mut f = eth(0x88a8);
        f.extend([0x00, 100, 0x81, 0x00, 0x20, 10, 0x86, 0xdd, 0x60]);
        let (p, d) = peeled(LINKTYPE_ETHERNET, &f);
        assert_eq!(p, Ok(Some(22..23)));
        assert_eq!((d.ether_type, d.vlan_id, d.outer_vlan_id), (Some(0x86dd), Some(10), Some(100)));
        let mut one = eth(0x8100);
        one.extend([0x00, 10, 0x08, 0x06]);
        let (p, d) = peeled(LINKTYPE_ETHERNET, &one);
        assert_eq!((p, d.ether_type, d.vlan_id, d.outer_vlan_id), (Ok(None), Some(0x0806), Some(10), None));
        // Cut inside the tag: nothing more, nothing noted.
        assert_eq!(peeled(LINKTYPE_ETHERNET, &one[..16]).0, Ok(None));
    }

    #[test]
    fn mpls_pppoe_and_what_is_not_decoded() {
        let mut f = eth(0x8847);
        f.extend(((1000u32 << 12) | 64).to_be_bytes());
        f.extend(((2000u32 << 12) | 0x100 | 64).to_be_bytes());
        f.push(0x45);
        let (p, d) = peeled(LINKTYPE_ETHERNET, &f);
        assert_eq!((p, d.ether_type, d.mpls_label), (Ok(Some(22..23)), Some(0x0800), Some(1000)));
        let mut pw = eth(0x8847);
        pw.extend(((16u32 << 12) | 0x100).to_be_bytes());
        pw.extend([0, 0, 0, 0]);
        assert_eq!(peeled(LINKTYPE_ETHERNET, &pw).0, Err(Undecoded::MplsPayload));
        let mut ppp = eth(0x8864);
        ppp.extend([0x11, 0, 0x12, 0x34, 0, 30, 0x00, 0x57, 0x60]);
        let (p, d) = peeled(LINKTYPE_ETHERNET, &ppp);
        assert_eq!((p, d.ether_type), (Ok(Some(22..23)), Some(0x86dd)));
        let mut lcp = eth(0x8864);
        lcp.extend([0x11, 0, 0x12, 0x34, 0, 6, 0xc0, 0x21]);
        assert_eq!(peeled(LINKTYPE_ETHERNET, &lcp).0, Err(Undecoded::PppProtocol(0xc021)));
        assert_eq!(peeled(LINKTYPE_ETHERNET, &eth(0x88cc)).0, Err(Undecoded::EtherType(0x88cc)));
        assert_eq!(peeled(LINKTYPE_ETHERNET, &eth(0x0026)).0, Err(Undecoded::Llc));
        assert_eq!(peeled(105, &[0; 40]).0, Err(Undecoded::LinkType(105)));
        assert_eq!(Undecoded::LinkType(105).to_string(), "link type IEEE802_11 (105)");
        assert_eq!(Undecoded::EtherType(0x88cc).to_string(), "EtherType 0x88cc (LLDP)");
    }

    #[test]
    fn nflog_in_either_byte_order() {
        // family 2, version 0, group 7; a 4-byte TLV type 1, then payload.
        let le = [2, 0, 0, 7, 8, 0, 1, 0, 0x08, 0, 3, 0, 9, 0, 9, 0, 0x45, 0, 0, 0];
        assert_eq!(peeled(LINKTYPE_NFLOG, &le).0, Ok(Some(16..20)));
        let be = [10, 0, 0, 7, 0, 8, 0, 1, 0x08, 0, 3, 0, 0, 9, 0, 9, 0x60, 0, 0, 0];
        assert_eq!(peeled(LINKTYPE_NFLOG, &be).0, Ok(Some(16..20)));
        let bridge = [7, 0, 0, 7, 0, 8, 0, 1, 0x08, 0, 3, 0, 0, 9, 0, 9, 0x60, 0, 0, 0];
        assert_eq!(peeled(LINKTYPE_NFLOG, &bridge).0, Err(Undecoded::NflogFamily(7)));
        // A TLV claiming more than the packet: cut where the bytes end.
        assert_eq!(peeled(LINKTYPE_NFLOG, &[2, 0, 0, 7, 0xff, 0xff, 9, 0, 0x45]).0, Ok(Some(8..9)));
    }

    #[test]
    fn loopback_families() {
        assert_eq!(peeled(LINKTYPE_NULL, &[2, 0, 0, 0, 0x45]).0, Ok(Some(4..5)));
        assert_eq!(peeled(LINKTYPE_LOOP, &[0, 0, 0, 30, 0x60]).0, Ok(Some(4..5)));
        assert_eq!(peeled(LINKTYPE_NULL, &[7, 0, 0, 0, 0x45]).0, Err(Undecoded::LoopbackFamily(7)));
    }

    #[test]
    fn a_tally_keeps_a_few_kinds_and_counts_the_rest() {
        let mut t = Tally::default();
        assert_eq!(t.describe(), None);
        for i in 0..20u16 {
            t.add(Undecoded::EtherType(0x9000 + i));
            t.add(Undecoded::EtherType(0x9000));
        }
        let s = t.describe().unwrap();
        assert!(s.starts_with("40 packets not decoded"), "{s}");
        assert!(s.contains("EtherType 0x9000 (loopback): 21") && s.contains("others: 12"), "{s}");
    }
}
