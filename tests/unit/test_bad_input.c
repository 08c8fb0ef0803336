/* Bad input through the public API (issue 8, item 4): NULL for every pointer parameter,
 * empty and 1 MiB strings, invalid UTF-8, foreign (non-JSON, binary) payloads arriving at
 * a joined session, malformed / tampered / expired / wrong-scope tokens, wrong cache
 * names and oversize messages. Each row names the documented status it expects; a row
 * that crashes takes the whole test down, so reaching the end means no row crashed.
 * Rows run against two mim-local servers: one with default limits and one started with
 * a small --max-message-bytes. The count of rows run is printed. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "clock.h"
#include "mim_local.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "bad-input"
#define CHAT "c1"
#define OTHER_CHAT "c2"
#define MISSING_CACHE "no-such-cache"
#define HUGE_LEN ((size_t)1 << 20) /* 1 MiB */
#define SMALL_MAX 4096             /* --max-message-bytes of the second server */
#define WAIT_MS 10000

/* ---- shared state: servers, clients, inputs, and slots for what a row returns ---- */

static struct {
  mim_local *srv, *small;
  mim_client *root, *user, *tampered, *expired, *small_root;
  mim_credentials *creds;
  mim_permissions *perms;
  mim_session *session, *small_session;
  char *huge;                  /* 1 MiB of 'a', NUL-terminated */
  char *huge_plus;             /* 1 MiB + 1 byte */
  mim_permissions *perms_wide; /* read/write on every item of the cache */
  char *huge_key;              /* 1 MiB key-like string */
  char *over_small;            /* 2 * SMALL_MAX of 'b' */
  char *bad_utf8;              /* "ok \xC3\x28 \xFF" */
  uint8_t binary[6];           /* bytes that are no text at all */
  mim_subscription_callbacks cbs;
  /* outputs of rows; freed after every row so a row that unexpectedly succeeds leaks
   * nothing either */
  mim_credentials *o_creds;
  mim_client *o_client;
  mim_list_values *o_values;
  mim_subscription *o_sub;
  mim_session *o_session;
  mim_message_list *o_msgs;
  mim_disposable_token *o_token;
  mim_moderator *o_mod;
  char *o_str;
  uint8_t *o_bytes;
  size_t o_len;
  bool o_found;
  uint32_t o_u32;
  uint64_t o_u64;
  char o_id[MIM_MESSAGE_ID_SIZE];
} g;

/* Messages delivered to the joined session: foreign ones are what we look for. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* made in setup, on CLOCK_MONOTONIC */
  int foreign_text, foreign_binary, chat;
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)user;
  pthread_mutex_lock(&seen.mu);
  if (m->kind == MIM_MESSAGE_CHAT)
    seen.chat++;
  else if (m->raw_len == sizeof g.binary && memcmp(m->raw, g.binary, sizeof g.binary) == 0)
    seen.foreign_binary++;
  else if (m->raw_len > 0 && strlen(m->text) == m->raw_len &&
           memcmp(m->text, m->raw, m->raw_len) == 0)
    seen.foreign_text++;
  pthread_cond_broadcast(&seen.cv);
  pthread_mutex_unlock(&seen.mu);
}

static void on_item(void *user, const mim_topic_item *item) {
  (void)user;
  (void)item;
}

static bool filter_called;
static mim_moderation_verdict accept_all(const mim_message *m, char **new_text, void *user) {
  (void)m;
  (void)new_text;
  (void)user;
  filter_called = true;
  return MIM_MODERATION_ACCEPT;
}

static void free_outputs(void) {
  mim_credentials_free(g.o_creds);
  mim_client_free(g.o_client);
  mim_list_values_free(g.o_values);
  mim_topic_unsubscribe(g.o_sub);
  mim_leave(g.o_session);
  mim_message_list_free(g.o_msgs);
  mim_disposable_token_free(g.o_token);
  mim_moderator_stop(g.o_mod);
  free(g.o_str);
  free(g.o_bytes);
  g.o_creds = NULL;
  g.o_client = NULL;
  g.o_values = NULL;
  g.o_sub = NULL;
  g.o_session = NULL;
  g.o_msgs = NULL;
  g.o_token = NULL;
  g.o_mod = NULL;
  g.o_str = NULL;
  g.o_bytes = NULL;
}

/* ---- the table machinery ---- */

typedef struct row {
  const char *name;
  mim_status expect;
  mim_status (*run)(void);
} row;

static int rows_run, rows_failed;

/* Runs every row, reports each mismatch with the detail, and fails the test if any. */
static void run_rows(const char *table, const row *rows, size_t n) {
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    mim_status got = rows[i].run();
    const char *detail = mim_last_error_detail();
    if (got != rows[i].expect) {
      fprintf(stderr, "  [%s] %s: expected %s, got %s (%s)\n", table, rows[i].name,
              mim_status_name(rows[i].expect), mim_status_name(got), detail);
      failed++;
    }
    /* A failing call always says why. */
    if (got != MIM_OK && got == rows[i].expect && detail[0] == '\0') {
      fprintf(stderr, "  [%s] %s: %s without a detail\n", table, rows[i].name,
              mim_status_name(got));
      failed++;
    }
    free_outputs();
  }
  rows_run += (int)n;
  rows_failed += failed;
  printf("[bad-input] %s: %zu rows, %d failed\n", table, n, failed);
  assert_int_equal(failed, 0);
}

/* X-macro rows: ROW(name, expected status, expression giving a mim_status). */
#define OK_AFTER(void_expr) ((void_expr), MIM_OK)
#define DEF_ROW(n, e, expr)                                                                        \
  static mim_status row_##n(void) {                                                                \
    return (expr);                                                                                 \
  }
#define ENT_ROW(n, e, expr) {#n, e, row_##n},

#define INV MIM_ERR_INVALID_ARGUMENT

/* A predicate as a status, for rows about functions that return no status. */
static mim_status expect_true(bool cond) {
  return cond ? MIM_OK : MIM_ERR_INTERNAL;
}

/* ---- common.h, credentials.h: no server needed ---- */

