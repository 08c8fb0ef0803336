/* Unit tests for lib/envelope.c: ids, building, and tolerant parsing of every kind of
 * foreign input. No server needed. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_hex_id(const char *id) {
  if (strlen(id) != 32)
    return false;
  for (size_t i = 0; i < 32; i++)
    if (!strchr("0123456789abcdef", id[i]))
      return false;
  return true;
}

static void test_new_id(void **state) {
  (void)state;
  char a[MIM_ENVELOPE_ID_SIZE], b[MIM_ENVELOPE_ID_SIZE];
  assert_int_equal(MIM_ENVELOPE_ID_SIZE, MIM_MESSAGE_ID_SIZE);
  assert_int_equal(mim_envelope_new_id(a), MIM_OK);
  assert_int_equal(mim_envelope_new_id(b), MIM_OK);
  assert_true(is_hex_id(a));
  assert_true(is_hex_id(b));
  assert_string_not_equal(a, b);
}

static void test_build_exact_format(void **state) {
  (void)state;
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build("0123456789abcdef0123456789abcdef", "alice", "hi \"there\"\n",
                                      1700000000123LL, &json, &len),
                   MIM_OK);
  assert_string_equal(json, "{\"v\":1,\"id\":\"0123456789abcdef0123456789abcdef\","
                            "\"from\":\"alice\",\"text\":\"hi \\\"there\\\"\\n\","
                            "\"ts\":1700000000123}");
  assert_int_equal(len, strlen(json));
  free(json);
}

static void test_round_trip(void **state) {
  (void)state;
  const char *text = "h\xc3\xa9llo \xf0\x9f\x98\x80 / <b>&</b> \\ \t";
  char id[MIM_ENVELOPE_ID_SIZE];
  assert_int_equal(mim_envelope_new_id(id), MIM_OK);
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build(id, "Bj\xc3\xb6rk", text, -5, &json, &len), MIM_OK);
  mim_envelope env;
  const char *reason = "unset";
  assert_true(mim_envelope_parse((const uint8_t *)json, len, &env, &reason));
  assert_string_equal(env.id, id);
  assert_string_equal(env.from, "Bj\xc3\xb6rk");
  assert_string_equal(env.text, text);
  assert_int_equal(env.ts, -5);
  mim_envelope_clear(&env);
  assert_null(env.id);
  mim_envelope_clear(&env); /* twice is harmless */
  mim_envelope_clear(NULL);
  free(json);
}

static void test_build_empty_text(void **state) {
  (void)state;
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build("x", "", "", 0, &json, &len), MIM_OK);
  mim_envelope env;
  assert_true(mim_envelope_parse((const uint8_t *)json, len, &env, NULL));
  assert_string_equal(env.text, "");
  assert_string_equal(env.from, "");
  mim_envelope_clear(&env);
  free(json);
}

