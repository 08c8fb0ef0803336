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

bool mim_envelope_stored(mim_envelope_type type) {
  return type == MIM_ENV_MSG || type == MIM_ENV_EDIT || type == MIM_ENV_DELETE ||
         type == MIM_ENV_REACT;
}

static const char *const TYPE_NAMES[] = {[MIM_ENV_MSG] = "msg",
                                         [MIM_ENV_EDIT] = "edit",
                                         [MIM_ENV_DELETE] = "delete",
                                         [MIM_ENV_REACT] = "react"};

/* Bounds of a string member: min and max length (max 0 = no bound but the value's). */
typedef struct str_rule {
  const char *name;
  size_t min, max;
} str_rule;

static const str_rule R_ID = {"id", 1, MIM_ENVELOPE_MAX_ID_LEN};
static const str_rule R_FROM = {"from", 0, 0};
static const str_rule R_UID = {"uid", 1, MIM_ENVELOPE_MAX_UID_LEN};
static const str_rule R_PUB = {"pub", 1, 0};
static const str_rule R_TEXT = {"text", 0, 0};
static const str_rule R_RE = {"re", 1, MIM_ENVELOPE_MAX_ID_LEN};
static const str_rule R_REF = {"ref", 1, MIM_ENVELOPE_MAX_ID_LEN};
static const str_rule R_KEY = {"key", 1, MIM_ENVELOPE_MAX_KEY_LEN};

static bool str_fits(const str_rule *r, size_t n) {
  return n >= r->min && (r->max == 0 || n <= r->max);
}

/* Reads string member r->name of root into *out (borrowed; NULL when absent and not
 * required). NULL when fine, else the reason (static). */
static const char *get_str(json_t *root, const str_rule *r, bool required, const char **out) {
  json_t *v = json_object_get(root, r->name);
  *out = NULL;
  if (!v)
    return required ? "a required member is missing" : NULL;
  if (!json_is_string(v))
    return "a member is not a string";
  if (!str_fits(r, json_string_length(v)))
    return "a member is empty or too long";
  *out = json_string_value(v);
  return NULL;
}

/* The type named by "t" (absent = msg). */
static mim_envelope_type type_of(json_t *root, const char **why) {
  json_t *t = json_object_get(root, "t");
  if (!t)
    return MIM_ENV_MSG;
  if (!json_is_string(t)) {
    *why = "\"t\" is not a string";
    return MIM_ENV_FOREIGN;
  }
  const char *name = json_string_value(t);
  for (int i = MIM_ENV_MSG; i <= MIM_ENV_REACT; i++)
    if (strcmp(name, TYPE_NAMES[i]) == 0)
      return (mim_envelope_type)i;
  if (strcmp(name, "typing") == 0 || strcmp(name, "presence") == 0)
    return MIM_ENV_SIGNAL;
  return MIM_ENV_UNKNOWN;
}

/* Borrowed strings of a stored envelope, as read from the JSON tree. */
typedef struct raw_fields {
  const char *id, *from, *uid, *pub, *text, *ref, *key;
} raw_fields;

/* The members only some types have (docs/PROTOCOL.md 3.3). */
static const char *type_members(json_t *root, mim_envelope *e, raw_fields *f) {
  const char *why = NULL;
  switch (e->type) {
  case MIM_ENV_MSG:
    if (!(why = get_str(root, &R_TEXT, true, &f->text)))
      why = get_str(root, &R_RE, false, &f->ref);
    return why;
  case MIM_ENV_EDIT:
    if (!(why = get_str(root, &R_REF, true, &f->ref)))
      why = get_str(root, &R_TEXT, true, &f->text);
    return why;
  case MIM_ENV_DELETE:
    return get_str(root, &R_REF, true, &f->ref);
  default: {
    if ((why = get_str(root, &R_REF, true, &f->ref)) ||
        (why = get_str(root, &R_KEY, true, &f->key)))
      return why;
    json_t *on = json_object_get(root, "on");
    if (!json_is_boolean(on))
      return "missing or non-boolean on";
    e->on = json_is_true(on);
    return NULL;
  }
  }
}

