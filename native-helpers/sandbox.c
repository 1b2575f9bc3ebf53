/*
 * miwidothttp-sandbox: apply the worker's isolation settings, then exec it.
 *
 * Order (each step read back; any failure is fatal, one line, exit 126):
 *   validate every option, resolve user and groups, build the seccomp filter
 *   -> cgroup (create, limits, attach) -> rlimits (NOFILE, CORE=0)
 *   -> not dumpable -> jail (mount namespace, overlay, bind mounts)
 *   -> AppArmor exec profile (needs /proc, so before chroot)
 *   -> drop the capability bounding set and ambient set (needs CAP_SETPCAP,
 *      so while still root)
 *   -> chroot + chdir -> setgroups -> setresgid -> setresuid
 *   -> clear every capability set -> PR_SET_PDEATHSIG (the uid change
 *      clears it) + parent check -> PROGRAM is a dynamic ELF the shim can
 *      be preloaded into -> no_new_privs -> seccomp (allowlist and argument
 *      restrictions) -> close stray fds -> exec; then, in PROGRAM, the
 *      preloaded shim: not dumpable, no further exec (lock.c).
 * With --check, only the validation runs, plus the checks a real run makes
 * later, and the helper exits 0 without changing anything.
 * See SECURITY.md for why.
 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* fds 0, 1 and 2 must be open, or a later open() would land on them. */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int n = open("/dev/null", O_RDWR);
        if (n != fd)
            _exit(EXIT_APPLY); /* cannot even report it: stderr is what is missing */
    }
}

static int highest_open_fd(void)
{
    int highest = 2;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 4096;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > highest)
            highest = fd;
    }
    closedir(d);
    return highest;
}

static unsigned long read_cap_last_cap(void)
{
    char buf[32];
    int n = read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof buf);
    if (n < 0)
        die_errno(EXIT_APPLY, -n, "capabilities: read /proc/sys/kernel/cap_last_cap");
    buf[strcspn(buf, "\n")] = '\0';
    unsigned long last;
    if (parse_ulong(buf, 0, 63, &last) != 0)
        die(EXIT_APPLY, "capabilities: /proc/sys/kernel/cap_last_cap: unexpected \"%s\"", buf);
    return last;
}

static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        die_errno(EXIT_APPLY, errno, "signals: clear the signal mask");
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        signal(sig, SIG_DFL); /* fails harmlessly for the real-time signals glibc reserves */
    }
}

static void apply_rlimits(const struct settings *s)
{
    struct rlimit rl;
    if (s->has_nofile) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)s->max_open_files;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            die_errno(EXIT_APPLY, errno, "--max-open-files %lu: setrlimit(RLIMIT_NOFILE)", s->max_open_files);
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur != (rlim_t)s->max_open_files ||
            rl.rlim_max != (rlim_t)s->max_open_files)
            die(EXIT_APPLY, "--max-open-files %lu: RLIMIT_NOFILE did not read back", s->max_open_files);
    }
    rl.rlim_cur = rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        die_errno(EXIT_APPLY, errno, "core dumps: setrlimit(RLIMIT_CORE, 0)");
    if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
        die(EXIT_APPLY, "core dumps: RLIMIT_CORE did not read back as 0");
}

static void set_apparmor(const struct settings *s)
{
    if (s->apparmor_profile == NULL)
        return;
    char value[4096];
    if ((size_t)snprintf(value, sizeof value, "exec %s", s->apparmor_profile) >= sizeof value)
        die(EXIT_APPLY, "--apparmor-profile: name too long");
    /* Newer kernels have an AppArmor-specific attr directory; fall back to the shared one. */
    int rc = write_file("/proc/self/attr/apparmor/exec", value);
    if (rc == -ENOENT)
        rc = write_file("/proc/self/attr/exec", value);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--apparmor-profile %s: write /proc/self/attr/exec", s->apparmor_profile);
}

/* Returns whether the bounding set was dropped (it needs CAP_SETPCAP). */
static int drop_bounding_set(const struct settings *s)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        die_errno(EXIT_APPLY, errno, "capabilities: clear the ambient set");
    if (!have_effective_cap(CAP_SETPCAP)) {
        /* An unprivileged caller cannot drop it; no_new_privs makes it moot (see SECURITY.md). */
        if (geteuid() == 0)
            die(EXIT_APPLY, "capabilities: running as root without CAP_SETPCAP, cannot drop the bounding set");
        return 0;
    }
    for (unsigned long cap = 0; cap <= s->cap_last_cap; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            die_errno(EXIT_APPLY, errno, "capabilities: drop capability %lu from the bounding set", cap);
    return 1;
}

