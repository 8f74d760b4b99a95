//! Sockets as the kernel destroys them: the sock_diag multicast groups
//! `ss -E` listens on (SKNLGRP_INET_TCP_DESTROY, _UDP_, and the INET6
//! pair). Each message is the inet_diag_msg a dump answers with (state,
//! addresses, ports, cookie; uid and inode are zero), with
//! INET_DIAG_PROTOCOL and, for TCP, the final tcp_info. The kernel sends
//! one as it frees the socket, in the network namespace of the socket
//! only, and drops messages when the listener's queue is full: the
//! listener then reads ENOBUFS once, and [`DestroyListener::overruns`]
//! counts those (how many messages each one cost the kernel does not say).

use std::ops::ControlFlow;
use std::os::fd::AsRawFd;

use netlink_sys::{Socket, SocketAddr};

use super::inet::InetDiagMsg;
use crate::collect::netlink::{frames, NetlinkError};
use crate::collect::Error;

/// SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY,
/// SKNLGRP_INET6_TCP_DESTROY, SKNLGRP_INET6_UDP_DESTROY.
pub const GROUPS: [u32; 4] = [1, 2, 3, 4];

/// SOCK_DIAG_BY_FAMILY: the message type of every destroy event.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// The kernel-side queue: a burst of closes (thousands per second on a
/// busy host) waits here between reads. 8 MB holds tens of thousands of
/// TCP messages (about 300 bytes each with tcp_info and overhead).
const QUEUE_BYTES: usize = 8 << 20;

/// One datagram holds one message; 64 KB is ample.
const DATAGRAM: usize = 64 << 10;

/// A socket subscribed to the destroy groups of the calling thread's
/// network namespace.
pub struct DestroyListener {
    socket: Socket,
    buf: Vec<u8>,
    /// ENOBUFS reads: times the kernel dropped events for want of queue.
    pub overruns: u64,
    /// Events handed over.
    pub events: u64,
}

impl DestroyListener {
    pub fn open() -> Result<Self, Error> {
        let mut socket = Socket::new(netlink_sys::constants::NETLINK_SOCK_DIAG).map_err(NetlinkError::Open)?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(NetlinkError::Open)?;
        for g in GROUPS {
            socket.add_membership(g).map_err(NetlinkError::Open)?;
        }
        let _ = socket.set_rx_buf_sz(QUEUE_BYTES);
        // As root, past net.core.rmem_max (setsockopt SO_RCVBUFFORCE).
        let size = QUEUE_BYTES as libc::c_int;
        // SAFETY: setsockopt reads one c_int we own.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        socket.set_non_blocking(true).map_err(NetlinkError::Open)?;
        Ok(DestroyListener { socket, buf: Vec::with_capacity(DATAGRAM), overruns: 0, events: 0 })
    }

    /// The descriptor, to poll several listeners at once.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }

    /// Hand every event waiting to `on_event`, without waiting for more;
    /// stops early when it breaks. Returns how many were handed over.
    pub fn read_waiting(&mut self, mut on_event: impl FnMut(&InetDiagMsg<'_>) -> ControlFlow<()>) -> Result<usize, Error> {
        let mut n = 0;
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.overruns += 1;
                    continue;
                }
                Err(e) => return Err(NetlinkError::Io(e)),
            }
            for frame in frames(&self.buf) {
                let frame = frame?;
                if frame.message_type != SOCK_DIAG_BY_FAMILY {
                    continue;
                }
                let msg = InetDiagMsg::parse(frame.payload)?;
                n += 1;
                self.events += 1;
                if on_event(&msg).is_break() {
                    return Ok(n);
                }
            }
        }
    }
}
