//! Packets from capture files: pcap (either byte order, micro- or
//! nanosecond timestamps) and pcapng (its interfaces' names, timestamp
//! resolutions and direction flags), plain or gzip-compressed, read as a
//! stream: memory stays one packet however large the file, and a pipe is
//! read so that the query can stop it ([`stoppable`](super::stoppable)).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use pcap_file::pcap::PcapReader;

use super::pcapng::PcapNgReader;
use super::stoppable::Stoppable;
use super::Direction;
use crate::collect::Error;

// Memory: pcap-file reads pcap through one 8 MB buffer and refuses a
// packet larger than that; pcapng is read by `pcapng`, within the same
// bound and keeping a bounded number of interfaces, so a hostile file
// cannot make either allocate more.

/// One packet as the file holds it, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Nanoseconds since the epoch, UTC.
    pub ts_ns: i64,
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
    /// The reader, the link type from the file header, and whether its
    /// timestamps count nanoseconds (else microseconds).
    Pcap(PcapReader<Source<'a>>, u32, bool),
    PcapNg(Box<PcapNgReader<Source<'a>>>),
}

/// An open capture file.
pub struct CaptureFile<'a> {
    kind: Kind<'a>,
    name: String,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [[0xa1, 0xb2, 0xc3, 0xd4], [0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d], [0x4d, 0x3c, 0xb2, 0xa1]];
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

    pub fn from_reader(name: &str, reader: Source<'a>) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Proc(name.into(), e);
        let mut r = BufReader::with_capacity(1 << 16, reader);
        let mut reader: Source<'a> = if peek(&mut r, 2).map_err(io)? == GZIP_MAGIC {
            Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(r)))
        } else {
            Box::new(r)
        };
        let mut head = vec![0u8; 4];
        reader.read_exact(&mut head).map_err(|_| bad(name, "too short to be a pcap or pcapng file"))?;
        let magic: [u8; 4] = head[..4].try_into().expect("4 bytes");
        let mut linktype = 0;
        if PCAP_MAGICS.contains(&magic) {
            // The 24-byte file header ends with the link type, in the byte
            // order the magic shows (pcap-file 2 does not hand it out).
            head.resize(24, 0);
            reader.read_exact(&mut head[4..]).map_err(|_| bad(name, "pcap file header cut short"))?;
            let lt: [u8; 4] = head[20..24].try_into().expect("4 bytes");
            linktype = if magic[0] == 0xa1 { u32::from_be_bytes(lt) } else { u32::from_le_bytes(lt) } & 0x0fff_ffff;
        }
        // What was read to tell the format goes back in front.
        let reader: Source<'a> = Box::new(std::io::Cursor::new(head).chain(reader));
        let kind = if PCAP_MAGICS.contains(&magic) {
            let nanos = magic == [0xa1, 0xb2, 0x3c, 0x4d] || magic == [0x4d, 0x3c, 0xb2, 0xa1];
            Kind::Pcap(PcapReader::new(reader).map_err(|e| bad(name, e))?, linktype, nanos)
        } else if magic == PCAPNG_MAGIC {
            Kind::PcapNg(Box::new(PcapNgReader::new(reader, name)?))
        } else {
            return Err(bad(name, "not a pcap or pcapng file (nor gzip of one)"));
        };
        Ok(CaptureFile { kind, name: name.to_string() })
    }

    /// Hand the next packet to `f`; `None` at the end of the file.
    pub fn next<T>(&mut self, f: impl FnOnce(&RawPacket<'_>) -> T) -> Option<Result<T, Error>> {
        match &mut self.kind {
            Kind::Pcap(r, linktype, nanos) => {
                // Raw records: pcap-file's checked ones refuse a packet
                // longer than the snap length, which is what a snap length
                // is for (tcpdump -s 96 of full-size packets).
                let p = match r.next_raw_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(bad(&self.name, e))),
                };
                let frac_ns = if *nanos { p.ts_frac as i64 } else { p.ts_frac as i64 * 1000 };
                let raw = RawPacket {
                    ts_ns: (p.ts_sec as i64) * 1_000_000_000 + frac_ns,
                    linktype: *linktype,
                    interface: None,
                    direction: None,
                    length: p.orig_len.max(p.data.len() as u32),
                    data: &p.data,
                };
                Some(Ok(f(&raw)))
            }
            Kind::PcapNg(r) => {
                let p = match r.next_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e)),
                };
                let raw = RawPacket {
                    ts_ns: p.ts_ns,
                    linktype: p.interface.linktype,
                    interface: p.interface.name.as_deref(),
                    direction: p.direction,
                    length: p.original_len,
                    data: p.data,
                };
                Some(Ok(f(&raw)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP connection on lo (handshake, 500 bytes, 1 byte back, RST)
    /// written by tcpdump -w, and the same packets as pcapng (editcap).
    const PCAP: &[u8] = include_bytes!("../../../tests/fixtures/handshake.pcap");
    const PCAPNG: &[u8] = include_bytes!("../../../tests/fixtures/handshake.pcapng");

    fn all(bytes: &'static [u8]) -> Vec<(i64, u32, u32, usize, Option<String>)> {
        let mut f = CaptureFile::from_reader("fixture", Box::new(bytes)).unwrap();
        let mut out = Vec::new();
        while let Some(r) = f.next(|p| (p.ts_ns, p.linktype, p.length, p.data.len(), p.interface.map(str::to_string))) {
            out.push(r.unwrap());
        }
        out
    }

    #[test]
    fn pcap_and_pcapng_read_the_same_packets() {
        let pcap = all(PCAP);
        assert_eq!(pcap.len(), 8);
        assert!(pcap.iter().all(|p| p.1 == crate::collect::packets::decode::LINKTYPE_ETHERNET));
        assert!(pcap.windows(2).all(|w| w[0].0 <= w[1].0), "times in order");
        assert_eq!(pcap[0].0 % 1000, 0, "microsecond file: whole microseconds");
        let ng = all(PCAPNG);
        let strip = |v: Vec<(i64, u32, u32, usize, Option<String>)>| v.into_iter().map(|p| (p.0, p.1, p.2, p.3)).collect::<Vec<_>>();
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
        // A capture cut in the middle of a packet ends with an error, after
        // the whole packets before it.
        let mut f = CaptureFile::from_reader("cut", Box::new(&PCAP[..PCAP.len() - 10])).unwrap();
        let mut n = 0;
        let last = loop {
            match f.next(|_| ()) {
                Some(Ok(())) => n += 1,
                other => break other,
            }
        };
        assert_eq!(n, 7);
        assert!(matches!(last, Some(Err(_))), "{last:?}");
    }
}
