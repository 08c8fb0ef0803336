/* Tests of the moderator's forwarding (lib/moderator.c through lib/outbox.c) against
 * mim-local: a forward that meets a server gone away (UNAVAILABLE) is retried and lands
 * exactly once in the list and once on the topic, and on_forward_result reports each
 * forwarded message exactly once (none for rejected, foreign or repeated inputs). The
 * moderated-mode behaviour seen by chat clients is tested in test_im. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "mim_local.h"
#include "test_client.h"
#include "test_clock.h"
#include "time_scale.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "moderator-test"
#define WAIT_MS 20000
#define MAX_REPORTS 32

/* Everything the callbacks (filter, log, forward reports, topic observer) record, and the
 * gates with which the test holds the moderator's event thread at chosen points. One
 * instance: the log callback is process-wide. */
static struct probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* The filter blocks on an input with this text until filter_open. */
  char hold_text[16];
  bool filter_entered, filter_open;
  /* While log_armed, the first "forward ... retry" log line blocks until log_open: the
   * event thread that wrote it runs the retry timer, so no retry happens meanwhile. */
  bool log_armed, log_open;
  int retry_lines;
  char first_retry_line[256];
  /* on_forward_result calls. */
  struct report {
    char chat[64];
    char id[MIM_MESSAGE_ID_SIZE];
    mim_status status;
  } reports[MAX_REPORTS];
  int nreports;
  /* Topic observer: items carrying watch_id, and all items. */
  char watch_id[MIM_MESSAGE_ID_SIZE];
  int watched_items, items;
} probe = {.mu = PTHREAD_MUTEX_INITIALIZER}; /* cv: made in main, on the monotonic clock */

static void probe_reset(void) {
  pthread_mutex_lock(&probe.mu);
  probe.hold_text[0] = '\0';
  probe.filter_entered = probe.filter_open = false;
  probe.log_armed = probe.log_open = false;
  probe.retry_lines = 0;
  probe.first_retry_line[0] = '\0';
  probe.nreports = 0;
  probe.watch_id[0] = '\0';
  probe.watched_items = probe.items = 0;
  pthread_mutex_unlock(&probe.mu);
}

/* Opens every gate: a failed test must not leave the event thread blocked. */
static void probe_release(void) {
  pthread_mutex_lock(&probe.mu);
  probe.filter_open = true;
  probe.log_open = true;
  pthread_cond_broadcast(&probe.cv);
  pthread_mutex_unlock(&probe.mu);
}

/* Waits (bounded, scaled) until *flag is true. */
static bool wait_flag(const bool *flag) {
  struct timespec until = cmn_deadline_after_ms((int64_t)WAIT_MS * test_time_scale());
  pthread_mutex_lock(&probe.mu);
  while (!*flag && pthread_cond_timedwait(&probe.cv, &probe.mu, &until) == 0) {
  }
  bool ok = *flag;
  pthread_mutex_unlock(&probe.mu);
  return ok;
}

/* Waits (bounded, scaled) until *count >= n. */
static bool wait_count(const int *count, int n) {
  struct timespec until = cmn_deadline_after_ms((int64_t)WAIT_MS * test_time_scale());
  pthread_mutex_lock(&probe.mu);
  while (*count < n && pthread_cond_timedwait(&probe.cv, &probe.mu, &until) == 0) {
  }
  bool ok = *count >= n;
  pthread_mutex_unlock(&probe.mu);
  return ok;
}

static int read_count(const int *count) {
  pthread_mutex_lock(&probe.mu);
  int n = *count;
  pthread_mutex_unlock(&probe.mu);
  return n;
}

static void on_log(mim_log_level level, const char *message, void *user) {
  (void)level;
  (void)user;
  if (getenv("MIM_TEST_LOG"))
    fprintf(stderr, "log: %s\n", message);
  if (strncmp(message, "forward ", 8) != 0 || !strstr(message, ", retry "))
    return;
  pthread_mutex_lock(&probe.mu);
  if (probe.retry_lines++ == 0)
    snprintf(probe.first_retry_line, sizeof probe.first_retry_line, "%s", message);
  pthread_cond_broadcast(&probe.cv);
  while (probe.log_armed && !probe.log_open)
    pthread_cond_wait(&probe.cv, &probe.mu);
  pthread_mutex_unlock(&probe.mu);
}

