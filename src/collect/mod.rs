//! Readers of kernel state. Nothing here knows about SQL or Arrow: each
//! module yields plain typed records or borrowed views of kernel messages,
//! with parsing kept apart from I/O so parsers can be tested on captured
//! bytes.

pub mod counters;
pub mod ctnetlink;
pub mod inet_diag;
pub mod netlink;
pub mod netns;
pub mod nla;
pub mod owners;
pub mod proc_conntrack;
pub mod proc_net;
pub mod processes;
pub mod sock_diag;
pub mod sysctl;
pub mod tcp_state;
pub mod unix_diag;
pub mod users;