/* Checks a parsed object. NULL when it is a stored envelope (e->type, v, ts, on set, the
 * strings in *f), else the reason; e->type then tells foreign from signal / unknown. */
static const char *check_object(json_t *root, mim_envelope *e, raw_fields *f) {
  if (!json_is_object(root))
    return "not a JSON object";
  json_t *v = json_object_get(root, "v");
  if (v && (!json_is_integer(v) || json_integer_value(v) < 1))
    return "\"v\" is not a positive integer";
  const char *why = NULL;
  e->type = type_of(root, &why);
  if (e->type == MIM_ENV_SIGNAL)
    return "a signal (not stored)";
  if (e->type == MIM_ENV_UNKNOWN)
    return "a type of a later protocol version";
  if (why)
    return why;
  json_int_t vn = v ? json_integer_value(v) : 1;
  e->v = vn > (json_int_t)UINT32_MAX ? UINT32_MAX : (uint32_t)vn;
  if ((why = get_str(root, &R_ID, true, &f->id)) ||
      (why = get_str(root, &R_FROM, true, &f->from)) ||
      (why = get_str(root, &R_UID, false, &f->uid)) ||
      (why = get_str(root, &R_PUB, false, &f->pub)))
    return why;
  json_t *t = json_object_get(root, "ts");
  if (!json_is_integer(t))
    return "missing or non-integer ts";
  e->ts = (int64_t)json_integer_value(t);
  return type_members(root, e, f);
}

static bool dup_opt(const char *s, char **out) {
  *out = s ? strdup(s) : NULL;
  return !s || *out;
}

/* Copies the borrowed strings into e; false when out of memory. */
static bool own_fields(const raw_fields *f, mim_envelope *e) {
  /* Stops at the first failure: the rest stay NULL for mim_envelope_clear. */
  return dup_opt(f->id, &e->id) && dup_opt(f->from, &e->from) && dup_opt(f->uid, &e->uid) &&
         dup_opt(f->pub, &e->pub) && dup_opt(f->text ? f->text : "", &e->text) &&
         dup_opt(f->ref, &e->ref) && dup_opt(f->key, &e->key);
}

/* Checks the strings of e against the limits of 3.4 for its type. */
static const char *check_build(const mim_envelope *e) {
  if (!mim_envelope_stored(e->type))
    return "not a stored type";
  if (!e->id || !e->from || !str_fits(&R_ID, strlen(e->id)))
    return "id must be 1..64 bytes";
  if ((e->uid && !str_fits(&R_UID, strlen(e->uid))) || (e->pub && !*e->pub))
    return "uid must be 1..128 bytes, pub non-empty";
  bool has_ref = e->ref && *e->ref;
  if ((e->type != MIM_ENV_MSG && !has_ref) || (has_ref && !str_fits(&R_REF, strlen(e->ref))))
    return "ref / re must be 1..64 bytes";
  if ((e->type == MIM_ENV_MSG || e->type == MIM_ENV_EDIT) && !e->text)
    return "text missing";
  if (e->type == MIM_ENV_REACT && (!e->key || !str_fits(&R_KEY, strlen(e->key))))
    return "key must be 1..64 bytes";
  if ((e->text && strlen(e->text) > MAX_BYTES) || strlen(e->from) > MAX_BYTES)
    return "larger than the envelope limit";
  return NULL;
}

/* Adds string member name (if s) to obj; false when s is not valid UTF-8. */
static bool put(json_t *obj, const char *name, const char *s) {
  return !s || json_object_set_new(obj, name, json_string(s)) == 0;
}

