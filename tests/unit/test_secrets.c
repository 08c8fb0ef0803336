/* Security defaults (issue 8, item 8):
 *  - keys and tokens never appear in the library's log lines (captured at MIM_LOG_DEBUG,
 *    gRPC's own lines included), in any mim_last_error_detail(), or in mim-local's
 *    stderr at --log-level debug, across a whole session with failing calls;
 *  - MIM_TLS_AUTO means TLS for every endpoint that is not a loopback address, and
 *    plaintext to a remote host needs MIM_TLS_OFF;
 *  - the buffers that held a secret are zeroed when freed (checked where the allocator
 *    hands the same block back at once: glibc's per-thread cache; skipped, and said so,
 *    under sanitizers and valgrind, whose allocators do not). */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "client_internal.h"
#include "mim_local.h"
#include "token_provider.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#define CACHE "secrets"
#define CHAT "room"

/* ---- captured text: log lines and error details ---- */

static struct {
  pthread_mutex_t mu;
  char *buf;
  size_t len, cap;
  int lines;
} cap = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0};

static void capture(const char *s) {
  size_t n = strlen(s);
  pthread_mutex_lock(&cap.mu);
  if (cap.len + n + 2 > cap.cap) {
    size_t nc = (cap.cap + n + 2) * 2;
    char *nb = realloc(cap.buf, nc);
    if (!nb) {
      pthread_mutex_unlock(&cap.mu);
      return;
    }
    cap.buf = nb;
    cap.cap = nc;
  }
  memcpy(cap.buf + cap.len, s, n);
  cap.len += n;
  cap.buf[cap.len++] = '\n';
  cap.buf[cap.len] = '\0';
  cap.lines++;
  pthread_mutex_unlock(&cap.mu);
}

static void log_cb(mim_log_level level, const char *message, void *user) {
  (void)level;
  (void)user;
  capture(message);
}

static int details;

/* Records the detail of a call's result (also of successes: it must be "" or harmless). */
static mim_status rec(mim_status st) {
  capture(mim_last_error_detail());
  details++;
  return st;
}

/* ---- secret search ---- */

/* Whether text holds the secret or any 16-byte piece of it (so a truncated or partly
 * quoted token counts too). */
static bool leaks(const char *text, const char *secret) {
  size_t n = strlen(secret);
  if (n <= 16)
    return strstr(text, secret) != NULL;
  char piece[17];
  for (size_t off = 0; off + 16 <= n; off += 4) {
    memcpy(piece, secret + off, 16);
    piece[16] = '\0';
    if (strstr(text, piece))
      return true;
  }
  return false;
}

typedef struct secret {
  const char *what;
  char *value;
} secret;

static secret secrets[8];
static int nsecrets;

static void add_secret(const char *what, const char *value) {
  assert_true(nsecrets < (int)(sizeof secrets / sizeof *secrets));
  assert_non_null(value);
  assert_true(strlen(value) > 16);
  secrets[nsecrets].what = what;
  secrets[nsecrets].value = strdup(value);
  assert_non_null(secrets[nsecrets].value);
  nsecrets++;
}

static int count_leaks(const char *where, const char *text) {
  int found = 0;
  for (int i = 0; i < nsecrets; i++)
    if (leaks(text, secrets[i].value)) {
      fprintf(stderr, "  %s contains (part of) %s\n", where, secrets[i].what);
      found++;
    }
  return found;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t cap_n = 1 << 16, n = 0;
  char *b = malloc(cap_n + 1);
  assert_non_null(b);
  size_t r;
  while ((r = fread(b + n, 1, cap_n - n, f)) > 0) {
    n += r;
    if (n == cap_n) {
      cap_n *= 2;
      b = realloc(b, cap_n + 1);
      assert_non_null(b);
    }
  }
  fclose(f);
  b[n] = '\0';
  return b;
}

/* ---- (a) a whole session, then grep ---- */

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)m;
  (void)user;
}

static mim_client *client_for(const char *key, const char *cache_host, int64_t deadline) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = cache_host;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = deadline;
  mim_client *c = NULL;
  assert_int_equal(rec(mim_client_create(&o, &c)), MIM_OK);
  return c;
}

/* The token's auth token with one character changed, re-encoded as a credential. */
static char *tampered(const mim_disposable_token *t) {
  char *key = strdup(t->api_key);
  assert_non_null(key);
  size_t i = strlen(key) / 2;
  key[i] = key[i] == 'A' ? 'z' : 'A';
  char *cred = NULL;
  assert_int_equal(mim_credentials_encode_v1(t->endpoint, key, &cred), MIM_OK);
  free(key);
  return cred;
}

