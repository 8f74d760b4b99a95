#!/usr/bin/env bash
# Two sockql binaries side by side on the same load (bench/run.sh's, at one
# size), for before/after comparisons of a change: each query runs on both
# binaries in alternating rounds, so machine noise hits both alike. Needs
# root; loopback only, in a namespace it creates.
#
#   BASE=/tmp/sockql-before BIN=target/release/sockql bash bench/compare.sh
#   N=10000 RUNS=20 BASE=... BIN=... bash bench/compare.sh >> BENCHMARKS.md
#
# Run it while nothing else builds: on a busy machine two runs of one
# binary differ by tens of percent. BASE=BIN=the same binary shows the
# noise floor of the machine at that moment.
#
# BASE is the older binary, BIN the newer (as bench/packets.sh names them;
# BEFORE and AFTER are accepted too). Without BIN, a release build of this
# checkout is made (cargo build --release; how long: BENCHMARKS.md, Figures).
#
# The queries are bench/run.sh's standard set (floor, states, remotes,
# CLOSE-WAIT, owners, all columns, conntrack, start-up) plus two saved
# reports, then the servers' row paths: psql reading every row of
# `SELECT * FROM sockets` from `serve --pg` and through the ADBC Flight SQL
# driver from `serve --flight`, and a scrape of `/metrics` (needs psql,
# curl and, for the Flight row, the client venv .ci/run makes). Per query: both medians (ms), the median of the per-round
# ratios after/before and their quartiles, a verdict (see time_pair), both
# answers' row counts (they must agree) and both binaries' peak memory.
# Prints a markdown section on stdout; progress on stderr. Exits 1 if any
# answer differs.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-${BEFORE:-}}
BIN=${BIN:-${AFTER:-}}
: "${BASE:?set BASE to the older binary (BIN to the newer; default: a release build of this checkout)}"
if [ -z "$BIN" ]; then
    cargo build --release -q
    BIN=$(pwd)/target/release/sockql
fi
BASE=$(realpath "$BASE")
BIN=$(realpath "$BIN")
N=${N:-100000}
RUNS=${RUNS:-20}
NS=sockql-cmp-$$
WORK=$(mktemp -d)
. bench/load.sh
cleanup() {
    stop_load
    rm -rf "$WORK"
}
trap cleanup EXIT

