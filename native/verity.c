/* dm-verity: the veritysetup superblock and the device-mapper ioctls (no libdevmapper). */
#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cairn-init.h"

static uint32_t le32(const unsigned char *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static int valid_block_size(unsigned v) { return v >= 512 && v <= 4096 && !(v & (v - 1)); }

/* Layout of struct verity_sb in cryptsetup's lib/verity/verity.c (little-endian). */
const char *verity_sb_parse(const unsigned char b[512], struct verity_sb *sb) {
    if (memcmp(b, "verity\0\0", 8)) return "no verity superblock (bad magic)";
    sb->version = le32(b + 8);
    sb->hash_type = le32(b + 12);
    memcpy(sb->algorithm, b + 32, 32);
    sb->algorithm[32] = 0;
    sb->data_block_size = le32(b + 64);
    sb->hash_block_size = le32(b + 68);
    sb->data_blocks = le32(b + 72) | (uint64_t)le32(b + 76) << 32;
    sb->salt_size = b[80] | b[81] << 8;
    if (sb->version != 1) return "unsupported verity superblock version";
    if (sb->hash_type != 1) return "unsupported verity hash type (want 1)";
    if (strcmp(sb->algorithm, "sha256")) return "unsupported verity hash algorithm (want sha256)";
    if (!valid_block_size(sb->data_block_size) || !valid_block_size(sb->hash_block_size))
        return "verity block size out of range";
    if (sb->data_blocks == 0 || sb->data_blocks > (UINT64_MAX >> 12) / sb->data_block_size)
        return "verity data block count out of range";
    if (sb->salt_size > 256) return "verity salt longer than 256 bytes";
    memcpy(sb->salt, b + 88, sb->salt_size);
    return NULL;
}

int verity_table(char *out, size_t outlen, const struct verity_sb *sb, const char *data_dev,
                 const char *hash_dev, const char *roothash, const char *optional) {
    char salt[2 * 256 + 1] = "-";
    for (unsigned i = 0; i < sb->salt_size; i++) sprintf(salt + 2 * i, "%02x", sb->salt[i]);
    /* The hash area starts right after the superblock, which fills one hash block. */
    int n = snprintf(out, outlen, "1 %s %s %u %u %llu 1 %s %s %s%s%s", data_dev, hash_dev,
                     sb->data_block_size, sb->hash_block_size,
                     (unsigned long long)sb->data_blocks, sb->algorithm, roothash, salt,
                     optional ? " " : "", optional ? optional : "");
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* ---- device-mapper ---- */

struct dm_buf {
    struct dm_ioctl io;
    char data[8192];
};

static int control_fd(void) {
    int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT) return fd;
    /* devtmpfs normally creates the node; make it if this kernel did not. */
    mkdir("/dev/mapper", 0755);
    if (mknod("/dev/mapper/control", S_IFCHR | 0600, makedev(10, 236)) && errno != EEXIST)
        return -1;
    return open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
}

static void dm_init(struct dm_buf *b, const char *name) {
    memset(b, 0, sizeof *b);
    b->io.version[0] = DM_VERSION_MAJOR;
    b->io.version[1] = 0;
    b->io.version[2] = 0;
    b->io.data_size = sizeof *b;
    b->io.data_start = sizeof b->io;
    snprintf(b->io.name, sizeof b->io.name, "%s", name);
}

static char dm_err[256];

static const char *dm_call(unsigned long req, struct dm_buf *b, const char *what) {
    int fd = control_fd();
    if (fd < 0) {
        snprintf(dm_err, sizeof dm_err, "open /dev/mapper/control: %s (is dm-mod loaded?)",
                 strerror(errno));
        return dm_err;
    }
    int r = ioctl(fd, req, b);
    int e = errno;
    close(fd);
    if (r) {
        snprintf(dm_err, sizeof dm_err, "%s %s: %s", what, b->io.name, strerror(e));
        return dm_err;
    }
    return NULL;
}

static const char *dm_load(const char *name, const char *target, uint64_t sectors,
                           const char *params) {
    struct dm_buf b;
    dm_init(&b, name);
    struct dm_target_spec *spec = (struct dm_target_spec *)b.data;
    size_t plen = strlen(params) + 1;
    if (sizeof *spec + plen > sizeof b.data) return "device-mapper table too long";
    b.io.target_count = 1;
    b.io.flags = DM_READONLY_FLAG;
    spec->sector_start = 0;
    spec->length = sectors;
    snprintf(spec->target_type, sizeof spec->target_type, "%s", target);
    memcpy(b.data + sizeof *spec, params, plen);
    return dm_call(DM_TABLE_LOAD, &b, "load table for");
}

static const char *dm_suspend(const char *name, int suspend) {
    struct dm_buf b;
    dm_init(&b, name);
    b.io.flags = suspend ? DM_SUSPEND_FLAG : 0;
    return dm_call(DM_DEV_SUSPEND, &b, suspend ? "suspend" : "resume");
}

const char *dm_create(const char *name, const char *target, uint64_t sectors, const char *params,
                      dev_t *dev_out) {
    struct dm_buf b;
    dm_init(&b, name);
    snprintf(b.io.uuid, sizeof b.io.uuid, "CAIRN-%s-%s", target, name);
    const char *why = dm_call(DM_DEV_CREATE, &b, "create");
    if (why) return why;
    *dev_out = (dev_t)b.io.dev;
    if ((why = dm_load(name, target, sectors, params)) || (why = dm_suspend(name, 0))) {
        /* keep the load/resume reason: dm_remove reuses dm_err */
        static char first[sizeof dm_err];
        snprintf(first, sizeof first, "%s", why);
        dm_remove(name);
        return first;
    }
    return NULL;
}

const char *dm_reload(const char *name, const char *target, uint64_t sectors, const char *params) {
    const char *why = dm_load(name, target, sectors, params);
    if (!why) why = dm_suspend(name, 1);
    if (!why) why = dm_suspend(name, 0);
    return why;
}

const char *dm_remove(const char *name) {
    struct dm_buf b;
    dm_init(&b, name);
    return dm_call(DM_DEV_REMOVE, &b, "remove");
}

int read_whole(const char *dev, uint64_t bytes, uint64_t *failed_at) {
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *failed_at = 0;
        return errno;
    }
    static char buf[1 << 20];
    int e = 0;
    for (uint64_t off = 0; off < bytes;) {
        size_t want = bytes - off < sizeof buf ? (size_t)(bytes - off) : sizeof buf;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            e = r < 0 ? errno : ENOSPC;
            *failed_at = off;
            break;
        }
        off += (uint64_t)r;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return e;
}