#define OFFLINE_ROWS(X)                                                                            \
  X(status_name_out_of_range, MIM_OK,                                                              \
    expect_true(strcmp(mim_status_name((mim_status)999), "MIM_ERR_UNKNOWN_STATUS") == 0))          \
  X(status_name_negative, MIM_OK, expect_true(mim_status_name((mim_status)-1) != NULL))            \
  X(strerror_out_of_range, MIM_OK, expect_true(mim_strerror((mim_status)999) != NULL))             \
  X(set_log_callback_null, MIM_OK, OK_AFTER(mim_set_log_callback(NULL, MIM_LOG_DEBUG, NULL)))      \
  X(set_log_callback_bad_level, MIM_OK,                                                            \
    OK_AFTER(mim_set_log_callback(NULL, (mim_log_level)99, NULL)))                                 \
  X(cred_from_string_null_key, INV, mim_credentials_from_string(NULL, &g.o_creds))                 \
  X(cred_from_string_null_out, INV, mim_credentials_from_string(g.srv->root_key, NULL))            \
  X(cred_from_string_empty, INV, mim_credentials_from_string("", &g.o_creds))                      \
  X(cred_from_string_blank, INV, mim_credentials_from_string("  \t\n", &g.o_creds))                \
  X(cred_from_string_huge, INV, mim_credentials_from_string(g.huge_key, &g.o_creds))               \
  X(cred_from_string_not_base64, INV, mim_credentials_from_string("!!!not-a-key!!!", &g.o_creds))  \
  X(cred_from_string_base64_not_json, INV,                                                         \
    mim_credentials_from_string("aGVsbG8gd29ybGQ=", &g.o_creds))                                   \
  X(cred_from_string_json_no_api_key, INV,                                                         \
    mim_credentials_from_string("eyJlbmRwb2ludCI6ImEuYiJ9", &g.o_creds))                           \
  X(cred_from_string_bad_utf8, INV, mim_credentials_from_string(g.bad_utf8, &g.o_creds))           \
  X(cred_from_string_bad_jwt, INV, mim_credentials_from_string("a.b.c", &g.o_creds))               \
  X(cred_key_endpoint_null_key, INV,                                                               \
    mim_credentials_from_key_and_endpoint(NULL, "127.0.0.1:1", &g.o_creds))                        \
  X(cred_key_endpoint_null_endpoint, INV,                                                          \
    mim_credentials_from_key_and_endpoint("k", NULL, &g.o_creds))                                  \
  X(cred_key_endpoint_null_out, INV,                                                               \
    mim_credentials_from_key_and_endpoint("k", "127.0.0.1:1", NULL))                               \
  X(cred_key_endpoint_empty_key, INV,                                                              \
    mim_credentials_from_key_and_endpoint("", "127.0.0.1:1", &g.o_creds))                          \
  X(cred_key_endpoint_empty_endpoint, INV,                                                         \
    mim_credentials_from_key_and_endpoint("k", "", &g.o_creds))                                    \
  X(cred_key_endpoint_huge_key, INV,                                                               \
    mim_credentials_from_key_and_endpoint(g.huge, "127.0.0.1:1", &g.o_creds))                      \
  X(cred_key_endpoint_huge_endpoint, INV,                                                          \
    mim_credentials_from_key_and_endpoint("k", g.huge, &g.o_creds))                                \
  X(cred_key_endpoint_bad_port, INV,                                                               \
    mim_credentials_from_key_and_endpoint("k", "127.0.0.1:99999", &g.o_creds))                     \
  X(cred_key_endpoint_ctl_char_key, INV,                                                           \
    mim_credentials_from_key_and_endpoint("k\n", "x:1", &g.o_creds) == INV                         \
        ? INV                                                                                      \
        : mim_credentials_from_key_and_endpoint("k\x01z", "x:1", &g.o_creds))                      \
  X(cred_from_env_unset, INV,                                                                      \
    mim_credentials_from_env("MIM_TEST_BAD_INPUT_UNSET_VAR", &g.o_creds))                          \
  X(cred_from_env_null_out, INV, mim_credentials_from_env("HOME", NULL))                           \
  X(cred_from_env_empty_name, INV, mim_credentials_from_env("", &g.o_creds))                       \
  X(cred_copy_null, INV, mim_credentials_copy(NULL, &g.o_creds))                                   \
  X(cred_copy_null_out, INV, mim_credentials_copy(g.creds, NULL))                                  \
  X(cred_free_null, MIM_OK, OK_AFTER(mim_credentials_free(NULL)))                                  \
  X(cred_host_null, MIM_OK, expect_true(mim_credentials_host(NULL, MIM_HOST_CACHE) == NULL))       \
  X(cred_host_bad_kind, MIM_OK,                                                                    \
    expect_true(mim_credentials_host(g.creds, (mim_host_kind)7) == NULL))                          \
  X(cred_set_host_null_creds, INV, mim_credentials_set_host(NULL, MIM_HOST_CACHE, "a:1"))          \
  X(cred_set_host_null_host, INV, mim_credentials_set_host(g.creds, MIM_HOST_CACHE, NULL))         \
  X(cred_set_host_empty, INV, mim_credentials_set_host(g.creds, MIM_HOST_CACHE, ""))               \
  X(cred_set_host_huge, INV, mim_credentials_set_host(g.creds, MIM_HOST_CACHE, g.huge))            \
  X(cred_set_host_bad_kind, INV, mim_credentials_set_host(g.creds, (mim_host_kind)7, "a:1"))       \
  X(cred_set_host_bad_chars, INV, mim_credentials_set_host(g.creds, MIM_HOST_CACHE, "a b/c:1"))    \
  X(cred_endpoint_null, MIM_OK, expect_true(mim_credentials_endpoint(NULL) == NULL))               \
  X(cred_auth_token_null, MIM_OK, expect_true(mim_credentials_auth_token(NULL) == NULL))           \
  X(cred_encode_null_endpoint, INV, mim_credentials_encode_v1(NULL, "tok", &g.o_str))              \
  X(cred_encode_null_token, INV, mim_credentials_encode_v1("a.b", NULL, &g.o_str))                 \
  X(cred_encode_null_out, INV, mim_credentials_encode_v1("a.b", "tok", NULL))                      \
  X(cred_encode_empty_token, INV, mim_credentials_encode_v1("a.b", "", &g.o_str))                  \
  X(client_options_init_null, MIM_OK, OK_AFTER(mim_client_options_init(NULL)))                     \
  X(client_create_null_out, INV, mim_client_create(NULL, NULL))                                    \
  X(client_free_null, MIM_OK, OK_AFTER(mim_client_free(NULL)))                                     \
  X(permissions_free_null, MIM_OK, OK_AFTER(mim_permissions_free(NULL)))                           \
  X(perm_add_cache_null_perms, INV,                                                                \
    mim_permissions_add_cache(NULL, MIM_CACHE_READ_WRITE, CACHE, NULL, false))                     \
  X(perm_add_cache_bad_role, INV,                                                                  \
    mim_permissions_add_cache(g.perms, (mim_cache_role)0, CACHE, NULL, false))                     \
  X(perm_add_cache_empty_cache, INV,                                                               \
    mim_permissions_add_cache(g.perms, MIM_CACHE_READ_WRITE, "", NULL, false))                     \
  X(perm_add_cache_empty_key, INV,                                                                 \
    mim_permissions_add_cache(g.perms, MIM_CACHE_READ_WRITE, CACHE, "", false))                    \
  X(perm_add_cache_prefix_no_key, INV,                                                             \
    mim_permissions_add_cache(g.perms, MIM_CACHE_READ_WRITE, CACHE, NULL, true))                   \
  X(perm_add_topic_null_perms, INV,                                                                \
    mim_permissions_add_topic(NULL, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, NULL, false))              \
  X(perm_add_topic_bad_role, INV,                                                                  \
    mim_permissions_add_topic(g.perms, (mim_topic_role)42, CACHE, NULL, false))                    \
  X(perm_add_topic_empty_topic, INV,                                                               \
    mim_permissions_add_topic(g.perms, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, "", false))             \
  X(perm_add_topic_prefix_no_topic, INV,                                                           \
    mim_permissions_add_topic(g.perms, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, NULL, true))            \
  X(token_free_null, MIM_OK, OK_AFTER(mim_disposable_token_free(NULL)))                            \
  X(values_free_null, MIM_OK, OK_AFTER(mim_list_values_free(NULL)))                                \
  X(join_options_init_null, MIM_OK, OK_AFTER(mim_join_options_init(NULL)))                         \
  X(message_list_free_null, MIM_OK, OK_AFTER(mim_message_list_free(NULL)))                         \
  X(unsubscribe_null, MIM_OK, OK_AFTER(mim_topic_unsubscribe(NULL)))                               \
  X(sub_last_sequence_null, MIM_OK, expect_true(mim_subscription_last_sequence(NULL) == 0))        \
  X(sub_sequence_page_null, MIM_OK, expect_true(mim_subscription_sequence_page(NULL) == 0))        \
  X(leave_null, MIM_OK, OK_AFTER(mim_leave(NULL)))                                                 \
  X(moderator_stop_null, MIM_OK, OK_AFTER(mim_moderator_stop(NULL)))

OFFLINE_ROWS(DEF_ROW)
static const row offline_rows[] = {OFFLINE_ROWS(ENT_ROW)};

/* ---- clients: malformed keys and options ---- */

static mim_status create_with(const char *key, const char *cache_host, mim_tls_mode tls) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = cache_host;
  o.tls = tls;
  return mim_client_create(&o, &g.o_client);
}

/* A v2 key whose token is too long for gRPC metadata: parsing accepts it, the client
 * refuses it (a server would drop the connection, shared with every other client). */
