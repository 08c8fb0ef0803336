/* mim_join_async in thread mode against mim-local: the completion runs once on the event
 * thread after the history; a failed join is reported and freed by the library; a leave
 * from the completion or from on_message during the join; mim_join from a callback is
 * refused at once; a frozen server ends the join with DEADLINE_EXCEEDED. */
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

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CACHE "join-async"
#define WAIT_MS 20000

static mim_local *srv;
static mim_client *client;

/* What the callbacks of one join saw. */
typedef struct probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t test_thread;
  int joined_calls;
  mim_status status;
  char detail[256];
  int history, live;
  int history_after_joined; /* history delivered after on_joined: must stay 0 */
  int on_test_thread;       /* callbacks on the caller's thread: must stay 0 */
  bool leave_in_joined;     /* call mim_leave from on_joined */
  bool leave_in_message;    /* call mim_leave from the first on_message */
  bool join_in_joined;      /* call the blocking mim_join from on_joined */
  mim_status nested_join;
} probe;

static void probe_init(probe *p) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
  cmn_cond_init_monotonic(&p->cv);
  p->test_thread = pthread_self();
  p->status = MIM_ERR_UNKNOWN;
}

static void probe_destroy(probe *p) {
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  probe *p = user;
  pthread_mutex_lock(&p->mu);
  p->on_test_thread += pthread_equal(pthread_self(), p->test_thread) != 0;
  if (m->from_history) {
    p->history++;
    p->history_after_joined += p->joined_calls > 0;
  } else {
    p->live++;
  }
  bool leave = p->leave_in_message;
  p->leave_in_message = false;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (leave)
    mim_leave(s);
}

static void nested_on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s, (void)m, (void)user;
}

static void on_joined(mim_session *s, mim_status st, const char *detail, void *user) {
  probe *p = user;
  mim_status nested = MIM_OK;
  if (p->join_in_joined) {
    mim_session *other = NULL;
    nested = mim_join(client, CACHE, "nested", NULL, nested_on_message, NULL, &other);
    if (other)
      mim_leave(other);
  }
  pthread_mutex_lock(&p->mu);
  p->on_test_thread += pthread_equal(pthread_self(), p->test_thread) != 0;
  p->joined_calls++;
  p->status = st;
  p->nested_join = nested;
  snprintf(p->detail, sizeof p->detail, "%s", detail ? detail : "(null)");
  bool leave = p->leave_in_joined && st == MIM_OK;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (leave)
    mim_leave(s);
}

/* Waits (bounded) until the join has been reported and `live` live messages arrived. */
static void wait_for(probe *p, int live) {
  struct timespec until = cmn_deadline_after_ms((int64_t)test_time_scale() * WAIT_MS);
  pthread_mutex_lock(&p->mu);
  while ((p->joined_calls == 0 || p->live < live) &&
         pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
  }
  pthread_mutex_unlock(&p->mu);
}

static mim_session *joined_session;

static void keep_session(mim_session *s, mim_status st, const char *detail, void *user) {
  if (st == MIM_OK)
    joined_session = s;
  on_joined(s, st, detail, user);
}

static void history_then_completion_then_live(void **state) {
  (void)state;
  mim_session *writer = NULL;
  probe wp;
  probe_init(&wp);
  assert_int_equal(mim_join(client, CACHE, "a", NULL, on_message, &wp, &writer), MIM_OK);
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_send(writer, "before", NULL), MIM_OK);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(writer, 0, &h), MIM_OK); /* the three are stored */
  mim_message_list_free(h);

  probe p;
  probe_init(&p);
  joined_session = NULL;
  assert_int_equal(mim_join_async(client, CACHE, "a", NULL, on_message, keep_session, &p), MIM_OK);
  wait_for(&p, 0);
  assert_int_equal(p.joined_calls, 1);
  assert_int_equal(p.status, MIM_OK);
  assert_string_equal(p.detail, "");
  assert_int_equal(p.history, 3);
  assert_non_null(joined_session);
  assert_int_equal(mim_send(writer, "live", NULL), MIM_OK);
  wait_for(&p, 1);
  assert_int_equal(p.live, 1);
  mim_leave(joined_session);
  mim_leave(writer);
  assert_int_equal(p.joined_calls, 1);
  assert_int_equal(p.history_after_joined, 0);
  assert_int_equal(p.on_test_thread, 0);
  probe_destroy(&p);
  probe_destroy(&wp);
}

