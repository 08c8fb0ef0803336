/*
 * gRPC transport on our own HTTP/2 client (lib/h2) and event loop (lib/loop).
 *
 * Threading: every connection, stream, queue and call state lives on the reactor's loop
 * thread. The thread-safe entry points (unary, stream, cancel, free) hand their work to
 * the loop with mim_reactor_post, also when called on the loop thread, so a callback
 * never runs inside the call that started it (callers may hold their own locks there).
 * t->mu guards only what other threads read: the auth token, the shutdown flag and the
 * count of live calls (free waits for it to reach zero).
 *
 * A call is refcounted: the loop holds one reference until the final callback returned,
 * a pending cancel task another, so a handle stays valid while mim_call_cancel runs.
 *
 * Endpoints: one per distinct host:port among the planes. Each has a list of
 * connections (a new one is dialled when every open one is at the server's
 * MAX_CONCURRENT_STREAMS) and a queue of calls waiting for a connection. A failed dial
 * fails the waiting calls with UNAVAILABLE and starts a backoff; calls made during it
 * fail at once (as gRPC's transient failure does) so a down server is not hammered.
 */
#include "transport.h"

#include "backoff.h"
#include "clock.h"
#include "error.h"
#include "h2/conn.h"
#include "h2/grpc_wire.h"
#include "h2/net.h"
#include "loop/reactor.h"
#include "transport/sync_result.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_LEN 512
#define RUNTIME_VERSION "c:c11"
#define DEFAULT_AGENT "c:im:" MIM_VERSION_STRING
#define DIAL_TIMEOUT_MS 20000
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 30000
#define MAX_RETRIES 3       /* transparent retries of a refused (never processed) call */
#define SYNC_MARGIN_MS 5000 /* a blocking call waits this much past its deadline at most */
#define MAX_HEADERS 4

typedef struct endpoint endpoint;
typedef struct pconn pconn;

struct mim_call {
  mim_transport *t;
  atomic_int refs;
  endpoint *ep;
  bool is_stream;
  mim_unary_cb unary_cb;
  void *unary_user;
  mim_stream_callbacks stream_cb;
  char *path, *cache, *token;
  uint8_t *body; /* gRPC prefix + request */
  size_t body_len;
  int64_t deadline_at; /* monotonic ms; 0 = none */
  int64_t deadline_ms; /* as given (for the detail) */
  int retries;
  /* Loop-thread state. */
  bool started, finished;
  mim_timer *deadline_timer;
  pconn *pc;
  mim_h2_stream *stream;
  mim_call *qnext;       /* endpoint queue */
  mim_call *prev, *next; /* t->calls */
};

struct pconn {
  endpoint *ep;
  mim_h2_conn *h;
  pconn *next;
};

struct endpoint {
  mim_transport *t;
  char *host_port;
  pconn *conns;
  mim_net_dial *dial;
  mim_call *qhead, *qtail;
  unsigned failures; /* dial failures in a row */
  int64_t retry_at;  /* no dial before this (monotonic ms) */
  char last_error[DETAIL_LEN];
};

struct mim_transport {
  mim_reactor *r;
  mim_net *net;
  bool external;
  bool tls;
  endpoint *eps[3]; /* per plane; planes with the same host:port share one */
  char *agent;
  void (*on_unauthenticated)(void *user);
  void *hook_user;
  int64_t keepalive_ms;
  cmn_rng rng;
  mim_call *calls; /* loop thread: started and not finished */

  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *token;        /* guarded by mu */
  bool shutting_down; /* guarded by mu */
  size_t live;        /* guarded by mu: calls accepted and not finished */
  bool closed;        /* guarded by mu: connections closed (free) */
};

static const mim_h2_events conn_events;

