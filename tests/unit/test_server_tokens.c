/* mim-local's tokens under attack (issue 13, items 1-3): one spelling per token, no
 * minting by disposable tokens (so no child outlives its parent or takes another
 * identity), and subscriptions that end when their token expires. One server whose HMAC
 * secret is ours, so tests can sign token texts the minting code would never write. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "base64.h"
#include "cacheclient.pb-c.h"
#include "raw_client.h"
#include "time_scale.h"
#include "token.pb-c.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CACHE "tokens"
#define M_PUSH "/cache_client.Scs/ListPushBack"
#define M_TOKEN "/token.Token/GenerateDisposableToken"

static mim_local *srv;
static mim_transport *root; /* root token, all planes */
static char g_dir[64];
static char g_secret_file[128];
static uint8_t g_secret[32];

static int write_secret(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/mim-tokens-XXXXXX");
  if (!mkdtemp(g_dir)) {
    return -1;
  }
  snprintf(g_secret_file, sizeof g_secret_file, "%s/secret", g_dir);
  FILE *f = fopen(g_secret_file, "w");
  if (!f) {
    return -1;
  }
  for (size_t i = 0; i < sizeof g_secret; i++) {
    g_secret[i] = (uint8_t)(i * 53 + 7);
    fprintf(f, "%02x", g_secret[i]);
  }
  fputc('\n', f);
  return fclose(f) == 0 ? 0 : -1;
}

static int setup(void **state) {
  (void)state;
  if (write_secret() != 0) {
    return -1;
  }
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {"--auth-secret-file", g_secret_file, NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  if (mim_local_start(&o, &srv) != 0) {
    return -1;
  }
  root = raw_connect(srv, NULL);
  return root ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_transport_free(root);
  int rc = mim_local_stop(srv);
  unlink(g_secret_file);
  rmdir(g_dir);
  return rc;
}

static mim_status push_back(mim_transport *t, const char *list) {
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name.data = (uint8_t *)list;
  r.list_name.len = strlen(list);
  r.value.data = (uint8_t *)"v";
  r.value.len = 1;
  return raw_call(t, M_PUSH, CACHE, &r.base, NULL, NULL);
}

/* The status a call made with token gets (a fresh transport each time). */
static mim_status push_with(const char *token) {
  mim_transport *t = raw_connect(srv, token);
  assert_non_null(t);
  mim_status st = push_back(t, "spelling");
  mim_transport_free(t);
  return st;
}

/* ---- item 3: one spelling per token ---- */

/* signed_part + "." + mac64, where mac64 is the url encoding of the HMAC of signed_part. */
static char *sign_text(const char *signed_part) {
  uint8_t mac[32];
  unsigned mlen = 0;
  assert_non_null(HMAC(EVP_sha256(), g_secret, sizeof g_secret, (const uint8_t *)signed_part,
                       strlen(signed_part), mac, &mlen));
  char *m64 = cmn_b64_encode(mac, sizeof mac, CMN_B64_URL);
  assert_non_null(m64);
  size_t n = strlen(signed_part) + 1 + strlen(m64) + 1;
  char *tok = malloc(n);
  assert_non_null(tok);
  snprintf(tok, n, "%s.%s", signed_part, m64);
  free(m64);
  return tok;
}

/* "mim1." + p64 with a super-user payload whose token id is "~~~~~~-<i>". */
static char *signed_part_for(unsigned i, size_t *payload_len) {
  char id[32];
  /* Five or more "~" (0x7e) hold an aligned "~~~", which encodes as "fn5-". */
  snprintf(id, sizeof id, "~~~~~~-%u", i);
  uint8_t p[64];
  uint64_t exp = (uint64_t)time(NULL) + 3600;
  p[0] = 1;
  for (int k = 0; k < 8; k++) {
    p[1 + k] = (uint8_t)(exp >> (56 - 8 * k));
  }
  size_t idl = strlen(id);
  p[9] = 0;
  p[10] = (uint8_t)idl;
  memcpy(p + 11, id, idl);
  p[11 + idl] = 0x08; /* Permissions{super_user = SuperUser} */
  p[12 + idl] = 0x00;
  *payload_len = 13 + idl;
  char *p64 = cmn_b64_encode(p, *payload_len, CMN_B64_URL);
  assert_non_null(p64);
  size_t n = strlen(p64) + 6;
  char *s = malloc(n);
  assert_non_null(s);
  snprintf(s, n, "mim1.%s", p64);
  free(p64);
  return s;
}

static bool has_url_char(const char *s) {
  return strpbrk(s, "-_") != NULL;
}

/* A genuine token whose payload and MAC both hold a '-' or '_' and whose payload leaves
 * spare bits, so every kind of second spelling can be made of it. */
static char *spellable_token(void) {
  for (unsigned i = 0; i < 1000; i++) {
    size_t plen = 0;
    char *sp = signed_part_for(i, &plen);
    char *tok = sign_text(sp);
    const char *mac = strrchr(tok, '.') + 1;
    bool ok = plen % 3 != 0 && has_url_char(sp + 5) && has_url_char(mac);
    free(sp);
    if (ok) {
      return tok;
    }
    free(tok);
  }
  fail_msg("no token with '-'/'_' in both parts among 1000");
  return NULL;
}

static char to_std(char c) {
  static const char from[] = "-_", to[] = "+/";
  const char *at = strchr(from, c);
  if (at && c) {
    return to[at - from];
  }
  return c;
}

/* c with its 6-bit value xor x (url alphabet). */
static char flip_bits(char c, int x) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const char *at = strchr(abc, c);
  assert_non_null(at);
  return abc[((at - abc) ^ x) & 63];
}