static mim_status create_with_long_token(size_t len) {
  char *tok = malloc(len + 1);
  if (!tok)
    return MIM_ERR_NO_MEMORY;
  memset(tok, 't', len);
  tok[len] = '\0';
  mim_status st = mim_credentials_from_key_and_endpoint(tok, g.srv->endpoint, &g.o_creds);
  free(tok);
  if (st != MIM_OK)
    return MIM_ERR_INTERNAL;
  mim_client_options o;
  mim_client_options_init(&o);
  o.credentials = g.o_creds;
  return mim_client_create(&o, &g.o_client);
}

static mim_status create_negative_deadline(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = g.srv->root_key;
  o.default_deadline_ms = -1;
  return mim_client_create(&o, &g.o_client);
}

static mim_status create_url_and_key(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = g.srv->root_key;
  o.token_url = "http://127.0.0.1:1/token";
  return mim_client_create(&o, &g.o_client);
}

/* A client with a valid key on a port where nobody listens: creating works, calls fail. */
static mim_status unreachable_call(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = g.srv->root_key;
  o.cache_host = "127.0.0.1:1";
  o.default_deadline_ms = 3000;
  mim_status st = mim_client_create(&o, &g.o_client);
  return st == MIM_OK ? mim_client_ping(g.o_client) : MIM_ERR_INTERNAL;
}

#define CLIENT_ROWS(X)                                                                             \
  X(client_create_empty_key, INV, create_with("", NULL, MIM_TLS_OFF))                              \
  X(client_create_huge_key, INV, create_with(g.huge_key, NULL, MIM_TLS_OFF))                       \
  X(client_create_garbage_key, INV, create_with("garbage", NULL, MIM_TLS_OFF))                     \
  X(client_create_bad_utf8_key, INV, create_with(g.bad_utf8, NULL, MIM_TLS_OFF))                   \
  X(client_create_bad_host, INV, create_with(g.srv->root_key, "no spaces:1", MIM_TLS_OFF))         \
  X(client_create_huge_host, INV, create_with(g.srv->root_key, g.huge, MIM_TLS_OFF))               \
  X(client_create_7kib_token_ok, MIM_OK, create_with_long_token(7 * 1024))                         \
  X(client_create_16kib_token, INV, create_with_long_token(16 * 1024))                             \
  X(client_create_negative_deadline, INV, create_negative_deadline())                              \
  X(client_create_url_and_key, INV, create_url_and_key())                                          \
  X(client_unreachable_ping, MIM_ERR_UNAVAILABLE, unreachable_call())                              \
  X(ping_null, INV, mim_client_ping(NULL))                                                         \
  X(cache_create_null_client, INV, mim_cache_create(NULL, "x"))                                    \
  X(cache_create_null_name, INV, mim_cache_create(g.root, NULL))                                   \
  X(cache_create_empty_name, INV, mim_cache_create(g.root, ""))                                    \
  X(cache_create_huge_name, INV, mim_cache_create(g.root, g.huge))                                 \
  X(cache_create_existing, MIM_ERR_ALREADY_EXISTS, mim_cache_create(g.root, CACHE))                \
  X(cache_delete_null_client, INV, mim_cache_delete(NULL, "x"))                                    \
  X(cache_delete_null_name, INV, mim_cache_delete(g.root, NULL))                                   \
  X(cache_delete_empty_name, INV, mim_cache_delete(g.root, ""))                                    \
  X(cache_delete_huge_name, INV, mim_cache_delete(g.root, g.huge))                                 \
  X(cache_delete_missing, MIM_ERR_NOT_FOUND, mim_cache_delete(g.root, MISSING_CACHE))

CLIENT_ROWS(DEF_ROW)
static const row client_rows[] = {CLIENT_ROWS(ENT_ROW)};

/* ---- lists ---- */

static const mim_bytes one_value[1] = {{(const uint8_t *)"v", 1}};
static const mim_bytes null_data_value[1] = {{NULL, 3}};
static const mim_list_range backwards = {true, 5, true, 2};
static const mim_list_erase_range erase_one[1] = {{0, 1}};

static void list_write_cb(void *u, mim_status s, const char *d, uint32_t n) {
  (void)u;
  (void)s;
  (void)d;
  (void)n;
}

static mim_status huge_value_push(void) {
  /* One byte over the server's 1 MiB limit. */
  size_t n = HUGE_LEN + 1;
  uint8_t *v = malloc(n);
  if (!v)
    return MIM_ERR_NO_MEMORY;
  memset(v, 'x', n);
  mim_status st = mim_list_push_back(g.root, CACHE, "huge-value", v, n, NULL, NULL);
  free(v);
  return st;
}

