/* A loopback TCP proxy that cuts and stalls connections (see chaos_proxy.h).
 *
 * One thread owns every socket and buffer; the caller's threads only touch the control
 * flags and counters under the mutex and wake the thread through a pipe. */
#define _GNU_SOURCE
#include "chaos_proxy.h"

#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_LISTENERS 64
#define MAX_WAIT_MS 1000 /* poll bound when no chaos deadline is nearer */

/* One direction of a connection: bytes read from one side, not yet written to the other. */
typedef struct pipe_buf {
  char data[BUF_SIZE];
  size_t off, len;
} pipe_buf;

typedef struct conn {
  int cfd, ufd;     /* client side, upstream side */
  bool connecting;  /* upstream connect() still in progress */
  pipe_buf up;      /* client -> upstream */
  pipe_buf down;    /* upstream -> client */
  int64_t cut_at;   /* monotonic ms */
  int64_t stall_at; /* next stall starts */
  int64_t stall_until;
  struct conn *next;
} conn;

struct chaos_proxy {
  int target_port;
  int nlisteners;
  int port[MAX_LISTENERS];
  int lfd[MAX_LISTENERS];
  int wake[2];
  chaos_proxy_opts o;
  uint64_t rng;
  pthread_t thread;
  conn *conns; /* thread-owned */

  pthread_mutex_t mu; /* guards what follows */
  bool stop;
  bool paused;
  bool pause_changed;
  bool hold;    /* forward nothing on any connection */
  bool cut_all; /* cut every open connection at the next round */
  /* Control requests made / taken into account by the thread (see sync_control). */
  uint64_t requested, applied;
  pthread_cond_t applied_cv;
  chaos_proxy_stats stats;
};

/* xorshift64*: a tiny seeded generator, good enough for schedules. */
static uint64_t rng_next(chaos_proxy *p) {
  p->rng ^= p->rng >> 12;
  p->rng ^= p->rng << 25;
  p->rng ^= p->rng >> 27;
  return p->rng * 2685821657736338717ULL;
}

static int64_t rand_between(chaos_proxy *p, int lo, int hi) {
  if (hi <= lo)
    return lo;
  return lo + (int64_t)(rng_next(p) % (uint64_t)(hi - lo + 1));
}

static void count(chaos_proxy *p, uint64_t *field, uint64_t n) {
  pthread_mutex_lock(&p->mu);
  *field += n;
  pthread_mutex_unlock(&p->mu);
}

/* Draws a connection's chaos times from now (INT64_MAX = never). */
static void schedule(chaos_proxy *p, conn *c, int64_t now) {
  c->cut_at =
      p->o.cut_max_ms > 0 ? now + rand_between(p, p->o.cut_min_ms, p->o.cut_max_ms) : INT64_MAX;
  c->stall_at = p->o.stall_max_ms > 0
                    ? now + rand_between(p, p->o.stall_gap_min_ms, p->o.stall_gap_max_ms)
                    : INT64_MAX;
  c->stall_until = 0;
}

static void close_conn(chaos_proxy *p, conn **link) {
  conn *c = *link;
  *link = c->next;
  close(c->cfd);
  close(c->ufd);
  free(c);
  pthread_mutex_lock(&p->mu);
  p->stats.open--;
  pthread_mutex_unlock(&p->mu);
}

/* Accepts every pending client and starts its upstream connect. */
static void accept_all(chaos_proxy *p, int lfd, bool paused, int64_t now) {
  for (;;) {
    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
      return; /* EAGAIN, or a client that went away: nothing to do */
    count(p, &p->stats.accepted, 1);
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    conn *c = ufd >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
      if (ufd >= 0)
        close(ufd);
      close(cfd);
      count(p, &p->stats.closed, 1);
      continue;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->target_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->cfd = cfd;
    c->ufd = ufd;
    c->connecting = connect(ufd, (struct sockaddr *)&a, sizeof a) != 0;
    if (c->connecting && errno != EINPROGRESS) {
      close(ufd);
      close(cfd);
      free(c);
      count(p, &p->stats.closed, 1);
      continue;
    }
    schedule(p, c, now);
    if (paused)
      c->cut_at = c->stall_at = INT64_MAX;
    c->next = p->conns;
    p->conns = c;
    pthread_mutex_lock(&p->mu);
    p->stats.open++;
    pthread_mutex_unlock(&p->mu);
  }
}

