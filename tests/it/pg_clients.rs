//! The PostgreSQL client matrix against `sockql serve --pg`: SQLAlchemy 2
//! with pandas (psycopg2 and psycopg 3 dialects), psycopg2 and psycopg 3
//! (server-side parameters, binary results, a prepared statement reused),
//! node-postgres, over the unix socket and TCP with SCRAM. Each reads the
//! sockets of a namespace the test fills, so the rows are known; each
//! answer is checked against those rows and against what the command
//! line prints for the same SQL there. Also: PostgreSQL's result column
//! names, report() keeping its report's order, and serve refusing the
//! global flags that do not apply to it.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::{bin, eventually, output_of, Scratch, WAIT};
use crate::events::Reaped;
use crate::netns::Netns;

/// The client matrix's Python (a venv with psycopg2, psycopg 3,
/// SQLAlchemy 2 and pandas).
const PYTHON: &str = "/var/cache/sockql/pyclients/bin/python";
const NODE_PATH: &str = "/var/cache/sockql/node/node_modules";
const PASSWORD: &str = "s3cret";

/// A namespace with three TCP listeners (ports `a < b < c`) and two
/// connections to `a`, and `sockql serve --pg` there twice: on a unix
/// socket and on loopback TCP with SCRAM.
struct Fixture {
    ns: Netns,
    scratch: Scratch,
    ports: [u16; 3],
    _sockets: Vec<TcpStream>,
    _listeners: Vec<TcpListener>,
    _servers: Vec<Reaped>,
}

/// The unix socket's port (in its file name) and the TCP port: the
/// namespace is the test's own, so fixed ports are free.
const PG_PORT: u16 = 5439;

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let ns = Netns::new(tag);
        let scratch = Scratch::new(&format!("pgcl-{tag}"));
        let (listeners, sockets) = ns.enter(|| {
            let mut listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
            listeners.sort_by_key(|l| l.local_addr().unwrap().port());
            let to = listeners[0].local_addr().unwrap();
            let mut sockets: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(to).unwrap()).collect();
            for _ in 0..2 {
                sockets.push(listeners[0].accept().unwrap().0);
            }
            (listeners, sockets)
        });
        let ports = [0, 1, 2].map(|i| listeners[i].local_addr().unwrap().port());
        let pw = scratch.0.join("password");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let dir = scratch.0.join("run");
        let port = PG_PORT.to_string();
        let (unix, _) = crate::pg::serve(&ns, &["--pg", dir.to_str().unwrap(), "--pg-port", &port]);
        let (tcp, _) = crate::pg::serve(
            &ns,
            &["--pg", &format!("127.0.0.1:{PG_PORT}"), "--pg-password-file", pw.to_str().unwrap()],
        );
        let socket = dir.join(format!(".s.PGSQL.{PG_PORT}"));
        eventually(WAIT, || socket.exists().then_some(()));
        eventually(WAIT, || ns.enter(|| TcpStream::connect(("127.0.0.1", PG_PORT)).is_ok()).then_some(()));
        Fixture { ns, scratch, ports, _sockets: sockets, _listeners: listeners, _servers: vec![unix, tcp] }
    }

    fn dir(&self) -> PathBuf {
        self.scratch.0.join("run")
    }

    /// The CLI's rows for `sql` in the namespace, as arrays in `columns`' order.
    fn cli(&self, sql: &str, columns: &[&str]) -> Vec<Vec<Value>> {
        self.ns
            .sockql(sql)
            .iter()
            .map(|row| columns.iter().map(|c| crate::common::field(row, c).clone()).collect())
            .collect()
    }

    /// The rows every client reads: protocol, local_port, count, a sum, a
    /// float and a bool, one row per listener port.
    fn typed_sql(&self) -> String {
        let [a, b, c] = self.ports;
        format!(
            "SELECT protocol, local_port, count(*) AS n, sum(CASE WHEN state = 'ESTAB' THEN 1 ELSE 0 END) AS estab, \
             CAST(local_port AS double) / 2 AS half, local_port = {a} AS first \
             FROM sockets WHERE local_port IN ({a}, {b}, {c}) GROUP BY protocol, local_port ORDER BY local_port"
        )
    }

    /// What [`Fixture::typed_sql`] must answer: the listener of `a` with
    /// its two accepted connections, `b` and `c` alone.
    fn typed_expected(&self) -> Vec<Vec<Value>> {
        let [a, b, c] = self.ports;
        vec![
            vec![json!("tcp"), json!(a), json!(3), json!(2), json!(a as f64 / 2.0), json!(true)],
            vec![json!("tcp"), json!(b), json!(1), json!(0), json!(b as f64 / 2.0), json!(false)],
            vec![json!("tcp"), json!(c), json!(1), json!(0), json!(c as f64 / 2.0), json!(false)],
        ]
    }
}

