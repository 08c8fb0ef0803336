/* mim-local: gRPC core server plumbing. Every completion-queue tag is a srv_tag whose
 * callback knows what finished; each outstanding batch and each owner holds one
 * reference on its srv_call, so a call is freed when the last of them lets go. */
#include "rpc.h"

#include "accept.h"
#include "clock.h"
#include "tsan_handoff.h" /* a call handed to the event/cq thread via gRPC */
#include "util.h"

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CQ_THREADS 8
#define MAX_HOT_METHODS 16
#define GENERIC_REQUESTS 4 /* outstanding generic requests */
#define HOT_REQUESTS 2     /* outstanding requests per registered (hot) method */

typedef struct srv_tag {
  void (*fn)(struct srv_tag *tag, bool ok);
} srv_tag;

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct srv_rpc {
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t threads[MAX_CQ_THREADS];
  int nthreads;
  srv_dispatch_fn dispatch;
  void *app;
  const char *const *hot_methods; /* from srv_rpc_config; NULL-terminated or NULL */
  atomic_bool stopping;
  srv_tag shutdown_tag;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool shutdown_done;
  /* Batches may only start while the CQ is open: start_batch holds this shared and
   * checks cq_closed; srv_rpc_stop sets cq_closed under it exclusively. */
  pthread_rwlock_t batch_lock;
  bool cq_closed;
  void *hot[MAX_HOT_METHODS]; /* grpc_server_register_method handles of hot_methods */
  size_t nhot;
  srv_acceptor *acceptor; /* plaintext: our accept loop (NULL under TLS: gRPC's) */
};

typedef struct qitem {
  grpc_slice msg;
  uint64_t tag;
} qitem;

struct srv_call {
  srv_rpc *rpc;
  grpc_call *call;
  int hot;                   /* index in hot_methods, or -1 for a generic call */
  gpr_timespec hot_deadline; /* filled by grpc_server_request_registered_call; unused */
  grpc_call_details details; /* generic calls only */
  grpc_metadata_array md;
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *write_buf; /* the one SEND_MESSAGE in flight on a stream */
  grpc_byte_buffer *final_buf; /* the unary response in flight */
  int cancelled;
  atomic_int refs;
  srv_tag new_tag, recv_tag, close_tag, write_tag, status_tag;
  pthread_mutex_t mu;
  bool md_sent, writing, finishing, status_started, closed, broken;
  grpc_status_code code;
  char *msg;
  const char *err;         /* static cause for the `err` trailer (NULL: none) */
  grpc_metadata err_md[1]; /* the trailer itself, alive while the status batch runs */
  qitem *q;                /* ring buffer of queued messages */
  size_t qhead, qlen, qcap;
  size_t qbytes; /* payload bytes queued */
  void (*on_close)(void *user);
  void *on_close_user;
};

static void post_request(srv_rpc *rpc, int hot);

/* ---- call lifetime ---- */

void srv_call_ref(srv_call *c) {
  atomic_fetch_add(&c->refs, 1);
}

static void drop_queue_locked(srv_call *c) {
  for (size_t i = 0; i < c->qlen; i++) {
    grpc_slice_unref(c->q[(c->qhead + i) % c->qcap].msg);
  }
  c->qhead = 0;
  c->qlen = 0;
  c->qbytes = 0;
}

void srv_call_unref(srv_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) {
    return;
  }
  drop_queue_locked(c);
  free(c->q);
  free(c->msg);
  if (c->recv_buf) {
    grpc_byte_buffer_destroy(c->recv_buf);
  }
  if (c->call) {
    grpc_call_unref(c->call);
  }
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->md);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Starts a batch holding one reference for its completion; false on failure. */
static bool start_batch(srv_call *c, const grpc_op *ops, size_t n, srv_tag *tag) {
  srv_call_ref(c);
  pthread_rwlock_rdlock(&c->rpc->batch_lock);
  HANDOFF_RELEASE(tag);
  grpc_call_error err = c->rpc->cq_closed ? GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN
                                          : grpc_call_start_batch(c->call, ops, n, tag, NULL);
  pthread_rwlock_unlock(&c->rpc->batch_lock);
  if (err == GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN) {
    atomic_fetch_sub(&c->refs, 1); /* stopping: the call is being cancelled anyway */
    return false;
  }
  if (err != GRPC_CALL_OK) {
    srv_log(LOG_ERROR, "grpc_call_start_batch failed (%d)", (int)err);
    atomic_fetch_sub(&c->refs, 1); /* never the last: the caller holds one */
    return false;
  }
  return true;
}

