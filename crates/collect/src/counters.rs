//! The kernel's network counters as `nstat -a` reads them
//! (/proc/net/snmp, /proc/net/netstat, /proc/net/snmp6) and the socket
//! summary of /proc/net/sockstat(6), read through /proc/thread-self/net so
//! a reader thread that entered another namespace sees that namespace's.

use super::Error;

/// What is wrong with a file's text, named in `msg` (`FILE: ...`).
fn bad(msg: String) -> Error {
    Error::ProcFormat(msg)
}

/// One counter: MIB group (Tcp, TcpExt, Ip6, ...), name, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub mib: String,
    pub name: String,
    pub value: i64,
}

/// /proc/net/snmp and /proc/net/netstat: pairs of lines, a header line of
/// names and a line of values, both prefixed by `Group:`.
pub fn parse_paired(file: &str, text: &str) -> Result<Vec<Counter>, Error> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return Err(bad(format!("{file}: odd number of lines")));
    }
    let mut out = Vec::new();
    for pair in lines.chunks(2) {
        let (hg, names) = pair[0].split_once(':').ok_or_else(|| bad(format!("{file}: no group in {:?}", pair[0])))?;
        let (vg, values) = pair[1].split_once(':').ok_or_else(|| bad(format!("{file}: no group in {:?}", pair[1])))?;
        if hg != vg {
            return Err(bad(format!("{file}: header {hg} followed by values of {vg}")));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(bad(format!("{file}: {hg} has {} names and {} values", names.len(), values.len())));
        }
        for (n, v) in names.iter().zip(values) {
            let value = v.parse::<i64>().map_err(|_| bad(format!("{file}: {hg} {n} = {v:?} is not a number")))?;
            out.push(Counter { mib: hg.to_string(), name: n.to_string(), value });
        }
    }
    Ok(out)
}

/// /proc/net/snmp6: `Ip6InReceives 123` lines; the group is the name's
/// prefix (Ip6, Icmp6, Udp6, UdpLite6).
pub fn parse_snmp6(text: &str) -> Result<Vec<Counter>, Error> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(full), Some(v), None) = (f.next(), f.next(), f.next()) else {
            return Err(bad(format!("/proc/net/snmp6: bad line {line:?}")));
        };
        let split = ["UdpLite6", "Icmp6", "Udp6", "Ip6"].iter().find(|p| full.starts_with(*p));
        let (mib, name) = match split {
            Some(p) => (p.to_string(), full[p.len()..].to_string()),
            None => ("Ip6".to_string(), full.to_string()),
        };
        let value = v.parse::<i64>().map_err(|_| bad(format!("/proc/net/snmp6: {full} = {v:?} is not a number")))?;
        out.push(Counter { mib, name, value });
    }
    Ok(out)
}

/// /proc/net/sockstat(6): `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1`.
pub fn parse_sockstat(file: &str, text: &str) -> Result<Vec<Counter>, Error> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (proto, rest) = line.split_once(':').ok_or_else(|| bad(format!("{file}: bad line {line:?}")))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if !f.len().is_multiple_of(2) {
            return Err(bad(format!("{file}: odd fields in {line:?}")));
        }
        for kv in f.chunks(2) {
            let value = kv[1].parse::<i64>().map_err(|_| bad(format!("{file}: {proto} {} = {:?}", kv[0], kv[1])))?;
            out.push(Counter { mib: proto.to_string(), name: kv[0].to_string(), value });
        }
    }
    Ok(out)
}

fn read(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/thread-self/net/{name}")).ok()
}

/// Every SNMP/netstat counter of the calling thread's namespace.
pub fn read_counters() -> Result<Vec<Counter>, Error> {
    let mut out = Vec::new();
    for file in ["snmp", "netstat"] {
        if let Some(t) = read(file) {
            out.extend(parse_paired(&format!("/proc/net/{file}"), &t)?);
        }
    }
    if let Some(t) = read("snmp6") {
        out.extend(parse_snmp6(&t)?);
    }
    Ok(out)
}

/// The sockstat summary of the calling thread's namespace.
pub fn read_sockstat() -> Result<Vec<Counter>, Error> {
    let mut out = Vec::new();
    for file in ["sockstat", "sockstat6"] {
        if let Some(t) = read(file) {
            out.extend(parse_sockstat(&format!("/proc/net/{file}"), &t)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_formats() {
        let snmp = "Tcp: RtoAlgorithm RtoMin MaxConn ActiveOpens\nTcp: 1 200 -1 7\nUdp: InDatagrams\nUdp: 3\n";
        let c = parse_paired("/proc/net/snmp", snmp).unwrap();
        assert_eq!(c[2], Counter { mib: "Tcp".into(), name: "MaxConn".into(), value: -1 });
        assert_eq!(c.len(), 5);
        assert!(parse_paired("x", "Tcp: A B\nTcp: 1\n").is_err());
        assert!(parse_paired("x", "Tcp: A\nUdp: 1\n").is_err());
        assert!(parse_paired("x", "Tcp: A\n").is_err());
        let s6 = parse_snmp6("Ip6InReceives 10\nIcmp6InMsgs 2\nUdpLite6InErrors 0\n").unwrap();
        assert_eq!((s6[1].mib.as_str(), s6[1].name.as_str(), s6[1].value), ("Icmp6", "InMsgs", 2));
        assert_eq!(s6[2].mib, "UdpLite6");
        let ss = parse_sockstat("/proc/net/sockstat", "sockets: used 12\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1\n")
            .unwrap();
        assert_eq!(ss.len(), 6);
        assert_eq!((ss[3].mib.as_str(), ss[3].name.as_str(), ss[3].value), ("TCP", "tw", 2));
        assert!(parse_sockstat("x", "TCP: inuse\n").is_err());
    }

    #[test]
    fn reads_this_namespace() {
        let c = read_counters().unwrap();
        assert!(c.iter().any(|c| c.mib == "TcpExt" && c.name == "ListenOverflows"));
        assert!(read_sockstat().unwrap().iter().any(|c| c.mib == "TCP" && c.name == "inuse"));
    }
}
