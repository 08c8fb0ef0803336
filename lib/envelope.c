/* The chat message envelope: building with jansson and tolerant parsing. */
#include "envelope.h"

#include "error.h"
#include "utf8.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

/* The limit as a size_t, for comparing with lengths (the header's %u-friendly
 * unsigned int expression stays for messages). */
#define MAX_BYTES ((size_t)MIM_ENVELOPE_MAX_BYTES)

mim_status mim_envelope_new_id(char id[MIM_ENVELOPE_ID_SIZE]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char bytes[(MIM_ENVELOPE_ID_SIZE - 1) / 2];
  if (RAND_bytes(bytes, (int)sizeof bytes) != 1)
    return mim_fail(MIM_ERR_INTERNAL, "random generator failed");
  for (size_t i = 0; i < sizeof bytes; i++) {
    id[2 * i] = hex[bytes[i] >> 4];
    id[2 * i + 1] = hex[bytes[i] & 15];
  }
  id[MIM_ENVELOPE_ID_SIZE - 1] = '\0';
  return MIM_OK;
}

mim_status mim_envelope_build(const char *id, const char *from, const char *text, int64_t ts,
                              char **out, size_t *out_len) {
  if (!id || !from || !text || !out || !out_len)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: NULL argument");
  size_t id_len = strlen(id);
  if (id_len == 0 || id_len > MIM_ENVELOPE_MAX_ID_LEN)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: id must be 1..%u bytes",
                    MIM_ENVELOPE_MAX_ID_LEN);
  /* Cheap early bound so a huge text is not copied into a JSON tree first. */
  if (strlen(text) > MAX_BYTES || strlen(from) > MAX_BYTES)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: message larger than %u bytes",
                    MIM_ENVELOPE_MAX_BYTES);
  /* json_string() validates UTF-8 and returns NULL on invalid input; "s" in json_pack
   * does the same and makes json_pack fail. */
  json_error_t err;
  json_t *obj = json_pack_ex(&err, 0, "{s:i,s:s,s:s,s:s,s:I}", "v", 1, "id", id, "from", from,
                             "text", text, "ts", (json_int_t)ts);
  if (!obj)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: %s", err.text);
  char *json = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (!json)
    return mim_fail(MIM_ERR_NO_MEMORY, "envelope: out of memory");
  size_t len = strlen(json);
  if (len > MAX_BYTES) {
    free(json);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: message larger than %u bytes",
                    MIM_ENVELOPE_MAX_BYTES);
  }
  *out = json;
  *out_len = len;
  return MIM_OK;
}

/* The string member `key` of obj, or NULL when absent or not a string. */
static const char *string_member(json_t *obj, const char *key, size_t *len) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_string(v))
    return NULL;
  *len = json_string_length(v);
  return json_string_value(v);
}

/* Checks the members of a parsed object; NULL when it is an envelope, else the reason. */
static const char *check_object(json_t *root, const char **id, const char **from, const char **text,
                                int64_t *ts) {
  if (!json_is_object(root))
    return "not a JSON object";
  json_t *v = json_object_get(root, "v");
  if (v && (!json_is_integer(v) || json_integer_value(v) < 1))
    return "\"v\" is not a positive integer";
  size_t id_len = 0, from_len = 0, text_len = 0;
  *id = string_member(root, "id", &id_len);
  *from = string_member(root, "from", &from_len);
  *text = string_member(root, "text", &text_len);
  if (!*id || !*from || !*text)
    return "missing or non-string id/from/text";
  if (id_len == 0 || id_len > MIM_ENVELOPE_MAX_ID_LEN)
    return "id empty or too long";
  json_t *t = json_object_get(root, "ts");
  if (!json_is_integer(t))
    return "missing or non-integer ts";
  *ts = (int64_t)json_integer_value(t);
  return NULL;
}

/*
 * Parsing an envelope with jansson costs 3.4-6 us, about 85 % of the 100 deliveries of
 * a join (perf, see bench/analysis.md). Envelopes written by mim_envelope_build have one
 * fixed form: {"v":1,"id":"..","from":"..","text":"..","ts":N}, compact, in that order.
 * mim_envelope_parse_canonical reads exactly that form, with strings free of escapes and control
 * characters and valid UTF-8 (mim_utf8_text_valid: the same rules as jansson), which
 * then means what jansson would make of it (fuzz/fuzz_envelope.c checks that the two
 * agree). Anything else (escapes, other order or spacing, more members, a huge ts)
 * returns false and is read by jansson.
 */