const char *srv_call_meta(const srv_call *c, const char *key, size_t *len) {
  for (size_t i = 0; i < c->md.count; i++) {
    const grpc_metadata *m = &c->md.metadata[i];
    if (grpc_slice_str_cmp(m->key, key) == 0) {
      *len = GRPC_SLICE_LENGTH(m->value);
      return (const char *)GRPC_SLICE_START_PTR(m->value);
    }
  }
  return NULL;
}

grpc_slice srv_pack_slice(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  grpc_slice s = grpc_slice_malloc(len);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
  return s;
}

/* ---- final status ---- */

static void on_status_done(srv_tag *tag, bool ok) {
  (void)ok;
  srv_call *c = CONTAINER(tag, srv_call, status_tag);
  if (c->final_buf) {
    grpc_byte_buffer_destroy(c->final_buf);
    c->final_buf = NULL;
  }
  srv_call_unref(c);
}

/* Sends initial metadata (if not yet), an optional last message and the status. */
static void start_status_locked(srv_call *c, grpc_byte_buffer *last) {
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  c->status_started = true;
  if (!c->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
  }
  if (last) {
    c->final_buf = last;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = last;
  }
  grpc_slice details = grpc_slice_from_copied_string(c->msg ? c->msg : "");
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = c->code;
  if (c->err) {
    /* Hosted Momento names a limit's cause in an `err` trailer; the SDKs read it. */
    c->err_md[0].key = grpc_slice_from_static_string("err");
    c->err_md[0].value = grpc_slice_from_static_string(c->err);
    ops[n].data.send_status_from_server.trailing_metadata_count = 1;
    ops[n].data.send_status_from_server.trailing_metadata = c->err_md;
  }
  ops[n++].data.send_status_from_server.status_details = &details;
  if (!start_batch(c, ops, n, &c->status_tag) && last) {
    grpc_byte_buffer_destroy(last);
    c->final_buf = NULL;
  }
  grpc_slice_unref(details);
}

void srv_call_reply(srv_call *c, const ProtobufCMessage *msg) {
  grpc_slice s = srv_pack_slice(msg);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  pthread_mutex_lock(&c->mu);
  if (c->finishing) {
    pthread_mutex_unlock(&c->mu);
    grpc_byte_buffer_destroy(bb);
    return;
  }
  c->finishing = true;
  c->code = GRPC_STATUS_OK;
  start_status_locked(c, bb);
  pthread_mutex_unlock(&c->mu);
}

static void finish_with(srv_call *c, grpc_status_code code, const char *err, const char *msg,
                        bool drop);

void srv_call_fail(srv_call *c, grpc_status_code code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  srv_log(LOG_DEBUG, "call failed: status %d: %s", (int)code, buf);
  finish_with(c, code, NULL, buf, true);
}

void srv_call_fail_limit(srv_call *c, const char *err, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  srv_log(LOG_DEBUG, "call refused: %s: %s", err, buf);
  finish_with(c, GRPC_STATUS_RESOURCE_EXHAUSTED, err, buf, true);
}

/* ---- streams ---- */

bool srv_stream_on_close(srv_call *c, void (*fn)(void *user), void *user) {
  pthread_mutex_lock(&c->mu);
  bool open = !c->closed;
  if (open) {
    c->on_close = fn;
    c->on_close_user = user;
  }
  pthread_mutex_unlock(&c->mu);
  return open;
}

static void on_write_done(srv_tag *tag, bool ok);

