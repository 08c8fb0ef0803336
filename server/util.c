/* mim-local: logging, clocks, randomness, base64 and a hash map. */
#include "util.h"

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

static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_ms(void) {
  return clock_ms(CLOCK_MONOTONIC);
}

int64_t srv_wall_ms(void) {
  return clock_ms(CLOCK_REALTIME);
}

bool srv_random(void *buf, size_t len) {
  return RAND_bytes(buf, (int)len) == 1;
}

uint64_t srv_random_page(void) {
  uint64_t v = 0;
  while (v == 0) {
    if (!srv_random(&v, sizeof v)) {
      v = (uint64_t)srv_wall_ms() ^ ((uint64_t)clock_ms(CLOCK_MONOTONIC) << 20);
    }
    /* JavaScript SDKs hold uint64 fields in doubles: stay exact there. */
    v &= (1ULL << 53) - 1;
  }
  return v;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *srv_b64_encode(const uint8_t *data, size_t len, bool url) {
  const char *alpha = url ? b64_url : b64_std;
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (!out) {
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16;
    size_t n = len - i < 3 ? len - i : 3;
    if (n > 1) {
      v |= (uint32_t)data[i + 1] << 8;
    }
    if (n > 2) {
      v |= data[i + 2];
    }
    for (size_t k = 0; k < 4; k++) {
      if (k <= n) {
        out[o++] = alpha[(v >> (18 - 6 * k)) & 63];
      } else if (!url) {
        out[o++] = '=';
      }
    }
  }
  out[o] = '\0';
  return out;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+' || c == '-') {
    return 62;
  }
  if (c == '/' || c == '_') {
    return 63;
  }
  return -1;
}

uint8_t *srv_b64_decode(const char *text, size_t text_len, size_t *out_len) {
  while (text_len > 0 && text[text_len - 1] == '=') {
    text_len--;
  }
  if (text_len % 4 == 1) {
    return NULL;
  }
  uint8_t *out = malloc(text_len / 4 * 3 + 3);
  if (!out) {
    return NULL;
  }
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text_len; i++) {
    int v = b64_value(text[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* Length of the sequence starting with lead byte c and the allowed range of the
 * second byte (narrowed for E0, ED, F0, F4), or 0 if c cannot start one. */
static size_t utf8_seq(uint8_t c, uint8_t *lo, uint8_t *hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    *lo = c == 0xE0 ? 0xA0 : 0x80;
    *hi = c == 0xED ? 0x9F : 0xBF;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    *lo = c == 0xF0 ? 0x90 : 0x80;
    *hi = c == 0xF4 ? 0x8F : 0xBF;
    return 4;
  }
  return 0;
}

bool srv_utf8_valid(const char *str, size_t n) {
  const uint8_t *s = (const uint8_t *)str;
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    uint8_t lo, hi;
    size_t len = utf8_seq(s[i], &lo, &hi);
    if (len == 0 || i + len > n || s[i + 1] < lo || s[i + 1] > hi) {
      return false;
    }
    for (size_t k = 2; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) {
        return false;
      }
    }
    i += len;
  }
  return true;
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
