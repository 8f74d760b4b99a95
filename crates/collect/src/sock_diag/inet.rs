//! inet_diag (NETLINK_SOCK_DIAG) requests and zero-copy views of its
//! answers: `struct inet_diag_msg` plus the attributes sockql reads
//! (tcp_info, congestion algorithm, sk_meminfo).
//!
//! The layouts are the kernel's UAPI (linux/inet_diag.h, linux/tcp.h,
//! linux/sock_diag.h). tcp_info has grown over the years, so every field is
//! read by offset and is `None` when the running kernel's struct is shorter.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::bytecode::{bytecode, Cond};
use crate::netlink::NetlinkError;
use crate::nla;

pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The pre-sock_diag request for TCP (`struct inet_diag_req`). Still served
/// by every kernel, and the only way to ask for both address families in one
/// request: the kernel then walks its TCP hash tables once instead of once
/// per family, which halves the cost of a filtered dump of a big table.
pub const TCPDIAG_GETSOCK: u16 = 18;

/// "Either family": for TCP, one legacy request covering inet and inet6.
pub const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
pub const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;
/// Raw sockets (`ss -w`): the kernel's raw_diag answers this protocol with
/// every raw socket, whatever protocol it was opened for (the local port
/// carries that). Kernels built without CONFIG_INET_RAW_DIAG answer ENOENT.
pub const IPPROTO_RAW: u8 = libc::IPPROTO_RAW as u8;

// Attribute types (enum inet_diag_attr); the request's extension mask has
// bit (type - 1) set to ask for attribute `type`.
pub const INET_DIAG_INFO: u16 = 2;
/// Asking for this one (bit 2) also makes the congestion module add its own
/// attribute: BBR answers with INET_DIAG_BBRINFO (type 16, past the mask).
pub const INET_DIAG_VEGASINFO: u16 = 3;
pub const INET_DIAG_BBRINFO: u16 = 16;
pub const INET_DIAG_CONG: u16 = 4;
pub const INET_DIAG_SKMEMINFO: u16 = 7;
pub const INET_DIAG_TOS: u16 = 5;
pub const INET_DIAG_TCLASS: u16 = 6;
/// Sent with every socket when the reader has CAP_NET_ADMIN.
pub const INET_DIAG_MARK: u16 = 15;
/// The socket's IP protocol, in destroy events.
pub const INET_DIAG_PROTOCOL: u16 = 10;
/// Sent with every socket (kernels with cgroup socket data).
pub const INET_DIAG_CGROUP_ID: u16 = 21;
/// net_cls class id (or the priority without one), sent with TOS/TCLASS.
pub const INET_DIAG_CLASS_ID: u16 = 17;

/// Which optional attributes to ask the kernel for. Each costs the kernel
/// work per socket, so a scan asks only for what its columns need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    pub tcp_info: bool,
    pub congestion: bool,
    pub meminfo: bool,
    /// IPv4 TOS and IPv6 traffic class (and the class id with them).
    pub tos: bool,
    /// The congestion module's own numbers (BBR's bandwidth and gains).
    pub ca_info: bool,
}

impl Extensions {
    fn mask(self) -> u8 {
        let bit = |on: bool, attr: u16| if on { 1u8 << (attr - 1) } else { 0 };
        bit(self.tcp_info, INET_DIAG_INFO)
            | bit(self.congestion, INET_DIAG_CONG)
            | bit(self.meminfo, INET_DIAG_SKMEMINFO)
            | bit(self.tos, INET_DIAG_TOS)
            | bit(self.tos, INET_DIAG_TCLASS)
            | bit(self.ca_info, INET_DIAG_VEGASINFO)
    }
}

/// The netlink message type and body of a dump of `protocol` sockets of
/// `family`. `AF_UNSPEC` with TCP asks for both families in one legacy
/// TCPDIAG_GETSOCK request; anything else is a SOCK_DIAG_BY_FAMILY request.
pub fn dump_request(
    protocol: u8,
    family: u8,
    states: u32,
    ext: Extensions,
    conds: &[Cond],
) -> Result<(u16, Vec<u8>), NetlinkError> {
    match (protocol, family) {
        (IPPROTO_TCP, AF_UNSPEC) => Ok((TCPDIAG_GETSOCK, with_bytecode(compat_request_body(states, ext), conds))),
        (_, AF_UNSPEC) => {
            Err(NetlinkError::Malformed(format!("no single dump covers both families of protocol {protocol}")))
        }
        _ => Ok((SOCK_DIAG_BY_FAMILY, request_body_filtered(family, protocol, states, ext, conds))),
    }
}

