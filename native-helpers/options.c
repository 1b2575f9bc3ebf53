/*
 * Option parsing and validation. Everything here runs before the helper
 * changes anything: a bad value or a conflict ends it with 125 or 126 while
 * the system is untouched.
 *
 * The parser is hand-written rather than getopt_long so that it is strict:
 * long options only, spelled in full (no abbreviations), "--opt VALUE" or
 * "--opt=VALUE", and PROGRAM only after "--".
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum opt {
    OPT_RUN_AS_USER, OPT_RUN_AS_GROUP, OPT_CHROOT, OPT_BIND_RO, OPT_WORKING_DIR,
    OPT_MAX_MEMORY, OPT_MAX_CPU_PERCENT, OPT_MAX_PIDS, OPT_MAX_OPEN_FILES,
    OPT_CGROUP, OPT_SECCOMP, OPT_SECCOMP_ACTION, OPT_APPARMOR_PROFILE,
    OPT_KEEP_FD, OPT_LISTEN_FD, OPT_CHECK, OPT_HELP, OPT_COUNT
};

static const struct {
    const char *name;
    int has_arg;
    int repeatable;
} options[OPT_COUNT] = {
    [OPT_RUN_AS_USER] = { "--run-as-user", 1, 0 },
    [OPT_RUN_AS_GROUP] = { "--run-as-group", 1, 0 },
    [OPT_CHROOT] = { "--chroot", 1, 0 },
    [OPT_BIND_RO] = { "--bind-ro", 1, 1 },
    [OPT_WORKING_DIR] = { "--working-dir", 1, 0 },
    [OPT_MAX_MEMORY] = { "--max-memory", 1, 0 },
    [OPT_MAX_CPU_PERCENT] = { "--max-cpu-percent", 1, 0 },
    [OPT_MAX_PIDS] = { "--max-pids", 1, 0 },
    [OPT_MAX_OPEN_FILES] = { "--max-open-files", 1, 0 },
    [OPT_CGROUP] = { "--cgroup", 1, 0 },
    [OPT_SECCOMP] = { "--seccomp", 1, 0 },
    [OPT_SECCOMP_ACTION] = { "--seccomp-action", 1, 0 },
    [OPT_APPARMOR_PROFILE] = { "--apparmor-profile", 1, 0 },
    [OPT_KEEP_FD] = { "--keep-fd", 1, 1 },
    [OPT_LISTEN_FD] = { "--listen-fd", 1, 1 },
    [OPT_CHECK] = { "--check", 0, 0 },
    [OPT_HELP] = { "--help", 0, 0 },
};

void print_help(void)
{
    static const char text[] =
"Usage: " PROG " [OPTIONS] -- PROGRAM [ARG...]\n"
"       " PROG " --check [OPTIONS] [-- PROGRAM [ARG...]]\n"
"\n"
"Apply the isolation settings given as options, read each one back, then\n"
"exec PROGRAM (an absolute path, inside the jail when --chroot is given; a\n"
"dynamically linked x86_64 ELF program, see \"After exec\" below).\n"
"Nothing is printed on success: the helper becomes PROGRAM.\n"
"\n"
"Order: validate every option; cgroup (create, limits, attach); rlimits;\n"
"jail (private mount namespace, overlay, bind mounts, the preload shim);\n"
"apparmor exec profile; drop the capability bounding set; chroot + chdir;\n"
"setgroups; setresgid; setresuid; clear capabilities; PR_SET_PDEATHSIG;\n"
"check PROGRAM; no_new_privs; seccomp; close stray fds; exec.\n"
"\n"
"Options (long only, spelled in full; --opt VALUE or --opt=VALUE):\n"
"  --run-as-user NAME|UID     drop to this user. A NAME is looked up: its uid,\n"
"                             primary group and supplementary groups\n"
"                             (initgroups). A UID (all digits) is used as\n"
"                             given, without any lookup (no passwd entry\n"
"                             needed): no supplementary groups, and\n"
"                             --run-as-group is required. Then setgroups,\n"
"                             setresgid, setresuid, each read back. Refuses\n"
"                             uid 0.\n"
"  --run-as-group NAME|GID    primary group (default: the user's primary\n"
"                             group). A GID (all digits) is used as given.\n"
"                             Refuses gid 0. Requires --run-as-user.\n"
"  --chroot DIR               jail root: an existing directory, absolute path,\n"
"                             owned by root (or the helper's owner) and not\n"
"                             writable by group or others, below directories\n"
"                             of the same kind (or sticky, like /tmp). An\n"
"                             overlay (tmpfs upper, private mount\n"
"                             namespace) is mounted on it, so DIR itself is\n"
"                             never written, then made read-only. When the\n"
"                             caller is root it requires --run-as-user.\n"
"  --bind-ro SRC[:DST]        repeatable; requires --chroot. Read-only, nosuid,\n"
"                             nodev bind mount of host path SRC (file, dir or\n"
"                             unix socket; symlinks resolved) at DST inside\n"
"                             the jail\n"
"                             (default: SRC as given). DST must be absolute\n"
"                             without \"..\"; its parents are created in the\n"
"                             overlay. " JAIL_SHIM_DIR " and\n"
"                             " JAIL_PRELOAD_LIST " are reserved.\n"
"  --working-dir DIR          chdir to DIR (inside the jail) before exec\n"
"                             (default \"/\").\n"
"  --max-memory SIZE          memory limit: bytes, or a number with K, M or G\n"
"                             (1024-based). v1: memory.limit_in_bytes (and\n"
"                             memory.memsw.limit_in_bytes when present); v2:\n"
"                             memory.max (and memory.swap.max=0). Requires\n"
"                             --cgroup.\n"
"  --max-cpu-percent N        CPU quota in percent of ONE cpu (50 -> 50000 per\n"
"                             100000us period; 200 = two CPUs). Requires\n"
"                             --cgroup.\n"
"  --max-pids N               pids.max (threads count). Requires --cgroup.\n"
"  --max-open-files N         RLIMIT_NOFILE soft = hard = N. RLIMIT_CORE is\n"
"                             always set to 0.\n"
"  --cgroup PATH              relative path of the worker's cgroup under each\n"
"                             hierarchy root (e.g. miwidothttp.slice/w-3-0).\n"
"                             Created with its parents where missing; limits\n"
"                             written; the helper then moves itself in. Pure v2\n"
"                             when /sys/fs/cgroup/cgroup.controllers exists\n"
"                             (needed controllers enabled in each ancestor's\n"
"                             cgroup.subtree_control); otherwise the v1\n"
"                             memory, cpu and pids hierarchies found in\n"
"                             /proc/self/mountinfo, or the v2 mount for a\n"
"                             controller that lives there. A controller needed\n"
"                             by a given limit and found nowhere is an error.\n"
"                             Removing the cgroup is the caller's job.\n"
"  --seccomp default|off|FILE seccomp allowlist: the built-in list (measured,\n"
"                             see seccomp-default.list), none, or FILE (one\n"
"                             syscall name per line, '#' comments). Fixed rules\n"
"                             apply on top of any list: clone only with\n"
"                             CLONE_THREAD; clone3/io_uring_* -> ENOSYS;\n"
"                             fork/vfork/execveat, the set*id family, bind,\n"
"                             tkill, rt_(tg)sigqueueinfo, pidfd_* -> EPERM;\n"
"                             listen -> 0 without running (only a socket the\n"
"                             caller passed listening ever listens); kill\n"
"                             and tgkill only to the program's own pid; socket\n"
"                             only AF_UNIX/AF_INET/AF_INET6 and socketpair only\n"
"                             AF_UNIX (else EAFNOSUPPORT); prlimit64 only on\n"
"                             itself; no F_SETOWN/F_SETSIG/FIOSETOWN/SIOCSPGRP/\n"
"                             TIOCSTI; PR_SET_PDEATHSIG fixed; ptrace, mount,\n"
"                             bpf, ... kill the process. Default: default.\n"
"  --seccomp-action kill|errno  action for syscalls outside the list: kill the\n"
"                             process (SIGSYS), or fail them with EPERM and log\n"
"                             them to the kernel audit log. Default: kill.\n"
"  --apparmor-profile NAME    AppArmor profile to change to at exec (written to\n"
"                             /proc/self/attr/exec before no_new_privs). Fails\n"
"                             when AppArmor is not enabled or the profile is\n"
"                             not loaded.\n"
"  --keep-fd N                repeatable: keep fd N open across exec (besides\n"
"                             0, 1, 2); it must be open. The fd named by the\n"
"                             NODE_CHANNEL_FD environment variable is always\n"
"                             kept. Every other fd is closed.\n"
"  --listen-fd N              repeatable: like --keep-fd, for a TCP or unix\n"
"                             stream socket that is bound (not necessarily\n"
"                             listening): the helper calls listen(N, SOMAXCONN)\n"
"                             before loading the filter and reads back\n"
"                             SO_ACCEPTCONN. For a caller that can bind but not\n"
"                             listen without accepting (node).\n"
"  --check                    validate every option as a real run would (user\n"
"                             and group, jail root, binds, cgroup hierarchy\n"
"                             and permissions, seccomp list, AppArmor profile,\n"
"                             kept fds, the privileges the run needs, the\n"
"                             working directory and PROGRAM in the jail when\n"
"                             given), change nothing (no cgroup, mount,\n"
"                             namespace, process or exec) and exit 0, or fail\n"
"                             with the exit code and line a real run would.\n"
"  --help                     print this text and exit 0.\n"
"\n"
"After exec: a shim preloaded into PROGRAM (in the jail:\n"
JAIL_SHIM ", named by " JAIL_PRELOAD_LIST "; without\n"
"a jail: LD_PRELOAD, then removed from the environment) makes the process\n"
"non-dumpable (exec resets the flag) and, unless --seccomp off, stacks a\n"
"filter that refuses execve: the helper's own exec is the last one.\n"
"PROGRAM must therefore be a dynamically linked ELF program, and\n"
"LD_PRELOAD must not be set.\n"
"\n"
"Exit codes (when PROGRAM did not start):\n"
"  125  bad usage: unknown option, missing value, an option given twice,\n"
"       conflicting options (the message names both), no \"-- PROGRAM\".\n"
"  126  a setting could not be applied (bad value, unknown user, missing\n"
"       directory or controller, a failed or unverified privilege change,\n"
"       a static PROGRAM).\n"
"  127  PROGRAM could not be executed (missing, not executable).\n"
"Each failure prints exactly one line: \"" PROG ": <what>: <why>\".\n";
    fputs(text, stdout);
    fflush(stdout);
}

/* Is this path absolute, and free of ".." components? */
static int path_is_clean_absolute(const char *p)
{
    if (p[0] != '/')
        return 0;
    const char *c = p;
    while (*c) {
        while (*c == '/')
            c++;
        const char *e = c;
        while (*e && *e != '/')
            e++;
        if (e - c == 2 && c[0] == '.' && c[1] == '.')
            return 0;
        c = e;
    }
    return 1;
}

