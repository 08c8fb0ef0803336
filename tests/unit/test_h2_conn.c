/*
 * lib/h2/conn: the client session driven through memory against an nghttp2 server
 * session written here (Trailers-Only errors, HTTP status mapping, unary message
 * counts, RST_STREAM mapping, GOAWAY refusal, large messages, request headers), and the
 * transport against the in-process gRPC server (deadline RST_STREAM, 1,000 concurrent
 * streams, a 4 MiB echo).
 */
#include "clock.h"
#include "grpc_test_server.h"
#include "h2/conn.h"
#include "h2/grpc_wire.h"
#include "loop/reactor.h"
#include "time_scale.h"
#include "transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- a scripted server on an nghttp2 server session ---- */

#define MAX_STREAMS 8

typedef struct srv_stream {
  int32_t id;
  char path[64];
  char te[32], ctype[64], timeout[16], auth[64], scheme[8];
  bool ended; /* request complete */
  uint8_t *body;
  size_t body_len, body_off;
  bool trailers_after_body;
  const char *trailer_status;
} srv_stream;

typedef struct srv {
  nghttp2_session *s;
  srv_stream st[MAX_STREAMS];
  int n;
} srv;

static srv_stream *srv_find(srv *v, int32_t id) {
  for (int i = 0; i < v->n; i++)
    if (v->st[i].id == id)
      return &v->st[i];
  return NULL;
}

static void copy_val(char *dst, size_t cap, const uint8_t *v, size_t len) {
  size_t n = len < cap - 1 ? len : cap - 1;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

static int srv_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  (void)s;
  srv *v = u;
  if (f->hd.type == NGHTTP2_HEADERS && v->n < MAX_STREAMS)
    v->st[v->n++].id = f->hd.stream_id;
  return 0;
}

static int srv_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                         size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *u) {
  (void)s, (void)flags;
  srv_stream *st = srv_find(u, f->hd.stream_id);
  if (!st)
    return 0;
  struct {
    const char *n;
    char *dst;
    size_t cap;
  } map[] = {{":path", st->path, sizeof st->path},          {"te", st->te, sizeof st->te},
             {"content-type", st->ctype, sizeof st->ctype}, {"grpc-timeout", st->timeout, 16},
             {"authorization", st->auth, sizeof st->auth},  {":scheme", st->scheme, 8}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strlen(map[i].n) == nlen && memcmp(map[i].n, name, nlen) == 0)
      copy_val(map[i].dst, map[i].cap, value, vlen);
  return 0;
}

static int srv_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  (void)s;
  srv_stream *st = srv_find(u, f->hd.stream_id);
  if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    st->ended = true;
  return 0;
}

static void srv_init(srv *v) {
  memset(v, 0, sizeof *v);
  nghttp2_session_callbacks *cbs;
  assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, srv_on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, srv_on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, srv_on_frame_recv);
  assert_int_equal(nghttp2_session_server_new(&v->s, cbs, v), 0);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  assert_int_equal(nghttp2_submit_settings(v->s, NGHTTP2_FLAG_NONE, iv, 1), 0);
}

static void srv_free(srv *v) {
  for (int i = 0; i < v->n; i++)
    free(v->st[i].body);
  nghttp2_session_del(v->s);
}

static void nv(nghttp2_nv *x, const char *n, const char *val) {
  *x = (nghttp2_nv){(uint8_t *)(uintptr_t)n, (uint8_t *)(uintptr_t)val, strlen(n), strlen(val),
                    NGHTTP2_NV_FLAG_NONE};
}

/* Trailers-Only (or a bare HTTP status when grpc_status is NULL). */
static void srv_headers_only(srv *v, int32_t id, const char *http, const char *grpc_status,
                             const char *msg) {
  nghttp2_nv h[4];
  size_t n = 0;
  nv(&h[n++], ":status", http);
  if (grpc_status) {
    nv(&h[n++], "content-type", "application/grpc");
    nv(&h[n++], "grpc-status", grpc_status);
    if (msg)
      nv(&h[n++], "grpc-message", msg);
  }
  assert_int_equal(nghttp2_submit_response(v->s, id, h, n, NULL), 0);
}

