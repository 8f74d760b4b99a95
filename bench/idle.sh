#!/usr/bin/env bash
# Idle `sockql serve`s, two binaries side by side: the CPU they burn and
# the threads they start while nobody asks them anything, with the default
# metric reports (counters included: a counter's window is a query every
# second, and `metric_process_execs` listens to the kernel's proc
# connector, which tells every listener on the machine of every thread any
# process starts or ends). N serves share one kernel, as bench/fleet.sh's
# hosts do, so each hears the threads all the others start. Needs root and
# perf; loopback only, in a namespace it creates.
#
#   BASE=/tmp/sockql-before BIN=target/release/sockql SIZES="1 50" SECONDS_EACH=20 bash bench/idle.sh
#
# Per binary and size: the serves' own CPU (user + system, from
# /proc/PID/stat) over SECONDS_EACH seconds once all listen and have
# settled, as a share of one core, and the threads started on the whole
# machine meanwhile (perf's sched:sched_process_fork), per second.
# Prints a markdown table on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASE:?set BASE to the older binary}" "${BIN:?set BIN to the newer binary}"
SIZES=${SIZES:-"1 50"}
SECONDS_EACH=${SECONDS_EACH:-20}
NS=sockql-idle-$$
X="ip netns exec $NS"
WORK=$(mktemp -d)
SERVES=()
stop_serves() {
    for p in "${SERVES[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${SERVES[@]}"; do wait "$p" 2>/dev/null || true; done
    SERVES=()
}
cleanup() {
    stop_serves
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
$X ip link set lo up
ulimit -n "$(ulimit -Hn)"

# CPU ticks (user + system) of the processes named.
ticks() { for p in "$@"; do cut -d')' -f2 "/proc/$p/stat" | awk '{print $12 + $13}'; done | awk '{s += $1} END {print s + 0}'; }

measure() {
    local bin=$1 n=$2
    for i in $(seq "$n"); do
        $X "$bin" serve --listen 127.0.0.1:0 2> "$WORK/serve-$i.log" &
        SERVES+=($!)
    done
    for i in $(seq "$n"); do
        for _ in $(seq 600); do grep -q "/metrics (" "$WORK/serve-$i.log" && break; sleep 0.1; done
        grep -q "/metrics (" "$WORK/serve-$i.log" || { cat "$WORK/serve-$i.log" >&2; exit 1; }
    done
    # Past start-up: every counter has run its first windows.
    sleep 5
    local t0 forks
    t0=$(ticks "${SERVES[@]}")
    forks=$(perf stat -x, -e sched:sched_process_fork -a -- sleep "$SECONDS_EACH" 2>&1 >/dev/null | awk -F, '/sched_process_fork/ {print $1}')
    local t1
    t1=$(ticks "${SERVES[@]}")
    stop_serves
    python3 -c "import sys; t, f, s, hz = map(float, sys.argv[1:]); print(f'{(t / hz) / s * 100:.1f} {f / s:.1f}')" \
        "$((t1 - t0))" "$forks" "$SECONDS_EACH" "$(getconf CLK_TCK)"
}

echo "## Idle serves: $(date -u +%Y-%m-%d)"
echo
echo "\`bench/idle.sh\` (SIZES=\"$SIZES\", SECONDS_EACH=$SECONDS_EACH; $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)), default metric reports."
echo "before: \`$BASE\`; after: \`$BIN\`."
echo
echo "| serves | before: CPU, % of a core | after | before: threads started on the machine, per s | after |"
echo "|---:|---:|---:|---:|---:|"
for n in $SIZES; do
    echo "bench/idle: $n serves, before" >&2
    read -r cb fb < <(measure "$BASE" "$n")
    echo "bench/idle: $n serves, after" >&2
    read -r ca fa < <(measure "$BIN" "$n")
    echo "| $n | $cb | $ca | $fb | $fa |"
done
