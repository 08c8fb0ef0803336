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
#include "clock.h"
#include "raw_client.h"
#include "test_clock.h"
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

/* ---- item 1: only an API key mints ---- */

typedef struct minted {
  mim_status st;
  char *api_key; /* malloc'd raw token on MIM_OK */
  uint64_t valid_until;
} minted;

/* Publish+subscribe on every topic and read-write on every item of CACHE. */
typedef struct chat_perms {
  PermissionMessages__PermissionsType__CacheSelector sel;
  PermissionMessages__PermissionsType__All all;
  PermissionMessages__PermissionsType__CachePermissions cp;
  PermissionMessages__PermissionsType__TopicPermissions tp;
  PermissionMessages__PermissionsType g[2];
  PermissionMessages__PermissionsType *gs[2];
  PermissionMessages__ExplicitPermissions ex;
  PermissionMessages__Permissions p;
} chat_perms;

static void chat_perms_init(chat_perms *c) {
  c->sel = (PermissionMessages__PermissionsType__CacheSelector)
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__INIT;
  c->sel.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME;
  c->sel.cache_name = (char *)CACHE;
  c->all =
      (PermissionMessages__PermissionsType__All)PERMISSION_MESSAGES__PERMISSIONS_TYPE__ALL__INIT;
  c->cp = (PermissionMessages__PermissionsType__CachePermissions)
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  c->cp.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
  c->cp.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
  c->cp.cache_selector = &c->sel;
  c->tp = (PermissionMessages__PermissionsType__TopicPermissions)
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  c->tp.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite;
  c->tp.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
  c->tp.cache_selector = &c->sel;
  c->tp.topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_ALL_TOPICS;
  c->tp.all_topics = &c->all;
  for (int i = 0; i < 2; i++) {
    c->g[i] = (PermissionMessages__PermissionsType)PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
    c->gs[i] = &c->g[i];
  }
  c->g[0].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  c->g[0].cache_permissions = &c->cp;
  c->g[1].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  c->g[1].topic_permissions = &c->tp;
  c->ex = (PermissionMessages__ExplicitPermissions)PERMISSION_MESSAGES__EXPLICIT_PERMISSIONS__INIT;
  c->ex.n_permissions = 2;
  c->ex.permissions = c->gs;
  c->p = (PermissionMessages__Permissions)PERMISSION_MESSAGES__PERMISSIONS__INIT;
  c->p.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  c->p.explicit_ = &c->ex;
}

/* GenerateDisposableToken on t (its own token in the metadata, or body_token in the body). */
static minted mint_with(mim_transport *t, const char *body_token,
                        const PermissionMessages__Permissions *perms, uint32_t valid_for,
                        const char *token_id) {
  Token__GenerateDisposableTokenRequest__Expires e =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  e.valid_for_seconds = valid_for;
  Token__GenerateDisposableTokenRequest r = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  r.expires = &e;
  r.permissions = (PermissionMessages__Permissions *)perms;
  r.auth_token = (char *)(body_token ? body_token : "");
  r.token_id = (char *)token_id;
  minted m = {0};
  uint8_t *resp = NULL;
  size_t resp_len = 0;
  m.st = raw_call(t, M_TOKEN, NULL, &r.base, &resp, &resp_len);
  if (m.st == MIM_OK) {
    Token__GenerateDisposableTokenResponse *g =
        token____generate_disposable_token_response__unpack(NULL, resp_len, resp);
    assert_non_null(g);
    m.api_key = strdup(g->api_key);
    assert_non_null(m.api_key);
    m.valid_until = g->valid_until;
    token____generate_disposable_token_response__free_unpacked(g, NULL);
  }
  free(resp);
  return m;
}

