/*
 * cairn-init: PID 1 of cairn's initramfs. It loads the listed kernel modules, finds the usr
 * partition whose dm-verity root hash is usrhash= (Discoverable Partitions Specification
 * UUIDs), opens it through dm-verity, mounts the writable root and the verified /usr, and
 * hands over to the real init. Any failure is one "cairn-init: FATAL:" line, then the
 * machine powers off or reboots so that a bad slot fails fast. Contract: docs/initramfs.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cairn-init.h"

#define MODULE_LIST "/etc/cairn/modules"
#define MODULE_DIR "/lib/modules"
#define SYSROOT "/sysroot"
#define DM_NAME "usr"

int debug_enabled;
static enum on_failure on_failure = ON_FAILURE_REBOOT;

static void vlog(const char *prefix, const char *fmt, va_list ap) {
    char line[1024];
    int n = snprintf(line, sizeof line, "cairn-init: %s", prefix);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    strcat(line, "\n");
    /* the console, not /dev/kmsg: `quiet` must not hide a failure */
    (void)!write(STDERR_FILENO, line, strlen(line));
}

void info(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void debug(const char *fmt, ...) {
    if (!debug_enabled) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("debug: ", fmt, ap);
    va_end(ap);
}

void fatal(const char *step, const char *fmt, ...) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "FATAL: %s: ", step);
    va_list ap;
    va_start(ap, fmt);
    vlog(prefix, fmt, ap);
    va_end(ap);
    if (getpid() != 1) exit(1);
    tcdrain(STDERR_FILENO);
    sync();
    int how = on_failure == ON_FAILURE_POWEROFF ? RB_POWER_OFF
              : on_failure == ON_FAILURE_HALT   ? RB_HALT_SYSTEM
                                                : RB_AUTOBOOT;
    reboot(how);
    /* PID 1 must never exit (that panics the kernel with a misleading message) */
    for (;;) pause();
}

static void mount_api(const char *src, const char *dir, const char *type, unsigned long flags,
                      const char *data) {
    mkdir(dir, 0755);
    if (mount(src, dir, type, flags, data) && errno != EBUSY)
        fatal("mount", "%s on %s: %s", type, dir, strerror(errno));
}

/* The kernel opens /dev/console for us only if the cpio carried the node. */
static void ensure_console(void) {
    if (fcntl(STDERR_FILENO, F_GETFD) >= 0) return;
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0) return;
    for (int i = 0; i < 3; i++)
        if (fd != i) dup2(fd, i);
    if (fd > 2) close(fd);
}

static char *read_small_file(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0) return NULL;
    buf[n] = 0;
    return buf;
}

static void load_modules(void) {
    FILE *f = fopen(MODULE_LIST, "re");
    if (!f) {
        info("warning: no %s, loading no modules", MODULE_LIST);
        return;
    }
    char line[512];
    unsigned loaded = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *name = line + strspn(line, " \t");
        if (!*name || *name == '#') continue;
        if (strstr(name, "..")) {
            info("warning: module %s: refusing a path with ..", name);
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", MODULE_DIR, name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            info("warning: module %s: %s", name, strerror(errno));
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST)
            info("warning: module %s: %s", name, strerror(errno));
        else
            loaded++;
        close(fd);
        debug("module %s", name);
    }
    fclose(f);
    debug("%u modules loaded", loaded);
}

/* A partition found on a disk: its kernel name, device number and GPT entry. */
struct found {
    char disk[256];
    char name[256];
    char majmin[64];
    struct gpt_part part;
    unsigned sector_size;
};

static int skip_disk(const char *name) {
    static const char *const prefixes[] = {"loop", "ram", "dm-", "zram", "sr", "fd", "md"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) return 1;
    return name[0] == '.';
}

/* Maps a GPT entry number to its kernel partition device under /sys/block/<disk>. */
static int partition_device(const char *disk, unsigned number, struct found *out) {
    char path[PATH_MAX], buf[64];
    snprintf(path, sizeof path, "/sys/block/%s", disk);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int ok = -1;
    while (ok && (e = readdir(d))) {
        if (strncmp(e->d_name, disk, strlen(disk))) continue;
        snprintf(path, sizeof path, "/sys/block/%s/%s/partition", disk, e->d_name);
        if (!read_small_file(path, buf, sizeof buf) || (unsigned)atoi(buf) != number) continue;
        snprintf(path, sizeof path, "/sys/block/%s/%s/dev", disk, e->d_name);
        if (!read_small_file(path, buf, sizeof buf)) continue;
        buf[strcspn(buf, "\n")] = 0;
        snprintf(out->name, sizeof out->name, "%s", e->d_name);
        snprintf(out->majmin, sizeof out->majmin, "%s", buf);
        ok = 0;
    }
    closedir(d);
    return ok;
}

