/*
 * probe: a tiny static program the sandbox tests run inside the jail, for
 * the things node cannot do directly. One action per run; it prints one line
 * "ACTION: result" and exits 0, unless the kernel kills it first.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *action, long rc)
{
    if (rc < 0)
        printf("%s: -1 %s\n", action, strerror(errno));
    else
        printf("%s: %ld\n", action, rc);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: probe ACTION [ARG]\n");
        return 2;
    }
    const char *a = argv[1];
    if (strcmp(a, "ptrace") == 0)
        return report(a, ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    if (strcmp(a, "fork") == 0) {
        long pid = syscall(SYS_fork);
        if (pid == 0)
            _exit(0);
        return report(a, pid);
    }
    if (strcmp(a, "clone-process") == 0) {
        long pid = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0)
            _exit(0);
        return report(a, pid);
    }
    if (strcmp(a, "clone3") == 0)
        return report(a, syscall(SYS_clone3, NULL, 0));
    if (strcmp(a, "io_uring") == 0) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        return report(a, syscall(SYS_io_uring_setup, 4, &p));
    }
    if (strcmp(a, "setuid") == 0)
        return report(a, syscall(SYS_setuid, 0));
    if (strcmp(a, "mount") == 0)
        return report(a, syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL));
    if (strcmp(a, "exec") == 0 && argc > 2) {
        execv(argv[2], &argv[2]);
        return report(a, -1);
    }
    if (strcmp(a, "fds") == 0) {
        /* Which fds are open, without /proc (there is none in the jail). */
        printf("fds:");
        for (int fd = 0; fd < 1024; fd++)
            if (fcntl(fd, F_GETFD) >= 0)
                printf(" %d", fd);
        printf("\n");
        fflush(stdout);
        return 0;
    }
    if (strcmp(a, "open") == 0 && argc > 2)
        return report(a, open(argv[2], O_RDONLY));
    fprintf(stderr, "probe: unknown action %s\n", a);
    return 2;
}