/* Accepts everything but "spam"; "darn" is rewritten, "grow" to 4096 bytes; hold_text
 * blocks first. */
static mim_moderation_verdict filter(const mim_message *m, char **new_text, void *user) {
  (void)user;
  pthread_mutex_lock(&probe.mu);
  if (probe.hold_text[0] && strcmp(m->text, probe.hold_text) == 0) {
    probe.filter_entered = true;
    pthread_cond_broadcast(&probe.cv);
    while (!probe.filter_open)
      pthread_cond_wait(&probe.cv, &probe.mu);
  }
  pthread_mutex_unlock(&probe.mu);
  if (strcmp(m->text, "spam") == 0)
    return MIM_MODERATION_REJECT;
  if (strcmp(m->text, "darn") == 0) {
    *new_text = strdup("****");
    return MIM_MODERATION_REWRITE;
  }
  if (strcmp(m->text, "grow") == 0) { /* a rewrite past the 4 KB topic payload limit */
    char *big = malloc(4097);
    if (big) {
      memset(big, 'g', 4096);
      big[4096] = '\0';
    }
    *new_text = big;
    return MIM_MODERATION_REWRITE;
  }
  return MIM_MODERATION_ACCEPT;
}

static void on_forward_result(mim_moderator *mod, const char *chat, const char *id,
                              mim_status status, const char *detail, void *user) {
  (void)mod;
  (void)detail;
  (void)user;
  pthread_mutex_lock(&probe.mu);
  if (probe.nreports < MAX_REPORTS) {
    struct report *r = &probe.reports[probe.nreports];
    snprintf(r->chat, sizeof r->chat, "%s", chat);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->status = status;
  }
  probe.nreports++;
  pthread_cond_broadcast(&probe.cv);
  pthread_mutex_unlock(&probe.mu);
}

static void on_chat_item(void *user, const mim_topic_item *item) {
  (void)user;
  pthread_mutex_lock(&probe.mu);
  probe.items++;
  if (probe.watch_id[0] && strstr((const char *)item->data, probe.watch_id))
    probe.watched_items++;
  pthread_cond_broadcast(&probe.cv);
  pthread_mutex_unlock(&probe.mu);
}

/* ---- server, clients, inputs ---- */

static mim_local *start_server(int port) {
  static const char *caches[] = {CACHE, NULL};
  char port_arg[16];
  snprintf(port_arg, sizeof port_arg, "%d", port);
  const char *extra[] = {"--port", port_arg, NULL};
  /* No auth: the clients' key stays good across a restart (a new root key). */
  mim_local_opts o = {.caches = caches, .no_auth = 1, .extra_args = port > 0 ? extra : NULL};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  return srv;
}

/* Publishes an envelope with this id and text on "<chat>-input", as mim_send would. */
static void publish_input(mim_client *c, const char *chat, const char *id, const char *text) {
  char topic[96], json[256];
  snprintf(topic, sizeof topic, "%s-input", chat);
  snprintf(json, sizeof json, "{\"v\":1,\"id\":\"%s\",\"from\":\"alice\",\"text\":\"%s\",\"ts\":1}",
           id, text);
  assert_int_equal(mim_topic_publish_text(c, CACHE, topic, json), MIM_OK);
}

/* Values of list `chat` that carry id (all values when id is NULL). */
static int list_count(mim_client *c, const char *chat, const char *id) {
  mim_list_values *v = NULL;
  assert_int_equal(mim_list_fetch(c, CACHE, chat, NULL, &v), MIM_OK);
  int n = 0;
  for (size_t i = 0; i < v->count; i++)
    n += !id || strstr((const char *)v->values[i].data, id) != NULL;
  mim_list_values_free(v);
  return n;
}

typedef struct fixture {
  mim_local *srv;
  mim_client *mc, *oc; /* the moderator's client, the sender's and observer's */
  mim_moderator *mod;
  mim_subscription *sub;
} fixture;

static int fixture_setup(void **state) {
  probe_reset();
  *state = calloc(1, sizeof(fixture));
  return *state ? 0 : -1;
}