static void start_write_locked(srv_call *c) {
  qitem it = c->q[c->qhead];
  c->qhead = (c->qhead + 1) % c->qcap;
  c->qlen--;
  c->qbytes -= GRPC_SLICE_LENGTH(it.msg);
  c->write_buf = grpc_raw_byte_buffer_create(&it.msg, 1);
  grpc_slice_unref(it.msg);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!c->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
  }
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = c->write_buf;
  c->writing = true;
  if (!start_batch(c, ops, n, &c->write_tag)) {
    c->writing = false;
    c->broken = true;
    grpc_byte_buffer_destroy(c->write_buf);
    c->write_buf = NULL;
    drop_queue_locked(c);
  }
}

static void on_write_done(srv_tag *tag, bool ok) {
  srv_call *c = CONTAINER(tag, srv_call, write_tag);
  pthread_mutex_lock(&c->mu);
  grpc_byte_buffer_destroy(c->write_buf);
  c->write_buf = NULL;
  c->writing = false;
  if (!ok) {
    c->broken = true; /* the client went away; the close callback will follow */
    drop_queue_locked(c);
  }
  if (c->qlen > 0) {
    start_write_locked(c);
  } else if (c->finishing && !c->status_started && !c->broken) {
    start_status_locked(c, NULL);
  }
  pthread_mutex_unlock(&c->mu);
  srv_call_unref(c);
}

static bool queue_push_locked(srv_call *c, grpc_slice msg, uint64_t tag) {
  if (c->qlen == c->qcap) {
    size_t ncap = c->qcap ? c->qcap * 2 : 8;
    qitem *nq = malloc(ncap * sizeof *nq);
    if (!nq) {
      return false;
    }
    for (size_t i = 0; i < c->qlen; i++) {
      nq[i] = c->q[(c->qhead + i) % c->qcap];
    }
    free(c->q);
    c->q = nq;
    c->qcap = ncap;
    c->qhead = 0;
  }
  c->q[(c->qhead + c->qlen) % c->qcap] = (qitem){grpc_slice_ref(msg), tag};
  c->qlen++;
  c->qbytes += GRPC_SLICE_LENGTH(msg);
  return true;
}

bool srv_stream_send(srv_call *c, grpc_slice msg, uint64_t tag) {
  pthread_mutex_lock(&c->mu);
  bool ok = !c->finishing && !c->broken && !c->closed && queue_push_locked(c, msg, tag);
  if (ok && !c->writing) {
    start_write_locked(c);
  }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

bool srv_stream_enqueue(srv_call *c, grpc_slice msg, uint64_t tag, bool *need_kick) {
  pthread_mutex_lock(&c->mu);
  bool ok = !c->finishing && !c->broken && !c->closed && queue_push_locked(c, msg, tag);
  *need_kick = ok && !c->writing;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

void srv_stream_kick(srv_call *c) {
  pthread_mutex_lock(&c->mu);
  if (!c->writing && c->qlen > 0) {
    start_write_locked(c);
  }
  pthread_mutex_unlock(&c->mu);
}

size_t srv_stream_pending(srv_call *c, size_t *bytes) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->qlen;
  *bytes = c->qbytes;
  pthread_mutex_unlock(&c->mu);
  return n;
}

uint64_t srv_stream_drop_pending(srv_call *c) {
  pthread_mutex_lock(&c->mu);
  uint64_t first = 0;
  for (size_t i = 0; i < c->qlen && first == 0; i++) {
    first = c->q[(c->qhead + i) % c->qcap].tag;
  }
  drop_queue_locked(c);
  pthread_mutex_unlock(&c->mu);
  return first;
}

void srv_stream_finish(srv_call *c, grpc_status_code code, const char *msg, bool drop) {
  finish_with(c, code, NULL, msg, drop);
}

static void finish_with(srv_call *c, grpc_status_code code, const char *err, const char *msg,
                        bool drop) {
  pthread_mutex_lock(&c->mu);
  if (!c->finishing) {
    c->finishing = true;
    c->code = code;
    c->err = err;
    c->msg = msg ? strdup(msg) : NULL;
    if (drop) {
      drop_queue_locked(c);
    }
    if (!c->writing) {
      start_status_locked(c, NULL);
    }
  }
  pthread_mutex_unlock(&c->mu);
}

/* ---- incoming calls ---- */

static void on_close_done(srv_tag *tag, bool ok) {
  (void)ok;
  srv_call *c = CONTAINER(tag, srv_call, close_tag);
  pthread_mutex_lock(&c->mu);
  c->closed = true;
  void (*fn)(void *) = c->on_close;
  void *user = c->on_close_user;
  c->on_close = NULL;
  pthread_mutex_unlock(&c->mu);
  if (c->cancelled) {
    srv_log(LOG_DEBUG, "call cancelled by the client or the transport");
  }
  if (fn) {
    fn(user);
  }
  srv_call_unref(c);
}

/* Hands the request (c->recv_buf) to the service; ok = false when it never arrived. */
static void handle_request(srv_call *c, const char *method, bool ok) {
  if (!ok) {
    srv_log(LOG_DEBUG, "%s: request not received", method);
  } else if (!c->recv_buf) {
    srv_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing");
  } else {
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, c->recv_buf)) {
      srv_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request message unreadable");
    } else {
      grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
      grpc_byte_buffer_reader_destroy(&reader);
      srv_log(LOG_DEBUG, "call %s (%zu bytes)", method, GRPC_SLICE_LENGTH(all));
      c->rpc->dispatch(c->rpc->app, c, method, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
      grpc_slice_unref(all);
    }
  }
}