static ssize_t srv_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                             uint32_t *flags, nghttp2_data_source *src, void *u) {
  (void)u;
  srv_stream *st = src->ptr;
  size_t n = st->body_len - st->body_off;
  if (n > len)
    n = len;
  memcpy(buf, st->body + st->body_off, n);
  st->body_off += n;
  if (st->body_off == st->body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_nv t[1];
    nv(&t[0], "grpc-status", st->trailer_status);
    assert_int_equal(nghttp2_submit_trailer(s, id, t, 1), 0);
  }
  return (ssize_t)n;
}

/* A 200 response carrying count messages of len bytes each, then trailers. */
static void srv_messages(srv *v, int32_t id, int count, size_t len, const char *status) {
  srv_stream *st = srv_find(v, id);
  assert_non_null(st);
  st->body_len = (size_t)count * (MIM_GRPC_PREFIX_LEN + len);
  st->body = malloc(st->body_len ? st->body_len : 1);
  assert_non_null(st->body);
  for (int i = 0; i < count; i++) {
    uint8_t *p = st->body + (size_t)i * (MIM_GRPC_PREFIX_LEN + len);
    mim_grpc_prefix(p, len);
    memset(p + MIM_GRPC_PREFIX_LEN, 'a' + i, len);
  }
  st->trailer_status = status;
  nghttp2_nv h[2];
  nv(&h[0], ":status", "200");
  nv(&h[1], "content-type", "application/grpc");
  nghttp2_data_provider dp = {.source.ptr = st, .read_callback = srv_read_body};
  assert_int_equal(nghttp2_submit_response(v->s, id, h, 2, &dp), 0);
}

/* ---- the client side ---- */

typedef struct result {
  int closes, messages;
  mim_status status;
  char detail[256];
  size_t len, last_msg_len;
  bool refused;
} result;

static void c_on_message(void *u, const uint8_t *msg, size_t len) {
  (void)msg;
  result *r = u;
  r->messages++;
  r->last_msg_len = len;
}

static void c_on_close(void *u, mim_status st, const char *detail, const uint8_t *msg, size_t len,
                       bool refused) {
  (void)msg;
  result *r = u;
  r->closes++;
  r->status = st;
  snprintf(r->detail, sizeof r->detail, "%s", detail);
  r->len = len;
  r->refused = refused;
}

static const mim_h2_events events = {c_on_message, c_on_close, NULL, NULL, NULL};

typedef struct pair {
  srv v;
  mim_h2_conn *c;
  uint8_t body[MIM_GRPC_PREFIX_LEN + 3];
} pair;

/* Moves bytes both ways until neither side has anything to say. */
static mim_status pump(pair *p) {
  for (int i = 0; i < 100000; i++) {
    const uint8_t *out;
    size_t n = mim_h2_conn_mem_output(p->c, &out);
    if (n)
      assert_int_equal(nghttp2_session_mem_recv(p->v.s, out, n), (ssize_t)n);
    const uint8_t *sout;
    ssize_t m = nghttp2_session_mem_send(p->v.s, &sout);
    assert_true(m >= 0);
    if (m > 0) {
      mim_status st = mim_h2_conn_mem_recv(p->c, sout, (size_t)m);
      if (st != MIM_OK)
        return st;
    }
    if (n == 0 && m == 0)
      return MIM_OK;
  }
  fail_msg("pump did not settle");
  return MIM_ERR_INTERNAL;
}

static void pair_init(pair *p) {
  srv_init(&p->v);
  assert_int_equal(mim_h2_conn_create_mem(&events, NULL, &p->c), MIM_OK);
  mim_grpc_prefix(p->body, 3);
  memcpy(p->body + MIM_GRPC_PREFIX_LEN, "req", 3);
  assert_int_equal(pump(p), MIM_OK);
}

static void pair_free(pair *p) {
  mim_h2_conn_free(p->c);
  srv_free(&p->v);
}

