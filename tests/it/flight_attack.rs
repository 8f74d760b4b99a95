//! Attacks on `sockql serve --flight`, performed for real, asserting what
//! did not happen: a client that stops reading a DoGet holds no query slot
//! (shared with --pg) past --timeout and the server's memory stays under a
//! ceiling; a local user's flood of silent connections holds no more than
//! its own cap and none past the login deadline; a huge ticket is refused
//! before it is read. Meanwhile root's psql and a scrape still answer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, eventually, Scratch, WAIT};
use crate::events::{spawn_in, Reaped};
use crate::flight::{password_file, PORT, PYTHON};
use crate::netns::Netns;

/// Raw Flight SQL from pyarrow.flight: protobuf commands encoded by hand
/// (pyarrow has no Flight SQL messages), basic auth on every call.
const PRELUDE: &str = r#"
import json, sys, time, base64
import pyarrow.flight as fl
def varint(n):
    out = b""
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(num, data): return bytes([num << 3 | 2]) + varint(len(data)) + data
def any_(name, value): return field(1, b"type.googleapis.com/arrow.flight.protocol.sql." + name) + field(2, value)
def ticket(sql): return fl.Ticket(any_(b"TicketStatementQuery", field(1, sql.encode())))
AUTH = fl.FlightCallOptions(headers=[(b"authorization", b"Basic " + base64.b64encode(b"ops:pw"))])
client = fl.FlightClient("grpc://127.0.0.1:7470")
def run(sql):
    try:
        return client.do_get(ticket(sql), AUTH).read_all().to_pylist()
    except Exception as e:
        return str(e)
"#;

/// A server in `ns` with Flight, PostgreSQL on a unix socket and
/// /metrics; `extra` arguments after those.
struct Server {
    child: Reaped,
    dir: std::path::PathBuf,
    http: u16,
    _scratch: Scratch,
}

const PG_PORT: u16 = 5471;

impl Server {
    fn start(ns: &Netns, tag: &str, extra: &[&str]) -> Server {
        let scratch = Scratch::new(tag);
        let pw = password_file(&scratch, "pw");
        let dir = scratch.0.join("run");
        let flight = format!("127.0.0.1:{PORT}");
        let pg_port = PG_PORT.to_string();
        let mut args = vec![bin(), "serve", "--listen", "127.0.0.1:0", "--flight", &flight];
        args.extend(["--flight-password-file", &pw, "--pg", dir.to_str().unwrap(), "--pg-port", &pg_port]);
        args.extend_from_slice(extra);
        let mut child = spawn_in(ns, &args);
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let http = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("/metrics") => break crate::serve::metrics_port(&line),
                Some(Ok(line)) => said.push(line),
                _ => panic!("serve ended saying: {said:?}"),
            }
        };
        assert!(said.iter().any(|l| l.contains("Arrow Flight SQL on")), "{said:?}");
        std::thread::spawn(move || for _ in lines {});
        Server { child, dir, http, _scratch: scratch }
    }

    /// Root's psql on the unix socket answers `SELECT 7` within `within`.
    fn root_psql_answers(&self, within: Duration) {
        let t0 = Instant::now();
        let (out, err, ok) = crate::pg::psql(
            None,
            None,
            &[],
            &[
                "-h",
                self.dir.to_str().unwrap(),
                "-p",
                &PG_PORT.to_string(),
                "-U",
                "root",
                "-d",
                "sockql",
                "-c",
                "SELECT 7",
            ],
        );
        assert!(ok && out.trim() == "7", "root's psql: {err}");
        assert!(t0.elapsed() < within, "root's psql took {:?}", t0.elapsed());
    }

    /// A scrape answers, every metric query up.
    fn scrape_answers(&self, ns: &Netns) {
        let (status, body) = crate::serve::get(ns, self.http, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        assert!(body.lines().filter(|l| l.starts_with("sockql_query_up{")).all(|l| l.ends_with(" 1")), "{body}");
    }

    /// The server's peak resident memory so far, KiB.
    fn peak_kib(&self) -> i64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    }
}

