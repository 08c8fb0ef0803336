/* Unit tests for lib/h2/grpc_wire.c: the message reader (splits, limits, flags, stop,
 * buffer reuse), the status rules (grpc-status, HTTP mapping), grpc-message decoding,
 * grpc-timeout and content-type. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "h2/grpc_wire.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEEN 2048

/* What the callback saw: every message concatenated, and each one's length. */
typedef struct seen {
  uint8_t bytes[32768];
  size_t used;
  size_t lens[MAX_SEEN];
  size_t count;
  const uint8_t *input; /* the fed buffer, to tell zero-copy deliveries */
  size_t input_len;
  size_t zero_copy;
  size_t stop_at; /* return false on this message (1-based); 0 = never */
} seen;

static bool on_message(void *user, const uint8_t *msg, size_t len) {
  seen *s = user;
  assert_non_null(msg);
  assert_true(s->count < MAX_SEEN && s->used + len <= sizeof s->bytes);
  memcpy(s->bytes + s->used, msg, len);
  s->used += len;
  s->lens[s->count++] = len;
  if (len > 0 && s->input && msg >= s->input && msg < s->input + s->input_len)
    s->zero_copy++;
  return s->stop_at == 0 || s->count < s->stop_at;
}

/* Appends one framed message of len bytes (byte i = seed + i) to out. */
static size_t frame(uint8_t *out, size_t len, uint8_t seed) {
  mim_grpc_prefix(out, len);
  for (size_t i = 0; i < len; i++)
    out[MIM_GRPC_PREFIX_LEN + i] = (uint8_t)(seed + i);
  return MIM_GRPC_PREFIX_LEN + len;
}

static const size_t sample_lens[] = {0, 1, 5, 300, 0, 1000, 7};

/* The sample stream and the payload bytes it carries. */
static size_t sample_stream(uint8_t *wire, uint8_t *payload, size_t *payload_len) {
  size_t n = 0;
  *payload_len = 0;
  for (size_t m = 0; m < sizeof sample_lens / sizeof sample_lens[0]; m++) {
    size_t len = frame(wire + n, sample_lens[m], (uint8_t)(m * 31));
    memcpy(payload + *payload_len, wire + n + MIM_GRPC_PREFIX_LEN, sample_lens[m]);
    *payload_len += sample_lens[m];
    n += len;
  }
  return n;
}

static void expect_sample(const seen *s, const uint8_t *payload, size_t payload_len) {
  size_t nmsg = sizeof sample_lens / sizeof sample_lens[0];
  assert_int_equal(s->count, nmsg);
  for (size_t m = 0; m < nmsg; m++)
    assert_int_equal(s->lens[m], sample_lens[m]);
  assert_int_equal(s->used, payload_len);
  assert_memory_equal(s->bytes, payload, payload_len);
}

static void test_prefix(void **state) {
  (void)state;
  uint8_t p[MIM_GRPC_PREFIX_LEN];
  mim_grpc_prefix(p, 0x01020304);
  static const uint8_t want[] = {0, 1, 2, 3, 4};
  assert_memory_equal(p, want, sizeof want);
  mim_grpc_prefix(p, 0);
  static const uint8_t zero[] = {0, 0, 0, 0, 0};
  assert_memory_equal(p, zero, sizeof zero);
}

/* The stream cut once at every byte boundary gives the same messages. */
static void test_split_every_boundary(void **state) {
  (void)state;
  static uint8_t wire[2048], payload[2048];
  size_t payload_len = 0;
  size_t n = sample_stream(wire, payload, &payload_len);
  for (size_t cut = 0; cut <= n; cut++) {
    static seen s;
    memset(&s, 0, sizeof s);
    mim_grpc_reader r;
    mim_grpc_reader_init(&r, 0);
    assert_int_equal(mim_grpc_reader_feed(&r, wire, cut, on_message, &s, NULL, 0), MIM_OK);
    assert_int_equal(mim_grpc_reader_feed(&r, wire + cut, n - cut, on_message, &s, NULL, 0),
                     MIM_OK);
    expect_sample(&s, payload, payload_len);
    assert_false(mim_grpc_reader_partial(&r));
    mim_grpc_reader_free(&r);
  }
}