/* ---- small helpers ---- */

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static void free_secret(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

bool mim_transport_on_event_thread(const mim_transport *t) {
  return t && mim_reactor_on_loop(t->r);
}

bool mim_transport_must_drive(const mim_transport *t) {
  return t && t->external && mim_reactor_on_loop(t->r) && !mim_reactor_in_callback(t->r);
}

bool mim_transport_run_until(mim_transport *t, bool (*done)(void *arg), void *arg,
                             int64_t deadline_ms) {
  if (!mim_transport_must_drive(t))
    return done(arg);
  return mim_reactor_run_until(t->r, done, arg, deadline_ms);
}

static bool shutting_down(mim_transport *t) {
  pthread_mutex_lock(&t->mu);
  bool s = t->shutting_down;
  pthread_mutex_unlock(&t->mu);
  return s;
}

/* ---- call lifetime ---- */

static void call_unref(mim_call *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  free(c->path);
  free(c->cache);
  free_secret(c->token);
  free(c->body);
  free(c);
}

static void note_status(mim_transport *t, mim_status st) {
  if (st == MIM_ERR_UNAUTHENTICATED && t->on_unauthenticated)
    t->on_unauthenticated(t->hook_user);
}

static void call_unlink(mim_call *c) {
  mim_transport *t = c->t;
  if (!c->started)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    t->calls = c->next;
  if (c->next)
    c->next->prev = c->prev;
}

static void deadline_text(const mim_call *c, char *buf, size_t cap);

/* Runs the final callback once, then drops the loop's reference. */
static void call_finish(mim_call *c, mim_status st, const char *detail, const uint8_t *msg,
                        size_t len) {
  if (c->finished)
    return;
  c->finished = true;
  /* The server may report our grpc-timeout before our own timer fires (a loaded
   * machine): the same event, so the same words naming host:port and the wait. */
  char waited[DETAIL_LEN];
  if (st == MIM_ERR_DEADLINE_EXCEEDED && c->deadline_ms > 0 &&
      !(detail && strncmp(detail, "no answer from ", 15) == 0)) {
    deadline_text(c, waited, sizeof waited);
    detail = waited;
  }
  if (c->deadline_timer) {
    mim_timer_cancel(c->deadline_timer); /* false inside the timer itself: nothing to do */
    c->deadline_timer = NULL;
  }
  call_unlink(c);
  mim_transport *t = c->t;
  note_status(t, st);
  const char *d = st == MIM_OK ? "" : (detail && detail[0] ? detail : mim_strerror(st));
  if (c->is_stream)
    c->stream_cb.on_close(c->stream_cb.user, st, d);
  else
    c->unary_cb(c->unary_user, st, d, st == MIM_OK && len ? msg : NULL, st == MIM_OK ? len : 0);
  pthread_mutex_lock(&t->mu);
  if (--t->live == 0)
    pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  call_unref(c);
}

static void queue_remove(endpoint *ep, mim_call *c) {
  mim_call *prev = NULL;
  for (mim_call *q = ep->qhead; q; prev = q, q = q->qnext) {
    if (q != c)
      continue;
    if (prev)
      prev->qnext = q->qnext;
    else
      ep->qhead = q->qnext;
    if (ep->qtail == q)
      ep->qtail = prev;
    q->qnext = NULL;
    return;
  }
}

/* Ends a call from our side: resets its stream (or takes it off the queue). */
static void call_abort(mim_call *c, mim_status st, const char *detail) {
  if (c->finished)
    return;
  if (c->stream) {
    mim_h2_stream_cancel(c->stream);
    c->stream = NULL;
    c->pc = NULL;
  } else if (c->started) {
    queue_remove(c->ep, c);
  }
  call_finish(c, st, detail, NULL, 0);
}

/* ---- endpoints and connections ---- */

static void ep_dispatch(endpoint *ep, mim_call *c);

static void ep_fail_queue(endpoint *ep, mim_status st, const char *detail) {
  mim_call *c;
  while ((c = ep->qhead) != NULL) {
    ep->qhead = c->qnext;
    if (!ep->qhead)
      ep->qtail = NULL;
    c->qnext = NULL;
    call_finish(c, st, detail, NULL, 0);
  }
}

/* Submits c on pc; a failure to submit finishes the call with that status. */
static void call_submit(mim_call *c, pconn *pc) {
  mim_transport *t = c->t;
  mim_h2_header hdrs[MAX_HEADERS];
  size_t n = 0;
  hdrs[n++] = (mim_h2_header){"authorization", c->token};
  if (c->cache)
    hdrs[n++] = (mim_h2_header){"cache", c->cache};
  hdrs[n++] = (mim_h2_header){"agent", t->agent};
  hdrs[n++] = (mim_h2_header){"runtime-version", RUNTIME_VERSION};
  int64_t timeout = 0;
  if (c->deadline_at) {
    timeout = c->deadline_at - cmn_mono_ms();
    if (timeout < 1)
      timeout = 1;
  }
  mim_h2_request req = {.path = c->path,
                        .authority = c->ep->host_port,
                        .tls = t->tls,
                        .timeout_ms = timeout,
                        .headers = hdrs,
                        .header_count = n,
                        .body = c->body,
                        .body_len = c->body_len,
                        .unary = !c->is_stream};
  /* Submitting flushes, and a frame nghttp2 cannot send (a header block over its limit)
   * closes the stream inside the submit: the final callback may then already have run
   * and another thread dropped its reference. Hold one, and let ev_on_close find pc. */
  c->pc = pc;
  atomic_fetch_add(&c->refs, 1);
  mim_status st = mim_h2_conn_submit(pc->h, &req, c, &c->stream);
  if (st != MIM_OK) {
    c->pc = NULL; /* never submitted: no callback ran, it runs now */
    call_finish(c, st, mim_last_error_detail(), NULL, 0);
  }
  call_unref(c);
}

static pconn *ep_free_conn(endpoint *ep) {
  for (pconn *pc = ep->conns; pc; pc = pc->next)
    if (mim_h2_conn_can_submit(pc->h))
      return pc;
  return NULL;
}

/* Starts queued calls on connections with room. */
static void ep_drain(endpoint *ep) {
  pconn *pc;
  while (ep->qhead && (pc = ep_free_conn(ep)) != NULL) {
    mim_call *c = ep->qhead;
    ep->qhead = c->qnext;
    if (!ep->qhead)
      ep->qtail = NULL;
    c->qnext = NULL;
    call_submit(c, pc);
  }
}

static void on_dialed(void *user, mim_status status, const char *detail, mim_net_conn *nc);

static void ep_dial(endpoint *ep) {
  mim_transport *t = ep->t;
  if (ep->dial)
    return;
  mim_status st =
      mim_net_dial_start(t->net, ep->host_port, DIAL_TIMEOUT_MS, on_dialed, ep, &ep->dial);
  if (st != MIM_OK) {
    ep->dial = NULL;
    ep_fail_queue(ep, MIM_ERR_UNAVAILABLE, mim_last_error_detail());
  }
}

/* A connect (or a connection that died before the server's SETTINGS) failed: the
 * waiting calls fail and the next dial waits for the backoff. */
static void ep_connect_failed(endpoint *ep, mim_status status, const char *detail) {
  mim_transport *t = ep->t;
  snprintf(ep->last_error, sizeof ep->last_error, "%s", detail ? detail : "connect failed");
  ep->retry_at = cmn_mono_ms() +
                 cmn_backoff_full_jitter_ms(&t->rng, BACKOFF_BASE_MS, BACKOFF_CAP_MS, ep->failures);
  ep->failures++;
  ep_fail_queue(ep, status == MIM_ERR_DEADLINE_EXCEEDED ? MIM_ERR_UNAVAILABLE : status,
                ep->last_error);
}

static void on_dialed(void *user, mim_status status, const char *detail, mim_net_conn *nc) {
  endpoint *ep = user;
  mim_transport *t = ep->t;
  ep->dial = NULL;
  if (status != MIM_OK) {
    ep_connect_failed(ep, status, detail);
    return;
  }
  ep->retry_at = 0; /* failures are forgotten once the server's SETTINGS arrive */
  pconn *pc = calloc(1, sizeof *pc);
  if (!pc) {
    mim_net_conn_close(nc);
    ep_fail_queue(ep, MIM_ERR_NO_MEMORY, "out of memory for a connection");
    return;
  }
  pc->ep = ep;
  if (mim_h2_conn_create(t->r, nc, t->keepalive_ms, 0, &conn_events, pc, &pc->h) != MIM_OK) {
    free(pc);
    ep_fail_queue(ep, MIM_ERR_UNAVAILABLE, mim_last_error_detail());
    return;
  }
  pc->next = ep->conns;
  ep->conns = pc;
  ep_drain(ep);
}

/* Puts the call on a connection with room, or queues it (dialling when none has room). */
static void ep_dispatch(endpoint *ep, mim_call *c) {
  pconn *pc = ep_free_conn(ep);
  if (pc && !ep->qhead) {
    call_submit(c, pc);
    return;
  }
  if (!ep->dial && !pc && ep->retry_at && cmn_mono_ms() < ep->retry_at) {
    char detail[DETAIL_LEN + 64];
    snprintf(detail, sizeof detail, "%s (waiting before reconnecting)", ep->last_error);
    call_finish(c, MIM_ERR_UNAVAILABLE, detail, NULL, 0);
    return;
  }
  if (ep->qtail)
    ep->qtail->qnext = c;
  else
    ep->qhead = c;
  ep->qtail = c;
  if (!pc)
    ep_dial(ep);
  else
    ep_drain(ep);
}

/* ---- connection events ---- */

static void ev_on_message(void *stream_user, const uint8_t *msg, size_t len) {
  mim_call *c = stream_user;
  if (c->stream_cb.on_message && !c->finished)
    c->stream_cb.on_message(c->stream_cb.user, msg, len);
}

static void ev_on_close(void *stream_user, mim_status st, const char *detail, const uint8_t *msg,
                        size_t len, bool refused) {
  mim_call *c = stream_user;
  pconn *pc = c->pc;
  c->stream = NULL;
  c->pc = NULL;
  /* A connection that never got as far as SETTINGS is a failed connect, not a GOAWAY:
   * retrying at once would hammer a server that accepts and drops connections. */
  bool established = !pc || mim_h2_conn_established(pc->h);
  if (refused && established && c->retries < MAX_RETRIES && !shutting_down(c->t)) {
    c->retries++; /* never processed by the server: safe to send again */
    ep_dispatch(c->ep, c);
    return;
  }
  call_finish(c, st, detail, msg, len);
}

static void ev_on_ready(void *conn_user, mim_h2_conn *h) {
  (void)h;
  pconn *pc = conn_user;
  pc->ep->failures = 0;
  ep_drain(pc->ep);
}

static void ev_on_dead(void *conn_user, mim_h2_conn *h, mim_status st, const char *detail) {
  pconn *pc = conn_user;
  endpoint *ep = pc->ep;
  for (pconn **pp = &ep->conns; *pp; pp = &(*pp)->next) {
    if (*pp == pc) {
      *pp = pc->next;
      break;
    }
  }
  if (st != MIM_OK)
    mim_log(MIM_LOG_DEBUG, "transport: %s", detail);
  bool established = mim_h2_conn_established(h);
  char why[DETAIL_LEN];
  snprintf(why, sizeof why, "%s", detail); /* detail lives in the connection */
  mim_h2_conn_free(h);
  free(pc);
  if (st != MIM_OK && !established) {
    ep_connect_failed(ep, st, why);
    return;
  }
  if (ep->qhead && !shutting_down(ep->t)) {
    if (ep_free_conn(ep))
      ep_drain(ep);
    else
      ep_dial(ep);
  }
}

static void ev_on_calm_down(void *conn_user) {
  pconn *pc = conn_user;
  mim_transport *t = pc->ep->t;
  t->keepalive_ms *= 2;
}

static const mim_h2_events conn_events = {ev_on_message, ev_on_close, ev_on_ready, ev_on_dead,
                                          ev_on_calm_down};

/* ---- starting calls ---- */

/* "no answer from host:port within N ms" first: gRPC's own words alone do not say which
 * server was silent nor how long we waited. */
static void deadline_text(const mim_call *c, char *buf, size_t cap) {
  snprintf(buf, cap,
           "no answer from %s within %lld ms: is the server overloaded or the network slow? "
           "(Deadline Exceeded)",
           c->ep->host_port, (long long)c->deadline_ms);
}

static void on_deadline(void *user) {
  mim_call *c = user;
  c->deadline_timer = NULL;
  char text[DETAIL_LEN];
  deadline_text(c, text, sizeof text);
  call_abort(c, MIM_ERR_DEADLINE_EXCEEDED, text);
}

/* Posted: the call reaches the loop. Carries the loop's reference. */
static void start_task(void *arg) {
  mim_call *c = arg;
  mim_transport *t = c->t;
  if (shutting_down(t)) {
    call_finish(c, MIM_ERR_CANCELLED, "transport is shutting down", NULL, 0);
    return;
  }
  c->started = true;
  c->next = t->calls;
  if (t->calls)
    t->calls->prev = c;
  t->calls = c;
  if (c->deadline_at) {
    int64_t left = c->deadline_at - cmn_mono_ms();
    if (left <= 0) {
      char text[DETAIL_LEN];
      deadline_text(c, text, sizeof text);
      call_finish(c, MIM_ERR_DEADLINE_EXCEEDED, text, NULL, 0);
      return;
    }
    if (mim_reactor_timer(t->r, left, on_deadline, c, &c->deadline_timer) != MIM_OK) {
      call_finish(c, MIM_ERR_CANCELLED, "transport is shutting down", NULL, 0);
      return;
    }
  }
  ep_dispatch(c->ep, c);
}

static mim_status valid_call(mim_transport *t, mim_host_kind host, const char *method,
                             const uint8_t *request, size_t request_len) {
  if (!t || !method || method[0] != '/')
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: transport and a \"/service/method\" "
                                              "path are required");
  if ((unsigned)host > MIM_HOST_TOKEN || !t->eps[host])
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: no host configured for plane %d", (int)host);
  if (!request && request_len)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: request is NULL");
  if (request_len > MIM_GRPC_MAX_MESSAGE)
    return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED,
                    "call: request of %zu bytes exceeds the limit of %zu bytes", request_len,
                    MIM_GRPC_MAX_MESSAGE);
  return MIM_OK;
}

