//! Packets: capture files read as a stream ([`file`]) and each packet's
//! headers decoded ([`link`] layers, then [`decode`]). Nothing here knows about SQL.

pub mod bpf;
pub mod bytes;
pub mod decode;
pub mod file;
pub mod flows;
pub mod link;
pub mod live;
pub mod pcap;
pub mod pcapng;
pub mod stamps;
pub mod stoppable;
pub mod write;

/// Which way a packet went, where the capture says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// An IPv4 TCP SYN from 127.0.0.1:41234 to 127.0.0.1:8080 with the
    /// options Linux sends: MSS 65495, SACK permitted, timestamps
    /// (val 0x01020304), NOP, window scale 7.
    pub const SYN_IPV4: &[u8] = &[
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 127, 0, 0, 1, 127, 0, 0,
        1, // IPv4
        0xa1, 0x12, 0x1f, 0x90, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xd7, 0, 0, 0, 0, // TCP
        2, 4, 0xff, 0xd7, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7, // options
    ];
}
