//! Live capture through an AF_PACKET socket, the kernel interface tcpdump
//! uses: cooked (SOCK_DGRAM), so every interface's packets start at the
//! network header whatever its link layer, with the EtherType, direction
//! and interface index in the address the kernel fills. A capture is read
//! in short waits so the caller can end it on time, on a row limit, or
//! when the query is dropped.

use std::os::fd::{AsRawFd, OwnedFd};

use super::Direction;
use crate::Error;

/// The time the kernel stamped on a packet (SO_TIMESTAMPNS): taken once
/// per packet, so captures running side by side (tcpdump's, or another
/// sockql's) give it the same time.
pub(super) fn kernel_timestamp(msg: &libc::msghdr) -> Option<i64> {
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_control and msg_controllen, and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some(t.tv_sec * 1_000_000_000 + t.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// One packet as the kernel handed it over.
#[derive(Debug)]
pub struct Captured<'a> {
    /// Nanoseconds since the epoch, UTC, as the kernel stamped it.
    pub ts_ns: i64,
    pub ether_type: u16,
    pub direction: Direction,
    pub ifindex: u32,
    /// Its length on the wire (network layer on).
    pub length: u32,
    /// The bytes kept (at most the snap length).
    pub data: &'a [u8],
}

/// How much of each packet is kept: headers, not payload (payloads may
/// carry secrets; IPv6 with extension headers and TCP options fits).
pub const SNAP_LEN: usize = 256;
/// With `--payload`: whole packets, as tcpdump's default snap length
/// (GSO on loopback hands over up to 64 KB at once).
pub const SNAP_LEN_PAYLOAD: usize = 262_144;

/// The capture socket's receive queue, bytes of packet buffers.
const RECV_BUFFER: usize = 32 << 20;

/// The snap length for a capture that keeps payloads or not.
pub fn snap_len(payload: bool) -> usize {
    if payload {
        SNAP_LEN_PAYLOAD
    } else {
        SNAP_LEN
    }
}

/// Packets taken per recvmmsg(2): one system call for a burst instead of
/// one per packet (tcpdump's ring buffer saves the same).
const BATCH: usize = 64;
/// With whole packets, fewer at once (each slot is a snap length).
const BATCH_PAYLOAD: usize = 4;

/// What the kernel said of one packet of a batch.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ts_ns: i64,
    ether_type: u16,
    direction: Direction,
    ifindex: u32,
    length: u32,
}

/// An open capture socket.
pub struct LiveCapture {
    fd: OwnedFd,
    /// The interface [`LiveCapture::start`] binds to (0: every one).
    ifindex: u32,
    snap_len: usize,
    /// Packets per read.
    batch: usize,
    /// `batch` packets of `snap_len` bytes each.
    bufs: Vec<u8>,
    slots: Vec<Slot>,
}

fn last_os_error(what: &str) -> Error {
    os_error(what, std::io::Error::last_os_error())
}

fn os_error(what: &str, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EPERM) {
        return Error::Capture(format!("{what}: capturing needs CAP_NET_RAW (run as root)").into(), e);
    }
    Error::Capture(what.into(), e)
}

impl LiveCapture {
    /// A capture socket for `ifindex` (0: every interface) of the calling
    /// thread's network namespace, with the kernel filter `prog` (empty:
    /// none), keeping at most `snap_len` bytes of each packet, and asking
    /// for kernel timestamps. It is opened with protocol 0, as libpcap
    /// opens its own, so it receives nothing until [`LiveCapture::start`]
    /// binds it: no packet queues before the filter is attached, none
    /// from another interface, and none before the kernel stamps them
    /// (see [`super::stamps`]; the caller waits for that in between).
    pub fn open(ifindex: u32, prog: &[(u16, u8, u8, u32)], snap_len: usize) -> Result<Self, Error> {
        use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
        let fd = socket(AddressFamily::Packet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| os_error("AF_PACKET socket", e.into()))?;
        let batch = if snap_len > SNAP_LEN { BATCH_PAYLOAD } else { BATCH };
        let cap = LiveCapture {
            fd,
            ifindex,
            snap_len,
            batch,
            bufs: vec![0; batch * snap_len],
            slots: Vec::with_capacity(batch),
        };
        if !prog.is_empty() {
            cap.attach(prog)?;
        }
        let fd = &cap.fd;
        // Room for bursts: the queue is charged each packet's whole buffer
        // (64 KB for a GSO segment on loopback), not the bytes kept, and the
        // default (about 200 KB) overflows within a few of them. Queued
        // packets only use memory while a burst lasts. SO_RCVBUFFORCE
        // passes net.core.rmem_max as root; without CAP_NET_ADMIN the
        // default stays.
        let _ = setsockopt(fd, sockopt::RcvBufForce, &RECV_BUFFER);
        // The kernel's time of each packet, not the time it was read. The
        // first socket on the host to ask switches receive stamps on only
        // through a workqueue: the caller waits for it before start().
        setsockopt(fd, sockopt::ReceiveTimestampns, &true).map_err(|e| os_error("SO_TIMESTAMPNS", e.into()))?;
        Ok(cap)
    }

