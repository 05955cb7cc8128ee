/*
 * The spec decoder. The TypeScript side (src/runtime/spec.ts) writes a sequence of
 * NUL-terminated tokens: the magic, then records, each a keyword followed by a fixed number
 * of arguments. NUL cannot occur in paths, arguments or environment strings, so no escaping
 * is needed, and every field is checked here again: the spec may come from anywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawn.h"

struct cursor {
    char *p, *end;
    unsigned index;
    struct failure *f;
};

static const char *next_token(struct cursor *c) {
    if (c->p >= c->end) return NULL;
    char *t = c->p;
    c->p += strlen(t) + 1;
    c->index++;
    return t;
}

static int parse_ulong(const char *t, int base, unsigned long long max, unsigned long long *out) {
    if (!*t || *t == '-' || *t == '+' || *t == ' ') return -1;
    char *e;
    errno = 0;
    unsigned long long v = strtoull(t, &e, base);
    if (errno || *e || v > max) return -1;
    *out = v;
    return 0;
}

/* An absolute path without empty, "." or ".." components (the TS side normalises). */
static int clean_absolute(const char *p) {
    if (p[0] != '/' || strlen(p) >= PATH_MAX) return 0;
    if (p[1] == '\0') return 1;
    for (const char *c = p + 1;;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) return 0;
        if (!slash) return 1;
        c = slash + 1;
    }
}

static int valid_name(const char *n) {
    size_t len = strlen(n);
    if (len == 0 || len > 63 || n[0] == '.' || n[0] == '-') return 0;
    for (const char *c = n; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
              *c == '.' || *c == '-'))
            return 0;
    return 1;
}

#define BAD(...) fail(c->f, 0, "spec", __VA_ARGS__)

static const char *arg(struct cursor *c, const char *kw) {
    const char *t = next_token(c);
    if (!t) BAD("'%s' at token %u is missing an argument", kw, c->index);
    return t;
}

static int path_arg(struct cursor *c, const char *kw, const char **out) {
    const char *t = arg(c, kw);
    if (!t) return -1;
    if (!clean_absolute(t)) return BAD("'%s %s': not a clean absolute path", kw, t);
    *out = t;
    return 0;
}

static int num_arg(struct cursor *c, const char *kw, int base, unsigned long long max, unsigned long long *out) {
    const char *t = arg(c, kw);
    if (!t) return -1;
    if (parse_ulong(t, base, max, out) < 0) return BAD("'%s %s': not a number up to %llu", kw, t, max);
    return 0;
}

static int once(struct cursor *c, const char *kw, const char *const *field) {
    if (*field) return BAD("'%s' given twice", kw);
    return 0;
}

static int idmap_arg(struct cursor *c, const char *kw, struct id_map *maps, int *n) {
    unsigned long long in, out, count;
    if (*n == MAX_IDMAPS) return BAD("more than %d '%s' records", MAX_IDMAPS, kw);
    if (num_arg(c, kw, 10, UINT32_MAX, &in) || num_arg(c, kw, 10, UINT32_MAX, &out) ||
        num_arg(c, kw, 10, UINT32_MAX, &count))
        return -1;
    if (count == 0) return BAD("'%s' maps no ids", kw);
    maps[(*n)++] = (struct id_map){in, out, count};
    return 0;
}

