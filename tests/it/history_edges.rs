//! History at its edges: an event table that was listened to and heard
//! nothing is recorded with zero rows (quiet), one that was never listened
//! to is not (unrecorded), and a query of an unrecorded table says which
//! table is missing and the `sockql record` command that records it.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::{json, Value};

use crate::common::*;
use crate::events::{spawn_in, subscribed};
use crate::netns::Netns;

/// The `.parquet` files below `dir/table`.
fn files_of(dir: &std::path::Path, table: &str) -> Vec<std::path::PathBuf> {
    let root = dir.join(table);
    if !root.exists() {
        return Vec::new();
    }
    tree(&root).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect()
}

/// `record --events` in a namespace where conntrack tracks nothing (no
/// ruleset) while connections open and close: socket_events has every
/// connection, conntrack_events exists with zero rows and its report says
/// it found none, and process_events (the proc connector answers only in
/// the host's namespace) is not recorded and says so by name.
#[test]
fn quiet_event_tables_are_recorded_with_zero_rows() {
    let ns = Netns::new("quiet");
    let dir = Scratch::new("hist-quiet");
    let out = dir.0.to_str().unwrap().to_string();
    let mut rec = spawn_in(&ns, &[bin(), "record", "--out", &out, "--events", "--every", "1s", "--for", "4s"]);
    // Both listeners subscribed (sock_diag destroys, ctnetlink events)
    // before the connections are made.
    eventually(WAIT, || {
        let table = ns.exec_ok("cat", &["/proc/net/netlink"]);
        (subscribed(&table, "4", None) >= 1 && subscribed(&table, "12", None) >= 1).then_some(())
    });
    let made = 3;
    let port = ns.enter(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        for _ in 0..made {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (s, _) = l.accept().unwrap();
            drop(c);
            drop(s);
        }
        port
    });
    // Nothing was tracked here, so conntrack had nothing to announce.
    assert_eq!(ns.exec_ok("conntrack", &["-C"]).trim(), "0");
    // The recorder ends at its --for bound.
    let status = eventually(std::time::Duration::from_secs(15), || rec.try_wait().unwrap());
    let mut err = String::new();
    rec.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("process_events not recorded"), "{err}");

    // One zero-row file for the quiet table, written like every other
    // (a regular file of ours, 0640, in 0750 directories), none for the
    // table that was not recorded.
    let quiet = files_of(&dir.0, "conntrack_events");
    assert_eq!(quiet.len(), 1, "{:?}", tree(&dir.0));
    let meta = std::fs::symlink_metadata(&quiet[0]).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o640));
    let parent = std::fs::symlink_metadata(quiet[0].parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o750);
    assert_eq!(files_of(&dir.0, "process_events"), Vec::<std::path::PathBuf>::new());

    let hist = |args: &[&str]| {
        let mut all = vec!["--history", out.as_str()];
        all.extend_from_slice(args);
        run(&all)
    };
    let rows = |sql: &str| {
        let (o, e, ok) = hist(&["--format", "ndjson", sql]);
        assert!(ok, "{sql}: {e}");
        parse_ndjson(&o)
    };
    assert_eq!(rows("SELECT count(*) AS n FROM history.conntrack_events"), vec![json!({"n": 0})]);
    // Its columns are the live table's (Parquet reads strings back as
    // Utf8View: names are compared).
    let columns = |table: &str| -> Vec<Value> {
        let (o, e, ok) = hist(&["--format", "ndjson", "schema", table]);
        assert!(ok, "{table}: {e}");
        parse_ndjson(&o)
            .into_iter()
            .filter(|c| !["host", "date"].contains(&c["column_name"].as_str().unwrap_or("")))
            .map(|c| c["column_name"].clone())
            .collect()
    };
    assert_eq!(columns("history.conntrack_events"), columns("conntrack_events"));
    // The table that heard something has exactly the test's sockets:
    // both ends of each connection, and the listener closed after them.
    let ends = rows(&format!(
        "SELECT remote_port = 0 AS listener, count(*) AS n FROM history.socket_events WHERE local_port = {port} OR remote_port = {port} GROUP BY 1 ORDER BY 1"
    ));
    assert_eq!(ends, vec![json!({"listener": false, "n": 2 * made}), json!({"listener": true, "n": 1})]);
    // The report over the quiet table answers: none, in its own words.
    let (o, e, ok) = hist(&["run", "resets_by_remote"]);
    assert!(ok, "{e}");
    assert_eq!(
        o.trim(),
        "no reset heard: conntrack announced no tracked TCP connection ending in a RST while the recording listened"
    );
    let (o, e, ok) = hist(&["run", "resets_by_remote", "--format", "ndjson"]);
    assert!(ok && o.is_empty(), "{o}{e}");
    // The one that was not recorded says so, by name.
    let (_, e, ok) = hist(&["SELECT count(*) FROM history.process_events"]);
    assert!(!ok);
    assert!(
        e.contains(&format!("history.process_events: {out} has no recording of process_events; record it with `sockql record --events --out {out}`")),
        "{e}"
    );
}