/* The expiry written in a token's payload (epoch seconds). */
static uint64_t token_expiry(const char *tok) {
  const char *p64 = tok + 5, *dot = strrchr(tok, '.');
  uint8_t *p = NULL;
  size_t n = 0;
  assert_int_equal(
      cmn_b64_decode(p64, (size_t)(dot - p64), CMN_B64_URL, CMN_B64_PAD_OPTIONAL, &p, &n, NULL),
      CMN_B64_OK);
  assert_true(n > 9);
  uint64_t exp = 0;
  for (int i = 1; i <= 8; i++) {
    exp = exp << 8 | p[i];
  }
  free(p);
  return exp;
}

/* Whether the mint got want (says what it got on stderr if not); frees m. */
static bool refused_with(minted m, mim_status want, const char *what) {
  if (m.st != want) {
    fprintf(stderr, "%s: %s (want %s)", what, mim_status_name(m.st), mim_status_name(want));
    if (m.st == MIM_OK) {
      fprintf(stderr, ", minted a token valid until %llu (now %lld)",
              (unsigned long long)m.valid_until, (long long)time(NULL));
    }
    fputc('\n', stderr);
  }
  free(m.api_key);
  return m.st == want;
}

/* A disposable token cannot mint at all: not a longer-lived child, not another identity,
 * not even a narrower copy of itself; in the metadata or in the request body alike. */
static void test_disposable_token_cannot_mint(void **state) {
  (void)state;
  chat_perms cp;
  chat_perms_init(&cp);
  minted alice = mint_with(root, NULL, &cp.p, 60, "alice");
  assert_int_equal(alice.st, MIM_OK);
  mim_transport *t = raw_connect(srv, alice.api_key);
  assert_non_null(t);
  assert_int_equal(push_back(t, "alice-list"), MIM_OK); /* alice's token works */
  size_t wrong = 0;
  wrong += !refused_with(mint_with(t, NULL, &cp.p, UINT32_MAX, "alice"), MIM_ERR_PERMISSION_DENIED,
                         "60 s token minting for 2^32-1 s");
  wrong += !refused_with(mint_with(t, NULL, &cp.p, 30, "moderator"), MIM_ERR_PERMISSION_DENIED,
                         "alice minting token_id \"moderator\"");
  wrong += !refused_with(mint_with(t, NULL, &cp.p, 10, "alice"), MIM_ERR_PERMISSION_DENIED,
                         "alice minting a copy of herself");
  mim_transport_free(t);
  mim_transport *anon = raw_connect(srv, "");
  assert_non_null(anon);
  wrong +=
      !refused_with(mint_with(anon, alice.api_key, &cp.p, 30, "moderator"),
                    MIM_ERR_PERMISSION_DENIED, "alice's token in the body minting \"moderator\"");
  mim_transport_free(anon);
  assert_int_equal(wrong, 0);
  free(alice.api_key);
}

/* The API key mints, but never a child that outlives it, nor a super-user token (which
 * could mint again). */
static void test_api_key_children_bounded(void **state) {
  (void)state;
  char *root_tok = raw_root_token(srv);
  assert_non_null(root_tok);
  uint64_t root_exp = token_expiry(root_tok);
  free(root_tok);
  chat_perms cp;
  chat_perms_init(&cp);
  minted m = mint_with(root, NULL, &cp.p, UINT32_MAX, "long-lived");
  assert_int_equal(m.st, MIM_OK);
  if (m.valid_until > root_exp) {
    fprintf(stderr, "child valid until %llu, its parent until %llu\n",
            (unsigned long long)m.valid_until, (unsigned long long)root_exp);
  }
  assert_true(m.valid_until <= root_exp);
  assert_int_equal(token_expiry(m.api_key), m.valid_until); /* the reply tells the truth */
  free(m.api_key);
  /* An ordinary lifetime is not shortened. */
  uint64_t before = (uint64_t)time(NULL);
  m = mint_with(root, NULL, &cp.p, 60, "bob");
  assert_int_equal(m.st, MIM_OK);
  assert_in_range(m.valid_until, before + 60, (uint64_t)time(NULL) + 60);
  free(m.api_key);
  PermissionMessages__Permissions su = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  su.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  su.super_user = PERMISSION_MESSAGES__SUPER_USER_PERMISSIONS__SuperUser;
  assert_true(refused_with(mint_with(root, NULL, &su, 60, "su-child"), MIM_ERR_INVALID_ARGUMENT,
                           "the root key minting a super-user token"));
}

