/*
 * Drives a libmomento-im client from a libuv loop (header only: the application links
 * libuv itself). Maps mim_loop_hooks onto one uv_poll_t per watched descriptor and one
 * uv_timer_t. See <momento/loop.h> for loop mode.
 *
 *   mim_loop_uv a;                              // owned by the application, must outlive
 *   const mim_loop_hooks *h = mim_loop_uv_init(&a, uv_default_loop());  // the client
 *   if (!h) ...                                 // a.error: the libuv error
 *   options.loop = h;
 *   mim_client_create(&options, &client);       // on the loop thread
 *   mim_loop_uv_attach(&a, client);
 *   ... uv_run(loop, UV_RUN_DEFAULT) ...        // callbacks run inside it
 *   mim_client_free(client);                    // on the loop thread: unwatches everything
 *   mim_loop_uv_close(&a);                      // closes the adapter's handles
 *   uv_run(loop, UV_RUN_DEFAULT);               // lets libuv finish closing them
 *   // mim_loop_uv_closed(&a) is now true: a may be freed
 *
 * libuv closes handles asynchronously: a handle's memory (inside the adapter) is in use
 * until its close callback has run on a later loop iteration. So after
 * mim_loop_uv_close, keep the adapter alive and run the loop until mim_loop_uv_closed
 * returns true (uv_run(UV_RUN_DEFAULT) returns only then, if nothing else is active). A
 * descriptor the library stops watching is closed the same way, which is why a slot of
 * the fixed table stays busy until its handle's close callback ran.
 *
 * No allocation: descriptors live in a fixed table of MIM_LOOP_UV_MAX_FDS slots (the
 * client watches one wake descriptor plus one per connection). Errors from libuv (and a
 * full table) are recorded: the first one in a.error (a negative libuv code) and
 * a.error_op (which call failed), and passed to a.on_error if set (called on the loop
 * thread; must not call into the client). A descriptor libuv reports an error for
 * (status < 0 in the poll callback) is handed to the client as readable, which then
 * learns the error from the socket.
 */
#ifndef MOMENTO_LOOP_UV_H
#define MOMENTO_LOOP_UV_H

#include <momento/loop.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#ifndef MIM_LOOP_UV_MAX_FDS
#define MIM_LOOP_UV_MAX_FDS 32
#endif

typedef struct mim_loop_uv mim_loop_uv;

typedef struct mim_loop_uv_slot {
  uv_poll_t poll;
  mim_loop_uv *owner;
  int fd;
  bool open;    /* the poll handle is initialized and not closing: it watches fd */
  bool closing; /* uv_close was called; the slot is free once its callback ran */
} mim_loop_uv_slot;

struct mim_loop_uv {
  uv_loop_t *loop;
  mim_client *client;
  mim_loop_hooks hooks;
  uv_timer_t timer;
  bool timer_open;
  int open_handles; /* handles whose close callback has not run yet */
  int error;        /* first libuv error (negative), 0 = none */
  const char *error_op;
  void (*on_error)(mim_loop_uv *a, const char *op, int uv_error); /* optional */
  mim_loop_uv_slot slots[MIM_LOOP_UV_MAX_FDS];
};

static inline void mim_loop_uv_fail_(mim_loop_uv *a, const char *op, int err) {
  if (a->error == 0) {
    a->error = err;
    a->error_op = op;
  }
  if (a->on_error)
    a->on_error(a, op, err);
}

static inline void mim_loop_uv_closed_cb_(uv_handle_t *h) {
  mim_loop_uv *a = (mim_loop_uv *)h->data;
  if (h != (uv_handle_t *)&a->timer) {
    mim_loop_uv_slot *s = (mim_loop_uv_slot *)(void *)h; /* poll is the slot's first member */
    s->closing = false;
  }
  a->open_handles--;
}

static inline void mim_loop_uv_poll_cb_(uv_poll_t *p, int status, int events) {
  mim_loop_uv_slot *s = (mim_loop_uv_slot *)(void *)p;
  unsigned ready = 0;
  if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT)))
    ready |= MIM_LOOP_READ;
  if (status >= 0 && (events & UV_WRITABLE))
    ready |= MIM_LOOP_WRITE;
  if (s->owner->client && ready)
    mim_loop_fd_ready(s->owner->client, s->fd, ready);
}

static inline void mim_loop_uv_timer_cb_(uv_timer_t *t) {
  mim_loop_uv *a = (mim_loop_uv *)t->data;
  if (a->client)
    mim_loop_timeout(a->client);
}

