/* Typing and presence signals: see chat_signal.h. */
#include "chat_signal.h"

#include "envelope.h"
#include "error.h"

#include <jansson.h>

#include <stdlib.h>
#include <string.h>

/* Readers treat larger values as foreign (PROTOCOL 3.4). */
static const size_t PARSE_MAX_BYTES = 262144;

static bool contains(const uint8_t *data, size_t len, const char *word) {
  size_t n = strlen(word);
  for (size_t i = 0; i + n <= len; i++)
    if (data[i] == (uint8_t)word[0] && memcmp(data + i, word, n) == 0)
      return true;
  return false;
}

/* The string member key of obj, checked: NULL when absent or not a string, or when its
 * length is outside 1..max (0 = any length); *bad set for a present but wrong one. */
static const char *string_in(json_t *obj, const char *key, size_t max, bool *bad) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return NULL;
  size_t len = json_is_string(v) ? json_string_length(v) : 0;
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  /* jansson accepts \u0000: a C string must not hold one. */
  if (!s || strlen(s) != len || (max && (len == 0 || len > max))) {
    *bad = true;
    return NULL;
  }
  return s;
}

static char *dup_or_empty(const char *s) {
  return strdup(s ? s : "");
}

/* Members of a typing / presence signal (the type is known). */
static const char *read_kind_members(json_t *root, mim_signal *sig) {
  if (sig->kind == MIM_SIGNAL_TYPING) {
    json_t *on = json_object_get(root, "on");
    if (!json_is_boolean(on))
      return "typing signal without a boolean \"on\"";
    sig->on = json_is_true(on);
    return NULL;
  }
  const char *state = json_string_value(json_object_get(root, "state"));
  if (!state || (strcmp(state, "here") != 0 && strcmp(state, "left") != 0))
    return "presence signal without \"state\" here or left";
  sig->here = strcmp(state, "here") == 0;
  json_t *ttl = json_object_get(root, "ttl");
  if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
              json_integer_value(ttl) > MIM_SIGNAL_TTL_MAX))
    return "presence signal with a \"ttl\" that is not an integer in 1..300000";
  sig->ttl_ms = ttl ? (int64_t)json_integer_value(ttl) : 0;
  return NULL;
}

/* The members every signal has. */
static const char *read_common(json_t *root, mim_signal *sig) {
  bool bad = false;
  const char *from = string_in(root, "from", 0, &bad);
  const char *uid = string_in(root, "uid", MIM_SIGNAL_MAX_UID, &bad);
  const char *pub = string_in(root, "pub", MIM_SIGNAL_MAX_UID, &bad);
  const char *sid = string_in(root, "sid", MIM_SIGNAL_MAX_SID, &bad);
  json_t *ts = json_object_get(root, "ts");
  json_t *v = json_object_get(root, "v");
  if (bad || !from || !sid)
    return "signal with a missing or mistyped from, uid, pub or sid";
  if (!json_is_integer(ts) || (v && (!json_is_integer(v) || json_integer_value(v) < 2)))
    return "signal with a mistyped ts or v";
  sig->ts = (int64_t)json_integer_value(ts);
  sig->from = dup_or_empty(from);
  sig->uid = dup_or_empty(uid);
  sig->pub = dup_or_empty(pub);
  sig->sid = dup_or_empty(sid);
  if (!sig->from || !sig->uid || !sig->pub || !sig->sid)
    return "out of memory";
  return NULL;
}

mim_signal_parse_result mim_signal_parse(const uint8_t *data, size_t len, mim_signal *sig,
                                         const char **reason) {
  memset(sig, 0, sizeof *sig);
  /* Most values are messages: only one that names a signal type is parsed. */
  if (!data || len > PARSE_MAX_BYTES ||
      (!contains(data, len, "typing") && !contains(data, len, "presence")))
    return MIM_SIGNAL_NONE;
  json_error_t err;
  json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
  const char *t = json_string_value(json_object_get(root, "t"));
  if (!t || (strcmp(t, "typing") != 0 && strcmp(t, "presence") != 0)) {
    json_decref(root);
    return MIM_SIGNAL_NONE;
  }
  sig->kind = strcmp(t, "typing") == 0 ? MIM_SIGNAL_TYPING : MIM_SIGNAL_PRESENCE;
  const char *why = read_common(root, sig);
  if (!why)
    why = read_kind_members(root, sig);
  json_decref(root);
  if (why) {
    mim_signal_clear(sig);
    if (reason)
      *reason = why;
    return MIM_SIGNAL_BAD;
  }
  return MIM_SIGNAL_OK;
}

static bool text_ok(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  return s && (max == 0 || n <= max) && mim_utf8_text_valid((const uint8_t *)s, n);
}

/* The object in the protocol's member order; NULL when out of memory. */
static json_t *signal_object(const mim_signal *sig) {
  json_t *o = json_object();
  bool typing = sig->kind == MIM_SIGNAL_TYPING;
  int bad = json_object_set_new(o, "v", json_integer(2));
  bad |= json_object_set_new(o, "t", json_string(typing ? "typing" : "presence"));
  bad |= json_object_set_new(o, "from", json_string(sig->from));
  bad |= json_object_set_new(o, "uid", json_string(sig->uid));
  if (sig->pub && *sig->pub)
    bad |= json_object_set_new(o, "pub", json_string(sig->pub));
  bad |= json_object_set_new(o, "sid", json_string(sig->sid));
  bad |= json_object_set_new(o, "ts", json_integer(sig->ts));
  if (typing)
    bad |= json_object_set_new(o, "on", json_boolean(sig->on));
  else
    bad |= json_object_set_new(o, "state", json_string(sig->here ? "here" : "left"));
  if (!typing && sig->ttl_ms > 0)
    bad |= json_object_set_new(o, "ttl", json_integer(sig->ttl_ms));
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

mim_status mim_signal_build(const mim_signal *sig, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (!sig || (sig->kind != MIM_SIGNAL_TYPING && sig->kind != MIM_SIGNAL_PRESENCE))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "signal: unknown kind");
  if (!text_ok(sig->from, 0) || !text_ok(sig->uid, MIM_SIGNAL_MAX_UID) ||
      !text_ok(sig->sid, MIM_SIGNAL_MAX_SID) || !*sig->sid ||
      (sig->pub && !text_ok(sig->pub, MIM_SIGNAL_MAX_UID)))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "signal: from, uid, pub or sid is not valid UTF-8 or too long");
  if (sig->ttl_ms < 0 || sig->ttl_ms > MIM_SIGNAL_TTL_MAX)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "signal: ttl %lld ms not in 1..%d",
                    (long long)sig->ttl_ms, MIM_SIGNAL_TTL_MAX);
  json_t *o = signal_object(sig);
  char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!json)
    return mim_fail(MIM_ERR_NO_MEMORY, "signal: out of memory");
  size_t len = strlen(json);
  if (len > MIM_SIGNAL_MAX_BYTES) {
    free(json);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "signal: %zu bytes, over the limit of %u", len,
                    MIM_SIGNAL_MAX_BYTES);
  }
  *out = json;
  *out_len = len;
  return MIM_OK;
}

void mim_signal_clear(mim_signal *sig) {
  if (!sig)
    return;
  free(sig->from);
  free(sig->uid);
  free(sig->pub);
  free(sig->sid);
  memset(sig, 0, sizeof *sig);
}