typedef struct span {
  const char *p;
  size_t n;
} span;

/* Consumes the literal lit at *at. */
static bool eat(const char **at, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *at) < n || memcmp(*at, lit, n) != 0)
    return false;
  *at += n;
  return true;
}

/* A string body up to the closing quote (consumed): no escapes, no control bytes. */
static bool plain_string(const char **at, const char *end, span *out) {
  const char *p = *at;
  while (p < end && *p != '"') {
    unsigned char ch = (unsigned char)*p;
    if (ch == '\\' || ch < 0x20)
      return false;
    p++;
  }
  if (p == end || !mim_utf8_text_valid((const uint8_t *)*at, (size_t)(p - *at)))
    return false;
  *out = (span){*at, (size_t)(p - *at)};
  *at = p + 1;
  return true;
}

/* A JSON integer of at most 18 digits (no overflow possible), then the closing brace. */
static bool plain_ts(const char *p, const char *end, int64_t *ts) {
  bool neg = p < end && *p == '-';
  if (neg)
    p++;
  size_t digits = 0;
  int64_t v = 0;
  for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
    if (digits == 18)
      return false; /* longer: jansson decides (it may not fit in 64 bits) */
    v = v * 10 + (*p - '0');
  }
  if (digits == 0 || (digits > 1 && p[-(ptrdiff_t)digits] == '0'))
    return false;
  if (p + 1 != end || *p != '}')
    return false;
  *ts = neg ? -v : v;
  return true;
}

static char *span_dup(span s) {
  char *c = malloc(s.n + 1);
  if (c) {
    memcpy(c, s.p, s.n);
    c[s.n] = '\0';
  }
  return c;
}

/* true with *env filled when data is an envelope in the canonical form (see above). */
bool mim_envelope_parse_canonical(const uint8_t *data, size_t len, mim_envelope *env) {
  memset(env, 0, sizeof *env);
  if (!data || len == 0 || len > (size_t)MIM_ENVELOPE_MAX_BYTES)
    return false;
  const char *at = (const char *)data, *end = at + len;
  span id, from, text;
  int64_t ts;
  if (!eat(&at, end, "{\"v\":1,\"id\":\"") || !plain_string(&at, end, &id) ||
      !eat(&at, end, ",\"from\":\"") || !plain_string(&at, end, &from) ||
      !eat(&at, end, ",\"text\":\"") || !plain_string(&at, end, &text) ||
      !eat(&at, end, ",\"ts\":") || !plain_ts(at, end, &ts))
    return false;
  if (id.n == 0 || id.n > MIM_ENVELOPE_MAX_ID_LEN)
    return false; /* not an envelope: jansson's path gives the reason */
  env->id = span_dup(id);
  env->from = span_dup(from);
  env->text = span_dup(text);
  env->ts = ts;
  if (env->id && env->from && env->text)
    return true;
  mim_envelope_clear(env); /* out of memory: jansson's path reports it */
  return false;
}

bool mim_envelope_parse_json(const uint8_t *data, size_t len, mim_envelope *env,
                             const char **reason) {
  const char *why = NULL;
  memset(env, 0, sizeof *env);
  if (!data) {
    why = "no data";
  } else if (len > MAX_BYTES) {
    why = "larger than the envelope limit";
  } else if (len == 0) {
    why = "empty value";
  }
  if (why) {
    if (reason)
      *reason = why;
    return false;
  }
  json_error_t err;
  /* jansson rejects invalid UTF-8 and (without JSON_ALLOW_NUL) strings containing NUL,
   * and bounds nesting depth, so hostile input cannot crash it. */
  json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    if (reason)
      *reason = "not valid JSON (or not valid UTF-8)";
    return false;
  }
  const char *id, *from, *text;
  int64_t ts = 0;
  why = check_object(root, &id, &from, &text, &ts);
  if (!why) {
    env->id = strdup(id);
    env->from = strdup(from);
    env->text = strdup(text);
    env->ts = ts;
    if (!env->id || !env->from || !env->text) {
      mim_envelope_clear(env);
      why = "out of memory";
    }
  }
  json_decref(root);
  if (why && reason)
    *reason = why;
  return why == NULL;
}

