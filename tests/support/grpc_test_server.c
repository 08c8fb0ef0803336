/* In-process gRPC core test server (see grpc_test_server.h). */
#include "grpc_test_server.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_MD 16
#define MD_LEN 256
#define METHOD_LEN 128
#define MAX_PUBLISHES 64

typedef enum srv_tag_kind { T_NEW, T_READ, T_SEND, T_FINISH, T_CLOSE, T_SHUTDOWN } srv_tag_kind;

typedef struct srv_call srv_call;

typedef struct srv_tag {
  srv_tag_kind kind;
  srv_call *call;
} srv_tag;

struct srv_call {
  grpc_test_server *s;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_byte_buffer *req;
  grpc_byte_buffer *send_buf;
  grpc_slice status_detail;
  int recv_cancelled;
  int pending;
  char method[METHOD_LEN];
  long stream_total, stream_sent;
  bool sent_initial;
  /* /test.Fail/Err and /test.Stream/FailErr: the "err" trailing metadata entry, and the
   * status the stream ends with after its one message */
  grpc_metadata trailer;
  bool has_trailer, fail_after_send;
  grpc_status_code fail_code;
  char fail_message[256];
  srv_tag new_tag, read_tag, send_tag, finish_tag, close_tag;
};

typedef struct md_entry {
  char key[MD_LEN];
  char value[MD_LEN];
} md_entry;

struct grpc_test_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t thread;
  int port;
  char address[64];
  srv_tag shutdown_tag;
  bool shutdown_seen; /* server thread only */
  int live;           /* srv_call objects alive; server thread only */

  pthread_mutex_t mu; /* guards what follows */
  md_entry md[MAX_MD];
  int md_count;
  char method[METHOD_LEN];
  int calls, finished;
  int64_t publish_ms[MAX_PUBLISHES]; /* when each "refuse:" Publish arrived */
  int publishes;
};

static void slice_to_buf(grpc_slice s, char *buf, size_t cap) {
  size_t n = GRPC_SLICE_LENGTH(s);
  if (n >= cap)
    n = cap - 1;
  memcpy(buf, GRPC_SLICE_START_PTR(s), n);
  buf[n] = '\0';
}

static void op_init(grpc_op *op, grpc_op_type type) {
  memset(op, 0, sizeof *op);
  op->op = type;
}

static void request_next(grpc_test_server *s);

static void call_free(srv_call *c) {
  grpc_test_server *s = c->s;
  if (c->call) {
    pthread_mutex_lock(&s->mu);
    s->finished++;
    pthread_mutex_unlock(&s->mu);
    grpc_call_unref(c->call);
  }
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->md);
  if (c->req)
    grpc_byte_buffer_destroy(c->req);
  if (c->send_buf)
    grpc_byte_buffer_destroy(c->send_buf);
  grpc_slice_unref(c->status_detail);
  if (c->has_trailer) {
    grpc_slice_unref(c->trailer.key);
    grpc_slice_unref(c->trailer.value);
  }
  free(c);
  s->live--;
}

static void record_call(grpc_test_server *s, srv_call *c) {
  slice_to_buf(c->details.method, c->method, sizeof c->method);
  pthread_mutex_lock(&s->mu);
  s->calls++;
  snprintf(s->method, sizeof s->method, "%s", c->method);
  s->md_count = 0;
  for (size_t i = 0; i < c->md.count && s->md_count < MAX_MD; i++) {
    md_entry *e = &s->md[s->md_count++];
    slice_to_buf(c->md.metadata[i].key, e->key, sizeof e->key);
    slice_to_buf(c->md.metadata[i].value, e->value, sizeof e->value);
  }
  pthread_mutex_unlock(&s->mu);
}

/* Request text as a NUL-terminated string (truncated). */
static void request_text(srv_call *c, char *buf, size_t cap) {
  buf[0] = '\0';
  if (!c->req)
    return;
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, c->req))
    return;
  grpc_slice all = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  slice_to_buf(all, buf, cap);
  grpc_slice_unref(all);
}

