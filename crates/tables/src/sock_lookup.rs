//! Which socket, namespace and process a tracepoint's 4-tuple names.
//!
//! TCP tracepoints carry the connection's addresses and ports but neither
//! its network namespace nor its holder (and the pid a sample carries is
//! whoever was on the CPU, often softirq work for someone else). So the
//! tables look the 4-tuple up among the sockets of every namespace on the
//! host (one sock_diag dump each, as `ss` reads them), and the socket's
//! inode up among the processes' descriptors (as `ss -p` does), then keep
//! what they learned: a tuple not seen before makes a new dump, at most
//! [`BURST`] in a row and then one every [`MIN_GAP`], so a flood of
//! events for sockets already gone costs a few dumps a second, not one an
//! event, while the few events of a quiet host (a connection's first
//! transitions, a moment after another's) each still get their dump. A
//! dump that took longer than that (a host of many namespaces and
//! sockets, a loaded CPU) is not followed by another before as long
//! again has passed: at most half of a stream's time goes to dumps, and
//! its events keep flowing.
//!
//! Every namespace is dumped even when the scan covers one: an event must
//! be known to be another namespace's to be left out of this one's rows.
//! A socket that lived and died between two dumps is not found: its
//! events have null namespace and holder (the tables say so).
//!
//! Sockets are kept by namespace and 4-tuple: the same 4-tuple can be
//! live in two namespaces at once (two containers' loopback, the same
//! addresses on two veths), and a tracepoint that carries only the
//! 4-tuple cannot say which. Such a tuple is [`Found::Several`]: the
//! tables then show no namespace or holder (null) rather than one that
//! may be the other's. An event that carries the socket's cookie
//! (`tcp_receive_reset`) is found by it ([`SocketLookup::by_cookie`]),
//! which is unique on the host.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::scope;
use sockql_collect::netns;
use sockql_collect::owners;
use sockql_collect::sock_diag::inet::{self, Extensions, InetDiagMsg};
use sockql_collect::sock_diag::{InetRequest, SockDiag};
use sockql_collect::tcp_state;

/// The shortest time between two dumps made for unknown tuples, on
/// average: at most [`BURST`] dumps in any `BURST * MIN_GAP`.
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// Dumps that may follow one another without waiting [`MIN_GAP`].
pub const BURST: usize = 4;

/// The most sockets remembered: the live set of a busy host fits; beyond
/// it, sockets' events have no holder (said once).
const MAX_KNOWN: usize = 1 << 20;

/// One end's view of a connection: local and remote as the socket sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Tuple {
    /// The same tuple with IPv4-mapped IPv6 addresses as IPv4, so an event
    /// that gives one form finds a socket dumped in the other.
    pub fn canonical(self) -> Tuple {
        let plain = |a: SocketAddr| match a.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
                None => a,
            },
            IpAddr::V4(_) => a,
        };
        Tuple { protocol: self.protocol, local: plain(self.local), remote: plain(self.remote) }
    }
}

/// What the dumps learned of one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub netns: u64,
    pub netns_name: Option<String>,
    /// 0 for a socket no process holds (TIME-WAIT, a request socket, a
    /// connection still in its listener's accept queue).
    pub inode: u64,
    pub cookie: u64,
    pub uid: u32,
    /// The lowest pid holding it when a dump looked, and its command name.
    pub pid: Option<i32>,
    pub process: Option<String>,
}

/// What a lookup of a 4-tuple found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// No dump saw the tuple (or none recently enough).
    Missing,
    /// One namespace has a socket with the tuple.
    One(&'a Holder),
    /// Several namespaces have one: which the event is cannot be told.
    Several,
}

impl<'a> Found<'a> {
    /// The holder when exactly one namespace has the tuple.
    pub fn one(self) -> Option<&'a Holder> {
        match self {
            Found::One(h) => Some(h),
            _ => None,
        }
    }
}

/// A socket as a dump found it, and the last dump that did.
#[derive(Debug)]
struct Entry {
    holder: Holder,
    seen: u64,
    seen_at: Instant,
}

