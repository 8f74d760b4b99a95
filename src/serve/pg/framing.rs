//! Every frontend message checked before pgwire decodes it.
//!
//! pgwire reads a message of up to 1 GiB into memory before anything
//! looks at it, and its decoders trust the lengths inside a message (a
//! Parse that declares 65,535 parameter types and sends none panics a
//! worker). [`Guarded`] sits between the socket and pgwire's codec: it
//! reads the 5-byte header itself, refuses a length past the bound of
//! that message type before reading its body, and hands pgwire a message
//! only once the whole of it is read and its structure is exactly what
//! the protocol says (every count, string and length inside it ends
//! where the message ends). Anything else is a [`Fault`]: the connection
//! is told (an ErrorResponse) and closed.
//!
//! What a client may send also depends on how far it got: before startup
//! only a startup packet or CancelRequest (at most 10,000 bytes, as
//! PostgreSQL); until it has logged in only password messages; after
//! that the query messages, Query, Parse and Bind up to the SQL bound.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::query::statements::MAX_SQL_BYTES;

/// A startup packet, CancelRequest, password or other small message
/// (PostgreSQL's own bound on a startup packet).
pub const MAX_SMALL_MESSAGE: usize = 10_000;
/// Query, Parse and Bind: the SQL bound, plus room for a statement name,
/// parameter types and values.
pub const MAX_QUERY_MESSAGE: usize = MAX_SQL_BYTES + 64 * 1024;
/// CopyData (sockql never starts a COPY; pgwire ignores it outside one).
const MAX_COPY_DATA: usize = 64 * 1024;
/// Bytes read from the socket at once.
const CHUNK: usize = 16 * 1024;

const CANCEL_REQUEST: i32 = 80_877_102;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

/// Why a connection is closed: the SQLSTATE and message it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}

fn malformed(message: impl Into<String>) -> Fault {
    // 08P01: protocol_violation, as PostgreSQL answers a malformed message.
    Fault { code: "08P01", message: message.into() }
}

/// How far the client has got, which decides what it may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the startup packet: no type byte.
    Startup,
    /// Startup sent, not logged in: password messages only.
    Auth,
    /// Logged in: the query protocol.
    Ready,
    /// After a CancelRequest: nothing more is read.
    Done,
}

/// The socket, read one checked message at a time.
pub struct Guarded<S> {
    inner: S,
    phase: Phase,
    /// Bytes read and not yet given to pgwire.
    input: BytesMut,
    /// Of `input`, bytes of a checked message pgwire may have.
    released: usize,
    fault: Option<Fault>,
    eof: bool,
    scratch: Box<[u8; CHUNK]>,
}

impl<S> Guarded<S> {
    /// `read` is what was read from the socket before (TLS negotiation).
    pub fn new(inner: S, read: BytesMut) -> Self {
        Guarded {
            inner,
            phase: Phase::Startup,
            input: read,
            released: 0,
            fault: None,
            eof: false,
            scratch: Box::new([0; CHUNK]),
        }
    }

