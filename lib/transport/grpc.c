/*
 * gRPC transport on the gRPC core C API: one channel per plane, one completion queue,
 * one event thread that runs every callback (calls and timers), serialized.
 *
 * Locking: t->mu guards the auth token, the list of live calls, the timer heap and the
 * shutdown flag. Callbacks always run with t->mu released, so they may start calls,
 * cancel calls and add or cancel timers. Per-call state (pending batches, received
 * status) is touched only by the event thread once the first batch has started.
 */
#include "transport.h"
#include "transport/sync_result.h"

#include "error.h"
#include "tsan_handoff.h" /* a call handed to the event/cq thread via gRPC */

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECV_MESSAGE (16 * 1024 * 1024)
#define KEEPALIVE_TIME_MS 30000
#define KEEPALIVE_TIMEOUT_MS 10000
#define MAX_CA_FILE ((size_t)4 * 1024 * 1024)
#define DETAIL_LEN 512
#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"
#define RUNTIME_VERSION "c:c11"
#define DEFAULT_AGENT "c:im:" MIM_VERSION_STRING
#define MAX_METADATA 4
#define TIMERS_PER_PASS 64

typedef enum tag_kind {
  TAG_WAKE,        /* loop wake-up (see post_wake_locked) */
  TAG_UNARY,       /* the single batch of a unary call */
  TAG_STREAM_SENT, /* request sent (or failed) on a stream */
  TAG_STREAM_STATUS,
  TAG_STREAM_MSG
} tag_kind;

/* What the completion queue hands back: the kind of event and its call. */
typedef struct event_tag {
  tag_kind kind;
  mim_call *call;
} event_tag;

typedef enum timer_state { TIMER_PENDING, TIMER_RUNNING, TIMER_DONE } timer_state;

struct mim_timer {
  mim_transport *t;
  gpr_timespec deadline;
  uint64_t seq; /* FIFO order among equal deadlines */
  void (*cb)(void *user);
  void *user;
  size_t heap_index;
  timer_state state;
  int refs; /* the heap/event thread holds one; a waiting canceller another */
};

struct mim_call {
  mim_transport *t;
  grpc_call *call;
  bool is_stream;
  mim_unary_cb unary_cb;
  void *unary_user;
  mim_stream_callbacks stream_cb;
  mim_call *prev, *next; /* t->calls */

  grpc_metadata md[MAX_METADATA];
  size_t md_count;
  grpc_byte_buffer *send_buf;
  grpc_byte_buffer *recv_buf;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  grpc_status_code status;
  grpc_slice details;
  const char *host;    /* t->hosts[plane] */
  int64_t deadline_ms; /* as given (for the detail) */

  /* Event-thread state. */
  int pending; /* batches started and not yet completed */
  bool status_done;
  bool recv_done;
  bool closed;
  event_tag main_tag; /* TAG_UNARY or TAG_STREAM_SENT */
  event_tag status_tag;
  event_tag msg_tag;
};

struct mim_transport {
  grpc_channel *channels[3];
  char hosts[3][256];         /* "host:port" of each channel, for details */
  grpc_channel *wake_channel; /* one of channels[], used only to wake the loop */
  grpc_completion_queue *cq;
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast when a call ends or a timer callback returns */
  grpc_slice token;  /* guarded by mu; each call takes its own reference */
  grpc_slice agent;
  void (*on_unauthenticated)(void *user);
  void *hook_user;
  bool shutting_down;
  mim_call *calls; /* live calls, cancelled by mim_transport_free */
  mim_timer **heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  mim_timer *running_timer;
  gpr_timespec loop_deadline; /* what the loop is (about to be) waiting for */
  bool wake_pending;
  event_tag wake_tag;
};

/* The transport whose event thread is the current thread (NULL elsewhere). */
static _Thread_local mim_transport *tls_event_transport;

static bool on_event_thread(const mim_transport *t) {
  return tls_event_transport == t;
}

bool mim_transport_on_event_thread(const mim_transport *t) {
  return t && on_event_thread(t);
}

static gpr_timespec now_mono(void) {
  return gpr_now(GPR_CLOCK_MONOTONIC);
}

static gpr_timespec deadline_after_ms(int64_t ms) {
  if (ms <= 0)
    return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(now_mono(), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- timer heap (min-heap on deadline, then seq) ---- */

static bool timer_before(const mim_timer *a, const mim_timer *b) {
  int c = gpr_time_cmp(a->deadline, b->deadline);
  return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_set(mim_transport *t, size_t i, mim_timer *tm) {
  t->heap[i] = tm;
  tm->heap_index = i;
}

static void heap_sift_up(mim_transport *t, size_t i) {
  mim_timer *tm = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!timer_before(tm, t->heap[parent]))
      break;
    heap_set(t, i, t->heap[parent]);
    i = parent;
  }
  heap_set(t, i, tm);
}

static void heap_sift_down(mim_transport *t, size_t i) {
  mim_timer *tm = t->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, best = i;
    const mim_timer *best_tm = tm;
    if (l < t->heap_len && timer_before(t->heap[l], best_tm))
      best = l, best_tm = t->heap[l];
    if (l + 1 < t->heap_len && timer_before(t->heap[l + 1], best_tm))
      best = l + 1;
    if (best == i)
      break;
    heap_set(t, i, t->heap[best]);
    i = best;
  }
  heap_set(t, i, tm);
}

