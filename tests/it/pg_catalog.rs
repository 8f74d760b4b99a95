//! The catalog's types as PostgreSQL clients read them from `sockql serve
//! --pg`: information_schema.columns (psql, psycopg), pg_attribute against
//! the RowDescription the same columns arrive with, pgcli's completion
//! (its own PGExecute, CompletionRefresher and PGCompleter) and
//! harlequin's catalog (harlequin-postgres' adapter). The columns come from
//! the command line's Arrow schema; the PostgreSQL names are derived from
//! it through the table below, which is the mapping GUIDE.md documents.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{eventually, query, Scratch, WAIT};
use crate::netns::Netns;
use crate::serve_attack::{metric, Queries, Served};

/// The venv with pgcli, harlequin-postgres and psycopg 3.
const PYCLIENTS: &str = "/var/cache/sockql/pyclients/bin/python";

/// What a PostgreSQL client is told of an Arrow column type:
/// (information_schema data_type, udt_name = pg_type.typname, type oid,
/// harlequin's short label for that data_type).
fn pg_of(arrow: &str) -> (&'static str, &'static str, u32, &'static str) {
    match arrow {
        "Boolean" => ("boolean", "bool", 16, "t/f"),
        "Int8" | "Int16" | "UInt8" => ("smallint", "int2", 21, "#"),
        "Int32" | "UInt16" => ("integer", "int4", 23, "#"),
        "Int64" | "UInt32" => ("bigint", "int8", 20, "##"),
        "UInt64" => ("numeric", "numeric", 1700, "#.#"),
        "Float32" => ("real", "float4", 700, "#.#"),
        "Float64" => ("double precision", "float8", 701, "#.#"),
        "Utf8" | "LargeUtf8" | "Utf8View" => ("text", "text", 25, "s"),
        "Binary" | "LargeBinary" | "BinaryView" => ("bytea", "bytea", 17, "b"),
        a if a.starts_with("Timestamp(") && a.contains('"') => ("timestamp with time zone", "timestamptz", 1184, "ts"),
        a if a.starts_with("Timestamp(") => ("timestamp without time zone", "timestamp", 1114, "ts"),
        other => panic!("the test has no PostgreSQL type for Arrow {other}: add it"),
    }
}

/// format_type(atttypid, atttypmod) of an Arrow column type: UInt64 holds
/// 20 digits, sent as numeric(20,0).
fn formatted(arrow: &str) -> String {
    match arrow {
        "UInt64" => "numeric(20,0)".into(),
        other => pg_of(other).0.into(),
    }
}

