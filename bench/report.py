#!/usr/bin/env python3
"""Turn bench/run.sh's hyperfine JSON and memory readings into BENCHMARKS.md."""
import glob, json, os, platform, re, subprocess, sys

work, sizes = sys.argv[1], sys.argv[2].split()


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def short(cmd):
    cmd = re.sub(r"ip netns exec \S+ ", "", cmd)
    cmd = re.sub(r"\S*/sockql --format csv ", "sockql ", cmd)
    return cmd.replace("|", "\\|")


cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
mem_gib = sh("free -g | awk '/Mem:/{print $2}'")
first = glob.glob(os.path.join(work, "*-1-floor.json"))[0]
runs = len(json.load(open(first))["results"][0]["times"])
date = sh("date -u +%Y-%m-%d")
print("# Benchmarks\n")
print(f"Machine: {cpu}, {os.cpu_count()} cores, {mem_gib} GiB, Linux {platform.release()}. "
      f"Made by `bash bench/run.sh` on {date}; every group of commands was timed side by side in the same run "
      f"with hyperfine (medians of {runs} runs after 2 warm-ups), inside the load's network namespace. "
      "Ratio = sockql median / the first command's median (below 1: sockql is faster).\n")
print("The load at size N: N/2 established loopback connections (N sockets), N/5 TIME-WAIT, N/50 CLOSE-WAIT, "
      "N/200 processes (at least 5) holding them, N conntrack entries.\n")
for n in sizes:
    count = open(os.path.join(work, f"count-{n}")).read().strip()
    print(f"## {int(n):,} (sockets in the namespace: {count})\n")
    print("| case | command | median ms | ratio |")
    print("|---|---|---:|---:|")
    for f in sorted(glob.glob(os.path.join(work, f"{n}-*.json"))):
        case = os.path.basename(f)[len(n) + 1:-5]
        res = json.load(open(f))["results"]
        base = res[0]["median"]
        for i, r in enumerate(res):
            ratio = "" if i == 0 or len(res) == 1 else f"{r['median'] / base:.2f}"
            print(f"| {case} | `{short(r['command'])}` | {r['median'] * 1000:.1f} | {ratio} |")
    print("\nPeak resident memory (KiB) of sockql:\n")
    print("| query | KiB |\n|---|---:|")
    for line in open(os.path.join(work, f"mem-{n}")):
        name, kib = line.split()
        print(f"| {name} | {kib} |")
    print()