/* Reads what fits from fd into b. false: EOF or an error (the connection is over). */
static bool fill(int fd, pipe_buf *b) {
  if (b->len > 0)
    return true;
  ssize_t n = read(fd, b->data, sizeof b->data);
  if (n > 0) {
    b->off = 0;
    b->len = (size_t)n;
    return true;
  }
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/* Writes what b holds to fd. false on an error. */
static bool drain(chaos_proxy *p, int fd, pipe_buf *b, uint64_t *counter) {
  if (b->len == 0)
    return true;
  ssize_t n = send(fd, b->data + b->off, b->len, MSG_NOSIGNAL);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  b->off += (size_t)n;
  b->len -= (size_t)n;
  count(p, counter, (uint64_t)n);
  return true;
}

/* Moves bytes both ways as far as the sockets allow. false: the connection ended. */
static bool pump(chaos_proxy *p, conn *c, short cev, short uev) {
  if (c->connecting) {
    if (!(uev & (POLLOUT | POLLERR | POLLHUP)))
      return !(cev & (POLLERR | POLLHUP));
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
      return false;
    c->connecting = false;
    uev = POLLOUT; /* writable now; read on the next round */
  }
  if ((cev & POLLERR) || (uev & POLLERR))
    return false;
  if ((cev & (POLLIN | POLLHUP)) && !fill(c->cfd, &c->up))
    return false;
  if ((uev & (POLLIN | POLLHUP)) && !fill(c->ufd, &c->down))
    return false;
  return drain(p, c->ufd, &c->up, &p->stats.bytes_up) &&
         drain(p, c->cfd, &c->down, &p->stats.bytes_down);
}

static bool stalled(const conn *c, int64_t now) {
  return now < c->stall_until;
}

/* Applies the chaos due at `now` to c. false: c was cut. */
static bool chaos(chaos_proxy *p, conn *c, int64_t now) {
  if (now >= c->cut_at) {
    count(p, &p->stats.cut, 1);
    return false;
  }
  if (now >= c->stall_at && !stalled(c, now)) {
    c->stall_until = now + rand_between(p, p->o.stall_min_ms, p->o.stall_max_ms);
    c->stall_at = c->stall_until + rand_between(p, p->o.stall_gap_min_ms, p->o.stall_gap_max_ms);
    count(p, &p->stats.stalled, 1);
  }
  return true;
}

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* The poll timeout: until the nearest chaos deadline, at most MAX_WAIT_MS. */
static int wait_ms(const chaos_proxy *p, int64_t now) {
  int64_t until = now + MAX_WAIT_MS;
  for (const conn *c = p->conns; c; c = c->next) {
    until = min64(until, c->cut_at);
    until = min64(until, stalled(c, now) ? c->stall_until : c->stall_at);
  }
  return until <= now ? 0 : (int)(until - now);
}

/* Pause/resume: a pause clears the schedule; a resume draws a new one. */
static void apply_pause(chaos_proxy *p, bool paused, int64_t now) {
  for (conn *c = p->conns; c; c = c->next) {
    if (paused) {
      c->cut_at = c->stall_at = INT64_MAX;
      c->stall_until = 0;
    } else {
      schedule(p, c, now);
    }
  }
}

static size_t count_conns(const chaos_proxy *p) {
  size_t n = 0;
  for (const conn *c = p->conns; c; c = c->next)
    n++;
  return n;
}

/* The poll set: wake pipe, listeners, then two entries per connection, in list order. */
static struct pollfd *build_pollset(chaos_proxy *p, int64_t now, bool hold, size_t *n_out) {
  size_t n = 1 + (size_t)p->nlisteners + 2 * count_conns(p);
  struct pollfd *fds = calloc(n, sizeof *fds);
  if (!fds)
    return NULL;
  fds[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
  for (int l = 0; l < p->nlisteners; l++)
    fds[1 + l] = (struct pollfd){.fd = p->lfd[l], .events = POLLIN};
  size_t i = 1 + (size_t)p->nlisteners;
  for (conn *c = p->conns; c; c = c->next, i += 2) {
    short ce = 0, ue = 0;
    if (c->connecting) {
      ue = POLLOUT;
    } else if (!hold && !stalled(c, now)) {
      ce = (short)((c->up.len == 0 ? POLLIN : 0) | (c->down.len ? POLLOUT : 0));
      ue = (short)((c->down.len == 0 ? POLLIN : 0) | (c->up.len ? POLLOUT : 0));
    }
    /* A stalled socket is still polled with no events: POLLERR/POLLHUP still show. */
    fds[i] = (struct pollfd){.fd = c->cfd, .events = ce};
    fds[i + 1] = (struct pollfd){.fd = c->ufd, .events = ue};
  }
  *n_out = n;
  return fds;
}

static void *run(void *arg) {
  chaos_proxy *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop, paused = p->paused, changed = p->pause_changed, hold = p->hold;
    bool cut_all = p->cut_all;
    uint64_t requested = p->requested;
    p->pause_changed = false;
    p->cut_all = false;
    pthread_mutex_unlock(&p->mu);
    if (stop)
      break;
    int64_t now = cmn_mono_ms();
    if (changed)
      apply_pause(p, paused, now);
    for (; cut_all && p->conns; count(p, &p->stats.cut, 1))
      close_conn(p, &p->conns);
    /* From here on this round forwards nothing that a hold forbids. */
    pthread_mutex_lock(&p->mu);
    p->applied = requested;
    pthread_cond_broadcast(&p->applied_cv);
    pthread_mutex_unlock(&p->mu);
    size_t n = 0;
    struct pollfd *fds = build_pollset(p, now, hold, &n);
    if (!fds) {
      struct timespec ts = {0, 10 * 1000000L};
      nanosleep(&ts, NULL); /* out of memory: try again shortly */
      continue;
    }
    int rc = poll(fds, n, wait_ms(p, now));
    now = cmn_mono_ms();
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      char tmp[64];
      while (read(p->wake[0], tmp, sizeof tmp) > 0) {
      }
    }
    /* Connections first (their pollfd entries match the list order), then new ones. */
    size_t i = 1 + (size_t)p->nlisteners;
    for (conn **link = &p->conns; *link; i += 2) {
      conn *c = *link;
      bool alive = true;
      short cev = rc > 0 ? fds[i].revents : 0, uev = rc > 0 ? fds[i + 1].revents : 0;
      if ((cev || uev) && (hold || stalled(c, now)) && !c->connecting) {
        /* Polled without events: only a hang-up or an error shows; forward nothing. */
        alive = false;
        count(p, &p->stats.closed, 1);
      } else if (cev || uev) {
        alive = pump(p, c, cev, uev);
        if (!alive)
          count(p, &p->stats.closed, 1);
      }
      if (alive && !paused)
        alive = chaos(p, c, now);
      if (alive)
        link = &c->next;
      else
        close_conn(p, link);
    }
    for (int l = 0; rc > 0 && l < p->nlisteners; l++)
      if (fds[1 + l].revents & POLLIN)
        accept_all(p, p->lfd[l], paused, now);
    free(fds);
  }
  while (p->conns)
    close_conn(p, &p->conns);
  return NULL;
}

