/* mim-local: logging, randomness and a hash map. */
#include "util.h"

#include "clock.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static srv_log_level g_level = LOG_INFO;
static const char *const g_level_names[] = {"error", "warn", "info", "debug"};

void srv_log_set_level(srv_log_level level) {
  g_level = level;
}

bool srv_log_parse_level(const char *name, srv_log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, g_level_names[i]) == 0) {
      *out = (srv_log_level)i;
      return true;
    }
  }
  return false;
}

void srv_log(srv_log_level level, const char *fmt, ...) {
  if (level > g_level) {
    return;
  }
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  /* One fprintf per line so concurrent threads do not interleave within a line. */
  fprintf(stderr, "%02d:%02d:%02d.%03ld mim-local %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
          ts.tv_nsec / 1000000, g_level_names[level], line);
}

bool srv_random(void *buf, size_t len) {
  return RAND_bytes(buf, (int)len) == 1;
}

uint64_t srv_random_page(void) {
  uint64_t v = 0;
  while (v == 0) {
    if (!srv_random(&v, sizeof v)) {
      v = (uint64_t)cmn_wall_ms() ^ ((uint64_t)cmn_mono_ms() << 20);
    }
    /* JavaScript SDKs hold uint64 fields in doubles: stay exact there. */
    v &= (1ULL << 53) - 1;
  }
  return v;
}

static uint64_t hash_bytes(const void *key, size_t len) {
  /* FNV-1a: enough for a development server's table sizes. */
  const uint8_t *p = key;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < len; i++) {
    h = (h ^ p[i]) * 1099511628211ULL;
  }
  return h;
}

void srv_hmap_init(srv_hmap *m) {
  memset(m, 0, sizeof *m);
}

void srv_hmap_destroy(srv_hmap *m, void (*free_val)(void *)) {
  for (size_t b = 0; b < m->nbuckets; b++) {
    srv_hentry *e = m->buckets[b];
    while (e) {
      srv_hentry *next = e->next;
      if (free_val) {
        free_val(e->val);
      }
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  memset(m, 0, sizeof *m);
}

static srv_hentry **find_slot(const srv_hmap *m, const void *key, size_t klen, uint64_t h) {
  if (m->nbuckets == 0) {
    return NULL;
  }
  srv_hentry **slot = &m->buckets[h % m->nbuckets];
  while (*slot) {
    if ((*slot)->hash == h && (*slot)->klen == klen && memcmp((*slot)->key, key, klen) == 0) {
      return slot;
    }
    slot = &(*slot)->next;
  }
  return NULL;
}

void *srv_hmap_get(const srv_hmap *m, const void *key, size_t klen) {
  srv_hentry **slot = find_slot(m, key, klen, hash_bytes(key, klen));
  return slot ? (*slot)->val : NULL;
}

static bool grow(srv_hmap *m) {
  size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
  srv_hentry **nb = calloc(n, sizeof *nb);
  if (!nb) {
    return false;
  }
  for (size_t b = 0; b < m->nbuckets; b++) {
    srv_hentry *e = m->buckets[b];
    while (e) {
      srv_hentry *next = e->next;
      e->next = nb[e->hash % n];
      nb[e->hash % n] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = nb;
  m->nbuckets = n;
  return true;
}

bool srv_hmap_put(srv_hmap *m, const void *key, size_t klen, void *val) {
  if (m->count >= m->nbuckets && !grow(m)) {
    return false;
  }
  srv_hentry *e = malloc(sizeof *e + klen + 1);
  if (!e) {
    return false;
  }
  e->hash = hash_bytes(key, klen);
  e->klen = klen;
  e->val = val;
  if (klen) {
    memcpy(e->key, key, klen);
  }
  e->key[klen] = '\0';
  e->next = m->buckets[e->hash % m->nbuckets];
  m->buckets[e->hash % m->nbuckets] = e;
  m->count++;
  return true;
}

void *srv_hmap_remove(srv_hmap *m, const void *key, size_t klen) {
  srv_hentry **slot = find_slot(m, key, klen, hash_bytes(key, klen));
  if (!slot) {
    return NULL;
  }
  srv_hentry *e = *slot;
  void *val = e->val;
  *slot = e->next;
  free(e);
  m->count--;
  return val;
}

void srv_hmap_filter(srv_hmap *m, bool (*fn)(void *ctx, srv_hentry *e), void *ctx) {
  for (size_t b = 0; b < m->nbuckets; b++) {
    srv_hentry **slot = &m->buckets[b];
    while (*slot) {
      srv_hentry *e = *slot;
      if (fn(ctx, e)) {
        *slot = e->next;
        free(e);
        m->count--;
      } else {
        slot = &e->next;
      }
    }
  }
}
