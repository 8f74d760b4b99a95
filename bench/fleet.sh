#!/usr/bin/env bash
# Fleet latency and the querying side's memory (issue 32): N network
# namespaces made here, each a "host" with a known socket set and its own
# `sockql serve --flight` (TLS with a CA made here, a password) on its
# end of a veth pair; the querying sockql runs in a hub namespace joined
# to every host, as tests/it/fleet.rs does. Only the namespaces made here
# carry traffic. Prints the tables of BENCHMARKS.md's "Fleet over Flight
# SQL" section on stdout; needs root.
#
#   BIN=/var/cache/sockql/sockql-rel-main SIZES="10 50 100" RUNS=11 bash bench/fleet.sh
#
# Each command runs once to warm up, then RUNS times; every run must exit
# 0 (every host answered) or the script stops. Latency: wall time of the
# sockql process (median, first and third quartiles); memory: its peak
# RSS (wait4's ru_maxrss). Host i holds 2 + i % 3 listeners and CONNS +
# i % 5 established loopback connections, all opened by one holder
# process; before timing, each size is checked: the fleet's count of the
# holder's sockets per host and state equals what the holder opened.
# Environment: SIZES, RUNS, CONNS (default 100), PARALLEL (passed as
# --hosts-parallel when set), KEEP_SERVES=1 (print the serves' RSS).
set -euo pipefail
# The holder keeps every socket of every host open in one process: about
# hosts x (2 x CONNS + 17) descriptors (22,000 at 100 hosts of CONNS=100).
# Where the hard limit is lower (20,000 in this sandbox), lower CONNS.
ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
: "${BIN:?set BIN to a sockql binary (a release build for figures)}"
BIN=$(realpath "$BIN")
SIZES=${SIZES:-"10 50 100"}
RUNS=${RUNS:-11}
CONNS=${CONNS:-100}
CLOSE_WAIT=${CLOSE_WAIT:-12}
PARALLEL=${PARALLEL:-}
MAX=0
for n in $SIZES; do [ "$n" -gt "$MAX" ] && MAX=$n; done
[ "$MAX" -le 250 ] || { echo "at most 250 hosts (one 10.233.I.0/24 each)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }

TAG=sqfleet-$$
HUB=$TAG-hub
WORK=$(mktemp -d "/tmp/sockql-bench-fleet-$$.XXXXXX")
chmod 700 "$WORK"
PORT=7470
SERVES=()
HOLDER=
MADE=()

cleanup() {
    set +e
    for p in "${SERVES[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
    for p in "${SERVES[@]}" $HOLDER; do wait "$p" 2>/dev/null; done
    for ns in "${MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

host_ns() { echo "$TAG-$1"; }

# The hub, and one namespace per host joined to it by a veth pair:
# hub 10.233.I.1, host I 10.233.I.2.
ip netns add "$HUB"; MADE+=("$HUB")
ip -n "$HUB" link set lo up
for i in $(seq 0 $((MAX - 1))); do
    ns=$(host_ns "$i")
    ip netns add "$ns"; MADE+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$HUB" link add "fh$i" type veth peer name "fv$i" netns "$ns"
    ip -n "$HUB" addr add "10.233.$i.1/24" dev "fh$i"
    ip -n "$ns" addr add "10.233.$i.2/24" dev "fv$i"
    ip -n "$HUB" link set "fh$i" up
    ip -n "$ns" link set "fv$i" up
done

# A CA, and one server certificate naming every host's address.
(
    cd "$WORK"
    EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${EC[@]}" -days 1 -subj "/CN=sockql bench CA" -keyout ca.key -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    san=$(for i in $(seq 0 $((MAX - 1))); do printf 'IP:10.233.%d.2,' "$i"; done)
    printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=%s\n' "${san%,}" > server.ext
    openssl req "${EC[@]}" -subj "/CN=sockql bench host" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -out server.pem -extfile server.ext 2>/dev/null
    echo "bench-fleet-$$-$RANDOM$RANDOM" > password
    chmod 600 password server.key ca.key
)

# The known socket set, in every host's namespace, from one process.
cat > "$WORK/holder.py" <<'EOF'
import ctypes, os, resource, signal, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
tag, n, conns, close_wait, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
keep = []
lines = []
for i in range(n):
    fd = os.open(f"/run/netns/{tag}-{i}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(2 + i % 3)]
    keep += listeners
    nc = conns + i % 5
    for c in range(nc):
        l = listeners[c % len(listeners)]
        keep.append(socket.create_connection(l.getsockname()))
        keep.append(l.accept()[0])
    # CLOSE_WAIT connections whose client end is closed: the accepted
    # ends stay in CLOSE-WAIT (the health report's close-wait-leak).
    for c in range(close_wait):
        l = listeners[c % len(listeners)]
        gone = socket.create_connection(l.getsockname())
        keep.append(l.accept()[0])
        gone.close()
    lines.append(f"h{i:03} LISTEN {len(listeners)}\nh{i:03} ESTAB {2 * nc}\n")
    if close_wait:
        lines.append(f"h{i:03} CLOSE-WAIT {close_wait}\n")
with open(out + ".tmp", "w") as f:
    f.write("".join(lines))
os.rename(out + ".tmp", out)
signal.pause()
EOF
python3 "$WORK/holder.py" "$TAG" "$MAX" "$CONNS" "$CLOSE_WAIT" "$WORK/expected" &
HOLDER=$!
for _ in $(seq 600); do [ -e "$WORK/expected" ] && break; kill -0 "$HOLDER" || exit 1; sleep 0.1; done
[ -e "$WORK/expected" ] || { echo "the socket holder did not finish" >&2; exit 1; }

# The servers, all at once; each says when it listens. Gauges only
# (--metrics metric_sockets): a counter report listens to the proc
# connector all the time, and here every "host" shares one kernel, so each
# serve would hear the threads every other serve starts for its queries
# and counter windows: work that grows with the square of the hosts
# (measured: 100 idle serves with counters burned 1.2 cores, without 0),
# which a real fleet, one serve per kernel, never does.
for i in $(seq 0 $((MAX - 1))); do
    ip netns exec "$(host_ns "$i")" "$BIN" serve --listen 127.0.0.1:0 --metrics metric_sockets \
        --flight "10.233.$i.2:$PORT" \
        --flight-password-file "$WORK/password" \
        --flight-tls-cert "$WORK/server.pem" --flight-tls-key "$WORK/server.key" 2> "$WORK/serve-$i.log" &
    SERVES+=($!)
done
for i in $(seq 0 $((MAX - 1))); do
    for _ in $(seq 600); do grep -q "Arrow Flight SQL on" "$WORK/serve-$i.log" && break; sleep 0.1; done
    grep -q "Arrow Flight SQL on" "$WORK/serve-$i.log" || { cat "$WORK/serve-$i.log" >&2; exit 1; }
done
serve_rss_kib() { for p in "${SERVES[@]}"; do awk '/^VmRSS/{print $2}' "/proc/$p/status"; done | awk '{s+=$1} END{print s}'; }

hosts_file() { # N: the first N hosts
    for i in $(seq 0 $(($1 - 1))); do echo "10.233.$i.2:$PORT h$(printf %03d "$i")"; done > "$WORK/hosts-$1"
    echo "$WORK/hosts-$1"
}

# Runs a command RUNS times (after one warm-up) in the hub: one JSON line
# of wall times and peak RSS. Every run must exit 0.
cat > "$WORK/measure.py" <<'EOF'
import json, os, statistics, subprocess, sys, time
label, hosts, runs, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
serves = os.environ.get("SERVE_PIDS", "").split()
def serves_cpu():  # seconds of CPU the serves have used
    t = 0
    for p in serves:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    return t / os.sysconf("SC_CLK_TCK")
wall, cpu, rss, lines, serve_cpu = [], [], [], 0, 0.0
for r in range(runs + 1):
    with open(os.environ["OUT"], "wb") as out, open(os.environ["ERR"], "wb") as err:
        c0 = serves_cpu()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        t = time.perf_counter() - t0
        c1 = serves_cpu()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{label}: exit {code}: " + open(os.environ["ERR"]).read()[-2000:])
    if r == 0:
        continue
    wall.append(t * 1000)
    cpu.append((usage.ru_utime + usage.ru_stime) * 1000)
    rss.append(usage.ru_maxrss / 1024)
    serve_cpu += (c1 - c0) * 1000
    lines = sum(1 for _ in open(os.environ["OUT"], "rb"))
q = statistics.quantiles(wall, n=4, method="inclusive") if len(wall) > 1 else wall * 3
print(json.dumps({"label": label, "hosts": hosts, "runs": runs, "median_ms": statistics.median(wall), "q1_ms": q[0],
                  "q3_ms": q[2], "min_ms": min(wall), "max_ms": max(wall), "cpu_ms": statistics.median(cpu),
                  "serves_cpu_ms": serve_cpu / runs, "rss_mib": statistics.median(rss), "rss_max_mib": max(rss),
                  "lines": lines}))
EOF
export OUT="$WORK/out" ERR="$WORK/err" SERVE_PIDS="${SERVES[*]}"
fleet() { # N, then sockql's arguments
    local file; file=$(hosts_file "$1"); shift
    local extra=(); [ -n "$PARALLEL" ] && extra=(--hosts-parallel "$PARALLEL")
    echo "$BIN" --hosts "$file" --hosts-password-file "$WORK/password" --hosts-ca "$WORK/ca.pem" \
        --hosts-timeout 60s "${extra[@]}" "$@"
}
measure() { # label, N, sockql's arguments
    local label=$1 n=$2; shift 2
    # shellcheck disable=SC2046
    ip netns exec "$HUB" python3 "$WORK/measure.py" "$label" "$n" "$RUNS" $(fleet "$n") "$@" | tee -a "$WORK/results.jsonl" >&2
}

# Every host answers, each with exactly the holder's sockets.
check() { # N
    local n=$1 file
    file=$(hosts_file "$n")
    ip netns exec "$HUB" "$BIN" --hosts "$file" --hosts-password-file "$WORK/password" --hosts-ca "$WORK/ca.pem" \
        --hosts-timeout 60s --format csv --no-header \
        "SELECT host, state, count(*) FROM sockets WHERE pid = $HOLDER AND protocol = 'tcp' GROUP BY 1, 2 ORDER BY 1, 2" \
        | tr ',' ' ' > "$WORK/got-$n"
    awk -v n="$n" 'substr($1, 2) + 0 < n' "$WORK/expected" | sort > "$WORK/want-$n"
    sort -o "$WORK/got-$n" "$WORK/got-$n"
    diff -u "$WORK/want-$n" "$WORK/got-$n" >&2 || { echo "fleet of $n: not the hosts' socket sets" >&2; exit 1; }
    # health finds each host's CLOSE-WAIT leak, once per host.
    local leaks
    leaks=$(ip netns exec "$HUB" "$BIN" --hosts "$file" --hosts-password-file "$WORK/password" --hosts-ca "$WORK/ca.pem" \
        --hosts-timeout 60s --format csv --no-header run health | grep -c ",close-wait-leak,pid $HOLDER " || true)
    [ "$CLOSE_WAIT" -lt 10 ] || [ "$leaks" = "$n" ] || { echo "fleet of $n: health found $leaks leaks" >&2; exit 1; }
}

AGG="SELECT state, count(*) FROM sockets GROUP BY 1"
measure "SELECT 1 (no host asked)" 1 --format csv "SELECT 1"
measure "$AGG" 1 --format csv "$AGG"
for n in $SIZES; do
    check "$n"
    measure "$AGG" "$n" --format csv "$AGG"
    measure "run health" "$n" --format csv run health
    measure "SELECT * FROM sockets" "$n" --format csv "SELECT * FROM sockets"
done
echo "the $MAX serves' RSS together: $(( $(serve_rss_kib) / 1024 )) MiB" >&2

python3 - "$WORK/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| query | hosts | median ms | quartiles ms | sockql CPU ms | serves' CPU ms | peak RSS MiB (median, max) | lines out |")
print("|---|---:|---:|---|---:|---:|---|---:|")
for r in rows:
    print(f"| `{r['label']}` | {r['hosts']} | {r['median_ms']:.0f} | {r['q1_ms']:.0f}–{r['q3_ms']:.0f} "
          f"| {r['cpu_ms']:.0f} | {r['serves_cpu_ms']:.0f} | {r['rss_mib']:.1f}, {r['rss_max_mib']:.1f} | {r['lines']} |")
EOF