static bool heap_push(mim_transport *t, mim_timer *tm) {
  if (t->heap_len == t->heap_cap) {
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 16;
    mim_timer **h = realloc(t->heap, cap * sizeof *h);
    if (!h)
      return false;
    t->heap = h;
    t->heap_cap = cap;
  }
  heap_set(t, t->heap_len++, tm);
  heap_sift_up(t, tm->heap_index);
  return true;
}

static void heap_remove(mim_transport *t, mim_timer *tm) {
  size_t i = tm->heap_index;
  mim_timer *last = t->heap[--t->heap_len];
  if (i == t->heap_len)
    return;
  heap_set(t, i, last);
  heap_sift_down(t, i);
  heap_sift_up(t, last->heap_index);
}

/* ---- waking the event loop ---- */

/*
 * The loop blocks in grpc_completion_queue_next until the earliest timer is due. When
 * another thread adds an earlier timer, the loop must wake up, but the public C API has
 * no way to post a tag to a completion queue directly. grpc_channel_watch_connectivity_state
 * does post one: when the channel's state differs from the "last observed" state passed
 * in, or at the watch's deadline. We pass a state the channel is not in, so the tag is
 * enqueued at once (measured: ~15 us); should the channel move into that very state
 * meanwhile, the deadline (now) still fires it within about a millisecond. Watching does
 * not make the channel connect. At most one wake is outstanding (wake_pending); the loop
 * recomputes its deadline after every event, so one wake covers every timer added before
 * it is delivered.
 */
static void post_wake_locked(mim_transport *t) {
  if (t->wake_pending || t->shutting_down)
    return;
  grpc_connectivity_state s = grpc_channel_check_connectivity_state(t->wake_channel, 0);
  grpc_connectivity_state other = s == GRPC_CHANNEL_IDLE ? GRPC_CHANNEL_READY : GRPC_CHANNEL_IDLE;
  grpc_channel_watch_connectivity_state(t->wake_channel, other, now_mono(), t->cq, &t->wake_tag);
  t->wake_pending = true;
}

/* ---- timers ---- */

static void timer_unref_locked(mim_timer *tm) {
  if (--tm->refs == 0)
    free(tm);
}

mim_status mim_transport_timer(mim_transport *t, int64_t delay_ms, void (*cb)(void *user),
                               void *user, mim_timer **out_timer) {
  if (!t || !cb)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "timer: transport and callback are required");
  mim_timer *tm = calloc(1, sizeof *tm);
  if (!tm)
    return mim_fail(MIM_ERR_NO_MEMORY, "timer: out of memory");
  tm->t = t;
  tm->deadline = delay_ms > 0 ? deadline_after_ms(delay_ms) : now_mono();
  tm->cb = cb;
  tm->user = user;
  tm->state = TIMER_PENDING;
  tm->refs = 1;
  pthread_mutex_lock(&t->mu);
  if (t->shutting_down) {
    pthread_mutex_unlock(&t->mu);
    free(tm);
    return mim_fail(MIM_ERR_CANCELLED, "timer: transport is shutting down");
  }
  tm->seq = t->timer_seq++;
  if (!heap_push(t, tm)) {
    pthread_mutex_unlock(&t->mu);
    free(tm);
    return mim_fail(MIM_ERR_NO_MEMORY, "timer: out of memory");
  }
  /* The event thread recomputes its deadline after each callback; others must wake it. */
  if (!on_event_thread(t) && gpr_time_cmp(tm->deadline, t->loop_deadline) < 0)
    post_wake_locked(t);
  if (out_timer)
    *out_timer = tm;
  pthread_mutex_unlock(&t->mu);
  return MIM_OK;
}

bool mim_timer_cancel(mim_timer *tm) {
  if (!tm)
    return false;
  mim_transport *t = tm->t;
  pthread_mutex_lock(&t->mu);
  if (tm->state == TIMER_PENDING) {
    heap_remove(t, tm);
    tm->state = TIMER_DONE;
    timer_unref_locked(tm);
    pthread_mutex_unlock(&t->mu);
    return true;
  }
  if (tm->state == TIMER_RUNNING && !on_event_thread(t)) {
    tm->refs++; /* keep it alive while we wait for its callback to return */
    while (tm->state == TIMER_RUNNING)
      pthread_cond_wait(&t->cv, &t->mu);
    timer_unref_locked(tm);
  }
  pthread_mutex_unlock(&t->mu);
  return false;
}

