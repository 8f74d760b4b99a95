#!/usr/bin/env bash
# Containers at scale (issue 31): N real podman containers (runc,
# `--network none`, so each has its own network namespace, holding one
# listening socket: busybox httpd), then the same scan grouped by
# container and grouped by netns, side by side, for each binary given.
# Prints medians (hyperfine) and the ratio. Needs root and podman.
#
#   BINS="/tmp/sockql-before /tmp/sockql-after" N=500 RUNS=10 bash bench/containers.sh
#
# BINS defaults to the release build at /var/cache/sockql/sockql-rel-main
# when it exists, else this checkout's target/debug/sockql (say which in
# BENCHMARKS.md). Containers are named $TAG-<i> (TAG defaults to
# sockql-bench-ctr-<pid>) and are removed on exit, also on failure, unless
# KEEP=1; a second run with the same TAG reuses the ones running.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500}
RUNS=${RUNS:-10}
if [ -z "${BINS:-}" ]; then
    if [ -x /var/cache/sockql/sockql-rel-main ]; then BINS=/var/cache/sockql/sockql-rel-main; else BINS=${CARGO_TARGET_DIR:-target}/debug/sockql; fi
fi
TAG=${TAG:-sockql-bench-ctr-$$}
IMAGE=localhost/$TAG:bench
WORK=$(mktemp -d)

cleanup() {
    rm -rf "$WORK"
    [ "${KEEP:-0}" = 1 ] && return
    podman ps -a --filter "name=^$TAG-" --format '{{.ID}}' | xargs -r -n 50 podman rm -f -t 0 >/dev/null 2>&1 || true
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The image: Debian's busybox-static, imported (no registry).
mkdir -p "$WORK/root/bin"
cp "$(command -v busybox)" "$WORK/root/bin/busybox"
tar -C "$WORK/root" -cf "$WORK/img.tar" .
podman image exists "$IMAGE" || podman import "$WORK/img.tar" "$IMAGE" >/dev/null

start=$(date +%s)
have=$(podman ps --filter "name=^$TAG-" --format '{{.Names}}' | sort)
seq 1 "$N" | { grep -vxF -f <(echo "$have" | sed "s/^$TAG-//") || true; } | xargs -P 2 -I{} podman --runtime runc run -d --network none \
    --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --name "$TAG-{}" "$IMAGE" \
    /bin/busybox httpd -f -p 8080 >/dev/null
running=$(podman ps --filter "name=^$TAG-" --format '{{.ID}}' | wc -l)
echo "# $running of $N containers running, started in $(( $(date +%s) - start )) s" >&2
[ "$running" -eq "$N" ] || { echo "not all containers started" >&2; exit 1; }
echo "# processes: $(ls -d /proc/[0-9]* | wc -l), network namespaces: $(lsns -t net -n | wc -l)" >&2

for BIN in $BINS; do
    by_ctr=(--all-netns "SELECT container, count(*) FROM sockets GROUP BY 1")
    by_ns=(--all-netns "SELECT netns, count(*) FROM sockets GROUP BY 1")
    # Sanity: every container is named once, with its socket.
    named=$("$BIN" --format csv "${by_ctr[@]}" | grep -c "^$TAG-" || true)
    echo "# $BIN: $named containers named" >&2
    hyperfine -N -w 2 -r "$RUNS" --export-json "$WORK/h.json" \
        -n netns "$BIN ${by_ns[*]@Q}" -n container "$BIN ${by_ctr[*]@Q}" >&2
    python3 - "$WORK/h.json" "$BIN" "$N" "$named" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ns, ctr = r["netns"]["median"], r["container"]["median"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {ns*1000:.0f} ms | {ctr*1000:.0f} ms | {ctr/ns:.2f}x |")
EOF
done
