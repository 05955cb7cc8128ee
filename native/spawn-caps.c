/*
 * The container's privileges: podman's eleven default capabilities, nothing ambient or
 * inheritable, the spec's user and groups, and no_new_privs so that no setuid binary or file
 * capability in /usr can give any of it back.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spawn.h"

#define CAP(c) (1ULL << (c))
static const unsigned long long kept = CAP(CAP_CHOWN) | CAP(CAP_DAC_OVERRIDE) | CAP(CAP_FOWNER) | CAP(CAP_FSETID) |
                                       CAP(CAP_KILL) | CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_SETFCAP) | CAP(CAP_SETGID) |
                                       CAP(CAP_SETPCAP) | CAP(CAP_SETUID) | CAP(CAP_SYS_CHROOT);

int caps_drop_and_switch_user(const struct spec *s, struct failure *f) {
    /* the bounding set limits what any later exec can gain; the kernel may know more than our headers */
    for (int cap = 0; cap < 64; cap++) {
        if (kept & CAP(cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
            return fail(f, errno, "capabilities", "dropping capability %d from the bounding set", cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
        return fail(f, errno, "capabilities", "clearing the ambient set");

    /* an unprivileged user namespace has setgroups denied; it has no other groups to drop */
    if (setgroups((size_t)s->ngroups, s->groups) && !(errno == EPERM && s->userns && s->ngroups == 0))
        return fail(f, errno, "user", "setgroups");
    if (setresgid(s->gid, s->gid, s->gid)) return fail(f, errno, "user", "setresgid %u", (unsigned)s->gid);
    /* a switch away from uid 0 clears the permitted and effective sets by itself */
    if (setresuid(s->uid, s->uid, s->uid)) return fail(f, errno, "user", "setresuid %u", (unsigned)s->uid);

    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    if (s->uid == 0) {
        data[0].effective = data[0].permitted = (unsigned)kept;
        data[1].effective = data[1].permitted = (unsigned)(kept >> 32);
    }
    if (syscall(SYS_capset, &hdr, data)) return fail(f, errno, "capabilities", "capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return fail(f, errno, "no_new_privs", "prctl");
    return 0;
}
