/* cairn-init: the initramfs PID 1. Shared declarations. See docs/initramfs.md. */
#ifndef CAIRN_INIT_H
#define CAIRN_INIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- logging and the failure path (init.c) ---- */
void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "cairn-init: FATAL: <step>: <what>" and powers off / reboots; never returns. */
void fatal(const char *step, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
extern int debug_enabled;

/* ---- kernel command line (cmdline.c) ---- */
enum on_failure { ON_FAILURE_REBOOT, ON_FAILURE_POWEROFF, ON_FAILURE_HALT };
enum verify_mode { VERIFY_LAZY, VERIFY_FULL };

#define ROOTHASH_HEX 64 /* sha256 */

struct config {
    char usrhash[ROOTHASH_HEX + 1]; /* lower-case hex; empty when absent */
    char root_partuuid[37];         /* lower-case; empty = auto (DPS root type) */
    char init[256];
    char rootfstype[32];
    char rootflags[256];
    enum on_failure on_failure;
    enum verify_mode verify;
    int device_timeout_s;
    int debug;
};
/* Fills cfg from a command line; returns NULL or a message naming the bad parameter. */
const char *parse_cmdline(const char *cmdline, struct config *cfg, char *err, size_t errlen);

/* ---- GPT (gpt.c) ---- */
struct gpt_part {
    unsigned number; /* 1-based entry index, as the kernel numbers partitions */
    char type[37];   /* lower-case GUID strings */
    char uuid[37];
    uint64_t first_lba, last_lba, attrs;
};
struct gpt {
    unsigned sector_size;
    char disk_guid[37];
    unsigned count;
    struct gpt_part *parts; /* malloc'ed, only used entries */
};
/* Reads the primary GPT (falling back to the backup) from fd; returns NULL or a reason. */
const char *gpt_read(int fd, unsigned sector_size, struct gpt *out);
void gpt_free(struct gpt *g);
void guid_to_string(const unsigned char in[16], char out[37]);
/* The DPS convention: usr partition UUID = first 128 bits of the root hash, verity = last. */
void uuids_from_roothash(const char *hex, char usr[37], char verity[37]);
uint32_t crc32_ieee(uint32_t crc, const void *buf, size_t len);

#define GPT_TYPE_ROOT_X86_64 "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
#define GPT_TYPE_ROOT_ARM64 "b921b045-1df0-41c3-af44-4c6f280d3fae"
#if defined(__x86_64__)
#define GPT_TYPE_ROOT_NATIVE GPT_TYPE_ROOT_X86_64
#elif defined(__aarch64__)
#define GPT_TYPE_ROOT_NATIVE GPT_TYPE_ROOT_ARM64
#else
#error "no DPS root partition type for this architecture"
#endif

/* ---- dm-verity (verity.c) ---- */
struct verity_sb {
    unsigned version, hash_type;
    char algorithm[33];
    unsigned data_block_size, hash_block_size;
    uint64_t data_blocks;
    unsigned salt_size;
    unsigned char salt[256];
};
/* Parses and checks the 512-byte veritysetup superblock at the start of the hash device. */
const char *verity_sb_parse(const unsigned char buf[512], struct verity_sb *sb);
/* The "verity" target's parameters (format 1, hash area after the superblock). */
int verity_table(char *out, size_t outlen, const struct verity_sb *sb, const char *data_dev,
                 const char *hash_dev, const char *roothash, const char *optional);
/* Creates a read-only dm device `name` with one target; returns NULL or a reason. */
const char *dm_create(const char *name, const char *target, uint64_t sectors, const char *params,
                      dev_t *dev_out);
/* Replaces the live table of `name` (load, suspend, resume). */
const char *dm_reload(const char *name, const char *target, uint64_t sectors, const char *params);
const char *dm_remove(const char *name);
/* Reads `bytes` of a device, dropping them from the page cache; 0 or errno (offset in *failed_at). */
int read_whole(const char *dev, uint64_t bytes, uint64_t *failed_at);

/* ---- file system helpers (fs.c) ---- */
/* Copies a tree keeping modes, owners and symlinks; returns NULL or a reason (in err). */
const char *copy_tree(const char *src, const char *dst, char *err, size_t errlen);
/* Deletes everything on the file system of `path` without crossing mount points. */
void delete_tree_same_fs(const char *path);
int dir_is_missing_or_empty(const char *path);
/* Wipes `root` but the paths its reset request keeps; NULL when done or nothing was asked.
 * `wiped` runs between the wipe and the restore; `stop_after` 1..3 stops after that step (tests
 * of a cut); *kept counts paths restored. */
const char *factory_reset(const char *root, int stop_after, void (*wiped)(void), int *kept, char *err, size_t errlen);

/* ---- test modes (selftest.c) ---- */
int selftest_main(int argc, char **argv);

#endif