/* Collapse repeated slashes and "." components, drop a trailing slash. */
static char *normalize_path(const char *p)
{
    char *out = xstrdup(p);
    size_t o = 0;
    const char *c = p;
    while (*c) {
        while (*c == '/')
            c++;
        const char *e = c;
        while (*e && *e != '/')
            e++;
        if (e == c)
            break;
        if (!(e - c == 1 && c[0] == '.')) {
            out[o++] = '/';
            memcpy(out + o, c, (size_t)(e - c));
            o += (size_t)(e - c);
        }
        c = e;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return out;
}

static int all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static void resolve_user(struct settings *s)
{
    const char *arg = s->user_arg;
    struct passwd *pw = NULL;
    unsigned long n;
    if (*arg == '\0')
        die(EXIT_APPLY, "--run-as-user: empty value");
    errno = 0;
    if (all_digits(arg)) {
        /*
         * A number is used as given, without a passwd lookup: the master can
         * give each worker a uid of its own that no other process uses and
         * no passwd entry names. No supplementary groups; the primary group
         * must be given (--run-as-group).
         */
        if (parse_ulong(arg, 0, (unsigned long)(uid_t)-2, &n) != 0)
            die(EXIT_APPLY, "--run-as-user %s: not a valid uid", arg);
        s->uid = (uid_t)n;
    } else {
        pw = getpwnam(arg);
        if (pw == NULL)
            die(EXIT_APPLY, "--run-as-user %s: no such user", arg);
        s->uid = pw->pw_uid;
    }
    if (s->uid == 0)
        die(EXIT_APPLY, "--run-as-user %s: resolves to uid 0 (root), which drops nothing", arg);

    if (s->group_arg != NULL) {
        const char *g = s->group_arg;
        if (*g == '\0')
            die(EXIT_APPLY, "--run-as-group: empty value");
        if (all_digits(g)) {
            if (parse_ulong(g, 0, (unsigned long)(gid_t)-2, &n) != 0)
                die(EXIT_APPLY, "--run-as-group %s: not a valid gid", g);
            s->gid = (gid_t)n;
        } else {
            struct group *gr = getgrnam(g);
            if (gr == NULL)
                die(EXIT_APPLY, "--run-as-group %s: no such group", g);
            s->gid = gr->gr_gid;
        }
    } else if (pw != NULL) {
        s->gid = pw->pw_gid;
    } else {
        die(EXIT_APPLY, "--run-as-user %s: a numeric uid has no primary group: give --run-as-group", arg);
    }

    /*
     * Supplementary groups, resolved now: after chroot the group database is
     * out of reach. The primary gid is left out of the list (the egid already
     * grants it), so a user with no other groups ends with an empty list.
     */
    s->ngroups = 0;
    if (pw != NULL) {
        gid_t list[MAX_GROUPS];
        int count = MAX_GROUPS;
        if (getgrouplist(pw->pw_name, s->gid, list, &count) < 0)
            die(EXIT_APPLY, "--run-as-user %s: member of more than %d groups", arg, MAX_GROUPS);
        for (int i = 0; i < count; i++) {
            if (list[i] == s->gid)
                continue;
            int dup = 0;
            for (size_t j = 0; j < s->ngroups; j++)
                if (s->groups[j] == list[i])
                    dup = 1;
            if (!dup)
                s->groups[s->ngroups++] = list[i];
        }
        for (size_t j = 0; j < s->ngroups; j++)
            if (s->groups[j] == 0)
                die(EXIT_APPLY, "--run-as-user %s: is a member of group 0 (root)", arg);
    }
    if (s->gid == 0)
        die(EXIT_APPLY, "--run-as-user %s: primary group is gid 0 (root): give --run-as-group", arg);
    s->change_user = 1;
}

static void add_bind(struct settings *s, const char *arg)
{
    if (s->nbinds >= MAX_BINDS)
        die(EXIT_APPLY, "--bind-ro: more than %d bind mounts", MAX_BINDS);
    struct bind *b = &s->binds[s->nbinds];
    char *copy = xstrdup(arg);
    char *colon = strchr(copy, ':');
    const char *src = copy;
    const char *dst = NULL;
    if (colon != NULL) {
        *colon = '\0';
        dst = colon + 1;
    }
    if (*src == '\0')
        die(EXIT_APPLY, "--bind-ro %s: empty SRC", arg);
    if (src[0] != '/')
        die(EXIT_APPLY, "--bind-ro %s: SRC must be an absolute path", arg);
    if (dst == NULL)
        dst = src;
    if (!path_is_clean_absolute(dst))
        die(EXIT_APPLY, "--bind-ro %s: DST must be an absolute path without \"..\"", arg);
    char resolved[PATH_MAX];
    if (realpath(src, resolved) == NULL)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: %s", arg, src);
    struct stat st;
    if (stat(resolved, &st) != 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: %s", arg, resolved);
    /* A unix socket is bound like a file: connect(2) needs no writable mount (the master binds proxy targets so). */
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISSOCK(st.st_mode))
        die(EXIT_APPLY, "--bind-ro %s: SRC is neither a regular file, a directory nor a unix socket", arg);
    b->src_arg = xstrdup(arg);
    b->src = xstrdup(resolved);
    b->dst = normalize_path(dst);
    b->is_dir = S_ISDIR(st.st_mode);
    if (strcmp(b->dst, "/") == 0)
        die(EXIT_APPLY, "--bind-ro %s: DST cannot be the jail root", arg);
    /* The helper's own mounts: a bind there would hide the preload shim or its list. */
    size_t shim_dir_len = strlen(JAIL_SHIM_DIR);
    if (strcmp(b->dst, JAIL_PRELOAD_LIST) == 0 ||
        (strncmp(b->dst, JAIL_SHIM_DIR, shim_dir_len) == 0 && (b->dst[shim_dir_len] == '\0' || b->dst[shim_dir_len] == '/')))
        die(EXIT_APPLY, "--bind-ro %s: DST %s is reserved for the helper's preload shim", arg, b->dst);
    free(copy);
    s->nbinds++;
}

static void add_keep_fd(struct settings *s, const char *what, const char *arg)
{
    unsigned long n;
    if (parse_ulong(arg, 0, INT_MAX, &n) != 0)
        die(EXIT_APPLY, "%s %s: not a file descriptor number", what, arg);
    if (n <= 2)
        return; /* 0, 1 and 2 are always kept */
    if (fcntl((int)n, F_GETFD) < 0)
        die_errno(EXIT_APPLY, errno, "%s %s: fd is not open", what, arg);
    for (size_t i = 0; i < s->nkeep; i++)
        if (s->keep_fds[i] == (int)n)
            return;
    if (s->nkeep >= MAX_KEEP_FDS)
        die(EXIT_APPLY, "%s %s: more than %d kept fds", what, arg, MAX_KEEP_FDS);
    s->keep_fds[s->nkeep++] = (int)n;
}

/*
 * The jail root and every directory above it belong to root (or to the
 * owner of this helper binary, who already decides what runs as root), and
 * nobody else can write to them: the rule of sshd's ChrootDirectory.
 * Whoever can write to one of them can rename the jail away between this
 * check and the mount (and make the jail a host directory of their
 * choosing), or put files in it that every worker sees. A directory
 * writable by others with the sticky bit (/tmp) is fine above the jail:
 * there only root may rename root's directories.
 */
static void check_jail_root(const char *arg, const char *resolved)
{
    struct stat st, helper;
    if (stat("/proc/self/exe", &helper) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: stat /proc/self/exe", arg);
    if (stat(resolved, &st) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s", arg);
    if (!S_ISDIR(st.st_mode))
        die(EXIT_APPLY, "--chroot %s: not a directory", arg);
    if (st.st_uid != 0 && st.st_uid != helper.st_uid)
        die(EXIT_APPLY, "--chroot %s: owned by uid %u, neither root nor the helper's owner", arg, (unsigned)st.st_uid);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        die(EXIT_APPLY, "--chroot %s: writable by group or others (mode %04o)", arg, (unsigned)(st.st_mode & 07777));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", resolved);
    for (;;) {
        char *slash = strrchr(path, '/');
        if (slash == NULL)
            break;
        if (slash == path)
            slash[1] = '\0'; /* "/" */
        else
            *slash = '\0';
        if (lstat(path, &st) != 0)
            die_errno(EXIT_APPLY, errno, "--chroot %s: %s", arg, path);
        if (st.st_uid != 0 && st.st_uid != helper.st_uid)
            die(EXIT_APPLY, "--chroot %s: %s (above the jail) is owned by uid %u, neither root nor the helper's owner", arg,
                path, (unsigned)st.st_uid);
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
            die(EXIT_APPLY, "--chroot %s: %s (above the jail) is writable by group or others (mode %04o)", arg, path,
                (unsigned)(st.st_mode & 07777));
        if (strcmp(path, "/") == 0)
            break;
    }
}

/* Is `name` a loaded AppArmor profile? (securityfs lists one "name (mode)" per line) */
static void check_apparmor_profile(const char *name)
{
    FILE *f = fopen("/sys/kernel/security/apparmor/profiles", "re");
    if (f == NULL)
        die_errno(EXIT_APPLY, errno, "--apparmor-profile %s: read /sys/kernel/security/apparmor/profiles", name);
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    size_t len = strlen(name);
    while (!found && getline(&line, &cap, f) > 0)
        if (strncmp(line, name, len) == 0 && strncmp(line + len, " (", 2) == 0)
            found = 1;
    free(line);
    fclose(f);
    if (!found)
        die(EXIT_APPLY, "--apparmor-profile %s: no such profile is loaded", name);
}

/*
 * setrlimit may raise the hard limit only with CAP_SYS_RESOURCE, and never
 * above fs.nr_open (setrlimit(2)): refuse now what it would refuse later.
 */
static void check_open_files(unsigned long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die_errno(EXIT_APPLY, errno, "--max-open-files %lu: getrlimit(RLIMIT_NOFILE)", n);
    unsigned long ceiling = rl.rlim_max == RLIM_INFINITY ? ULONG_MAX : (unsigned long)rl.rlim_max;
    if (have_effective_cap(CAP_SYS_RESOURCE)) {
        char buf[32];
        unsigned long nr_open;
        int rc = read_file("/proc/sys/fs/nr_open", buf, sizeof buf);
        buf[rc > 0 ? strcspn(buf, "\n") : 0] = '\0';
        ceiling = rc > 0 && parse_ulong(buf, 0, ULONG_MAX, &nr_open) == 0 ? nr_open : 1048576;
    }
    if (n > ceiling)
        die(EXIT_APPLY, "--max-open-files %lu: above the largest value this process may set (%lu)", n, ceiling);
}

/*
 * --listen-fd N: a stream socket of family AF_INET, AF_INET6 or AF_UNIX,
 * already bound to an address (a port, or a path or abstract name), which
 * the helper makes listen before the filter is loaded (listen is answered 0
 * without running afterwards, so a socket that does not listen by then
 * never will).
 */
static void add_listen_fd(struct settings *s, const char *arg)
{
    add_keep_fd(s, "--listen-fd", arg);
    int fd = (int)strtol(arg, NULL, 10);
    if (fd <= 2)
        die(EXIT_APPLY, "--listen-fd %s: fds 0, 1 and 2 are stdio", arg);
    int type = 0, domain = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        die_errno(EXIT_APPLY, errno, "--listen-fd %s: not a socket", arg);
    len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
        die_errno(EXIT_APPLY, errno, "--listen-fd %s: SO_DOMAIN", arg);
    if (type != SOCK_STREAM || (domain != AF_INET && domain != AF_INET6 && domain != AF_UNIX))
        die(EXIT_APPLY, "--listen-fd %s: not a TCP or unix stream socket", arg);
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    len = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &len) != 0)
        die_errno(EXIT_APPLY, errno, "--listen-fd %s: getsockname", arg);
    int bound = domain == AF_INET    ? ((struct sockaddr_in *)&address)->sin_port != 0
                : domain == AF_INET6 ? ((struct sockaddr_in6 *)&address)->sin6_port != 0
                                     : len > sizeof(sa_family_t);
    if (!bound)
        die(EXIT_APPLY, "--listen-fd %s: the socket is not bound (listen would pick a random port)", arg);
    for (size_t i = 0; i < s->nlisten; i++)
        if (s->listen_fds[i] == fd)
            return;
    s->listen_fds[s->nlisten++] = fd;
}

/* A usage error that names both options. */
static void requires(const char *a, const char *b)
{
    die(EXIT_USAGE, "%s: requires %s", a, b);
}

void parse_options(struct settings *s, int argc, char **argv)
{
    int seen[OPT_COUNT] = { 0 };
    const char *value[OPT_COUNT] = { 0 };
    const char *binds[MAX_BINDS];
    size_t nbind_args = 0;
    const char *keep_args[MAX_KEEP_FDS];
    size_t nkeep_args = 0;
    const char *listen_args[MAX_KEEP_FDS];
    size_t nlisten_args = 0;
    int i = 1;
    int dashdash = 0;

    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            dashdash = 1;
            i++;
            break;
        }
        if (strncmp(arg, "--", 2) != 0)
            die(EXIT_USAGE, "%s: expected an option or \"--\" before PROGRAM (try --help)", arg);
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        int found = -1;
        for (int o = 0; o < OPT_COUNT; o++)
            if (strlen(options[o].name) == name_len && strncmp(options[o].name, arg, name_len) == 0)
                found = o;
        if (found < 0)
            die(EXIT_USAGE, "%.*s: unknown option (try --help)", (int)(name_len > 200 ? 200 : name_len), arg);
        const char *v = NULL;
        if (options[found].has_arg) {
            if (eq != NULL) {
                v = eq + 1;
            } else {
                if (i + 1 >= argc)
                    die(EXIT_USAGE, "%s: missing value", options[found].name);
                v = argv[++i];
            }
        } else if (eq != NULL) {
            die(EXIT_USAGE, "%s: takes no value", options[found].name);
        }
        if (seen[found] && !options[found].repeatable)
            die(EXIT_USAGE, "%s: given twice", options[found].name);
        seen[found]++;
        value[found] = v;
        if (found == OPT_BIND_RO) {
            if (nbind_args >= MAX_BINDS)
                die(EXIT_USAGE, "--bind-ro: more than %d bind mounts", MAX_BINDS);
            binds[nbind_args++] = v;
        } else if (found == OPT_KEEP_FD) {
            if (nkeep_args >= MAX_KEEP_FDS)
                die(EXIT_USAGE, "--keep-fd: more than %d kept fds", MAX_KEEP_FDS);
            keep_args[nkeep_args++] = v;
        } else if (found == OPT_LISTEN_FD) {
            if (nlisten_args >= MAX_KEEP_FDS)
                die(EXIT_USAGE, "--listen-fd: more than %d listening fds", MAX_KEEP_FDS);
            listen_args[nlisten_args++] = v;
        }
    }

    if (seen[OPT_HELP]) {
        print_help();
        exit(0);
    }
    s->check_only = seen[OPT_CHECK] != 0;
    if (!dashdash || i >= argc) {
        if (!s->check_only)
            die(EXIT_USAGE, "no PROGRAM: usage: %s [OPTIONS] -- PROGRAM [ARG...] (try --help)", PROG);
        s->argv = NULL; /* --check without a program: everything else is still checked */
    } else {
        if (argv[i][0] != '/')
            die(EXIT_USAGE, "%s: PROGRAM must be an absolute path", argv[i]);
        s->argv = &argv[i];
    }

    /* Conflicts and dependencies: usage errors naming both options. */
    if (seen[OPT_RUN_AS_GROUP] && !seen[OPT_RUN_AS_USER])
        requires("--run-as-group", "--run-as-user");
    if (seen[OPT_BIND_RO] && !seen[OPT_CHROOT])
        requires("--bind-ro", "--chroot");
    if (seen[OPT_MAX_MEMORY] && !seen[OPT_CGROUP])
        requires("--max-memory", "--cgroup");
    if (seen[OPT_MAX_CPU_PERCENT] && !seen[OPT_CGROUP])
        requires("--max-cpu-percent", "--cgroup");
    if (seen[OPT_MAX_PIDS] && !seen[OPT_CGROUP])
        requires("--max-pids", "--cgroup");
    if (seen[OPT_SECCOMP_ACTION] && seen[OPT_SECCOMP] && strcmp(value[OPT_SECCOMP], "off") == 0)
        die(EXIT_USAGE, "--seccomp-action: conflicts with --seccomp off (there is no filter)");
    if (seen[OPT_CHROOT] && !seen[OPT_RUN_AS_USER] && geteuid() == 0)
        die(EXIT_USAGE, "--chroot: --chroot without --run-as-user leaves root in the jail (root can escape a chroot)");

    /* Values: 126, a setting that cannot be applied. */
    if (seen[OPT_RUN_AS_USER]) {
        s->user_arg = value[OPT_RUN_AS_USER];
        s->group_arg = value[OPT_RUN_AS_GROUP];
        resolve_user(s);
    }

    if (seen[OPT_CHROOT]) {
        const char *c = value[OPT_CHROOT];
        s->chroot_arg = c;
        if (c[0] != '/')
            die(EXIT_APPLY, "--chroot %s: must be an absolute path", c);
        char resolved[PATH_MAX];
        if (realpath(c, resolved) == NULL)
            die_errno(EXIT_APPLY, errno, "--chroot %s", c);
        check_jail_root(c, resolved);
        if (strcmp(resolved, "/") == 0)
            die(EXIT_APPLY, "--chroot %s: is the host root", c);
        /* The path goes into overlayfs mount options, where these are separators. */
        if (strpbrk(resolved, ",:\\") != NULL)
            die(EXIT_APPLY, "--chroot %s: path contains ',', ':' or '\\', which overlayfs options cannot carry", c);
        s->chroot_dir = xstrdup(resolved);
        for (size_t b = 0; b < nbind_args; b++)
            add_bind(s, binds[b]);
    }

    s->working_dir = seen[OPT_WORKING_DIR] ? value[OPT_WORKING_DIR] : "/";
    if (s->working_dir[0] != '/')
        die(EXIT_APPLY, "--working-dir %s: must be an absolute path", s->working_dir);

    if (seen[OPT_CGROUP]) {
        const char *cg = value[OPT_CGROUP];
        if (cg[0] == '\0' || cg[0] == '/')
            die(EXIT_APPLY, "--cgroup %s: must be a relative path", cg);
        char probe[PATH_MAX];
        if (strlen(cg) + 2 > sizeof probe)
            die(EXIT_APPLY, "--cgroup: path too long");
        snprintf(probe, sizeof probe, "/%s", cg);
        if (!path_is_clean_absolute(probe) || strstr(cg, "//") != NULL || cg[strlen(cg) - 1] == '/')
            die(EXIT_APPLY, "--cgroup %s: must not contain \"..\" or empty components", cg);
        for (const char *p = cg; *p; p++)
            if (*p == '\n' || *p == ' ' || *p == ',')
                die(EXIT_APPLY, "--cgroup %s: contains a space, comma or newline", cg);
        s->cgroup = cg;
    }
    if (seen[OPT_MAX_MEMORY]) {
        if (parse_size(value[OPT_MAX_MEMORY], &s->max_memory) != 0)
            die(EXIT_APPLY, "--max-memory %s: not a size (bytes, or a number with K, M or G)", value[OPT_MAX_MEMORY]);
        s->has_memory = 1;
    }
    if (seen[OPT_MAX_CPU_PERCENT]) {
        if (parse_ulong(value[OPT_MAX_CPU_PERCENT], 1, 100000, &s->max_cpu_percent) != 0)
            die(EXIT_APPLY, "--max-cpu-percent %s: not an integer from 1 to 100000", value[OPT_MAX_CPU_PERCENT]);
        s->has_cpu = 1;
    }
    if (seen[OPT_MAX_PIDS]) {
        if (parse_ulong(value[OPT_MAX_PIDS], 1, 4194304, &s->max_pids) != 0)
            die(EXIT_APPLY, "--max-pids %s: not an integer from 1 to 4194304", value[OPT_MAX_PIDS]);
        s->has_pids = 1;
    }
    if (seen[OPT_MAX_OPEN_FILES]) {
        if (parse_ulong(value[OPT_MAX_OPEN_FILES], 3, INT_MAX, &s->max_open_files) != 0)
            die(EXIT_APPLY, "--max-open-files %s: not an integer of at least 3", value[OPT_MAX_OPEN_FILES]);
        check_open_files(s->max_open_files);
        s->has_nofile = 1;
    }

    s->seccomp = SECCOMP_DEFAULT;
    if (seen[OPT_SECCOMP]) {
        const char *v = value[OPT_SECCOMP];
        if (strcmp(v, "default") == 0) {
            s->seccomp = SECCOMP_DEFAULT;
        } else if (strcmp(v, "off") == 0) {
            s->seccomp = SECCOMP_OFF;
        } else if (v[0] == '\0') {
            die(EXIT_APPLY, "--seccomp: empty value (default, off or a FILE)");
        } else {
            s->seccomp = SECCOMP_FILE;
            s->seccomp_file = v;
        }
    }
    s->seccomp_action = ACTION_KILL;
    if (seen[OPT_SECCOMP_ACTION]) {
        const char *v = value[OPT_SECCOMP_ACTION];
        if (strcmp(v, "kill") == 0)
            s->seccomp_action = ACTION_KILL;
        else if (strcmp(v, "errno") == 0)
            s->seccomp_action = ACTION_ERRNO;
        else
            die(EXIT_APPLY, "--seccomp-action %s: must be kill or errno", v);
        s->seccomp_action_given = 1;
    }

    if (seen[OPT_APPARMOR_PROFILE]) {
        const char *p = value[OPT_APPARMOR_PROFILE];
        if (p[0] == '\0' || strpbrk(p, "\n\r") != NULL)
            die(EXIT_APPLY, "--apparmor-profile: empty or multi-line profile name");
        char enabled[16];
        int n = read_file("/sys/module/apparmor/parameters/enabled", enabled, sizeof enabled);
        if (n <= 0 || enabled[0] != 'Y')
            die(EXIT_APPLY, "--apparmor-profile %s: apparmor is not enabled on this kernel", p);
        check_apparmor_profile(p);
        s->apparmor_profile = p;
    }

    for (size_t k = 0; k < nkeep_args; k++)
        add_keep_fd(s, "--keep-fd", keep_args[k]);
    for (size_t k = 0; k < nlisten_args; k++)
        add_listen_fd(s, listen_args[k]);
    const char *channel = getenv("NODE_CHANNEL_FD");
    if (channel != NULL)
        add_keep_fd(s, "NODE_CHANNEL_FD", channel);

    /* The helper preloads its own shim; a caller's LD_PRELOAD would otherwise be silently replaced. */
    if (getenv("LD_PRELOAD") != NULL)
        die(EXIT_APPLY, "environment: LD_PRELOAD is set, but the helper preloads its own shim into PROGRAM: unset it");
}
