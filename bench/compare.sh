#!/usr/bin/env bash
# Two sockql binaries side by side on the same load (bench/run.sh's, at one
# size), for before/after comparisons of a change: hyperfine runs the two
# commands of each query alternately in one run, so machine noise hits
# both alike. Needs root; loopback only, in a namespace it creates.
#
#   BEFORE=/tmp/sockql-before AFTER=target/release/sockql bash bench/compare.sh
#   N=10000 RUNS=20 ... bash bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?set BEFORE to the old binary}" "${AFTER:?set AFTER to the new binary}"
N=${N:-100000}
RUNS=${RUNS:-20}
NS=sockql-cmp-$$
WORK=$(mktemp -d)
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
LOADGEN=
cleanup() {
    [ -n "$LOADGEN" ] && kill "$LOADGEN" 2>/dev/null && wait "$LOADGEN" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
X="ip netns exec $NS"
ip netns add "$NS"
$X ip link set lo up
$X sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_max_tw_buckets=262144 net.core.somaxconn=65535
$X python3 bench/loadgen.py --established $((N / 2)) --time-wait $((N / 5)) --close-wait $((N / 50)) \
    --procs $(( N / 200 > 5 ? N / 200 : 5 )) --conntrack "$N" > "$WORK/ready" &
LOADGEN=$!
for _ in $(seq 600); do grep -q ready "$WORK/ready" 2>/dev/null && break; sleep 0.5; done
grep -q ready "$WORK/ready" || { echo "load generator did not get ready" >&2; exit 1; }
echo "load ready: $($X ss -Htuan | wc -l) sockets; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for sql in "SELECT count(*) FROM sockets" \
           "SELECT state, count(*) FROM sockets GROUP BY state" \
           "SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC" \
           "SELECT * FROM sockets WHERE state = 'CLOSE-WAIT'" \
           "SELECT state, local_port, pid, process FROM sockets" \
           "SELECT orig_src, count(*) FROM conntrack GROUP BY 1" \
           "SELECT 1"; do
    hyperfine --warmup 2 --runs "$RUNS" --style none --export-json "$WORK/r.json" \
        -n before "$X $BEFORE --format csv \"$sql\" > /dev/null" \
        -n after "$X $AFTER --format csv \"$sql\" > /dev/null" >/dev/null
    python3 - "$WORK/r.json" "$sql" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, a = r["before"]["median"] * 1000, r["after"]["median"] * 1000
print(f"| `{sys.argv[2]}` | {b:.1f} | {a:.1f} | {a / b:.2f} |")
PY
done