/// Body of a `struct inet_diag_req` (60 bytes): TCPDIAG_GETSOCK's request,
/// whose family field is ignored (the kernel dumps both).
fn compat_request_body(states: u32, ext: Extensions) -> Vec<u8> {
    let mut body = vec![0u8; 60];
    body[3] = ext.mask();
    // inet_diag_sockid (bytes 4..52) zero, cookie "any", as in request_body.
    body[44..52].copy_from_slice(&[0xff; 8]);
    body[52..56].copy_from_slice(&states.to_ne_bytes());
    body
}

/// Body of a `struct inet_diag_req_v2` dump request (56 bytes), followed by
/// an INET_DIAG_REQ_BYTECODE attribute when there are conditions.
pub fn request_body_filtered(family: u8, protocol: u8, states: u32, ext: Extensions, conds: &[Cond]) -> Vec<u8> {
    with_bytecode(request_body(family, protocol, states, ext), conds)
}

pub const INET_DIAG_REQ_BYTECODE: u16 = 1;

/// Append the INET_DIAG_REQ_BYTECODE attribute for `conds`, if any.
fn with_bytecode(mut body: Vec<u8>, conds: &[Cond]) -> Vec<u8> {
    if !conds.is_empty() {
        let bc = bytecode(conds);
        body.extend(((4 + bc.len()) as u16).to_ne_bytes());
        body.extend(INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        body.extend(bc); // ops are 4-byte multiples: no padding needed
    }
    body
}

/// Body of a `struct inet_diag_req_v2` dump request (56 bytes).
pub fn request_body(family: u8, protocol: u8, states: u32, ext: Extensions) -> Vec<u8> {
    let mut body = vec![0u8; 56];
    body[0] = family;
    body[1] = protocol;
    body[2] = ext.mask();
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid left zero: no socket id filter. Its cookie must be
    // INET_DIAG_NOCOOKIE (all ones) to mean "any".
    body[48..56].copy_from_slice(&[0xff; 8]);
    body
}

const MSG_LEN: usize = 72;

/// A borrowed view of one `inet_diag_msg` and its attributes.
#[derive(Debug, Clone, Copy)]
pub struct InetDiagMsg<'a> {
    raw: &'a [u8],
    attrs: &'a [u8],
}

