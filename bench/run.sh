#!/usr/bin/env bash
# sockql against the tools it replaces, side by side in one run, on a
# reproducible load built inside a network namespace this script creates
# (loopback only). Writes BENCHMARKS.md. Needs root.
#
#   bash bench/run.sh                    # sizes 1000 10000 100000 1000000
#   SIZES="1000 10000" bash bench/run.sh # a quicker run
#
# The kernel's own dump time is measured by bench/dumpfloor.c, a minimal
# reader that receives and discards the dump sockql asks for.
#
# At size N (≈ sockets): N/2 established connections, N/5 TIME-WAIT,
# N/50 CLOSE-WAIT, N/200 processes holding them, N conntrack entries.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000 100000 1000000"}
RUNS=${RUNS:-10}
OUT=${OUT:-BENCHMARKS.md}
NS=sockql-bench-$$
WORK=$(mktemp -d)

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v netstat >/dev/null || need+=(net-tools)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ss >/dev/null || need+=(iproute2)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${BIN:-}" ]; then
    cargo build --release -q
    BIN=$(pwd)/target/release/sockql
fi

cc -O2 -pthread -o "$WORK/dumpfloor" bench/dumpfloor.c
FLOOR=$WORK/dumpfloor

. bench/load.sh
cleanup() {
    stop_load
    rm -rf "$WORK"
}
trap cleanup EXIT

q() { printf '%s --format csv "%s"' "$BIN" "$1"; }

# Peak resident memory (KiB) of one command, run in the namespace.
peak_kib() {
    $X python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

for N in $SIZES; do
    start_load "$N"
    $X ss -tan | awk 'NR>1{print $1}' | sort | uniq -c > "$WORK/states-$N"
    $X "$BIN" --format csv --no-header "SELECT count(*) FROM sockets" > "$WORK/count-$N"
    $X ss -Htuan | wc -l > "$WORK/sscount-$N" # the same set, counted by ss right after

    hf() { hyperfine --warmup 2 --runs "$RUNS" --style none --export-json "$WORK/$N-$1.json" "${@:2}" >/dev/null; }
    hf 1-floor "$X ss -tan > /dev/null" "$X $(q 'SELECT count(*) FROM sockets')"
    hf 2-states "$X ss -tan | awk 'NR>1{print \$1}' | sort | uniq -c" \
        "$X $(q 'SELECT state, count(*) FROM sockets GROUP BY state')"
    hf 3-remotes "$X ss -tna | grep ESTAB | awk '{print \$5}' | cut -d: -f1 | sort | uniq -c | sort -nr" \
        "$X $(q "SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC")"
    # The columns ss prints; then everything, owners and tcp_info included.
    hf 4-close-wait "$X ss -tan state close-wait" \
        "$X $(q "SELECT state, recv_q, send_q, local_addr, local_port, remote_addr, remote_port FROM sockets WHERE state = 'CLOSE-WAIT'")" \
        "$X $(q "SELECT * FROM sockets WHERE state = 'CLOSE-WAIT'")"
    # ss -tanp and netstat -tanp look owners up per socket: past 100k
    # sockets they take minutes (ss did not finish in 300 s at 1M).
    owners=("$X $(q 'SELECT state, local_addr, local_port, remote_addr, remote_port, pid, process FROM sockets')"
        "$X $(q 'SELECT pid, count(*) FROM sockets GROUP BY 1')"
        "$X $(q 'SELECT pid, count(*) FROM socket_owners GROUP BY 1')")
    if [ "$N" -le 100000 ]; then
        hf 5-owners "$X ss -tanp" "$X netstat -tanp" "${owners[@]}"
        hf 8-all-columns "$X ss -tanie" "$X $(q 'SELECT * FROM sockets')"
    else
        hf 5-owners "${owners[@]}"
        hf 8-all-columns "$X $(q 'SELECT * FROM sockets')"
    fi
    # The floor: the kernel's dump alone, against the full-table aggregates.
    hf 0-kernel "$X $FLOOR" "$X $(q 'SELECT count(*) FROM sockets')" \
        "$X $(q 'SELECT state, count(*) FROM sockets GROUP BY state')" \
        "$X $(q "SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC")"
    hf 6-conntrack "$X conntrack -L 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if (\$i ~ /^src=/) { print \$i; break }}' | sort | uniq -c" \
        "$X $(q 'SELECT orig_src, count(*) FROM conntrack GROUP BY 1')"
    hf 7-startup "$X $(q 'SELECT 1')"
    {
        echo "count $(peak_kib "$BIN" --format csv 'SELECT count(*) FROM sockets')"
        echo "states $(peak_kib "$BIN" --format csv 'SELECT state, count(*) FROM sockets GROUP BY state')"
        echo "all-columns $(peak_kib "$BIN" --format csv 'SELECT * FROM sockets')"
        echo "owners $(peak_kib "$BIN" --format csv 'SELECT local_port, pid, process FROM sockets')"
        echo "owners-by-pid $(peak_kib "$BIN" --format csv 'SELECT pid, count(*) FROM sockets GROUP BY 1')"
        echo "socket-owners $(peak_kib "$BIN" --format csv 'SELECT pid, count(*) FROM socket_owners GROUP BY 1')"
        echo "conntrack $(peak_kib "$BIN" --format csv 'SELECT * FROM conntrack')"
        echo "select-1 $(peak_kib "$BIN" --format csv 'SELECT 1')"
    } > "$WORK/mem-$N"

    stop_load
done

python3 bench/report.py "$WORK" "$SIZES" > "$OUT"
echo "wrote $OUT"
