//! Process lifecycles as the kernel announces them: the proc connector
//! (NETLINK_CONNECTOR, CN_IDX_PROC), which tells of every fork, exec,
//! comm change and exit on the host, however short the process's life.
//! Layouts are the UAPI of linux/cn_proc.h and linux/connector.h; the
//! parser is separate from the socket and tested on bytes.
//!
//! The connector lives in the initial network namespace and reports every
//! process of the host (pids as the initial pid namespace numbers them);
//! listening needs CAP_NET_ADMIN.

use std::ops::ControlFlow;

use crate::netlink::{MulticastListener, NetlinkError, NLMSG_DONE};
use crate::Error;

/// NETLINK_CONNECTOR.
const NETLINK_CONNECTOR: isize = 11;
/// CN_IDX_PROC and CN_VAL_PROC: the proc connector's address.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// PROC_CN_MCAST_LISTEN.
const MCAST_LISTEN: u32 = 1;

/// struct cn_msg: id (idx, val), seq, ack, len (u16), flags (u16).
const CN_MSG_LEN: usize = 20;
/// struct proc_event before its union: what, cpu, timestamp_ns.
const EVENT_HEADER: usize = 16;

/// What happened, with the fields cn_proc.h gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A new task: `pid`/`tid` are the child's, `parent_pid` the parent's
    /// process. A new thread (pid == its process's) reads as a fork too.
    Fork {
        parent_pid: i32,
    },
    Exec,
    /// The task's name changed (prctl PR_SET_NAME, or exec).
    Comm {
        name: String,
    },
    Exit {
        code: i32,
        signal: i32,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since boot (CLOCK_MONOTONIC), as the kernel stamps it.
    pub monotonic_ns: u64,
    /// The process (thread group) and the thread.
    pub pid: i32,
    pub tid: i32,
    pub kind: Kind,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

/// Parse the payload (cn_msg + proc_event) of one connector message; None
/// for events sockql does not report (uid, gid, sid, ptrace, coredump, the
/// listen acknowledgement).
pub fn parse(payload: &[u8]) -> Result<Option<Event>, NetlinkError> {
    let bad = |what: &str| NetlinkError::Malformed(format!("proc connector: {what} ({} bytes)", payload.len()));
    let (idx, val) = (
        u32_at(payload, 0).ok_or_else(|| bad("short cn_msg"))?,
        u32_at(payload, 4).ok_or_else(|| bad("short cn_msg"))?,
    );
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
        return Ok(None);
    }
    let ev = payload.get(CN_MSG_LEN..).ok_or_else(|| bad("no event"))?;
    let what = u32_at(ev, 0).ok_or_else(|| bad("short event"))?;
    let ts = u64::from_ne_bytes(ev.get(8..16).ok_or_else(|| bad("short event"))?.try_into().expect("8 bytes"));
    let data = &ev[EVENT_HEADER.min(ev.len())..];
    let field = |i: usize| i32_at(data, 4 * i).ok_or_else(|| bad("short event data"));
    let (pid, tid, kind) = match what {
        // fork: parent_pid, parent_tgid, child_pid, child_tgid
        0x1 => (field(3)?, field(2)?, Kind::Fork { parent_pid: field(1)? }),
        // exec: process_pid, process_tgid
        0x2 => (field(1)?, field(0)?, Kind::Exec),
        // comm: process_pid, process_tgid, comm[16]
        0x200 => {
            let raw = data.get(8..24).ok_or_else(|| bad("short comm event"))?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            (field(1)?, field(0)?, Kind::Comm { name: String::from_utf8_lossy(&raw[..end]).into_owned() })
        }
        // exit: process_pid, process_tgid, exit_code, exit_signal
        0x8000_0000 => {
            let status = field(2)?;
            // exit_code is the wait status: the code in its second byte,
            // a killing signal in its low seven bits.
            (field(1)?, field(0)?, Kind::Exit { code: (status >> 8) & 0xff, signal: status & 0x7f })
        }
        _ => return Ok(None),
    };
    Ok(Some(Event { monotonic_ns: ts, pid, tid, kind }))
}

/// The answer to a listen request (PROC_EVENT_NONE): the errno the
/// connector refused it with, 0 when it accepted; None for other messages.
pub fn ack_errno(payload: &[u8]) -> Option<u32> {
    let ev = payload.get(CN_MSG_LEN..)?;
    (u32_at(payload, 0)? == CN_IDX_PROC && u32_at(ev, 0)? == 0).then(|| u32_at(ev, EVENT_HEADER)).flatten()
}

/// The subscription: a connector socket that asked for process events.
pub struct ProcListener {
    listener: MulticastListener,
}