    /// The client has logged in: query messages from now on.
    pub fn logged_in(&mut self) {
        if self.phase == Phase::Auth {
            self.phase = Phase::Ready;
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The next message in `input`: its length if it is all there and
    /// sound, `None` if more must be read.
    fn next_message(&mut self) -> Result<Option<usize>, Fault> {
        let typed = match self.phase {
            Phase::Startup => false,
            Phase::Auth | Phase::Ready => true,
            Phase::Done => return Ok(None),
        };
        let offset = usize::from(typed);
        let Some(header) = self.input.get(..offset + 4) else { return Ok(None) };
        let kind = if typed { header[0] } else { 0 };
        let declared = i32::from_be_bytes([header[offset], header[offset + 1], header[offset + 2], header[offset + 3]]);
        let max = if typed { max_length(self.phase, kind)? } else { MAX_SMALL_MESSAGE };
        let len = usize::try_from(declared)
            .ok()
            .filter(|l| *l >= 4)
            .ok_or_else(|| malformed(format!("invalid message length {declared}")))?;
        if len > max {
            return Err(too_large(kind, len, max));
        }
        let Some(message) = self.input.get(..offset + len) else { return Ok(None) };
        if typed {
            check_typed(kind, &message[5..])?;
        } else {
            self.phase = check_startup(message)?;
        }
        Ok(Some(offset + len))
    }
}

fn too_large(kind: u8, len: usize, max: usize) -> Fault {
    let what = match kind {
        b'Q' | b'P' => format!("a statement's text is at most {} KiB", MAX_SQL_BYTES / 1024),
        _ => format!("at most {max} bytes"),
    };
    // 54000: program_limit_exceeded, as for SQL past its bounds.
    Fault { code: "54000", message: format!("message of {len} bytes refused unread: {what}") }
}

/// The longest message of this type allowed in this phase.
fn max_length(phase: Phase, kind: u8) -> Result<usize, Fault> {
    match (phase, kind) {
        // Password, SASLInitialResponse, SASLResponse; Terminate.
        (_, b'p' | b'X') => Ok(MAX_SMALL_MESSAGE),
        (Phase::Auth, other) => {
            Err(malformed(format!("expected a password message, got message type {}", printable(other))))
        }
        (_, b'Q' | b'P' | b'B') => Ok(MAX_QUERY_MESSAGE),
        (_, b'd') => Ok(MAX_COPY_DATA),
        (_, b'C' | b'D' | b'E' | b'H' | b'S' | b'c' | b'f') => Ok(MAX_SMALL_MESSAGE),
        (_, other) => Err(malformed(format!("invalid frontend message type {}", printable(other)))),
    }
}

fn printable(kind: u8) -> String {
    if kind.is_ascii_graphic() {
        format!("'{}'", kind as char)
    } else {
        format!("{kind}")
    }
}

/// Reads a message body field by field; every read is bounds-checked.
struct Body<'a> {
    rest: &'a [u8],
    kind: u8,
}

impl<'a> Body<'a> {
    fn short(&self) -> Fault {
        malformed(format!("message type {} is shorter than its contents say", printable(self.kind)))
    }

    fn cstring(&mut self) -> Result<&'a [u8], Fault> {
        let end = self
            .rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| malformed(format!("unterminated string in message type {}", printable(self.kind))))?;
        let (s, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or_default();
        Ok(s)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        if n > self.rest.len() {
            return Err(self.short());
        }
        let (b, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<usize, Fault> {
        let b = self.bytes(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn i32(&mut self) -> Result<i32, Fault> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.bytes(1)?[0])
    }

    /// The message must end here: pgwire's decoders read on into the
    /// next message otherwise.
    fn end(self) -> Result<(), Fault> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!("{} bytes past the end of message type {}", self.rest.len(), printable(self.kind))))
        }
    }
}

