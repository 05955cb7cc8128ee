/*
 * The terminal relay for interactive containers: the user's terminal goes raw, keystrokes go
 * to the pty master the container opened in its own devpts, output comes back, and window
 * size changes follow. Control characters reach the container as bytes, so ^C is the
 * container's business, as with `docker run -it`.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "spawn.h"

static char pending[4096];
static size_t npending;

int tty_relay_start(struct tty_relay *t, int master) {
    t->master = master;
    t->in = STDIN_FILENO;
    t->out = STDOUT_FILENO;
    t->raw = 0;
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    if (isatty(t->in) && tcgetattr(t->in, &t->saved) == 0) {
        struct termios raw = t->saved;
        cfmakeraw(&raw);
        if (tcsetattr(t->in, TCSANOW, &raw) == 0) t->raw = 1;
    }
    tty_relay_resize(t);
    return 0;
}

void tty_relay_resize(const struct tty_relay *t) {
    struct winsize ws;
    if (ioctl(t->in, TIOCGWINSZ, &ws) == 0) ioctl(t->master, TIOCSWINSZ, &ws);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Keystrokes wait in `pending` while the container is not reading, so neither side blocks. */
int tty_relay_pump(struct tty_relay *t, short in_events, short master_events) {
    char buf[8192];
    if (in_events & (POLLIN | POLLHUP)) {
        ssize_t n = read(t->in, pending, sizeof pending);
        if (n <= 0) t->in = -1; /* the user's end is gone; the output still flows */
        else npending = (size_t)n;
    }
    if (master_events & POLLOUT && npending) {
        ssize_t n = write(t->master, pending, npending);
        if (n > 0) {
            npending -= (size_t)n;
            for (size_t i = 0; i < npending; i++) pending[i] = pending[i + (size_t)n];
        }
    }
    if (master_events & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = read(t->master, buf, sizeof buf);
        if (n > 0) {
            write_all(t->out, buf, (size_t)n); /* a closed stdout only loses output */
            return 1;
        }
        if (n == 0 || errno != EAGAIN) return 0; /* EIO: every process holding the terminal is gone */
    }
    return 1;
}

/* poll events wanted on the user's input: none while keystrokes are still pending */
short tty_relay_in_events(const struct tty_relay *t) {
    return t->in >= 0 && npending == 0 ? POLLIN : 0;
}

short tty_relay_master_events(void) {
    return (short)(POLLIN | (npending ? POLLOUT : 0));
}

void tty_relay_stop(struct tty_relay *t) {
    if (t->raw) tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
    close(t->master);
}
