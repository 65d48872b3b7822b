/*
 * notify-listen: plays systemd's side of sd_notify(3) for one process. Binds a unix
 * datagram socket at PATH and prints each message it receives as one line, prefixed
 * with the boot-time clock (the clock /proc/uptime shows) and with its newlines turned
 * into spaces:
 *
 *   notify-listen PATH
 *   12.345 READY=1 STATUS=0/0 vHBAs active, 5 hosts watched
 *   12.846 WATCHDOG=1
 *
 * Runs until killed. Built static by build-guest.sh: the guest has no libc.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    char buf[4096];
    int fd;

    if (argc != 2 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "usage: notify-listen PATH (shorter than %zu bytes)\n", sizeof(addr.sun_path));
        return 2;
    }
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("notify-listen");
        return 1;
    }
    for (;;) {
        struct timespec ts;
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0) {
            perror("notify-listen: recv");
            return 1;
        }
        buf[n] = '\0';
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n' || buf[i] == '\0')
                buf[i] = ' ';
        clock_gettime(CLOCK_BOOTTIME, &ts);
        printf("%ld.%03ld %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000, buf);
        fflush(stdout);
    }
}
