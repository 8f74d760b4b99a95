#!/usr/bin/python3
"""scan_rss.py SOCKQL [RUNS] [--tmpfs] [--evict]: peak memory of a conntrack
scan of 100,000 entries against SELECT 1, as the test
conntrack::a_hundred_thousand_entries_stream_in_bounded_memory measures it,
with the peak split into its anonymous and file-backed parts.

A network namespace of its own (removed at the end) gets 100,000 UDP
entries through ctnetlink (as the test inserts them). Each run: SELECT 1,
SELECT count(*) ... WHERE orig_dport = 53, SELECT * (csv, printed to a
pipe that is read and dropped). Per query: VmHWM (the kernel's peak, what
the test asserts on) and the highest RssAnon, RssFile + RssShmem and
thread count seen while it ran (/proc/PID/status every 3 ms).

--evict: drop SOCKQL's unmapped page cache (posix_fadvise DONTNEED, this
file only) before each SELECT 1, so its code pages come from disk, as
after the page cache was reclaimed. --tmpfs: run a copy in /dev/shm (what
the tests do, common::InMemoryBin)."""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

QUERIES = [
    ("SELECT 1", "SELECT 1"),
    ("count(*)", "SELECT count(*) FROM conntrack WHERE orig_dport = 53"),
    ("SELECT *", "SELECT * FROM conntrack"),
]


def nla(kind, payload):
    v = struct.pack("=HH", 4 + len(payload), kind) + payload
    return v + b"\0" * (-len(v) % 4)


def nested(kind, parts):
    return nla(kind | 0x8000, b"".join(parts))


def tup(kind, src, dst, sport, dport):
    return nested(kind, [
        nested(1, [nla(1, bytes(src)), nla(2, bytes(dst))]),
        nested(2, [nla(1, bytes([17])), nla(2, struct.pack(">H", sport)), nla(3, struct.pack(">H", dport))]),
    ])


def fill(n):
    """In the namespace: n entries 10.200.x.1:port -> 10.201.0.1:53."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    batch = b""
    for i in range(n):
        src, dst, sport = [10, 200, i // 50000, 1], [10, 201, 0, 1], 1024 + i % 50000
        body = (bytes([socket.AF_INET, 0, 0, 0]) + tup(1, src, dst, sport, 53) + tup(2, dst, src, 53, sport)
                + nla(7, struct.pack(">I", 600)))
        # IPCTNL_MSG_CT_NEW, REQUEST|CREATE|EXCL
        batch += struct.pack("=IHHII", 16 + len(body), 0x0100, 0x1 | 0x400 | 0x200, i, 0) + body
        if len(batch) > 60000:
            s.sendto(batch, (0, 0))
            batch = b""
    if batch:
        s.sendto(batch, (0, 0))


def status(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    d[k] = int(v.split()[0])
    except OSError:
        pass
    return d


def run(ns, binp, sql):
    p = subprocess.Popen(["ip", "netns", "exec", ns, binp, "--format", "csv", "--no-header", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    os.set_blocking(p.stdout.fileno(), False)
    hwm = anon = mapped = threads = 0
    while p.poll() is None:
        d = status(p.pid)
        if d:
            hwm = max(hwm, d.get("VmHWM", 0))
            anon = max(anon, d.get("RssAnon", 0))
            mapped = max(mapped, d.get("RssFile", 0) + d.get("RssShmem", 0))
            threads = max(threads, d.get("Threads", 0))
        while p.stdout.read(1 << 20):
            pass
        time.sleep(0.003)
    p.stdout.read()
    if p.returncode:
        sys.exit(f"{sql}: exit {p.returncode}")
    return hwm, anon, mapped, threads


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    binp, runs = args[0], int(args[1]) if len(args) > 1 else 3
    ns = f"scanrss-{os.getpid()}"
    shm = None
    if "--tmpfs" in sys.argv:
        shm = f"/dev/shm/scanrss-{os.getpid()}"
        os.mkdir(shm, 0o700)
        binp = shutil.copy(binp, shm + "/sockql")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--fill"], check=True)
        for _ in range(runs):
            row = []
            for label, sql in QUERIES:
                if label == "SELECT 1" and "--evict" in sys.argv:
                    fd = os.open(binp, os.O_RDONLY)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.close(fd)
                row.append((label, run(ns, binp, sql)))
            base = row[0][1][0]
            print("  ".join(f"{label}: {h} KiB (anon {a}, mapped {m}, {t} threads)" for label, (h, a, m, t) in row),
                  "  growth: count(*) %+d, SELECT * %+d KiB" % (row[1][1][0] - base, row[2][1][0] - base), flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        if shm:
            shutil.rmtree(shm)


if __name__ == "__main__":
    if sys.argv[1:] == ["--fill"]:
        fill(100_000)
    else:
        main()
