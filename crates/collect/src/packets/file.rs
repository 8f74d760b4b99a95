//! Packets from capture files: pcap (either byte order, micro- or
//! nanosecond timestamps) and pcapng (its interfaces' names, timestamp
//! resolutions and direction flags), plain or gzip-compressed, read as a
//! stream: memory stays one packet however large the file, and a pipe is
//! read so that the query can stop it ([`stoppable`](super::stoppable)).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::bytes::{Bytes, Fault};
use super::pcap::PcapReader;
use super::pcapng::PcapNgReader;
use super::stoppable::Stoppable;
use super::Direction;
use crate::notice::Level;
use crate::Error;

// Memory: pcap is parsed in place in one buffer of 1 MB, grown only for a
// packet larger than that and never past 8 MB (a larger one is refused);
// pcapng is read by `pcapng`, within the same bound and keeping a bounded
// number of interfaces, so a hostile file cannot make either allocate more.

/// One packet as the file holds it, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Nanoseconds since the epoch, UTC; None for a time past what 64 bits
    /// of nanoseconds hold (1677 to 2262), which the file can say.
    pub ts_ns: Option<i64>,
    /// The link type (LINKTYPE_*) its bytes start with.
    pub linktype: u32,
    /// pcapng's interface name, when the file names it.
    pub interface: Option<&'a str>,
    /// pcapng's inbound/outbound flag, when the file says.
    pub direction: Option<Direction>,
    /// The packet's length on the wire.
    pub length: u32,
    /// The bytes captured (at most the snap length).
    pub data: &'a [u8],
}

/// What the bytes are read from: the file, and whatever unwraps it.
type Source<'a> = Box<dyn Read + Send + 'a>;

