/* Unit tests for common/: clocks and condition-wait deadlines, the strict UTF-8
 * validator, base64 in every alphabet and padding mode, and the full-jitter backoff. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "backoff.h"
#include "base64.h"
#include "clock.h"
#include "utf8.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- clock ---- */

static void test_clocks_advance(void **state) {
  (void)state;
  int64_t m0 = cmn_mono_ms(), w0 = cmn_wall_ms();
  struct timespec nap = {0, 20 * 1000000L};
  nanosleep(&nap, NULL);
  assert_true(cmn_mono_ms() - m0 >= 20);
  assert_true(cmn_wall_ms() >= w0);
  assert_true(w0 > 1600000000000LL); /* epoch milliseconds, not seconds */
}

static void test_deadline_is_monotonic_and_normalised(void **state) {
  (void)state;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  struct timespec d = cmn_deadline_after_ms(1999);
  assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
  int64_t diff = ((int64_t)d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
  assert_true(diff >= 1999 && diff < 2100);
  struct timespec past = cmn_deadline_after_ms(-5000); /* clamps to now */
  assert_true(past.tv_sec >= now.tv_sec);
}

/* A wait on a cmn_cond_init_monotonic cv with a cmn_deadline_after_ms deadline lasts
 * the time asked: with the two on different clocks it would return at once (or never). */
static void test_timed_wait_lasts_its_time(void **state) {
  (void)state;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv;
  assert_int_equal(cmn_cond_init_monotonic(&cv), 0);
  pthread_mutex_lock(&mu);
  int64_t t0 = cmn_mono_ms();
  struct timespec until = cmn_deadline_after_ms(100);
  int rc = 0;
  while (rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&cv, &mu, &until);
  int64_t took = cmn_mono_ms() - t0;
  pthread_mutex_unlock(&mu);
  pthread_cond_destroy(&cv);
  assert_true(took >= 99);
  assert_true(took < 5000);
}

/* ---- UTF-8 ---- */

static void test_utf8_cases(void **state) {
  (void)state;
  const struct {
    const char *s;
    size_t len;
    size_t bad_at; /* SIZE_MAX: valid */
  } cases[] = {
      {"", 0, SIZE_MAX},
      {"hello", 5, SIZE_MAX},
      {"a\0b", 3, SIZE_MAX}, /* NUL is a character; callers that refuse it say so */
      {"h\xc3\xa9", 3, SIZE_MAX},
      {"\xe2\x82\xac", 3, SIZE_MAX},
      {"\xef\xbf\xbf", 3, SIZE_MAX}, /* U+FFFF */
      {"\xf0\x9f\x98\x80", 4, SIZE_MAX},
      {"\xf4\x8f\xbf\xbf", 4, SIZE_MAX}, /* U+10FFFF */
      {"\xed\x9f\xbf", 3, SIZE_MAX},     /* U+D7FF, just below the surrogates */
      {"\xee\x80\x80", 3, SIZE_MAX},     /* U+E000, just above */
      {"\xff", 1, 0},
      {"ab\x80", 3, 2},           /* lone continuation */
      {"\xc3", 1, 0},             /* truncated */
      {"ab\xe2\x82", 4, 2},       /* truncated at the end */
      {"\xc3\x28", 2, 0},         /* bad continuation */
      {"x\xc0\xaf", 3, 1},        /* overlong two-byte */
      {"\xc1\xbf", 2, 0},         /* overlong two-byte */
      {"\xe0\x80\xaf", 3, 0},     /* overlong three-byte */
      {"\xe0\x9f\xbf", 3, 0},     /* overlong three-byte, highest */
      {"\xf0\x8f\xbf\xbf", 4, 0}, /* overlong four-byte */
      {"\xed\xa0\x80", 3, 0},     /* surrogate U+D800 */
      {"\xed\xbf\xbf", 3, 0},     /* surrogate U+DFFF */
      {"\xf4\x90\x80\x80", 4, 0}, /* > U+10FFFF */
      {"\xf5\x80\x80\x80", 4, 0},
      {"\xf8\x88\x80\x80\x80", 5, 0},
      {"\xe2\x82\x41", 3, 0}, /* third byte not a continuation */
      {"ok\xf0\x9f\x98", 5, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t got = cmn_utf8_invalid_at(cases[i].s, cases[i].len);
    if (got != cases[i].bad_at)
      fail_msg("utf8 case %zu: invalid at %zu, want %zu", i, got, cases[i].bad_at);
    assert_int_equal(cmn_utf8_valid(cases[i].s, cases[i].len), cases[i].bad_at == SIZE_MAX);
  }
}

/* Every code point encodes to bytes the validator accepts; every surrogate is refused. */
static void test_utf8_every_code_point(void **state) {
  (void)state;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
      b[0] = (uint8_t)cp, n = 1;
    } else if (cp < 0x800) {
      b[0] = (uint8_t)(0xC0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 63)), n = 2;
    } else if (cp < 0x10000) {
      b[0] = (uint8_t)(0xE0 | cp >> 12), b[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
      b[2] = (uint8_t)(0x80 | (cp & 63)), n = 3;
    } else {
      b[0] = (uint8_t)(0xF0 | cp >> 18), b[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
      b[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)), b[3] = (uint8_t)(0x80 | (cp & 63)), n = 4;
    }
    bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (cmn_utf8_valid(b, n) == surrogate)
      fail_msg("code point U+%04X: valid=%d", cp, !surrogate);
  }
}

