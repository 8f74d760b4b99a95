//! Writing live packets as a pcap file tcpdump, tshark and Wireshark open:
//! link type LINUX_SLL2 (what `tcpdump -i any -w` writes), whose 20-byte
//! header carries what a cooked capture knows (EtherType, interface
//! index, direction) in front of the network header.

use std::io::Write;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use super::live::Captured;
use super::Direction;
use crate::Error;

const SLL2_LEN: usize = 20;
/// ARPHRD_ETHER: the link type field of the cooked header.
const ARPHRD_ETHER: u16 = 1;

/// A pcap file being written.
pub struct PcapOut<W: Write> {
    writer: PcapWriter<W>,
    packets: u64,
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::ProcFormat(format!("writing pcap: {e}"))
}

/// The Linux cooked v2 header of a packet.
pub fn sll2_header(p: &Captured<'_>) -> [u8; SLL2_LEN] {
    let mut h = [0u8; SLL2_LEN];
    h[0..2].copy_from_slice(&p.ether_type.to_be_bytes());
    h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
    h[8..10].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    h[10] = if p.direction == Direction::Out { 4 } else { 0 };
    h
}

impl<W: Write> PcapOut<W> {
    /// A pcap file of packets captured with `snap_len`.
    pub fn new(out: W, snap_len: usize) -> Result<Self, Error> {
        let header = PcapHeader {
            snaplen: (SLL2_LEN + snap_len) as u32,
            datalink: DataLink::LINUX_SLL2,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        Ok(PcapOut { writer: PcapWriter::with_header(out, header).map_err(bad)?, packets: 0 })
    }

    pub fn write(&mut self, p: &Captured<'_>) -> Result<(), Error> {
        let mut data = Vec::with_capacity(SLL2_LEN + p.data.len());
        data.extend_from_slice(&sll2_header(p));
        data.extend_from_slice(p.data);
        let ts = Duration::from_nanos(p.ts_ns.max(0) as u64);
        self.writer.write_packet(&PcapPacket::new(ts, SLL2_LEN as u32 + p.length, &data)).map_err(bad)?;
        self.packets += 1;
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::decode;
    use crate::packets::file::CaptureFile;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let ip = crate::packets::tests::SYN_IPV4;
        let p = Captured {
            ts_ns: 1_795_752_740_770_322_123,
            ether_type: 0x0800,
            direction: Direction::Out,
            ifindex: 3,
            length: 60,
            data: ip,
        };
        let mut out = PcapOut::new(Vec::new(), super::super::live::SNAP_LEN).unwrap();
        out.write(&p).unwrap();
        assert_eq!(out.packets(), 1);
        let bytes: &'static [u8] = Box::leak(out.into_inner().into_boxed_slice());
        let mut f = CaptureFile::from_reader("written", Box::new(bytes)).unwrap();
        let (ts, linktype, len, d) =
            f.next(|r| (r.ts_ns, r.linktype, r.length, decode::decode(r.linktype, r.data))).unwrap().unwrap();
        assert_eq!((ts, linktype, len), (Some(p.ts_ns), decode::LINKTYPE_LINUX_SLL2, 80));
        assert_eq!((d.direction, d.ifindex, d.dst_port), (Some(Direction::Out), Some(3), Some(8080)));
        assert!(f.next(|_| ()).is_none());
    }
}