/* One byte per feed: every prefix and body is assembled across feeds. */
static void test_byte_by_byte(void **state) {
  (void)state;
  static uint8_t wire[2048], payload[2048];
  size_t payload_len = 0;
  size_t n = sample_stream(wire, payload, &payload_len);
  static seen s;
  memset(&s, 0, sizeof s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(mim_grpc_reader_feed(&r, wire + i, 1, on_message, &s, NULL, 0), MIM_OK);
  expect_sample(&s, payload, payload_len);
  mim_grpc_reader_free(&r);
}

/* Many whole messages in one feed are all delivered straight from the input. */
static void test_many_in_one_feed(void **state) {
  (void)state;
  enum { COUNT = 1000 };
  static uint8_t wire[COUNT * (MIM_GRPC_PREFIX_LEN + 9)];
  size_t n = 0;
  for (size_t m = 0; m < COUNT; m++)
    n += frame(wire + n, m % 10, (uint8_t)m);
  static seen s;
  memset(&s, 0, sizeof s);
  s.input = wire;
  s.input_len = n;
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  assert_int_equal(mim_grpc_reader_feed(&r, wire, n, on_message, &s, NULL, 0), MIM_OK);
  assert_int_equal(s.count, COUNT);
  for (size_t m = 0; m < COUNT; m++)
    assert_int_equal(s.lens[m], m % 10);
  /* Zero-length messages point at a static byte; every other one is zero-copy. */
  assert_int_equal(s.zero_copy, COUNT - COUNT / 10);
  assert_null(r.buf);
  mim_grpc_reader_free(&r);
}

static void test_zero_length(void **state) {
  (void)state;
  uint8_t wire[4 * MIM_GRPC_PREFIX_LEN];
  for (size_t m = 0; m < 4; m++)
    mim_grpc_prefix(wire + m * MIM_GRPC_PREFIX_LEN, 0);
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  assert_int_equal(mim_grpc_reader_feed(&r, wire, 7, on_message, s, NULL, 0), MIM_OK);
  assert_int_equal(s->count, 1);
  assert_true(mim_grpc_reader_partial(&r));
  assert_int_equal(mim_grpc_reader_feed(&r, wire + 7, sizeof wire - 7, on_message, s, NULL, 0),
                   MIM_OK);
  assert_int_equal(s->count, 4);
  assert_int_equal(s->used, 0);
  assert_false(mim_grpc_reader_partial(&r));
  /* An empty feed is a no-op. */
  assert_int_equal(mim_grpc_reader_feed(&r, NULL, 0, on_message, s, NULL, 0), MIM_OK);
  assert_int_equal(s->count, 4);
  mim_grpc_reader_free(&r);
  free(s);
}

/* Feeds data; expects status st with detail containing want. The reader then refuses
 * more input. */
static void expect_refused(const uint8_t *data, size_t len, size_t max, mim_status st,
                           const char *want) {
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, max);
  char detail[160] = "";
  assert_int_equal(mim_grpc_reader_feed(&r, data, len, on_message, s, detail, sizeof detail), st);
  if (!strstr(detail, want))
    fail_msg("detail '%s' lacks '%s'", detail, want);
  assert_int_equal(s->count, 0);
  assert_null(r.buf); /* refused before allocating anything */
  static const uint8_t ok_msg[MIM_GRPC_PREFIX_LEN] = {0, 0, 0, 0, 0};
  assert_int_equal(mim_grpc_reader_feed(&r, ok_msg, sizeof ok_msg, on_message, s, NULL, 0),
                   MIM_ERR_INTERNAL);
  assert_int_equal(s->count, 0);
  mim_grpc_reader_free(&r);
  free(s);
}

static void test_compressed_refused(void **state) {
  (void)state;
  static const uint8_t wire[] = {1, 0, 0, 0, 3, 'a', 'b', 'c'};
  expect_refused(wire, sizeof wire, 0, MIM_ERR_INTERNAL,
                 "compressed message received but no compression was negotiated");
}

