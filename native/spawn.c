/*
 * cairn-spawn: starts one container from a spec and supervises it until it ends.
 *
 *   spawn [--report-fd N] [--exit-file PATH] [--die-with-parent] SPEC|--spec-fd N
 *   spawn --check SPEC|--spec-fd N
 *
 * The supervisor (this process) creates the cgroups, clones the container's init into new
 * namespaces, moves it into the cgroups, writes its id maps, and lets it go. Then it forwards
 * signals, relays the terminal, and when the init is gone reports the command's exit status:
 * "cgroup DIR", "started PID" and "exited CODE SIGNAL OOM" lines on the report descriptor, the same last
 * line atomically in the exit file, and the code as its own exit status (128+N for a
 * signal). Failures are one line, "step: what", on the report descriptor (else on stderr),
 * and exit 125 (setup), 126 (cannot execute) or 127 (command not found).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGCONT};

int fail(struct failure *f, int errnum, const char *step, const char *fmt, ...) {
    int n = snprintf(f->text, sizeof f->text, "%s: ", step);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(f->text + n, sizeof f->text - (size_t)n, fmt, ap);
    va_end(ap);
    if (errnum && (size_t)n < sizeof f->text) snprintf(f->text + n, sizeof f->text - (size_t)n, ": %s", strerror(errnum));
    return -1;
}

int msg_send(int sock, const struct msg *m, int fd_to_pass) {
    struct iovec iov = {(void *)m, sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd_to_pass >= 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
    }
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *m ? 0 : -1;
}

ssize_t msg_recv(int sock, struct msg *m, int *fd_out) {
    struct iovec iov = {m, sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t n;
    do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (fd_out) *fd_out = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (n > 0 && c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        if (fd_out) *fd_out = fd;
        else close(fd);
    }
    if (n > 0 && n != (ssize_t)sizeof *m) return -1;
    if (n > 0) m->text[sizeof m->text - 1] = '\0';
    return n;
}

static int report_fd = -1;

static void report(const char *fmt, ...) {
    char line[ERR_LEN + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* the reader may be gone (a detached start returns once it has "started"): that is fine */
    if (report_fd >= 0) (void)!write(report_fd, line, strlen(line));
}

static int die(const struct failure *f) {
    if (report_fd >= 0) report("error %s\n", f->text);
    else fprintf(stderr, "cairn-spawn: %s\n", f->text);
    return f->code;
}

/* The exit line, replaced atomically: `cairn ps` sees no file or a complete one. */
static void write_exit_file(const char *path, const char *line) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;
    int ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line) && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

static int write_idmap(pid_t pid, const char *file, const struct id_map *maps, int n, struct failure *f) {
    char path[64], buf[512] = "";
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%lu %lu %lu\n", maps[i].inside, maps[i].outside, maps[i].count);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail(f, errno, "user namespace", "%s", path);
    ssize_t w = write(fd, buf, strlen(buf));
    int e = errno;
    close(fd);
    return w < 0 ? fail(f, e, "user namespace", "writing %s", path) : 0;
}

static int setup_userns(const struct spec *s, pid_t pid, struct failure *f) {
    if (!s->userns) return 0;
    if (geteuid() != 0) {
        /* an unprivileged writer of gid_map must give up setgroups first */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "deny", 4) != 4) {
            int e = errno;
            if (fd >= 0) close(fd);
            return fail(f, e, "user namespace", "%s", path);
        }
        close(fd);
    }
    return write_idmap(pid, "uid_map", s->uidmap, s->nuidmap, f) || write_idmap(pid, "gid_map", s->gidmap, s->ngidmap, f) ? -1 : 0;
}

struct state {
    pid_t init;
    int init_done, init_status;
    int sock_open, have_exit, exit_status, parent_gone;
    struct failure failure; /* the first one wins: later ones are consequences */
    int failed;
    struct tty_relay tty;
    int tty_open;
};

static void on_message(struct state *st, int sock) {
    struct msg m;
    int fd;
    ssize_t n = msg_recv(sock, &m, &fd);
    if (n <= 0) {
        st->sock_open = 0;
        return;
    }
    switch (m.type) {
    case MSG_PTY:
        if (fd >= 0 && !st->tty_open) st->tty_open = tty_relay_start(&st->tty, fd) == 0;
        break;
    case MSG_STARTED:
        report("started %d\n", (int)st->init);
        break;
    case MSG_ERROR:
        if (!st->failed++) {
            st->failure.code = m.value;
            snprintf(st->failure.text, sizeof st->failure.text, "%s", m.text);
        }
        break;
    case MSG_EXIT:
        st->have_exit = 1;
        st->exit_status = m.value;
        break;
    }
}

static void on_signal(struct state *st, int sfd) {
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si) return;
    if (si.ssi_signo == SIGCHLD) {
        int status;
        if (waitpid(st->init, &status, WNOHANG) == st->init) {
            st->init_done = 1;
            st->init_status = status;
        }
    } else if (si.ssi_signo == SIGWINCH && st->tty_open) {
        tty_relay_resize(&st->tty);
    } else {
        kill(st->init, (int)si.ssi_signo);
    }
}

