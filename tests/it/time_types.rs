//! Every time sockql makes carries its zone, UTC: what the command line
//! prints (`Z`), what a PostgreSQL client receives (timestamptz, OID 1184,
//! in text and binary, tz-aware UTC in psycopg), and what Grafana's
//! PostgreSQL data source sends once its macros are expanded, over
//! sockets this test makes at a time it knows.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::common::{eventually, field, output_of, query, run, WAIT};
use crate::pg_types::{port_for, serve, Server};

const TIMESTAMPTZ: i64 = 1184;
const TIMESTAMP: i64 = 1114;
const INT4: i64 = 23;
const INT8: i64 = 20;
const FLOAT8: i64 = 701;

/// A process of its own (python3) holding one listening socket on
/// loopback, so the socket's owner and the owner's start time are known.
struct Holder {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl Holder {
    fn spawn() -> Holder {
        let script = "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()";
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|e| panic!("holder printed {line:?}: {e}"));
        Holder { child, _stdin: stdin, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339 with a zone: {e}"))
        .with_timezone(&Utc)
}

/// A time the command line printed: it must end in `Z`.
fn printed(row: &Value, name: &str) -> DateTime<Utc> {
    let text = field(row, name).as_str().unwrap_or_else(|| panic!("{name}: {row}"));
    assert!(text.ends_with('Z'), "{name} printed without its zone: {text}");
    parse(text)
}

/// Microsecond precision, as PostgreSQL keeps (the wire truncates).
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

const ALL_TIMES: &str = "SELECT now() AS n, current_timestamp AS ct, to_timestamp(0) AS z, \
    '2026-12-06T00:00:00Z'::timestamptz AS l, CAST('2026-12-06T01:02:03.5Z' AS TIMESTAMP WITH TIME ZONE) AS c, \
    now() - interval '5 minutes' AS m, date_trunc('minute', to_timestamp(90)) AS d, \
    date_bin(interval '1 minute', to_timestamp(90)) AS b, from_unixtime(0) AS f, to_timestamp_millis(1500) AS ms, \
    p.start_time AS col, CAST('2026-12-06T00:00:00Z' AS TIMESTAMP) AS plain FROM processes p WHERE p.pid = ";

#[test]
fn cli_prints_every_time_with_its_zone() {
    let holder = Holder::spawn();
    let sql = format!("{ALL_TIMES}{}", holder.pid());
    let before = Utc::now();
    let rows = query(&sql);
    let after = Utc::now();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    let now = printed(row, "n");
    assert!(before <= now && now <= after, "now() {now} outside [{before}, {after}]");
    assert_eq!(printed(row, "ct"), now);
    assert_eq!(printed(row, "m"), now - TimeDelta::minutes(5));
    assert_eq!(field(row, "z"), "1970-01-01T00:00:00Z");
    assert_eq!(field(row, "l"), "2026-12-06T00:00:00Z");
    assert_eq!(field(row, "c"), "2026-12-06T01:02:03.500Z");
    assert_eq!(field(row, "d"), "1970-01-01T00:01:00Z");
    assert_eq!(field(row, "b"), "1970-01-01T00:01:00Z");
    assert_eq!(field(row, "f"), "1970-01-01T00:00:00Z");
    assert_eq!(field(row, "ms"), "1970-01-01T00:00:01.500Z");
    // The holder started between the two readings around its spawn; the
    // kernel's start time is boot time (whole seconds) plus clock ticks.
    let started = printed(row, "col");
    assert!((started - before).abs() < TimeDelta::seconds(5), "start_time {started}, test began {before}");
    // Asked for by name, a timestamp without time zone stays one (PostgreSQL's rule).
    assert_eq!(field(row, "plain"), "2026-12-06T00:00:00");

    // csv prints the same text.
    let (out, err, ok) = run(&["--format", "csv", &sql]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cells: std::collections::HashMap<&str, &str> = lines[0].split(',').zip(lines[1].split(',')).collect();
    assert_eq!(cells["z"], "1970-01-01T00:00:00Z");
    assert_eq!(cells["l"], "2026-12-06T00:00:00Z");
    assert_eq!(cells["col"], field(row, "col").as_str().unwrap());
    assert!(cells["n"].ends_with('Z') && cells["f"] == "1970-01-01T00:00:00Z", "{out}");

    // A string compared with a zoned column is read as a time in UTC.
    let window = |op: &str, at: DateTime<Utc>| {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let q = format!("SELECT count(*) AS n FROM processes WHERE pid = {} AND start_time {op} '{at}'", holder.pid());
        field(&query(&q)[0], "n").as_i64().unwrap()
    };
    assert_eq!(window(">", before - TimeDelta::seconds(60)), 1);
    assert_eq!(window("<", before - TimeDelta::seconds(60)), 0);
    let q = format!(
        "SELECT count(*) AS n FROM processes WHERE pid = {} AND start_time > now() - interval '5 minutes'",
        holder.pid()
    );
    assert_eq!(field(&query(&q)[0], "n"), 1);

    // RESET (DataFusion's default is no zone) and SET to '' keep UTC.
    for reset in ["RESET datafusion.execution.time_zone", "SET datafusion.execution.time_zone = ''"] {
        let (out, err, ok) = run(&["--format", "ndjson", &format!("{reset}; SELECT now() AS n, to_timestamp(0) AS z")]);
        assert!(ok, "{err}");
        let row = &crate::common::parse_ndjson(&out)[0];
        printed(row, "n");
        assert_eq!(field(row, "z"), "1970-01-01T00:00:00Z", "after {reset}");
    }
}

/// Runs each query with psycopg 3 (Debian's python3), text then binary,
/// and prints, per query and format, the type codes, the rows (times as
/// their ISO text and UTC offset in seconds, null when naive) and the
/// client's clock just before and after.
const PSYCOPG: &str = r#"
import json, sys, datetime, decimal, psycopg
UTC = datetime.timezone.utc
def canon(v):
    if isinstance(v, datetime.datetime):
        off = v.utcoffset()
        return {"ts": v.isoformat(), "offset": None if off is None else off.total_seconds()}
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v
out = []
with psycopg.connect(sys.argv[1]) as conn:
    for sql in json.loads(sys.argv[2]):
        both = []
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            before = datetime.datetime.now(UTC)
            cur.execute(sql)
            rows = cur.fetchall()
            after = datetime.datetime.now(UTC)
            both.append({"types": [d.type_code for d in cur.description], "rows": [[canon(v) for v in r] for r in rows],
                         "before": before.isoformat(), "after": after.isoformat()})
        out.append(both)
print(json.dumps(out))
"#;

/// What psycopg got for one query in one format.
#[derive(Debug)]
struct Got {
    types: Vec<i64>,
    rows: Vec<Vec<Value>>,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
}

/// Each query's answer, text and binary (asserted to agree on types).
fn psycopg(server: &Server, queries: &[String]) -> Vec<[Got; 2]> {
    let dsn = format!("host={} port={} user=root dbname=sockql", server.dir.display(), server.port);
    let o = Command::new("/usr/bin/python3")
        .args(["-c", PSYCOPG, &dsn, &serde_json::to_string(queries).unwrap()])
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "psycopg: {err}");
    let all: Vec<Vec<Value>> = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    all.into_iter()
        .zip(queries)
        .map(|(both, sql)| {
            let got: Vec<Got> = both
                .into_iter()
                .map(|g| Got {
                    types: g["types"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect(),
                    rows: g["rows"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect(),
                    before: parse(g["before"].as_str().unwrap()),
                    after: parse(g["after"].as_str().unwrap()),
                })
                .collect();
            let [text, binary]: [Got; 2] = got.try_into().unwrap();
            assert_eq!(text.types, binary.types, "{sql}");
            assert_eq!(text.rows.len(), binary.rows.len(), "{sql}");
            [text, binary]
        })
        .collect()
}

/// A tz-aware UTC datetime as psycopg made it.
fn utc(v: &Value) -> DateTime<Utc> {
    assert_eq!(v["offset"], 0.0, "not a UTC-aware datetime: {v}");
    parse(v["ts"].as_str().unwrap())
}

#[test]
fn psycopg_receives_timestamptz_in_utc_text_and_binary() {
    let holder = Holder::spawn();
    let server = serve("timetypes", port_for(7), &[]);
    let sql = format!("{ALL_TIMES}{}", holder.pid());
    let cli = &query(&sql)[0];
    let answers = psycopg(&server, std::slice::from_ref(&sql));
    let names = ["n", "ct", "z", "l", "c", "m", "d", "b", "f", "ms", "col", "plain"];
    for got in &answers[0] {
        let mut expected = vec![TIMESTAMPTZ; names.len()];
        expected[names.len() - 1] = TIMESTAMP;
        assert_eq!(got.types, expected, "{got:?}");
        let row = &got.rows[0];
        let at = |name: &str| utc(&row[names.iter().position(|n| *n == name).unwrap()]);
        let now = at("n");
        assert!(got.before <= now && now <= got.after, "now() {now} outside [{}, {}]", got.before, got.after);
        assert_eq!(at("ct"), now);
        assert_eq!(at("m"), now - TimeDelta::minutes(5));
        assert_eq!(row[2]["ts"], "1970-01-01T00:00:00+00:00");
        // Every other time equals what the command line printed.
        for name in ["z", "l", "c", "d", "b", "f", "ms", "col"] {
            assert_eq!(at(name), micros(printed(cli, name)), "{name}");
        }
        // A timestamp without time zone, asked for by name, arrives naive.
        assert_eq!(row[11], serde_json::json!({"ts": "2026-12-06T00:00:00", "offset": null}));
    }
}

/// Go's time.RFC3339Nano of a UTC time, as Grafana formats its range.
fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        s.push_str(format!(".{nanos:09}").trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Seconds of a Grafana interval ('1m', '30s', '1h').
fn interval_seconds(arg: &str) -> u64 {
    let arg = arg.trim_matches('\'');
    let (n, unit) = arg.split_at(arg.len() - 1);
    n.parse::<u64>().unwrap()
        * match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            other => panic!("interval unit {other}"),
        }
}

/// One macro as Grafana's PostgreSQL data source expands it
/// (pkg/tsdb/grafana-postgresql-datasource/macros.go, without TimescaleDB).
fn grafana_macro(name: &str, args: &[&str], from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    match name {
        "__time" => format!("{} AS \"time\"", args[0]),
        "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", args[0]),
        "__timeFilter" => format!("{} BETWEEN '{}' AND '{}'", args[0], rfc3339_nano(from), rfc3339_nano(to)),
        "__timeFrom" => format!("'{}'", rfc3339_nano(from)),
        "__timeTo" => format!("'{}'", rfc3339_nano(to)),
        "__timeGroup" => {
            let s = interval_seconds(args[1]);
            format!("floor(extract(epoch from {})/{s})*{s}", args[0])
        }
        "__timeGroupAlias" => format!("{} AS \"time\"", grafana_macro("__timeGroup", args, from, to)),
        "__unixEpochFilter" => format!("{} >= {} AND {} <= {}", args[0], from.timestamp(), args[0], to.timestamp()),
        other => panic!("macro {other} is not expanded here"),
    }
}

/// `sql` with every `$__name(args)` expanded as Grafana does: the name is
/// `[_a-zA-Z0-9]+`, the arguments run to the first `)` and are split at
/// commas and trimmed.
fn grafana(sql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let (name, tail) = after.split_at(len);
        let tail = tail.strip_prefix('(').unwrap_or_else(|| panic!("macro {name} without arguments"));
        let close = tail.find(')').unwrap();
        let args: Vec<&str> = tail[..close].split(',').map(str::trim).collect();
        out.push_str(&grafana_macro(name, &args, from, to));
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn grafana_time_series_queries_get_utc_times_and_numeric_values() {
    let before = Utc::now();
    let holders = [Holder::spawn(), Holder::spawn()];
    let after = Utc::now();
    let ports = format!("{}, {}", holders[0].port, holders[1].port);
    let mut expected_ports: Vec<i64> = holders.iter().map(|h| h.port as i64).collect();
    expected_ports.sort();
    let owned = format!(
        "FROM sockets s JOIN processes p ON s.pid = p.pid WHERE s.local_port IN ({ports}) AND s.state = 'LISTEN'"
    );
    // Both sockets listed with their owners (the /proc walk) before asking.
    eventually(WAIT, || {
        let n = query(&format!("SELECT count(*) AS n {owned}"));
        (field(&n[0], "n") == 2).then_some(())
    });
    let server = serve("grafana", port_for(8), &[]);

    // Dashboard ranges: one around the holders' start (the kernel's start
    // time is boot time in whole seconds plus ticks: within a second or
    // two of the clock), one that ended an hour before.
    let inside = (before - TimeDelta::seconds(5), after + TimeDelta::seconds(5));
    let outside = (before - TimeDelta::hours(2), before - TimeDelta::hours(1));
    use Check::*;
    let panels = [
        (Ports, vec![TIMESTAMPTZ, INT4], format!("SELECT $__time(p.start_time), s.local_port AS value {owned} AND $__timeFilter(p.start_time) ORDER BY 2")),
        (
            Minutes,
            vec![FLOAT8, INT8],
            format!("SELECT $__timeGroupAlias(p.start_time, '1m'), count(*) AS value {owned} AND $__timeFilter(p.start_time) GROUP BY 1 ORDER BY 1"),
        ),
        (EpochPorts, vec![FLOAT8, INT4], format!("SELECT $__timeEpoch(p.start_time), s.local_port AS value {owned} AND $__timeFilter(p.start_time) ORDER BY 2")),
        (
            EpochPorts,
            vec![INT8, INT4],
            format!(
                "SELECT started AS \"time\", local_port AS value FROM (SELECT CAST(extract(epoch from p.start_time) AS BIGINT) AS started, \
                 s.local_port {owned}) t WHERE $__unixEpochFilter(started) ORDER BY 2"
            ),
        ),
        (
            Bins,
            vec![TIMESTAMPTZ, INT8],
            format!("SELECT date_bin(interval '1 minute', p.start_time) AS \"time\", count(*) AS value {owned} AND $__timeFilter(p.start_time) GROUP BY 1 ORDER BY 1"),
        ),
        // Live state has no time of its own: a stat panel stamps it now.
        (Now, vec![TIMESTAMPTZ, INT8], format!("SELECT now() AS \"time\", count(*) AS value {owned}")),
        (
            From,
            vec![TIMESTAMPTZ, INT8],
            format!("SELECT $__timeFrom()::timestamptz AS \"time\", count(*) AS value {owned} AND p.start_time BETWEEN $__timeFrom() AND $__timeTo()"),
        ),
    ];
    for (from, to) in [inside, outside] {
        let hit = from == inside.0;
        let queries: Vec<String> = panels.iter().map(|(_, _, sql)| grafana(sql, from, to)).collect();
        let answers = psycopg(&server, &queries);
        // An epoch in seconds within the range, less `slack` seconds (a minute's bucket, a truncated second).
        let epoch_in = |t: f64, slack: f64| from.timestamp() as f64 - slack <= t && t <= to.timestamp() as f64 + 1.0;
        for (((check, types, _), sql), both) in panels.iter().zip(&queries).zip(&answers) {
            for got in both {
                let context = format!("{sql}: {got:?}");
                assert_eq!(&got.types, types, "{context}");
                let rows = &got.rows;
                let ports: Vec<i64> = rows.iter().map(|r| r[1].as_i64().unwrap_or(-1)).collect();
                let total: i64 = ports.iter().sum();
                let mine = if hit { expected_ports.clone() } else { vec![] };
                match check {
                    Ports => {
                        assert_eq!(ports, mine, "{context}");
                        assert!(rows.iter().all(|r| (from..=to).contains(&utc(&r[0]))), "{context}");
                    }
                    Minutes => {
                        assert_eq!(total, if hit { 2 } else { 0 }, "{context}");
                        assert!(
                            rows.iter().all(|r| r[0].as_f64().is_some_and(|t| t % 60.0 == 0.0 && epoch_in(t, 60.0))),
                            "{context}"
                        );
                    }
                    EpochPorts => {
                        assert_eq!(ports, mine, "{context}");
                        assert!(rows.iter().all(|r| r[0].as_f64().is_some_and(|t| epoch_in(t, 1.0))), "{context}");
                    }
                    Bins => {
                        assert_eq!(total, if hit { 2 } else { 0 }, "{context}");
                        let minute_before = from - TimeDelta::minutes(1);
                        assert!(rows.iter().all(|r| utc(&r[0]).timestamp() % 60 == 0 && (minute_before..=to).contains(&utc(&r[0]))), "{context}");
                    }
                    Now => {
                        assert_eq!(rows.len(), 1, "{context}");
                        assert!((got.before..=got.after).contains(&utc(&rows[0][0])), "{context}");
                        assert_eq!(rows[0][1], 2, "{context}");
                    }
                    From => {
                        assert_eq!(rows.len(), 1, "{context}");
                        assert_eq!(utc(&rows[0][0]), micros(from), "{context}");
                        assert_eq!(rows[0][1], if hit { 2 } else { 0 }, "{context}");
                    }
                }
            }
        }
    }
    drop(holders);
}

/// What a Grafana panel's rows must hold.
enum Check {
    /// The time column and the two holders' ports (none outside the range).
    Ports,
    /// Minute buckets (epoch seconds) counting the two holders.
    Minutes,
    /// Epoch seconds and the two holders' ports.
    EpochPorts,
    /// date_bin minutes counting the two holders.
    Bins,
    /// One row stamped now(), counting both.
    Now,
    /// One row stamped with the range's start.
    From,
}