/* The members after ts, per type, in the order of docs/PROTOCOL.md 3.3. */
static bool put_type_members(json_t *o, const mim_envelope *e) {
  switch (e->type) {
  case MIM_ENV_MSG:
    return put(o, "text", e->text) && put(o, "re", e->ref && *e->ref ? e->ref : NULL);
  case MIM_ENV_EDIT:
    return put(o, "ref", e->ref) && put(o, "text", e->text);
  case MIM_ENV_DELETE:
    return put(o, "ref", e->ref);
  default:
    return put(o, "ref", e->ref) && put(o, "key", e->key) &&
           json_object_set_new(o, "on", json_boolean(e->on)) == 0;
  }
}

mim_status mim_envelope_build_v2(const mim_envelope *e, char **out, size_t *out_len) {
  if (!e || !out || !out_len)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: NULL argument");
  const char *why = check_build(e);
  if (why)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: %s", why);
  json_t *o = json_object();
  /* jansson keeps insertion order, which is the protocol's (and the fast path's). */
  bool ok = o && json_object_set_new(o, "v", json_integer(2)) == 0 &&
            put(o, "t", TYPE_NAMES[e->type]) && put(o, "id", e->id) && put(o, "from", e->from) &&
            put(o, "uid", e->uid) && put(o, "pub", e->pub) &&
            json_object_set_new(o, "ts", json_integer((json_int_t)e->ts)) == 0 &&
            put_type_members(o, e);
  char *json = ok ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!ok)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "envelope: a string is not valid UTF-8");
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

/*
 * Parsing an envelope with jansson costs 3.4-6 us, about 85 % of the 100 deliveries of
 * a join (perf, see bench/analysis.md). Messages written by the library have one fixed
 * form each: version 2 {"v":2,"t":"msg","id":"..","from":"..","uid":"..",["pub":"..",]
 * "ts":N,"text":".."[,"re":".."]} and version 1 {"v":1,"id":"..","from":"..","text":"..",
 * "ts":N}, compact, in that order. mim_envelope_parse_canonical reads exactly those
 * forms, with strings free of escapes and control characters and valid UTF-8
 * (mim_utf8_text_valid: the same rules as jansson), which then means what jansson would
 * make of it (fuzz/fuzz_envelope.c checks that the two agree). Anything else (escapes,
 * other order or spacing, more members, a huge ts, events) returns false and is read by
 * jansson.
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

/* A string body up to the closing quote (consumed): no escapes, no control bytes,
 * length within r. */
static bool plain_string(const char **at, const char *end, const str_rule *r, span *out) {
  const char *p = *at;
  while (p < end && *p != '"') {
    unsigned char ch = (unsigned char)*p;
    if (ch == '\\' || ch < 0x20)
      return false;
    p++;
  }
  size_t n = (size_t)(p - *at);
  if (p == end || !str_fits(r, n) || !mim_utf8_text_valid((const uint8_t *)*at, n))
    return false;
  *out = (span){*at, n};
  *at = p + 1;
  return true;
}

