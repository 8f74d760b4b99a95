#!/usr/bin/env bash
# One scrape of `sockql serve` against node_exporter's tcpstat collector
# (Debian's prometheus-node-exporter) and against `ss -s` / `ss -tan | awk`
# run per scrape, side by side in one run, on the bench load (bench/load.sh:
# loopback only, in a namespace this script creates). Prints the "Serve"
# section of BENCHMARKS.md on stdout. Needs root.
#
#   BIN=target/release/sockql SIZES="10000 100000" RUNS=20 bash bench/serve.sh
#
# Latency: hyperfine over `curl` of /metrics (medians). CPU per scrape: for
# the servers, their own user+system time over RUNS more scrapes; for the
# ss pipelines, hyperfine's user+system of the command.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"10000 100000"}
RUNS=${RUNS:-20}
NS=sockql-bench-serve-$$
WORK=$(mktemp -d)
: "${BIN:?set BIN to a release build of sockql}"

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v curl >/dev/null || need+=(curl)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

. bench/load.sh
SQ= NE= SQ1=
stop_servers() {
    for p in $SQ $NE $SQ1; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    SQ= NE= SQ1=
}
cleanup() {
    # On failure, the servers' own words.
    [ -n "$SQ$NE$SQ1" ] && tail -n 5 "$WORK"/serve-*.log "$WORK"/ne-*.log >&2 2>/dev/null || true
    stop_servers
    stop_load
    rm -rf "$WORK"
}
trap cleanup EXIT

# CPU seconds (user + system) a process has used.
cpu() { python3 -c 'import sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/100)' "$1"; }
scrape() { $X curl -sf -o /dev/null "http://127.0.0.1:$1/metrics"; }
# Below the load's ephemeral range (1024-65535), which its clients fill.
SQ_PORT=977 NE_PORT=978 SQ1_PORT=979

for N in $SIZES; do
    start_load "$N"
    $X "$BIN" serve --listen 127.0.0.1:$SQ_PORT 2> "$WORK/serve-$N.log" &
    SQ=$!
    # The same question node_exporter answers: sockets per state (and
    # namespace and protocol), no process labels.
    $X "$BIN" serve --listen 127.0.0.1:$SQ1_PORT --metrics metric_sockets 2> "$WORK/serve1-$N.log" &
    SQ1=$!
    $X prometheus-node-exporter --collector.disable-defaults --collector.tcpstat \
        --web.listen-address=127.0.0.1:$NE_PORT 2> "$WORK/ne-$N.log" &
    NE=$!
    for _ in $(seq 300); do scrape $SQ_PORT && scrape $NE_PORT && scrape $SQ1_PORT && break; sleep 0.2; done
    # What each one says, once (the load is static: the counts must agree).
    $X curl -sf "http://127.0.0.1:$SQ_PORT/metrics" > "$WORK/sockql-$N.txt"
    $X curl -sf "http://127.0.0.1:$NE_PORT/metrics" > "$WORK/ne-$N.txt"
    $X ss -Htan > "$WORK/ss-$N.txt"

    hyperfine --warmup 3 --runs "$RUNS" --style none --export-json "$WORK/$N.json" \
        -n "sockql serve" "$X curl -sf -o /dev/null http://127.0.0.1:$SQ_PORT/metrics" \
        -n "sockql serve --metrics metric_sockets" "$X curl -sf -o /dev/null http://127.0.0.1:$SQ1_PORT/metrics" \
        -n "node_exporter tcpstat" "$X curl -sf -o /dev/null http://127.0.0.1:$NE_PORT/metrics" \
        -n "ss -s" "$X ss -s" \
        -n "ss -tan | awk" "$X sh -c 'ss -tan | awk \"NR>1{n[\\\$1]++} END{for (s in n) print s, n[s]}\"'" > /dev/null
    for who in SQ SQ1 NE; do
        pid=${!who}
        port_var=${who}_PORT
        c0=$(cpu "$pid")
        for _ in $(seq "$RUNS"); do scrape "${!port_var}"; done
        c1=$(cpu "$pid")
        python3 -c "print(($c1 - $c0) / $RUNS)" > "$WORK/cpu-$who-$N"
    done
    stop_servers
    stop_load
done

python3 - "$WORK" "$SIZES" "$RUNS" "$BIN" <<'PY'
import json, re, sys, platform, subprocess
work, sizes, runs, binary = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("## Serve\n")
print(f"`BIN={binary} SIZES=\"{' '.join(sizes)}\" RUNS={runs} bash bench/serve.sh` on {cpu_model}, "
      f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, kernel {platform.release()}. "
      "One scrape of `sockql serve` (every shipped metric report: "
      "sockets per state, CLOSE-WAIT, accept queues, SYN-RECV, ephemeral ports, retransmissions, conntrack, "
      "netlink drops, with process labels) against node_exporter's tcpstat collector (counts per TCP state only) "
      "and against running `ss -s` or `ss -tan | awk` per scrape, side by side on the bench load. "
      "Latency is hyperfine's median over curl (or the command); CPU is the server's own user+system time "
      "per scrape over the same number of further scrapes (hyperfine's mean user+system for the ss commands).\n")