static int fixture_teardown(void **state) {
  fixture *f = *state;
  probe_release();
  mim_moderator_stop(f->mod);
  mim_topic_unsubscribe(f->sub);
  mim_client_free(f->mc);
  mim_client_free(f->oc);
  int rc = f->srv ? mim_local_stop(f->srv) : 0;
  free(f);
  return rc == 0 ? 0 : -1;
}

static void start_moderator(fixture *f, const char *chat) {
  mim_moderator_options o;
  mim_moderator_options_init(&o);
  o.on_forward_result = on_forward_result;
  const char *chats[] = {chat};
  assert_int_equal(
      mim_moderator_start_with_options(f->mc, CACHE, chats, 1, &o, filter, NULL, &f->mod), MIM_OK);
}

static void observe(fixture *f, const char *chat) {
  mim_subscription_callbacks cbs = {.struct_size = sizeof(mim_subscription_callbacks),
                                    .on_item = on_chat_item};
  assert_int_equal(mim_topic_subscribe(f->oc, CACHE, chat, NULL, &cbs, &f->sub), MIM_OK);
}

/* ---- tests ---- */

/* The server goes away between the filter's verdict and the forward: the push meets
 * UNAVAILABLE, is retried, and once the server is back (same port, empty) the message is
 * pushed and published exactly once and reported once. The old moderator dropped it. */
static void test_forward_retried_after_unavailable(void **state) {
  fixture *f = *state;
  const char *chat = "retried";
  const char *id = "0123456789abcdef0123456789abcdef";
  f->srv = start_server(0);
  int port = f->srv->port;
  f->mc = test_client_from_key(f->srv->root_key);
  f->oc = test_client_from_key(f->srv->root_key);
  start_moderator(f, chat);
  snprintf(probe.hold_text, sizeof probe.hold_text, "hold");
  snprintf(probe.watch_id, sizeof probe.watch_id, "%s", id);
  publish_input(f->oc, chat, id, "hold");
  assert_true(wait_flag(&probe.filter_entered));

  /* The filter holds the event thread: kill the server, then let the forward start. */
  pthread_mutex_lock(&probe.mu);
  probe.log_armed = true;
  pthread_mutex_unlock(&probe.mu);
  assert_int_equal(mim_local_kill(f->srv), 128 + SIGKILL);
  f->srv = NULL;
  pthread_mutex_lock(&probe.mu);
  probe.filter_open = true;
  pthread_cond_broadcast(&probe.cv);
  pthread_mutex_unlock(&probe.mu);

  /* The first attempt failed and a retry is scheduled (held by the log gate). */
  assert_true(wait_count(&probe.retry_lines, 1));
  pthread_mutex_lock(&probe.mu);
  bool unavailable = strstr(probe.first_retry_line, "UNAVAILABLE") != NULL;
  if (!unavailable)
    fprintf(stderr, "first retry: %s\n", probe.first_retry_line);
  pthread_mutex_unlock(&probe.mu);
  assert_true(unavailable);
  assert_int_equal(read_count(&probe.nreports), 0);

  /* Back on the same port; watch the chat topic before the retry may run. */
  f->srv = start_server(port);
  observe(f, chat);
  pthread_mutex_lock(&probe.mu);
  probe.log_open = true;
  pthread_cond_broadcast(&probe.cv);
  pthread_mutex_unlock(&probe.mu);

  assert_true(wait_count(&probe.nreports, 1));
  assert_true(wait_count(&probe.watched_items, 1));
  test_sleep_ms(300); /* a second publish would come right behind the first */
  pthread_mutex_lock(&probe.mu);
  int nreports = probe.nreports, watched = probe.watched_items, items = probe.items;
  struct report r = probe.reports[0];
  pthread_mutex_unlock(&probe.mu);
  assert_int_equal(nreports, 1);
  assert_string_equal(r.chat, chat);
  assert_string_equal(r.id, id);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(watched, 1);
  assert_int_equal(items, 1);
  assert_int_equal(list_count(f->oc, chat, id), 1);
  assert_int_equal(list_count(f->oc, chat, NULL), 1);
  mim_moderator_stop(f->mod);
  f->mod = NULL;
  assert_int_equal(read_count(&probe.nreports), 1);
}

