//! [`DropReader`]: the drop program loaded and attached to `kfree_skb`,
//! its records read from per-CPU BPF_OUTPUT perf rings (the tracepoint
//! reader's rings: same polling, same PERF_RECORD_LOST counting), each
//! decoded into a [`PacketDrop`].
//!
//! Nothing outlives the reader: the raw tracepoint link, the program,
//! the perf event array and the perf events are kernel objects of its
//! descriptors (the link holds the program, the program the map, the map
//! the perf events), all released when the descriptors close, on drop,
//! exit and SIGKILL alike. Nothing is pinned in bpffs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};

use thiserror::Error;

use super::btf::{Btf, BtfError};
use super::program::{self, at, flag, Offsets, RECORD};
use super::sys;
use crate::trace::filter::Filter;
use crate::trace::{Options, Sample, TraceError, TraceReader};

/// Why the reader could not start, in one line.
#[derive(Debug, Error)]
pub enum BpfError {
    /// No BTF, or a kernel whose structs lack what the program reads.
    #[error("kernel BTF: {0}")]
    Btf(#[from] BtfError),
    /// The verifier refused the program: its errno, the log's last
    /// meaningful line (the reason), and the whole log.
    #[error("the kernel's verifier refused the drop program ({source}): {summary}")]
    Verifier { source: std::io::Error, summary: String, log: String },
    /// A bpf() or perf call failed.
    #[error("drop program: {what}: {source}")]
    Sys { what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The program did not assemble (a bug, not a kernel matter).
    #[error("drop program: {0}")]
    Build(String),
}

impl BpfError {
    /// The verifier's whole log, when it refused the program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            BpfError::Verifier { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// The verifier log's line that says why: the last one before its
/// statistics ("processed N insns", "verification time").
pub fn summarize(log: &str) -> String {
    let stats = |l: &str| {
        l.starts_with("processed ")
            || l.starts_with("verification time")
            || l.starts_with("stack depth")
            || l.is_empty()
    };
    let line = log.lines().rev().map(str::trim).find(|l| !stats(l)).unwrap_or("(no verifier log)");
    line.chars().take(200).collect()
}

/// Load `insns` as a raw tracepoint program (the drop program, or a
/// test's).
pub(crate) fn load(name: &str, insns: &[super::insn::Insn]) -> Result<OwnedFd, BpfError> {
    sys::prog_load(name, insns).map_err(|e| {
        if e.log.trim().is_empty() {
            // Refused before the verifier ran (EPERM without CAP_BPF,
            // E2BIG, ...): the errno is the reason.
            BpfError::Sys { what: "load", source: e.source }
        } else {
            BpfError::Verifier { summary: summarize(&e.log), source: e.source, log: e.log }
        }
    })
}

/// Where the packet's headers stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// Not IPv4 or IPv6 (ethertype), or no network header set.
    NotIp,
    /// Addresses read; ports too if [`Tuple::ports`] is Some.
    Read,
    /// A header lay beyond the skb's linear data (paged or not yet
    /// pulled): not read.
    NotLinear,
}

/// Addresses and, for TCP and UDP, ports as the packet carried them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// IP protocol (IPv4) or first next-header (IPv6: an extension header
    /// there means no ports).
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// (source, destination) for TCP and UDP with the transport header
    /// in the linear data.
    pub ports: Option<(u16, u16)>,
}

/// One dropped packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketDrop {
    /// CLOCK_MONOTONIC ns (the perf sample's time).
    pub time_ns: u64,
    pub cpu: u32,
    /// The task on the CPU when the packet was freed (the sample's pid
    /// and tid): not necessarily the socket's.
    pub pid: u32,
    pub tid: u32,
    /// enum skb_drop_reason (name it with the tracepoint format's
    /// `symbols["reason"]`).
    pub reason: u32,
    /// Kernel address of the code that dropped it (kallsyms names it).
    pub location: u64,
    /// skb->protocol in host order (0x0800 IPv4, 0x86dd IPv6).
    pub ethertype: u16,
    /// skb->dev's ifindex; None without a device.
    pub ifindex: Option<u32>,
    /// Network namespace inode: skb->dev's namespace, else rx_sk's, else
    /// None.
    pub netns: Option<u32>,
    /// True when `netns` is rx_sk's (no device).
    pub netns_of_socket: bool,
    /// Whether the kernel named a receiving socket (rx_sk); false on a
    /// kernel without the argument.
    pub rx_sk: bool,
    /// rx_sk's socket inode (as in /proc/PID/fd's socket:[N]); None
    /// without a receiving socket or one without a struct socket.
    pub inode: Option<u64>,
    pub headers: Headers,
    pub tuple: Option<Tuple>,
}

