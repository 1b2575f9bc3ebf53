/*
 * cgroup: create the worker's cgroup (and parents), write the limits, read
 * them back, move the helper in, and check /proc/self/cgroup.
 *
 * Pure v2 when /sys/fs/cgroup/cgroup.controllers exists. Otherwise v1: the
 * memory, cpu and pids hierarchies are found in /proc/self/mountinfo; a
 * controller that has no v1 hierarchy but is listed by a cgroup2 mount's
 * cgroup.controllers (hybrid set-ups) is used there. A controller needed by a
 * given limit and found nowhere is fatal. Removal is the master's job.
 */
#include "sandbox.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { C_MEMORY, C_CPU, C_PIDS, C_COUNT };
static const char *const controller_name[C_COUNT] = { "memory", "cpu", "pids" };
static const char *const controller_option[C_COUNT] = { "--max-memory", "--max-cpu-percent", "--max-pids" };

struct mounts {
    char v1[C_COUNT][PATH_MAX];   /* v1 mountpoint per controller, "" if none */
    char v2[PATH_MAX];            /* first cgroup2 mountpoint, "" if none */
};

static int needed(const struct settings *s, int c)
{
    return c == C_MEMORY ? s->has_memory : c == C_CPU ? s->has_cpu : s->has_pids;
}

/* Is `word` one of the comma-separated tokens of `list`? */
static int has_token(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == wl && strncmp(p, word, wl) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* Is `word` one of the space-separated tokens of `list`? */
static int has_word(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\n')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\n')
            e++;
        if ((size_t)(e - p) == wl && strncmp(p, word, wl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

static void find_mounts(struct mounts *m)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        die_errno(EXIT_APPLY, errno, "--cgroup: open /proc/self/mountinfo");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *fields[6] = { 0 };
        char *save = NULL;
        char *tok = strtok_r(line, " \n", &save);
        int n = 0;
        while (tok && n < 6) {
            fields[n++] = tok;
            tok = strtok_r(NULL, " \n", &save);
        }
        while (tok && strcmp(tok, "-") != 0)
            tok = strtok_r(NULL, " \n", &save);
        if (n < 6 || tok == NULL)
            continue;
        char *fstype = strtok_r(NULL, " \n", &save);
        char *source = strtok_r(NULL, " \n", &save);
        char *superopts = strtok_r(NULL, " \n", &save);
        (void)source;
        if (fstype == NULL || superopts == NULL)
            continue;
        const char *mountpoint = fields[4];
        if (strchr(mountpoint, '\\') != NULL || strlen(mountpoint) >= PATH_MAX)
            continue; /* escaped (unusual) mountpoints are not cgroup roots we use */
        if (strcmp(fstype, "cgroup") == 0) {
            for (int c = 0; c < C_COUNT; c++)
                if (m->v1[c][0] == '\0' && has_token(superopts, controller_name[c]))
                    snprintf(m->v1[c], PATH_MAX, "%s", mountpoint);
        } else if (strcmp(fstype, "cgroup2") == 0 && m->v2[0] == '\0') {
            snprintf(m->v2, PATH_MAX, "%s", mountpoint);
        }
    }
    free(line);
    fclose(f);
}

static void join(char *out, const char *a, const char *b)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX)
        die(EXIT_APPLY, "--cgroup: path too long");
}

static void write_or_die(const char *dir, const char *file, const char *value, const char *option)
{
    char path[PATH_MAX];
    join(path, dir, file);
    int rc = write_file(path, value);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "%s: write \"%s\" to %s", option, value, path);
}

static void expect_value(const char *dir, const char *file, const char *expected, const char *option)
{
    char path[PATH_MAX], buf[256];
    join(path, dir, file);
    int rc = read_file(path, buf, sizeof buf);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "%s: read back %s", option, path);
    buf[strcspn(buf, "\n")] = '\0';
    if (strcmp(buf, expected) != 0)
        die(EXIT_APPLY, "%s: read back %s: \"%s\", expected \"%s\"", option, path, buf, expected);
}

static int file_exists(const char *dir, const char *file)
{
    char path[PATH_MAX];
    join(path, dir, file);
    return access(path, F_OK) == 0;
}

static void make_dirs(const char *root, const char *rel)
{
    char path[PATH_MAX];
    join(path, root, rel);
    int rc = mkdir_p(path, 0755);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--cgroup %s: mkdir %s", rel, path);
}