/* Runs the timers that were due when this pass started; returns with mu released. */
static void run_due_timers(mim_transport *t) {
  gpr_timespec now = now_mono();
  for (int n = 0; n < TIMERS_PER_PASS; n++) {
    pthread_mutex_lock(&t->mu);
    /* Once free has begun no timer runs; free drops them after the last callback. */
    if (t->shutting_down || t->heap_len == 0 || gpr_time_cmp(t->heap[0]->deadline, now) > 0) {
      pthread_mutex_unlock(&t->mu);
      return;
    }
    mim_timer *tm = t->heap[0];
    heap_remove(t, tm);
    tm->state = TIMER_RUNNING;
    t->running_timer = tm;
    pthread_mutex_unlock(&t->mu);

    tm->cb(tm->user);

    pthread_mutex_lock(&t->mu);
    tm->state = TIMER_DONE;
    t->running_timer = NULL;
    pthread_cond_broadcast(&t->cv);
    timer_unref_locked(tm);
    pthread_mutex_unlock(&t->mu);
  }
}

/* Earliest timer deadline (infinite when none); remembered for post_wake decisions. */
static gpr_timespec next_deadline(mim_transport *t) {
  pthread_mutex_lock(&t->mu);
  gpr_timespec d =
      t->heap_len && !t->shutting_down ? t->heap[0]->deadline : gpr_inf_future(GPR_CLOCK_MONOTONIC);
  t->loop_deadline = d;
  pthread_mutex_unlock(&t->mu);
  return d;
}

/* ---- calls ---- */

static void copy_detail(grpc_slice s, char *buf, size_t cap) {
  size_t n = GRPC_SLICE_LENGTH(s);
  if (n >= cap)
    n = cap - 1;
  memcpy(buf, GRPC_SLICE_START_PTR(s), n);
  buf[n] = '\0';
}

/* The detail of a finished call: for RESOURCE_EXHAUSTED, the one limit form naming the
 * cause from the "err" trailing metadata entry (hosted Momento's and mim-local's). */
/* snprintf for details that may be cut short on purpose (the hint and gRPC's words
 * together can exceed the detail's size; the start matters most). */
__attribute__((format(printf, 3, 4))) static void cut_to(char *buf, size_t cap, const char *fmt,
                                                         ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
}

/* What to check, from gRPC core's words for a failed connection, or NULL. */
static const char *connect_hint(const char *message, char *buf, size_t cap, const char *host) {
  if (strstr(message, "DNS resolution failed"))
    cut_to(buf, cap, "cannot resolve %s (DNS): check the endpoint and the network", host);
  else if (strstr(message, "Connection refused"))
    cut_to(buf, cap, "nothing listens on %s: is the server running, and is the port right?", host);
  else if (strstr(message, "wrong version number"))
    cut_to(buf, cap,
           "TLS with %s failed: the server does not speak TLS on this port (a plaintext "
           "server? then use MIM_TLS_OFF or a loopback endpoint)",
           host);
  else if (strstr(message, "certificate verify failed"))
    cut_to(buf, cap,
           "the TLS certificate of %s is not trusted: give the CA that signed it as ca_file", host);
  else if (strstr(message, "is not in peer certificate"))
    cut_to(buf, cap, "the TLS certificate of %s was issued for another name: check the endpoint",
           host);
  else if (strstr(message, "Socket closed") || strstr(message, "Connection reset"))
    cut_to(buf, cap, "%s closed the connection: is it a gRPC server, and does it want TLS?", host);
  else
    return NULL;
  return buf;
}

/* gRPC's own words name neither the server that failed nor what to check (and a
 * deadline not even the server): say both first, then gRPC's text. */
static void explained(const mim_call *c, mim_status st, const char *message, char *buf,
                      size_t cap) {
  char hint[320];
  if (st == MIM_ERR_DEADLINE_EXCEEDED)
    cut_to(buf, cap,
           "no answer from %s within %lld ms: is the server overloaded or the network slow? "
           "(%s)",
           c->host, (long long)c->deadline_ms, message);
  else if (st == MIM_ERR_UNAVAILABLE && connect_hint(message, hint, sizeof hint, c->host))
    cut_to(buf, cap, "%s (%s)", hint, message);
  else
    cut_to(buf, cap, "%s", message);
}

static void status_detail(const mim_call *c, mim_status st, char *buf, size_t cap) {
  char message[DETAIL_LEN];
  copy_detail(c->details, message, sizeof message);
  if (st != MIM_ERR_RESOURCE_EXHAUSTED) {
    explained(c, st, message, buf, cap);
    return;
  }
  char err[64] = "";
  for (size_t i = 0; i < c->trailing_md.count; i++) {
    const grpc_metadata *m = &c->trailing_md.metadata[i];
    if (grpc_slice_str_cmp(m->key, "err") == 0)
      copy_detail(m->value, err, sizeof err);
  }
  mim_format_limit_detail(buf, cap, err, message);
}