/// A directory recorded without `--events`: the event reports fail naming
/// the table they need and the command that records it; a snapshot table
/// not sampled names its `--tables`; a name that is no table lists what
/// is recorded; a table whose every file was refused says that instead.
#[test]
fn unrecorded_history_tables_are_named_with_how_to_record_them() {
    let ns = Netns::new("unrec");
    let dir = Scratch::new("hist-unrec");
    let out = dir.0.to_str().unwrap().to_string();
    let (_, err, ok) = ns.exec(bin(), &["record", "--samples", "1", "--out", &out, "--tables", "sockets"]);
    assert!(ok, "{err}");
    let hist = |args: &[&str]| {
        let mut all = vec!["--history", out.as_str()];
        all.extend_from_slice(args);
        let (_, e, ok) = run(&all);
        assert!(!ok, "{args:?} should fail");
        e
    };
    let e = hist(&["run", "resets_by_remote"]);
    assert!(
        e.contains(&format!("history.conntrack_events: {out} has no recording of conntrack_events; record it with `sockql record --events --out {out}`")),
        "{e}"
    );
    assert!(!e.contains("history tables come from --history DIR"), "--history DIR was given: {e}");
    let e = hist(&["run", "short_lived_connections"]);
    assert!(e.contains(&format!("history.socket_events: {out} has no recording of socket_events; record it with `sockql record --events --out {out}`")), "{e}");
    let e = hist(&["SELECT * FROM history.conntrack"]);
    assert!(e.contains(&format!("history.conntrack: {out} has no recording of conntrack; record it with `sockql record --tables conntrack --out {out}`")), "{e}");
    let e = hist(&["SELECT * FROM history.nosuch"]);
    assert!(
        e.contains(&format!("history.nosuch: {out} has no recording named nosuch (recorded there: samples, sockets)")),
        "{e}"
    );
    // A table whose only file is not Parquet: there, but unreadable.
    let day = dir.0.join("net_counters/host=h/date=2026-01-01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("1.parquet"), b"not parquet").unwrap();
    let e = hist(&["SELECT * FROM history.net_counters"]);
    assert!(e.contains(&format!("history.net_counters: every file of net_counters in {out} was left out")), "{e}");
    // The recorded table still answers, and without --history the old
    // pointer stands.
    let (o, e, ok) = run(&["--history", &out, "--format", "ndjson", "SELECT count(*) AS n FROM history.samples"]);
    assert!(ok, "{e}");
    assert_eq!(parse_ndjson(&o), vec![json!({"n": 1})]);
    let (_, e, ok) = run(&["SELECT * FROM history.conntrack_events"]);
    assert!(!ok && e.contains("history tables come from --history DIR"), "{e}");
}
