/* cairn-spawn: the container launcher. Shared declarations. See docs/runtime.md. */
#ifndef CAIRN_SPAWN_H
#define CAIRN_SPAWN_H

#include <stddef.h>
#include <sys/types.h>
#include <termios.h>

/* ---- failure reporting ---- */
#define ERR_LEN 480
/* Exit codes for failures before the command runs (the convention of docker and podman). */
#define EXIT_SETUP 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

/* One failure: the step that failed and what went wrong, e.g. "mount /usr: /x: No such file". */
struct failure {
    int code;
    char text[ERR_LEN];
};
/* Fills f with "step: what" (and ": strerror(errno)" when errnum != 0); returns -1. */
int fail(struct failure *f, int errnum, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- the spec (spawn-spec.c); format in docs/runtime.md ---- */
#define SPEC_MAGIC "cairn-spawn-spec/1"
#define SPEC_MAX_BYTES (4u << 20)
#define MAX_LAYERS 32
#define MAX_MOUNTS 64
#define MAX_IDMAPS 8
#define MAX_GROUPS 32

enum net_mode { NET_PRIVATE, NET_NONE, NET_HOST };
struct id_map {
    unsigned long inside, outside, count;
};
struct bind {
    const char *src, *dst;
    int ro;
    int src_fd;
};
struct file_rec {
    const char *path, *content;
    mode_t mode;
};
struct symlink_rec {
    const char *target, *path;
};
struct tmpfs_rec {
    const char *path;
    mode_t mode;
};

struct spec {
    char *buf; /* the decoded bytes; every string below points into it */
    const char *name, *hostname, *rootdir, *usr, *rootfs, *cwd;
    const char *layers[MAX_LAYERS]; /* top first */
    int nlayers;
    char **argv, **envp; /* NULL-terminated */
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    int ngroups, has_user;
    enum net_mode net;
    int userns, tty;
    struct id_map uidmap[MAX_IDMAPS], gidmap[MAX_IDMAPS];
    int nuidmap, ngidmap;
    struct bind binds[MAX_MOUNTS];
    int nbinds;
    struct file_rec files[MAX_MOUNTS];
    int nfiles;
    struct symlink_rec symlinks[MAX_MOUNTS];
    int nsymlinks;
    struct tmpfs_rec tmpfs[MAX_MOUNTS];
    int ntmpfs;
    unsigned long long memory;             /* bytes; 0 = no limit */
    unsigned long cpu_quota, cpu_period;   /* microseconds; 0 = no limit */
    unsigned long pids;                    /* 0 = no limit */
    /* The host paths, opened (O_PATH) in the new mount namespace while the container's
     * credentials are still the caller's: a user namespace's root may not traverse them. */
    int rootdir_fd, usr_fd, rootfs_fd, layer_fds[MAX_LAYERS];
};
/* Reads (to EOF) and checks the spec from fd, named `path` in messages; returns 0, or -1 with f filled. */
int spec_load(int fd, const char *path, struct spec *s, struct failure *f);

/* ---- cgroups (spawn-cgroup.c) ---- */
#define MAX_HIERARCHIES 8
struct cgroup_dir {
    char path[4096];
    int v2;
    int has_memory; /* this directory holds the memory limit: OOM kills are counted here */
    int optional;   /* for tracking only: a caller without rights to it (rootless) goes without */
};
struct cgroups {
    struct cgroup_dir dirs[MAX_HIERARCHIES];
    int count;
};
/* Creates the container's cgroup(s) beneath the caller's own and writes the limits. */
int cgroups_create(const struct spec *s, struct cgroups *cg, struct failure *f);
int cgroups_attach(const struct cgroups *cg, pid_t pid, struct failure *f);
/* 1 when the kernel OOM-killed a process in the container's memory cgroup. */
int cgroups_oom_killed(const struct cgroups *cg);
void cgroups_remove(struct cgroups *cg);

/* ---- the container's root (spawn-root.c) ---- */
/* First thing in the container's mount namespace: opens the spec's host paths into its *_fd fields. */
int root_open_host_paths(struct spec *s, struct failure *f);
/* In the container's new mount namespace: */
int root_build(const struct spec *s, struct failure *f);
/* pivot_root into the built root and seal it; afterwards only container paths exist. */
int root_enter(const struct spec *s, struct failure *f);

/* ---- privileges (spawn-seccomp.c, spawn-caps.c) ---- */
int seccomp_install(struct failure *f);
int caps_drop_and_switch_user(const struct spec *s, struct failure *f);

/* ---- messages between the supervisor and the container's init (SOCK_SEQPACKET) ---- */
enum msg_type { MSG_GO = 1, MSG_PTY, MSG_STARTED, MSG_ERROR, MSG_EXIT };
struct msg {
    int type;
    int value; /* MSG_ERROR: exit code; MSG_EXIT: the command's wait status */
    char text[ERR_LEN];
};
int msg_send(int sock, const struct msg *m, int fd_to_pass);
/* Returns bytes read (0 at EOF) or -1; *fd_out receives a passed descriptor or -1. */
ssize_t msg_recv(int sock, struct msg *m, int *fd_out);

/* ---- the container side (spawn-init.c): never returns ---- */
void container_main(struct spec *s, int sock) __attribute__((noreturn));

/* ---- the terminal relay (spawn-tty.c) ---- */
struct tty_relay {
    int master, in, out;
    int raw; /* the saved termios below is to be restored */
    struct termios saved;
};
int tty_relay_start(struct tty_relay *t, int master);
void tty_relay_resize(const struct tty_relay *t);
/* poll events to wait for on t->in (when >= 0) and on the master */
short tty_relay_in_events(const struct tty_relay *t);
short tty_relay_master_events(void);
/* Moves what is ready between the terminal and the container; 0 when master hit EOF. */
int tty_relay_pump(struct tty_relay *t, short in_events, short master_events);
void tty_relay_stop(struct tty_relay *t);

#endif
