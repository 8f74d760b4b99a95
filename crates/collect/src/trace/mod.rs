//! Kernel tracepoints (`skb:kfree_skb`, `tcp:tcp_retransmit_skb`,
//! `sock:inet_sock_set_state`, ...) read as perf events: the kernel's own
//! reasons for drops, retransmissions, resets and state changes.
//!
//! # Why perf-event tracepoints and not eBPF
//!
//! A tracepoint opened with perf_event_open(PERF_TYPE_TRACEPOINT) writes
//! the tracepoint's raw record (its fields as the format file lays them
//! out) into an mmap'd ring per CPU, after a filter expression the kernel
//! itself evaluates (PERF_EVENT_IOC_SET_FILTER: `reason == 3`, `dport ==
//! 8080`). That needs no BPF program: nothing is compiled at build or run
//! time, it builds on stable from crates (perf-event-open-sys's structs,
//! nix for mmap/epoll, rustix for the private tracefs mount), and a perf
//! event is the kernel object of its descriptor, so it is gone when the
//! descriptor closes, on every exit path including SIGKILL: nothing to
//! detach, no pinned program or link to leak, no tracefs `enable` or
//! `filter` file written, so the host's ftrace state is never touched.
//! Field names and symbolic values (drop reasons, TCP states) come from
//! the running kernel's format files, so new reasons appear by name.
//!
//! What perf tracepoints cannot give is what their fields only point to:
//! a dropped packet's namespace, interface and headers (kfree_skb gives
//! `skbaddr`, `rx_sk`, protocol, location and reason), a socket's
//! namespace and inode. For that, [`bpf`] loads one small eBPF program
//! sockql builds itself from Rust instructions at open time (offsets from
//! the kernel's BTF, no compiler at build or run time, no crate: aya's
//! programs need bpf-linker on nightly, libbpf-rs's need clang); it is
//! released with its descriptors like a perf event. The TCP and socket
//! tables read tracepoints through perf, where the record has what they
//! show; `packet_drops` reads drops through [`bpf::DropReader`] and falls
//! back to perf where the program cannot load. The cost is one copy per event to user
//! space where a BPF map would count in the kernel; kernel-side filters
//! keep that to the events a query asks for (BENCHMARKS.md,
//! "Tracepoints: packet_drops against bpftrace").
//!
//! # Layout
//! - [`format`]: format files parsed (fields, `__print_symbolic` maps);
//! - [`tracefs`]: where those files are read, or a private mount;
//! - [`perf`]: the per-CPU perf events, filters and rings;
//! - [`event`]: a sample and its fields decoded, bounds-checked;
//! - [`filter`]: kernel filters as structure, written as the kernel's text;
//! - [`kallsyms`]: kernel addresses to symbol+offset;
//! - [`bpf`]: the eBPF reader of drops' namespace, interface and headers;
//! - [`error`]: each failure as one line a table can show.

pub mod bpf;
pub mod error;
pub mod event;
pub mod filter;
pub mod format;
pub mod kallsyms;
pub mod perf;
pub mod tracefs;

pub use error::TraceError;
pub use event::Sample;
pub use format::Format;
pub use perf::{Options, Request, TraceReader};
pub use tracefs::Tracefs;

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod test_support;
