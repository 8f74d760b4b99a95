//! Integration tests against the real kernel, in one binary so DataFusion
//! is linked once. They open real sockets on loopback, and where they need
//! an isolated socket set they create network namespaces (root, as CI has).

mod budget;
mod capture_owners;
mod churn;
mod cli;
mod common;
mod conntrack;
mod events;
mod history;
mod history_attack;
mod history_edges;
mod impair;
mod layers;
mod namespaces;
mod netns;
mod notices;
mod owners;
mod packet_reports;
mod packets;
mod paths_attack;
mod pcap;
mod pcap_decode;
mod pcap_files;
mod pcap_link;
mod pg;
mod pg_attack;
mod pg_catalog;
mod pg_clients;
mod pg_errors;
mod pg_psql;
mod pg_types;
mod privilege;
mod properties;
mod pushdown;
mod reliability;
mod repl;
mod reports;
mod root_safe;
mod saved;
mod serve;
mod serve_attack;
mod soak;
mod sockets;
mod stream_bounds;
mod tcp_metrics;
mod time_types;

mod ss_parity;
mod ux;
mod watch;