static void call_destroy(mim_call *c) {
  for (size_t i = 0; i < c->md_count; i++)
    grpc_slice_unref(c->md[i].value);
  if (c->send_buf)
    grpc_byte_buffer_destroy(c->send_buf);
  if (c->recv_buf)
    grpc_byte_buffer_destroy(c->recv_buf);
  grpc_metadata_array_destroy(&c->initial_md);
  grpc_metadata_array_destroy(&c->trailing_md);
  grpc_slice_unref(c->details);
  if (c->call)
    grpc_call_unref(c->call);
  free(c);
}

/* Unlinks a finished call (its final callback has returned) and frees it. */
static void call_release(mim_call *c) {
  mim_transport *t = c->t;
  pthread_mutex_lock(&t->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    t->calls = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (!t->calls)
    pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  call_destroy(c);
}

static void add_metadata(mim_call *c, const char *key, grpc_slice value) {
  grpc_metadata *m = &c->md[c->md_count++];
  memset(m, 0, sizeof *m);
  m->key = grpc_slice_from_static_string(key);
  m->value = value;
}

/* True when a call can be built from these arguments; otherwise records why (every
 * failure is MIM_ERR_INVALID_ARGUMENT). */
static bool valid_call(mim_transport *t, mim_host_kind host, const char *method,
                       const uint8_t *request, size_t request_len) {
  if (!t || !method || method[0] != '/') {
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: transport and a \"/service/method\" "
                                       "path are required");
    return false;
  }
  if ((unsigned)host > MIM_HOST_TOKEN || !t->channels[host]) {
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: no host configured for plane %d", (int)host);
    return false;
  }
  if (!request && request_len) {
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "call: request is NULL");
    return false;
  }
  return true;
}

/* Builds the call object, its grpc_call, metadata and request buffer; NULL with *st
 * set on failure. */
static mim_call *call_new(mim_transport *t, mim_host_kind host, const char *method,
                          const char *cache_name, const uint8_t *request, size_t request_len,
                          int64_t deadline_ms, mim_status *st) {
  mim_call *c = calloc(1, sizeof *c);
  if (!c) {
    *st = mim_fail(MIM_ERR_NO_MEMORY, "call: out of memory");
    return NULL;
  }
  c->t = t;
  c->host = t->hosts[host];
  c->deadline_ms = deadline_ms;
  c->details = grpc_empty_slice();
  grpc_metadata_array_init(&c->initial_md);
  grpc_metadata_array_init(&c->trailing_md);
  grpc_slice req = request_len ? grpc_slice_from_copied_buffer((const char *)request, request_len)
                               : grpc_empty_slice();
  c->send_buf = grpc_raw_byte_buffer_create(&req, 1);
  grpc_slice_unref(req);
  grpc_slice path = grpc_slice_from_copied_string(method);
  c->call = grpc_channel_create_call(t->channels[host], NULL, GRPC_PROPAGATE_DEFAULTS, t->cq, path,
                                     NULL, deadline_after_ms(deadline_ms), NULL);
  grpc_slice_unref(path);
  if (!c->call) {
    call_destroy(c);
    *st = mim_fail(MIM_ERR_INTERNAL, "call: grpc_channel_create_call failed");
    return NULL;
  }
  pthread_mutex_lock(&t->mu);
  add_metadata(c, "authorization", grpc_slice_ref(t->token));
  pthread_mutex_unlock(&t->mu);
  if (cache_name)
    add_metadata(c, "cache", grpc_slice_from_copied_string(cache_name));
  add_metadata(c, "agent", grpc_slice_ref(t->agent));
  add_metadata(c, "runtime-version", grpc_slice_from_static_string(RUNTIME_VERSION));
  *st = MIM_OK;
  return c;
}

/* Registers the call so free can cancel it; fails once shutdown has begun. */
static mim_status call_register(mim_call *c) {
  mim_transport *t = c->t;
  pthread_mutex_lock(&t->mu);
  if (t->shutting_down) {
    pthread_mutex_unlock(&t->mu);
    return mim_fail(MIM_ERR_CANCELLED, "call: transport is shutting down");
  }
  c->next = t->calls;
  if (t->calls)
    t->calls->prev = c;
  t->calls = c;
  pthread_mutex_unlock(&t->mu);
  return MIM_OK;
}

static void set_op(grpc_op *op, grpc_op_type type) {
  memset(op, 0, sizeof *op);
  op->op = type;
}

