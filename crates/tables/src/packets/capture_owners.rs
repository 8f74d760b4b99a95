//! Who held each connection a live capture sees, learned while it is still
//! open: the `src_pid`/`dst_pid` columns of `packets`.
//!
//! A report that joins `sockets` after the capture finds nothing of a
//! connection that closed during it, and could only credit the socket
//! bound to its port: under a pre-forking server (nginx) that is the
//! master, which never serves a connection. So the capture asks while it
//! runs. The first packet of each local end (netns, protocol, local and
//! remote address and port) makes it "sought"; between reads the capture
//! looks the sought ends up: one sock_diag dump per protocol and family of
//! the namespace (the socket's inode), then one walk of /proc for exactly
//! those inodes (their lowest holder, as `sockets.pid`). An end found is
//! kept with its holder for the rest of the capture, and every later
//! packet of it carries the holder.
//!
//! What this costs and what bounds it:
//! - per packet, only when a query asks for these columns: a hash lookup
//!   per local end (one, two over loopback);
//! - per new end: an entry of under 200 bytes, at most [`MAX_ENDS`], 12 MB
//!   in all (past it new ends are not sought, said once);
//! - per lookup pass: the dumps and the walk. A pass starts at most every
//!   [`MIN_GAP`], and never sooner than [`GAP_FACTOR`] times its own last
//!   length after it ended, so lookups take at most about a tenth of the
//!   capture thread's time however busy the host.
//!
//! Passes run between reads of packets: after each burst, and every
//! 100 ms when none come (`streams::poll_for`), so a connection that lives
//! less than that with no packet in between may never be seen accepted.
//!
//! An end not found yet (a connection still in its listener's accept
//! queue has no holder, a forwarded packet has no local socket) is asked
//! again after 10 ms, 20 ms, 40 ms, ... up to [`MAX_TRIES`] times. A
//! connection opened and closed between two passes is never seen alive:
//! its packets have no holder, and the reports say they guess.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockql_collect::netns::{self, Netns};
use sockql_collect::owners;
use sockql_collect::sock_diag::inet::{self, Extensions, InetDiagMsg};
use sockql_collect::sock_diag::{InetRequest, SockDiag};
use sockql_collect::tcp_state;

/// The most local ends remembered by one capture: 7/8 of 65,536, the
/// most hash tables of 65,536 slots hold, so they never grow past that
/// (at most 12 MB, in the test below).
pub const MAX_ENDS: usize = 57_344;

/// The shortest time between two lookup passes.
pub const MIN_GAP: Duration = Duration::from_millis(10);

/// A pass waits at least this many times its predecessor's length.
pub const GAP_FACTOR: u32 = 9;

/// Lookups of one end before it is given up (10 ms, 20 ms, ... apart:
/// about 10 s in all).
pub const MAX_TRIES: u8 = 10;

/// The first retry's delay; each next one doubles.
const FIRST_RETRY: Duration = Duration::from_millis(10);

/// States whose sockets a process can hold: not LISTEN (the port's, not
/// the connection's), TIME-WAIT or request sockets (no process holds
/// them).
const HELD_STATES: u32 = tcp_state::ALL_BITS & !(1 << tcp_state::LISTEN | 1 << 6 | 1 << 12);

/// One local end of a connection (or UDP flow), as its packets name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndKey {
    pub netns: u64,
    pub protocol: u8,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
}

/// The process holding an end: pid and command name.
pub type Holder = (i32, Option<Arc<str>>);

#[derive(Debug)]
struct End {
    holder: Option<Holder>,
    /// Lookups made so far.
    tries: u8,
    /// When the next lookup is due.
    due: Instant,
    /// A FIN or RST of it was seen: once its socket is not found, it is
    /// gone, and not asked for again.
    closing: bool,
}

/// The ends one capture has seen, and their holders once known.
pub struct CaptureOwners {
    ends: HashMap<EndKey, End>,
    /// The ends still sought (no holder yet, tries left).
    sought: HashSet<EndKey>,
    names: HashMap<i32, Option<Arc<str>>>,
    next_pass: Instant,
    /// The earliest time a sought end is due (None: none sought), so the
    /// check between reads costs nothing however many are sought.
    next_due: Option<Instant>,
    /// A sock_diag socket per namespace, opened in it once: a netlink
    /// socket answers for the namespace it was made in, so a pass needs
    /// no thread to enter it.
    diags: HashMap<u64, SockDiag>,
}

impl Default for CaptureOwners {
    fn default() -> Self {
        CaptureOwners {
            ends: HashMap::new(),
            sought: HashSet::new(),
            names: HashMap::new(),
            next_pass: Instant::now(),
            next_due: None,
            diags: HashMap::new(),
        }
    }
}