static void failure_is_reported_and_freed(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  assert_int_equal(mim_join_async(client, "no-such-cache", "a", NULL, on_message, on_joined, &p),
                   MIM_OK);
  wait_for(&p, 0);
  assert_int_equal(p.joined_calls, 1);
  assert_int_not_equal(p.status, MIM_OK);
  assert_true(p.detail[0] != '\0');
  /* The library frees the session (ASan/valgrind would report a leak otherwise). */
  probe_destroy(&p);
}

static void leave_from_completion(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  p.leave_in_joined = true;
  assert_int_equal(mim_join_async(client, CACHE, "b", NULL, on_message, on_joined, &p), MIM_OK);
  wait_for(&p, 0);
  assert_int_equal(p.status, MIM_OK);
  assert_int_equal(p.joined_calls, 1);
  probe_destroy(&p); /* the deferred leave frees it; mim_client_free waits for that */
}

static void leave_during_history(void **state) {
  (void)state;
  mim_session *writer = NULL;
  probe wp;
  probe_init(&wp);
  assert_int_equal(mim_join(client, CACHE, "c", NULL, on_message, &wp, &writer), MIM_OK);
  assert_int_equal(mim_send(writer, "one", NULL), MIM_OK);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(writer, 0, &h), MIM_OK);
  mim_message_list_free(h);
  probe p;
  probe_init(&p);
  p.leave_in_message = true;
  assert_int_equal(mim_join_async(client, CACHE, "c", NULL, on_message, on_joined, &p), MIM_OK);
  wait_for(&p, 0);
  assert_int_equal(p.joined_calls, 1);
  assert_int_equal(p.status, MIM_ERR_CANCELLED);
  mim_leave(writer);
  probe_destroy(&p);
  probe_destroy(&wp);
}

static void blocking_join_from_callback_refused(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  p.join_in_joined = true;
  p.leave_in_joined = true;
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_join_async(client, CACHE, "d", NULL, on_message, on_joined, &p), MIM_OK);
  wait_for(&p, 0);
  assert_int_equal(p.nested_join, MIM_ERR_FAILED_PRECONDITION);
  /* Refused at once, not after the join's own bound (3 deadlines). */
  assert_true(cmn_mono_ms() - t0 < (int64_t)test_time_scale() * WAIT_MS / 2);
  probe_destroy(&p);
}

/* A join against a server that does not answer (frozen) ends with DEADLINE_EXCEEDED
 * (the subscription's confirmation deadline) and the session is freed by the library. */
static void join_that_never_answers_times_out(void **state) {
  (void)state;
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 500 * (int64_t)test_time_scale();
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  probe p;
  probe_init(&p);
  assert_int_equal(mim_local_freeze(srv, 5000), 0);
  mim_status st = mim_join_async(c, CACHE, "frozen", NULL, on_message, on_joined, &p);
  if (st == MIM_OK)
    wait_for(&p, 0);
  kill(srv->pid, SIGCONT);
  assert_int_equal(st, MIM_OK);
  assert_int_equal(p.joined_calls, 1);
  assert_int_equal(p.status, MIM_ERR_DEADLINE_EXCEEDED);
  mim_client_free(c); /* waits for the library's free of the failed session */
  probe_destroy(&p);
}

static void bad_arguments(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  assert_int_equal(mim_join_async(client, CACHE, "e", NULL, on_message, NULL, &p),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join_async(NULL, CACHE, "e", NULL, on_message, on_joined, &p),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join_async(client, CACHE, "", NULL, on_message, on_joined, &p),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(p.joined_calls, 0);
  probe_destroy(&p);
}

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches};
  if (mim_local_start(&o, &srv) != 0)
    return -1;
  client = test_client_from_key(srv->root_key);
  return client ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_client_free(client);
  return mim_local_stop(srv) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(history_then_completion_then_live),
      cmocka_unit_test(failure_is_reported_and_freed),
      cmocka_unit_test(leave_from_completion),
      cmocka_unit_test(leave_during_history),
      cmocka_unit_test(blocking_join_from_callback_refused),
      cmocka_unit_test(join_that_never_answers_times_out),
      cmocka_unit_test(bad_arguments),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
