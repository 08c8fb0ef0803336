/* Name rules at the public API, against mim-local (issue 15, item 4): a chat id whose
 * "<chat>-input" topic is too long fails mim_join in moderated mode up front (before, the
 * join worked and every mim_send then failed with INVALID_ARGUMENT), and so do the
 * moderator and the moderated token policy; list and topic calls refuse a too-long name
 * with a detail from the library (not the server's words); a token with more than
 * MIM_MAX_TOKEN_PERMISSIONS grants is refused before the server sees it. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>
#include <momento/list.h>
#include <momento/token.h>
#include <momento/topics.h>

#include "mim_local.h"
#include "test_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "names"

static mim_local *srv;
static mim_client *root;

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

static void assert_detail_has(const char *needle) {
  const char *d = mim_last_error_detail();
  if (!strstr(d, needle))
    fail_msg("detail \"%s\" lacks \"%s\"", d, needle);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)m;
  (void)user;
}

static mim_status join(const char *chat, mim_chat_mode mode, mim_session **out) {
  mim_join_options o = {.struct_size = sizeof(mim_join_options), .mode = mode};
  return mim_join(root, CACHE, chat, &o, on_message, NULL, out);
}

/* The example: 250 bytes fit a list key and a topic, not "<chat>-input". */
static void test_moderated_join_refuses_long_input_topic(void **state) {
  (void)state;
  char *chat = repeat('c', 250);
  mim_session *s = NULL;
  assert_int_equal(join(chat, MIM_CHAT_MODERATED, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_null(s);
  assert_detail_has("mim_join: moderated input topic name \"cccc");
  assert_detail_has("...-input\" is 256 bytes; Momento allows at most 255");
  /* The same id joins client-only: it needs no input topic. */
  assert_int_equal(join(chat, MIM_CHAT_CLIENT_ONLY, &s), MIM_OK);
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(s, "hi", id), MIM_OK);
  mim_leave(s);
  /* One byte less and moderated mode fits exactly (249 + 6 = 255). */
  chat[249] = '\0';
  assert_int_equal(join(chat, MIM_CHAT_MODERATED, &s), MIM_OK);
  mim_leave(s);
  free(chat);
}

static mim_moderation_verdict no_filter(const mim_message *msg, char **new_text, void *user) {
  (void)msg;
  (void)new_text;
  (void)user;
  return MIM_MODERATION_ACCEPT;
}

static void test_moderator_and_token_refuse_long_input_topic(void **state) {
  (void)state;
  char *chat = repeat('m', 250);
  const char *chats[] = {"fine", chat};
  mim_moderator *m = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 2, 0, no_filter, NULL, &m),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_null(m);
  assert_detail_has("mim_moderator_start: moderated input topic name \"mmmm");
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 60, NULL, &t),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_null(t);
  assert_detail_has("mim_token_generate_moderated: moderated input topic name");
  assert_int_equal(mim_token_generate_client_only(root, CACHE, chat, 60, NULL, &t), MIM_OK);
  mim_disposable_token_free(t);
  free(chat);
}

/* mim-local refuses such a key too, but in its own words: the detail proves the library
 * refused it before sending. */
static void test_list_key_too_long(void **state) {
  (void)state;
  char *key = repeat('k', 4097);
  assert_int_equal(mim_list_push_back(root, CACHE, key, "v", 1, NULL, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("list name \"kkkk");
  assert_detail_has("...\" is 4097 bytes; Momento allows at most 4096");
  key[4096] = '\0';
  assert_int_equal(mim_list_push_back(root, CACHE, key, "v", 1, NULL, NULL), MIM_OK);
  free(key);
}

static void test_topic_name_too_long_or_not_utf8(void **state) {
  (void)state;
  char *topic = repeat('t', 256);
  assert_int_equal(mim_topic_publish_text(root, CACHE, topic, "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("topic name \"tttt");
  assert_detail_has("is 256 bytes; Momento allows at most 255");
  topic[255] = '\0';
  assert_int_equal(mim_topic_publish_text(root, CACHE, topic, "x"), MIM_OK);
  free(topic);
  assert_int_equal(mim_topic_publish_text(root, CACHE, "bad \xC3\x28", "x"),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("topic name \"bad \\xC3(\" is not valid UTF-8 at offset 4");
}

/* A blank cache name: mim-local would create it, every official SDK refuses it. */
static void test_cache_create_blank_name(void **state) {
  (void)state;
  assert_int_equal(mim_cache_create(root, "   "), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("cache name \"   \" is only whitespace");
  char *name = repeat('z', 256);
  assert_int_equal(mim_cache_create(root, name), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("is 256 bytes; Momento allows at most 255");
  free(name);
}

/* Adds n distinct topic grants. */
static mim_permissions *grants(int n) {
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  for (int i = 0; i < n; i++) {
    char topic[16];
    snprintf(topic, sizeof topic, "t%d", i);
    assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, CACHE, topic, false),
                     MIM_OK);
  }
  return p;
}

static void test_token_permission_limit(void **state) {
  (void)state;
  mim_permissions *ten = grants(MIM_MAX_TOKEN_PERMISSIONS);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate(root, ten, 60, NULL, &t), MIM_OK);
  mim_disposable_token_free(t);
  mim_permissions_free(ten);
  mim_permissions *eleven = grants(MIM_MAX_TOKEN_PERMISSIONS + 1);
  t = NULL;
  assert_int_equal(mim_token_generate(root, eleven, 60, NULL, &t), MIM_ERR_INVALID_ARGUMENT);
  assert_null(t);
  assert_detail_has("perms holds 11 grants; Momento allows at most 10 permissions per token");
  mim_permissions_free(eleven);
}

/* Scopes naming what no call could use are refused when built. */
static void test_grant_names(void **state) {
  (void)state;
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  char *topic = repeat('g', 256);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, CACHE, topic, true),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("topic \"gggg");
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, "caf\xC3\xA9", "k", false),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("cache name \"caf\xC3\xA9\" has byte 0xC3 at offset 3");
  free(topic);
  mim_permissions_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_moderated_join_refuses_long_input_topic),
      cmocka_unit_test(test_moderator_and_token_refuse_long_input_topic),
      cmocka_unit_test(test_list_key_too_long),
      cmocka_unit_test(test_topic_name_too_long_or_not_utf8),
      cmocka_unit_test(test_cache_create_blank_name),
      cmocka_unit_test(test_token_permission_limit),
      cmocka_unit_test(test_grant_names),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