static mim_h2_stream *submit(pair *p, bool unary, result *r) {
  mim_h2_header hdr[] = {{"authorization", "tok"}};
  mim_h2_request req = {.path = "/svc/M",
                        .authority = "example:443",
                        .tls = true,
                        .timeout_ms = 1500,
                        .headers = hdr,
                        .header_count = 1,
                        .body = p->body,
                        .body_len = sizeof p->body,
                        .unary = unary};
  mim_h2_stream *s = NULL;
  assert_int_equal(mim_h2_conn_submit(p->c, &req, r, &s), MIM_OK);
  assert_int_equal(pump(p), MIM_OK);
  return s;
}

static void test_request_headers(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r = {0};
  submit(&p, true, &r);
  srv_stream *st = &p.v.st[0];
  assert_true(st->ended);
  assert_string_equal(st->path, "/svc/M");
  assert_string_equal(st->te, "trailers");
  assert_string_equal(st->ctype, "application/grpc");
  assert_string_equal(st->timeout, "1500m");
  assert_string_equal(st->auth, "tok");
  assert_string_equal(st->scheme, "https");
  srv_messages(&p.v, st->id, 1, 10, "0");
  assert_int_equal(pump(&p), MIM_OK);
  assert_int_equal(r.closes, 1);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.len, 10);
  pair_free(&p);
}

static void test_trailers_only(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r = {0};
  submit(&p, true, &r);
  srv_headers_only(&p.v, p.v.st[0].id, "200", "5", "cache%20not%20found");
  assert_int_equal(pump(&p), MIM_OK);
  assert_int_equal(r.closes, 1);
  assert_int_equal(r.status, MIM_ERR_NOT_FOUND);
  assert_string_equal(r.detail, "cache not found");
  pair_free(&p);
}

static void test_http_status_mapping(void **state) {
  (void)state;
  const char *http[] = {"503", "404", "401"};
  mim_status want[] = {MIM_ERR_UNAVAILABLE, MIM_ERR_UNIMPLEMENTED, MIM_ERR_UNAUTHENTICATED};
  for (int i = 0; i < 3; i++) {
    pair p;
    pair_init(&p);
    result r = {0};
    submit(&p, true, &r);
    srv_headers_only(&p.v, p.v.st[0].id, http[i], NULL, NULL);
    assert_int_equal(pump(&p), MIM_OK);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, want[i]);
    assert_non_null(strstr(r.detail, http[i]));
    pair_free(&p);
  }
}

static void test_unary_message_count(void **state) {
  (void)state;
  for (int count = 0; count <= 2; count += 2) {
    pair p;
    pair_init(&p);
    result r = {0};
    submit(&p, true, &r);
    srv_messages(&p.v, p.v.st[0].id, count, 4, "0");
    pump(&p);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, MIM_ERR_INTERNAL);
    pair_free(&p);
  }
}

static void test_stream_messages(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r = {0};
  submit(&p, false, &r);
  srv_messages(&p.v, p.v.st[0].id, 3, 7, "0");
  assert_int_equal(pump(&p), MIM_OK);
  assert_int_equal(r.messages, 3);
  assert_int_equal(r.closes, 1);
  assert_int_equal(r.status, MIM_OK);
  pair_free(&p);
}

static void test_rst_stream_mapping(void **state) {
  (void)state;
  uint32_t codes[] = {NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR};
  mim_status want[] = {MIM_ERR_UNAVAILABLE, MIM_ERR_CANCELLED, MIM_ERR_INTERNAL};
  for (int i = 0; i < 3; i++) {
    pair p;
    pair_init(&p);
    result r = {0};
    submit(&p, true, &r);
    assert_int_equal(nghttp2_submit_rst_stream(p.v.s, NGHTTP2_FLAG_NONE, p.v.st[0].id, codes[i]),
                     0);
    assert_int_equal(pump(&p), MIM_OK);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, want[i]);
    assert_int_equal(r.refused, i == 0);
    pair_free(&p);
  }
}

