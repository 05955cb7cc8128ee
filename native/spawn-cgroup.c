/*
 * The container's cgroups. Each controller a limit needs is taken from the hierarchy that
 * has it: a legacy v1 hierarchy (hybrid hosts such as this project's CI machines) or the v2
 * unified one (the images cairn builds). The directories are always made beneath the cgroup
 * this process already runs in, in each hierarchy: a runtime has no business elsewhere in
 * the tree. A v2 tree also gets a plain directory for tracking and the cgroup namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s) {
    char *o = s;
    for (char *i = s; *i; i++) {
        if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] >= '0' && i[2] <= '7' && i[3] >= '0' && i[3] <= '7') {
            *o++ = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
            i += 3;
        } else {
            *o++ = *i;
        }
    }
    *o = '\0';
}

static int has_token(const char *list, const char *token) {
    size_t n = strlen(token);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && !strncmp(p, token, n)) return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/*
 * Where this process's cgroup for `controller` (NULL: the v2 unified hierarchy) lives in the
 * file system: the mount of that hierarchy plus our path in it, relative to the mount's root.
 */
static int own_cgroup_dir(const char *controller, char *out, size_t outlen) {
    char line[8192], own[4096] = "";
    int found = 0;
    FILE *cg = fopen("/proc/self/cgroup", "re");
    if (!cg) return -1;
    while (!found && fgets(line, sizeof line, cg)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        /* "ID:CONTROLLERS:PATH": split it into its three fields (v2 is "0::PATH") */
        *c1 = '\0';
        *c2 = '\0';
        int match = controller ? has_token(c1 + 1, controller) : (!strcmp(line, "0") && c1[1] == '\0');
        if (match && strlen(c2 + 1) < sizeof own) {
            strcpy(own, c2 + 1);
            found = 1;
        }
    }
    fclose(cg);
    if (!found) return -1;

    FILE *mi = fopen("/proc/self/mountinfo", "re");
    if (!mi) return -1;
    found = 0;
    while (!found && fgets(line, sizeof line, mi)) {
        line[strcspn(line, "\n")] = '\0';
        char *f[6], *save, *sep = strstr(line, " - ");
        if (!sep) continue;
        *sep = '\0';
        char *fstype = strtok_r(sep + 3, " ", &save);
        strtok_r(NULL, " ", &save); /* source */
        char *super = strtok_r(NULL, " ", &save);
        if (!fstype || !super) continue;
        if (controller ? strcmp(fstype, "cgroup") || !has_token(super, controller) : strcmp(fstype, "cgroup2")) continue;
        f[0] = strtok_r(line, " ", &save);
        for (int i = 1; i < 5; i++) f[i] = f[i - 1] ? strtok_r(NULL, " ", &save) : NULL;
        if (!f[4]) continue;
        char *root = f[3], *mnt = f[4];
        unescape(root);
        unescape(mnt);
        /* our cgroup must be visible through this mount: its root is a prefix of our path */
        size_t rl = strcmp(root, "/") ? strlen(root) : 0;
        if (strncmp(own, root, rl) || (own[rl] != '/' && own[rl] != '\0')) continue;
        const char *rest = own + rl;
        if (snprintf(out, outlen, "%s%s", mnt, strcmp(rest, "/") ? rest : "") < (int)outlen) found = 1;
    }
    fclose(mi);
    return found ? 0 : -1;
}

static int write_file(const char *dir, const char *name, const char *value, struct failure *f) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return f ? fail(f, errno, "cgroup", "opening %s", path) : -1;
    ssize_t n = write(fd, value, strlen(value));
    int e = errno;
    close(fd);
    if (n < 0) return f ? fail(f, e, "cgroup", "writing '%s' to %s", value, path) : (errno = e, -1);
    return 0;
}

