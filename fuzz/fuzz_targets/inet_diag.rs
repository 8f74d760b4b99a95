#![no_main]
use libfuzzer_sys::fuzz_target;
use sockql_collect::{netlink::frames, sock_diag::inet::InetDiagMsg, sock_diag::unix as unix_diag};

fuzz_target!(|data: &[u8]| {
    for frame in frames(data).flatten() {
        if let Ok(m) = InetDiagMsg::parse(frame.payload) {
            let _ = (m.local_addr(), m.congestion(), m.tcp_info().map(|t| t.bytes_sent()), m.meminfo().map(|x| x.drops()));
        }
        let _ = unix_diag::parse(frame.payload);
    }
});