static void run_session(mim_local *srv) {
  mim_client *root = client_for(srv->root_key, NULL, 10000);
  mim_disposable_token *user = NULL, *mod = NULL;
  assert_int_equal(rec(mim_token_generate_client_only(root, CACHE, CHAT, 600, "alice", &user)),
                   MIM_OK);
  assert_int_equal(rec(mim_token_generate_moderated(root, CACHE, CHAT, 600, "bob", &mod)), MIM_OK);
  add_secret("the user token's credential", user->credential);
  add_secret("the user token's api_key", user->api_key);
  add_secret("the moderated token's credential", mod->credential);
  add_secret("the moderated token's api_key", mod->api_key);

  /* Parsing a credential with a tampered body reports what is wrong, not the key. */
  mim_credentials *cr = NULL;
  char *bad = strdup(user->credential);
  assert_non_null(bad);
  bad[strlen(bad) / 2] = '%';
  assert_int_equal(rec(mim_credentials_from_string(bad, &cr)), MIM_ERR_INVALID_ARGUMENT);
  free(bad);

  mim_client *alice = client_for(user->credential, NULL, 10000);
  mim_session *s = NULL;
  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.display_name = "alice";
  assert_int_equal(rec(mim_join(alice, CACHE, CHAT, &jo, on_message, NULL, &s)), MIM_OK);
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(rec(mim_send(s, "hello", id)), MIM_OK);
  mim_message_list *hist = NULL;
  assert_int_equal(rec(mim_history(s, 0, &hist)), MIM_OK);
  mim_message_list_free(hist);
  /* Denied calls: another chat, minting more than the token holds. */
  mim_list_values *v = NULL;
  assert_int_equal(rec(mim_list_fetch(alice, CACHE, "other", NULL, &v)), MIM_ERR_PERMISSION_DENIED);
  mim_disposable_token *t2 = NULL;
  assert_int_equal(rec(mim_token_generate_client_only(alice, CACHE, "other", 60, NULL, &t2)),
                   MIM_ERR_PERMISSION_DENIED);
  mim_leave(s);
  mim_client_free(alice);

  /* A tampered token: the server refuses it; nothing about it may be echoed. */
  char *cred = tampered(user);
  mim_client *eve = client_for(cred, NULL, 10000);
  free(cred);
  assert_int_equal(rec(mim_list_fetch(eve, CACHE, CHAT, NULL, &v)), MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(rec(mim_topic_publish_text(eve, CACHE, CHAT, "x")), MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(rec(mim_join(eve, CACHE, CHAT, NULL, on_message, NULL, &s)),
                   MIM_ERR_UNAUTHENTICATED);
  mim_client_free(eve);

  /* Nobody listens on port 1. */
  mim_client *lost = client_for(srv->root_key, "127.0.0.1:1", 2000);
  assert_int_not_equal(rec(mim_client_ping(lost)), MIM_OK);
  assert_int_not_equal(rec(mim_list_fetch(lost, CACHE, CHAT, NULL, &v)), MIM_OK);
  mim_client_free(lost);

  mim_disposable_token_free(user);
  mim_disposable_token_free(mod);
  mim_client_free(root);
}

static void test_no_secret_in_logs(void **state) {
  (void)state;
  /* mim-local's stderr goes to a file: the child inherits our fd 2 while it starts. */
  char path[] = "/tmp/mim-secrets-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  assert_true(saved >= 0);
  assert_true(dup2(fd, 2) == 2);
  static const char *const caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .log_level = "debug"};
  mim_local *srv = NULL;
  int started = mim_local_start(&o, &srv);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  if (started != 0) { /* show why: the helper's messages went to the file too */
    char *why = read_file(path);
    fprintf(stderr, "%s", why);
    free(why);
    unlink(path);
  }
  assert_int_equal(started, 0);

  mim_credentials *root_creds = NULL;
  assert_int_equal(mim_credentials_from_string(srv->root_key, &root_creds), MIM_OK);
  add_secret("the root key", srv->root_key);
  add_secret("the root key's api_key", mim_credentials_auth_token(root_creds));
  mim_credentials_free(root_creds);

  mim_set_log_callback(log_cb, MIM_LOG_DEBUG, NULL);
  run_session(srv);
  mim_set_log_callback(NULL, MIM_LOG_DEBUG, NULL);
  assert_int_equal(mim_local_stop(srv), 0);

  char *server_log = read_file(path);
  unlink(path);
  printf("[secrets] %d secrets; %d library log lines and error details (%d details), %zu bytes "
         "of mim-local debug log checked\n",
         nsecrets, cap.lines, details, strlen(server_log));
  /* The checks must have something to look at. */
  assert_true(cap.lines > details);
  assert_non_null(strstr(server_log, "debug"));
  int found = count_leaks("the library's logs/details", cap.buf) +
              count_leaks("mim-local's debug log", server_log);
  free(server_log);
  for (int i = 0; i < nsecrets; i++)
    free(secrets[i].value);
  nsecrets = 0;
  free(cap.buf);
  cap.buf = NULL;
  cap.len = cap.cap = 0;
  assert_int_equal(found, 0);
}

/* The search itself finds a secret (so a clean result above means something). */
static void test_leak_search_finds_pieces(void **state) {
  (void)state;
  const char *secret = "c2VjcmV0LXRva2VuLXZhbHVlLWZvci10ZXN0aW5n";
  assert_true(leaks(secret, secret));
  assert_true(leaks("prefix c2VjcmV0LXRva2VuLXZh suffix", secret)); /* a 24-byte piece */
  assert_false(leaks("nothing like it in here at all", secret));
}

/* ---- (b) TLS by default ---- */

/* Whether a client for this key and cache host would use TLS (no traffic happens). */
static bool uses_tls(const char *key, const char *cache_host, mim_tls_mode mode) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = cache_host;
  o.tls = mode;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  bool tls = mim_client_uses_tls(c);
  mim_client_free(c);
  return tls;
}

