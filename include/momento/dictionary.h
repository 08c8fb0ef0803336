/*
 * libmomento-im: cache dictionaries (Momento dictionary collections).
 *
 * A dictionary lives under a key (the dictionary name) in a cache and maps fields to
 * values, both bytes. The whole dictionary has one time to live. Calls are thread-safe
 * and block the caller up to the client's default deadline; they must not be made from
 * a client callback (MIM_ERR_FAILED_PRECONDITION: waiting there would deadlock).
 *
 * Errors common to every call: MIM_ERR_INVALID_ARGUMENT (NULL, empty or blank names, a
 * cache name over 255 bytes or with bytes outside printable ASCII, a dictionary name
 * over 4096 bytes; the detail names the name and quotes at most 40 bytes of it; README
 * "Names" gives the rules; nothing is sent), MIM_ERR_NOT_FOUND (the cache does not
 * exist), MIM_ERR_FAILED_PRECONDITION (the key holds a list or another type: Momento
 * refuses a dictionary call on it), MIM_ERR_PERMISSION_DENIED, MIM_ERR_UNAUTHENTICATED,
 * MIM_ERR_UNAVAILABLE, MIM_ERR_DEADLINE_EXCEEDED, MIM_ERR_RESOURCE_EXHAUSTED (a field or
 * value over the element size limit, a dictionary over the item size limit, a rate
 * limit), MIM_ERR_PROTOCOL. A dictionary that does not exist is not an error: reads
 * report found = false.
 */
#ifndef MOMENTO_DICTIONARY_H
#define MOMENTO_DICTIONARY_H

#include <momento/list.h> /* mim_bytes */

#ifdef __cplusplus
extern "C" {
#endif

/* How a write treats the dictionary's time to live. */
typedef struct mim_dictionary_write_options {
  size_t struct_size; /* sizeof(mim_dictionary_write_options): MIM_DICTIONARY_WRITE_OPTIONS_INIT */
  uint64_t ttl_ms;    /* 0 = the client's default_ttl_ms (24 h unless set) */
  bool refresh_ttl;   /* reset the TTL of an existing dictionary (true is the usual choice) */
} mim_dictionary_write_options;

/* Defaults (client TTL, no refresh) with struct_size set. */
#define MIM_DICTIONARY_WRITE_OPTIONS_INIT                                                          \
  { .struct_size = sizeof(mim_dictionary_write_options) }

/* One field and its value. */
typedef struct mim_dictionary_entry {
  mim_bytes field; /* data is NUL-terminated for convenience */
  mim_bytes value; /* likewise */
} mim_dictionary_entry;

/* Every field of a dictionary, in no particular order. Owned by the caller; free with
 * mim_dictionary_entries_free. */
typedef struct mim_dictionary_entries {
  bool found; /* false: the dictionary does not exist (count is 0) */
  size_t count;
  mim_dictionary_entry *entries; /* count entries */
} mim_dictionary_entries;

/* Frees what mim_dictionary_fetch returned; NULL is a no-op. */
MIM_API void mim_dictionary_entries_free(mim_dictionary_entries *entries);

/* Sets one field (field_len bytes) to value (value_len bytes), creating the dictionary
 * when it does not exist. field and value may be NULL only when their length is 0.
 * options NULL = defaults with refresh (the client's TTL, refreshed). One DictionarySet
 * call; errors as above, and MIM_ERR_INVALID_ARGUMENT for a bad options struct_size. */
MIM_API mim_status mim_dictionary_set_field(mim_client *client, const char *cache,
                                            const char *dictionary, const void *field,
                                            size_t field_len, const void *value, size_t value_len,
                                            const mim_dictionary_write_options *options);

/* Reads one field. On MIM_OK *found says whether the dictionary has it (false too when
 * the dictionary does not exist); *value is then a malloc'd copy (NUL-terminated, the
 * caller frees it) and *len its length, or NULL and 0. value, len and found may each be
 * NULL. One DictionaryGet call. On failure *value is NULL and *found false. */
MIM_API mim_status mim_dictionary_get_field(mim_client *client, const char *cache,
                                            const char *dictionary, const void *field,
                                            size_t field_len, uint8_t **value, size_t *len,
                                            bool *found);

/* Reads every field. *out is owned by the caller (also when the dictionary is missing:
 * found false); NULL on failure. One DictionaryFetch call. */
MIM_API mim_status mim_dictionary_fetch(mim_client *client, const char *cache,
                                        const char *dictionary, mim_dictionary_entries **out);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_DICTIONARY_H */
