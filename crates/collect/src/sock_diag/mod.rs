//! Sockets through NETLINK_SOCK_DIAG, the source `ss` uses, with the
//! /proc/net text files as the fallback where netlink is refused.
//!
//! - [`inet`]: TCP, UDP and raw requests and zero-copy views of the answers;
//! - [`bytecode`]: the kernel-side filter program;
//! - [`unix`]: unix domain sockets (UNIX_DIAG) and /proc/net/unix.
//!
//! One reader shape: [`SockDiag`] holds one netlink socket, and each dump
//! hands its items to a callback that may stop the dump (`Ok(Break)`) or
//! fail it (`Err`). [`read_inet`] and [`read_unix`] choose the source
//! themselves (netlink unless `--no-netlink` or refused, then /proc), say so
//! once on stderr, and report what they used.

pub mod bytecode;
pub mod destroy;
pub mod inet;
pub mod unix;

use std::collections::VecDeque;
use std::io::Write;
use std::ops::ControlFlow;

use super::error::CallerOr;
use super::netlink::{DumpSocket, Received};
use super::{proc_net, Error, ReadOptions, Used};
use crate::notice;
use inet::{Cond, Extensions, InetDiagMsg};

/// The (protocol, family) dumps that cover every TCP, UDP and raw socket.
pub const ALL_DUMPS: [(u8, u8); 6] = [
    (inet::IPPROTO_TCP, inet::AF_INET),
    (inet::IPPROTO_TCP, inet::AF_INET6),
    (inet::IPPROTO_UDP, inet::AF_INET),
    (inet::IPPROTO_UDP, inet::AF_INET6),
    (inet::IPPROTO_RAW, inet::AF_INET),
    (inet::IPPROTO_RAW, inet::AF_INET6),
];

/// What one inet dump asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetRequest {
    pub protocol: u8,
    /// `AF_UNSPEC` with TCP: both families in one walk of the kernel's table.
    pub family: u8,
    /// Bitmask of TCP states (1 << state).
    pub states: u32,
    pub extensions: Extensions,
    /// Conditions the kernel applies (ANDed).
    pub conds: Vec<Cond>,
}

/// One NETLINK_SOCK_DIAG socket.
pub struct SockDiag {
    socket: DumpSocket,
}

impl SockDiag {
    pub fn open() -> Result<Self, Error> {
        Ok(SockDiag { socket: DumpSocket::open(netlink_sys::constants::NETLINK_SOCK_DIAG)? })
    }

    /// What this socket's dumps received so far.
    pub fn received(&self) -> Received {
        self.socket.received
    }

    /// Dump the TCP or UDP sockets `req` asks for, each handed over as a
    /// borrowed view while the dump is still arriving. A malformed message
    /// ends the dump with an error. `capture`, when given, receives every
    /// raw datagram (for bug reports and parser fixtures).
    pub fn inet<E: From<Error>>(
        &mut self,
        req: &InetRequest,
        capture: Option<&mut dyn Write>,
        mut on_socket: impl FnMut(&InetDiagMsg<'_>) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let (kind, body) = inet::dump_request(req.protocol, req.family, req.states, req.extensions, &req.conds)?;
        self.socket.dump(kind, &body, capture, |frame| on_socket(&InetDiagMsg::parse(frame.payload)?))
    }

    /// Dump every unix socket of the calling thread's namespace.
    pub fn unix<E: From<Error>>(
        &mut self,
        mut on_socket: impl FnMut(&unix::UnixSocket) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.socket.dump(inet::SOCK_DIAG_BY_FAMILY, &unix::request_body(), None, |frame| {
            on_socket(&unix::parse(frame.payload)?)
        })
    }
}

/// One TCP or UDP socket as a reader found it: a netlink answer (every
/// column) or a /proc/net line (no tcp_info, memory, cookie or interface).
pub enum InetSocket<'a, 'm> {
    Diag { protocol: u8, msg: &'a InetDiagMsg<'m> },
    Proc { protocol: u8, family: u8, socket: &'a proc_net::ProcNetSocket },
}

/// The `protocol` column's value, and the /proc/net file's stem.
pub fn protocol_name(p: u8) -> &'static str {
    match p {
        inet::IPPROTO_TCP => "tcp",
        inet::IPPROTO_UDP => "udp",
        _ => "raw",
    }
}

pub fn family_name(f: u8) -> &'static str {
    match f {
        inet::AF_INET => "inet",
        inet::AF_INET6 => "inet6",
        _ => "inet+inet6",
    }
}