static void on_recv_done(srv_tag *tag, bool ok) {
  srv_call *c = CONTAINER(tag, srv_call, recv_tag);
  if (c->hot >= 0) { /* registered: gRPC fills no call details */
    handle_request(c, c->rpc->hot_methods[c->hot], ok);
    srv_call_unref(c);
    return;
  }
  char method[256];
  size_t mlen = GRPC_SLICE_LENGTH(c->details.method);
  if (mlen >= sizeof method) {
    mlen = sizeof method - 1;
  }
  memcpy(method, GRPC_SLICE_START_PTR(c->details.method), mlen);
  method[mlen] = '\0';
  handle_request(c, method, ok);
  srv_call_unref(c);
}

static void start_call(srv_call *c) {
  grpc_op close_op;
  memset(&close_op, 0, sizeof close_op);
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (!start_batch(c, &close_op, 1, &c->close_tag)) {
    return;
  }
  grpc_op recv_op;
  memset(&recv_op, 0, sizeof recv_op);
  recv_op.op = GRPC_OP_RECV_MESSAGE;
  recv_op.data.recv_message.recv_message = &c->recv_buf;
  start_batch(c, &recv_op, 1, &c->recv_tag);
}

static void on_new_call(srv_tag *tag, bool ok) {
  srv_call *c = CONTAINER(tag, srv_call, new_tag);
  srv_rpc *rpc = c->rpc;
  if (ok && !atomic_load(&rpc->stopping)) {
    post_request(rpc, c->hot);
  }
  if (ok) {
    start_call(c);
  }
  srv_call_unref(c); /* the request's own reference */
}

/* Asks for the next call: of hot method number hot (its request message read with it),
 * or any other (hot = -1). */
static void post_request(srv_rpc *rpc, int hot) {
  srv_call *c = calloc(1, sizeof *c);
  if (!c) {
    srv_log(LOG_ERROR, "out of memory accepting a call");
    return;
  }
  c->rpc = rpc;
  c->hot = hot;
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->mu, NULL);
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->md);
  c->new_tag.fn = on_new_call;
  c->recv_tag.fn = on_recv_done;
  c->close_tag.fn = on_close_done;
  c->write_tag.fn = on_write_done;
  c->status_tag.fn = on_status_done;
  HANDOFF_RELEASE(&c->new_tag);
  grpc_call_error err = hot >= 0 ? grpc_server_request_registered_call(
                                       rpc->server, rpc->hot[hot], &c->call, &c->hot_deadline,
                                       &c->md, NULL, rpc->cq, rpc->cq, &c->new_tag)
                                 : grpc_server_request_call(rpc->server, &c->call, &c->details,
                                                            &c->md, rpc->cq, rpc->cq, &c->new_tag);
  if (err != GRPC_CALL_OK) {
    srv_log(LOG_ERROR, "grpc_server_request_call failed (%d)", (int)err);
    srv_call_unref(c);
  }
}

