//! sockql as a service user (uid 65534) with a capability set instead of
//! root, through setpriv: with the set the service runs with every table
//! answers, and with one capability taken away a table that needs it
//! fails in one line that names it (or, where it still answers with
//! something left out, a note names it).

use std::process::Command;

use serde_json::json;

use crate::common::*;

/// The service's set (sockql-serve.service's AmbientCapabilities).
const SERVICE: [&str; 7] = ["net_admin", "net_raw", "sys_ptrace", "dac_read_search", "bpf", "perfmon", "sys_admin"];

/// `sh -c SCRIPT` in a mount namespace of its own (so tracefs can be
/// mounted or unmounted there without touching the host's), ending in
/// sockql run as uid 65534 with exactly `caps` (`"$@"` is sockql and its
/// arguments).
fn as_service_user(caps: &[&str], before: &str, args: &[&str]) -> (String, String, bool) {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let script = format!(
        "{before}exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all{set} --ambient-caps=-all{set} \
         --bounding-set=-all{set} -- \"$@\""
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh", bin()])
        .args(args)
        .current_dir("/")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    output_of(o)
}

fn without(gone: &[&str]) -> Vec<&'static str> {
    SERVICE.iter().copied().filter(|c| !gone.contains(c)).collect()
}

/// Mount tracefs in the private mount namespace (sockql then uses it as a
/// host's would be, not a private mount of its own).
const MOUNT_TRACEFS: &str = "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; ";
/// No tracefs anywhere in the private mount namespace.
const UNMOUNT_TRACEFS: &str =
    "while umount -t tracefs -a 2>/dev/null && grep -q ' tracefs ' /proc/self/mounts; do :; done; ";