static void test_build_rejects(void **state) {
  (void)state;
  char *json = (char *)0x1;
  size_t len = 7;
  assert_int_equal(mim_envelope_build(NULL, "a", "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_envelope_build("id", NULL, "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_envelope_build("id", "a", NULL, 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_envelope_build("id", "a", "t", 0, NULL, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_envelope_build("", "a", "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  char long_id[MIM_ENVELOPE_MAX_ID_LEN + 2];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  assert_int_equal(mim_envelope_build(long_id, "a", "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  /* Invalid UTF-8 in text and in from. */
  assert_int_equal(mim_envelope_build("id", "a", "bad \xff byte", 0, &json, &len),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_envelope_build("id", "\xc3", "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_true(strlen(mim_last_error_detail()) > 0);
  /* Too large: text alone over the limit, and text just under it but over with JSON. */
  size_t big = MIM_ENVELOPE_MAX_BYTES + 1;
  char *text = malloc(big + 1);
  assert_non_null(text);
  memset(text, 'x', big);
  text[big] = '\0';
  assert_int_equal(mim_envelope_build("id", "a", text, 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  text[MIM_ENVELOPE_MAX_BYTES - 10] = '\0';
  assert_int_equal(mim_envelope_build("id", "a", text, 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  /* Escaping can make the JSON larger than the text: 40000 quotes become 80000 bytes. */
  memset(text, '"', 40000);
  text[40000] = '\0';
  assert_int_equal(mim_envelope_build("id", "a", text, 0, &json, &len), MIM_OK);
  assert_true(len > 80000);
  free(json);
  free(text);
  /* Outputs untouched on failure. */
  json = (char *)0x1;
  assert_int_equal(mim_envelope_build("", "a", "t", 0, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(json, (char *)0x1);
}

/* Asserts that the bytes are foreign, with a non-empty reason and a zeroed envelope. */
static void expect_foreign(const void *data, size_t len) {
  mim_envelope env;
  memset(&env, 0x5a, sizeof env);
  const char *reason = NULL;
  if (mim_envelope_parse(data, len, &env, &reason))
    fail_msg("parsed as an envelope: %.*s", (int)(len < 200 ? len : 200), (const char *)data);
  assert_non_null(reason);
  assert_true(strlen(reason) > 0);
  assert_null(env.id);
  assert_null(env.from);
  assert_null(env.text);
  assert_int_equal(env.type, MIM_ENV_FOREIGN);
}

static void expect_foreign_str(const char *s) {
  expect_foreign(s, strlen(s));
}

static void test_parse_foreign_text(void **state) {
  (void)state;
  expect_foreign_str("hello");
  expect_foreign_str("");
  expect_foreign(NULL, 0);
  expect_foreign_str(" ");
  expect_foreign_str("42");
  expect_foreign_str("\"a string\"");
  expect_foreign_str("null");
  expect_foreign_str("true");
  expect_foreign_str("[1,2,3]");
  expect_foreign_str("{}");
}

static void test_parse_bad_json(void **state) {
  (void)state;
  expect_foreign_str("{");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1,}");
  expect_foreign_str("{'id':'a','from':'b','text':'c','ts':1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1} trailing");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"\\uZZZZ\",\"ts\":1}");
  /* Duplicate keys are ambiguous: which text would the user see? */
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"text\":\"d\",\"ts\":1}");
}

static void test_parse_wrong_members(void **state) {
  (void)state;
  expect_foreign_str("{\"from\":\"b\",\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\"}");
  expect_foreign_str("{\"id\":1,\"from\":\"b\",\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":null,\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":[\"c\"],\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":\"1\"}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1.5}");
  expect_foreign_str("{\"id\":\"\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"v\":\"1\",\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}");
  expect_foreign_str("{\"v\":0,\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}");
  char buf[256];
  snprintf(buf, sizeof buf, "{\"id\":\"%0*d\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}",
           (int)MIM_ENVELOPE_MAX_ID_LEN + 1, 7);
  expect_foreign_str(buf);
  /* Embedded NUL in a string cannot be represented in a C string. */
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"x\\u0000y\",\"ts\":1}");
}

static void test_parse_tolerant_good(void **state) {
  (void)state;
  /* Whitespace, other key order, no "v", extra members, future version: all accepted. */
  const char *ok[] = {
      " { \"ts\" : 7 , \"text\":\"c\", \"from\":\"b\", \"id\":\"a\" } ",
      "{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":7,\"kind\":\"message\",\"x\":[1]}",
      "{\"v\":2,\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":7}",
      "{\"id\":\"a\",\"from\":\"b\",\"text\":\"\\u00e9\\ud83d\\ude00\",\"ts\":7}",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    mim_envelope env;
    const char *reason = NULL;
    if (!mim_envelope_parse((const uint8_t *)ok[i], strlen(ok[i]), &env, &reason))
      fail_msg("case %zu rejected: %s", i, reason);
    assert_string_equal(env.id, "a");
    assert_string_equal(env.from, "b");
    assert_int_equal(env.ts, 7);
    if (i == 3)
      assert_string_equal(env.text, "\xc3\xa9\xf0\x9f\x98\x80");
    mim_envelope_clear(&env);
  }
}

static void test_parse_invalid_utf8(void **state) {
  (void)state;
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"\xff\xfe\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"\xc3\",\"text\":\"c\",\"ts\":1}");
  /* Overlong encoding of '/' and a UTF-16 surrogate encoded in UTF-8. */
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"\xc0\xaf\",\"ts\":1}");
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"\xed\xa0\x80\",\"ts\":1}");
  /* A lone surrogate escape. */
  expect_foreign_str("{\"id\":\"a\",\"from\":\"b\",\"text\":\"\\ud800\",\"ts\":1}");
}

static void test_parse_binary(void **state) {
  (void)state;
  uint8_t bin[512];
  for (size_t i = 0; i < sizeof bin; i++)
    bin[i] = (uint8_t)(i * 37 + 11);
  expect_foreign(bin, sizeof bin);
  /* A valid envelope with a NUL byte in the middle of the value. */
  const char env[] = "{\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}";
  uint8_t with_nul[sizeof env + 1];
  memcpy(with_nul, env, 10);
  with_nul[10] = 0;
  memcpy(with_nul + 11, env + 10, sizeof env - 10);
  expect_foreign(with_nul, sizeof with_nul - 1);
  /* Pseudo-random fuzz: nothing may crash, and random bytes are never an envelope. */
  uint32_t x = 12345;
  for (int round = 0; round < 2000; round++) {
    uint8_t buf[64];
    size_t n = (size_t)(round % 64);
    for (size_t i = 0; i < n; i++) {
      x = x * 1103515245u + 12345u;
      buf[i] = (uint8_t)(x >> 16);
    }
    expect_foreign(buf, n);
  }
}

static void test_parse_truncated_prefixes(void **state) {
  (void)state;
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build("abc", "me", "text", 99, &json, &len), MIM_OK);
  /* Every strict prefix of an envelope is foreign; the whole thing is not. */
  for (size_t n = 0; n < len; n++)
    expect_foreign(json, n);
  mim_envelope env;
  assert_true(mim_envelope_parse((const uint8_t *)json, len, &env, NULL));
  mim_envelope_clear(&env);
  free(json);
}

static void test_parse_huge(void **state) {
  (void)state;
  /* A valid envelope over the limit is foreign without being parsed. */
  size_t n = MIM_ENVELOPE_MAX_BYTES + 100;
  char *big = malloc(n + 1);
  assert_non_null(big);
  int head = snprintf(big, n, "{\"id\":\"a\",\"from\":\"b\",\"ts\":1,\"text\":\"");
  memset(big + head, 'x', n - (size_t)head - 2);
  big[n - 2] = '"';
  big[n - 1] = '}';
  big[n] = '\0';
  expect_foreign(big, n);
  /* The same shape just under the limit parses. */
  size_t m = MIM_ENVELOPE_MAX_BYTES;
  memset(big + head, 'x', m - (size_t)head - 2);
  big[m - 2] = '"';
  big[m - 1] = '}';
  mim_envelope env;
  assert_true(mim_envelope_parse((const uint8_t *)big, m, &env, NULL));
  assert_int_equal(strlen(env.text), m - (size_t)head - 2);
  mim_envelope_clear(&env);
  /* Deep nesting (a classic parser stack overflow) stays foreign. */
  size_t depth = 100000;
  for (size_t i = 0; i < depth; i++)
    big[i] = '[';
  expect_foreign(big, depth);
  for (size_t i = 0; i < depth; i++)
    big[i] = i % 2 ? '{' : '[';
  expect_foreign(big, depth);
  free(big);
}

/* The jansson-free fast path: takes what mim_envelope_build writes when no escapes are
 * needed, refuses the rest (jansson reads it), and agrees with jansson on every field. */
static void test_parse_fast_path(void **state) {
  (void)state;
  static const struct {
    const char *json;
    bool fast;
  } rows[] = {
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"hi\",\"ts\":1700000000000}", true},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"\",\"text\":\"caf\xc3\xa9\",\"ts\":-5}", true},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"a\\\"b\",\"ts\":1}", false},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"hi\",\"ts\":01}", false},
      /* 19+ digits are jansson's to judge (found by the differential fuzzer as an
       * overflow in the fast path) */
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"hi\",\"ts\":17000000000002345678901}",
       false},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"hi\",\"ts\":999999999999999999}", true},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"hi\",\"ts\":1} ", false},
      {"{\"v\":1,\"id\":\"\",\"from\":\"al\",\"text\":\"hi\",\"ts\":1}", false},
      {"{\"v\":1,\"id\":\"abc\",\"from\":\"al\",\"text\":\"\xff\",\"ts\":1}", false},
      {"{\"id\":\"abc\",\"v\":1,\"from\":\"al\",\"text\":\"hi\",\"ts\":1}", false},
      /* Version 2 msgs as the library writes them (with pub: as the moderator does). */
      {"{\"v\":2,\"t\":\"msg\",\"id\":\"abc\",\"from\":\"Al\",\"uid\":\"al\",\"ts\":1,\"text\":"
       "\"hi\"}",
       true},
      {"{\"v\":2,\"t\":\"msg\",\"id\":\"abc\",\"from\":\"Al\",\"uid\":\"al\",\"pub\":\"tok\","
       "\"ts\":1,"
       "\"text\":\"hi\",\"re\":\"x\"}",
       true},
      {"{\"v\":2,\"t\":\"msg\",\"id\":\"abc\",\"from\":\"Al\",\"uid\":\"\",\"ts\":1,\"text\":"
       "\"hi\"}",
       false},
      {"{\"v\":2,\"t\":\"msg\",\"id\":\"abc\",\"from\":\"Al\",\"uid\":\"al\",\"ts\":1,\"text\":"
       "\"hi\","
       "\"re\":\"\"}",
       false},
      {"{\"v\":2,\"t\":\"edit\",\"id\":\"abc\",\"from\":\"Al\",\"uid\":\"al\",\"ts\":1,\"ref\":"
       "\"x\","
       "\"text\":\"hi\"}",
       false},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const uint8_t *data = (const uint8_t *)rows[i].json;
    size_t len = strlen(rows[i].json);
    mim_envelope fast, slow, any;
    assert_int_equal(mim_envelope_parse_canonical(data, len, &fast), rows[i].fast);
    bool slow_ok = mim_envelope_parse_json(data, len, &slow, NULL);
    assert_int_equal(mim_envelope_parse(data, len, &any, NULL), slow_ok);
    if (rows[i].fast) {
      assert_true(slow_ok);
      assert_string_equal(fast.id, slow.id);
      assert_string_equal(fast.from, slow.from);
      assert_string_equal(fast.text, slow.text);
      assert_int_equal(fast.ts, slow.ts);
      assert_int_equal(fast.type, slow.type);
      assert_int_equal(fast.v, slow.v);
      assert_true(fast.uid ? slow.uid && !strcmp(fast.uid, slow.uid) : !slow.uid);
      assert_true(fast.pub ? slow.pub && !strcmp(fast.pub, slow.pub) : !slow.pub);
      assert_true(fast.ref ? slow.ref && !strcmp(fast.ref, slow.ref) : !slow.ref);
    } else {
      assert_null(fast.id);
    }
    if (slow_ok) {
      assert_string_equal(any.text, slow.text);
      assert_int_equal(any.ts, slow.ts);
    }
    mim_envelope_clear(&fast);
    mim_envelope_clear(&slow);
    mim_envelope_clear(&any);
  }
}