/* ---- server ---- */

static void *cq_thread(void *arg) {
  srv_rpc *rpc = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(rpc->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) {
      return NULL;
    }
    if (ev.type == GRPC_OP_COMPLETE) {
      srv_tag *tag = ev.tag;
      HANDOFF_ACQUIRE(tag);
      tag->fn(tag, ev.success != 0);
    }
  }
}

static void on_shutdown_done(srv_tag *tag, bool ok) {
  (void)ok;
  srv_rpc *rpc = CONTAINER(tag, srv_rpc, shutdown_tag);
  pthread_mutex_lock(&rpc->mu);
  rpc->shutdown_done = true;
  pthread_cond_broadcast(&rpc->cv);
  pthread_mutex_unlock(&rpc->mu);
}

static grpc_arg int_arg(char *key, int value) {
  grpc_arg a;
  memset(&a, 0, sizeof a);
  a.type = GRPC_ARG_INTEGER;
  a.key = key;
  a.value.integer = value;
  return a;
}

static grpc_arg quota_arg(char *key, grpc_resource_quota *quota) {
  grpc_arg a;
  memset(&a, 0, sizeof a);
  a.type = GRPC_ARG_POINTER;
  a.key = key;
  a.value.pointer.p = quota;
  a.value.pointer.vtable = grpc_resource_quota_arg_vtable();
  return a;
}

static grpc_server *create_server(const srv_rpc_config *cfg) {
  grpc_arg args[10];
  size_t n = 0;
  char k_max[] = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  char k_ping[] = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
  char k_strikes[] = GRPC_ARG_HTTP2_MAX_PING_STRIKES;
  char k_permit[] = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
  char k_reuse[] = GRPC_ARG_ALLOW_REUSEPORT;
  char k_algos[] = GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET;
  char k_streams[] = GRPC_ARG_MAX_CONCURRENT_STREAMS;
  char k_quota[] = GRPC_ARG_RESOURCE_QUOTA;
  char k_age[] = GRPC_ARG_MAX_CONNECTION_AGE_MS;
  char k_grace[] = GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS;
  args[n++] = int_arg(k_max, (int)cfg->max_receive_bytes);
  /* Clients (the official SDKs) send keepalive pings often; tolerate them. */
  args[n++] = int_arg(k_ping, 1000);
  args[n++] = int_arg(k_strikes, 0);
  args[n++] = int_arg(k_permit, 1);
  /* Without this a second server on a busy port would silently share it. */
  args[n++] = int_arg(k_reuse, 0);
  /* Identity only: gRPC core 1.51 inflates a compressed message completely before it
   * checks its size (1 MB of gzip became 1 GiB). Momento's clients never compress
   * requests; any other grpc-encoding is refused (UNIMPLEMENTED) as the call starts. */
  args[n++] = int_arg(k_algos, 1 << GRPC_COMPRESS_NONE);
  if (cfg->max_streams_per_connection > 0) {
    args[n++] = int_arg(k_streams, cfg->max_streams_per_connection);
  }
  if (cfg->max_connection_age_ms > 0) {
    args[n++] = int_arg(k_age, cfg->max_connection_age_ms);
    args[n++] = int_arg(k_grace, 1000);
  }
  grpc_resource_quota *quota = NULL;
  if (cfg->memory_quota_bytes > 0) {
    quota = grpc_resource_quota_create("mim-local");
    grpc_resource_quota_resize(quota, cfg->memory_quota_bytes);
    args[n++] = quota_arg(k_quota, quota);
  }
  grpc_channel_args ca = {n, args};
  grpc_server *server = grpc_server_create(&ca, NULL);
  if (quota) {
    grpc_resource_quota_unref(quota); /* the server holds its own reference */
  }
  return server;
}