/* A JSON integer of at most 18 digits (no overflow possible). */
static bool plain_int(const char **at, const char *end, int64_t *ts) {
  const char *p = *at;
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
  *ts = neg ? -v : v;
  *at = p;
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

/* The spans of a canonical msg (p == NULL: absent). */
typedef struct msg_spans {
  span id, from, uid, pub, text, re;
} msg_spans;

static bool canonical_v1(const char *at, const char *end, msg_spans *m, int64_t *ts) {
  return eat(&at, end, "{\"v\":1,\"id\":\"") && plain_string(&at, end, &R_ID, &m->id) &&
         eat(&at, end, ",\"from\":\"") && plain_string(&at, end, &R_FROM, &m->from) &&
         eat(&at, end, ",\"text\":\"") && plain_string(&at, end, &R_TEXT, &m->text) &&
         eat(&at, end, ",\"ts\":") && plain_int(&at, end, ts) && eat(&at, end, "}") && at == end;
}

static bool canonical_v2(const char *at, const char *end, msg_spans *m, int64_t *ts) {
  if (!eat(&at, end, "{\"v\":2,\"t\":\"msg\",\"id\":\"") ||
      !plain_string(&at, end, &R_ID, &m->id) || !eat(&at, end, ",\"from\":\"") ||
      !plain_string(&at, end, &R_FROM, &m->from) || !eat(&at, end, ",\"uid\":\"") ||
      !plain_string(&at, end, &R_UID, &m->uid))
    return false;
  if (eat(&at, end, ",\"pub\":\"") && !plain_string(&at, end, &R_PUB, &m->pub))
    return false;
  if (!eat(&at, end, ",\"ts\":") || !plain_int(&at, end, ts) || !eat(&at, end, ",\"text\":\"") ||
      !plain_string(&at, end, &R_TEXT, &m->text))
    return false;
  if (eat(&at, end, ",\"re\":\"") && !plain_string(&at, end, &R_RE, &m->re))
    return false;
  return eat(&at, end, "}") && at == end;
}

static bool dup_span(span s, char **out) {
  *out = s.p ? span_dup(s) : NULL;
  return !s.p || *out;
}

/* true with *env filled when data is a msg in a canonical form (see above). */
bool mim_envelope_parse_canonical(const uint8_t *data, size_t len, mim_envelope *env) {
  memset(env, 0, sizeof *env);
  if (!data || len == 0 || len > (size_t)MIM_ENVELOPE_MAX_BYTES)
    return false;
  const char *at = (const char *)data, *end = at + len;
  msg_spans m = {0};
  int64_t ts = 0;
  bool v2 = len > 6 && at[5] == '2';
  if (!(v2 ? canonical_v2(at, end, &m, &ts) : canonical_v1(at, end, &m, &ts)))
    return false;
  env->type = MIM_ENV_MSG;
  env->v = v2 ? 2 : 1;
  env->ts = ts;
  bool ok = dup_span(m.id, &env->id) && dup_span(m.from, &env->from) &&
            dup_span(m.uid, &env->uid) && dup_span(m.pub, &env->pub) &&
            dup_span(m.text, &env->text) && dup_span(m.re, &env->ref);
  if (ok)
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
  raw_fields f = {0};
  why = check_object(root, env, &f);
  if (!why && !own_fields(&f, env)) {
    mim_envelope_clear(env);
    why = "out of memory";
  }
  json_decref(root);
  if (why) {
    mim_envelope_type type = env->type;
    memset(env, 0, sizeof *env);
    env->type = type == MIM_ENV_SIGNAL || type == MIM_ENV_UNKNOWN ? type : MIM_ENV_FOREIGN;
    if (reason)
      *reason = why;
  }
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
  free(env->uid);
  free(env->pub);
  free(env->text);
  free(env->ref);
  free(env->key);
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
  void *value;
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

static mim_idset_node *find(const mim_idset *set, const char *id) {
  size_t h = id_hash(id) & (set->nbuckets - 1);
  for (mim_idset_node *n = set->buckets[h]; n; n = n->bucket_next)
    if (strcmp(n->id, id) == 0)
      return n;
  return NULL;
}

bool mim_idset_contains(const mim_idset *set, const char *id) {
  return find(set, id) != NULL;
}

void *mim_idset_get(const mim_idset *set, const char *id) {
  mim_idset_node *n = find(set, id);
  return n ? n->value : NULL;
}

static void free_node(const mim_idset *set, mim_idset_node *n) {
  if (set->free_value && n->value)
    set->free_value(n->value);
  free(n);
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
  free_node(set, old);
}

mim_status mim_idset_add(mim_idset *set, const char *id, bool *added) {
  return mim_idset_put(set, id, NULL, added);
}

mim_status mim_idset_put(mim_idset *set, const char *id, void *value, bool *added) {
  if (added)
    *added = false;
  if (mim_idset_contains(set, id))
    return MIM_OK;
  size_t len = strlen(id);
  mim_idset_node *n = malloc(sizeof *n + len + 1);
  if (!n)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  memcpy(n->id, id, len + 1);
  n->value = value;
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
    free_node(set, n);
    n = next;
  }
  free(set->buckets);
  memset(set, 0, sizeof *set);
}