static mim_call *call_new(mim_transport *t, mim_host_kind host, const char *method,
                          const char *cache_name, const uint8_t *request, size_t request_len,
                          int64_t deadline_ms) {
  mim_call *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  atomic_init(&c->refs, 1);
  c->t = t;
  c->ep = t->eps[host]; // NOLINT(clang-analyzer-core.NullDereference): valid_call checked t
  c->path = dup_str(method);
  c->cache = cache_name ? dup_str(cache_name) : NULL;
  c->body_len = MIM_GRPC_PREFIX_LEN + request_len;
  c->body = malloc(c->body_len);
  pthread_mutex_lock(&t->mu);
  c->token = dup_str(t->token);
  pthread_mutex_unlock(&t->mu);
  if (!c->path || (cache_name && !c->cache) || !c->body || !c->token) {
    call_unref(c);
    return NULL;
  }
  mim_grpc_prefix(c->body, request_len);
  if (request_len)
    memcpy(c->body + MIM_GRPC_PREFIX_LEN, request, request_len);
  if (deadline_ms > 0)
    c->deadline_at = cmn_mono_ms() + deadline_ms;
  c->deadline_ms = deadline_ms;
  return c;
}

/* Accepts the call (counted live) and hands it to the loop. */
static mim_status call_launch(mim_call *c, mim_call **out_call) {
  mim_transport *t = c->t;
  pthread_mutex_lock(&t->mu);
  if (t->shutting_down) {
    pthread_mutex_unlock(&t->mu);
    call_unref(c);
    return mim_fail(MIM_ERR_CANCELLED, "call: transport is shutting down");
  }
  t->live++;
  pthread_mutex_unlock(&t->mu);
  if (out_call)
    *out_call = c;
  mim_status st = mim_reactor_post(t->r, start_task, c);
  if (st != MIM_OK) {
    if (out_call)
      *out_call = NULL;
    pthread_mutex_lock(&t->mu);
    if (--t->live == 0)
      pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    call_unref(c);
    return mim_fail(st, "call: cannot reach the event loop (%s)", mim_strerror(st));
  }
  return MIM_OK;
}

