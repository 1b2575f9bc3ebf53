/*
 * miwidothttp-sandbox: shared declarations.
 *
 * The helper applies the isolation settings named by its options, in a fixed
 * order (see sandbox.c and SECURITY.md), reads every change back, and execs
 * the worker. Policy (what to bind, which user, which limits) is decided by
 * the TypeScript master; this program only applies it.
 */
#ifndef MIWIDOTHTTP_SANDBOX_H
#define MIWIDOTHTTP_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROG "miwidothttp-sandbox"

/*
 * The shims preloaded into PROGRAM (built next to the helper by the
 * Makefile, see lock.c): the first makes the process non-dumpable and
 * forbids execve, the second (for --seccomp off) only makes it
 * non-dumpable. Inside a jail the chosen one is bound read-only at
 * JAIL_SHIM and named by the jail's /etc/ld.so.preload.
 */
#define SHIM_LOCK "miwidothttp-sandbox-lock.so"
#define SHIM_NODUMP "miwidothttp-sandbox-nodump.so"
#define JAIL_SHIM_DIR "/.miwidothttp-sandbox"
#define JAIL_SHIM JAIL_SHIM_DIR "/preload.so"
#define JAIL_PRELOAD_LIST "/etc/ld.so.preload"

/* Exit codes (contract: fixed). */
#define EXIT_USAGE 125  /* unknown option, missing argument, conflicting options */
#define EXIT_APPLY 126  /* a setting could not be applied */
#define EXIT_EXEC  127  /* the final exec failed */

#define MAX_BINDS 512
#define MAX_KEEP_FDS 64
#define MAX_GROUPS 1024

enum seccomp_mode { SECCOMP_DEFAULT, SECCOMP_OFF, SECCOMP_FILE };
enum seccomp_action { ACTION_KILL, ACTION_ERRNO };

struct bind {
    char *src_arg;   /* as given (for messages) */
    char *src;       /* realpath of SRC on the host */
    char *dst;       /* normalized absolute path inside the jail */
    int is_dir;
};

struct settings {
    int check_only;          /* --check: validate, change nothing, exit 0 */

    /* user and groups */
    const char *user_arg;
    const char *group_arg;
    int change_user;
    uid_t uid;
    gid_t gid;
    size_t ngroups;          /* supplementary groups, primary gid removed */
    gid_t groups[MAX_GROUPS];

    /* jail */
    const char *chroot_arg;
    char *chroot_dir;        /* realpath */
    struct bind binds[MAX_BINDS];
    size_t nbinds;
    const char *working_dir;

    /* cgroup and limits */
    const char *cgroup;
    int has_memory, has_cpu, has_pids;
    uint64_t max_memory;
    unsigned long max_cpu_percent;
    unsigned long max_pids;

    /* rlimits */
    int has_nofile;
    unsigned long max_open_files;

    /* seccomp */
    enum seccomp_mode seccomp;
    const char *seccomp_file;
    enum seccomp_action seccomp_action;
    int seccomp_action_given;
    void *filter;            /* scmp_filter_ctx: the allowlist, built during validation */
    void *restrictions;      /* scmp_filter_ctx: argument rules no list can loosen */

    /* apparmor */
    const char *apparmor_profile;

    /* fds */
    int keep_fds[MAX_KEEP_FDS + 1];
    size_t nkeep;
    int listen_fds[MAX_KEEP_FDS];  /* also in keep_fds */
    size_t nlisten;
    int max_fd_at_start;

    /* the program (NULL only with --check and no "-- PROGRAM") */
    char **argv;             /* argv[0] is PROGRAM, absolute */
    char *shim;              /* realpath of the shim preloaded into PROGRAM */

    pid_t pid;               /* the helper's pid: PROGRAM keeps it across exec */
    pid_t original_ppid;
    unsigned long cap_last_cap;
};

/* util.c */
void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void die_errno(int code, int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);
int parse_size(const char *s, uint64_t *out);
int write_file(const char *path, const char *value);      /* 0 or -errno */
int read_file(const char *path, char *buf, size_t size);  /* length or -errno; trailing newline kept */
int mkdir_p(const char *path, mode_t mode);               /* 0 or -errno */
int have_effective_cap(int cap);
char *xstrdup(const char *s);

/* options.c */
void parse_options(struct settings *s, int argc, char **argv);
void print_help(void);

/* cgroup.c */
void apply_cgroup(const struct settings *s);
void check_cgroup(const struct settings *s);

/* jail.c */
void build_jail(const struct settings *s);
int jail_host_path(const struct settings *s, const char *inside, char *out, size_t size);
int jail_makes_parent(const struct settings *s, const char *inside);

/* program.c */
void find_shim(struct settings *s);
void check_program(const struct settings *s, const char *path, const char *shown);
char **program_environment(const struct settings *s);

/* filter.c */
void build_filter(struct settings *s);
void load_filter(const struct settings *s);

#endif