/* ---- base64 ---- */

static char *encode(const char *s, cmn_b64_alphabet a) {
  char *e = cmn_b64_encode(s, strlen(s), a);
  assert_non_null(e);
  assert_int_equal(strlen(e), cmn_b64_encoded_len(strlen(s), a));
  return e;
}

static void test_b64_encode_rfc4648(void **state) {
  (void)state;
  const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    char *s = encode(in[i], CMN_B64_STD), *u = encode(in[i], CMN_B64_URL);
    assert_string_equal(s, std[i]);
    assert_string_equal(u, url[i]);
    free(s);
    free(u);
  }
  const uint8_t hi[] = {0xfb, 0xff};
  char *s = cmn_b64_encode(hi, 2, CMN_B64_STD), *u = cmn_b64_encode(hi, 2, CMN_B64_URL);
  assert_string_equal(s, "+/8=");
  assert_string_equal(u, "-_8");
  free(s);
  free(u);
  assert_null(cmn_b64_encode(hi, 2, CMN_B64_EITHER));
}

/* One decoding case: want is NULL when the text must be refused with result r. */
typedef struct decode_case {
  const char *text;
  cmn_b64_alphabet alphabet;
  cmn_b64_padding padding;
  const char *want;
  cmn_b64_result r;
} decode_case;

static void expect_decode(const decode_case *c) {
  uint8_t *out = (uint8_t *)"sentinel";
  size_t len = 99, bad = 99;
  cmn_b64_result got =
      cmn_b64_decode(c->text, strlen(c->text), c->alphabet, c->padding, &out, &len, &bad);
  if (got != c->r)
    fail_msg("decode \"%s\" (alphabet %d, padding %d): result %d, want %d", c->text, c->alphabet,
             c->padding, got, c->r);
  if (!c->want) {
    assert_null(out);
    return;
  }
  assert_int_equal(len, strlen(c->want));
  assert_memory_equal(out, c->want, len);
  assert_int_equal(out[len], 0);
  free(out);
}

#define OPT CMN_B64_PAD_OPTIONAL
#define IGN CMN_B64_PAD_IGNORED