static grpc_server_credentials *make_creds(const srv_rpc_config *cfg) {
  if (cfg->tls_cert_pem && cfg->tls_key_pem) {
    grpc_ssl_pem_key_cert_pair pair = {cfg->tls_key_pem, cfg->tls_cert_pem};
    return grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
  }
  return grpc_insecure_server_credentials_create();
}

/* Plaintext connections come through our own accept loop (accept.h: gRPC core 1.51
 * stops accepting for good at the first EMFILE); TLS ones through gRPC's listener,
 * since gRPC takes a connected descriptor only for plaintext. */
static int bind_port(srv_rpc *rpc, const srv_rpc_config *cfg) {
  if (!cfg->tls_cert_pem || !cfg->tls_key_pem) {
    int port = 0;
    rpc->acceptor = srv_acceptor_bind(cfg->host, cfg->port, &port);
    return rpc->acceptor ? port : 0;
  }
  char addr[300];
  bool v6 = strchr(cfg->host, ':') != NULL;
  snprintf(addr, sizeof addr, v6 ? "[%s]:%d" : "%s:%d", cfg->host, cfg->port);
  grpc_server_credentials *creds = make_creds(cfg);
  if (!creds) {
    srv_log(LOG_ERROR, "could not create server credentials");
    return 0;
  }
  int port = grpc_server_add_http2_port(rpc->server, addr, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    srv_log(LOG_ERROR, "could not bind %s", addr);
  }
  return port;
}

/*
 * gRPC core locks Abseil mutexes on every call, and Abseil built without NDEBUG (as
 * Debian ships it) checks lock order for deadlock cycles on each lock:
 * GraphCycles::GetId alone was 3.5-4.2 % of mim-local's CPU samples (perf, bench_mim
 * --only tput). Release builds of Abseil have it off. Its switch is a C++ function, so
 * it is looked up by its mangled name for the known inline namespaces; when none is
 * found (another Abseil) nothing changes. A library must not flip this for its host
 * process, but mim-local is its own process.
 */
/*
 * The busiest methods are registered, so gRPC matches their calls against requests
 * waiting for that method instead of one shared queue; the request message is then
 * read with a receive batch as on the generic path. Not with
 * GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER (the message read with the call, one
 * completion less): in gRPC core 1.51 every stream of such a method that the client
 * resets before its message arrived stays allocated (~12 KB each): 100,000
 * HEADERS + RST_STREAM pairs grew RSS by 1.2 GB for good and stalled Ping for 10 s.
 */
static void register_hot_methods(srv_rpc *rpc) {
  const char *const *names = rpc->hot_methods;
  for (size_t i = 0; names && names[i] && rpc->nhot < MAX_HOT_METHODS; i++) {
    void *h = grpc_server_register_method(rpc->server, names[i], NULL, GRPC_SRM_PAYLOAD_NONE, 0);
    if (!h) {
      srv_log(LOG_WARN, "cannot register %s; it takes the generic path", names[i]);
      break; /* indexes must match hot_methods: stop at the first failure */
    }
    rpc->hot[rpc->nhot++] = h;
  }
}

static void absl_deadlock_detection_off(void) {
  static const char *const names[] = {
      "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
      "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
      "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *sym = dlsym(RTLD_DEFAULT, names[i]);
    if (sym) {
      void (*set_mode)(int) = NULL;
      memcpy(&set_mode, &sym, sizeof set_mode); /* object pointer -> function pointer */
      set_mode(0);                              /* absl::OnDeadlockCycle::kIgnore */
      srv_log(LOG_DEBUG, "Abseil mutex deadlock detection off");
      return;
    }
  }
}

