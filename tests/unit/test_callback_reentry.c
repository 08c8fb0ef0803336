/* Tests of the blocking calls that a callback may make on its own session or moderator
 * (issue 13 item 13): mim_leave from on_message (live and during the history delivery of
 * mim_join) and from on_event, and mim_moderator_stop from the filter. None may hang:
 * each is deferred, no callback of the session runs after it, mim_join returns and
 * mim_client_free returns. mim_client_free from a callback is refused at once. Every call that
 * could hang runs on a helper thread with a bounded wait; a timeout aborts the program
 * (CMOCKA_TEST_ABORT) instead of hanging. */
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
#include "test_client.h"
#include "time_scale.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "reentry-test"
#define WAIT_MS 20000

static mim_local *srv;

/* ---- running a call that must not hang ---- */

typedef struct bounded {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  void (*fn)(void *);
  void *arg;
} bounded;

static void *bounded_main(void *p) {
  bounded *b = p;
  b->fn(b->arg);
  pthread_mutex_lock(&b->mu);
  b->done = true;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

/* Runs fn(arg) on a thread and fails the test (aborting) when it has not returned within
 * ms: a hang is reported, never waited for. */
static void run_bounded(const char *what, void (*fn)(void *), void *arg, int ms) {
  static bounded b; /* static: a hung thread may still write into it */
  pthread_mutex_init(&b.mu, NULL);
  cmn_cond_init_monotonic(&b.cv);
  b.done = false;
  b.fn = fn;
  b.arg = arg;
  pthread_t tid;
  assert_int_equal(pthread_create(&tid, NULL, bounded_main, &b), 0);
  struct timespec until = cmn_deadline_after_ms((int64_t)ms * test_time_scale());
  pthread_mutex_lock(&b.mu);
  while (!b.done && pthread_cond_timedwait(&b.cv, &b.mu, &until) == 0) {
  }
  bool done = b.done;
  pthread_mutex_unlock(&b.mu);
  if (!done)
    fail_msg("%s did not return within %d ms: it hangs", what, ms * test_time_scale());
  pthread_join(tid, NULL);
  pthread_mutex_destroy(&b.mu);
  pthread_cond_destroy(&b.cv);
}

static void client_free_fn(void *arg) {
  mim_client_free(arg);
}

/* ---- a session that leaves from its own callback ---- */

typedef struct probe {
  const char *leave_on_text; /* on_message with this text calls mim_leave ("" = any) */
  int leave_on_state;        /* on_event with this state calls mim_leave (-1: never) */
  bool send_before_leave;    /* queue a message from the callback first */
  atomic_bool left;          /* mim_leave was called from a callback */
  atomic_int after_leave;    /* callbacks (message/event) after that: must stay 0 */
  atomic_int results;        /* on_send_result calls */
  atomic_int last_result;    /* their last status */
  char sent_id[MIM_MESSAGE_ID_SIZE];
} probe;

static void leave_from_callback(mim_session *s, probe *p) {
  if (p->send_before_leave)
    assert_int_equal(mim_send(s, "sent from the callback", p->sent_id), MIM_OK);
  atomic_store(&p->left, true);
  mim_leave(s); /* must return at once */
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  probe *p = user;
  if (atomic_load(&p->left)) {
    atomic_fetch_add(&p->after_leave, 1);
    return;
  }
  if (p->leave_on_text && (!*p->leave_on_text || strcmp(m->text, p->leave_on_text) == 0))
    leave_from_callback(s, p);
}

static void on_event(mim_session *s, mim_subscription_state state, mim_status status,
                     const char *detail, void *user) {
  (void)status;
  (void)detail;
  probe *p = user;
  if (atomic_load(&p->left)) {
    atomic_fetch_add(&p->after_leave, 1);
    return;
  }
  if ((int)state == p->leave_on_state)
    leave_from_callback(s, p);
}

static void on_send_result(mim_session *s, const char *id, mim_status status, const char *detail,
                           void *user) {
  (void)s;
  (void)id;
  (void)detail;
  probe *p = user;
  atomic_store(&p->last_result, (int)status);
  atomic_fetch_add(&p->results, 1);
}

static void probe_init(probe *p, const char *text, int state) {
  memset(p, 0, sizeof *p);
  p->leave_on_text = text;
  p->leave_on_state = state;
  atomic_init(&p->left, false);
  atomic_init(&p->after_leave, 0);
  atomic_init(&p->results, 0);
  atomic_init(&p->last_result, -1);
}

typedef struct join_call {
  mim_client *client;
  const char *chat;
  probe *probe;
  mim_session *session;
  mim_status status;
  char detail[256]; /* mim_last_error_detail() of the joining thread */
} join_call;

static void join_fn(void *arg) {
  join_call *j = arg;
  mim_join_options o;
  mim_join_options_init(&o);
  o.on_event = on_event;
  o.on_send_result = on_send_result;
  o.flush_timeout_ms = 2000;
  j->status = mim_join(j->client, CACHE, j->chat, &o, on_message, j->probe, &j->session);
  snprintf(j->detail, sizeof j->detail, "%s", mim_last_error_detail());
}

/* Joins on a helper thread (bounded): mim_join must return even when the session left
 * from a callback during the join. */
static mim_status join_bounded(mim_client *c, const char *chat, probe *p, mim_session **out) {
  join_call j = {.client = c, .chat = chat, .probe = p};
  run_bounded("mim_join", join_fn, &j, WAIT_MS);
  *out = j.session;
  if (j.status != MIM_OK)
    fprintf(stderr, "mim_join: %s: %s\n", mim_status_name(j.status), j.detail);
  if (j.status == MIM_ERR_CANCELLED)
    assert_non_null(strstr(j.detail, "mim_leave"));
  return j.status;
}

static bool wait_flag(atomic_bool *flag, int ms) {
  int64_t until = cmn_mono_ms() + (int64_t)ms * test_time_scale();
  while (!atomic_load(flag) && cmn_mono_ms() < until) {
    struct timespec d = {0, 5000000};
    nanosleep(&d, NULL);
  }
  return atomic_load(flag);
}

/* Sends texts from a session of its own (root client). */
static void send_texts(mim_client *root, const char *chat, const char *const *texts, size_t n) {
  mim_session *s = NULL;
  probe quiet;
  probe_init(&quiet, NULL, -1);
  assert_int_equal(join_bounded(root, chat, &quiet, &s), MIM_OK);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(mim_send(s, texts[i], NULL), MIM_OK);
  mim_leave(s);
}

/* ---- tests ---- */

static void test_leave_from_on_message_live(void **state) {
  (void)state;
  mim_client *root = test_client_from_key(srv->root_key);
  mim_client *c = test_client_from_key(srv->root_key);
  probe p;
  probe_init(&p, "leave", -1);
  p.send_before_leave = true;
  mim_session *s = NULL;
  assert_int_equal(join_bounded(c, "live", &p, &s), MIM_OK);
  const char *texts[] = {"hello", "leave", "after 1", "after 2"};
  send_texts(root, "live", texts, 4);
  assert_true(wait_flag(&p.left, WAIT_MS));
  run_bounded("mim_client_free", client_free_fn, c, WAIT_MS);
  /* The message queued from the callback was flushed by the deferred leave. */
  assert_int_equal(atomic_load(&p.results), 1);
  assert_int_equal(atomic_load(&p.last_result), MIM_OK);
  assert_int_equal(atomic_load(&p.after_leave), 0);
  mim_client_free(root);
}

static void test_leave_from_on_message_history(void **state) {
  (void)state;
  mim_client *root = test_client_from_key(srv->root_key);
  const char *texts[] = {"h1", "h2", "h3"};
  send_texts(root, "history", texts, 3);
  mim_client *c = test_client_from_key(srv->root_key);
  probe p;
  probe_init(&p, "h1", -1);
  mim_session *s = NULL;
  assert_int_equal(join_bounded(c, "history", &p, &s), MIM_ERR_CANCELLED);
  assert_null(s);
  assert_true(atomic_load(&p.left));
  run_bounded("mim_client_free", client_free_fn, c, WAIT_MS);
  assert_int_equal(atomic_load(&p.after_leave), 0);
  mim_client_free(root);
}

static void test_leave_from_on_event_while_joining(void **state) {
  (void)state;
  mim_client *c = test_client_from_key(srv->root_key);
  probe p;
  probe_init(&p, NULL, MIM_SUB_CONNECTED);
  mim_session *s = NULL;
  assert_int_equal(join_bounded(c, "event-join", &p, &s), MIM_ERR_CANCELLED);
  assert_null(s);
  run_bounded("mim_client_free", client_free_fn, c, WAIT_MS);
  assert_int_equal(atomic_load(&p.after_leave), 0);
}

static void test_leave_from_on_event_reconnecting(void **state) {
  (void)state;
  mim_client *c = test_client_from_key(srv->root_key);
  probe p;
  probe_init(&p, NULL, MIM_SUB_RECONNECTING);
  mim_session *s = NULL;
  assert_int_equal(join_bounded(c, "event-live", &p, &s), MIM_OK);
  assert_int_equal(mim_local_signal(srv, SIGUSR1), 0); /* cuts the streams */
  assert_true(wait_flag(&p.left, WAIT_MS));
  run_bounded("mim_client_free", client_free_fn, c, WAIT_MS);
  assert_int_equal(atomic_load(&p.after_leave), 0);
}

/* mim_client_free from a callback cannot free what the callback runs on: it logs and
 * returns at once (the client stays usable and is freed later from outside). */
typedef struct free_probe {
  mim_client *client;
  atomic_bool returned;
} free_probe;

static void free_on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)m;
  free_probe *p = user;
  if (!atomic_load(&p->returned)) {
    mim_client_free(p->client); /* refused */
    atomic_store(&p->returned, true);
  }
}