static void test_tls_default(void **state) {
  (void)state;
  char *local = NULL, *remote = NULL;
  assert_int_equal(mim_credentials_encode_v1("127.0.0.1:9", "token-for-tls-test", &local), MIM_OK);
  assert_int_equal(mim_credentials_encode_v1("example.com", "token-for-tls-test", &remote), MIM_OK);
  /* Remote: TLS unless turned off explicitly. */
  assert_true(uses_tls(remote, NULL, MIM_TLS_AUTO));
  assert_true(uses_tls(local, "cache.example.com:443", MIM_TLS_AUTO));
  assert_true(uses_tls(local, "10.1.2.3:443", MIM_TLS_AUTO));
  assert_true(uses_tls(local, "[2001:db8::1]:443", MIM_TLS_AUTO));
  /* Names that only look local. */
  assert_true(uses_tls(local, "127.example.com:443", MIM_TLS_AUTO));
  assert_true(uses_tls(local, "127.0.0.1.example.com:443", MIM_TLS_AUTO));
  assert_true(uses_tls(local, "localhost.example.com:443", MIM_TLS_AUTO));
  assert_true(uses_tls(local, "localhostx:443", MIM_TLS_AUTO));
  assert_false(uses_tls(remote, NULL, MIM_TLS_OFF));
  assert_false(uses_tls(local, "cache.example.com:443", MIM_TLS_OFF));
  /* Loopback only: plaintext in AUTO, TLS when asked for. */
  assert_false(uses_tls(local, NULL, MIM_TLS_AUTO));
  assert_false(uses_tls(local, "localhost:9", MIM_TLS_AUTO));
  assert_false(uses_tls(local, "[::1]:9", MIM_TLS_AUTO));
  assert_false(uses_tls(local, "127.255.0.7:9", MIM_TLS_AUTO));
  assert_true(uses_tls(local, NULL, MIM_TLS_ON));
  /* options NULL: the key from MOMENTO_API_KEY, AUTO. */
  setenv("MOMENTO_API_KEY", remote, 1);
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(NULL, &c), MIM_OK);
  assert_true(mim_client_uses_tls(c));
  mim_client_free(c);
  unsetenv("MOMENTO_API_KEY");
  free(local);
  free(remote);
}

/* ---- (c) zeroised on free ---- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* glibc's allocator keeps the first 16 bytes of a freed small block for its own links;
 * the rest stays as the program left it until the block is handed out again. */
#define ALLOCATOR_HEADER 16

typedef enum { FREED_ZEROED, FREED_NOT_ZEROED, FREED_UNKNOWN } freed_state;

/* After `release` freed the n-byte block at p: allocate blocks of that size until the
 * allocator returns p (glibc's per-thread cache returns the most recently freed block
 * first) and look at what the block still holds. */