/// How long a socket no dump finds any more is still counted among the
/// namespaces that have its tuple: an event read late for a socket gone
/// since must not be given to another namespace's socket with the same
/// tuple.
pub const KEEP_GONE: Duration = Duration::from_secs(10);

/// The sockets of the host's namespaces, as the dumps found them.
pub struct SocketLookup {
    protocols: Vec<u8>,
    /// By tuple: at most one entry per namespace.
    known: HashMap<Tuple, Vec<Entry>>,
    /// Entries in `known`, all tuples together (bounded by [`MAX_KNOWN`]).
    entries: usize,
    /// Cookie -> the tuple its socket has (the entry is the one whose
    /// holder has the cookie).
    cookies: HashMap<u64, Tuple>,
    /// Holders of inodes already looked up (a socket keeps its inode).
    owners: HashMap<u64, Option<i32>>,
    dumps: u64,
    /// When the last dump began, ns since the epoch (UTC): an event after
    /// it may be of a socket that dump could not see.
    dumped_ns: i64,
    /// When the dumps of the last `BURST * MIN_GAP` were made.
    recent: Vec<Instant>,
    /// When the last dump ended and how long it took: the next waits as
    /// long (see the module's notes).
    last_end: Option<Instant>,
    last_took: Duration,
}

impl SocketLookup {
    /// A lookup over the sockets of `protocols` (IPPROTO_TCP, IPPROTO_UDP).
    pub fn new(protocols: &[u8]) -> SocketLookup {
        SocketLookup {
            protocols: protocols.to_vec(),
            known: HashMap::new(),
            entries: 0,
            cookies: HashMap::new(),
            owners: HashMap::new(),
            dumps: 0,
            dumped_ns: i64::MIN,
            recent: Vec::new(),
            last_end: None,
            last_took: Duration::ZERO,
        }
    }

    /// The socket `tuple` names when exactly one namespace has it,
    /// dumping the host's sockets again first if it is unknown and the
    /// budget of dumps allows (see [`BURST`]). None when no namespace or
    /// several have it (see [`SocketLookup::lookup`]).
    pub fn find(&mut self, tuple: Tuple) -> Option<&Holder> {
        self.lookup(tuple).one()
    }

