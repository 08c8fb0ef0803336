/* Unit tests for lib/credentials.c: every accepted key form, host derivation and
 * overrides, and a catalogue of malformed keys that must fail cleanly without the
 * secret ever showing up in the error detail. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv, strdup */
#endif
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/credentials.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "SeCrEtToKeN-4f9a2b"

/* ---- helpers ---- */

/* Standard, padded base64 of n bytes (malloc'd). */
static char *b64(const void *data, size_t n) {
  char *out = malloc((n + 2) / 3 * 4 + 1);
  assert_non_null(out);
  EVP_EncodeBlock((unsigned char *)out, data, (int)n);
  return out;
}

static char *b64_str(const char *s) {
  return b64(s, strlen(s));
}

/* base64url without padding, as in a JWT. */
static char *b64url(const char *s) {
  char *out = b64_str(s);
  for (char *p = out; *p; p++) {
    if (*p == '+')
      *p = '-';
    else if (*p == '/')
      *p = '_';
    else if (*p == '=')
      *p = '\0';
  }
  return out;
}

static char *join3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
  char *out = malloc(n);
  assert_non_null(out);
  snprintf(out, n, "%s.%s.%s", a, b, c);
  return out;
}

/* A JWT with the given claims JSON and a dummy signature. */
static char *make_jwt(const char *claims) {
  char *h = b64url("{\"alg\":\"HS512\",\"typ\":\"JWT\"}");
  char *c = b64url(claims);
  char *s = b64url("not-a-real-signature-but-bytes\xff\xfe");
  char *jwt = join3(h, c, s);
  free(h);
  free(c);
  free(s);
  return jwt;
}

/* Asserts that parsing fails with INVALID_ARGUMENT, a non-empty detail, no secret. */
static void expect_invalid(const char *key, const char *secret) {
  mim_credentials *c = (mim_credentials *)0x1;
  assert_int_equal(mim_credentials_from_string(key, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  const char *d = mim_last_error_detail();
  assert_non_null(d);
  assert_true(strlen(d) > 0);
  if (secret)
    assert_null(strstr(d, secret));
  if (key && strlen(key) >= 8 && strlen(key) < 4096)
    assert_null(strstr(d, key));
}

static void expect_invalid_b64_json(const char *json) {
  char *key = b64_str(json);
  expect_invalid(key, SECRET);
  free(key);
}

/* ---- good keys ---- */

static void test_v1_good(void **state) {
  (void)state;
  char *key = b64_str("{\"endpoint\":\"cell-4-us-west-2-1.prod.a.momentohq.com\","
                      "\"api_key\":\"" SECRET "\"}");
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(key, &c), MIM_OK);
  assert_string_equal(mim_last_error_detail(), "");
  assert_string_equal(mim_credentials_endpoint(c), "cell-4-us-west-2-1.prod.a.momentohq.com");
  assert_string_equal(mim_credentials_auth_token(c), SECRET);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE),
                      "cache.cell-4-us-west-2-1.prod.a.momentohq.com:443");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL),
                      "control.cell-4-us-west-2-1.prod.a.momentohq.com:443");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN),
                      "token.cell-4-us-west-2-1.prod.a.momentohq.com:443");
  assert_null(mim_credentials_host(c, (mim_host_kind)3));
  mim_credentials_free(c);
  free(key);
}

static void test_v1_unpadded_and_whitespace(void **state) {
  (void)state;
  /* 37 bytes of JSON: base64 ends in one '=' that we strip. */
  char *key = b64_str("{\"endpoint\":\"e.com\",\"api_key\":\"tok1\"}");
  size_t n = strlen(key);
  assert_int_equal(key[n - 1], '=');
  while (n > 0 && key[n - 1] == '=')
    key[--n] = '\0';
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(key, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), "tok1");
  mim_credentials_free(c);
  /* A trailing newline (key read from a file) is tolerated. */
  char buf[256];
  snprintf(buf, sizeof buf, "  %s\n", key);
  assert_int_equal(mim_credentials_from_string(buf, &c), MIM_OK);
  assert_string_equal(mim_credentials_endpoint(c), "e.com");
  mim_credentials_free(c);
  free(key);
}