/* Whether the block still holds a 16-byte piece of the secret (other bytes may be the
 * allocator's own bookkeeping or a later user's: only the secret itself matters). */
static bool holds_piece(const volatile unsigned char *b, size_t n, const char *secret) {
  size_t sl = strlen(secret);
  enum { PIECE = 16 };
  for (size_t off = 0; off + PIECE <= sl; off += PIECE)
    for (size_t k = ALLOCATOR_HEADER; k + PIECE <= n; k++) {
      size_t m = 0;
      while (m < PIECE && b[k + m] == (unsigned char)secret[off + m])
        m++;
      if (m == PIECE)
        return true;
    }
  return false;
}

static freed_state inspect_freed(uintptr_t p, size_t n, const char *secret) {
  if (SANITIZED || RUNNING_ON_VALGRIND || n <= ALLOCATOR_HEADER + 8)
    return FREED_UNKNOWN;
  void *got[8] = {0};
  freed_state st = FREED_UNKNOWN;
  for (int i = 0; i < 8 && st == FREED_UNKNOWN; i++) {
    got[i] = malloc(n);
    assert_non_null(got[i]);
    if ((uintptr_t)got[i] != p)
      continue;
    st = holds_piece(got[i], n, secret) ? FREED_NOT_ZEROED : FREED_ZEROED;
  }
  for (int i = 0; i < 8; i++)
    free(got[i]);
  return st;
}

static int checked, skipped;

static void expect_zeroed(const char *what, freed_state st) {
  if (st == FREED_UNKNOWN) {
    printf("[secrets] %s: allocator did not hand the block back; not checked\n", what);
    skipped++;
    return;
  }
  checked++;
  if (st != FREED_ZEROED)
    fail_msg("%s: the freed buffer still holds the secret", what);
}

static void test_secrets_zeroed_on_free(void **state) {
  (void)state;
  if (SANITIZED || RUNNING_ON_VALGRIND) {
    printf("[secrets] zeroisation not checked under a sanitizer or valgrind (their allocators "
           "do not hand freed blocks back)\n");
    skip();
  }
  const char *token = "zeroise-me-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP";
  char *key = NULL;
  assert_int_equal(mim_credentials_encode_v1("127.0.0.1:9", token, &key), MIM_OK);

  /* Control: a plain strdup'ed secret freed without zeroing is seen as not zeroed. */
  char *plain = strdup(token);
  assert_non_null(plain);
  uintptr_t pp = (uintptr_t)plain;
  free(plain);
  freed_state control = inspect_freed(pp, strlen(token) + 1, token);
  if (control == FREED_UNKNOWN) {
    printf("[secrets] allocator does not reuse blocks LIFO here: zeroisation not checked\n");
    free(key);
    skip();
  }
  assert_int_equal(control, FREED_NOT_ZEROED);

  /* A parsed credential. */
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(key, &c), MIM_OK);
  const char *at = mim_credentials_auth_token(c);
  assert_string_equal(at, token);
  uintptr_t ap = (uintptr_t)at;
  mim_credentials_free(c);
  expect_zeroed("mim_credentials_free: auth token", inspect_freed(ap, strlen(token) + 1, token));

  /* A copy of it. */
  mim_credentials *orig = NULL, *copy = NULL;
  assert_int_equal(mim_credentials_from_string(key, &orig), MIM_OK);
  assert_int_equal(mim_credentials_copy(orig, &copy), MIM_OK);
  mim_credentials_free(orig);
  ap = (uintptr_t)mim_credentials_auth_token(copy);
  mim_credentials_free(copy);
  expect_zeroed("mim_credentials_free (copy): auth token",
                inspect_freed(ap, strlen(token) + 1, token));

  /* A disposable token's two secret strings: built here exactly as the library hands
   * them out (malloc'd strings in a malloc'd struct). */
  mim_disposable_token *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->credential = strdup(key);
  t->api_key = strdup(token);
  t->endpoint = strdup("127.0.0.1:9");
  assert_non_null(t->credential);
  assert_non_null(t->api_key);
  assert_non_null(t->endpoint);
  uintptr_t kp = (uintptr_t)t->api_key, cp = (uintptr_t)t->credential;
  mim_disposable_token_free(t);
  expect_zeroed("mim_disposable_token_free: api_key", inspect_freed(kp, strlen(token) + 1, token));
  expect_zeroed("mim_disposable_token_free: credential", inspect_freed(cp, strlen(key) + 1, key));
  free(key);

  /* A token minted by the server, and the key inside a client. */
  static const char *const caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = srv->root_key;
  mim_client *root = NULL;
  assert_int_equal(mim_client_create(&co, &root), MIM_OK);
  t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, CHAT, 60, "z", &t), MIM_OK);
  size_t kn = strlen(t->api_key) + 1, cn = strlen(t->credential) + 1;
  char *minted_key = strdup(t->api_key), *minted_cred = strdup(t->credential);
  assert_non_null(minted_key);
  assert_non_null(minted_cred);
  kp = (uintptr_t)t->api_key;
  cp = (uintptr_t)t->credential;
  mim_disposable_token_free(t);
  expect_zeroed("minted token: api_key", inspect_freed(kp, kn, minted_key));
  expect_zeroed("minted token: credential", inspect_freed(cp, cn, minted_cred));
  explicit_bzero(minted_key, kn);
  explicit_bzero(minted_cred, cn);
  free(minted_key);
  free(minted_cred);
  const char *rk = mim_client_auth_token(root);
  size_t rn = strlen(rk) + 1;
  char *root_key = strdup(rk);
  assert_non_null(root_key);
  uintptr_t rp = (uintptr_t)rk;
  mim_client_free(root);
  expect_zeroed("mim_client_free: the client's auth token", inspect_freed(rp, rn, root_key));
  explicit_bzero(root_key, rn);
  free(root_key);
  assert_int_equal(mim_local_stop(srv), 0);
  printf("[secrets] zeroisation: %d buffers checked, %d not checkable\n", checked, skipped);
  assert_true(checked > 0);
}