/* hold: the caller gets an extra reference on success (released with call_unref). */
static mim_status unary_start(mim_transport *t, mim_host_kind host, const char *method,
                              const char *cache_name, const uint8_t *request, size_t request_len,
                              int64_t deadline_ms, mim_unary_cb cb, void *user, mim_call **out_call,
                              bool hold) {
  mim_status vst = valid_call(t, host, method, request, request_len);
  if (vst != MIM_OK)
    return vst;
  if (!cb)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "unary: callback is required");
  mim_call *c = call_new(t, host, method, cache_name, request, request_len, deadline_ms);
  if (!c)
    return mim_fail(MIM_ERR_NO_MEMORY, "call: out of memory");
  c->unary_cb = cb;
  c->unary_user = user;
  if (hold)
    atomic_fetch_add(&c->refs, 1);
  mim_status st = call_launch(c, out_call);
  if (st != MIM_OK && hold)
    call_unref(c); // NOLINT(clang-analyzer-unix.Malloc): the held reference keeps c alive
  return st;
}

mim_status mim_transport_unary(mim_transport *t, mim_host_kind host, const char *method,
                               const char *cache_name, const uint8_t *request, size_t request_len,
                               int64_t deadline_ms, mim_unary_cb cb, void *user,
                               mim_call **out_call) {
  return unary_start(t, host, method, cache_name, request, request_len, deadline_ms, cb, user,
                     out_call, false);
}

