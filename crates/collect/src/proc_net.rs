//! The /proc/net/{tcp,tcp6,udp,udp6,raw,raw6} text tables: the fallback source of
//! `sockets` where netlink sock_diag is refused (some sandboxes and
//! container runtimes filter netlink). They carry fewer columns than
//! sock_diag: no tcp_info, no memory, no cookie, no interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Error;

/// One row of /proc/net/{tcp,udp}[6].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcNetSocket {
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// Kernel TCP state number (same numbering as sock_diag).
    pub state: u8,
    pub tx_queue: u32,
    pub rx_queue: u32,
    /// Timer kind as in `inet_diag_msg.idiag_timer` (0 = none).
    pub timer: u8,
    /// Time until the timer fires, in clock ticks (USER_HZ).
    pub timer_ticks: u64,
    pub retransmits: u32,
    pub uid: u32,
    pub inode: u64,
}

/// Decode an address column: IPv4 is one native-endian u32 in hex, IPv6
/// four of them.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(|w| w.to_ne_bytes());
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&hex[i * 8..i * 8 + 8])?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    Some((parse_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
}

fn parse_pair(s: &str, radix: u32) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((u64::from_str_radix(a, radix).ok()?, u64::from_str_radix(b, radix).ok()?))
}

fn parse_line(line: &str) -> Result<ProcNetSocket, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return Err(format!("expected at least 10 fields, found {}", f.len()));
    }
    let (local_addr, local_port) = parse_endpoint(f[1]).ok_or("bad local address")?;
    let (remote_addr, remote_port) = parse_endpoint(f[2]).ok_or("bad remote address")?;
    let state = u8::from_str_radix(f[3], 16).map_err(|_| "bad state")?;
    let (tx, rx) = parse_pair(f[4], 16).ok_or("bad queue column")?;
    let (timer, ticks) = parse_pair(f[5], 16).ok_or("bad timer column")?;
    Ok(ProcNetSocket {
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        state,
        tx_queue: tx as u32,
        rx_queue: rx as u32,
        timer: timer as u8,
        timer_ticks: ticks,
        retransmits: u32::from_str_radix(f[6], 16).map_err(|_| "bad retransmit count")?,
        uid: f[7].parse().map_err(|_| "bad uid")?,
        inode: f[9].parse().map_err(|_| "bad inode")?,
    })
}

/// Parse the whole text of one /proc/net table (header line first).
pub fn parse(file: &str, text: &str) -> Result<Vec<ProcNetSocket>, Error> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).map_err(|what| Error::ProcFormat(format!("{file} line {}: {what}", i + 1))))
        .collect()
}

/// Read one table; a missing file (IPv6 disabled) is an empty table.
pub fn read(file: &str) -> Result<Vec<ProcNetSocket>, Error> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(file, &text),
        Err(_) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as the kernel writes them (captured on this machine, x86_64).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D3A2 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_v4_listen_and_time_wait() {
        let rows = parse("/proc/net/tcp", TCP).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local_addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(rows[0].local_port, 8080);
        assert_eq!(rows[0].state, 10);
        assert_eq!(rows[0].rx_queue, 2);
        assert_eq!(rows[0].inode, 123456);
        assert_eq!(rows[1].remote_port, 8080);
        assert_eq!(rows[1].state, 6);
        assert_eq!(rows[1].timer, 3);
        assert_eq!(rows[1].timer_ticks, 0x1770);
    }

    #[test]
    fn parses_a_raw_icmp_socket() {
        // An ICMP raw socket (socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)): its
        // "port" is the protocol number, its state 07 (unconnected).
        let raw = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 249: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 66059827 2 0000000084e13639 0
";
        let rows = parse("/proc/net/raw", raw).unwrap();
        assert_eq!((rows[0].local_port, rows[0].state, rows[0].inode), (1, 7, 66059827));
    }

    #[test]
    fn parses_v6() {
        let rows = parse("/proc/net/tcp6", TCP6).unwrap();
        assert_eq!(rows[0].local_addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(rows[0].local_port, 80);
        assert_eq!(rows[0].uid, 1000);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let text = "header\n   0: 0100007F:1F90 00000000:0000 0A\n";
        let err = parse("/proc/net/tcp", text).unwrap_err();
        assert!(err.to_string().starts_with("/proc/net/tcp line 2:"), "{err}");
        let bad_addr = TCP.replace("0100007F:1F90 00000000", "01007F:1F90 00000000");
        assert!(parse("/proc/net/tcp", &bad_addr).is_err());
        // Truncation at any byte never panics.
        for cut in 0..TCP.len() {
            let _ = parse("/proc/net/tcp", &TCP[..cut]);
        }
    }
}