/* One report per forwarded message, in input order: accepted and rewritten ones; none
 * for a rejected, a foreign or a repeated input. */
static void test_one_report_per_forward(void **state) {
  fixture *f = *state;
  const char *chat = "reports";
  const char *ids[] = {"a0000000000000000000000000000001", "a0000000000000000000000000000002",
                       "a0000000000000000000000000000003", "a0000000000000000000000000000004"};
  f->srv = start_server(0);
  f->mc = test_client_from_key(f->srv->root_key);
  f->oc = test_client_from_key(f->srv->root_key);
  start_moderator(f, chat);
  observe(f, chat);
  publish_input(f->oc, chat, ids[0], "hello");
  publish_input(f->oc, chat, ids[1], "spam");
  publish_input(f->oc, chat, ids[2], "darn");
  publish_input(f->oc, chat, ids[0], "hello"); /* a sender's retried publish */
  assert_int_equal(mim_topic_publish_text(f->oc, CACHE, "reports-input", "not an envelope"),
                   MIM_OK);
  publish_input(f->oc, chat, ids[3], "bye");
  assert_true(wait_count(&probe.items, 3)); /* the last forward has been published */
  mim_moderator_stop(f->mod);               /* nothing was left to flush */
  f->mod = NULL;
  pthread_mutex_lock(&probe.mu);
  int n = probe.nreports;
  struct report got[3];
  memcpy(got, probe.reports, sizeof got);
  pthread_mutex_unlock(&probe.mu);
  assert_int_equal(n, 3);
  const char *want[] = {ids[0], ids[2], ids[3]};
  for (int i = 0; i < 3; i++) {
    assert_string_equal(got[i].chat, chat);
    assert_string_equal(got[i].id, want[i]);
    assert_int_equal(got[i].status, MIM_OK);
  }
  assert_int_equal(list_count(f->oc, chat, NULL), 3);
}

/* A rewrite whose envelope outgrows the topic payload limit (hosted Momento's 4 KB) is
 * reported once with INVALID_ARGUMENT and never sent nor retried; later inputs go on. */
static void test_forward_over_payload_limit(void **state) {
  fixture *f = *state;
  const char *chat = "growing";
  f->srv = start_server(0);
  f->mc = test_client_from_key(f->srv->root_key);
  f->oc = test_client_from_key(f->srv->root_key);
  start_moderator(f, chat);
  observe(f, chat);
  publish_input(f->oc, chat, "b0000000000000000000000000000001", "grow");
  publish_input(f->oc, chat, "b0000000000000000000000000000002", "bye");
  assert_true(wait_count(&probe.items, 1));
  assert_true(wait_count(&probe.nreports, 2)); /* "bye"'s report follows its publish */
  pthread_mutex_lock(&probe.mu);
  int n = probe.nreports, retries = probe.retry_lines;
  struct report got[2];
  memcpy(got, probe.reports, sizeof got);
  pthread_mutex_unlock(&probe.mu);
  assert_int_equal(n, 2);
  assert_string_equal(got[0].id, "b0000000000000000000000000000001");
  assert_int_equal(got[0].status, MIM_ERR_INVALID_ARGUMENT);
  assert_string_equal(got[1].id, "b0000000000000000000000000000002");
  assert_int_equal(got[1].status, MIM_OK);
  assert_int_equal(retries, 0);
  assert_int_equal(list_count(f->oc, chat, NULL), 1);
}

#define FIXTURE_TEST(t) cmocka_unit_test_setup_teardown(t, fixture_setup, fixture_teardown)

int main(void) {
  cmn_cond_init_monotonic(&probe.cv); /* waited on with deadlines */
  mim_set_log_callback(on_log, MIM_LOG_INFO, NULL);
  const struct CMUnitTest tests[] = {
      FIXTURE_TEST(test_forward_retried_after_unavailable),
      FIXTURE_TEST(test_one_report_per_forward),
      FIXTURE_TEST(test_forward_over_payload_limit),
  };
  if (getenv("MIM_TEST_FILTER"))
    cmocka_set_test_filter(getenv("MIM_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
