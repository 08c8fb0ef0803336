/* mim-local: small shared helpers (logging, randomness, a byte-keyed hash map). Clocks,
 * base64 and UTF-8 validation live in common/. */
#ifndef MIM_SERVER_UTIL_H
#define MIM_SERVER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } srv_log_level;

/* Sets the most verbose level that is printed (default LOG_INFO). */
void srv_log_set_level(srv_log_level level);
/* Parses "error|warn|info|debug"; returns false if unknown. */
bool srv_log_parse_level(const char *name, srv_log_level *out);
/* One line to stderr. Never pass a token or secret. */
void srv_log(srv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills buf with cryptographically random bytes; false on failure. */
bool srv_random(void *buf, size_t len);
/* A random non-zero sequence page below 2^53 (exact in a JavaScript number). */
uint64_t srv_random_page(void);

/* Hash map from byte strings to pointers. Not thread-safe; callers lock. */
typedef struct srv_hentry {
  struct srv_hentry *next;
  uint64_t hash;
  size_t klen;
  void *val;
  uint8_t key[]; /* klen bytes followed by a NUL */
} srv_hentry;

typedef struct srv_hmap {
  srv_hentry **buckets;
  size_t nbuckets;
  size_t count;
} srv_hmap;

void srv_hmap_init(srv_hmap *m);
/* Frees the entries; free_val (may be NULL) is called on each value. */
void srv_hmap_destroy(srv_hmap *m, void (*free_val)(void *));
void *srv_hmap_get(const srv_hmap *m, const void *key, size_t klen);
/* Inserts a new key (the caller checked it is absent); false on allocation failure. */
bool srv_hmap_put(srv_hmap *m, const void *key, size_t klen, void *val);
/* Removes a key and returns its value (NULL if absent). */
void *srv_hmap_remove(srv_hmap *m, const void *key, size_t klen);
/* Visits every entry; when fn returns true the entry is removed (fn owns the value). */
void srv_hmap_filter(srv_hmap *m, bool (*fn)(void *ctx, srv_hentry *e), void *ctx);

#endif
