/*
 * The event loop under the HTTP/2 transport: fd watches, a timer heap and posted tasks,
 * run on one thread. See reactor.h for the contract.
 *
 * Locking: `mu` guards what other threads touch (the timer heap, the task queue, the
 * wake flag, the stopping flag). Watches are loop-thread only and need no lock. No
 * callback runs with `mu` held.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "loop/reactor.h"

#include "clock.h"
#include "error.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Timers run per pass at most, so a timer that re-arms itself at 0 ms cannot starve I/O. */
#define TIMERS_PER_PASS 64
#define NO_DEADLINE INT64_MAX

typedef enum timer_state { TIMER_PENDING, TIMER_RUNNING, TIMER_DONE } timer_state;

struct mim_timer {
  mim_reactor *r;
  int64_t deadline_us;
  uint64_t seq; /* FIFO among equal deadlines */
  void (*cb)(void *user);
  void *user;
  size_t heap_index;
  timer_state state;
  int refs; /* the heap holds one; a waiting canceller another */
};

struct mim_watch {
  mim_reactor *r;
  uint64_t id; /* unique: a poll result is matched to its watch by id, never by fd */
  int fd;
  unsigned events;
  mim_io_fn fn;
  void *user;
};

typedef struct task {
  void (*fn)(void *arg);
  void *arg;
} task;

typedef struct task_queue {
  task *items;
  size_t len, cap;
} task_queue;

struct mim_reactor {
  bool external;
  mim_loop_hooks hooks;
  pthread_t creator; /* external mode: the loop thread */
  pthread_t thread;  /* own mode: the thread we started */
  bool thread_started;

  int wake_fd;
  mim_watch *wake_watch;

  /* Loop-thread state. */
  mim_watch **watches;
  size_t nwatches, watches_cap;
  uint64_t next_watch_id;
  struct pollfd *pfds;
  uint64_t *pfd_ids;
  size_t pfds_cap;
  task_queue running;   /* tasks being run this pass (swapped with `tasks`) */
  int64_t app_timer_us; /* external: the deadline last given to set_timer */

  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast when a timer callback returns */
  mim_timer **heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  task_queue tasks;
  bool wake_pending;
  bool stopping;
  int64_t loop_deadline_us; /* what the loop sleeps until (wake it for earlier timers) */
};

/* Own mode: the reactor whose thread this is (set by that thread itself, so no thread
 * reads an id another thread is still writing). */
static _Thread_local const mim_reactor *tls_loop_reactor;
/* The reactor whose callback the current thread is running, and how deep. */
static _Thread_local const mim_reactor *tls_cb_reactor;
static _Thread_local int tls_cb_depth;

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool mim_reactor_on_loop(const mim_reactor *r) {
  if (!r)
    return false;
  return r->external ? pthread_equal(pthread_self(), r->creator) != 0 : tls_loop_reactor == r;
}

bool mim_reactor_in_callback(const mim_reactor *r) {
  return r && tls_cb_reactor == r && tls_cb_depth > 0;
}

/* Every callback runs through here so in_callback knows where it is. */
static void enter_callback(const mim_reactor *r, const mim_reactor **saved) {
  *saved = tls_cb_reactor;
  tls_cb_reactor = r;
  tls_cb_depth++;
}

static void leave_callback(const mim_reactor *saved) {
  tls_cb_depth--;
  tls_cb_reactor = saved;
}

/* ---- waking the loop ---- */

