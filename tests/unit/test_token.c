/* lib/token.c against mim-local: the permission builder, minting, and the two policies
 * enforced end to end on list calls (client-only, moderated), custom grants, expiry and
 * garbled keys. Topic permissions are exercised by the topics tests. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "grpc_test_server.h"
#include "mim_local.h"
#include "test_client.h"

#include <momento/list.h>
#include <momento/token.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "instant-messaging"
#define OTHER_CACHE "other-cache"

static mim_local *srv;
static mim_client *root;

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, OTHER_CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

static mim_status push(mim_client *c, const char *cache, const char *list) {
  return mim_list_push_back(c, cache, list, "m", 1, NULL, NULL);
}

static mim_status fetch(mim_client *c, const char *cache, const char *list) {
  mim_list_values *lv = NULL;
  mim_status st = mim_list_fetch(c, cache, list, NULL, &lv);
  mim_list_values_free(lv);
  return st;
}

/* ---- builder and argument checks ---- */

static void test_builder_rejects_bad_input(void **state) {
  (void)state;
  const mim_status E = MIM_ERR_INVALID_ARGUMENT;
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  assert_int_equal(mim_permissions_add_cache(NULL, MIM_CACHE_READ_ONLY, CACHE, "k", false), E);
  assert_int_equal(mim_permissions_add_cache(p, (mim_cache_role)0, CACHE, "k", false), E);
  assert_int_equal(mim_permissions_add_cache(p, (mim_cache_role)9, CACHE, "k", false), E);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, "", "k", false), E);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, "", false), E);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, NULL, true), E);
  assert_int_equal(mim_permissions_add_topic(NULL, MIM_TOPIC_PUBLISH_ONLY, CACHE, "t", false), E);
  assert_int_equal(mim_permissions_add_topic(p, (mim_topic_role)0, CACHE, "t", false), E);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_ONLY, CACHE, "", false), E);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_ONLY, "", "t", false), E);
  assert_string_not_equal(mim_last_error_detail(), "");
  /* Nothing was added: minting an empty set is refused locally. */
  mim_disposable_token *t = (mim_disposable_token *)p;
  assert_int_equal(mim_token_generate(root, p, 60, NULL, &t), E);
  assert_null(t);
  /* Every valid shape is accepted. */
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, NULL, NULL, false), MIM_OK);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_WRITE_ONLY, CACHE, "pre", true), MIM_OK);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, NULL, NULL, false),
                   MIM_OK);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, "t-", true),
                   MIM_OK);
  assert_int_equal(mim_token_generate(NULL, p, 60, NULL, &t), E);
  assert_int_equal(mim_token_generate(root, NULL, 60, NULL, &t), E);
  assert_int_equal(mim_token_generate(root, p, 0, NULL, &t), E);
  assert_int_equal(mim_token_generate(root, p, 60, NULL, NULL), E);
  assert_int_equal(mim_token_generate(root, p, 60, "", &t), MIM_OK);
  assert_non_null(t);
  mim_disposable_token_free(t);
  mim_permissions_free(p);
  mim_permissions_free(NULL);
  mim_disposable_token_free(NULL);
}

static void test_policy_helpers_reject_bad_input(void **state) {
  (void)state;
  const mim_status E = MIM_ERR_INVALID_ARGUMENT;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, NULL, "c", 60, "u", &t), E);
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "", 60, "u", &t), E);
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "c", 0, "u", &t), E);
  assert_int_equal(mim_token_generate_client_only(NULL, CACHE, "c", 60, "u", &t), E);
  assert_int_equal(mim_token_generate_moderated(root, "", "c", 60, "u", &t), E);
  assert_int_equal(mim_token_generate_moderated(root, CACHE, NULL, 60, "u", &t), E);
  assert_int_equal(mim_token_generate_moderated(root, CACHE, "c", 60, "u", NULL), E);
  assert_null(t);
}

/* ---- minted tokens ---- */

