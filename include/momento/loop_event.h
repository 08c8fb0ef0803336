/*
 * Drives a libmomento-im client from a libevent loop (header only: the application links
 * libevent itself). Maps mim_loop_hooks onto one persistent struct event per watched
 * descriptor (EV_READ / EV_WRITE | EV_PERSIST) and one timer event. See <momento/loop.h>
 * for loop mode.
 *
 *   mim_loop_event a;                           // owned by the application, must outlive
 *   const mim_loop_hooks *h = mim_loop_event_init(&a, base);  // the client
 *   if (!h) ...                                 // a.error_op: what libevent refused
 *   options.loop = h;
 *   mim_client_create(&options, &client);       // on the loop thread
 *   mim_loop_event_attach(&a, client);
 *   ... event_base_dispatch(base) ...           // callbacks run inside it
 *   mim_client_free(client);                    // on the loop thread
 *   mim_loop_event_close(&a);                   // a may be freed right after
 *
 * libevent removes events synchronously (event_del), so unlike libuv nothing is left
 * to finish after mim_loop_event_close.
 *
 * No allocation: the events live in a fixed table of MIM_LOOP_EVENT_MAX_FDS slots
 * inside the adapter (the client watches one wake descriptor plus one per connection).
 * Errors from libevent (and a full table) are recorded: the first failing call in
 * a.error_op (a.errors counts them all), and passed to a.on_error if set (called on the
 * loop thread; must not call into the client).
 */
#ifndef MOMENTO_LOOP_EVENT_H
#define MOMENTO_LOOP_EVENT_H

#include <momento/loop.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef MIM_LOOP_EVENT_MAX_FDS
#define MIM_LOOP_EVENT_MAX_FDS 32
#endif

typedef struct mim_loop_event mim_loop_event;

typedef struct mim_loop_event_slot {
  struct event ev;
  mim_loop_event *owner;
  int fd;
  unsigned events; /* MIM_LOOP_READ / MIM_LOOP_WRITE; 0 = slot free */
} mim_loop_event_slot;

struct mim_loop_event {
  struct event_base *base;
  mim_client *client;
  mim_loop_hooks hooks;
  struct event timer;
  bool timer_ready;
  int errors;                                          /* failed libevent calls so far */
  const char *error_op;                                /* the first one, NULL = none */
  void (*on_error)(mim_loop_event *a, const char *op); /* optional */
  mim_loop_event_slot slots[MIM_LOOP_EVENT_MAX_FDS];
};

static inline void mim_loop_event_fail_(mim_loop_event *a, const char *op) {
  if (a->errors++ == 0)
    a->error_op = op;
  if (a->on_error)
    a->on_error(a, op);
}

static inline void mim_loop_event_io_cb_(evutil_socket_t fd, short what, void *arg) {
  mim_loop_event_slot *s = (mim_loop_event_slot *)arg;
  unsigned ready =
      ((what & EV_READ) ? MIM_LOOP_READ : 0u) | ((what & EV_WRITE) ? MIM_LOOP_WRITE : 0u);
  if (s->owner->client && ready)
    mim_loop_fd_ready(s->owner->client, (int)fd, ready);
}

static inline void mim_loop_event_timer_cb_(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  mim_loop_event *a = (mim_loop_event *)arg;
  if (a->client)
    mim_loop_timeout(a->client);
}

static inline mim_loop_event_slot *mim_loop_event_find_(mim_loop_event *a, int fd, bool make) {
  mim_loop_event_slot *free_slot = NULL;
  for (size_t i = 0; i < MIM_LOOP_EVENT_MAX_FDS; i++) {
    mim_loop_event_slot *s = &a->slots[i];
    if (s->events && s->fd == fd)
      return s;
    if (!s->events && !free_slot)
      free_slot = s;
  }
  return make ? free_slot : NULL;
}

static inline void mim_loop_event_release_(mim_loop_event *a, mim_loop_event_slot *s) {
  if (event_del(&s->ev) != 0)
    mim_loop_event_fail_(a, "event_del");
  s->events = 0;
}

static inline void mim_loop_event_watch_fd_(void *user, int fd, unsigned events) {
  mim_loop_event *a = (mim_loop_event *)user;
  events &= MIM_LOOP_READ | MIM_LOOP_WRITE;
  mim_loop_event_slot *s = mim_loop_event_find_(a, fd, events != 0);
  if (!s) {
    if (events)
      mim_loop_event_fail_(a, "watch_fd: descriptor table full (MIM_LOOP_EVENT_MAX_FDS)");
    return;
  }
  if (s->events == events)
    return;
  if (s->events)
    mim_loop_event_release_(a, s); /* the interest is part of the event: set it up again */
  if (!events)
    return;
  short what = (short)(EV_PERSIST | ((events & MIM_LOOP_READ) ? EV_READ : 0) |
                       ((events & MIM_LOOP_WRITE) ? EV_WRITE : 0));
  s->owner = a;
  s->fd = fd;
  if (event_assign(&s->ev, a->base, fd, what, mim_loop_event_io_cb_, s) != 0) {
    mim_loop_event_fail_(a, "event_assign");
    return;
  }
  if (event_add(&s->ev, NULL) != 0) {
    mim_loop_event_fail_(a, "event_add");
    return;
  }
  s->events = events;
}

static inline void mim_loop_event_set_timer_(void *user, int64_t timeout_ms) {
  mim_loop_event *a = (mim_loop_event *)user;
  if (timeout_ms < 0) {
    if (event_del(&a->timer) != 0)
      mim_loop_event_fail_(a, "event_del (timer)");
    return;
  }
  struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                       .tv_usec = (suseconds_t)((timeout_ms % 1000) * 1000)};
  if (event_add(&a->timer, &tv) != 0) /* re-adding a pending timer reschedules it */
    mim_loop_event_fail_(a, "event_add (timer)");
}

/* Prepares a (any previous content is overwritten; a->on_error may be set after this)
 * and returns the hooks to put in mim_client_options.loop (valid while a is), or NULL
 * when libevent refused the timer (a->error_op says so). */
static inline const mim_loop_hooks *mim_loop_event_init(mim_loop_event *a,
                                                        struct event_base *base) {
  memset(a, 0, sizeof *a);
  a->base = base;
  if (evtimer_assign(&a->timer, base, mim_loop_event_timer_cb_, a) != 0) {
    mim_loop_event_fail_(a, "evtimer_assign");
    return NULL;
  }
  a->timer_ready = true;
  a->hooks.struct_size = sizeof a->hooks;
  a->hooks.watch_fd = mim_loop_event_watch_fd_;
  a->hooks.set_timer = mim_loop_event_set_timer_;
  a->hooks.user = a;
  return &a->hooks;
}

/* Gives the adapter the client created with its hooks. */
static inline void mim_loop_event_attach(mim_loop_event *a, mim_client *client) {
  a->client = client;
}

/* After mim_client_free (or when the client could not be created): removes every event
 * still added. a may be freed when this returns. */
static inline void mim_loop_event_close(mim_loop_event *a) {
  a->client = NULL;
  for (size_t i = 0; i < MIM_LOOP_EVENT_MAX_FDS; i++)
    if (a->slots[i].events)
      mim_loop_event_release_(a, &a->slots[i]);
  if (a->timer_ready && event_del(&a->timer) != 0)
    mim_loop_event_fail_(a, "event_del (timer)");
  a->timer_ready = false;
}

#endif