#define LIST_ROWS(X)                                                                               \
  X(push_back_null_client, INV, mim_list_push_back(NULL, CACHE, "l", "v", 1, NULL, NULL))          \
  X(push_back_null_cache, INV, mim_list_push_back(g.root, NULL, "l", "v", 1, NULL, NULL))          \
  X(push_back_null_list, INV, mim_list_push_back(g.root, CACHE, NULL, "v", 1, NULL, NULL))         \
  X(push_back_null_value, INV, mim_list_push_back(g.root, CACHE, "l", NULL, 1, NULL, NULL))        \
  X(push_back_empty_cache, INV, mim_list_push_back(g.root, "", "l", "v", 1, NULL, NULL))           \
  X(push_back_empty_list, INV, mim_list_push_back(g.root, CACHE, "", "v", 1, NULL, NULL))          \
  X(push_back_empty_value_ok, MIM_OK,                                                              \
    mim_list_push_back(g.root, CACHE, "empty-value", NULL, 0, NULL, &g.o_u32))                     \
  X(push_back_missing_cache, MIM_ERR_NOT_FOUND,                                                    \
    mim_list_push_back(g.root, MISSING_CACHE, "l", "v", 1, NULL, NULL))                            \
  X(push_back_huge_cache_name, INV, mim_list_push_back(g.root, g.huge, "l", "v", 1, NULL, NULL))   \
  X(push_back_odd_cache_name, MIM_ERR_NOT_FOUND,                                                   \
    mim_list_push_back(g.root, "bad cache/name?", "l", "v", 1, NULL, NULL))                        \
  X(push_back_ctl_char_cache_name, INV,                                                            \
    mim_list_push_back(g.root, "bad\tcache", "l", "v", 1, NULL, NULL))                             \
  X(push_back_non_ascii_cache_name, INV,                                                           \
    mim_list_push_back(g.root, "caf\xC3\xA9", "l", "v", 1, NULL, NULL))                            \
  X(push_back_256_byte_cache_name, INV,                                                            \
    mim_list_push_back(g.root, g.huge + HUGE_LEN - 256, "l", "v", 1, NULL, NULL))                  \
  X(push_back_255_byte_cache_name, MIM_ERR_NOT_FOUND,                                              \
    mim_list_push_back(g.root, g.huge + HUGE_LEN - 255, "l", "v", 1, NULL, NULL))                  \
  /* a list name / cache key: at most 4096 bytes (mim-local refuses more) */                       \
  X(push_back_huge_list_name, INV, mim_list_push_back(g.root, CACHE, g.huge, "v", 1, NULL, NULL))  \
  X(item_delete_huge_key, INV, mim_item_delete(g.root, CACHE, g.huge))                             \
  X(push_back_huge_value, MIM_ERR_RESOURCE_EXHAUSTED, huge_value_push())                           \
  X(push_back_binary_value_ok, MIM_OK,                                                             \
    mim_list_push_back(g.root, CACHE, "bin", g.binary, sizeof g.binary, NULL, NULL))               \
  X(push_front_null_client, INV, mim_list_push_front(NULL, CACHE, "l", "v", 1, NULL, NULL))        \
  X(push_front_null_cache, INV, mim_list_push_front(g.root, NULL, "l", "v", 1, NULL, NULL))        \
  X(push_front_null_list, INV, mim_list_push_front(g.root, CACHE, NULL, "v", 1, NULL, NULL))       \
  X(push_front_null_value, INV, mim_list_push_front(g.root, CACHE, "l", NULL, 1, NULL, NULL))      \
  X(push_front_missing_cache, MIM_ERR_NOT_FOUND,                                                   \
    mim_list_push_front(g.root, MISSING_CACHE, "l", "v", 1, NULL, NULL))                           \
  X(concat_back_null_client, INV,                                                                  \
    mim_list_concat_back(NULL, CACHE, "l", one_value, 1, NULL, NULL))                              \
  X(concat_back_null_cache, INV,                                                                   \
    mim_list_concat_back(g.root, NULL, "l", one_value, 1, NULL, NULL))                             \
  X(concat_back_null_list, INV,                                                                    \
    mim_list_concat_back(g.root, CACHE, NULL, one_value, 1, NULL, NULL))                           \
  X(concat_back_null_values, INV, mim_list_concat_back(g.root, CACHE, "l", NULL, 1, NULL, NULL))   \
  X(concat_back_zero_count, INV,                                                                   \
    mim_list_concat_back(g.root, CACHE, "l", one_value, 0, NULL, NULL))                            \
  X(concat_back_null_data, INV,                                                                    \
    mim_list_concat_back(g.root, CACHE, "l", null_data_value, 1, NULL, NULL))                      \
  X(concat_back_missing_cache, MIM_ERR_NOT_FOUND,                                                  \
    mim_list_concat_back(g.root, MISSING_CACHE, "l", one_value, 1, NULL, NULL))                    \
  X(concat_front_null_client, INV,                                                                 \
    mim_list_concat_front(NULL, CACHE, "l", one_value, 1, NULL, NULL))                             \
  X(concat_front_null_cache, INV,                                                                  \
    mim_list_concat_front(g.root, NULL, "l", one_value, 1, NULL, NULL))                            \
  X(concat_front_null_list, INV,                                                                   \
    mim_list_concat_front(g.root, CACHE, NULL, one_value, 1, NULL, NULL))                          \
  X(concat_front_null_values, INV, mim_list_concat_front(g.root, CACHE, "l", NULL, 1, NULL, NULL)) \
  X(fetch_null_client, INV, mim_list_fetch(NULL, CACHE, "l", NULL, &g.o_values))                   \
  X(fetch_null_cache, INV, mim_list_fetch(g.root, NULL, "l", NULL, &g.o_values))                   \
  X(fetch_null_list, INV, mim_list_fetch(g.root, CACHE, NULL, NULL, &g.o_values))                  \
  X(fetch_null_out, INV, mim_list_fetch(g.root, CACHE, "l", NULL, NULL))                           \
  X(fetch_backwards_range, INV, mim_list_fetch(g.root, CACHE, "l", &backwards, &g.o_values))       \
  X(fetch_missing_cache, MIM_ERR_NOT_FOUND,                                                        \
    mim_list_fetch(g.root, MISSING_CACHE, "l", NULL, &g.o_values))                                 \
  X(fetch_missing_list_ok, MIM_OK, mim_list_fetch(g.root, CACHE, "nope", NULL, &g.o_values))       \
  X(length_null_client, INV, mim_list_length(NULL, CACHE, "l", &g.o_u32, &g.o_found))              \
  X(length_null_cache, INV, mim_list_length(g.root, NULL, "l", &g.o_u32, &g.o_found))              \
  X(length_null_list, INV, mim_list_length(g.root, CACHE, NULL, &g.o_u32, &g.o_found))             \
  X(length_null_length_ok, MIM_OK, mim_list_length(g.root, CACHE, "l", NULL, &g.o_found))          \
  X(length_missing_cache, MIM_ERR_NOT_FOUND,                                                       \
    mim_list_length(g.root, MISSING_CACHE, "l", &g.o_u32, NULL))                                   \
  X(retain_null_client, INV, mim_list_retain(NULL, CACHE, "l", NULL, NULL, NULL))                  \
  X(retain_null_cache, INV, mim_list_retain(g.root, NULL, "l", NULL, NULL, NULL))                  \
  X(retain_null_list, INV, mim_list_retain(g.root, CACHE, NULL, NULL, NULL, NULL))                 \
  X(retain_backwards_range, INV, mim_list_retain(g.root, CACHE, "l", &backwards, NULL, NULL))      \
  X(retain_missing_cache, MIM_ERR_NOT_FOUND,                                                       \
    mim_list_retain(g.root, MISSING_CACHE, "l", NULL, NULL, NULL))                                 \
  X(remove_value_null_client, INV, mim_list_remove_value(NULL, CACHE, "l", "v", 1, NULL))          \
  X(remove_value_null_cache, INV, mim_list_remove_value(g.root, NULL, "l", "v", 1, NULL))          \
  X(remove_value_null_list, INV, mim_list_remove_value(g.root, CACHE, NULL, "v", 1, NULL))         \
  X(remove_value_null_value, INV, mim_list_remove_value(g.root, CACHE, "l", NULL, 1, NULL))        \
  X(remove_value_missing_cache, MIM_ERR_NOT_FOUND,                                                 \
    mim_list_remove_value(g.root, MISSING_CACHE, "l", "v", 1, NULL))                               \
  X(erase_null_client, INV, mim_list_erase(NULL, CACHE, "l", erase_one, 1, NULL))                  \
  X(erase_null_cache, INV, mim_list_erase(g.root, NULL, "l", erase_one, 1, NULL))                  \
  X(erase_null_list, INV, mim_list_erase(g.root, CACHE, NULL, erase_one, 1, NULL))                 \
  X(erase_null_ranges_n1, INV, mim_list_erase(g.root, CACHE, "l", NULL, 1, NULL))                  \
  X(erase_ranges_n0, INV, mim_list_erase(g.root, CACHE, "l", erase_one, 0, NULL))                  \
  X(erase_missing_cache, MIM_ERR_NOT_FOUND,                                                        \
    mim_list_erase(g.root, MISSING_CACHE, "l", erase_one, 1, NULL))                                \
  X(pop_front_null_client, INV, mim_list_pop_front(NULL, CACHE, "l", NULL, NULL, NULL))            \
  X(pop_front_null_cache, INV, mim_list_pop_front(g.root, NULL, "l", NULL, NULL, NULL))            \
  X(pop_front_null_list, INV, mim_list_pop_front(g.root, CACHE, NULL, NULL, NULL, NULL))           \
  X(pop_front_all_outs_null_ok, MIM_OK,                                                            \
    mim_list_pop_front(g.root, CACHE, "nope", NULL, NULL, NULL))                                   \
  X(pop_front_missing_cache, MIM_ERR_NOT_FOUND,                                                    \
    mim_list_pop_front(g.root, MISSING_CACHE, "l", &g.o_bytes, &g.o_len, &g.o_found))              \
  X(pop_back_null_client, INV, mim_list_pop_back(NULL, CACHE, "l", NULL, NULL, NULL))              \
  X(pop_back_null_cache, INV, mim_list_pop_back(g.root, NULL, "l", NULL, NULL, NULL))              \
  X(pop_back_null_list, INV, mim_list_pop_back(g.root, CACHE, NULL, NULL, NULL, NULL))             \
  X(pop_back_missing_cache, MIM_ERR_NOT_FOUND,                                                     \
    mim_list_pop_back(g.root, MISSING_CACHE, "l", &g.o_bytes, &g.o_len, &g.o_found))               \
  X(item_delete_null_client, INV, mim_item_delete(NULL, CACHE, "l"))                               \
  X(item_delete_null_cache, INV, mim_item_delete(g.root, NULL, "l"))                               \
  X(item_delete_null_key, INV, mim_item_delete(g.root, CACHE, NULL))                               \
  X(item_delete_empty_key, INV, mim_item_delete(g.root, CACHE, ""))                                \
  X(item_delete_missing_cache, MIM_ERR_NOT_FOUND, mim_item_delete(g.root, MISSING_CACHE, "l"))     \
  X(item_ttl_null_client, INV, mim_item_ttl(NULL, CACHE, "l", &g.o_u64, &g.o_found))               \
  X(item_ttl_null_cache, INV, mim_item_ttl(g.root, NULL, "l", &g.o_u64, &g.o_found))               \
  X(item_ttl_null_key, INV, mim_item_ttl(g.root, CACHE, NULL, &g.o_u64, &g.o_found))               \
  X(item_ttl_missing_cache, MIM_ERR_NOT_FOUND,                                                     \
    mim_item_ttl(g.root, MISSING_CACHE, "l", NULL, NULL))                                          \
  X(push_back_async_null_client, INV,                                                              \
    mim_list_push_back_async(NULL, CACHE, "l", "v", 1, NULL, NULL, NULL))                          \
  X(push_back_async_null_cache, INV,                                                               \
    mim_list_push_back_async(g.root, NULL, "l", "v", 1, NULL, list_write_cb, NULL))                \
  X(push_back_async_null_value, INV,                                                               \
    mim_list_push_back_async(g.root, CACHE, "l", NULL, 1, NULL, list_write_cb, NULL))              \
  X(push_front_async_null_list, INV,                                                               \
    mim_list_push_front_async(g.root, CACHE, NULL, "v", 1, NULL, NULL, NULL))                      \
  X(fetch_async_null_cb, INV, mim_list_fetch_async(g.root, CACHE, "l", NULL, NULL, NULL))          \
  X(fetch_async_null_client, INV, mim_list_fetch_async(NULL, CACHE, "l", NULL, NULL, NULL))        \
  X(fetch_async_null_list, INV, mim_list_fetch_async(g.root, CACHE, NULL, NULL, NULL, NULL))