# Peak resident memory (KiB) of one command, run in the namespace.
peak_kib() {
    $X python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

start_load "$N"
echo "bench/compare: load ready" >&2
echo "## Before and after: $N sockets, $(date -u +%Y-%m-%d)"
echo
echo "\`bench/compare.sh\` (N=$N, RUNS=$RUNS; $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)); $($X ss -Htuan | wc -l) sockets in the namespace."
echo "before: \`$BASE\` ($(stat -c %s "$BASE") bytes); after: \`$BIN\` ($(stat -c %s "$BIN") bytes)."
echo
echo "| query | before ms | after ms | after/before | quartiles | verdict | rows before/after | peak MiB before/after |"
echo "|---|---|---|---|---|---|---|---|"
differ=0
# One query, both binaries, in RUNS rounds after two warm-up rounds; each
# round runs before and after back to back (in alternating order), so a
# burst of machine noise hits both. Reported: both medians, the median of
# the per-round ratios after/before and its interquartile range. The
# verdict is "slower" only when three rounds in four were slower by more
# than 5% (the ratios' first quartile above 1.05), "faster" likewise.
time_pair() {
    python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time
runs, argv = int(sys.argv[1]), sys.argv[2:]
cut = argv.index("--")
before, after = argv[:cut], argv[cut + 1:]
def once(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t
tb, ta = [], []
for i in range(runs + 2):
    if i % 2:
        a, b = once(after), once(before)
    else:
        b, a = once(before), once(after)
    if i >= 2:
        tb.append(b)
        ta.append(a)
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]
ratios = [a / b for a, b in zip(ta, tb)]
print(q(tb, 0.5) * 1000, q(ta, 0.5) * 1000, q(ratios, 0.5), q(ratios, 0.25), q(ratios, 0.75))
PY
}
run_one() {
    local label=$1
    shift
    local args=("$@")
    local times rows_b rows_a mem_b mem_a
    times=$(time_pair $X "$BASE" --format csv "${args[@]}" -- $X "$BIN" --format csv "${args[@]}")
    rows_b=$($X "$BASE" --format csv --no-header "${args[@]}" 2>/dev/null | wc -l)
    rows_a=$($X "$BIN" --format csv --no-header "${args[@]}" 2>/dev/null | wc -l)
    mem_b=$(peak_kib "$BASE" --format csv "${args[@]}")
    mem_a=$(peak_kib "$BIN" --format csv "${args[@]}")
    # The load does not change while the script runs (the binaries run in
    # its namespace, which nothing else uses), so the answers' sizes agree.
    [ "$rows_b" = "$rows_a" ] || differ=1
    python3 - "$label" "$rows_b" "$rows_a" "$mem_b" "$mem_a" $times <<'PY'
import sys
label, rb, ra, mb, ma = sys.argv[1:6]
b, a, ratio, q1, q3 = map(float, sys.argv[6:11])
verdict = "slower" if q1 > 1.05 else "faster" if q3 < 0.95 else "same"
rows = rb if rb == ra else f"**{rb} / {ra}**"
print(f"| `{label}` | {b:.1f} | {a:.1f} | {ratio:.2f} | {q1:.2f}–{q3:.2f} | {verdict} | {rows} | {int(mb) / 1024:.0f} / {int(ma) / 1024:.0f} |")
PY
}
for sql in "SELECT count(*) FROM sockets" \
           "SELECT state, count(*) FROM sockets GROUP BY state" \
           "SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC" \
           "SELECT * FROM sockets WHERE state = 'CLOSE-WAIT'" \
           "SELECT state, local_addr, local_port, remote_addr, remote_port, pid, process FROM sockets" \
           "SELECT pid, count(*) FROM sockets GROUP BY 1" \
           "SELECT pid, count(*) FROM socket_owners GROUP BY 1" \
           "SELECT * FROM sockets" \
           "SELECT orig_src, count(*) FROM conntrack GROUP BY 1" \
           "SELECT 1"; do
    echo "bench/compare: $sql" >&2
    run_one "$sql" "$sql"
done
for report in states close_wait; do
    echo "bench/compare: run $report" >&2
    run_one "run $report" run "$report"
done

# The servers' row paths, which the command line does not take: every row
# of `SELECT * FROM sockets` encoded for a PostgreSQL client (psql over
# the unix socket), and one Prometheus scrape of the shipped metric
# reports. Each binary serves on its own socket directory and port, in the
# load's namespace; the clients are timed as the queries above are. Peak
# memory is the command line's only ("–").
SERVERS=
stop_servers() {
    for p in $SERVERS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    SERVERS=
}
cleanup() {
    stop_servers
    stop_load
    rm -rf "$WORK"
}
# Below the load's ephemeral range (1024-65535), which its clients fill.
declare -A HTTP=([before]=975 [after]=976) FLIGHT=([before]=973 [after]=974)
# The ADBC Flight SQL client (tests/it/flight.rs's venv, made by .ci/run);
# without it the Flight row is left out.
FLIGHT_PY=${FLIGHT_PY:-/var/cache/sockql/pyclients/bin/python}
( umask 077 && echo bench > "$WORK/flight-password" )
for side in before after; do
    bin=$BASE
    [ "$side" = after ] && bin=$BIN
    mkdir -m 755 "$WORK/pg-$side"
    $X "$bin" serve --listen "127.0.0.1:${HTTP[$side]}" --pg "$WORK/pg-$side" --pg-port 5439 \
        --flight "127.0.0.1:${FLIGHT[$side]}" --flight-password-file "$WORK/flight-password" 2> "$WORK/serve-$side.log" &
    SERVERS="$SERVERS $!"
done
psql_cmd() { echo "$X psql -X -q -A -t -h $WORK/pg-$1 -p 5439 -U root -d sockql -c"; }
# Prints the number of rows, one per line of output as psql's -A -t does
# (so serve_one counts them alike).
cat > "$WORK/flight.py" <<'PY'
import sys, warnings
warnings.filterwarnings("ignore")  # ADBC: "Cannot disable autocommit"
import adbc_driver_flightsql.dbapi as flight
from adbc_driver_manager import DatabaseOptions
conn = flight.connect(f"grpc://127.0.0.1:{sys.argv[1]}", db_kwargs={
    DatabaseOptions.USERNAME.value: "ops", DatabaseOptions.PASSWORD.value: "bench"})
cur = conn.cursor()
cur.execute(sys.argv[2])
sys.stdout.write("\n" * cur.fetch_arrow_table().num_rows)
PY
flight_cmd() { echo "$X $FLIGHT_PY $WORK/flight.py ${FLIGHT[$1]}"; }
scrape_cmd() { echo "$X curl -sf -o /dev/null http://127.0.0.1:${HTTP[$1]}/metrics"; }
# Ready when each answers; psql first and scrapes after it: a scrape's
# TCP connection leaves a TIME-WAIT socket, which psql's rows would count.
ready() {
    for _ in $(seq 300); do
        "$@" before > /dev/null 2>&1 && "$@" after > /dev/null 2>&1 && return
        sleep 0.2
    done
    echo "bench/compare: the servers did not answer" >&2
    exit 1
}
psql_up() { $(psql_cmd "$1") "SELECT 1"; }
scrape_up() { $(scrape_cmd "$1"); }
serve_one() {
    local label=$1 sql=$2 times rows_b rows_a
    if [ -n "$sql" ]; then
        local client=${3:-psql_cmd}
        times=$(time_pair $($client before) "$sql" -- $($client after) "$sql")
        rows_b=$($($client before) "$sql" | wc -l)
        rows_a=$($($client after) "$sql" | wc -l)
    else
        times=$(time_pair $(scrape_cmd before) -- $(scrape_cmd after))
        rows_b=$($X curl -sf "http://127.0.0.1:${HTTP[before]}/metrics" | grep -vc '^#')
        rows_a=$($X curl -sf "http://127.0.0.1:${HTTP[after]}/metrics" | grep -vc '^#')
    fi
    [ "$rows_b" = "$rows_a" ] || differ=1
    python3 - "$label" "$rows_b" "$rows_a" $times <<'PY'
import sys
label, rb, ra = sys.argv[1:4]
b, a, ratio, q1, q3 = map(float, sys.argv[4:9])
verdict = "slower" if q1 > 1.05 else "faster" if q3 < 0.95 else "same"
rows = rb if rb == ra else f"**{rb} / {ra}**"
print(f"| {label} | {b:.1f} | {a:.1f} | {ratio:.2f} | {q1:.2f}–{q3:.2f} | {verdict} | {rows} | – |")
PY
}
echo "bench/compare: serve --pg, psql SELECT * FROM sockets" >&2
ready psql_up
serve_one "psql: \`SELECT * FROM sockets\`" "SELECT * FROM sockets"
if [ -x "$FLIGHT_PY" ]; then
    echo "bench/compare: serve --flight, ADBC SELECT * FROM sockets" >&2
    flight_up() { $(flight_cmd "$1") "SELECT 1"; }
    ready flight_up
    # gRPC is TCP: each client's connection, and the TIME-WAIT it leaves,
    # would be rows; the ports of the two Flight servers are left out.
    serve_one "ADBC Flight SQL: \`SELECT * FROM sockets\` (but the Flight ports)" \
        "SELECT * FROM sockets WHERE local_port NOT IN (973, 974) AND remote_port NOT IN (973, 974)" flight_cmd
fi
echo "bench/compare: serve, one scrape of /metrics" >&2
ready scrape_up
serve_one "one scrape of \`/metrics\` (series)" ""
stop_servers
if [ "$differ" = 1 ]; then
    echo
    echo "**The two binaries gave different row counts (in bold above).**"
    exit 1
fi