/// (column, Arrow type, nullable) of `table`, in order, as the CLI has them.
fn cli_columns(table: &str) -> Vec<(String, String, bool)> {
    query(&format!("DESCRIBE {table}"))
        .iter()
        .map(|r| {
            (
                r["column_name"].as_str().unwrap().to_string(),
                r["data_type"].as_str().unwrap().to_string(),
                r["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The public tables the CLI lists, sorted.
fn cli_tables() -> Vec<String> {
    let mut t: Vec<String> = query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        .iter()
        .map(|r| r["table_name"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

/// serve --pg on a unix socket in a scratch directory, in a namespace.
struct Server {
    _served: Served,
    _queries: Queries,
    _scratch: Scratch,
    _ns: Netns,
    dir: std::path::PathBuf,
}

const PORT: &str = "5432";

fn start(tag: &str) -> Server {
    let ns = Netns::new(tag);
    let scratch = Scratch::new(tag);
    let dir = scratch.0.join("run");
    let queries = Queries::new(
        &format!("{tag}-q"),
        &[("metric_one", &metric("metric_one", "sockql_test_one", "SELECT 'x' AS k, 1 AS v"))],
    );
    let served = Served::start(&ns, &queries, &["--pg", dir.to_str().unwrap(), "--pg-port", PORT]);
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    eventually(WAIT, || socket.exists().then_some(()));
    Server { _served: served, _queries: queries, _scratch: scratch, _ns: ns, dir }
}

/// psql's unaligned rows for `sql`, or a panic with its error.
fn psql(dir: &Path, sql: &str) -> Vec<String> {
    let o = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            dir.to_str().unwrap(),
            "-p",
            PORT,
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
    let (out, err, ok) = crate::common::output_of(o);
    assert!(ok, "psql -c {sql}: {err}");
    out.lines().map(str::to_string).collect()
}

/// Run `script` with `python` and the socket directory and port as
/// argv[1..]; its stdout is one JSON value.
fn python(python: &str, script: &str, dir: &Path) -> Value {
    let o =
        Command::new(python).args(["-c", script, dir.to_str().unwrap(), PORT]).stdin(Stdio::null()).output().unwrap();
    let (out, err, ok) = crate::common::output_of(o);
    assert!(ok, "{python} script failed: {err}\n{script}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

#[test]
fn information_schema_and_pg_attribute_name_the_types_clients_receive() {
    let server = start("pgcat-types");
    let columns = cli_columns("sockets");
    assert!(columns.len() > 50, "{columns:?}");

    // psql: PostgreSQL's information_schema.columns for each column, in order.
    let rows = psql(
        &server.dir,
        "SELECT column_name, ordinal_position, data_type, udt_name, is_nullable, character_maximum_length IS NULL, udt_schema \
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'sockets' ORDER BY ordinal_position",
    );
    let expected: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, arrow, nullable))| {
            let (data_type, udt, _, _) = pg_of(arrow);
            format!("{name}|{}|{data_type}|{udt}|{}|t|pg_catalog", i + 1, if *nullable { "YES" } else { "NO" })
        })
        .collect();
    assert_eq!(rows, expected);

    // psycopg: every column of every public table, against the CLI's own
    // information_schema (Arrow types) through the same table.
    let cli: BTreeMap<(String, String), String> = query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .iter()
    .map(|r| {
        (
            (r["table_name"].as_str().unwrap().into(), r["column_name"].as_str().unwrap().into()),
            r["data_type"].as_str().unwrap().into(),
        )
    })
    .collect();
    let script = r#"
import sys, json, psycopg
conn = psycopg.connect(host=sys.argv[1], port=sys.argv[2], user="root", dbname="sockql", autocommit=True)
cur = conn.cursor()
cur.execute("SELECT table_name, column_name, data_type, udt_name FROM information_schema.columns WHERE table_schema = 'public'")
every = [list(r) for r in cur.fetchall()]
cur.execute("SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE n.nspname = 'public' AND c.relname = 'sockets' ORDER BY a.attnum")
# atttypid arrives as regtype (datafusion-pg-catalog's kind for it),
# which psycopg leaves as text: compared as the number it is.
attrs = [[r[0], int(r[1]), int(r[2]), r[3], r[4], r[5]] for r in cur.fetchall()]
cur.execute("SELECT * FROM sockets LIMIT 0")
described = [[c.name, c.type_code, c.precision, c.scale] for c in cur.description]
print(json.dumps({"every": every, "attrs": attrs, "described": described}))
"#;
    let got = python("/usr/bin/python3", script, &server.dir);
    let every: BTreeMap<(String, String), (String, String)> = got["every"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()),
                (r[2].as_str().unwrap().into(), r[3].as_str().unwrap().into()),
            )
        })
        .collect();
    let derived: BTreeMap<(String, String), (String, String)> =
        cli.iter().map(|(k, arrow)| (k.clone(), (pg_of(arrow).0.to_string(), pg_of(arrow).1.to_string()))).collect();
    assert_eq!(every, derived);

    // pg_attribute: the oid, modifier and pg_type name each column arrives
    // with, in RowDescription's order.
    let attrs = got["attrs"].as_array().unwrap();
    let described = got["described"].as_array().unwrap();
    assert_eq!(attrs.len(), columns.len());
    assert_eq!(described.len(), columns.len());
    for (((name, arrow, nullable), attr), desc) in columns.iter().zip(attrs).zip(described) {
        let (_, udt, oid, _) = pg_of(arrow);
        assert_eq!(attr[0], name.as_str());
        assert_eq!(desc[0], name.as_str());
        assert_eq!(attr[1], desc[1], "{name}: atttypid is not the oid RowDescription carries");
        assert_eq!(attr[1], oid, "{name} ({arrow})");
        assert_eq!(attr[3], formatted(arrow).as_str(), "{name}: format_type");
        assert_eq!(attr[4], udt, "{name}: pg_type.typname");
        assert_eq!(attr[5], !nullable, "{name}: attnotnull");
        if arrow == "UInt64" {
            // The modifier on the wire is numeric(20,0)'s, as pg_attribute says.
            assert_eq!((desc[2].clone(), desc[3].clone()), (Value::from(20), Value::from(0)), "{name}");
            assert_eq!(attr[2], 1_310_724, "{name}: atttypmod of numeric(20,0)");
        } else {
            assert_eq!(attr[2], -1, "{name}: atttypmod");
        }
    }
}

#[test]
fn pgcli_completes_tables_and_columns_from_the_catalog() {
    let server = start("pgcat-pgcli");
    let script = r#"
import sys, json, threading
from pgcli.pgexecute import PGExecute
from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgcompleter import PGCompleter
from prompt_toolkit.document import Document
ex = PGExecute(database="sockql", user="root", host=sys.argv[1], port=sys.argv[2])
# Each refresher as pgcli's background refresh runs them, in its order;
# an error in any of them is what leaves pgcli at "Refreshing completions".
completer = PGCompleter(smart_completion=True, settings={})
ran = []
for name, refresher in CompletionRefresher.refreshers.items():
    refresher(completer, ex)
    ran.append(name)
# casing only runs with a casing file: its query, run as pgcli runs it.
casing = list(ex.casing())
# The refresh itself, on pgcli's thread, must call back with a completer.
done = threading.Event()
got = []
CompletionRefresher().refresh(ex, None, lambda c: (got.append(c), done.set()), settings={"single_connection": True})
done.wait(120)
def complete(text, at=None):
    at = len(text) if at is None else at
    doc = Document(text=text, cursor_position=at)
    return [[c.text, c.display_meta_text] for c in got[0].get_completions(doc, None)]
meta = got[0].dbmetadata["tables"].get("public", {})
print(json.dumps({
    "ran": ran, "casing": casing, "refreshed": bool(got),
    "from": complete("SELECT * FROM "),
    "columns": complete("SELECT  FROM sockets", 7),
    "types": {c.strip('"'): m.datatype for c, m in meta.get("sockets", {}).items()},
}))
"#;
    let got = python(PYCLIENTS, script, &server.dir);
    let ran: Vec<&str> = got["ran"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ran, ["schemata", "tables", "views", "types", "databases", "casing", "functions"]);
    assert_eq!(got["refreshed"], true, "pgcli's refresh did not finish");
    // sockql has no SQL functions of its own: no words to learn casing from.
    assert_eq!(got["casing"], serde_json::json!([]));

    let offered = |key: &str, kind: &str| -> Vec<String> {
        // pgcli quotes a name that is a keyword ("family").
        let mut v: Vec<String> = got[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c[1] == kind)
            .map(|c| c[0].as_str().unwrap().trim_matches('"').to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(offered("from", "table"), cli_tables());
    let columns = cli_columns("sockets");
    let mut names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    names.sort();
    assert_eq!(offered("columns", "column"), names);
    // The types pgcli learnt (att.atttypid::regtype::text) are PostgreSQL's names.
    for (name, arrow, _) in &columns {
        assert_eq!(got["types"][name], pg_of(arrow).0, "{name} ({arrow})");
    }
}

#[test]
fn harlequin_catalog_shows_postgresql_types() {
    let server = start("pgcat-harlequin");
    let script = r#"
import sys, json
from harlequin_postgres.adapter import HarlequinPostgresConnection
conn = HarlequinPostgresConnection([f"host={sys.argv[1]} port={sys.argv[2]} user=root dbname=sockql"], options={})
catalog = conn.get_catalog()
out = {"relations": [], "columns": []}
for db in catalog.items:
    for schema in db.children or []:
        if schema.label != "public":
            continue
        for rel in schema.children or []:
            out["relations"].append(rel.label)
            if rel.label == "sockets":
                out["columns"] = [[c.label, c.type_label, c.type_name] for c in rel.fetch_children()]
conn.close()
print(json.dumps(out))
"#;
    let got = python(PYCLIENTS, script, &server.dir);
    let mut relations: Vec<String> =
        got["relations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    relations.sort();
    assert_eq!(relations, cli_tables());
    let expected: Vec<Value> = cli_columns("sockets")
        .iter()
        .map(|(name, arrow, _)| {
            let (data_type, _, _, label) = pg_of(arrow);
            serde_json::json!([name, label, data_type])
        })
        .collect();
    assert_eq!(got["columns"].as_array().unwrap(), &expected);
}