fn ne_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl<'a> InetDiagMsg<'a> {
    /// Parse the payload of one SOCK_DIAG_BY_FAMILY answer message.
    pub fn parse(payload: &'a [u8]) -> Result<Self, NetlinkError> {
        if payload.len() < MSG_LEN {
            return Err(NetlinkError::Malformed(format!(
                "inet_diag_msg is {} bytes, expected at least {MSG_LEN}",
                payload.len()
            )));
        }
        let family = payload[0];
        if family != AF_INET && family != AF_INET6 {
            return Err(NetlinkError::Malformed(format!("inet_diag_msg of unknown family {family}")));
        }
        let msg = InetDiagMsg { raw: &payload[..MSG_LEN], attrs: &payload[MSG_LEN..] };
        // Validate the attribute chain once so later lookups cannot fail.
        nla::validate(msg.attrs)?;
        Ok(msg)
    }

    pub fn family(&self) -> u8 {
        self.raw[0]
    }
    /// Kernel TCP state number (TCP_ESTABLISHED = 1 ...).
    pub fn state(&self) -> u8 {
        self.raw[1]
    }
    pub fn timer(&self) -> u8 {
        self.raw[2]
    }
    pub fn retransmits(&self) -> u8 {
        self.raw[3]
    }
    pub fn local_port(&self) -> u16 {
        u16::from_be_bytes([self.raw[4], self.raw[5]])
    }
    pub fn remote_port(&self) -> u16 {
        u16::from_be_bytes([self.raw[6], self.raw[7]])
    }
    fn addr(&self, at: usize) -> IpAddr {
        if self.family() == AF_INET {
            let b: [u8; 4] = self.raw[at..at + 4].try_into().expect("4 bytes");
            IpAddr::V4(Ipv4Addr::from(b))
        } else {
            let b: [u8; 16] = self.raw[at..at + 16].try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(b))
        }
    }
    pub fn local_addr(&self) -> IpAddr {
        self.addr(8)
    }
    pub fn remote_addr(&self) -> IpAddr {
        self.addr(24)
    }
    pub fn interface(&self) -> u32 {
        ne_u32(self.raw, 40)
    }
    pub fn cookie(&self) -> u64 {
        ne_u32(self.raw, 44) as u64 | (ne_u32(self.raw, 48) as u64) << 32
    }
    pub fn expires_ms(&self) -> u32 {
        ne_u32(self.raw, 52)
    }
    pub fn recv_q(&self) -> u32 {
        ne_u32(self.raw, 56)
    }
    pub fn send_q(&self) -> u32 {
        ne_u32(self.raw, 60)
    }
    pub fn uid(&self) -> u32 {
        ne_u32(self.raw, 64)
    }
    pub fn inode(&self) -> u32 {
        ne_u32(self.raw, 68)
    }

    /// The payload of attribute `kind`, if the kernel sent it.
    pub fn attr(&self, kind: u16) -> Option<&'a [u8]> {
        nla::find(self.attrs, kind)
    }

    pub fn tcp_info(&self) -> Option<TcpInfo<'a>> {
        self.attr(INET_DIAG_INFO).map(TcpInfo)
    }

    pub fn congestion(&self) -> Option<&'a str> {
        let raw = self.attr(INET_DIAG_CONG)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        std::str::from_utf8(&raw[..end]).ok()
    }

    pub fn meminfo(&self) -> Option<MemInfo<'a>> {
        self.attr(INET_DIAG_SKMEMINFO).map(MemInfo)
    }

    fn attr_u8(&self, kind: u16) -> Option<u8> {
        self.attr(kind)?.first().copied()
    }

    pub fn tos(&self) -> Option<u8> {
        self.attr_u8(INET_DIAG_TOS)
    }

    pub fn tclass(&self) -> Option<u8> {
        self.attr_u8(INET_DIAG_TCLASS)
    }

    /// SO_MARK of the socket (needs CAP_NET_ADMIN to be sent).
    pub fn mark(&self) -> Option<u32> {
        self.attr(INET_DIAG_MARK)?.get(..4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }

    /// net_cls class id, or the socket priority when it has none (ss class_id).
    pub fn class_id(&self) -> Option<u32> {
        self.attr(INET_DIAG_CLASS_ID)?.get(..4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }

    /// BBR's `struct tcp_bbr_info`, when the socket runs BBR and it was asked for.
    pub fn bbr_info(&self) -> Option<BbrInfo> {
        let b = self.attr(INET_DIAG_BBRINFO)?;
        let at = |i: usize| b.get(i * 4..i * 4 + 4).map(|x| u32::from_ne_bytes(x.try_into().expect("4 bytes")));
        Some(BbrInfo {
            bw_bytes_per_sec: (at(1)? as u64) << 32 | at(0)? as u64,
            min_rtt_us: at(2)?,
            pacing_gain: at(3)?,
            cwnd_gain: at(4)?,
        })
    }

    /// The cgroup (v2) id of the socket's creator.
    pub fn cgroup_id(&self) -> Option<u64> {
        self.attr(INET_DIAG_CGROUP_ID)?.get(..8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }
}

/// `struct tcp_bbr_info`: bandwidth estimate, min RTT and the two gains
/// (fixed point, 256 = 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BbrInfo {
    pub bw_bytes_per_sec: u64,
    pub min_rtt_us: u32,
    pub pacing_gain: u32,
    pub cwnd_gain: u32,
}

/// `struct tcp_info`, read field by field; absent fields are `None`.
#[derive(Debug, Clone, Copy)]
pub struct TcpInfo<'a>(pub &'a [u8]);

