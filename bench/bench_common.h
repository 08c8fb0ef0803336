/* Shared helpers of the bench programs: monotonic clock, sample sets with percentiles,
 * resident set size, and the JSON line every program prints on stdout.
 * Header-only (static inline) so each bench program is a single translation unit. */
#ifndef MIM_BENCH_COMMON_H
#define MIM_BENCH_COMMON_H

#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static inline int64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A fixed-capacity set of samples in nanoseconds. */
typedef struct bench_samples {
  int64_t *v;
  size_t n, cap;
} bench_samples;

static inline void bench_samples_init(bench_samples *s, size_t cap) {
  s->v = calloc(cap ? cap : 1, sizeof(*s->v));
  s->n = 0;
  s->cap = cap;
  if (!s->v) {
    fprintf(stderr, "bench: out of memory\n");
    exit(2);
  }
}

static inline void bench_samples_add(bench_samples *s, int64_t ns) {
  if (s->n < s->cap)
    s->v[s->n++] = ns;
}

static inline int bench_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile (p in 0..100) of the sorted samples, in microseconds. */
static inline double bench_pct_us(const bench_samples *s, double p) {
  if (s->n == 0)
    return -1;
  size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
  if (rank < 1)
    rank = 1;
  if (rank > s->n)
    rank = s->n;
  return (double)s->v[rank - 1] / 1000.0;
}

/* Sorts s and prints `"name":{"n":..,"p50":..,...}` (microseconds). */
static inline void bench_json_stats(FILE *f, const char *name, bench_samples *s) {
  qsort(s->v, s->n, sizeof(*s->v), bench_cmp_i64);
  fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f}", name, s->n,
          bench_pct_us(s, 50), bench_pct_us(s, 90), bench_pct_us(s, 99), bench_pct_us(s, 100));
}

/* Writes the sorted samples (microseconds, one per line) for the CDF plot. */
static inline void bench_write_samples(const char *path, bench_samples *s) {
  if (!path || !*path)
    return;
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return;
  }
  qsort(s->v, s->n, sizeof(*s->v), bench_cmp_i64);
  for (size_t i = 0; i < s->n; i++)
    fprintf(f, "%.1f\n", (double)s->v[i] / 1000.0);
  fclose(f);
}

/* VmRSS of a process in bytes (pid 0 = this process), or -1. */
static inline long bench_rss_bytes(pid_t pid) {
  char path[64], line[256];
  if (pid > 0)
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  else
    snprintf(path, sizeof(path), "/proc/self/status");
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kb = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

/* CPU time (user + system, every thread) this process has used, in ns. */
static inline int64_t bench_cpu_self_ns(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
         ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* CPU time (utime + stime, every thread) of another process from /proc/PID/stat, in ns;
 * -1 when it cannot be read. Clock-tick granular (10 ms): measure over long loops. */
static inline int64_t bench_cpu_proc_ns(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = pid > 0 ? fopen(path, "r") : NULL;
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Fields after the command name (which may hold spaces), from field 3 on. */
  const char *p = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  return (int64_t)((ut + st) * (1000000000ULL / (unsigned long long)(hz > 0 ? hz : 100)));
}

/* A 100-byte (by default) printable payload. */
static inline void bench_payload(char *buf, size_t len) {
  for (size_t i = 0; i < len; i++)
    buf[i] = (char)('a' + i % 26);
  buf[len] = '\0';
}

/* Command-line integer option "--name N" with a default. */
static inline long bench_arg(int argc, char **argv, const char *name, long dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return strtol(argv[i + 1], NULL, 10);
  return dflt;
}

static inline const char *bench_arg_str(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return argv[i + 1];
  return dflt;
}

/* One counter + timestamp shared between a callback and the main thread. */
typedef struct counter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long n;
  int64_t last_ns;
  long inflight; /* async publishes not yet completed */
  long failed;
} counter;

static inline void counter_init(counter *c) {
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->mu, NULL);
  cmn_cond_init_monotonic(&c->cv);
}