static void test_v1_host_port(void **state) {
  (void)state;
  static const char *const eps[] = {"127.0.0.1:8080", "[::1]:9000", "localhost:8080"};
  for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
    char json[256];
    snprintf(json, sizeof json, "{\"endpoint\":\"%s\",\"api_key\":\"%s\"}", eps[i], SECRET);
    char *key = b64_str(json);
    mim_credentials *c = NULL;
    assert_int_equal(mim_credentials_from_string(key, &c), MIM_OK);
    assert_string_equal(mim_credentials_endpoint(c), eps[i]);
    assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), eps[i]);
    assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL), eps[i]);
    assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), eps[i]);
    mim_credentials_free(c);
    free(key);
  }
}

static void test_jwt_good(void **state) {
  (void)state;
  char *jwt = make_jwt("{\"sub\":\"me@example.com\",\"ver\":1,"
                       "\"c\":\"cache.cell-1.prod.a.momentohq.com\","
                       "\"cp\":\"control.cell-1.prod.a.momentohq.com\"}");
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(jwt, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), jwt);
  assert_string_equal(mim_credentials_endpoint(c), "");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE),
                      "cache.cell-1.prod.a.momentohq.com:443");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL),
                      "control.cell-1.prod.a.momentohq.com:443");
  /* The claims name no token host: the cache host serves it (as in the official SDKs). */
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN),
                      "cache.cell-1.prod.a.momentohq.com:443");
  mim_credentials_free(c);
  free(jwt);
}

static void test_jwt_hosts_with_port(void **state) {
  (void)state;
  char *jwt = make_jwt("{\"c\":\"127.0.0.1:8080\",\"cp\":\"127.0.0.1:8081\"}");
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(jwt, &c), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "127.0.0.1:8080");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL), "127.0.0.1:8081");
  /* No "cache." prefix to swap: the token service is looked for on the cache host. */
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "127.0.0.1:8080");
  mim_credentials_free(c);
  free(jwt);
}

static void test_v2_key_and_endpoint(void **state) {
  (void)state;
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "example.momentohq.com", &c),
                   MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), SECRET);
  assert_string_equal(mim_credentials_endpoint(c), "example.momentohq.com");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "cache.example.momentohq.com:443");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "token.example.momentohq.com:443");
  mim_credentials_free(c);
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "localhost:8080", &c), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL), "localhost:8080");
  mim_credentials_free(c);
  /* An IP address without a port takes no plane prefix. */
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "127.0.0.1", &c), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "127.0.0.1:443");
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "127.0.0.1:443");
  mim_credentials_free(c);
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "[::1]", &c), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL), "[::1]:443");
  mim_credentials_free(c);
}

static void expect_v2_invalid(const char *key, const char *endpoint) {
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(key, endpoint, &c),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  assert_true(strlen(mim_last_error_detail()) > 0);
  assert_null(strstr(mim_last_error_detail(), SECRET));
}

static void test_v2_bad(void **state) {
  (void)state;
  expect_v2_invalid(NULL, "e.com");
  expect_v2_invalid(SECRET, NULL);
  expect_v2_invalid("", "e.com");
  expect_v2_invalid(SECRET, "");
  expect_v2_invalid(SECRET, "e.com\n");
  expect_v2_invalid(SECRET, "e .com");
  expect_v2_invalid(SECRET, "https://e.com");
  expect_v2_invalid(SECRET, "e.com:99999");
  expect_v2_invalid(SECRET "\x01", "e.com");
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "e.com", NULL),
                   MIM_ERR_INVALID_ARGUMENT);
}

