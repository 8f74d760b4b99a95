#!/usr/bin/env bash
# Packets: sockql against tcpdump and tshark, side by side in one run
# (issue 16). Needs root; traffic stays inside two namespaces it creates.
#
#   BIN=/path/to/release/sockql bash bench/packets.sh >> BENCHMARKS.md
#   FILE_MB=256 RUNS=3 bash bench/packets.sh   # a quicker run
#   BASE=/path/to/older/sockql bash bench/packets.sh   # before/after
#
# With BASE, an older sockql binary is measured beside BIN in the same
# run (files and live), so a change is judged against the binary before
# it on the same machine and the same capture.
#
# 1. Files: a capture of about FILE_MB megabytes (headers, snap length
#    128, as an operator keeps for analysis) made from a real iperf3 stream
#    captured by tcpdump and concatenated with mergecap, then
#    `GROUP BY src_addr, flags` by sockql, by `tcpdump -nn -r | awk | sort
#    | uniq -c` and by `tshark -T fields | sort | uniq -c`; the three
#    answers must agree. Wall time (hyperfine medians) and peak memory.
# 2. Live: an iperf3 stream between the namespaces for LIVE_SECONDS,
#    captured on the receiver's veth with the same filter by
#    `tcpdump -w /dev/null` and by sockql, in alternate runs: packets
#    seen, kernel drops, and CPU seconds of the capturing process.
#
# Prints a markdown section on stdout; progress on stderr. PARTS="live"
# (or "files") runs one half.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE_MB=${FILE_MB:-1024}
RUNS=${RUNS:-3}
LIVE_SECONDS=${LIVE_SECONDS:-10}
PARTS=${PARTS:-"files live"}
WORK=$(mktemp -d /var/tmp/sockql-bench-packets.XXXXXX)
A=sqbench-a-$$
B=sqbench-b-$$

need=()
for tool in iperf3 tcpdump tshark mergecap hyperfine; do
    command -v $tool >/dev/null || need+=($tool)
done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^mergecap$/wireshark-common/')
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
if [ -z "${BIN:-}" ]; then
    cargo build --release -q
    BIN=$(pwd)/target/release/sockql
fi

cleanup() {
    ip netns pids "$A" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids "$B" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "bench/packets: $*" >&2; }

ip netns add "$A"
ip netns add "$B"
ip link add sqbA netns "$A" type veth peer name sqbB netns "$B"
ip -n "$A" addr add 10.232.0.1/24 dev sqbA
ip -n "$B" addr add 10.232.0.2/24 dev sqbB
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set sqbA up
ip -n "$B" link set sqbB up

iperf() { # seconds: one stream A -> B, prints Gbit/s
    ip netns exec "$B" iperf3 -s -1 -D >/dev/null 2>&1
    sleep 0.2
    ip netns exec "$A" iperf3 -c 10.232.0.2 -t "$1" -J 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'
}

# ---- 1. Files -------------------------------------------------------------
: >"$WORK/live"
size_mb=0 packets=0 rss_kb=0
if [[ $PARTS == *files* ]]; then
log "making a ${FILE_MB} MB capture"
# Segments, not 64 KB GSO bursts: what a capture on a real NIC holds.
ip -n "$A" link set dev sqbA gso_max_size 1500
ip netns exec "$B" tcpdump -i sqbB -s 128 -w "$WORK/piece.pcap" -U 2>/dev/null &
DUMP=$!
sleep 1
iperf 5 >/dev/null
kill -INT $DUMP
wait $DUMP || true
ip -n "$A" link set dev sqbA gso_max_size 65536
piece=$(stat -c %s "$WORK/piece.pcap")
copies=$(( (FILE_MB * 1024 * 1024 + piece - 1) / piece ))
files=()
for _ in $(seq "$copies"); do files+=("$WORK/piece.pcap"); done
mergecap -a -F pcap -w "$WORK/big.pcap" "${files[@]}"
rm "$WORK/piece.pcap"
FILE="$WORK/big.pcap"
size_mb=$(( $(stat -c %s "$FILE") / 1024 / 1024 ))
packets=$("$BIN" --format csv --no-header "SELECT count(*) FROM read_pcap('$FILE')")
log "$size_mb MB, $packets packets"

