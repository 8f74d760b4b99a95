#![no_main]
use libfuzzer_sys::fuzz_target;
use sockql_collect::{conntrack::netlink as ctnetlink, netlink::frames};

fuzz_target!(|data: &[u8]| {
    let _ = ctnetlink::parse_entry(data);
    for frame in frames(data).flatten() {
        let _ = ctnetlink::parse_entry(frame.payload);
        let _ = ctnetlink::parse_cpu_stats(frame.payload);
    }
});