struct wanted {
    const char *usr_uuid, *verity_uuid, *root_uuid; /* root_uuid NULL: DPS root type */
    struct found usr, verity, root;
    int have_usr, have_verity, have_root;
};

static void scan_disk(const char *disk, struct wanted *w) {
    char path[PATH_MAX], buf[32];
    snprintf(path, sizeof path, "/sys/block/%s/size", disk);
    if (!read_small_file(path, buf, sizeof buf) || atoll(buf) == 0) return;
    snprintf(path, sizeof path, "/sys/block/%s/queue/logical_block_size", disk);
    unsigned ss = read_small_file(path, buf, sizeof buf) ? (unsigned)atoi(buf) : 512;
    if (ss < 512 || ss > 65536) ss = 512;
    snprintf(path, sizeof path, "/dev/%s", disk);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        debug("%s: %s", path, strerror(errno));
        return;
    }
    struct gpt g;
    const char *why = gpt_read(fd, ss, &g);
    close(fd);
    if (why) {
        debug("%s: %s", path, why);
        return;
    }
    int usr_here = 0;
    const struct gpt_part *root_candidate = NULL;
    for (unsigned i = 0; i < g.count; i++) {
        const struct gpt_part *p = &g.parts[i];
        struct found *slot = NULL;
        int *have = NULL;
        if (!strcmp(p->uuid, w->usr_uuid)) slot = &w->usr, have = &w->have_usr, usr_here = 1;
        else if (!strcmp(p->uuid, w->verity_uuid)) slot = &w->verity, have = &w->have_verity;
        else if (w->root_uuid && !strcmp(p->uuid, w->root_uuid)) slot = &w->root, have = &w->have_root;
        else if (!w->root_uuid && !root_candidate && !strcmp(p->type, GPT_TYPE_ROOT_NATIVE))
            root_candidate = p;
        if (!slot) continue;
        if (*have) {
            info("warning: partition %s also on %s, using the one on %s", p->uuid, disk, slot->disk);
            continue;
        }
        snprintf(slot->disk, sizeof slot->disk, "%s", disk);
        slot->part = *p;
        slot->sector_size = ss;
        *have = partition_device(disk, p->number, slot) == 0;
    }
    /* Auto root: the first DPS root partition on the disk that holds the usr slot. */
    if (usr_here && root_candidate && !w->have_root) {
        snprintf(w->root.disk, sizeof w->root.disk, "%s", disk);
        w->root.part = *root_candidate;
        w->root.sector_size = ss;
        w->have_root = partition_device(disk, root_candidate->number, &w->root) == 0;
    }
    gpt_free(&g);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void find_partitions(const struct config *cfg, struct wanted *w) {
    double deadline = now() + cfg->device_timeout_s;
    for (;;) {
        w->have_usr = w->have_verity = w->have_root = 0;
        DIR *d = opendir("/sys/block");
        if (!d) fatal("devices", "cannot list /sys/block: %s", strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)))
            if (!skip_disk(e->d_name)) scan_disk(e->d_name, w);
        closedir(d);
        if (w->have_usr && w->have_verity && w->have_root) return;
        if (now() > deadline) break;
        usleep(100 * 1000);
    }
    if (!w->have_usr || !w->have_verity)
        fatal("find-usr",
              "no usr partition pair for usrhash=%s (want PARTUUID %s and verity %s) after %d s",
              cfg->usrhash, w->usr_uuid, w->verity_uuid, cfg->device_timeout_s);
    if (w->root_uuid)
        fatal("find-root", "no partition with PARTUUID %s after %d s", w->root_uuid,
              cfg->device_timeout_s);
    fatal("find-root", "no root partition (GPT type %s) on %s, the disk of the usr partition",
          GPT_TYPE_ROOT_NATIVE, w->usr.disk);
}