LIST_ROWS(DEF_ROW)
static const row list_rows[] = {LIST_ROWS(ENT_ROW)};

/* ---- topics ---- */

static mim_status subscribe_with(mim_client *c, const char *cache, const char *topic,
                                 const mim_subscription_callbacks *cbs, mim_subscription **out) {
  return mim_topic_subscribe(c, cache, topic, NULL, cbs, out);
}

static const mim_subscription_callbacks no_on_item = MIM_SUBSCRIPTION_CALLBACKS_INIT;

#define TOPIC_ROWS(X)                                                                              \
  X(publish_text_null_client, INV, mim_topic_publish_text(NULL, CACHE, "t", "x"))                  \
  X(publish_text_null_cache, INV, mim_topic_publish_text(g.root, NULL, "t", "x"))                  \
  X(publish_text_null_topic, INV, mim_topic_publish_text(g.root, CACHE, NULL, "x"))                \
  X(publish_text_null_text, INV, mim_topic_publish_text(g.root, CACHE, "t", NULL))                 \
  X(publish_text_empty_cache, INV, mim_topic_publish_text(g.root, "", "t", "x"))                   \
  X(publish_text_empty_topic, INV, mim_topic_publish_text(g.root, CACHE, "", "x"))                 \
  X(publish_text_bad_utf8, INV, mim_topic_publish_text(g.root, CACHE, "t", g.bad_utf8))            \
  X(publish_text_overlong_utf8, INV, mim_topic_publish_text(g.root, CACHE, "t", "\xC0\xAF"))       \
  X(publish_text_surrogate_utf8, INV, mim_topic_publish_text(g.root, CACHE, "t", "\xED\xA0\x80"))  \
  X(publish_text_truncated_utf8, INV, mim_topic_publish_text(g.root, CACHE, "t", "ab\xE2\x82"))    \
  X(publish_text_empty_text_ok, MIM_OK, mim_topic_publish_text(g.root, CACHE, "t", ""))            \
  X(publish_text_1mib_text_ok, MIM_OK, mim_topic_publish_text(g.root, CACHE, "t", g.huge))         \
  X(publish_text_over_1mib_text, MIM_ERR_RESOURCE_EXHAUSTED,                                       \
    mim_topic_publish_text(g.root, CACHE, "t", g.huge_plus))                                       \
  X(publish_binary_over_1mib, MIM_ERR_RESOURCE_EXHAUSTED,                                          \
    mim_topic_publish_binary(g.root, CACHE, "t", g.huge_plus, HUGE_LEN + 1))                       \
  X(publish_text_non_ascii_cache_name, INV,                                                        \
    mim_topic_publish_text(g.root, "caf\xC3\xA9", "t", "x"))                                       \
  X(publish_text_missing_cache, MIM_ERR_NOT_FOUND,                                                 \
    mim_topic_publish_text(g.root, MISSING_CACHE, "t", "x"))                                       \
  X(publish_text_huge_cache_name, INV, mim_topic_publish_text(g.root, g.huge, "t", "x"))           \
  X(publish_text_huge_topic_name, INV, mim_topic_publish_text(g.root, CACHE, g.huge, "x"))         \
  X(publish_binary_null_client, INV, mim_topic_publish_binary(NULL, CACHE, "t", "x", 1))           \
  X(publish_binary_null_cache, INV, mim_topic_publish_binary(g.root, NULL, "t", "x", 1))           \
  X(publish_binary_null_topic, INV, mim_topic_publish_binary(g.root, CACHE, NULL, "x", 1))         \
  X(publish_binary_null_data, INV, mim_topic_publish_binary(g.root, CACHE, "t", NULL, 1))          \
  X(publish_binary_empty_ok, MIM_OK, mim_topic_publish_binary(g.root, CACHE, "t", NULL, 0))        \
  X(publish_binary_missing_cache, MIM_ERR_NOT_FOUND,                                               \
    mim_topic_publish_binary(g.root, MISSING_CACHE, "t", "x", 1))                                  \
  X(publish_text_async_null_client, INV,                                                           \
    mim_topic_publish_text_async(NULL, CACHE, "t", "x", NULL, NULL))                               \
  X(publish_text_async_null_text, INV,                                                             \
    mim_topic_publish_text_async(g.root, CACHE, "t", NULL, NULL, NULL))                            \
  X(publish_text_async_bad_utf8, INV,                                                              \
    mim_topic_publish_text_async(g.root, CACHE, "t", g.bad_utf8, NULL, NULL))                      \
  X(publish_binary_async_null_topic, INV,                                                          \
    mim_topic_publish_binary_async(g.root, CACHE, NULL, "x", 1, NULL, NULL))                       \
  X(publish_binary_async_null_data, INV,                                                           \
    mim_topic_publish_binary_async(g.root, CACHE, "t", NULL, 1, NULL, NULL))                       \
  X(subscribe_null_client, INV, subscribe_with(NULL, CACHE, "t", &g.cbs, &g.o_sub))                \
  X(subscribe_null_cache, INV, subscribe_with(g.root, NULL, "t", &g.cbs, &g.o_sub))                \
  X(subscribe_null_topic, INV, subscribe_with(g.root, CACHE, NULL, &g.cbs, &g.o_sub))              \
  X(subscribe_null_callbacks, INV, subscribe_with(g.root, CACHE, "t", NULL, &g.o_sub))             \
  X(subscribe_no_on_item, INV, subscribe_with(g.root, CACHE, "t", &no_on_item, &g.o_sub))          \
  X(subscribe_null_out, INV, subscribe_with(g.root, CACHE, "t", &g.cbs, NULL))                     \
  X(subscribe_empty_topic, INV, subscribe_with(g.root, CACHE, "", &g.cbs, &g.o_sub))               \
  X(subscribe_missing_cache, MIM_ERR_NOT_FOUND,                                                    \
    subscribe_with(g.root, MISSING_CACHE, "t", &g.cbs, &g.o_sub))                                  \
  X(subscribe_huge_cache_name, INV, subscribe_with(g.root, g.huge, "t", &g.cbs, &g.o_sub))         \
  X(subscribe_huge_topic_name, INV, subscribe_with(g.root, CACHE, g.huge, &g.cbs, &g.o_sub))       \
  X(subscribe_async_null_client, INV,                                                              \
    mim_topic_subscribe_async(NULL, CACHE, "t", NULL, &g.cbs, &g.o_sub))                           \
  X(subscribe_async_null_callbacks, INV,                                                           \
    mim_topic_subscribe_async(g.root, CACHE, "t", NULL, NULL, &g.o_sub))                           \
  X(subscribe_async_null_out, INV,                                                                 \
    mim_topic_subscribe_async(g.root, CACHE, "t", NULL, &g.cbs, NULL))

