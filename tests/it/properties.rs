//! Property tests: every parser of kernel data returns a value or an
//! error for any input, never panics, and never reads past its input.
//! (Longer runs: the cargo-fuzz targets in fuzz/.)

use proptest::prelude::*;
use sockql::collect::conntrack::{netlink as ctnetlink, proc as proc_conntrack};
use sockql::collect::packets::{decode, file::CaptureFile};
use sockql::collect::sock_diag::{inet as inet_diag, unix as unix_diag};
use sockql::collect::{counters, netlink, proc_net};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2000, ..ProptestConfig::default() }
}

/// A byte string that often looks like netlink: small lengths and types.
fn netlinkish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(4u8), Just(8u8), Just(1u8), Just(2u8), any::<u8>()],
            0..300
        ),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn netlink_frames_never_panic(bytes in netlinkish()) {
        for f in netlink::frames(&bytes).flatten() {
            prop_assert!(f.payload.len() <= bytes.len());
        }
        let _ = netlink::payload_errno(&bytes);
    }

    #[test]
    fn inet_diag_messages_never_panic(mut bytes in netlinkish(), family in prop_oneof![Just(2u8), Just(10u8)]) {
        if !bytes.is_empty() {
            bytes[0] = family;
        }
        if let Ok(m) = inet_diag::InetDiagMsg::parse(&bytes) {
            let _ = (m.local_addr(), m.remote_addr(), m.cookie(), m.congestion());
            if let Some(t) = m.tcp_info() {
                let _ = (t.rtt_us(), t.bytes_sent(), t.bytes_retrans(), t.busy_time_us());
            }
            if let Some(mi) = m.meminfo() {
                let _ = mi.drops();
            }
        }
    }

    #[test]
    fn conntrack_messages_never_panic(bytes in netlinkish()) {
        let _ = ctnetlink::parse_entry(&bytes);
        let _ = ctnetlink::parse_cpu_stats(&bytes);
    }

    #[test]
    fn unix_diag_messages_never_panic(mut bytes in netlinkish()) {
        if !bytes.is_empty() {
            bytes[0] = libc::AF_UNIX as u8;
        }
        let _ = unix_diag::parse(&bytes);
    }

    #[test]
    fn proc_text_parsers_never_panic(text in "[ -~\n\t]{0,400}") {
        let _ = proc_net::parse("/proc/net/tcp", &text);
        let _ = proc_conntrack::parse(&text, 1_700_000_000);
        let _ = proc_conntrack::parse_stats(&text);
        let _ = counters::parse_paired("/proc/net/snmp", &text);
        let _ = counters::parse_snmp6(&text);
        let _ = counters::parse_sockstat("/proc/net/sockstat", &text);
    }

    /// A /proc/net/tcp line made from any socket parses back to it.
    #[test]
    fn proc_net_lines_round_trip(a in any::<[u8; 4]>(), lp in any::<u16>(), rp in any::<u16>(), st in 1u8..12, rx in any::<u32>(), inode in any::<u32>()) {
        let addr = format!("{:08X}", u32::from_ne_bytes(a));
        let text = format!("header\n   0: {addr}:{lp:04X} 00000000:{rp:04X} {st:02X} 00000000:{rx:08X} 00:00000000 00000000     0        0 {inode} 1\n");
        let rows = proc_net::parse("/proc/net/tcp", &text).unwrap();
        prop_assert_eq!(rows.len(), 1);
        prop_assert_eq!(rows[0].local_addr, std::net::IpAddr::from(a));
        prop_assert_eq!((rows[0].local_port, rows[0].remote_port, rows[0].state, rows[0].rx_queue, rows[0].inode), (lp, rp, st, rx, inode as u64));
    }

    /// A capture file whose packets are garbage, or cut anywhere: every
    /// packet is read or refused, and each one's headers decode without a
    /// panic, on every link type.
    #[test]
    fn capture_files_and_packets_never_panic(
        records in proptest::collection::vec((0u32..300, proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
        linktype in prop_oneof![Just(101u32), Just(101u32), Just(1u32), Just(113u32), Just(276u32), Just(0u32), Just(229u32), any::<u32>()],
        cut in any::<prop::sample::Index>(),
    ) {
        // Most records made to look like IPv4/IPv6 carrying TCP, UDP or
        // ICMP, so the header parsers past IP are reached too.
        let records: Vec<(u32, Vec<u8>)> = records
            .into_iter()
            .map(|(orig, mut d)| {
                if d.len() > 40 && d[0] % 4 != 0 {
                    let proto = [6u8, 17, 1, 58][d[1] as usize % 4];
                    if d[0] % 2 == 0 {
                        d[0] = 0x45;
                        d[9] = proto;
                    } else {
                        d[0] = 0x60;
                        d[6] = proto;
                    }
                }
                (orig, d)
            })
            .collect();
        // A pcap header (µs, little endian, snap length 65535), then the records.
        let mut f: Vec<u8> = Vec::new();
        f.extend([0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        f.extend(linktype.to_le_bytes());
        for (orig, data) in &records {
            f.extend(1u32.to_le_bytes());
            f.extend(2u32.to_le_bytes());
            f.extend((data.len() as u32).to_le_bytes());
            f.extend(orig.to_le_bytes());
            f.extend(data);
        }
        let end = 24 + cut.index(f.len() - 23);
        let bytes: &'static [u8] = Box::leak(f[..end.min(f.len())].to_vec().into_boxed_slice());
        if let Ok(mut file) = CaptureFile::from_reader("prop", Box::new(bytes)) {
            while let Some(r) = file.next(|p| decode::decode(p.linktype, p.data)) {
                if r.is_err() {
                    break;
                }
            }
        }
        for (_, data) in &records {
            let _ = decode::decode(linktype, data);
        }
    }
}
