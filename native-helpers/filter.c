/*
 * seccomp: the allowlist (built-in, measured; or a file of the same format)
 * plus fixed rules that no list can loosen. The filter is built while the
 * options are validated (so a bad list fails before anything changes) and
 * loaded after no_new_privs, just before exec.
 */
#include "sandbox.h"

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

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

/* Answered EPERM: no new processes, no identity changes (process.setuid(0) fails cleanly). */
static const char *const answer_eperm[] = {
    "fork", "vfork", "execveat",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid",
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
}

void load_filter(const struct settings *s)
{
    if (s->seccomp == SECCOMP_OFF)
        return; /* a filter inherited from the caller (e.g. systemd) stays, as it must */
    int rc = seccomp_load((scmp_filter_ctx)s->filter);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--seccomp: load the filter");
    int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
    if (mode != 2)
        die(EXIT_APPLY, "--seccomp: read back PR_GET_SECCOMP = %d, expected 2 (filter)", mode);
}