TOPIC_ROWS(DEF_ROW)
static const row topic_rows[] = {TOPIC_ROWS(ENT_ROW)};

/* ---- tokens ---- */

#define TOKEN_ROWS(X)                                                                              \
  X(generate_null_client, INV, mim_token_generate(NULL, g.perms, 60, NULL, &g.o_token))            \
  X(generate_null_perms, INV, mim_token_generate(g.root, NULL, 60, NULL, &g.o_token))              \
  X(generate_null_out, INV, mim_token_generate(g.root, g.perms, 60, NULL, NULL))                   \
  X(generate_zero_validity, INV, mim_token_generate(g.root, g.perms, 0, NULL, &g.o_token))         \
  X(generate_huge_token_id, INV, mim_token_generate(g.root, g.perms, 60, g.huge, &g.o_token))      \
  X(client_only_null_client, INV,                                                                  \
    mim_token_generate_client_only(NULL, CACHE, CHAT, 60, NULL, &g.o_token))                       \
  X(client_only_null_cache, INV,                                                                   \
    mim_token_generate_client_only(g.root, NULL, CHAT, 60, NULL, &g.o_token))                      \
  X(client_only_null_chat, INV,                                                                    \
    mim_token_generate_client_only(g.root, CACHE, NULL, 60, NULL, &g.o_token))                     \
  X(client_only_empty_chat, INV,                                                                   \
    mim_token_generate_client_only(g.root, CACHE, "", 60, NULL, &g.o_token))                       \
  X(client_only_null_out, INV,                                                                     \
    mim_token_generate_client_only(g.root, CACHE, CHAT, 60, NULL, NULL))                           \
  X(client_only_zero_validity, INV,                                                                \
    mim_token_generate_client_only(g.root, CACHE, CHAT, 0, NULL, &g.o_token))                      \
  X(moderated_null_client, INV,                                                                    \
    mim_token_generate_moderated(NULL, CACHE, CHAT, 60, NULL, &g.o_token))                         \
  X(moderated_null_cache, INV,                                                                     \
    mim_token_generate_moderated(g.root, NULL, CHAT, 60, NULL, &g.o_token))                        \
  X(moderated_empty_cache, INV,                                                                    \
    mim_token_generate_moderated(g.root, "", CHAT, 60, NULL, &g.o_token))                          \
  X(moderated_null_chat, INV,                                                                      \
    mim_token_generate_moderated(g.root, CACHE, NULL, 60, NULL, &g.o_token))                       \
  X(moderated_null_out, INV, mim_token_generate_moderated(g.root, CACHE, CHAT, 60, NULL, NULL))    \
  /* wrong scope: a client-only token for CHAT */                                                  \
  X(scope_fetch_other_chat, MIM_ERR_PERMISSION_DENIED,                                             \
    mim_list_fetch(g.user, CACHE, OTHER_CHAT, NULL, &g.o_values))                                  \
  X(scope_push_other_chat, MIM_ERR_PERMISSION_DENIED,                                              \
    mim_list_push_back(g.user, CACHE, OTHER_CHAT, "v", 1, NULL, NULL))                             \
  X(scope_publish_other_topic, MIM_ERR_PERMISSION_DENIED,                                          \
    mim_topic_publish_text(g.user, CACHE, OTHER_CHAT, "x"))                                        \
  X(scope_subscribe_other_topic, MIM_ERR_PERMISSION_DENIED,                                        \
    subscribe_with(g.user, CACHE, OTHER_CHAT, &g.cbs, &g.o_sub))                                   \
  X(scope_join_other_chat, MIM_ERR_PERMISSION_DENIED,                                              \
    mim_join(g.user, CACHE, OTHER_CHAT, NULL, on_message, NULL, &g.o_session))                     \
  X(scope_mint_other_chat, MIM_ERR_PERMISSION_DENIED,                                              \
    mim_token_generate_client_only(g.user, CACHE, OTHER_CHAT, 60, NULL, &g.o_token))               \
  X(scope_mint_moderator_of_own_chat, MIM_ERR_PERMISSION_DENIED,                                   \
    mim_token_generate(g.user, g.perms_wide, 60, NULL, &g.o_token))                                \
  X(scope_cache_create, MIM_ERR_PERMISSION_DENIED, mim_cache_create(g.user, "new-cache"))          \
  X(scope_cache_delete, MIM_ERR_PERMISSION_DENIED, mim_cache_delete(g.user, CACHE))                \
  X(scope_own_chat_ok, MIM_OK, mim_list_fetch(g.user, CACHE, CHAT, NULL, &g.o_values))             \
  /* tampered: one character of the auth token flipped */                                          \
  X(tampered_fetch, MIM_ERR_UNAUTHENTICATED,                                                       \
    mim_list_fetch(g.tampered, CACHE, CHAT, NULL, &g.o_values))                                    \
  X(tampered_publish, MIM_ERR_UNAUTHENTICATED,                                                     \
    mim_topic_publish_text(g.tampered, CACHE, CHAT, "x"))                                          \
  X(tampered_subscribe, MIM_ERR_UNAUTHENTICATED,                                                   \
    subscribe_with(g.tampered, CACHE, CHAT, &g.cbs, &g.o_sub))                                     \
  X(tampered_join, MIM_ERR_UNAUTHENTICATED,                                                        \
    mim_join(g.tampered, CACHE, CHAT, NULL, on_message, NULL, &g.o_session))                       \
  /* expired: minted valid for 1 s, used after it ran out */                                       \
  X(expired_fetch, MIM_ERR_UNAUTHENTICATED,                                                        \
    mim_list_fetch(g.expired, CACHE, CHAT, NULL, &g.o_values))                                     \
  X(expired_publish, MIM_ERR_UNAUTHENTICATED, mim_topic_publish_text(g.expired, CACHE, CHAT, "x")) \
  X(expired_subscribe, MIM_ERR_UNAUTHENTICATED,                                                    \
    subscribe_with(g.expired, CACHE, CHAT, &g.cbs, &g.o_sub))

TOKEN_ROWS(DEF_ROW)
static const row token_rows[] = {TOKEN_ROWS(ENT_ROW)};

/* ---- chat sessions ---- */

static mim_status join_bad_mode(void) {
  mim_join_options o;
  mim_join_options_init(&o);
  o.mode = (mim_chat_mode)7;
  return mim_join(g.root, CACHE, CHAT, &o, on_message, NULL, &g.o_session);
}

static mim_status join_display_name(const char *name) {
  mim_join_options o;
  mim_join_options_init(&o);
  o.display_name = name;
  return mim_join(g.root, CACHE, "display-chat", &o, on_message, NULL, &g.o_session);
}

/* A session whose display name alone makes every envelope too large. */
static mim_status send_with_huge_display_name(void) {
  mim_status st = join_display_name(g.huge);
  return st == MIM_OK ? mim_send(g.o_session, "hi", NULL) : MIM_ERR_INTERNAL;
}

static const char *const one_chat[1] = {CHAT};
static const char *const null_chat[1] = {NULL};

