//! Netlink dump plumbing shared by every netlink reader (sock_diag,
//! ctnetlink): open a socket, send one dump request, and hand each
//! message of the multi-part answer to a callback as it arrives.
//!
//! Framing is parsed with `netlink-packet-core` and kept apart from I/O
//! ([`frames`]) so it can be tested on captured bytes.

use std::ops::ControlFlow;

pub use super::Error as NetlinkError;
use netlink_packet_core::NetlinkBuffer;
use netlink_sys::{Socket, SocketAddr};

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;

/// A dump answer arrives in datagrams of up to ~32 KiB each (the kernel
/// sizes dump skbs by the receive buffer, capped); 1 MiB leaves room for a
/// kernel that sends bigger ones, and MSG_TRUNC tells us if one still did.
const RECV_BUFFER: usize = 1 << 20;

/// One netlink message inside a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub message_type: u16,
    pub flags: u16,
    pub sequence: u32,
    pub payload: &'a [u8],
}

/// Split one received datagram into its netlink messages.
pub fn frames(datagram: &[u8]) -> impl Iterator<Item = Result<Frame<'_>, NetlinkError>> + '_ {
    let mut offset = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= datagram.len() {
            return None;
        }
        let rest = &datagram[offset..];
        let buf = match NetlinkBuffer::new_checked(rest) {
            Ok(b) => b,
            Err(e) => {
                failed = true;
                return Some(Err(NetlinkError::Malformed(format!("at byte {offset}: {e}"))));
            }
        };
        let len = buf.length() as usize;
        let frame = Frame {
            message_type: buf.message_type(),
            flags: buf.flags(),
            sequence: buf.sequence_number(),
            payload: buf.payload(),
        };
        // Messages are 4-byte aligned inside a datagram.
        offset += (len + 3) & !3;
        Some(Ok(frame))
    })
}

/// Decode the errno carried by NLMSG_ERROR (and by NLMSG_DONE of some
/// dumps): a negative i32 at the start of the payload, 0 meaning "ack".
pub fn payload_errno(payload: &[u8]) -> Result<i32, NetlinkError> {
    let bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NetlinkError::Malformed("error message shorter than 4 bytes".into()))?;
    Ok(-i32::from_ne_bytes(bytes))
}

/// Write the 16-byte nlmsghdr followed by `body` into a request buffer.
pub fn request(message_type: u16, flags: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut out = vec![0u8; len];
    {
        let mut buf = NetlinkBuffer::new(&mut out[..]);
        buf.set_length(len as u32);
        buf.set_message_type(message_type);
        buf.set_flags(flags);
        buf.set_sequence_number(sequence);
        buf.set_port_number(0);
    }
    out[16..].copy_from_slice(body);
    out
}

/// What the dumps on one socket received, for EXPLAIN ANALYZE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Netlink messages handed to callers.
    pub messages: u64,
    /// Bytes of datagrams received.
    pub bytes: u64,
}

/// A connected netlink socket of one protocol family.
pub struct DumpSocket {
    protocol: isize,
    socket: Socket,
    buf: Vec<u8>,
    sequence: u32,
    /// A dump on this socket was left before its end: the kernel refuses
    /// another one there (EBUSY) until it is read to the end, so the next
    /// dump opens a fresh socket instead of reading out what nobody wants.
    abandoned: bool,
    pub received: Received,
}

impl DumpSocket {
    pub fn open(protocol: isize) -> Result<Self, NetlinkError> {
        Ok(DumpSocket {
            protocol,
            socket: Self::connect(protocol)?,
            buf: Vec::new(),
            sequence: 0,
            abandoned: false,
            received: Received::default(),
        })
    }

    fn connect(protocol: isize) -> Result<Socket, NetlinkError> {
        let mut socket = Socket::new(protocol).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(NetlinkError::Open)?;
        // A bigger kernel-side queue lets a busy host's dump keep up.
        let _ = socket.set_rx_buf_sz(4 << 20);
        Ok(socket)
    }

