//! The kernel's TCP metrics cache: what it remembers per destination (and
//! source) address from closed connections, to seed the next ones (RTT,
//! cwnd, ssthresh, reordering, TCP Fast Open), as `ip tcp_metrics show`
//! prints it. Read over generic netlink: the family "tcp_metrics" is
//! looked up (a dump of CTRL_CMD_GETFAMILY), then TCP_METRICS_CMD_GET is
//! dumped. The calling thread's network namespace is the one read.
//!
//! Parsing ([`family_id`], [`parse_entry`]) takes message payloads, apart
//! from the socket.

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::netlink::{DumpSocket, NetlinkError, Received};
use super::nla;

/// The generic netlink controller (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// linux/tcp_metrics.h.
pub const FAMILY: &str = "tcp_metrics";
const TCP_METRICS_CMD_GET: u8 = 1;
const TCP_METRICS_GENL_VERSION: u8 = 1;
const ATTR_ADDR_IPV4: u16 = 1;
const ATTR_ADDR_IPV6: u16 = 2;
const ATTR_AGE: u16 = 3;
const ATTR_TW_TSVAL: u16 = 4;
const ATTR_TW_TS_STAMP: u16 = 5;
const ATTR_VALS: u16 = 6;
const ATTR_FOPEN_MSS: u16 = 7;
const ATTR_FOPEN_SYN_DROPS: u16 = 8;
const ATTR_FOPEN_SYN_DROP_TS: u16 = 9;
const ATTR_FOPEN_COOKIE: u16 = 10;
const ATTR_SADDR_IPV4: u16 = 11;
const ATTR_SADDR_IPV6: u16 = 12;
/// Inside ATTR_VALS: `enum tcp_metric_index` + 1, each a u32. The kernel
/// leaves out a value that is 0 (not known).
const VAL_RTT_MS: u16 = 1;
const VAL_RTTVAR_MS: u16 = 2;
const VAL_SSTHRESH: u16 = 3;
const VAL_CWND: u16 = 4;
const VAL_REORDERING: u16 = 5;
const VAL_RTT_US: u16 = 6;
const VAL_RTTVAR_US: u16 = 7;

/// One entry of the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpMetrics {
    /// The destination the metrics are kept for.
    pub addr: Option<IpAddr>,
    /// The local address connections to it were made from.
    pub source: Option<IpAddr>,
    /// Milliseconds since the entry was last updated.
    pub age_ms: Option<u64>,
    /// Smoothed round-trip time and its variation, us, as ip prints them.
    pub rtt_us: Option<u32>,
    pub rttvar_us: Option<u32>,
    pub ssthresh: Option<u32>,
    pub cwnd: Option<u32>,
    pub reordering: Option<u32>,
    /// The peer's last TCP timestamp value, kept after TIME-WAIT.
    pub tw_tsval: Option<u32>,
    /// Seconds since that timestamp was recorded.
    pub tw_ts_stamp: Option<i32>,
    pub fastopen_mss: Option<u16>,
    pub fastopen_syn_drops: Option<u16>,
    /// Milliseconds since the last Fast Open SYN drop.
    pub fastopen_syn_drop_age_ms: Option<u64>,
    pub fastopen_cookie: Option<Vec<u8>>,
}

fn ne<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], NetlinkError> {
    v.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NetlinkError::Malformed(format!("tcp_metrics {what}: {} bytes, expected {N}", v.len())))
}

/// The generic netlink header every message starts with, then its attributes.
fn attributes(payload: &[u8]) -> Result<&[u8], NetlinkError> {
    let attrs = payload.get(4..).ok_or_else(|| NetlinkError::Malformed("generic netlink header cut short".into()))?;
    nla::validate(attrs)?;
    Ok(attrs)
}

/// From one answer of the controller's family dump: the family's id if it
/// is the one named `name`.
pub fn family_id(payload: &[u8], name: &str) -> Result<Option<u16>, NetlinkError> {
    let attrs = attributes(payload)?;
    let named = nla::find(attrs, CTRL_ATTR_FAMILY_NAME)
        .map(|v| v.split(|&b| b == 0).next().unwrap_or_default() == name.as_bytes())
        .unwrap_or(false);
    if !named {
        return Ok(None);
    }
    let id = nla::find(attrs, CTRL_ATTR_FAMILY_ID)
        .ok_or_else(|| NetlinkError::Malformed("generic netlink family without its id".into()))?;
    Ok(Some(u16::from_ne_bytes(ne(id, "family id")?)))
}

