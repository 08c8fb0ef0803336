/* The event loop under the HTTP/2 transport (lib/loop/reactor.c): own-thread and
 * application-driven modes, timers, posted tasks, watches. */
#include "loop/reactor.h"

#include "clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ---- own-thread mode ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
  int order[16];
  bool on_loop[16];
  bool in_cb[16];
  mim_reactor *r;
} waiter;

static void waiter_init(waiter *w, mim_reactor *r) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  cmn_cond_init_monotonic(&w->cv);
  w->r = r;
}

static void waiter_destroy(waiter *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

static bool waiter_wait(waiter *w, int n) {
  struct timespec until = cmn_deadline_after_ms(5000);
  pthread_mutex_lock(&w->mu);
  while (w->count < n)
    if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
      break;
  bool ok = w->count >= n;
  pthread_mutex_unlock(&w->mu);
  return ok;
}

typedef struct tagged {
  waiter *w;
  int tag;
} tagged;

static void note(void *arg) {
  tagged *t = arg;
  waiter *w = t->w;
  pthread_mutex_lock(&w->mu);
  if (w->count < 16) {
    w->order[w->count] = t->tag;
    w->on_loop[w->count] = mim_reactor_on_loop(w->r);
    w->in_cb[w->count] = mim_reactor_in_callback(w->r);
  }
  w->count++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void test_post_runs_on_loop_in_order(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, "test-loop", &r), MIM_OK);
  assert_false(mim_reactor_on_loop(r));
  waiter w;
  waiter_init(&w, r);
  tagged t[3] = {{&w, 1}, {&w, 2}, {&w, 3}};
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_reactor_post(r, note, &t[i]), MIM_OK);
  assert_true(waiter_wait(&w, 3));
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w.order[i], i + 1);
    assert_true(w.on_loop[i]);
    assert_true(w.in_cb[i]);
  }
  mim_reactor_free(r);
  waiter_destroy(&w);
}

static void test_timers_fire_in_deadline_order(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  tagged t[3] = {{&w, 30}, {&w, 10}, {&w, 20}};
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_reactor_timer(r, 60, note, &t[0], NULL), MIM_OK);
  assert_int_equal(mim_reactor_timer(r, 20, note, &t[1], NULL), MIM_OK);
  assert_int_equal(mim_reactor_timer(r, 40, note, &t[2], NULL), MIM_OK);
  assert_true(waiter_wait(&w, 3));
  assert_true(cmn_mono_ms() - t0 >= 60);
  assert_int_equal(w.order[0], 10);
  assert_int_equal(w.order[1], 20);
  assert_int_equal(w.order[2], 30);
  mim_reactor_free(r);
  waiter_destroy(&w);
}

static void test_timer_cancel(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  tagged cancelled = {&w, 1}, kept = {&w, 2};
  mim_timer *tm = NULL;
  assert_int_equal(mim_reactor_timer(r, 30, note, &cancelled, &tm), MIM_OK);
  assert_int_equal(mim_reactor_timer(r, 60, note, &kept, NULL), MIM_OK);
  assert_true(mim_timer_cancel(tm));
  assert_true(waiter_wait(&w, 1));
  usleep(50 * 1000); /* give a wrongly kept timer the chance to show */
  assert_int_equal(w.count, 1);
  assert_int_equal(w.order[0], 2);
  mim_reactor_free(r);
  waiter_destroy(&w);
}

typedef struct slow_timer {
  atomic_bool started;
  atomic_bool finished;
} slow_timer;

static void slow_cb(void *arg) {
  slow_timer *s = arg;
  atomic_store(&s->started, true);
  usleep(100 * 1000);
  atomic_store(&s->finished, true);
}

/* Cancelling a running timer from another thread waits until its callback returned. */
static void test_timer_cancel_waits_for_running(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  slow_timer s = {0};
  mim_timer *tm = NULL;
  assert_int_equal(mim_reactor_timer(r, 0, slow_cb, &s, &tm), MIM_OK);
  for (int i = 0; i < 500 && !atomic_load(&s.started); i++)
    usleep(1000);
  assert_true(atomic_load(&s.started));
  assert_false(mim_timer_cancel(tm));
  assert_true(atomic_load(&s.finished));
  mim_reactor_free(r);
}