#define IM_ROWS(X)                                                                                 \
  X(join_null_client, INV, mim_join(NULL, CACHE, CHAT, NULL, on_message, NULL, &g.o_session))      \
  X(join_null_cache, INV, mim_join(g.root, NULL, CHAT, NULL, on_message, NULL, &g.o_session))      \
  X(join_null_chat, INV, mim_join(g.root, CACHE, NULL, NULL, on_message, NULL, &g.o_session))      \
  X(join_null_on_message, INV, mim_join(g.root, CACHE, CHAT, NULL, NULL, NULL, &g.o_session))      \
  X(join_null_out, INV, mim_join(g.root, CACHE, CHAT, NULL, on_message, NULL, NULL))               \
  X(join_empty_cache, INV, mim_join(g.root, "", CHAT, NULL, on_message, NULL, &g.o_session))       \
  X(join_empty_chat, INV, mim_join(g.root, CACHE, "", NULL, on_message, NULL, &g.o_session))       \
  X(join_bad_mode, INV, join_bad_mode())                                                           \
  X(join_bad_utf8_display_name, INV, join_display_name(g.bad_utf8))                                \
  X(join_missing_cache, MIM_ERR_NOT_FOUND,                                                         \
    mim_join(g.root, MISSING_CACHE, CHAT, NULL, on_message, NULL, &g.o_session))                   \
  X(join_huge_cache_name, INV,                                                                     \
    mim_join(g.root, g.huge, CHAT, NULL, on_message, NULL, &g.o_session))                          \
  X(send_huge_display_name, INV, send_with_huge_display_name())                                    \
  X(history_null_session, INV, mim_history(NULL, 0, &g.o_msgs))                                    \
  X(history_null_out, INV, mim_history(g.session, 0, NULL))                                        \
  X(history_huge_last_n_ok, MIM_OK, mim_history(g.session, SIZE_MAX, &g.o_msgs))                   \
  X(send_null_session, INV, mim_send(NULL, "x", g.o_id))                                           \
  X(send_null_text, INV, mim_send(g.session, NULL, g.o_id))                                        \
  X(send_bad_utf8, INV, mim_send(g.session, g.bad_utf8, g.o_id))                                   \
  X(send_lone_continuation, INV, mim_send(g.session, "\x80", g.o_id))                              \
  X(send_huge_text, INV, mim_send(g.session, g.huge, g.o_id))                                      \
  X(send_empty_text_ok, MIM_OK, mim_send(g.session, "", NULL))                                     \
  X(remove_null_session, INV, mim_remove_message(NULL, "id"))                                      \
  X(remove_null_id, INV, mim_remove_message(g.session, NULL))                                      \
  X(remove_empty_id, INV, mim_remove_message(g.session, ""))                                       \
  X(remove_unknown_id, MIM_ERR_NOT_FOUND, mim_remove_message(g.session, "no-such-id"))             \
  X(remove_huge_id, MIM_ERR_NOT_FOUND, mim_remove_message(g.session, g.huge))                      \
  X(moderator_null_client, INV,                                                                    \
    mim_moderator_start(NULL, CACHE, one_chat, 1, 0, accept_all, NULL, &g.o_mod))                  \
  X(moderator_null_cache, INV,                                                                     \
    mim_moderator_start(g.root, NULL, one_chat, 1, 0, accept_all, NULL, &g.o_mod))                 \
  X(moderator_null_chats, INV,                                                                     \
    mim_moderator_start(g.root, CACHE, NULL, 1, 0, accept_all, NULL, &g.o_mod))                    \
  X(moderator_zero_chats, INV,                                                                     \
    mim_moderator_start(g.root, CACHE, one_chat, 0, 0, accept_all, NULL, &g.o_mod))                \
  X(moderator_null_chat_entry, INV,                                                                \
    mim_moderator_start(g.root, CACHE, null_chat, 1, 0, accept_all, NULL, &g.o_mod))               \
  X(moderator_null_filter, INV,                                                                    \
    mim_moderator_start(g.root, CACHE, one_chat, 1, 0, NULL, NULL, &g.o_mod))                      \
  X(moderator_null_out, INV,                                                                       \
    mim_moderator_start(g.root, CACHE, one_chat, 1, 0, accept_all, NULL, NULL))                    \
  X(moderator_missing_cache, MIM_ERR_NOT_FOUND,                                                    \
    mim_moderator_start(g.root, MISSING_CACHE, one_chat, 1, 0, accept_all, NULL, &g.o_mod))

IM_ROWS(DEF_ROW)
static const row im_rows[] = {IM_ROWS(ENT_ROW)};

/* ---- foreign payloads published raw to a joined chat ---- */

/* Waits until the session saw both foreign values (bounded). */
static mim_status wait_foreign(void) {
  struct timespec dl = cmn_deadline_after_ms(WAIT_MS);
  pthread_mutex_lock(&seen.mu);
  int rc = 0;
  while ((seen.foreign_text < 2 || seen.foreign_binary < 1) && rc == 0)
    rc = pthread_cond_timedwait(&seen.cv, &seen.mu, &dl);
  bool ok = seen.foreign_text >= 2 && seen.foreign_binary >= 1;
  if (!ok)
    fprintf(stderr, "  foreign text %d, foreign binary %d, chat %d\n", seen.foreign_text,
            seen.foreign_binary, seen.chat);
  pthread_mutex_unlock(&seen.mu);
  return ok ? MIM_OK : MIM_ERR_DEADLINE_EXCEEDED;
}

static const char not_json[] = "this is not json";
static const char bad_envelope[] = "{\"v\":1,\"id\":42,\"text\":[]}";

#define FOREIGN_ROWS(X)                                                                            \
  X(publish_non_json_text, MIM_OK, mim_topic_publish_text(g.root, CACHE, CHAT, not_json))          \
  X(publish_wrong_envelope, MIM_OK, mim_topic_publish_text(g.root, CACHE, CHAT, bad_envelope))     \
  X(publish_binary_garbage, MIM_OK,                                                                \
    mim_topic_publish_binary(g.root, CACHE, CHAT, g.binary, sizeof g.binary))                      \
  X(publish_bad_utf8_as_binary, MIM_OK,                                                            \
    mim_topic_publish_binary(g.root, CACHE, CHAT, g.bad_utf8, strlen(g.bad_utf8)))                 \
  X(push_garbage_to_history, MIM_OK,                                                               \
    mim_list_push_back(g.root, CACHE, CHAT, g.binary, sizeof g.binary, NULL, NULL))                \
  X(session_saw_foreign_values, MIM_OK, wait_foreign())                                            \
  X(history_with_garbage_ok, MIM_OK, mim_history(g.session, 0, &g.o_msgs))                         \
  X(send_after_garbage_ok, MIM_OK, mim_send(g.session, "still alive", g.o_id))

FOREIGN_ROWS(DEF_ROW)
static const row foreign_rows[] = {FOREIGN_ROWS(ENT_ROW)};

/* ---- oversize messages against the server with a small --max-message-bytes ---- */

#define OVERSIZE_ROWS(X)                                                                           \
  X(small_push_over_limit, MIM_ERR_RESOURCE_EXHAUSTED,                                             \
    mim_list_push_back(g.small_root, CACHE, "l", g.over_small, 2 * SMALL_MAX, NULL, NULL))         \
  X(small_concat_over_limit, MIM_ERR_RESOURCE_EXHAUSTED,                                           \
    mim_list_concat_back(g.small_root, CACHE, "l",                                                 \
                         (const mim_bytes[]){{(const uint8_t *)g.over_small, 2 * SMALL_MAX}}, 1,   \
                         NULL, NULL))                                                              \
  X(small_publish_text_over_limit, MIM_ERR_RESOURCE_EXHAUSTED,                                     \
    mim_topic_publish_text(g.small_root, CACHE, "t", g.over_small))                                \
  X(small_publish_binary_over_limit, MIM_ERR_RESOURCE_EXHAUSTED,                                   \
    mim_topic_publish_binary(g.small_root, CACHE, "t", g.over_small, 2 * SMALL_MAX))               \
  X(small_send_over_limit, MIM_ERR_RESOURCE_EXHAUSTED,                                             \
    mim_send(g.small_session, g.over_small, g.o_id))                                               \
  X(send_over_payload_limit, INV, mim_send(g.session, g.over_small, g.o_id))                       \
  X(small_push_under_limit_ok, MIM_OK,                                                             \
    mim_list_push_back(g.small_root, CACHE, "l", g.over_small, SMALL_MAX / 2, NULL, NULL))         \
  X(small_send_under_limit_ok, MIM_OK, mim_send(g.small_session, "short", g.o_id))

