//! Reading TCP/UDP sockets through NETLINK_SOCK_DIAG: one dump per
//! (protocol, family) pair, each message handed over as a borrowed
//! [`InetDiagMsg`] while the dump is still arriving.

use std::io::Write;
use std::ops::ControlFlow;

use super::inet_diag::{self, Cond, Extensions, InetDiagMsg};
use super::netlink::{DumpSocket, NetlinkError};

/// The (protocol, family) dumps that cover every TCP and UDP socket, in the
/// order `ss -tuna` lists them.
pub const ALL_DUMPS: [(u8, u8); 4] = [
    (inet_diag::IPPROTO_TCP, inet_diag::AF_INET),
    (inet_diag::IPPROTO_TCP, inet_diag::AF_INET6),
    (inet_diag::IPPROTO_UDP, inet_diag::AF_INET),
    (inet_diag::IPPROTO_UDP, inet_diag::AF_INET6),
];

pub struct SockDiag {
    socket: DumpSocket,
}

impl SockDiag {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(SockDiag { socket: DumpSocket::open(netlink_sys::constants::NETLINK_SOCK_DIAG)? })
    }

    /// Dump one protocol and family (for TCP, `AF_UNSPEC` is both families
    /// in one walk), calling `on_socket` per socket that
    /// passes `conds` (checked by the kernel). A
    /// malformed message ends the dump with an error; `on_socket` may stop
    /// it early by breaking. `capture`, when given, receives every raw
    /// datagram (for bug reports and parser fixtures).
    #[allow(clippy::too_many_arguments)]
    pub fn dump(
        &mut self,
        protocol: u8,
        family: u8,
        states: u32,
        extensions: Extensions,
        conds: &[Cond],
        capture: Option<&mut dyn Write>,
        mut on_socket: impl FnMut(&InetDiagMsg<'_>) -> ControlFlow<()>,
    ) -> Result<(), NetlinkError> {
        let (kind, body) = inet_diag::dump_request(protocol, family, states, extensions, conds)?;
        let mut failure = None;
        self.socket.dump_with_capture(kind, &body, capture, |frame| {
            match InetDiagMsg::parse(frame.payload) {
                Ok(msg) => on_socket(&msg),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }
}