/// A typed message's body (after type and length) has exactly the
/// structure pgwire's decoder for it reads.
pub fn check_typed(kind: u8, body: &[u8]) -> Result<(), Fault> {
    let mut b = Body { rest: body, kind };
    match kind {
        // Query, CopyFail: one string.
        b'Q' | b'f' => {
            b.cstring()?;
        }
        // Parse: name, query, parameter types.
        b'P' => {
            b.cstring()?;
            b.cstring()?;
            let n = b.u16()?;
            b.bytes(n * 4)?;
        }
        // Bind: portal, statement, parameter formats, values, result formats.
        b'B' => {
            b.cstring()?;
            b.cstring()?;
            let formats = b.u16()?;
            b.bytes(formats * 2)?;
            let values = b.u16()?;
            // pgwire picks a value's format by its index among the codes.
            if formats > 1 && formats != values {
                return Err(malformed(format!("bind message has {formats} parameter formats but {values} parameters")));
            }
            for _ in 0..values {
                match b.i32()? {
                    -1 => {}
                    n if n >= 0 => {
                        b.bytes(n as usize)?;
                    }
                    n => return Err(malformed(format!("invalid parameter length {n} in bind message"))),
                }
            }
            let results = b.u16()?;
            b.bytes(results * 2)?;
        }
        // Close, Describe: 'S' or 'P', then a name.
        b'C' | b'D' => {
            let target = b.u8()?;
            if target != b'S' && target != b'P' {
                return Err(malformed(format!(
                    "invalid target {} in message type {}",
                    printable(target),
                    printable(kind)
                )));
            }
            b.cstring()?;
        }
        // Execute: portal, row limit.
        b'E' => {
            b.cstring()?;
            b.i32()?;
        }
        // Flush, Sync, CopyDone, Terminate: nothing.
        b'H' | b'S' | b'c' | b'X' => {}
        // CopyData, and the password family, whose structure depends on
        // the authentication exchange (checked where it is known, auth.rs).
        b'd' | b'p' => return Ok(()),
        other => return Err(malformed(format!("invalid frontend message type {}", printable(other)))),
    }
    b.end()
}

/// The first password message of a SCRAM login (SASLInitialResponse):
/// mechanism, then -1 or the length of exactly what follows.
pub fn check_sasl_initial(body: &[u8]) -> Result<(), Fault> {
    let mut b = Body { rest: body, kind: b'p' };
    b.cstring()?;
    match b.i32()? {
        -1 => {}
        n if n >= 0 => {
            b.bytes(n as usize)?;
        }
        n => return Err(malformed(format!("invalid SASL response length {n}"))),
    }
    b.end()
}