static void test_env(void **state) {
  (void)state;
  const char *var = "MIM_TEST_CRED_ENV";
  mim_credentials *c = NULL;
  unsetenv(var);
  assert_int_equal(mim_credentials_from_env(var, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  assert_non_null(strstr(mim_last_error_detail(), var));
  setenv(var, "", 1);
  assert_int_equal(mim_credentials_from_env(var, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_true(strlen(mim_last_error_detail()) > 0);
  char *key = b64_str("{\"endpoint\":\"env.example.com\",\"api_key\":\"" SECRET "\"}");
  setenv(var, key, 1);
  assert_int_equal(mim_credentials_from_env(var, &c), MIM_OK);
  assert_string_equal(mim_credentials_endpoint(c), "env.example.com");
  mim_credentials_free(c);
  unsetenv(var);

  /* NULL name means MOMENTO_API_KEY; restore whatever the environment had. */
  const char *saved = getenv("MOMENTO_API_KEY");
  char *saved_copy = saved ? strdup(saved) : NULL;
  setenv("MOMENTO_API_KEY", key, 1);
  assert_int_equal(mim_credentials_from_env(NULL, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), SECRET);
  mim_credentials_free(c);
  unsetenv("MOMENTO_API_KEY");
  assert_int_equal(mim_credentials_from_env(NULL, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "MOMENTO_API_KEY"));
  if (saved_copy) {
    setenv("MOMENTO_API_KEY", saved_copy, 1);
    free(saved_copy);
  }
  /* A malformed value is reported without echoing it. */
  setenv(var, "not base64 !!", 1);
  assert_int_equal(mim_credentials_from_env(var, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(strstr(mim_last_error_detail(), "not base64 !!"));
  unsetenv(var);
  free(key);
}

static void test_set_host(void **state) {
  (void)state;
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "example.com", &c), MIM_OK);
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CACHE, "127.0.0.1:9999"), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "127.0.0.1:9999");
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CONTROL, "ctl.example.net"), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CONTROL), "ctl.example.net:443");
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_TOKEN, "[::1]:7000"), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "[::1]:7000");
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_TOKEN, "::1"), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "[::1]:443");
  /* Bad overrides leave the old value in place. */
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CACHE, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CACHE, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CACHE, "a\tb"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_set_host(c, (mim_host_kind)7, "x:1"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_set_host(NULL, MIM_HOST_CACHE, "x:1"), MIM_ERR_INVALID_ARGUMENT);
  static const char *const bad_hosts[] = {"host:abc", "host:0",  "host:70000", "a/b",
                                          "[::1",     "[::1]x",  "[]:80",      ":8080",
                                          "host:",    "h@st:80", "[::1]:",     "::g"};
  for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
    if (mim_credentials_set_host(c, MIM_HOST_CACHE, bad_hosts[i]) != MIM_ERR_INVALID_ARGUMENT)
      fail_msg("host \"%s\" was accepted", bad_hosts[i]);
    assert_true(strlen(mim_last_error_detail()) > 0);
  }
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "127.0.0.1:9999");
  assert_string_equal(mim_credentials_endpoint(c), "example.com");
  assert_int_equal(mim_credentials_set_host(c, MIM_HOST_CACHE, "my_host.local:65535"), MIM_OK);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "my_host.local:65535");
  mim_credentials_free(c);
}

static void test_copy(void **state) {
  (void)state;
  mim_credentials *a = NULL, *b = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(SECRET, "example.com", &a), MIM_OK);
  assert_int_equal(mim_credentials_set_host(a, MIM_HOST_CACHE, "localhost:1234"), MIM_OK);
  assert_int_equal(mim_credentials_copy(a, &b), MIM_OK);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(mim_credentials_auth_token(a), mim_credentials_auth_token(b));
  assert_string_equal(mim_credentials_auth_token(b), SECRET);
  assert_string_equal(mim_credentials_endpoint(b), "example.com");
  assert_string_equal(mim_credentials_host(b, MIM_HOST_CACHE), "localhost:1234");
  assert_string_equal(mim_credentials_host(b, MIM_HOST_CONTROL), "control.example.com:443");
  mim_credentials_free(a);
  /* The copy outlives the original. */
  assert_string_equal(mim_credentials_host(b, MIM_HOST_TOKEN), "token.example.com:443");
  mim_credentials_free(b);
  assert_int_equal(mim_credentials_copy(NULL, &b), MIM_ERR_INVALID_ARGUMENT);
  assert_null(b);
}