/* ---- item 2: a subscription ends with its token ---- */

static bool sub_closed(raw_sub *s) {
  pthread_mutex_lock(&s->mu);
  bool closed = s->closed;
  pthread_mutex_unlock(&s->mu);
  return closed;
}

/* Subscribed with a token valid 2 s while root publishes every 50 ms (both scaled by
 * test_time_scale()): the stream ends UNAUTHENTICATED within a heartbeat-thread tick of
 * the expiry (bound: 1 s, scaled), and no item published after the expiry reaches it. */
static void test_subscription_ends_at_token_expiry(void **state) {
  (void)state;
  const char *topic = "expiring";
  chat_perms cp;
  chat_perms_init(&cp);
  /* 2 s, longer where everything runs slower (valgrind), so it outlives the set-up. */
  int scale = test_time_scale();
  minted m = mint_with(root, NULL, &cp.p, (uint32_t)(2 * scale), "short-lived");
  assert_int_equal(m.st, MIM_OK);
  int64_t expiry_ms = (int64_t)m.valid_until * 1000;
  mim_transport *t = raw_connect(srv, m.api_key);
  assert_non_null(t);
  raw_sub *s = calloc(1, sizeof *s); /* leaked if an assertion fails: its stream may run */
  assert_non_null(s);
  raw_sub_init(s);
  assert_int_equal(raw_subscribe(t, CACHE, topic, 0, 0, s), MIM_OK);
  assert_true(raw_sub_wait(s, RAW_HEARTBEATS, 1, 5000 * scale));
  int64_t bound_ms = 1000LL * scale;
  uint64_t seq = 0, first_after = 0; /* a fresh topic numbers from 1 */
  int64_t closed_at = 0;
  while (cmn_wall_ms() < expiry_ms + bound_ms + 1000) {
    int64_t at = cmn_wall_ms();
    assert_int_equal(raw_publish(root, CACHE, topic, "x", 1, true), MIM_OK);
    seq++;
    if (at >= expiry_ms && first_after == 0) {
      first_after = seq;
    }
    if (sub_closed(s)) {
      closed_at = cmn_wall_ms();
      break;
    }
    test_sleep_ms(50LL * scale);
  }
  pthread_mutex_lock(&s->mu);
  size_t items = s->items;
  uint64_t last = s->last_seq;
  bool closed = s->closed;
  mim_status st = s->close_status;
  pthread_mutex_unlock(&s->mu);
  fprintf(stderr,
          "token expiry: %zu items delivered (last seq %llu), first publish after expiry seq "
          "%llu, stream %s %s %lld ms after expiry\n",
          items, (unsigned long long)last, (unsigned long long)first_after,
          closed ? "ended" : "still open", closed ? mim_status_name(st) : "",
          (long long)((closed ? closed_at : cmn_wall_ms()) - expiry_ms));
  assert_true(items > 0);       /* it did deliver while the token was valid */
  assert_true(first_after > 0); /* and publishing went on past the expiry */
  assert_true(last < first_after);
  assert_true(closed);
  assert_int_equal(st, MIM_ERR_UNAUTHENTICATED);
  assert_true(closed_at - expiry_ms <= bound_ms);
  raw_sub_destroy(s);
  free(s);
  mim_transport_free(t);
  free(m.api_key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_spelling_per_token),
      cmocka_unit_test(test_disposable_token_cannot_mint),
      cmocka_unit_test(test_api_key_children_bounded),
      cmocka_unit_test(test_subscription_ends_at_token_expiry),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