static void wake_locked(mim_reactor *r) {
  if (r->wake_pending)
    return;
  r->wake_pending = true;
  uint64_t one = 1;
  /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
  while (write(r->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void drain_wake(void *user, unsigned events) {
  (void)events;
  mim_reactor *r = user;
  uint64_t n;
  while (read(r->wake_fd, &n, sizeof n) < 0 && errno == EINTR) {
  }
  pthread_mutex_lock(&r->mu);
  r->wake_pending = false;
  pthread_mutex_unlock(&r->mu);
}

/* ---- timer heap (min-heap on deadline, then seq); under mu ---- */

static bool timer_before(const mim_timer *a, const mim_timer *b) {
  return a->deadline_us < b->deadline_us || (a->deadline_us == b->deadline_us && a->seq < b->seq);
}

static void heap_set(mim_reactor *r, size_t i, mim_timer *tm) {
  r->heap[i] = tm;
  tm->heap_index = i;
}

static void heap_sift_up(mim_reactor *r, size_t i) {
  mim_timer *tm = r->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!timer_before(tm, r->heap[parent]))
      break;
    heap_set(r, i, r->heap[parent]);
    i = parent;
  }
  heap_set(r, i, tm);
}

static void heap_sift_down(mim_reactor *r, size_t i) {
  mim_timer *tm = r->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, best = i;
    const mim_timer *best_tm = tm;
    if (l < r->heap_len && timer_before(r->heap[l], best_tm))
      best = l, best_tm = r->heap[l];
    if (l + 1 < r->heap_len && timer_before(r->heap[l + 1], best_tm))
      best = l + 1;
    if (best == i)
      break;
    heap_set(r, i, r->heap[best]);
    i = best;
  }
  heap_set(r, i, tm);
}

static bool heap_push(mim_reactor *r, mim_timer *tm) {
  if (r->heap_len == r->heap_cap) {
    size_t cap = r->heap_cap ? r->heap_cap * 2 : 16;
    mim_timer **h = realloc(r->heap, cap * sizeof *h);
    if (!h)
      return false;
    r->heap = h;
    r->heap_cap = cap;
  }
  heap_set(r, r->heap_len++, tm);
  heap_sift_up(r, tm->heap_index);
  return true;
}

static void heap_remove(mim_reactor *r, mim_timer *tm) {
  size_t i = tm->heap_index;
  mim_timer *last = r->heap[--r->heap_len];
  if (i == r->heap_len)
    return;
  heap_set(r, i, last);
  heap_sift_down(r, i);
  heap_sift_up(r, last->heap_index);
}

static void timer_unref_locked(mim_timer *tm) {
  if (--tm->refs == 0)
    free(tm);
}

/* ---- external mode: telling the application ---- */

/* Gives the application the next deadline when it changed. Loop thread only. */
static void sync_app_timer(mim_reactor *r) {
  if (!r->external)
    return;
  pthread_mutex_lock(&r->mu);
  int64_t next = r->heap_len && !r->stopping ? r->heap[0]->deadline_us : NO_DEADLINE;
  if (r->tasks.len)
    next = 0; /* tasks posted on the loop thread outside a pass: run them soon */
  r->loop_deadline_us = next;
  pthread_mutex_unlock(&r->mu);
  if (next == r->app_timer_us && next != 0)
    return;
  r->app_timer_us = next;
  int64_t ms = -1;
  if (next != NO_DEADLINE) {
    int64_t left = next - mono_us();
    ms = left <= 0 ? 0 : (left + 999) / 1000;
  }
  r->hooks.set_timer(r->hooks.user, ms);
}

/* ---- timers ---- */

