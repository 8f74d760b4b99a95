//! Netlink sockets of the calling thread's namespace, from
//! /proc/thread-self/net/netlink (the kernel's own listing; no netlink
//! dump lists netlink sockets). What matters to an operator is `Drops`:
//! messages the kernel could not queue to a listener whose receive buffer
//! was full (what the listener sees as ENOBUFS) — events it lost.

use super::Error;

/// One line of /proc/net/netlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkSocket {
    pub protocol: u32,
    /// The socket's port id; 0 for the kernel's own socket of a protocol.
    pub portid: u32,
    /// The first 32 multicast groups it listens to, as a bit mask.
    pub groups: u32,
    pub rmem: u64,
    pub wmem: u64,
    /// A dump is in progress on it.
    pub dumping: bool,
    pub drops: u64,
    pub inode: u64,
}

/// The protocol's name as linux/netlink.h calls it (NETLINK_ROUTE is
/// "route"), or its number.
pub fn protocol_name(protocol: u32) -> String {
    let name = match protocol {
        0 => "route",
        1 => "unused",
        2 => "usersock",
        3 => "firewall",
        4 => "sock_diag",
        5 => "nflog",
        6 => "xfrm",
        7 => "selinux",
        8 => "iscsi",
        9 => "audit",
        10 => "fib_lookup",
        11 => "connector",
        12 => "netfilter",
        13 => "ip6_fw",
        14 => "dnrtmsg",
        15 => "kobject_uevent",
        16 => "generic",
        18 => "scsitransport",
        19 => "ecryptfs",
        20 => "rdma",
        21 => "crypto",
        22 => "smc",
        n => return n.to_string(),
    };
    name.to_string()
}

/// Parse the text of /proc/net/netlink: a header line, then
/// `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode` per socket.
pub fn parse(text: &str) -> Result<Vec<NetlinkSocket>, Error> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.split_whitespace().nth(1) == Some("Eth") => {}
        other => return Err(Error::ProcFormat(format!("/proc/net/netlink: unexpected header {other:?}"))),
    }
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 10 {
            return Err(Error::ProcFormat(format!(
                "/proc/net/netlink line {}: {} fields, expected 10",
                n + 2,
                f.len()
            )));
        }
        let bad = |what: &str| Error::ProcFormat(format!("/proc/net/netlink line {}: bad {what}", n + 2));
        out.push(NetlinkSocket {
            protocol: f[1].parse().map_err(|_| bad("Eth"))?,
            portid: f[2].parse().map_err(|_| bad("Pid"))?,
            groups: u32::from_str_radix(f[3], 16).map_err(|_| bad("Groups"))?,
            rmem: f[4].parse().map_err(|_| bad("Rmem"))?,
            wmem: f[5].parse().map_err(|_| bad("Wmem"))?,
            dumping: f[6] != "0",
            drops: f[8].parse().map_err(|_| bad("Drops"))?,
            inode: f[9].parse().map_err(|_| bad("Inode"))?,
        });
    }
    Ok(out)
}

/// The netlink sockets of the calling thread's network namespace.
pub fn read() -> Result<Vec<NetlinkSocket>, Error> {
    // The words users have always seen (not Error::Proc's "cannot read").
    let text = std::fs::read_to_string("/proc/thread-self/net/netlink")
        .map_err(|e| Error::ProcFormat(format!("/proc/net/netlink: {e}")))?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a host, with one listener that lost 1234 messages.
    const CAPTURED: &str =
        "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode   \n\
000000001a261e67 0   0          00000000 0        0        0     2        0        4       \n\
ffff8a0c4a1b2000 12  3735       0000000e 212992   0        0     2        1234     48812   \n\
ffff8a0c4a1b3000 4   4294960123 00000000 0        0        1     2        0        48815   \n";

    #[test]
    fn parses_captured_lines() {
        let s = parse(CAPTURED).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            NetlinkSocket {
                protocol: 12,
                portid: 3735,
                groups: 0xe,
                rmem: 212992,
                wmem: 0,
                dumping: false,
                drops: 1234,
                inode: 48812
            }
        );
        assert!(s[2].dumping && s[2].portid == 4294960123);
        assert_eq!(protocol_name(12), "netfilter");
        assert_eq!(protocol_name(4), "sock_diag");
        assert_eq!(protocol_name(99), "99");
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        assert!(parse("").is_err());
        assert!(parse("garbage\n").is_err());
        let header = CAPTURED.lines().next().unwrap();
        assert!(parse(&format!("{header}\n0 1 2\n")).is_err());
        assert!(parse(&format!("{header}\n0 x 0 0 0 0 0 2 0 4\n")).is_err());
        assert!(parse(&format!("{header}\n0 0 0 zz 0 0 0 2 0 4\n")).is_err());
        assert_eq!(parse(&format!("{header}\n\n")).unwrap(), vec![]);
    }

    #[test]
    fn reads_this_namespace() {
        // The kernel's own route socket exists in every namespace.
        let s = read().unwrap();
        assert!(s.iter().any(|n| n.protocol == 0 && n.portid == 0), "{s:?}");
    }
}