fn addr(v: &[u8], kind: u16, v4: u16) -> Result<IpAddr, NetlinkError> {
    if kind == v4 {
        nla::ipv4(v, "tcp_metrics IPv4 address")
    } else {
        nla::ipv6(v, "tcp_metrics IPv6 address")
    }
}

/// One TCP_METRICS_CMD_GET answer.
pub fn parse_entry(payload: &[u8]) -> Result<TcpMetrics, NetlinkError> {
    let mut m = TcpMetrics::default();
    let (mut rtt_ms, mut rttvar_ms) = (None, None);
    for a in nla::iter(attributes(payload)?) {
        let (kind, v) = a?;
        match kind {
            ATTR_ADDR_IPV4 | ATTR_ADDR_IPV6 => m.addr = Some(addr(v, kind, ATTR_ADDR_IPV4)?),
            ATTR_SADDR_IPV4 | ATTR_SADDR_IPV6 => m.source = Some(addr(v, kind, ATTR_SADDR_IPV4)?),
            ATTR_AGE => m.age_ms = Some(u64::from_ne_bytes(ne(v, "age")?)),
            ATTR_TW_TSVAL => m.tw_tsval = Some(u32::from_ne_bytes(ne(v, "tw_tsval")?)),
            ATTR_TW_TS_STAMP => m.tw_ts_stamp = Some(i32::from_ne_bytes(ne(v, "tw_ts_stamp")?)),
            ATTR_FOPEN_MSS => m.fastopen_mss = Some(u16::from_ne_bytes(ne(v, "fopen_mss")?)),
            ATTR_FOPEN_SYN_DROPS => m.fastopen_syn_drops = Some(u16::from_ne_bytes(ne(v, "fopen_syn_drops")?)),
            ATTR_FOPEN_SYN_DROP_TS => {
                m.fastopen_syn_drop_age_ms = Some(u64::from_ne_bytes(ne(v, "fopen_syn_drop_ts")?))
            }
            ATTR_FOPEN_COOKIE => m.fastopen_cookie = Some(v.to_vec()),
            ATTR_VALS => {
                for val in nla::iter(v) {
                    let (index, v) = val?;
                    let x = Some(u32::from_ne_bytes(ne(v, "metric")?));
                    match index {
                        VAL_RTT_US => m.rtt_us = x,
                        VAL_RTTVAR_US => m.rttvar_us = x,
                        VAL_RTT_MS => rtt_ms = x,
                        VAL_RTTVAR_MS => rttvar_ms = x,
                        VAL_SSTHRESH => m.ssthresh = x,
                        VAL_CWND => m.cwnd = x,
                        VAL_REORDERING => m.reordering = x,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // Kernels before 4.1 send milliseconds only. Either way the kernel
    // keeps the smoothed RTT times 8 and its variation times 4 (the fixed
    // point of tcp_sock's srtt_us and mdev_us); ip shifts them back, so
    // does this.
    m.rtt_us = m.rtt_us.or(rtt_ms.map(|ms| ms.saturating_mul(1000))).map(|v| v >> 3);
    m.rttvar_us = m.rttvar_us.or(rttvar_ms.map(|ms| ms.saturating_mul(1000))).map(|v| v >> 2);
    Ok(m)
}

/// A generic netlink request body: the command and version, no attributes.
fn genl(cmd: u8, version: u8) -> [u8; 4] {
    [cmd, version, 0, 0]
}

/// Dump the calling thread's namespace's cache, each entry to `on_entry`
/// (which may stop the dump or fail it). Returns what netlink delivered.
pub fn read<E: From<NetlinkError>>(
    mut on_entry: impl FnMut(TcpMetrics) -> Result<ControlFlow<()>, E>,
) -> Result<Received, E> {
    let mut socket = DumpSocket::open(netlink_sys::constants::NETLINK_GENERIC)?;
    let mut id = None;
    socket.dump(GENL_ID_CTRL, &genl(CTRL_CMD_GETFAMILY, 1), None, |frame| {
        if frame.message_type != GENL_ID_CTRL {
            return Ok::<_, NetlinkError>(ControlFlow::Continue(()));
        }
        id = id.or(family_id(frame.payload, FAMILY)?);
        Ok(ControlFlow::Continue(()))
    })?;
    let id = id.ok_or_else(|| NetlinkError::Malformed(format!("no generic netlink family {FAMILY}")))?;
    socket.dump(id, &genl(TCP_METRICS_CMD_GET, TCP_METRICS_GENL_VERSION), None, |frame| {
        if frame.message_type != id {
            return Ok(ControlFlow::Continue(()));
        }
        on_entry(parse_entry(frame.payload)?)
    })?;
    Ok(socket.received)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut out = [(len as u16).to_ne_bytes(), kind.to_ne_bytes()].concat();
        out.extend_from_slice(value);
        out.resize((len + 3) & !3, 0);
        out
    }

    #[test]
    fn finds_the_family_by_name() {
        let msg = |name: &[u8], id: u16| {
            [vec![1, 2, 0, 0], attr(CTRL_ATTR_FAMILY_ID, &id.to_ne_bytes()), attr(CTRL_ATTR_FAMILY_NAME, name)].concat()
        };
        assert_eq!(family_id(&msg(b"tcp_metrics\0", 27), FAMILY).unwrap(), Some(27));
        assert_eq!(family_id(&msg(b"tcp_metrics_x\0", 27), FAMILY).unwrap(), None);
        assert_eq!(family_id(&msg(b"nlctrl\0", 16), FAMILY).unwrap(), None);
        assert!(family_id(&[1, 2], FAMILY).is_err());
        // A name without its id.
        let no_id = [vec![1, 2, 0, 0], attr(CTRL_ATTR_FAMILY_NAME, b"tcp_metrics\0")].concat();
        assert!(family_id(&no_id, FAMILY).is_err());
    }

    /// An answer as the kernel lays it out (tcp_metrics_fill_info): the
    /// address, age, the values nested, the source address.
    #[test]
    fn parses_an_entry() {
        let vals = [
            attr(VAL_RTT_US, &4330u32.to_ne_bytes()),
            attr(VAL_RTT_MS, &4u32.to_ne_bytes()),
            attr(VAL_RTTVAR_US, &7881u32.to_ne_bytes()),
            attr(VAL_RTTVAR_MS, &7u32.to_ne_bytes()),
            attr(VAL_CWND, &18u32.to_ne_bytes()),
        ]
        .concat();
        let msg = [
            vec![1, 1, 0, 0],
            attr(ATTR_ADDR_IPV4, &[127, 0, 0, 1]),
            attr(ATTR_AGE, &772_476u64.to_ne_bytes()),
            attr(ATTR_VALS, &vals),
            attr(ATTR_FOPEN_COOKIE, &[0xab, 0xcd]),
            attr(ATTR_SADDR_IPV6, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ]
        .concat();
        let m = parse_entry(&msg).unwrap();
        assert_eq!(m.addr, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.source, Some("::1".parse().unwrap()));
        assert_eq!(m.age_ms, Some(772_476));
        // 4330 / 8 and 7881 / 4, rounded down as ip does.
        assert_eq!((m.rtt_us, m.rttvar_us, m.cwnd, m.ssthresh), (Some(541), Some(1970), Some(18), None));
        assert_eq!(m.fastopen_cookie.as_deref(), Some(&[0xab, 0xcd][..]));
    }

    #[test]
    fn old_kernels_milliseconds_and_bad_lengths() {
        let vals = attr(VAL_RTT_MS, &5u32.to_ne_bytes());
        let msg = [vec![1, 1, 0, 0], attr(ATTR_VALS, &vals)].concat();
        assert_eq!(parse_entry(&msg).unwrap().rtt_us, Some(625));
        // An IPv4 address of three bytes, an age of four, a cut attribute.
        assert!(parse_entry(&[vec![1, 1, 0, 0], attr(ATTR_ADDR_IPV4, &[1, 2, 3])].concat()).is_err());
        assert!(parse_entry(&[vec![1, 1, 0, 0], attr(ATTR_AGE, &[0; 4])].concat()).is_err());
        assert!(parse_entry(&[1, 1, 0, 0, 8, 0, 1]).is_err());
    }
}