static void test_bad_flag(void **state) {
  (void)state;
  static const uint8_t flags[] = {2, 0x80, 0xff};
  for (size_t i = 0; i < sizeof flags; i++) {
    const uint8_t wire[] = {flags[i], 0, 0, 0, 1, 'x'};
    char want[32];
    snprintf(want, sizeof want, "flag 0x%02x", flags[i]);
    expect_refused(wire, sizeof wire, 0, MIM_ERR_INTERNAL, want);
  }
}

/* An over-limit length is refused from the prefix alone, before the body arrives and
 * before any allocation; exactly the limit is accepted. */
static void test_over_limit(void **state) {
  (void)state;
  static const uint8_t over[] = {0, 0, 0, 4, 1};
  expect_refused(over, sizeof over, 1024, MIM_ERR_RESOURCE_EXHAUSTED, "(1025 vs. 1024 bytes)");
  static const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
  expect_refused(huge, sizeof huge, 0, MIM_ERR_RESOURCE_EXHAUSTED,
                 "(4294967295 vs. 16777216 bytes)");
  static const uint8_t just_over_default[] = {0, 1, 0, 0, 1};
  expect_refused(just_over_default, sizeof just_over_default, 0, MIM_ERR_RESOURCE_EXHAUSTED,
                 "16777217");

  static uint8_t at_limit[MIM_GRPC_PREFIX_LEN + 1024];
  frame(at_limit, 1024, 3);
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 1024);
  assert_int_equal(mim_grpc_reader_feed(&r, at_limit, 600, on_message, s, NULL, 0), MIM_OK);
  assert_int_equal(
      mim_grpc_reader_feed(&r, at_limit + 600, sizeof at_limit - 600, on_message, s, NULL, 0),
      MIM_OK);
  assert_int_equal(s->count, 1);
  assert_int_equal(s->lens[0], 1024);
  mim_grpc_reader_free(&r);
  free(s);
}

/* A large announced message costs memory only as its bytes arrive. */
static void test_growth_follows_arrival(void **state) {
  (void)state;
  static const uint8_t wire[] = {0, 0, 0x10, 0, 0, 'a', 'b', 'c', 'd'}; /* 1 MiB announced */
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  assert_int_equal(mim_grpc_reader_feed(&r, wire, sizeof wire, on_message, s, NULL, 0), MIM_OK);
  assert_true(mim_grpc_reader_partial(&r));
  assert_true(r.cap <= 4096);
  assert_int_equal(s->count, 0);
  mim_grpc_reader_free(&r);
  free(s);
}

/* Once grown, the buffer is reused: messages split across feeds cost no allocation. */
static void test_buffer_reused(void **state) {
  (void)state;
  static uint8_t wire[MIM_GRPC_PREFIX_LEN + 3000];
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  size_t n = frame(wire, 3000, 1);
  assert_int_equal(mim_grpc_reader_feed(&r, wire, 100, on_message, s, NULL, 0), MIM_OK);
  assert_int_equal(mim_grpc_reader_feed(&r, wire + 100, n - 100, on_message, s, NULL, 0), MIM_OK);
  const uint8_t *buf = r.buf;
  size_t cap = r.cap;
  assert_non_null(buf);
  for (int round = 0; round < 10; round++) {
    n = frame(wire, 100 + (size_t)round * 290, (uint8_t)round);
    size_t cut = 3 + (size_t)round * 7;
    assert_int_equal(mim_grpc_reader_feed(&r, wire, cut, on_message, s, NULL, 0), MIM_OK);
    assert_int_equal(mim_grpc_reader_feed(&r, wire + cut, n - cut, on_message, s, NULL, 0), MIM_OK);
    assert_ptr_equal(r.buf, buf);
    assert_int_equal(r.cap, cap);
    assert_int_equal(s->lens[s->count - 1], 100 + (size_t)round * 290);
    assert_memory_equal(s->bytes + s->used - s->lens[s->count - 1], wire + MIM_GRPC_PREFIX_LEN,
                        s->lens[s->count - 1]);
  }
  assert_int_equal(s->count, 11);
  mim_grpc_reader_free(&r);
  free(s);
}