mim_status mim_transport_stream(mim_transport *t, mim_host_kind host, const char *method,
                                const char *cache_name, const uint8_t *request, size_t request_len,
                                int64_t deadline_ms, const mim_stream_callbacks *callbacks,
                                mim_call **out_call) {
  mim_status vst = valid_call(t, host, method, request, request_len);
  if (vst != MIM_OK)
    return vst;
  if (!callbacks || !callbacks->on_close)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "stream: on_close is required");
  mim_call *c = call_new(t, host, method, cache_name, request, request_len, deadline_ms);
  if (!c)
    return mim_fail(MIM_ERR_NO_MEMORY, "call: out of memory");
  c->is_stream = true;
  c->stream_cb = *callbacks;
  return call_launch(c, out_call);
}

static void cancel_task(void *arg) {
  mim_call *c = arg;
  call_abort(c, MIM_ERR_CANCELLED, "Cancelled");
  call_unref(c);
}

void mim_call_cancel(mim_call *c) {
  if (!c)
    return;
  atomic_fetch_add(&c->refs, 1);
  if (mim_reactor_post(c->t->r, cancel_task, c) != MIM_OK)
    call_unref(c); /* the loop is going away: free cancels every call anyway */
}

/* ---- timers ---- */

mim_status mim_transport_timer(mim_transport *t, int64_t delay_ms, void (*cb)(void *user),
                               void *user, mim_timer **out_timer) {
  if (!t || !cb)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "timer: transport and callback are required");
  if (shutting_down(t))
    return mim_fail(MIM_ERR_CANCELLED, "timer: transport is shutting down");
  return mim_reactor_timer(t->r, delay_ms, cb, user, out_timer);
}

