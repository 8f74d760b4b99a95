//! /proc/net/nf_conntrack and /proc/net/stat/nf_conntrack: the text
//! fallback of the conntrack tables where ctnetlink is refused. The text
//! lacks the entry id and most status bits; those are null or inferred
//! (NAT from the tuples, as the kernel sets it).

use super::{
    Conntrack, Counters, CpuStats, Tuple, IPS_ASSURED, IPS_DST_NAT, IPS_SEEN_REPLY, IPS_SRC_NAT, STATS, TCP_STATES,
};
use crate::Error;

fn set_tuple(t: &mut Tuple, c: &mut Counters, key: &str, v: &str) -> Option<()> {
    match key {
        "src" => t.src = Some(v.parse().ok()?),
        "dst" => t.dst = Some(v.parse().ok()?),
        "sport" => t.sport = Some(v.parse().ok()?),
        "dport" => t.dport = Some(v.parse().ok()?),
        "type" => t.icmp_type = Some(v.parse().ok()?),
        "code" => t.icmp_code = Some(v.parse().ok()?),
        "id" => t.icmp_id = Some(v.parse().ok()?),
        "packets" => c.packets = Some(v.parse().ok()?),
        "bytes" => c.bytes = Some(v.parse().ok()?),
        _ => return None,
    }
    Some(())
}

/// Parse one line; `now_s` turns `delta-time` into a start time. The
/// error says what is wrong; [`parse`] says where.
fn parse_line(line: &str, now_s: u64) -> Result<Conntrack, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return Err(format!("expected at least 6 fields, found {}", f.len()));
    }
    let family = match f[0] {
        "ipv4" => libc::AF_INET as u8,
        "ipv6" => libc::AF_INET6 as u8,
        other => return Err(format!("unknown family {other}")),
    };
    let protocol: u8 = f[3].parse().map_err(|_| "bad protocol number")?;
    let mut ct = Conntrack { family, ..Default::default() };
    ct.timeout_s = Some(f[4].parse().map_err(|_| "bad timeout")?);
    let mut rest = &f[5..];
    if let Some(state) = rest.first().filter(|s| !s.contains('=') && !s.starts_with('[')) {
        ct.tcp_state = TCP_STATES.iter().position(|n| n == state).map(|i| i as u8);
        rest = &rest[1..];
    }
    let mut status = super::IPS_SEEN_REPLY | 1 << 3; // listed entries are confirmed
    let mut in_reply = false;
    for tok in rest {
        if let Some(flag) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            match flag {
                "UNREPLIED" => status &= !IPS_SEEN_REPLY,
                "ASSURED" => status |= IPS_ASSURED,
                "OFFLOAD" => status |= 1 << 14,
                "HW_OFFLOAD" => status |= 1 << 15,
                _ => {}
            }
            continue;
        }
        let Some((k, v)) = tok.split_once('=') else { return Err(format!("unexpected token {tok}")) };
        match k {
            "src" if ct.orig.src.is_some() => {
                in_reply = true;
                set_tuple(&mut ct.reply, &mut ct.reply_counters, k, v)
            }
            "mark" => v.parse().ok().map(|m| ct.mark = Some(m)),
            "zone" => v.parse().ok().map(|z| ct.zone = Some(z)),
            "use" => v.parse().ok().map(|u| ct.use_count = Some(u)),
            "secctx" => {
                ct.secctx = Some(v.to_string());
                Some(())
            }
            "delta-time" => v.parse::<u64>().ok().map(|d| ct.start_ns = Some(now_s.saturating_sub(d) * 1_000_000_000)),
            _ if in_reply => set_tuple(&mut ct.reply, &mut ct.reply_counters, k, v),
            _ => set_tuple(&mut ct.orig, &mut ct.orig_counters, k, v),
        }
        .ok_or_else(|| format!("bad value in {tok}"))?;
    }
    ct.orig.protocol = Some(protocol);
    ct.reply.protocol = Some(protocol);
    if ct.reply.dst.is_some() && (ct.reply.dst != ct.orig.src || ct.reply.dport != ct.orig.sport) {
        status |= IPS_SRC_NAT;
    }
    if ct.reply.src.is_some() && (ct.reply.src != ct.orig.dst || ct.reply.sport != ct.orig.dport) {
        status |= IPS_DST_NAT;
    }
    ct.status = Some(status);
    Ok(ct)
}