/* Re-signs tok's payload text after edit changed it (the MAC covers the text). */
static char *resigned(const char *tok, void (*edit)(char *signed_part, size_t cap)) {
  const char *dot = strrchr(tok, '.');
  size_t n = (size_t)(dot - tok);
  char sp[512];
  assert_true(n + 3 < sizeof sp);
  memcpy(sp, tok, n);
  sp[n] = '\0';
  edit(sp, sizeof sp);
  return sign_text(sp);
}

static void pad_payload(char *sp, size_t cap) {
  strncat(sp, "=", cap - strlen(sp) - 1);
}

static void std_payload(char *sp, size_t cap) {
  (void)cap;
  for (char *c = sp + 5; *c; c++) {
    *c = to_std(*c);
  }
}

static void spare_bit_payload(char *sp, size_t cap) {
  (void)cap;
  size_t n = strlen(sp);
  sp[n - 1] = flip_bits(sp[n - 1], 1);
}

/* Whether the variant is refused as it must be (says so on stderr if not). */
static bool refused(const char *variant, const char *what) {
  mim_status st = push_with(variant);
  if (st != MIM_ERR_UNAUTHENTICATED) {
    fprintf(stderr, "token variant \"%s\": %s (want UNAUTHENTICATED)\n", what, mim_status_name(st));
  }
  return st == MIM_ERR_UNAUTHENTICATED;
}

static void test_one_spelling_per_token(void **state) {
  (void)state;
  char *good = spellable_token();
  size_t n = strlen(good);
  size_t mac_at = (size_t)(strrchr(good, '.') - good) + 1;
  /* The genuine spelling works (and is now in the verified-token cache). */
  assert_int_equal(push_with(good), MIM_OK);

  char *v[8];
  size_t nv = 0;
  const char *what[8];
  /* The MAC part: padding added, the standard alphabet, a spare bit set. */
  v[nv] = malloc(n + 3);
  assert_non_null(v[nv]);
  snprintf(v[nv], n + 3, "%s=", good);
  what[nv++] = "MAC padded with '='";
  v[nv] = malloc(n + 3);
  assert_non_null(v[nv]);
  snprintf(v[nv], n + 3, "%s==", good);
  what[nv++] = "MAC padded with '=='";
  v[nv] = strdup(good);
  assert_non_null(v[nv]);
  for (size_t i = mac_at; i < n; i++) {
    v[nv][i] = to_std(v[nv][i]);
  }
  what[nv++] = "MAC in the standard alphabet";
  v[nv] = strdup(good);
  assert_non_null(v[nv]);
  v[nv][n - 1] = flip_bits(v[nv][n - 1], 1);
  what[nv++] = "MAC with a spare bit set";
  /* The payload part, correctly signed as written: the MAC alone cannot tell. */
  v[nv] = resigned(good, pad_payload);
  what[nv++] = "payload padded with '='";
  v[nv] = resigned(good, std_payload);
  what[nv++] = "payload in the standard alphabet";
  v[nv] = resigned(good, spare_bit_payload);
  what[nv++] = "payload with a spare bit set";
  size_t accepted = 0;
  for (size_t i = 0; i < nv; i++) {
    assert_string_not_equal(v[i], good);
    accepted += !refused(v[i], what[i]);
    free(v[i]);
  }
  assert_int_equal(accepted, 0);
  /* And the genuine spelling still works. */
  assert_int_equal(push_with(good), MIM_OK);
  free(good);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_spelling_per_token),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