static void test_goaway_refuses_later_streams(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r1 = {0}, r2 = {0};
  submit(&p, true, &r1);
  submit(&p, true, &r2);
  assert_int_equal(p.v.n, 2);
  assert_int_equal(
      nghttp2_submit_goaway(p.v.s, NGHTTP2_FLAG_NONE, p.v.st[0].id, NGHTTP2_NO_ERROR, NULL, 0), 0);
  assert_int_equal(pump(&p), MIM_OK);
  /* The second stream was never processed: refused, so the transport may retry it. */
  assert_int_equal(r2.closes, 1);
  assert_true(r2.refused);
  assert_int_equal(r2.status, MIM_ERR_UNAVAILABLE);
  assert_false(mim_h2_conn_can_submit(p.c));
  /* The first one still finishes normally. */
  assert_int_equal(r1.closes, 0);
  srv_messages(&p.v, p.v.st[0].id, 1, 3, "0");
  assert_int_equal(pump(&p), MIM_OK);
  assert_int_equal(r1.closes, 1);
  assert_int_equal(r1.status, MIM_OK);
  pair_free(&p);
}

static void test_large_messages(void **state) {
  (void)state;
  size_t sizes[] = {(size_t)4 * 1024 * 1024, MIM_GRPC_MAX_MESSAGE, MIM_GRPC_MAX_MESSAGE + 1};
  for (int i = 0; i < 3; i++) {
    pair p;
    pair_init(&p);
    result r = {0};
    submit(&p, false, &r);
    srv_messages(&p.v, p.v.st[0].id, 1, sizes[i], "0");
    pump(&p);
    assert_int_equal(r.closes, 1);
    if (i < 2) {
      assert_int_equal(r.status, MIM_OK);
      assert_int_equal(r.messages, 1);
      assert_int_equal(r.last_msg_len, sizes[i]);
    } else {
      assert_int_equal(r.status, MIM_ERR_RESOURCE_EXHAUSTED);
      assert_int_equal(r.messages, 0);
    }
    pair_free(&p);
  }
}

static void test_garbage_fails_streams(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r = {0};
  submit(&p, false, &r);
  static const uint8_t junk[] = {0, 0, 4, 0xee, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0xff, 0xff, 0xff};
  /* An unknown frame type is ignored; a DATA frame on stream 0 is a protocol error. */
  static const uint8_t bad[] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'};
  assert_int_equal(mim_h2_conn_mem_recv(p.c, junk, 13), MIM_OK);
  mim_h2_conn_mem_recv(p.c, bad, sizeof bad);
  mim_h2_conn_mem_output(p.c, NULL); /* our GOAWAY goes out: the session is over */
  assert_int_equal(r.closes, 1);
  assert_int_equal(r.status, MIM_ERR_UNAVAILABLE);
  assert_false(mim_h2_conn_can_submit(p.c));
  pair_free(&p);
}

static void test_cancel_sends_rst(void **state) {
  (void)state;
  pair p;
  pair_init(&p);
  result r = {0};
  mim_h2_stream *s = submit(&p, false, &r);
  mim_h2_stream_cancel(s);
  assert_int_equal(pump(&p), MIM_OK);
  assert_int_equal(r.closes, 0); /* no callback after a cancel */
  nghttp2_stream *ss = nghttp2_session_find_stream(p.v.s, p.v.st[0].id);
  /* The server saw RST_STREAM: it never answered, yet the stream is closed. */
  assert_true(!ss || nghttp2_stream_get_state(ss) == NGHTTP2_STREAM_STATE_CLOSED);
  assert_int_equal(mim_h2_conn_streams(p.c), 0);
  pair_free(&p);
}