/* The request half shared by unary and stream batches; returns the op count. */
static size_t fill_send_ops(mim_call *c, grpc_op *ops) {
  set_op(&ops[0], GRPC_OP_SEND_INITIAL_METADATA);
  ops[0].data.send_initial_metadata.count = c->md_count;
  ops[0].data.send_initial_metadata.metadata = c->md;
  set_op(&ops[1], GRPC_OP_SEND_MESSAGE);
  ops[1].data.send_message.send_message = c->send_buf;
  set_op(&ops[2], GRPC_OP_SEND_CLOSE_FROM_CLIENT);
  set_op(&ops[3], GRPC_OP_RECV_INITIAL_METADATA);
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
  return 4;
}

static void fill_status_op(mim_call *c, grpc_op *op) {
  set_op(op, GRPC_OP_RECV_STATUS_ON_CLIENT);
  op->data.recv_status_on_client.trailing_metadata = &c->trailing_md;
  op->data.recv_status_on_client.status = &c->status;
  op->data.recv_status_on_client.status_details = &c->details;
}

/* Starts the first batch of a registered call; on failure unregisters and frees it. */
static mim_status call_start(mim_call *c, grpc_op *ops, size_t n, mim_call **out_call) {
  mim_status st = call_register(c);
  if (st != MIM_OK) {
    call_destroy(c);
    return st;
  }
  c->pending = 1;
  if (out_call)
    *out_call = c;
  /* From the start on, c belongs to the event thread, which may free it at any time. */
  grpc_call *gc = c->call;
  event_tag *tag = &c->main_tag;
  HANDOFF_RELEASE(tag);
  grpc_call_error err = grpc_call_start_batch(gc, ops, n, tag, NULL);
  if (err != GRPC_CALL_OK) {
    if (out_call)
      *out_call = NULL;
    call_release(c);
    return mim_fail(MIM_ERR_INTERNAL, "call: grpc_call_start_batch failed (%d)", (int)err);
  }
  return MIM_OK;
}

mim_status mim_transport_unary(mim_transport *t, mim_host_kind host, const char *method,
                               const char *cache_name, const uint8_t *request, size_t request_len,
                               int64_t deadline_ms, mim_unary_cb cb, void *user,
                               mim_call **out_call) {
  if (!valid_call(t, host, method, request, request_len))
    return MIM_ERR_INVALID_ARGUMENT;
  if (!cb)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "unary: callback is required");
  mim_status st = MIM_OK;
  mim_call *c = call_new(t, host, method, cache_name, request, request_len, deadline_ms, &st);
  if (!c)
    return st;
  c->unary_cb = cb;
  c->unary_user = user;
  c->main_tag = (event_tag){TAG_UNARY, c};
  grpc_op ops[6];
  size_t n = fill_send_ops(c, ops);
  set_op(&ops[n], GRPC_OP_RECV_MESSAGE);
  ops[n++].data.recv_message.recv_message = &c->recv_buf;
  fill_status_op(c, &ops[n++]);
  return call_start(c, ops, n, out_call);
}

/* Gives the whole message as one slice: a reference when it arrived uncompressed in
 * one piece (the common case, no copy), else one contiguous copy. False when it cannot
 * be decompressed. */
static bool read_buffer(grpc_byte_buffer *bb, grpc_slice *out) {
  if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    *out = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    return true;
  }
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return false;
  *out = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  return true;
}

/* By pointer: a small slice keeps its bytes inline, so a by-value copy would dangle. */
static const uint8_t *slice_bytes(const grpc_slice *s) {
  return GRPC_SLICE_LENGTH(*s) ? GRPC_SLICE_START_PTR(*s) : NULL;
}

/* Lets the owner react to a rejected token once, whatever kind of call saw it. */
static void note_status(mim_call *c, mim_status st) {
  if (st == MIM_ERR_UNAUTHENTICATED && c->t->on_unauthenticated)
    c->t->on_unauthenticated(c->t->hook_user);
}

