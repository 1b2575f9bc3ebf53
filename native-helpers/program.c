/*
 * PROGRAM and the shim preloaded into it (lock.c).
 *
 * exec resets the dumpable flag, and the helper's filter must allow the
 * helper's own execve; both are fixed after exec by the shim, which ld.so
 * loads into PROGRAM before PROGRAM's code runs. That only works for a
 * dynamically linked ELF program (ld.so ignores LD_PRELOAD and
 * /etc/ld.so.preload for a static one), so PROGRAM is checked to be one.
 *
 * In a jail the shim is bound read-only at JAIL_SHIM and named by the
 * jail's /etc/ld.so.preload (jail.c): the environment stays clean, and
 * ld.so honours that file even in secure-execution mode, where it drops
 * LD_PRELOAD paths (ld.so(8)). Without a jail, LD_PRELOAD names it.
 */
#include "sandbox.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* Could the worker's identity do `bits` (S_IRUSR-style, owner position) on this file? */
static int worker_may(const struct settings *s, const struct stat *st, mode_t owner_bits)
{
    uid_t uid = s->change_user ? s->uid : geteuid();
    gid_t gid = s->change_user ? s->gid : getegid();
    if (uid == 0)
        return owner_bits != S_IXUSR || (st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
    if (st->st_uid == uid)
        return (st->st_mode & owner_bits) == owner_bits;
    int in_group = st->st_gid == gid;
    if (s->change_user)
        for (size_t i = 0; i < s->ngroups; i++)
            in_group |= st->st_gid == s->groups[i];
    else
        in_group |= group_member(st->st_gid);
    if (in_group)
        return (st->st_mode & (owner_bits >> 3)) == (owner_bits >> 3);
    return (st->st_mode & (owner_bits >> 6)) == (owner_bits >> 6);
}

void find_shim(struct settings *s)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        die_errno(EXIT_APPLY, n < 0 ? errno : ENOENT, "preload shim: readlink /proc/self/exe");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        die(EXIT_APPLY, "preload shim: /proc/self/exe is not a path: %s", self);
    *slash = '\0';
    const char *name = s->seccomp == SECCOMP_OFF ? SHIM_NODUMP : SHIM_LOCK;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", self, name) >= sizeof path)
        die(EXIT_APPLY, "preload shim: path too long");
    char resolved[PATH_MAX];
    if (realpath(path, resolved) == NULL)
        die_errno(EXIT_APPLY, errno, "preload shim %s (built by make -C native-helpers)", path);

    /* The shim runs inside every worker: it must be as trustworthy as the helper itself. */
    struct stat shim, helper;
    if (stat(resolved, &shim) != 0 || stat("/proc/self/exe", &helper) != 0)
        die_errno(EXIT_APPLY, errno, "preload shim %s", resolved);
    if (!S_ISREG(shim.st_mode))
        die(EXIT_APPLY, "preload shim %s: not a regular file", resolved);
    if (shim.st_uid != helper.st_uid)
        die(EXIT_APPLY, "preload shim %s: owned by uid %u, the helper by uid %u", resolved, (unsigned)shim.st_uid,
            (unsigned)helper.st_uid);
    if (shim.st_mode & (S_IWGRP | S_IWOTH))
        die(EXIT_APPLY, "preload shim %s: writable by group or others (mode %04o)", resolved, (unsigned)(shim.st_mode & 07777));
    if (!worker_may(s, &shim, S_IRUSR))
        die(EXIT_APPLY, "preload shim %s: not readable by the worker's user (mode %04o)", resolved, (unsigned)(shim.st_mode & 07777));
    s->shim = xstrdup(resolved);
}

/*
 * PROGRAM must exist, be executable by the worker and be a dynamically
 * linked x86_64 ELF program (it has an interpreter, PT_INTERP). `path` is
 * where to look (inside the jail after chroot, or its host path for
 * --check); `shown` is PROGRAM as given. A missing or non-executable
 * PROGRAM gets the line and exit code the exec itself would give.
 */
void check_program(const struct settings *s, const char *path, const char *shown)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno(EXIT_EXEC, errno, "exec %s", shown);
    struct stat st;
    if (fstat(fd, &st) != 0)
        die_errno(EXIT_EXEC, errno, "exec %s", shown);
    if (!S_ISREG(st.st_mode) || !worker_may(s, &st, S_IXUSR))
        die_errno(EXIT_EXEC, EACCES, "exec %s", shown);
    if (!worker_may(s, &st, S_IRUSR))
        die(EXIT_APPLY, "exec %s: not readable by the worker's user, so it cannot be checked to be dynamically linked", shown);

    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
        (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        eh.e_phnum > 512)
        die(EXIT_APPLY, "exec %s: not an x86_64 ELF executable (the helper preloads a shim into PROGRAM, so it must be one)",
            shown);
    int dynamic = 0;
    for (unsigned i = 0; i < eh.e_phnum && !dynamic; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph)
            die(EXIT_APPLY, "exec %s: truncated ELF program headers", shown);
        dynamic = ph.p_type == PT_INTERP;
    }
    close(fd);
    if (!dynamic)
        die(EXIT_APPLY,
            "exec %s: statically linked: the shim that makes the worker non-dumpable and forbids exec after start cannot be "
            "preloaded into it",
            shown);
}

/* The environment of PROGRAM: the caller's, plus LD_PRELOAD naming the shim when there is no jail. */
char **program_environment(const struct settings *s)
{
    if (s->chroot_dir != NULL)
        return environ;
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    char **env = calloc(count + 2, sizeof *env);
    size_t len = strlen("LD_PRELOAD=") + strlen(s->shim) + 1;
    char *preload = malloc(len);
    if (env == NULL || preload == NULL)
        die_errno(EXIT_APPLY, ENOMEM, "environment");
    snprintf(preload, len, "LD_PRELOAD=%s", s->shim);
    memcpy(env, environ, count * sizeof *env);
    env[count] = preload;
    env[count + 1] = NULL;
    return env;
}
