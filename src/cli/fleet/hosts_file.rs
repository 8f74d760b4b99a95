//! The `--hosts` file: one host per line, `ADDR:PORT [NAME]`, `#`
//! comments and blank lines. It is read as any file sockql did not write:
//! within a size bound, a bound on hosts and on a line's length, and an
//! error names the line without quoting it (a file named by mistake, or
//! under a restricted sudo rule, is not echoed).

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// Hosts one file may list: ten thousand is the largest fleet sockql is
/// modelled for (BENCHMARKS.md), and each host costs a view branch.
pub const MAX_HOSTS: usize = 10_000;
/// A line's length: an address, a port and a name fit many times over.
pub const MAX_LINE: usize = 512;
/// A name is the `host` value and goes into SQL as a literal: kept to the
/// characters of host names, addresses and labels.
const MAX_NAME: usize = 253;

/// One host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The `host` column's value: NAME, or the address as written.
    pub name: String,
    /// What the line said (`ADDR:PORT`), for messages and TLS names.
    pub target: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// The name TLS verifies: the DNS name or IP address of `target`.
    pub server_name: String,
}

/// Read and parse `path` (see the module doc).
pub fn read(path: &Path) -> anyhow::Result<Vec<Host>> {
    let text = crate::query::files::read_text_file(path, crate::query::files::Read::Named, "--hosts file")?;
    parse(&text).map_err(|e| anyhow::anyhow!("--hosts {}: {e}", path.display()))
}

/// Parse the text of a hosts file.
pub fn parse(text: &str) -> Result<Vec<Host>, String> {
    let mut hosts = Vec::new();
    let mut names = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.len() > MAX_LINE {
            return Err(format!("line {n}: longer than {MAX_LINE} bytes"));
        }
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if hosts.len() == MAX_HOSTS {
            return Err(format!("line {n}: more than {MAX_HOSTS} hosts"));
        }
        let mut words = line.split_whitespace();
        let target = words.next().unwrap_or("");
        let name = words.next();
        if words.next().is_some() {
            return Err(format!("line {n}: expected ADDR:PORT [NAME], found more words"));
        }
        let (addr, server_name) = address(target).map_err(|e| format!("line {n}: {e}"))?;
        let name = match name {
            Some(name) => {
                check_name(name).map_err(|e| format!("line {n}: {e}"))?;
                name.to_string()
            }
            None => target.to_string(),
        };
        if !names.insert(name.clone()) {
            return Err(format!("line {n}: the host name is already used by an earlier line"));
        }
        hosts.push(Host { name, target: target.to_string(), addr, server_name });
    }
    if hosts.is_empty() {
        return Err("no hosts (one ADDR:PORT [NAME] per line)".into());
    }
    Ok(hosts)
}

/// `ADDR:PORT`, `[v6]:PORT` or `name:PORT`; a DNS name is resolved once,
/// here (its first address).
fn address(target: &str) -> Result<(SocketAddr, String), String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("the port is not a number from 1 to 65535".into());
        }
        return Ok((addr, addr.ip().to_string()));
    }
    let (host, port) = target.rsplit_once(':').ok_or("expected ADDR:PORT")?;
    let port: u16 = port.parse().map_err(|_| "the port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port is not a number from 1 to 65535".into());
    }
    check_name(host).map_err(|_| "the address is neither an IP address nor a DNS name")?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the address: {e}"))?
        .next()
        .ok_or("the name resolves to no address")?;
    Ok((addr, host.to_string()))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(format!("a NAME is 1 to {MAX_NAME} letters, digits and . - _ : [ ]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_names() {
        let hosts =
            parse("# fleet\n\n10.0.0.1:7000 web-1\n  [::1]:7001   # no name\n127.0.0.1:7002 db_2 # c\n").unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].name, "web-1");
        assert_eq!(hosts[0].addr, "10.0.0.1:7000".parse().unwrap());
        assert_eq!(hosts[1].name, "[::1]:7001");
        assert_eq!(hosts[1].server_name, "::1");
        assert_eq!(hosts[2].name, "db_2");
    }

    #[test]
    fn errors_name_the_line_without_quoting_it() {
        let e = parse("10.0.0.1:1\nroot:$y$j9T$abc:19000:0:99999:7:::\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(!e.contains("j9T"), "{e}");
        assert!(parse("10.0.0.1:1 a\n10.0.0.2:1 a\n").unwrap_err().starts_with("line 2: the host name"));
        assert!(parse("10.0.0.1:0\n").unwrap_err().starts_with("line 1:"));
        assert!(parse("10.0.0.1:1 a b\n").unwrap_err().contains("more words"));
        assert!(parse("10.0.0.1:1 it's\n").unwrap_err().contains("NAME"));
        assert!(parse("# nothing\n").unwrap_err().contains("no hosts"));
    }

    #[test]
    fn bounds() {
        let long = format!("10.0.0.1:1 {}\n", "a".repeat(MAX_LINE));
        assert!(parse(&long).unwrap_err().contains("longer than"));
        let many: String = (0..=MAX_HOSTS).map(|i| format!("10.0.{}.{}:1\n", i / 250, i % 250 + 1)).collect();
        assert_eq!(parse(&many).unwrap_err(), format!("line {}: more than {MAX_HOSTS} hosts", MAX_HOSTS + 1));
    }
}
