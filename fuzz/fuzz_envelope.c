/* libFuzzer harness: the chat envelope (lib/envelope.h).
 *  - mim_envelope_parse on arbitrary bytes: never crashes; a foreign value gets a
 *    reason and a zeroed envelope; an envelope has usable text strings, and building it
 *    again gives bytes that parse back to the same fields (build → parse round trip);
 *    (version 2, whatever type it parsed as);
 *  - the input split at NUL bytes into id / from / text, built and parsed back;
 *  - mim_utf8_text_valid agrees with jansson's own UTF-8 check;
 *  - the jansson-free fast path (mim_envelope_parse_canonical) accepts nothing jansson
 *    rejects and reads the same fields (differential check). */
#include "envelope.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what) {
  fprintf(stderr, "fuzz_envelope: %s\n", what);
  abort();
}

static bool eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Every field but v (a round trip writes version 2). */
static void same(const mim_envelope *a, const mim_envelope *b) {
  if (a->type != b->type || !eq(a->id, b->id) || !eq(a->from, b->from) || !eq(a->uid, b->uid) ||
      !eq(a->pub, b->pub) || !eq(a->text, b->text) || !eq(a->ref, b->ref) ||
      !eq(a->key, b->key) || a->on != b->on || a->ts != b->ts) {
    fail("round trip changed a field");
  }
}

static bool text_ok(const char *s) {
  return s && mim_utf8_text_valid((const uint8_t *)s, strlen(s));
}

/* Builds the fields and parses the result; the build may refuse only for size. */
static void round_trip(const mim_envelope *e) {
  char *json = NULL;
  size_t len = 0;
  mim_status st = mim_envelope_build_v2(e, &json, &len);
  if (st != MIM_OK) {
    size_t id_len = strlen(e->id);
    bool id_bad = id_len == 0 || id_len > MIM_ENVELOPE_MAX_ID_LEN;
    bool valid = text_ok(e->id) && text_ok(e->from) && text_ok(e->text);
    if (st != MIM_ERR_INVALID_ARGUMENT ||
        (valid && !id_bad && strlen(e->from) + strlen(e->text) < MIM_ENVELOPE_MAX_BYTES / 8)) {
      fail("build refused a small valid envelope");
    }
    return;
  }
  if (len != strlen(json)) {
    fail("build length mismatch");
  }
  mim_envelope back;
  const char *why = NULL;
  if (!mim_envelope_parse((const uint8_t *)json, len, &back, &why)) {
    fprintf(stderr, "reason: %s\n", why);
    fail("a built envelope did not parse");
  }
  same(e, &back);
  mim_envelope_clear(&back);
  free(json);
}

static void parse_arbitrary(const uint8_t *data, size_t size) {
  mim_envelope env;
  const char *why = NULL;
  if (!mim_envelope_parse(data, size, &env, &why)) {
    if (!why || env.id || env.from || env.text || env.ts || env.uid || env.pub || env.ref ||
        env.key || mim_envelope_stored(env.type)) {
      fail("foreign value without reason or with fields left");
    }
    return;
  }
  if (!text_ok(env.id) || !text_ok(env.from) || !text_ok(env.text)) {
    fail("parsed strings are not valid text");
  }
  size_t id_len = strlen(env.id);
  if (id_len == 0 || id_len > MIM_ENVELOPE_MAX_ID_LEN) {
    fail("parsed id out of bounds");
  }
  round_trip(&env);
  mim_envelope_clear(&env);
}

/* id \0 from \0 text (missing parts are ""), ts from the length. */
static void build_split(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 3);
  if (!buf) {
    return;
  }
  memcpy(buf, data, size);
  buf[size] = buf[size + 1] = buf[size + 2] = '\0';
  const char *id = buf;
  const char *from = id + strlen(id) + 1;
  const char *text = from + strlen(from) + 1; /* at most buf + size + 2 */
  mim_envelope e = {.type = MIM_ENV_MSG,
                    .id = (char *)id,
                    .from = (char *)from,
                    .text = (char *)text,
                    .ts = (int64_t)size * 1000 - 5};
  round_trip(&e);
  free(buf);
}

static void utf8_agrees(const uint8_t *data, size_t size) {
  bool ours = mim_utf8_text_valid(data, size);
  json_t *s = json_stringn((const char *)data, size);
  bool theirs = s != NULL && memchr(data, 0, size) == NULL;
  json_decref(s);
  if (ours != theirs) {
    fail("mim_utf8_text_valid disagrees with jansson");
  }
}

static void fast_path_agrees(const uint8_t *data, size_t size) {
  mim_envelope fast;
  if (!mim_envelope_parse_canonical(data, size, &fast)) {
    if (fast.id || fast.from || fast.text || fast.ts || fast.uid || fast.pub || fast.ref) {
      fail("fast path refused but left fields");
    }
    return;
  }
  mim_envelope slow;
  const char *why = NULL;
  if (!mim_envelope_parse_json(data, size, &slow, &why)) {
    fprintf(stderr, "jansson: %s\n", why);
    fail("fast path accepted what jansson rejects");
  }
  same(&fast, &slow);
  mim_envelope_clear(&fast);
  mim_envelope_clear(&slow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  parse_arbitrary(data, size);
  fast_path_agrees(data, size);
  build_split(data, size);
  utf8_agrees(data, size);
  return 0;
}