mim_status mim_reactor_timer(mim_reactor *r, int64_t delay_ms, void (*cb)(void *user), void *user,
                             mim_timer **out) {
  if (!r || !cb)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "timer: reactor and callback are required");
  mim_timer *tm = calloc(1, sizeof *tm);
  if (!tm)
    return mim_fail(MIM_ERR_NO_MEMORY, "timer: out of memory");
  tm->r = r;
  tm->deadline_us = mono_us() + (delay_ms > 0 ? delay_ms * 1000 : 0);
  tm->cb = cb;
  tm->user = user;
  tm->state = TIMER_PENDING;
  tm->refs = 1;
  pthread_mutex_lock(&r->mu);
  if (r->stopping) {
    pthread_mutex_unlock(&r->mu);
    free(tm);
    return mim_fail(MIM_ERR_CANCELLED, "timer: the event loop is shutting down");
  }
  tm->seq = r->timer_seq++;
  if (!heap_push(r, tm)) {
    pthread_mutex_unlock(&r->mu);
    free(tm);
    return mim_fail(MIM_ERR_NO_MEMORY, "timer: out of memory");
  }
  bool on_loop = mim_reactor_on_loop(r);
  /* The loop recomputes its deadline after each pass; other threads must wake it. */
  if (!on_loop && tm->deadline_us < r->loop_deadline_us)
    wake_locked(r);
  if (out)
    *out = tm;
  pthread_mutex_unlock(&r->mu);
  if (on_loop && !mim_reactor_in_callback(r))
    sync_app_timer(r);
  return MIM_OK;
}

bool mim_timer_cancel(mim_timer *tm) {
  if (!tm)
    return false;
  mim_reactor *r = tm->r;
  pthread_mutex_lock(&r->mu);
  if (tm->state == TIMER_PENDING) {
    heap_remove(r, tm);
    tm->state = TIMER_DONE;
    timer_unref_locked(tm);
    pthread_mutex_unlock(&r->mu);
    return true;
  }
  if (tm->state == TIMER_RUNNING && !mim_reactor_on_loop(r)) {
    tm->refs++; /* keep it alive while we wait for its callback to return */
    while (tm->state == TIMER_RUNNING)
      pthread_cond_wait(&r->cv, &r->mu);
    timer_unref_locked(tm);
  }
  pthread_mutex_unlock(&r->mu);
  return false;
}

/* Runs the timers that were due when this pass started. */
static void run_due_timers(mim_reactor *r) {
  int64_t now = mono_us();
  for (int n = 0; n < TIMERS_PER_PASS; n++) {
    pthread_mutex_lock(&r->mu);
    if (r->stopping || r->heap_len == 0 || r->heap[0]->deadline_us > now) {
      pthread_mutex_unlock(&r->mu);
      return;
    }
    mim_timer *tm = r->heap[0];
    heap_remove(r, tm);
    tm->state = TIMER_RUNNING;
    pthread_mutex_unlock(&r->mu);

    const mim_reactor *saved;
    enter_callback(r, &saved);
    tm->cb(tm->user);
    leave_callback(saved);

    pthread_mutex_lock(&r->mu);
    tm->state = TIMER_DONE;
    pthread_cond_broadcast(&r->cv);
    timer_unref_locked(tm);
    pthread_mutex_unlock(&r->mu);
  }
}

/* ---- posted tasks ---- */

static bool queue_push(task_queue *q, task t) {
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 32;
    task *items = realloc(q->items, cap * sizeof *items);
    if (!items)
      return false;
    q->items = items;
    q->cap = cap;
  }
  q->items[q->len++] = t;
  return true;
}

mim_status mim_reactor_post(mim_reactor *r, void (*fn)(void *arg), void *arg) {
  if (!r || !fn)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "post: reactor and function are required");
  bool on_loop = mim_reactor_on_loop(r);
  pthread_mutex_lock(&r->mu);
  if (r->stopping) {
    pthread_mutex_unlock(&r->mu);
    return mim_fail(MIM_ERR_CANCELLED, "post: the event loop is shutting down");
  }
  if (!queue_push(&r->tasks, (task){fn, arg})) {
    pthread_mutex_unlock(&r->mu);
    return mim_fail(MIM_ERR_NO_MEMORY, "post: out of memory");
  }
  /* Inside a pass the loop runs new tasks before sleeping; anywhere else it must wake. */
  if (!on_loop)
    wake_locked(r);
  pthread_mutex_unlock(&r->mu);
  if (on_loop && !mim_reactor_in_callback(r))
    sync_app_timer(r);
  return MIM_OK;
}