    /// Start receiving: bind to every protocol on the interface. The
    /// interface index is that of the namespace the socket was opened in,
    /// whichever thread calls.
    pub fn start(&self) -> Result<(), Error> {
        // bind(2) by hand: nix's LinkAddr has no safe constructor.
        // SAFETY: a zeroed sockaddr_ll is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = self.ifindex as i32;
        // SAFETY: bind(2) reads the sockaddr_ll we own, for its size, during the call.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(last_os_error("bind AF_PACKET socket"));
        }
        Ok(())
    }

    /// Let the kernel drop what `prog` rejects (SO_ATTACH_FILTER, which
    /// nix has no option for): see [`super::bpf`].
    fn attach(&self, prog: &[(u16, u8, u8, u32)]) -> Result<(), Error> {
        let mut ins: Vec<libc::sock_filter> =
            prog.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
        let fprog = libc::sock_fprog { len: ins.len() as u16, filter: ins.as_mut_ptr() };
        // SAFETY: the kernel copies the program during the call; `ins` outlives it.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &fprog as *const libc::sock_fprog as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if r != 0 {
            return Err(last_os_error("SO_ATTACH_FILTER"));
        }
        Ok(())
    }

    /// The descriptor, to poll several captures at once.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Take the packets waiting, up to a batch, without waiting: how many
    /// (0 when none waits). Read them with [`LiveCapture::packet`].
    pub fn read_batch(&mut self) -> Result<usize, Error> {
        let batch = self.batch;
        // SAFETY: zeroed sockaddr_ll, msghdr and mmsghdr are valid values;
        // the pointers set below point into buffers that outlive the call.
        let mut addrs: Vec<libc::sockaddr_ll> = vec![unsafe { std::mem::zeroed() }; batch];
        // Room for one SCM_TIMESTAMPNS message each, 8-byte aligned.
        let mut controls = vec![[0u64; 8]; batch];
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .chunks_mut(self.snap_len)
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: b.len() })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..batch)
            .map(|i| {
                // SAFETY: a zeroed mmsghdr is a valid value (null pointers, zero lengths).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_ll as *mut libc::c_void;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = controls[i].as_mut_ptr() as *mut libc::c_void;
                m.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
                m
            })
            .collect();
        // MSG_TRUNC: each length is the packet's whole length even when
        // only the snap length was copied. By hand, not nix's recvmmsg:
        // this is the capture's hot path, reusing its buffers every batch.
        // SAFETY: recvmmsg(2) writes at most `batch` messages within the
        // buffers msgs points to.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.slots.clear();
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(Error::Capture("AF_PACKET recvmmsg".into(), e)),
            };
        }
        let now =
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        for (m, sll) in msgs.iter().zip(&addrs).take(n as usize) {
            self.slots.push(Slot {
                ts_ns: kernel_timestamp(&m.msg_hdr).unwrap_or_else(now),
                ether_type: u16::from_be(sll.sll_protocol),
                direction: if sll.sll_pkttype == libc::PACKET_OUTGOING { Direction::Out } else { Direction::In },
                ifindex: sll.sll_ifindex as u32,
                length: m.msg_len,
            });
        }
        Ok(self.slots.len())
    }

    /// The most packets one [`LiveCapture::read_batch`] takes.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Packet `i` of the last batch.
    pub fn packet(&self, i: usize) -> Captured<'_> {
        let s = self.slots[i];
        let start = i * self.snap_len;
        let kept = (s.length as usize).min(self.snap_len);
        Captured {
            ts_ns: s.ts_ns,
            ether_type: s.ether_type,
            direction: s.direction,
            ifindex: s.ifindex,
            length: s.length,
            data: &self.bufs[start..start + kept],
        }
    }

    /// (packets the kernel passed to the socket, packets it dropped for
    /// want of buffer) since the last call: PACKET_STATISTICS.
    pub fn statistics(&self) -> Option<(u32, u32)> {
        // PACKET_STATISTICS by hand: nix has no option for it.
        // SAFETY: a zeroed tpacket_stats (two integers) is a valid value.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `st`, which we own.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut libc::tpacket_stats as *mut libc::c_void,
                &mut len,
            )
        };
        (r == 0).then_some((st.tp_packets, st.tp_drops))
    }
}
