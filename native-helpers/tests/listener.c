/*
 * listener: stands in for the master's side of the listening-socket
 * contract. Binds a TCP socket on 127.0.0.1 (port chosen by the kernel),
 * listens on it, puts it at fd 3 (inherited, like the sockets the master
 * passes), prints "port N", and execs the rest of its command line (the
 * sandbox helper). It never accepts: whoever holds fd 3 does. With
 * --bound-only it binds but does not listen (the helper's --listen-fd does).
 *
 *   listener [--bound-only] -- PROGRAM [ARG...]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int first = 1, listening = 1;
    if (argc > 1 && strcmp(argv[1], "--bound-only") == 0) {
        listening = 0;
        first = 2;
    }
    if (argc < first + 2 || strcmp(argv[first], "--") != 0) {
        fprintf(stderr, "usage: listener [--bound-only] -- PROGRAM [ARG...]\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || (listening && listen(fd, 64) != 0) ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0 || dup2(fd, 3) != 3) {
        perror("listener");
        return 1;
    }
    if (fd != 3)
        close(fd);
    printf("port %u\n", (unsigned)ntohs(sin.sin_port));
    fflush(stdout);
    execv(argv[first + 1], &argv[first + 1]);
    perror("listener: exec");
    return 127;
}