static inline mim_loop_uv_slot *mim_loop_uv_find_(mim_loop_uv *a, int fd, bool make) {
  mim_loop_uv_slot *free_slot = NULL;
  for (size_t i = 0; i < MIM_LOOP_UV_MAX_FDS; i++) {
    mim_loop_uv_slot *s = &a->slots[i];
    if (s->open && s->fd == fd)
      return s;
    if (!s->open && !s->closing && !free_slot)
      free_slot = s;
  }
  return make ? free_slot : NULL;
}

/* Stops watching: the library may close fd as soon as the hook returns, so the poll is
 * stopped now and its handle closed (asynchronously). */
static inline void mim_loop_uv_release_(mim_loop_uv *a, mim_loop_uv_slot *s) {
  int rc = uv_poll_stop(&s->poll);
  if (rc < 0)
    mim_loop_uv_fail_(a, "uv_poll_stop", rc);
  s->open = false;
  s->closing = true;
  uv_close((uv_handle_t *)&s->poll, mim_loop_uv_closed_cb_);
}

static inline void mim_loop_uv_watch_fd_(void *user, int fd, unsigned events) {
  mim_loop_uv *a = (mim_loop_uv *)user;
  mim_loop_uv_slot *s = mim_loop_uv_find_(a, fd, events != 0);
  if (!s) {
    if (events)
      mim_loop_uv_fail_(a, "watch_fd: descriptor table full (MIM_LOOP_UV_MAX_FDS)", UV_ENOBUFS);
    return;
  }
  if (!events) {
    mim_loop_uv_release_(a, s);
    return;
  }
  if (!s->open) {
    int rc = uv_poll_init(a->loop, &s->poll, fd);
    if (rc < 0) {
      mim_loop_uv_fail_(a, "uv_poll_init", rc);
      return;
    }
    s->poll.data = a;
    s->owner = a;
    s->fd = fd;
    s->open = true;
    a->open_handles++;
  }
  int uv_events =
      ((events & MIM_LOOP_READ) ? UV_READABLE : 0) | ((events & MIM_LOOP_WRITE) ? UV_WRITABLE : 0);
  int rc = uv_poll_start(&s->poll, uv_events, mim_loop_uv_poll_cb_);
  if (rc < 0)
    mim_loop_uv_fail_(a, "uv_poll_start", rc);
}

static inline void mim_loop_uv_set_timer_(void *user, int64_t timeout_ms) {
  mim_loop_uv *a = (mim_loop_uv *)user;
  int rc = timeout_ms < 0
               ? uv_timer_stop(&a->timer)
               : uv_timer_start(&a->timer, mim_loop_uv_timer_cb_, (uint64_t)timeout_ms, 0);
  if (rc < 0)
    mim_loop_uv_fail_(a, timeout_ms < 0 ? "uv_timer_stop" : "uv_timer_start", rc);
}

/* Prepares a (any previous content is overwritten; a->on_error may be set after this)
 * and returns the hooks to put in mim_client_options.loop (valid while a is), or NULL
 * when libuv refused the timer (a->error says why). */
static inline const mim_loop_hooks *mim_loop_uv_init(mim_loop_uv *a, uv_loop_t *loop) {
  memset(a, 0, sizeof *a);
  a->loop = loop;
  int rc = uv_timer_init(loop, &a->timer);
  if (rc < 0) {
    mim_loop_uv_fail_(a, "uv_timer_init", rc);
    return NULL;
  }
  a->timer.data = a;
  a->timer_open = true;
  a->open_handles = 1;
  a->hooks.struct_size = sizeof a->hooks;
  a->hooks.watch_fd = mim_loop_uv_watch_fd_;
  a->hooks.set_timer = mim_loop_uv_set_timer_;
  a->hooks.user = a;
  return &a->hooks;
}

/* Gives the adapter the client created with its hooks: from now on ready descriptors
 * and the timer are handed to it. */
static inline void mim_loop_uv_attach(mim_loop_uv *a, mim_client *client) {
  a->client = client;
}

/* After mim_client_free (or when the client could not be created): closes every handle
 * still open. Then run the loop until mim_loop_uv_closed(a) before freeing a. */
static inline void mim_loop_uv_close(mim_loop_uv *a) {
  a->client = NULL;
  for (size_t i = 0; i < MIM_LOOP_UV_MAX_FDS; i++)
    if (a->slots[i].open)
      mim_loop_uv_release_(a, &a->slots[i]);
  if (a->timer_open) {
    a->timer_open = false;
    uv_close((uv_handle_t *)&a->timer, mim_loop_uv_closed_cb_);
  }
}

/* True once every handle of the adapter has finished closing. */
static inline bool mim_loop_uv_closed(const mim_loop_uv *a) {
  return !a->timer_open && a->open_handles == 0;
}

#endif