static void enter_chroot(const struct settings *s)
{
    if (s->chroot_dir != NULL) {
        if (chroot(s->chroot_dir) != 0)
            die_errno(EXIT_APPLY, errno, "--chroot %s: chroot", s->chroot_arg);
        if (chdir("/") != 0)
            die_errno(EXIT_APPLY, errno, "--chroot %s: chdir /", s->chroot_arg);
    }
    if (chdir(s->working_dir) != 0)
        die_errno(EXIT_APPLY, errno, "--working-dir %s: chdir%s", s->working_dir, s->chroot_dir ? " (inside the jail)" : "");
}

static void change_user(const struct settings *s)
{
    if (!s->change_user)
        return;
    const char *u = s->user_arg;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
        die_errno(EXIT_APPLY, errno, "--run-as-user %s: clear PR_SET_KEEPCAPS", u);

    if (setgroups(s->ngroups, s->ngroups ? s->groups : NULL) != 0)
        die_errno(EXIT_APPLY, errno, "--run-as-user %s: setgroups", u);
    gid_t now[MAX_GROUPS];
    int n = getgroups(MAX_GROUPS, now);
    if (n < 0)
        die_errno(EXIT_APPLY, errno, "--run-as-user %s: getgroups", u);
    if ((size_t)n != s->ngroups)
        die(EXIT_APPLY, "--run-as-user %s: getgroups read back %d groups, expected %zu", u, n, s->ngroups);
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < s->ngroups; j++)
            if (now[i] == s->groups[j])
                found = 1;
        if (!found)
            die(EXIT_APPLY, "--run-as-user %s: getgroups read back unexpected group %u", u, (unsigned)now[i]);
    }

    if (setresgid(s->gid, s->gid, s->gid) != 0)
        die_errno(EXIT_APPLY, errno, "--run-as-group %u: setresgid", (unsigned)s->gid);
    gid_t rg, eg, sg;
    if (getresgid(&rg, &eg, &sg) != 0 || rg != s->gid || eg != s->gid || sg != s->gid)
        die(EXIT_APPLY, "--run-as-group %u: getresgid did not read back the target gid", (unsigned)s->gid);

    if (setresuid(s->uid, s->uid, s->uid) != 0)
        die_errno(EXIT_APPLY, errno, "--run-as-user %s: setresuid", u);
    uid_t ru, eu, su;
    if (getresuid(&ru, &eu, &su) != 0 || ru != s->uid || eu != s->uid || su != s->uid)
        die(EXIT_APPLY, "--run-as-user %s: getresuid did not read back the target uid", u);

    /* The way back must be closed. */
    if (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0)
        die(EXIT_APPLY, "--run-as-user %s: could regain root after dropping it", u);
}

static void clear_capabilities(const struct settings *s, int bounding_dropped)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) != 0)
        die_errno(EXIT_APPLY, errno, "capabilities: capset to empty");
    memset(d, 0xff, sizeof d);
    h.version = _LINUX_CAPABILITY_VERSION_3;
    h.pid = 0;
    if (syscall(SYS_capget, &h, d) != 0)
        die_errno(EXIT_APPLY, errno, "capabilities: capget");
    for (int i = 0; i < 2; i++)
        if (d[i].effective || d[i].permitted || d[i].inheritable)
            die(EXIT_APPLY, "capabilities: effective/permitted/inheritable not empty after capset");
    for (unsigned long cap = 0; cap <= s->cap_last_cap; cap++) {
        if (bounding_dropped && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0)
            die(EXIT_APPLY, "capabilities: capability %lu still in the bounding set", cap);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) > 0)
            die(EXIT_APPLY, "capabilities: capability %lu still in the ambient set", cap);
    }
}

static void set_parent_death_signal(const struct settings *s)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        die_errno(EXIT_APPLY, errno, "parent death signal: PR_SET_PDEATHSIG");
    int sig = 0;
    if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) != 0 || sig != SIGKILL)
        die(EXIT_APPLY, "parent death signal: PR_GET_PDEATHSIG did not read back SIGKILL");
    /* The parent may have died before the signal was armed. */
    if (getppid() != s->original_ppid)
        die(EXIT_APPLY, "parent death signal: the parent (pid %d) has already exited", (int)s->original_ppid);
}

static void set_no_new_privs(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die_errno(EXIT_APPLY, errno, "no_new_privs: PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        die(EXIT_APPLY, "no_new_privs: PR_GET_NO_NEW_PRIVS did not read back 1");
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* --listen-fd: listen now, while listen still runs (the filter answers it 0 without running). */
static void listen_passed_sockets(const struct settings *s)
{
    for (size_t i = 0; i < s->nlisten; i++) {
        int fd = s->listen_fds[i], on = 0;
        socklen_t len = sizeof on;
        if (listen(fd, SOMAXCONN) != 0)
            die_errno(EXIT_APPLY, errno, "--listen-fd %d: listen", fd);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || on != 1)
            die(EXIT_APPLY, "--listen-fd %d: SO_ACCEPTCONN did not read back 1 after listen", fd);
    }
}

/* Kept fds survive exec; this runs before the filter so it needs no fcntl rule. */
static void keep_fds_across_exec(struct settings *s)
{
    for (size_t i = 0; i < s->nkeep; i++) {
        int fd = s->keep_fds[i];
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) != 0)
            die_errno(EXIT_APPLY, errno, "--keep-fd %d: clear FD_CLOEXEC", fd);
    }
    qsort(s->keep_fds, s->nkeep, sizeof s->keep_fds[0], cmp_int);
}