static void test_null_accessors(void **state) {
  (void)state;
  assert_null(mim_credentials_host(NULL, MIM_HOST_CACHE));
  assert_null(mim_credentials_endpoint(NULL));
  assert_null(mim_credentials_auth_token(NULL));
  mim_credentials_free(NULL);
}

static void test_encode_v1_round_trip(void **state) {
  (void)state;
  char *enc = NULL;
  assert_int_equal(mim_credentials_encode_v1("cell-9.example.com", SECRET, &enc), MIM_OK);
  assert_non_null(enc);
  /* Standard alphabet, padded. */
  assert_int_equal(strlen(enc) % 4, 0);
  assert_null(strpbrk(enc, "-_."));
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(enc, &c), MIM_OK);
  assert_string_equal(mim_credentials_endpoint(c), "cell-9.example.com");
  assert_string_equal(mim_credentials_auth_token(c), SECRET);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_CACHE), "cache.cell-9.example.com:443");
  mim_credentials_free(c);
  free(enc);

  /* A JWT as the token and a local endpoint with a port also survive. */
  char *jwt = make_jwt("{\"c\":\"cache.x\",\"cp\":\"control.x\"}");
  assert_int_equal(mim_credentials_encode_v1("127.0.0.1:8080", jwt, &enc), MIM_OK);
  assert_int_equal(mim_credentials_from_string(enc, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), jwt);
  assert_string_equal(mim_credentials_host(c, MIM_HOST_TOKEN), "127.0.0.1:8080");
  mim_credentials_free(c);
  free(enc);
  free(jwt);

  /* Big tokens round-trip as long as the encoding stays within the parser's limit. */
  size_t big_len = 40 * 1024;
  char *big = malloc(big_len + 1);
  assert_non_null(big);
  memset(big, 'k', big_len);
  big[big_len] = '\0';
  assert_int_equal(mim_credentials_encode_v1("e.com", big, &enc), MIM_OK);
  assert_int_equal(mim_credentials_from_string(enc, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), big);
  mim_credentials_free(c);
  free(enc);
  enc = NULL;
  big_len = 49 * 1024; /* base64 of the JSON would exceed 64 KiB */
  big = realloc(big, big_len + 1);
  assert_non_null(big);
  memset(big, 'k', big_len);
  big[big_len] = '\0';
  assert_int_equal(mim_credentials_encode_v1("e.com", big, &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_null(enc);
  assert_null(strstr(mim_last_error_detail(), "kkkk"));
  free(big);

  assert_int_equal(mim_credentials_encode_v1(NULL, SECRET, &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_encode_v1("e.com", NULL, &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_encode_v1("", SECRET, &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_credentials_encode_v1("e.com", "", &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_null(enc);
  assert_int_equal(mim_credentials_encode_v1("e.com", SECRET, NULL), MIM_ERR_INVALID_ARGUMENT);
}

/* ---- bad keys ---- */

static void test_bad_null_empty(void **state) {
  (void)state;
  expect_invalid(NULL, NULL);
  expect_invalid("", NULL);
  expect_invalid("   \n", NULL);
  assert_int_equal(mim_credentials_from_string("abcd", NULL), MIM_ERR_INVALID_ARGUMENT);
}

static void test_bad_base64(void **state) {
  (void)state;
  char *key = b64_str("{\"endpoint\":\"e.com\",\"api_key\":\"" SECRET "\"}");
  /* Truncated by one character: a length no base64 can have. */
  size_t n = strlen(key);
  char *cut = strdup(key);
  while (n > 0 && cut[n - 1] == '=')
    cut[--n] = '\0';
  while (n % 4 != 1)
    cut[--n] = '\0';
  expect_invalid(cut, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "base64"));
  /* Truncated on a quantum boundary: decodes, but to incomplete JSON. */
  cut[n - 1] = '\0';
  expect_invalid(cut, SECRET);
  free(cut);
  /* Characters outside the alphabet. */
  char *bad = strdup(key);
  bad[5] = '*';
  expect_invalid(bad, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "not valid base64"));
  bad[5] = '-'; /* url alphabet is not accepted for v1 keys */
  expect_invalid(bad, SECRET);
  free(bad);
  expect_invalid("abc=d===", NULL);
  expect_invalid("====", NULL);
  expect_invalid("ab\x01"
                 "cd",
                 NULL);
  free(key);
}

static void test_bad_json(void **state) {
  (void)state;
  expect_invalid_b64_json("this is not json " SECRET);
  expect_invalid_b64_json("[\"endpoint\",\"" SECRET "\"]");
  expect_invalid_b64_json("\"" SECRET "\"");
  expect_invalid_b64_json("{\"api_key\":\"" SECRET "\"}");
  assert_non_null(strstr(mim_last_error_detail(), "endpoint"));
  expect_invalid_b64_json("{\"endpoint\":\"e.com\"}");
  assert_non_null(strstr(mim_last_error_detail(), "api_key"));
  expect_invalid_b64_json("{\"endpoint\":42,\"api_key\":\"" SECRET "\"}");
  assert_non_null(strstr(mim_last_error_detail(), "endpoint"));
  expect_invalid_b64_json("{\"endpoint\":\"e.com\",\"api_key\":[\"" SECRET "\"]}");
  assert_non_null(strstr(mim_last_error_detail(), "api_key"));
  expect_invalid_b64_json("{\"endpoint\":null,\"api_key\":\"" SECRET "\"}");
  expect_invalid_b64_json("{\"endpoint\":\"\",\"api_key\":\"" SECRET "\"}");
  expect_invalid_b64_json("{\"endpoint\":\"e.com\",\"api_key\":\"\"}");
  /* NUL and control characters inside the endpoint. */
  expect_invalid_b64_json("{\"endpoint\":\"e\\u0000.com\",\"api_key\":\"" SECRET "\"}");
  expect_invalid_b64_json("{\"endpoint\":\"e.com\\nHost: evil\",\"api_key\":\"" SECRET "\"}");
  expect_invalid_b64_json("{\"endpoint\":\"e\\u0007.com\",\"api_key\":\"" SECRET "\"}");
  expect_invalid_b64_json("{\"endpoint\":\"e.com\",\"api_key\":\"" SECRET "\\r\\nx: y\"}");
  /* Trailing garbage after the object. */
  expect_invalid_b64_json("{\"endpoint\":\"e.com\",\"api_key\":\"" SECRET "\"} x");
}

static void test_bad_jwt(void **state) {
  (void)state;
  char *h = b64url("{\"alg\":\"HS512\"}");
  char *claims = b64url("{\"c\":\"cache.x\",\"cp\":\"control.x\",\"s\":\"" SECRET "\"}");
  char two[512];
  snprintf(two, sizeof two, "%s.%s", h, claims);
  expect_invalid(two, SECRET);
  char four[512];
  snprintf(four, sizeof four, "%s.%s.sig.more", h, claims);
  expect_invalid(four, SECRET);
  char empty_claims[512];
  snprintf(empty_claims, sizeof empty_claims, "%s..sig", h);
  expect_invalid(empty_claims, NULL);
  expect_invalid("...", NULL);

  char *jwt = make_jwt("{\"sub\":\"" SECRET "\"}");
  expect_invalid(jwt, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "\"c\""));
  free(jwt);
  jwt = make_jwt("{\"c\":\"cache.x\",\"s\":\"" SECRET "\"}");
  expect_invalid(jwt, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "\"cp\""));
  free(jwt);
  /* A global (v2) key passed where an endpoint-carrying key is expected. */
  jwt = make_jwt("{\"t\":\"g\",\"id\":\"" SECRET "\"}");
  expect_invalid(jwt, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "mim_credentials_from_key_and_endpoint"));
  /* ... which works with an endpoint. */
  mim_credentials *g = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(jwt, "example.com", &g), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(g), jwt);
  mim_credentials_free(g);
  free(jwt);
  jwt = make_jwt("{\"c\":17,\"cp\":\"control.x\"}");
  expect_invalid(jwt, NULL);
  free(jwt);
  jwt = make_jwt("not json at all");
  expect_invalid(jwt, NULL);
  free(jwt);
  jwt = make_jwt("[1,2]");
  expect_invalid(jwt, NULL);
  free(jwt);

  /* Bad base64url in the claims and in the signature. */
  char bad[512];
  snprintf(bad, sizeof bad, "%s.%s*.sig", h, claims);
  expect_invalid(bad, SECRET);
  assert_non_null(strstr(mim_last_error_detail(), "base64"));
  snprintf(bad, sizeof bad, "%s.%s.si+g", h, claims);
  expect_invalid(bad, SECRET);
  snprintf(bad, sizeof bad, "%s.%sA.sig", h, claims); /* one char too many */
  if ((strlen(claims) + 1) % 4 == 1)
    expect_invalid(bad, SECRET);
  snprintf(bad, sizeof bad, "%s!.%s.sig", h, claims);
  expect_invalid(bad, SECRET);
  free(h);
  free(claims);
}