void chaos_proxy_opts_init(chaos_proxy_opts *o) {
  memset(o, 0, sizeof *o);
  o->cut_min_ms = 200;
  o->cut_max_ms = 500;
  o->stall_min_ms = 50;
  o->stall_max_ms = 300;
  o->stall_gap_min_ms = 100;
  o->stall_gap_max_ms = 600;
  o->seed = 1;
  o->listeners = 1;
}

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

chaos_proxy *chaos_proxy_start(int target_port, const chaos_proxy_opts *opts) {
  chaos_proxy *p = calloc(1, sizeof *p);
  if (!p) {
    fprintf(stderr, "chaos_proxy: out of memory\n");
    return NULL;
  }
  if (opts)
    p->o = *opts;
  else
    chaos_proxy_opts_init(&p->o);
  p->target_port = target_port;
  p->rng = p->o.seed ? p->o.seed : 1;
  p->paused = p->o.start_paused != 0;
  p->wake[0] = p->wake[1] = -1;
  pthread_mutex_init(&p->mu, NULL);
  cmn_cond_init_monotonic(&p->applied_cv);
  p->nlisteners = p->o.listeners < 1 ? 1 : p->o.listeners;
  if (p->nlisteners > MAX_LISTENERS)
    p->nlisteners = MAX_LISTENERS;
  bool listening = true;
  for (int l = 0; l < p->nlisteners; l++) {
    p->lfd[l] = listening ? listen_loopback(&p->port[l]) : -1;
    listening = listening && p->lfd[l] >= 0;
  }
  if (!listening || pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0 ||
      pthread_create(&p->thread, NULL, run, p) != 0) {
    fprintf(stderr, "chaos_proxy: cannot start: %s\n", strerror(errno));
    for (int l = 0; l < p->nlisteners; l++)
      if (p->lfd[l] >= 0)
        close(p->lfd[l]);
    if (p->wake[0] >= 0) {
      close(p->wake[0]);
      close(p->wake[1]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->applied_cv);
    free(p);
    return NULL;
  }
  return p;
}

int chaos_proxy_port(const chaos_proxy *p, int listener) {
  return listener >= 0 && listener < p->nlisteners ? p->port[listener] : -1;
}

static void wake(chaos_proxy *p) {
  char b = 1;
  /* A full pipe already holds a wake-up: the result does not matter. */
  ssize_t n = write(p->wake[1], &b, 1);
  (void)n;
}

static void set_paused(chaos_proxy *p, bool paused) {
  pthread_mutex_lock(&p->mu);
  p->pause_changed = p->pause_changed || p->paused != paused;
  p->paused = paused;
  pthread_mutex_unlock(&p->mu);
  wake(p);
}

void chaos_proxy_pause(chaos_proxy *p) {
  set_paused(p, true);
}

void chaos_proxy_resume(chaos_proxy *p) {
  set_paused(p, false);
}

/* Waits (at most 5 s) until the thread has started a round after the request that was
 * just made under p->mu (which the caller holds), so the request is in force. */
static void sync_control_locked(chaos_proxy *p) {
  uint64_t mine = ++p->requested;
  wake(p);
  struct timespec until = cmn_deadline_after_ms(5000);
  while (p->applied < mine && !p->stop)
    if (pthread_cond_timedwait(&p->applied_cv, &p->mu, &until) != 0)
      break;
}

void chaos_proxy_hold(chaos_proxy *p, int hold) {
  pthread_mutex_lock(&p->mu);
  p->hold = hold != 0;
  sync_control_locked(p);
  pthread_mutex_unlock(&p->mu);
}

void chaos_proxy_cut_all(chaos_proxy *p) {
  pthread_mutex_lock(&p->mu);
  p->cut_all = true;
  sync_control_locked(p);
  pthread_mutex_unlock(&p->mu);
}

void chaos_proxy_get_stats(chaos_proxy *p, chaos_proxy_stats *out) {
  pthread_mutex_lock(&p->mu);
  *out = p->stats;
  pthread_mutex_unlock(&p->mu);
}

void chaos_proxy_stop(chaos_proxy *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_mutex_unlock(&p->mu);
  wake(p);
  pthread_join(p->thread, NULL);
  for (int l = 0; l < p->nlisteners; l++)
    close(p->lfd[l]);
  close(p->wake[0]);
  close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->applied_cv);
  free(p);
}
