//! `skb:kfree_skb` read by an eBPF program sockql writes itself, for what
//! the perf-event tracepoint only points to: the dropped packet's
//! namespace, interface and IPv4/IPv6 TCP/UDP 4-tuple, and the receiving
//! socket's namespace and inode.
//!
//! # How, and why this way
//! - No BPF compiler, at build or run time, on stable: the program is
//!   about 170 instructions (plus 4 per filter comparison), written with a
//!   small builder ([`insn`]) in Rust ([`program`]) and built at open
//!   time for the running kernel.
//! - No CO-RE relocation step: the struct offsets it reads (sk_buff.dev,
//!   head, network_header, ...; see [`program::OFFSETS`]) come from the
//!   kernel's own BTF (/sys/kernel/btf/vmlinux) through a small bounded
//!   parser ([`btf`]; anonymous struct/union members resolved) and go
//!   into the instructions as immediates. The crates that parse BTF
//!   would replace ~300 lines of parser for the three lookups used here
//!   with a dependency tree: btf-rs 2 (Retis's) brings btf-rs-derive (a
//!   proc macro: syn, quote), byteorder, fallible-iterator and memmap2,
//!   and is LGPL-2.1; aya-obj brings object, hashbrown, bytes, log,
//!   core-error and thiserror 1, for an ELF loader sockql has no ELF
//!   for. The parser here reads a blob from memory, never panics, and
//!   bounds every walk (unit tests: a captured fixture, every truncation
//!   and single-byte corruption of it, looping ids).
//! - Attached to the raw tracepoint (bpf(BPF_RAW_TRACEPOINT_OPEN,
//!   "kfree_skb")), not to the tracepoint's perf event
//!   (PERF_EVENT_IOC_SET_BPF): the raw tracepoint's context is
//!   TP_PROTO's arguments as they are (skb, location, reason, rx_sk: the
//!   prototype is checked in BTF's btf_trace_kfree_skb before loading),
//!   where the perf-attached program gets the tracepoint's formatted
//!   record (skbaddr, location, protocol, reason, rx_skaddr), which costs
//!   the kernel the record's fill for every drop, filtered or not, and
//!   ties the program to the format's offsets too. Both are released
//!   when their descriptors close; the link is a descriptor of its own.
//! - Output through bpf_perf_event_output into per-CPU BPF_OUTPUT perf
//!   rings read by [`crate::trace::TraceReader`] (same ring reading,
//!   lost-record counting, polling).
//! - The query's [`crate::trace::filter::Filter`] on reason, protocol
//!   (ethertype) or location is compiled into the program, before any
//!   pointer is followed: a drop it filters out costs the kernel ~20
//!   instructions and no copy.
//! - aya (userspace only) would replace [`sys`] (~200 lines: five bpf()
//!   commands) with a loader that expects an ELF object, which this
//!   program is not; its raw-instruction path still needs the same map
//!   fd patching. Not worth its dependency tree here.
//!
//! # Who uses it
//! `packet_drops` (sockql-tables): the namespaces a scan covers go into
//! the program as inodes, the tracepoint filter made from the query's
//! WHERE clause as [`program::in_kernel`] comparisons; the table names the
//! interface, socket holder and namespace from what a [`PacketDrop`]
//! carries, and reads the perf tracepoint instead when [`DropReader::open`]
//! fails (said once).
//!
//! # Layout
//! - [`btf`]: the kernel's BTF: member offsets, tracepoint prototypes;
//! - [`insn`]: the instruction builder;
//! - [`program`]: the drop program and its record layout;
//! - [`sys`]: the bpf() commands;
//! - [`reader`]: [`DropReader`] (open, read, lost) and [`PacketDrop`].

pub mod btf;
pub mod insn;
pub mod program;
pub mod reader;
pub mod sys;

pub use reader::{BpfError, DropReader, Headers, PacketDrop, Tuple};

#[cfg(test)]
mod kernel_tests;