static void attach(const char *dir, const char *rel)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    char path[PATH_MAX];
    join(path, dir, "cgroup.procs");
    int rc = write_file(path, pid);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--cgroup %s: attach (write pid to %s)", rel, path);
}

/* Check /proc/self/cgroup: the line for `controller` (NULL: the v2 "0::" line) ends in "/rel". */
static void verify_membership(const char *controller, const char *rel)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        die_errno(EXIT_APPLY, errno, "--cgroup %s: open /proc/self/cgroup", rel);
    char *line = NULL;
    size_t cap = 0;
    int ok = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1;
        const char *path = c2 + 1;
        int match = controller == NULL ? (strncmp(line, "0:", 2) == 0 && *ctrls == '\0') : has_token(ctrls, controller);
        if (!match)
            continue;
        size_t pl = strlen(path), rl = strlen(rel);
        if (pl > rl && strcmp(path + pl - rl, rel) == 0 && path[pl - rl - 1] == '/')
            ok = 1;
    }
    free(line);
    fclose(f);
    if (!ok)
        die(EXIT_APPLY, "--cgroup %s: not a member after attaching (%s hierarchy, /proc/self/cgroup)", rel,
            controller ? controller : "v2");
}

static void write_memory_v1(const char *dir, uint64_t bytes)
{
    char value[32];
    snprintf(value, sizeof value, "%llu", (unsigned long long)bytes);
    int memsw = file_exists(dir, "memory.memsw.limit_in_bytes");
    char path[PATH_MAX];
    join(path, dir, "memory.limit_in_bytes");
    int rc = write_file(path, value);
    if (rc == -EINVAL && memsw) {
        /* memory.limit_in_bytes may not exceed an existing memsw limit: raise memsw first. */
        write_or_die(dir, "memory.memsw.limit_in_bytes", value, "--max-memory");
        rc = write_file(path, value);
    }
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--max-memory: write \"%s\" to %s", value, path);
    if (memsw)
        write_or_die(dir, "memory.memsw.limit_in_bytes", value, "--max-memory");
    long page = sysconf(_SC_PAGESIZE);
    char expected[32];
    snprintf(expected, sizeof expected, "%llu", (unsigned long long)(bytes / (uint64_t)page * (uint64_t)page));
    expect_value(dir, "memory.limit_in_bytes", expected, "--max-memory");
    if (memsw)
        expect_value(dir, "memory.memsw.limit_in_bytes", expected, "--max-memory");
}

static void write_cpu_v1(const char *dir, unsigned long percent)
{
    char quota[32];
    snprintf(quota, sizeof quota, "%lu", percent * 1000UL);
    write_or_die(dir, "cpu.cfs_period_us", "100000", "--max-cpu-percent");
    write_or_die(dir, "cpu.cfs_quota_us", quota, "--max-cpu-percent");
    expect_value(dir, "cpu.cfs_period_us", "100000", "--max-cpu-percent");
    expect_value(dir, "cpu.cfs_quota_us", quota, "--max-cpu-percent");
}

static void write_pids(const char *dir, unsigned long pids)
{
    char value[32];
    snprintf(value, sizeof value, "%lu", pids);
    write_or_die(dir, "pids.max", value, "--max-pids");
    expect_value(dir, "pids.max", value, "--max-pids");
}

/*
 * v2 at `root`: enable the wanted controllers in every ancestor's
 * cgroup.subtree_control (root down to the leaf's parent), create the
 * directories, write the limits into the leaf, then attach.
 */
