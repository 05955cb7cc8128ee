/* Parsing the kernel command line into the init's configuration. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn-init.h"

static int is_uuid(const char *s) {
    if (strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* Copies a value into a fixed field, refusing silent truncation. */
static int set(char *field, size_t size, const char *value) {
    if (strlen(value) >= size) return -1;
    strcpy(field, value);
    return 0;
}

static const char *apply(struct config *cfg, const char *key, const char *value, char *err,
                         size_t errlen) {
#define BAD(...) (snprintf(err, errlen, __VA_ARGS__), err)
    if (!strcmp(key, "usrhash")) {
        if (!value || strlen(value) != ROOTHASH_HEX)
            return BAD("usrhash= must be %d hex digits (a sha256 root hash)", ROOTHASH_HEX);
        for (const char *p = value; *p; p++)
            if (!isxdigit((unsigned char)*p)) return BAD("usrhash= contains non-hex '%c'", *p);
        strcpy(cfg->usrhash, value);
        lower(cfg->usrhash);
    } else if (!strcmp(key, "cairn.root")) {
        if (!value || !strcmp(value, "auto")) {
            cfg->root_partuuid[0] = 0;
        } else if (!strncmp(value, "PARTUUID=", 9) && is_uuid(value + 9)) {
            strcpy(cfg->root_partuuid, value + 9);
            lower(cfg->root_partuuid);
        } else {
            return BAD("cairn.root=%s: expected auto or PARTUUID=<uuid>", value);
        }
    } else if (!strcmp(key, "cairn.on_failure")) {
        if (value && !strcmp(value, "reboot")) cfg->on_failure = ON_FAILURE_REBOOT;
        else if (value && !strcmp(value, "poweroff")) cfg->on_failure = ON_FAILURE_POWEROFF;
        else if (value && !strcmp(value, "halt")) cfg->on_failure = ON_FAILURE_HALT;
        else return BAD("cairn.on_failure=%s: expected reboot, poweroff or halt", value ? value : "");
    } else if (!strcmp(key, "cairn.verify")) {
        if (value && !strcmp(value, "full")) cfg->verify = VERIFY_FULL;
        else if (value && !strcmp(value, "lazy")) cfg->verify = VERIFY_LAZY;
        else return BAD("cairn.verify=%s: expected full or lazy", value ? value : "");
    } else if (!strcmp(key, "cairn.device_timeout")) {
        char *end;
        long v = value ? strtol(value, &end, 10) : -1;
        if (!value || *end || v < 1 || v > 3600)
            return BAD("cairn.device_timeout=%s: expected seconds (1-3600)", value ? value : "");
        cfg->device_timeout_s = (int)v;
    } else if (!strcmp(key, "cairn.debug")) {
        cfg->debug = 1;
    } else if (!strcmp(key, "init")) {
        if (!value || value[0] != '/' || set(cfg->init, sizeof cfg->init, value))
            return BAD("init=%s: expected an absolute path (< %zu bytes)", value ? value : "",
                       sizeof cfg->init);
    } else if (!strcmp(key, "rootfstype")) {
        if (!value || !*value || set(cfg->rootfstype, sizeof cfg->rootfstype, value))
            return BAD("rootfstype=%s: expected a file system type", value ? value : "");
    } else if (!strcmp(key, "rootflags")) {
        if (!value || set(cfg->rootflags, sizeof cfg->rootflags, value))
            return BAD("rootflags= is too long (max %zu bytes)", sizeof cfg->rootflags - 1);
    }
    /* Everything else belongs to the kernel or the real init. */
    return NULL;
#undef BAD
}

const char *parse_cmdline(const char *cmdline, struct config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->init, "/usr/lib/systemd/systemd");
    strcpy(cfg->rootfstype, "ext4");
    cfg->on_failure = ON_FAILURE_REBOOT;
    cfg->verify = VERIFY_LAZY;
    cfg->device_timeout_s = 15;

    char word[1024];
    const char *p = cmdline;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        /* The kernel's rules: double quotes group, and are dropped. */
        size_t n = 0;
        int quoted = 0;
        for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
            if (*p == '"') { quoted = !quoted; continue; }
            if (n + 1 >= sizeof word) {
                snprintf(err, errlen, "a command line parameter is longer than %zu bytes",
                         sizeof word - 1);
                return err;
            }
            word[n++] = *p;
        }
        word[n] = 0;
        if (!strcmp(word, "--")) break; /* the rest is for the real init */
        char *eq = strchr(word, '=');
        if (eq) *eq = 0;
        const char *msg = apply(cfg, word, eq ? eq + 1 : NULL, err, errlen);
        if (msg) return msg;
    }
    if (!cfg->usrhash[0]) {
        snprintf(err, errlen, "no usrhash= on the kernel command line (the UKI must carry it)");
        return err;
    }
    return NULL;
}