static void test_callback_stop(void **state) {
  (void)state;
  uint8_t wire[3 * (MIM_GRPC_PREFIX_LEN + 2)];
  size_t n = 0;
  for (int m = 0; m < 3; m++)
    n += frame(wire + n, 2, (uint8_t)m);
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->stop_at = 2;
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  assert_int_equal(mim_grpc_reader_feed(&r, wire, n, on_message, s, NULL, 0), MIM_ERR_CANCELLED);
  assert_int_equal(s->count, 2);
  char detail[160] = "";
  assert_int_equal(mim_grpc_reader_feed(&r, wire, n, on_message, s, detail, sizeof detail),
                   MIM_ERR_INTERNAL);
  assert_non_null(strstr(detail, "after it stopped"));
  assert_int_equal(s->count, 2);
  mim_grpc_reader_free(&r);
  free(s);
}

/* A callback that stops may free the reader: the feed must not touch it afterwards (ASan
 * and valgrind catch a use after free here), also for a message assembled in its
 * buffer. */
static bool free_and_stop(void *user, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  mim_grpc_reader *r = user;
  mim_grpc_reader_free(r);
  free(r);
  return false;
}

static void test_callback_frees_reader(void **state) {
  (void)state;
  uint8_t wire[2 * (MIM_GRPC_PREFIX_LEN + 4)];
  size_t n = frame(wire, 4, 1);
  n += frame(wire + n, 4, 2);
  for (size_t cut = 0; cut <= MIM_GRPC_PREFIX_LEN + 4; cut++) {
    mim_grpc_reader *r = malloc(sizeof *r);
    assert_non_null(r);
    mim_grpc_reader_init(r, 0);
    mim_status st = mim_grpc_reader_feed(r, wire, cut, free_and_stop, r, NULL, 0);
    if (cut < MIM_GRPC_PREFIX_LEN + 4) {
      assert_int_equal(st, MIM_OK);
      st = mim_grpc_reader_feed(r, wire + cut, n - cut, free_and_stop, r, NULL, 0);
    }
    assert_int_equal(st, MIM_ERR_CANCELLED);
  }
}

static void test_partial(void **state) {
  (void)state;
  uint8_t wire[MIM_GRPC_PREFIX_LEN + 3];
  frame(wire, 3, 0);
  seen *s = calloc(1, sizeof *s);
  assert_non_null(s);
  mim_grpc_reader r;
  mim_grpc_reader_init(&r, 0);
  assert_false(mim_grpc_reader_partial(&r));
  for (size_t i = 0; i < sizeof wire - 1; i++) {
    assert_int_equal(mim_grpc_reader_feed(&r, wire + i, 1, on_message, s, NULL, 0), MIM_OK);
    assert_true(mim_grpc_reader_partial(&r));
  }
  assert_int_equal(mim_grpc_reader_feed(&r, wire + sizeof wire - 1, 1, on_message, s, NULL, 0),
                   MIM_OK);
  assert_false(mim_grpc_reader_partial(&r));
  assert_int_equal(s->count, 1);
  mim_grpc_reader_free(&r);
  free(s);
}

static bool parse(const char *text, long *code) {
  return mim_grpc_parse_status((const uint8_t *)text, strlen(text), code);
}

static void test_parse_status(void **state) {
  (void)state;
  long code = -1;
  assert_true(parse("0", &code));
  assert_int_equal(code, 0);
  assert_true(parse("16", &code));
  assert_int_equal(code, 16);
  assert_true(parse("007", &code));
  assert_int_equal(code, 7);
  assert_true(parse("17", &code));
  assert_int_equal(mim_status_from_grpc_code(code), MIM_ERR_UNKNOWN);
  char max[32];
  snprintf(max, sizeof max, "%ld", LONG_MAX);
  assert_true(parse(max, &code));
  assert_true(code == LONG_MAX);
  static const char *const bad[] = {"",    "-1", "+1", " 1", "1 ",  "1a",
                                    "0x1", "١",  "1.", "a",  "%31", "99999999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    code = 42;
    if (parse(bad[i], &code))
      fail_msg("'%s' parsed as %ld", bad[i], code);
    assert_int_equal(code, 42); /* untouched */
  }
  /* An embedded NUL is not a digit. */
  static const uint8_t nul[] = {'1', 0, '2'};
  assert_false(mim_grpc_parse_status(nul, sizeof nul, &code));
  assert_false(mim_grpc_parse_status(NULL, 0, &code));
}