static void supervise(struct state *st, int sock, int sfd, int parentfd) {
    for (;;) {
        int tty = st->tty_open && st->tty.master >= 0;
        if (st->init_done && !st->sock_open && !tty) return;
        struct pollfd p[5] = {{sfd, POLLIN, 0}, {st->sock_open ? sock : -1, POLLIN, 0}, {parentfd, POLLIN, 0},
                              {tty ? st->tty.master : -1, tty ? tty_relay_master_events() : 0, 0},
                              {tty && st->tty.in >= 0 ? st->tty.in : -1, tty ? tty_relay_in_events(&st->tty) : 0, 0}};
        if (poll(p, 5, -1) < 0) continue;
        if (p[0].revents) on_signal(st, sfd);
        if (p[1].revents) on_message(st, sock);
        if (p[2].revents && !st->parent_gone) {
            /* whoever ran us in the foreground is gone: nobody is left to see the container */
            st->parent_gone = 1;
            kill(st->init, SIGKILL);
        }
        if (tty && (p[3].revents || p[4].revents) && !tty_relay_pump(&st->tty, p[4].revents, p[3].revents)) {
            tty_relay_stop(&st->tty);
            st->tty.master = -1;
        }
    }
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--check] [--report-fd N] [--exit-file PATH] [--die-with-parent] SPEC|--spec-fd N\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *exit_file = NULL, *spec_path = NULL;
    int check = 0, die_with_parent = 0, spec_fd = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) check = 1;
        else if (!strcmp(argv[i], "--die-with-parent")) die_with_parent = 1;
        else if (!strcmp(argv[i], "--report-fd") && i + 1 < argc) report_fd = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exit-file") && i + 1 < argc) exit_file = argv[++i];
        else if (!strcmp(argv[i], "--spec-fd") && i + 1 < argc) spec_fd = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !spec_path) spec_path = argv[i];
        else return usage(argv[0]);
    }
    if (!spec_path == (spec_fd < 0)) return usage(argv[0]);
    if (report_fd >= 0 && fcntl(report_fd, F_SETFD, FD_CLOEXEC)) report_fd = -1;

    struct state st = {.sock_open = 1, .failure = {EXIT_SETUP, ""}};
    struct spec s;
    int fd = spec_path ? open(spec_path, O_RDONLY | O_CLOEXEC) : spec_fd;
    if (fd < 0) return die((fail(&st.failure, errno, "spec", "%s", spec_path), &st.failure));
    int loaded = spec_load(fd, spec_path ? spec_path : "the spec descriptor", &s, &st.failure);
    close(fd);
    if (loaded) return die(&st.failure);
    if (check) return 0;
    /* a detached supervisor must not pin the directory it was started from */
    if (chdir("/")) return die((fail(&st.failure, errno, "supervisor", "chdir /"), &st.failure));

    int parentfd = -1;
    if (die_with_parent) {
        parentfd = getppid() == 1 ? -1 : pidfd_open(getppid(), 0);
        if (parentfd < 0) return die(&(struct failure){EXIT_SETUP, "supervisor: the parent is already gone"});
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaddset(&set, forwarded[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);

    struct cgroups cg;
    if (cgroups_create(&s, &cg, &st.failure)) {
        cgroups_remove(&cg);
        return die(&st.failure);
    }
    /* so that a supervisor killed outright leaves directories `cairn rm` can find */
    for (int i = 0; i < cg.count; i++) report("cgroup %s\n", cg.dirs[i].path);
    int sv[2];
    if (sfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
        fail(&st.failure, errno, "supervisor", "signalfd/socketpair");
        cgroups_remove(&cg);
        return die(&st.failure);
    }
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (s.net == NET_HOST ? 0 : CLONE_NEWNET) |
                (s.userns ? CLONE_NEWUSER : 0);
    st.init = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (st.init == 0) {
        /* nothing the supervisor holds or inherited goes in: only stdio and our channel */
        if (sv[1] > 3) close_range(3, (unsigned)sv[1] - 1, 0);
        close_range((unsigned)sv[1] + 1, ~0U, 0);
        container_main(&s, sv[1]);
    }
    close(sv[1]);
    if (st.init < 0) {
        fail(&st.failure, errno, "namespaces", "clone");
        cgroups_remove(&cg);
        return die(&st.failure);
    }
    if (cgroups_attach(&cg, st.init, &st.failure) || setup_userns(&s, st.init, &st.failure) ||
        msg_send(sv[0], &(struct msg){.type = MSG_GO}, -1)) {
        if (!st.failure.text[0]) fail(&st.failure, errno, "supervisor", "starting the container");
        kill(st.init, SIGKILL);
        waitpid(st.init, NULL, 0);
        cgroups_remove(&cg);
        return die(&st.failure);
    }

    supervise(&st, sv[0], sfd, parentfd);
    int oom = cgroups_oom_killed(&cg);
    cgroups_remove(&cg);
    if (st.failed) return die(&st.failure);

    int status = st.have_exit ? st.exit_status : st.init_status;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = sig ? 128 + sig : WEXITSTATUS(status);
    char line[64];
    snprintf(line, sizeof line, "exited %d %d %d\n", code, sig, oom);
    if (exit_file) write_exit_file(exit_file, line);
    report("%s", line);
    return code;
}