/* Runs the tasks queued when this pass started (tasks they post wait for the next). */
static void run_tasks(mim_reactor *r) {
  pthread_mutex_lock(&r->mu);
  task_queue q = r->tasks;
  r->tasks = r->running;
  r->tasks.len = 0;
  pthread_mutex_unlock(&r->mu);
  const mim_reactor *saved;
  enter_callback(r, &saved);
  for (size_t i = 0; i < q.len; i++)
    q.items[i].fn(q.items[i].arg);
  leave_callback(saved);
  q.len = 0;
  r->running = q;
}

static bool tasks_pending(mim_reactor *r) {
  pthread_mutex_lock(&r->mu);
  bool any = r->tasks.len > 0;
  pthread_mutex_unlock(&r->mu);
  return any;
}

/* ---- watches (loop thread) ---- */

static mim_watch *find_watch_id(const mim_reactor *r, uint64_t id) {
  for (size_t i = 0; i < r->nwatches; i++)
    if (r->watches[i]->id == id)
      return r->watches[i];
  return NULL;
}

static mim_watch *find_watch_fd(const mim_reactor *r, int fd) {
  for (size_t i = 0; i < r->nwatches; i++)
    if (r->watches[i]->fd == fd)
      return r->watches[i];
  return NULL;
}

static void tell_app(const mim_reactor *r, int fd, unsigned events) {
  if (r->external)
    r->hooks.watch_fd(r->hooks.user, fd, events);
}

mim_status mim_reactor_watch(mim_reactor *r, int fd, unsigned events, mim_io_fn fn, void *user,
                             mim_watch **out) {
  if (!r || fd < 0 || !fn || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "watch: reactor, fd and callback are required");
  if (find_watch_fd(r, fd))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "watch: fd %d is already watched", fd);
  if (r->nwatches == r->watches_cap) {
    size_t cap = r->watches_cap ? r->watches_cap * 2 : 8;
    mim_watch **w = realloc(r->watches, cap * sizeof *w);
    if (!w)
      return mim_fail(MIM_ERR_NO_MEMORY, "watch: out of memory");
    r->watches = w;
    r->watches_cap = cap;
  }
  mim_watch *w = calloc(1, sizeof *w);
  if (!w)
    return mim_fail(MIM_ERR_NO_MEMORY, "watch: out of memory");
  *w = (mim_watch){r, ++r->next_watch_id, fd, events, fn, user};
  r->watches[r->nwatches++] = w;
  /* External mode: the wake fd is always readable-interest, idle fds too (errors). */
  tell_app(r, fd, events ? events : MIM_LOOP_READ);
  *out = w;
  return MIM_OK;
}

void mim_reactor_watch_set(mim_watch *w, unsigned events) {
  if (!w || w->events == events)
    return;
  w->events = events;
  tell_app(w->r, w->fd, events ? events : MIM_LOOP_READ);
}

void mim_reactor_unwatch(mim_watch *w) {
  if (!w)
    return;
  mim_reactor *r = w->r;
  for (size_t i = 0; i < r->nwatches; i++) {
    if (r->watches[i] == w) {
      r->watches[i] = r->watches[--r->nwatches];
      break;
    }
  }
  tell_app(r, w->fd, 0);
  free(w);
}

static void dispatch_io(mim_reactor *r, mim_watch *w, unsigned events) {
  const mim_reactor *saved;
  enter_callback(r, &saved);
  w->fn(w->user, events);
  leave_callback(saved);
}

static unsigned from_poll(short revents) {
  unsigned ev = 0;
  if (revents & POLLIN)
    ev |= MIM_LOOP_READ;
  if (revents & POLLOUT)
    ev |= MIM_LOOP_WRITE;
  if (revents & (POLLERR | POLLHUP | POLLNVAL))
    ev |= MIM_IO_ERROR;
  return ev;
}