/* ---- the transport against the in-process gRPC server ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count, ok, msgs;
  mim_status last;
  char detail[512];
} waiter;

static void w_init(waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  cmn_cond_init_monotonic(&w->cv);
}

static int w_wait(waiter *w, int n, int64_t ms) {
  struct timespec until = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&w->mu);
  while (w->count < n && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
  }
  int c = w->count;
  pthread_mutex_unlock(&w->mu);
  return c;
}

static void w_close(void *u, mim_status st, const char *detail) {
  waiter *w = u;
  pthread_mutex_lock(&w->mu);
  w->count++;
  w->ok += st == MIM_OK;
  w->last = st;
  snprintf(w->detail, sizeof w->detail, "%s", detail);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void w_msg(void *u, const uint8_t *m, size_t len) {
  (void)m, (void)len;
  waiter *w = u;
  pthread_mutex_lock(&w->mu);
  w->msgs++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void w_unary(void *u, mim_status st, const char *detail, const uint8_t *r, size_t len) {
  (void)r, (void)len;
  w_close(u, st, detail);
}

static void wait_msgs(waiter *w, int n, int64_t ms) {
  struct timespec until = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&w->mu);
  while (w->msgs < n && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
  }
  pthread_mutex_unlock(&w->mu);
}

static mim_transport *make_transport(grpc_test_server *srv) {
  mim_transport_config cfg = {
      .hosts = {grpc_test_server_address(srv), NULL, NULL}, .auth_token = "tok", .plaintext = true};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  return t;
}

static void test_deadline_resets_stream(void **state) {
  (void)state;
  grpc_test_server *srv = grpc_test_server_start();
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  waiter w;
  w_init(&w);
  assert_int_equal(mim_transport_unary(t, MIM_HOST_CACHE, "/test.Hang/Unary", NULL, NULL, 0, 200,
                                       w_unary, &w, NULL),
                   MIM_OK);
  assert_int_equal(w_wait(&w, 1, (int64_t)5000 * test_time_scale()), 1);
  assert_int_equal(w.last, MIM_ERR_DEADLINE_EXCEEDED);
  assert_non_null(strstr(w.detail, "no answer from "));
  assert_non_null(strstr(w.detail, "within 200 ms"));
  /* The server learns of it through RST_STREAM (or its own grpc-timeout): bounded wait. */
  int64_t until = cmn_mono_ms() + (int64_t)5000 * test_time_scale();
  while (grpc_test_server_finished_count(srv) < 1 && cmn_mono_ms() < until)
    w_wait(&w, 2, 10);
  assert_int_equal(grpc_test_server_finished_count(srv), 1);
  mim_transport_free(t);
  grpc_test_server_stop(srv);
}

/* A server that reports DEADLINE_EXCEEDED itself (it counts our grpc-timeout, and on a
 * loaded machine its status can beat our own timer) gets the same detail as our timer:
 * host:port and the wait, not the bare "Deadline Exceeded". */
static void test_server_deadline_names_host(void **state) {
  (void)state;
  grpc_test_server *srv = grpc_test_server_start();
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  waiter w;
  w_init(&w);
  const char req[] = "4 Deadline Exceeded";
  assert_int_equal(mim_transport_unary(t, MIM_HOST_CACHE, "/test.Fail/Status", NULL,
                                       (const uint8_t *)req, sizeof req - 1, 30000, w_unary, &w,
                                       NULL),
                   MIM_OK);
  assert_int_equal(w_wait(&w, 1, (int64_t)5000 * test_time_scale()), 1);
  assert_int_equal(w.last, MIM_ERR_DEADLINE_EXCEEDED);
  if (!strstr(w.detail, "no answer from ") || !strstr(w.detail, "within 30000 ms"))
    fail_msg("detail: %s", w.detail);
  mim_transport_free(t);
  grpc_test_server_stop(srv);
}

static void test_thousand_streams(void **state) {
  (void)state;
  grpc_test_server *srv = grpc_test_server_start();
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  int n = test_time_scale() > 3 ? 200 : 1000;
  waiter w;
  w_init(&w);
  mim_stream_callbacks cbs = {w_msg, w_close, &w};
  for (int i = 0; i < n; i++)
    assert_int_equal(
        mim_transport_stream(t, MIM_HOST_CACHE, "/test.Stream/Hang", NULL, NULL, 0, 0, &cbs, NULL),
        MIM_OK);
  /* Every stream is open at once: each got its first message. */
  int64_t until = cmn_mono_ms() + (int64_t)20000 * test_time_scale();
  pthread_mutex_lock(&w.mu);
  struct timespec tick = cmn_deadline_after_ms((int64_t)20000 * test_time_scale());
  while (w.msgs < n && cmn_mono_ms() < until && pthread_cond_timedwait(&w.cv, &w.mu, &tick) == 0) {
  }
  int msgs = w.msgs;
  pthread_mutex_unlock(&w.mu);
  assert_int_equal(msgs, n);
  assert_int_equal(w.count, 0);
  mim_transport_free(t); /* every stream ends CANCELLED */
  assert_int_equal(w.count, n);
  assert_int_equal(w.last, MIM_ERR_CANCELLED);
  grpc_test_server_stop(srv);
}

