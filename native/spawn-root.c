/*
 * The container's root, built in its private mount namespace on `rootdir`:
 *   usr mode:    a fresh tmpfs with /usr = the given tree read-only (or an overlay of app
 *                layers over it), /bin /lib ... symlinks into it, and nothing else of the host;
 *   rootfs mode: a bind of a whole unpacked root (an OCI image).
 * Then /proc (with the usual paths masked or read-only), a read-only /sys, a minimal /dev,
 * tmpfs /tmp and /run, and the spec's tmpfs, binds, files and symlinks. Every path inside the
 * root is opened component by component without following symlinks, and mounts go onto those
 * descriptors, so nothing a container left in its writable space can redirect a mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "spawn.h"

enum kind { K_DIR, K_FILE, K_EXISTING };

static int rootfd = -1;

static int openat2_beneath(int dirfd, const char *name, int flags, mode_t mode) {
    struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .mode = mode,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
    return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
}

/*
 * An O_PATH descriptor for the container path `path` (absolute) beneath rootfd, creating
 * missing directories, and the final file for K_FILE. A symlink anywhere fails with ELOOP.
 */
static int open_beneath(const char *path, enum kind kind) {
    int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    for (const char *p = path + 1; fd >= 0 && *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (len > NAME_MAX) {
            close(fd);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat2_beneath(fd, comp, O_PATH, 0);
        if (next < 0 && errno == ENOENT && kind != K_EXISTING) {
            if (slash || kind == K_DIR) {
                if (mkdirat(fd, comp, 0755) && errno != EEXIST) goto out;
            } else {
                int w = openat(fd, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (w < 0 && errno != EEXIST) goto out;
                if (w >= 0) close(w);
            }
            next = openat2_beneath(fd, comp, O_PATH, 0);
        }
    out:;
        int e = errno;
        close(fd);
        errno = e;
        fd = next;
        p = slash ? slash + 1 : p + len;
    }
    return fd;
}

static const char *fdpath(int fd, char buf[32]) {
    snprintf(buf, 32, "/proc/self/fd/%d", fd);
    return buf;
}

static int mount_on(const char *step, const char *path, enum kind kind, const char *source, const char *fstype,
                    unsigned long flags, const char *data, struct failure *f) {
    char buf[32];
    int fd = open_beneath(path, kind);
    if (fd < 0) return fail(f, errno, step, "%s", path);
    int r = mount(source, fdpath(fd, buf), fstype, flags, data);
    int e = errno;
    close(fd);
    return r ? fail(f, e, step, "%s on %s", source, path) : 0;
}

/* Clones `src` (a host path, or the descriptor srcfd when src is NULL), applies attr to the
 * whole copy while it is still detached, then attaches it at the container path. */
static int bind_tree(const char *step, int srcfd, const char *src, const char *path, enum kind kind, unsigned long long attr,
                     struct failure *f) {
    int tree = (int)open_tree(src ? AT_FDCWD : srcfd, src ? src : "",
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | (src ? 0 : AT_EMPTY_PATH));
    if (tree < 0) return fail(f, errno, step, "%s", src ? src : path);
    struct mount_attr ma = {.attr_set = attr};
    if (attr && mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof ma)) {
        int e = errno;
        close(tree);
        return fail(f, e, step, "setting flags on %s", src ? src : path);
    }
    int target = open_beneath(path, kind);
    if (target < 0) {
        int e = errno;
        close(tree);
        return fail(f, e, step, "%s", path);
    }
    int r = move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    close(tree);
    close(target);
    return r ? fail(f, e, step, "attaching %s at %s", src ? src : path, path) : 0;
}

static int make_symlink(const char *target, const char *path, struct failure *f) {
    char parent[PATH_MAX];
    const char *base = strrchr(path, '/') + 1;
    snprintf(parent, sizeof parent, "%.*s", (int)(base - path), path);
    int dir = open_beneath(parent, K_DIR);
    if (dir < 0) return fail(f, errno, "symlink", "%s", parent);
    int r = symlinkat(target, dir, base);
    int e = errno;
    close(dir);
    return r && e != EEXIST ? fail(f, e, "symlink", "%s -> %s", path, target) : 0;
}

static int write_file(const struct file_rec *r, struct failure *f) {
    char parent[PATH_MAX];
    const char *base = strrchr(r->path, '/') + 1;
    snprintf(parent, sizeof parent, "%.*s", (int)(base - r->path), r->path);
    int dir = open_beneath(parent, K_DIR);
    if (dir < 0) return fail(f, errno, "write file", "%s", parent);
    int fd = openat2_beneath(dir, base, O_WRONLY | O_CREAT | O_TRUNC, r->mode);
    int e = errno;
    close(dir);
    if (fd < 0) return fail(f, e, "write file", "%s", r->path);
    size_t len = strlen(r->content);
    ssize_t n = write(fd, r->content, len);
    e = errno;
    if (n == (ssize_t)len && fchmod(fd, r->mode) == 0) {
        close(fd);
        return 0;
    }
    close(fd);
    return fail(f, n < 0 ? e : EIO, "write file", "%s", r->path);
}

static const char *fdpath_of(int fd) {
    static char bufs[MAX_LAYERS + 1][32];
    static int next;
    char *b = bufs[next++ % (MAX_LAYERS + 1)];
    return fdpath(fd, b);
}

static int mount_usr(const struct spec *s, struct failure *f) {
    if (s->nlayers == 0) return bind_tree("mount /usr", s->usr_fd, NULL, "/usr", K_DIR, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, f);
    /* lower directories only, no upper: the overlay is read-only by construction; the
     * descriptors' /proc paths stand for the host paths */
    char opts[4096] = "lowerdir=";
    for (int i = 0; i < s->nlayers; i++) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%s:", fdpath_of(s->layer_fds[i]));
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%s", fdpath_of(s->usr_fd));
    return mount_on("mount /usr", "/usr", K_DIR, "overlay", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts, f);
}

/* usr-merged: whatever top-level links the tree needs point into it */
static int usr_links(struct failure *f) {
    static const char *const links[] = {"bin", "sbin", "lib", "lib64", "lib32", "libx32"};
    int usr = open_beneath("/usr", K_EXISTING);
    if (usr < 0) return fail(f, errno, "mount /usr", "reopening /usr");
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        char target[16], path[16];
        if (faccessat(usr, links[i], F_OK, AT_SYMLINK_NOFOLLOW)) continue;
        snprintf(target, sizeof target, "usr/%s", links[i]);
        snprintf(path, sizeof path, "/%s", links[i]);
        if (make_symlink(target, path, f)) {
            close(usr);
            return -1;
        }
    }
    close(usr);
    return 0;
}