srv_rpc *srv_rpc_start(const srv_rpc_config *cfg, int *bound_port) {
  absl_deadlock_detection_off();
  srv_rpc *rpc = calloc(1, sizeof *rpc);
  if (!rpc) {
    return NULL;
  }
  rpc->dispatch = cfg->dispatch;
  rpc->app = cfg->app;
  rpc->hot_methods = cfg->hot_methods;
  rpc->shutdown_tag.fn = on_shutdown_done;
  pthread_mutex_init(&rpc->mu, NULL);
  cmn_cond_init_monotonic(&rpc->cv); /* wait_shutdown waits on it with a deadline */
  pthread_rwlock_init(&rpc->batch_lock, NULL);
  rpc->cq = grpc_completion_queue_create_for_next(NULL);
  rpc->server = create_server(cfg);
  grpc_server_register_completion_queue(rpc->server, rpc->cq, NULL);
  register_hot_methods(rpc);
  *bound_port = bind_port(rpc, cfg);
  if (*bound_port == 0) {
    srv_acceptor_stop(rpc->acceptor);
    grpc_server_destroy(rpc->server);
    rpc->server = NULL;
    grpc_completion_queue_shutdown(rpc->cq);
    while (grpc_completion_queue_next(rpc->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(rpc->cq);
    pthread_mutex_destroy(&rpc->mu);
    pthread_cond_destroy(&rpc->cv);
    pthread_rwlock_destroy(&rpc->batch_lock);
    free(rpc);
    return NULL;
  }
  grpc_server_start(rpc->server);
  /* A few outstanding requests so bursts of new calls do not wait on one another. */
  for (int i = 0; i < GENERIC_REQUESTS; i++) {
    post_request(rpc, -1);
  }
  for (size_t m = 0; m < rpc->nhot; m++) {
    for (int i = 0; i < HOT_REQUESTS; i++) {
      post_request(rpc, (int)m);
    }
  }
  int n = cfg->cq_threads > 0 && cfg->cq_threads <= MAX_CQ_THREADS ? cfg->cq_threads : 2;
  for (int i = 0; i < n; i++) {
    if (pthread_create(&rpc->threads[i], NULL, cq_thread, rpc) == 0) {
      rpc->nthreads++;
    }
  }
  if (rpc->acceptor && !srv_acceptor_run(rpc->acceptor, rpc->server)) {
    srv_rpc_stop(rpc, 0);
    return NULL;
  }
  return rpc;
}

static bool wait_shutdown(srv_rpc *rpc, int ms) {
  struct timespec ts = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&rpc->mu);
  while (!rpc->shutdown_done) {
    if (pthread_cond_timedwait(&rpc->cv, &rpc->mu, &ts) != 0) {
      break;
    }
  }
  bool done = rpc->shutdown_done;
  pthread_mutex_unlock(&rpc->mu);
  return done;
}

void srv_rpc_stop(srv_rpc *rpc, int grace_ms) {
  if (!rpc) {
    return;
  }
  atomic_store(&rpc->stopping, true);
  srv_acceptor_stop(rpc->acceptor); /* no connection may arrive during the shutdown */
  rpc->acceptor = NULL;
  grpc_server_shutdown_and_notify(rpc->server, rpc->cq, &rpc->shutdown_tag);
  if (!wait_shutdown(rpc, grace_ms)) {
    srv_log(LOG_WARN, "calls still open after %d ms; cancelling them", grace_ms);
    grpc_server_cancel_all_calls(rpc->server);
    wait_shutdown(rpc, 60000);
  }
  /* Calls may outlive the server shutdown (owners still hold them); from here on no
   * batch may start, since a batch on a shut-down CQ aborts inside gRPC. */
  grpc_server_cancel_all_calls(rpc->server);
  pthread_rwlock_wrlock(&rpc->batch_lock);
  rpc->cq_closed = true;
  pthread_rwlock_unlock(&rpc->batch_lock);
  grpc_completion_queue_shutdown(rpc->cq);
  for (int i = 0; i < rpc->nthreads; i++) {
    pthread_join(rpc->threads[i], NULL);
  }
  grpc_server_destroy(rpc->server);
  grpc_completion_queue_destroy(rpc->cq);
  pthread_mutex_destroy(&rpc->mu);
  pthread_cond_destroy(&rpc->cv);
  pthread_rwlock_destroy(&rpc->batch_lock);
  free(rpc);
}
