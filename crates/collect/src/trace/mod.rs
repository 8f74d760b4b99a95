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
//! eBPF (aya, libbpf-rs) could do more in the kernel: read the dropped
//! packet's headers through `skb` when no socket is attached, aggregate
//! counts in a map instead of copying each event out. But the program has
//! to come from somewhere: aya's programs are built with bpf-linker on a
//! nightly toolchain, libbpf-rs's from a `.bpf.c` with clang (not a crate,
//! and not the stable toolchain alone), both ahead of time into bytes
//! shipped in the binary. Writing the program as raw BPF instructions in
//! Rust (the way `packets/bpf.rs` writes classic BPF) is possible without
//! a compiler, but loading it needs BTF/CO-RE relocation for `struct
//! sk_buff` offsets (a hand-made loader or aya's, which brings its object
//! parser) and hand-verified bytecode that every kernel's verifier must
//! accept; a mistake there is a silent wrong answer. The attachment is
//! cleaned up by fd close as well, so cleanliness does not decide it.
//! What decides it: perf tracepoints give every field the tables
//! need except packet headers for socketless drops (kfree_skb gives
//! protocol, location, reason and `rx_sk`), with none of the build
//! constraints. The cost is one copy per event to user space where a BPF
//! map would count in the kernel; kernel-side filters keep that to the
//! events a query asks for (measured against bpftrace in the report of
//! issue 30, later BENCHMARKS.md).
//!
//! # Layout
//! - [`format`]: format files parsed (fields, `__print_symbolic` maps);
//! - [`tracefs`]: where those files are read, or a private mount;
//! - [`perf`]: the per-CPU perf events, filters and rings;
//! - [`event`]: a sample and its fields decoded, bounds-checked;
//! - [`kallsyms`]: kernel addresses to symbol+offset;
//! - [`error`]: each failure as one line a table can show.

pub mod error;
pub mod event;
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
