#!/usr/bin/env python3
"""Build a reproducible socket (and conntrack) load inside the current
network namespace, for bench/run.sh, then hold it until killed.

  loadgen.py --established E --time-wait T --close-wait C --procs P [--conntrack K]

E established loopback connections (2E sockets), held by P forked processes
(each owns a share of both ends, as a pre-forked server would); T TIME-WAIT
sockets (connect, close first); C CLOSE-WAIT sockets (the peer closes, the
holder never does); K conntrack entries inserted over ctnetlink. Prints
"ready" on stdout when everything is in place. Only loopback is used."""
import argparse, os, resource, signal, socket, struct, sys, time

# listeners: 20 ports spread the 4-tuples (64k ephemeral ports each, so
# a million sockets plus TIME-WAIT fit)
PORTS = list(range(20000, 20020))


def listeners():
    out = []
    for p in PORTS:
        l = socket.socket()
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind(("127.0.0.1", p))
        l.listen(65535)
        out.append(l)
    return out


def pair(ls, i):
    l = ls[i % len(ls)]
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    return c, s


def child(ls, n_estab, n_cw, w):
    held = []
    for i in range(n_estab):
        held.extend(pair(ls, i))
    for i in range(n_cw):
        c, s = pair(ls, i)
        c.close()              # the peer closes; this process never closes s
        held.append(s)
    os.write(w, b"k")
    signal.pause()


def conntrack_insert(n):
    """UDP entries 10.200.x.1:port -> 10.201.0.1:53, 200 per datagram."""
    def nla(kind, payload):
        b = struct.pack("=HH", 4 + len(payload), kind) + payload
        return b + b"\0" * (-len(b) % 4)

    def nested(kind, parts):
        return nla(kind | 0x8000, b"".join(parts))

    def tup(kind, src, dst, sport, dport):
        return nested(kind, [nested(1, [nla(1, src), nla(2, dst)]),
                             nested(2, [nla(1, bytes([17])), nla(2, struct.pack("!H", sport)), nla(3, struct.pack("!H", dport))])])

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    dst = bytes([10, 201, 0, 1])
    batch = []
    for i in range(n):
        src = bytes([10, 200, i // 50000, 1])
        sport = 1024 + i % 50000
        body = bytes([socket.AF_INET, 0, 0, 0]) + tup(1, src, dst, sport, 53) + tup(2, dst, src, 53, sport) + nla(7, struct.pack("!I", 600))
        batch.append(struct.pack("=IHHII", 16 + len(body), 0x0100, 0x1 | 0x400 | 0x200, i, 0) + body)
        if len(batch) == 200 or i == n - 1:
            s.send(b"".join(batch))
            batch = []


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--established", type=int, default=0)
    a.add_argument("--time-wait", type=int, default=0)
    a.add_argument("--close-wait", type=int, default=0)
    a.add_argument("--procs", type=int, default=1)
    a.add_argument("--conntrack", type=int, default=0)
    o = a.parse_args()
    # Each holder keeps its share of the sockets open: the soft fd limit
    # (1024) is too small at a million sockets.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ls = listeners()
    # TIME-WAIT first: the active closer (the client) keeps the 4-tuple.
    for i in range(o.time_wait):
        c, s = pair(ls, i)
        c.close()
        s.close()
    r, w = os.pipe()
    kids = []
    for k in range(o.procs):
        share = lambda total: total // o.procs + (1 if k < total % o.procs else 0)
        pid = os.fork()
        if pid == 0:
            child(ls, share(o.established), share(o.close_wait), w)
            os._exit(0)
        kids.append(pid)
    got = 0
    while got < o.procs:
        got += len(os.read(r, o.procs))
    if o.conntrack:
        conntrack_insert(o.conntrack)
    print("ready", flush=True)

    def stop(*_):
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