static void test_b64_decode_modes(void **state) {
  (void)state;
  static const decode_case cases[] = {
      /* the library's mode: one named alphabet, padding optional but complete */
      {"Zm9vYg==", CMN_B64_STD, OPT, "foob", CMN_B64_OK},
      {"Zm9vYg", CMN_B64_STD, OPT, "foob", CMN_B64_OK},
      {"Zm9vYmE=", CMN_B64_STD, OPT, "fooba", CMN_B64_OK},
      {"", CMN_B64_STD, OPT, "", CMN_B64_OK},
      {"Zm9vYg=", CMN_B64_STD, OPT, NULL, CMN_B64_BAD_LENGTH}, /* half padding */
      {"Zm9vY", CMN_B64_STD, OPT, NULL, CMN_B64_BAD_LENGTH},   /* 6 bits left */
      {"Zg===", CMN_B64_STD, OPT, NULL, CMN_B64_BAD_CHAR},     /* third '=' is data */
      {"Zm9v=Yg", CMN_B64_STD, OPT, NULL, CMN_B64_BAD_CHAR},
      {"-_8", CMN_B64_STD, OPT, NULL, CMN_B64_BAD_CHAR},
      {"+/8", CMN_B64_URL, OPT, NULL, CMN_B64_BAD_CHAR},
      {"-_8", CMN_B64_URL, OPT, "\xfb\xff", CMN_B64_OK},
      {"-_8=", CMN_B64_URL, OPT, "\xfb\xff", CMN_B64_OK},
      /* mim-local's lenient mode: either alphabet, any trailing '=' run dropped */
      {"+_8", CMN_B64_EITHER, IGN, "\xfb\xff", CMN_B64_OK},
      {"-/8====", CMN_B64_EITHER, IGN, "\xfb\xff", CMN_B64_OK},
      {"Zg=", CMN_B64_EITHER, IGN, "f", CMN_B64_OK},
      {"====", CMN_B64_EITHER, IGN, "", CMN_B64_OK},
      {"Zm9vY", CMN_B64_EITHER, IGN, NULL, CMN_B64_BAD_LENGTH},
      {"Zm 9v", CMN_B64_EITHER, IGN, NULL, CMN_B64_BAD_CHAR},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_decode(&cases[i]);
}

#define CAN CMN_B64_PAD_CANONICAL

static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int decode_char(char c) {
  const char *at = strchr(url_alphabet, c);
  assert_non_null(at);
  return (int)(at - url_alphabet);
}

static char encode_char(int v) {
  return url_alphabet[v & 63];
}

/* mim-local's token mode: one spelling per byte string, as the encoder writes it. */
static void test_b64_canonical_only(void **state) {
  (void)state;
  static const decode_case cases[] = {
      {"Zm9vYg", CMN_B64_URL, CAN, "foob", CMN_B64_OK},
      {"Zm9vYmE", CMN_B64_URL, CAN, "fooba", CMN_B64_OK},
      {"-_8", CMN_B64_URL, CAN, "\xfb\xff", CMN_B64_OK},
      {"", CMN_B64_URL, CAN, "", CMN_B64_OK},
      {"Zm9vYg==", CMN_B64_STD, CAN, "foob", CMN_B64_OK},
      {"Zm9vYg==", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_LENGTH}, /* padding added */
      {"Zm9vYmE=", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_LENGTH},
      {"Zm9vYg", CMN_B64_STD, CAN, NULL, CMN_B64_BAD_LENGTH}, /* padding left out */
      {"+/8", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_CHAR},      /* the other alphabet */
      {"Zm9vYh", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_BITS},   /* 'h': a spare bit set */
      {"Zm9vYmF", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_BITS},
      {"-_9", CMN_B64_URL, CAN, NULL, CMN_B64_BAD_BITS},
      {"Zg", CMN_B64_EITHER, CAN, NULL, CMN_B64_BAD_LENGTH}, /* no canonical form */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_decode(&cases[i]);
  /* Every encoding the encoder writes is canonical; setting any spare bit is refused. */
  uint8_t data[8] = {0xff, 0x00, 0xa5, 0x5a, 0x01, 0x80, 0x7e, 0xe7};
  for (size_t len = 0; len <= sizeof data; len++) {
    char *e = cmn_b64_encode(data, len, CMN_B64_URL);
    assert_non_null(e);
    size_t n = strlen(e), chars = 0;
    assert_int_equal(cmn_b64_check(e, n, CMN_B64_URL, CAN, &chars, NULL), CMN_B64_OK);
    for (int bit = 0; n % 4 != 0 && bit < (n % 4 == 2 ? 4 : 2); bit++) {
      char saved = e[n - 1];
      e[n - 1] = encode_char(decode_char(saved) ^ (1 << bit));
      assert_int_equal(cmn_b64_check(e, n, CMN_B64_URL, CAN, &chars, NULL), CMN_B64_BAD_BITS);
      e[n - 1] = saved;
    }
    free(e);
  }
}

static void test_b64_check_reports_where(void **state) {
  (void)state;
  size_t n = 0, bad = 0;
  assert_int_equal(cmn_b64_check("ab$d", 4, CMN_B64_STD, CMN_B64_PAD_OPTIONAL, &n, &bad),
                   CMN_B64_BAD_CHAR);
  assert_int_equal(bad, 2);
  assert_int_equal(cmn_b64_check("==", 2, CMN_B64_STD, CMN_B64_PAD_OPTIONAL, &n, &bad),
                   CMN_B64_BAD_LENGTH);
  assert_int_equal(n, 0); /* only padding: the caller can say "no data" */
  assert_int_equal(cmn_b64_check("Zm8=", 4, CMN_B64_STD, CMN_B64_PAD_OPTIONAL, &n, NULL),
                   CMN_B64_OK);
  assert_int_equal(n, 3);
}

static void test_b64_round_trip_every_length(void **state) {
  (void)state;
  uint8_t data[64];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 37 + 250);
  for (size_t len = 0; len <= sizeof data; len++) {
    for (int a = CMN_B64_STD; a <= CMN_B64_URL; a++) {
      char *e = cmn_b64_encode(data, len, (cmn_b64_alphabet)a);
      assert_non_null(e);
      uint8_t *d = NULL;
      size_t dl = 0;
      assert_int_equal(
          cmn_b64_decode(e, strlen(e), (cmn_b64_alphabet)a, CMN_B64_PAD_OPTIONAL, &d, &dl, NULL),
          CMN_B64_OK);
      assert_int_equal(dl, len);
      assert_memory_equal(d, data, len);
      free(d);
      free(e);
    }
  }
}

/* ---- backoff ---- */

static void test_backoff_ceiling(void **state) {
  (void)state;
  assert_int_equal(cmn_backoff_ceiling_ms(100, 5000, 0), 100);
  assert_int_equal(cmn_backoff_ceiling_ms(100, 5000, 1), 200);
  assert_int_equal(cmn_backoff_ceiling_ms(100, 5000, 5), 3200);
  assert_int_equal(cmn_backoff_ceiling_ms(100, 5000, 6), 5000);
  assert_int_equal(cmn_backoff_ceiling_ms(100, 5000, 4000000000u), 5000);
  assert_int_equal(cmn_backoff_ceiling_ms(INT64_MAX / 2 + 1, INT64_MAX, 3), INT64_MAX);
  assert_int_equal(cmn_backoff_ceiling_ms(500, 100, 0), 100);
  assert_int_equal(cmn_backoff_ceiling_ms(0, 100, 3), 0);
}

/* Throttling backoff: never below the floor, the window doubles up to the cap, and it
 * is jittered (several values, both ends reached). */
static void test_backoff_floor_jitter(void **state) {
  (void)state;
  cmn_rng rng;
  cmn_rng_seed_with(&rng, 7);
  static const int64_t ceilings[] = {1000, 2000, 2000, 2000};
  for (unsigned attempt = 0; attempt < 4; attempt++) {
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 5000; i++) {
      int64_t d = cmn_backoff_floor_jitter_ms(&rng, 500, 2000, attempt);
      assert_true(d >= 500 && d <= ceilings[attempt]);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
    }
    assert_int_equal(lo, 500);
    assert_int_equal(hi, ceilings[attempt]);
  }
  assert_int_equal(cmn_backoff_floor_jitter_ms(&rng, 500, 400, 3), 500);
  assert_int_equal(cmn_backoff_floor_jitter_ms(&rng, 500, 2000, 4000000000u) >= 500, 1);
}