pub fn parse(text: &str, now_s: u64) -> Result<Vec<Conntrack>, Error> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l, now_s).map_err(|e| Error::ProcFormat(format!("/proc/net/nf_conntrack line {}: {e}", i + 1)))
        })
        .collect()
}

/// /proc/net/stat/nf_conntrack: a header of counter names, then one line
/// of hex values per CPU.
pub fn parse_stats(text: &str) -> Result<Vec<CpuStats>, Error> {
    let bad = Error::ProcFormat;
    let mut lines = text.lines();
    let header: Vec<&str> =
        lines.next().ok_or_else(|| bad("empty statistics file".into()))?.split_whitespace().collect();
    let mut out = Vec::new();
    for (cpu, line) in lines.enumerate() {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(bad(format!(
                "statistics line {} has {} values for {} names",
                cpu + 2,
                values.len(),
                header.len()
            )));
        }
        let mut s = CpuStats { cpu: cpu as u16, ..Default::default() };
        for (name, v) in header.iter().zip(&values) {
            let name = match *name {
                "icmp_error" => "error",
                "chainlength" => "chaintoolong",
                "clashres" => "clash_resolve",
                n => n,
            };
            if let Some((attr, _)) = STATS.iter().find(|(_, n)| *n == name) {
                s.counters[*attr] = Some(u32::from_str_radix(v, 16).map_err(|_| bad(format!("bad hex value {v}")))?);
            }
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::status_names;

    // Lines as this kernel writes them.
    const TEXT: &str = "ipv4     2 tcp      6 431999 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=41470 dport=8080 packets=3 bytes=169 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=41470 packets=2 bytes=112 [ASSURED] mark=0 zone=0 delta-time=5 use=2
ipv4     2 udp      17 29 src=127.0.0.1 dst=127.0.0.1 sport=53299 dport=5353 packets=1 bytes=29 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=5353 dport=53299 packets=0 bytes=0 mark=0 zone=0 use=2
ipv4     2 tcp      6 117 SYN_SENT src=10.231.3.1 dst=10.231.3.2 sport=40000 dport=9000 [UNREPLIED] src=10.231.3.2 dst=10.231.3.11 sport=9000 dport=40000 mark=7 zone=0 use=2
";

    #[test]
    fn parses_entries() {
        let rows = parse(TEXT, 1000).unwrap();
        assert_eq!(rows.len(), 3);
        let t = &rows[0];
        assert_eq!(t.tcp_state, Some(3));
        assert_eq!((t.orig.sport, t.orig.dport, t.reply.sport), (Some(41470), Some(8080), Some(8080)));
        assert_eq!((t.orig_counters.packets, t.reply_counters.bytes), (Some(3), Some(112)));
        assert_eq!(t.start_ns, Some(995 * 1_000_000_000));
        assert_eq!(status_names(t.status.unwrap()), "SEEN_REPLY,ASSURED,CONFIRMED");
        let u = &rows[1];
        assert_eq!((u.tcp_state, u.timeout_s), (None, Some(29)));
        assert_eq!(status_names(u.status.unwrap()), "CONFIRMED");
        let nat = &rows[2];
        assert_eq!(nat.mark, Some(7));
        assert_eq!(status_names(nat.status.unwrap()), "CONFIRMED,SRC_NAT");
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("ipv4 2 tcp 6\n", 0).is_err());
        assert!(parse("ipx 2 tcp 6 1 x=1 y=2\n", 0).is_err());
        assert!(parse("ipv4 2 tcp 6 1 src=nothere\n", 0).unwrap_err().to_string().contains("line 1"));
        for cut in 0..TEXT.len() {
            let _ = parse(&TEXT[..cut], 0);
        }
    }

    #[test]
    fn parses_stats() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n00000002  00000000  00000000 00000000 00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000003\n";
        let s = parse_stats(text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].counters[4], Some(16)); // invalid
        assert_eq!(s[0].counters[13], Some(3)); // search_restart
        assert!(parse_stats("a b\n1\n").is_err());
    }
}