static void test_client_free_from_callback_refused(void **state) {
  (void)state;
  mim_client *root = test_client_from_key(srv->root_key);
  const char *texts[] = {"free me"};
  send_texts(root, "free", texts, 1);
  free_probe p = {.client = test_client_from_key(srv->root_key)};
  atomic_init(&p.returned, false);
  mim_session *s = NULL;
  assert_int_equal(mim_join(p.client, CACHE, "free", NULL, free_on_message, &p, &s), MIM_OK);
  assert_true(atomic_load(&p.returned)); /* history is delivered before mim_join returns */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(s, 0, &h), MIM_OK); /* the client still works */
  assert_int_equal(h->count, 1);
  mim_message_list_free(h);
  mim_leave(s);
  run_bounded("mim_client_free", client_free_fn, p.client, WAIT_MS);
  mim_client_free(root);
}

/* ---- a moderator stopped from its own filter ---- */

typedef struct mod_probe {
  /* Set by the test thread, read by the filter: the network orders the two, which a
   * race detector cannot see, so it is atomic. */
  _Atomic(mim_moderator *) moderator;
  atomic_bool stopped;
  atomic_int after_stop;
} mod_probe;

static mim_moderation_verdict stop_filter(const mim_message *msg, char **new_text, void *user) {
  (void)msg;
  (void)new_text;
  mod_probe *p = user;
  if (atomic_exchange(&p->stopped, true)) {
    atomic_fetch_add(&p->after_stop, 1);
    return MIM_MODERATION_REJECT;
  }
  mim_moderator_stop(atomic_load(&p->moderator)); /* must return at once */
  return MIM_MODERATION_ACCEPT;
}

