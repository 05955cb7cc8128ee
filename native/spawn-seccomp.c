/*
 * The default seccomp filter, written as classic BPF: the allowlist style of the docker and
 * podman default profiles. A foreign architecture is killed (no x32 or i386 back doors on
 * x86_64), a syscall the build's headers do not know gets ENOSYS (so libc falls back from
 * syscalls newer than this filter), the allowlist passes, and everything else gets EPERM:
 * mount, unshare, setns, keyctl, bpf, ptrace, kexec_load, module loading, io_uring...
 * clone is allowed without namespace flags; clone3 gets ENOSYS, because its flags live in
 * memory the filter cannot read and libc then falls back to clone.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "spawn.h"
#include "spawn-syscalls.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#define X32_BIT 0x40000000u
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "cairn-spawn's seccomp filter knows x86_64 and aarch64"
#endif

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | 0x00000080 /* CLONE_NEWTIME */)
#define ARG0_LOW offsetof(struct seccomp_data, args[0]) /* little endian: the low word first */
#define RET_ERRNO(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define RET_ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define NELEM(a) (sizeof(a) / sizeof(*(a)))

/* personality(2) values the profiles allow: Linux, and Linux with ADDR_NO_RANDOMIZE/UNAME26, and the query */
static const unsigned personalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

int seccomp_install(struct failure *f) {
    size_t max = 32 + NELEM(allowed_syscalls) * 2 + NELEM(personalities);
    struct sock_filter *p = calloc(max, sizeof *p), *q = p;
    int known_max = __NR_clone3 > __NR_personality ? __NR_clone3 : __NR_personality;
    for (size_t i = 0; i < NELEM(allowed_syscalls); i++)
        if (allowed_syscalls[i] > known_max) known_max = allowed_syscalls[i];
    for (size_t i = 0; i < NELEM(denied_syscalls); i++)
        if (denied_syscalls[i] > known_max) known_max = denied_syscalls[i];

    *q++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0);
    *q++ = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    *q++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef X32_BIT
    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1);
    *q++ = (struct sock_filter)RET_ERRNO(EPERM);
#endif
    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, (unsigned)known_max, 0, 1);
    *q++ = (struct sock_filter)RET_ERRNO(ENOSYS);

    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
    *q++ = (struct sock_filter)RET_ERRNO(ENOSYS);

    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4);
    *q++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LOW);
    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1);
    *q++ = (struct sock_filter)RET_ERRNO(EPERM);
    *q++ = (struct sock_filter)RET_ALLOW;

    /* personality: jump over the value checks to the next syscall test when it is not ours */
    *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, (unsigned char)(NELEM(personalities) + 3));
    *q++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LOW);
    for (size_t i = 0; i < NELEM(personalities); i++)
        *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, personalities[i], (unsigned char)(NELEM(personalities) - i), 0);
    *q++ = (struct sock_filter)RET_ERRNO(EPERM);
    *q++ = (struct sock_filter)RET_ALLOW;

    for (size_t i = 0; i < NELEM(allowed_syscalls); i++) {
        *q++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed_syscalls[i], 0, 1);
        *q++ = (struct sock_filter)RET_ALLOW;
    }
    *q++ = (struct sock_filter)RET_ERRNO(EPERM);

    struct sock_fprog prog = {.len = (unsigned short)(q - p), .filter = p};
    int r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
    int e = errno;
    free(p);
    return r ? fail(f, e, "seccomp", "installing the filter (%u instructions)", prog.len) : 0;
}