/// Run a Python script (PRELUDE first) in `ns`; its last stdout line as JSON.
fn python(ns: &Netns, script: &str) -> serde_json::Value {
    let (out, err, ok) = ns.exec(PYTHON, &["-c", &format!("{PRELUDE}{script}")]);
    assert!(ok, "python: {err}");
    serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Wait until the Flight endpoint in `ns` answers a statement.
fn answers(ns: &Netns) {
    eventually(WAIT, || {
        (python(ns, "print(json.dumps(run('SELECT 1 AS one')))") == serde_json::json!([{"one": 1}])).then_some(())
    });
}

/// Server memory ceiling for these attacks (KiB): the debug binary's
/// own resident size is about 60 MB; a query is bounded by
/// --memory-limit 64M.
const CEILING_KIB: i64 = 256 * 1024;

#[test]
fn flight_attack_a_reader_that_stops_holds_no_slot_or_memory_past_the_timeout() {
    let ns = Netns::new("flslow");
    let server =
        Server::start(&ns, "flight-slow", &["--pg-max-queries", "1", "--timeout", "3s", "--memory-limit", "64M"]);
    answers(&ns);
    // A client that reads one batch of a query of a billion wide rows and
    // then stops reading, its connection open.
    let script = format!(
        "{PRELUDE}\nr = client.do_get(ticket(\"SELECT x, repeat('abcdefgh', 128) AS pad FROM generate_series(1, 1000000000) t(x)\"), AUTH)\nr.read_chunk()\nprint('reading', flush=True)\ntime.sleep(120)\n"
    );
    let mut slow = Command::new("ip")
        .args(["netns", "exec", &ns.name, PYTHON, "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(slow.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "reading");
    let t0 = std::time::SystemTime::now();
    // The slot (--pg-max-queries 1) is the slow reader's: root's psql has
    // its own, and scrapes need none.
    server.root_psql_answers(Duration::from_secs(3));
    server.scrape_answers(&ns);
    // Past --timeout the run is dropped though its client still reads
    // nothing: another Flight client gets the one slot. One client tries
    // every 100 ms and says when it was answered (by the wall clock, so
    // the time Python takes to start on a loaded machine is not counted).
    let got = python(
        &ns,
        "last = None\nfor _ in range(300):\n    last = run('SELECT 42 AS answer')\n    if last == [{'answer': 42}]: break\n    time.sleep(0.1)\nprint(json.dumps({'last': last, 'at': time.time()}))",
    );
    assert_eq!(got["last"], serde_json::json!([{"answer": 42}]), "the slot never came free: {got}");
    let at = std::time::UNIX_EPOCH + Duration::from_secs_f64(got["at"].as_f64().unwrap());
    let answer = at.duration_since(t0).unwrap_or_default();
    assert!(answer < Duration::from_secs(10), "the slot came free after {answer:?}");
    assert!(slow.try_wait().unwrap().is_none(), "the slow reader is still connected, still not reading");
    // ...and the work stopped: the server's CPU time stops growing.
    eventually(Duration::from_secs(10), || {
        let before = server.cpu_seconds();
        std::thread::sleep(Duration::from_millis(500));
        (server.cpu_seconds() - before < 0.1).then_some(())
    });
    let peak = server.peak_kib();
    assert!(peak < CEILING_KIB, "server peak RSS {peak} KiB");
    eprintln!("flight slow reader: slot free after {answer:?}, server VmHWM {peak} KiB");
    let _ = slow.kill();
    let _ = slow.wait();
}

#[test]
fn flight_attack_a_local_users_silent_connections_are_capped_and_closed() {
    let ns = Netns::new("flflood");
    let server = Server::start(&ns, "flight-flood", &[]);
    // As nobody: 300 connections to the Flight port that never send a
    // byte (no HTTP/2 preface, no call), held open.
    let script = format!(
        "import socket,sys,resource\n\
         resource.setrlimit(resource.RLIMIT_NOFILE,(400,400))\n\
         held=[]\n\
         for i in range(300):\n\
         \x20   s=socket.socket(); s.connect(('127.0.0.1',{PORT})); held.append(s)\n\
         print(len(held), flush=True)\n\
         sys.stdin.read()\n"
    );
    let mut attacker = Command::new("ip")
        .args(["netns", "exec", &ns.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(attacker.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "300", "nobody connected");
    // The server's ends of nobody's connections: at most its cap of 16.
    let held = |ns: &Netns| -> usize {
        ns.sockql(&format!("SELECT count(*) AS n FROM sockets WHERE local_port = {PORT} AND state = 'ESTAB'"))[0]["n"]
            .as_u64()
            .unwrap() as usize
    };
    eventually(WAIT, || (held(&ns) <= 16).then_some(()));
    // Root's Flight call, psql and a scrape are answered meanwhile.
    let got = python(&ns, "print(json.dumps(run('SELECT 5 AS five')))");
    assert_eq!(got, serde_json::json!([{"five": 5}]));
    server.root_psql_answers(Duration::from_secs(3));
    server.scrape_answers(&ns);
    // None of them logged in: past the login deadline (5 s) none is held.
    eventually(Duration::from_secs(10), || (held(&ns) == 0).then_some(()));
    assert!(attacker.try_wait().unwrap().is_none(), "nobody still holds its sockets");
    let peak = server.peak_kib();
    assert!(peak < CEILING_KIB, "server peak RSS {peak} KiB");
    drop(attacker.stdin.take());
    let _ = attacker.wait();
}

#[test]
fn flight_attack_a_huge_ticket_is_refused_before_it_is_read() {
    let ns = Netns::new("flticket");
    let server = Server::start(&ns, "flight-ticket", &[]);
    answers(&ns);
    // A 3 MB ticket (under gRPC's usual 4 MB cap): refused by its length
    // prefix, unread; a 66 kB statement (a message within the cap) by
    // the endpoint's bound on statements.
    let got = python(
        &ns,
        "big = run('SELECT 1 -- ' + 'x' * 3_000_000)\n\
         mid = run('SELECT 1 AS one -- ' + 'x' * 66_000)\n\
         print(json.dumps([big, mid, run('SELECT 2 AS two')]))",
    );
    let said = got[0].as_str().unwrap_or_default();
    assert!(said.contains("message length too large") && said.contains("69632"), "{got}");
    let said = got[1].as_str().unwrap_or_default();
    assert!(said.contains("at most 65536") && said.contains("RESOURCE_EXHAUSTED"), "{got}");
    assert_eq!(got[2], serde_json::json!([{"two": 2}]), "the server still answers");
    let peak = server.peak_kib();
    assert!(peak < CEILING_KIB, "server peak RSS {peak} KiB");
}

/// Raw HTTP/2 (no h2 library here): the client preface, SETTINGS, and
/// `n` calls of DoGet opened with valid headers but no request message,
/// so each stays open waiting for it; what the server said in 3 s.
const MANY_STREAMS: &str = r#"
import socket, struct, json, time, base64
def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload
def lit(name, value):  # HPACK literal without indexing, no Huffman
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
headers = b"".join(lit(n, v) for n, v in [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/arrow.flight.protocol.FlightService/DoGet"),
    (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
    (b"authorization", b"Basic " + base64.b64encode(b"ops:pw"))])
s = socket.create_connection(("127.0.0.1", PORT))
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
for i in range(N):
    s.sendall(frame(1, 4, 2 * i + 1, headers))  # END_HEADERS, not END_STREAM
s.settimeout(0.2)
buf, deadline = b"", time.time() + 3
while time.time() < deadline:
    try:
        data = s.recv(65536)
        if not data: break
        buf += data
    except socket.timeout:
        pass
settings, refused, goaway = {}, [], None
while len(buf) >= 9:
    length = int.from_bytes(buf[:3], "big"); ftype = buf[3]; flags = buf[4]
    sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
    payload = buf[9:9 + length]; buf = buf[9 + length:]
    if ftype == 4 and not flags & 1:
        for j in range(0, len(payload), 6):
            k, v = struct.unpack(">HI", payload[j:j + 6]); settings[k] = v
    elif ftype == 3 and int.from_bytes(payload[:4], "big") == 7:
        refused.append(sid)
    elif ftype == 7:
        goaway = int.from_bytes(payload[4:8], "big")
print(json.dumps({"max_streams": settings.get(3), "refused": len(refused), "goaway": goaway}))
"#;

#[test]
fn flight_attack_many_streams_on_one_connection_are_refused_past_the_cap() {
    let ns = Netns::new("flstreams");
    let server = Server::start(&ns, "flight-streams", &[]);
    answers(&ns);
    let script = MANY_STREAMS.replace("PORT", &PORT.to_string()).replace("range(N)", "range(50)");
    let (out, err, ok) = ns.exec("/usr/bin/python3", &["-c", &script]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // The server announces its cap and refuses every stream past it
    // (REFUSED_STREAM) instead of holding 50 calls on one connection.
    assert_eq!(got["max_streams"], 8, "{got}");
    assert_eq!(got["refused"], 42, "{got}");
    server.root_psql_answers(Duration::from_secs(3));
    server.scrape_answers(&ns);
    let peak = server.peak_kib();
    assert!(peak < CEILING_KIB, "server peak RSS {peak} KiB");
}

/// Prepared statements and cancels by hand (after PRELUDE): protobuf
/// results read by a small parser; `other` is a second connection.
const PREPARED: &str = r#"
def fields(buf):
    out, i = {}, 0
    while i < len(buf):
        key = 0; shift = 0
        while True:
            b = buf[i]; i += 1; key |= (b & 0x7f) << shift; shift += 7
            if not b & 0x80: break
        num, wire = key >> 3, key & 7
        n = 0; shift = 0
        while True:
            b = buf[i]; i += 1; n |= (b & 0x7f) << shift; shift += 7
            if not b & 0x80: break
        if wire == 2:
            out[num] = buf[i:i + n]; i += n
        else:
            out[num] = n
    return out
def action(c, kind, body):
    return [r.body.to_pybytes() for r in c.do_action(fl.Action(kind, body), AUTH)]
def prepare(c, sql):
    try:
        res = action(c, "CreatePreparedStatement", any_(b"ActionCreatePreparedStatementRequest", field(1, sql.encode())))
        return fields(fields(res[0])[2])[1]
    except Exception as e:
        return str(e)
def close(c, handle):
    try:
        action(c, "ClosePreparedStatement", any_(b"ActionClosePreparedStatementRequest", field(1, handle)))
        return "ok"
    except Exception as e:
        return str(e)
def run_prepared(c, handle):
    try:
        return c.do_get(fl.Ticket(any_(b"CommandPreparedStatementQuery", field(1, handle))), AUTH).read_all().to_pylist()
    except Exception as e:
        return str(e)
def descriptor(sql):
    return fl.FlightDescriptor.for_command(any_(b"CommandStatementQuery", field(1, sql.encode())))
def cancel(c, info):
    try:
        return fields(action(c, "CancelFlightInfo", field(1, info.serialize()))[0]).get(1, 0)
    except Exception as e:
        return str(e)
other = fl.FlightClient("grpc://127.0.0.1:7470")
"#;

#[test]
fn flight_attack_ten_thousand_prepared_statements_on_one_connection_stop_at_the_cap() {
    let ns = Netns::new("flprepflood");
    let server = Server::start(&ns, "flight-prepflood", &["--memory-limit", "64M"]);
    answers(&ns);
    // One connection asks for 10,000 prepared statements, each of a 1 kB
    // statement, and closes none.
    let t0 = Instant::now();
    let got = python(
        &ns,
        &format!(
            "{PREPARED}
made, refused, said = [], 0, ''
for i in range(10000):
    h = prepare(client, 'SELECT %d AS n -- %s' % (i, 'x' * 1000))
    if isinstance(h, bytes):
        made.append(h)
    else:
        refused += 1; said = said or h
first = run_prepared(client, made[0])
closed = close(client, made[0])
again = prepare(client, 'SELECT 7 AS seven')
print(json.dumps({{'made': len(made), 'distinct': len(set(made)), 'sizes': sorted(set(len(h) for h in made)),
    'refused': refused, 'said': said, 'first': first, 'closed': closed,
    'again': run_prepared(client, again) if isinstance(again, bytes) else again}}))"
        ),
    );
    let took = t0.elapsed();
    // The cap (64 a connection) holds: the rest are refused, before any
    // planning; the handles are random and distinct; closing one makes room.
    assert_eq!(got["made"], 64, "{got}");
    assert_eq!(got["distinct"], 64, "{got}");
    assert_eq!(got["sizes"], serde_json::json!([16]), "{got}");
    assert_eq!(got["refused"], 10000 - 64, "{got}");
    let said = got["said"].as_str().unwrap();
    assert!(said.contains("resource exhausted") && said.contains("64 prepared statements"), "{said}");
    assert_eq!(got["first"], serde_json::json!([{"n": 0}]), "{got}");
    assert_eq!(got["closed"], "ok");
    assert_eq!(got["again"], serde_json::json!([{"seven": 7}]), "{got}");
    server.root_psql_answers(Duration::from_secs(3));
    server.scrape_answers(&ns);
    let peak = server.peak_kib();
    assert!(peak < CEILING_KIB, "server peak RSS {peak} KiB");
    eprintln!("10,000 prepared statements: {took:?}, server VmHWM {peak} KiB");
}

#[test]
fn flight_attack_a_prepared_handle_is_refused_on_another_connection() {
    let ns = Netns::new("flprepother");
    let _server = Server::start(&ns, "flight-prepother", &[]);
    answers(&ns);
    let got = python(
        &ns,
        &format!(
            "{PREPARED}
h = prepare(client, 'SELECT 42 AS answer')
print(json.dumps({{'own': run_prepared(client, h), 'other': run_prepared(other, h),
    'other_close': close(other, h), 'own_after': run_prepared(client, h),
    'guessed': run_prepared(client, bytes(16))}}))"
        ),
    );
    assert_eq!(got["own"], serde_json::json!([{"answer": 42}]), "{got}");
    for refused in ["other", "other_close", "guessed"] {
        let said = got[refused].as_str().unwrap_or_default();
        assert!(said.contains("no prepared statement of this connection"), "{refused}: {got}");
    }
    // Another connection's close did not close it.
    assert_eq!(got["own_after"], serde_json::json!([{"answer": 42}]), "{got}");
}

#[test]
fn flight_attack_a_cancel_of_another_connections_query_is_refused_and_ones_own_frees_the_slot() {
    let ns = Netns::new("flcancel");
    let server = Server::start(&ns, "flight-cancel", &["--pg-max-queries", "1", "--timeout", "60s"]);
    answers(&ns);
    // A query that would run for minutes (bounded by --timeout 60s) holds
    // the one slot; another connection tries to cancel it, then its owner.
    let got = python(
        &ns,
        &format!(
            "{PREPARED}
SHORT = fl.FlightCallOptions(headers=AUTH.headers if hasattr(AUTH, 'headers') else [(b'authorization', b'Basic ' + base64.b64encode(b'ops:pw'))], timeout=2.0)
def quick(c):
    try:
        return c.do_get(ticket('SELECT 42 AS answer'), SHORT).read_all().to_pylist()
    except Exception as e:
        return str(e)
heavy = 'SELECT count(*) AS n FROM generate_series(1, 1000000) a(x), generate_series(1, 1000000) b(y) WHERE abs(x - y) >= 0'
info = client.get_flight_info(descriptor(heavy), AUTH)
r = client.do_get(info.endpoints[0].ticket, AUTH)
time.sleep(0.5)
out = {{'other': cancel(other, info), 'held': quick(other)}}
out['own'] = cancel(client, info)
t0 = time.time()
while True:
    got = quick(other)
    if isinstance(got, list) or time.time() - t0 > 20: break
out['after'] = got; out['freed_after'] = time.time() - t0
try:
    r.read_all(); out['reader'] = 'ok'
except BaseException as e:  # pyarrow raises a CANCELLED status as KeyboardInterrupt
    out['reader'] = str(e.__context__ or e)
out['again'] = cancel(client, info)
print(json.dumps(out))"
        ),
    );
    // Refused for the other connection; the query kept its slot.
    let other = got["other"].as_str().unwrap_or_default();
    assert!(other.contains("no query of this connection is running"), "{got}");
    let held = got["held"].as_str().unwrap_or_default();
    assert!(held.to_lowercase().contains("deadline"), "the slot was still taken: {got}");
    // Its owner's cancel: CANCELLED (1), the slot free within seconds
    // (not at --timeout 60s), and the reader told why.
    assert_eq!(got["own"], 1, "{got}");
    assert_eq!(got["after"], serde_json::json!([{"answer": 42}]), "{got}");
    assert!(got["freed_after"].as_f64().unwrap() < 5.0, "{got}");
    assert!(got["reader"].as_str().unwrap_or_default().contains("cancelled"), "{got}");
    assert!(got["again"].as_str().is_some_and(|s| s.contains("no query")), "nothing left to cancel: {got}");
    // ...and the work stopped: the server's CPU time stops growing.
    eventually(Duration::from_secs(10), || {
        let before = server.cpu_seconds();
        std::thread::sleep(Duration::from_millis(500));
        (server.cpu_seconds() - before < 0.1).then_some(())
    });
    server.root_psql_answers(Duration::from_secs(3));
}