const TYPED_COLUMNS: [&str; 6] = ["protocol", "local_port", "n", "estab", "half", "first"];

/// Rows equal, numbers compared by value (a float that is whole may be
/// written `617` by one side and `617.0` by the other).
fn same_rows(got: &[Vec<Value>], want: &[Vec<Value>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len()
                && g.iter().zip(w).all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => x == y,
                })
        })
}

fn rows_of(v: &Value) -> Vec<Vec<Value>> {
    v.as_array().unwrap_or_else(|| panic!("not rows: {v}")).iter().map(|r| r.as_array().unwrap().clone()).collect()
}

/// Run a Python script of the client matrix with `args`, in `ns` if
/// given (TCP to the namespace's loopback); its stdout is one JSON value.
fn python(ns: Option<&Netns>, script: &str, args: &[&str]) -> Value {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, PYTHON]);
            c
        }
        None => Command::new(PYTHON),
    };
    let (out, err, ok) = output_of(cmd.args(["-c", script]).args(args).stdin(Stdio::null()).output().unwrap());
    assert!(ok, "python failed: {err}\n{script}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

const SQLALCHEMY: &str = r#"
import sys, json
import pandas as pd
from sqlalchemy import create_engine, text
url, sql = sys.argv[1], sys.argv[2]
engine = create_engine(url)
with engine.connect() as c:
    df = pd.read_sql(text(sql), c)
    times = pd.read_sql(text("SELECT to_timestamp(0) AS t0, now() AS n"), c)
    iso = c.get_isolation_level()
    schema = c.exec_driver_sql("select current_schema()").scalar()
    version = c.exec_driver_sql("select pg_catalog.version()").scalar()
# pandas given the engine itself (it connects on its own).
again = pd.read_sql(text(sql), engine)
rows = [[v.item() if hasattr(v, "item") else v for v in r] for r in df.itertuples(index=False)]
print(json.dumps({
    "info": list(engine.dialect.server_version_info), "iso": iso, "schema": schema, "version": version,
    "columns": list(df.columns), "dtypes": [str(t) for t in df.dtypes], "rows": rows, "again": df.equals(again),
    "time_dtypes": [str(t) for t in times.dtypes], "t0": times["t0"][0].isoformat(),
}))
"#;

/// SQLAlchemy 2 connects with both PostgreSQL dialects (it reads
/// `pg_catalog.version()`, `current_schema()`, `standard_conforming_strings`,
/// the isolation level, and psycopg's hstore lookup in a savepoint), and
/// pandas reads the namespace's rows through it with PostgreSQL's dtypes.
#[test]
fn sqlalchemy_and_pandas_read_the_rows_the_cli_prints() {
    let f = Fixture::new("pgclSA");
    let sql = f.typed_sql();
    let want = f.typed_expected();
    let cli = f.cli(&sql, &TYPED_COLUMNS);
    assert!(same_rows(&cli, &want), "the CLI: {cli:?}, want {want:?}");
    let dir = f.dir();
    let unix = |driver: &str| format!("postgresql+{driver}://root@/sockql?host={}&port={PG_PORT}", dir.display());
    let runs = [
        (None, unix("psycopg2")),
        (None, unix("psycopg")),
        (Some(&f.ns), format!("postgresql+psycopg://ops:{PASSWORD}@127.0.0.1:{PG_PORT}/sockql")),
        (Some(&f.ns), format!("postgresql+psycopg2://ops:{PASSWORD}@127.0.0.1:{PG_PORT}/sockql")),
    ];
    for (ns, url) in runs {
        let got = python(ns, SQLALCHEMY, &[&url, &sql]);
        assert_eq!(got["info"], json!([16, 6]), "{url}: {got}");
        assert_eq!(got["iso"], "READ COMMITTED", "{url}");
        assert_eq!(got["schema"], "public", "{url}");
        assert!(got["version"].as_str().unwrap().starts_with("PostgreSQL 16.6 (sockql "), "{url}: {got}");
        assert_eq!(got["columns"], json!(TYPED_COLUMNS), "{url}");
        // text is pandas 3's str (object before), bigint int64, double
        // float64, boolean bool.
        let dtypes: Vec<&str> = got["dtypes"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
        assert!(matches!(dtypes[0], "str" | "object"), "{url}: {dtypes:?}");
        assert_eq!(dtypes[1..], ["int64", "int64", "int64", "float64", "bool"], "{url}");
        let rows = rows_of(&got["rows"]);
        assert!(same_rows(&rows, &want), "{url}: {rows:?}, want {want:?}");
        assert!(same_rows(&rows, &cli), "{url}: {rows:?}, the CLI {cli:?}");
        assert_eq!(got["again"], true, "{url}: pandas through the engine");
        // Times arrive zoned (timestamptz): pandas makes them UTC-aware.
        for dtype in got["time_dtypes"].as_array().unwrap() {
            let dtype = dtype.as_str().unwrap();
            assert!(dtype.starts_with("datetime64[") && dtype.ends_with(", UTC]"), "{url}: {dtype}");
        }
        assert_eq!(got["t0"], "1970-01-01T00:00:00+00:00", "{url}");
    }
}

const PSYCOPG: &str = r#"
import sys, json, os
import psycopg, psycopg2
from psycopg import pq
dsn, trace_file, a, b, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
typed = sys.argv[6]
by_state = "SELECT local_port, count(*) AS n, state FROM sockets WHERE local_port = %s AND state = %s GROUP BY local_port, state"
by_port = "SELECT local_port, count(*) AS n FROM sockets WHERE local_port = %s GROUP BY local_port"
out = {}
conn = psycopg.connect(dsn, autocommit=True)
out["server_version"] = conn.info.server_version
trace = open(trace_file, "w")
conn.pgconn.trace(trace.fileno())
conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
cur = conn.cursor()
cur.execute(by_state, (a, "ESTAB"))
out["server_side"] = [list(r) for r in cur.fetchall()]
out["prepared"] = []
for p in (a, b, c):
    cur.execute(by_port, (p,), prepare=True)
    out["prepared"].append([list(r) for r in cur.fetchall()])
conn.pgconn.untrace()
trace.close()
binary = conn.cursor(binary=True)
binary.execute(typed)
out["binary_formats"] = [binary.pgresult.fformat(i) for i in range(binary.pgresult.nfields)]
out["binary"] = [list(r) for r in binary.fetchall()]
conn.close()
# psycopg2 puts the values into the text itself.
conn2 = psycopg2.connect(dsn)
cur2 = conn2.cursor()
out["mogrified"] = cur2.mogrify(by_state, (a, "ESTAB")).decode()
cur2.execute(by_state, (a, "ESTAB"))
out["client_side"] = [list(r) for r in cur2.fetchall()]
cur2.execute(typed)
out["psycopg2_typed"] = [list(r) for r in cur2.fetchall()]
conn2.close()
print(json.dumps(out))
"#;

/// psycopg 3 binds parameters on the server ($1 in Parse), reads binary
/// results, and reuses one prepared statement (one Parse, three Binds);
/// psycopg2 interpolates on the client. Over the unix socket and over
/// TCP with SCRAM, the rows are the ones the test made and the CLI prints.
#[test]
fn psycopg_binds_on_the_server_reads_binary_and_reuses_a_prepared_statement() {
    let f = Fixture::new("pgclPy");
    let [a, b, c] = f.ports;
    let typed = f.typed_sql();
    let want = f.typed_expected();
    let by_state_cli = f.cli(&format!("SELECT local_port, count(*) AS n, state FROM sockets WHERE local_port = {a} AND state = 'ESTAB' GROUP BY local_port, state"), &["local_port", "n", "state"]);
    assert_eq!(by_state_cli, vec![vec![json!(a), json!(2), json!("ESTAB")]]);
    let by_port_cli: Vec<Vec<Vec<Value>>> = [a, b, c]
        .iter()
        .map(|p| {
            f.cli(
                &format!("SELECT local_port, count(*) AS n FROM sockets WHERE local_port = {p} GROUP BY local_port"),
                &["local_port", "n"],
            )
        })
        .collect();
    assert_eq!(
        by_port_cli,
        vec![vec![vec![json!(a), json!(3)]], vec![vec![json!(b), json!(1)]], vec![vec![json!(c), json!(1)]]]
    );
    let unix = format!("host={} port={PG_PORT} user=root dbname=sockql", f.dir().display());
    let tcp = format!("host=127.0.0.1 port={PG_PORT} user=ops password={PASSWORD} dbname=sockql");
    for (ns, dsn) in [(None, unix), (Some(&f.ns), tcp)] {
        let trace = f.scratch.0.join("trace");
        let (sa, sb, sc) = (a.to_string(), b.to_string(), c.to_string());
        let got = python(ns, PSYCOPG, &[&dsn, trace.to_str().unwrap(), &sa, &sb, &sc, &typed]);
        assert_eq!(got["server_version"], 160006, "{dsn}");
        assert_eq!(rows_of(&got["server_side"]), by_state_cli, "{dsn}");
        assert_eq!(rows_of(&got["client_side"]), by_state_cli, "{dsn}");
        assert!(got["mogrified"].as_str().unwrap().contains(&format!("local_port = {a} AND state = 'ESTAB'")), "{got}");
        let prepared: Vec<Vec<Vec<Value>>> = got["prepared"].as_array().unwrap().iter().map(rows_of).collect();
        assert_eq!(prepared, by_port_cli, "{dsn}");
        // The frontend messages libpq sent: the parameters went as $1 and
        // $2; the prepared statement was parsed once and bound three times.
        let sent = std::fs::read_to_string(&trace).unwrap();
        let frontend: Vec<&str> = sent.lines().filter(|l| l.starts_with("F\t")).collect();
        assert!(
            frontend.iter().any(|l| l.contains("\tParse\t") && l.contains("local_port = $1 AND state = $2")),
            "{sent}"
        );
        let named_parses = frontend.iter().filter(|l| l.contains("\tParse\t") && l.contains("\"_pg3_")).count();
        let named_binds = frontend.iter().filter(|l| l.contains("\tBind\t") && l.contains("\"_pg3_")).count();
        assert_eq!((named_parses, named_binds), (1, 3), "{sent}");
        assert_eq!(got["binary_formats"], json!([1, 1, 1, 1, 1, 1]), "{dsn}: binary results");
        assert!(same_rows(&rows_of(&got["binary"]), &want), "{dsn}: {}", got["binary"]);
        assert!(same_rows(&rows_of(&got["psycopg2_typed"]), &want), "{dsn}: {}", got["psycopg2_typed"]);
    }
}

const NODE: &str = r#"
const { Client, types } = require('pg');
// bigint as a number (node-postgres gives text by default): the counts are small.
types.setTypeParser(20, v => Number(v));
const [config, text, values] = process.argv.slice(2).map(JSON.parse);
(async () => {
  const c = new Client(config);
  await c.connect();
  const r = await c.query({ text, values, rowMode: 'array' });
  console.log(JSON.stringify({ fields: r.fields.map(f => f.name), rows: r.rows }));
  await c.end();
})().catch(e => { console.error(String(e)); process.exit(1); });
"#;

/// node-postgres: a parameterised query over the unix socket and over
/// TCP with SCRAM, the rows the test made and the CLI prints.
#[test]
fn node_postgres_runs_a_parameterised_query_over_unix_and_scram() {
    let f = Fixture::new("pgclJs");
    let [a, _, _] = f.ports;
    let script = f.scratch.0.join("client.js");
    std::fs::write(&script, NODE).unwrap();
    let sql =
        "SELECT protocol, local_port, count(*) AS n, CAST(local_port AS double) / 2 AS half, local_port = $1 AS first \
               FROM sockets WHERE local_port IN ($1, $2, $3) GROUP BY protocol, local_port ORDER BY local_port";
    let [lo, mid, hi] = f.ports;
    let cli_sql = sql.replace("$1", &lo.to_string()).replace("$2", &mid.to_string()).replace("$3", &hi.to_string());
    let columns = ["protocol", "local_port", "n", "half", "first"];
    let cli = f.cli(&cli_sql, &columns);
    let want: Vec<Vec<Value>> = f
        .typed_expected()
        .into_iter()
        .map(|r| vec![r[0].clone(), r[1].clone(), r[2].clone(), r[4].clone(), r[5].clone()])
        .collect();
    assert!(same_rows(&cli, &want), "the CLI: {cli:?}");
    assert_eq!(lo, a);
    let unix = json!({"host": f.dir(), "port": PG_PORT, "user": "root", "database": "sockql"});
    let tcp = json!({"host": "127.0.0.1", "port": PG_PORT, "user": "ops", "password": PASSWORD, "database": "sockql"});
    for (ns, config) in [(None, unix), (Some(&f.ns), tcp)] {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, "node"]);
                c
            }
            None => Command::new("node"),
        };
        let args = [config.to_string(), json!(sql).to_string(), json!([lo, mid, hi]).to_string()];
        let o = cmd.arg(&script).args(&args).env("NODE_PATH", NODE_PATH).stdin(Stdio::null()).output().unwrap();
        let (out, err, ok) = output_of(o);
        assert!(ok, "node ({config}): {err}");
        let got: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(got["fields"], json!(columns), "{config}");
        let rows = rows_of(&got["rows"]);
        assert!(same_rows(&rows, &want), "{config}: {rows:?}");
        assert!(same_rows(&rows, &cli), "{config}: {rows:?}, the CLI {cli:?}");
    }
}