impl PacketDrop {
    /// Decode a record the program wrote; None if it is not one.
    pub fn decode(s: &Sample<'_>) -> Option<PacketDrop> {
        let r = s.raw.get(..RECORD)?;
        let b = |o: i16, n: usize| r.get(o as usize..o as usize + n);
        let u16n = |o| Some(u16::from_ne_bytes(b(o, 2)?.try_into().ok()?));
        let u32n = |o| Some(u32::from_ne_bytes(b(o, 4)?.try_into().ok()?));
        let u64n = |o| Some(u64::from_ne_bytes(b(o, 8)?.try_into().ok()?));
        let be16 = |o| Some(u16::from_be_bytes(b(o, 2)?.try_into().ok()?));
        let nonzero32 = |v: u32| (v != 0).then_some(v);
        let flags = *r.get(at::FLAGS as usize)?;
        let ethertype = u16n(at::ETHERTYPE)?;
        let protocol = *r.get(at::L4 as usize)?;
        let addr = |o| -> Option<IpAddr> {
            Some(match ethertype {
                0x0800 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b(o, 4)?).ok()?)),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b(o, 16)?).ok()?)),
            })
        };
        let tuple = if flags & flag::ADDRS != 0 {
            let ports = if flags & flag::PORTS != 0 { Some((be16(at::SPORT)?, be16(at::DPORT)?)) } else { None };
            Some(Tuple { protocol, src: addr(at::SADDR)?, dst: addr(at::DADDR)?, ports })
        } else {
            None
        };
        let headers = if flags & flag::NOT_LINEAR != 0 {
            Headers::NotLinear
        } else if tuple.is_some() {
            Headers::Read
        } else {
            Headers::NotIp
        };
        Some(PacketDrop {
            time_ns: s.time_ns,
            cpu: s.cpu,
            pid: s.pid,
            tid: s.tid,
            reason: u32n(at::REASON)?,
            location: u64n(at::LOCATION)?,
            ethertype,
            ifindex: nonzero32(u32n(at::IFINDEX)?),
            netns: nonzero32(u32n(at::NETNS)?),
            netns_of_socket: flags & flag::NETNS_OF_SOCKET != 0,
            rx_sk: flags & flag::RX_SK != 0,
            inode: Some(u64n(at::INODE)?).filter(|&v| v != 0),
            headers,
            tuple,
        })
    }
}

/// The drop program attached to kfree_skb, and its rings. Fields drop in
/// order: the link (detaching the program) before the rest.
pub struct DropReader {
    link: OwnedFd,
    prog: OwnedFd,
    _map: OwnedFd,
    rings: TraceReader,
    /// The part of the caller's filter the program applies.
    applied: Filter,
    malformed: u64,
}