/* The server allows 10 streams per connection: 30 open streams need three connections. */
static void test_max_concurrent_streams_overflow(void **state) {
  (void)state;
  grpc_test_server_options o = {.max_concurrent_streams = 10};
  grpc_test_server *srv = grpc_test_server_start_with(&o);
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  enum { N = 30 };
  waiter w;
  w_init(&w);
  mim_stream_callbacks cbs = {w_msg, w_close, &w};
  for (int i = 0; i < N; i++)
    assert_int_equal(
        mim_transport_stream(t, MIM_HOST_CACHE, "/test.Stream/Hang", NULL, NULL, 0, 0, &cbs, NULL),
        MIM_OK);
  wait_msgs(&w, N, (int64_t)10000 * test_time_scale());
  assert_int_equal(w.msgs, N);
  assert_int_equal(w.count, 0);
  mim_transport_free(t);
  assert_int_equal(w.count, N);
  grpc_test_server_stop(srv);
}

/* The server sends GOAWAY every ~300 ms: calls keep succeeding on fresh connections and a
 * stream opened before a GOAWAY keeps running through it. */
static void test_goaway_reconnects(void **state) {
  (void)state;
  grpc_test_server_options o = {.max_connection_age_ms = 300, .max_connection_age_grace_ms = 60000};
  grpc_test_server *srv = grpc_test_server_start_with(&o);
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  waiter sw;
  w_init(&sw);
  mim_stream_callbacks cbs = {w_msg, w_close, &sw};
  assert_int_equal(
      mim_transport_stream(t, MIM_HOST_CACHE, "/test.Stream/Hang", NULL, NULL, 0, 0, &cbs, NULL),
      MIM_OK);
  wait_msgs(&sw, 1, (int64_t)5000 * test_time_scale());
  assert_int_equal(sw.msgs, 1);
  int64_t end = cmn_mono_ms() + 1500;
  int calls = 0;
  while (cmn_mono_ms() < end && calls < 2000) {
    uint8_t *resp = NULL;
    size_t len = 0;
    assert_int_equal(mim_transport_unary_sync(t, MIM_HOST_CACHE, "/test.Echo/Unary", NULL,
                                              (const uint8_t *)"x", 1,
                                              (int64_t)5000 * test_time_scale(), &resp, &len),
                     MIM_OK);
    assert_int_equal(len, 1);
    free(resp);
    calls++;
  }
  assert_true(calls > 0);
  assert_int_equal(sw.count, 0); /* the old stream is still open */
  mim_transport_free(t);
  assert_int_equal(sw.count, 1);
  assert_int_equal(sw.last, MIM_ERR_CANCELLED);
  grpc_test_server_stop(srv);
}

/* ---- keepalive, on a connection driven by a reactor of the test's own ---- */

typedef struct ka_fixture {
  mim_reactor *r;
  mim_net *net;
  mim_net_dial *dial;
  mim_h2_conn *c;
  mim_h2_stream *s;
  char addr[64];
  int64_t ka_ms, ka_timeout_ms;
  waiter w; /* stream messages and close */
  uint8_t body[MIM_GRPC_PREFIX_LEN];
} ka_fixture;

static void ka_on_close(void *u, mim_status st, const char *detail, const uint8_t *m, size_t len,
                        bool refused) {
  (void)m, (void)len, (void)refused;
  w_close(u, st, detail);
}

static void ka_on_dead(void *cu, mim_h2_conn *c, mim_status st, const char *detail) {
  (void)st, (void)detail;
  ka_fixture *f = cu;
  mim_h2_conn_free(c);
  f->c = NULL;
}

static const mim_h2_events ka_events = {w_msg, ka_on_close, NULL, ka_on_dead, NULL};

