/* Misuse and failures that must say what went wrong: mim_client_free with sessions,
 * moderators or subscriptions still live (a warning, and nothing leaked), and a
 * credential check that authenticates (unlike Ping). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "mim_local.h"
#include "test_client.h"

#include <momento/client.h>
#include <momento/im.h>
#include <momento/token.h>
#include <momento/topics.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "instant-messaging"

static mim_local *srv;
static mim_client *root;

static int start_server(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int stop_server(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

/* ---- the log callback: every warning, joined ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char warnings[4096];

static void capture_log(mim_log_level level, const char *message, void *user) {
  (void)user;
  if (level > MIM_LOG_WARN)
    return;
  pthread_mutex_lock(&log_mu);
  size_t used = strlen(warnings);
  snprintf(warnings + used, sizeof warnings - used, "%s\n", message);
  pthread_mutex_unlock(&log_mu);
}

static void capture_start(void) {
  pthread_mutex_lock(&log_mu);
  warnings[0] = '\0';
  pthread_mutex_unlock(&log_mu);
  mim_set_log_callback(capture_log, MIM_LOG_WARN, NULL);
}

/* What was captured (stops capturing). */
static const char *capture_stop(void) {
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  return warnings;
}

/* ---- mim_client_free with live objects ---- */

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s, (void)m, (void)user;
}

static void on_item(void *user, const mim_topic_item *item) {
  (void)user, (void)item;
}

static mim_moderation_verdict pass(const mim_message *msg, char **new_text, void *user) {
  (void)msg, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

static mim_session *join(mim_client *c, const char *chat) {
  mim_session *s = NULL;
  mim_status st = mim_join(c, CACHE, chat, NULL, on_message, NULL, &s);
  if (st != MIM_OK)
    fail_msg("mim_join %s: %s %s", chat, mim_status_name(st), mim_last_error_detail());
  return s;
}

/* Forgotten sessions, a moderator and a subscription: mim_client_free says how many it
 * found and ends them (ASan/valgrind: nothing leaks, nothing is used after free). */
static void test_free_with_live_objects(void **state) {
  (void)state;
  mim_client *c = test_client_from_key(srv->root_key);
  (void)join(c, "forgot-1");
  (void)join(c, "forgot-2");
  mim_session *left = join(c, "left-properly");
  const char *chats[] = {"forgot-mod"};
  mim_moderator *m = NULL;
  assert_int_equal(mim_moderator_start(c, CACHE, chats, 1, 0, pass, NULL, &m), MIM_OK);
  mim_subscription_callbacks cbs = MIM_SUBSCRIPTION_CALLBACKS_INIT;
  cbs.on_item = on_item;
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(c, CACHE, "forgot-topic", NULL, &cbs, &sub), MIM_OK);
  mim_leave(left); /* not counted */
  capture_start();
  mim_client_free(c);
  const char *w = capture_stop();
  print_message("warnings: %s", w);
  assert_non_null(strstr(w, "mim_client_free: 2 sessions still joined, 1 moderator still running, "
                            "1 subscription still open"));
}

/* Everything ended first: no warning. */
static void test_free_clean_is_silent(void **state) {
  (void)state;
  mim_client *c = test_client_from_key(srv->root_key);
  mim_session *s = join(c, "clean");
  mim_leave(s);
  capture_start();
  mim_client_free(c);
  assert_null(strstr(capture_stop(), "mim_client_free"));
}

/* A session joined with mim_join_async belongs to the application once on_joined ran. */
static pthread_mutex_t joined_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t joined_cv = PTHREAD_COND_INITIALIZER;
static int joined;

static void on_joined(mim_session *s, mim_status st, const char *detail, void *user) {
  (void)s, (void)detail, (void)user;
  pthread_mutex_lock(&joined_mu);
  joined = st == MIM_OK ? 1 : -1;
  pthread_cond_broadcast(&joined_cv);
  pthread_mutex_unlock(&joined_mu);
}

static void test_free_with_async_session(void **state) {
  (void)state;
  mim_client *c = test_client_from_key(srv->root_key);
  joined = 0;
  assert_int_equal(mim_join_async(c, CACHE, "forgot-async", NULL, on_message, on_joined, NULL),
                   MIM_OK);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10L * test_time_scale();
  pthread_mutex_lock(&joined_mu);
  while (joined == 0 && pthread_cond_timedwait(&joined_cv, &joined_mu, &until) == 0)
    ;
  int outcome = joined;
  pthread_mutex_unlock(&joined_mu);
  assert_int_equal(outcome, 1);
  capture_start();
  mim_client_free(c);
  assert_non_null(strstr(capture_stop(), "1 session still joined"));
}

/* ---- mim_client_check_credentials ---- */

static mim_client *client_for_token(const char *endpoint, const char *auth_token) {
  char *key = NULL;
  assert_int_equal(mim_credentials_encode_v1(endpoint, auth_token, &key), MIM_OK);
  mim_client *c = test_client_from_key(key);
  free(key);
  return c;
}

static void test_check_credentials_root_key(void **state) {
  (void)state;
  assert_int_equal(mim_client_check_credentials(root, CACHE), MIM_OK);
  assert_string_equal(mim_last_error_detail(), "");
}

/* Ping passes with any key; the check does not. */
static void test_check_credentials_wrong_key(void **state) {
  (void)state;
  mim_client *c = client_for_token(srv->endpoint, "forged-token");
  assert_int_equal(mim_client_ping(c), MIM_OK);
  assert_int_equal(mim_client_check_credentials(c, CACHE), MIM_ERR_UNAUTHENTICATED);
  const char *d = mim_last_error_detail();
  print_message("wrong key: %s\n", d);
  assert_non_null(strstr(d, "refused the credential"));
  assert_non_null(strstr(d, srv->endpoint));
  assert_null(strstr(d, "forged-token"));
  mim_client_free(c);
}

/* A token for one chat may not read the probe list: the server authenticated it, so it
 * is valid. */
static void test_check_credentials_scoped_token(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-s", 600, "sam", &t), MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  assert_int_equal(mim_client_check_credentials(c, CACHE), MIM_OK);
  mim_client_free(c);
  mim_disposable_token_free(t);
}

static void test_check_credentials_expired_token(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room-x", 1, "xena", &t), MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  time_t give_up = time(NULL) + 10;
  while ((uint64_t)time(NULL) <= t->valid_until && time(NULL) < give_up) {
    struct timespec ts = {0, 50L * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(mim_client_check_credentials(c, CACHE), MIM_ERR_UNAUTHENTICATED);
  assert_non_null(strstr(mim_last_error_detail(), "expired"));
  mim_client_free(c);
  mim_disposable_token_free(t);
}

static void test_check_credentials_missing_cache(void **state) {
  (void)state;
  assert_int_equal(mim_client_check_credentials(root, "no-such-cache"), MIM_ERR_NOT_FOUND);
  assert_non_null(strstr(mim_last_error_detail(), "accepted the credential"));
  assert_int_equal(mim_client_check_credentials(NULL, CACHE), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_client_check_credentials(root, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "mim_client_check_credentials: cache name"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_free_with_live_objects),
      cmocka_unit_test(test_free_clean_is_silent),
      cmocka_unit_test(test_free_with_async_session),
      cmocka_unit_test(test_check_credentials_root_key),
      cmocka_unit_test(test_check_credentials_wrong_key),
      cmocka_unit_test(test_check_credentials_scoped_token),
      cmocka_unit_test(test_check_credentials_expired_token),
      cmocka_unit_test(test_check_credentials_missing_cache),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