static void on_unary_done(mim_call *c, int success) {
  char detail[DETAIL_LEN];
  mim_status st = mim_status_from_grpc(c->status);
  status_detail(c, st, detail, sizeof detail);
  if (!success && st == MIM_OK) {
    st = MIM_ERR_UNAVAILABLE;
    snprintf(detail, sizeof detail, "call failed without a status");
  }
  grpc_slice s;
  if (st == MIM_OK && c->recv_buf && !read_buffer(c->recv_buf, &s)) {
    st = MIM_ERR_PROTOCOL;
    snprintf(detail, sizeof detail, "cannot decompress the response");
  }
  note_status(c, st);
  if (st == MIM_OK && c->recv_buf) {
    c->unary_cb(c->unary_user, MIM_OK, "", slice_bytes(&s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
  } else {
    c->unary_cb(c->unary_user, st, st == MIM_OK ? "" : detail, NULL, 0);
  }
  call_release(c);
}

/* ---- streams ---- */

static void stream_maybe_close(mim_call *c) {
  if (c->pending > 0 || !c->status_done || !c->recv_done || c->closed)
    return;
  c->closed = true;
  char detail[DETAIL_LEN];
  mim_status st = mim_status_from_grpc(c->status);
  status_detail(c, st, detail, sizeof detail);
  note_status(c, st);
  c->stream_cb.on_close(c->stream_cb.user, st, st == MIM_OK ? "" : detail);
  call_release(c);
}

static void stream_start_recv(mim_call *c) {
  grpc_op op;
  set_op(&op, GRPC_OP_RECV_MESSAGE);
  op.data.recv_message.recv_message = &c->recv_buf;
  if (grpc_call_start_batch(c->call, &op, 1, &c->msg_tag, NULL) == GRPC_CALL_OK) {
    c->pending++;
  } else {
    c->recv_done = true;
    grpc_call_cancel(c->call, NULL);
  }
}

/* The request went out (or failed): start the status receive and the first read. */
static void on_stream_sent(mim_call *c) {
  grpc_op op;
  fill_status_op(c, &op);
  if (grpc_call_start_batch(c->call, &op, 1, &c->status_tag, NULL) == GRPC_CALL_OK) {
    c->pending++;
  } else {
    c->status = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(c->details);
    c->details = grpc_slice_from_static_string("could not start the status receive");
    c->status_done = true;
    grpc_call_cancel(c->call, NULL);
  }
  stream_start_recv(c);
}

static void on_stream_msg(mim_call *c, int success) {
  if (!success || !c->recv_buf) {
    c->recv_done = true; /* end of stream (or failure): the status says which */
    return;
  }
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  grpc_slice s;
  if (!c->stream_cb.on_message) {
    /* nothing to deliver */
  } else if (read_buffer(bb, &s)) {
    c->stream_cb.on_message(c->stream_cb.user, slice_bytes(&s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
  } else {
    mim_log(MIM_LOG_WARN, "transport: dropped a stream message that cannot be decompressed");
  }
  grpc_byte_buffer_destroy(bb);
  stream_start_recv(c);
}

mim_status mim_transport_stream(mim_transport *t, mim_host_kind host, const char *method,
                                const char *cache_name, const uint8_t *request, size_t request_len,
                                int64_t deadline_ms, const mim_stream_callbacks *callbacks,
                                mim_call **out_call) {
  if (!valid_call(t, host, method, request, request_len))
    return MIM_ERR_INVALID_ARGUMENT;
  if (!callbacks || !callbacks->on_close)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "stream: on_close is required");
  mim_status st = MIM_OK;
  mim_call *c = call_new(t, host, method, cache_name, request, request_len, deadline_ms, &st);
  if (!c)
    return st;
  c->is_stream = true;
  c->stream_cb = *callbacks;
  c->main_tag = (event_tag){TAG_STREAM_SENT, c};
  c->status_tag = (event_tag){TAG_STREAM_STATUS, c};
  c->msg_tag = (event_tag){TAG_STREAM_MSG, c};
  grpc_op ops[4];
  size_t n = fill_send_ops(c, ops);
  return call_start(c, ops, n, out_call);
}

void mim_call_cancel(mim_call *c) {
  if (!c)
    return;
  mim_transport *t = c->t;
  /* Holding mu keeps the event thread from freeing the call while we cancel it. */
  pthread_mutex_lock(&t->mu);
  grpc_call_cancel(c->call, NULL);
  pthread_mutex_unlock(&t->mu);
}

/* ---- sync unary ---- */

mim_status mim_transport_unary_sync(mim_transport *t, mim_host_kind host, const char *method,
                                    const char *cache_name, const uint8_t *request,
                                    size_t request_len, int64_t deadline_ms, uint8_t **response,
                                    size_t *response_len) {
  if (!response || !response_len)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "unary_sync: response pointers are required");
  *response = NULL;
  *response_len = 0;
  if (t && on_event_thread(t))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "unary_sync: called from the transport's event thread (would deadlock)");
  mim_sync_result w;
  mim_sync_result_init(&w);
  mim_status st = mim_transport_unary(t, host, method, cache_name, request, request_len,
                                      deadline_ms, mim_sync_result_done, &w, NULL);
  if (st == MIM_OK) {
    pthread_mutex_lock(&w.mu);
    while (!w.done)
      pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    st = mim_sync_result_take(&w, response, response_len);
  }
  mim_sync_result_destroy(&w);
  return st;
}

/* ---- event loop ---- */

static void dispatch(mim_transport *t, event_tag *tag, int success) {
  HANDOFF_ACQUIRE(tag);
  if (tag->kind == TAG_WAKE) {
    pthread_mutex_lock(&t->mu);
    t->wake_pending = false;
    pthread_mutex_unlock(&t->mu);
    return;
  }
  mim_call *c = tag->call;
  c->pending--;
  switch (tag->kind) {
  case TAG_UNARY:
    on_unary_done(c, success);
    return;
  case TAG_STREAM_SENT:
    on_stream_sent(c);
    break;
  case TAG_STREAM_STATUS:
    c->status_done = true;
    break;
  case TAG_STREAM_MSG:
    on_stream_msg(c, success);
    break;
  default:
    break;
  }
  stream_maybe_close(c);
}

static void *event_main(void *arg) {
  mim_transport *t = arg;
  tls_event_transport = t;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(t->cq, next_deadline(t), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(t, ev.tag, ev.success);
    run_due_timers(t);
  }
  return NULL;
}

/* ---- create / free ---- */

static char *read_file(const char *path, bool *ok) {
  *ok = false;
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = malloc(MAX_CA_FILE + 1);
  size_t n = buf ? fread(buf, 1, MAX_CA_FILE + 1, f) : 0;
  bool err = ferror(f) || n == 0 || n > MAX_CA_FILE;
  fclose(f);
  if (!buf || err) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *ok = true;
  return buf;
}

/* The channel credentials for cfg, or NULL with *st set. */
static grpc_channel_credentials *make_credentials(const mim_transport_config *cfg, mim_status *st) {
  *st = MIM_OK;
  if (cfg->plaintext) {
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    if (!creds)
      *st = mim_fail(MIM_ERR_INTERNAL, "cannot create plaintext credentials");
    return creds;
  }
  bool ok;
  char *pem = NULL;
  if (cfg->ca_file) {
    pem = read_file(cfg->ca_file, &ok);
    if (!ok) {
      *st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "cannot read CA file %s", cfg->ca_file);
      return NULL;
    }
  } else {
    pem = read_file(SYSTEM_ROOTS, &ok); /* NULL: gRPC falls back to its own default roots */
  }
  grpc_channel_credentials *creds = grpc_ssl_credentials_create(pem, NULL, NULL, NULL);
  free(pem);
  if (!creds)
    *st = mim_fail(MIM_ERR_INTERNAL, "cannot create TLS credentials");
  return creds;
}

