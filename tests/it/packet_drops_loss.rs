//! Issue 30: no silent loss when a stream ends. A flood of drops ends and
//! Ctrl-C ends the `--follow` query right after it: every drop the
//! namespace's UdpNoPorts counted is either a row or counted in
//! `overruns`, never neither. (Before: drops the kernel had no room for at
//! the end of a flood were reported by the kernel only with the next record
//! written to that CPU's ring (PERF_RECORD_LOST), which never came: the
//! count fell short with overruns 0.)

use std::net::UdpSocket;

use serde_json::Value;

use crate::netns::Netns;
use crate::packet_drops::{nstat, NsThread, Stream};

/// `n` datagrams to a closed port of `ns`'s loopback, as fast as one
/// thread sends them; UdpNoPorts' move while it did.
fn flood(ns: &Netns, n: usize) -> (NsThread<u64>, u64) {
    let name = ns.name.clone();
    let before = nstat(&name, &["UdpNoPorts"])[0];
    let work = NsThread::new(ns, move || {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..n {
            udp.send_to(b"x", ("127.0.0.1", closed)).unwrap();
        }
        nstat(&name, &["UdpNoPorts"])[0]
    });
    (work, before)
}

fn count(reader: &str) -> (u64, u64, u64) {
    const N: usize = 200_000;
    let ns = Netns::new("pdloss");
    let (work, before) = flood(&ns, N);
    let mut sql = format!(
        "SELECT count(*) AS n, coalesce(max(overruns), 0) AS lost FROM packet_drops \
         WHERE reason = 'NO_SOCKET' AND netns = {}",
        ns.inode()
    );
    if reader == "perf" {
        // The perf reader's rows are the whole host's, any namespace's and
        // any task's (some of the flood's drops run in ksoftirqd): at least
        // the flood's.
        sql = "SELECT count(*) AS n, coalesce(max(overruns), 0) AS lost FROM packet_drops \
               WHERE reason = 'NO_SOCKET' AND reader = 'perf'"
            .to_string();
    }
    let stream = Stream::start(&[], &sql);
    let after = work.run();
    // Ctrl-C right after the flood, as an operator would.
    let rows: Vec<Value> = stream.stop();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    (r["n"].as_u64().unwrap(), r["lost"].as_u64().unwrap(), after - before)
}

/// The eBPF reader: rows + overruns == UdpNoPorts, exactly.
#[test]
fn flood_ended_by_ctrl_c_loses_nothing_silently() {
    let (n, lost, kernel) = count("bpf");
    assert_eq!(kernel, 200_000, "the flood's drops");
    assert_eq!(n + lost, kernel, "rows {n} + overruns {lost} != UdpNoPorts {kernel}");
}

/// The perf reader: no fewer rows + overruns than the flood's drops (the
/// rows are the whole host's, so other drops may add to them).
#[test]
fn perf_flood_ended_by_ctrl_c_loses_nothing_silently() {
    let (n, lost, kernel) = count("perf");
    assert_eq!(kernel, 200_000, "the flood's drops");
    assert!(n + lost >= kernel, "rows {n} + overruns {lost} < UdpNoPorts {kernel}");
}