/// A startup-phase packet (length, code, body), and the phase it leads to.
pub fn check_startup(packet: &[u8]) -> Result<Phase, Fault> {
    let mut b = Body { rest: packet.get(4..).unwrap_or_default(), kind: 0 };
    let code = b.i32().map_err(|_| malformed("invalid length of startup packet"))?;
    match code {
        // 3.0: a 4-byte key; 3.2: 4 to 256 bytes.
        CANCEL_REQUEST => {
            let pid_and_key = b.rest.len();
            if !(8..=260).contains(&pid_and_key) {
                return Err(malformed(format!("invalid length {} of cancel request", packet.len())));
            }
            Ok(Phase::Done)
        }
        SSL_REQUEST | GSSENC_REQUEST => Err(malformed("encryption cannot be negotiated at this point")),
        code if code >> 16 == 3 => {
            // Name and value pairs, ended by an empty name as the last byte.
            loop {
                let name = b
                    .cstring()
                    .map_err(|_| malformed("invalid startup packet layout: expected terminator as last byte"))?;
                if name.is_empty() {
                    break;
                }
                b.cstring().map_err(|_| malformed("invalid startup packet layout: a parameter has no value"))?;
            }
            b.end().map_err(|_| malformed("invalid startup packet layout: expected terminator as last byte"))?;
            Ok(Phase::Auth)
        }
        code => Err(Fault {
            code: "0A000",
            message: format!(
                "unsupported frontend protocol {}.{}: the server supports 3.0 to 3.2",
                code >> 16,
                code & 0xffff
            ),
        }),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(fault) = &this.fault {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, fault.clone())));
            }
            // A checked message first, as much as pgwire has room for.
            if this.released > 0 {
                let n = this.released.min(buf.remaining());
                buf.put_slice(&this.input[..n]);
                this.input.advance(n);
                this.released -= n;
                return Poll::Ready(Ok(()));
            }
            // One message at a time: the next is checked only when pgwire
            // asks for it, so it is checked in the phase it is read in.
            match this.next_message() {
                Ok(Some(len)) => {
                    this.released = len;
                    continue;
                }
                Ok(None) => {}
                Err(fault) => {
                    this.fault = Some(fault);
                    continue;
                }
            }
            if this.eof || this.phase == Phase::Done {
                // A message cut short by the client's close is dropped.
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.input.extend_from_slice(read.filled());
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The fault behind an error pgwire's codec passed on, if it is ours.
pub fn fault_of(e: &io::Error) -> Option<&Fault> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Fault>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn guarded(phase: Phase, bytes: &[u8]) -> Guarded<tokio::io::Empty> {
        let mut g = Guarded::new(tokio::io::empty(), BytesMut::from(bytes));
        g.phase = phase;
        g
    }

    #[test]
    fn the_parse_that_panicked_pgwire_is_refused() {
        let fault = check_typed(b'P', b"a\0SELECT $1\0\xff\xff").unwrap_err();
        assert_eq!(fault.code, "08P01");
        assert!(check_typed(b'P', b"a\0SELECT $1\0\0\x01\0\0\0\x17").is_ok());
        // Trailing bytes would be read as the next message.
        assert!(check_typed(b'P', b"a\0SELECT 1\0\0\0x").is_err());
        assert!(check_typed(b'Q', b"SELECT 1").is_err(), "no terminator");
        assert!(check_typed(b'Q', b"SELECT 1\0\0").is_err(), "bytes after it");
        assert!(check_typed(b'Q', b"SELECT 1\0").is_ok());
    }

    #[test]
    fn bind_counts_and_lengths_must_fit() {
        let ok = b"\0\0\0\x01\0\0\0\x01\0\0\0\x011\0\0";
        assert!(check_typed(b'B', ok).is_ok());
        assert!(check_typed(b'B', b"\0\0\0\0\0\x01\x7f\xff\xff\xff\0\0").is_err(), "a value longer than the message");
        assert!(check_typed(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0").is_err(), "length -2");
        assert!(
            check_typed(b'B', b"\0\0\0\x02\0\0\0\0\0\x01\xff\xff\xff\xff\0\0").is_err(),
            "two formats for one value"
        );
    }

    #[test]
    fn lengths_are_checked_before_the_body_is_read() {
        // A Query declaring 300 MB: refused from its header alone.
        let mut g = guarded(Phase::Ready, &[b'Q', 0x11, 0xe1, 0xa3, 0x00]);
        assert_eq!(g.next_message().unwrap_err().code, "54000");
        for len in [0i32, 3, -1, i32::MIN] {
            let mut header = vec![b'S'];
            header.extend_from_slice(&len.to_be_bytes());
            assert_eq!(guarded(Phase::Ready, &header).next_message().unwrap_err().code, "08P01", "{len}");
        }
        // Before logging in, only password messages, and small ones.
        assert!(guarded(Phase::Auth, &typed(b'Q', b"SELECT 1\0")).next_message().is_err());
        assert!(guarded(Phase::Auth, &[b'p', 0, 1, 0, 0]).next_message().is_err());
        assert_eq!(guarded(Phase::Auth, &typed(b'p', b"secret\0")).next_message().unwrap(), Some(12));
        // A message not all read yet waits for the rest.
        assert_eq!(guarded(Phase::Ready, &typed(b'Q', b"SELECT 1\0")[..8]).next_message().unwrap(), None);
    }

    #[test]
    fn startup_packets() {
        let mut startup = 196_608i32.to_be_bytes().to_vec();
        startup.extend_from_slice(b"user\0root\0database\0sockql\0\0");
        let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&startup);
        assert_eq!(check_startup(&packet).unwrap(), Phase::Auth);
        let mut unterminated = packet.clone();
        unterminated.pop();
        assert!(check_startup(&unterminated).is_err());
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert!(check_startup(&ssl).is_err());
        let mut cancel = 16i32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        cancel.extend_from_slice(&[0; 8]);
        assert_eq!(check_startup(&cancel).unwrap(), Phase::Done);
        assert_eq!(check_startup(&[0, 0, 0, 8, 0, 2, 0, 0]).unwrap_err().code, "0A000");
    }
}