static void apply_v2(const struct settings *s, const char *root, const int want[C_COUNT])
{
    char controllers[512];
    char path[PATH_MAX];
    join(path, root, "cgroup.controllers");
    int rc = read_file(path, controllers, sizeof controllers);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--cgroup %s: read %s", s->cgroup, path);
    char enable[64] = "";
    for (int c = 0; c < C_COUNT; c++) {
        if (!want[c])
            continue;
        if (!has_word(controllers, controller_name[c]))
            die(EXIT_APPLY, "%s: cgroup controller %s is not available (cgroup v2 %s)", controller_option[c], controller_name[c], root);
        strcat(enable, enable[0] ? " +" : "+");
        strcat(enable, controller_name[c]);
    }

    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", root);
    const char *rel = s->cgroup;
    const char *p = rel;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        /* `dir` is an ancestor of the leaf: let its children use the controllers. */
        if (enable[0] != '\0') {
            join(path, dir, "cgroup.subtree_control");
            rc = write_file(path, enable);
            if (rc < 0)
                die_errno(EXIT_APPLY, -rc, "--cgroup %s: enable \"%s\" in %s", rel, enable, path);
        }
        size_t dl = strlen(dir);
        if (dl + 1 + len >= sizeof dir)
            die(EXIT_APPLY, "--cgroup: path too long");
        dir[dl] = '/';
        memcpy(dir + dl + 1, p, len);
        dir[dl + 1 + len] = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            die_errno(EXIT_APPLY, errno, "--cgroup %s: mkdir %s", rel, dir);
        if (!e)
            break;
        p = e + 1;
    }

    if (want[C_MEMORY] && s->has_memory) {
        char value[32], expected[32];
        long page = sysconf(_SC_PAGESIZE);
        snprintf(value, sizeof value, "%llu", (unsigned long long)s->max_memory);
        snprintf(expected, sizeof expected, "%llu", (unsigned long long)(s->max_memory / (uint64_t)page * (uint64_t)page));
        write_or_die(dir, "memory.max", value, "--max-memory");
        expect_value(dir, "memory.max", expected, "--max-memory");
        if (file_exists(dir, "memory.swap.max"))
            write_or_die(dir, "memory.swap.max", "0", "--max-memory");
    }
    if (want[C_CPU] && s->has_cpu) {
        char value[64];
        snprintf(value, sizeof value, "%lu 100000", s->max_cpu_percent * 1000UL);
        write_or_die(dir, "cpu.max", value, "--max-cpu-percent");
        expect_value(dir, "cpu.max", value, "--max-cpu-percent");
    }
    if (want[C_PIDS] && s->has_pids)
        write_pids(dir, s->max_pids);
    attach(dir, rel);
    verify_membership(NULL, rel);
}

/* Which of the controllers the settings need live on the cgroup2 mount (a
 * pure v2 host, or a hybrid one without a v1 hierarchy for them); dies
 * naming the first that is nowhere. Returns whether any does. */
static int plan_v2(const struct settings *s, const struct mounts *m, int on_v2[C_COUNT])
{
    int any_v2 = 0;
    for (int c = 0; c < C_COUNT; c++) {
        on_v2[c] = 0;
        if (m->v1[c][0] != '\0' || !needed(s, c))
            continue;
        /* Hybrid: the controller may live on the cgroup2 mount. */
        char controllers[512] = "";
        if (m->v2[0] != '\0') {
            char path[PATH_MAX];
            join(path, m->v2, "cgroup.controllers");
            if (read_file(path, controllers, sizeof controllers) < 0)
                controllers[0] = '\0';
        }
        if (!has_word(controllers, controller_name[c]))
            die(EXIT_APPLY, "%s: cgroup controller %s is not available (no v1 hierarchy, not in cgroup v2)", controller_option[c], controller_name[c]);
        on_v2[c] = 1;
        any_v2 = 1;
    }
    return any_v2;
}

/* A pure cgroup v2 host: every controller the settings need is wanted there. */
static int pure_v2(const struct settings *s, int want[C_COUNT])
{
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0)
        return 0;
    for (int c = 0; c < C_COUNT; c++)
        want[c] = needed(s, c);
    return 1;
}

void apply_cgroup(const struct settings *s)
{
    if (s->cgroup == NULL)
        return;

    int want[C_COUNT];
    if (pure_v2(s, want)) {
        apply_v2(s, "/sys/fs/cgroup", want);
        return;
    }

    struct mounts m;
    find_mounts(&m);
    int on_v2[C_COUNT];
    int any_v2 = plan_v2(s, &m, on_v2), attached = 0;

    /* Several controllers may share one v1 hierarchy (e.g. cpu,cpuacct): attach once per mount. */
    for (int c = 0; c < C_COUNT; c++) {
        if (m.v1[c][0] == '\0')
            continue;
        char dir[PATH_MAX];
        join(dir, m.v1[c], s->cgroup);
        make_dirs(m.v1[c], s->cgroup);
        if (c == C_MEMORY && s->has_memory)
            write_memory_v1(dir, s->max_memory);
        if (c == C_CPU && s->has_cpu)
            write_cpu_v1(dir, s->max_cpu_percent);
        if (c == C_PIDS && s->has_pids)
            write_pids(dir, s->max_pids);
        int first = 1;
        for (int d = 0; d < c; d++)
            if (strcmp(m.v1[d], m.v1[c]) == 0)
                first = 0;
        if (first)
            attach(dir, s->cgroup);
        verify_membership(controller_name[c], s->cgroup);
        attached = 1;
    }
    if (any_v2) {
        apply_v2(s, m.v2, on_v2);
        attached = 1;
    }
    if (!attached)
        die(EXIT_APPLY, "--cgroup %s: no memory, cpu or pids cgroup hierarchy is mounted", s->cgroup);
}