enum Kind<'a> {
    Pcap(PcapReader<Source<'a>>),
    PcapNg(Box<PcapNgReader<Source<'a>>>),
}

/// An open capture file.
pub struct CaptureFile<'a> {
    kind: Kind<'a>,
    name: String,
    /// Packets handed out so far.
    packets: u64,
    /// Whether the file is gzip (offsets count its decompressed bytes).
    gzip: bool,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn bad(name: &str, what: impl std::fmt::Display) -> Error {
    Error::ProcFormat(format!("{name}: {what}"))
}

/// The first bytes of `r` without consuming them.
fn peek<R: BufRead>(r: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    Ok(r.fill_buf()?.iter().take(n).copied().collect())
}

impl<'a> CaptureFile<'a> {
    /// Open `path`, following the operator's path, but only a regular file
    /// or a pipe (not a device someone pointed it at). The format is told
    /// by its first bytes: gzip is unwrapped first. Every read first asks
    /// `stop()`, and a pipe is never waited on for longer than a tenth of
    /// a second between asking: the query's end (--timeout, a LIMIT met)
    /// ends the reading even while a writer holds the pipe open silent.
    pub fn open(path: &Path, stop: &'a (dyn Fn() -> bool + Sync)) -> Result<Self, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = path.display().to_string();
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::Proc(name.as_str().into(), e))?;
        let kind = file.metadata().map_err(|e| Error::Proc(name.as_str().into(), e))?.file_type();
        use std::os::unix::fs::FileTypeExt;
        if !(kind.is_file() || kind.is_fifo()) {
            return Err(bad(&name, "not a regular file or pipe"));
        }
        // O_NONBLOCK kept open() from waiting on a pipe nobody writes yet,
        // and stays: reads wait in poll(2), asking `stop` in between.
        Self::from_reader(&name, Box::new(Stoppable::new(file, stop)))
    }

    /// Read a capture from `reader`. A file cut inside its header (pcap's
    /// 24 bytes; pcapng's first section header and the interface blocks
    /// right after it) is refused, as tshark refuses it.
    pub fn from_reader(name: &str, reader: Source<'a>) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Proc(name.into(), e);
        let mut r = BufReader::with_capacity(1 << 16, reader);
        let gzip = peek(&mut r, 2).map_err(io)? == GZIP_MAGIC;
        let reader: Source<'a> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(r)) } else { Box::new(r) };
        let mut b = Bytes::new(reader);
        b.want(4).map_err(io)?;
        let magic = b.available().get(..4).and_then(|m| <[u8; 4]>::try_from(m).ok());
        let opened = match magic {
            Some(m) if super::pcap::magic(m).is_some() => PcapReader::new(b, name).map(Kind::Pcap),
            Some(PCAPNG_MAGIC) => PcapNgReader::new(b, name).map(|r| Kind::PcapNg(Box::new(r))),
            _ if b.available().is_empty() && !gzip => {
                return Err(bad(name, "an empty file, not a pcap or pcapng file"))
            }
            _ => return Err(bad(name, "not a pcap or pcapng file (nor gzip of one)")),
        };
        let file = |kind| CaptureFile { kind, name: name.to_string(), packets: 0, gzip };
        opened.map(file).map_err(|f| refusal(name, gzip, f))
    }

    /// Hand the next packet to `f`; `None` at the end of the file, or at a
    /// cut after which nothing more can be read (warned about once).
    pub fn next<T>(&mut self, f: impl FnOnce(&RawPacket<'_>) -> T) -> Option<Result<T, Error>> {
        let mut odd = Odd::No;
        let got = match &mut self.kind {
            Kind::Pcap(r) => {
                let (nanos, linktype) = (r.header.nanos, r.header.linktype);
                r.next_packet()?.map(|p| {
                    if !p.fraction_in_range(nanos) {
                        odd = Odd::Fraction { frac: p.ts_frac, nanos, offset: p.offset };
                    }
                    f(&RawPacket {
                        ts_ns: Some(p.ts_ns(nanos)),
                        linktype,
                        interface: None,
                        direction: None,
                        // A record claiming less than it holds is taken
                        // at what it holds.
                        length: p.original_len.max(p.data.len() as u32),
                        data: p.data,
                    })
                })
            }
            Kind::PcapNg(r) => r.next_packet()?.map(|p| {
                if p.ts_ns.is_none() {
                    odd = Odd::Unheld;
                }
                f(&RawPacket {
                    ts_ns: p.ts_ns,
                    linktype: p.interface.linktype,
                    interface: p.interface.name.as_deref(),
                    direction: p.direction,
                    length: p.original_len,
                    data: p.data,
                })
            }),
        };
        match got {
            Ok(t) => {
                self.packets += 1;
                self.warn_time(odd);
                Some(Ok(t))
            }
            Err(Fault::Cut { at, started, what, header: false }) => {
                say_once(
                    Level::Warning,
                    &self.name,
                    "cut",
                    format_args!(
                        "the file appears to have been cut short {}, inside {what} that starts at byte {started}: the {} complete packets before it were read",
                        at_byte(self.gzip, at),
                        self.packets
                    ),
                );
                None
            }
            Err(f) => Some(Err(refusal(&self.name, self.gzip, f))),
        }
    }

    /// Say once per file that a packet's time was odd (see [`Odd`]).
    fn warn_time(&self, odd: Odd) {
        let n = self.packets;
        let (key, what) = match odd {
            Odd::No => return,
            Odd::Unheld => (
                "pcap-time-range",
                format!("packet {n} has a time outside what a timestamp holds (the years 1677 to 2262): its ts is NULL, as is that of any other such packet"),
            ),
            Odd::Fraction { frac, nanos, offset } => (
                "pcap-fraction",
                format!(
                    "packet {n} ({}) has a fraction of a second of {frac} {}, not under one second: its ts carries the excess into the seconds, as for any other such packet (tshark prints the fraction as it is)",
                    at_byte(self.gzip, offset),
                    if nanos { "nanoseconds" } else { "microseconds" },
                ),
            ),
        };
        say_once(Level::Warning, &self.name, key, format_args!("{what}; said once per file"));
    }
}

/// Say `message` about the capture file `name` once in the statement (one
/// key per file and `what`), prefixed with the file's name: for what a
/// file holds as a whole, said once rather than per packet. (The notice
/// escapes control characters, the file's name's included.)
pub fn say_once(level: Level, name: &str, what: &str, message: impl std::fmt::Display) {
    let key = format!("read_pcap:{what}:{name}");
    let message = format!("{name}: {message}");
    match level {
        Level::Warning => crate::notice::warn_once(&key, message),
        Level::Note => crate::notice::note_once(&key, message),
    }
}

/// A packet whose time the `ts` column cannot show as the file says it.
#[derive(Debug, Clone, Copy)]
enum Odd {
    No,
    /// Outside what an i64 of nanoseconds holds (pcapng: a 64-bit count in
    /// fine units, or a large if_tsoffset): NULL.
    Unheld,
    /// A pcap fraction of a second of one second or more: carried.
    Fraction {
        frac: u32,
        nanos: bool,
        offset: u64,
    },
}

/// `at byte N`, of the decompressed data for a gzip file.
fn at_byte(gzip: bool, offset: u64) -> String {
    if gzip {
        format!("at byte {offset} of the decompressed data")
    } else {
        format!("at byte {offset}")
    }
}

/// A fault that ends the file with an error: a refusal, or a file cut in
/// its header (tshark refuses those too).
fn refusal(name: &str, gzip: bool, f: Fault) -> Error {
    match f {
        Fault::Failed(e) => e,
        Fault::Cut { at, started, what, .. } => bad(
            name,
            format!("{}: cut short inside {what} that starts at byte {started}, before any packet", at_byte(gzip, at)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP connection on lo (handshake, 500 bytes, 1 byte back, RST)
    /// written by tcpdump -w, and the same packets as pcapng (editcap).
    const PCAP: &[u8] = include_bytes!("../../../../tests/fixtures/handshake.pcap");
    const PCAPNG: &[u8] = include_bytes!("../../../../tests/fixtures/handshake.pcapng");

    fn all(bytes: &'static [u8]) -> Vec<(i64, u32, u32, usize, Option<String>)> {
        let mut f = CaptureFile::from_reader("fixture", Box::new(bytes)).unwrap();
        let mut out = Vec::new();
        while let Some(r) =
            f.next(|p| (p.ts_ns.unwrap(), p.linktype, p.length, p.data.len(), p.interface.map(str::to_string)))
        {
            out.push(r.unwrap());
        }
        out
    }

    #[test]
    fn pcap_and_pcapng_read_the_same_packets() {
        let pcap = all(PCAP);
        assert_eq!(pcap.len(), 8);
        assert!(pcap.iter().all(|p| p.1 == crate::packets::decode::LINKTYPE_ETHERNET));
        assert!(pcap.windows(2).all(|w| w[0].0 <= w[1].0), "times in order");
        assert_eq!(pcap[0].0 % 1000, 0, "microsecond file: whole microseconds");
        let ng = all(PCAPNG);
        let strip = |v: Vec<(i64, u32, u32, usize, Option<String>)>| {
            v.into_iter().map(|p| (p.0, p.1, p.2, p.3)).collect::<Vec<_>>()
        };
        assert_eq!(strip(ng), strip(pcap));
    }

    #[test]
    fn gzip_and_garbage() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(PCAP).unwrap();
        let gz: &'static [u8] = Box::leak(gz.finish().unwrap().into_boxed_slice());
        assert_eq!(all(gz), all(PCAP));
        let err = CaptureFile::from_reader("x", Box::new(&b"hello, not a capture"[..])).err().unwrap().to_string();
        assert_eq!(err, "x: not a pcap or pcapng file (nor gzip of one)");
        // A capture cut in the middle of a packet ends after the whole
        // packets before it (and a warning).
        let mut f = CaptureFile::from_reader("cut", Box::new(&PCAP[..PCAP.len() - 10])).unwrap();
        let mut n = 0;
        let last = loop {
            match f.next(|_| ()) {
                Some(Ok(())) => n += 1,
                other => break other,
            }
        };
        assert_eq!(n, 7);
        assert!(last.is_none(), "{last:?}");
    }
}
