//! Conntrack changes as the kernel announces them: ctnetlink's multicast
//! groups NFNLGRP_CONNTRACK_NEW, _UPDATE and _DESTROY, the source of
//! `conntrack -E`. Each message is an entry as a dump shows it; a new
//! entry's carries NLM_F_CREATE, an update's does not, and a destroyed
//! one comes as IPCTNL_MSG_CT_DELETE (with its counters and stop time when
//! accounting and timestamps are on).

use std::ops::ControlFlow;

use super::netlink::{msg, parse_entry, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW};
use super::Conntrack;
use crate::netlink::{MulticastListener, NetlinkError};
use crate::Error;

/// NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY.
pub const GROUPS: [u32; 3] = [1, 2, 3];

const NLM_F_CREATE: u16 = 0x400;

/// What happened to an entry, as `conntrack -E` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    Update,
    Destroy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::New => "NEW",
            Kind::Update => "UPDATE",
            Kind::Destroy => "DESTROY",
        }
    }

    /// The kind of a ctnetlink event message, None for other messages.
    pub fn of(message_type: u16, flags: u16) -> Option<Kind> {
        if message_type == msg(IPCTNL_MSG_CT_DELETE) {
            Some(Kind::Destroy)
        } else if message_type == msg(IPCTNL_MSG_CT_NEW) {
            Some(if flags & NLM_F_CREATE != 0 { Kind::New } else { Kind::Update })
        } else {
            None
        }
    }
}

/// Subscribed to the conntrack groups of the calling thread's namespace.
pub struct ConntrackListener {
    listener: MulticastListener,
}

impl ConntrackListener {
    pub fn open() -> Result<Self, Error> {
        Ok(ConntrackListener { listener: MulticastListener::open(netlink_sys::constants::NETLINK_NETFILTER, &GROUPS)? })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    /// Times the kernel dropped events for want of queue (ENOBUFS).
    pub fn overruns(&self) -> u64 {
        self.listener.overruns
    }

    /// Hand every event waiting to `on_event`, without waiting for more.
    pub fn read_waiting(&mut self, mut on_event: impl FnMut(Kind, &Conntrack) -> ControlFlow<()>) -> Result<(), Error> {
        self.listener.read_waiting(|frame| {
            let Some(kind) = Kind::of(frame.message_type, frame.flags) else { return Ok(ControlFlow::Continue(())) };
            let ct = parse_entry(frame.payload)?;
            Ok::<_, NetlinkError>(on_event(kind, &ct))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_type_and_create_flag() {
        assert_eq!(Kind::of(msg(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | 0x200), Some(Kind::New));
        assert_eq!(Kind::of(msg(IPCTNL_MSG_CT_NEW), 0), Some(Kind::Update));
        assert_eq!(Kind::of(msg(IPCTNL_MSG_CT_DELETE), 0), Some(Kind::Destroy));
        assert_eq!(Kind::of(msg(4), 0), None);
    }
}
