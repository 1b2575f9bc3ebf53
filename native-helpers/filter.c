/*
 * seccomp: two filters, both built while the options are validated (so a
 * bad list fails before anything changes) and loaded after no_new_privs,
 * just before exec.
 *
 *  1. The allowlist (built-in, measured; or a file of the same format) with
 *     the fixed per-syscall rules below: whatever the list says, these
 *     syscalls keep their fixed action.
 *  2. The restrictions: rules on syscall ARGUMENTS (which pid a signal may
 *     go to, which socket family, which fcntl command...), in a filter of
 *     their own whose default is to allow. libseccomp cannot mix an
 *     unconditional rule and conditional rules for one syscall in one
 *     filter (the conditional ones are silently dropped), and the kernel
 *     runs every stacked filter and takes the strictest answer
 *     (seccomp(2), "multiple filters"): a list that allows kill still
 *     cannot signal another process, and a list that leaves kill out still
 *     kills the caller.
 *
 * After exec, the preloaded shim (lock.c) stacks a third filter that
 * refuses execve: the helper's own exec is the last one.
 */
#include "sandbox.h"

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/socket.h>
#include <fcntl.h>

#if !defined(__x86_64__)
#error "miwidothttp-sandbox: the seccomp allowlist was measured on x86_64 only"
#endif

/* The built-in list, generated from seccomp-default.list by the Makefile. */
static const char default_list[] =
#include "seccomp-default.h"
    "";

/* Always kill, whatever the list says and whatever the default action. */
static const char *const always_kill[] = {
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "unshare", "setns", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at",
};

/* Answered ENOSYS so that callers fall back (glibc: clone3 -> clone; libuv: io_uring -> epoll). */
static const char *const answer_enosys[] = {
    "clone3", "io_uring_setup", "io_uring_enter", "io_uring_register",
};

/*
 * Answered EPERM: no new processes, no identity changes (process.setuid(0)
 * fails cleanly); no bind: a worker serves only the sockets the master
 * passed, and a socket bound to an address is a port of its own (getaddrinfo
 * binds only its netlink socket, which the restrictions refuse, and then
 * falls back). No signal by thread id or with a payload, no pidfd: kill and
 * tgkill (restricted to the worker's own pid below) are the only way out,
 * and glibc's raise/abort use tgkill.
 */
static const char *const answer_eperm[] = {
    "fork", "vfork", "execveat",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid",
    "bind",
    "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
};

/*
 * Answered 0 without running. listen() on a socket that is already
 * listening only changes its backlog, so node's server.listen({ fd }) on a
 * socket the master passed (bound and listening) still succeeds. On any
 * other TCP socket the kernel would bind a free port first ("autobind",
 * inet_listen) and make it a listening port of the worker's own: answered
 * 0 and not run, that socket is never listening (accept fails with EINVAL).
 */
static const char *const answer_zero[] = {
    "listen",
};

/*
 * Always allowed: the helper's own last steps run under the filter
 * (close_range/close, the PR_GET_SECCOMP read-back, a failure line on
 * stderr, exit) and end in execve.
 */
static const char *const always_allow[] = {
    "execve", "close_range", "close", "prctl", "write", "exit_group",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_set(const char *name, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, set[i]) == 0)
            return 1;
    return 0;
}

static int resolve(const char *what, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR || nr < 0)
        die(EXIT_APPLY, "%s: unknown syscall \"%s\" on x86_64", what, name);
    return nr;
}

static void add_rule(scmp_filter_ctx ctx, uint32_t def, uint32_t action, const char *what, const char *name)
{
    if (action == def)
        return; /* libseccomp refuses rules equal to the default action */
    int nr = resolve(what, name);
    int rc = seccomp_rule_add(ctx, action, nr, 0);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "%s: add a rule for %s", what, name);
}

/* Parse a list ("name" per line, '#' comments, blanks ignored) and allow each name. */
static void add_list(scmp_filter_ctx ctx, uint32_t def, const char *what, const char *text)
{
    const char *p = text;
    int lineno = 0;
    while (*p) {
        lineno++;
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char line[128];
        size_t o = 0;
        for (size_t i = 0; i < len && p[i] != '#'; i++) {
            char c = p[i];
            if (c == ' ' || c == '\t' || c == '\r')
                continue;
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') || o + 1 >= sizeof line)
                die(EXIT_APPLY, "%s: line %d: not a syscall name", what, lineno);
            line[o++] = c;
        }
        line[o] = '\0';
        p = end ? end + 1 : p + len;
        if (o == 0)
            continue;
        /* Names with a fixed rule keep that rule. */
        if (strcmp(line, "clone") == 0 || in_set(line, always_kill, COUNT(always_kill)) ||
            in_set(line, answer_enosys, COUNT(answer_enosys)) || in_set(line, answer_eperm, COUNT(answer_eperm)) ||
            in_set(line, answer_zero, COUNT(answer_zero)) ||
            in_set(line, always_allow, COUNT(always_allow))) {
            resolve(what, line);
            continue;
        }
        add_rule(ctx, def, SCMP_ACT_ALLOW, what, line);
    }
}