typedef struct pipe_reader {
  int fd;
  mim_watch *watch;
  waiter *w;
  char got[64];
  size_t len;
  bool eof;
} pipe_reader;

static void on_pipe(void *user, unsigned events) {
  pipe_reader *p = user;
  (void)events;
  ssize_t n = read(p->fd, p->got + p->len, sizeof p->got - 1 - p->len);
  if (n > 0)
    p->len += (size_t)n;
  if (n == 0) {
    p->eof = true;
    mim_reactor_unwatch(p->watch); /* from its own callback: must not run again */
    p->watch = NULL;
  }
  static tagged t;
  t = (tagged){p->w, (int)n};
  note(&t);
}

static void watch_task(void *arg) {
  pipe_reader *p = arg;
  assert_int_equal(mim_reactor_watch(p->w->r, p->fd, MIM_LOOP_READ, on_pipe, p, &p->watch), MIM_OK);
}

static void test_watch_reads_a_pipe(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pipe_reader p = {.fd = fds[0], .w = &w};
  assert_int_equal(mim_reactor_post(r, watch_task, &p), MIM_OK);
  assert_int_equal(write(fds[1], "hello", 5), 5);
  assert_true(waiter_wait(&w, 1));
  close(fds[1]);
  assert_true(waiter_wait(&w, 2));
  usleep(20 * 1000);
  mim_reactor_free(r);
  assert_true(p.eof);
  assert_string_equal(p.got, "hello");
  assert_int_equal(w.count, 2); /* the EOF callback ran once and unwatched itself */
  close(fds[0]);
  waiter_destroy(&w);
}

static void test_post_after_free_began_is_refused(void **state) {
  (void)state;
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  mim_reactor_free(r);
  assert_int_equal(mim_reactor_create(NULL, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  tagged t = {&w, 7};
  assert_int_equal(mim_reactor_post(r, note, &t), MIM_OK);
  mim_reactor_free(r); /* a task queued before free still runs */
  assert_int_equal(w.count, 1);
  waiter_destroy(&w);
}

/* ---- application-driven mode ---- */

typedef struct fake_app {
  int fds[8];
  unsigned events[8];
  size_t nfds;
  int64_t timer_ms;
  int timer_calls;
} fake_app;

static void app_watch(void *user, int fd, unsigned events) {
  fake_app *a = user;
  for (size_t i = 0; i < a->nfds; i++) {
    if (a->fds[i] == fd) {
      if (events == 0) {
        a->fds[i] = a->fds[a->nfds - 1];
        a->events[i] = a->events[a->nfds - 1];
        a->nfds--;
      } else {
        a->events[i] = events;
      }
      return;
    }
  }
  if (events && a->nfds < 8) {
    a->fds[a->nfds] = fd;
    a->events[a->nfds++] = events;
  }
}

static void app_timer(void *user, int64_t ms) {
  fake_app *a = user;
  a->timer_ms = ms;
  a->timer_calls++;
}

static void test_external_hooks_and_timer(void **state) {
  (void)state;
  fake_app app = {.timer_ms = -1};
  mim_loop_hooks hooks = {sizeof hooks, app_watch, app_timer, &app};
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(&hooks, NULL, &r), MIM_OK);
  assert_int_equal(app.nfds, 1); /* the wake descriptor */
  assert_true(mim_reactor_on_loop(r));
  assert_false(mim_reactor_in_callback(r));
  waiter w;
  waiter_init(&w, r);
  tagged t = {&w, 5};
  assert_int_equal(mim_reactor_timer(r, 30, note, &t, NULL), MIM_OK);
  assert_true(app.timer_ms > 0 && app.timer_ms <= 30);
  mim_reactor_timeout(r); /* too early: nothing runs, the timer is given again */
  assert_int_equal(w.count, 0);
  assert_true(app.timer_ms >= 0 && app.timer_ms <= 30);
  usleep(35 * 1000);
  int calls = app.timer_calls;
  mim_reactor_timeout(r);
  assert_int_equal(w.count, 1);
  assert_true(w.on_loop[0]);
  assert_true(w.in_cb[0]);
  assert_int_equal(app.timer_calls, calls); /* the spent timer needs no replacement */
  mim_reactor_free(r);
  assert_int_equal(app.nfds, 0); /* every descriptor was released */
  waiter_destroy(&w);
}

typedef struct poster {
  mim_reactor *r;
  tagged *t;
} poster;

static void *post_from_thread(void *arg) {
  poster *p = arg;
  mim_reactor_post(p->r, note, p->t);
  return NULL;
}

static bool count_reached(void *arg) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  bool done = w->count >= 1;
  pthread_mutex_unlock(&w->mu);
  return done;
}

