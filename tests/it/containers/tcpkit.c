/* tcpkit: the TCP ends the container tests run inside their containers
 * (compiled static, so the image needs nothing but busybox's sh).
 *   tcpkit serve PORT       listen, accept every connection and hold it:
 *                           never read, never close (a peer that closes
 *                           leaves it in CLOSE-WAIT, a leak)
 *   tcpkit hold IP PORT N   open N connections, send 5 bytes on each and
 *                           hold them (ESTAB)
 *   tcpkit churn IP PORT N  open N connections and close each at once
 * Every mode then sleeps until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int dial(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) exit(2);
    for (int tries = 0; tries < 200; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        usleep(50000);
    }
    exit(3);
}

int main(int argc, char **argv) {
    if (argc == 3 && argv[1][0] == 's') {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 128)) return 4;
        for (;;) accept(l, 0, 0);
    }
    if (argc == 5) {
        int n = atoi(argv[4]);
        for (int i = 0; i < n; i++) {
            int fd = dial(argv[2], atoi(argv[3]));
            if (argv[1][0] == 'c') close(fd);
            else if (write(fd, "hello", 5) != 5) return 5;
        }
        for (;;) pause();
    }
    return 1;
}