static grpc_byte_buffer *buffer_from(const char *bytes, size_t len) {
  grpc_slice s = grpc_slice_from_copied_buffer(bytes, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

static void start(srv_call *c, grpc_op *ops, size_t n, srv_tag *tag) {
  if (grpc_call_start_batch(c->call, ops, n, tag, NULL) == GRPC_CALL_OK)
    c->pending++;
  else
    fprintf(stderr, "test server: start_batch failed\n");
}

/* Sends [initial metadata] [+ message] + status, ending the call. */
static void finish(srv_call *c, grpc_byte_buffer *msg, grpc_status_code code, const char *detail) {
  grpc_op ops[3];
  size_t n = 0;
  if (!c->sent_initial) {
    op_init(&ops[n++], GRPC_OP_SEND_INITIAL_METADATA);
    c->sent_initial = true;
  }
  if (msg) {
    c->send_buf = msg;
    op_init(&ops[n], GRPC_OP_SEND_MESSAGE);
    ops[n++].data.send_message.send_message = msg;
  }
  grpc_slice_unref(c->status_detail);
  c->status_detail = grpc_slice_from_copied_string(detail ? detail : "");
  op_init(&ops[n], GRPC_OP_SEND_STATUS_FROM_SERVER);
  ops[n].data.send_status_from_server.status = code;
  if (c->has_trailer) {
    ops[n].data.send_status_from_server.trailing_metadata_count = 1;
    ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
  }
  ops[n++].data.send_status_from_server.status_details = &c->status_detail;
  start(c, ops, n, &c->finish_tag);
}

/* Sends one message (with initial metadata the first time). */
static void send_bytes(srv_call *c, const char *bytes, size_t len) {
  grpc_op ops[2];
  size_t n = 0;
  if (!c->sent_initial) {
    op_init(&ops[n++], GRPC_OP_SEND_INITIAL_METADATA);
    c->sent_initial = true;
  }
  if (c->send_buf)
    grpc_byte_buffer_destroy(c->send_buf);
  c->send_buf = buffer_from(bytes, len);
  op_init(&ops[n], GRPC_OP_SEND_MESSAGE);
  ops[n++].data.send_message.send_message = c->send_buf;
  start(c, ops, n, &c->send_tag);
}

static void send_one(srv_call *c, const char *text) {
  send_bytes(c, text, strlen(text));
}

/* Whether the call carries request metadata key with this value. */
static bool has_metadata(const srv_call *c, const char *key, const char *value) {
  char k[MD_LEN], v[MD_LEN];
  for (size_t i = 0; i < c->md.count; i++) {
    slice_to_buf(c->md.metadata[i].key, k, sizeof k);
    slice_to_buf(c->md.metadata[i].value, v, sizeof v);
    if (strcmp(k, key) == 0 && strcmp(v, value) == 0)
      return true;
  }
  return false;
}

/* A _SubscriptionItem, encoded by hand (protobuf-c packs text with strlen): item
 * {topic_sequence_number 1, value {text "abc\0def"}, publisher_id "p\0q",
 * sequence_page 1}. */
static const char wire_text_item[] = {0x0a, 0x14, /* item, 20 bytes */
                                      0x08, 0x01, /* topic_sequence_number 1 */
                                      0x12, 0x09, 0x0a, 0x07, 'a', 'b',
                                      'c',  0,    'd',  'e',  'f', /* value { text } */
                                      0x1a, 0x03, 'p',  0,    'q', /* publisher_id */
                                      0x20, 0x01};                 /* sequence_page 1 */

/* A _GenerateDisposableTokenResponse, encoded by hand: api_key "ab\0cd",
 * endpoint "127.0.0.1", valid_until 1. */
static const char nul_token_response[] = {0x0a, 0x05, 'a', 'b', 0,   'c', 'd', 0x12, 0x09, '1',
                                          '2',  '7',  '.', '0', '.', '0', '.', '1',  0x18, 0x01};

static void stream_next(srv_call *c) {
  if (c->stream_sent < c->stream_total) {
    char msg[32];
    snprintf(msg, sizeof msg, "msg-%ld", c->stream_sent++);
    send_one(c, msg);
  } else {
    finish(c, NULL, GRPC_STATUS_OK, "");
  }
}

/* Reads "<grpc code> <err value, or - for none> <message>" into the call. */
static void parse_fail_err(srv_call *c, const char *text) {
  char err[128] = "";
  int used = 0;
  int code = 0;
  if (sscanf(text, "%d %127s %n", &code, err, &used) < 2)
    used = (int)strlen(text);
  c->fail_code = (grpc_status_code)code;
  snprintf(c->fail_message, sizeof c->fail_message, "%s", text + used);
  if (strcmp(err, "-") != 0 && err[0]) {
    c->has_trailer = true;
    c->trailer.key = grpc_slice_from_static_string("err");
    c->trailer.value = grpc_slice_from_copied_string(err);
  }
}

/* The "cache" metadata value of the call ("" when absent), truncated to cap. */
static void cache_of(const srv_call *c, char *buf, size_t cap) {
  char k[MD_LEN];
  buf[0] = '\0';
  for (size_t i = 0; i < c->md.count; i++) {
    slice_to_buf(c->md.metadata[i].key, k, sizeof k);
    if (strcmp(k, "cache") == 0)
      slice_to_buf(c->md.metadata[i].value, buf, cap);
  }
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Publish with cache "refuse:N:ERR": the first N such publishes on this server fail
 * RESOURCE_EXHAUSTED with err=ERR (none when "-"), the rest succeed. Returns false for
 * any other cache. */
static bool refuse_publish(srv_call *c) {
  char cache[MD_LEN], err[128];
  int n = 0;
  cache_of(c, cache, sizeof cache);
  if (sscanf(cache, "refuse:%d:%127s", &n, err) != 2)
    return false;
  grpc_test_server *s = c->s;
  pthread_mutex_lock(&s->mu);
  int k = s->publishes++;
  if (k < MAX_PUBLISHES)
    s->publish_ms[k] = mono_ms();
  pthread_mutex_unlock(&s->mu);
  if (k >= n) {
    finish(c, buffer_from("", 0), GRPC_STATUS_OK, "");
    return true;
  }
  char req[256];
  snprintf(req, sizeof req, "8 %s refused by the test server", err);
  parse_fail_err(c, req);
  finish(c, NULL, c->fail_code, c->fail_message);
  return true;
}

/* Subscribe with cache "subcut:N:ERR": the first such Subscribe is confirmed (a
 * heartbeat) and then ends RESOURCE_EXHAUSTED with err=ERR, as a cut stream; the next N
 * are refused at once the same way; later ones get a heartbeat and stay open. Counted
 * and timed with the "refuse:" publishes. Returns false for any other cache. */
static bool cut_subscribe(srv_call *c) {
  char cache[MD_LEN], err[128];
  int n = 0;
  cache_of(c, cache, sizeof cache);
  if (sscanf(cache, "subcut:%d:%127s", &n, err) != 2)
    return false;
  static const char heartbeat[] = {0x1a, 0x00};
  grpc_test_server *s = c->s;
  pthread_mutex_lock(&s->mu);
  int k = s->publishes++;
  if (k < MAX_PUBLISHES)
    s->publish_ms[k] = mono_ms();
  pthread_mutex_unlock(&s->mu);
  c->stream_total = -1; /* send completions must not continue a count stream */
  if (k > n) {
    send_bytes(c, heartbeat, sizeof heartbeat);
    return true;
  }
  char req[256];
  snprintf(req, sizeof req, "8 %s refused by the test server", err);
  parse_fail_err(c, req);
  if (k == 0) {
    c->fail_after_send = true;
    send_bytes(c, heartbeat, sizeof heartbeat);
  } else {
    finish(c, NULL, c->fail_code, c->fail_message);
  }
  return true;
}

static void handle_request(srv_call *c) {
  char text[256];
  request_text(c, text, sizeof text);
  const char *m = c->method;
  if (strcmp(m, "/cache_client.pubsub.Pubsub/Publish") == 0 && refuse_publish(c))
    return;
  if (strcmp(m, "/cache_client.pubsub.Pubsub/Subscribe") == 0 && cut_subscribe(c))
    return;
  if (strcmp(m, "/cache_client.Ping/Ping") == 0) {
    finish(c, buffer_from("", 0), GRPC_STATUS_OK, "");
  } else if (strcmp(m, "/test.Echo/Unary") == 0) {
    grpc_byte_buffer *copy = c->req ? grpc_byte_buffer_copy(c->req) : buffer_from("", 0);
    finish(c, copy, GRPC_STATUS_OK, "");
  } else if (strcmp(m, "/test.Fail/Status") == 0) {
    char *rest = NULL;
    long code = strtol(text, &rest, 10);
    finish(c, NULL, (grpc_status_code)code, rest && *rest == ' ' ? rest + 1 : "");
  } else if (strcmp(m, "/test.Fail/Err") == 0) {
    parse_fail_err(c, text);
    finish(c, NULL, c->fail_code, c->fail_message);
  } else if (strcmp(m, "/test.Stream/FailErr") == 0) {
    parse_fail_err(c, text);
    c->stream_total = -1;
    c->fail_after_send = true;
    send_one(c, "first");
  } else if (strcmp(m, "/test.Fail/NotFound") == 0) {
    finish(c, NULL, GRPC_STATUS_NOT_FOUND, "cache not found");
  } else if (strcmp(m, "/test.Stream/Count") == 0) {
    c->stream_total = strtol(text, NULL, 10);
    stream_next(c);
  } else if (strcmp(m, "/test.Stream/Hang") == 0) {
    c->stream_total = -1; /* send_tag completions must not continue the stream */
    send_one(c, "first");
  } else if (strcmp(m, "/cache_client.pubsub.Pubsub/Subscribe") == 0 &&
             has_metadata(c, "cache", "wire-text")) {
    c->stream_total = -1; /* one item, then the stream stays open until cancelled */
    send_bytes(c, wire_text_item, sizeof wire_text_item);
  } else if (strcmp(m, "/token.Token/GenerateDisposableToken") == 0) {
    finish(c, buffer_from(nul_token_response, sizeof nul_token_response), GRPC_STATUS_OK, "");
  } else if (strcmp(m, "/test.Hang/Unary") == 0) {
    /* never answer: RECV_CLOSE_ON_SERVER completes when the client gives up */
  } else {
    finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
  }
}

static void on_new_call(srv_call *c, int success) {
  grpc_test_server *s = c->s;
  if (!success) { /* the server is shutting down */
    call_free(c);
    return;
  }
  request_next(s);
  record_call(s, c);
  grpc_op op;
  op_init(&op, GRPC_OP_RECV_CLOSE_ON_SERVER);
  op.data.recv_close_on_server.cancelled = &c->recv_cancelled;
  start(c, &op, 1, &c->close_tag);
  op_init(&op, GRPC_OP_RECV_MESSAGE);
  op.data.recv_message.recv_message = &c->req;
  start(c, &op, 1, &c->read_tag);
}

static void on_event(srv_tag *tag, int success) {
  srv_call *c = tag->call;
  if (tag->kind == T_NEW) {
    on_new_call(c, success);
    return;
  }
  c->pending--;
  if (tag->kind == T_READ && success)
    handle_request(c);
  else if (tag->kind == T_SEND && success && c->stream_total >= 0)
    stream_next(c);
  else if (tag->kind == T_SEND && success && c->fail_after_send)
    finish(c, NULL, c->fail_code, c->fail_message);
  if (c->pending == 0)
    call_free(c);
}

static void request_next(grpc_test_server *s) {
  if (s->shutdown_seen)
    return;
  srv_call *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->s = s;
  s->live++;
  c->status_detail = grpc_empty_slice();
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->md);
  c->new_tag = (srv_tag){T_NEW, c};
  c->read_tag = (srv_tag){T_READ, c};
  c->send_tag = (srv_tag){T_SEND, c};
  c->finish_tag = (srv_tag){T_FINISH, c};
  c->close_tag = (srv_tag){T_CLOSE, c};
  if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq,
                               &c->new_tag) != GRPC_CALL_OK) {
    c->call = NULL;
    call_free(c);
  }
}

