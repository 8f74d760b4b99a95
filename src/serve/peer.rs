//! Who is on the other end of an HTTP connection, for the per-peer caps
//! (`connections.rs`). Every local user connects from the same loopback
//! address as a local Prometheus, so an address alone cannot keep one
//! user's connections from crowding out another's: a connection from this
//! host is keyed by the uid that owns the connecting socket, which the
//! kernel tells (an exact sock_diag lookup of the peer's socket, one
//! request and one answer, never a dump). A remote peer is keyed by its
//! address (an IPv6 peer by its /64, which one host usually holds whole).

use std::net::{IpAddr, SocketAddr};

use crate::collect::netlink::{frames, request, NLMSG_ERROR, NLM_F_REQUEST};
use crate::collect::sock_diag::inet::{
    request_body, Extensions, InetDiagMsg, AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY,
};

/// The key connections are capped and evicted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A socket of this host (this network namespace), by its owner.
    User(u32),
    /// A socket elsewhere, by address.
    Address(IpAddr),
}

/// The /64 of an IPv6 address; an IPv4 address as it is. A v4-mapped
/// IPv6 address is its IPv4 address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// A sock_diag socket, opened on first use and kept.
#[derive(Default)]
pub struct Identify {
    socket: Option<netlink_sys::Socket>,
    sequence: u32,
}

impl Identify {
    /// The key of the connection from `peer` to our `local` address.
    pub fn peer(&mut self, local: SocketAddr, peer: SocketAddr) -> Peer {
        match self.owner(local, peer) {
            Some(uid) => Peer::User(uid),
            None => Peer::Address(address_key(peer.ip())),
        }
    }

    /// The uid owning the socket at `peer` whose other end is `local`, if
    /// that socket is on this host. Never blocks: the kernel answers an
    /// exact lookup inside the send, so an answer not there at once is
    /// taken as none.
    fn owner(&mut self, local: SocketAddr, peer: SocketAddr) -> Option<u32> {
        let (family, src, dst) = match (peer.ip(), local.ip()) {
            (IpAddr::V4(p), IpAddr::V4(l)) => (AF_INET, p.octets().to_vec(), l.octets().to_vec()),
            (IpAddr::V6(p), IpAddr::V6(l)) => (AF_INET6, p.octets().to_vec(), l.octets().to_vec()),
            _ => return None,
        };
        if self.socket.is_none() {
            let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG).ok()?;
            socket.bind_auto().ok()?;
            socket.connect(&netlink_sys::SocketAddr::new(0, 0)).ok()?;
            socket.set_non_blocking(true).ok()?;
            self.socket = Some(socket);
        }
        let socket = self.socket.as_ref()?;
        // struct inet_diag_req_v2: the socket id names the peer's socket
        // (its local end is the peer's address, its remote end ours).
        let mut body = request_body(family, IPPROTO_TCP, u32::MAX, Extensions::default());
        body.get_mut(8..10)?.copy_from_slice(&peer.port().to_be_bytes());
        body.get_mut(10..12)?.copy_from_slice(&local.port().to_be_bytes());
        body.get_mut(12..12 + src.len())?.copy_from_slice(&src);
        body.get_mut(28..28 + dst.len())?.copy_from_slice(&dst);
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        // Answers of earlier lookups that came late are read out first.
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        while socket.recv(&mut buf, libc::MSG_DONTWAIT).is_ok() {
            buf.clear();
        }
        socket.send(&request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, sequence, &body), 0).ok()?;
        buf.clear();
        socket.recv(&mut buf, libc::MSG_DONTWAIT).ok()?;
        for frame in frames(&buf) {
            let frame = frame.ok()?;
            if frame.sequence != sequence || frame.message_type == NLMSG_ERROR {
                continue;
            }
            if frame.message_type == SOCK_DIAG_BY_FAMILY {
                let msg = InetDiagMsg::parse(frame.payload).ok()?;
                return (msg.local_port() == peer.port() && msg.remote_port() == local.port()).then(|| msg.uid());
            }
        }
        None
    }
}

/// Which open connection to close for a newcomer from `peer`, if one must
/// be: of `peer`'s own once it holds `per_peer`, else (at `total` open) of
/// the peer holding the most. Among that peer's connections the one with
/// the lowest rank goes; each server ranks by what it would lose least
/// (/metrics: idle and quiet longest; Flight: not yet authenticated).
pub fn victim<K: Ord>(
    open: impl Iterator<Item = (u64, Peer, K)> + Clone,
    peer: Peer,
    per_peer: usize,
    total: usize,
) -> Option<u64> {
    let mut held: std::collections::HashMap<Peer, usize> = std::collections::HashMap::new();
    for (_, p, _) in open.clone() {
        *held.entry(p).or_default() += 1;
    }
    let from = if held.get(&peer).copied().unwrap_or(0) >= per_peer {
        peer
    } else if held.values().sum::<usize>() >= total {
        held.into_iter().max_by_key(|&(_, n)| n).map(|(p, _)| p)?
    } else {
        return None;
    };
    open.filter(|(_, p, _)| *p == from).min_by(|a, b| a.2.cmp(&b.2)).map(|(id, _, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_connection_is_keyed_by_its_owner_and_a_missing_one_by_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, from) = listener.accept().unwrap();
        let mut identify = Identify::default();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(identify.peer(server.local_addr().unwrap(), from), Peer::User(me));
        drop((client, server));
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(identify.peer(listener.local_addr().unwrap(), nobody), Peer::Address("127.0.0.1".parse().unwrap()));
        assert_eq!(address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