/* ---- sync unary ---- */

/* Waits for the callback; a call that overstays its deadline by the margin (the loop is
 * not being run, or is stuck) is cancelled, and its callback is what ends the wait. */
static void sync_wait_for(mim_transport *t, mim_sync_result *w, mim_call *call,
                          int64_t deadline_ms) {
  int64_t limit = deadline_ms > 0 ? deadline_ms + SYNC_MARGIN_MS : 0;
  if (mim_transport_must_drive(t)) {
    int64_t until = limit ? cmn_mono_ms() + limit : INT64_MAX;
    if (!mim_reactor_run_until(t->r, mim_sync_result_is_done, w, until)) {
      mim_call_cancel(call);
      mim_reactor_run_until(t->r, mim_sync_result_is_done, w, INT64_MAX);
    }
    return;
  }
  struct timespec until = cmn_deadline_after_ms(limit);
  bool cancelled = false;
  pthread_mutex_lock(&w->mu);
  while (!w->done) {
    if (!limit || cancelled) {
      pthread_cond_wait(&w->cv, &w->mu);
    } else if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0 && !w->done) {
      pthread_mutex_unlock(&w->mu);
      mim_call_cancel(call);
      cancelled = true;
      pthread_mutex_lock(&w->mu);
    }
  }
  pthread_mutex_unlock(&w->mu);
}