static void *server_main(void *arg) {
  grpc_test_server *s = arg;
  request_next(s);
  while (!(s->shutdown_seen && s->live == 0)) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      break;
    srv_tag *tag = ev.tag;
    if (tag->kind == T_SHUTDOWN)
      s->shutdown_seen = true;
    else
      on_event(tag, ev.success);
  }
  return NULL;
}

grpc_test_server *grpc_test_server_start(void) {
  return grpc_test_server_start_with(NULL);
}

grpc_test_server *grpc_test_server_start_with(const grpc_test_server_options *o) {
  grpc_test_server *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  grpc_init();
  pthread_mutex_init(&s->mu, NULL);
  s->shutdown_tag = (srv_tag){T_SHUTDOWN, NULL};
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_arg args[3];
  size_t n = 0;
  if (o && o->max_concurrent_streams > 0)
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
                           .value.integer = o->max_concurrent_streams};
  if (o && o->max_connection_age_ms > 0) {
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_CONNECTION_AGE_MS,
                           .value.integer = o->max_connection_age_ms};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                           .value.integer = o->max_connection_age_grace_ms};
  }
  grpc_channel_args chargs = {.num_args = n, .args = args};
  s->server = grpc_server_create(n ? &chargs : NULL, NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  s->port = grpc_server_add_http2_port(s->server, "127.0.0.1:0", creds);
  grpc_server_credentials_release(creds);
  if (s->port <= 0) {
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    free(s);
    grpc_shutdown();
    return NULL;
  }
  snprintf(s->address, sizeof s->address, "127.0.0.1:%d", s->port);
  grpc_server_start(s->server);
  pthread_create(&s->thread, NULL, server_main, s);
  return s;
}

