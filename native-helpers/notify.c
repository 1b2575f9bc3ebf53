/*
 * miwidothttp-notify: sends one sd_notify(3) message for the master.
 *
 *   miwidothttp-notify PID 'READY=1\nSTATUS=serving'
 *
 * Node has no AF_UNIX datagram sockets, so the master runs this for each
 * message. The message goes to $NOTIFY_SOCKET (a path, or "@name" in the
 * abstract namespace) with SCM_CREDENTIALS naming PID as the sender, so that
 * systemd, which with NotifyAccess=main accepts messages only from the
 * service's main process, sees them as the master's (the kernel lets a
 * root sender name another pid: CAP_SYS_ADMIN). Exit 0 when sent, or when
 * NOTIFY_SOCKET is unset (not under systemd); 1 with one line otherwise.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "miwidothttp-notify: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: miwidothttp-notify PID MESSAGE\n");
        return 2;
    }
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') return 0;

    char *end = NULL;
    errno = 0;
    long pid = strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || pid <= 0) {
        fprintf(stderr, "miwidothttp-notify: not a pid: %s\n", argv[1]);
        return 2;
    }

    struct sockaddr_un address = {.sun_family = AF_UNIX};
    size_t length = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || length >= sizeof(address.sun_path)) {
        fprintf(stderr, "miwidothttp-notify: NOTIFY_SOCKET is not a socket path: %s\n", path);
        return 1;
    }
    memcpy(address.sun_path, path, length);
    if (path[0] == '@') address.sun_path[0] = '\0'; /* abstract namespace */
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");

    struct iovec iov = {.iov_base = argv[2], .iov_len = strlen(argv[2])};
    union {
        char buffer[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr message = {
        .msg_name = &address,
        .msg_namelen = address_length,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buffer,
        .msg_controllen = sizeof(control.buffer),
    };
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_CREDENTIALS;
    header->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred credentials = {.pid = (pid_t)pid, .uid = getuid(), .gid = getgid()};
    memcpy(CMSG_DATA(header), &credentials, sizeof(credentials));

    if (sendmsg(fd, &message, MSG_NOSIGNAL) < 0) {
        /* Not allowed to speak for that pid (not root): send as ourselves. */
        if (errno != EPERM) return fail("sendmsg");
        message.msg_control = NULL;
        message.msg_controllen = 0;
        if (sendmsg(fd, &message, MSG_NOSIGNAL) < 0) return fail("sendmsg");
    }
    close(fd);
    return 0;
}
