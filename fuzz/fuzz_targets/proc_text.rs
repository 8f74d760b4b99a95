#![no_main]
use libfuzzer_sys::fuzz_target;
use sockql_collect::{conntrack::proc as proc_conntrack, counters, proc_net};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = proc_net::parse("/proc/net/tcp", text);
        let _ = proc_conntrack::parse(text, 0);
        let _ = proc_conntrack::parse_stats(text);
        let _ = counters::parse_paired("/proc/net/snmp", text);
        let _ = counters::parse_snmp6(text);
        let _ = counters::parse_sockstat("/proc/net/sockstat", text);
    }
});