    /// Send `message_type` with `body` as a dump request and call `on_msg`
    /// for each answer message until NLMSG_DONE. `on_msg` may stop early
    /// (`Ok(Break)`; the rest of the dump is then discarded) or fail, which
    /// ends the dump with its error. `capture`, when given, receives each
    /// datagram as a native-endian u32 length followed by its bytes.
    ///
    /// The kernel fills the next datagram inside the receive call that
    /// takes the previous one, so a reading thread receives while this one
    /// hands messages to `on_msg`: on two cores a large dump costs about
    /// the kernel's time alone, not the kernel's plus ours.
    pub fn dump<E: From<NetlinkError>>(
        &mut self,
        message_type: u16,
        body: &[u8],
        mut capture: Option<&mut dyn std::io::Write>,
        mut on_msg: impl FnMut(Frame<'_>) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        if self.abandoned {
            self.socket = Self::connect(self.protocol)?;
            self.abandoned = false;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let seq = self.sequence;
        let req = request(message_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body);
        self.socket.send(&req, 0).map_err(NetlinkError::Io)?;
        let mut reader = Reader::start(&self.socket, seq, std::mem::take(&mut self.buf))?;
        // Until the end is read, leaving (an error, the caller stopping)
        // abandons the dump.
        self.abandoned = true;
        while let Some((buf, n)) = reader.next()? {
            self.received.bytes += n as u64;
            let datagram = &buf[..n];
            if let Some(w) = capture.as_deref_mut() {
                w.write_all(&(n as u32).to_ne_bytes()).and_then(|_| w.write_all(datagram)).map_err(NetlinkError::Io)?;
            }
            let end = answer(datagram, seq, &mut self.received, &mut on_msg);
            if !matches!(end, Ok(ControlFlow::Continue(()))) {
                // Whole only if this datagram held the end of the dump.
                self.abandoned = !ends_dump(datagram, seq);
                self.buf = buf;
                return end.map(drop);
            }
            reader.recycle(buf);
        }
        // The reader hung up without the end of the dump: it cannot, short
        // of a bug; say so rather than return a partial answer.
        Err(NetlinkError::Malformed("the dump ended without NLMSG_DONE".into()).into())
    }
}

/// The reading thread of one dump and its two channels: full datagrams to
/// the caller, emptied buffers back. Not generic, so one copy serves every
/// kind of dump. Dropping it hangs up and waits for the thread, so no
/// datagram of this dump is read after it (the socket may start another).
struct Reader {
    full: Option<std::sync::mpsc::Receiver<Result<Datagram, NetlinkError>>>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(socket: &Socket, seq: u32, first: Vec<u8>) -> Result<Self, NetlinkError> {
        use std::os::fd::AsRawFd;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel(IN_FLIGHT);
        let (free_tx, free_rx) = std::sync::mpsc::channel();
        // The thread reads through the descriptor number: `Drop` joins it
        // before the socket can be closed or reused.
        let fd = socket.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("sockql-netlink".into())
            .spawn(move || receive(fd, seq, first, &free_rx, &full_tx))
            .map_err(NetlinkError::Io)?;
        Ok(Reader { full: Some(full_rx), free: free_tx, thread: Some(thread) })
    }

    /// The next datagram; None once the reader has stopped.
    fn next(&mut self) -> Result<Option<Datagram>, NetlinkError> {
        match self.full.as_ref().map(|f| f.recv()) {
            Some(Ok(got)) => got.map(Some),
            _ => Ok(None),
        }
    }

    fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.send(buf);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Hang up first: a reader waiting for room then stops.
        self.full = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A receive buffer and the length of the datagram in it.
type Datagram = (Vec<u8>, usize);

/// A receive buffer: zeroed once (the allocator maps fresh zero pages, so
/// only what the kernel writes becomes resident), then reused.
fn receive_buffer() -> Vec<u8> {
    vec![0; RECV_BUFFER]
}

/// Datagrams received ahead of the caller: enough to keep the kernel busy
/// while the caller works on one, few enough to bound memory.
const IN_FLIGHT: usize = 4;

/// The reading side of [`DumpSocket::dump`]: receive datagrams into free
/// buffers and pass them on until the one that ends the dump (or an
/// error, or the caller hanging up).
fn receive(
    fd: std::os::fd::RawFd,
    seq: u32,
    first: Vec<u8>,
    free: &std::sync::mpsc::Receiver<Vec<u8>>,
    full: &std::sync::mpsc::SyncSender<Result<Datagram, NetlinkError>>,
) {
    let mut next = Some(first);
    loop {
        let mut buf = next
            .take()
            .or_else(|| free.try_recv().ok())
            .filter(|b| b.len() == RECV_BUFFER)
            .unwrap_or_else(receive_buffer);
        let got = match nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_TRUNC) {
            Err(nix::errno::Errno::EINTR) => {
                next = Some(buf);
                continue;
            }
            Err(e) => Err(NetlinkError::Io(e.into())),
            Ok(n) if n > buf.len() => Err(NetlinkError::Truncated(n)),
            Ok(n) => Ok((buf, n)),
        };
        let last = got.as_ref().map_or(true, |(b, n)| ends_dump(&b[..*n], seq));
        if full.send(got).is_err() || last {
            return;
        }
    }
}

/// Whether a datagram ends dump `seq`: it holds its NLMSG_DONE, an error
/// or overrun, or is malformed (the caller reports which).
fn ends_dump(datagram: &[u8], seq: u32) -> bool {
    frames(datagram).any(|f| match f {
        Err(_) => true,
        Ok(f) if f.sequence != seq => false,
        Ok(f) => match f.message_type {
            NLMSG_DONE | NLMSG_OVERRUN => true,
            NLMSG_ERROR => payload_errno(f.payload).map_or(true, |e| e != 0),
            _ => false,
        },
    })
}

/// Hand the messages of one datagram of dump `seq` to `on_msg`. Break when
/// the dump is over: its NLMSG_DONE, or `on_msg` stopping it.
fn answer<E: From<NetlinkError>>(
    datagram: &[u8],
    seq: u32,
    received: &mut Received,
    on_msg: &mut impl FnMut(Frame<'_>) -> Result<ControlFlow<()>, E>,
) -> Result<ControlFlow<()>, E> {
    for frame in frames(datagram) {
        let frame = frame?;
        if frame.sequence != seq {
            continue; // a stale answer to an abandoned earlier dump
        }
        match frame.message_type {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                // Some families (ctnetlink) put an errno in DONE.
                if let Ok(errno) = payload_errno(frame.payload) {
                    if errno != 0 {
                        return Err(NetlinkError::Kernel { errno }.into());
                    }
                }
                return Ok(ControlFlow::Break(()));
            }
            NLMSG_ERROR => {
                let errno = payload_errno(frame.payload)?;
                if errno == 0 {
                    continue;
                }
                return Err(NetlinkError::Kernel { errno }.into());
            }
            NLMSG_OVERRUN => return Err(NetlinkError::Malformed("kernel reported overrun".into()).into()),
            _ => {
                received.messages += 1;
                if on_msg(frame)?.is_break() {
                    // Dropping the socket discards what the kernel still
                    // holds; the caller closes us, so we need not read to
                    // DONE.
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// A netlink socket subscribed to multicast groups: the kernel's event
/// streams (socket destroys, conntrack changes). Events that find its
/// queue full are dropped by the kernel, which then fails the next read
/// once with ENOBUFS: [`MulticastListener::overruns`] counts those (how
/// many events each one cost, the kernel does not say).
pub struct MulticastListener {
    socket: Socket,
    buf: Vec<u8>,
    /// ENOBUFS reads so far.
    pub overruns: u64,
}

/// An event stream's queue in the kernel: a burst (thousands of events a
/// second on a busy host) waits here between reads.
const MULTICAST_QUEUE: usize = 8 << 20;

impl MulticastListener {
    /// Subscribe to `groups` of netlink `protocol` in the calling thread's
    /// network namespace.
    pub fn open(protocol: isize, groups: &[u32]) -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(protocol).map_err(NetlinkError::Open)?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(NetlinkError::Open)?;
        for &g in groups {
            socket.add_membership(g).map_err(NetlinkError::Open)?;
        }
        let _ = socket.set_rx_buf_sz(MULTICAST_QUEUE);
        // As root, past net.core.rmem_max (refused otherwise: the size
        // set just above stays).
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &MULTICAST_QUEUE);
        socket.set_non_blocking(true).map_err(NetlinkError::Open)?;
        Ok(MulticastListener { socket, buf: Vec::with_capacity(RECV_BUFFER), overruns: 0 })
    }

    /// The descriptor, to poll one listener.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }

    /// The descriptor, to poll several listeners at once.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    /// Send one message to the kernel (a subscription request).
    pub fn send(&self, message: &[u8]) -> Result<(), NetlinkError> {
        self.socket.send_to(message, &SocketAddr::new(0, 0), 0).map_err(NetlinkError::Io)?;
        Ok(())
    }

    /// Hand every message waiting to `on_msg`, without waiting for more;
    /// stops early when it breaks.
    pub fn read_waiting(
        &mut self,
        mut on_msg: impl FnMut(Frame<'_>) -> Result<ControlFlow<()>, NetlinkError>,
    ) -> Result<(), NetlinkError> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.overruns += 1;
                    continue;
                }
                Err(e) => return Err(NetlinkError::Io(e)),
            }
            for frame in frames(&self.buf) {
                let frame = frame?;
                // (The connector sends its events as NLMSG_DONE: those pass.)
                if matches!(frame.message_type, NLMSG_NOOP | NLMSG_ERROR | NLMSG_OVERRUN) {
                    continue;
                }
                if on_msg(frame)?.is_break() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_aligned_frames_and_reads_errors() {
        // An NLMSG_ERROR carrying -EPERM, then NLMSG_DONE with errno 0.
        let mut dg = request(NLMSG_ERROR, 0, 7, &(-libc::EPERM).to_ne_bytes());
        dg.extend(request(NLMSG_DONE, 0x2, 7, &0i32.to_ne_bytes()));
        let got: Vec<_> = frames(&dg).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].message_type, NLMSG_ERROR);
        assert_eq!(payload_errno(got[0].payload).unwrap(), libc::EPERM);
        assert_eq!(got[1].message_type, NLMSG_DONE);
        assert_eq!(got[1].sequence, 7);
        assert_eq!(payload_errno(got[1].payload).unwrap(), 0);
    }

    #[test]
    fn the_reader_stops_at_the_datagram_that_ends_its_dump() {
        let msg = |ty: u16, seq: u32, errno: i32| request(ty, 0x2, seq, &(-errno).to_ne_bytes());
        // Answers, then DONE of this dump (seq 5): the end.
        let mut dg = msg(20, 5, 0);
        dg.extend(msg(NLMSG_DONE, 5, 0));
        assert!(ends_dump(&dg, 5));
        // A stale DONE of an abandoned dump (seq 4) does not end seq 5.
        assert!(!ends_dump(&msg(NLMSG_DONE, 4, 0), 5));
        // An acknowledgement (NLMSG_ERROR with errno 0) does not end it; an
        // error does, and so does an overrun or a malformed datagram.
        assert!(!ends_dump(&msg(NLMSG_ERROR, 5, 0), 5));
        assert!(ends_dump(&msg(NLMSG_ERROR, 5, libc::EPERM), 5));
        assert!(ends_dump(&msg(NLMSG_OVERRUN, 5, 0), 5));
        assert!(ends_dump(&dg[..10], 5));
        assert!(!ends_dump(&msg(20, 5, 0), 5));
    }

    #[test]
    fn answers_reach_the_caller_until_done_or_until_it_stops() {
        let mut dg = request(20, 0x2, 5, b"one.");
        dg.extend(request(20, 0x2, 4, b"old.")); // stale: skipped
        dg.extend(request(20, 0x2, 5, b"two."));
        dg.extend(request(NLMSG_DONE, 0x2, 5, &0i32.to_ne_bytes()));
        let mut got = Vec::new();
        let mut received = Received::default();
        let end = answer::<NetlinkError>(&dg, 5, &mut received, &mut |f| {
            got.push(f.payload.to_vec());
            Ok(ControlFlow::Continue(()))
        });
        assert_eq!(end.unwrap(), ControlFlow::Break(()));
        assert_eq!(got, vec![b"one.".to_vec(), b"two.".to_vec()]);
        assert_eq!(received.messages, 2);
        // The caller stopping after the first: the dump is over for it.
        let mut calls = 0;
        let end = answer::<NetlinkError>(&dg, 5, &mut Received::default(), &mut |_| {
            calls += 1;
            Ok(ControlFlow::Break(()))
        });
        assert_eq!((end.unwrap(), calls), (ControlFlow::Break(()), 1));
        // Without DONE yet: continue with the next datagram.
        let part = request(20, 0x2, 5, b"one.");
        let end = answer::<NetlinkError>(&part, 5, &mut Received::default(), &mut |_| Ok(ControlFlow::Continue(())));
        assert_eq!(end.unwrap(), ControlFlow::Continue(()));
        // An error in DONE (ctnetlink) or NLMSG_ERROR is the dump's error.
        let done = request(NLMSG_DONE, 0x2, 5, &(-libc::EPERM).to_ne_bytes());
        let err = answer::<NetlinkError>(&done, 5, &mut Received::default(), &mut |_| Ok(ControlFlow::Continue(())));
        assert!(matches!(err, Err(NetlinkError::Kernel { errno }) if errno == libc::EPERM));
    }

    #[test]
    fn truncated_header_is_an_error_not_a_panic() {
        let dg = request(NLMSG_DONE, 0, 1, &0i32.to_ne_bytes());
        for cut in 1..dg.len() {
            let res: Result<Vec<_>, _> = frames(&dg[..cut]).collect();
            assert!(res.is_err(), "cut at {cut} should fail");
        }
        // A length field larger than the datagram is refused too.
        let mut bad = dg.clone();
        bad[0] = 200;
        assert!(frames(&bad).next().unwrap().is_err());
    }
}
