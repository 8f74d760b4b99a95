//! uid → user name from /etc/passwd, read once per scan. (No NSS: a host
//! whose users live in LDAP shows null names for them; the uid stays.)

use std::collections::HashMap;

pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

pub fn load() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd").map(|t| parse_passwd(&t)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_passwd_lines() {
        let m = super::parse_passwd("root:x:0:0:root:/root:/bin/bash\n# c\nnobody:x:65534:65534::/:/x\nbad\n");
        assert_eq!(m[&0], "root");
        assert_eq!(m[&65534], "nobody");
        assert_eq!(m.len(), 2);
    }
}