static void read_verity_sb(const struct found *hash, struct verity_sb *sb) {
    char path[300];
    unsigned char buf[512];
    snprintf(path, sizeof path, "/dev/%s", hash->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
        fatal("verity", "cannot read the verity superblock on %s: %s", path, strerror(errno));
    close(fd);
    const char *why = verity_sb_parse(buf, sb);
    if (why) fatal("verity", "%s: %s", path, why);
}

/* Reads the whole verified device so that any tampered block stops this boot, not a later one. */
static void verify_all(const char *dev, uint64_t bytes) {
    double t0 = now();
    uint64_t bad;
    int e = read_whole(dev, bytes, &bad);
    if (e)
        fatal("verity", "usr data near byte %llu does not match usrhash (%s): the usr partition "
              "is corrupt or was tampered with", (unsigned long long)bad, strerror(e));
    info("verified all %llu bytes of usr in %.1f s", (unsigned long long)bytes, now() - t0);
}

static void setup_verity(const struct config *cfg, const struct wanted *w, struct verity_sb *out) {
    struct verity_sb sb;
    read_verity_sb(&w->verity, &sb);
    uint64_t data_bytes = sb.data_blocks * sb.data_block_size;
    uint64_t part_bytes = (w->usr.part.last_lba - w->usr.part.first_lba + 1) * w->usr.sector_size;
    if (data_bytes > part_bytes)
        fatal("verity", "superblock on /dev/%s claims %llu data bytes but /dev/%s holds %llu",
              w->verity.name, (unsigned long long)data_bytes, w->usr.name,
              (unsigned long long)part_bytes);
    char table[1024];
    if (verity_table(table, sizeof table, &sb, w->usr.majmin, w->verity.majmin, cfg->usrhash, NULL))
        fatal("verity", "table too long");
    debug("verity table: %s", table);
    dev_t dev;
    const char *why = dm_create(DM_NAME, "verity", data_bytes / 512, table, &dev);
    if (why) fatal("verity", "%s", why);
    mkdir("/dev/mapper", 0755);
    if (mknod("/dev/mapper/" DM_NAME, S_IFBLK | 0600, dev) && errno != EEXIST)
        fatal("verity", "mknod /dev/mapper/%s: %s", DM_NAME, strerror(errno));
    info("verity usr %s on /dev/%s (hash /dev/%s) as /dev/mapper/%s", cfg->usrhash, w->usr.name,
         w->verity.name, DM_NAME);
    if (cfg->verify == VERIFY_FULL) verify_all("/dev/mapper/" DM_NAME, data_bytes);
    *out = sb;
}

/* From here on a corrupt block reboots the machine: the boot counter then picks the other slot. */
static void verity_restart_on_corruption(const struct config *cfg, const struct wanted *w,
                                         const struct verity_sb *sb) {
    char table[1024];
    if (verity_table(table, sizeof table, sb, w->usr.majmin, w->verity.majmin, cfg->usrhash,
                     "1 restart_on_corruption"))
        fatal("verity", "table too long");
    const char *why =
        dm_reload(DM_NAME, "verity", sb->data_blocks * sb->data_block_size / 512, table);
    if (why) fatal("verity", "%s", why);
}

static void mount_or_die(const char *step, const char *src, const char *dir, const char *type,
                         unsigned long flags, const char *data) {
    if (!mount(src, dir, type, flags, data)) return;
    int e = errno;
    if (e == EIO && !strcmp(step, "mount-usr"))
        fatal("verity", "reading /usr from %s failed (%s): the usr partition does not match "
              "usrhash, it is corrupt or was tampered with", src, strerror(e));
    fatal(step, "%s (%s) on %s: %s", src, type, dir, strerror(e));
}

static void first_boot_etc(void) {
    if (!dir_is_missing_or_empty(SYSROOT "/etc")) return;
    const char *factory = SYSROOT "/usr/share/factory/etc";
    struct stat st;
    if (stat(factory, &st) || !S_ISDIR(st.st_mode)) {
        info("warning: /etc is empty and the image has no /usr/share/factory/etc");
        mkdir(SYSROOT "/etc", 0755);
        return;
    }
    /* Copy beside, then rename: a power cut mid-copy must not leave a half /etc that
     * later boots would take for a configured one. */
    const char *tmp = SYSROOT "/.etc.cairn-factory";
    char err[512];
    delete_tree_same_fs(tmp);
    rmdir(tmp);
    const char *why = copy_tree(factory, tmp, err, sizeof err);
    if (why) fatal("etc", "copying the factory /etc: %s", why);
    rmdir(SYSROOT "/etc");
    if (rename(tmp, SYSROOT "/etc")) fatal("etc", "rename %s to /etc: %s", tmp, strerror(errno));
    sync();
    info("first boot: /etc filled from /usr/share/factory/etc");
}

static void prepare_sysroot(void) {
    static const struct { const char *dir; mode_t mode; } dirs[] = {
        {"proc", 0555}, {"sys", 0555}, {"dev", 0755}, {"run", 0755}, {"tmp", 01777}, {"var", 0755},
    };
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, SYSROOT "/%s", dirs[i].dir);
        if (mkdir(path, dirs[i].mode) == 0) chmod(path, dirs[i].mode); /* umask */
        else if (errno != EEXIST) fatal("sysroot", "mkdir %s: %s", path, strerror(errno));
    }
    /* usr-merge: the links live in the writable root, their targets in /usr */
    static const char *const links[] = {"bin", "sbin", "lib", "lib64", "lib32", "libx32"};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        char target[64], in_usr[PATH_MAX];
        struct stat st;
        snprintf(in_usr, sizeof in_usr, SYSROOT "/usr/%s", links[i]);
        snprintf(path, sizeof path, SYSROOT "/%s", links[i]);
        if (stat(in_usr, &st) || lstat(path, &st) == 0) continue;
        snprintf(target, sizeof target, "usr/%s", links[i]);
        if (symlink(target, path)) fatal("sysroot", "symlink %s: %s", path, strerror(errno));
    }
}