/* jansson's copy of a fetched token. jansson allocates through functions we can swap: the
 * blocks it frees while parsing a vendor answer are looked at before they go. Its string
 * value is the one block that holds the decoded token from its first byte (the parser's
 * scratch buffers hold the raw text behind the opening quote); that one must be zeroed. */
static struct {
  const char *secret;
  int freed_with_secret;
} g_json_watch;

#define WATCH_HEADER 16 /* keeps the block size; aligned like malloc */

static void *watch_malloc(size_t n) {
  unsigned char *p = malloc(n + WATCH_HEADER);
  if (!p)
    return NULL;
  memcpy(p, &n, sizeof n);
  return p + WATCH_HEADER;
}

static void watch_free(void *v) {
  if (!v)
    return;
  unsigned char *p = (unsigned char *)v - WATCH_HEADER;
  size_t n;
  memcpy(&n, p, sizeof n);
  size_t sl = strlen(g_json_watch.secret);
  if (n >= sl && memcmp(v, g_json_watch.secret, sl) == 0)
    g_json_watch.freed_with_secret++;
  free(p);
}

static void test_token_answer_parse_zeroes_jansson_copy(void **state) {
  (void)state;
  const char *token = "vendor-token-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ";
  char answer[256];
  int len =
      snprintf(answer, sizeof answer, "{\"token\": \"%s\", \"expires_at\": 4102444800}", token);
  g_json_watch.secret = token;
  json_set_alloc_funcs(watch_malloc, watch_free);

  /* Control: parsed and freed without zeroing, jansson's copy is seen. */
  g_json_watch.freed_with_secret = 0;
  json_t *plain = json_loadb(answer, (size_t)len, 0, NULL);
  bool parsed = plain != NULL;
  json_decref(plain);
  int control = g_json_watch.freed_with_secret;

  g_json_watch.freed_with_secret = 0;
  char *cred = NULL;
  uint64_t exp = 0;
  mim_status st = mim_token_parse_answer(answer, (size_t)len, &cred, &exp);
  int after = g_json_watch.freed_with_secret;
  json_set_alloc_funcs(malloc, free);

  assert_true(parsed);
  assert_int_equal(control, 1);
  assert_int_equal(st, MIM_OK);
  assert_string_equal(cred, token);
  assert_int_equal(exp, 4102444800u);
  assert_int_equal(after, 0);
  explicit_bzero(cred, strlen(cred));
  free(cred);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_leak_search_finds_pieces),
      cmocka_unit_test(test_no_secret_in_logs),
      cmocka_unit_test(test_tls_default),
      cmocka_unit_test(test_secrets_zeroed_on_free),
      cmocka_unit_test(test_token_answer_parse_zeroes_jansson_copy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
