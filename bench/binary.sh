#!/usr/bin/env bash
# Release binaries side by side: file size, text size, and start-up
# (`SELECT 1`, `--version`), measured by hyperfine alternating the binaries
# in one run so machine noise hits all alike. No load, no root needed.
#
#   bash bench/binary.sh OLD_BINARY NEW_BINARY [MORE ...]
#   RUNS=50 bash bench/binary.sh ...
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BINARY BINARY [BINARY ...]" >&2; exit 2; }
RUNS=${RUNS:-40}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $RUNS runs each"
echo
echo "| binary | size MB | text MB | \`SELECT 1\` ms | \`--version\` ms |"
echo "|---|---|---|---|---|"
for what in "SELECT 1" "--version"; do
    args=()
    for b in "$@"; do
        if [ "$what" = "--version" ]; then args+=(-n "$b" "$b --version"); else args+=(-n "$b" "$b --format csv 'SELECT 1'"); fi
    done
    # -N: no shell in between (these take a few ms); output is discarded.
    hyperfine -N --warmup 3 --runs "$RUNS" --style none --export-json "$WORK/$([ "$what" = "--version" ] && echo v || echo q).json" "${args[@]}" >/dev/null
done
python3 - "$WORK" "$@" <<'PY'
import json, os, subprocess, sys
work, bins = sys.argv[1], sys.argv[2:]
med = lambda f: {r["command"]: r["median"] * 1000 for r in json.load(open(os.path.join(work, f)))["results"]}
q, v = med("q.json"), med("v.json")
for b in bins:
    text = int(subprocess.run(["size", "-A", b], capture_output=True, text=True).stdout.split(".text")[1].split()[0])
    print(f"| `{b}` | {os.path.getsize(b) / 1e6:.1f} | {text / 1e6:.1f} | {q[b]:.1f} | {v[b]:.1f} |")
PY
