/*
 * probe: a tiny program the sandbox tests run inside the jail, for the
 * things node cannot do directly (raw syscalls with chosen arguments). It is
 * dynamically linked, like node, because the helper only runs programs its
 * shim can be preloaded into; the tests bind its libraries. One action per
 * run; it prints one line "ACTION: result" and exits 0, unless the kernel
 * kills it first. Numbers are decimal; PIDs may carry high bits
 * ("4294967296+123") to check that the filter compares all of them, or be
 * "self".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* "N", "HIGH+N" or "self" (getpid()): a syscall argument as the kernel receives it (64 bits). */
static long arg(const char *s)
{
    if (strcmp(s, "self") == 0)
        return (long)getpid();
    const char *plus = strchr(s, '+');
    if (plus != NULL)
        return (long)(strtoull(s, NULL, 10) + strtoull(plus + 1, NULL, 10));
    return strtol(s, NULL, 10);
}

/* Wait until stdin closes, so that the test can look at this process from outside. */
static void hold(void)
{
    char c;
    while (read(0, &c, 1) > 0)
        ;
}

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

    /* Signals to another process: kill PID SIG, tgkill TGID TID SIG, tkill TID SIG, ... */
    if (strcmp(a, "kill") == 0 && argc > 3)
        return report(a, syscall(SYS_kill, arg(argv[2]), arg(argv[3])));
    if (strcmp(a, "tgkill") == 0 && argc > 4)
        return report(a, syscall(SYS_tgkill, arg(argv[2]), arg(argv[3]), arg(argv[4])));
    if (strcmp(a, "tkill") == 0 && argc > 3)
        return report(a, syscall(SYS_tkill, arg(argv[2]), arg(argv[3])));
    if (strcmp(a, "sigqueue") == 0 && argc > 3) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = (int)arg(argv[3]);
        info.si_code = SI_QUEUE;
        info.si_pid = getpid();
        info.si_uid = getuid();
        return report(a, syscall(SYS_rt_sigqueueinfo, arg(argv[2]), arg(argv[3]), &info));
    }
    if (strcmp(a, "tgsigqueue") == 0 && argc > 3) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = (int)arg(argv[3]);
        info.si_code = SI_QUEUE;
        info.si_pid = getpid();
        info.si_uid = getuid();
        return report(a, syscall(SYS_rt_tgsigqueueinfo, arg(argv[2]), arg(argv[2]), arg(argv[3]), &info));
    }
    if (strcmp(a, "pidfd_open") == 0 && argc > 2)
        return report(a, syscall(SYS_pidfd_open, arg(argv[2]), 0));
    /* fd 0 is no pidfd: the kernel would say EBADF; the filter says EPERM first. */
    if (strcmp(a, "pidfd_send_signal") == 0 && argc > 2)
        return report(a, syscall(SYS_pidfd_send_signal, 0, arg(argv[2]), NULL, 0));
    if (strcmp(a, "pidfd_getfd") == 0)
        return report(a, syscall(SYS_pidfd_getfd, 0, 0, 0));
    /* SIGIO by file ownership: F_SETOWN PID on a pipe, then make it readable. */
    if (strcmp(a, "setown") == 0 && argc > 3) {
        int p[2];
        if (pipe(p) != 0)
            return report("pipe", -1);
        long rc = syscall(SYS_fcntl, p[0], F_SETOWN, arg(argv[2]));
        if (rc == 0 && fcntl(p[0], F_SETSIG, (int)arg(argv[3])) == 0 &&
            fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC) == 0) {
            ssize_t w = write(p[1], "x", 1);
            (void)w;
        }
        return report(a, rc);
    }
    if (strcmp(a, "fiosetown") == 0 && argc > 2) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int pid = (int)arg(argv[2]);
        return report(a, fd < 0 ? -1 : ioctl(fd, FIOSETOWN, &pid));
    }
    /* prlimit PID N: set another process's RLIMIT_NOFILE to N. */
    if (strcmp(a, "prlimit") == 0 && argc > 3) {
        struct rlimit rl = { (rlim_t)arg(argv[3]), (rlim_t)arg(argv[3]) };
        return report(a, syscall(SYS_prlimit64, arg(argv[2]), RLIMIT_NOFILE, &rl, NULL));
    }
    if (strcmp(a, "pdeathsig") == 0)
        return report(a, prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0));
    if (strcmp(a, "dumpable") == 0)
        return report(a, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));

    /* Sockets: socket FAMILY TYPE PROTOCOL, socketpair FAMILY. */
    if (strcmp(a, "socket") == 0 && argc > 4)
        return report(a, syscall(SYS_socket, arg(argv[2]), arg(argv[3]), arg(argv[4])));
    if (strcmp(a, "socketpair") == 0 && argc > 2) {
        int sv[2];
        return report(a, syscall(SYS_socketpair, arg(argv[2]), SOCK_STREAM, 0, sv));
    }
    if (strcmp(a, "bind") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        return report(a, fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sin, sizeof sin));
    }
    /*
     * setsockopt(SOL_SOCKET, OPTNAME) on a socket of its own with
     * SO_REUSEPORT: a program that accepts everything for the filter
     * options, -1 (no program) for the eBPF ones, 1 for a lock, 0 for a
     * detach. Unfiltered the kernel answers each (0, or EBADF, ENOENT): the
     * call got through.
     */
    if (strcmp(a, "sockopt") == 0 && argc > 2) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            return report("socket", -1);
        int optname = (int)arg(argv[2]);
        struct sock_filter accept_all[] = { BPF_STMT(BPF_RET | BPF_K, 0xffffffff) };
        struct sock_fprog program = { .len = 1, .filter = accept_all };
        int value = optname == SO_LOCK_FILTER ? 1 : optname == SO_ATTACH_BPF || optname == SO_ATTACH_REUSEPORT_EBPF ? -1 : 0;
        if (optname == SO_ATTACH_FILTER || optname == SO_ATTACH_REUSEPORT_CBPF)
            return report(a, setsockopt(fd, SOL_SOCKET, optname, &program, sizeof program));
        return report(a, setsockopt(fd, SOL_SOCKET, optname, &value, sizeof value));
    }
    /*
     * listen on a socket of its own (never bound): what listen returns, the
     * port the socket then has, and what accept says; then hold, so that the
     * test can look for a listening port of this uid from outside.
     */
    if (strcmp(a, "listen-new") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return report("socket", -1);
        long rc = listen(fd, 16);
        int listen_errno = errno;
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        memset(&sin, 0, sizeof sin);
        getsockname(fd, (struct sockaddr *)&sin, &len);
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
        printf("listen-new: %ld%s%s port %u accept %s\n", rc, rc < 0 ? " " : "", rc < 0 ? strerror(listen_errno) : "",
               (unsigned)ntohs(sin.sin_port), c >= 0 ? "ok" : strerror(errno));
        fflush(stdout);
        hold();
        return 0;
    }
    fprintf(stderr, "probe: unknown action %s\n", a);
    return 2;
}
