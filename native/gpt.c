/* Reading a GUID partition table straight from a disk: no blkid or udev in the initramfs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn-init.h"

#define GPT_MAX_ENTRIES 1024
#define GPT_MAX_ENTRY_SIZE 4096

uint32_t crc32_ieee(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *p = buf;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
    }
    return ~crc;
}

static uint32_t le32(const unsigned char *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* GPT stores the first three GUID fields little-endian ("mixed endian"). */
void guid_to_string(const unsigned char g[16], char out[37]) {
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

void uuids_from_roothash(const char *hex, char usr[37], char verity[37]) {
    for (int half = 0; half < 2; half++) {
        const char *h = hex + half * 32;
        char *o = half ? verity : usr;
        snprintf(o, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
    }
}

static int read_at(int fd, void *buf, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

/* Validates the header at `lba` and its entry array; fills out on success. */
static const char *read_table(int fd, unsigned ss, uint64_t lba, struct gpt *out) {
    unsigned char *hdr = malloc(ss);
    if (!hdr) return "out of memory";
    const char *why = NULL;
    unsigned char *entries = NULL;
    if (read_at(fd, hdr, ss, lba * ss)) { why = "cannot read the GPT header"; goto done; }
    if (memcmp(hdr, "EFI PART", 8)) { why = "no GPT signature"; goto done; }
    uint32_t hsize = le32(hdr + 12);
    if (hsize < 92 || hsize > ss) { why = "GPT header size out of range"; goto done; }
    uint32_t want = le32(hdr + 16);
    memset(hdr + 16, 0, 4);
    if (crc32_ieee(0, hdr, hsize) != want) { why = "GPT header checksum mismatch"; goto done; }
    if (le64(hdr + 24) != lba) { why = "GPT header names another LBA as its own"; goto done; }
    uint64_t elba = le64(hdr + 72);
    uint32_t n = le32(hdr + 80), esize = le32(hdr + 84), ecrc = le32(hdr + 88);
    if (n > GPT_MAX_ENTRIES || esize < 128 || esize > GPT_MAX_ENTRY_SIZE || esize % 8) {
        why = "GPT entry count or size out of range";
        goto done;
    }
    size_t total = (size_t)n * esize;
    entries = malloc(total ? total : 1);
    if (!entries) { why = "out of memory"; goto done; }
    if (read_at(fd, entries, total, elba * ss)) { why = "cannot read the GPT entries"; goto done; }
    if (crc32_ieee(0, entries, total) != ecrc) { why = "GPT entries checksum mismatch"; goto done; }

    out->sector_size = ss;
    guid_to_string(hdr + 56, out->disk_guid);
    out->parts = calloc(n ? n : 1, sizeof *out->parts);
    if (!out->parts) { why = "out of memory"; goto done; }
    out->count = 0;
    static const unsigned char unused[16];
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = entries + (size_t)i * esize;
        if (!memcmp(e, unused, 16)) continue;
        struct gpt_part *p = &out->parts[out->count++];
        p->number = i + 1;
        guid_to_string(e, p->type);
        guid_to_string(e + 16, p->uuid);
        p->first_lba = le64(e + 32);
        p->last_lba = le64(e + 40);
        p->attrs = le64(e + 48);
    }
done:
    free(hdr);
    free(entries);
    return why;
}

const char *gpt_read(int fd, unsigned ss, struct gpt *out) {
    memset(out, 0, sizeof *out);
    const char *why = read_table(fd, ss, 1, out);
    if (!why) return NULL;
    /* A damaged primary table is what the backup at the disk's last LBA is for. */
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0) return why;
    struct gpt backup;
    memset(&backup, 0, sizeof backup);
    if (read_table(fd, ss, (uint64_t)end / ss - 1, &backup)) return why;
    *out = backup;
    return NULL;
}

void gpt_free(struct gpt *g) {
    free(g->parts);
    g->parts = NULL;
    g->count = 0;
}
