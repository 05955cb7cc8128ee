/*
 * The container side. The cloned child becomes PID 1 of the new PID namespace: it builds and
 * enters the root, drops privileges, installs the seccomp filter, then forks the command and
 * stays as a minimal init. Staying matters: the kernel ignores signals without a handler
 * sent to a namespace's PID 1, so a command running as PID 1 would never see a plain
 * SIGTERM; this init forwards signals to the command, reaps orphans, and reports the
 * command's wait status to the supervisor before it exits (which ends the namespace).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "spawn.h"

extern char **environ;

static void report_failure(int sock, const struct failure *f) {
    struct msg m = {.type = MSG_ERROR, .value = f->code};
    snprintf(m.text, sizeof m.text, "%s", f->text);
    msg_send(sock, &m, -1);
    _exit(f->code);
}

static int loopback_up(struct failure *f) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(f, errno, "network", "socket");
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (r == 0) r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    int e = errno;
    close(fd);
    return r ? fail(f, e, "network", "bringing up lo") : 0;
}

/* A terminal from the container's own devpts; the master goes to the supervisor. */
static int open_pty(const struct spec *s, int sock, struct failure *f) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return fail(f, errno, "terminal", "/dev/ptmx");
    int unlock = 0;
    int slave = ioctl(master, TIOCSPTLCK, &unlock) ? -1 : ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0 || fchown(slave, s->uid, s->gid)) {
        int e = errno;
        close(master);
        return fail(f, e, "terminal", "opening the pty");
    }
    struct msg m = {.type = MSG_PTY};
    int r = msg_send(sock, &m, master);
    int e = errno;
    close(master);
    if (r) {
        close(slave);
        return fail(f, e, "terminal", "passing the pty to the supervisor");
    }
    return slave;
}

static void exec_command(const struct spec *s, int slave, int exec_pipe, int sock) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    umask(022);
    struct failure f = {EXIT_SETUP, ""};
    if (slave >= 0) {
        if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) || dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0) {
            fail(&f, errno, "terminal", "making the pty the command's terminal");
            report_failure(sock, &f);
        }
        close(slave);
    }
    environ = s->envp;
    execvp(s->argv[0], s->argv);
    int e = errno;
    f.code = e == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
    fail(&f, e, "exec", "%s", s->argv[0]);
    (void)!write(exec_pipe, "x", 1);
    report_failure(sock, &f);
}

static int setup(struct spec *s, int sock, int *slave, struct failure *f) {
    if (root_open_host_paths(s, f)) return -1;
    if (unshare(CLONE_NEWCGROUP)) return fail(f, errno, "cgroup namespace", "unshare");
    if (s->userns && (setresgid(0, 0, 0) || setresuid(0, 0, 0))) return fail(f, errno, "user namespace", "becoming root in it");
    if (sethostname(s->hostname, strlen(s->hostname))) return fail(f, errno, "hostname", "%s", s->hostname);
    if (root_build(s, f) || root_enter(s, f)) return -1;
    if (s->net == NET_PRIVATE && loopback_up(f)) return -1;
    if (s->tty && (*slave = open_pty(s, sock, f)) < 0) return -1;
    if (caps_drop_and_switch_user(s, f)) return -1;
    if (chdir(s->cwd)) return fail(f, errno, "cwd", "%s", s->cwd);
    return seccomp_install(f);
}

void container_main(struct spec *s, int sock) {
    struct failure f = {EXIT_SETUP, ""};
    struct msg m;
    /* the supervisor's death must take the container with it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (msg_recv(sock, &m, NULL) <= 0 || m.type != MSG_GO) _exit(EXIT_SETUP);
    /* not dumpable: the container's processes may not open this process's /proc entries. Only
     * after GO: until then the supervisor writes this process's setgroups and id maps, which
     * an unprivileged supervisor may not once the entries belong to root. */
    prctl(PR_SET_DUMPABLE, 0);
    umask(0);
    prctl(PR_SET_NAME, "cairn-init");
    int slave = -1;
    if (setup(s, sock, &slave, &f)) report_failure(sock, &f);
    /* a change of ids clears the parent-death signal: arm it again */
    prctl(PR_SET_PDEATHSIG, SIGKILL);

    sigset_t set;
    sigprocmask(SIG_SETMASK, NULL, &set); /* the supervisor blocked the forwarded signals */
    int sfd = signalfd(-1, &set, SFD_CLOEXEC), ep[2];
    if (sfd < 0 || pipe2(ep, O_CLOEXEC)) {
        fail(&f, errno, "init", "signalfd/pipe");
        report_failure(sock, &f);
    }
    pid_t cmd = fork();
    if (cmd < 0) {
        fail(&f, errno, "init", "fork");
        report_failure(sock, &f);
    }
    if (cmd == 0) exec_command(s, slave, ep[1], sock);
    if (slave >= 0) close(slave);
    close(ep[1]);
    char c;
    /* the pipe closes on a successful exec; the failure path writes a byte and reports */
    if (read(ep[0], &c, 1) == 0) msg_send(sock, &(struct msg){.type = MSG_STARTED}, -1);
    close(ep[0]);
    for (;;) {
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si) continue;
        if (si.ssi_signo != SIGCHLD) {
            kill(cmd, (int)si.ssi_signo);
            continue;
        }
        int status;
        for (pid_t p; (p = waitpid(-1, &status, WNOHANG)) > 0;) {
            if (p != cmd) continue;
            msg_send(sock, &(struct msg){.type = MSG_EXIT, .value = status}, -1);
            _exit(0);
        }
    }
}