static void test_moderator_stop_from_filter(void **state) {
  (void)state;
  mim_client *root = test_client_from_key(srv->root_key);
  mim_client *c = test_client_from_key(srv->root_key);
  mod_probe p;
  atomic_init(&p.moderator, NULL);
  atomic_init(&p.stopped, false);
  atomic_init(&p.after_stop, 0);
  const char *chats[] = {"moderated"};
  mim_moderator *m = NULL;
  assert_int_equal(mim_moderator_start(c, CACHE, chats, 1, 0, stop_filter, &p, &m), MIM_OK);
  atomic_store(&p.moderator, m);
  mim_session *s = NULL;
  probe quiet;
  probe_init(&quiet, NULL, -1);
  mim_join_options o;
  mim_join_options_init(&o);
  o.mode = MIM_CHAT_MODERATED;
  assert_int_equal(mim_join(root, CACHE, "moderated", &o, on_message, &quiet, &s), MIM_OK);
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_send(s, "to the moderator", NULL), MIM_OK);
  assert_true(wait_flag(&p.stopped, WAIT_MS));
  run_bounded("mim_client_free", client_free_fn, c, WAIT_MS);
  assert_int_equal(atomic_load(&p.after_stop), 0);
  mim_leave(s);
  mim_client_free(root);
}

static int setup(void **state) {
  (void)state;
  static const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .no_auth = 1};
  return mim_local_start(&o, &srv);
}

static int teardown(void **state) {
  (void)state;
  return mim_local_stop(srv) == 0 ? 0 : -1;
}

int main(void) {
  /* A hang is reported by aborting: the hung thread cannot be unwound. */
  setenv("CMOCKA_TEST_ABORT", "1", 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_leave_from_on_message_live),
      cmocka_unit_test(test_leave_from_on_message_history),
      cmocka_unit_test(test_leave_from_on_event_while_joining),
      cmocka_unit_test(test_leave_from_on_event_reconnecting),
      cmocka_unit_test(test_client_free_from_callback_refused),
      cmocka_unit_test(test_moderator_stop_from_filter),
  };
  if (getenv("MIM_TEST_FILTER"))
    cmocka_set_test_filter(getenv("MIM_TEST_FILTER"));
  return cmocka_run_group_tests(tests, setup, teardown);
}
