/* The floor of a full-table `sockets` scan: the kernel's own dump time.
 *
 * Sends the same sock_diag dump requests sockql sends for
 * `SELECT count(*) FROM sockets` (TCP of both families in one
 * TCPDIAG_GETSOCK walk, then UDP and raw per family, every state, no
 * extensions), receives every datagram into a 1 MiB buffer as sockql does,
 * and only walks the message headers to find NLMSG_DONE. Prints the number
 * of sockets. Anything sockql adds on top of this is its own cost.
 *
 *   cc -O2 -o dumpfloor bench/dumpfloor.c && ./dumpfloor
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCPDIAG_GETSOCK
#define TCPDIAG_GETSOCK 18
#endif

static char buf[1 << 20];

static long dump(int fd, unsigned short type, const void *body, size_t len, unsigned seq) {
    struct {
        struct nlmsghdr h;
        char body[64];
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

int main(void) {
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