bool mim_envelope_parse(const uint8_t *data, size_t len, mim_envelope *env, const char **reason) {
  return mim_envelope_parse_canonical(data, len, env) ||
         mim_envelope_parse_json(data, len, env, reason);
}

void mim_envelope_clear(mim_envelope *env) {
  if (!env)
    return;
  free(env->id);
  free(env->from);
  free(env->text);
  memset(env, 0, sizeof *env);
}

/* jansson refuses NUL inside a string, so text that must survive a JSON round trip
 * (and be usable as a C string) has that one rule on top of strict UTF-8. */
bool mim_utf8_text_valid(const uint8_t *s, size_t len) {
  return (len == 0 || !memchr(s, 0, len)) && cmn_utf8_valid(s, len);
}

struct mim_idset_node {
  mim_idset_node *bucket_next;
  mim_idset_node *fifo_next; /* next newer id */
  char id[];
};

/* FNV-1a: ids are random hex in practice, so a simple hash spreads them well. */
static size_t id_hash(const char *id) {
  uint64_t h = 1469598103934665603ULL;
  for (; *id; id++)
    h = (h ^ (uint8_t)*id) * 1099511628211ULL;
  return (size_t)h;
}

/* The bucket array grows with what the set holds (load factor <= 1), not with its
 * capacity: an idle chat session keeps a capacity of thousands of ids but should not pay
 * for thousands of buckets before it has seen a message. */
#define IDSET_MIN_BUCKETS 16

static mim_status rehash(mim_idset *set, size_t nb) {
  mim_idset_node **b = calloc(nb, sizeof *b);
  if (!b)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  for (mim_idset_node *n = set->oldest; n; n = n->fifo_next) {
    size_t h = id_hash(n->id) & (nb - 1);
    n->bucket_next = b[h];
    b[h] = n;
  }
  free(set->buckets);
  set->buckets = b;
  set->nbuckets = nb;
  return MIM_OK;
}

mim_status mim_idset_init(mim_idset *set, size_t capacity) {
  memset(set, 0, sizeof *set);
  set->capacity = capacity ? capacity : 1;
  set->nbuckets = IDSET_MIN_BUCKETS;
  set->buckets = calloc(set->nbuckets, sizeof *set->buckets);
  if (!set->buckets)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  return MIM_OK;
}

void mim_idset_reserve(mim_idset *set, size_t capacity) {
  if (capacity > set->capacity)
    set->capacity = capacity;
}

bool mim_idset_contains(const mim_idset *set, const char *id) {
  size_t h = id_hash(id) & (set->nbuckets - 1);
  for (const mim_idset_node *n = set->buckets[h]; n; n = n->bucket_next)
    if (strcmp(n->id, id) == 0)
      return true;
  return false;
}

static void evict_oldest(mim_idset *set) {
  mim_idset_node *old = set->oldest;
  mim_idset_node **pp = &set->buckets[id_hash(old->id) & (set->nbuckets - 1)];
  while (*pp != old)
    pp = &(*pp)->bucket_next;
  *pp = old->bucket_next;
  set->oldest = old->fifo_next;
  if (!set->oldest)
    set->newest = NULL;
  set->count--;
  free(old);
}

mim_status mim_idset_add(mim_idset *set, const char *id, bool *added) {
  if (added)
    *added = false;
  if (mim_idset_contains(set, id))
    return MIM_OK;
  size_t len = strlen(id);
  mim_idset_node *n = malloc(sizeof *n + len + 1);
  if (!n)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  memcpy(n->id, id, len + 1);
  if (set->count >= set->capacity)
    evict_oldest(set);
  if (set->count >= set->nbuckets && rehash(set, set->nbuckets * 2) != MIM_OK) {
    free(n);
    return MIM_ERR_NO_MEMORY;
  }
  size_t h = id_hash(id) & (set->nbuckets - 1);
  n->bucket_next = set->buckets[h];
  set->buckets[h] = n;
  n->fifo_next = NULL;
  if (set->newest)
    set->newest->fifo_next = n;
  else
    set->oldest = n;
  set->newest = n;
  set->count++;
  if (added)
    *added = true;
  return MIM_OK;
}

void mim_idset_free(mim_idset *set) {
  if (!set)
    return;
  mim_idset_node *n = set->oldest;
  while (n) {
    mim_idset_node *next = n->fifo_next;
    free(n);
    n = next;
  }
  free(set->buckets);
  memset(set, 0, sizeof *set);
}
