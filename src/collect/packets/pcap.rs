//! pcap (the libpcap format: a 24-byte file header, then a 16-byte header
//! before each packet), either byte order, micro- or nanosecond
//! timestamps. Packets are parsed in place in [`Bytes`]' buffer: nothing
//! is allocated per packet, and a packet is at most [`MAX_PACKET`] bytes.
//!
//! What is refused is what tshark 4.0 refuses: a major version below 2
//! (tshark: "pcap: major version 1 unsupported"; tcpdump: "archaic pcap
//! savefile format"). Versions 2.x of any minor and 3.0 and later, which
//! tshark reads and tcpdump refuses, are read. A snap length of 0 is read
//! (both tools do).

use std::io::Read;

use super::bytes::{Bytes, Fault};
use crate::collect::Error;

/// The largest packet read (pcap-file's buffer, and pcapng's bound).
pub const MAX_PACKET: usize = 8_000_000;

pub const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

/// What the file header says.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub big_endian: bool,
    /// Timestamps count nanoseconds (else microseconds).
    pub nanos: bool,
    pub linktype: u32,
}

/// One packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Packet<'a> {
    pub ts_sec: u32,
    /// The fraction as the file holds it, in its units (it may not be
    /// under one second: see [`Packet::fraction_in_range`]).
    pub ts_frac: u32,
    pub original_len: u32,
    pub data: &'a [u8],
    /// Where its record header starts in the file.
    pub offset: u64,
}

/// A pcap file read as a stream.
pub struct PcapReader<R> {
    b: Bytes<R>,
    name: String,
    pub header: Header,
}

/// The four magics: micro- or nanoseconds, in either byte order.
pub fn magic(m: [u8; 4]) -> Option<(bool, bool)> {
    match m {
        [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false)),
        [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false)),
        [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true)),
        [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true)),
        _ => None,
    }
}

impl<'a> Packet<'a> {
    /// Whether the fraction is under one second of its unit (tshark shows
    /// one that is not as it is, "1000.1500000000"; a timestamp cannot).
    pub fn fraction_in_range(&self, nanos: bool) -> bool {
        self.ts_frac < if nanos { 1_000_000_000 } else { 1_000_000 }
    }

    /// Nanoseconds since the epoch; a fraction of a second or more is
    /// carried into the seconds (u32 seconds and fraction always fit).
    pub fn ts_ns(&self, nanos: bool) -> i64 {
        let frac = if nanos { self.ts_frac as i64 } else { self.ts_frac as i64 * 1000 };
        self.ts_sec as i64 * 1_000_000_000 + frac
    }
}

impl<R: Read> PcapReader<R> {
    /// Read the file header of `b` (at its start).
    pub fn new(mut b: Bytes<R>, name: &str) -> Result<Self, Fault> {
        let io = |e| Fault::Failed(Error::Proc(name.into(), e));
        if !b.want(FILE_HEADER).map_err(io)? {
            return Err(Fault::Cut { at: b.offset() + b.available().len() as u64, started: 0, what: "the pcap file header", header: true });
        }
        let h = b.available();
        let field = |at: usize| -> [u8; 4] { [h[at], h[at + 1], h[at + 2], h[at + 3]] };
        let Some((big_endian, nanos)) = magic(field(0)) else {
            return Err(Fault::Failed(Error::ProcFormat(format!("{name}: at byte 0: not a pcap file"))));
        };
        let u32_of = |b: [u8; 4]| if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
        let u16_of = |at: usize| {
            let v = [h[at], h[at + 1]];
            if big_endian {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }
        };
        let (major, minor) = (u16_of(4), u16_of(6));
        if major < 2 {
            return Err(Fault::Failed(Error::ProcFormat(format!(
                "{name}: at byte 4: pcap version {major}.{minor} is not supported (2.x is)"
            ))));
        }
        // The link type's upper bits carry the FCS length (LINKTYPE_*).
        let linktype = u32_of(field(20)) & 0x0fff_ffff;
        b.consume(FILE_HEADER);
        Ok(PcapReader { b, name: name.to_string(), header: Header { big_endian, nanos, linktype } })
    }

    fn u32_at(&self, h: &[u8], at: usize) -> u32 {
        let v = [h[at], h[at + 1], h[at + 2], h[at + 3]];
        if self.header.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    /// The next packet; None at the end of the file (between packets).
    pub fn next_packet(&mut self) -> Option<Result<Packet<'_>, Fault>> {
        let offset = self.b.offset();
        let io = |e| Fault::Failed(Error::Proc(self.name.as_str().into(), e));
        match self.b.want(RECORD_HEADER) {
            Ok(true) => {}
            Ok(false) if self.b.available().is_empty() && !self.b.source_cut() => return None,
            Ok(false) => return Some(Err(self.cut(offset))),
            Err(e) => return Some(Err(io(e))),
        }
        let h = self.b.available();
        let (ts_sec, ts_frac, caplen, original_len) = (self.u32_at(h, 0), self.u32_at(h, 4), self.u32_at(h, 8), self.u32_at(h, 12));
        let caplen = caplen as usize;
        if caplen > MAX_PACKET {
            return Some(Err(Fault::Failed(Error::ProcFormat(format!(
                "{}: at byte {offset}: a packet of {caplen} captured bytes is larger than the {MAX_PACKET} bytes sockql reads",
                self.name
            )))));
        }
        match self.b.want(RECORD_HEADER + caplen) {
            Ok(true) => {}
            Ok(false) => return Some(Err(self.cut(offset))),
            Err(e) => return Some(Err(Fault::Failed(Error::Proc(self.name.as_str().into(), e)))),
        }
        let data = self.b.take_bytes(RECORD_HEADER + caplen).get(RECORD_HEADER..).unwrap_or_default();
        Some(Ok(Packet { ts_sec, ts_frac, original_len, data, offset }))
    }

    fn cut(&self, started: u64) -> Fault {
        Fault::Cut { at: self.b.offset() + self.b.available().len() as u64, started, what: "a packet", header: false }
    }
}
