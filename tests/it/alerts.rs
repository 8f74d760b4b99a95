//! contrib/prometheus (alerting and recording rules) and contrib/grafana
//! (the dashboard) against a real `sockql serve`: promtool checks and
//! unit-tests the rules, every metric name the rules and the dashboard
//! use is a family a real scrape carries, and a real Prometheus loading
//! the rules evaluates every one of them without error and raises
//! SockqlAcceptQueueFull for a listener whose accept queue the test filled.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{bin, eventually, listener, my_comm, port_of};
use crate::conntrack::NftExt;
use crate::events::spawn_in;
use crate::netns::Netns;
use crate::serve::{get, metrics_port};

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), keywords, label names (inside `{}` or a
/// `by`/`without`/`on`/`ignoring`/`group_*` list), strings, durations
/// (inside `[]`, after `offset`) or numbers. Grafana's `label_values(M, L)`
/// names M only.
pub fn promql_names(expr: &str) -> Vec<String> {
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const WORDS: [&str; 9] = ["and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"];
    // Aggregations may be followed by `by (...)` before their `(`.
    const AGGREGATIONS: [&str; 14] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Skip a quoted string starting at `i`; the index after it.
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            if chars[i] == '\\' && quote != '`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    };
    // Skip a bracketed part (`{...}`, `[...]`, a grouping's `(...)`),
    // strings inside included; the index after its closing bracket.
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '$' {
            // a Grafana variable outside a selector ($__rate_interval)
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // a number or a duration (5m, 1e3, 0x1f)
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if chars.get(after) == Some(&'(') {
                    i = skip_group(after, '(', ')');
                }
            } else if word == "label_values" && chars.get(after) == Some(&'(') {
                // label_values(METRIC, label) or label_values(label)
                let end = skip_group(after, '(', ')');
                let inner: String = chars[after + 1..end.saturating_sub(1)].iter().collect();
                if let Some((metric, _)) = inner.split_once(',') {
                    names.extend(promql_names(metric));
                }
                i = end;
            } else if chars.get(after) == Some(&'(')
                || WORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
            {
                // a function or aggregation, or a keyword
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr:` and `record:` values of a Prometheus rules file (plain,
/// quoted, or a `|`/`>` block scalar), without a YAML parser: the files
/// are ours and use these forms only; an `expr:` that yields nothing fails.
pub fn rules_exprs(yaml: &str) -> (Vec<String>, Vec<String>) {
    let (mut exprs, mut records) = (Vec::new(), Vec::new());
    let lines: Vec<&str> = yaml.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        i += 1;
        let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_string();
        if let Some(v) = trimmed.strip_prefix("record:") {
            records.push(unquote(v));
        } else if let Some(v) = trimmed.strip_prefix("expr:") {
            let v = v.trim();
            let expr = if v.starts_with('|') || v.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len()
                    && (lines[i].trim().is_empty() || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push(lines[i].trim());
                    i += 1;
                }
                block.join("\n")
            } else {
                unquote(v)
            };
            assert!(!expr.trim().is_empty(), "an empty expr before line {i}");
            exprs.push(expr);
        }
    }
    (exprs, records)
}

/// Every `expr` of the dashboard's targets (rows' panels too), and its
/// template variables' queries.
fn dashboard_exprs(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] == "query" {
            out.push(var["definition"].as_str().expect("a query variable's definition").to_string());
        }
    }
    out
}

/// Sample names of a Prometheus text exposition, from its `# TYPE` lines
/// (in the text format a counter's TYPE names its `_total` samples).
fn families(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn promtool(dir: &Path, args: &[&str]) {
    let o = Command::new("promtool").args(args).current_dir(dir).output().expect("run promtool");
    assert!(
        o.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn promql_names_are_the_selected_metrics_only() {
    let e = r#"sum by (instance, job) (rate(a_total{x="b{c}",y=~'d|e'}[5m] offset 1h)) / on(instance) group_left(le) (b > 0.9e1)
      and ignoring (z) c:recorded:ratio unless topk(10, d{instance=~"$instance"}) or e[$__rate_interval] > bool 5"#;
    assert_eq!(promql_names(e), ["a_total", "b", "c:recorded:ratio", "d", "e"]);
    assert_eq!(promql_names("label_values(sockql_table_rows, table)"), ["sockql_table_rows"]);
    assert_eq!(promql_names("up{job=\"sockql\"} == 0"), ["up"]);
    let (exprs, records) = rules_exprs(
        "groups:\n  - name: g\n    rules:\n      - record: r:x:sum\n        expr: sum(x)\n      - alert: A\n        expr: |\n          x > 1\n          and y\n        for: 1m\n      - alert: B\n        expr: \"z == 0\"\n",
    );
    assert_eq!(records, ["r:x:sum"]);
    assert_eq!(exprs, ["sum(x)", "x > 1\nand y", "z == 0"]);
}

#[test]
fn prometheus_rules_and_dashboard_use_families_serve_exports() {
    let rules_dir = contrib().join("prometheus");
    let rule_files = ["recording.yml", "alerts.yml"];
    promtool(&rules_dir, &["check", "rules", rule_files[0], rule_files[1]]);
    let tests_dir = rules_dir.join("tests");
    let mut unit_tests: Vec<String> = std::fs::read_dir(&tests_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    unit_tests.sort();
    assert!(!unit_tests.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(unit_tests.iter().map(String::as_str));
    promtool(&tests_dir, &args);

    // What the rules and the dashboard name.
    let (mut exprs, mut recorded) = (Vec::new(), BTreeSet::new());
    for f in rule_files {
        let (e, r) = rules_exprs(&std::fs::read_to_string(rules_dir.join(f)).unwrap());
        exprs.extend(e);
        recorded.extend(r);
    }
    let alerts = std::fs::read_to_string(rules_dir.join("alerts.yml")).unwrap();
    let alert_count = alerts.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(contrib().join("grafana/sockql.json")).unwrap())
        .expect("valid JSON");
    let dash_exprs = dashboard_exprs(&dash);
    assert!(dash_exprs.len() >= 20, "{dash_exprs:?}");
    let mut used = BTreeSet::new();
    for e in exprs.iter().chain(&dash_exprs) {
        let names = promql_names(e);
        assert!(!names.is_empty(), "no metric in {e}");
        used.extend(names);
    }
    // The dashboard's data source is a variable, and every query uses it.
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"));
    let mut panels = 0;
    for p in dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        panels += 1;
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
        }
    }
    assert!(panels >= 15, "{panels} panels");
    // Every dashboard expression parses as PromQL (Grafana's variables
    // put in as Grafana would): promtool checks them as recording rules.
    let tmp = std::env::temp_dir().join(format!("sockql-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut as_rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dash_exprs.iter().filter(|e| !e.starts_with("label_values(")).enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$instance", ".*");
        as_rules.push_str(&format!(
            "      - record: dashboard:expr:{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    std::fs::write(tmp.join("dashboard.yml"), as_rules).unwrap();
    promtool(&tmp, &["check", "rules", "dashboard.yml"]);

    // A real serve, in a namespace of the test's own, with state the test
    // made: a listener of backlog 1 with 2 connections waiting (full), and
    // 3 CLOSE-WAIT sockets this process holds.
    let ns = Netns::new("alerts");
    let (full, waiting, held, closing) = ns.enter(|| {
        let full = listener("127.0.0.1:0", 1);
        let waiting: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(full.local_addr().unwrap()).unwrap()).collect();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            held.push(l.accept().unwrap().0);
            drop(c);
        }
        (full, waiting, held, l)
    });
    let full_port = port_of(&full);
    eventually(crate::common::WAIT, || {
        (ns.exec_ok("ss", &["-Htan", "state", "close-wait"]).lines().count() == 3).then_some(())
    });
    // Events for the counters over streams: a family appears with the
    // first window that heard its stream. A SYN that nft drops is resent
    // (tcp_retransmit_skb); a datagram to a closed port is dropped
    // (skb:kfree_skb, NO_SOCKET).
    ns.nft(
        "table inet sockql_alerts {\n chain input {\n type filter hook input priority 0;\n tcp dport 9 drop\n }\n}\n",
    );
    let syn = ns.enter(|| {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&"127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap().into());
        s
    });
    let mut server = spawn_in(&ns, &[bin(), "serve", "--listen", "127.0.0.1:0"]);
    let mut line = String::new();
    BufReader::new(server.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port = metrics_port(&line);
    let body = eventually(Duration::from_secs(20), || {
        ns.enter(|| {
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = closed.local_addr().unwrap();
            drop(closed);
            u.send_to(b"dropped", to).unwrap();
        });
        let (status, body) = get(&ns, port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let f = families(&body);
        (f.contains("sockql_packet_drops_total") && f.contains("sockql_tcp_retransmit_events_total")).then_some(body)
    });
    let exported = families(&body);

    let missing: Vec<&String> =
        used.iter().filter(|n| !recorded.contains(*n) && n.as_str() != "up" && !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named by the rules or the dashboard but not in a scrape: {missing:?}\nscrape:\n{body}"
    );
    // Recorded names are used only as recorded (none is a typo of a family).
    assert!(recorded.iter().all(|r| r.starts_with("sockql:")), "{recorded:?}");
    // The families the alerts are about, each named somewhere.
    for family in [
        "sockql_close_wait_sockets",
        "sockql_accept_queue_queued",
        "sockql_syn_recv_sockets",
        "sockql_ephemeral_ports_used",
        "sockql_conntrack_entries",
        "sockql_conntrack_drops_total",
        "sockql_retransmitting_timing_out",
        "sockql_tcp_retransmit_events_total",
        "sockql_netlink_lost_events_total",
        "sockql_packet_drops_total",
        "sockql_scrape_errors_total",
        "sockql_stream_up",
        "sockql_query_up",
    ] {
        assert!(used.contains(family), "{family} is not alerted on or shown");
    }
    // The series the test made, with the values it made.
    let pid = std::process::id();
    let labels =
        format!("local_addr=\"127.0.0.1\",local_port=\"{full_port}\",pid=\"{pid}\",process=\"{}\"}}", my_comm());
    let sample = |family: &str, labels: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{family} {labels}: {body}"))
            .to_string()
    };
    assert_eq!(sample("sockql_accept_queue_queued", &labels), "2");
    assert_eq!(sample("sockql_accept_queue_max", &labels), "1");
    let mine = format!("pid=\"{pid}\",process=\"{}\"}}", my_comm());
    assert_eq!(sample("sockql_close_wait_sockets", &mine), "3");

    // A real Prometheus with the rules, scraping serve every second and
    // evaluating every second.
    let dir = tmp.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: sockql\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            rules_dir.join(rule_files[0]).display(),
            rules_dir.join(rule_files[1]).display()
        ),
    )
    .unwrap();
    let web = crate::serve::free_port(&ns);
    let _prometheus = spawn_in(
        &ns,
        &[
            "prometheus",
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{web}"),
        ],
    );
    // Through curl: Prometheus answers large bodies chunked.
    let api = |path: &str| -> Option<Value> {
        let (body, _, ok) = ns.exec("curl", &["-sf", &format!("http://127.0.0.1:{web}{path}")]);
        ok.then(|| serde_json::from_str(&body).ok()).flatten()
    };
    // Every rule evaluated, none with an error.
    let rules = eventually(Duration::from_secs(60), || {
        let v = api("/api/v1/rules")?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")));
        (evaluated && rules.len() == recorded.len() + alert_count).then_some(rules)
    });
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
    }
    // The full accept queue: SockqlAcceptQueueFull for this listener
    // (pending: the rule waits 2 minutes before it fires).
    let port_label = full_port.to_string();
    let alert = eventually(Duration::from_secs(60), || {
        let v = api("/api/v1/alerts")?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == "SockqlAcceptQueueFull" && a["labels"]["local_port"] == port_label.as_str()
            })
            .cloned()
    });
    assert_eq!(alert["labels"]["pid"], pid.to_string(), "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(alert["state"] == "pending" || alert["state"] == "firing", "{alert}");
    assert_eq!(alert["value"].as_str().and_then(|v| v.parse::<f64>().ok()), Some(2.0), "queued 2 of 1: {alert}");
    // No other listener in the namespace is alerted on (serve's own
    // queue is empty).
    let v = api("/api/v1/alerts").unwrap();
    let queue_alerts = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "SockqlAcceptQueueFull")
        .count();
    assert_eq!(queue_alerts, 1, "{v}");
    drop((full, waiting, held, closing, syn));
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
}