print("| sockets | | latency (median) | vs node_exporter | CPU per scrape | vs node_exporter | series |")
print("|---:|---|---:|---:|---:|---:|---:|")
notes = []
NE_NAME = {"ESTAB": "established", "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv", "FIN-WAIT-1": "fin_wait1",
           "FIN-WAIT-2": "fin_wait2", "TIME-WAIT": "time_wait", "CLOSE": "close", "CLOSE-WAIT": "close_wait",
           "LAST-ACK": "last_ack", "LISTEN": "listen", "CLOSING": "closing"}
def same(sq, ne):
    """The per-state counts, TIME-WAIT apart: each scrape's own closed
    connection is one more TIME-WAIT socket for whoever counts next."""
    mine = {NE_NAME.get(k, k): v for k, v in sq.items()}
    theirs = {k: v for k, v in ne.items() if v}
    rest = lambda d: {k: v for k, v in d.items() if k != "time_wait"}
    if rest(mine) != rest(theirs):
        return f"they differ: {sq} against {ne}"
    tw = theirs.get("time_wait", 0) - mine.get("time_wait", 0)
    return "equal in every state" + (f" but TIME-WAIT ({tw:+d}: the scrape connections' own)" if tw else "")

for n in sizes:
    res = {r["command"]: r for r in json.load(open(f"{work}/{n}.json"))["results"]}
    sq_text = open(f"{work}/sockql-{n}.txt").read()
    ne_text = open(f"{work}/ne-{n}.txt").read()
    series = {
        "sockql serve": sum(1 for l in sq_text.splitlines() if l and not l.startswith("#")),
        "node_exporter tcpstat": sum(1 for l in ne_text.splitlines() if l.startswith("node_tcp_connection_states") and "_queued_bytes" not in l),
    }
    series["sockql serve --metrics metric_sockets"] = sum(1 for l in sq_text.splitlines() if l.startswith("sockql_sockets{"))
    cpu = {
        "sockql serve": float(open(f"{work}/cpu-SQ-{n}").read()),
        "sockql serve --metrics metric_sockets": float(open(f"{work}/cpu-SQ1-{n}").read()),
        "node_exporter tcpstat": float(open(f"{work}/cpu-NE-{n}").read()),
    }
    for name in ("ss -s", "ss -tan | awk"):
        cpu[name] = res[name]["user"] + res[name]["system"]
    base_lat = res["node_exporter tcpstat"]["median"]
    base_cpu = cpu["node_exporter tcpstat"]
    for name in ("sockql serve", "sockql serve --metrics metric_sockets", "node_exporter tcpstat", "ss -s", "ss -tan | awk"):
        lat = res[name]["median"]
        print(f"| {int(n):,} | {name} | {lat*1000:.1f} ms | {lat/base_lat:.2f}x | {cpu[name]*1000:.0f} ms | "
              f"{cpu[name]/base_cpu if base_cpu else float('nan'):.2f}x | {series.get(name, '')} |")
    # The counts agree: sockql's TCP sockets per state against node_exporter's.
    sq = {}
    for m in re.finditer(r'^sockql_sockets\{[^}]*protocol="tcp",state="([^"]+)"\} (\d+)', sq_text, re.M):
        sq[m.group(1)] = sq.get(m.group(1), 0) + int(m.group(2))
    ne = {}
    for m in re.finditer(r'^node_tcp_connection_states\{state="([^"]+)"\} (\S+)', ne_text, re.M):
        if not m.group(1).endswith("_queued_bytes"):  # byte totals, not states
            ne[m.group(1)] = int(float(m.group(2)))
    slowest = sorted(((float(v), q) for q, v in re.findall(r'^sockql_query_duration_seconds\{query="([^"]+)"\} (\S+)', sq_text, re.M)), reverse=True)[:3]
    rows = re.search(r'^sockql_table_rows\{table="sockets"\} (\d+)', sq_text, re.M)
    took = re.search(r'^sockql_scrape_duration_seconds (\S+)', sq_text, re.M)
    notes.append(f"- At {int(n):,}: sockql counts {sum(sq.values()):,} TCP sockets, node_exporter {sum(ne.values()):,} "
                 f"(per state: {same(sq, ne)}); "
                 f"sockql read {rows.group(1) if rows else '?'} socket rows once for all its queries and timed its own scrape at "
                 f"{float(took.group(1))*1000:.0f} ms (slowest queries: {', '.join(f'{q} {v*1000:.0f} ms' for v, q in slowest)}). "
                 if took else f"- At {n}: no scrape duration")
print()
print("\n".join(notes))
PY
