//! Wait, before a live capture starts, until the kernel stamps packets as
//! it receives them.
//!
//! Linux takes a packet's receive time (skb->tstamp, in netif_rx or
//! netif_receive_skb) only while some socket on the host asks for
//! timestamps: a static key, netstamp_needed_key. The first socket to ask
//! (our SO_TIMESTAMPNS) does not switch it on itself: net_enable_timestamp
//! defers that to a workqueue, which on a loaded machine runs milliseconds
//! later. A packet received before then carries no stamp, and recvmsg(2)
//! on a plain AF_PACKET socket stamps it as it is read ("race occurred
//! between timestamp enabling and packet receiving", net/socket.c): the
//! first packets of a capture would carry the time sockql read them, after
//! its 2 ms coalescing wait, not when they arrived.
//!
//! tcpdump never shows this because libpcap reads a PACKET_RX_RING
//! (TPACKET_V3), whose tp_sec/tp_nsec tpacket_rcv fills as the packet is
//! put in the ring, from skb->tstamp or else the clock right then. Moving
//! sockql's capture to a ring would mean its own mmap'd block handling and
//! a second memory bound; instead the capture sockets are opened unbound
//! (they queue nothing yet), ask for timestamps, and are bound only once
//! this module has seen the key on: until then no packet reaches them.
//!
//! The real condition polled: a datagram sockql sends itself over loopback
//! is stamped on receive (before poll(2) says it is there) once the key is
//! on, and at read time (after we took the time to compare) while it is
//! off. The key is one for the whole host, so the probes run in a network
//! namespace of their own, made for them and gone with them: no capture
//! of the operator's (tcpdump on lo, another sockql) ever sees them. One
//! probe is sent from every CPU the process may run on, each in turn
//! pinned to it: a packet received before the key went on waits, without
//! a stamp, in its CPU's backlog queue (one per CPU, for every namespace),
//! in order, so once that CPU's probe has come through none is left.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{setsockopt, sockopt};

/// How long one probe waits for its own datagram.
const PROBE_WAIT: Duration = Duration::from_millis(100);
/// Pause between probes while the key is still off: the worker that
/// switches it on needs the CPU.
const PROBE_PAUSE: Duration = Duration::from_millis(1);

fn realtime_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A UDP socket on loopback that asks for receive stamps, connected to
/// itself.
fn probe_socket() -> std::io::Result<UdpSocket> {
    let any: [SocketAddr; 2] = [(Ipv4Addr::LOCALHOST, 0).into(), (Ipv6Addr::LOCALHOST, 0).into()];
    let sock = UdpSocket::bind(&any[..])?;
    sock.connect(sock.local_addr()?)?;
    setsockopt(&sock, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// One probe: true if the datagram sent now was stamped by the kernel on
/// receive, false if it was stamped as we read it (or never came back).
fn probe(sock: &UdpSocket) -> std::io::Result<bool> {
    sock.send(&[0])?;
    let mut fds = [nix::poll::PollFd::new(sock.as_fd(), nix::poll::PollFlags::POLLIN)];
    let ms = nix::poll::PollTimeout::try_from(PROBE_WAIT).unwrap_or(nix::poll::PollTimeout::NONE);
    if nix::poll::poll(&mut fds, ms).map_err(std::io::Error::from)? == 0 {
        return Ok(false);
    }
    // Queued, so any receive stamp it has was taken before this instant;
    // a stamp recvmsg adds is taken after it.
    let queued_by = realtime_ns();
    let mut buf = [0u8; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // Room for one SCM_TIMESTAMPNS message, 8-byte aligned.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // By hand, as the capture reads (nix's recvmsg is not built here).
    // SAFETY: recvmsg(2) writes within the buffers msg points to, which
    // outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(super::live::kernel_timestamp(&msg).is_some_and(|t| t < queued_by))
}

/// Probe until a datagram comes back stamped on receive, or `deadline`.
fn probe_until(deadline: Instant) -> std::io::Result<bool> {
    let sock = probe_socket()?;
    loop {
        if probe(&sock)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(PROBE_PAUSE);
    }
}

/// Set the loopback of the calling thread's namespace up (SIOCSIFFLAGS,
/// which nix has no call for).
fn loopback_up() -> std::io::Result<()> {
    // Any datagram socket serves for the ioctl.
    let fd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: a zeroed ifreq is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own during the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A new network namespace, its loopback up, held by the descriptor
/// returned: made on a short-lived thread, so no thread of the caller's
/// moves, and gone once the descriptor and the threads in it are.
fn private_netns() -> std::io::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            loopback_up()?;
            Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
        })
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
    })
}

/// Wait, at most `timeout`, until the kernel stamps every packet on
/// receive, probed from each CPU in turn in a namespace of its own (see
/// the module's comment). True once it does; false if `timeout` passed
/// first; an error if no namespace could be made for the probes (that
/// takes CAP_SYS_ADMIN).
pub fn wait_for_receive_stamps(timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let ns = private_netns()?;
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
    let each: Vec<Option<usize>> = match &cpus {
        Some(set) => (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).map(Some).collect(),
        None => vec![None],
    };
    for cpu in each {
        // A thread of its own, in the probes' namespace and pinned to
        // `cpu`, so the caller's own namespace and affinity never change.
        let on_cpu = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                if let Some(c) = cpu {
                    let mut one = nix::sched::CpuSet::new();
                    // Pinning can fail (a cpuset changed meanwhile): the
                    // probe then runs where the scheduler puts it.
                    if one.set(c).is_ok() {
                        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one);
                    }
                }
                probe_until(deadline)
            })
            .join()
            .map_err(|_| std::io::Error::other("timestamp probe thread panicked"))?
        })?;
        if !on_cpu {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once a socket of ours holds the key on, every probe comes back
    /// stamped on receive, and the wait ends well within its bound.
    #[test]
    fn stamps_are_on_while_a_socket_asks() {
        let ns = private_netns().unwrap();
        let holder = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                probe_socket().unwrap()
            })
            .join()
            .unwrap()
        });
        let t = Instant::now();
        assert!(wait_for_receive_stamps(Duration::from_secs(5)).unwrap());
        assert!(probe(&holder).unwrap());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