static mim_status create_channels(mim_transport *t, const mim_transport_config *cfg) {
  mim_status st;
  grpc_channel_credentials *creds = make_credentials(cfg, &st);
  if (!creds)
    return st;
  /* Keepalive pings detect a dead connection under a long-lived stream; the client
   * sends nothing after the request there, so pings must not stop for lack of data. */
  grpc_arg args[5];
  args[0] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                       .key = GRPC_ARG_KEEPALIVE_TIME_MS,
                       .value.integer = KEEPALIVE_TIME_MS};
  args[1] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                       .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                       .value.integer = KEEPALIVE_TIMEOUT_MS};
  args[2] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                       .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                       .value.integer = MAX_RECV_MESSAGE};
  args[3] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                       .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                       .value.integer = MAX_RECV_MESSAGE};
  args[4] = (grpc_arg){
      .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, .value.integer = 0};
  grpc_channel_args chargs = {.num_args = 5, .args = args};
  for (int i = 0; i < 3; i++) {
    if (!cfg->hosts[i])
      continue;
    snprintf(t->hosts[i], sizeof t->hosts[i], "%s", cfg->hosts[i]);
    t->channels[i] = grpc_channel_create(cfg->hosts[i], creds, &chargs);
    if (!t->channels[i]) {
      st = mim_fail(MIM_ERR_INTERNAL, "cannot create a channel to %s", cfg->hosts[i]);
      break;
    }
    if (!t->wake_channel)
      t->wake_channel = t->channels[i];
  }
  grpc_channel_credentials_release(creds);
  return st;
}

static void destroy_channels(mim_transport *t) {
  for (int i = 0; i < 3; i++)
    if (t->channels[i])
      grpc_channel_destroy(t->channels[i]);
}

static void transport_destroy(mim_transport *t) {
  destroy_channels(t);
  if (t->cq)
    grpc_completion_queue_destroy(t->cq);
  grpc_slice_unref(t->token);
  grpc_slice_unref(t->agent);
  free(t->heap);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t);
  grpc_shutdown();
}

/* gRPC core writes its own log lines to stderr; a library must not print, so they go to
 * our log callback instead (transient connection errors as warnings). Someone who sets
 * GRPC_VERBOSITY asked for gRPC's own output and keeps it. */
static void forward_grpc_log(gpr_log_func_args *args) {
  mim_log_level level = args->severity == GPR_LOG_SEVERITY_ERROR ? MIM_LOG_WARN : MIM_LOG_DEBUG;
  mim_log(level, "grpc: %s", args->message);
}

static void install_grpc_log(void) {
  if (!getenv("GRPC_VERBOSITY"))
    gpr_set_log_function(forward_grpc_log);
}

/* The token lives in a slice that every call references; its bytes are wiped when the
 * last reference goes (gRPC's own header copies are beyond our reach). */