OVERSIZE_ROWS(DEF_ROW)
static const row oversize_rows[] = {OVERSIZE_ROWS(ENT_ROW)};

/* ---- setup ---- */

/* max_payload: the client's max_topic_payload_bytes (0 = hosted Momento's 4 KB). */
static mim_client *client_with_payload(const char *key, size_t max_payload) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.max_topic_payload_bytes = max_payload;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = WAIT_MS;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  return c;
}

static mim_client *client_from_key(const char *key) {
  return client_with_payload(key, 0);
}

/* The same token with one character of its auth token changed. */
static mim_client *tampered_client(const mim_disposable_token *t) {
  char *key = strdup(t->api_key);
  assert_non_null(key);
  size_t i = strlen(key) / 2;
  while (key[i] == '.' || key[i] == '-' || key[i] == '_')
    i++;
  key[i] = key[i] == 'A' ? 'z' : 'A';
  char *cred = NULL;
  assert_int_equal(mim_credentials_encode_v1(t->endpoint, key, &cred), MIM_OK);
  mim_client *c = client_from_key(cred);
  free(cred);
  free(key);
  return c;
}

/* A client whose token was valid for 1 s and has run out (waits for the expiry). */
static mim_client *expired_client(void) {
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(g.root, CACHE, CHAT, 1, "exp", &t), MIM_OK);
  mim_client *c = client_from_key(t->credential);
  /* Bounded wait until the wall clock is past valid_until (plus a second of slack for
   * the server's whole-second comparison). */
  for (int i = 0; i < 50 && (uint64_t)time(NULL) <= t->valid_until + 1; i++)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  assert_true((uint64_t)time(NULL) > t->valid_until + 1);
  mim_disposable_token_free(t);
  return c;
}

static int setup(void **state) {
  (void)state;
  cmn_cond_init_monotonic(&seen.cv);
  static const char *const caches[] = {CACHE, NULL};
  /* --limits none: the rows check the library's handling of inputs up to the 1 MiB frame
   * cap, beyond hosted Momento's sizes (test_server_quotas covers those). */
  static const char *const big_args[] = {"--limits", "none", NULL};
  mim_local_opts o = {.caches = caches, .extra_args = big_args};
  if (mim_local_start(&o, &g.srv) != 0)
    return -1;
  static const char *const small_args[] = {"--max-message-bytes", "4096", NULL};
  mim_local_opts so = {.caches = caches, .extra_args = small_args};
  if (mim_local_start(&so, &g.small) != 0)
    return -1;
  g.huge = malloc(HUGE_LEN + 1);
  g.huge_key = malloc(HUGE_LEN + 1);
  g.huge_plus = malloc(HUGE_LEN + 2);
  g.over_small = malloc(2 * SMALL_MAX + 1);
  g.bad_utf8 = strdup("ok \xC3\x28 \xFF");
  if (!g.huge || !g.huge_key || !g.huge_plus || !g.over_small || !g.bad_utf8)
    return -1;
  memset(g.huge, 'a', HUGE_LEN);
  g.huge[HUGE_LEN] = '\0';
  memset(g.huge_plus, 'p', HUGE_LEN + 1);
  g.huge_plus[HUGE_LEN + 1] = '\0';
  memset(g.huge_key, 'Q', HUGE_LEN);
  g.huge_key[HUGE_LEN] = '\0';
  memset(g.over_small, 'b', 2 * SMALL_MAX);
  g.over_small[2 * SMALL_MAX] = '\0';
  memcpy(g.binary, "\x00\xFF\xFE{\x01\x80", sizeof g.binary);
  g.cbs = (mim_subscription_callbacks)MIM_SUBSCRIPTION_CALLBACKS_INIT;
  g.cbs.on_item = on_item;
  if (mim_credentials_from_string(g.srv->root_key, &g.creds) != MIM_OK)
    return -1;
  g.perms = mim_permissions_new();
  if (!g.perms ||
      mim_permissions_add_cache(g.perms, MIM_CACHE_READ_ONLY, CACHE, CHAT, false) != MIM_OK)
    return -1;
  g.perms_wide = mim_permissions_new();
  if (!g.perms_wide ||
      mim_permissions_add_cache(g.perms_wide, MIM_CACHE_READ_WRITE, CACHE, NULL, false) != MIM_OK)
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mim_leave(g.session);
  mim_leave(g.small_session);
  mim_client_free(g.user);
  mim_client_free(g.tampered);
  mim_client_free(g.expired);
  mim_client_free(g.small_root);
  mim_client_free(g.root);
  mim_credentials_free(g.creds);
  mim_permissions_free(g.perms);
  free(g.huge);
  free(g.huge_key);
  free(g.huge_plus);
  mim_permissions_free(g.perms_wide);
  free(g.over_small);
  free(g.bad_utf8);
  int rc = 0;
  if (g.srv && mim_local_stop(g.srv) != 0)
    rc = -1;
  if (g.small && mim_local_stop(g.small) != 0)
    rc = -1;
  printf("[bad-input] %d rows run in total, %d failed\n", rows_run, rows_failed);
  return rc;
}

static void test_offline(void **state) {
  (void)state;
  run_rows("offline", offline_rows, sizeof offline_rows / sizeof *offline_rows);
}

static void test_clients(void **state) {
  (void)state;
  g.root = client_from_key(g.srv->root_key);
  run_rows("clients", client_rows, sizeof client_rows / sizeof *client_rows);
}

static void test_lists(void **state) {
  (void)state;
  run_rows("lists", list_rows, sizeof list_rows / sizeof *list_rows);
}

static void test_topics(void **state) {
  (void)state;
  run_rows("topics", topic_rows, sizeof topic_rows / sizeof *topic_rows);
}

static void test_tokens(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(g.root, CACHE, CHAT, 600, "user", &t), MIM_OK);
  g.user = client_from_key(t->credential);
  g.tampered = tampered_client(t);
  mim_disposable_token_free(t);
  g.expired = expired_client();
  run_rows("tokens", token_rows, sizeof token_rows / sizeof *token_rows);
}

static void test_im(void **state) {
  (void)state;
  assert_int_equal(mim_join(g.root, CACHE, CHAT, NULL, on_message, NULL, &g.session), MIM_OK);
  run_rows("im", im_rows, sizeof im_rows / sizeof *im_rows);
}

static void test_foreign(void **state) {
  (void)state;
  if (!g.session)
    assert_int_equal(mim_join(g.root, CACHE, CHAT, NULL, on_message, NULL, &g.session), MIM_OK);
  run_rows("foreign payloads", foreign_rows, sizeof foreign_rows / sizeof *foreign_rows);
}

static void test_oversize(void **state) {
  (void)state;
  /* The library's own payload limit lifted, so the server's refusal is what is seen. */
  g.small_root = client_with_payload(g.small->root_key, 4 * SMALL_MAX);
  assert_int_equal(mim_join(g.small_root, CACHE, CHAT, NULL, on_message, NULL, &g.small_session),
                   MIM_OK);
  run_rows("oversize", oversize_rows, sizeof oversize_rows / sizeof *oversize_rows);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_offline), cmocka_unit_test(test_clients),  cmocka_unit_test(test_lists),
      cmocka_unit_test(test_topics),  cmocka_unit_test(test_tokens),   cmocka_unit_test(test_im),
      cmocka_unit_test(test_foreign), cmocka_unit_test(test_oversize),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
