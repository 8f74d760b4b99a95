//! Who a TCP tracepoint's socket belongs to, and the holder columns of
//! the rows of `tcp_retransmits`, `tcp_resets` and `tcp_state_changes`
//! (netns, netns_name, inode, cookie, uid, pid, process), filled the same
//! way for all three.
//!
//! The tracepoints carry the 4-tuple (and `tcp_receive_reset` the
//! cookie), not the namespace or holder: [`Owners`] asks the socket
//! lookup (`sock_lookup.rs`). A tuple several namespaces have is shown
//! with no namespace or holder rather than a guess. A socket the dumps
//! did not find falls back to the process the kernel ran the event for,
//! when it ran in a process's own context (a system call on the socket),
//! not in an interrupt where the pid is whoever was on the CPU.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::columns::{Column, RowBuilder};
use crate::sock_lookup::{Found, Holder, SocketLookup, Tuple};
use sockql_collect::sock_diag::inet;
use sockql_collect::trace::format::Field;
use sockql_collect::trace::{Format, Sample};

/// Whether the kernel ran an event in a process's own context (a system
/// call such as connect() or close(), or the socket's backlog processed
/// as its owner releases it) rather than in an interrupt or softirq,
/// where the pid is whoever happened to be on the CPU. From the record's
/// common_flags (TRACE_FLAG_HARDIRQ 0x08, TRACE_FLAG_SOFTIRQ 0x10,
/// TRACE_FLAG_NMI 0x40).
pub(crate) struct Context {
    flags: Option<Field>,
}

impl Context {
    pub fn of(f: &Format) -> Context {
        Context { flags: f.field("common_flags").filter(|f| f.size == 1).cloned() }
    }

    /// The sample's process when the event ran in its context.
    pub fn task_pid(&self, s: &Sample<'_>) -> Option<i32> {
        let flags = s.u64(self.flags.as_ref()?)?;
        (flags & (0x08 | 0x10 | 0x40) == 0 && s.pid != 0).then(|| i32::try_from(s.pid).ok()).flatten()
    }
}

/// Who an event's socket belongs to, as its row shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub netns: Option<u64>,
    pub netns_name: Option<String>,
    pub inode: Option<u64>,
    pub cookie: Option<u64>,
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub process: Option<String>,
}

/// The columns [`Owner::write`] fills; `uid` where the table has one.
pub(crate) struct OwnerColumns<C> {
    pub netns: C,
    pub netns_name: C,
    pub inode: C,
    pub cookie: C,
    pub uid: Option<C>,
    pub pid: C,
    pub process: C,
}

impl Owner {
    pub fn of(h: &Holder) -> Owner {
        Owner {
            netns: Some(h.netns),
            netns_name: h.netns_name.clone(),
            inode: Some(h.inode),
            cookie: Some(h.cookie),
            uid: Some(h.uid),
            pid: h.pid,
            process: h.process.clone(),
        }
    }

    /// The process `pid` (an event in its context), with its namespace.
    pub fn of_task(pid: i32) -> Owner {
        let netns = sockql_collect::netns::of_pid(pid);
        Owner {
            netns,
            netns_name: netns.and_then(|n| sockql_collect::netns::names().remove(&n)),
            pid: Some(pid),
            process: sockql_collect::owners::comm(pid),
            ..Owner::default()
        }
    }

    /// This owner with `pid` as its process where it has none (a socket
    /// no dump found held, whose process is known from the event).
    pub fn or_pid(mut self, pid: Option<i32>) -> Owner {
        if self.pid.is_none() {
            if let Some(p) = pid {
                self.pid = Some(p);
                self.process = sockql_collect::owners::comm(p);
            }
        }
        self
    }

    pub fn write<C: Column + Copy>(&self, r: &mut RowBuilder, c: &OwnerColumns<C>) {
        r.u64(c.netns, self.netns);
        r.str(c.netns_name, self.netns_name.as_deref());
        r.u64(c.inode, self.inode);
        r.u64(c.cookie, self.cookie);
        if let Some(uid) = c.uid {
            r.u32(uid, self.uid);
        }
        r.i32(c.pid, self.pid);
        r.str(c.process, self.process.as_deref());
    }
}

/// The socket lookup, and the process-context fallback when it misses.
pub(crate) struct Owners {
    lookup: SocketLookup,
}

impl Owners {
    /// A lookup that has dumped the host's sockets once already, so the
    /// sockets alive when the query starts are known even if they close
    /// before their first event is read.
    pub fn new() -> Owners {
        let mut owners = Owners::lazy();
        owners.lookup.dump();
        owners
    }