static void test_http_mapping(void **state) {
  (void)state;
  static const struct {
    int http;
    mim_status want;
  } rows[] = {
      {400, MIM_ERR_INTERNAL},
      {401, MIM_ERR_UNAUTHENTICATED},
      {403, MIM_ERR_PERMISSION_DENIED},
      {404, MIM_ERR_UNIMPLEMENTED},
      {429, MIM_ERR_UNAVAILABLE},
      {431, MIM_ERR_INTERNAL},
      {502, MIM_ERR_UNAVAILABLE},
      {503, MIM_ERR_UNAVAILABLE},
      {504, MIM_ERR_UNAVAILABLE},
      /* "All other codes", 200 included: a real OK carries grpc-status. */
      {200, MIM_ERR_UNKNOWN},
      {100, MIM_ERR_UNKNOWN},
      {204, MIM_ERR_UNKNOWN},
      {302, MIM_ERR_UNKNOWN},
      {405, MIM_ERR_UNKNOWN},
      {500, MIM_ERR_UNKNOWN},
      {501, MIM_ERR_UNKNOWN},
      {505, MIM_ERR_UNKNOWN},
      {0, MIM_ERR_UNKNOWN},
      {-1, MIM_ERR_UNKNOWN},
      {999, MIM_ERR_UNKNOWN},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    mim_status got = mim_status_from_http(rows[i].http);
    if (got != rows[i].want)
      fail_msg("HTTP %d -> %s, want %s", rows[i].http, mim_status_name(got),
               mim_status_name(rows[i].want));
  }
}

static void expect_decoded(const char *in, size_t cap, const char *want) {
  char out[256];
  memset(out, 'Z', sizeof out);
  assert_true(cap <= sizeof out);
  mim_grpc_decode_message((const uint8_t *)in, strlen(in), out, cap);
  if (strcmp(out, want) != 0)
    fail_msg("decode('%s', cap %zu) = '%s', want '%s'", in, cap, out, want);
}

static void test_decode_message(void **state) {
  (void)state;
  expect_decoded("", 64, "");
  expect_decoded("plain text", 64, "plain text");
  expect_decoded("a%20b", 64, "a b");
  expect_decoded("%41%42%43", 64, "ABC");
  expect_decoded("%4a%4A", 64, "JJ");
  expect_decoded("100%25", 64, "100%");
  expect_decoded("%25%32%30", 64, "%20"); /* decoded once, not twice */
  /* Invalid or cut-off escapes stay as they are. */
  expect_decoded("%zz", 64, "%zz");
  expect_decoded("%4g!", 64, "%4g!");
  expect_decoded("50%", 64, "50%");
  expect_decoded("x%4", 64, "x%4");
  expect_decoded("%%41", 64, "%A");
  /* NUL, decoded or raw, would end the C string early. */
  expect_decoded("a%00b", 64, "a?b");
  static const uint8_t raw_nul[] = {'a', 0, 'b'};
  char out[8];
  mim_grpc_decode_message(raw_nul, sizeof raw_nul, out, sizeof out);
  assert_string_equal(out, "a?b");
  /* UTF-8 passes through, escaped or not. */
  expect_decoded("caf%C3%A9", 64, "caf\xC3\xA9");
  expect_decoded("%E2%82%AC \xE2\x82\xAC", 64, "\xE2\x82\xAC \xE2\x82\xAC");
  expect_decoded("%F0%9F%98%80", 64, "\xF0\x9F\x98\x80");
}