/* Full jitter: every delay lies in [0, ceiling]; both ends of the window are reached and
 * its halves are about equally likely (equal jitter would never go below ceiling / 2). */
static void test_backoff_full_jitter_bounds(void **state) {
  (void)state;
  cmn_rng rng;
  cmn_rng_seed_with(&rng, 42);
  for (unsigned attempt = 0; attempt < 10; attempt++) {
    int64_t ceiling = cmn_backoff_ceiling_ms(10, 1000, attempt);
    int64_t lo = ceiling, hi = 0, below_half = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
      int64_t d = cmn_backoff_full_jitter_ms(&rng, 10, 1000, attempt);
      assert_true(d >= 0 && d <= ceiling);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
      below_half += d * 2 < ceiling;
    }
    assert_int_equal(lo, 0);
    assert_int_equal(hi, ceiling);
    assert_true(below_half > n * 4 / 10 && below_half < n * 6 / 10);
  }
}

static void test_rng_seeds_differ_and_repeat(void **state) {
  (void)state;
  cmn_rng a, b;
  cmn_rng_seed(&a);
  cmn_rng_seed(&b);
  assert_true(cmn_rng_next(&a) != cmn_rng_next(&b));
  cmn_rng_seed_with(&a, 7);
  cmn_rng_seed_with(&b, 7);
  for (int i = 0; i < 100; i++)
    assert_true(cmn_rng_next(&a) == cmn_rng_next(&b));
  assert_true(cmn_rng_upto(&a, 0) == 0);
  (void)cmn_rng_upto(&a, UINT64_MAX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clocks_advance),
      cmocka_unit_test(test_deadline_is_monotonic_and_normalised),
      cmocka_unit_test(test_timed_wait_lasts_its_time),
      cmocka_unit_test(test_utf8_cases),
      cmocka_unit_test(test_utf8_every_code_point),
      cmocka_unit_test(test_b64_encode_rfc4648),
      cmocka_unit_test(test_b64_decode_modes),
      cmocka_unit_test(test_b64_canonical_only),
      cmocka_unit_test(test_b64_check_reports_where),
      cmocka_unit_test(test_b64_round_trip_every_length),
      cmocka_unit_test(test_backoff_ceiling),
      cmocka_unit_test(test_backoff_full_jitter_bounds),
      cmocka_unit_test(test_backoff_floor_jitter),
      cmocka_unit_test(test_rng_seeds_differ_and_repeat),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
