//! Port numbers by service name, from /etc/services, so `--param
//! port=https` means 443 as it does to ss and lsof.

/// The file is small; anything beyond this is not a services file.
const MAX_BYTES: u64 = 4 << 20;

/// The port `name` stands for in services-file `text`: a service name or
/// alias, TCP's entry first (then any protocol's).
pub fn lookup_in(text: &str, name: &str) -> Option<u16> {
    let mut other = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(service), Some(port_proto)) = (words.next(), words.next()) else { continue };
        if service != name && !words.any(|alias| alias == name) {
            continue;
        }
        let Some((port, proto)) = port_proto.split_once('/') else { continue };
        let Ok(port) = port.parse::<u16>() else { continue };
        if proto == "tcp" {
            return Some(port);
        }
        other.get_or_insert(port);
    }
    other
}

/// The port of service `name` from /etc/services.
pub fn lookup(name: &str) -> Option<u16> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/etc/services").ok()?.take(MAX_BYTES).read_to_string(&mut text).ok()?;
    lookup_in(&text, name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_aliases() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP\nsyslog\t\t514/udp\nhttps 443/tcp\nhttps 443/udp\n";
        assert_eq!(super::lookup_in(text, "http"), Some(80));
        assert_eq!(super::lookup_in(text, "www"), Some(80));
        assert_eq!(super::lookup_in(text, "syslog"), Some(514));
        assert_eq!(super::lookup_in(text, "https"), Some(443));
        assert_eq!(super::lookup_in(text, "WorldWideWeb"), None, "comments are not aliases");
        assert_eq!(super::lookup_in(text, "nosuch"), None);
    }
}
