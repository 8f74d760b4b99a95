//! Sockets as the kernel destroys them: the sock_diag multicast groups
//! `ss -E` listens on (SKNLGRP_INET_TCP_DESTROY, _UDP_, and the INET6
//! pair). Each message is the inet_diag_msg a dump answers with (state,
//! addresses, ports, cookie; uid and inode are zero), with
//! INET_DIAG_PROTOCOL and, for TCP, the final tcp_info. The kernel sends
//! one as it frees the socket, to listeners in the socket's network
//! namespace only.

use std::ops::ControlFlow;

use super::inet::InetDiagMsg;
use crate::netlink::{MulticastListener, NetlinkError};
use crate::Error;

/// SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY,
/// SKNLGRP_INET6_TCP_DESTROY, SKNLGRP_INET6_UDP_DESTROY.
pub const GROUPS: [u32; 4] = [1, 2, 3, 4];

/// SOCK_DIAG_BY_FAMILY: the message type of every destroy event.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Subscribed to the destroy groups of the calling thread's namespace.
pub struct DestroyListener {
    listener: MulticastListener,
}

impl DestroyListener {
    pub fn open() -> Result<Self, Error> {
        Ok(DestroyListener { listener: MulticastListener::open(netlink_sys::constants::NETLINK_SOCK_DIAG, &GROUPS)? })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    /// Times the kernel dropped events for want of queue (ENOBUFS).
    pub fn overruns(&self) -> u64 {
        self.listener.overruns
    }

    /// Hand every event waiting to `on_event`, without waiting for more;
    /// stops early when it breaks.
    pub fn read_waiting(&mut self, mut on_event: impl FnMut(&InetDiagMsg<'_>) -> ControlFlow<()>) -> Result<(), Error> {
        self.listener.read_waiting(|frame| {
            if frame.message_type != SOCK_DIAG_BY_FAMILY {
                return Ok(ControlFlow::Continue(()));
            }
            let msg = InetDiagMsg::parse(frame.payload)?;
            Ok::<_, NetlinkError>(on_event(&msg))
        })?;
        Ok(())
    }
}
