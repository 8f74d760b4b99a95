#!/usr/bin/env bash
# trace_overhead.sh [SOCKQL] [N] [RUNS]: CPU of sockql's packet_drops (its
# eBPF reader and its perf reader) against bpftrace's for the same drops,
# events counted and events lost; RUNS rounds (default 5), the tools in
# turn within each round, then the medians.
#
# A sender in a network namespace of its own sends N UDP datagrams as
# fast as it can to a closed port on loopback: N NO_SOCKET drops, each
# delivered (and traced) in the sender's softirq. Per round:
#   none:        nothing listens;
#   sockql-bpf:  SELECT count(*), max(overruns) FROM packet_drops
#                WHERE reason = 'NO_SOCKET' AND netns = <its namespace>
#                (reason and namespace compared in sockql's eBPF program);
#   sockql-perf: the same through the perf tracepoint (AND reader = 'perf'),
#                kept by AND current_pid = <sender> (the reason is the
#                kernel filter; the pid is checked in sockql);
#   bpftrace:    tracepoint:skb:kfree_skb /args->reason == NO_SOCKET &&
#                pid == <sender>/ { @n = count(); }  (counted in the kernel).
# For each: the tool's user+sys CPU (its whole run, start-up included:
# GNU time), the sender's user+sys (the traced path's in-kernel cost is
# charged to it), the count, and the overruns column (events the perf
# ring had no room for: counted, never silent; the kernel's per-event
# lost_samples, so those lost at the very end of the flood too).
# The perf and bpftrace runs keep the sender's pid: drops the kernel runs
# in ksoftirqd under this load (its softirq deferred) carry ksoftirqd's
# pid and are not in their counts, a shortfall that is the predicate's,
# not a loss. The eBPF run keeps the namespace, so it counts those too.
set -euo pipefail
sockql=${1:-/tmp/sockql-h-drops/sockql}
n=${2:-300000}
runs=${3:-5}
ns=sockql-bench-$$
tmp=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
inode=$(stat -L -c %i /run/netns/"$ns")
reason=$(unshare -m sh -c 'f=events/skb/kfree_skb/format; mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; cat /sys/kernel/tracing/$f' |
    grep -o '{ [0-9]*, "NO_SOCKET" }' | grep -o '[0-9]*')
cat > "$tmp/flood.py" <<'PY'
import socket, sys, os
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(("127.0.0.1", 0))
port = c.getsockname()[1]; c.close()
print(os.getpid(), flush=True)
sys.stdin.readline()
to = ("127.0.0.1", port)
for _ in range(n):
    s.sendto(b"x", to)
t = os.times()
print(f"{t.user + t.system:.2f}", flush=True)
PY

# Start the sender, paused; its pid on stdout. $1: what listens.
run() {
    local tool=$1
    coproc SENDER { ip netns exec "$ns" python3 "$tmp/flood.py" "$n"; }
    local pid; read -r pid <&"${SENDER[0]}"
    local tool_pid= out="$tmp/$tool.out" err="$tmp/$tool.err"
    case $tool in
    sockql-bpf | sockql-perf)
        local where="netns = $inode"
        [ "$tool" = sockql-perf ] && where="reader = 'perf' AND current_pid = $pid"
        /usr/bin/time -f "%U %S" -o "$tmp/$tool.time" "$sockql" --follow --format csv \
            "SELECT count(*) AS n, coalesce(max(overruns), 0) AS lost FROM packet_drops WHERE reason = 'NO_SOCKET' AND $where" \
            >"$out" 2>"$err" &
        tool_pid=$!
        until grep -q listening "$err"; do sleep 0.05; done ;;
    bpftrace)
        /usr/bin/time -f "%U %S" -o "$tmp/$tool.time" unshare -m sh -c \
            'mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; exec bpftrace -e "$1"' sh \
            "BEGIN { printf(\"READY\\n\"); } tracepoint:skb:kfree_skb /args->reason == $reason && pid == $pid/ { @n = count(); }" \
            >"$out" 2>"$err" &
        tool_pid=$!
        until grep -q READY "$out"; do sleep 0.05; done ;;
    esac
    local before; before=$(ip netns exec "$ns" nstat -asz UdpNoPorts | awk '/UdpNoPorts/ {print $2}')
    echo go >&"${SENDER[1]}"
    local sender_cpu; read -r sender_cpu <&"${SENDER[0]}"
    wait "$SENDER_PID" 2>/dev/null || true
    # The kernel's own count of the drops (the namespace's UdpNoPorts).
    local after; after=$(ip netns exec "$ns" nstat -asz UdpNoPorts | awk '/UdpNoPorts/ {print $2}')
    local kernel=$((after - before))
    local count=- lost=- tool_cpu=-
    if [ -n "$tool_pid" ]; then
        # The tool's own process (sockql; unshare execs sh then bpftrace).
        for child in $(pgrep -P "$tool_pid"); do kill -INT "$child"; done
        kill -INT "$tool_pid" 2>/dev/null || true
        wait "$tool_pid" || true
        tool_cpu=$(awk '{printf "%.2f", $1 + $2}' "$tmp/$tool.time")
        case $tool in
        sockql-*) IFS=, read -r count lost < <(tail -1 "$out") ;;
        bpftrace) count=$(sed -n 's/^@n: //p' "$out"); count=${count:-0}; lost=0 ;;
        esac
    fi
    printf '%-11s sent %d  UdpNoPorts %d  counted %s  lost %s  tool cpu %ss  sender cpu %ss\n' "$tool" "$n" "$kernel" "$count" "$lost" "$tool_cpu" "$sender_cpu"
    echo "$tool $kernel $count $lost $tool_cpu $sender_cpu" >>"$tmp/results"
}

echo "kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), sockql: $sockql"
for round in $(seq "$runs"); do
    echo "round $round"
    for tool in none sockql-bpf sockql-perf bpftrace; do run "$tool"; done
done
echo "medians of $runs rounds (tool, UdpNoPorts, counted, lost, tool cpu s, sender cpu s):"
python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tool, *vals = line.split()
    rows.setdefault(tool, []).append(vals)
for tool, vals in rows.items():
    med = []
    for col in zip(*vals):
        try:
            med.append(f"{statistics.median(float(v) for v in col):g}")
        except ValueError:
            med.append("-")
    print(f"  {tool:<11} " + "  ".join(med))
PY