static int record(struct cursor *c, struct spec *s, const char *kw, size_t *nargs, size_t *nenv) {
    unsigned long long v, w;
    if (!strcmp(kw, "name")) {
        if (once(c, kw, &s->name) || !(s->name = arg(c, kw))) return -1;
        if (!valid_name(s->name)) return BAD("'name %s': use 1-63 of A-Z a-z 0-9 _ . -, not starting with . or -", s->name);
    } else if (!strcmp(kw, "hostname")) {
        if (once(c, kw, &s->hostname) || !(s->hostname = arg(c, kw))) return -1;
        if (!valid_name(s->hostname)) return BAD("'hostname %s': not a valid host name", s->hostname);
    } else if (!strcmp(kw, "rootdir")) {
        if (once(c, kw, &s->rootdir) || path_arg(c, kw, &s->rootdir)) return -1;
    } else if (!strcmp(kw, "usr")) {
        if (once(c, kw, &s->usr) || path_arg(c, kw, &s->usr)) return -1;
    } else if (!strcmp(kw, "rootfs")) {
        if (once(c, kw, &s->rootfs) || path_arg(c, kw, &s->rootfs)) return -1;
    } else if (!strcmp(kw, "layer")) {
        if (s->nlayers == MAX_LAYERS) return BAD("more than %d layers", MAX_LAYERS);
        if (path_arg(c, kw, &s->layers[s->nlayers])) return -1;
        /* overlayfs separates lower directories with ':' and options with ',' */
        if (strpbrk(s->layers[s->nlayers], ":,\\")) return BAD("'layer %s': ':', ',' and '\\' cannot be passed to overlayfs", s->layers[s->nlayers]);
        s->nlayers++;
    } else if (!strcmp(kw, "arg")) {
        if (!(s->argv[(*nargs)++] = (char *)arg(c, kw))) return -1;
    } else if (!strcmp(kw, "env")) {
        const char *e = arg(c, kw);
        if (!e) return -1;
        if (!strchr(e, '=') || e[0] == '=') return BAD("'env %s': not NAME=VALUE", e);
        s->envp[(*nenv)++] = (char *)e;
    } else if (!strcmp(kw, "cwd")) {
        if (once(c, kw, &s->cwd) || path_arg(c, kw, &s->cwd)) return -1;
    } else if (!strcmp(kw, "user")) {
        if (s->has_user++) return BAD("'user' given twice");
        if (num_arg(c, kw, 10, UINT32_MAX - 1, &v) || num_arg(c, kw, 10, UINT32_MAX - 1, &w)) return -1;
        s->uid = (uid_t)v;
        s->gid = (gid_t)w;
    } else if (!strcmp(kw, "group")) {
        if (s->ngroups == MAX_GROUPS) return BAD("more than %d supplementary groups", MAX_GROUPS);
        if (num_arg(c, kw, 10, UINT32_MAX - 1, &v)) return -1;
        s->groups[s->ngroups++] = (gid_t)v;
    } else if (!strcmp(kw, "net")) {
        const char *m = arg(c, kw);
        if (!m) return -1;
        if (!strcmp(m, "none")) s->net = NET_NONE;
        else if (!strcmp(m, "host")) s->net = NET_HOST;
        else if (!strcmp(m, "private")) s->net = NET_PRIVATE;
        else return BAD("'net %s': expected none, host or private", m);
    } else if (!strcmp(kw, "userns")) {
        s->userns = 1;
    } else if (!strcmp(kw, "uidmap")) {
        if (idmap_arg(c, kw, s->uidmap, &s->nuidmap)) return -1;
    } else if (!strcmp(kw, "gidmap")) {
        if (idmap_arg(c, kw, s->gidmap, &s->ngidmap)) return -1;
    } else if (!strcmp(kw, "bind")) {
        if (s->nbinds == MAX_MOUNTS) return BAD("more than %d binds", MAX_MOUNTS);
        struct bind *b = &s->binds[s->nbinds++];
        const char *mode;
        if (path_arg(c, kw, &b->src) || path_arg(c, kw, &b->dst) || !(mode = arg(c, kw))) return -1;
        if (strcmp(mode, "ro") && strcmp(mode, "rw")) return BAD("'bind %s %s %s': expected ro or rw", b->src, b->dst, mode);
        b->ro = mode[1] == 'o';
    } else if (!strcmp(kw, "file")) {
        if (s->nfiles == MAX_MOUNTS) return BAD("more than %d files", MAX_MOUNTS);
        struct file_rec *r = &s->files[s->nfiles++];
        if (path_arg(c, kw, &r->path) || num_arg(c, kw, 8, 07777, &v) || !(r->content = arg(c, kw))) return -1;
        r->mode = (mode_t)v;
    } else if (!strcmp(kw, "symlink")) {
        if (s->nsymlinks == MAX_MOUNTS) return BAD("more than %d symlinks", MAX_MOUNTS);
        struct symlink_rec *r = &s->symlinks[s->nsymlinks++];
        if (!(r->target = arg(c, kw)) || path_arg(c, kw, &r->path)) return -1;
        if (!*r->target) return BAD("'symlink' with an empty target");
    } else if (!strcmp(kw, "tmpfs")) {
        if (s->ntmpfs == MAX_MOUNTS) return BAD("more than %d tmpfs mounts", MAX_MOUNTS);
        struct tmpfs_rec *r = &s->tmpfs[s->ntmpfs++];
        if (path_arg(c, kw, &r->path) || num_arg(c, kw, 8, 07777, &v)) return -1;
        r->mode = (mode_t)v;
    } else if (!strcmp(kw, "memory")) {
        if (num_arg(c, kw, 10, 1ULL << 50, &s->memory)) return -1;
        if (s->memory < (1u << 20)) return BAD("'memory %llu': less than 1 MiB cannot start a process", s->memory);
    } else if (!strcmp(kw, "cpu")) {
        if (num_arg(c, kw, 10, 1000000ULL * 1024, &v) || num_arg(c, kw, 10, 1000000, &w)) return -1;
        if (v < 1000 || w < 1000) return BAD("'cpu %llu %llu': quota and period must be at least 1000 us", v, w);
        s->cpu_quota = (unsigned long)v;
        s->cpu_period = (unsigned long)w;
    } else if (!strcmp(kw, "pids")) {
        if (num_arg(c, kw, 10, 1u << 22, &v)) return -1;
        if (v == 0) return BAD("'pids 0' would not even allow the command");
        s->pids = (unsigned long)v;
    } else if (!strcmp(kw, "tty")) {
        s->tty = 1;
    } else {
        return BAD("unknown keyword '%.64s' at token %u", kw, c->index);
    }
    return 0;
}

