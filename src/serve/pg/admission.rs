//! How many connections the PostgreSQL endpoint holds, and for whom.
//!
//! - A connection that has not logged in yet ("pre-auth") holds a pre-auth
//!   place, never a session: at most [`PREAUTH_PER_PEER`] per peer (a uid
//!   on the unix socket, a source address over TCP) and [`PREAUTH_TOTAL`]
//!   in all, each for at most [`LOGIN_DEADLINE`]. When a peer's places
//!   (or all of them) are taken, the oldest pre-auth connection is closed
//!   to make room: silent connections cannot keep a new client out.
//!   Root's own (uid 0 on the unix socket) count against no one else's.
//! - A session (logged in) holds one of `--pg-max-connections`; root on
//!   the unix socket also gets one of [`ROOT_RESERVED`] more while it
//!   holds fewer than `--pg-max-connections` itself, so other users
//!   filling the endpoint cannot lock root out.
//! - Descriptors: at start the soft RLIMIT_NOFILE is raised to the hard
//!   one, and the server refuses to start if all of the above, /metrics'
//!   connections and a reserve for the queries' own files do not fit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::AbortHandle;

/// Connections of one peer that have not logged in yet.
pub const PREAUTH_PER_PEER: usize = 8;
/// Connections that have not logged in yet, of all peers but root.
pub const PREAUTH_TOTAL: usize = 64;
/// Time from accept to logged in (TLS, startup, SCRAM).
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(5);
/// Sessions root may open past `--pg-max-connections`.
pub const ROOT_RESERVED: usize = 2;
/// Descriptors kept for everything but client connections: /metrics'
/// connections, the listeners, and the files and netlink sockets queries
/// and scrapes open.
const RESERVED_FDS: u64 = 256;

/// Who a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Uid(u32),
    Addr(IpAddr),
}

impl Peer {
    fn is_root(&self) -> bool {
        *self == Peer::Uid(0)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Uid(uid) => write!(f, "uid {uid}"),
            Peer::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Pre-auth connections per peer, oldest first, with the handle that
    /// closes each (set once its task is spawned).
    waiting: HashMap<Peer, VecDeque<(u64, Option<AbortHandle>)>>,
    /// Pre-auth connections of all peers but root.
    waiting_total: usize,
    sessions: usize,
    root_sessions: usize,
    root_reserved_used: usize,
}

/// The endpoint's places, shared by all its connections.
#[derive(Debug)]
pub struct Gate {
    max_sessions: usize,
    state: Mutex<State>,
}

/// A pre-auth place; given back when dropped.
pub struct Waiting {
    gate: Arc<Gate>,
    peer: Peer,
    id: u64,
}

/// A session's place; given back when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    gate: Arc<Gate>,
    root: bool,
    reserved: bool,
}

