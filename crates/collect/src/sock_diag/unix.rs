//! Unix domain sockets through NETLINK_SOCK_DIAG (UNIX_DIAG), as `ss -x`
//! reads them. Layouts from linux/unix_diag.h.

use crate::netlink::NetlinkError;
use crate::nla;

const AF_UNIX: u8 = libc::AF_UNIX as u8;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_UID: u16 = 7;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnixSocket {
    /// SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5.
    pub kind: u8,
    /// TCP state numbering: 1 ESTAB, 2 connecting, 7 UNCONN, 10 LISTEN.
    pub state: u8,
    pub inode: u32,
    /// Bound path; abstract names start with '@' as ss prints them.
    pub path: Option<String>,
    pub peer_inode: Option<u32>,
    pub recv_q: Option<u32>,
    pub send_q: Option<u32>,
    pub uid: Option<u32>,
}

pub fn type_name(kind: u8) -> &'static str {
    match kind {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "unknown",
    }
}

/// Body of a `struct unix_diag_req` asking for every socket.
pub fn request_body() -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[0] = AF_UNIX;
    b[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    b[12..16].copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID).to_ne_bytes());
    b[16..24].copy_from_slice(&[0xff; 8]); // any cookie
    b
}

/// Parse one `struct unix_diag_msg` and its attributes.
pub fn parse(payload: &[u8]) -> Result<UnixSocket, NetlinkError> {
    if payload.len() < 16 || payload[0] != AF_UNIX {
        return Err(NetlinkError::Malformed(format!("unix_diag_msg of {} bytes", payload.len())));
    }
    let mut s = UnixSocket {
        kind: payload[1],
        state: payload[2],
        inode: u32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")),
        ..Default::default()
    };
    for a in nla::iter(&payload[16..]) {
        let (kind, v) = a?;
        match kind {
            UNIX_DIAG_NAME => {
                let text = match v.split_first() {
                    Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest).trim_end_matches('\0')),
                    _ => String::from_utf8_lossy(v).trim_end_matches('\0').to_string(),
                };
                s.path = Some(text);
            }
            UNIX_DIAG_PEER => {
                s.peer_inode = Some(u32::from_ne_bytes(
                    v.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| NetlinkError::Malformed("short UNIX_DIAG_PEER".into()))?,
                ))
            }
            UNIX_DIAG_RQLEN => {
                let b: [u8; 8] = v
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| NetlinkError::Malformed("short UNIX_DIAG_RQLEN".into()))?;
                s.recv_q = Some(u32::from_ne_bytes(b[..4].try_into().expect("4")));
                s.send_q = Some(u32::from_ne_bytes(b[4..].try_into().expect("4")));
            }
            UNIX_DIAG_UID => {
                s.uid = Some(u32::from_ne_bytes(
                    v.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| NetlinkError::Malformed("short UNIX_DIAG_UID".into()))?,
                ))
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Parse /proc/net/unix (the fallback where netlink is refused):
/// `Num RefCount Protocol Flags Type St Inode Path`. The text has no peer,
/// queues or uid; the state comes from `St` (socket state) and the
/// __SO_ACCEPTCON flag (listening), in the numbering UNIX_DIAG uses.
pub fn parse_proc(text: &str) -> Result<Vec<UnixSocket>, crate::Error> {
    const ACCEPTCON: u32 = 1 << 16;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || crate::Error::ProcFormat(format!("line {}: unexpected format", n + 1));
        // Seven fields, then the path: the rest of the line (spaces kept).
        let mut rest = line.trim_start();
        let mut f = Vec::with_capacity(7);
        for _ in 0..7 {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            f.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
        let hex32 = |s: &str| u32::from_str_radix(s, 16).map_err(|_| bad());
        let (flags, kind, st) = (hex32(f[3])?, hex32(f[4])?, hex32(f[5])?);
        let inode: u64 = f[6].parse().map_err(|_| bad())?;
        let path = (!rest.is_empty()).then(|| rest.to_string());
        let state = match (flags & ACCEPTCON != 0, st) {
            (true, _) => 10,
            (false, 3) => 1,
            (false, 2) => 2,
            _ => 7,
        };
        out.push(UnixSocket { kind: kind as u8, state, inode: inode as u32, path, ..Default::default() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn finds_a_listener_and_a_connected_pair() {
        let dir = std::env::temp_dir().join(format!("sockql-unix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let ino = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino() as u32;
        use std::os::fd::AsRawFd;
        let (li, ai, bi) = (ino(l.as_raw_fd()), ino(a.as_raw_fd()), ino(b.as_raw_fd()));
        let mut found = Vec::new();
        super::super::SockDiag::open()
            .unwrap()
            .unix(|s| {
                if [li, ai, bi].contains(&s.inode) {
                    found.push(s.clone());
                }
                Ok::<_, crate::Error>(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
        // /proc/net/unix agrees on kind, state, inode and path.
        let text = std::fs::read_to_string("/proc/thread-self/net/unix").unwrap();
        let from_proc: Vec<UnixSocket> =
            parse_proc(&text).unwrap().into_iter().filter(|s| [li, ai, bi].contains(&s.inode)).collect();
        assert_eq!(from_proc.len(), 3, "{from_proc:?}");
        for p in &from_proc {
            let n = found.iter().find(|s| s.inode == p.inode).unwrap();
            assert_eq!((p.kind, p.state, &p.path), (n.kind, n.state, &n.path), "{p:?} vs {n:?}");
        }
        found.sort_by_key(|s| s.inode);
        let listener = found.iter().find(|s| s.inode == li).unwrap();
        assert_eq!((listener.kind, listener.state), (1, 10));
        assert_eq!(listener.path.as_deref(), path.to_str());
        let pa = found.iter().find(|s| s.inode == ai).unwrap();
        assert_eq!((pa.state, pa.peer_inode), (1, Some(bi)));
        assert_eq!(pa.uid, Some(nix::unistd::getuid().as_raw()));
        std::fs::remove_dir_all(dir).unwrap();
        // Malformed input is an error, not a panic.
        assert!(parse(&[1, 1, 1]).is_err());
        let mut bad = vec![AF_UNIX, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        bad.extend([8, 0, UNIX_DIAG_PEER as u8, 0, 1, 2]);
        assert!(parse(&bad).is_err());
    }
}