const NAMES: &str = r#"
import sys, json, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    cur = conn.execute(sys.argv[2])
    print(json.dumps({"names": [d.name for d in cur.description], "rows": [[str(v) for v in r] for r in cur.fetchall()]}))
"#;

/// Result columns carry PostgreSQL's names for clients (psycopg's
/// description, as pandas and node-postgres read them); the command line
/// keeps DataFusion's. The values are the same on both.
#[test]
fn result_columns_carry_postgresqls_names_for_clients() {
    let f = Fixture::new("pgclNm");
    let [a, _, _] = f.ports;
    let sql = format!(
        "SELECT count(*), 1, sum(local_port), max(recv_q), local_port + 1, CAST(local_port AS int), recv_q::int, lower(state), \
         state AS \"State\", upper(state) AS s FROM sockets WHERE local_port = {a} AND state = 'LISTEN' GROUP BY local_port, recv_q, state"
    );
    let dsn = format!("host={} port={PG_PORT} user=root dbname=sockql", f.dir().display());
    let got = python(None, NAMES, &[&dsn, &sql]);
    assert_eq!(
        got["names"],
        json!(["count", "?column?", "sum", "max", "?column?", "local_port", "recv_q", "lower", "State", "s"])
    );
    let a1 = (a + 1).to_string();
    let a = a.to_string();
    let want = json!([["1", "1", a, "0", a1, a, "0", "listen", "LISTEN", "LISTEN"]]);
    assert_eq!(got["rows"], want);
    // The CLI's names are DataFusion's, its values the same.
    let (out, err, ok) = f.ns.exec(bin(), &["--format", "csv", &sql]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("count(*),"), "{header}");
    assert!(header.ends_with(",State,s"), "{header}");
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(json!([row]), want);
    // UNION and a scalar subquery: named by the first branch, the subquery's column.
    let got = python(None, NAMES, &[&dsn, "SELECT local_port AS p FROM sockets WHERE false UNION ALL SELECT 2"]);
    assert_eq!(got["names"], json!(["p"]));
    let got = python(
        None,
        NAMES,
        &[&dsn, "SELECT (SELECT max(local_port) FROM sockets), true, DATE '2024-01-02', version()"],
    );
    assert_eq!(got["names"], json!(["max", "bool", "date", "version"]));
}