/// The families one dump covers (AF_UNSPEC: both, in one TCP walk).
fn families_of(f: u8) -> &'static [u8] {
    match f {
        inet::AF_INET => &[inet::AF_INET],
        inet::AF_INET6 => &[inet::AF_INET6],
        _ => &[inet::AF_INET, inet::AF_INET6],
    }
}

/// The /proc/net table of a protocol and family (tcp, udp6, raw, ...), through thread-self so a
/// reader thread inside another namespace reads that namespace's.
fn proc_file(protocol: u8, family: u8) -> String {
    format!("/proc/thread-self/net/{}{}", protocol_name(protocol), if family == inet::AF_INET6 { "6" } else { "" })
}

/// Read the sockets of `dumps` (protocol, family) with `states`,
/// `extensions` and `conds`, in the calling thread's namespace, from
/// sock_diag, or per dump from /proc/net where netlink is refused (or
/// `--no-netlink`). /proc rows pass the same state mask; the port and
/// address conditions are left to the caller there. Returns what it used
/// and what netlink received.
pub fn read_inet<E: From<Error>>(
    options: ReadOptions,
    dumps: &[(u8, u8)],
    states: u32,
    extensions: Extensions,
    conds: &[Cond],
    mut on_socket: impl FnMut(InetSocket<'_, '_>) -> Result<ControlFlow<()>, E>,
) -> Result<(Used, Received), E> {
    let mut used = Used::default();
    let mut netlink = if options.no_netlink {
        None
    } else {
        match SockDiag::open() {
            Ok(s) => Some(s),
            Err(e) => {
                notice::warn_once(
                    "sock-diag-open",
                    format!(
                        "netlink sock_diag unavailable ({e}); reading /proc/net/{{tcp,tcp6,udp,udp6,raw,raw6}} instead, \
                         so tcp_info, memory, cookie and interface columns are null"
                    ),
                );
                None
            }
        }
    };
    let mut queue: VecDeque<(u8, u8)> = dumps.iter().copied().collect();
    while let Some((protocol, family)) = queue.pop_front() {
        if let Some(nl) = netlink.as_mut() {
            let req = InetRequest { protocol, family, states, extensions, conds: conds.to_vec() };
            let mut rows = 0usize;
            let mut stopped = false;
            let res = nl.inet(&req, None, |msg| {
                rows += 1;
                let flow = on_socket(InetSocket::Diag { protocol, msg }).map_err(CallerOr::Caller)?;
                stopped = flow.is_break();
                Ok::<_, CallerOr<E>>(flow)
            });
            match res {
                Ok(()) => {
                    used.netlink += 1;
                    if stopped {
                        return Ok((used, nl.received()));
                    }
                    continue;
                }
                Err(CallerOr::Caller(e)) => return Err(e),
                // A kernel or sandbox refusing the legacy both-families
                // request before any answer: one request per family instead.
                Err(CallerOr::Reader(e)) if family == inet::AF_UNSPEC && rows == 0 && e.is_refusal() => {
                    for &f in families_of(family).iter().rev() {
                        queue.push_front((protocol, f));
                    }
                    continue;
                }
                // A kernel without raw_diag (CONFIG_INET_RAW_DIAG): ss reads
                // /proc/net/raw then without a word, and so do we; the raw
                // columns /proc lacks are the ones raw sockets lack anyway.
                Err(CallerOr::Reader(e))
                    if protocol == inet::IPPROTO_RAW && rows == 0 && e.errno() == Some(libc::ENOENT) => {}
                Err(CallerOr::Reader(e)) if e.is_refusal() => notice::warn_once(
                    &format!("sock-diag-{protocol}-{family}"),
                    format!(
                        "netlink sock_diag refused the {}/{} dump ({e}); reading {} instead for those sockets",
                        protocol_name(protocol),
                        family_name(family),
                        proc_file(protocol, family)
                    ),
                ),
                Err(CallerOr::Reader(e)) => return Err(e.into()),
            }
        }
        for &family in families_of(family) {
            let path = proc_file(protocol, family);
            used.proc += 1;
            let sockets = proc_net::read(&path).map_err(|e| e.in_file(&path))?;
            for s in sockets {
                if states & (1 << s.state) == 0 {
                    continue;
                }
                if on_socket(InetSocket::Proc { protocol, family, socket: &s })?.is_break() {
                    return Ok((used, netlink.map(|n| n.received()).unwrap_or_default()));
                }
            }
        }
    }
    Ok((used, netlink.map(|n| n.received()).unwrap_or_default()))
}