static inline void counter_bump(counter *c) {
  int64_t t = bench_now_ns();
  pthread_mutex_lock(&c->mu);
  c->n++;
  c->last_ns = t;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

/* Waits until c->n >= want (or the deadline); returns c->n. */
static inline long counter_wait(counter *c, long want, int ms) {
  struct timespec dl = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&c->mu);
  while (c->n < want)
    if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
      break;
  long n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* ---- fan-out: one coordinator process, P subscriber processes ----
 * The coordinator starts P copies of its own program (the same argv plus
 * "--fanout-sub K"), each holding K subscriptions; stdin of a child is a pipe from the
 * coordinator (EOF = quit), stdout a pipe to it. A child prints "ready" once its K
 * subscriptions are live, then one line "SEQ ARRIVAL_NS" per message as soon as all K of
 * its subscriptions have it (ARRIVAL_NS = the last of the K arrivals, CLOCK_MONOTONIC,
 * which is system-wide on Linux). The payload carries "SEQ SEND_NS" padded to the payload
 * size; the coordinator takes max over children minus its send time. */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define FANOUT_MAX_PROCS 16
#define FANOUT_MAX_SEQ 100000

/* Writes "SEQ SEND_NS " padded with '.' to len bytes (+ NUL) into buf. */
static inline void fanout_payload(char *buf, size_t len, long seq, int64_t send_ns) {
  int n = snprintf(buf, len + 1, "%ld %lld ", seq, (long long)send_ns);
  for (size_t i = n > 0 ? (size_t)n : 0; i < len; i++)
    buf[i] = '.';
  buf[len] = '\0';
}

/* Subscriber side: counts arrivals per sequence number over this process's K
 * subscriptions (callbacks may run on several threads). */
typedef struct fanout_sub {
  pthread_mutex_t mu;
  long k;
  int *count;
  int64_t *last;
} fanout_sub;

static inline void fanout_sub_init(fanout_sub *s, long k) {
  pthread_mutex_init(&s->mu, NULL);
  s->k = k;
  s->count = calloc(FANOUT_MAX_SEQ, sizeof(*s->count));
  s->last = calloc(FANOUT_MAX_SEQ, sizeof(*s->last));
  if (!s->count || !s->last) {
    fprintf(stderr, "bench: out of memory\n");
    exit(2);
  }
}

static inline void fanout_sub_free(fanout_sub *s) {
  free(s->count);
  free(s->last);
  pthread_mutex_destroy(&s->mu);
}

static inline void fanout_write_line(const char *line) {
  size_t len = strlen(line), off = 0;
  while (off < len) {
    ssize_t w = write(1, line + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    off += (size_t)w;
  }
}

/* One arrival of a fan-out payload (data need not be NUL-terminated). */
static inline void fanout_sub_arrived(fanout_sub *s, const void *data, size_t len) {
  int64_t t = bench_now_ns();
  char head[32];
  size_t n = len < sizeof(head) - 1 ? len : sizeof(head) - 1;
  memcpy(head, data, n);
  head[n] = '\0';
  long seq = strtol(head, NULL, 10);
  if (seq < 0 || seq >= FANOUT_MAX_SEQ)
    return;
  pthread_mutex_lock(&s->mu);
  if (t > s->last[seq])
    s->last[seq] = t;
  if (++s->count[seq] == s->k) {
    char line[64];
    snprintf(line, sizeof(line), "%ld %lld\n", seq, (long long)s->last[seq]);
    fanout_write_line(line);
  }
  pthread_mutex_unlock(&s->mu);
}

/* Child: after subscribing, say so and wait until the coordinator closes stdin. */
static inline void fanout_sub_serve(void) {
  fanout_write_line("ready\n");
  char buf[64];
  while (read(0, buf, sizeof(buf)) > 0) {
  }
}

/* Coordinator side. */
typedef struct fanout_proc {
  pid_t pid;
  int in_fd, out_fd; /* our ends: write to the child's stdin, read its stdout */
  char buf[4096];
  size_t used;
  long k;
} fanout_proc;

typedef struct fanout_run {
  fanout_proc p[FANOUT_MAX_PROCS];
  int nprocs;
} fanout_run;

/* Starts nprocs children of /proc/self/exe with argv + "--fanout-sub K"; subs are spread
 * as evenly as possible. Returns 0, or -1 (children already started are stopped). */
static inline void fanout_stop(fanout_run *r);
static inline int fanout_start(fanout_run *r, int argc, char **argv, long subs, int nprocs) {
  memset(r, 0, sizeof(*r));
  if (nprocs > subs)
    nprocs = (int)subs;
  if (nprocs > FANOUT_MAX_PROCS)
    nprocs = FANOUT_MAX_PROCS;
  char **args = calloc((size_t)argc + 3, sizeof(*args));
  char kbuf[32];
  for (int i = 0; i < argc; i++)
    args[i] = argv[i];
  args[argc] = "--fanout-sub";
  args[argc + 1] = kbuf;
  for (int i = 0; i < nprocs; i++) {
    fanout_proc *p = &r->p[i];
    p->k = subs / nprocs + (i < subs % nprocs);
    snprintf(kbuf, sizeof(kbuf), "%ld", p->k);
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      perror("pipe");
      free(args);
      fanout_stop(r);
      return -1;
    }
    for (int j = 0; j < 2; j++) { /* only the dup2'ed copies reach the child */
      fcntl(to_child[j], F_SETFD, FD_CLOEXEC);
      fcntl(from_child[j], F_SETFD, FD_CLOEXEC);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    int rc = posix_spawn(&p->pid, "/proc/self/exe", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    p->in_fd = to_child[1];
    p->out_fd = from_child[0];
    r->nprocs = i + 1;
    if (rc != 0) {
      fprintf(stderr, "bench: posix_spawn: %s\n", strerror(rc));
      p->pid = 0;
      free(args);
      fanout_stop(r);
      return -1;
    }
  }
  free(args);
  return 0;
}

/* Reads available lines of child i; calls fn(user, i, line) for each. 0, or -1 on EOF. */
static inline int fanout_read(fanout_proc *p, int i, void (*fn)(void *, int, const char *),
                              void *user) {
  ssize_t n = read(p->out_fd, p->buf + p->used, sizeof(p->buf) - 1 - p->used);
  if (n <= 0)
    return n < 0 && errno == EINTR ? 0 : -1;
  p->used += (size_t)n;
  p->buf[p->used] = '\0';
  char *start = p->buf, *nl;
  while ((nl = strchr(start, '\n'))) {
    *nl = '\0';
    fn(user, i, start);
    start = nl + 1;
  }
  p->used = (size_t)(p->buf + p->used - start);
  memmove(p->buf, start, p->used);
  return 0;
}

/* Polls every child until done(user) or the deadline; returns 1 when done. */
static inline int fanout_poll(fanout_run *r, void (*fn)(void *, int, const char *),
                              int (*done)(void *), void *user, int64_t deadline_ns) {
  struct pollfd pf[FANOUT_MAX_PROCS];
  while (!done(user)) {
    int64_t left = deadline_ns - bench_now_ns();
    if (left <= 0)
      return 0;
    for (int i = 0; i < r->nprocs; i++)
      pf[i] = (struct pollfd){.fd = r->p[i].out_fd, .events = POLLIN};
    int n = poll(pf, (nfds_t)r->nprocs, (int)(left / 1000000 + 1));
    if (n < 0 && errno != EINTR)
      return 0;
    for (int i = 0; i < r->nprocs && n > 0; i++)
      if (pf[i].revents && fanout_read(&r->p[i], i, fn, user) != 0) {
        fprintf(stderr, "bench: fan-out subscriber %d ended\n", i);
        return 0;
      }
  }
  return 1;
}

typedef struct fanout_ready_state {
  int ready, want;
} fanout_ready_state;

static inline void fanout_on_ready(void *user, int i, const char *line) {
  (void)i;
  if (strcmp(line, "ready") == 0)
    ((fanout_ready_state *)user)->ready++;
}

static inline int fanout_all_ready(void *user) {
  fanout_ready_state *s = user;
  return s->ready >= s->want;
}

/* Waits until every child said "ready". 0 or -1. */
static inline int fanout_wait_ready(fanout_run *r, int ms) {
  fanout_ready_state st = {0, r->nprocs};
  return fanout_poll(r, fanout_on_ready, fanout_all_ready, &st,
                     bench_now_ns() + (int64_t)ms * 1000000)
             ? 0
             : -1;
}

/* Closes the children's stdin (they quit) and reaps them; kills one that hangs. */
static inline void fanout_stop(fanout_run *r) {
  for (int i = 0; i < r->nprocs; i++) {
    if (r->p[i].in_fd > 0)
      close(r->p[i].in_fd);
    r->p[i].in_fd = -1;
  }
  for (int i = 0; i < r->nprocs; i++) {
    fanout_proc *p = &r->p[i];
    if (p->pid > 0) {
      int status, waited = 0;
      while (waitpid(p->pid, &status, WNOHANG) == 0 && waited < 5000) {
        usleep(10000); /* polling a child's exit with a 5 s cap */
        waited += 10;
      }
      if (waited >= 5000) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
      }
    }
    if (p->out_fd > 0)
      close(p->out_fd);
    p->out_fd = -1;
    p->pid = 0;
  }
}

/* One timed message: every child reports the seq, or the deadline passes. */
typedef struct fanout_msg_state {
  long seq;
  int reported, want;
  int64_t last;
} fanout_msg_state;

static inline void fanout_on_line(void *user, int i, const char *line) {
  (void)i;
  fanout_msg_state *m = user;
  char *end = NULL;
  long seq = strtol(line, &end, 10);
  if (end == line || seq != m->seq)
    return; /* a late report of an earlier (timed-out) message */
  int64_t t = strtoll(end, NULL, 10);
  m->reported++;
  if (t > m->last)
    m->last = t;
}

static inline int fanout_msg_done(void *user) {
  fanout_msg_state *m = user;
  return m->reported >= m->want;
}

/* Sends warmup + messages messages one at a time through publish(user, seq, payload)
 * (payload of payload_len bytes) and adds last-arrival minus send time of each complete
 * timed message to out. Returns how many timed messages were incomplete. */
static inline long fanout_measure(fanout_run *r, long warmup, long messages, size_t payload_len,
                                  int timeout_ms, int (*publish)(void *, long, const char *),
                                  void *user, bench_samples *out) {
  char *payload = malloc(payload_len + 1);
  long incomplete = 0;
  for (long seq = 0; seq < warmup + messages && seq < FANOUT_MAX_SEQ; seq++) {
    fanout_msg_state m = {seq, 0, r->nprocs, 0};
    int64_t t0 = bench_now_ns();
    fanout_payload(payload, payload_len, seq, t0);
    if (publish(user, seq, payload) != 0) {
      incomplete += seq >= warmup;
      continue;
    }
    int ok =
        fanout_poll(r, fanout_on_line, fanout_msg_done, &m, t0 + (int64_t)timeout_ms * 1000000);
    if (seq < warmup)
      continue;
    if (ok)
      bench_samples_add(out, m.last - t0);
    else
      incomplete++;
  }
  free(payload);
  return incomplete;
}

/* Coordinator of one fan-out figure: --subs N subscribers over --procs P processes,
 * --fanout-warmup W + --messages M messages, --fanout-timeout-ms per message. */
static inline int fanout_main(int argc, char **argv, const char *system,
                              int (*publish)(void *, long, const char *), void *user,
                              size_t payload_len);
/* Prints the fan-out JSON line of one system and subscriber count. */
static inline void fanout_json(const char *system, long subs, int procs, long messages,
                               long incomplete, double setup_ms, bench_samples *s) {
  printf("{\"system\":\"%s\",\"kind\":\"fanout\",\"subs\":%ld,\"procs\":%d,\"messages\":%ld,"
         "\"incomplete\":%ld,\"setup_ms\":%.0f,",
         system, subs, procs, messages, incomplete, setup_ms);
  bench_json_stats(stdout, "latency", s);
  printf("}\n");
  fflush(stdout);
}

static inline int fanout_main(int argc, char **argv, const char *system,
                              int (*publish)(void *, long, const char *), void *user,
                              size_t payload_len) {
  long subs = bench_arg(argc, argv, "--subs", 100);
  int procs = (int)bench_arg(argc, argv, "--procs", 4);
  long messages = bench_arg(argc, argv, "--messages", 100);
  long warmup = bench_arg(argc, argv, "--fanout-warmup", 10);
  int timeout_ms = (int)bench_arg(argc, argv, "--fanout-timeout-ms", 2000);
  fanout_run r;
  int64_t t0 = bench_now_ns();
  if (fanout_start(&r, argc, argv, subs, procs) != 0)
    return 1;
  if (fanout_wait_ready(&r, 120000) != 0) {
    fprintf(stderr, "bench: %s fan-out to %ld: subscribers not ready\n", system, subs);
    fanout_stop(&r);
    return 1;
  }
  double setup_ms = (double)(bench_now_ns() - t0) / 1e6;
  bench_samples s;
  bench_samples_init(&s, (size_t)messages);
  long incomplete =
      fanout_measure(&r, warmup, messages, payload_len, timeout_ms, publish, user, &s);
  fanout_stop(&r);
  fanout_json(system, subs, r.nprocs, messages, incomplete, setup_ms, &s);
  free(s.v);
  return 0;
}

#endif
