#!/usr/bin/env bash
# Events (issue 17): short connections as fast as a load generator makes
# them in a namespace this script creates, for SECONDS seconds, while
# sockql's socket_events and conntrack_events, `ss -E` and `conntrack -E`
# listen side by side. Reports events seen against connections made, the
# loss each listener admits, and each listener's CPU. Needs root.
#
#   BIN=/path/to/release/sockql bash bench/events.sh >> BENCHMARKS.md
#   RATE=20000 SECONDS_=10 WORKERS=4 bash bench/events.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20000}
SECS=${SECONDS_:-10}
WORKERS=${WORKERS:-4}
NS=sqevents-$$
WORK=$(mktemp -d)
if [ -z "${BIN:-}" ]; then
    cargo build --release -q
    BIN=$(pwd)/target/release/sockql
fi
command -v conntrack >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq conntrack >/dev/null; }
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "bench/events: $*" >&2; }

ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" nft -f - <<'N'
table inet track {
  chain out { type filter hook output priority 0; ct state new,established accept; }
}
N
ip netns exec "$NS" sysctl -qw net.netfilter.nf_conntrack_acct=1
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_tw_reuse=1
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"

# The load: WORKERS processes open and close connections to a listener
# that accepts and closes, each at RATE/WORKERS a second, for SECS seconds.
cat >"$WORK/load.py" <<'PY'
import os, socket, sys, time, threading
rate, secs, workers = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 7171)); l.listen(4096)
def serve():
    while True:
        try:
            s, _ = l.accept(); s.close()
        except OSError:
            return
for _ in range(2):
    threading.Thread(target=serve, daemon=True).start()
def work(n):
    made, start, per = 0, time.monotonic(), rate / workers
    while True:
        now = time.monotonic() - start
        if now >= secs: break
        if made > per * now:
            time.sleep(0.0005); continue
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            c.connect(("127.0.0.1", 7171)); made += 1
        except OSError:
            pass
        c.close()
    os.write(w, f"{made}\n".encode())
r, w = os.pipe()
kids = []
for i in range(workers):
    pid = os.fork()
    if pid == 0:
        work(i); os._exit(0)
    kids.append(pid)
for k in kids: os.waitpid(k, 0)
os.close(w)
total = sum(int(x) for x in os.read(r, 1 << 16).split())
time.sleep(0.5)
print(total)
PY

cpu() { awk '/^cpu/ {print $2 + $3}' "$1"; }
LISTEN=$((SECS + 4))
ip netns exec "$NS" /usr/bin/time -f "cpu %U %S" "$BIN" --capture-for "${LISTEN}s" --format csv --no-header \
    "SELECT count(*), max(overruns) FROM socket_events WHERE protocol = 'tcp'" \
    >"$WORK/sock.out" 2>"$WORK/sock.err" &
ip netns exec "$NS" /usr/bin/time -f "cpu %U %S" "$BIN" --capture-for "${LISTEN}s" --format csv --no-header \
    "SELECT count(*), max(overruns) FROM conntrack_events WHERE event = 'NEW' AND orig_dport = 7171" \
    >"$WORK/ct.out" 2>"$WORK/ct.err" &
ip netns exec "$NS" /usr/bin/time -f "cpu %U %S" timeout -s INT "$LISTEN" stdbuf -oL ss -E -tnH >"$WORK/ss.out" 2>"$WORK/ss.err" &
ip netns exec "$NS" /usr/bin/time -f "cpu %U %S" timeout -s INT "$LISTEN" stdbuf -oL conntrack -E -e NEW -p tcp --dport 7171 >"$WORK/cte.out" 2>"$WORK/cte.err" &
sleep 2
log "load: $RATE connections a second for ${SECS}s from $WORKERS processes"
made=$(ip netns exec "$NS" python3 "$WORK/load.py" "$RATE" "$SECS" "$WORKERS")
wait
sock_seen=$(cut -d, -f1 "$WORK/sock.out"); sock_over=$(cut -d, -f2 "$WORK/sock.out")
ct_seen=$(cut -d, -f1 "$WORK/ct.out"); ct_over=$(cut -d, -f2 "$WORK/ct.out")
# Every TCP destroy in the namespace: the load's (a client's end closed
# with SO_LINGER 0 has its remote port reset, so ports cannot pick them
# out) and its listener's.
ss_seen=$(wc -l <"$WORK/ss.out")
cte_seen=$(grep -c NEW "$WORK/cte.out" || true)
cat <<EOF
## Events (issue 17): $made short connections in ${SECS}s ($(lscpu | sed -n 's/^Model name: *//p'), 2 cores, release build, one run)

Connections made by the load: $made (each has two ends, so $((2 * made)) socket destroys, and one conntrack NEW; the listener's destroy adds one).

| listener | events seen | of made | loss it reports | CPU seconds |
|---|---:|---:|---|---:|
| sockql \`socket_events\` | $sock_seen | $(python3 -c "print(f'{$sock_seen / (2 * $made):.1%}')") | overruns: ${sock_over:-0} | $(cpu "$WORK/sock.err") |
| \`ss -E\` | $ss_seen | $(python3 -c "print(f'{$ss_seen / (2 * $made):.1%}')") | none (ss says nothing) | $(cpu "$WORK/ss.err") |
| sockql \`conntrack_events\` (NEW) | $ct_seen | $(python3 -c "print(f'{$ct_seen / $made:.1%}')") | overruns: ${ct_over:-0} | $(cpu "$WORK/ct.err") |
| \`conntrack -E -e NEW\` | $cte_seen | $(python3 -c "print(f'{$cte_seen / $made:.1%}')") | $(grep -o 'ENOBUFS\|No buffer space[^,]*' "$WORK/cte.err" | head -1 || true) | $(cpu "$WORK/cte.err") |

EOF
