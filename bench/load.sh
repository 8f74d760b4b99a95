# Sourced by bench/run.sh and bench/compare.sh: the benchmark load in a
# network namespace of its own (loopback only). Needs NS and WORK set.
#
#   start_load N   make $NS and fill it with the load of size N
#   stop_load      end the load generator and delete $NS
#
# At size N (≈ sockets): N/2 established connections, N/5 TIME-WAIT,
# N/50 CLOSE-WAIT, N/200 processes holding them (at most 500), N conntrack
# entries (at most 200,000: the kernel's nf_conntrack_max is global).

LOADGEN=
X="ip netns exec $NS"

start_load() {
    local n=$1
    ip netns add "$NS"
    $X ip link set lo up
    $X sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_max_tw_buckets=262144 net.core.somaxconn=65535
    # The load's conntrack entries are inserted directly (no ruleset needed).
    $X python3 bench/loadgen.py --established $((n / 2)) --time-wait $((n / 5)) --close-wait $((n / 50)) \
        --procs $(( n / 200 > 500 ? 500 : n / 200 > 5 ? n / 200 : 5 )) --conntrack $(( n > 200000 ? 200000 : n )) > "$WORK/ready" &
    LOADGEN=$!
    for _ in $(seq 600); do grep -q ready "$WORK/ready" 2>/dev/null && break; sleep 0.5; done
    grep -q ready "$WORK/ready" || { echo "load generator did not get ready" >&2; exit 1; }
}

stop_load() {
    [ -n "$LOADGEN" ] && kill "$LOADGEN" 2>/dev/null && wait "$LOADGEN" 2>/dev/null || true
    LOADGEN=
    ip netns del "$NS" 2>/dev/null || true
}