static void ka_dialed(void *u, mim_status st, const char *detail, mim_net_conn *nc) {
  ka_fixture *f = u;
  f->dial = NULL;
  if (st != MIM_OK ||
      mim_h2_conn_create(f->r, nc, f->ka_ms, f->ka_timeout_ms, &ka_events, f, &f->c) != MIM_OK) {
    w_close(&f->w, st == MIM_OK ? MIM_ERR_INTERNAL : st, detail ? detail : "create failed");
    return;
  }
  mim_grpc_prefix(f->body, 0);
  mim_h2_request req = {.path = "/test.Stream/Hang",
                        .authority = f->addr,
                        .body = f->body,
                        .body_len = sizeof f->body};
  if (mim_h2_conn_submit(f->c, &req, &f->w, &f->s) != MIM_OK)
    w_close(&f->w, MIM_ERR_INTERNAL, "submit failed");
}

static void ka_start(void *arg) {
  ka_fixture *f = arg;
  if (mim_net_dial_start(f->net, f->addr, 5000, ka_dialed, f, &f->dial) != MIM_OK)
    w_close(&f->w, MIM_ERR_INTERNAL, "dial failed");
}

static void ka_stop(void *arg) {
  ka_fixture *f = arg;
  if (f->dial)
    mim_net_dial_cancel(f->dial);
  mim_h2_conn_free(f->c);
  f->c = NULL;
  w_close(&f->w, MIM_ERR_CANCELLED, "stopped");
}

static void ka_run(ka_fixture *f, const char *addr, int64_t ka_ms, int64_t ka_timeout_ms) {
  memset(f, 0, sizeof *f);
  w_init(&f->w);
  snprintf(f->addr, sizeof f->addr, "%s", addr);
  f->ka_ms = ka_ms;
  f->ka_timeout_ms = ka_timeout_ms;
  assert_int_equal(mim_reactor_create(NULL, "ka-test", &f->r), MIM_OK);
  mim_net_config ncfg = {.tls = false};
  assert_int_equal(mim_net_create(f->r, &ncfg, &f->net), MIM_OK);
  assert_int_equal(mim_reactor_post(f->r, ka_start, f), MIM_OK);
}

static void ka_finish(ka_fixture *f, int closes_before) {
  assert_int_equal(mim_reactor_post(f->r, ka_stop, f), MIM_OK);
  assert_int_equal(w_wait(&f->w, closes_before + 1, 10000), closes_before + 1);
  mim_reactor_free(f->r);
  mim_net_free(f->net);
}

/* A server that accepts and then says nothing: the keepalive ping is never answered and
 * the open stream ends UNAVAILABLE once the ack timeout passed. */
static void test_keepalive_timeout(void **state) {
  (void)state;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(ls >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(ls, 4), 0);
  assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
  ka_fixture f;
  int64_t start = cmn_mono_ms();
  ka_run(&f, addr, 100, 300);
  assert_int_equal(w_wait(&f.w, 1, (int64_t)10000 * test_time_scale()), 1);
  assert_int_equal(f.w.last, MIM_ERR_UNAVAILABLE);
  assert_non_null(strstr(f.w.detail, "keepalive"));
  assert_true(cmn_mono_ms() - start >= 400);
  ka_finish(&f, 1);
  close(ls);
}

/* A gRPC server answers the pings, and they are few enough that it never sends GOAWAY
 * ENHANCE_YOUR_CALM: the stream outlives several ack timeouts. */
static void test_keepalive_answered(void **state) {
  (void)state;
  grpc_test_server *srv = grpc_test_server_start();
  assert_non_null(srv);
  ka_fixture f;
  ka_run(&f, grpc_test_server_address(srv), 100, 300);
  wait_msgs(&f.w, 1, (int64_t)5000 * test_time_scale());
  assert_int_equal(f.w.msgs, 1);
  assert_int_equal(w_wait(&f.w, 1, 1500), 0); /* still open */
  ka_finish(&f, 0);
  assert_int_equal(f.w.last, MIM_ERR_CANCELLED); /* closed by us, not by a failure */
  grpc_test_server_stop(srv);
}

/* ---- a server that accepts connections and drops them at once ---- */

typedef struct dropper {
  int ls;
  atomic_int accepts;
  atomic_bool stop;
  pthread_t th;
  char addr[64];
} dropper;