static void test_decode_truncation(void **state) {
  (void)state;
  expect_decoded("abcdef", 4, "abc");
  expect_decoded("abcdef", 1, "");
  expect_decoded("ab%41", 4, "abA");
  expect_decoded("abc", 4, "abc");
  /* Never half a character: the cut falls before a sequence that does not fit. */
  expect_decoded("ab%C3%A9", 4, "ab");
  expect_decoded("ab%C3%A9", 5, "ab\xC3\xA9");
  expect_decoded("a%E2%82%AC", 4, "a");
  expect_decoded("a%E2%82%AC", 5, "a\xE2\x82\xAC");
  expect_decoded("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8, "\xF0\x9F\x98\x80");
  expect_decoded("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 6, "\xF0\x9F\x98\x80");
  /* Bytes that are not UTF-8 are cut like ASCII. */
  expect_decoded("%FF%FF%FF", 3, "\xFF\xFF");
  expect_decoded("%80%80%80%80%80", 4, "\x80\x80\x80");
  /* cap 0 writes nothing; a NULL value gives "". */
  char out[4] = "xyz";
  mim_grpc_decode_message((const uint8_t *)"abc", 3, out, 0);
  assert_string_equal(out, "xyz");
  mim_grpc_decode_message(NULL, 0, out, sizeof out);
  assert_string_equal(out, "");
}

static void expect_timeout(int64_t ms, const char *want) {
  char out[12];
  memset(out, 'Z', sizeof out);
  mim_grpc_timeout_value(ms, out);
  if (strcmp(out, want) != 0)
    fail_msg("timeout(%lld) = '%s', want '%s'", (long long)ms, out, want);
}

static void test_timeout_value(void **state) {
  (void)state;
  expect_timeout(0, "1m");
  expect_timeout(-5, "1m");
  expect_timeout(INT64_MIN, "1m");
  expect_timeout(1, "1m");
  expect_timeout(1500, "1500m");
  expect_timeout(99999999, "99999999m");
  /* Beyond 8 digits: the next unit, rounded up. */
  expect_timeout(100000000, "100000S");
  expect_timeout(100000001, "100001S");
  expect_timeout(99999999000LL, "99999999S");
  expect_timeout(99999999001LL, "1666667M");
  expect_timeout(99999999LL * 60000, "99999999M");
  expect_timeout(99999999LL * 60000 + 1, "1666667H");
  expect_timeout(99999999LL * 3600000, "99999999H");
  expect_timeout(99999999LL * 3600000 + 1, "99999999H");
  expect_timeout(INT64_MAX, "99999999H");
}

static void test_content_type(void **state) {
  (void)state;
  static const char *const good[] = {"application/grpc", "application/grpc+proto",
                                     "application/grpc;charset=utf-8", "Application/GRPC+json"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_true(mim_grpc_content_type_ok((const uint8_t *)good[i], strlen(good[i])));
  static const char *const bad[] = {"",
                                    "application/grp",
                                    "application/grpcx",
                                    "application/grpc-web",
                                    "application/json",
                                    "text/plain",
                                    " application/grpc"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(mim_grpc_content_type_ok((const uint8_t *)bad[i], strlen(bad[i])));
  assert_false(mim_grpc_content_type_ok(NULL, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefix),
      cmocka_unit_test(test_split_every_boundary),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_many_in_one_feed),
      cmocka_unit_test(test_zero_length),
      cmocka_unit_test(test_compressed_refused),
      cmocka_unit_test(test_bad_flag),
      cmocka_unit_test(test_over_limit),
      cmocka_unit_test(test_growth_follows_arrival),
      cmocka_unit_test(test_buffer_reused),
      cmocka_unit_test(test_callback_stop),
      cmocka_unit_test(test_callback_frees_reader),
      cmocka_unit_test(test_partial),
      cmocka_unit_test(test_parse_status),
      cmocka_unit_test(test_http_mapping),
      cmocka_unit_test(test_decode_message),
      cmocka_unit_test(test_decode_truncation),
      cmocka_unit_test(test_timeout_value),
      cmocka_unit_test(test_content_type),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