static int make_dev(struct failure *f) {
    static const struct { const char *name; unsigned major, minor; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
    };
    if (mount_on("mount /dev", "/dev", K_DIR, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k", f)) return -1;
    int dev = open_beneath("/dev", K_EXISTING);
    if (dev < 0) return fail(f, errno, "mount /dev", "reopening /dev");
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        char path[32];
        snprintf(path, sizeof path, "/dev/%s", nodes[i].name);
        if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) == 0) continue;
        int e = errno;
        /* in a user namespace mknod is not allowed: bind the host's node instead */
        if (e != EPERM || bind_tree("mount /dev", -1, path, path, K_FILE, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, f)) {
            close(dev);
            return e != EPERM ? fail(f, e, "mount /dev", "mknod %s", path) : -1;
        }
    }
    close(dev);
    if (mount_on("mount /dev/pts", "/dev/pts", K_DIR, "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5", f) &&
        mount_on("mount /dev/pts", "/dev/pts", K_DIR, "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", f))
        return -1; /* gid 5 (tty) may be unmapped in a user namespace */
    static const char *const links[][2] = {
        {"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (make_symlink(links[i][0], links[i][1], f)) return -1;
    return mount_on("mount /dev/shm", "/dev/shm", K_DIR, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k", f);
}

/* The paths docker and podman hide from containers (kernel memory, keys, timers, firmware). */
static const char *const masked[] = {
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const read_only[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

static int mask_paths(struct failure *f) {
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        int fd = open_beneath(masked[i], K_EXISTING);
        if (fd < 0) {
            if (errno == ENOENT) continue;
            return fail(f, errno, "mask", "%s", masked[i]);
        }
        struct stat st;
        int r = fstat(fd, &st);
        close(fd);
        if (r == 0 && S_ISDIR(st.st_mode)) r = mount_on("mask", masked[i], K_EXISTING, "tmpfs", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=000", f);
        else r = bind_tree("mask", -1, "/dev/null", masked[i], K_EXISTING, MOUNT_ATTR_RDONLY, f);
        if (r) return -1;
    }
    for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++) {
        int fd = open_beneath(read_only[i], K_EXISTING);
        if (fd < 0) {
            if (errno == ENOENT) continue;
            return fail(f, errno, "read-only", "%s", read_only[i]);
        }
        int r = bind_tree("read-only", fd, NULL, read_only[i], K_EXISTING,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, f);
        close(fd);
        if (r) return -1;
    }
    return 0;
}

static int mount_sys(struct failure *f) {
    struct failure ignored;
    if (mount_on("mount /sys", "/sys", K_DIR, "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, &ignored) == 0) return 0;
    /* a new sysfs needs a network namespace of our own user namespace (not so for --net host
     * in a user namespace): show the host's, read-only */
    return bind_tree("mount /sys", -1, "/sys", "/sys", K_DIR, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, f);
}

static int open_host(const char *step, const char *path, int dir, int *out, struct failure *f) {
    *out = open(path, O_PATH | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
    return *out < 0 ? fail(f, errno, step, "%s", path) : 0;
}

int root_open_host_paths(struct spec *s, struct failure *f) {
    s->rootdir_fd = s->usr_fd = s->rootfs_fd = -1;
    if (open_host("mount root", s->rootdir, 1, &s->rootdir_fd, f)) return -1;
    if (s->usr && open_host("mount /usr", s->usr, 1, &s->usr_fd, f)) return -1;
    if (s->rootfs && open_host("mount root", s->rootfs, 1, &s->rootfs_fd, f)) return -1;
    for (int i = 0; i < s->nlayers; i++)
        if (open_host("mount /usr", s->layers[i], 1, &s->layer_fds[i], f)) return -1;
    for (int i = 0; i < s->nbinds; i++)
        if (open_host("bind", s->binds[i].src, 0, &s->binds[i].src_fd, f)) return -1;
    return 0;
}

/* A detached tmpfs: its descriptor stays the root of that mount once attached. */
static int new_tmpfs_root(struct failure *f) {
    int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0) return fail(f, errno, "mount root", "fsopen tmpfs");
    int mnt = -1;
    if (fsconfig(fs, FSCONFIG_SET_STRING, "mode", "755", 0) == 0 && fsconfig(fs, FSCONFIG_SET_STRING, "size", "16m", 0) == 0 &&
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    int e = errno;
    close(fs);
    return mnt < 0 ? fail(f, e, "mount root", "creating the root tmpfs") : mnt;
}

int root_build(const struct spec *s, struct failure *f) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) return fail(f, errno, "mount namespace", "making / private");
    int mnt = s->usr ? new_tmpfs_root(f)
                     : (int)open_tree(s->rootfs_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    if (mnt < 0) return s->usr ? -1 : fail(f, errno, "mount root", "%s", s->rootfs);
    if (move_mount(mnt, "", s->rootdir_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) {
        int e = errno;
        close(mnt);
        return fail(f, e, "mount root", "attaching it on %s", s->rootdir);
    }
    rootfd = mnt;

    if (s->usr && (mount_usr(s, f) || usr_links(f))) return -1;
    if (mount_on("mount /proc", "/proc", K_DIR, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, f)) return -1;
    if (mount_sys(f) || make_dev(f)) return -1;
    if (mount_on("mount /tmp", "/tmp", K_DIR, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", f)) return -1;
    if (mount_on("mount /run", "/run", K_DIR, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755", f)) return -1;
    for (int i = 0; i < s->ntmpfs; i++) {
        char opts[32];
        snprintf(opts, sizeof opts, "mode=%o", (unsigned)s->tmpfs[i].mode);
        if (mount_on("tmpfs", s->tmpfs[i].path, K_DIR, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, opts, f)) return -1;
    }
    for (int i = 0; i < s->nbinds; i++) {
        const struct bind *b = &s->binds[i];
        struct stat st;
        if (fstat(b->src_fd, &st)) return fail(f, errno, "bind", "%s", b->src);
        unsigned long long attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (b->ro ? MOUNT_ATTR_RDONLY : 0);
        if (bind_tree("bind", b->src_fd, NULL, b->dst, S_ISDIR(st.st_mode) ? K_DIR : K_FILE, attr, f)) return -1;
    }
    for (int i = 0; i < s->nfiles; i++)
        if (write_file(&s->files[i], f)) return -1;
    for (int i = 0; i < s->nsymlinks; i++)
        if (make_symlink(s->symlinks[i].target, s->symlinks[i].path, f)) return -1;
    return mask_paths(f);
}

int root_enter(const struct spec *s, struct failure *f) {
    /* pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours */
    if (fchdir(rootfd)) return fail(f, errno, "pivot_root", "chdir %s", s->rootdir);
    if (syscall(SYS_pivot_root, ".", ".")) return fail(f, errno, "pivot_root", "%s", s->rootdir);
    if (umount2(".", MNT_DETACH)) return fail(f, errno, "pivot_root", "detaching the old root");
    if (chdir("/")) return fail(f, errno, "pivot_root", "chdir /");
    close(rootfd);
    rootfd = -1;
    /* the init stays alive inside: it must hold nothing that leads back to the host */
    close(s->rootdir_fd);
    if (s->usr) close(s->usr_fd);
    if (s->rootfs) close(s->rootfs_fd);
    for (int i = 0; i < s->nlayers; i++) close(s->layer_fds[i]);
    for (int i = 0; i < s->nbinds; i++) close(s->binds[i].src_fd);
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (s->usr && mount_setattr(AT_FDCWD, "/", 0, &ro, sizeof ro)) return fail(f, errno, "pivot_root", "making / read-only");
    return 0;
}