impl ProcListener {
    pub fn open() -> Result<Self, Error> {
        let mut listener = MulticastListener::open(NETLINK_CONNECTOR, &[CN_IDX_PROC])?;
        // Ask the connector to start sending: a netlink message carrying a
        // cn_msg addressed to the proc connector with PROC_CN_MCAST_LISTEN.
        let mut body = Vec::with_capacity(CN_MSG_LEN + 4);
        body.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        body.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes()); // seq
        body.extend_from_slice(&0u32.to_ne_bytes()); // ack
        body.extend_from_slice(&4u16.to_ne_bytes()); // len
        body.extend_from_slice(&0u16.to_ne_bytes()); // flags
        body.extend_from_slice(&MCAST_LISTEN.to_ne_bytes());
        listener.send(&crate::netlink::request(NLMSG_DONE, 0, 0, &body))?;
        // The connector answers the request (after a check of
        // CAP_NET_ADMIN); unanswered, events would simply never come.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut answer = None;
        while answer.is_none() && std::time::Instant::now() < deadline {
            // At most 100 ms; what it says is read below either way.
            let _ = nix::poll::poll(&mut [nix::poll::PollFd::new(listener.fd(), nix::poll::PollFlags::POLLIN)], 100u16);
            listener.read_waiting(|frame| {
                answer = answer.or(ack_errno(frame.payload));
                Ok(if answer.is_some() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })?;
        }
        match answer {
            Some(0) => Ok(ProcListener { listener }),
            // The same words as a refused socket: "Operation not permitted".
            Some(errno) => Err(NetlinkError::Open(std::io::Error::from_raw_os_error(errno as i32))),
            None => Err(NetlinkError::Malformed("the proc connector did not answer the listen request".into())),
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    /// Times the kernel dropped events for want of queue (ENOBUFS).
    pub fn overruns(&self) -> u64 {
        self.listener.overruns
    }

    /// Hand every event waiting to `on_event`, without waiting for more.
    pub fn read_waiting(&mut self, mut on_event: impl FnMut(&Event) -> ControlFlow<()>) -> Result<(), Error> {
        self.listener.read_waiting(|frame| match parse(frame.payload)? {
            Some(e) => Ok(on_event(&e)),
            None => Ok(ControlFlow::Continue(())),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, fields: &[i32], extra: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [CN_IDX_PROC, CN_VAL_PROC, 7, 0] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&0u32.to_ne_bytes()); // len, flags
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        b.extend_from_slice(&123_456_789u64.to_ne_bytes());
        for f in fields {
            b.extend_from_slice(&f.to_ne_bytes());
        }
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn parses_fork_exec_comm_and_exit() {
        let fork = parse(&message(1, &[100, 100, 200, 200], &[])).unwrap().unwrap();
        assert_eq!(
            (fork.pid, fork.tid, fork.kind, fork.monotonic_ns),
            (200, 200, Kind::Fork { parent_pid: 100 }, 123_456_789)
        );
        let exec = parse(&message(2, &[201, 200], &[])).unwrap().unwrap();
        assert_eq!((exec.pid, exec.tid, exec.kind), (200, 201, Kind::Exec));
        let mut name = *b"curl\0\0\0\0\0\0\0\0\0\0\0\0";
        name[4] = 0;
        let comm = parse(&message(0x200, &[200, 200], &name)).unwrap().unwrap();
        assert_eq!(comm.kind, Kind::Comm { name: "curl".into() });
        // exit(3): wait status 0x0300; killed by SIGKILL: 9.
        let exit = parse(&message(0x8000_0000, &[200, 200, 0x300, 17], &[])).unwrap().unwrap();
        assert_eq!(exit.kind, Kind::Exit { code: 3, signal: 0 });
        let killed = parse(&message(0x8000_0000, &[200, 200, 9, 17], &[])).unwrap().unwrap();
        assert_eq!(killed.kind, Kind::Exit { code: 0, signal: 9 });
        // uid changes and the listen acknowledgement (what = 0) are left out.
        assert_eq!(parse(&message(0x4, &[200, 200, 0, 0], &[])).unwrap(), None);
        assert_eq!(parse(&message(0, &[0, 0], &[])).unwrap(), None);
        // The acknowledgement says whether the listen request was refused.
        assert_eq!(ack_errno(&message(0, &[1], &[])), Some(1));
        assert_eq!(ack_errno(&message(0, &[0], &[])), Some(0));
        assert_eq!(ack_errno(&message(2, &[201, 200], &[])), None);
        assert!(parse(&[1, 2, 3]).is_err());
    }
}
