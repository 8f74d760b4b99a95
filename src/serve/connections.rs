//! The HTTP connections open at once, and which one is closed when a new
//! one arrives at a cap. A new connection is always admitted (a refused
//! one could be Prometheus, and a client that holds every slot would then
//! lock scrapes out); to make room the server closes a connection of the
//! peer that holds the most (the newcomer's own peer once it holds
//! [`PER_PEER`]), one between requests first, the one quiet longest. So
//! whatever one user (or remote address) does with connections, it only
//! ever displaces its own, and a scrape's connection stays open.
//!
//! Everything here lives on the server's connection thread (a LocalSet):
//! plain `Rc` and `Cell`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tokio::time::Instant;

use super::peer::Peer;

/// HTTP connections open at once (Prometheus keeps one per target).
pub const TOTAL: usize = 64;
/// Connections one peer (a local user, a remote address) may hold.
pub const PER_PEER: usize = 16;

/// One open connection as the server sees it.
pub struct Conn {
    pub peer: Peer,
    /// A request is being answered (from its head read to its response
    /// handed to the connection).
    busy: Cell<bool>,
    /// When it last changed: accepted, a request began or ended, bytes came.
    last: Cell<Instant>,
    /// Between requests with no byte of the next one read: since when.
    idle_since: Cell<Option<Instant>>,
    /// Closed to make room (the connection's task ends on it).
    pub evicted: tokio::sync::Notify,
    /// When writing the current response must be done.
    pub write_deadline: Cell<Option<Instant>>,
}

impl Conn {
    fn new(peer: Peer) -> Self {
        let now = Instant::now();
        Conn {
            peer,
            busy: Cell::new(false),
            last: Cell::new(now),
            idle_since: Cell::new(Some(now)),
            evicted: tokio::sync::Notify::new(),
            write_deadline: Cell::new(None),
        }
    }

    /// Bytes arrived: the next request's head has begun.
    pub fn read_some(&self) {
        self.last.set(Instant::now());
        self.idle_since.set(None);
    }

    /// Between requests, and since when (None while a request or its
    /// head is under way).
    pub fn idle_since(&self) -> Option<Instant> {
        if self.busy.get() {
            None
        } else {
            self.idle_since.get()
        }
    }
}

/// Marks its connection busy while it lives.
pub struct Busy(Rc<Conn>);

impl Busy {
    pub fn new(conn: &Rc<Conn>) -> Self {
        conn.busy.set(true);
        conn.last.set(Instant::now());
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0.busy.set(false);
        self.0.last.set(now);
        self.0.idle_since.set(Some(now));
    }
}

/// Every open connection.
#[derive(Default)]
pub struct Connections {
    open: RefCell<HashMap<u64, Rc<Conn>>>,
    next: Cell<u64>,
}

/// A connection's place among the open ones; dropping it frees the place.
pub struct Admitted {
    connections: Rc<Connections>,
    id: u64,
    pub conn: Rc<Conn>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.borrow_mut().remove(&self.id);
    }
}

/// Which open connection to close for a newcomer from `peer`, if one must
/// be: of `peer`'s own once it holds [`PER_PEER`], else (at [`TOTAL`]) of
/// the peer holding the most; between requests before busy, the one quiet
/// longest first.
fn victim(open: &HashMap<u64, Rc<Conn>>, peer: Peer) -> Option<u64> {
    let ranked = open.iter().map(|(&id, c)| (id, c.peer, (c.busy.get(), c.last.get())));
    super::peer::victim(ranked, peer, PER_PEER, TOTAL)
}

impl Connections {
    /// Admit a connection from `peer`, closing another first if a cap is
    /// reached.
    pub fn admit(self: &Rc<Self>, peer: Peer) -> Admitted {
        let mut open = self.open.borrow_mut();
        while let Some(id) = victim(&open, peer) {
            if let Some(gone) = open.remove(&id) {
                gone.evicted.notify_one();
            }
        }
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        let conn = Rc::new(Conn::new(peer));
        open.insert(id, conn.clone());
        Admitted { connections: self.clone(), id, conn }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_from_one_peer_never_closes_another_peers_connection() {
        let all = Rc::new(Connections::default());
        let scraper = all.admit(Peer::User(0));
        let mut flood = Vec::new();
        for i in 0..1000 {
            let c = all.admit(Peer::User(65534));
            // Half of them busy (waiting on a scrape), the rest idle.
            let busy = (i % 2 == 0).then(|| Busy::new(&c.conn));
            flood.push((c, busy));
            flood.retain(|(c, _)| all.open.borrow().contains_key(&c.id));
            assert!(all.len() <= TOTAL);
        }
        assert!(all.open.borrow().contains_key(&scraper.id), "the scrape's connection stayed");
        assert_eq!(flood.len(), PER_PEER, "the flooding user keeps only its own cap");
        // The flood closed its own idle connections before its busy ones.
        assert!(flood.iter().filter(|(_, b)| b.is_some()).count() >= PER_PEER / 2);
    }

    #[tokio::test]
    async fn at_the_total_cap_the_peer_holding_most_gives_way() {
        let all = Rc::new(Connections::default());
        let mut held = Vec::new();
        // Remote addresses, PER_PEER - 1 each, fill the server.
        for i in 0..TOTAL {
            let peer = Peer::Address(std::net::IpAddr::from([10, 0, 0, (i / (PER_PEER - 1)) as u8]));
            held.push(all.admit(peer));
        }
        assert_eq!(all.len(), TOTAL);
        let newcomer = all.admit(Peer::User(0));
        assert_eq!(all.len(), TOTAL);
        let gone: Vec<_> = held.iter().filter(|a| !all.open.borrow().contains_key(&a.id)).collect();
        assert_eq!(gone.len(), 1);
        assert!(matches!(gone[0].conn.peer, Peer::Address(_)));
        drop(newcomer);
        assert_eq!(all.len(), TOTAL - 1);
    }
}
