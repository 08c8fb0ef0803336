/* The struct_size rule of the public option structs (<momento/common.h>, docs/ABI.md):
 * 0 or too small is refused with a detail naming the initialiser; a program built
 * against a newer header (a larger struct) works when its unknown fields are zero and is
 * refused when it sets them; an output struct gets only what the caller has room for. */
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
#include <momento/topics.h>

#include "mim_local.h"
#include "struct_size.h"
#include "test_client.h"

#include <string.h>

#define CACHE "sizes"

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

static void expect_refused(mim_status st, const char *words) {
  assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
  if (!strstr(mim_last_error_detail(), words))
    fail_msg("detail \"%s\" lacks \"%s\"", mim_last_error_detail(), words);
}

/* A mim_client_options as a program built against a header with one more field sees it. */
typedef struct newer_client_options {
  mim_client_options known;
  uint64_t future_field;
} newer_client_options;

static mim_client_options local_options(void) {
  mim_client_options o = MIM_CLIENT_OPTIONS_INIT;
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  return o;
}

static void test_client_options(void **state) {
  (void)state;
  mim_client *c = NULL;
  mim_client_options o = local_options();
  o.struct_size = 0;
  expect_refused(mim_client_create(&o, &c), "MIM_CLIENT_OPTIONS_INIT");
  assert_null(c);
  o.struct_size = sizeof(size_t);
  expect_refused(mim_client_create(&o, &c), "smaller than any version");

  newer_client_options n = {.known = local_options()};
  n.known.struct_size = sizeof n;
  assert_int_equal(mim_client_create(&n.known, &c), MIM_OK); /* unknown field is zero */
  mim_client_free(c);
  c = NULL;
  n.future_field = 1;
  expect_refused(mim_client_create(&n.known, &c), "built against a newer version");
  assert_null(c);

  mim_client_options via_init;
  mim_client_options_init(&via_init);
  assert_int_equal(via_init.struct_size, sizeof via_init);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s, (void)m, (void)user;
}

static void on_item(void *user, const mim_topic_item *item) {
  (void)user, (void)item;
}

static void test_call_options(void **state) {
  (void)state;
  mim_join_options jo = {0};
  mim_session *s = NULL;
  expect_refused(mim_join(root, CACHE, "chat", &jo, on_message, NULL, &s), "MIM_JOIN_OPTIONS_INIT");
  assert_null(s);
  mim_list_write_options wo = {.truncate_to = 3};
  expect_refused(mim_list_push_back(root, CACHE, "l", "v", 1, &wo, NULL),
                 "MIM_LIST_WRITE_OPTIONS_INIT");
  mim_dictionary_write_options dwo = {.ttl_ms = 1000};
  expect_refused(mim_dictionary_set_field(root, CACHE, "d", "f", 1, "v", 1, &dwo),
                 "MIM_DICTIONARY_WRITE_OPTIONS_INIT");
  mim_subscription *sub = NULL;
  mim_subscription_callbacks cb = {.on_item = on_item};
  expect_refused(mim_topic_subscribe(root, CACHE, "t", NULL, &cb, &sub),
                 "MIM_SUBSCRIPTION_CALLBACKS_INIT");
  cb.struct_size = sizeof cb;
  mim_subscribe_options so = {.backoff_max_ms = 10};
  expect_refused(mim_topic_subscribe(root, CACHE, "t", &so, &cb, &sub),
                 "MIM_SUBSCRIBE_OPTIONS_INIT");
  assert_null(sub);
  /* Initialised, the same calls work. */
  wo.struct_size = sizeof wo;
  assert_int_equal(mim_list_push_back(root, CACHE, "l", "v", 1, &wo, NULL), MIM_OK);
  dwo.struct_size = sizeof dwo;
  assert_int_equal(mim_dictionary_set_field(root, CACHE, "d", "f", 1, "v", 1, &dwo), MIM_OK);
  mim_join_options ok = MIM_JOIN_OPTIONS_INIT;
  assert_int_equal(mim_join(root, CACHE, "chat", &ok, on_message, NULL, &s), MIM_OK);
  mim_send_options sendo = {.reply_to = "x"};
  expect_refused(mim_send_with_options(s, "hi", &sendo, NULL), "MIM_SEND_OPTIONS_INIT");
  mim_send_options so_ok = MIM_SEND_OPTIONS_INIT;
  so_ok.reply_to = "x";
  assert_int_equal(mim_send_with_options(s, "hi", &so_ok, NULL), MIM_OK);
  mim_leave(s);
}

static mim_moderation_verdict allow(const mim_message *m, char **new_text, void *user) {
  (void)m, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

static void test_moderator_options(void **state) {
  (void)state;
  mim_moderator_options mo = {.history_cap = 5};
  mim_moderator *m = NULL;
  const char *chats[] = {"modchat"};
  expect_refused(mim_moderator_start_with_options(root, CACHE, chats, 1, &mo, allow, NULL, &m),
                 "MIM_MODERATOR_OPTIONS_INIT");
  assert_null(m);
  mim_moderator_options_init(&mo);
  assert_int_equal(mo.struct_size, sizeof mo);
}

/* The output struct: a caller that knows fewer counters gets those and nothing more. */
static void test_stats_out(void **state) {
  (void)state;
  assert_int_equal(mim_client_ping(root), MIM_OK);
  struct {
    mim_client_stats known;
    uint64_t sentinel;
  } bigger;
  memset(&bigger, 0xAB, sizeof bigger);
  bigger.known.struct_size = sizeof bigger; /* a newer program: more counters than we have */
  assert_int_equal(mim_client_stats_get(root, &bigger.known), MIM_OK);
  assert_int_equal(bigger.known.struct_size, sizeof bigger);
  assert_true(bigger.known.calls >= 1);
  assert_int_equal(bigger.sentinel, 0xABABABABABABABABull); /* not ours to write */

  mim_client_stats st;
  memset(&st, 0xCD, sizeof st);
  st.struct_size = MIM_SIZE_THROUGH(mim_client_stats, failed_calls); /* an older program */
  expect_refused(mim_client_stats_get(root, &st), "MIM_CLIENT_STATS_INIT");
  st.struct_size = 0;
  expect_refused(mim_client_stats_get(root, &st), "struct_size is 0");
  mim_client_stats full = MIM_CLIENT_STATS_INIT;
  assert_int_equal(mim_client_stats_get(root, &full), MIM_OK);
  assert_true(full.calls >= 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_options),
      cmocka_unit_test(test_call_options),
      cmocka_unit_test(test_moderator_options),
      cmocka_unit_test(test_stats_out),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
