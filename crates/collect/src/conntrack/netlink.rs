//! The kernel's connection-tracking table over ctnetlink (NETLINK_NETFILTER,
//! subsystem NFNL_SUBSYS_CTNETLINK), read with the same dump plumbing as
//! sock_diag. Layouts are the UAPI of linux/netfilter/nfnetlink_conntrack.h.
//!
//! Why our own reader rather than a crate: `netlink-packet-netfilter` 0.4
//! does not parse counters, ids, zones or timestamps, and the `conntrack`
//! crate (neli) collects a whole dump into a Vec before returning; a
//! 100,000-entry table must stream into Arrow batches instead. The parsing
//! here is ~200 lines over netlink-packet-core's attribute iterator.

use std::ops::ControlFlow;

use super::{Conntrack, Counters, CpuStats, Tuple};
use crate::netlink::{DumpSocket, Frame, NetlinkError};
use crate::nla;

pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
pub const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;

pub const fn msg(kind: u16) -> u16 {
    NFNL_SUBSYS_CTNETLINK << 8 | kind
}

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_USE: u16 = 11;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_SECCTX: u16 = 19;
const CTA_TIMESTAMP: u16 = 20;
const CTA_LABELS: u16 = 22;
const CTA_MARK_MASK: u16 = 21;

fn parse_tuple(buf: &[u8]) -> Result<Tuple, NetlinkError> {
    let mut t = Tuple::default();
    for a in nla::iter(buf) {
        let (kind, v) = a?;
        match kind {
            1 => {
                // CTA_TUPLE_IP
                for a in nla::iter(v) {
                    let (k, v) = a?;
                    match k {
                        1 => t.src = Some(nla::ipv4(v, "CTA_IP_V4_SRC")?),
                        2 => t.dst = Some(nla::ipv4(v, "CTA_IP_V4_DST")?),
                        3 => t.src = Some(nla::ipv6(v, "CTA_IP_V6_SRC")?),
                        4 => t.dst = Some(nla::ipv6(v, "CTA_IP_V6_DST")?),
                        _ => {}
                    }
                }
            }
            2 => {
                // CTA_TUPLE_PROTO
                for a in nla::iter(v) {
                    let (k, v) = a?;
                    match k {
                        1 => t.protocol = Some(nla::u8_(v, "CTA_PROTO_NUM")?),
                        2 => t.sport = Some(nla::be16(v, "CTA_PROTO_SRC_PORT")?),
                        3 => t.dport = Some(nla::be16(v, "CTA_PROTO_DST_PORT")?),
                        4 | 7 => t.icmp_id = Some(nla::be16(v, "CTA_PROTO_ICMP_ID")?),
                        5 | 8 => t.icmp_type = Some(nla::u8_(v, "CTA_PROTO_ICMP_TYPE")?),
                        6 | 9 => t.icmp_code = Some(nla::u8_(v, "CTA_PROTO_ICMP_CODE")?),
                        _ => {}
                    }
                }
            }
            _ => {} // CTA_TUPLE_ZONE and newer attributes
        }
    }
    Ok(t)
}

fn parse_counters(buf: &[u8]) -> Result<Counters, NetlinkError> {
    let mut c = Counters::default();
    for a in nla::iter(buf) {
        let (k, v) = a?;
        match k {
            1 => c.packets = Some(nla::be64(v, "CTA_COUNTERS_PACKETS")?),
            2 => c.bytes = Some(nla::be64(v, "CTA_COUNTERS_BYTES")?),
            3 => c.packets = Some(nla::be32(v, "CTA_COUNTERS32_PACKETS")? as u64),
            4 => c.bytes = Some(nla::be32(v, "CTA_COUNTERS32_BYTES")? as u64),
            _ => {}
        }
    }
    Ok(c)
}

fn nfgen_family(payload: &[u8]) -> Result<u8, NetlinkError> {
    if payload.len() < 4 {
        return Err(NetlinkError::Malformed(format!("nfgenmsg is {} bytes, expected 4", payload.len())));
    }
    Ok(payload[0])
}

