/*
 * The shim the sandbox helper preloads into the program it execs. Its
 * constructor runs after exec, in the new program, before that program's
 * own initializers and main (ld.so runs a preloaded object's initializers
 * before the executable's):
 *
 *  1. prctl(PR_SET_DUMPABLE, 0), read back with PR_GET_DUMPABLE. execve
 *     resets the flag to 1 (execve(2), "the dumpable attribute"); a
 *     dumpable process's /proc/<pid>/mem, environ and maps can be opened,
 *     and the process ptraced, by any process of the same uid
 *     (ptrace(2), "ptrace access mode checking").
 *  2. Built with -DEXEC_LOCK (miwidothttp-sandbox-lock.so): stack a seccomp
 *     filter that refuses execve and execveat with EPERM. The helper's
 *     filter had to allow execve for its own exec; filters only ever add
 *     restrictions, so from here on no filter lets exec through. Read back
 *     by calling execve with a NULL path: the filter answers EPERM, while
 *     without it the kernel would answer EFAULT (nothing runs either way).
 *  3. Remove LD_PRELOAD from the environment (the helper sets it only when
 *     there is no jail; in a jail the shim is named by /etc/ld.so.preload).
 *
 * Any failure: one line on stderr and _exit(126), before the program runs.
 * The filter is plain classic BPF: six instructions are easier to audit
 * than a copy of libseccomp in every worker.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "miwidothttp-sandbox: the exec lock is written for x86_64 only"
#endif

#define X32_SYSCALL_BIT 0x40000000u

static void fail(const char *what, int err) __attribute__((noreturn));
static void fail(const char *what, int err)
{
    char line[256];
    size_t len = 0;
    const char *parts[] = { "miwidothttp-sandbox: preload: ", what, err ? ": " : "", err ? strerror(err) : "", "\n" };
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
        for (const char *c = parts[p]; *c && len < sizeof line - 1; c++)
            line[len++] = *c;
    if (line[len - 1] != '\n')
        line[len - 1] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    _exit(126);
}

#ifdef EXEC_LOCK
static void lock_exec(void)
{
    struct sock_filter code[] = {
        /* Another ABI (i386, x32) than the one this filter inspects: kill. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = { .len = (unsigned short)(sizeof code / sizeof code[0]), .filter = code };

    /* The helper set no_new_privs; without it an unprivileged filter load fails anyway. */
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        fail("exec lock: no_new_privs is not set (not started by miwidothttp-sandbox?)", 0);
    /*
     * prctl rather than seccomp(2): the helper's filter always allows prctl,
     * and the process is single-threaded here (no initializer of node's
     * libraries starts a thread), so TSYNC is not needed.
     */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0)
        fail("exec lock: load the seccomp filter", errno);
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2)
        fail("exec lock: PR_GET_SECCOMP did not read back 2", 0);
    errno = 0;
    if (syscall(SYS_execve, NULL, NULL, NULL) != -1 || errno != EPERM)
        fail("exec lock: execve was not refused after loading the filter", errno);
}
#endif

__attribute__((constructor)) static void sandbox_preload(void)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail("PR_SET_DUMPABLE 0", errno);
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail("PR_GET_DUMPABLE did not read back 0", 0);
#ifdef EXEC_LOCK
    lock_exec();
#endif
    if (getenv("LD_PRELOAD") != NULL && unsetenv("LD_PRELOAD") != 0)
        fail("unset LD_PRELOAD", errno);
}
