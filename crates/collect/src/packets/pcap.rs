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
use crate::Error;

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
            return Err(Fault::Cut {
                at: b.offset() + b.available().len() as u64,
                started: 0,
                what: "the pcap file header",
                header: true,
            });
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
        let (ts_sec, ts_frac, caplen, original_len) =
            (self.u32_at(h, 0), self.u32_at(h, 4), self.u32_at(h, 8), self.u32_at(h, 12));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: [u8; 4], big: bool, version: (u16, u16)) -> Vec<u8> {
        let mut h = magic.to_vec();
        let (maj, min) = if big {
            (version.0.to_be_bytes(), version.1.to_be_bytes())
        } else {
            (version.0.to_le_bytes(), version.1.to_le_bytes())
        };
        h.extend(maj);
        h.extend(min);
        h.extend([0u8; 8]);
        let tail: [u32; 2] = [262_144, 0x1000_0001]; // snap length; Ethernet with FCS bits set
        for v in tail {
            h.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() });
        }
        h
    }

    fn record(big: bool, fields: [u32; 4], data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        for v in fields {
            r.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() });
        }
        r.extend(data);
        r
    }

    fn fault(f: Fault) -> String {
        match f {
            Fault::Failed(e) => e.to_string(),
            Fault::Cut { at, started, what, header } => {
                format!("cut at {at} in {what} from {started} (header {header})")
            }
        }
    }

    #[test]
    fn both_byte_orders_and_units_with_the_link_type_masked() {
        for (magic, big, nanos) in [
            ([0xa1, 0xb2, 0xc3, 0xd4], true, false),
            ([0xd4, 0xc3, 0xb2, 0xa1], false, false),
            ([0xa1, 0xb2, 0x3c, 0x4d], true, true),
            ([0x4d, 0x3c, 0xb2, 0xa1], false, true),
        ] {
            let mut f = header(magic, big, (2, 4));
            // Captured 3 of 60 bytes (a snap length), then an empty packet.
            f.extend(record(big, [7, 250, 3, 60], b"abc"));
            f.extend(record(big, [8, 0, 0, 0], b""));
            let mut r = PcapReader::new(Bytes::new(&f[..]), "t").map_err(fault).unwrap();
            assert_eq!((r.header.big_endian, r.header.nanos, r.header.linktype), (big, nanos, 1));
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!((p.ts_sec, p.ts_frac, p.original_len, p.data, p.offset), (7, 250, 60, &b"abc"[..], 24));
            assert_eq!(p.ts_ns(nanos), 7_000_000_000 + if nanos { 250 } else { 250_000 });
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!((p.data.len(), p.offset), (0, 43));
            assert!(r.next_packet().is_none());
        }
    }

    #[test]
    fn versions_below_2_are_refused_and_cuts_say_where() {
        let magic = [0xd4, 0xc3, 0xb2, 0xa1];
        let err =
            PcapReader::new(Bytes::new(&header(magic, false, (1, 0))[..]), "t").map(|_| ()).map_err(fault).unwrap_err();
        assert_eq!(err, "t: at byte 4: pcap version 1.0 is not supported (2.x is)");
        for v in [(2, 0), (2, 3), (2, 5), (3, 0)] {
            assert!(PcapReader::new(Bytes::new(&header(magic, false, v)[..]), "t").is_ok(), "{v:?}");
        }
        let f = header(magic, false, (2, 4));
        let err = PcapReader::new(Bytes::new(&f[..10]), "t").map(|_| ()).map_err(fault).unwrap_err();
        assert_eq!(err, "cut at 10 in the pcap file header from 0 (header true)");
        // Cut inside a record header, inside its data: the offset of the
        // file's end and of the record.
        let mut f = header(magic, false, (2, 4));
        f.extend(record(false, [1, 0, 4, 4], b"wxyz"));
        f.extend(record(false, [2, 0, 4, 4], b"wxyz"));
        for (cut, want) in [
            (24 + 20 + 5, "cut at 49 in a packet from 44 (header false)"),
            (24 + 20 + 18, "cut at 62 in a packet from 44 (header false)"),
        ] {
            let mut r = PcapReader::new(Bytes::new(&f[..cut]), "t").map_err(fault).unwrap();
            assert!(r.next_packet().unwrap().is_ok());
            assert_eq!(fault(r.next_packet().unwrap().unwrap_err()), want);
        }
    }

    #[test]
    fn a_packet_larger_than_the_bound_is_refused_before_it_is_read() {
        let mut f = header([0xd4, 0xc3, 0xb2, 0xa1], false, (2, 4));
        f.extend(record(false, [1, 0, u32::MAX, u32::MAX], b""));
        let mut r = PcapReader::new(Bytes::new(&f[..]), "t").map_err(fault).unwrap();
        assert_eq!(
            fault(r.next_packet().unwrap().unwrap_err()),
            format!("t: at byte 24: a packet of 4294967295 captured bytes is larger than the {MAX_PACKET} bytes sockql reads")
        );
    }
}
