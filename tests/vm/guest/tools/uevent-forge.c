/*
 * uevent-forge: sends one uevent to the kernel's uevent multicast group (netlink
 * NETLINK_KOBJECT_UEVENT, group 1) from a userspace socket, as an attacker with root
 * in the network namespace could (CVE-2009-1185). The kernel delivers it to every
 * listener like its own; only the sender's portid (nonzero: the kernel picks one for
 * a userspace socket) tells it apart. hbad must drop it and count it as forged.
 *
 *   uevent-forge ACTION DEVPATH [KEY=VALUE...]
 *
 * Sends "ACTION@DEVPATH\0ACTION=...\0DEVPATH=...\0KEY=VALUE\0..." and prints the
 * portid it was sent from. Built static by build-guest.sh: the guest has no libc.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>

static int put(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*len + n > cap)
        return -1;
    memcpy(buf + *len, s, n);
    *len += n;
    return 0;
}

int main(int argc, char **argv)
{
    char buf[4096], line[1024];
    size_t len = 0;
    struct sockaddr_nl me = { .nl_family = AF_NETLINK }, dst = { .nl_family = AF_NETLINK };
    socklen_t melen = sizeof(me);
    int fd, i;

    if (argc < 3) {
        fprintf(stderr, "usage: %s ACTION DEVPATH [KEY=VALUE...]\n", argv[0]);
        return 2;
    }
    snprintf(line, sizeof(line), "%s@%s", argv[1], argv[2]);
    if (put(buf, sizeof(buf), &len, line))
        goto too_long;
    snprintf(line, sizeof(line), "ACTION=%s", argv[1]);
    if (put(buf, sizeof(buf), &len, line))
        goto too_long;
    snprintf(line, sizeof(line), "DEVPATH=%s", argv[2]);
    if (put(buf, sizeof(buf), &len, line))
        goto too_long;
    for (i = 3; i < argc; i++)
        if (put(buf, sizeof(buf), &len, argv[i]))
            goto too_long;

    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
    if (fd < 0) {
        fprintf(stderr, "uevent-forge: socket: %s\n", strerror(errno));
        return 1;
    }
    /* nl_pid 0 asks the kernel to choose: a userspace socket never gets portid 0. */
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0 ||
        getsockname(fd, (struct sockaddr *)&me, &melen) < 0) {
        fprintf(stderr, "uevent-forge: bind: %s\n", strerror(errno));
        return 1;
    }
    dst.nl_groups = 1; /* the kernel's uevent group */
    if (sendto(fd, buf, len, 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
        fprintf(stderr, "uevent-forge: sendto group 1: %s\n", strerror(errno));
        return 1;
    }
    printf("sent %zu bytes from portid %u\n", len, me.nl_pid);
    close(fd);
    return 0;

too_long:
    fprintf(stderr, "uevent-forge: the uevent is longer than %zu bytes\n", sizeof(buf));
    return 2;
}