/// psql's unaligned rows over the unix socket of `dir`.
fn psql(dir: &Path, sql: &str) -> Vec<String> {
    let port = PG_PORT.to_string();
    let o = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-F",
            ",",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            dir.to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "root",
            "-d",
            "sockql",
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "psql -c {sql}: {err}");
    out.lines().map(str::to_string).collect()
}

/// `SELECT * FROM report('listeners')` gives the report's rows in the
/// report's order (namespace, protocol, port, address), as `sockql run
/// listeners` does, on the command line and through psql; the planner
/// used to drop the report's ORDER BY and rows interleaved.
#[test]
fn report_rows_keep_the_reports_order_on_the_cli_and_through_psql() {
    let one = Netns::new("pgclR1");
    let two = Netns::new("pgclR2");
    // In each: 12 TCP listeners and 6 bound UDP sockets, on ports the kernel picks.
    let fill = |ns: &Netns| {
        ns.enter(|| {
            let tcp: Vec<TcpListener> = (0..12).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
            let udp: Vec<UdpSocket> = (0..6).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
            (tcp, udp)
        })
    };
    let (tcp1, udp1) = fill(&one);
    let (tcp2, udp2) = fill(&two);
    let scratch = Scratch::new("pgcl-report");
    let dir = scratch.0.join("run");
    let port = PG_PORT.to_string();
    let (_server, _) = crate::pg::serve(&one, &["--all-netns", "--pg", dir.to_str().unwrap(), "--pg-port", &port]);
    eventually(WAIT, || dir.join(format!(".s.PGSQL.{PG_PORT}")).exists().then_some(()));

    // What the test made, in the report's order: by namespace (inode),
    // protocol, port.
    let inode = |ns: &Netns| ns.inode();
    let mut made: Vec<(u64, String, String, u16)> = Vec::new();
    for (ns, tcp, udp) in [(&one, &tcp1, &udp1), (&two, &tcp2, &udp2)] {
        made.extend(
            tcp.iter().map(|l| (inode(ns), ns.name.clone(), "tcp".to_string(), l.local_addr().unwrap().port())),
        );
        made.extend(
            udp.iter().map(|s| (inode(ns), ns.name.clone(), "udp".to_string(), s.local_addr().unwrap().port())),
        );
    }
    made.sort();
    let ours = |netns_name: &str| netns_name == one.name || netns_name == two.name;
    // The rows of our namespaces, in the order given: netns,netns_name,protocol,local_addr,local_port.
    let key = |fields: &[&str]| -> Option<(u64, String, String, u16)> {
        ours(fields[1]).then(|| {
            (fields[0].parse().unwrap(), fields[1].to_string(), fields[2].to_string(), fields[4].parse().unwrap())
        })
    };
    let csv_rows = |args: &[&str]| -> Vec<(u64, String, String, u16)> {
        let o = Command::new(bin()).args(args).stdin(Stdio::null()).output().unwrap();
        let (out, err, ok) = output_of(o);
        assert!(ok, "{args:?}: {err}");
        out.lines().skip(1).filter_map(|l| key(&l.split(',').collect::<Vec<_>>())).collect()
    };
    let run = csv_rows(&["--all-netns", "--format", "csv", "run", "listeners"]);
    // The test's own (the server's listeners are in `one` too: left out).
    let only_made = |rows: Vec<(u64, String, String, u16)>| -> Vec<(u64, String, String, u16)> {
        rows.into_iter().filter(|r| made.contains(r)).collect()
    };
    assert_eq!(only_made(run.clone()), made, "sockql run listeners");
    let mut sorted = run.clone();
    sorted.sort();
    assert_eq!(run, sorted, "sockql run listeners is in its ORDER BY");
    let select = csv_rows(&["--all-netns", "--format", "csv", "SELECT * FROM report('listeners')"]);
    assert_eq!(select, run, "SELECT * FROM report('listeners') on the command line");
    let filtered =
        csv_rows(&["--all-netns", "--format", "csv", "SELECT * FROM report('listeners') WHERE local_port > 0"]);
    assert_eq!(filtered, run, "with a WHERE on top");
    let through_psql: Vec<(u64, String, String, u16)> = psql(&dir, "SELECT * FROM report('listeners')")
        .iter()
        .filter_map(|l| key(&l.split(',').collect::<Vec<_>>()))
        .collect();
    assert_eq!(through_psql, run, "through psql");
}