static void wipe_secret(void *p, size_t len) {
  explicit_bzero(p, len);
  free(p);
}

static bool secret_slice(const char *s, grpc_slice *out) {
  size_t len = strlen(s);
  char *copy = malloc(len ? len : 1);
  if (!copy)
    return false;
  memcpy(copy, s, len); // NOLINT(bugprone-not-null-terminated-result): a slice has a length
  *out = grpc_slice_new_with_len(copy, len, wipe_secret);
  return true;
}

mim_status mim_transport_create(const mim_transport_config *config, mim_transport **out) {
  if (!config || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "transport: config and out are required");
  *out = NULL;
  if (!config->hosts[0] && !config->hosts[1] && !config->hosts[2])
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "transport: no host configured");
  if (config->loop)
    return mim_fail(MIM_ERR_UNIMPLEMENTED,
                    "the gRPC core transport cannot be driven by an application's event loop "
                    "(built with TRANSPORT=grpc)");
  mim_transport *t = calloc(1, sizeof *t);
  if (!t)
    return mim_fail(MIM_ERR_NO_MEMORY, "transport: out of memory");
  static pthread_once_t log_once = PTHREAD_ONCE_INIT;
  pthread_once(&log_once, install_grpc_log);
  grpc_init();
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  bool token_ok = secret_slice(config->auth_token ? config->auth_token : "", &t->token);
  if (!token_ok)
    t->token = grpc_empty_slice();
  t->agent = grpc_slice_from_copied_string(config->agent ? config->agent : DEFAULT_AGENT);
  t->on_unauthenticated = config->on_unauthenticated;
  t->hook_user = config->hook_user;
  t->wake_tag = (event_tag){TAG_WAKE, NULL};
  t->loop_deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
  t->cq = grpc_completion_queue_create_for_next(NULL);
  mim_status st = !token_ok ? mim_fail(MIM_ERR_NO_MEMORY, "transport: out of memory")
                  : t->cq   ? create_channels(t, config)
                            : mim_fail(MIM_ERR_INTERNAL, "cannot create a completion queue");
  if (st == MIM_OK && pthread_create(&t->thread, NULL, event_main, t) != 0)
    st = mim_fail(MIM_ERR_INTERNAL, "cannot start the transport thread");
  if (st != MIM_OK) {
    if (t->cq) {
      grpc_completion_queue_shutdown(t->cq);
      while (grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
             GRPC_QUEUE_SHUTDOWN) {
      }
    }
    transport_destroy(t);
    return st;
  }
  *out = t;
  return MIM_OK;
}

void mim_transport_free(mim_transport *t) {
  if (!t)
    return;
  if (on_event_thread(t)) {
    mim_log(MIM_LOG_ERROR, "mim_transport_free called from a transport callback; ignored");
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->shutting_down = true;
  for (mim_call *c = t->calls; c; c = c->next)
    grpc_call_cancel(c->call, NULL);
  /* Callbacks of cancelled calls still run on the event thread; wait for all of them.
   * Pending timers stay valid meanwhile (those callbacks may still cancel them). */
  while (t->calls || t->running_timer)
    pthread_cond_wait(&t->cv, &t->mu);
  while (t->heap_len) { /* pending timers never run; taken from the end, no sifting */
    mim_timer *tm = t->heap[--t->heap_len];
    tm->state = TIMER_DONE;
    timer_unref_locked(tm);
  }
  pthread_mutex_unlock(&t->mu);
  /* Nothing new can be queued now; the loop drains the queue (wakes included) and exits. */
  grpc_completion_queue_shutdown(t->cq);
  pthread_join(t->thread, NULL);
  transport_destroy(t);
}

mim_status mim_transport_set_auth_token(mim_transport *t, const char *auth_token) {
  if (!t || !auth_token)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "set_auth_token: transport and token required");
  grpc_slice fresh;
  if (!secret_slice(auth_token, &fresh))
    return mim_fail(MIM_ERR_NO_MEMORY, "set_auth_token: out of memory");
  pthread_mutex_lock(&t->mu);
  grpc_slice old = t->token;
  t->token = fresh;
  pthread_mutex_unlock(&t->mu);
  grpc_slice_unref(old);
  return MIM_OK;
}

/* gRPC core exposes no descriptors: loop mode is refused at create, so these never
 * have work to do. */
void mim_transport_loop_fd_ready(mim_transport *t, int fd, unsigned events) {
  (void)t;
  (void)fd;
  (void)events;
}

void mim_transport_loop_timeout(mim_transport *t) {
  (void)t;
}

bool mim_transport_must_drive(const mim_transport *t) {
  (void)t;
  return false;
}

bool mim_transport_run_until(mim_transport *t, bool (*done)(void *arg), void *arg,
                             int64_t deadline_ms) {
  (void)t;
  (void)deadline_ms;
  return done(arg);
}
