//! CancelRequest: a client stops its own running query from a second
//! connection (psql's Ctrl-C, psycopg's `cancel_safe()`, JDBC's
//! `Statement.cancel()`), naming it by the process id and secret key the
//! server sent at login (BackendKeyData).
//!
//! - Each logged-in connection gets a process id unique among live
//!   connections and a secret from the kernel's random pool (ring's
//!   `SystemRandom`: getrandom(2)): 4 bytes for protocol 3.0 (all it can
//!   carry), 32 for 3.2.
//! - The [`Registry`] maps a live connection's process id to its secret
//!   and its [`Target`]; a connection's entry is removed when it closes
//!   ([`Key`]'s drop), so the registry holds live connections only.
//! - A CancelRequest arrives on a connection of its own, before any login:
//!   it holds a pre-auth place like any other (admission.rs), and its
//!   packet is checked by framing.rs. If both numbers match a live
//!   connection, that connection's running query, if any, ends with 57014
//!   (`Target::cancel`: the session's handler stops waiting for it and
//!   drops it, which stops its thread). Otherwise nothing happens, and
//!   the requester is told nothing either way, as in PostgreSQL.
//! - A cancel only ever ends a query: it cannot close a connection, end a
//!   login, or affect a query that starts after it.
//! - Guessing is slowed: at most [`CHECKED_PER_SECOND`] requests a second
//!   are checked, from all peers but root on the unix socket together;
//!   past that they are dropped unchecked. A 4-byte secret then takes
//!   years of guessing, and a flood of guesses cannot stop root's own
//!   cancel (only others', whose queries --timeout still ends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, PidSecretKeyGenerator};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::ProtocolVersion;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Notify;

/// The first process id given out (PostgreSQL's are small numbers; these
/// are not real processes, and never look like the server's own pid).
const FIRST_PID: i32 = 10_000;

/// Bytes of a protocol 3.2 secret (PostgreSQL 18's own length).
const LONG_SECRET: usize = 32;

/// Cancel requests checked a second, from everyone but root on the unix
/// socket (a person's Ctrl-C is one).
pub const CHECKED_PER_SECOND: u32 = 64;

/// What a cancel wakes: the handler running the connection's query.
#[derive(Debug, Default)]
pub struct Target {
    canceled: Notify,
}

impl Target {
    /// Resolves when a cancel for this connection arrives. Only a wait that
    /// exists when the cancel arrives is woken: a cancel with no query
    /// running is lost, and never ends the next query.
    pub fn canceled(&self) -> tokio::sync::futures::Notified<'_> {
        self.canceled.notified()
    }

    fn cancel(&self) {
        self.canceled.notify_waiters();
    }
}

struct Entry {
    secret: Bytes,
    target: Arc<Target>,
}

/// The live connections' keys, shared by the whole endpoint.
pub struct Registry {
    live: Mutex<(HashMap<i32, Entry>, i32)>,
    random: SystemRandom,
    /// The current second's start and the requests checked in it.
    checked: Mutex<(Instant, u32)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            live: Mutex::new((HashMap::new(), FIRST_PID)),
            random: SystemRandom::new(),
            checked: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, (HashMap<i32, Entry>, i32)> {
        // Entries are whole even if a holder panicked.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A key for a new connection; it is registered when the connection
    /// logs in (pgwire asks for its BackendKeyData then).
    pub fn key(self: &Arc<Self>) -> Arc<Key> {
        Arc::new(Key { registry: self.clone(), target: Arc::new(Target::default()), pid: Mutex::new(None) })
    }

    /// Register `target` under a fresh process id with a secret of `len`
    /// random bytes; `None` if the kernel gave no random bytes.
    fn register(&self, target: Arc<Target>, len: usize) -> Option<(i32, Bytes)> {
        let mut secret = vec![0u8; len];
        self.random.fill(&mut secret).ok()?;
        let secret = Bytes::from(secret);
        let mut guard = self.lock();
        let (live, next) = &mut *guard;
        // Live ids are at most the endpoint's connections: a free one is
        // found within that many steps.
        let mut pid = *next;
        while live.contains_key(&pid) {
            pid = following(pid);
        }
        *next = following(pid);
        live.insert(pid, Entry { secret: secret.clone(), target });
        Some((pid, secret))
    }

    fn remove(&self, pid: i32) {
        self.lock().0.remove(&pid);
    }

    /// May one more request be checked now? Root's always may.
    fn may_check(&self, root: bool) -> bool {
        if root {
            return true;
        }
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(checked.0) >= Duration::from_secs(1) {
            *checked = (now, 0);
        }
        checked.1 += 1;
        checked.1 <= CHECKED_PER_SECOND
    }

    /// Cancel the query of the connection `pid` if `secret` is its secret;
    /// says whether it did. `root`: the request came from root on the
    /// unix socket.
    pub fn cancel(&self, pid: i32, secret: &SecretKey, root: bool) -> bool {
        if !self.may_check(root) {
            return false;
        }
        let target = {
            let live = self.lock();
            match live.0.get(&pid) {
                Some(entry) if same(&entry.secret, &secret.to_bytes()) => entry.target.clone(),
                _ => return false,
            }
        };
        target.cancel();
        true
    }

    /// Connections registered now (for tests).
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn following(pid: i32) -> i32 {
    if pid >= i32::MAX - 1 {
        FIRST_PID
    } else {
        pid + 1
    }
}

/// Equal secrets, compared in time that does not depend on where they
/// differ (only their lengths, which the protocol version makes public).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One connection's key: made when it is accepted, registered at login,
/// removed from the registry when the connection's handlers are dropped.
pub struct Key {
    registry: Arc<Registry>,
    target: Arc<Target>,
    pid: Mutex<Option<i32>>,
}

impl Key {
    /// What a cancel of this connection wakes.
    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }
}

impl PidSecretKeyGenerator for Key {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let long = !matches!(client.protocol_version(), ProtocolVersion::PROTOCOL3_0);
        let mut pid = self.pid.lock().unwrap_or_else(|e| e.into_inner());
        // Once per connection: a second login message cannot register twice.
        if pid.is_some() {
            return (0, SecretKey::I32(0));
        }
        match self.registry.register(self.target.clone(), if long { LONG_SECRET } else { 4 }) {
            Some((id, secret)) => {
                *pid = Some(id);
                let key = if long {
                    SecretKey::Bytes(secret)
                } else {
                    SecretKey::I32(i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]))
                };
                (id, key)
            }
            // No random bytes: the connection works but cannot be
            // canceled (pid 0 is never registered).
            None => (0, SecretKey::I32(0)),
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Some(pid) = *self.pid.get_mut().unwrap_or_else(|e| e.into_inner()) {
            self.registry.remove(pid);
        }
    }
}

