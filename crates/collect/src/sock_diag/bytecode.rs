//! The inet_diag filter program (INET_DIAG_REQ_BYTECODE): conditions on
//! ports and addresses compiled into the kernel's bytecode, so a dump
//! sends only the sockets that pass (what makes `ss sport = :80` fast).
//! Layouts from linux/inet_diag.h.

use std::net::IpAddr;

use super::inet::{AF_INET, AF_INET6};

/// One condition of an inet_diag filter program (linux/inet_diag.h). A
/// program is the AND of its conditions; the kernel then sends only the
/// sockets that pass, which is what makes `ss sport = :80` fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    LocalPortGe(u16),
    LocalPortLe(u16),
    RemotePortGe(u16),
    RemotePortLe(u16),
    LocalAddr(IpAddr),
    RemoteAddr(IpAddr),
}

const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
const INET_DIAG_BC_D_GE: u8 = 4;
const INET_DIAG_BC_D_LE: u8 = 5;
const INET_DIAG_BC_S_COND: u8 = 7;
const INET_DIAG_BC_D_COND: u8 = 8;

impl Cond {
    fn len(&self) -> usize {
        match self {
            Cond::LocalAddr(a) | Cond::RemoteAddr(a) => 4 + 8 + if a.is_ipv4() { 4 } else { 16 },
            _ => 8, // the op, then a second op whose `no` carries the port
        }
    }
}

/// Compile `conds` (ANDed) into inet_diag bytecode. Each op jumps to the
/// next op when true (`yes`) and past the end of the program when false
/// (`no` = remaining + 4), which the kernel reads as "reject".
pub fn bytecode(conds: &[Cond]) -> Vec<u8> {
    let total: usize = conds.iter().map(Cond::len).sum();
    let mut out = Vec::with_capacity(total);
    for c in conds {
        let remaining = total - out.len();
        let (len, no) = (c.len() as u8, (remaining + 4) as u16);
        let op = |code: u8| [[code, len].as_slice(), &no.to_ne_bytes()].concat();
        match *c {
            Cond::LocalPortGe(p) | Cond::LocalPortLe(p) | Cond::RemotePortGe(p) | Cond::RemotePortLe(p) => {
                let code = match c {
                    Cond::LocalPortGe(_) => INET_DIAG_BC_S_GE,
                    Cond::LocalPortLe(_) => INET_DIAG_BC_S_LE,
                    Cond::RemotePortGe(_) => INET_DIAG_BC_D_GE,
                    _ => INET_DIAG_BC_D_LE,
                };
                out.extend(op(code));
                out.extend([0, 0]);
                out.extend(p.to_ne_bytes());
            }
            Cond::LocalAddr(a) | Cond::RemoteAddr(a) => {
                out.extend(op(if matches!(c, Cond::LocalAddr(_)) { INET_DIAG_BC_S_COND } else { INET_DIAG_BC_D_COND }));
                // struct inet_diag_hostcond: family, prefix_len, pad, int port (-1: any), address.
                let (family, bits, bytes) = match a {
                    IpAddr::V4(v4) => (AF_INET, 32, v4.octets().to_vec()),
                    IpAddr::V6(v6) => (AF_INET6, 128, v6.octets().to_vec()),
                };
                out.extend([family, bits, 0, 0]);
                out.extend((-1i32).to_ne_bytes());
                out.extend(bytes);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock_diag::inet::{request_body_filtered, Extensions, INET_DIAG_REQ_BYTECODE, IPPROTO_TCP};

    #[test]
    fn bytecode_layout() {
        let bc = bytecode(&[Cond::LocalPortGe(80), Cond::RemoteAddr("10.0.0.1".parse().unwrap())]);
        // op 1: S_GE, yes 8, no = 24 + 4 (past the end); then the port.
        assert_eq!(&bc[..8], &[INET_DIAG_BC_S_GE, 8, 28, 0, 0, 0, 80, 0]);
        // op 2: D_COND, yes 16, no = 16 + 4; hostcond AF_INET/32, port -1, address.
        assert_eq!(&bc[8..12], &[INET_DIAG_BC_D_COND, 16, 20, 0]);
        assert_eq!(&bc[12..16], &[AF_INET, 32, 0, 0]);
        assert_eq!(&bc[16..20], &(-1i32).to_ne_bytes());
        assert_eq!(&bc[20..24], &[10, 0, 0, 1]);
        let body = request_body_filtered(AF_INET, IPPROTO_TCP, 1, Extensions::default(), &[Cond::LocalPortLe(1)]);
        assert_eq!(body.len(), 56 + 4 + 8);
        assert_eq!(u16::from_ne_bytes([body[58], body[59]]), INET_DIAG_REQ_BYTECODE);
    }
}
