/*
 * libmomento-im: cache lists (Momento list collections).
 *
 * A list lives under a key (the list name) in a cache. Values are bytes; duplicates are
 * allowed; order is push order. Calls are thread-safe. Sync calls block the caller up
 * to the client's default deadline and must not be made from a client callback; the
 * *_async forms return at once and run their callback once on the client's event
 * thread (never before the *_async call returned MIM_OK; never when it did not).
 *
 * Errors common to every call: MIM_ERR_INVALID_ARGUMENT (NULL, empty or blank names, a
 * cache name over 255 bytes or with bytes outside printable ASCII, a list name or key
 * over 4096 bytes, bad range; the detail names the name and quotes at most 40 bytes of
 * it; README "Names" gives the rules; nothing is sent),
 * MIM_ERR_NOT_FOUND (the cache does not exist), MIM_ERR_PERMISSION_DENIED,
 * MIM_ERR_UNAUTHENTICATED, MIM_ERR_UNAVAILABLE, MIM_ERR_DEADLINE_EXCEEDED,
 * MIM_ERR_RESOURCE_EXHAUSTED, MIM_ERR_PROTOCOL. A list that does not exist is not an
 * error: reads report found = false, length 0.
 */
#ifndef MOMENTO_LIST_H
#define MOMENTO_LIST_H

#include <momento/client.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_bytes {
  const uint8_t *data;
  size_t len;
} mim_bytes;

/* How a write treats the list's time to live and size. */
typedef struct mim_list_write_options {
  size_t struct_size;   /* sizeof(mim_list_write_options): MIM_LIST_WRITE_OPTIONS_INIT */
  uint64_t ttl_ms;      /* 0 = the client's default_ttl_ms (24 h unless set) */
  bool refresh_ttl;     /* reset the TTL of an existing list (true is the usual choice) */
  uint32_t truncate_to; /* keep at most this many values, dropping from the other end;
                           0 = no limit */
} mim_list_write_options;

/* Defaults (client TTL, no refresh, no truncation) with struct_size set. */
#define MIM_LIST_WRITE_OPTIONS_INIT                                                                \
  { .struct_size = sizeof(mim_list_write_options) }

/* Index range: start inclusive, end exclusive; negative counts from the end (-1 = last).
 * has_start/has_end false = unbounded. A NULL range pointer = the whole list. */
typedef struct mim_list_range {
  bool has_start;
  int32_t start;
  bool has_end;
  int32_t end;
} mim_list_range;

/* Values returned by fetch. Owned by the caller; free with mim_list_values_free. */
typedef struct mim_list_values {
  bool found; /* false: the list does not exist (count is 0) */
  size_t count;
  mim_bytes *values; /* count entries; each data is NUL-terminated for convenience */
} mim_list_values;

MIM_API void mim_list_values_free(mim_list_values *values);

/* Appends (back) or prepends (front) one value (len bytes; value may be NULL only when
 * len is 0: an empty value). options NULL = defaults (server TTL, refresh, no
 * truncation). new_length (may be NULL) receives the list's new length. */
MIM_API mim_status mim_list_push_back(mim_client *client, const char *cache, const char *list,
                                      const void *value, size_t len,
                                      const mim_list_write_options *options, uint32_t *new_length);
MIM_API mim_status mim_list_push_front(mim_client *client, const char *cache, const char *list,
                                       const void *value, size_t len,
                                       const mim_list_write_options *options, uint32_t *new_length);

/* Appends / prepends several values in one call (in the given order). count must be
 * > 0 (else MIM_ERR_INVALID_ARGUMENT). */
MIM_API mim_status mim_list_concat_back(mim_client *client, const char *cache, const char *list,
                                        const mim_bytes *values, size_t count,
                                        const mim_list_write_options *options,
                                        uint32_t *new_length);
MIM_API mim_status mim_list_concat_front(mim_client *client, const char *cache, const char *list,
                                         const mim_bytes *values, size_t count,
                                         const mim_list_write_options *options,
                                         uint32_t *new_length);

