/* The C notifier of the ready_chain benchmark: what its Rust helper does, in a static
 * binary that costs little to start. Sleeps argv[1] microseconds, sends READY=1 with
 * its CLOCK_MONOTONIC marks in STATUS= to $NOTIFY_SOCKET, then waits to be stopped. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static unsigned long long mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000ULL + t.tv_nsec / 1000;
}
int main(int argc, char **argv) {
    unsigned long long t0 = mono_us();
    long us = argc > 1 ? atol(argv[1]) : 0;
    struct timespec d = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&d, 0);
    const char *s = getenv("NOTIFY_SOCKET");
    if (s && *s) {
        struct sockaddr_un a;
        size_t n = strlen(s);
        if (n >= sizeof a.sun_path) return 1;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        memcpy(a.sun_path, s, n);
        if (s[0] == '@') a.sun_path[0] = 0; /* abstract namespace */
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        char m[128];
        unsigned long long t1 = mono_us();
        int l = snprintf(m, sizeof m, "READY=1\nSTATUS=t0=%llu t1=%llu", t0, t1);
        if (sendto(fd, m, l, 0, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + n) < 0)
            return 1;
    }
    for (;;) pause();
}
