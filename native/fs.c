/* File system helpers: the first-boot copy of /etc and freeing the initramfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn-init.h"

int dir_is_missing_or_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { empty = 0; break; }
    closedir(d);
    return empty;
}

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), err)

static const char *copy_file(const char *src, const char *dst, const struct stat *st, char *err,
                             size_t errlen) {
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0) return FAIL("open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        close(in);
        return FAIL("create %s: %s", dst, strerror(errno));
    }
    char buf[65536];
    ssize_t r;
    const char *why = NULL;
    while ((r = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0) { why = FAIL("write %s: %s", dst, strerror(errno)); goto done; }
            off += w;
        }
    }
    if (r < 0) { why = FAIL("read %s: %s", src, strerror(errno)); goto done; }
    /* chown before chmod: chown clears set-id bits */
    if (fchown(out, st->st_uid, st->st_gid) || fchmod(out, st->st_mode & 07777))
        why = FAIL("set owner/mode of %s: %s", dst, strerror(errno));
done:
    close(in);
    if (close(out) && !why) why = FAIL("close %s: %s", dst, strerror(errno));
    return why;
}

const char *copy_tree(const char *src, const char *dst, char *err, size_t errlen) {
    struct stat st;
    if (lstat(src, &st)) return FAIL("stat %s: %s", src, strerror(errno));
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof target - 1);
        if (n < 0) return FAIL("readlink %s: %s", src, strerror(errno));
        target[n] = 0;
        if (symlink(target, dst) || lchown(dst, st.st_uid, st.st_gid))
            return FAIL("symlink %s: %s", dst, strerror(errno));
        return NULL;
    }
    if (S_ISREG(st.st_mode)) return copy_file(src, dst, &st, err, errlen);
    if (!S_ISDIR(st.st_mode)) {
        /* device nodes or fifos have no place in /etc; say so, but do not stop the boot */
        info("warning: not copying special file %s", src);
        return NULL;
    }
    if (mkdir(dst, 0700)) return FAIL("mkdir %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d) return FAIL("opendir %s: %s", src, strerror(errno));
    const char *why = NULL;
    struct dirent *e;
    while (!why && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char s[PATH_MAX], t[PATH_MAX];
        if (snprintf(s, sizeof s, "%s/%s", src, e->d_name) >= (int)sizeof s ||
            snprintf(t, sizeof t, "%s/%s", dst, e->d_name) >= (int)sizeof t) {
            why = FAIL("path too long under %s", src);
            break;
        }
        why = copy_tree(s, t, err, errlen);
    }
    closedir(d);
    if (!why && (chown(dst, st.st_uid, st.st_gid) || chmod(dst, st.st_mode & 07777)))
        why = FAIL("set owner/mode of %s: %s", dst, strerror(errno));
    return why;
}

static void delete_under(int dirfd, dev_t dev) {
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || st.st_dev != dev) continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) delete_under(sub, dev);
            unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd, e->d_name, 0);
        }
    }
    closedir(d);
}

void delete_tree_same_fs(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return;
    if (fstat(fd, &st)) {
        close(fd);
        return;
    }
    delete_under(fd, st.st_dev);
}
