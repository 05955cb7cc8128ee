/* Factory reset of the writable root, before anything uses it: `cairn provision reset` leaves a
 * request in ROOT/.cairn-factory-reset naming what to keep (one root-relative path a line); the
 * next boot's init moves those into ROOT/.cairn-keep, deletes everything else on the root's file
 * system, moves them back and removes the request. Every step can be cut and done again: a kept
 * path already moved aside is not looked for again, and the request goes last. The first boot
 * that follows fills /etc from the factory copy (between the wipe and the restore, so kept files in
 * /etc land on a whole one) and provisions the host again. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn-init.h"

#define REQUEST ".cairn-factory-reset"
#define KEEP ".cairn-keep"
#define MAX_KEEP 64

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), err)

/* A kept path is plain and relative, and never /usr (the verified image is not the host's to keep). */
static int keepable(const char *p) {
    if (!*p || *p == '/' || strlen(p) >= PATH_MAX / 2) return 0;
    if (!strncmp(p, "usr", 3) && (p[3] == '/' || !p[3])) return 0;
    if (!strcmp(p, KEEP) || !strcmp(p, REQUEST)) return 0;
    for (const char *s = p; *s;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
        s += n + (slash ? 1 : 0);
    }
    return 1;
}

static void mkparents(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(buf, 0755);
        *s = '/';
    }
}

static void remove_entry(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return;
    if (S_ISDIR(st.st_mode)) {
        delete_tree_same_fs(path);
        rmdir(path);
    } else {
        unlink(path);
    }
}

const char *factory_reset(const char *root, int stop_after, void (*wiped)(void), int *done, char *err, size_t errlen) {
    /* A bounded root keeps every path below within PATH_MAX. */
    char request[1100], keep[1100], list[16384];
    if (strlen(root) >= 1024) return FAIL("root path too long");
    snprintf(request, sizeof request, "%s/" REQUEST, root);
    snprintf(keep, sizeof keep, "%s/" KEEP, root);
    *done = 0;
    int fd = open(request, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? NULL : FAIL("open %s: %s", request, strerror(errno));
    ssize_t n = read(fd, list, sizeof list - 1);
    close(fd);
    if (n < 0 || n == (ssize_t)sizeof list - 1) return FAIL("%s: unreadable or too large", request);
    list[n] = 0;
    char *paths[MAX_KEEP];
    int count = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        if (!keepable(line)) return FAIL("%s: \"%s\" is not a path that can be kept", request, line);
        if (count == MAX_KEEP) return FAIL("%s: more than %d paths to keep", request, MAX_KEEP);
        paths[count++] = line;
    }
    if (mkdir(keep, 0700) && errno != EEXIST) return FAIL("mkdir %s: %s", keep, strerror(errno));
    char from[PATH_MAX], aside[PATH_MAX];
    /* 1: what to keep, aside (a rename on one file system: whole or not at all). */
    for (int i = 0; i < count; i++) {
        snprintf(from, sizeof from, "%s/%s", root, paths[i]);
        snprintf(aside, sizeof aside, "%s/%d", keep, i);
        struct stat st;
        if (lstat(aside, &st) == 0 || lstat(from, &st)) continue;
        if (rename(from, aside)) return FAIL("keep %s: %s", paths[i], strerror(errno));
    }
    sync();
    if (stop_after == 1) return NULL;
    /* 2: everything else on the root's file system. /usr is the verified image's mount point. */
    DIR *d = opendir(root);
    if (!d) return FAIL("open %s: %s", root, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "usr") || !strcmp(name, "lost+found") ||
            !strcmp(name, KEEP) || !strcmp(name, REQUEST))
            continue;
        snprintf(from, sizeof from, "%s/%s", root, name);
        remove_entry(from);
    }
    closedir(d);
    sync();
    if (stop_after == 2) return NULL;
    /* The boot fills /etc from the image now, so what is kept lands on a whole /etc. */
    if (wiped) wiped();
    /* 3: the kept paths back where they were. */
    for (int i = 0; i < count; i++) {
        snprintf(from, sizeof from, "%s/%s", root, paths[i]);
        snprintf(aside, sizeof aside, "%s/%d", keep, i);
        struct stat st;
        if (lstat(aside, &st)) continue;
        mkparents(from);
        remove_entry(from); /* what is kept wins over the image's default of the same name */
        if (rename(aside, from)) return FAIL("restore %s: %s", paths[i], strerror(errno));
        (*done)++;
    }
    sync();
    if (stop_after == 3) return NULL;
    if (rmdir(keep) && errno != ENOENT) return FAIL("rmdir %s: %s", keep, strerror(errno));
    if (unlink(request)) return FAIL("unlink %s: %s", request, strerror(errno));
    sync();
    return NULL;
}
