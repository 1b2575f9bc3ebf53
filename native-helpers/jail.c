/*
 * The jail: a private mount namespace in which an overlay (lower = the
 * configured chroot directory, upper = a small private tmpfs) is mounted on
 * the chroot directory itself. Mountpoints for the read-only bind mounts are
 * created in the overlay, so the operator's directory is never written. The
 * overlay is then remounted read-only. The caller chroots into the directory
 * afterwards (see sandbox.c), so /proc/<pid>/root seen from the host is the
 * configured path.
 *
 * Mountpoints are created by walking DST one component at a time from a
 * directory fd, refusing symlinks: a symlink inside the operator's
 * directory must not redirect a mkdir or a mount onto the host.
 *
 * After the caller's binds come the helper's own two, so that nothing can
 * cover them: the preload shim at JAIL_SHIM, and at /etc/ld.so.preload a
 * one-line file naming it (see program.c).
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define STATE_DIR "/run/miwidothttp-sandbox"

static void fd_path(char *out, size_t size, int fd)
{
    snprintf(out, size, "/proc/self/fd/%d", fd);
}

/* Create (where missing) the mountpoint for one bind and return an O_PATH fd to it. */
static int make_mountpoint(int root, const struct bind *b)
{
    char path[PATH_MAX];
    if (strlen(b->dst) >= sizeof path)
        die(EXIT_APPLY, "--bind-ro %s: DST too long", b->src_arg);
    snprintf(path, sizeof path, "%s", b->dst + 1); /* skip the leading '/' */

    int dir = dup(root);
    if (dir < 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: dup", b->src_arg);
    char *comp = path;
    for (;;) {
        char *slash = strchr(comp, '/');
        if (slash == NULL)
            break;
        *slash = '\0';
        int next = openat(dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(dir, comp, 0755) != 0 && errno != EEXIST)
                die_errno(EXIT_APPLY, errno, "--bind-ro %s: mkdir %s in the jail", b->src_arg, comp);
            next = openat(dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0)
            die_errno(EXIT_APPLY, errno == ELOOP ? ENOTDIR : errno,
                      "--bind-ro %s: parent \"%s\" of DST in the jail (symlinks are refused)", b->src_arg, comp);
        close(dir);
        dir = next;
        comp = slash + 1;
    }

    struct stat st;
    if (fstatat(dir, comp, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (b->is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
            die(EXIT_APPLY, "--bind-ro %s: DST exists in the jail and is not a %s", b->src_arg,
                b->is_dir ? "directory" : "regular file");
    } else if (errno == ENOENT) {
        if (b->is_dir) {
            if (mkdirat(dir, comp, 0755) != 0)
                die_errno(EXIT_APPLY, errno, "--bind-ro %s: mkdir %s in the jail", b->src_arg, b->dst);
        } else {
            int f = openat(dir, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (f < 0)
                die_errno(EXIT_APPLY, errno, "--bind-ro %s: create %s in the jail", b->src_arg, b->dst);
            close(f);
        }
    } else {
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: stat %s in the jail", b->src_arg, b->dst);
    }

    int target = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (target < 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: open %s in the jail", b->src_arg, b->dst);
    close(dir);
    return target;
}

/* `source`: the path mounted, which names b->src (for the caller's binds, an fd opened before the overlay, see build_jail). */
static void bind_one(int root, const struct bind *b, const char *source)
{
    int target = make_mountpoint(root, b);
    char target_path[64];
    fd_path(target_path, sizeof target_path, target);
    if (mount(source, target_path, NULL, MS_BIND, NULL) != 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: bind %s on %s", b->src_arg, b->src, b->dst);
    close(target);

    /* Reopen by name from the jail root so that the fd is the new mount's root. */
    int mounted = openat(root, b->dst + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (mounted < 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: reopen %s", b->src_arg, b->dst);
    fd_path(target_path, sizeof target_path, mounted);
    if (mount(NULL, target_path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: remount %s read-only", b->src_arg, b->dst);
    struct statvfs sv;
    if (fstatvfs(mounted, &sv) != 0)
        die_errno(EXIT_APPLY, errno, "--bind-ro %s: statvfs %s", b->src_arg, b->dst);
    if ((sv.f_flag & (ST_RDONLY | ST_NOSUID | ST_NODEV)) != (ST_RDONLY | ST_NOSUID | ST_NODEV))
        die(EXIT_APPLY, "--bind-ro %s: %s is not read-only, nosuid, nodev after remount", b->src_arg, b->dst);
    close(mounted);
}

void build_jail(const struct settings *s)
{
    if (s->chroot_dir == NULL)
        return;
    const char *dir = s->chroot_dir;

    if (unshare(CLONE_NEWNS) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: unshare(CLONE_NEWNS)", s->chroot_arg);
    /* Nothing mounted from here on propagates back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: make / private", s->chroot_arg);

    int rc = mkdir_p(STATE_DIR, 0700);
    if (rc < 0)
        die_errno(EXIT_APPLY, -rc, "--chroot %s: mkdir %s", s->chroot_arg, STATE_DIR);
    if (mount("miwidothttp-sandbox", STATE_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4m,mode=0700") != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: mount tmpfs on %s", s->chroot_arg, STATE_DIR);

    /* The overlay's root takes its owner and mode from the upper directory: copy the lower's. */
    struct stat st;
    if (stat(dir, &st) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s", s->chroot_arg);
    if (mkdir(STATE_DIR "/upper", 0755) != 0 || mkdir(STATE_DIR "/work", 0700) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: mkdir in %s", s->chroot_arg, STATE_DIR);
    if (chown(STATE_DIR "/upper", st.st_uid, st.st_gid) != 0 || chmod(STATE_DIR "/upper", st.st_mode & 07777) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: set owner and mode of the overlay root", s->chroot_arg);

    /*
     * Each SRC is opened before the overlay covers the chroot directory: a
     * SRC inside it would otherwise be reached through the overlay, whose
     * view of a unix socket cannot be connected to (overlayfs shows its own
     * inode, not the one the socket is bound to). The fds close with exec.
     */
    int src_fds[MAX_BINDS];
    for (size_t i = 0; i < s->nbinds; i++) {
        src_fds[i] = open(s->binds[i].src, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (src_fds[i] < 0)
            die_errno(EXIT_APPLY, errno, "--bind-ro %s: open %s", s->binds[i].src_arg, s->binds[i].src);
    }

    char options[PATH_MAX + 128];
    if ((size_t)snprintf(options, sizeof options, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work", dir, STATE_DIR,
                         STATE_DIR) >= sizeof options)
        die(EXIT_APPLY, "--chroot %s: path too long", s->chroot_arg);
    if (mount("miwidothttp-jail", dir, "overlay", MS_NOSUID | MS_NODEV, options) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: mount overlay", s->chroot_arg);

    int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: open the overlay", s->chroot_arg);
    for (size_t i = 0; i < s->nbinds; i++) {
        char source[64];
        fd_path(source, sizeof source, src_fds[i]);
        bind_one(root, &s->binds[i], source);
        close(src_fds[i]);
    }

    /* The preload list lives on the private tmpfs: a file of this mount namespace only. */
    const char *list = STATE_DIR "/ld.so.preload";
    int f = open(list, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0)
        die_errno(EXIT_APPLY, errno, "preload shim: create %s", list);
    static const char line[] = JAIL_SHIM "\n";
    if (write(f, line, sizeof line - 1) != (ssize_t)(sizeof line - 1) || fchmod(f, 0644) != 0 || close(f) != 0)
        die_errno(EXIT_APPLY, errno, "preload shim: write %s", list);
    struct bind own[2] = {
        { .src_arg = "(preload shim)", .src = s->shim, .dst = JAIL_SHIM, .is_dir = 0 },
        { .src_arg = "(preload list)", .src = (char *)list, .dst = JAIL_PRELOAD_LIST, .is_dir = 0 },
    };
    for (size_t i = 0; i < 2; i++)
        bind_one(root, &own[i], own[i].src);

    /* Everything is in place: the jail's own files become read-only too. */
    if (mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        die_errno(EXIT_APPLY, errno, "--chroot %s: remount the overlay read-only", s->chroot_arg);
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0 || (sv.f_flag & (ST_RDONLY | ST_NOSUID | ST_NODEV)) != (ST_RDONLY | ST_NOSUID | ST_NODEV))
        die(EXIT_APPLY, "--chroot %s: the jail root is not read-only, nosuid, nodev after remount", s->chroot_arg);
    close(root);
}

/*
 * Where a path inside the jail is on the host (for --check, which builds no
 * jail): under the longest bind DST that contains it, or under the chroot
 * directory. Symlinks are left to stat on the host, which a real run would
 * resolve inside the jail instead: --check may pass a PROGRAM reached
 * through an absolute symlink that the jail does not hold.
 */
int jail_host_path(const struct settings *s, const char *inside, char *out, size_t size)
{
    if (s->chroot_dir == NULL)
        return (size_t)snprintf(out, size, "%s", inside) < size ? 0 : -ENAMETOOLONG;
    const struct bind *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < s->nbinds; i++) {
        const struct bind *b = &s->binds[i];
        size_t len = strlen(b->dst);
        if (strncmp(inside, b->dst, len) == 0 && (inside[len] == '\0' || inside[len] == '/') && len > best_len) {
            best = b;
            best_len = len;
        }
    }
    int n = best != NULL ? snprintf(out, size, "%s%s", best->src, inside + best_len)
                         : snprintf(out, size, "%s%s", s->chroot_dir, strcmp(inside, "/") == 0 ? "" : inside);
    return n >= 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* Is `inside` a directory the helper creates in the jail, as a parent of some bind's DST? */
int jail_makes_parent(const struct settings *s, const char *inside)
{
    size_t len = strlen(inside);
    if (s->chroot_dir == NULL)
        return 0;
    if (strcmp(inside, "/") == 0)
        return 1;
    for (size_t i = 0; i < s->nbinds; i++)
        if (strncmp(s->binds[i].dst, inside, len) == 0 && s->binds[i].dst[len] == '/')
            return 1;
    return strncmp(JAIL_SHIM, inside, len) == 0 && JAIL_SHIM[len] == '/';
}