static void test_bad_huge(void **state) {
  (void)state;
  size_t n = 1024 * 1024;
  char *huge = malloc(n + 1);
  assert_non_null(huge);
  memset(huge, 'A', n);
  huge[n] = '\0';
  expect_invalid(huge, NULL);
  assert_non_null(strstr(mim_last_error_detail(), "longer"));
  /* A syntactically valid but oversized v1 key is refused too. */
  size_t tok = 70 * 1024;
  char *json = malloc(tok + 64);
  assert_non_null(json);
  int off = snprintf(json, 64, "{\"endpoint\":\"e.com\",\"api_key\":\"");
  memset(json + off, 'k', tok);
  strcpy(json + off + tok, "\"}");
  char *key = b64_str(json);
  expect_invalid(key, NULL);
  char *enc = NULL;
  json[off + tok] = '\0';
  assert_int_equal(mim_credentials_encode_v1("e.com", json + off, &enc), MIM_ERR_INVALID_ARGUMENT);
  assert_null(enc);
  free(key);
  free(json);
  free(huge);
}

static void test_bad_binary_garbage(void **state) {
  (void)state;
  /* Raw bytes as a key string. */
  char raw[64];
  for (size_t i = 0; i < sizeof raw - 1; i++)
    raw[i] = (char)(0x80 + (i * 37) % 0x7f);
  raw[sizeof raw - 1] = '\0';
  expect_invalid(raw, NULL);
  /* base64 of binary garbage. */
  unsigned char bin[96];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof bin; i++) {
    x = x * 1103515245u + 12345u;
    bin[i] = (unsigned char)(x >> 24);
  }
  char *key = b64(bin, sizeof bin);
  expect_invalid(key, NULL);
  free(key);
  /* Valid-looking JSON bytes with a NUL in the middle. */
  static const char nul_json[] = "{\"endpoint\":\"e.com\"\0,\"api_key\":\"" SECRET "\"}";
  key = b64(nul_json, sizeof nul_json - 1);
  expect_invalid(key, SECRET);
  free(key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v1_good),
      cmocka_unit_test(test_v1_unpadded_and_whitespace),
      cmocka_unit_test(test_v1_host_port),
      cmocka_unit_test(test_jwt_good),
      cmocka_unit_test(test_jwt_hosts_with_port),
      cmocka_unit_test(test_v2_key_and_endpoint),
      cmocka_unit_test(test_v2_bad),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_set_host),
      cmocka_unit_test(test_copy),
      cmocka_unit_test(test_null_accessors),
      cmocka_unit_test(test_encode_v1_round_trip),
      cmocka_unit_test(test_bad_null_empty),
      cmocka_unit_test(test_bad_base64),
      cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_bad_jwt),
      cmocka_unit_test(test_bad_huge),
      cmocka_unit_test(test_bad_binary_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