impl DropReader {
    /// Build the program for this kernel (offsets from its BTF), with the
    /// part of `filter` it can apply (see [`DropReader::applied`]; the
    /// caller still checks the rest) and, if `netns` lists namespace
    /// inodes (at most [`program::MAX_NETNS`]; more: not applied), only
    /// drops of those namespaces or of none known; load it and attach it.
    pub fn open(filter: &Filter, netns: &[u32], opts: Options) -> Result<DropReader, BpfError> {
        let btf = Btf::vmlinux()?;
        let args = btf.raw_tracepoint_args("kfree_skb")?;
        let has_rx_sk = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["struct sk_buff *", "void *", "enum skb_drop_reason", "struct sock *"] => true,
            ["struct sk_buff *", "void *", "enum skb_drop_reason"] => false,
            _ => {
                return Err(
                    BtfError(format!("kfree_skb's arguments are ({}), not the ones known", args.join(", "))).into()
                )
            }
        };
        let offsets = Offsets::from_btf(&btf)?;
        drop(btf);
        let rings = TraceReader::bpf_outputs(opts)?;
        let fds = rings.cpu_fds();
        let entries = fds.iter().map(|(cpu, _)| cpu + 1).max().unwrap_or(1);
        let map =
            sys::perf_event_array(entries).map_err(|source| BpfError::Sys { what: "perf event array", source })?;
        for (cpu, fd) in &fds {
            sys::map_update(&map, *cpu, *fd as u32).map_err(|source| BpfError::Sys { what: "map update", source })?;
        }
        let applied = program::in_kernel(filter);
        let insns = program::build(&offsets, map.as_raw_fd(), &applied, netns, has_rx_sk).map_err(BpfError::Build)?;
        let prog = load("sockql_drops", &insns)?;
        let link = sys::raw_tracepoint_open(c"kfree_skb", &prog)
            .map_err(|source| BpfError::Sys { what: "attach to raw tracepoint kfree_skb", source })?;
        Ok(DropReader { link, prog, _map: map, rings, applied, malformed: 0 })
    }

    /// The filter the program applies in the kernel (for EXPLAIN).
    pub fn applied(&self) -> &Filter {
        &self.applied
    }

    /// Hand every drop waiting to `on_drop`, without waiting for more.
    pub fn read_waiting(&mut self, mut on_drop: impl FnMut(&PacketDrop) -> ControlFlow<()>) -> Result<(), BpfError> {
        let malformed = &mut self.malformed;
        self.rings.read_waiting(|s| match PacketDrop::decode(s) {
            Some(d) => on_drop(&d),
            None => {
                *malformed += 1;
                ControlFlow::Continue(())
            }
        })?;
        Ok(())
    }

    /// Wait up to `timeout_ms` for a ring to have drops waiting.
    pub fn wait(&self, timeout_ms: u16) -> Result<bool, BpfError> {
        Ok(self.rings.wait(timeout_ms)?)
    }

    /// One descriptor to poll.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.rings.raw_fd()
    }

    /// Drops lost so far: those the kernel had no room for in a ring
    /// ([`TraceReader::lost`]: the events' lost_samples, so those at the
    /// end of a flood too), and the program's recursion misses (hits of
    /// kfree_skb while it already ran on that CPU, which it never saw:
    /// they may include drops the query would not have kept, so the count
    /// errs high, never silent).
    pub fn lost(&self) -> u64 {
        let missed = sys::prog_recursion_misses(&self.prog).unwrap_or(0);
        self.rings.lost().saturating_add(missed)
    }

    /// Records that were not drops (none expected).
    pub fn malformed(&self) -> u64 {
        self.malformed.saturating_add(self.rings.malformed())
    }

    /// The kernel's ids of the program and link (bpftool prog/link show).
    pub fn ids(&self) -> std::io::Result<(u32, u32)> {
        Ok((sys::prog_id(&self.prog)?, sys::link_id(&self.link)?))
    }
}

impl From<BpfError> for TraceError {
    /// For tables, which show a TraceError in one line: a kernel without
    /// what the program reads is "missing" (one note, no rows).
    fn from(e: BpfError) -> TraceError {
        match e {
            BpfError::Trace(t) => t,
            BpfError::Btf(b) => TraceError::NoField { event: "skb:kfree_skb (BTF)".into(), field: b.0.into() },
            other => {
                TraceError::Sys { what: "skb:kfree_skb BPF".into(), source: std::io::Error::other(other.to_string()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_record() {
        let mut r = [0u8; RECORD + 4];
        r[0..8].copy_from_slice(&0xffff_ffff_8100_0000u64.to_ne_bytes());
        r[8..12].copy_from_slice(&2u32.to_ne_bytes());
        r[12..16].copy_from_slice(&7u32.to_ne_bytes());
        r[16..20].copy_from_slice(&4026531840u32.to_ne_bytes());
        r[20..22].copy_from_slice(&0x0800u16.to_ne_bytes());
        r[22] = 17;
        r[23] = flag::ADDRS | flag::PORTS;
        r[32..36].copy_from_slice(&[10, 0, 0, 1]);
        r[48..52].copy_from_slice(&[10, 0, 0, 2]);
        r[64..68].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        let s = Sample { pid: 0, tid: 0, time_ns: 5, cpu: 1, raw: &r };
        let d = PacketDrop::decode(&s).unwrap();
        assert_eq!(
            (d.reason, d.ifindex, d.netns, d.inode, d.headers),
            (2, Some(7), Some(4026531840), None, Headers::Read)
        );
        let t = d.tuple.unwrap();
        assert_eq!(
            (t.protocol, t.src.to_string(), t.dst.to_string(), t.ports),
            (17, "10.0.0.1".into(), "10.0.0.2".into(), Some((12345, 53)))
        );
        assert!(PacketDrop::decode(&Sample { raw: &r[..RECORD - 1], ..s }).is_none());
        let mut r2 = r;
        r2[23] = flag::NOT_LINEAR;
        assert_eq!(PacketDrop::decode(&Sample { raw: &r2, ..s }).unwrap().headers, Headers::NotLinear);
    }

    #[test]
    fn verifier_summary_is_the_reason_line() {
        let log =
            "0: (b7) r1 = 0\n1: (95) exit\nR0 !read_ok\nprocessed 2 insns (limit 1000000) max_states_per_insn 0\n";
        assert_eq!(summarize(log), "R0 !read_ok");
        assert_eq!(summarize(""), "(no verifier log)");
    }
}
