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
. bench/load.sh
cleanup() {
    stop_load
    rm -rf "$WORK"
}
trap cleanup EXIT
start_load "$N"
echo "load ready: $($X ss -Htuan | wc -l) sockets; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for sql in "SELECT count(*) FROM sockets" \
           "SELECT state, count(*) FROM sockets GROUP BY state" \
           "SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC" \
           "SELECT * FROM sockets WHERE state = 'CLOSE-WAIT'" \
           "SELECT state, local_port, pid, process FROM sockets" \
           "SELECT pid, count(*) FROM sockets GROUP BY 1" \
           "SELECT * FROM sockets" \
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
