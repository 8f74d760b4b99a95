//! sockql run by an unprivileged user: sockets still list, owners of other
//! users' sockets are null, and one stderr line says why.

use std::process::Command;

use serde_json::json;

use crate::common::*;

#[test]
fn unprivileged_user_sees_sockets_but_not_root_owners() {
    require_root();
    assert!(have("setpriv"), "setpriv (util-linux) is needed to drop privileges");
    let l = listener("127.0.0.1:0", 6);
    let p = port_of(&l);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args([
            "--format",
            "ndjson",
            &format!("SELECT state, uid, send_q, pid, process FROM sockets WHERE local_port = {p}"),
        ])
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "{err}");
    assert_eq!(
        parse_ndjson(&out),
        vec![json!({"state": "LISTEN", "uid": 0, "send_q": 6, "pid": null, "process": null})]
    );
    let notes: Vec<&str> = err.lines().collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(
        notes[0].starts_with("sockql: note: not running as root:") && notes[0].contains("pid and process are null"),
        "{err}"
    );
    drop(l);
}

/// Capturing packets without CAP_NET_RAW: one error line that says so.
#[test]
fn capturing_without_cap_net_raw_says_so_in_one_line() {
    require_root();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--capture-for", "1s", "SELECT count(*) FROM packets"])
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("sockql: error: ") && err.contains("capturing needs CAP_NET_RAW"), "{err}");
}

/// Each event table without privileges: one error line that says what
/// it needs; socket destroy events need none (the kernel lets anyone
/// listen), and then one note says whose holders stay unknown.
#[test]
fn event_tables_without_privilege_say_so_in_one_line() {
    require_root();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--capture-for", "1s", "--format", "csv", "--no-header", "SELECT count(pid) FROM socket_events"])
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok && out.trim().parse::<u64>().is_ok(), "{out}{err}");
    assert_eq!(err.lines().filter(|l| l.contains("not running as root")).count(), 1, "{err}");
    // The proc connector refuses other users before Linux 6.6 and lets
    // them listen since: either a clean answer or one clear line.
    for (table, must_refuse) in [("conntrack_events", true), ("process_events", false)] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin())
            .args(["--capture-for", "1s", "--format", "csv", "--no-header", &format!("SELECT count(*) FROM {table}")])
            .output()
            .unwrap();
        let (out, err, ok) = output_of(o);
        if ok && !must_refuse {
            assert!(out.trim().parse::<u64>().is_ok(), "{table}: {out}");
            continue;
        }
        assert!(!ok && out.is_empty(), "{table}: {out}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("sockql: error: ")).collect();
        assert_eq!(errors.len(), 1, "{table}: {err}");
        assert!(
            errors[0].contains("needs root: CAP_NET_ADMIN") && errors[0].contains("Operation not permitted"),
            "{table}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{table}: {err}");
    }
}
