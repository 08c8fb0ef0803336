/* Shared helpers of the bench programs: monotonic clock, sample sets with percentiles,
 * resident set size, and the JSON line every program prints on stdout.
 * Header-only (static inline) so each bench program is a single translation unit. */
#ifndef MIM_BENCH_COMMON_H
#define MIM_BENCH_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

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
  pthread_cond_init(&c->cv, NULL);
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
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += ms / 1000;
  dl.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&c->mu);
  while (c->n < want)
    if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
      break;
  long n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

#endif