static void test_utf8_text_valid(void **state) {
  (void)state;
  const struct {
    const char *s;
    size_t len;
    bool ok;
  } cases[] = {
      {"", 0, true},
      {"hello", 5, true},
      {"h\xc3\xa9", 3, true},
      {"\xe2\x82\xac", 3, true},
      {"\xf0\x9f\x98\x80", 4, true},
      {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF */
      {"a\0b", 3, false},            /* NUL */
      {"\xff", 1, false},
      {"\x80", 1, false}, /* lone continuation */
      {"\xc3", 1, false}, /* truncated */
      {"\xe2\x82", 2, false},
      {"\xc3\x28", 2, false},         /* bad continuation */
      {"\xc0\xaf", 2, false},         /* overlong */
      {"\xe0\x80\xaf", 3, false},     /* overlong */
      {"\xed\xa0\x80", 3, false},     /* surrogate */
      {"\xf4\x90\x80\x80", 4, false}, /* > U+10FFFF */
      {"\xf8\x88\x80\x80\x80", 5, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (mim_utf8_text_valid((const uint8_t *)cases[i].s, cases[i].len) != cases[i].ok)
      fail_msg("utf8 case %zu: want %d", i, cases[i].ok);
}

static void test_idset_basic(void **state) {
  (void)state;
  mim_idset set;
  assert_int_equal(mim_idset_init(&set, 3), MIM_OK);
  assert_false(mim_idset_contains(&set, "a"));
  assert_int_equal(mim_idset_add(&set, "a", NULL), MIM_OK);
  bool added = false;
  assert_int_equal(mim_idset_add(&set, "b", &added), MIM_OK);
  assert_true(added);
  assert_int_equal(mim_idset_add(&set, "a", &added), MIM_OK); /* present: no-op */
  assert_false(added);
  assert_int_equal(set.count, 2);
  assert_int_equal(mim_idset_add(&set, "c", NULL), MIM_OK);
  assert_true(mim_idset_contains(&set, "a"));
  /* Full: "d" evicts the oldest, "a". */
  assert_int_equal(mim_idset_add(&set, "d", NULL), MIM_OK);
  assert_int_equal(set.count, 3);
  assert_false(mim_idset_contains(&set, "a"));
  assert_true(mim_idset_contains(&set, "b"));
  assert_true(mim_idset_contains(&set, "d"));
  /* Growing keeps everything and raises the bound. */
  mim_idset_reserve(&set, 100);
  mim_idset_reserve(&set, 2); /* never shrinks */
  assert_int_equal(set.capacity, 100);
  assert_true(mim_idset_contains(&set, "b") && mim_idset_contains(&set, "c"));
  assert_int_equal(mim_idset_add(&set, "e", NULL), MIM_OK);
  assert_true(mim_idset_contains(&set, "b"));
  mim_idset_free(&set);
  mim_idset_free(NULL);
}

static void test_idset_window(void **state) {
  (void)state;
  /* 20000 ids through a set of 1000 (with a rehash in the middle): exactly the last
   * 1000 remain. */
  mim_idset set;
  assert_int_equal(mim_idset_init(&set, 500), MIM_OK);
  char id[MIM_ENVELOPE_ID_SIZE];
  for (int i = 0; i < 20000; i++) {
    if (i == 300)
      mim_idset_reserve(&set, 1000);
    snprintf(id, sizeof id, "id-%d", i);
    assert_int_equal(mim_idset_add(&set, id, NULL), MIM_OK);
  }
  assert_int_equal(set.count, 1000);
  for (int i = 0; i < 20000; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    if (mim_idset_contains(&set, id) != (i >= 19000))
      fail_msg("id %d: contains=%d", i, mim_idset_contains(&set, id));
  }
  mim_idset_free(&set);
}

/* ---- version 2 (docs/PROTOCOL.md 3) ---- */

static char *build2(const mim_envelope *e) {
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build_v2(e, &json, &len), MIM_OK);
  assert_int_equal(len, strlen(json));
  return json;
}

static void test_v2_build_exact(void **state) {
  (void)state;
  mim_envelope msg = {.type = MIM_ENV_MSG,
                      .id = "5b1f",
                      .from = "Bob",
                      .uid = "bob",
                      .text = "hey",
                      .ref = "8c0e",
                      .ts = 1764806401000};
  char *j = build2(&msg);
  assert_string_equal(j, "{\"v\":2,\"t\":\"msg\",\"id\":\"5b1f\",\"from\":\"Bob\",\"uid\":\"bob\","
                         "\"ts\":1764806401000,\"text\":\"hey\",\"re\":\"8c0e\"}");
  free(j);
  mim_envelope react = {.type = MIM_ENV_REACT,
                        .id = "77aa",
                        .from = "Bob",
                        .uid = "bob",
                        .pub = "tok-bob",
                        .ref = "8c0e",
                        .key = "+1",
                        .on = true,
                        .ts = 2};
  j = build2(&react);
  assert_string_equal(j,
                      "{\"v\":2,\"t\":\"react\",\"id\":\"77aa\",\"from\":\"Bob\",\"uid\":\"bob\","
                      "\"pub\":\"tok-bob\",\"ts\":2,\"ref\":\"8c0e\",\"key\":\"+1\",\"on\":true}");
  free(j);
  mim_envelope edit = {.type = MIM_ENV_EDIT,
                       .id = "0d3c",
                       .from = "A",
                       .uid = "a",
                       .ref = "8c0e",
                       .text = "hi all",
                       .ts = 3};
  j = build2(&edit);
  assert_string_equal(j, "{\"v\":2,\"t\":\"edit\",\"id\":\"0d3c\",\"from\":\"A\",\"uid\":\"a\","
                         "\"ts\":3,\"ref\":\"8c0e\",\"text\":\"hi all\"}");
  free(j);
  mim_envelope del = {.type = MIM_ENV_DELETE, .id = "dd", .from = "A", .uid = "a", .ref = "8c0e"};
  j = build2(&del);
  assert_string_equal(j, "{\"v\":2,\"t\":\"delete\",\"id\":\"dd\",\"from\":\"A\",\"uid\":\"a\","
                         "\"ts\":0,\"ref\":\"8c0e\"}");
  /* And back, every field. */
  mim_envelope back;
  assert_true(mim_envelope_parse((const uint8_t *)j, strlen(j), &back, NULL));
  assert_int_equal(back.type, MIM_ENV_DELETE);
  assert_int_equal(back.v, 2);
  assert_string_equal(back.ref, "8c0e");
  assert_string_equal(back.uid, "a");
  assert_null(back.pub);
  assert_string_equal(back.text, "");
  mim_envelope_clear(&back);
  free(j);
  j = build2(&react);
  assert_true(mim_envelope_parse((const uint8_t *)j, strlen(j), &back, NULL));
  assert_int_equal(back.type, MIM_ENV_REACT);
  assert_string_equal(back.key, "+1");
  assert_true(back.on);
  assert_string_equal(back.pub, "tok-bob");
  mim_envelope_clear(&back);
  free(j);
}

static void test_v2_build_limits(void **state) {
  (void)state;
  char long_uid[MIM_ENVELOPE_MAX_UID_LEN + 2], long_key[MIM_ENVELOPE_MAX_KEY_LEN + 2];
  memset(long_uid, 'u', sizeof long_uid - 1);
  long_uid[sizeof long_uid - 1] = '\0';
  memset(long_key, 'k', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = '\0';
  char *json = NULL;
  size_t len = 0;
  mim_envelope bad[] = {
      {.type = MIM_ENV_MSG, .id = "i", .from = "f", .uid = long_uid, .text = "t"},
      {.type = MIM_ENV_MSG, .id = "i", .from = "f", .uid = "", .text = "t"},
      {.type = MIM_ENV_EDIT, .id = "i", .from = "f", .text = "t"}, /* no ref */
      {.type = MIM_ENV_REACT, .id = "i", .from = "f", .ref = "r", .key = long_key},
      {.type = MIM_ENV_REACT, .id = "i", .from = "f", .ref = "r", .key = ""},
      {.type = MIM_ENV_MSG, .id = "i", .from = "f", .text = "bad \xff"},
      {.type = MIM_ENV_SIGNAL, .id = "i", .from = "f", .text = "t"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (mim_envelope_build_v2(&bad[i], &json, &len) != MIM_ERR_INVALID_ARGUMENT)
      fail_msg("case %zu built", i);
  long_uid[MIM_ENVELOPE_MAX_UID_LEN] = '\0'; /* exactly the limit */
  mim_envelope ok = {.type = MIM_ENV_MSG, .id = "i", .from = "f", .uid = long_uid, .text = "t"};
  json = build2(&ok);
  free(json);
}

/* Parses s; returns the type, checking that only stored types parse. */
static mim_envelope_type type_of(const char *s) {
  mim_envelope env;
  const char *why = NULL;
  bool ok = mim_envelope_parse((const uint8_t *)s, strlen(s), &env, &why);
  mim_envelope_type t = env.type;
  assert_int_equal(ok, mim_envelope_stored(t));
  if (!ok) {
    assert_non_null(why);
    assert_null(env.id);
  }
  mim_envelope_clear(&env);
  return t;
}

static void test_v2_parse_types(void **state) {
  (void)state;
  /* Signals and later types are neither messages nor foreign. */
  assert_int_equal(type_of("{\"v\":2,\"t\":\"typing\",\"from\":\"a\",\"uid\":\"a\",\"sid\":\"s\","
                           "\"ts\":1,\"on\":true}"),
                   MIM_ENV_SIGNAL);
  assert_int_equal(type_of("{\"v\":2,\"t\":\"presence\",\"state\":\"here\"}"), MIM_ENV_SIGNAL);
  assert_int_equal(type_of("{\"v\":3,\"t\":\"poll\",\"id\":\"x\"}"), MIM_ENV_UNKNOWN);
  assert_int_equal(type_of("{\"v\":2,\"t\":7,\"id\":\"x\"}"), MIM_ENV_FOREIGN);
  /* Version 1 is a msg without uid. */
  assert_int_equal(type_of("{\"v\":1,\"id\":\"a\",\"from\":\"b\",\"text\":\"c\",\"ts\":1}"),
                   MIM_ENV_MSG);
  /* Required members per type, and their types. */
  static const char *const foreign[] = {
      "{\"v\":2,\"t\":\"edit\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"text\":\"x\"}",
      "{\"v\":2,\"t\":\"edit\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":\"m\"}",
      "{\"v\":2,\"t\":\"delete\",\"id\":\"e\",\"from\":\"a\",\"ts\":1}",
      "{\"v\":2,\"t\":\"delete\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":5}",
      "{\"v\":2,\"t\":\"react\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":\"m\",\"key\":\"k\"}",
      "{\"v\":2,\"t\":\"react\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":\"m\",\"key\":\"k\","
      "\"on\":1}",
      "{\"v\":2,\"t\":\"react\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":\"m\",\"key\":\"\","
      "\"on\":true}",
      "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"uid\":\"\",\"ts\":1,\"text\":\"x\"}",
      "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"uid\":3,\"ts\":1,\"text\":\"x\"}",
      "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"pub\":\"\",\"ts\":1,\"text\":\"x\"}",
      "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"text\":\"x\",\"re\":\"\"}",
  };
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
    if (type_of(foreign[i]) != MIM_ENV_FOREIGN)
      fail_msg("case %zu is not foreign: %s", i, foreign[i]);
  char buf[512];
  snprintf(buf, sizeof buf,
           "{\"v\":2,\"t\":\"react\",\"id\":\"e\",\"from\":\"a\",\"ts\":1,\"ref\":\"m\","
           "\"key\":\"%0*d\",\"on\":true}",
           (int)MIM_ENVELOPE_MAX_KEY_LEN + 1, 1);
  assert_int_equal(type_of(buf), MIM_ENV_FOREIGN);
  snprintf(buf, sizeof buf,
           "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"uid\":\"%0*d\",\"ts\":1,"
           "\"text\":\"x\"}",
           (int)MIM_ENVELOPE_MAX_UID_LEN + 1, 1);
  assert_int_equal(type_of(buf), MIM_ENV_FOREIGN);
  snprintf(buf, sizeof buf,
           "{\"v\":2,\"t\":\"msg\",\"id\":\"e\",\"from\":\"a\",\"uid\":\"%0*d\",\"ts\":1,"
           "\"text\":\"x\"}",
           (int)MIM_ENVELOPE_MAX_UID_LEN, 1);
  assert_int_equal(type_of(buf), MIM_ENV_MSG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_id),
      cmocka_unit_test(test_build_exact_format),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_build_empty_text),
      cmocka_unit_test(test_build_rejects),
      cmocka_unit_test(test_parse_foreign_text),
      cmocka_unit_test(test_parse_bad_json),
      cmocka_unit_test(test_parse_wrong_members),
      cmocka_unit_test(test_parse_tolerant_good),
      cmocka_unit_test(test_parse_invalid_utf8),
      cmocka_unit_test(test_parse_binary),
      cmocka_unit_test(test_parse_truncated_prefixes),
      cmocka_unit_test(test_parse_huge),
      cmocka_unit_test(test_parse_fast_path),
      cmocka_unit_test(test_utf8_text_valid),
      cmocka_unit_test(test_idset_basic),
      cmocka_unit_test(test_idset_window),
      cmocka_unit_test(test_v2_build_exact),
      cmocka_unit_test(test_v2_build_limits),
      cmocka_unit_test(test_v2_parse_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