/// Parse the payload (nfgenmsg + attributes) of one IPCTNL_MSG_CT_NEW.
pub fn parse_entry(payload: &[u8]) -> Result<Conntrack, NetlinkError> {
    let mut ct = Conntrack { family: nfgen_family(payload)?, ..Default::default() };
    for a in nla::iter(&payload[4..]) {
        let (kind, v) = a?;
        match kind {
            CTA_TUPLE_ORIG => ct.orig = parse_tuple(v)?,
            CTA_TUPLE_REPLY => ct.reply = parse_tuple(v)?,
            CTA_STATUS => ct.status = Some(nla::be32(v, "CTA_STATUS")?),
            CTA_PROTOINFO => {
                if let Some(tcp) = nla::iter(v).filter_map(Result::ok).find(|(k, _)| *k == 1) {
                    for a in nla::iter(tcp.1) {
                        let (k, v) = a?;
                        if k == 1 {
                            ct.tcp_state = Some(nla::u8_(v, "CTA_PROTOINFO_TCP_STATE")?);
                        }
                    }
                }
            }
            CTA_TIMEOUT => ct.timeout_s = Some(nla::be32(v, "CTA_TIMEOUT")?),
            CTA_MARK => ct.mark = Some(nla::be32(v, "CTA_MARK")?),
            CTA_COUNTERS_ORIG => ct.orig_counters = parse_counters(v)?,
            CTA_COUNTERS_REPLY => ct.reply_counters = parse_counters(v)?,
            CTA_USE => ct.use_count = Some(nla::be32(v, "CTA_USE")?),
            CTA_ID => ct.id = Some(nla::be32(v, "CTA_ID")?),
            CTA_ZONE => ct.zone = Some(nla::be16(v, "CTA_ZONE")?),
            CTA_SECCTX => {
                if let Some((_, name)) = nla::iter(v).filter_map(Result::ok).find(|(k, _)| *k == 1) {
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    ct.secctx = Some(String::from_utf8_lossy(&name[..end]).into_owned());
                }
            }
            CTA_TIMESTAMP => {
                for a in nla::iter(v) {
                    let (k, v) = a?;
                    match k {
                        1 => ct.start_ns = Some(nla::be64(v, "CTA_TIMESTAMP_START")?),
                        2 => ct.stop_ns = Some(nla::be64(v, "CTA_TIMESTAMP_STOP")?),
                        _ => {}
                    }
                }
            }
            CTA_LABELS => {
                let bits = v
                    .iter()
                    .enumerate()
                    .flat_map(|(byte, b)| {
                        (0..8).filter(move |bit| b & (1 << bit) != 0).map(move |bit| (byte * 8 + bit) as u16)
                    })
                    .collect();
                ct.labels = Some(bits);
            }
            _ => {} // help, NAT sequence adjustment, synproxy, newer attributes
        }
    }
    if ct.orig.protocol.is_none() {
        return Err(NetlinkError::Malformed("conntrack entry without an original tuple".into()));
    }
    Ok(ct)
}

pub fn parse_cpu_stats(payload: &[u8]) -> Result<CpuStats, NetlinkError> {
    nfgen_family(payload)?;
    let mut s = CpuStats { cpu: u16::from_be_bytes([payload[2], payload[3]]), ..Default::default() };
    for a in nla::iter(&payload[4..]) {
        let (k, v) = a?;
        if (1..16).contains(&k) {
            s.counters[k as usize] = Some(nla::be32(v, "CTA_STATS")?);
        }
    }
    Ok(s)
}

/// What a dump asks the kernel to filter on (ctnetlink's dump filter:
/// mark with a mask, and zone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpFilter {
    pub mark: Option<u32>,
    pub zone: Option<u16>,
}

impl DumpFilter {
    fn attributes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut attr = |kind: u16, value: &[u8]| {
            out.extend(((4 + value.len()) as u16).to_ne_bytes());
            out.extend(kind.to_ne_bytes());
            out.extend(value);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        if let Some(m) = self.mark {
            attr(CTA_MARK, &m.to_be_bytes());
            attr(CTA_MARK_MASK, &u32::MAX.to_be_bytes());
        }
        if let Some(z) = self.zone {
            attr(CTA_ZONE, &z.to_be_bytes());
        }
        out
    }
}

pub struct Ctnetlink {
    socket: DumpSocket,
}