/// pgwire's handler for a CancelRequest on one connection: the registry
/// decides. `root`: the connection is root's on the unix socket.
pub struct Handler {
    pub registry: Arc<Registry>,
    pub root: bool,
}

#[async_trait]
impl CancelHandler for Handler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.registry.cancel(request.pid, &request.secret_key, self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_both_numbers_wake_only_a_waiting_query() {
        let registry = Arc::new(Registry::default());
        let key = registry.key();
        let target = key.target();
        let (pid, secret) = registry.register(target.clone(), 4).unwrap();
        *key.pid.lock().unwrap() = Some(pid);
        let other = registry.key();
        let (other_pid, _) = registry.register(other.target(), LONG_SECRET).unwrap();
        *other.pid.lock().unwrap() = Some(other_pid);
        assert_ne!(pid, other_pid);
        assert_eq!(registry.len(), 2);

        let as_i32 = SecretKey::I32(i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]));
        let mut wrong = secret.to_vec();
        wrong[3] ^= 1;
        let waiting = target.canceled();
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert!(!registry.cancel(pid, &SecretKey::Bytes(wrong.into()), false), "a wrong secret");
        assert!(!registry.cancel(other_pid, &as_i32, false), "another connection's id");
        assert!(futures::poll!(&mut waiting).is_pending());
        // The secret as 3.2 bytes or 3.0's integer: the same key.
        assert!(registry.cancel(pid, &as_i32, false));
        assert!(futures::poll!(&mut waiting).is_ready());
        // A cancel while nothing waits is not kept for the next query.
        assert!(registry.cancel(pid, &SecretKey::Bytes(secret.clone()), true));
        let next = target.canceled();
        tokio::pin!(next);
        assert!(futures::poll!(&mut next).is_pending());

        drop(key);
        assert_eq!(registry.len(), 1, "a closed connection's entry is gone");
        assert!(!registry.cancel(pid, &as_i32, true));
        drop(other);
        assert!(registry.is_empty());
    }

    #[test]
    fn guesses_past_the_budget_are_not_checked_but_roots_are() {
        let registry = Arc::new(Registry::default());
        let target = Arc::new(Target::default());
        let (pid, secret) = registry.register(target, 4).unwrap();
        let right = SecretKey::Bytes(secret);
        let wrong = SecretKey::I32(0);
        // Pin the second so the window does not roll over mid-test.
        *registry.checked.lock().unwrap() = (Instant::now() + Duration::from_secs(3600), 0);
        for _ in 0..CHECKED_PER_SECOND - 1 {
            assert!(!registry.cancel(pid, &wrong, false));
        }
        assert!(registry.cancel(pid, &right, false), "within the budget");
        assert!(!registry.cancel(pid, &right, false), "past the budget: not even checked");
        assert!(registry.cancel(pid, &right, true), "root's is always checked");
        // A new second, a new budget.
        *registry.checked.lock().unwrap() = (Instant::now() - Duration::from_secs(2), CHECKED_PER_SECOND);
        assert!(registry.cancel(pid, &right, false));
    }

    #[test]
    fn ids_skip_live_ones_and_wrap() {
        let registry = Registry::default();
        registry.lock().1 = i32::MAX - 1;
        let (a, _) = registry.register(Arc::default(), 4).unwrap();
        let (b, _) = registry.register(Arc::default(), 4).unwrap();
        assert_eq!((a, b), (i32::MAX - 1, FIRST_PID));
        registry.lock().1 = FIRST_PID;
        let (c, _) = registry.register(Arc::default(), 4).unwrap();
        assert_eq!(c, FIRST_PID + 1, "the live id is skipped");
    }

    #[test]
    fn secrets_are_random() {
        let registry = Registry::default();
        let (_, a) = registry.register(Arc::default(), LONG_SECRET).unwrap();
        let (_, b) = registry.register(Arc::default(), LONG_SECRET).unwrap();
        assert_eq!(a.len(), LONG_SECRET);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()) && !same(&a, &b) && !same(&a, &a[..4]));
    }
}
