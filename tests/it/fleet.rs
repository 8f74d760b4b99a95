//! `sockql --hosts`: one query to a fleet. Twenty network namespaces of
//! the test's own, each running `sockql serve --flight` on a veth address
//! with TLS (a CA the test makes) and a password, each with its own
//! listeners; the client runs in a hub namespace joined to each host by a
//! veth pair. The fleet's answer is the union of each host's own answer
//! (sockql run inside that namespace), tagged by host; aggregates are
//! split per host (EXPLAIN shows the SQL each group of hosts is sent); a killed, a stopped
//! and a refusing host are named on one stderr line and in fleet_hosts
//! while the rest answer within the deadline; what the policy refuses is
//! refused before any host is asked and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::events::{spawn_in, Reaped};
use crate::netns::{link, Netns};

/// The Flight SQL port inside each host's namespace (its own: nothing
/// else listens there).
pub(crate) const FLIGHT_PORT: u16 = 7470;
const PASSWORD: &str = "fleet-s3cret";

/// One host: its namespace, its server, and the listeners the test holds
/// open in it.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) addr: String,
    /// Ports of the test's own listeners in this namespace.
    pub(crate) ports: Vec<u16>,
    _listeners: Vec<TcpListener>,
    serve: Option<Reaped>,
    ns: Netns,
}