SQL="SELECT src_addr, flags, count(*) AS n FROM read_pcap('$FILE') GROUP BY src_addr, flags"
sockql_cmd="$BIN --format csv --no-header \"$SQL\""
base=()
if [ -n "${BASE:-}" ]; then
    base_cmd="$BASE --format csv --no-header \"$SQL\""
    eval "$base_cmd" | awk -F, '$2 != "" {print $1, $2, $3}' | sort >"$WORK/base"
    base=(-n "sockql (base)" "$base_cmd")
fi
# tcpdump prints src.port as its third field and [flags] as its seventh.
tcpdump_cmd="tcpdump -nn -r $FILE 2>/dev/null | awk '\$2 == \"IP\" { sub(/\\.[0-9]+\$/, \"\", \$3); print \$3, \$7 }' | sort | uniq -c"
tshark_cmd="tshark -r $FILE -T fields -e ip.src -e tcp.flags.str 2>/dev/null | sort | uniq -c"

# The three answers agree (as "addr flags count" lines, sorted).
eval "$sockql_cmd" | awk -F, '$2 != "" {print $1, $2, $3}' | sort >"$WORK/ours"
eval "$tcpdump_cmd" | awk '{f=$3; gsub(/[\[\],]/, "", f); print $2, f, $1}' | sort >"$WORK/tcpdump"
diff "$WORK/ours" "$WORK/tcpdump" >&2 || { log "sockql and tcpdump disagree"; exit 1; }
[ -z "${BASE:-}" ] || diff "$WORK/ours" "$WORK/base" >&2 || { log "sockql and its base disagree"; exit 1; }
tshark_flags=$(eval "$tshark_cmd" | awk '{n+=$1} END {print n}')
[ "$tshark_flags" = "$packets" ] || { log "tshark read $tshark_flags packets, sockql $packets"; exit 1; }

log "timing the file queries ($RUNS runs each)"
hyperfine --style none --runs "$RUNS" --export-json "$WORK/files.json" \
    -n sockql "$sockql_cmd" "${base[@]}" \
    -n "tcpdump | awk | sort | uniq -c" "$tcpdump_cmd" \
    -n "tshark | sort | uniq -c" "$tshark_cmd" >/dev/null
rss_kb=$(/usr/bin/time -f %M "$BIN" --format csv --no-header "$SQL" 2>&1 >/dev/null | tail -1)
fi

# ---- 2. Live --------------------------------------------------------------
FILTER_TCPDUMP="tcp dst port 5201"
FILTER_SQL="protocol = 'tcp' AND dst_port = 5201"
live_run() { # tool: prints "gbps packets drops cpu_seconds"
    local out="$WORK/live.$1" gbps
    if [ "$1" = tcpdump ]; then
        ip netns exec "$B" /usr/bin/time -f "cpu %U %S" timeout -s INT $((LIVE_SECONDS + 2)) \
            tcpdump -i sqbB -w /dev/null "$FILTER_TCPDUMP" 2>"$out" &
    else
        local bin=$BIN
        [ "$1" = base ] && bin=$BASE
        ip netns exec "$B" /usr/bin/time -f "cpu %U %S" "$bin" --capture-for "$((LIVE_SECONDS + 2))s" --format csv --no-header \
            "SELECT count(*) FROM packets WHERE interface = 'sqbB' AND $FILTER_SQL" >"$out.rows" 2>"$out" &
    fi
    local pid=$!
    sleep 1
    gbps=$(iperf "$LIVE_SECONDS")
    wait $pid || true
    local n drops cpu
    if [ "$1" = tcpdump ]; then
        n=$(awk '/packets captured/ {print $1}' "$out")
        drops=$(awk '/dropped by kernel/ {print $1}' "$out")
    else
        n=$(cat "$out.rows")
        drops=$(sed -n 's/.*kernel dropped \([0-9]*\) packets.*/\1/p' "$out" | head -1)
    fi
    cpu=$(awk '/^cpu/ {print $2 + $3}' "$out")
    echo "$gbps ${n:-0} ${drops:-0} $cpu"
}
if [[ $PARTS == *live* ]]; then
    log "live captures: $RUNS alternate runs of ${LIVE_SECONDS}s each"
    for _ in $(seq "$RUNS"); do
        echo "tcpdump $(live_run tcpdump)" >>"$WORK/live"
        echo "sockql $(live_run sockql)" >>"$WORK/live"
        [ -z "${BASE:-}" ] || echo "base $(live_run base)" >>"$WORK/live"
    done
