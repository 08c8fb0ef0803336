/* Internal: the envelopes of docs/PROTOCOL.md section 3, the JSON objects stored in the
 * list and published on the topic. Version 2 (what the library writes):
 *   {"v":2,"t":"msg","id":"<32
 * hex>","from":"..","uid":"..",["pub":"..",]"ts":N,"text":".."[,"re":".."]} plus the events edit
 * (ref, text), delete (ref) and react (ref, key, on); version 1
 *   {"v":1,"id":"<32 hex>","from":"<display name>","text":"...","ts":<epoch ms>}
 * stays readable (a msg without uid). Building is strict (valid UTF-8, bounded sizes);
 * parsing is tolerant: whatever is not an envelope is reported as foreign with a reason,
 * never a crash; signals and types of later versions are told apart from foreign. */
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

/* Limits of docs/PROTOCOL.md 3.4 besides the id's. */
#define MIM_ENVELOPE_MAX_UID_LEN 128u
#define MIM_ENVELOPE_MAX_KEY_LEN 64u

/* What a value is. The stored types are those mim_envelope_parse returns true for. */
typedef enum mim_envelope_type {
  MIM_ENV_FOREIGN = 0, /* not an envelope (see the reason) */
  MIM_ENV_MSG,         /* a chat message ("t" "msg" or absent) */
  MIM_ENV_EDIT,
  MIM_ENV_DELETE,
  MIM_ENV_REACT,
  MIM_ENV_SIGNAL, /* typing or presence: ephemeral, read by the presence module */
  MIM_ENV_UNKNOWN /* a "t" of a later protocol version: ignored */
} mim_envelope_type;

/* A parsed envelope; strings are malloc'd, NUL-terminated UTF-8 without embedded NULs.
 * For building, the same struct with borrowed strings. */
typedef struct mim_envelope {
  mim_envelope_type type;
  uint32_t v; /* 1 or 2 (what "v" said; absent = 1) */
  char *id;   /* never NULL for a stored type */
  char *from; /* never NULL for a stored type */
  char *uid;  /* NULL when absent (version 1) */
  char *pub;  /* NULL when absent: only the moderator writes it */
  char *text; /* msg and edit; "" for delete and react (never NULL) */
  char *ref;  /* msg: "re" (NULL when absent); events: "ref" */
  char *key;  /* react only */
  bool on;    /* react only */
  int64_t ts;
} mim_envelope;

/* True for msg, edit, delete and react. */
bool mim_envelope_stored(mim_envelope_type type);

/* Writes a fresh random id (32 lowercase hex digits + NUL). Errors: MIM_ERR_INTERNAL when
 * the random generator fails. */
mim_status mim_envelope_new_id(char id[MIM_ENVELOPE_ID_SIZE]);

/* Serializes a version 1 msg (compact JSON; the library writes version 2 with
 * mim_envelope_build_v2: this one stays for tests of version 1 compatibility) into a malloc'd
 * NUL-terminated string *out of *out_len bytes. Errors: MIM_ERR_INVALID_ARGUMENT (NULL, invalid
 * UTF-8, id empty or too long, result larger than MIM_ENVELOPE_MAX_BYTES), MIM_ERR_NO_MEMORY. */
mim_status mim_envelope_build(const char *id, const char *from, const char *text, int64_t ts,
                              char **out, size_t *out_len);

/* Serializes e (borrowed strings; type a stored one) as version 2 in the member order of
 * docs/PROTOCOL.md 3.3 (uid and pub only when non-NULL, msg's "re" only when ref is
 * non-NULL and non-empty). Errors: MIM_ERR_INVALID_ARGUMENT (a limit of 3.4, missing
 * member, invalid UTF-8, larger than MIM_ENVELOPE_MAX_BYTES), MIM_ERR_NO_MEMORY. */
mim_status mim_envelope_build_v2(const mim_envelope *e, char **out, size_t *out_len);

/* Parses bytes. true: a stored type, *env is filled (free with mim_envelope_clear).
 * false: *env is zeroed but for env->type, which tells foreign (*reason, may be NULL,
 * names why: static string) from a signal or an unknown type (to be ignored). */
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
 * (first in, first out). Used to de-duplicate deliveries; with values (mim_idset_put), a
 * bounded map (the fold's message states, the moderator's senders). Not thread-safe. */
typedef struct mim_idset_node mim_idset_node;
typedef struct mim_idset {
  mim_idset_node **buckets;
  size_t nbuckets; /* power of two; grows with count (load factor <= 1) */
  mim_idset_node *oldest, *newest;
  size_t count;
  size_t capacity;
  void (*free_value)(void *value); /* optional: frees the values put in (on eviction too) */
} mim_idset;

/* Initializes an empty set holding at most capacity (> 0) ids. MIM_ERR_NO_MEMORY. */
mim_status mim_idset_init(mim_idset *set, size_t capacity);
/* Raises the capacity (never lowers it); memory grows only as ids are added. */
void mim_idset_reserve(mim_idset *set, size_t capacity);
bool mim_idset_contains(const mim_idset *set, const char *id);
/* Adds id (no-op when present), evicting the oldest id when full. added (may be NULL)
 * tells whether id was new, so a caller needs one lookup, not two. MIM_ERR_NO_MEMORY. */
mim_status mim_idset_add(mim_idset *set, const char *id, bool *added);
/* mim_idset_add with a value kept for id (owned by the set when free_value is set). When
 * id is present already nothing changes (*added false) and value stays the caller's. */
mim_status mim_idset_put(mim_idset *set, const char *id, void *value, bool *added);
/* The value put for id, NULL when absent (or put as NULL). */
void *mim_idset_get(const mim_idset *set, const char *id);
void mim_idset_free(mim_idset *set);

#endif