void grpc_test_server_stop(grpc_test_server *s) {
  if (!s)
    return;
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
  grpc_server_cancel_all_calls(s->server);
  pthread_join(s->thread, NULL);
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(s->cq);
  pthread_mutex_destroy(&s->mu);
  free(s);
  grpc_shutdown();
}

int grpc_test_server_port(const grpc_test_server *s) {
  return s->port;
}

const char *grpc_test_server_address(const grpc_test_server *s) {
  return s->address;
}

bool grpc_test_server_last_metadata(grpc_test_server *s, const char *key, char *buf, size_t cap) {
  bool found = false;
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->md_count && !found; i++) {
    if (strcmp(s->md[i].key, key) == 0) {
      snprintf(buf, cap, "%s", s->md[i].value);
      found = true;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return found;
}

bool grpc_test_server_last_method(grpc_test_server *s, char *buf, size_t cap) {
  pthread_mutex_lock(&s->mu);
  bool any = s->calls > 0;
  snprintf(buf, cap, "%s", s->method);
  pthread_mutex_unlock(&s->mu);
  return any;
}

int grpc_test_server_publish_times(grpc_test_server *s, int64_t *out, int cap) {
  pthread_mutex_lock(&s->mu);
  int n = s->publishes;
  for (int i = 0; i < n && i < cap && i < MAX_PUBLISHES; i++)
    out[i] = s->publish_ms[i];
  pthread_mutex_unlock(&s->mu);
  return n;
}

int grpc_test_server_call_count(grpc_test_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->calls;
  pthread_mutex_unlock(&s->mu);
  return n;
}

int grpc_test_server_finished_count(grpc_test_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->finished;
  pthread_mutex_unlock(&s->mu);
  return n;
}
