//! The bytes of a capture file, read in large chunks into one buffer that
//! a reader parses in place (no copy, no allocation per packet), counting
//! where in the file each byte lies: a file cut short, or refused, is
//! reported at the byte offset where it happened.

use std::io::{ErrorKind, Read};

use crate::Error;

/// How much is asked of the source at a time.
const CHUNK: usize = 1 << 20;

/// Why reading a capture file ended before its end.
#[derive(Debug)]
pub enum Fault {
    /// The file ends at byte `at`, inside `what`, which began at byte
    /// `started` (a packet cut short: tcpdump killed while writing, a
    /// truncated download, a cut gzip stream).
    /// `header`: the cut is in the file's header (refused, as tshark does).
    Cut { at: u64, started: u64, what: &'static str, header: bool },
    /// Anything else: a refusal (its text names the offset) or a read error.
    Failed(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Failed(e)
    }
}

/// A source read through one growing (but bounded by its callers) buffer.
pub struct Bytes<R> {
    r: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The file offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// The source said it was cut short (a gzip stream without its end):
    /// even a file that ends between two packets was cut.
    cut: bool,
}

impl<R: Read> Bytes<R> {
    pub fn new(r: R) -> Self {
        Bytes { r, buf: Vec::new(), start: 0, end: 0, base: 0, eof: false, cut: false }
    }

    /// Offset in the file of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Whether the source ended cut short (see [`Bytes::want`]).
    pub fn source_cut(&self) -> bool {
        self.cut
    }

    /// The bytes read but not consumed.
    pub fn available(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Consume `n` bytes of [`Bytes::available`] (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Consume `n` bytes of [`Bytes::available`] and hand them out.
    pub fn take_bytes(&mut self, n: usize) -> &[u8] {
        let from = self.start;
        self.consume(n);
        self.buf.get(from..self.start).unwrap_or_default()
    }

    /// Make `n` bytes available: false if the file ends first (what it
    /// holds is still [`Bytes::available`]). The caller bounds `n`.
    pub fn want(&mut self, n: usize) -> std::io::Result<bool> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.start < n {
            // Move what is left to the front, growing the buffer only for
            // a record larger than a chunk.
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < n {
                self.buf.resize(n.max(CHUNK), 0);
            }
        }
        while self.end - self.start < n {
            let Some(room) = self.buf.get_mut(self.end..) else { break };
            match self.r.read(room) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(got) => self.end += got,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A gzip stream cut short ends so: the file is cut there.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    self.cut = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Bytes read as a stream, for readers that copy out of it.
impl<R: Read> Read for Bytes<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.start == self.end && !self.want(1)? {
            return Ok(0);
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out at most 3 bytes a read, then fails as a
    /// cut gzip stream does.
    struct Dribble(Vec<u8>, usize);
    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let rest = &self.0[self.1..];
            if rest.is_empty() {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let n = rest.len().min(3).min(out.len());
            out[..n].copy_from_slice(&rest[..n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn offsets_count_consumed_bytes_and_a_cut_source_ends() {
        let mut b = Bytes::new(Dribble((0..20).collect(), 0));
        assert!(b.want(5).unwrap());
        assert_eq!(&b.available()[..5], &[0, 1, 2, 3, 4]);
        b.consume(5);
        assert_eq!(b.offset(), 5);
        let mut x = [0u8; 4];
        b.read_exact(&mut x).unwrap();
        assert_eq!((x, b.offset()), ([5, 6, 7, 8], 9));
        assert!(!b.source_cut());
        assert!(!b.want(100).unwrap());
        assert!(b.source_cut());
        assert_eq!(b.available().len(), 11);
        b.consume(1000);
        assert_eq!(b.offset(), 20);
        assert_eq!(b.read(&mut x).unwrap(), 0);
    }
}