static int read_all(int fd, const char *what, char **out, size_t *len, struct failure *f) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= SPEC_MAX_BYTES) {
                free(buf);
                return fail(f, 0, "spec", "%s is larger than %u bytes", what, SPEC_MAX_BYTES);
            }
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return fail(f, e, "spec", "reading %s", what);
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

int spec_load(int fd, const char *path, struct spec *s, struct failure *f) {
    size_t len = 0;
    memset(s, 0, sizeof *s);
    if (read_all(fd, path, &s->buf, &len, f)) return -1;
    if (len == 0 || s->buf[len - 1] != '\0') return fail(f, 0, "spec", "%s is not a cairn spawn spec (not NUL-terminated)", path);
    size_t tokens = 0;
    for (size_t i = 0; i < len; i++) tokens += s->buf[i] == '\0';
    s->argv = calloc(tokens + 1, sizeof *s->argv);
    s->envp = calloc(tokens + 1, sizeof *s->envp);
    struct cursor c = {s->buf, s->buf + len, 0, f};
    const char *magic = next_token(&c);
    if (strcmp(magic, SPEC_MAGIC)) return fail(f, 0, "spec", "%s does not start with %s", path, SPEC_MAGIC);
    size_t nargs = 0, nenv = 0;
    for (const char *kw; (kw = next_token(&c));)
        if (record(&c, s, kw, &nargs, &nenv)) return -1;

    if (!s->name) return fail(f, 0, "spec", "no 'name'");
    if (!s->rootdir) return fail(f, 0, "spec", "no 'rootdir' (an empty directory to build the root on)");
    if (!s->usr == !s->rootfs) return fail(f, 0, "spec", "give exactly one of 'usr' and 'rootfs'");
    if (s->rootfs && s->nlayers) return fail(f, 0, "spec", "'layer' overlays 'usr'; a 'rootfs' has none");
    if (nargs == 0) return fail(f, 0, "spec", "no 'arg': nothing to run");
    if ((s->nuidmap || s->ngidmap) && !s->userns) return fail(f, 0, "spec", "'uidmap'/'gidmap' without 'userns'");
    if (s->userns && (!s->nuidmap || !s->ngidmap)) return fail(f, 0, "spec", "'userns' needs at least one 'uidmap' and one 'gidmap'");
    if (!s->hostname) s->hostname = s->name;
    if (!s->cwd) s->cwd = "/";
    return 0;
}
