//! pcapng read block by block within fixed bounds, whatever the file
//! claims. pcap-file's reader keeps every interface description block it
//! meets, options and all, for the life of the file, and turns each
//! option into an allocation: 3,000 gzip members of one 1.1 MB block each
//! (3.5 MB on disk) took it past 3 GB. Here:
//!
//! - a packet block (enhanced or simple) is read into one buffer that
//!   never grows past [`MAX_BLOCK`] (8 MB, pcap-file's own buffer); a
//!   larger one is refused;
//! - an interface block is read as a stream, keeping only what rows need
//!   (link type, snap length, timestamp unit, the name cut to
//!   [`MAX_NAME`] bytes); at most [`MAX_INTERFACES`] per section are kept,
//!   and the packets of the ones beyond are skipped and counted;
//! - every other block (section header options, name resolution,
//!   statistics, custom, unknown: of any length, 4 GB included) is read
//!   past without being kept.
//!
//! Layouts: draft-ietf-opsawg-pcapng (sections 4.1 to 4.4).

use std::io::Read;

use super::bytes::{Bytes, Fault};
use super::Direction;
use crate::Error;

/// The largest packet block read, header and trailer included.
pub const MAX_BLOCK: usize = 8_000_000;
/// Interfaces kept per section: more than any capture host has.
pub const MAX_INTERFACES: usize = 4096;
/// Bytes of an interface name kept (a real one is tens of bytes).
pub const MAX_NAME: usize = 256;

const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 1;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Interface block options sockql reads.
const OPT_END: u16 = 0;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
/// Seconds added to every timestamp of the interface (signed).
const IF_TSOFFSET: u16 = 14;
/// epb_flags: the packet's direction in its low two bits.
const EPB_FLAGS: u16 = 2;

/// What packets need from their interface's description block.
#[derive(Debug, Clone)]
pub struct Interface {
    pub linktype: u32,
    /// 0: no limit.
    pub snaplen: u32,
    /// Timestamp units per second: 10^n or 2^n (n < 128), None for a
    /// unit finer than 10^-38 s, in which any 64-bit count is under 1 ns.
    pub units_per_sec: Option<u128>,
    /// if_tsoffset: seconds added to every timestamp.
    pub offset_secs: i64,
    /// At most [`MAX_NAME`] bytes, cut at the first NUL; the description
    /// where the block has no name (tshark's frame.interface_name).
    pub name: Option<String>,
}

impl Interface {
    /// A packet's time from its count of this interface's units: None
    /// past what an i64 of nanoseconds holds.
    pub fn time_ns(&self, units: u64) -> Option<i64> {
        let count = self.units_per_sec.map_or(0, |per| units as u128 * 1_000_000_000 / per.max(1));
        // Under 2^64 * 10^9: fits an i128.
        i64::try_from(count as i128 + self.offset_secs as i128 * 1_000_000_000).ok()
    }
}

/// One packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Packet<'a> {
    pub interface: &'a Interface,
    /// Nanoseconds since the epoch (0 for a simple packet block, which
    /// has no timestamp); None for a time a 64-bit count of nanoseconds
    /// cannot hold (past the year 2262: tshark shows it, e.g. the year
    /// 2554 of an all-ones count of nanoseconds).
    pub ts_ns: Option<i64>,
    pub direction: Option<Direction>,
    pub original_len: u32,
    pub data: &'a [u8],
}