static bool ensure_pfds(mim_reactor *r) {
  if (r->pfds_cap >= r->nwatches)
    return true;
  size_t cap = r->watches_cap;
  struct pollfd *p = realloc(r->pfds, cap * sizeof *p);
  if (!p)
    return false;
  r->pfds = p;
  uint64_t *ids = realloc(r->pfd_ids, cap * sizeof *ids);
  if (!ids)
    return false;
  r->pfd_ids = ids;
  r->pfds_cap = cap;
  return true;
}

/* One poll over every watch, then the ready callbacks (matched by id: a callback may
 * remove other watches, and a new watch may reuse a closed fd's number). */
static void poll_once(mim_reactor *r, int timeout_ms) {
  if (!ensure_pfds(r)) {
    mim_log(MIM_LOG_ERROR, "event loop: out of memory for the poll set");
    return;
  }
  size_t n = r->nwatches;
  for (size_t i = 0; i < n; i++) {
    const mim_watch *w = r->watches[i];
    short ev = (short)((w->events & MIM_LOOP_READ ? POLLIN : 0) |
                       (w->events & MIM_LOOP_WRITE ? POLLOUT : 0));
    r->pfds[i] = (struct pollfd){.fd = w->fd, .events = ev};
    r->pfd_ids[i] = w->id;
  }
  int ready = poll(r->pfds, (nfds_t)n, timeout_ms);
  if (ready < 0 && errno != EINTR)
    mim_log(MIM_LOG_ERROR, "event loop: poll failed: %s", strerror(errno));
  for (size_t i = 0; i < n && ready > 0; i++) {
    if (!r->pfds[i].revents)
      continue;
    ready--;
    mim_watch *w = find_watch_id(r, r->pfd_ids[i]);
    if (w)
      dispatch_io(r, w, from_poll(r->pfds[i].revents));
  }
}

/* Milliseconds until the earliest timer (rounded up), 0 with tasks queued, -1 if none;
 * capped by deadline_us when given. */
static int poll_timeout(mim_reactor *r, int64_t cap_us) {
  pthread_mutex_lock(&r->mu);
  int64_t next = r->heap_len ? r->heap[0]->deadline_us : NO_DEADLINE;
  if (r->tasks.len || r->stopping)
    next = 0;
  if (cap_us < next)
    next = cap_us;
  r->loop_deadline_us = next;
  pthread_mutex_unlock(&r->mu);
  if (next == NO_DEADLINE)
    return -1;
  int64_t left = next - mono_us();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999) / 1000;
  return ms > 60000 ? 60000 : (int)ms;
}

/* Posted tasks, then due timers: what every pass ends with. */
static void run_pending(mim_reactor *r) {
  run_tasks(r);
  run_due_timers(r);
}

static bool is_stopping(mim_reactor *r) {
  pthread_mutex_lock(&r->mu);
  bool s = r->stopping;
  pthread_mutex_unlock(&r->mu);
  return s;
}

static void *loop_main(void *arg) {
  mim_reactor *r = arg;
  tls_loop_reactor = r;
  while (!is_stopping(r)) {
    poll_once(r, poll_timeout(r, NO_DEADLINE));
    run_pending(r);
  }
  /* Whatever was posted before free began still runs (e.g. a final cancel). */
  while (tasks_pending(r))
    run_tasks(r);
  return NULL;
}

bool mim_reactor_run_until(mim_reactor *r, bool (*done)(void *arg), void *arg,
                           int64_t deadline_ms) {
  if (!r || !done)
    return false;
  if (!mim_reactor_on_loop(r) || mim_reactor_in_callback(r) || !r->external)
    return done(arg);
  int64_t deadline_us = deadline_ms >= NO_DEADLINE / 1000 ? NO_DEADLINE : deadline_ms * 1000;
  run_pending(r);
  while (!done(arg) && mono_us() < deadline_us) {
    poll_once(r, poll_timeout(r, deadline_us));
    run_pending(r);
  }
  sync_app_timer(r);
  return done(arg);
}