impl Ctnetlink {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Ctnetlink { socket: DumpSocket::open(netlink_sys::constants::NETLINK_NETFILTER)? })
    }

    fn dump_raw<E: From<NetlinkError>>(
        &mut self,
        kind: u16,
        family: u8,
        filter: &DumpFilter,
        capture: Option<&mut dyn std::io::Write>,
        on_msg: impl FnMut(Frame<'_>) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let body = [vec![family, 0, 0, 0], filter.attributes()].concat();
        self.socket.dump(msg(kind), &body, capture, on_msg)
    }

    /// What this socket's dumps received so far.
    pub fn received(&self) -> crate::netlink::Received {
        self.socket.received
    }

    /// Dump the table (of `family`, 0 for both) through `filter`, each
    /// entry to `on_entry`, which may stop the dump or fail it.
    pub fn dump<E: From<NetlinkError>>(
        &mut self,
        family: u8,
        filter: &DumpFilter,
        capture: Option<&mut dyn std::io::Write>,
        mut on_entry: impl FnMut(Conntrack) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.dump_raw(IPCTNL_MSG_CT_GET, family, filter, capture, |frame| {
            if frame.message_type != msg(IPCTNL_MSG_CT_NEW) {
                return Ok(ControlFlow::Continue(()));
            }
            on_entry(parse_entry(frame.payload)?)
        })
    }

    pub fn cpu_stats(&mut self) -> Result<Vec<CpuStats>, NetlinkError> {
        let mut out = Vec::new();
        self.dump_raw(IPCTNL_MSG_CT_GET_STATS_CPU, 0, &DumpFilter::default(), None, |frame| {
            out.push(parse_cpu_stats(frame.payload)?);
            Ok::<_, NetlinkError>(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{protocol_name, status_names, tcp_state_name, IPS_SEEN_REPLY, IPS_SRC_NAT};
    use crate::netlink::{frames, NLMSG_DONE};
    use std::net::IpAddr;

    /// Raw datagrams captured by tests/fixtures/capture_ctnetlink.sh.
    const FIXTURE: &[u8] = include_bytes!("../../../../tests/fixtures/ctnetlink_netns.bin");

    fn payloads() -> Vec<&'static [u8]> {
        let mut out = Vec::new();
        let mut b = FIXTURE;
        while b.len() >= 4 {
            let n = u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize;
            for f in frames(&b[4..4 + n]) {
                let f = f.unwrap();
                if f.message_type == msg(IPCTNL_MSG_CT_NEW) {
                    out.push(f.payload);
                } else {
                    assert_eq!(f.message_type, NLMSG_DONE);
                }
            }
            b = &b[4 + n..];
        }
        out
    }

    #[test]
    fn parses_the_captured_flows() {
        let entries: Vec<Conntrack> = payloads().into_iter().map(|p| parse_entry(p).unwrap()).collect();
        assert_eq!(entries.len(), 2, "{entries:#?}");
        let tcp = entries.iter().find(|e| e.orig.protocol == Some(6)).unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!((tcp.orig.src, tcp.orig.dst, tcp.orig.dport), (Some(lo), Some(lo), Some(8080)));
        assert_eq!((tcp.reply.sport, tcp.reply.dport), (Some(8080), tcp.orig.sport));
        assert_eq!(tcp.tcp_state.map(tcp_state_name), Some("ESTABLISHED"));
        assert!(tcp.id.is_some() && tcp.use_count.is_some() && tcp.timeout_s.unwrap() > 400_000);
        // NAT chains exist in the namespace, so NAT was decided (done) even where nothing changed.
        assert_eq!(status_names(tcp.status.unwrap()), "SEEN_REPLY,ASSURED,CONFIRMED,SRC_NAT_DONE,DST_NAT_DONE");
        // Accounting: the 100-byte payload plus headers, in the original direction.
        assert!(tcp.orig_counters.bytes.unwrap() > 100 && tcp.orig_counters.packets.unwrap() >= 3);
        assert!(tcp.reply_counters.packets.unwrap() >= 2);
        assert!(tcp.start_ns.unwrap() > 1_700_000_000 * 1_000_000_000);
        let udp = entries.iter().find(|e| e.orig.protocol == Some(17)).unwrap();
        assert_eq!(udp.orig.dport, Some(5353));
        assert_eq!(udp.reply.dst, Some("127.0.0.9".parse().unwrap()), "SNAT rewrote the reply destination");
        assert_eq!(udp.mark, Some(7));
        assert_eq!(udp.tcp_state, None);
        let status = udp.status.unwrap();
        assert!(status & IPS_SRC_NAT != 0 && status & IPS_SEEN_REPLY == 0, "{}", status_names(status));
    }

    #[test]
    fn truncated_or_corrupt_entries_are_errors_not_panics() {
        let p = payloads()[0];
        for cut in 0..p.len() {
            let _ = parse_entry(&p[..cut]); // never panics
        }
        assert!(parse_entry(&p[..3]).is_err());
        assert!(parse_entry(&p[..4]).is_err(), "no tuple: not an entry");
        let mut bad = p.to_vec();
        bad[4] = 0xff; // first attribute longer than the message
        bad[5] = 0xff;
        assert!(parse_entry(&bad).is_err());
        // A status attribute of the wrong size.
        let mut odd = p[..4].to_vec();
        odd.extend_from_slice(&[6, 0, CTA_STATUS as u8, 0, 1, 2, 0, 0]);
        assert!(parse_entry(&odd).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(status_names(0b1110), "SEEN_REPLY,ASSURED,CONFIRMED");
        assert_eq!(protocol_name(58), Some("icmpv6"));
        assert_eq!(protocol_name(200), None);
        assert_eq!(tcp_state_name(7), "TIME_WAIT");
    }
}