static void test_minted_token_fields(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  time_t before = time(NULL);
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-f", 3600, "alice", &t),
                   MIM_OK);
  assert_non_null(t);
  assert_non_null(t->credential);
  assert_non_null(t->api_key);
  assert_true(strlen(t->api_key) > 0);
  assert_string_equal(t->endpoint, srv->endpoint);
  assert_true(t->valid_until >= (uint64_t)before + 3599);
  assert_true(t->valid_until <= (uint64_t)time(NULL) + 3601);
  /* The credential is a v1 key holding exactly that endpoint and token. */
  mim_credentials *creds = NULL;
  assert_int_equal(mim_credentials_from_string(t->credential, &creds), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(creds), t->api_key);
  assert_string_equal(mim_credentials_endpoint(creds), srv->endpoint);
  mim_credentials_free(creds);
  mim_disposable_token_free(t);
}

static void test_client_only_policy(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-a", 3600, "alice", &t),
                   MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  /* Own chat: read and write. */
  assert_int_equal(push(c, CACHE, "room-a"), MIM_OK);
  assert_int_equal(fetch(c, CACHE, "room-a"), MIM_OK);
  assert_int_equal(mim_list_length(c, CACHE, "room-a", NULL, NULL), MIM_OK);
  assert_int_equal(mim_list_remove_value(c, CACHE, "room-a", "m", 1, NULL), MIM_OK);
  /* Another chat, the same chat in another cache, and a key that only shares a prefix. */
  assert_int_equal(push(c, CACHE, "room-b"), MIM_ERR_PERMISSION_DENIED);
  assert_string_not_equal(mim_last_error_detail(), "");
  assert_int_equal(fetch(c, CACHE, "room-b"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(fetch(c, CACHE, "room-ab"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(fetch(c, OTHER_CACHE, "room-a"), MIM_ERR_PERMISSION_DENIED);
  /* No control plane, and no minting of anything beyond its own grants (whether a
   * scoped token may mint a subset of its own grants is the server's policy). */
  assert_int_equal(mim_cache_create(c, "mine"), MIM_ERR_PERMISSION_DENIED);
  mim_disposable_token *t2 = NULL;
  assert_int_equal(mim_token_generate_client_only(c, CACHE, "room-b", 60, "x", &t2),
                   MIM_ERR_PERMISSION_DENIED);
  assert_null(t2);
  mim_permissions *wide = mim_permissions_new();
  assert_non_null(wide);
  assert_int_equal(mim_permissions_add_cache(wide, MIM_CACHE_READ_WRITE, CACHE, NULL, false),
                   MIM_OK);
  assert_int_equal(mim_token_generate(c, wide, 60, "x", &t2), MIM_ERR_PERMISSION_DENIED);
  assert_null(t2);
  mim_permissions_free(wide);
  mim_client_free(c);
  mim_disposable_token_free(t);
}

static void test_moderated_policy(void **state) {
  (void)state;
  assert_int_equal(push(root, CACHE, "room-m"), MIM_OK);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, "room-m", 3600, "bob", &t), MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  /* Own chat: read only. */
  assert_int_equal(fetch(c, CACHE, "room-m"), MIM_OK);
  assert_int_equal(mim_list_length(c, CACHE, "room-m", NULL, NULL), MIM_OK);
  assert_int_equal(push(c, CACHE, "room-m"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_list_push_front(c, CACHE, "room-m", "m", 1, NULL, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_list_remove_value(c, CACHE, "room-m", "m", 1, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_list_pop_front(c, CACHE, "room-m", NULL, NULL, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_item_delete(c, CACHE, "room-m"), MIM_ERR_PERMISSION_DENIED);
  /* Neither the input topic's name nor another chat is a readable list. */
  assert_int_equal(fetch(c, CACHE, "room-m-input"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(fetch(c, CACHE, "room-x"), MIM_ERR_PERMISSION_DENIED);
  mim_client_free(c);
  mim_disposable_token_free(t);
  /* The list is unchanged. */
  uint32_t len = 0;
  assert_int_equal(mim_list_length(root, CACHE, "room-m", &len, NULL), MIM_OK);
  assert_int_equal(len, 1);
}

static void test_custom_grants(void **state) {
  (void)state;
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, "pre-", true), MIM_OK);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_WRITE_ONLY, OTHER_CACHE, NULL, false),
                   MIM_OK);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate(root, p, 600, "carol", &t), MIM_OK);
  mim_permissions_free(p); /* the token does not depend on the builder */
  mim_client *c = test_client_from_key(t->credential);
  assert_int_equal(fetch(c, CACHE, "pre-1"), MIM_OK);
  assert_int_equal(fetch(c, CACHE, "pre-"), MIM_OK);
  assert_int_equal(push(c, CACHE, "pre-1"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(fetch(c, CACHE, "pr"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(push(c, OTHER_CACHE, "anything"), MIM_OK);
  assert_int_equal(fetch(c, OTHER_CACHE, "anything"), MIM_ERR_PERMISSION_DENIED);
  mim_client_free(c);
  mim_disposable_token_free(t);
}

static void test_expired_token(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-e", 1, "eve", &t), MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  assert_int_equal(fetch(c, CACHE, "room-e"), MIM_OK);
  /* Wait (bounded) until the wall clock is past valid_until, then the server must say no. */
  time_t give_up = time(NULL) + 10;
  while ((uint64_t)time(NULL) <= t->valid_until && time(NULL) < give_up) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  assert_true((uint64_t)time(NULL) > t->valid_until);
  assert_int_equal(fetch(c, CACHE, "room-e"), MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(push(c, CACHE, "room-e"), MIM_ERR_UNAUTHENTICATED);
  mim_client_free(c);
  mim_disposable_token_free(t);
}

/* A minted key with a NUL inside would reach us cut at the NUL (protobuf-c strings):
 * the response is refused instead of handing out a different key. */
static void test_key_with_nul_refused(void **state) {
  (void)state;
  grpc_test_server *ts = grpc_test_server_start();
  assert_non_null(ts);
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.token_host = grpc_test_server_address(ts);
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 5000;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(c, "cache", "chat", 60, NULL, &t),
                   MIM_ERR_PROTOCOL);
  assert_null(t);
  assert_non_null(strstr(mim_last_error_detail(), "api_key"));
  mim_client_free(c);
  grpc_test_server_stop(ts);
}

static void test_garbled_key(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-g", 600, "gus", &t), MIM_OK);
  size_t n = strlen(t->api_key);
  char *bad = strdup(t->api_key);
  assert_non_null(bad);
  /* Flip one character in the middle (the signature or the claims, either must fail). */
  bad[n / 2] = bad[n / 2] == 'A' ? 'B' : 'A';
  char *key = NULL;
  assert_int_equal(mim_credentials_encode_v1(t->endpoint, bad, &key), MIM_OK);
  mim_client *c = test_client_from_key(key);
  assert_int_equal(fetch(c, CACHE, "room-g"), MIM_ERR_UNAUTHENTICATED);
  mim_client_free(c);
  free(key);
  /* Truncated token. */
  bad[n - 3] = '\0';
  assert_int_equal(mim_credentials_encode_v1(t->endpoint, bad, &key), MIM_OK);
  c = test_client_from_key(key);
  assert_int_equal(push(c, CACHE, "room-g"), MIM_ERR_UNAUTHENTICATED);
  mim_client_free(c);
  free(key);
  free(bad);
  mim_disposable_token_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builder_rejects_bad_input),
      cmocka_unit_test(test_policy_helpers_reject_bad_input),
      cmocka_unit_test(test_minted_token_fields),
      cmocka_unit_test(test_client_only_policy),
      cmocka_unit_test(test_moderated_policy),
      cmocka_unit_test(test_custom_grants),
      cmocka_unit_test(test_expired_token),
      cmocka_unit_test(test_garbled_key),
      cmocka_unit_test(test_key_with_nul_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