static char *read_list_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        die_errno(EXIT_APPLY, errno, "--seccomp %s", path);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        die_errno(EXIT_APPLY, ENOMEM, "--seccomp %s", path);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 >= cap) {
            if (cap >= (1u << 20))
                die(EXIT_APPLY, "--seccomp %s: larger than 1 MiB", path);
            cap *= 2;
            char *bigger = realloc(buf, cap);
            if (bigger == NULL)
                die_errno(EXIT_APPLY, ENOMEM, "--seccomp %s", path);
            buf = bigger;
        }
    }
    if (ferror(f))
        die_errno(EXIT_APPLY, errno, "--seccomp %s: read", path);
    fclose(f);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL)
        die(EXIT_APPLY, "--seccomp %s: contains a NUL byte", path);
    return buf;
}

/* The low 32 bits of an int or unsigned int argument: the kernel ignores the rest, so a deny rule must too. */
#define INT_ARG_EQ(n, v) SCMP_CMP((n), SCMP_CMP_MASKED_EQ, 0xffffffffULL, (scmp_datum_t)(uint32_t)(v))

static void restrict_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned int count,
                          const struct scmp_arg_cmp *a, const struct scmp_arg_cmp *b)
{
    int nr = resolve("--seccomp restrictions", name);
    int rc = count == 1 ? seccomp_rule_add(ctx, action, nr, 1, *a) : seccomp_rule_add(ctx, action, nr, 2, *a, *b);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp: add the argument restriction for %s", name);
}

/*
 * The argument rules. Each allows exactly one value (compared on all 64
 * bits) and refuses everything else, or refuses a value compared on the 32
 * bits the kernel reads: a value with stray high bits can never slip past.
 */
static void *build_restrictions(const struct settings *s)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL)
        die(EXIT_APPLY, "--seccomp: seccomp_init failed");
    int rc;
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp: set the bad-architecture action");
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    const uint32_t eafnosupport = SCMP_ACT_ERRNO(EAFNOSUPPORT);
    struct scmp_arg_cmp c;

    /*
     * Signals only to the worker itself. exec keeps the pid, so the helper's
     * pid is the worker's. kill(0) (the process group: the master's, shared
     * with every sibling), kill(-1) and kill(sibling) are refused. glibc's
     * raise() and abort() send tgkill(getpid(), gettid(), sig).
     */
    c = SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)s->pid);
    restrict_rule(ctx, eperm, "kill", 1, &c, NULL);
    restrict_rule(ctx, eperm, "tgkill", 1, &c, NULL);

    /*
     * Resource limits of the worker itself only (pid 0): prlimit64 on a
     * process of the same uid could set a sibling's RLIMIT_CPU to 0 (a kill
     * by another name). glibc's getrlimit/setrlimit pass 0.
     */
    c = SCMP_A0(SCMP_CMP_NE, 0);
    restrict_rule(ctx, eperm, "prlimit64", 1, &c, NULL);

    /*
     * Socket families: AF_UNIX, AF_INET, AF_INET6 (1, 2, 10). No netlink
     * (sock_diag lists every socket of the host; route), no AF_PACKET, no
     * AF_VSOCK (the hypervisor), no AF_ALG, no bluetooth, ...
     */
    static const scmp_datum_t refused_families[] = { 0, 3, 4, 5, 6, 7, 8, 9 };
    for (size_t i = 0; i < COUNT(refused_families); i++) {
        c = SCMP_A0(SCMP_CMP_EQ, refused_families[i]);
        restrict_rule(ctx, eafnosupport, "socket", 1, &c, NULL);
    }
    c = SCMP_A0(SCMP_CMP_GT, AF_INET6);
    restrict_rule(ctx, eafnosupport, "socket", 1, &c, NULL);
    c = SCMP_A0(SCMP_CMP_NE, AF_UNIX);
    restrict_rule(ctx, eafnosupport, "socketpair", 1, &c, NULL);

    /*
     * No signal by file ownership: F_SETOWN/F_SETOWN_EX (and the ioctls
     * FIOSETOWN/SIOCSPGRP) name a process that gets SIGIO, or the signal
     * F_SETSIG picks (SIGSTOP included), whenever the file is ready; the
     * kernel only checks that the uids match (fcntl(2), sigio_perm). Node
     * and libuv use none of them. TIOCSTI would type into a terminal the
     * helper was started from.
     */
    static const unsigned int refused_fcntl[] = { F_SETOWN, F_SETSIG, F_SETOWN_EX };
    for (size_t i = 0; i < COUNT(refused_fcntl); i++) {
        c = INT_ARG_EQ(1, refused_fcntl[i]);
        restrict_rule(ctx, eperm, "fcntl", 1, &c, NULL);
    }
    static const unsigned int refused_ioctl[] = { FIOSETOWN, SIOCSPGRP, TIOCSTI };
    for (size_t i = 0; i < COUNT(refused_ioctl); i++) {
        c = INT_ARG_EQ(1, refused_ioctl[i]);
        restrict_rule(ctx, eperm, "ioctl", 1, &c, NULL);
    }

    /*
     * No program on a socket: a listening socket's SO_REUSEPORT group
     * carries the master's program that hands connections to the workers in
     * turn (native-helpers/listen.c); a worker holds one socket of each
     * group and could replace it (and take every new connection, or send
     * them to a socket nobody accepts on), remove it, or put a filter that
     * drops everything on its socket and lock it (SO_LOCK_FILTER). Node,
     * libuv and OpenSSL set none of these.
     */
    static const unsigned int refused_sockopts[] = {
        SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER, SO_ATTACH_BPF,
        SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF, SO_DETACH_REUSEPORT_BPF,
    };
    struct scmp_arg_cmp level = INT_ARG_EQ(1, SOL_SOCKET);
    for (size_t i = 0; i < COUNT(refused_sockopts); i++) {
        c = INT_ARG_EQ(2, refused_sockopts[i]);
        restrict_rule(ctx, eperm, "setsockopt", 2, &level, &c);
    }

    /*
     * The worker dies with the master: PR_SET_PDEATHSIG cannot be changed
     * (a worker that outlives its master keeps the listening sockets).
     */
    c = INT_ARG_EQ(0, PR_SET_PDEATHSIG);
    restrict_rule(ctx, eperm, "prctl", 1, &c, NULL);

    return ctx;
}

