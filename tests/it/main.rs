//! Integration tests against the real kernel, in one binary so DataFusion
//! is linked once. They open real sockets on loopback, and where they need
//! an isolated socket set they create network namespaces (root, as CI has).

mod cli;
mod common;
mod conntrack;
mod namespaces;
mod netns;
mod owners;
mod packets;
mod privilege;
mod pushdown;
mod repl;
mod saved;
mod sockets;
mod watch;