/* Fetches a range (NULL = whole list). *out is owned by the caller (also when the list
 * is missing: found false); NULL on failure. A range whose bounds have the same sign and
 * start > end is MIM_ERR_INVALID_ARGUMENT; other empty or out-of-bounds ranges give no
 * values. */
MIM_API mim_status mim_list_fetch(mim_client *client, const char *cache, const char *list,
                                  const mim_list_range *range, mim_list_values **out);

/* Number of values (0 and *found false when the list does not exist; length and found
 * may each be NULL). */
MIM_API mim_status mim_list_length(mim_client *client, const char *cache, const char *list,
                                   uint32_t *length, bool *found);

/* Keeps only the range, dropping the rest. ttl as for writes (options may be NULL;
 * truncate_to is not used). A missing list is not an error: new_length 0. */
MIM_API mim_status mim_list_retain(mim_client *client, const char *cache, const char *list,
                                   const mim_list_range *range,
                                   const mim_list_write_options *options, uint32_t *new_length);

/* Removes every value equal to value. A missing list is not an error: new_length 0. */
MIM_API mim_status mim_list_remove_value(mim_client *client, const char *cache, const char *list,
                                         const void *value, size_t len, uint32_t *new_length);

/* Erases `count` values at each range's begin index; ranges NULL and n 0 = erase all.
 * ranges NULL with n > 0, or ranges given with n 0, is MIM_ERR_INVALID_ARGUMENT (so an
 * empty array never erases everything by accident). */
typedef struct mim_list_erase_range {
  uint32_t begin;
  uint32_t count;
} mim_list_erase_range;
MIM_API mim_status mim_list_erase(mim_client *client, const char *cache, const char *list,
                                  const mim_list_erase_range *ranges, size_t n,
                                  uint32_t *new_length);

/* Removes and returns the first / last value. *value is malloc'd (NUL-terminated,
 * caller frees) or NULL with *found false when the list is missing or empty. value, len
 * and found may each be NULL (pop and discard). */
MIM_API mim_status mim_list_pop_front(mim_client *client, const char *cache, const char *list,
                                      uint8_t **value, size_t *len, bool *found);
MIM_API mim_status mim_list_pop_back(mim_client *client, const char *cache, const char *list,
                                     uint8_t **value, size_t *len, bool *found);

/* Deletes the item under key (a list or anything else). Deleting a missing key is OK. */
MIM_API mim_status mim_item_delete(mim_client *client, const char *cache, const char *key);

/* Remaining TTL of an item in ms; *found false when it does not exist (remaining_ms and
 * found may be NULL). */
MIM_API mim_status mim_item_ttl(mim_client *client, const char *cache, const char *key,
                                uint64_t *remaining_ms, bool *found);

/* Async forms. Callbacks run once on the client's event thread; `values` and `detail`
 * are valid only during the callback (detail "" on success; values NULL on failure, and
 * non-NULL with found false for a missing list). A write callback may be NULL (fire and
 * forget); a fetch callback may not. */
typedef void (*mim_list_write_cb)(void *user, mim_status status, const char *detail,
                                  uint32_t new_length);
typedef void (*mim_list_fetch_cb)(void *user, mim_status status, const char *detail,
                                  const mim_list_values *values);

MIM_API mim_status mim_list_push_back_async(mim_client *client, const char *cache, const char *list,
                                            const void *value, size_t len,
                                            const mim_list_write_options *options,
                                            mim_list_write_cb cb, void *user);
MIM_API mim_status mim_list_push_front_async(mim_client *client, const char *cache,
                                             const char *list, const void *value, size_t len,
                                             const mim_list_write_options *options,
                                             mim_list_write_cb cb, void *user);
MIM_API mim_status mim_list_fetch_async(mim_client *client, const char *cache, const char *list,
                                        const mim_list_range *range, mim_list_fetch_cb cb,
                                        void *user);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_LIST_H */