static int file_has_token(const char *path, const char *token) {
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    for (char *save, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        if (!strcmp(t, token)) return 1;
    return 0;
}

static struct cgroup_dir *add_dir(struct cgroups *cg, const char *parent, const char *name, int v2, int optional) {
    char path[sizeof cg->dirs[0].path];
    snprintf(path, sizeof path, "%s/%s", parent, name);
    for (int i = 0; i < cg->count; i++) {
        if (strcmp(cg->dirs[i].path, path)) continue;
        cg->dirs[i].optional &= optional;
        return &cg->dirs[i];
    }
    struct cgroup_dir *d = &cg->dirs[cg->count++];
    strcpy(d->path, path);
    d->v2 = v2;
    d->optional = optional;
    return d;
}

/*
 * v2 allows controllers below a cgroup only when that cgroup holds no processes ("no internal
 * processes"). When ours holds only this helper and the runtime that started it (a unit with
 * Delegate=yes), both move into a leaf beside the containers; anything else is not ours to move.
 */
static int enable_v2_controllers(const char *own, const char *list, struct failure *f) {
    if (write_file(own, "cgroup.subtree_control", list, NULL) == 0) return 0;
    if (errno != EBUSY) return fail(f, errno, "cgroup", "enabling %s in %s/cgroup.subtree_control", list, own);
    char path[4200], buf[256];
    snprintf(path, sizeof path, "%s/cgroup.procs", own);
    FILE *procs = fopen(path, "re");
    int only_ours = procs != NULL;
    while (procs && fgets(buf, sizeof buf, procs)) {
        long pid = strtol(buf, NULL, 10);
        if (pid != getpid() && pid != getppid()) only_ours = 0;
    }
    if (procs) fclose(procs);
    if (!only_ours)
        return fail(f, 0, "cgroup", "cgroup v2 %s holds other processes, so limits cannot be delegated below it; "
                    "run cairn in a cgroup of its own (systemd: Delegate=yes)", own);
    snprintf(path, sizeof path, "%s/supervisor", own);
    if (mkdir(path, 0755) && errno != EEXIST) return fail(f, errno, "cgroup", "mkdir %s", path);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getppid());
    if (getppid() != 1 && write_file(path, "cgroup.procs", pid, f)) return -1;
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (write_file(path, "cgroup.procs", pid, f)) return -1;
    return write_file(own, "cgroup.subtree_control", list, f);
}