/*
 * --check: would apply_cgroup succeed? The same discovery and the same
 * refusals, with nothing created or written: the controllers a limit needs
 * are offered, and in each hierarchy the nearest existing ancestor of the
 * worker's cgroup is a directory this process may create entries in.
 */
static void check_usable(const char *root, const char *rel, const char *controllers_needed_by)
{
    char dir[PATH_MAX], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", root);
    const char *p = rel;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t dl = strlen(dir);
        if (dl + 1 + len >= sizeof path)
            die(EXIT_APPLY, "--cgroup: path too long");
        memcpy(path, dir, dl);
        path[dl] = '/';
        memcpy(path + dl + 1, p, len);
        path[dl + 1 + len] = '\0';
        struct stat st;
        if (stat(path, &st) != 0) {
            if (errno != ENOENT)
                die_errno(EXIT_APPLY, errno, "--cgroup %s: stat %s", rel, path);
            break; /* the helper would create it (and what is below) in `dir` */
        }
        if (!S_ISDIR(st.st_mode)) {
            join(path, root, rel); /* the path a real run's mkdir -p reports (v1) */
            die_errno(EXIT_APPLY, ENOTDIR, "--cgroup %s: mkdir %s", rel, path);
        }
        if (controllers_needed_by != NULL && e != NULL) {
            /* v2: a controller can be enabled below an ancestor only if the ancestor has it. */
            char controllers[512], file[PATH_MAX];
            join(file, path, "cgroup.controllers");
            int rc = read_file(file, controllers, sizeof controllers);
            if (rc < 0)
                die_errno(EXIT_APPLY, -rc, "--cgroup %s: read %s", rel, file);
            for (const char *c = controllers_needed_by; *c; c += strlen(c) + 1)
                if (!has_word(controllers, c))
                    die(EXIT_APPLY, "--cgroup %s: controller %s is not available in %s", rel, c, path);
        }
        snprintf(dir, sizeof dir, "%s", path);
        if (!e)
            break;
        p = e + 1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        int err = errno;
        join(path, root, rel);
        die_errno(EXIT_APPLY, err, "--cgroup %s: mkdir %s", rel, path);
    }
}

/* The wanted v2 controllers as a list of NUL-terminated names ending in an empty one. */
static void wanted_names(const int want[C_COUNT], char *out, size_t size)
{
    size_t o = 0;
    for (int c = 0; c < C_COUNT; c++) {
        size_t len = strlen(controller_name[c]) + 1;
        if (want[c] && o + len + 1 <= size) {
            memcpy(out + o, controller_name[c], len);
            o += len;
        }
    }
    out[o] = '\0';
}

static void check_v2(const struct settings *s, const char *root, const int want[C_COUNT])
{
    char controllers[512], path[PATH_MAX], names[64];
    join(path, root, "cgroup.controllers");
    int rc = read_file(path, controllers, sizeof controllers);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--cgroup %s: read %s", s->cgroup, path);
    for (int c = 0; c < C_COUNT; c++)
        if (want[c] && !has_word(controllers, controller_name[c]))
            die(EXIT_APPLY, "%s: cgroup controller %s is not available (cgroup v2 %s)", controller_option[c], controller_name[c], root);
    wanted_names(want, names, sizeof names);
    check_usable(root, s->cgroup, names);
}

void check_cgroup(const struct settings *s)
{
    if (s->cgroup == NULL)
        return;
    int want[C_COUNT];
    if (pure_v2(s, want)) {
        check_v2(s, "/sys/fs/cgroup", want);
        return;
    }
    struct mounts m;
    find_mounts(&m);
    int on_v2[C_COUNT];
    int any_v2 = plan_v2(s, &m, on_v2), attached = 0;
    for (int c = 0; c < C_COUNT; c++) {
        if (m.v1[c][0] == '\0')
            continue;
        check_usable(m.v1[c], s->cgroup, NULL);
        attached = 1;
    }
    if (any_v2) {
        check_v2(s, m.v2, on_v2);
        attached = 1;
    }
    if (!attached)
        die(EXIT_APPLY, "--cgroup %s: no memory, cpu or pids cgroup hierarchy is mounted", s->cgroup);
}
