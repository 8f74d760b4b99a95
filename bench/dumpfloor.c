/* The floor of a full-table `sockets` scan: the kernel's own dump time.
 *
 * Sends the same sock_diag dump requests sockql sends for
 * `SELECT count(*) FROM sockets` (TCP of both families in one
 * TCPDIAG_GETSOCK walk, then UDP and raw per family, every state, no
 * extensions), receives every datagram into a 1 MiB buffer as sockql does,
 * and only walks the message headers to find NLMSG_DONE. Prints the number
 * of sockets. Anything sockql adds on top of this is its own cost.
 *
 *   cc -O2 -pthread -o dumpfloor bench/dumpfloor.c && ./dumpfloor
 *
 * `./dumpfloor --split PORT` asks whether the floor can be shared between
 * cores: two threads dump TCP at once, one the sockets with a local port
 * below PORT, one the rest (a filter program each), and it prints each
 * half's count and time and the wall time.
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef TCPDIAG_GETSOCK
#define TCPDIAG_GETSOCK 18
#endif

static __thread char buf[1 << 20];

static long dump(int fd, unsigned short type, const void *body, size_t len, unsigned seq) {
    struct {
        struct nlmsghdr h;
        char body[80];
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = NLMSG_LENGTH(len);
    req.h.nlmsg_type = type;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = seq;
    memcpy(req.body, body, len);
    if (send(fd, &req, req.h.nlmsg_len, 0) < 0) {
        perror("send");
        exit(1);
    }
    long n = 0;
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            perror("recv");
            exit(1);
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return n;
            if (h->nlmsg_type == NLMSG_ERROR) {
                /* raw_diag missing: sockql reads /proc/net/raw then */
                return n;
            }
            n++;
        }
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* One half of a split TCP dump: local port below `port` (ge = 0) or not. */
struct half {
    int ge;
    unsigned short port;
    long n;
    double seconds;
};

static void *dump_half(void *p) {
    struct half *h = p;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    struct {
        struct inet_diag_req r;
        struct nlattr attr;
        struct inet_diag_bc_op op, port;
    } __attribute__((packed)) req;
    memset(&req, 0, sizeof req);
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = ~0U;
    req.r.idiag_states = 0x1ffe;
    req.attr.nla_len = sizeof req.attr + 2 * sizeof req.op;
    req.attr.nla_type = INET_DIAG_REQ_BYTECODE;
    /* S_LE port-1 or S_GE port; false jumps past the end (reject). */
    req.op.code = h->ge ? INET_DIAG_BC_S_GE : INET_DIAG_BC_S_LE;
    req.op.yes = 2 * sizeof req.op;
    req.op.no = 2 * sizeof req.op + 4;
    req.port.no = h->ge ? h->port : h->port - 1;
    double t0 = now();
    h->n = dump(fd, TCPDIAG_GETSOCK, &req, sizeof req, 1);
    h->seconds = now() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--split") == 0) {
        struct half lo = {0, (unsigned short)atoi(argv[2]), 0, 0}, hi = {1, lo.port, 0, 0};
        pthread_t a, b;
        double t0 = now();
        pthread_create(&a, NULL, dump_half, &lo);
        pthread_create(&b, NULL, dump_half, &hi);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        printf("below %u: %ld in %.3f s; the rest: %ld in %.3f s; wall %.3f s\n", lo.port, lo.n, lo.seconds, hi.n, hi.seconds, now() - t0);
        return 0;
    }
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    unsigned seq = 0;
    long total = 0;

    /* struct inet_diag_req: family ignored by TCPDIAG_GETSOCK (both). */
    struct inet_diag_req old;
    memset(&old, 0, sizeof old);
    old.id.idiag_cookie[0] = old.id.idiag_cookie[1] = ~0U;
    old.idiag_states = 0x1ffe; /* every TCP state, as sockql asks */
    total += dump(fd, TCPDIAG_GETSOCK, &old, sizeof old, ++seq);

    int protos[] = {IPPROTO_UDP, IPPROTO_RAW};
    int families[] = {AF_INET, AF_INET6};
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 2; f++) {
            struct inet_diag_req_v2 r;
            memset(&r, 0, sizeof r);
            r.sdiag_family = families[f];
            r.sdiag_protocol = protos[p];
            r.idiag_states = 0x1ffe;
            r.id.idiag_cookie[0] = r.id.idiag_cookie[1] = ~0U;
            total += dump(fd, SOCK_DIAG_BY_FAMILY, &r, sizeof r, ++seq);
        }
    printf("%ld\n", total);
    return 0;
}