void build_filter(struct settings *s)
{
    if (s->seccomp == SECCOMP_OFF)
        return;
    const char *what = s->seccomp == SECCOMP_FILE ? s->seccomp_file : "--seccomp default";
    char what_buf[512];
    if (s->seccomp == SECCOMP_FILE) {
        snprintf(what_buf, sizeof what_buf, "--seccomp %s", s->seccomp_file);
        what = what_buf;
    }
    uint32_t def = s->seccomp_action == ACTION_KILL ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(EPERM);
    scmp_filter_ctx ctx = seccomp_init(def);
    if (ctx == NULL)
        die(EXIT_APPLY, "%s: seccomp_init failed", what);
    int rc;
    /* A syscall from another ABI (i386 int 0x80, x32) kills: the list is for x86_64 only. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        die_errno(EXIT_APPLY, -rc, "%s: set the bad-architecture action", what);
    if (s->seccomp_action == ACTION_ERRNO && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1)) < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp-action errno: enable logging of denied syscalls");
    /* The helper is single-threaded when it loads the filter; no TSYNC needed. */
    /* A binary tree over syscall numbers instead of a linear chain: every
     * syscall a busy worker makes runs this filter, and with ~80 allowed
     * syscalls the chain was a measurable share of a small request's cost. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        die_errno(EXIT_APPLY, -rc, "%s: ask libseccomp for a binary-tree filter", what);

    if (s->seccomp == SECCOMP_FILE) {
        char *text = read_list_file(s->seccomp_file);
        add_list(ctx, def, what, text);
        free(text);
    } else {
        add_list(ctx, def, what, default_list);
    }

    for (size_t i = 0; i < COUNT(always_allow); i++)
        add_rule(ctx, def, SCMP_ACT_ALLOW, what, always_allow[i]);
    for (size_t i = 0; i < COUNT(always_kill); i++)
        add_rule(ctx, def, SCMP_ACT_KILL_PROCESS, what, always_kill[i]);
    for (size_t i = 0; i < COUNT(answer_enosys); i++)
        add_rule(ctx, def, SCMP_ACT_ERRNO(ENOSYS), what, answer_enosys[i]);
    for (size_t i = 0; i < COUNT(answer_eperm); i++)
        add_rule(ctx, def, SCMP_ACT_ERRNO(EPERM), what, answer_eperm[i]);
    for (size_t i = 0; i < COUNT(answer_zero); i++)
        add_rule(ctx, def, SCMP_ACT_ERRNO(0), what, answer_zero[i]);

    /* Threads yes, processes no: clone only with CLONE_THREAD set. */
    int clone_nr = resolve(what, "clone");
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, clone_nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "%s: add the clone(CLONE_THREAD) rule", what);
    if (def != SCMP_ACT_ERRNO(EPERM))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), clone_nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "%s: add the clone(no CLONE_THREAD) rule", what);

    s->filter = ctx;
    s->restrictions = build_restrictions(s);
}

void load_filter(const struct settings *s)
{
    if (s->seccomp == SECCOMP_OFF)
        return; /* a filter inherited from the caller (e.g. systemd) stays, as it must */
    /* The restrictions first: the allowlist is the filter that lets the helper's last steps run. */
    int rc = seccomp_load((scmp_filter_ctx)s->restrictions);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp: load the argument restrictions");
    rc = seccomp_load((scmp_filter_ctx)s->filter);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp: load the filter");
    int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
    if (mode != 2)
        die(EXIT_APPLY, "--seccomp: read back PR_GET_SECCOMP = %d, expected 2 (filter)", mode);
    /*
     * Read back the restrictions with a call every list allows (prctl is
     * always allowed by the first filter): setting the parent death signal
     * again, to the SIGKILL it already is, must now be refused.
     */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0 || errno != EPERM)
        die(EXIT_APPLY, "--seccomp: the argument restrictions did not read back (PR_SET_PDEATHSIG was not refused)");
}
