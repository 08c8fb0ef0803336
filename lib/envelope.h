/* Internal: the chat message envelope, the JSON object stored in the list and published on
 * the topic:
 *   {"v":1,"id":"<32 hex>","from":"<display name>","text":"...","ts":<epoch ms>}
 * Building is strict (valid UTF-8, bounded size); parsing is tolerant: whatever is not an
 * envelope is reported as foreign with a reason, never a crash. */
#ifndef MIM_LIB_ENVELOPE_H
#define MIM_LIB_ENVELOPE_H

#include <momento/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values larger than this are foreign without being parsed, and mim_envelope_build
 * refuses to produce one. */
#define MIM_ENVELOPE_MAX_BYTES (256u * 1024u)

/* Longest id accepted from other senders (ours are 32 hex digits). Bounds the memory
 * of the de-duplication set. */
#define MIM_ENVELOPE_MAX_ID_LEN 64u

/* Length of the ids we generate, including the NUL (same as MIM_MESSAGE_ID_SIZE). */
#define MIM_ENVELOPE_ID_SIZE 33u

/* A parsed envelope; strings are malloc'd, NUL-terminated UTF-8 without embedded NULs. */
typedef struct mim_envelope {
  char *id;
  char *from;
  char *text;
  int64_t ts;
} mim_envelope;

/* Writes a fresh random id (32 lowercase hex digits + NUL). Errors: MIM_ERR_INTERNAL when
 * the random generator fails. */
mim_status mim_envelope_new_id(char id[MIM_ENVELOPE_ID_SIZE]);

/* Serializes an envelope (compact JSON) into a malloc'd NUL-terminated string *out of
 * *out_len bytes. Errors: MIM_ERR_INVALID_ARGUMENT (NULL, invalid UTF-8, id empty or too
 * long, result larger than MIM_ENVELOPE_MAX_BYTES), MIM_ERR_NO_MEMORY. */
mim_status mim_envelope_build(const char *id, const char *from, const char *text, int64_t ts,
                              char **out, size_t *out_len);

/* Parses bytes. true: *env is filled (free with mim_envelope_clear). false: the value is
 * foreign, *env is zeroed and *reason (may be NULL) names why (static string). */
bool mim_envelope_parse(const uint8_t *data, size_t len, mim_envelope *env, const char **reason);

/* The two halves of mim_envelope_parse, exposed for the fuzz harness that checks they
 * agree. _canonical reads only the exact form mim_envelope_build writes (no jansson; false
 * with *env zeroed for anything else); _json reads any JSON with jansson. */
bool mim_envelope_parse_canonical(const uint8_t *data, size_t len, mim_envelope *env);
bool mim_envelope_parse_json(const uint8_t *data, size_t len, mim_envelope *env,
                             const char **reason);

/* Frees the strings of *env and zeroes it. NULL is ignored. */
void mim_envelope_clear(mim_envelope *env);

/* True when data[0..len) is valid UTF-8 (no overlongs, surrogates or values past
 * U+10FFFF) and contains no NUL byte, i.e. usable as a C string of text. */
bool mim_utf8_text_valid(const uint8_t *data, size_t len);

/* A set of message ids with a bounded size: when full, adding evicts the oldest id
 * (first in, first out). Used to de-duplicate deliveries. Not thread-safe. */
typedef struct mim_idset_node mim_idset_node;
typedef struct mim_idset {
  mim_idset_node **buckets;
  size_t nbuckets; /* power of two; grows with count (load factor <= 1) */
  mim_idset_node *oldest, *newest;
  size_t count;
  size_t capacity;
} mim_idset;

/* Initializes an empty set holding at most capacity (> 0) ids. MIM_ERR_NO_MEMORY. */
mim_status mim_idset_init(mim_idset *set, size_t capacity);
/* Raises the capacity (never lowers it); memory grows only as ids are added. */
void mim_idset_reserve(mim_idset *set, size_t capacity);
bool mim_idset_contains(const mim_idset *set, const char *id);
/* Adds id (no-op when present), evicting the oldest id when full. added (may be NULL)
 * tells whether id was new, so a caller needs one lookup, not two. MIM_ERR_NO_MEMORY. */
mim_status mim_idset_add(mim_idset *set, const char *id, bool *added);
void mim_idset_free(mim_idset *set);

#endif