/// Flags that do not apply to `serve` (and to tables, schema,
/// completions, man) are refused: exit 2, one line naming the flag,
/// before anything starts or listens.
#[test]
fn serve_and_other_subcommands_refuse_flags_that_do_not_apply() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--format", "csv"], "--format does not apply to serve"),
        (&["--format", "csv", "serve"], "--format does not apply to serve"),
        (&["serve", "--wide", "--watch", "2s"], "does not apply to serve"),
        (&["--watch", "2s", "serve"], "--watch does not apply to serve"),
        (&["serve", "-p", "x=1"], "--param does not apply to serve"),
        (&["serve", "--history", "/nonexistent"], "--history does not apply to serve"),
        (&["serve", "--follow"], "--follow does not apply to serve"),
        (&["serve", "--no-header"], "--no-header does not apply to serve"),
        (&["serve", "-x", "on"], "--expanded does not apply to serve"),
        (&["serve", "--allow-files"], "--allow-files does not apply to serve"),
        (&["tables", "--watch", "2s"], "--watch does not apply to tables"),
        (&["schema", "sockets", "--param", "a=1"], "--param does not apply to schema"),
        (&["completions", "bash", "--timeout", "5s"], "--timeout does not apply to completions"),
        (&["man", "--all-netns"], "--all-netns does not apply to man"),
    ];
    for (args, said) in cases {
        // --listen on a port of its own: were serve to start, it would not
        // wait on anything but a signal; the timeout ends the test then.
        let mut full = args.to_vec();
        if args.contains(&"serve") {
            full.extend(["--listen", "127.0.0.1:0"]);
        }
        let o = Command::new("timeout").arg("10").arg(bin()).args(&full).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("sockql: error: ") && err.contains(said), "{args:?}: {err}");
    }
    // What does apply to serve is taken: it starts.
    let o = Command::new("timeout")
        .args([
            "2",
            bin(),
            "--all-netns",
            "--timeout",
            "5s",
            "--memory-limit",
            "64M",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(124), "ran until timeout stopped it: {err}");
    assert!(err.contains("/metrics"), "{err}");
}
