//! What the eBPF reader's rows are joined to, each cached and bounded so
//! that a flood of drops costs a lookup per new namespace, interface or
//! socket, not per packet, and a flood of new ones costs at most a few
//! lookups a second (the rest read null rather than wait):
//! - namespace names (/run/netns);
//! - interface names, per namespace (if_nameindex inside it);
//! - the socket a drop names (rx_sk's inode) or whose 4-tuple it carries
//!   (`sock_lookup.rs`), and the process holding it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Comms;
use crate::sock_lookup::{SocketLookup, Tuple};
use sockql_collect::netns::{self, Netns};
use sockql_collect::owners;
use sockql_collect::trace::bpf::PacketDrop;

/// How often a name or owner not found is looked for again.
const RETRY: Duration = Duration::from_secs(1);
/// Descriptor walks (/proc/*/fd) for new inodes: at most this many per [`RETRY`].
const WALKS: usize = 4;
/// Entries kept in each cache; cleared when full.
const MAX: usize = 4096;

/// A socket and its holder, as a row shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Holder {
    pub inode: Option<u64>,
    pub pid: Option<i32>,
    pub process: Option<String>,
}

#[derive(Default)]
pub(super) struct Context {
    names: BTreeMap<u64, String>,
    names_read: Option<Instant>,
    spaces: Vec<Netns>,
    spaces_read: Option<Instant>,
    /// Per namespace inode: its interfaces by index, and when read.
    links: HashMap<u64, (Instant, HashMap<u32, String>)>,
    /// Socket inode -> lowest pid holding it (None: nobody).
    owners: HashMap<u64, Option<i32>>,
    walks: Vec<Instant>,
    lookup: Option<SocketLookup>,
    comms: Comms,
}

fn stale(at: Option<Instant>) -> bool {
    at.is_none_or(|t| t.elapsed() >= RETRY)
}

impl Context {
    /// The name of namespace `inode` under /run/netns.
    pub fn netns_name(&mut self, inode: u64) -> Option<&str> {
        if !self.names.contains_key(&inode) && stale(self.names_read) {
            self.names = netns::names();
            self.names_read = Some(Instant::now());
        }
        self.names.get(&inode).map(String::as_str)
    }

    /// The name of interface `ifindex` in namespace `inode`.
    pub fn interface(&mut self, inode: u64, ifindex: u32) -> Option<&str> {
        let known = self.links.get(&inode).is_some_and(|(at, l)| l.contains_key(&ifindex) || at.elapsed() < RETRY);
        if !known {
            let links = self.read_links(inode).unwrap_or_default();
            if self.links.len() >= MAX {
                self.links.clear();
            }
            self.links.insert(inode, (Instant::now(), links));
        }
        self.links.get(&inode).and_then(|(_, l)| l.get(&ifindex)).map(String::as_str)
    }

    /// Every interface of namespace `inode`, read inside it.
    fn read_links(&mut self, inode: u64) -> Option<HashMap<u32, String>> {
        if !self.spaces.iter().any(|n| n.inode == inode) && stale(self.spaces_read) {
            self.spaces = netns::list();
            self.spaces_read = Some(Instant::now());
        }
        let ns = self.spaces.iter().find(|n| n.inode == inode)?;
        let list = netns::run_in(ns, || {
            nix::net::if_::if_nameindex().ok().map(|l| {
                l.iter().map(|i| (i.index(), i.name().to_string_lossy().into_owned())).collect::<HashMap<_, _>>()
            })
        });
        list.ok().flatten()
    }

    /// The socket drop `d` belongs to: rx_sk's inode, else (when
    /// `by_tuple`) a socket of its namespace whose 4-tuple is the
    /// packet's, seen from either end.
    pub fn holder(&mut self, d: &PacketDrop) -> Holder {
        if let Some(inode) = d.inode {
            let pid = self.owner(inode);
            let process = pid.and_then(|p| self.comms.of(p as u32).map(str::to_string));
            return Holder { inode: Some(inode), pid, process };
        }
        let Some(t) = d.tuple else { return Holder::default() };
        let (Some((sport, dport)), 6 | 17) = (t.ports, t.protocol) else { return Holder::default() };
        let (src, dst) = (SocketAddr::new(t.src, sport), SocketAddr::new(t.dst, dport));
        let lookup = self.lookup.get_or_insert_with(|| SocketLookup::new(&[6, 17]));
        for (local, remote) in [(dst, src), (src, dst)] {
            let found = lookup.find(Tuple { protocol: t.protocol, local, remote });
            // The same tuple in another namespace is another socket.
            if let Some(h) = found.filter(|h| d.netns.is_none_or(|n| u64::from(n) == h.netns)) {
                return Holder { inode: (h.inode != 0).then_some(h.inode), pid: h.pid, process: h.process.clone() };
            }
        }
        Holder::default()
    }

    /// The lowest pid holding socket `inode`, from a walk of the
    /// processes' descriptors (as ss -p), within the walk budget.
    fn owner(&mut self, inode: u64) -> Option<i32> {
        if let Some(&pid) = self.owners.get(&inode) {
            return pid;
        }
        self.walks.retain(|t| t.elapsed() < RETRY);
        if self.walks.len() >= WALKS {
            return None;
        }
        self.walks.push(Instant::now());
        let (map, _denied) = owners::lowest_owners(&[inode].into_iter().collect());
        let pid = map.get(inode);
        if self.owners.len() >= MAX {
            self.owners.clear();
        }
        self.owners.insert(inode, pid);
        pid
    }
}
