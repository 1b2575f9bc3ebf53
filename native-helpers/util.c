/* Small helpers: fatal messages, strict number parsing, file I/O. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * One line on stderr, "miwidothttp-sandbox: <what>: <why>", then exit.
 * Formatted into one buffer and written with one write(2) so that a master
 * reading stderr sees the line whole. Newlines in the message (from option
 * values) are replaced so it stays one line.
 */
static void append(char *line, size_t size, size_t *len, const char *text)
{
    while (*text && *len + 2 < size)
        line[(*len)++] = *text++;
}

static void vdie(int code, int err, const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(int code, int err, const char *fmt, va_list ap)
{
    char line[1024], msg[900];
    size_t len = 0;
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    append(line, sizeof line, &len, PROG ": ");
    append(line, sizeof line, &len, msg);
    if (err != 0) {
        append(line, sizeof line, &len, ": ");
        append(line, sizeof line, &len, strerror(err));
    }
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    _exit(code);
}

void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(code, 0, fmt, ap);
}

void die_errno(int code, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(code, err, fmt, ap);
}

/* Decimal only, no sign, no spaces, no trailing junk, within [min, max]. */
int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Bytes, or a number with K, M or G (powers of 1024, either case). */
int parse_size(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    size_t len = strlen(s);
    uint64_t mult = 1;
    char digits[32];
    char last = s[len - 1];
    switch (last) {
    case 'k': case 'K': mult = 1024ULL; len--; break;
    case 'm': case 'M': mult = 1024ULL * 1024; len--; break;
    case 'g': case 'G': mult = 1024ULL * 1024 * 1024; len--; break;
    default: break;
    }
    if (len == 0 || len >= sizeof digits)
        return -1;
    memcpy(digits, s, len);
    digits[len] = '\0';
    unsigned long v;
    if (parse_ulong(digits, 1, ULONG_MAX, &v) != 0)
        return -1;
    if ((uint64_t)v > UINT64_MAX / mult)
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int err = n < 0 ? errno : (size_t)n != len ? EIO : 0;
    if (close(fd) != 0 && err == 0)
        err = errno;
    return -err;
}

int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(fd);
            return -err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    return (int)len;
}

/* mkdir -p; an existing directory is fine, an existing non-directory is not. */
int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return -errno;
            struct stat st;
            if (lstat(tmp, &st) != 0)
                return -errno;
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        die_errno(EXIT_APPLY, ENOMEM, "out of memory");
    return d;
}

int have_effective_cap(int cap)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        die_errno(EXIT_APPLY, errno, "capabilities: capget");
    return (d[cap / 32].effective >> (cap % 32)) & 1;
}
