/*
 * The tests' stand-in for systemd's notify socket: binds a unix datagram
 * socket at argv[1], asks for the senders' credentials, and prints one line
 * per message: the sender's pid, a tab, the message with newlines as "|".
 * Runs until killed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (fd < 0 || strlen(argv[1]) >= sizeof(address.sun_path)) return 1;
    strcpy(address.sun_path, argv[1]);
    unlink(argv[1]);
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0) return 1;
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0) return 1;
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        char text[4096];
        union {
            char buffer[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = text, .iov_len = sizeof(text) - 1};
        struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof(control.buffer)};
        ssize_t length = recvmsg(fd, &message, 0);
        if (length < 0) return 1;
        text[length] = '\0';
        for (ssize_t i = 0; i < length; i++) if (text[i] == '\n') text[i] = '|';
        long pid = -1;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        if (header != NULL && header->cmsg_type == SCM_CREDENTIALS) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(header), sizeof(credentials));
            pid = credentials.pid;
        }
        printf("%ld\t%s\n", pid, text);
        fflush(stdout);
    }
}