static int close_between(unsigned int first, unsigned int last, int highest)
{
    if (first > last)
        return 0;
    if (syscall(SYS_close_range, first, last, 0) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
    for (unsigned int fd = first; fd <= last && (int)fd <= highest; fd++)
        close((int)fd);
    return 0;
}

static void close_stray_fds(const struct settings *s)
{
    unsigned int next = 3;
    for (size_t i = 0; i < s->nkeep; i++) {
        unsigned int k = (unsigned int)s->keep_fds[i];
        if (close_between(next, k - 1, s->max_fd_at_start + 64) != 0)
            die_errno(EXIT_APPLY, errno, "fds: close_range(%u, %u)", next, k - 1);
        next = k + 1;
    }
    if (close_between(next, ~0U, s->max_fd_at_start + 64) != 0)
        die_errno(EXIT_APPLY, errno, "fds: close_range(%u, ~0)", next);
}

/*
 * --check: everything a real run checks before it changes anything, plus
 * what a real run can only find out later (privileges, the working
 * directory and PROGRAM inside the jail), each failing with the line a
 * real run would print. Nothing is created, mounted, written or run.
 */
static void run_checks(const struct settings *s)
{
    check_cgroup(s);
    if (s->chroot_dir != NULL && !have_effective_cap(CAP_SYS_ADMIN))
        die_errno(EXIT_APPLY, EPERM, "--chroot %s: unshare(CLONE_NEWNS)", s->chroot_arg);
    char host[PATH_MAX];
    struct stat st;
    if (jail_host_path(s, s->working_dir, host, sizeof host) != 0)
        die(EXIT_APPLY, "--working-dir %s: path too long", s->working_dir);
    int err = stat(host, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (err == ENOENT && jail_makes_parent(s, s->working_dir))
        err = 0; /* a parent directory of a bind, made in the overlay */
    if (err != 0)
        die_errno(EXIT_APPLY, err, "--working-dir %s: chdir%s", s->working_dir, s->chroot_dir ? " (inside the jail)" : "");
    if (s->change_user && !(have_effective_cap(CAP_SETUID) && have_effective_cap(CAP_SETGID)))
        die_errno(EXIT_APPLY, EPERM, "--run-as-user %s: setgroups", s->user_arg);
    if (s->argv != NULL) {
        if (jail_host_path(s, s->argv[0], host, sizeof host) != 0)
            die_errno(EXIT_EXEC, ENAMETOOLONG, "exec %s", s->argv[0]);
        check_program(s, host, s->argv[0]);
    }
}

/* Inside the jail, as the worker: PROGRAM can be preloaded, and the shim read. */
static void check_program_and_shim(const struct settings *s)
{
    check_program(s, s->argv[0], s->argv[0]);
    const char *shim = s->chroot_dir != NULL ? JAIL_SHIM : s->shim;
    int fd = open(shim, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno(EXIT_APPLY, errno, "preload shim: open %s as the worker", shim);
    close(fd);
}

int main(int argc, char **argv)
{
    static struct settings s;
    ensure_std_fds();
    s.pid = getpid();
    s.original_ppid = getppid();
    s.max_fd_at_start = highest_open_fd();

    /* 1. Validate everything before touching anything. */
    parse_options(&s, argc, argv);
    s.cap_last_cap = read_cap_last_cap();
    find_shim(&s);
    build_filter(&s);
    if (s.check_only) {
        run_checks(&s);
        return 0;
    }
    reset_signals();

    /* 2. Resources. */
    apply_cgroup(&s);
    apply_rlimits(&s);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        die_errno(EXIT_APPLY, errno, "dumpable: PR_SET_DUMPABLE 0");

    /* 3. The jail's mounts, and what needs the host's /proc. */
    build_jail(&s);
    set_apparmor(&s);
    int bounding_dropped = drop_bounding_set(&s);

    /* 4. Into the jail, then the identity. */
    enter_chroot(&s);
    change_user(&s);
    clear_capabilities(&s, bounding_dropped);
    set_parent_death_signal(&s);
    check_program_and_shim(&s);
    char **env = program_environment(&s);

    /* 5. Lock it. */
    listen_passed_sockets(&s);
    keep_fds_across_exec(&s);
    set_no_new_privs();
    load_filter(&s);
    close_stray_fds(&s);

    execve(s.argv[0], s.argv, env);
    die_errno(EXIT_EXEC, errno, "exec %s", s.argv[0]);
}