    /// A lookup that dumps only when a socket is first looked up (a
    /// table that sees its sockets' first transitions).
    pub fn lazy() -> Owners {
        Owners { lookup: SocketLookup::new(&[inet::IPPROTO_TCP]) }
    }

    /// The holder of the socket `tuple` names; if no dump found it, the
    /// process `task` the event ran for in its own context (else
    /// nothing); if several namespaces have the tuple, nothing.
    /// `ts_ns` is the event's time: a socket of the tuple born in
    /// another namespace since the last dump must be seen (see
    /// `SocketLookup::lookup_at`).
    pub fn of_socket(&mut self, tuple: Tuple, ts_ns: i64, task: Option<i32>) -> Owner {
        Self::owner(self.lookup.lookup_at(tuple, ts_ns), task)
    }

    /// Like [`Owners::of_socket`], dumping again for a socket known
    /// without a holder (see `SocketLookup::lookup_held`).
    pub fn of_held_socket(&mut self, tuple: Tuple, task: Option<i32>) -> Owner {
        Self::owner(self.lookup.lookup_held(tuple), task)
    }

    fn owner(found: Found<'_>, task: Option<i32>) -> Owner {
        match found {
            // The event ran for another process, of another namespace,
            // than the one holding the only socket a dump found: that
            // socket may be another namespace's with the same tuple (the
            // event's own closed before a dump saw it). The process is
            // the event's; the namespace is not told.
            Found::One(h) if task.is_some_and(|t| h.pid.is_some_and(|p| p != t) && Self::elsewhere(t, h.netns)) => {
                Owner::default().or_pid(task)
            }
            Found::One(h) => Owner::of(h),
            // Which namespace's it is cannot be told: none rather than
            // perhaps the other's.
            Found::Several => Owner::default(),
            Found::Missing => task.map(Owner::of_task).unwrap_or_default(),
        }
    }

    /// Whether process `pid` is in a namespace other than `netns`.
    fn elsewhere(pid: i32, netns: u64) -> bool {
        sockql_collect::netns::of_pid(pid).is_some_and(|n| n != netns)
    }

    /// The socket with this cookie (unique on the host) if a dump found
    /// it, else as [`Owners::of_socket`]; the row's cookie is the
    /// event's either way.
    pub fn of_cookie(&mut self, cookie: u64, tuple: Tuple, ts_ns: i64, task: Option<i32>) -> Owner {
        if self.lookup.by_cookie(cookie).is_none() {
            // A dump since the event may still have it.
            let _ = self.lookup.lookup_at(tuple, ts_ns);
        }
        let mut owner = match self.lookup.by_cookie(cookie) {
            Some(h) => Owner::of(h),
            None => match self.lookup.known_now(tuple) {
                // Another namespace's socket with the same tuple, or an
                // older socket of the tuple: not this one.
                Found::One(h) if h.cookie != cookie => task.map(Owner::of_task).unwrap_or_default(),
                found => Self::owner(found, task),
            },
        };
        owner.cookie = Some(cookie);
        owner
    }

    /// For a SYN-ACK: the namespace of the request socket `tuple` names,
    /// and the listener serving it (its inode, cookie and holder): the
    /// request has no holder of its own.
    pub fn of_listener(&mut self, tuple: Tuple, ts_ns: i64, task: Option<i32>) -> Owner {
        let request = match self.lookup.lookup_at(tuple, ts_ns) {
            Found::One(h) => Some(h.netns),
            Found::Several => return Owner::default(),
            Found::Missing => None,
        };
        let unspecified = match tuple.local.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let port = tuple.local.port();
        let any = |ip: IpAddr| SocketAddr::new(ip, 0);
        let candidates = [
            (tuple.local, any(unspecified)),
            (SocketAddr::new(unspecified, port), any(unspecified)),
            (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), any(IpAddr::V6(Ipv6Addr::UNSPECIFIED))),
        ];
        for (local, remote) in candidates {
            let t = Tuple { protocol: tuple.protocol, local, remote };
            if let Some(h) = self.lookup.known_now(t).one() {
                if request.is_none_or(|n| n == h.netns) {
                    return Owner::of(h);
                }
            }
        }
        match request {
            Some(netns) => Owner {
                netns: Some(netns),
                netns_name: sockql_collect::netns::names().remove(&netns),
                ..Owner::default()
            },
            None => task.map(Owner::of_task).unwrap_or_default(),
        }
    }
}