    /// What the dumps know of `tuple`, dumping again first if it is
    /// unknown and the budget allows.
    pub fn lookup(&mut self, tuple: Tuple) -> Found<'_> {
        let tuple = tuple.canonical();
        if !self.known.contains_key(&tuple) && self.may_dump() {
            self.dump();
        }
        self.known_now(tuple)
    }

    /// What the dumps know of `tuple` for an event at `ts_ns` (UTC ns):
    /// unless a dump began after the event (and so saw every namespace's
    /// socket of the tuple that lived then, or remembers it for
    /// [`KEEP_GONE`]), dump again first if the budget allows; if it does
    /// not, what the last dumps knew.
    pub fn lookup_at(&mut self, tuple: Tuple, ts_ns: i64) -> Found<'_> {
        let tuple = tuple.canonical();
        if (self.dumped_ns < ts_ns || !self.known.contains_key(&tuple)) && self.may_dump() {
            self.dump();
        }
        self.known_now(tuple)
    }

    /// Like [`SocketLookup::lookup`], but a socket known without a holder
    /// (inode 0: it was still in its listener's accept queue when a dump
    /// looked) is dumped again too, within the same budget, so a
    /// connection accepted since gets its process.
    pub fn lookup_held(&mut self, tuple: Tuple) -> Found<'_> {
        let tuple = tuple.canonical();
        let held = matches!(self.known_now(tuple), Found::One(h) if h.inode != 0);
        if !held && self.may_dump() {
            self.dump();
        }
        self.known_now(tuple)
    }

    /// What the last dumps found of `tuple`, without dumping.
    pub fn known_now(&self, tuple: Tuple) -> Found<'_> {
        match self.known.get(&tuple.canonical()).map(Vec::as_slice) {
            None | Some([]) => Found::Missing,
            Some([e]) => Found::One(&e.holder),
            Some(_) => Found::Several,
        }
    }

    /// The socket with this cookie, as the last dumps found it (cookies
    /// are unique on the host, so this is never ambiguous).
    pub fn by_cookie(&self, cookie: u64) -> Option<&Holder> {
        let tuple = self.cookies.get(&cookie)?;
        self.known.get(tuple)?.iter().map(|e| &e.holder).find(|h| h.cookie == cookie)
    }

    /// Whether a dump for an unknown tuple fits the budget now.
    fn may_dump(&mut self) -> bool {
        self.forget_old_dumps();
        self.recent.len() < BURST && self.last_end.is_none_or(|end| end.elapsed() >= self.last_took)
    }

    fn forget_old_dumps(&mut self) {
        let window = MIN_GAP.saturating_mul(BURST as u32);
        self.recent.retain(|t| t.elapsed() < window);
    }

    /// Dump every namespace's sockets: add the new ones with their
    /// holders, keep those this dump or the one before found (a socket
    /// that closed since is still found for the events read late), forget
    /// the rest.
    pub fn dump(&mut self) {
        let began = Instant::now();
        self.read_all();
        self.last_took = began.elapsed();
        self.last_end = Some(Instant::now());
    }

    fn read_all(&mut self) {
        self.forget_old_dumps();
        self.recent.push(Instant::now());
        self.dumped_ns = crate::streams::realtime_offset_ns().saturating_add(monotonic_ns());
        self.dumps += 1;
        let dump = self.dumps;
        let mut found: Vec<(Tuple, Holder)> = Vec::new();
        let protocols = self.protocols.clone();
        // A namespace that cannot be entered is skipped with a note.
        let _ = scope::each(&netns::list(), |ns| {
            let mut diag = SockDiag::open()?;
            for &protocol in &protocols {
                for family in [inet::AF_INET, inet::AF_INET6] {
                    let req = InetRequest {
                        protocol,
                        family,
                        states: tcp_state::ALL_BITS,
                        extensions: Extensions::default(),
                        conds: Vec::new(),
                    };
                    diag.inet(&req, None, |m: &InetDiagMsg<'_>| {
                        let tuple = Tuple {
                            protocol,
                            local: SocketAddr::new(m.local_addr(), m.local_port()),
                            remote: SocketAddr::new(m.remote_addr(), m.remote_port()),
                        }
                        .canonical();
                        let holder = Holder {
                            netns: ns.inode,
                            netns_name: ns.name.clone(),
                            inode: m.inode() as u64,
                            cookie: m.cookie(),
                            uid: m.uid(),
                            pid: None,
                            process: None,
                        };
                        found.push((tuple, holder));
                        Ok::<_, sockql_collect::Error>(ControlFlow::Continue(()))
                    })?;
                }
            }
            Ok(ControlFlow::Continue(()))
        });
        let wanted: HashSet<u64> =
            found.iter().map(|(_, h)| h.inode).filter(|i| *i != 0 && !self.owners.contains_key(i)).collect();
        if !wanted.is_empty() {
            let (map, _denied) = owners::lowest_owners(&wanted);
            for inode in wanted {
                self.owners.insert(inode, map.get(inode));
            }
        }
        for (tuple, mut holder) in found {
            holder.pid = self.owners.get(&holder.inode).copied().flatten();
            holder.process = holder.pid.and_then(owners::comm);
            self.insert(tuple, holder, dump);
        }
        // Forget what neither this dump nor the one before found, once
        // it is KEEP_GONE old.
        let mut entries = 0;
        self.known.retain(|_, v| {
            v.retain(|e| e.seen + 1 >= dump || e.seen_at.elapsed() < KEEP_GONE);
            entries += v.len();
            !v.is_empty()
        });
        self.entries = entries;
        let known = &self.known;
        self.cookies.retain(|_, t| known.contains_key(t));
        let live: HashSet<u64> = self.known.values().flatten().map(|e| e.holder.inode).collect();
        self.owners.retain(|inode, _| live.contains(inode));
    }

    /// Keep `holder` as the socket of `tuple` in its namespace: one entry
    /// per namespace, a held socket (inode not 0) before one no process
    /// holds (a TIME-WAIT or request socket with the same tuple).
    fn insert(&mut self, tuple: Tuple, holder: Holder, dump: u64) {
        if self.entries >= MAX_KNOWN && !self.known.contains_key(&tuple) {
            sockql_collect::notice::note_once(
                "sock-lookup-cap",
                format!("more than {MAX_KNOWN} sockets on the host: events of the sockets beyond have no holder"),
            );
            return;
        }
        let cookie = holder.cookie;
        let v = self.known.entry(tuple).or_default();
        match v.iter_mut().find(|e| e.holder.netns == holder.netns) {
            Some(e) => {
                // A held socket is replaced by another held one (a new
                // connection with the tuple), never by one no process
                // holds: that is the same connection's TIME-WAIT (or a
                // request), and an event read late is still the held
                // socket's. It counts as seen again all the same.
                let same = holder.cookie == e.holder.cookie;
                if same && (e.holder.inode != 0 || holder.inode == 0) {
                    // The same socket again (its cookie): what was learned
                    // of it stays (its process may have exited since).
                    if e.holder.pid.is_none() {
                        e.holder.pid = holder.pid;
                        e.holder.process = holder.process;
                    }
                    e.seen = dump;
                    e.seen_at = Instant::now();
                } else if holder.inode == 0 && e.holder.inode != 0 {
                    e.seen = dump;
                    e.seen_at = Instant::now();
                } else if e.seen < dump || e.holder.inode == 0 {
                    self.cookies.remove(&e.holder.cookie);
                    *e = Entry { holder, seen: dump, seen_at: Instant::now() };
                    self.cookies.insert(cookie, tuple);
                }
            }
            None => {
                v.push(Entry { holder, seen: dump, seen_at: Instant::now() });
                self.entries += 1;
                self.cookies.insert(cookie, tuple);
            }
        }
    }
}

