//! Deterministic socket sets: the test makes its own network namespaces
//! (joined by a veth pair), opens known sockets inside, and asserts that
//! sockql run in a namespace reports exactly those sockets, no more, and
//! agrees with `ss` there.

use std::fs::File;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::common::*;

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = format!("sockql-{tag}-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::SeqCst));
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Run `f` on a thread that has entered this namespace; sockets it
    /// creates live in the namespace (the test's own threads never move).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
        .join()
        .unwrap()
    }

    pub fn exec(&self, program: &str, args: &[&str]) -> (String, String, bool) {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        output_of(Command::new("ip").args(&full).output().unwrap())
    }

    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let (out, err, ok) = self.exec(program, args);
        assert!(ok, "{program} {args:?} in {}: {err}", self.name);
        out
    }

    pub fn sockql(&self, sql: &str) -> Vec<serde_json::Value> {
        parse_ndjson(&self.exec_ok(bin(), &["--format", "ndjson", sql]))
    }

    /// Run a saved query here, with `NAME=VALUE` parameters.
    pub fn run_saved(&self, name: &str, params: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["run", name, "--format", "ndjson"];
        for p in params {
            args.extend(["--param", p]);
        }
        parse_ndjson(&self.exec_ok(bin(), &args))
    }

    /// A saved report run inside this namespace: every row must name it
    /// (netns, netns_name); the rows come back without those two columns.
    pub fn run_saved_here(&self, name: &str, params: &[&str]) -> Vec<serde_json::Value> {
        let (inode, me) = (serde_json::json!(self.inode()), serde_json::json!(self.name));
        self.run_saved(name, params)
            .into_iter()
            .map(|mut r| {
                let obj = r.as_object_mut().unwrap_or_else(|| panic!("{name}: not a row"));
                // Metric reports carry it as text (a label).
                let netns = obj.remove("netns");
                assert!(
                    netns == Some(inode.clone()) || netns == Some(serde_json::json!(inode.to_string())),
                    "{name}: a row of another namespace: {netns:?}"
                );
                assert_eq!(obj.remove("netns_name").as_ref(), Some(&me), "{name}: a row of another namespace");
                r
            })
            .collect()
    }

    /// The namespace's inode, as the netns column shows it.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name)).unwrap().ino()
    }

    /// A saved report run from the host with --all-netns, only this
    /// namespace's rows.
    pub fn rows_of_all_netns(&self, name: &str) -> Vec<serde_json::Value> {
        let (out, err, ok) = run(&["--all-netns", "run", name, "--format", "ndjson"]);
        assert!(ok, "{name}: {err}");
        parse_ndjson(&out).into_iter().filter(|r| r["netns_name"] == serde_json::json!(self.name)).collect()
    }

    pub fn sysctl(&self, name: &str, value: &str) {
        self.exec_ok("sh", &["-c", &format!("echo '{value}' > /proc/sys/{}", name.replace('.', "/"))]);
    }
}

/// Join `a` and `b` with a veth pair: a gets 10.231.NET.1/24, b .2/24.
/// Returns the interface names (a's, b's).
pub fn link(a: &Netns, b: &Netns, net: u8) -> (String, String) {
    let tag = (std::process::id() % 10_000) as usize * 100 + SERIAL.fetch_add(1, Ordering::SeqCst) % 100;
    let (va, vb) = (format!("sqa{tag}"), format!("sqb{tag}"));
    ip(&["link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name]);
    a.exec_ok("ip", &["addr", "add", &format!("10.231.{net}.1/24"), "dev", &va]);
    b.exec_ok("ip", &["addr", "add", &format!("10.231.{net}.2/24"), "dev", &vb]);
    a.exec_ok("ip", &["link", "set", &va, "up"]);
    b.exec_ok("ip", &["link", "set", &vb, "up"]);
    (va, vb)
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[test]
fn reports_exactly_the_sockets_of_a_namespace() {
    let a = Netns::new("a");
    let b = Netns::new("b");
    let (va, _vb) = link(&a, &b, 0);

    let dev = va.clone();
    let (l, udp) = a.enter(move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind_device(Some(dev.as_bytes())).unwrap();
        s.bind(&"10.231.0.1:8080".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        s.listen(10).unwrap();
        let l: std::net::TcpListener = s.into();
        (l, UdpSocket::bind("127.0.0.1:5353").unwrap())
    });
    let client = b.enter(|| TcpStream::connect("10.231.0.1:8080").unwrap());
    let cport = client.local_addr().unwrap().port();
    let (server, _) = l.accept().unwrap();

    let me = my_pid();
    settled(
        vec![
            json!({"protocol": "tcp", "state": "ESTAB", "local_addr": "10.231.0.1", "local_port": 8080, "remote_addr": "10.231.0.2", "remote_port": cport, "interface": va, "send_q": 0, "pid": me}),
            json!({"protocol": "tcp", "state": "LISTEN", "local_addr": "10.231.0.1", "local_port": 8080, "remote_addr": "0.0.0.0", "remote_port": 0, "interface": va, "send_q": 10, "pid": me}),
            json!({"protocol": "udp", "state": "UNCONN", "local_addr": "127.0.0.1", "local_port": 5353, "remote_addr": "0.0.0.0", "remote_port": 0, "interface": null, "send_q": 0, "pid": me}),
        ],
        || {
            a.sockql(
                "SELECT protocol, state, local_addr, local_port, remote_addr, remote_port, interface, send_q, pid \
                 FROM sockets ORDER BY protocol, state, local_port",
            )
        },
    );
    let rows = b.sockql("SELECT state, local_addr, local_port, remote_addr, remote_port, interface FROM sockets");
    assert_eq!(
        rows,
        vec![
            json!({"state": "ESTAB", "local_addr": "10.231.0.2", "local_port": cport, "remote_addr": "10.231.0.1", "remote_port": 8080, "interface": null})
        ]
    );

    // ss in the same namespace sees the same state distribution.
    let ss = a.exec_ok("ss", &["-tuna"]);
    let mut from_ss: Vec<(String, String)> = ss
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    from_ss.sort();
    let ours: Vec<(String, String)> = a
        .sockql("SELECT protocol, state FROM sockets ORDER BY 1, 2")
        .iter()
        .map(|r| (r["protocol"].as_str().unwrap().to_string(), r["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ours, from_ss, "ss -tuna said:\n{ss}");
    drop((server, client, l, udp));
}

#[test]
fn an_empty_namespace_has_no_sockets_and_still_prints_a_header() {
    let ns = Netns::new("empty");
    assert_eq!(ns.exec_ok(bin(), &["--format", "csv", "SELECT state, local_port FROM sockets"]), "state,local_port\n");
    assert_eq!(ns.sockql("SELECT count(*) AS n FROM sockets"), vec![json!({"n": 0})]);
}