/* A task posted by another thread wakes the application's loop through the wake fd,
 * and run_until drives the loop on the calling thread. */
static void test_external_post_from_thread_and_run_until(void **state) {
  (void)state;
  fake_app app = {.timer_ms = -1};
  mim_loop_hooks hooks = {sizeof hooks, app_watch, app_timer, &app};
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(&hooks, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  tagged t = {&w, 9};
  poster p = {r, &t};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, post_from_thread, &p), 0);
  pthread_join(th, NULL);
  assert_int_equal(w.count, 0); /* nothing runs until the loop calls in */
  assert_true(mim_reactor_run_until(r, count_reached, &w, cmn_mono_ms() + 2000));
  assert_int_equal(w.count, 1);
  assert_true(w.on_loop[0]);
  /* A deadline with nothing to do returns false in time. */
  int64_t t0 = cmn_mono_ms();
  waiter never;
  waiter_init(&never, r);
  assert_false(mim_reactor_run_until(r, count_reached, &never, cmn_mono_ms() + 50));
  assert_true(cmn_mono_ms() - t0 >= 50);
  mim_reactor_free(r);
  waiter_destroy(&w);
  waiter_destroy(&never);
}

/* A task posted on the loop thread outside a callback asks for a 0 ms timer. */
static void test_external_post_on_loop_asks_for_timer(void **state) {
  (void)state;
  fake_app app = {.timer_ms = -1};
  mim_loop_hooks hooks = {sizeof hooks, app_watch, app_timer, &app};
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(&hooks, NULL, &r), MIM_OK);
  waiter w;
  waiter_init(&w, r);
  tagged t = {&w, 3};
  assert_int_equal(mim_reactor_post(r, note, &t), MIM_OK);
  assert_int_equal(app.timer_ms, 0);
  assert_int_equal(w.count, 0);
  int calls = app.timer_calls;
  mim_reactor_timeout(r);
  assert_int_equal(w.count, 1);
  assert_int_equal(app.timer_calls, calls);
  mim_reactor_free(r);
  waiter_destroy(&w);
}

static void test_hooks_are_required(void **state) {
  (void)state;
  mim_loop_hooks hooks = {sizeof hooks, NULL, app_timer, NULL};
  mim_reactor *r = NULL;
  assert_int_equal(mim_reactor_create(&hooks, NULL, &r), MIM_ERR_INVALID_ARGUMENT);
  assert_null(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_post_runs_on_loop_in_order),
      cmocka_unit_test(test_timers_fire_in_deadline_order),
      cmocka_unit_test(test_timer_cancel),
      cmocka_unit_test(test_timer_cancel_waits_for_running),
      cmocka_unit_test(test_watch_reads_a_pipe),
      cmocka_unit_test(test_post_after_free_began_is_refused),
      cmocka_unit_test(test_external_hooks_and_timer),
      cmocka_unit_test(test_external_post_from_thread_and_run_until),
      cmocka_unit_test(test_external_post_on_loop_asks_for_timer),
      cmocka_unit_test(test_hooks_are_required),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