/// A pcapng file read as a stream.
pub struct PcapNgReader<R> {
    r: Bytes<R>,
    name: String,
    /// Where the block being read starts.
    block_at: u64,
    /// Still in the blocks that open the file (its first section header
    /// and the interface blocks right after it): a file cut there is
    /// refused, as tshark refuses it.
    opening: bool,
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Interface blocks of this section beyond [`MAX_INTERFACES`].
    interfaces_dropped: u64,
    /// Over the whole file: interface blocks not kept, packets skipped for it.
    pub dropped_total: u64,
    pub skipped_packets: u64,
    /// The one buffer a packet block is read into.
    buf: Vec<u8>,
}

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl<R: Read> PcapNgReader<R> {
    /// Start reading `r`, whose first block must be a section header.
    pub fn new(r: Bytes<R>, name: &str) -> Result<Self, Fault> {
        let mut reader = PcapNgReader {
            r,
            name: name.to_string(),
            block_at: 0,
            opening: true,
            big_endian: false,
            interfaces: Vec::new(),
            interfaces_dropped: 0,
            dropped_total: 0,
            skipped_packets: 0,
            buf: Vec::new(),
        };
        let head = reader.header()?.ok_or_else(|| reader.bad("empty pcapng file"))?;
        if head.0 != SECTION_HEADER {
            return Err(reader.bad("pcapng file without a section header"));
        }
        reader.section(head.1)?;
        Ok(reader)
    }

    /// A refusal, at the block being read.
    fn bad(&self, what: impl std::fmt::Display) -> Fault {
        Fault::Failed(Error::ProcFormat(format!("{}: at byte {}: {what}", self.name, self.block_at)))
    }

    /// The file ends inside the block being read.
    fn cut_short(&self) -> Fault {
        let header = self.opening;
        Fault::Cut {
            at: self.r.offset(),
            started: self.block_at,
            what: if header { "the pcapng file header" } else { "a block" },
            header,
        }
    }

    fn u32_of(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u16_of(&self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn io(&self, e: std::io::Error) -> Fault {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.cut_short()
        } else {
            Fault::Failed(Error::Proc(self.name.as_str().into(), e))
        }
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.io(e))?;
        Ok(b)
    }

    /// Read past `n` bytes without keeping them.
    fn skip(&mut self, n: u64) -> Result<(), Fault> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink()).map_err(|e| self.io(e))?;
        if copied < n {
            return Err(self.cut_short());
        }
        Ok(())
    }

    /// The next block's type and raw length field; None at the end of the
    /// file (between blocks).
    fn header(&mut self) -> Result<Option<(u32, [u8; 4])>, Fault> {
        self.block_at = self.r.offset();
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            match self.r.read(&mut head[got..]) {
                // The end, unless a gzip stream was cut there.
                Ok(0) if got == 0 && !self.r.source_cut() => return Ok(None),
                Ok(0) => return Err(self.cut_short()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        let kind = [head[0], head[1], head[2], head[3]];
        // The section header's type reads the same in both byte orders.
        Ok(Some((self.u32_of(kind), [head[4], head[5], head[6], head[7]])))
    }

    /// A block's body length from its length field, checked.
    fn body_len(&self, len: u32) -> Result<u64, Fault> {
        if !len.is_multiple_of(4) || len < 12 {
            return Err(self.bad(format!("pcapng block length {len} is not a multiple of 4 of at least 12")));
        }
        Ok(len as u64 - 12)
    }

    /// The trailing length field must repeat the leading one.
    fn trailer(&mut self, len: u32) -> Result<(), Fault> {
        let t = self.read_array::<4>()?;
        if self.u32_of(t) != len {
            return Err(self.bad("pcapng block lengths differ (a corrupt or cut file)"));
        }
        Ok(())
    }

    /// A section header (its type already read): the byte order of the
    /// section, and its version, which must be 1.0 (or 1.2, which tshark
    /// and tcpdump read too); its options are read past. The section's
    /// interfaces end.
    fn section(&mut self, raw_len: [u8; 4]) -> Result<(), Fault> {
        let magic = self.read_array::<4>()?;
        self.big_endian = match u32::from_be_bytes(magic) {
            BYTE_ORDER_MAGIC => true,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => false,
            _ => return Err(self.bad("pcapng section header with a bad byte-order magic")),
        };
        let len = self.u32_of(raw_len);
        let body = self.body_len(len)?;
        if body < 16 {
            return Err(self.bad("pcapng section header too short"));
        }
        let version = self.read_array::<4>()?;
        let (major, minor) = (self.u16_of([version[0], version[1]]), self.u16_of([version[2], version[3]]));
        if !(major == 1 && (minor == 0 || minor == 2)) {
            return Err(Fault::Failed(Error::ProcFormat(format!(
                "{}: at byte {}: section header version {major}.{minor} is not supported (1.0 is)",
                self.name,
                self.block_at + 12
            ))));
        }
        self.skip(body - 8)?;
        self.trailer(len)?;
        self.interfaces.clear();
        self.interfaces_dropped = 0;
        Ok(())
    }

    /// An interface description block, read as a stream: only what rows
    /// need is kept, however many options it carries.
    fn interface(&mut self, len: u32) -> Result<(), Fault> {
        let body = self.body_len(len)?;
        if body < 8 {
            return Err(self.bad("pcapng interface block too short"));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            self.interfaces_dropped += 1;
            self.dropped_total += 1;
            self.skip(body)?;
            return self.trailer(len);
        }
        let fixed = self.read_array::<8>()?;
        let linktype = self.u16_of([fixed[0], fixed[1]]) as u32;
        let snaplen = self.u32_of([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let mut iface = Interface { linktype, snaplen, units_per_sec: Some(1_000_000), offset_secs: 0, name: None };
        let mut description = None;
        let mut left = body - 8;
        while left >= 4 {
            let h = self.read_array::<4>()?;
            left -= 4;
            let (code, olen) = (self.u16_of([h[0], h[1]]), self.u16_of([h[2], h[3]]) as usize);
            let padded = round4(olen) as u64;
            if code == OPT_END {
                break;
            }
            if padded > left {
                return Err(self.bad("pcapng option runs past its block"));
            }
            left -= padded;
            match code {
                IF_NAME => iface.name = Some(self.text(olen, padded)?),
                IF_DESCRIPTION => description = Some(self.text(olen, padded)?),
                // 10^-n seconds, or 2^-n with the high bit. tshark reads
                // every n (tcpdump refuses units finer than 64 bits count);
                // here every n gives the exact time.
                IF_TSRESOL if olen >= 1 => {
                    let res = self.read_array::<1>()?[0];
                    self.skip(padded - 1)?;
                    let exp = (res & 0x7f) as u32;
                    iface.units_per_sec =
                        if res & 0x80 != 0 { 1u128.checked_shl(exp) } else { 10u128.checked_pow(exp) };
                }
                IF_TSOFFSET if olen == 8 => {
                    let b = self.read_array::<8>()?;
                    iface.offset_secs = if self.big_endian { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) };
                }
                _ => self.skip(padded)?,
            }
        }
        self.skip(left)?;
        self.trailer(len)?;
        iface.name = iface.name.or(description);
        self.interfaces.push(iface);
        Ok(())
    }

    /// A text option's value: at most [`MAX_NAME`] bytes, cut at the first
    /// NUL (a writer's padding or C string end: tshark stops there too).
    fn text(&mut self, olen: usize, padded: u64) -> Result<String, Fault> {
        let keep = olen.min(MAX_NAME);
        let mut text = vec![0u8; keep];
        self.r.read_exact(&mut text).map_err(|e| self.io(e))?;
        self.skip(padded - keep as u64)?;
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        Ok(String::from_utf8_lossy(&text[..end]).into_owned())
    }

    /// Read a packet block's body and trailer into the buffer.
    fn fill(&mut self, len: u32) -> Result<usize, Fault> {
        let body = self.body_len(len)?;
        if len as usize > MAX_BLOCK {
            return Err(
                self.bad(format!("a pcapng block of {len} bytes is larger than the {MAX_BLOCK} bytes sockql reads"))
            );
        }
        let body = body as usize;
        self.buf.resize(body + 4, 0);
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.r.read_exact(&mut buf);
        self.buf = buf;
        read.map_err(|e| self.io(e))?;
        let t =
            self.buf.get(body..body + 4).and_then(|t| <[u8; 4]>::try_from(t).ok()).ok_or_else(|| self.cut_short())?;
        if self.u32_of(t) != len {
            return Err(self.bad("pcapng block lengths differ (a corrupt or cut file)"));
        }
        Ok(body)
    }

    /// The interface a packet names: Ok(None) for one beyond the kept
    /// ones (the packet is skipped), an error for one never described.
    fn interface_of(&mut self, id: u32) -> Result<Option<usize>, Fault> {
        let id = id as usize;
        if id < self.interfaces.len() {
            return Ok(Some(id));
        }
        if ((id - self.interfaces.len()) as u64) < self.interfaces_dropped {
            self.skipped_packets += 1;
            return Ok(None);
        }
        Err(self.bad(format!("packet of interface {id} that no block described")))
    }

    /// The next packet; None at the end of the file.
    pub fn next_packet(&mut self) -> Option<Result<Packet<'_>, Fault>> {
        loop {
            let (kind, raw_len) = match self.header() {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.note_dropped();
                    return None;
                }
                Err(e) => return Some(Err(e)),
            };
            let len = self.u32_of(raw_len);
            // The file's opening blocks end at its first other block.
            self.opening &= kind == INTERFACE_DESCRIPTION || (kind == SECTION_HEADER && self.block_at == 0);
            let step = match kind {
                SECTION_HEADER => self.section(raw_len).map(|()| None),
                INTERFACE_DESCRIPTION => self.interface(len).map(|()| None),
                ENHANCED_PACKET => self.enhanced(len),
                SIMPLE_PACKET => self.simple(len),
                _ => self.body_len(len).and_then(|b| self.skip(b)).and_then(|()| self.trailer(len)).map(|()| None),
            };
            match step {
                Err(e) => return Some(Err(e)),
                Ok(None) => continue,
                Ok(Some(p)) => return Some(self.packet(p)),
            }
        }
    }

    /// An enhanced packet block: where its packet lies in the buffer.
    fn enhanced(&mut self, len: u32) -> Result<Option<Found>, Fault> {
        let body = self.fill(len)?;
        let field = |b: &[u8], at: usize| b.get(at..at + 4).and_then(|v| <[u8; 4]>::try_from(v).ok());
        let b = &self.buf[..body];
        let (Some(id), Some(hi), Some(lo), Some(cap), Some(orig)) =
            (field(b, 0), field(b, 4), field(b, 8), field(b, 12), field(b, 16))
        else {
            return Err(self.bad("pcapng packet block too short"));
        };
        let (id, hi, lo, cap, orig) =
            (self.u32_of(id), self.u32_of(hi), self.u32_of(lo), self.u32_of(cap) as usize, self.u32_of(orig));
        if 20 + round4(cap) > body {
            return Err(self.bad("pcapng packet longer than its block"));
        }
        let mut flags = None;
        let mut at = 20 + round4(cap);
        while let Some(h) = self.buf[..body].get(at..at + 4) {
            let (code, olen) = (self.u16_of([h[0], h[1]]), self.u16_of([h[2], h[3]]) as usize);
            if code == OPT_END {
                break;
            }
            if code == EPB_FLAGS && olen == 4 {
                flags = field(&self.buf[..body], at + 4).map(|f| self.u32_of(f));
            }
            at += 4 + round4(olen);
        }
        let Some(iface) = self.interface_of(id)? else {
            return Ok(None);
        };
        // The raw count is in the interface's units, from its offset.
        let units = ((hi as u64) << 32) | lo as u64;
        let ts_ns = self.interfaces.get(iface).and_then(|i| i.time_ns(units));
        Ok(Some(Found { iface, ts_ns, flags, original_len: orig, data: 20..20 + cap }))
    }

    /// A simple packet block: the first interface's, without a timestamp;
    /// it holds min(original length, snap length) bytes.
    fn simple(&mut self, len: u32) -> Result<Option<Found>, Fault> {
        let body = self.fill(len)?;
        let orig = self
            .buf
            .get(0..4)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .ok_or_else(|| self.bad("pcapng simple packet block too short"))?;
        let orig = self.u32_of(orig);
        let Some(iface) = self.interface_of(0).map_err(|_| self.bad("simple packet before any interface"))? else {
            return Ok(None);
        };
        let snap = match self.interfaces.get(iface).map(|i| i.snaplen) {
            Some(0) | None => u32::MAX,
            Some(s) => s,
        };
        let cap = (orig.min(snap) as usize).min(body - 4);
        Ok(Some(Found { iface, ts_ns: Some(0), flags: None, original_len: orig, data: 4..4 + cap }))
    }

    fn packet(&self, f: Found) -> Result<Packet<'_>, Fault> {
        let (Some(interface), Some(data)) = (self.interfaces.get(f.iface), self.buf.get(f.data)) else {
            return Err(self.bad("pcapng packet outside its block"));
        };
        let direction = f.flags.and_then(|flags| match flags & 0b11 {
            1 => Some(Direction::In),
            2 => Some(Direction::Out),
            _ => None,
        });
        Ok(Packet { interface, ts_ns: f.ts_ns, direction, original_len: f.original_len, data })
    }

    /// Say once, at the end, what the interface cap left out.
    fn note_dropped(&self) {
        if self.dropped_total > 0 {
            crate::notice::note_once(
                "pcapng-interfaces-cap",
                format!(
                    "{}: {} interface blocks beyond the first {MAX_INTERFACES} of a section were not kept, and the {} packets of those interfaces skipped",
                    crate::notice::escape_controls(&self.name),
                    self.dropped_total,
                    self.skipped_packets
                ),
            );
        }
    }
}