void mim_reactor_fd_ready(mim_reactor *r, int fd, unsigned events) {
  if (!r || !r->external || !mim_reactor_on_loop(r) || mim_reactor_in_callback(r))
    return;
  mim_watch *w = find_watch_fd(r, fd);
  if (w)
    dispatch_io(r, w, events & (MIM_LOOP_READ | MIM_LOOP_WRITE | MIM_IO_ERROR));
  run_pending(r);
  sync_app_timer(r);
}

void mim_reactor_timeout(mim_reactor *r) {
  if (!r || !r->external || !mim_reactor_on_loop(r) || mim_reactor_in_callback(r))
    return;
  r->app_timer_us = NO_DEADLINE; /* that timer is spent: the next one must be given */
  run_pending(r);
  sync_app_timer(r);
}

/* ---- life ---- */

static void reactor_destroy(mim_reactor *r) {
  for (size_t i = 0; i < r->heap_len; i++)
    free(r->heap[i]);
  for (size_t i = 0; i < r->nwatches; i++) {
    tell_app(r, r->watches[i]->fd, 0);
    free(r->watches[i]);
  }
  if (r->external && r->wake_fd >= 0)
    r->hooks.set_timer(r->hooks.user, -1);
  if (r->wake_fd >= 0)
    close(r->wake_fd);
  free(r->heap);
  free(r->watches);
  free(r->pfds);
  free(r->pfd_ids);
  free(r->tasks.items);
  free(r->running.items);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

static void name_thread(pthread_t th, const char *name) {
  char buf[16];
  snprintf(buf, sizeof buf, "%s", name ? name : "mim-loop");
  pthread_setname_np(th, buf);
}

mim_status mim_reactor_create(const mim_loop_hooks *hooks, const char *thread_name,
                              mim_reactor **out) {
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "reactor: out is required");
  *out = NULL;
  if (hooks && (!hooks->watch_fd || !hooks->set_timer))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "loop hooks: watch_fd and set_timer are both required");
  mim_reactor *r = calloc(1, sizeof *r);
  if (!r)
    return mim_fail(MIM_ERR_NO_MEMORY, "reactor: out of memory");
  pthread_mutex_init(&r->mu, NULL);
  cmn_cond_init_monotonic(&r->cv);
  r->external = hooks != NULL;
  if (hooks)
    r->hooks = *hooks;
  r->creator = pthread_self();
  r->app_timer_us = NO_DEADLINE;
  r->loop_deadline_us = NO_DEADLINE;
  r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->wake_fd < 0) {
    int e = errno;
    reactor_destroy(r);
    return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "event loop: eventfd failed: %s", strerror(e));
  }
  mim_status st = mim_reactor_watch(r, r->wake_fd, MIM_LOOP_READ, drain_wake, r, &r->wake_watch);
  if (st == MIM_OK && !r->external) {
    if (pthread_create(&r->thread, NULL, loop_main, r) != 0)
      st = mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "event loop: cannot start its thread");
    else {
      r->thread_started = true;
      name_thread(r->thread, thread_name);
    }
  }
  if (st != MIM_OK) {
    reactor_destroy(r);
    return st;
  }
  *out = r;
  return MIM_OK;
}

void mim_reactor_free(mim_reactor *r) {
  if (!r)
    return;
  if (mim_reactor_in_callback(r)) {
    mim_log(MIM_LOG_ERROR, "event loop freed from its own callback; ignored");
    return;
  }
  if (r->external && !mim_reactor_on_loop(r)) {
    mim_log(MIM_LOG_ERROR, "an application-driven event loop must be freed on its own "
                           "thread; ignored");
    return;
  }
  pthread_mutex_lock(&r->mu);
  r->stopping = true;
  wake_locked(r);
  pthread_mutex_unlock(&r->mu);
  if (r->thread_started)
    pthread_join(r->thread, NULL);
  else
    while (tasks_pending(r))
      run_tasks(r);
  reactor_destroy(r);
}
