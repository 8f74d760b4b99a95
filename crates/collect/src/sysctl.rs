//! Kernel parameters from /proc/sys, named as `sysctl` names them
//! (net.ipv4.ip_local_port_range). Values are the file text with runs of
//! white space folded to one space (`32768 60999`).

use std::path::{Path, PathBuf};

pub const ROOT: &str = "/proc/sys";

/// `net.ipv4.tcp_fin_timeout` → /proc/sys/net/ipv4/tcp_fin_timeout.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(ROOT).join(name.replace('.', "/"))
}

pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One parameter's value; `None` if it does not exist or cannot be read
/// (some are write-only, like net.ipv4.route.flush).
pub fn read(name: &str) -> Option<String> {
    std::fs::read_to_string(path_of(name)).ok().map(|t| normalise(&t))
}

/// Every readable parameter under `prefix` (e.g. "net"), sorted by name.
pub fn walk(prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![path_of(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => {
                    let Ok(text) = std::fs::read_to_string(&path) else { continue };
                    let Ok(rel) = path.strip_prefix(ROOT) else { continue };
                    let name = rel.to_string_lossy().replace('/', ".");
                    out.push((name, normalise(&text)));
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_range_like_sysctl() {
        let v = read("net.ipv4.ip_local_port_range").expect("always present");
        let parts: Vec<u32> = v.split(' ').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[0] <= parts[1]);
        assert_eq!(normalise("32768\t60999\n"), "32768 60999");
        let all = walk("net");
        assert!(all.iter().any(|(n, val)| n == "net.ipv4.ip_local_port_range" && *val == v));
        assert!(all.iter().all(|(n, _)| n.starts_with("net.")));
        assert_eq!(read("net.no.such.thing"), None);
    }
}
