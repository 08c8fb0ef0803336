/* mim-local: caches and their lists and dictionaries, with Momento collection TTL semantics.
 * Thread-safe: a reader-writer lock over the cache table (writers: create/delete
 * cache) and one mutex per cache over its lists. */
#ifndef MIM_SERVER_STORE_H
#define MIM_SERVER_STORE_H

#include "bytes.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;
struct persist;

typedef enum {
  ST_OK = 0,
  ST_NO_CACHE, /* the cache does not exist */
  ST_MISSING,  /* the list does not exist (or expired) */
  ST_EXISTS,   /* the cache already exists */
  ST_TOO_LONG, /* the list would exceed the length limit */
  ST_NOMEM,
  ST_IO,           /* --data-dir: the change could not be recorded; nothing was changed */
  ST_TOO_BIG,      /* --data-dir: the change exceeds the log's record limit; nothing changed */
  ST_TOO_MANY,     /* there are as many caches as allowed already */
  ST_ITEM_TOO_BIG, /* the list's total bytes would exceed the item size limit */
  ST_WRONG_TYPE,   /* the key holds a dictionary for a list operation, or the reverse */
} st_result;

/* Slice bounds: absent = open end; negative counts from the end (like Python). */
typedef struct st_range {
  bool has_start, has_end;
  int32_t start, end;
} st_range;

/* ttl_ms 0 = the server default; refresh applies to lists that already exist. */
typedef struct st_ttl {
  uint64_t ttl_ms;
  bool refresh;
} st_ttl;

typedef struct st_erase {
  uint32_t begin, count;
} st_erase;

store *store_new(uint64_t default_ttl_ms, size_t max_list_len);
void store_free(store *s);

st_result store_cache_create(store *s, const char *name);
/* The same, refused with ST_TOO_MANY when max_caches (> 0) caches exist already
 * (checked and created under one lock, so concurrent creates cannot overshoot). */
st_result store_cache_create_capped(store *s, const char *name, size_t max_caches);
st_result store_cache_delete(store *s, const char *name);
bool store_cache_exists(store *s, const char *name);
/* malloc'd array of malloc'd names, sorted; NULL with *n = 0 when empty. */
char **store_cache_names(store *s, size_t *n);
/* Removes expired lists everywhere. */
void store_sweep(store *s);

/* Refused with ST_ITEM_TOO_BIG (nothing written) when the list's total value bytes after
 * the write, truncation applied, would exceed the item size limit; *item_bytes (may be
 * NULL) gets that total whenever a limit is set. */
st_result store_list_push(store *s, const char *cache, st_bytes key, const st_bytes *vals, size_t n,
                          bool front, st_ttl ttl, uint32_t truncate, uint32_t *len,
                          size_t *item_bytes);
/* *out gets malloc'd copies (free with store_values_free). */
st_result store_list_fetch(store *s, const char *cache, st_bytes key, st_range r,
                           ProtobufCBinaryData **out, size_t *n);
void store_values_free(ProtobufCBinaryData *v, size_t n);
st_result store_list_length(store *s, const char *cache, st_bytes key, uint32_t *len);
st_result store_list_retain(store *s, const char *cache, st_bytes key, st_range r, st_ttl ttl,
                            uint32_t *len);
st_result store_list_remove_value(store *s, const char *cache, st_bytes key, st_bytes value,
                                  uint32_t *len);
/* all = true erases everything; else the given ranges of the current indices. */
st_result store_list_erase(store *s, const char *cache, st_bytes key, const st_erase *ranges,
                           size_t n, bool all, uint32_t *len);
/* *out gets the malloc'd element. */
st_result store_list_pop(store *s, const char *cache, st_bytes key, bool front,
                         ProtobufCBinaryData *out, uint32_t *len);
st_result store_item_delete(store *s, const char *cache, st_bytes key);
st_result store_item_ttl(store *s, const char *cache, st_bytes key, uint64_t *remaining_ms);

/* ---- dictionaries: field -> value, one TTL for the whole item ---- */

/* Sets n fields (a field given twice: the last wins); creates the dictionary, with
 * ttl, when missing. Refused (nothing written) with ST_TOO_LONG past max_list_len
 * fields and ST_ITEM_TOO_BIG when its total field + value bytes would exceed the item
 * size limit (*item_bytes, may be NULL, gets that total whenever a limit is set).
 * ST_WRONG_TYPE when key holds a list. With a data directory the request is recorded
 * (one dict-set record) before anything changes. */
st_result store_dict_set(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                         const st_bytes *values, size_t n, st_ttl ttl, size_t *item_bytes);
/* Looks up n fields: out[i] is a malloc'd copy of field i's value, or data NULL (len 0)
 * when the field is absent. out has n entries, owned by the caller
 * (store_values_free(out, n) frees it). ST_MISSING: no such dictionary. */
st_result store_dict_get(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                         size_t n, ProtobufCBinaryData *out);
/* Every field and value (malloc'd copies, 2 * *n entries: field, value, field, ...;
 * store_values_free(*out, 2 * *n)). */
st_result store_dict_fetch(store *s, const char *cache, st_bytes key, ProtobufCBinaryData **out,
                           size_t *n);

/* Hosted Momento's item size: a list's total value bytes (0: no limit). Replayed data
 * (store_restore_list) is not checked. */
void store_set_max_item_bytes(store *s, size_t max_item_bytes);

/* --data-dir: from now on every mutation is recorded in p (NULL: none). */
void store_set_persist(store *s, struct persist *p);
/* Writes every cache and live list into a snapshot of p (store held exclusively). */
bool store_compact(store *s, struct persist *p);
/* Replay: replace (fresh) or extend (front/back) a list, truncate it, set its wall-clock
 * expiry (ms since the epoch); an empty result removes the list. Not recorded. */
st_result store_restore_list(store *s, const char *cache, st_bytes key, const st_bytes *vals,
                             size_t n, bool front, bool fresh, uint32_t truncate,
                             int64_t expires_wall);

/* Replay of a dict-set record: sets the fields in order (fresh: on an empty item,
 * whatever the key held before), with that wall-clock expiry. Not recorded. */
st_result store_restore_dict(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                             const st_bytes *values, size_t n, bool fresh, int64_t expires_wall);

#endif