/* Reads the real init whole while a bad block still means a FATAL line rather than a reset. */
static void preread_init(const char *init) {
    int fd = open(init, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == EIO) fatal("verity", "reading %s failed: /usr does not match usrhash", init);
        fatal("exec", "%s: %s (set init= on the kernel command line)", init, strerror(errno));
    }
    static char buf[1 << 16];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) {}
    if (r < 0)
        fatal("verity", "reading %s failed (%s): /usr does not match usrhash", init, strerror(errno));
    close(fd);
}

static void switch_root(const struct config *cfg, const struct wanted *w,
                        const struct verity_sb *sb, char **argv) {
    static const char *const api[] = {"/proc", "/sys", "/dev", "/run"};
    for (size_t i = 0; i < sizeof api / sizeof *api; i++) {
        char to[64];
        snprintf(to, sizeof to, SYSROOT "%s", api[i]);
        if (mount(api[i], to, NULL, MS_MOVE, NULL))
            fatal("switch-root", "move %s to %s: %s", api[i], to, strerror(errno));
    }
    if (chdir(SYSROOT)) fatal("switch-root", "chdir %s: %s", SYSROOT, strerror(errno));
    /* The initramfs stays in RAM unless emptied; the real root never sees it again. */
    delete_tree_same_fs("/");
    if (mount(".", "/", NULL, MS_MOVE, NULL)) fatal("switch-root", "move / : %s", strerror(errno));
    if (chroot(".") || chdir("/")) fatal("switch-root", "chroot: %s", strerror(errno));
    preread_init(cfg->init);
    verity_restart_on_corruption(cfg, w, sb);
    argv[0] = (char *)cfg->init;
    info("starting %s", cfg->init);
    execv(cfg->init, argv);
    int e = errno;
    if (e == EIO)
        fatal("verity", "reading %s failed (%s): /usr does not match usrhash", cfg->init,
              strerror(e));
    fatal("exec", "%s: %s (set init= on the kernel command line)", cfg->init, strerror(e));
}

int main(int argc, char **argv) {
    if (getpid() != 1) return selftest_main(argc, argv);

    mount_api("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    mount_api("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    ensure_console();

    char cmdline[4096], err[512];
    if (!read_small_file("/proc/cmdline", cmdline, sizeof cmdline))
        fatal("cmdline", "cannot read /proc/cmdline: %s", strerror(errno));
    struct config cfg;
    const char *why = parse_cmdline(cmdline, &cfg, err, sizeof err);
    on_failure = cfg.on_failure;
    if (why) fatal("cmdline", "%s", why);
    debug_enabled = cfg.debug;
    info("usrhash=%s", cfg.usrhash);

    load_modules();

    char usr_uuid[37], verity_uuid[37];
    uuids_from_roothash(cfg.usrhash, usr_uuid, verity_uuid);
    struct wanted w = {.usr_uuid = usr_uuid, .verity_uuid = verity_uuid,
                       .root_uuid = cfg.root_partuuid[0] ? cfg.root_partuuid : NULL};
    find_partitions(&cfg, &w);
    debug("usr /dev/%s, verity /dev/%s, root /dev/%s", w.usr.name, w.verity.name, w.root.name);

    struct verity_sb sb;
    setup_verity(&cfg, &w, &sb);

    char rootdev[300];
    snprintf(rootdev, sizeof rootdev, "/dev/%s", w.root.name);
    mkdir(SYSROOT, 0755);
    mount_or_die("mount-root", rootdev, SYSROOT, cfg.rootfstype, 0,
                 cfg.rootflags[0] ? cfg.rootflags : NULL);
    if (mkdir(SYSROOT "/usr", 0755) && errno != EEXIST)
        fatal("mount-usr", "mkdir %s/usr: %s", SYSROOT, strerror(errno));
    mount_or_die("mount-usr", "/dev/mapper/" DM_NAME, SYSROOT "/usr", "erofs",
                 MS_RDONLY | MS_NODEV, NULL);
    struct stat reset_st;
    if (lstat(SYSROOT "/.cairn-factory-reset", &reset_st) == 0) {
        int kept;
        why = factory_reset(SYSROOT, 0, first_boot_etc, &kept, err, sizeof err);
        if (why) fatal("factory-reset", "%s", why);
        info("factory reset: the writable root was wiped, %d kept paths restored", kept);
    }
    first_boot_etc();
    prepare_sysroot();
    switch_root(&cfg, &w, &sb, argv);
}
