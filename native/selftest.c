/* Test modes: run when not PID 1, so tests can check the parsers against real tools' output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cairn-init.h"

static int usage(void) {
    fprintf(stderr,
            "cairn-init is PID 1 of cairn's initramfs. Test modes:\n"
            "  --selftest-cmdline CMDLINE\n"
            "  --selftest-gpt IMAGE [SECTOR_SIZE]\n"
            "  --selftest-verity-sb HASH_DEVICE\n"
            "  --selftest-dm USRHASH DATA_DEVICE HASH_DEVICE   (root; sets up, reads, removes)\n"
            "  --selftest-copy-tree SRC DST\n"
            "  --selftest-factory-reset ROOT [STOP_AFTER_STEP]\n");
    return 2;
}

static int cmdline(const char *text) {
    struct config c;
    char err[512];
    const char *why = parse_cmdline(text, &c, err, sizeof err);
    if (why) {
        printf("error: %s\n", why);
        return 1;
    }
    static const char *const failure[] = {"reboot", "poweroff", "halt"};
    char usr[37], verity[37];
    uuids_from_roothash(c.usrhash, usr, verity);
    printf("usrhash=%s\nusr_partuuid=%s\nverity_partuuid=%s\nroot=%s\ninit=%s\nrootfstype=%s\n"
           "rootflags=%s\non_failure=%s\nverify=%s\ndevice_timeout=%d\ndebug=%d\n",
           c.usrhash, usr, verity, c.root_partuuid[0] ? c.root_partuuid : "auto", c.init,
           c.rootfstype, c.rootflags, failure[c.on_failure],
           c.verify == VERIFY_FULL ? "full" : "lazy", c.device_timeout_s, c.debug);
    return 0;
}

static int gpt(const char *path, unsigned ss) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("error: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct gpt g;
    const char *why = gpt_read(fd, ss, &g);
    close(fd);
    if (why) {
        printf("error: %s\n", why);
        return 1;
    }
    printf("disk %s sector %u\n", g.disk_guid, g.sector_size);
    for (unsigned i = 0; i < g.count; i++) {
        const struct gpt_part *p = &g.parts[i];
        printf("part %u type %s uuid %s first %llu last %llu attrs %016llx%s\n", p->number, p->type,
               p->uuid, (unsigned long long)p->first_lba, (unsigned long long)p->last_lba,
               (unsigned long long)p->attrs,
               strcmp(p->type, GPT_TYPE_ROOT_NATIVE) ? "" : " root");
    }
    gpt_free(&g);
    return 0;
}

static int read_sb(const char *path, struct verity_sb *sb) {
    unsigned char buf[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
        printf("error: %s: %s\n", path, fd < 0 ? strerror(errno) : "short read");
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    const char *why = verity_sb_parse(buf, sb);
    if (why) {
        printf("error: %s\n", why);
        return -1;
    }
    return 0;
}

static int verity_sb(const char *path) {
    struct verity_sb sb;
    if (read_sb(path, &sb)) return 1;
    char table[1024];
    verity_table(table, sizeof table, &sb, "DATA", "HASH", "ROOTHASH", NULL);
    printf("version %u\nhash_type %u\nalgorithm %s\ndata_block_size %u\nhash_block_size %u\n"
           "data_blocks %llu\nsalt_size %u\ntable %s\n",
           sb.version, sb.hash_type, sb.algorithm, sb.data_block_size, sb.hash_block_size,
           (unsigned long long)sb.data_blocks, sb.salt_size, table);
    return 0;
}

static int majmin(const char *path, char out[24]) {
    struct stat st;
    if (stat(path, &st) || !S_ISBLK(st.st_mode)) {
        printf("error: %s is not a block device\n", path);
        return -1;
    }
    snprintf(out, 24, "%u:%u", major(st.st_rdev), minor(st.st_rdev));
    return 0;
}

static int dm(const char *usrhash, const char *data, const char *hash) {
    struct config c;
    char err[512], cl[128], d[24], h[24], table[1024], name[64];
    snprintf(cl, sizeof cl, "usrhash=%s", usrhash);
    if (parse_cmdline(cl, &c, err, sizeof err)) {
        printf("error: %s\n", err);
        return 1;
    }
    struct verity_sb sb;
    if (read_sb(hash, &sb) || majmin(data, d) || majmin(hash, h)) return 1;
    verity_table(table, sizeof table, &sb, d, h, c.usrhash, NULL);
    snprintf(name, sizeof name, "cairn-selftest-%d", (int)getpid());
    dev_t dev;
    uint64_t sectors = sb.data_blocks * sb.data_block_size / 512;
    const char *why = dm_create(name, "verity", sectors, table, &dev);
    if (why) {
        printf("error: %s\n", why);
        return 1;
    }
    char node[96];
    snprintf(node, sizeof node, "/dev/mapper/%s.node", name);
    mknod(node, S_IFBLK | 0600, dev);
    uint64_t bad = 0;
    int e = read_whole(node, sectors * 512, &bad);
    if (!e) {
        snprintf(table + strlen(table), sizeof table - strlen(table), " 1 restart_on_corruption");
        why = dm_reload(name, "verity", sectors, table);
    }
    unlink(node);
    const char *rm = dm_remove(name);
    if (e) printf("read-error %llu %s\n", (unsigned long long)bad, strerror(e));
    else if (why) printf("error: %s\n", why);
    else printf("ok %llu bytes via %u:%u\n", (unsigned long long)sectors * 512, major(dev), minor(dev));
    if (rm) printf("error: %s\n", rm);
    return e || why || rm ? 1 : 0;
}

int selftest_main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--selftest-cmdline")) return cmdline(argv[2]);
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--selftest-gpt"))
        return gpt(argv[2], argc == 4 ? (unsigned)atoi(argv[3]) : 512);
    if (argc == 3 && !strcmp(argv[1], "--selftest-verity-sb")) return verity_sb(argv[2]);
    if (argc == 5 && !strcmp(argv[1], "--selftest-dm")) return dm(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "--selftest-copy-tree")) {
        char err[512];
        const char *why = copy_tree(argv[2], argv[3], err, sizeof err);
        if (why) printf("error: %s\n", why);
        return why ? 1 : 0;
    }
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--selftest-factory-reset")) {
        char err[512];
        int kept = 0;
        const char *why = factory_reset(argv[2], argc == 4 ? atoi(argv[3]) : 0, NULL, &kept, err, sizeof err);
        if (why) printf("error: %s\n", why);
        else printf("ok, kept %d\n", kept);
        return why ? 1 : 0;
    }
    return usage();
}