impl TcpInfo<'_> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        self.0.get(at..at + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64_at(&self, at: usize) -> Option<u64> {
        self.0.get(at..at + 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }
    fn u8_at(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    /// tcpi_options: TCPI_OPT_TIMESTAMPS 1, SACK 2, WSCALE 4, ECN 8, ECN_SEEN 16, SYN_DATA 32.
    pub fn options(&self) -> Option<u8> {
        self.u8_at(5)
    }
    /// (send, receive) window scale, valid when options() has WSCALE.
    pub fn wscale(&self) -> Option<(u8, u8)> {
        self.u8_at(6).map(|b| (b & 0x0f, b >> 4))
    }
    /// tcpi_delivery_rate_app_limited: the last delivery rate sample was limited by the application.
    pub fn app_limited(&self) -> Option<bool> {
        self.u8_at(7).map(|b| b & 1 != 0)
    }
    /// tcpi_backoff: exponential backoff count of the retransmit timer.
    pub fn backoff(&self) -> Option<u8> {
        self.u8_at(4)
    }
    /// Retransmission timeout, microseconds.
    pub fn rto_us(&self) -> Option<u32> {
        self.u32_at(8)
    }
    /// Delayed-ACK timeout, microseconds.
    pub fn ato_us(&self) -> Option<u32> {
        self.u32_at(12)
    }
    pub fn sacked(&self) -> Option<u32> {
        self.u32_at(28)
    }
    /// tcpi_retrans: retransmitted segments not yet acknowledged.
    pub fn retrans(&self) -> Option<u32> {
        self.u32_at(36)
    }
    pub fn data_segs_in(&self) -> Option<u32> {
        self.u32_at(152)
    }
    pub fn data_segs_out(&self) -> Option<u32> {
        self.u32_at(156)
    }
    /// Bytes per second; all ones when unlimited.
    pub fn max_pacing_rate(&self) -> Option<u64> {
        self.u64_at(112)
    }
    /// Microseconds limited by the receive window.
    pub fn rwnd_limited_us(&self) -> Option<u64> {
        self.u64_at(176)
    }
    /// Microseconds limited by the send buffer.
    pub fn sndbuf_limited_us(&self) -> Option<u64> {
        self.u64_at(184)
    }
    pub fn reord_seen(&self) -> Option<u32> {
        self.u32_at(220)
    }
    pub fn rcv_ooopack(&self) -> Option<u32> {
        self.u32_at(224)
    }

    pub fn rcv_mss(&self) -> Option<u32> {
        self.u32_at(20)
    }
    pub fn pmtu(&self) -> Option<u32> {
        self.u32_at(60)
    }
    pub fn rcv_ssthresh(&self) -> Option<u32> {
        self.u32_at(64)
    }
    pub fn advmss(&self) -> Option<u32> {
        self.u32_at(84)
    }
    pub fn reordering(&self) -> Option<u32> {
        self.u32_at(88)
    }
    /// Receiver-side RTT estimate, microseconds.
    pub fn rcv_rtt_us(&self) -> Option<u32> {
        self.u32_at(92)
    }
    pub fn rcv_space(&self) -> Option<u32> {
        self.u32_at(96)
    }
    pub fn notsent_bytes(&self) -> Option<u32> {
        self.u32_at(144)
    }
    pub fn delivered(&self) -> Option<u32> {
        self.u32_at(192)
    }
    pub fn delivered_ce(&self) -> Option<u32> {
        self.u32_at(196)
    }
    pub fn dsack_dups(&self) -> Option<u32> {
        self.u32_at(216)
    }
    pub fn snd_wnd(&self) -> Option<u32> {
        self.u32_at(228)
    }
    pub fn snd_mss(&self) -> Option<u32> {
        self.u32_at(16)
    }
    pub fn unacked(&self) -> Option<u32> {
        self.u32_at(24)
    }
    pub fn lost(&self) -> Option<u32> {
        self.u32_at(32)
    }
    /// Milliseconds since the last data was sent.
    pub fn last_data_sent_ms(&self) -> Option<u32> {
        self.u32_at(44)
    }
    pub fn last_data_recv_ms(&self) -> Option<u32> {
        self.u32_at(52)
    }
    pub fn last_ack_recv_ms(&self) -> Option<u32> {
        self.u32_at(56)
    }
    /// Smoothed round-trip time, microseconds.
    pub fn rtt_us(&self) -> Option<u32> {
        self.u32_at(68)
    }
    pub fn rttvar_us(&self) -> Option<u32> {
        self.u32_at(72)
    }
    pub fn snd_ssthresh(&self) -> Option<u32> {
        self.u32_at(76)
    }
    pub fn snd_cwnd(&self) -> Option<u32> {
        self.u32_at(80)
    }
    pub fn total_retrans(&self) -> Option<u32> {
        self.u32_at(100)
    }
    /// Bytes per second.
    pub fn pacing_rate(&self) -> Option<u64> {
        self.u64_at(104)
    }
    pub fn bytes_acked(&self) -> Option<u64> {
        self.u64_at(120)
    }
    pub fn bytes_received(&self) -> Option<u64> {
        self.u64_at(128)
    }
    pub fn segs_out(&self) -> Option<u32> {
        self.u32_at(136)
    }
    pub fn segs_in(&self) -> Option<u32> {
        self.u32_at(140)
    }
    pub fn min_rtt_us(&self) -> Option<u32> {
        self.u32_at(148)
    }
    /// Bytes per second.
    pub fn delivery_rate(&self) -> Option<u64> {
        self.u64_at(160)
    }
    /// Microseconds spent busy sending.
    pub fn busy_time_us(&self) -> Option<u64> {
        self.u64_at(168)
    }
    pub fn bytes_sent(&self) -> Option<u64> {
        self.u64_at(200)
    }
    pub fn bytes_retrans(&self) -> Option<u64> {
        self.u64_at(208)
    }
}