fn tables() -> Vec<String> {
    let (out, err, ok) = run(&[
        "--format",
        "csv",
        "--no-header",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    ]);
    assert!(ok, "{err}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn every_table_answers_as_the_service_user_with_the_service_set() {
    require_root();
    let tables = tables();
    assert!(tables.len() >= 21 && tables.iter().any(|t| t == "packet_drops"), "{tables:?}");
    // A root-owned listener: its holder must be known to the service user.
    let l = listener("127.0.0.1:0", 3);
    let p = port_of(&l);
    for tracefs in [MOUNT_TRACEFS, UNMOUNT_TRACEFS] {
        let mut sql: Vec<String> =
            tables.iter().map(|t| format!("SELECT '{t}' AS t, count(*) AS n FROM {t}")).collect();
        sql.push(format!("SELECT 'owner' AS t, pid AS n FROM sockets WHERE local_port = {p}"));
        let (out, err, ok) =
            as_service_user(&SERVICE, tracefs, &["--capture-for", "1s", "--format", "ndjson", &sql.join("; ")]);
        assert!(ok, "{err}");
        let rows = parse_ndjson(&out);
        let answered: Vec<&str> = rows.iter().filter_map(|r| r["t"].as_str()).collect();
        let mut want: Vec<&str> = tables.iter().map(String::as_str).collect();
        want.push("owner");
        assert_eq!(answered, want, "{err}");
        // The holder the service user sees is this process, once no
        // parallel test's fork holds the socket too (see `settled`).
        let owner = format!("SELECT 'owner' AS t, pid AS n FROM sockets WHERE local_port = {p}");
        settled(vec![json!({"t": "owner", "n": my_pid()})], || {
            let (out, _, _) = as_service_user(&SERVICE, tracefs, &["--format", "ndjson", &owner]);
            parse_ndjson(&out)
        });
        // Nothing said about rights: no table lacked anything. (A process
        // the kernel keeps from every non-root user whatever it holds, as
        // this sandbox's pid 1, is said as such, not as a capability.)
        for said in ["needs CAP", "lacks", "sockql: error"] {
            assert!(!err.contains(said), "{said}: {err}");
        }
        // A namespace may be refused for want of a right (EPERM); one another
        // test deleted while this scan ran is gone, not refused.
        assert!(!err.lines().any(|l| l.contains("cannot enter") && l.contains("not permitted")), "{err}");
        assert!(
            err.lines()
                .filter(|l| l.contains("not running as root"))
                .all(|l| l.contains("refused although sockql holds")),
            "{err}"
        );
    }
    drop(l);
}

#[test]
fn a_missing_capability_is_named_in_one_line() {
    require_root();
    // (table, capabilities taken away, how tracefs is, what the line says)
    let cases: [(&str, &[&str], &str, &str); 6] = [
        ("packets", &["net_raw"], "", "packets: needs CAP_NET_RAW (or root); lacks CAP_NET_RAW"),
        ("conntrack_events", &["net_admin"], "", "conntrack_events: needs CAP_NET_ADMIN (or root); lacks CAP_NET_ADMIN"),
        ("process_events", &["net_admin"], "", "process_events: needs CAP_NET_ADMIN (or root); lacks CAP_NET_ADMIN"),
        (
            "tcp_retransmits",
            &["dac_read_search"],
            MOUNT_TRACEFS,
            "tcp_retransmits: needs CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_DAC_READ_SEARCH (or root); lacks CAP_DAC_READ_SEARCH",
        ),
        (
            "tcp_state_changes",
            &["perfmon", "sys_admin"],
            MOUNT_TRACEFS,
            "tcp_state_changes: needs CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_DAC_READ_SEARCH (or root); lacks CAP_PERFMON (or CAP_SYS_ADMIN)",
        ),
        // The eBPF reader needs CAP_BPF and CAP_PERFMON only; without
        // CAP_BPF it falls back to the tracepoint, which needs tracefs.
        (
            "packet_drops",
            &["bpf", "sys_admin"],
            UNMOUNT_TRACEFS,
            "packet_drops: needs CAP_PERFMON (or CAP_SYS_ADMIN), CAP_DAC_READ_SEARCH and CAP_SYS_ADMIN (or root); lacks CAP_SYS_ADMIN",
        ),
    ];
    for (table, gone, tracefs, line) in cases {
        let (out, err, ok) = as_service_user(
            &without(gone),
            tracefs,
            &["--capture-for", "1s", &format!("SELECT count(*) FROM {table}")],
        );
        assert!(!ok && out.is_empty(), "{table} without {gone:?}: {out}{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("sockql: error: ")).collect();
        assert_eq!(errors.len(), 1, "{table} without {gone:?}: {err}");
        assert!(errors[0].starts_with(&format!("sockql: error: {line}")), "{table} without {gone:?}: {err}");
        // With the capability back, the same table answers.
        let (_, err, ok) =
            as_service_user(&SERVICE, tracefs, &["--capture-for", "1s", &format!("SELECT count(*) FROM {table}")]);
        assert!(ok, "{table} with the service set: {err}");
    }
}

/// Without CAP_SYS_PTRACE the holders of other users' sockets cannot be
/// read (the fd links are refused though the directory lists): pid and
/// process are null, and a note says so and names what is missing,
/// instead of nulls that look like sockets nobody holds.
#[test]
fn owners_unread_for_want_of_a_capability_are_said_in_a_note() {
    require_root();
    let l = listener("127.0.0.1:0", 3);
    let p = port_of(&l);
    for gone in ["sys_ptrace", "dac_read_search"] {
        let sql = format!("SELECT pid, process FROM sockets WHERE local_port = {p}");
        let (out, err, ok) = as_service_user(&without(&[gone]), "", &["--format", "ndjson", &sql]);
        assert!(ok, "{err}");
        assert_eq!(parse_ndjson(&out), vec![json!({"pid": null, "process": null})], "without {gone}");
        let notes: Vec<&str> = err.lines().collect();
        assert_eq!(notes.len(), 1, "without {gone}: {err}");
        assert!(
            notes[0].contains("pid and process are null")
                && notes[0].contains("needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"),
            "without {gone}: {err}"
        );
    }
    drop(l);
}