int cgroups_create(const struct spec *s, struct cgroups *cg, struct failure *f) {
    const char *wanted[3];
    int nwanted = 0;
    if (s->memory) wanted[nwanted++] = "memory";
    if (s->cpu_quota) wanted[nwanted++] = "cpu";
    if (s->pids) wanted[nwanted++] = "pids";

    char name[128], own[4096], v2own[4096], v2list[64] = "", path[4200];
    snprintf(name, sizeof name, "cairn-%s-%d", s->name, (int)getpid());
    int have_v2 = own_cgroup_dir(NULL, v2own, sizeof v2own) == 0;
    memset(cg, 0, sizeof *cg);

    for (int i = 0; i < nwanted; i++) {
        struct cgroup_dir *d;
        if (own_cgroup_dir(wanted[i], own, sizeof own) == 0) {
            d = add_dir(cg, own, name, 0, 0);
        } else {
            snprintf(path, sizeof path, "%s/cgroup.controllers", v2own);
            if (!have_v2 || !file_has_token(path, wanted[i]))
                return fail(f, 0, "cgroup", "no cgroup hierarchy offers the %s controller to this process "
                            "(neither a v1 %s mount nor %s in %s)", wanted[i], wanted[i], wanted[i], have_v2 ? path : "a cgroup2 mount");
            d = add_dir(cg, v2own, name, 1, 0);
            snprintf(v2list + strlen(v2list), sizeof v2list - strlen(v2list), "%s+%s", *v2list ? " " : "", wanted[i]);
        }
        if (!strcmp(wanted[i], "memory")) d->has_memory = 1;
    }
    if (have_v2) add_dir(cg, v2own, name, 1, 1);
    if (*v2list && enable_v2_controllers(v2own, v2list, f)) return -1;

    for (int i = 0; i < cg->count; i++) {
        struct cgroup_dir *d = &cg->dirs[i];
        /* a directory left by a crashed run with a recycled pid is empty: replace it */
        if (mkdir(d->path, 0755) && !(errno == EEXIST && rmdir(d->path) == 0 && mkdir(d->path, 0755) == 0)) {
            int e = errno;
            if (d->optional && (e == EACCES || e == EPERM || e == EROFS)) {
                *d = cg->dirs[--cg->count];
                i--;
                continue;
            }
            cg->count = i;
            return fail(f, e, "cgroup", "mkdir %s", d->path);
        }
    }

    char value[64];
    for (int i = 0; i < cg->count; i++) {
        const struct cgroup_dir *d = &cg->dirs[i];
        snprintf(path, sizeof path, "%s/%s", d->path, d->v2 ? "memory.max" : "memory.limit_in_bytes");
        if (s->memory && access(path, F_OK) == 0) {
            snprintf(value, sizeof value, "%llu", s->memory);
            if (write_file(d->path, d->v2 ? "memory.max" : "memory.limit_in_bytes", value, f)) return -1;
            /* the limit must kill, not push the container into swap */
            if (d->v2) write_file(d->path, "memory.swap.max", "0", NULL);
            else write_file(d->path, "memory.memsw.limit_in_bytes", value, NULL);
        }
        snprintf(path, sizeof path, "%s/%s", d->path, d->v2 ? "cpu.max" : "cpu.cfs_quota_us");
        if (s->cpu_quota && access(path, F_OK) == 0) {
            if (d->v2) {
                snprintf(value, sizeof value, "%lu %lu", s->cpu_quota, s->cpu_period);
                if (write_file(d->path, "cpu.max", value, f)) return -1;
            } else {
                snprintf(value, sizeof value, "%lu", s->cpu_period);
                if (write_file(d->path, "cpu.cfs_period_us", value, f)) return -1;
                snprintf(value, sizeof value, "%lu", s->cpu_quota);
                if (write_file(d->path, "cpu.cfs_quota_us", value, f)) return -1;
            }
        }
        snprintf(path, sizeof path, "%s/pids.max", d->path);
        if (s->pids && access(path, F_OK) == 0) {
            snprintf(value, sizeof value, "%lu", s->pids);
            if (write_file(d->path, "pids.max", value, f)) return -1;
        }
    }
    return 0;
}

int cgroups_attach(const struct cgroups *cg, pid_t pid, struct failure *f) {
    char value[32];
    snprintf(value, sizeof value, "%d", (int)pid);
    for (int i = 0; i < cg->count; i++)
        if (write_file(cg->dirs[i].path, "cgroup.procs", value, f)) return -1;
    return 0;
}

int cgroups_oom_killed(const struct cgroups *cg) {
    for (int i = 0; i < cg->count; i++) {
        const struct cgroup_dir *d = &cg->dirs[i];
        if (!d->has_memory) continue;
        char path[4200], key[64];
        unsigned long long n;
        snprintf(path, sizeof path, "%s/%s", d->path, d->v2 ? "memory.events" : "memory.oom_control");
        FILE *fp = fopen(path, "re");
        if (!fp) continue;
        int killed = 0;
        while (fscanf(fp, "%63s %llu", key, &n) == 2)
            if (!strcmp(key, "oom_kill") && n > 0) killed = 1;
        fclose(fp);
        if (killed) return 1;
    }
    return 0;
}

void cgroups_remove(struct cgroups *cg) {
    for (int i = 0; i < cg->count; i++) {
        /* The pid namespace is empty once its init is reaped, but v1 may report the last task
         * a moment later; a short wait, then give up rather than hang the supervisor. */
        for (int tries = 0; rmdir(cg->dirs[i].path) && errno == EBUSY && tries < 200; tries++)
            nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    cg->count = 0;
}