static void *dropper_main(void *arg) {
  dropper *d = arg;
  while (!atomic_load(&d->stop)) {
    struct pollfd p = {.fd = d->ls, .events = POLLIN};
    if (poll(&p, 1, 20) <= 0)
      continue;
    int fd = accept(d->ls, NULL, NULL);
    if (fd >= 0) {
      atomic_fetch_add(&d->accepts, 1);
      close(fd);
    }
  }
  return NULL;
}

static void dropper_start(dropper *d) {
  memset(d, 0, sizeof *d);
  d->ls = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(d->ls >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(d->ls, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(d->ls, 16), 0);
  assert_int_equal(getsockname(d->ls, (struct sockaddr *)&a, &alen), 0);
  snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", ntohs(a.sin_port));
  assert_int_equal(pthread_create(&d->th, NULL, dropper_main, d), 0);
}

static void dropper_stop(dropper *d) {
  atomic_store(&d->stop, true);
  pthread_join(d->th, NULL);
  close(d->ls);
}

/* Connections that die before the server's SETTINGS count as failed connects: calls fail
 * UNAVAILABLE at once, are not retried, and later calls wait for the backoff instead of
 * dialling again. */
static void test_dropped_connections_back_off(void **state) {
  (void)state;
  dropper d;
  dropper_start(&d);
  mim_transport_config cfg = {.hosts = {d.addr, NULL, NULL}, .plaintext = true};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  for (int i = 0; i < 10; i++) {
    uint8_t *resp = NULL;
    size_t len = 0;
    int64_t start = cmn_mono_ms();
    assert_int_equal(mim_transport_unary_sync(t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                              NULL, 0, 3000, &resp, &len),
                     MIM_ERR_UNAVAILABLE);
    assert_true(cmn_mono_ms() - start < 3000);
  }
  mim_transport_free(t);
  dropper_stop(&d);
  /* Ten calls in well under the first backoff ceiling (1 s): a handful of connects. */
  assert_true(atomic_load(&d.accepts) >= 1);
  assert_true(atomic_load(&d.accepts) <= (test_time_scale() > 3 ? 5 : 3));
}

static void test_4mib_echo(void **state) {
  (void)state;
  grpc_test_server *srv = grpc_test_server_start();
  assert_non_null(srv);
  mim_transport *t = make_transport(srv);
  size_t n = (size_t)4 * 1024 * 1024 - 64; /* the gRPC server's default receive limit is 4 MiB */
  uint8_t *req = malloc(n);
  assert_non_null(req);
  for (size_t i = 0; i < n; i++)
    req[i] = (uint8_t)(i * 13 + 1);
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(mim_transport_unary_sync(t, MIM_HOST_CACHE, "/test.Echo/Unary", NULL, req, n,
                                            (int64_t)20000 * test_time_scale(), &resp, &len),
                   MIM_OK);
  assert_int_equal(len, n);
  assert_memory_equal(resp, req, n);
  free(resp);
  free(req);
  mim_transport_free(t);
  grpc_test_server_stop(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_headers),
      cmocka_unit_test(test_trailers_only),
      cmocka_unit_test(test_http_status_mapping),
      cmocka_unit_test(test_unary_message_count),
      cmocka_unit_test(test_stream_messages),
      cmocka_unit_test(test_rst_stream_mapping),
      cmocka_unit_test(test_goaway_refuses_later_streams),
      cmocka_unit_test(test_large_messages),
      cmocka_unit_test(test_garbage_fails_streams),
      cmocka_unit_test(test_cancel_sends_rst),
      cmocka_unit_test(test_deadline_resets_stream),
      cmocka_unit_test(test_server_deadline_names_host),
      cmocka_unit_test(test_thousand_streams),
      cmocka_unit_test(test_max_concurrent_streams_overflow),
      cmocka_unit_test(test_goaway_reconnects),
      cmocka_unit_test(test_keepalive_timeout),
      cmocka_unit_test(test_keepalive_answered),
      cmocka_unit_test(test_dropped_connections_back_off),
      cmocka_unit_test(test_4mib_echo),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