/// `SK_MEMINFO_*` counters (linux/sock_diag.h), in bytes except drops.
#[derive(Debug, Clone, Copy)]
pub struct MemInfo<'a>(pub &'a [u8]);

impl MemInfo<'_> {
    fn at(&self, index: usize) -> Option<u32> {
        let at = index * 4;
        self.0.get(at..at + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }
    pub fn rmem_alloc(&self) -> Option<u32> {
        self.at(0)
    }
    pub fn rcv_buf(&self) -> Option<u32> {
        self.at(1)
    }
    pub fn wmem_alloc(&self) -> Option<u32> {
        self.at(2)
    }
    pub fn snd_buf(&self) -> Option<u32> {
        self.at(3)
    }
    pub fn fwd_alloc(&self) -> Option<u32> {
        self.at(4)
    }
    pub fn wmem_queued(&self) -> Option<u32> {
        self.at(5)
    }
    pub fn drops(&self) -> Option<u32> {
        self.at(8)
    }
    pub fn opt_mem(&self) -> Option<u32> {
        self.at(6)
    }
    pub fn backlog(&self) -> Option<u32> {
        self.at(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{frames, NLMSG_DONE};

    /// Raw datagrams captured from the kernel by
    /// tests/fixtures/capture_sock_diag.sh: each a u32 length, then bytes.
    const FIXTURE: &[u8] = include_bytes!("../../../../tests/fixtures/sock_diag_netns.bin");

    fn datagrams(mut b: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let n = u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize;
            out.push(&b[4..4 + n]);
            b = &b[4 + n..];
        }
        out
    }

    fn messages() -> Vec<InetDiagMsg<'static>> {
        let mut out = Vec::new();
        for dg in datagrams(FIXTURE) {
            for f in frames(dg) {
                let f = f.unwrap();
                if f.message_type == SOCK_DIAG_BY_FAMILY {
                    out.push(InetDiagMsg::parse(f.payload).unwrap());
                } else {
                    assert_eq!(f.message_type, NLMSG_DONE);
                }
            }
        }
        out
    }

    #[test]
    fn parses_the_captured_socket_set() {
        let msgs = messages();
        let find = |state: u8, port: u16| msgs.iter().find(|m| m.state() == state && m.local_port() == port).copied();
        let listen = find(10, 8080).expect("LISTEN 127.0.0.1:8080");
        assert_eq!(listen.local_addr().to_string(), "127.0.0.1");
        assert_eq!(listen.send_q(), 5, "backlog");
        assert_eq!(listen.recv_q(), 0);
        assert_ne!(listen.inode(), 0);
        assert_eq!(listen.congestion().map(str::len).map(|l| l > 0), Some(true));
        let server = msgs.iter().find(|m| m.state() == 1 && m.local_port() == 8080).expect("accepted side");
        assert_eq!(server.recv_q(), 100);
        let client = find(1, server.remote_port()).expect("client side");
        assert_eq!(client.remote_port(), 8080);
        let ti = client.tcp_info().expect("tcp_info requested");
        assert_eq!(ti.bytes_acked(), Some(101), "100 bytes + SYN");
        assert!(ti.snd_mss().unwrap() > 0 && ti.rtt_us().unwrap() > 0);
        assert!(client.meminfo().unwrap().snd_buf().unwrap() > 0);
        let udp = find(7, 5353).expect("UNCONN udp 5353");
        assert!(udp.tcp_info().is_none());
        let v6 = find(10, 8443).expect("LISTEN [::1]:8443");
        assert_eq!(v6.family(), AF_INET6);
        assert_eq!(v6.local_addr().to_string(), "::1");
        assert_eq!(v6.send_q(), 3);
        assert_eq!(msgs.len(), 5, "exactly the sockets the script made");
    }

    #[test]
    fn truncated_or_corrupt_messages_are_errors_not_panics() {
        let dg = datagrams(FIXTURE)[0];
        let first = frames(dg).next().unwrap().unwrap();
        let payload = first.payload;
        for cut in 0..payload.len() {
            let r = InetDiagMsg::parse(&payload[..cut]);
            if cut < MSG_LEN {
                assert!(r.is_err(), "cut {cut}");
            }
            // Past the fixed header a cut lands inside an attribute: an
            // error, or a shorter valid chain, never a panic.
        }
        let mut bad = payload.to_vec();
        bad[0] = 99; // unknown family
        assert!(InetDiagMsg::parse(&bad).is_err());
        let mut bad = payload.to_vec();
        bad[MSG_LEN] = 0xff; // first attribute claims to be longer than the message
        bad[MSG_LEN + 1] = 0xff;
        assert!(InetDiagMsg::parse(&bad).is_err());
    }

    #[test]
    fn short_tcp_info_from_an_older_kernel_reads_as_absent_fields() {
        let msgs = messages();
        let client = msgs.iter().find(|m| m.state() == 1 && m.local_port() != 8080).unwrap();
        let full = client.tcp_info().unwrap();
        let old = TcpInfo(&full.0[..104]); // the size of tcp_info in Linux 3.x
        assert_eq!(old.rtt_us(), full.rtt_us());
        assert_eq!(old.bytes_acked(), None);
        assert_eq!(old.bytes_sent(), None);
    }

    #[test]
    fn both_families_of_tcp_is_one_legacy_request() {
        let ext = Extensions { tcp_info: true, ..Default::default() };
        let (kind, body) = dump_request(IPPROTO_TCP, AF_UNSPEC, 1 << 8, ext, &[Cond::LocalPortGe(80)]).unwrap();
        assert_eq!(kind, TCPDIAG_GETSOCK);
        // struct inet_diag_req: family, src_len, dst_len, ext; sockid; states; dbs.
        assert_eq!(&body[..4], &[AF_UNSPEC, 0, 0, 1 << 1]);
        assert_eq!(&body[44..52], &[0xff; 8], "cookie: any");
        assert_eq!(u32::from_ne_bytes(body[52..56].try_into().unwrap()), 1 << 8);
        assert_eq!(u16::from_ne_bytes([body[62], body[63]]), INET_DIAG_REQ_BYTECODE);
        assert_eq!(body.len(), 60 + 4 + 8);
        // Per family, and UDP always: SOCK_DIAG_BY_FAMILY.
        assert_eq!(dump_request(IPPROTO_TCP, AF_INET6, 1, ext, &[]).unwrap().0, SOCK_DIAG_BY_FAMILY);
        assert!(dump_request(IPPROTO_UDP, AF_UNSPEC, 1, ext, &[]).is_err());
    }

    #[test]
    fn request_asks_for_the_wanted_extensions() {
        let body = request_body(
            AF_INET6,
            IPPROTO_TCP,
            1 << 10,
            Extensions { tcp_info: true, meminfo: true, ..Default::default() },
        );
        assert_eq!(body.len(), 56);
        assert_eq!((body[0], body[1]), (AF_INET6, IPPROTO_TCP));
        assert_eq!(body[2], 1 << 1 | 1 << 6);
        assert_eq!(u32::from_ne_bytes(body[4..8].try_into().unwrap()), 1 << 10);
    }
}