mim_status mim_transport_unary_sync(mim_transport *t, mim_host_kind host, const char *method,
                                    const char *cache_name, const uint8_t *request,
                                    size_t request_len, int64_t deadline_ms, uint8_t **response,
                                    size_t *response_len) {
  if (!response || !response_len)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "unary_sync: response pointers are required");
  *response = NULL;
  *response_len = 0;
  if (t && mim_transport_on_event_thread(t) && !mim_transport_must_drive(t))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "unary_sync: called from the transport's event thread (would deadlock)");
  mim_sync_result w;
  mim_sync_result_init(&w);
  mim_call *call = NULL;
  /* Held: a cancel after a timed-out wait must not find the call freed. */
  mim_status st = unary_start(t, host, method, cache_name, request, request_len, deadline_ms,
                              mim_sync_result_done, &w, &call, true);
  if (st == MIM_OK) {
    sync_wait_for(t, &w, call, deadline_ms);
    call_unref(call); // NOLINT(clang-analyzer-unix.Malloc): the held reference keeps it alive
    st = mim_sync_result_take(&w, response, response_len);
  }
  mim_sync_result_destroy(&w);
  return st;
}

/* ---- create / free ---- */

static void endpoint_free(endpoint *ep) {
  if (!ep)
    return;
  free(ep->host_port);
  free(ep);
}

static mim_status make_endpoints(mim_transport *t, const mim_transport_config *cfg) {
  for (int i = 0; i < 3; i++) {
    if (!cfg->hosts[i])
      continue;
    for (int j = 0; j < i && !t->eps[i]; j++)
      if (t->eps[j] && strcmp(t->eps[j]->host_port, cfg->hosts[i]) == 0)
        t->eps[i] = t->eps[j]; /* same host:port: one set of connections */
    if (t->eps[i])
      continue;
    endpoint *ep = calloc(1, sizeof *ep);
    if (ep)
      ep->host_port = dup_str(cfg->hosts[i]);
    if (!ep || !ep->host_port) {
      free(ep);
      return mim_fail(MIM_ERR_NO_MEMORY, "transport: out of memory");
    }
    ep->t = t;
    t->eps[i] = ep;
  }
  return MIM_OK;
}

static void transport_destroy(mim_transport *t) {
  for (int i = 0; i < 3; i++) {
    endpoint *ep = t->eps[i];
    for (int j = i; j < 3; j++)
      if (t->eps[j] == ep)
        t->eps[j] = NULL;
    endpoint_free(ep);
  }
  mim_net_free(t->net);
  free(t->agent);
  free_secret(t->token);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t);
}

static mim_status transport_init(mim_transport *t, const mim_transport_config *cfg) {
  t->token = dup_str(cfg->auth_token ? cfg->auth_token : "");
  t->agent = dup_str(cfg->agent ? cfg->agent : DEFAULT_AGENT);
  if (!t->token || !t->agent)
    return mim_fail(MIM_ERR_NO_MEMORY, "transport: out of memory");
  mim_status st = make_endpoints(t, cfg);
  if (st != MIM_OK)
    return st;
  st = mim_reactor_create(cfg->loop, "mim-h2", &t->r);
  if (st != MIM_OK)
    return st;
  mim_net_config ncfg = {.tls = !cfg->plaintext, .ca_file = cfg->ca_file};
  return mim_net_create(t->r, &ncfg, &t->net);
}