/// CLOCK_MONOTONIC in ns: the clock the perf rings' time stamps are
/// read on, so a dump's start compares with an event's time.
fn monotonic_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec().saturating_mul(1_000_000_000).saturating_add(t.tv_nsec()))
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_finds_the_ipv4_socket() {
        let t = |l: &str, r: &str| Tuple {
            protocol: inet::IPPROTO_TCP,
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
        };
        assert_eq!(t("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.2]:5000").canonical(), t("10.0.0.1:80", "10.0.0.2:5000"));
        assert_eq!(t("[::1]:80", "[::1]:5000").canonical(), t("[::1]:80", "[::1]:5000"));
    }

    fn holder(netns: u64, inode: u64, cookie: u64) -> Holder {
        Holder { netns, netns_name: None, inode, cookie, uid: 0, pid: None, process: None }
    }

    #[test]
    fn a_tuple_in_two_namespaces_is_several_and_cookies_tell_them_apart() {
        let mut l = SocketLookup::new(&[inet::IPPROTO_TCP]);
        let t = Tuple {
            protocol: inet::IPPROTO_TCP,
            local: "127.0.0.1:5000".parse().unwrap(),
            remote: "127.0.0.1:80".parse().unwrap(),
        };
        l.insert(t, holder(1, 11, 101), 1);
        assert_eq!(l.known_now(t), Found::One(&holder(1, 11, 101)));
        // A TIME-WAIT twin in the same namespace does not hide the held one.
        l.insert(t, holder(1, 0, 102), 1);
        assert_eq!(l.known_now(t).one().map(|h| h.inode), Some(11));
        l.insert(t, holder(2, 22, 202), 1);
        assert_eq!(l.known_now(t), Found::Several);
        assert_eq!(l.by_cookie(202).map(|h| h.netns), Some(2));
        assert_eq!(l.by_cookie(101).map(|h| h.netns), Some(1));
        assert_eq!(l.by_cookie(102), None);
    }
}