/// /proc/thread-self/net/unix: the fallback of [`read_unix`].
const PROC_UNIX: &str = "/proc/thread-self/net/unix";

/// Read the unix sockets of the calling thread's namespace from UNIX_DIAG,
/// or from /proc/net/unix where netlink is refused (or `--no-netlink`):
/// then peer, queues and uid are null.
pub fn read_unix<E: From<Error>>(
    options: ReadOptions,
    mut on_socket: impl FnMut(&unix::UnixSocket) -> Result<ControlFlow<()>, E>,
) -> Result<(Used, Received), E> {
    if !options.no_netlink {
        let res: Result<Received, CallerOr<E>> = match SockDiag::open() {
            Ok(mut nl) => nl.unix(|u| on_socket(u).map_err(CallerOr::Caller)).map(|()| nl.received()),
            Err(e) => Err(CallerOr::Reader(e)),
        };
        match res {
            Ok(received) => return Ok((Used { netlink: 1, proc: 0 }, received)),
            Err(CallerOr::Caller(e)) => return Err(e),
            Err(CallerOr::Reader(e)) if e.is_refusal() => notice::warn_once(
                "sock-diag-unix",
                format!("netlink sock_diag unavailable ({e}); reading /proc/net/unix instead, so peer, queue and uid columns are null"),
            ),
            Err(CallerOr::Reader(e)) => return Err(e.into()),
        }
    }
    let text = std::fs::read_to_string(PROC_UNIX).map_err(|e| Error::Proc(PROC_UNIX.into(), e))?;
    for s in unix::parse_proc(&text).map_err(|e| e.in_file(PROC_UNIX))? {
        if on_socket(&s)?.is_break() {
            break;
        }
    }
    Ok((Used { netlink: 0, proc: 1 }, Received::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump the caller stops after its first socket leaves the rest of
    /// its answer in flight; the next dump on the same socket must still
    /// see exactly its own answer (the reading thread of the first is
    /// joined before the second starts, and stale datagrams are skipped).
    #[test]
    fn a_dump_stopped_early_leaves_the_next_one_on_its_socket_whole() {
        const N: usize = 400; // about 40 KB of answers: more than one datagram
        let addr: std::net::IpAddr = "127.0.0.77".parse().unwrap();
        let held: Vec<std::net::UdpSocket> = (0..N).map(|_| std::net::UdpSocket::bind((addr, 0)).unwrap()).collect();
        let req = InetRequest {
            protocol: inet::IPPROTO_UDP,
            family: inet::AF_INET,
            states: crate::tcp_state::ALL_BITS,
            extensions: Extensions::default(),
            conds: vec![Cond::LocalAddr(addr)],
        };
        let mut nl = SockDiag::open().unwrap();
        let mut first = 0;
        nl.inet::<Error>(&req, None, |_| {
            first += 1;
            Ok(ControlFlow::Break(()))
        })
        .unwrap();
        assert_eq!(first, 1);
        for _ in 0..2 {
            let mut ports = Vec::new();
            nl.inet::<Error>(&req, None, |m| {
                ports.push(m.local_port());
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            ports.sort_unstable();
            let mut want: Vec<u16> = held.iter().map(|s| s.local_addr().unwrap().port()).collect();
            want.sort_unstable();
            assert_eq!(ports, want);
        }
    }
}