impl Drop for Host {
    /// A stopped server is continued before it is killed (Reaped's drop),
    /// then the namespace goes.
    fn drop(&mut self) {
        if let Some(serve) = &self.serve {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(serve.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.serve = None;
    }
}

pub(crate) struct Fleet {
    pub(crate) hosts: Vec<Host>,
    pub(crate) hub: Netns,
    hosts_file: PathBuf,
    pub(crate) password_file: PathBuf,
    pub(crate) ca: PathBuf,
    ca_key: PathBuf,
    pub(crate) scratch: Scratch,
}

/// A server certificate for `ip`, signed by the CA of `dir`: (cert, key).
fn server_cert(dir: &Path, ip: &str, tag: &str) -> (PathBuf, PathBuf) {
    crate::certs::signed(dir, tag, &format!("/CN={ip}"), &format!("subjectAltName=IP:{ip}"))
}

/// A client certificate signed by the CA of `dir` (for mutual TLS): (cert, key).
fn client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    crate::certs::signed(dir, "client", "/CN=fleet client", "extendedKeyUsage=clientAuth")
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// Start `sockql serve --flight` in `ns`; returns once its Flight line is
/// on stderr (the rest of stderr is drained).
fn start_serve(ns: &Netns, addr: &str, pw: &Path, cert: &(PathBuf, PathBuf), extra: &[&str]) -> Reaped {
    let flight = format!("{addr}:{FLIGHT_PORT}");
    let mut args = vec![
        bin(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flight",
        &flight,
        "--flight-password-file",
        pw.to_str().unwrap(),
        "--flight-tls-cert",
        cert.0.to_str().unwrap(),
        "--flight-tls-key",
        cert.1.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut child = spawn_in(ns, &args);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Arrow Flight SQL on") => break,
            Some(Ok(line)) => said.push(line),
            _ => panic!("serve --flight {flight} in {} ended saying: {said:?}", ns.name),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

impl Fleet {
    /// `n` hosts; host i holds i % 3 + 1 listeners of its own.
    pub(crate) fn new(n: usize) -> Fleet {
        Fleet::with(n, |_, ip| ip.to_string(), |_| PASSWORD)
    }

    /// `n` hosts, host i's certificate made for `cert_ip(i, its address)`
    /// and its server started with `password(i)`.
    fn with(n: usize, cert_ip: impl Fn(usize, &str) -> String, password: impl Fn(usize) -> &'static str) -> Fleet {
        require_root();
        // A directory of this fleet's own (Scratch's name is per process).
        static FLEETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let scratch = Scratch::new(&format!("fleet{}", FLEETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        let hub = Netns::new("fleet-hub");
        let ca = crate::certs::ca(&scratch.0);
        let password_file = scratch.0.join("password");
        private_file(&password_file, &format!("{PASSWORD}\n"));
        let mut hosts = Vec::new();
        for i in 0..n {
            let ns = Netns::new(&format!("fleet{i}"));
            link(&hub, &ns, i as u8);
            let addr = format!("10.231.{i}.2");
            let listeners: Vec<TcpListener> =
                ns.enter(move || (0..=i % 3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect());
            let ports = listeners.iter().map(port_of).collect();
            hosts.push(Host { name: format!("h{i:02}"), addr, ports, _listeners: listeners, serve: None, ns });
        }
        // The servers start together: each prints its line when it listens.
        for (i, h) in hosts.iter_mut().enumerate() {
            let cert = server_cert(&scratch.0, &cert_ip(i, &h.addr), &h.name);
            let pw = scratch.0.join(format!("{}.password", h.name));
            private_file(&pw, &format!("{}\n", password(i)));
            h.serve = Some(start_serve(&h.ns, &h.addr, &pw, &cert, &[]));
        }
        let hosts_file = scratch.0.join("hosts");
        let mut text = String::from("# the test's fleet\n");
        for h in &hosts {
            text.push_str(&format!("{}:{FLIGHT_PORT} {}\n", h.addr, h.name));
        }
        std::fs::write(&hosts_file, text).unwrap();
        Fleet { hosts, hub, hosts_file, password_file, ca: ca.0, ca_key: ca.1, scratch }
    }

    /// Run sockql in the hub with the fleet's flags and `args`:
    /// (stdout, stderr, exit code).
    fn sockql(&self, args: &[&str]) -> (String, String, i32) {
        let mut full = vec![
            "netns",
            "exec",
            &self.hub.name,
            bin(),
            "--hosts",
            self.hosts_file.to_str().unwrap(),
            "--hosts-password-file",
            self.password_file.to_str().unwrap(),
            "--hosts-ca",
            self.ca.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        let o = Command::new("ip").args(&full).output().unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
            o.status.code().unwrap_or(-1),
        )
    }

    fn rows(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--format", "ndjson"];
        full.extend_from_slice(args);
        let (out, err, code) = self.sockql(&full);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said: {err}");
        parse_ndjson(&out)
    }
}

/// Rows as (host, rest of the row) pairs, sorted.
fn by_host(rows: &[Value]) -> BTreeSet<(String, String)> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            let host = r.as_object_mut().unwrap().remove("host").unwrap().as_str().unwrap().to_string();
            (host, r.to_string())
        })
        .collect()
}

const LISTENERS: &str =
    "SELECT local_addr, local_port, protocol FROM sockets WHERE state = 'LISTEN' AND protocol = 'tcp'";

#[test]
fn a_fleet_answers_as_the_union_of_its_hosts_and_names_those_that_do_not() {
    let fleet = Fleet::new(20);

    // The union of each host's own answer, tagged by host.
    let mut expected = BTreeSet::new();
    for h in &fleet.hosts {
        let own = h.ns.sockql(LISTENERS);
        let ports: BTreeSet<u64> = own.iter().map(|r| r["local_port"].as_u64().unwrap()).collect();
        for p in &h.ports {
            assert!(ports.contains(&u64::from(*p)), "{}: its listener {p} in its own answer {own:?}", h.name);
        }
        assert!(ports.contains(&u64::from(FLIGHT_PORT)), "{}: the server's own listener", h.name);
        expected.extend(own.iter().map(|r| (h.name.clone(), r.to_string())));
    }
    let fleet_sql = LISTENERS.replace("SELECT ", "SELECT host, ");
    let got = by_host(&fleet.rows(&[&fleet_sql]));
    assert_eq!(got, expected, "the fleet's answer is the union of the hosts' own");
    // The querying side's memory: every socket row of twenty hosts through
    // it (debug build).
    let mut args = vec!["ip", "netns", "exec", &fleet.hub.name, bin()];
    let (file, pw, ca) = (
        fleet.hosts_file.display().to_string(),
        fleet.password_file.display().to_string(),
        fleet.ca.display().to_string(),
    );
    // Every column reads owners on each of twenty debug servers at once:
    // on two loaded cores that can take longer than the default 10 s.
    args.extend(["--hosts", &file, "--hosts-password-file", &pw, "--hosts-ca", &ca, "--format", "csv"]);
    args.extend(["--hosts-timeout", "60s", "SELECT * FROM sockets"]);
    let m = peak_rss(&args);
    assert!(m.ok, "{}", m.err);
    eprintln!(
        "fleet of 20: SELECT * FROM sockets, {} lines, client peak RSS {} KiB",
        m.out.lines().count(),
        m.peak_kib
    );
    assert!(m.peak_kib < 200 * 1024, "the client's peak RSS: {} KiB", m.peak_kib);

    // An aggregate: per host, the count each host gives of itself.
    let start = Instant::now();
    let counts = fleet
        .rows(&["SELECT host, count(*) AS n FROM sockets WHERE state = 'LISTEN' AND protocol = 'tcp' GROUP BY host"]);
    eprintln!("fleet of 20: SELECT host, count(*) ... GROUP BY host in {:?}", start.elapsed());
    let counts: BTreeMap<String, u64> =
        counts.iter().map(|r| (r["host"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap())).collect();
    let mut want = BTreeMap::new();
    for (host, _) in &expected {
        *want.entry(host.clone()).or_insert(0u64) += 1;
    }
    assert_eq!(counts, want);
    // The test's own listeners, fleet-wide: exactly the ones it opened.
    let ports: Vec<String> = fleet.hosts.iter().flat_map(|h| h.ports.iter().map(|p| p.to_string())).collect();
    let total = fleet.rows(&[&format!(
        "SELECT count(*) AS n FROM sockets WHERE state = 'LISTEN' AND local_addr = '127.0.0.1' AND local_port IN ({})",
        ports.join(",")
    )]);
    let opened: usize = fleet.hosts.iter().map(|h| h.ports.len()).sum();
    assert_eq!(opened, (0..20).map(|i| i % 3 + 1).sum::<usize>());
    // A port may be opened in several namespaces; count each host's own.
    let mut own_matches = 0u64;
    for h in &fleet.hosts {
        own_matches += h.ns.sockql(&format!(
            "SELECT count(*) AS n FROM sockets WHERE state = 'LISTEN' AND local_addr = '127.0.0.1' AND local_port IN ({})",
            ports.join(",")
        ))[0]["n"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(total[0]["n"].as_u64(), Some(own_matches));

    // EXPLAIN shows the split: the fleet's two groups of hosts get one SQL
    // each, whatever the number of hosts, carrying the filter and a
    // partial count (each host is sent it with `host` written as its
    // name); the central plan sums them.
    let explain = fleet.rows(&["EXPLAIN SELECT state, count(*) FROM sockets WHERE local_port > 0 GROUP BY 1"]);
    let physical =
        explain.iter().find(|r| r["plan_type"] == "physical_plan").unwrap()["plan"].as_str().unwrap().to_string();
    let parts: Vec<&str> = physical.lines().filter(|l| l.contains("VirtualExecutionPlan")).collect();
    assert_eq!(parts.len(), 2, "{physical}");
    for (line, first) in parts.iter().zip(["name=hosts=10: h00, h02, h04", "name=hosts=10: h01, h03, h05"]) {
        assert!(line.contains(first) && line.contains(", 2 more "), "{line}");
        assert!(line.contains("count(1) AS __fleet_partial_0") && line.contains("GROUP BY state"), "{line}");
        assert!(line.contains("(sockets.local_port > 0)"), "{line}");
    }
    assert!(physical.contains("sum(__fleet_partial_0)"), "{physical}");

    // A saved report runs whole on each host, unchanged: its rows are
    // each host's own run of it, tagged. Its owner columns count the
    // processes holding each listener, and a child another test is
    // forking holds the test's sockets until it execs: the two runs are
    // compared until they were made with no fork in between.
    let mut differ = String::new();
    let agreed = (0..5).any(|_| {
        let report = by_host(&fleet.rows(&["run", "listeners"]));
        let mut want_report = BTreeSet::new();
        for h in &fleet.hosts {
            want_report.extend(h.ns.run_saved("listeners", &[]).iter().map(|r| (h.name.clone(), r.to_string())));
        }
        let fleet_only: Vec<_> = report.difference(&want_report).collect();
        let own_only: Vec<_> = want_report.difference(&report).collect();
        differ = format!("only in the fleet's: {fleet_only:?}; only in the hosts' own: {own_only:?}");
        report == want_report
    });
    assert!(agreed, "{differ}");
    // health reads several tables on each host: on two shared cores,
    // twenty debug servers at once need more than the default 10 s.
    let (out, err, code) = fleet.sockql(&["--hosts-timeout", "60s", "--format", "ndjson", "run", "health"]);
    assert_eq!(code, 0, "health fleet-wide: {err}");
    assert!(parse_ndjson(&out).iter().all(|r| r["host"].as_str().is_some_and(|h| h.starts_with('h'))), "{out}");

    // The policy: COPY TO is refused, before any host is asked, and
    // nothing is written.
    let target = fleet.scratch.0.join("copied.csv");
    let (_, err, code) =
        fleet.sockql(&[&format!("COPY (SELECT host, local_port FROM sockets) TO '{}'", target.display())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!target.exists(), "COPY wrote {}", target.display());

    // One host killed, one hung (SIGSTOP), one refusing (a closed port):
    // named, and the rest answer within the deadline.
    let mut fleet = fleet;
    let killed = &mut fleet.hosts[3];
    let mut serve = killed.serve.take().unwrap();
    serve.kill().unwrap();
    serve.wait().unwrap();
    let hung = fleet.hosts[7].serve.as_ref().unwrap().id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(hung as i32), nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut text = std::fs::read_to_string(&fleet.hosts_file).unwrap();
    // h12's line names a port nothing listens on.
    text = text
        .replace(&format!("{}:{FLIGHT_PORT} h12", fleet.hosts[12].addr), &format!("{}:7471 h12", fleet.hosts[12].addr));
    std::fs::write(&fleet.hosts_file, text).unwrap();

    let deadline = Duration::from_secs(5);
    let start = Instant::now();
    let (out, err, code) = fleet.sockql(&[
        "--hosts-timeout",
        "5s",
        "--format",
        "ndjson",
        "SELECT host, count(*) AS n FROM sockets WHERE state = 'LISTEN' AND protocol = 'tcp' GROUP BY host; \
         SELECT host, state FROM fleet_hosts WHERE state <> 'ok' ORDER BY host",
    ]);
    let took = start.elapsed();
    assert_eq!(code, 3, "a partial answer: {err}");
    // The margin: starting the client and planning, on a shared machine.
    assert!(took < deadline + Duration::from_secs(5), "took {took:?} with a {deadline:?} deadline");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let line = lines[0];
    assert!(line.starts_with("sockql: partial answer: 3 of 20 hosts did not answer: "), "{line}");
    assert!(line.contains("h03 (refused"), "{line}");
    assert!(line.contains("h07 (timeout"), "{line}");
    assert!(line.contains("h12 (refused"), "{line}");
    let rows = parse_ndjson(&out);
    let answered: BTreeMap<String, u64> = rows
        .iter()
        .filter(|r| r.get("n").is_some())
        .map(|r| (r["host"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap()))
        .collect();
    let mut live = want.clone();
    for gone in ["h03", "h07", "h12"] {
        live.remove(gone);
    }
    assert_eq!(answered, live, "every live host, with its own count");
    let status: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.get("state").is_some())
        .map(|r| (r["host"].as_str().unwrap().to_string(), r["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        status,
        vec![("h03".into(), "refused".into()), ("h07".into(), "timeout".into()), ("h12".into(), "refused".into())]
    );
}

#[test]
fn hosts_with_a_certificate_for_another_address_or_another_password_are_not_answers_and_mutual_tls_holds() {
    // h00's certificate names an address it does not have; h01 expects
    // another password; h02 is as it should be.
    let fleet = Fleet::with(
        3,
        |i, ip| if i == 0 { "10.231.250.2".to_string() } else { ip.to_string() },
        |i| if i == 1 { "another-password" } else { PASSWORD },
    );
    let (out, err, code) = fleet.sockql(&[
        "--format",
        "ndjson",
        "SELECT host, count(*) AS n FROM sockets WHERE state = 'LISTEN' GROUP BY host",
    ]);
    assert_eq!(code, 3, "{err}");
    let line = err.trim();
    assert!(line.starts_with("sockql: partial answer: 2 of 3 hosts did not answer: "), "{line}");
    assert!(line.contains("h00 (failed: TLS"), "{line}");
    assert!(line.contains("h01 (auth"), "{line}");
    let hosts: Vec<String> = parse_ndjson(&out).iter().map(|r| r["host"].as_str().unwrap().to_string()).collect();
    assert_eq!(hosts, vec!["h02".to_string()], "only the verified host with the right password answers");
    // Without --hosts-ca the client speaks plain gRPC, which a TLS host
    // does not answer.
    let o = Command::new("ip")
        .args(["netns", "exec", &fleet.hub.name, bin(), "--hosts", fleet.hosts_file.to_str().unwrap()])
        .args(["--hosts-password-file", fleet.password_file.to_str().unwrap(), "--hosts-timeout", "3s"])
        .arg("SELECT count(*) FROM sockets")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("3 of 3 hosts did not answer"), "{err}");

    // Mutual TLS: h02 restarted to require a client certificate of the CA.
    let mut fleet = fleet;
    let ca = (fleet.ca.clone(), fleet.ca_key.clone());
    let h = &mut fleet.hosts[2];
    h.serve = None;
    let cert = server_cert(&fleet.scratch.0, &h.addr, "h02-again");
    let pw = fleet.scratch.0.join("h02.password");
    h.serve = Some(start_serve(&h.ns, &h.addr, &pw, &cert, &["--flight-tls-client-ca", ca.0.to_str().unwrap()]));
    let sql = "SELECT host, count(*) AS n FROM sockets WHERE state = 'LISTEN' AND host = 'h02' GROUP BY host";
    let (out, err, code) = fleet.sockql(&["--format", "ndjson", sql]);
    assert_eq!(code, 3, "without a client certificate: {err}");
    assert!(err.contains("1 of 1 hosts did not answer: h02 (failed"), "{err}");
    assert!(out.trim().is_empty(), "{out}");
    let (cert, key) = client_cert(&fleet.scratch.0);
    let rows = fleet.rows(&["--hosts-cert", cert.to_str().unwrap(), "--hosts-key", key.to_str().unwrap(), sql]);
    let own = fleet.hosts[2].ns.sockql("SELECT count(*) AS n FROM sockets WHERE state = 'LISTEN'");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["n"], own[0]["n"], "h02 answers with a client certificate of the CA");
}

#[test]
fn a_hosts_file_is_read_within_bounds_and_never_quoted() {
    let scratch = Scratch::new("fleet-file");
    // Not a hosts file: the error names the line, and quotes none of it.
    let secret = scratch.0.join("secret");
    std::fs::write(&secret, "root:$y$j9T$secrethash:19000:0:99999:7:::\n").unwrap();
    let (_, err, ok) = run(&["--hosts", secret.to_str().unwrap(), "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("line 1:") && !err.contains("secrethash") && !err.contains("root:"), "{err}");
    // A line too long, and too many hosts.
    let long = scratch.0.join("long");
    std::fs::write(&long, format!("10.0.0.1:1\n10.0.0.2:1 {}\n", "a".repeat(600))).unwrap();
    let (_, err, ok) = run(&["--hosts", long.to_str().unwrap(), "SELECT 1"]);
    assert!(!ok && err.contains("line 2: longer than 512 bytes"), "{err}");
    let many = scratch.0.join("many");
    let text: String = (0..10_001).map(|i| format!("10.{}.{}.{}:1\n", i / 62500, i / 250 % 250, i % 250 + 1)).collect();
    std::fs::write(&many, text).unwrap();
    let (_, err, ok) = run(&["--hosts", many.to_str().unwrap(), "SELECT 1"]);
    assert!(!ok && err.contains("line 10001: more than 10000 hosts"), "{err}");
    // The password file must be private.
    let hosts = scratch.0.join("hosts");
    std::fs::write(&hosts, "127.0.0.1:1\n").unwrap();
    let pw = scratch.0.join("pw");
    std::fs::write(&pw, "x\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (_, err, ok) =
        run(&["--hosts", hosts.to_str().unwrap(), "--hosts-password-file", pw.to_str().unwrap(), "SELECT 1"]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
}

/// A fleet answer that outgrows --memory-limit: five processes of the
/// test's own with 960 kB command lines, so each of the twenty hosts
/// (which share the machine's processes) answers `processes` with a batch
/// of about 5 MB. The query fails with the engine's resources-exhausted
/// error naming the limit instead of the client decoding and holding
/// every host's batches (100 MB), and its peak RSS stays near that of a
/// small fleet answer: with --memory-limit 4M each host's batch is
/// refused unread (larger than the whole limit); with 12M the batches
/// are read and reserved, and the third held at once is refused.
#[test]
fn a_fleet_answer_past_the_memory_limit_fails_naming_it_and_the_client_stays_small() {
    let fleet = Fleet::new(20);
    let arg = "y".repeat(120_000);
    let mut padded: Vec<Reaped> = (0..5)
        .map(|_| {
            let mut args = vec!["/usr/bin/python3", "-c", "import sys; sys.stdin.read()"];
            args.extend(std::iter::repeat_n(arg.as_str(), 8));
            Reaped(Command::new(args[0]).args(&args[1..]).stdin(std::process::Stdio::piped()).spawn().unwrap())
        })
        .collect();
    let (file, pw, ca) = (
        fleet.hosts_file.display().to_string(),
        fleet.password_file.display().to_string(),
        fleet.ca.display().to_string(),
    );
    let measure = |limit: &str, sql: &str| {
        let mut args = vec!["ip", "netns", "exec", &fleet.hub.name, bin()];
        args.extend(["--hosts", &file, "--hosts-password-file", &pw, "--hosts-ca", &ca, "--format", "csv"]);
        args.extend(["--hosts-timeout", "60s", "--memory-limit", limit, sql]);
        peak_rss(&args)
    };
    // What the client takes for a small answer of the same twenty hosts.
    let small = measure("4M", "SELECT host, count(*) AS n FROM processes GROUP BY host");
    assert!(small.ok, "{}", small.err);
    assert_eq!(small.out.lines().count(), 21, "{}", small.out);
    let wide_sql = "SELECT host, pid, cmdline FROM processes";
    for limit in ["4M", "12M"] {
        let wide = measure(limit, wide_sql);
        eprintln!(
            "fleet of 20, 5 MB a host under --memory-limit {limit}: client peak RSS {} KiB (a small answer: {} KiB); said {}",
            wide.peak_kib, small.peak_kib, wide.err
        );
        assert!(!wide.ok, "the answer did not fit: {} bytes printed", wide.out.len());
        assert!(wide.err.contains("--memory-limit") && wide.err.contains("esources exhausted"), "{}", wide.err);
        // Twenty hosts' batches decoded side by side would be 100 MB more
        // than the small answer; the limit, a batch in flight per host
        // being refused and some slack for the allocator are allowed.
        assert!(
            wide.peak_kib < small.peak_kib + 48 * 1024,
            "the client's peak RSS: {} KiB, {} KiB for a small answer",
            wide.peak_kib,
            small.peak_kib
        );
    }
    for p in &mut padded {
        drop(p.0.stdin.take());
    }
}