/// Where a packet block's packet is, before it is borrowed.
struct Found {
    iface: usize,
    ts_ns: Option<i64>,
    flags: Option<u32>,
    original_len: u32,
    data: std::ops::Range<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian block of `kind` around `body` (padded to 4).
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + round4(body.len())) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(8 + round4(body.len()), 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn option(code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = code.to_le_bytes().to_vec();
        o.extend_from_slice(&(value.len() as u16).to_le_bytes());
        o.extend_from_slice(value);
        o.resize(4 + round4(value.len()), 0);
        o
    }

    fn section() -> Vec<u8> {
        let mut body = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        block(SECTION_HEADER, &body)
    }

    fn interface(options: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 0, 0, 4, 0]; // Ethernet, snaplen 262144
        options.iter().for_each(|o| body.extend_from_slice(o));
        block(INTERFACE_DESCRIPTION, &body)
    }

    fn packet(iface: u32, data: &[u8]) -> Vec<u8> {
        let mut body = iface.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1_000_000u32.to_le_bytes()); // 1 s in microseconds
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32 + 10).to_le_bytes());
        body.extend_from_slice(data);
        body.resize(20 + round4(data.len()), 0);
        body.extend_from_slice(&option(EPB_FLAGS, &2u32.to_le_bytes()));
        block(ENHANCED_PACKET, &body)
    }

    /// A packet as (interface name, ts, original length, data).
    type Row = (Option<String>, i64, u32, Vec<u8>);

    /// A fault as text: a refusal's message, or where a cut was.
    fn text(f: Fault) -> String {
        match f {
            Fault::Failed(e) => e.to_string(),
            Fault::Cut { at, started, what, .. } => format!("cut at {at} inside {what} from {started}"),
        }
    }

    /// Every packet, or the error.
    fn read(bytes: &[u8]) -> Result<Vec<Row>, String> {
        let mut r = PcapNgReader::new(Bytes::new(bytes), "t").map_err(text)?;
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.map_err(text)?;
            assert_eq!(p.direction, Some(Direction::Out));
            out.push((p.interface.name.clone(), p.ts_ns.unwrap_or(i64::MIN), p.original_len, p.data.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn names_are_cut_and_other_blocks_read_past() {
        let long = vec![b'x'; 60_000];
        let mut f = section();
        f.extend(interface(&[option(1, &[b'c'; 65_000]), option(IF_NAME, &long), option(IF_TSRESOL, &[6])]));
        // A name resolution block and a custom one, read past.
        f.extend(block(4, &[7u8; 100_000]));
        f.extend(block(0x0000_0BAD, &[1u8; 12]));
        f.extend(packet(0, b"abc"));
        let got = read(&f).unwrap();
        assert_eq!(got, vec![(Some("x".repeat(MAX_NAME)), 1_000_000_000, 13, b"abc".to_vec())]);
    }

    #[test]
    fn names_stop_at_nul_descriptions_stand_in_and_times_take_resolution_and_offset() {
        let mut f = section();
        f.extend(interface(&[option(IF_NAME, b"en0\0\0"), option(IF_DESCRIPTION, b"wired\0x")]));
        f.extend(interface(&[
            option(IF_DESCRIPTION, b"wired\0x"),
            option(IF_TSRESOL, &[9]),
            option(IF_TSOFFSET, &(-2i64).to_le_bytes()),
        ]));
        // No end-of-options marker anywhere, and a comment that is not UTF-8.
        f.extend(interface(&[option(IF_TSRESOL, &[0x80 | 100]), option(1, b"\xff\xfe")]));
        let mut r = PcapNgReader::new(Bytes::new(&f[..]), "t").unwrap();
        assert!(r.next_packet().is_none());
        let got: Vec<_> = r.interfaces.iter().map(|i| (i.name.clone(), i.units_per_sec, i.offset_secs)).collect();
        let resol = 1u128 << 100;
        assert_eq!(
            got,
            vec![
                (Some("en0".into()), Some(1_000_000), 0),
                (Some("wired".into()), Some(1_000_000_000), -2),
                (None, Some(resol), 0)
            ]
        );
        // A count of 2^-100 s units is under a nanosecond; 10^-40 s units
        // are beyond u128 and count nothing; an all-ones count of ns is past
        // 2262: None.
        let mut f = section();
        f.extend(interface(&[option(IF_TSRESOL, &[0x80 | 100])]));
        f.extend(interface(&[option(IF_TSRESOL, &[40]), option(IF_TSOFFSET, &5i64.to_le_bytes())]));
        f.extend(interface(&[option(IF_TSRESOL, &[9])]));
        let mut r = PcapNgReader::new(Bytes::new(&f[..]), "t").unwrap();
        assert!(r.next_packet().is_none());
        let ts = |r: &PcapNgReader<&[u8]>, i: usize, units: u64| r.interfaces[i].time_ns(units);
        assert_eq!(ts(&r, 0, u64::MAX), Some(0));
        assert_eq!(ts(&r, 1, u64::MAX), Some(5_000_000_000));
        assert_eq!(ts(&r, 2, u64::MAX), None);
    }

    #[test]
    fn section_versions_other_than_1_0_and_1_2_are_refused() {
        for (minor_major, ok) in [
            ([1u8, 0, 0, 0], true),
            ([1, 0, 2, 0], true),
            ([0, 0, 1, 0], false),
            ([1, 0, 1, 0], false),
            ([2, 0, 0, 0], false),
        ] {
            let mut f = section();
            f[12..16].copy_from_slice(&minor_major);
            let got = PcapNgReader::new(Bytes::new(&f[..]), "t").map(|_| ()).map_err(text);
            assert_eq!(got.is_ok(), ok, "{minor_major:?}: {got:?}");
            if !ok {
                assert!(got.unwrap_err().starts_with("t: at byte 12: section header version "));
            }
        }
    }

    #[test]
    fn interfaces_beyond_the_cap_are_counted_and_their_packets_skipped() {
        let mut f = section();
        for i in 0..MAX_INTERFACES + 3 {
            f.extend(interface(&[option(IF_NAME, format!("if{i}").as_bytes())]));
        }
        f.extend(packet(MAX_INTERFACES as u32 + 1, b"gone"));
        f.extend(packet(7, b"kept"));
        let mut r = PcapNgReader::new(Bytes::new(&f[..]), "t").unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.interface.name.as_deref(), p.data), (Some("if7"), &b"kept"[..]));
        assert!(r.next_packet().is_none());
        assert_eq!((r.dropped_total, r.skipped_packets), (3, 1));
        // A packet naming an interface nobody described is an error.
        let mut f = section();
        f.extend(interface(&[]));
        f.extend(packet(5, b"x"));
        assert_eq!(read(&f).unwrap_err(), "t: at byte 48: packet of interface 5 that no block described");
        // A new section forgets the interfaces of the last.
        let mut f = section();
        f.extend(interface(&[]));
        f.extend(section());
        f.extend(packet(0, b"x"));
        assert!(read(&f).is_err());
    }

    #[test]
    fn lengths_the_file_claims_are_bounded() {
        // A packet block claiming 4 GB: refused before anything is allocated.
        let mut f = section();
        f.extend(interface(&[]));
        f.extend(ENHANCED_PACKET.to_le_bytes());
        f.extend(0xFFFF_FFFCu32.to_le_bytes());
        f.extend([0u8; 64]);
        assert_eq!(
            read(&f).unwrap_err(),
            format!(
                "t: at byte 48: a pcapng block of 4294967292 bytes is larger than the {MAX_BLOCK} bytes sockql reads"
            )
        );
        // An unknown block claiming 4 GB is read past, and the file ends inside it.
        let mut f = section();
        f.extend(0x0000_0BADu32.to_le_bytes());
        f.extend(0xFFFF_FFFCu32.to_le_bytes());
        f.extend([0u8; 64]);
        assert_eq!(read(&f).unwrap_err(), format!("cut at {} inside a block from 28", f.len()));
        // An option that runs past its block, lengths that do not match,
        // lengths that are no multiple of 4.
        let mut f = section();
        let mut idb = interface(&[option(IF_NAME, b"eth0")]);
        idb[8 + 8 + 2] = 200;
        f.extend(idb);
        assert_eq!(read(&f).unwrap_err(), "t: at byte 28: pcapng option runs past its block");
        let mut f = section();
        let mut idb = interface(&[]);
        let n = idb.len();
        idb[n - 4] = 0;
        f.extend(idb);
        assert!(read(&f).unwrap_err().contains("lengths differ"));
        let mut f = section();
        f.extend(block(7, &[]));
        let at = f.len() - 8;
        f[at] = 13;
        assert!(read(&f).unwrap_err().contains("not a multiple of 4"));
        // A file cut between blocks ends cleanly; inside one, with an error.
        let mut f = section();
        f.extend(interface(&[]));
        f.extend(packet(0, b"abcdef"));
        assert_eq!(read(&f).unwrap().len(), 1);
        assert_eq!(read(&f[..f.len() - 3]).unwrap_err(), format!("cut at {} inside a block from 48", f.len() - 3));
    }
}