/// An address as sock_diag and packets can both spell it: an IPv4-mapped
/// IPv6 address (a dual-stack socket's IPv4 peer) as IPv4.
fn canonical(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

impl CaptureOwners {
    /// The holder of `key`, if known; a new end becomes sought. `closing`:
    /// the packet is a FIN or RST.
    pub fn holder(&mut self, key: EndKey, closing: bool, now: Instant) -> Option<Holder> {
        let key = EndKey {
            local: (canonical(key.local.0), key.local.1),
            remote: (canonical(key.remote.0), key.remote.1),
            ..key
        };
        // One lookup per packet of a known end.
        if let Some(end) = self.ends.get_mut(&key) {
            end.closing |= closing;
            return end.holder.clone();
        }
        if self.ends.len() >= MAX_ENDS {
            sockql_collect::notice::note_once(
                "packets-owners-cap",
                format!("more than {MAX_ENDS} connections in this capture: src_pid and dst_pid of the later ones are not looked up"),
            );
            return None;
        }
        self.ends.insert(key, End { holder: None, tries: 0, due: now, closing });
        self.sought.insert(key);
        self.next_due = Some(self.next_due.map_or(now, |d| d.min(now)));
        None
    }

    /// True when a lookup pass would run now: an end is due and the last
    /// pass is far enough behind.
    fn pass_due(&self, now: Instant) -> bool {
        now >= self.next_pass && self.next_due.is_some_and(|d| d <= now)
    }

    /// Look up the ends that are due, in the namespaces of `targets`
    /// (those the capture runs in), if a pass may run now.
    pub fn pass(&mut self, targets: &[&Netns]) {
        let start = Instant::now();
        if !self.pass_due(start) {
            return;
        }
        let due: Vec<EndKey> =
            self.sought.iter().filter(|k| self.ends.get(k).is_some_and(|e| e.due <= start)).copied().collect();
        // Each namespace's due ends: their inodes, from its own sockets.
        let mut inode_of: HashMap<EndKey, u64> = HashMap::new();
        // Namespaces whose sockets were read: an end not found there is
        // not (or no longer) a socket.
        let mut read: HashSet<u64> = HashSet::new();
        for ns in targets {
            let here: HashSet<EndKey> = due.iter().filter(|k| k.netns == ns.inode).copied().collect();
            if here.is_empty() {
                continue;
            }
            let diag = match self.diags.entry(ns.inode) {
                Entry::Occupied(d) => d.into_mut(),
                Entry::Vacant(room) => match netns::run_in(ns, SockDiag::open) {
                    Ok(Ok(diag)) => room.insert(diag),
                    // A namespace gone, or sock_diag refused: its ends stay
                    // unknown (and are asked again).
                    _ => continue,
                },
            };
            match inodes_of(diag, &here) {
                Ok(found) => {
                    inode_of.extend(found);
                    read.insert(ns.inode);
                }
                // Opened afresh next pass.
                Err(_) => {
                    self.diags.remove(&ns.inode);
                }
            }
        }
        let wanted: HashSet<u64> = inode_of.values().copied().filter(|&i| i != 0).collect();
        let (holders, denied) =
            if wanted.is_empty() { (Default::default(), 0) } else { owners::lowest_owners(&wanted) };
        if denied > 0 {
            sockql_collect::notice::note_once(
                "packets-owners-denied",
                "not running as root: the open files of other users' processes cannot be read, so src_pid and dst_pid of their connections are null",
            );
        }
        for key in due {
            let inode = inode_of.get(&key).copied();
            let pid = inode.and_then(|inode| holders.get(inode));
            let Some(end) = self.ends.get_mut(&key) else { continue };
            end.tries = end.tries.saturating_add(1);
            // Closed and gone: no socket will ever answer for it (a TCP
            // connection opened and closed between two passes).
            let gone = end.closing && inode.is_none() && read.contains(&key.netns);
            match pid {
                Some(pid) => {
                    let name = self.names.entry(pid).or_insert_with(|| owners::comm(pid).map(Arc::from)).clone();
                    end.holder = Some((pid, name));
                    self.sought.remove(&key);
                }
                None if gone || end.tries >= MAX_TRIES => {
                    self.sought.remove(&key);
                }
                None => end.due = start + FIRST_RETRY * (1u32 << (end.tries - 1).min(16)),
            }
        }
        self.next_due = self.sought.iter().filter_map(|k| self.ends.get(k).map(|e| e.due)).min();
        let took = start.elapsed();
        self.next_pass = Instant::now() + MIN_GAP.max(took * GAP_FACTOR);
    }
}

/// The inodes of the sockets `diag`'s namespace has that are the ends
/// `wanted` (0: a connection no process holds yet, still in its
/// listener's queue). A UDP end with no
/// connected socket is the unconnected socket bound to its local port (on
/// its address, else on the wildcard), which is the one that sends and
/// receives its datagrams.
fn inodes_of(diag: &mut SockDiag, wanted: &HashSet<EndKey>) -> Result<HashMap<EndKey, u64>, sockql_collect::Error> {
    let mut found: HashMap<EndKey, u64> = HashMap::new();
    // UDP sockets bound but not connected: (local address, port) -> inode.
    let mut bound: HashMap<(IpAddr, u16), u64> = HashMap::new();
    let udp_ports: HashSet<u16> =
        wanted.iter().filter(|k| k.protocol == inet::IPPROTO_UDP).map(|k| k.local.1).collect();
    let netns = wanted.iter().next().map_or(0, |k| k.netns);
    for protocol in [inet::IPPROTO_TCP, inet::IPPROTO_UDP] {
        if !wanted.iter().any(|k| k.protocol == protocol) {
            continue;
        }
        for family in [inet::AF_INET, inet::AF_INET6] {
            let req = InetRequest {
                protocol,
                family,
                states: HELD_STATES,
                extensions: Extensions::default(),
                conds: Vec::new(),
            };
            diag.inet(&req, None, |m: &InetDiagMsg<'_>| {
                let inode = u64::from(m.inode());
                let local = (canonical(m.local_addr()), m.local_port());
                let key = EndKey { netns, protocol, local, remote: (canonical(m.remote_addr()), m.remote_port()) };
                if wanted.contains(&key) {
                    found.insert(key, inode);
                } else if protocol == inet::IPPROTO_UDP
                    && inode != 0
                    && m.remote_port() == 0
                    && udp_ports.contains(&local.1)
                {
                    bound.insert(local, inode);
                }
                Ok::<_, sockql_collect::Error>(ControlFlow::Continue(()))
            })?;
        }
    }
    let unconnected: Vec<EndKey> =
        wanted.iter().filter(|k| k.protocol == inet::IPPROTO_UDP && !found.contains_key(k)).copied().collect();
    for key in unconnected {
        let port = key.local.1;
        let wildcard = if key.local.0.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
        let any6 = IpAddr::from([0u8; 16]);
        if let Some(&inode) = bound
            .get(&(key.local.0, port))
            .or_else(|| bound.get(&(wildcard, port)))
            .or_else(|| bound.get(&(any6, port)))
        {
            found.insert(key, inode);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> EndKey {
        EndKey {
            netns: 1,
            protocol: 6,
            local: ("127.0.0.1".parse().unwrap(), port),
            remote: ("::ffff:127.0.0.1".parse().unwrap(), 80),
        }
    }

    #[test]
    fn a_new_end_is_sought_once_and_mapped_addresses_are_ipv4() {
        let mut o = CaptureOwners::default();
        let now = Instant::now();
        assert_eq!(o.holder(key(1), false, now), None);
        assert_eq!(o.holder(key(1), false, now), None);
        assert_eq!(o.sought.len(), 1);
        assert!(o.sought.iter().all(|k| k.remote.0 == "127.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn an_end_takes_the_room_the_docs_say() {
        // An entry of `ends` and one of `sought`, before the hash tables'
        // own slack (at most an eighth empty, and a control byte each).
        // MAX_ENDS fills a table of 65,536 slots to its 7/8 load, so
        // neither table grows past that.
        const { assert!(MAX_ENDS <= (1 << 16) / 8 * 7) };
        let slot = std::mem::size_of::<(EndKey, End)>() + 1 + std::mem::size_of::<EndKey>() + 1;
        assert!(slot * (1 << 16) <= 12 << 20, "{slot} bytes a slot");
    }

    #[test]
    fn ends_past_the_cap_are_not_remembered() {
        let mut o = CaptureOwners::default();
        let now = Instant::now();
        for i in 0..MAX_ENDS + 10 {
            let k = EndKey { netns: i as u64, ..key(1) };
            o.holder(k, false, now);
        }
        assert_eq!(o.ends.len(), MAX_ENDS);
    }

    #[test]
    fn an_end_never_found_is_given_up_after_its_tries() {
        let mut o = CaptureOwners::default();
        // A namespace this process is not in: run_in finds no such file,
        // so nothing is found and every pass counts a try.
        let ns = Netns {
            inode: 1,
            name: None,
            pid: None,
            processes: 0,
            container_id: None,
            runtime: None,
            path: "/nonexistent".into(),
        };
        o.holder(key(1), false, Instant::now());
        for _ in 0..MAX_TRIES {
            o.next_pass = Instant::now();
            for e in o.ends.values_mut() {
                e.due = Instant::now();
            }
            o.next_due = Some(Instant::now());
            o.pass(&[&ns]);
        }
        assert_eq!(o.next_due, None, "nothing left to look up");
        assert!(o.sought.is_empty());
        assert_eq!(
            o.ends.get(&EndKey { remote: ("127.0.0.1".parse().unwrap(), 80), ..key(1) }).map(|e| e.tries),
            Some(MAX_TRIES)
        );
    }
}
