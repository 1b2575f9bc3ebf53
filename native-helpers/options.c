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
#include <sys/stat.h>
#include <unistd.h>

enum opt {
    OPT_RUN_AS_USER, OPT_RUN_AS_GROUP, OPT_CHROOT, OPT_BIND_RO, OPT_WORKING_DIR,
    OPT_MAX_MEMORY, OPT_MAX_CPU_PERCENT, OPT_MAX_PIDS, OPT_MAX_OPEN_FILES,
    OPT_CGROUP, OPT_SECCOMP, OPT_SECCOMP_ACTION, OPT_APPARMOR_PROFILE,
    OPT_KEEP_FD, OPT_HELP, OPT_COUNT
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
    [OPT_HELP] = { "--help", 0, 0 },
};

void print_help(void)
{
    static const char text[] =
"Usage: " PROG " [OPTIONS] -- PROGRAM [ARG...]\n"
"\n"
"Apply the isolation settings given as options, read each one back, then\n"
"exec PROGRAM (an absolute path, inside the jail when --chroot is given).\n"
"Nothing is printed on success: the helper becomes PROGRAM.\n"
"\n"
"Order: validate every option; cgroup (create, limits, attach); rlimits;\n"
"jail (private mount namespace, overlay, bind mounts); apparmor exec profile;\n"
"drop the capability bounding set; chroot + chdir; setgroups; setresgid;\n"
"setresuid; clear capabilities; PR_SET_PDEATHSIG; no_new_privs; seccomp;\n"
"close stray fds; exec.\n"
"\n"
"Options (long only, spelled in full; --opt VALUE or --opt=VALUE):\n"
"  --run-as-user NAME|UID     drop to this user: supplementary groups from the\n"
"                             group database (initgroups), or none when given as\n"
"                             a bare UID with no passwd entry; then setresgid,\n"
"                             setresuid. Refuses uid 0.\n"
"  --run-as-group NAME|GID    primary group (default: the user's primary group;\n"
"                             required for a bare UID with no passwd entry).\n"
"                             Requires --run-as-user.\n"
"  --chroot DIR               jail root: an existing directory, absolute path.\n"
"                             An overlay (tmpfs upper, private mount namespace)\n"
"                             is mounted on it, so DIR itself is never written,\n"
"                             then made read-only. When the caller is root it\n"
"                             requires --run-as-user.\n"
"  --bind-ro SRC[:DST]        repeatable; requires --chroot. Read-only, nosuid,\n"
"                             nodev bind mount of host path SRC (file or dir,\n"
"                             symlinks resolved) at DST inside the jail\n"
"                             (default: SRC as given). DST must be absolute\n"
"                             without \"..\"; its parents are created in the\n"
"                             overlay.\n"
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
"                             CLONE_THREAD, clone3/io_uring_* -> ENOSYS,\n"
"                             fork/vfork/execveat and the set*id family ->\n"
"                             EPERM, and kill for ptrace, mount, bpf, ... .\n"
"                             Default: default.\n"
"  --seccomp-action kill|errno  action for syscalls outside the list: kill the\n"
"                             process (SIGSYS), or fail them with EPERM and log\n"
"                             them to the kernel audit log. Default: kill.\n"
"  --apparmor-profile NAME    AppArmor profile to change to at exec (written to\n"
"                             /proc/self/attr/exec before no_new_privs). Fails\n"
"                             when AppArmor is not enabled.\n"
"  --keep-fd N                repeatable: keep fd N open across exec (besides\n"
"                             0, 1, 2). The fd named by the NODE_CHANNEL_FD\n"
"                             environment variable is always kept. Every other\n"
"                             fd is closed.\n"
"  --help                     print this text and exit 0.\n"
"\n"
"Exit codes (when PROGRAM did not start):\n"
"  125  bad usage: unknown option, missing value, an option given twice,\n"
"       conflicting options (the message names both), no \"-- PROGRAM\".\n"
"  126  a setting could not be applied (bad value, unknown user, missing\n"
"       directory or controller, a failed or unverified privilege change).\n"
"  127  the final exec of PROGRAM failed.\n"
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
        if (parse_ulong(arg, 0, (unsigned long)(uid_t)-2, &n) != 0)
            die(EXIT_APPLY, "--run-as-user %s: not a valid uid", arg);
        s->uid = (uid_t)n;
        pw = getpwuid(s->uid);
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
        die(EXIT_APPLY, "--run-as-user %s: no passwd entry for this uid, so no primary group: give --run-as-group", arg);
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
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        die(EXIT_APPLY, "--bind-ro %s: SRC is neither a regular file nor a directory", arg);
    b->src_arg = xstrdup(arg);
    b->src = xstrdup(resolved);
    b->dst = normalize_path(dst);
    b->is_dir = S_ISDIR(st.st_mode);
    if (strcmp(b->dst, "/") == 0)
        die(EXIT_APPLY, "--bind-ro %s: DST cannot be the jail root", arg);
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
        }
    }

    if (seen[OPT_HELP]) {
        print_help();
        exit(0);
    }
    if (!dashdash || i >= argc)
        die(EXIT_USAGE, "no PROGRAM: usage: %s [OPTIONS] -- PROGRAM [ARG...] (try --help)", PROG);
    if (argv[i][0] != '/')
        die(EXIT_USAGE, "%s: PROGRAM must be an absolute path", argv[i]);
    s->argv = &argv[i];

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
        struct stat st;
        if (stat(resolved, &st) != 0)
            die_errno(EXIT_APPLY, errno, "--chroot %s", c);
        if (!S_ISDIR(st.st_mode))
            die(EXIT_APPLY, "--chroot %s: not a directory", c);
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
        s->apparmor_profile = p;
    }

    for (size_t k = 0; k < nkeep_args; k++)
        add_keep_fd(s, "--keep-fd", keep_args[k]);
    const char *channel = getenv("NODE_CHANNEL_FD");
    if (channel != NULL)
        add_keep_fd(s, "NODE_CHANNEL_FD", channel);
}