fi

# ---- Report ---------------------------------------------------------------
python3 - "$WORK" "$size_mb" "$packets" "$rss_kb" "$RUNS" "$LIVE_SECONDS" <<'PY'
import json, statistics, sys, subprocess
work, size_mb, packets, rss_kb, runs, secs = sys.argv[1:]
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
import os
print(f"Machine: {cpu}, 2 cores, release build. Medians of {runs} runs, measured side by side in one run of `bench/packets.sh`.\n")
if os.path.exists(f"{work}/files.json"):
  res = json.load(open(f"{work}/files.json"))["results"]
  med = {r["command"]: statistics.median(r["times"]) for r in res}
  ours = med["sockql"]
  fastest = min(v for k, v in med.items() if not k.startswith("sockql"))
  print(f"### `GROUP BY src_addr, flags` over a {size_mb} MB pcap of {int(packets):,} packets (snap length 128)\n")
  print("| command | median wall time | vs sockql |")
  print("|---|---:|---:|")
  for k, v in med.items():
      name = k.replace("|", "\\|")
      print(f"| `{name}` | {v:.2f} s | {v / ours:.1f}x |")
  if "sockql (base)" in med:
      print(f"\nAgainst the base binary: **{ours / med['sockql (base)']:.2f}x** its time.")
  print(f"\nsockql takes **{ours / fastest:.2f}x** the time of the faster reference tool (target: at most 0.2x); "
        f"its peak memory was {int(rss_kb) / 1024:.0f} MB for the {size_mb} MB file (the file is streamed, "
        "a batch of 8192 packets at a time). The three answers were compared line by line before timing.\n")
if os.path.getsize(f"{work}/live") > 0:
  rows = [l.split() for l in open(f"{work}/live")]
  print(f"### Live: one iperf3 stream for {secs} s between two namespaces, captured on the receiver's veth with `tcp dst port 5201`\n")
  print("| capturer | iperf3 Gbit/s | packets seen | kernel drops | CPU seconds |")
  print("|---|---:|---:|---:|---:|")
  summary = {}
  labels = {"tcpdump": "`tcpdump -w /dev/null`", "sockql": "`sockql ... FROM packets WHERE ...`",
            "base": "the same, base binary"}
  for tool in ("tcpdump", "sockql", "base"):
      mine = [r[1:] for r in rows if r[0] == tool]
      if not mine:
          continue
      cols = [statistics.median(float(r[i]) for r in mine) for i in range(4)]
      summary[tool] = cols
      print(f"| {labels[tool]} | {cols[0]:.2f} | {cols[1]:,.0f} | {cols[2]:.0f} | {cols[3]:.2f} |")
  t, s = summary["tcpdump"], summary["sockql"]
  print(f"\nsockql used **{s[3] / t[3]:.2f}x** tcpdump's CPU and dropped {s[2]:.0f} packets against tcpdump's {t[2]:.0f} (medians).\n")
  if "base" in summary:
      b = summary["base"]
      print(f"Against the base binary: **{s[3] / b[3]:.2f}x** its CPU seconds ({s[3]:.2f} against {b[3]:.2f}).\n")
PY