impl Gate {
    pub fn new(max_sessions: usize) -> Arc<Self> {
        Arc::new(Gate { max_sessions: max_sessions.max(1), state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pre-auth place for a new connection of `peer`, closing that
    /// peer's (or anyone's) oldest pre-auth connection if there is none.
    pub fn enter(self: &Arc<Self>, peer: Peer) -> Waiting {
        let mut st = self.lock();
        let root = peer.is_root();
        let queue = st.waiting.entry(peer).or_default();
        let mut evicted = Vec::new();
        if queue.len() >= PREAUTH_PER_PEER {
            evicted.extend(queue.pop_front());
        }
        let freed = evicted.len();
        if !root {
            st.waiting_total -= freed;
            if st.waiting_total >= PREAUTH_TOTAL {
                // The oldest of all (ids grow with time), root's excepted.
                let oldest = st
                    .waiting
                    .iter()
                    .filter(|(p, q)| !p.is_root() && !q.is_empty())
                    .min_by_key(|(_, q)| q[0].0)
                    .map(|(p, _)| *p);
                if let Some(p) = oldest {
                    if let Some(entry) = st.waiting.get_mut(&p).and_then(|q| q.pop_front()) {
                        evicted.push(entry);
                        st.waiting_total -= 1;
                    }
                }
            }
            st.waiting_total += 1;
        }
        st.next_id += 1;
        let id = st.next_id;
        st.waiting.entry(peer).or_default().push_back((id, None));
        st.waiting.retain(|_, q| !q.is_empty());
        drop(st);
        for (_, handle) in evicted {
            if let Some(h) = handle {
                h.abort();
            }
        }
        Waiting { gate: self.clone(), peer, id }
    }

    /// The handle that closes the connection holding the place `ticket`
    /// names, should it be evicted (at once, if it already was).
    pub fn arm(&self, ticket: Ticket, handle: AbortHandle) {
        let mut st = self.lock();
        match st.waiting.get_mut(&ticket.0).and_then(|q| q.iter_mut().find(|(id, _)| *id == ticket.1)) {
            Some(entry) => entry.1 = Some(handle),
            None => handle.abort(),
        }
    }

    /// Trade a pre-auth place for a session, or say why there is none.
    pub fn session(self: &Arc<Self>, waiting: Waiting) -> Result<SessionSlot, String> {
        let root = waiting.peer.is_root();
        drop(waiting);
        let mut st = self.lock();
        if st.sessions < self.max_sessions {
            st.sessions += 1;
            st.root_sessions += usize::from(root);
            return Ok(SessionSlot { gate: self.clone(), root, reserved: false });
        }
        if root && st.root_sessions < self.max_sessions && st.root_reserved_used < ROOT_RESERVED {
            st.root_reserved_used += 1;
            st.root_sessions += 1;
            return Ok(SessionSlot { gate: self.clone(), root, reserved: true });
        }
        Err(format!("too many connections: {} are open (--pg-max-connections)", self.max_sessions))
    }

    /// Pre-auth connections now (for tests and diagnostics).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }
}

/// Names a pre-auth place (its peer and number).
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Peer, u64);

impl Waiting {
    pub fn ticket(&self) -> Ticket {
        Ticket(self.peer, self.id)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        let Some(queue) = st.waiting.get_mut(&self.peer) else { return };
        let before = queue.len();
        queue.retain(|(id, _)| *id != self.id);
        let removed = before - queue.len();
        if queue.is_empty() {
            st.waiting.remove(&self.peer);
        }
        if !self.peer.is_root() {
            st.waiting_total -= removed;
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        if self.reserved {
            st.root_reserved_used -= 1;
        } else {
            st.sessions -= 1;
        }
        st.root_sessions -= usize::from(self.root);
    }
}

/// Raise the soft descriptor limit to the hard one, and check that the
/// endpoint's connections fit with [`RESERVED_FDS`] to spare.
pub fn descriptors(max_sessions: usize) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let need = (max_sessions + ROOT_RESERVED + PREAUTH_TOTAL + PREAUTH_PER_PEER) as u64 + RESERVED_FDS;
    if hard < need {
        anyhow::bail!(
            "--pg-max-connections {max_sessions} needs about {need} file descriptors and the limit is {hard} (ulimit -n, LimitNOFILE=): lower it or raise the limit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_past_its_places_evicts_its_oldest_not_others() {
        let gate = Gate::new(4);
        let nobody = Peer::Uid(65534);
        let held: Vec<Waiting> = (0..PREAUTH_PER_PEER + 3).map(|_| gate.enter(nobody)).collect();
        assert_eq!(gate.waiting(), PREAUTH_PER_PEER);
        let root = gate.enter(Peer::Uid(0));
        assert_eq!(gate.waiting(), PREAUTH_PER_PEER + 1);
        drop(held);
        assert_eq!(gate.waiting(), 1);
        drop(root);
        assert_eq!(gate.waiting(), 0);
        assert_eq!(gate.lock().waiting_total, 0);
    }

    #[test]
    fn all_places_taken_evicts_the_oldest_of_all_but_root() {
        let gate = Gate::new(4);
        let root = gate.enter(Peer::Uid(0));
        let many: Vec<Waiting> = (0..PREAUTH_TOTAL as u32 + 10)
            .map(|i| gate.enter(Peer::Addr(IpAddr::from([127, 0, (i >> 8) as u8, i as u8]))))
            .collect();
        assert_eq!(gate.lock().waiting_total, PREAUTH_TOTAL);
        assert!(gate.lock().waiting.contains_key(&Peer::Uid(0)), "root's own is kept");
        drop(many);
        drop(root);
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn root_gets_a_reserved_session_unless_it_holds_them_all() {
        let gate = Gate::new(1);
        let other = gate.session(gate.enter(Peer::Uid(1000))).unwrap();
        assert!(gate.session(gate.enter(Peer::Uid(1001))).unwrap_err().contains("--pg-max-connections"));
        let root = gate.session(gate.enter(Peer::Uid(0))).expect("root is not locked out by others");
        assert!(gate.session(gate.enter(Peer::Uid(0))).is_err(), "root already holds --pg-max-connections");
        drop(other);
        let again = gate.session(gate.enter(Peer::Uid(1000))).unwrap();
        drop((root, again));
        let st = gate.lock();
        assert_eq!((st.sessions, st.root_sessions, st.root_reserved_used), (0, 0, 0));
    }
}
