//! sockql under churn: while connections open and close by the thousand
//! and processes start and die, 200 queries over sockets, socket_owners
//! and processes all succeed with plausible answers.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;
use crate::netns::Netns;

const OPEN_AT_ONCE: usize = 300;
const QUERIES: usize = 200;

#[test]
fn two_hundred_queries_during_socket_and_process_churn() {
    let ns = Netns::new("churn");
    let stop = Arc::new(AtomicBool::new(false));
    let (churned, spawned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let l = ns.enter(|| listener("127.0.0.1:7500", 1024));
    let sockets = {
        let (stop, churned) = (stop.clone(), churned.clone());
        let path = format!("/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            use std::os::fd::AsRawFd;
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let mut open: VecDeque<(TcpStream, TcpStream)> = VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let c = TcpStream::connect("127.0.0.1:7500").unwrap();
                let s = l.accept().unwrap().0;
                open.push_back((c, s));
                if open.len() > OPEN_AT_ONCE {
                    // Alternate who closes first: TIME-WAIT and CLOSE-WAIT both pass by.
                    let (c, s) = open.pop_front().unwrap();
                    if churned.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                        drop(c);
                        drop(s);
                    } else {
                        drop(s);
                        drop(c);
                    }
                }
            }
        })
    };
    let processes = {
        let (stop, spawned) = (stop.clone(), spawned.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut kids: Vec<_> = (0..10).map(|_| Command::new("sleep").arg("5").spawn().unwrap()).collect();
                spawned.fetch_add(kids.len(), Ordering::Relaxed);
                for k in &mut kids {
                    k.kill().unwrap();
                    k.wait().unwrap();
                }
            }
        })
    };
    let queries = [
        "SELECT count(*) AS n FROM sockets",
        "SELECT count(*) AS n FROM sockets s JOIN socket_owners o ON s.inode = o.inode",
        "SELECT count(*) AS n FROM processes",
        "SELECT count(*) AS n FROM sockets WHERE state = 'ESTAB' AND pid IS NOT NULL",
        "SELECT count(*) AS n FROM (SELECT pid, process, local_port, rtt_ms FROM sockets) t",
        // A process that exits mid-read is skipped, never a row of nulls.
        "SELECT count(*) AS n FROM processes WHERE name IS NULL OR state IS NULL OR ppid IS NULL",
    ];
    let mut errors = Vec::new();
    for i in 0..QUERIES {
        let q = queries[i % queries.len()];
        let (out, err, ok) = ns.exec(bin(), &["--format", "csv", "--no-header", q]);
        let n: Option<i64> = out.trim().parse().ok();
        match (ok, n) {
            (true, Some(n)) => {
                // Plausible: never negative, never more than everything churned so far.
                let upper = 2 * (OPEN_AT_ONCE + churned.load(Ordering::Relaxed) + 1) as i64 + 100_000;
                assert!((0..=upper).contains(&n), "{q} gave {n}");
                if q.contains("IS NULL") {
                    assert_eq!(n, 0, "{q}");
                }
                if q.contains("FROM sockets") && !q.contains("JOIN") && !q.contains("ESTAB") {
                    assert!(n >= 1, "the listener is always there: {q} gave {n}");
                }
            }
            _ => errors.push(format!("{q}: {err}")),
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    stop.store(true, Ordering::Relaxed);
    sockets.join().unwrap();
    processes.join().unwrap();
    eprintln!(
        "churn: {QUERIES} queries, {} connections churned, {} processes started and killed, {} errors",
        churned.load(Ordering::Relaxed),
        spawned.load(Ordering::Relaxed),
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(churned.load(Ordering::Relaxed) > 1000, "the churn really churned");
    assert!(spawned.load(Ordering::Relaxed) > 100);
}