mim_status mim_transport_create(const mim_transport_config *config, mim_transport **out) {
  if (!config || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "transport: config and out are required");
  *out = NULL;
  if (!config->hosts[0] && !config->hosts[1] && !config->hosts[2])
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "transport: no host configured");
  if (config->loop && (!config->loop->watch_fd || !config->loop->set_timer))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "transport: loop hooks need watch_fd and set_timer");
  mim_transport *t = calloc(1, sizeof *t);
  if (!t)
    return mim_fail(MIM_ERR_NO_MEMORY, "transport: out of memory");
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  t->external = config->loop != NULL;
  t->tls = !config->plaintext;
  t->on_unauthenticated = config->on_unauthenticated;
  t->hook_user = config->hook_user;
  t->keepalive_ms = MIM_H2_KEEPALIVE_MS;
  cmn_rng_seed(&t->rng);
  mim_status st = transport_init(t, config);
  if (st != MIM_OK) {
    mim_net_free(t->net);
    t->net = NULL;
    mim_reactor_free(t->r);
    transport_destroy(t);
    return st;
  }
  *out = t;
  return MIM_OK;
}

/* Loop thread: every call still running ends with CANCELLED. */
static void shutdown_task(void *arg) {
  mim_transport *t = arg;
  /* call_finish unlinks each call before dropping its reference. */
  while (t->calls)
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
    call_abort(t->calls, MIM_ERR_CANCELLED, "transport is shutting down");
}

/* Loop thread, after the last call: drops connections and dials. */
static void close_connections(mim_transport *t) {
  for (int i = 0; i < 3; i++) {
    endpoint *ep = t->eps[i];
    if (!ep || (i > 0 && (ep == t->eps[0] || (i > 1 && ep == t->eps[1]))))
      continue;
    if (ep->dial)
      mim_net_dial_cancel(ep->dial);
    ep->dial = NULL;
    pconn *pc;
    while ((pc = ep->conns) != NULL) {
      ep->conns = pc->next;
      mim_h2_conn_free(pc->h);
      free(pc);
    }
  }
}

static void close_task(void *arg) {
  mim_transport *t = arg;
  close_connections(t);
  pthread_mutex_lock(&t->mu);
  t->closed = true;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static bool no_live_calls(void *arg) {
  mim_transport *t = arg;
  pthread_mutex_lock(&t->mu);
  bool none = t->live == 0;
  pthread_mutex_unlock(&t->mu);
  return none;
}

/* Own thread: runs fn on the loop and waits until *flag (under mu) is set. */
static void wait_live_zero(mim_transport *t) {
  pthread_mutex_lock(&t->mu);
  while (t->live > 0)
    pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

static void wait_closed(mim_transport *t) {
  pthread_mutex_lock(&t->mu);
  while (!t->closed)
    pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

void mim_transport_free(mim_transport *t) {
  if (!t)
    return;
  if (mim_reactor_in_callback(t->r)) {
    mim_log(MIM_LOG_ERROR, "mim_transport_free called from a transport callback; ignored");
    return;
  }
  if (t->external && !mim_reactor_on_loop(t->r)) {
    mim_log(MIM_LOG_ERROR, "mim_transport_free must run on the loop thread in loop mode; ignored");
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->shutting_down = true;
  pthread_mutex_unlock(&t->mu);
  if (t->external) {
    shutdown_task(t);
    mim_reactor_run_until(t->r, no_live_calls, t, INT64_MAX);
    close_connections(t);
  } else {
    if (mim_reactor_post(t->r, shutdown_task, t) == MIM_OK)
      wait_live_zero(t);
    if (mim_reactor_post(t->r, close_task, t) == MIM_OK)
      wait_closed(t);
  }
  mim_reactor_free(t->r);
  transport_destroy(t);
}

mim_status mim_transport_set_auth_token(mim_transport *t, const char *auth_token) {
  if (!t || !auth_token)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "set_auth_token: transport and token required");
  char *fresh = dup_str(auth_token);
  if (!fresh)
    return mim_fail(MIM_ERR_NO_MEMORY, "set_auth_token: out of memory");
  pthread_mutex_lock(&t->mu);
  char *old = t->token;
  t->token = fresh;
  pthread_mutex_unlock(&t->mu);
  free_secret(old);
  return MIM_OK;
}

void mim_transport_loop_fd_ready(mim_transport *t, int fd, unsigned events) {
  if (t && t->external)
    mim_reactor_fd_ready(t->r, fd, events);
}

void mim_transport_loop_timeout(mim_transport *t) {
  if (t && t->external)
    mim_reactor_timeout(t->r);
}
