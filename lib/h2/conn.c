/*
 * One HTTP/2 client connection carrying gRPC calls (see conn.h).
 *
 * I/O: nghttp2_session_mem_recv / mem_send. Output is gathered in c->out and written in
 * few syscalls; what the socket does not take waits there (write interest). Nothing
 * calls nghttp2_session_mem_send from inside an nghttp2 callback: a submit made there
 * only marks the connection, and the I/O handler flushes once the receive returned.
 * A failure is recorded (c->dead) and handled at the end of the I/O handler or timer
 * that saw it, so on_dead is always the last thing the connection does in a callback.
 */
#include "h2/conn.h"

#include "error.h"
#include "h2/grpc_wire.h"

#include "clock.h"
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_LEN 512
#define READ_CHUNK 16384
#define OUT_HIGH ((size_t)256 * 1024) /* stop pulling frames once this much waits */
#define MAX_FIXED_HEADERS 8
#define MAX_EXTRA_HEADERS 8
#define USER_AGENT "grpc-c-mim/" MIM_VERSION_STRING
/* gRPC core servers count a ping as a strike when it comes less than five minutes after
 * the previous one with no data sent in between, and answer a third strike with GOAWAY
 * ENHANCE_YOUR_CALM. Two pings without data are always safe; after that we wait long
 * enough for the server not to count one. */
#define PINGS_WITHOUT_DATA_OK 2
#define SERVER_MIN_PING_INTERVAL_MS (5 * 60 * 1000 + 10000)

struct mim_h2_stream {
  mim_h2_conn *c;
  int32_t id;
  void *user; /* NULL once reported or cancelled: no more callbacks */
  const uint8_t *body;
  size_t body_len, body_off;
  bool unary, sent, cancelled;
  int http_status;
  bool ct_ok;
  bool have_grpc_status;
  long grpc_code;
  char *grpc_message; /* decoded, malloc'd */
  char err[64];       /* hosted Momento's "err" trailer: the cause of RESOURCE_EXHAUSTED */
  mim_grpc_reader reader;
  uint8_t *msg; /* unary: the response */
  size_t msg_len;
  int msg_count;
  mim_h2_stream *prev, *next;
};

struct mim_h2_conn {
  nghttp2_session *s;
  mim_reactor *r;   /* NULL in memory mode */
  mim_net_conn *nc; /* NULL in memory mode */
  mim_watch *watch;
  unsigned interest;
  unsigned read_wants; /* what the last read that returned AGAIN waits for */
  mim_h2_events ev;
  void *user;
  mim_h2_stream *streams;
  size_t nstreams;
  bool in_io, dead, goaway, notify_ready, reported_dead;
  bool established;  /* the server's SETTINGS arrived */
  bool received_any; /* some bytes came from the server */
  mim_status dead_status;
  char dead_detail[DETAIL_LEN];
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  /* keepalive */
  mim_timer *ka_timer;
  int64_t ka_ms, ka_timeout_ms;
  bool ping_outstanding;
  int pings_without_data;
  int64_t last_ping_ms;
  char peer[256];
};

/* ---- helpers ---- */

static void conn_mark_dead(mim_h2_conn *c, mim_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_mark_dead(mim_h2_conn *c, mim_status st, const char *fmt, ...) {
  if (c->dead)
    return;
  c->dead = true;
  c->dead_status = st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->dead_detail, sizeof c->dead_detail, fmt, ap);
  va_end(ap);
}

static void stream_unlink_free(mim_h2_stream *s) {
  mim_h2_conn *c = s->c;
  if (s->prev)
    s->prev->next = s->next;
  else
    c->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  c->nstreams--;
  mim_grpc_reader_free(&s->reader);
  free(s->grpc_message);
  free(s->msg);
  free(s);
}

/* Hands the final result to the owner once; the stream is detached afterwards. */
static void stream_report(mim_h2_stream *s, mim_status st, const char *detail, bool refused) {
  void *u = s->user;
  if (!u)
    return;
  s->user = NULL;
  s->body = NULL;
  s->cancelled = true;
  bool ok = st == MIM_OK;
  s->c->ev.on_close(u, st, ok ? "" : detail, ok ? s->msg : NULL, ok ? s->msg_len : 0, refused);
}

/* Fails the stream now (bad response bytes) and resets it. */
static void stream_fail(mim_h2_stream *s, mim_status st, const char *detail) {
  stream_report(s, st, detail, false);
  if (!s->c->dead && s->id > 0)
    nghttp2_submit_rst_stream(s->c->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

/* The status gRPC gives a stream reset by the server (PROTOCOL-HTTP2.md). */
static mim_status status_from_rst(uint32_t code) {
  switch (code) {
  case NGHTTP2_REFUSED_STREAM:
    return MIM_ERR_UNAVAILABLE;
  case NGHTTP2_CANCEL:
    return MIM_ERR_CANCELLED;
  case NGHTTP2_ENHANCE_YOUR_CALM:
    return MIM_ERR_RESOURCE_EXHAUSTED;
  case NGHTTP2_INADEQUATE_SECURITY:
    return MIM_ERR_PERMISSION_DENIED;
  default:
    return MIM_ERR_INTERNAL;
  }
}

/* The status of a stream the server has closed, from what it sent. */
static mim_status stream_final(const mim_h2_stream *s, uint32_t code, char *detail, size_t cap) {
  const char *peer = s->c->peer;
  if (s->have_grpc_status) {
    mim_status st = mim_status_from_grpc_code(s->grpc_code);
    if (st == MIM_ERR_RESOURCE_EXHAUSTED) {
      mim_format_limit_detail(detail, cap, s->err, s->grpc_message);
      return st;
    }
    snprintf(detail, cap, "%s", s->grpc_message ? s->grpc_message : "");
    if (st != MIM_OK && !detail[0])
      snprintf(detail, cap, "%s", mim_strerror(st));
    return st;
  }
  if (code != NGHTTP2_NO_ERROR) {
    snprintf(detail, cap, "stream reset by %s (HTTP/2 error %u)", peer, (unsigned)code);
    return status_from_rst(code);
  }
  if (s->http_status != 200) {
    if (s->http_status == 0) {
      snprintf(detail, cap, "%s closed the stream without a response", peer);
      return MIM_ERR_INTERNAL;
    }
    snprintf(detail, cap, "HTTP status %d from %s", s->http_status, peer);
    return mim_status_from_http(s->http_status);
  }
  if (!s->ct_ok) {
    snprintf(detail, cap, "%s answered without a gRPC content-type", peer);
    return MIM_ERR_UNKNOWN;
  }
  snprintf(detail, cap, "%s ended the stream without a grpc-status", peer);
  return MIM_ERR_UNKNOWN;
}

/* An OK status still needs a whole response: no partial message, one unary message. */
static mim_status stream_check_body(const mim_h2_stream *s, char *detail, size_t cap) {
  if (mim_grpc_reader_partial(&s->reader)) {
    snprintf(detail, cap, "stream from %s ended inside a message", s->c->peer);
    return MIM_ERR_INTERNAL;
  }
  if (s->unary && s->msg_count != 1) {
    snprintf(detail, cap, "unary response from %s had %s messages", s->c->peer,
             s->msg_count == 0 ? "no" : "several");
    return MIM_ERR_INTERNAL;
  }
  return MIM_OK;
}

/* ---- nghttp2 callbacks ---- */

static mim_h2_stream *stream_of(nghttp2_session *session, int32_t id) {
  return nghttp2_session_get_stream_user_data(session, id);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  (void)flags;
  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  mim_h2_stream *s = stream_of(session, frame->hd.stream_id);
  if (!s)
    return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 4; i++)
      v = v * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
    s->http_status = v;
  } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
    s->ct_ok = mim_grpc_content_type_ok(value, valuelen);
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    long code = 0;
    s->have_grpc_status = true;
    s->grpc_code = mim_grpc_parse_status(value, valuelen, &code) ? code : 2; /* UNKNOWN */
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    free(s->grpc_message);
    size_t cap = valuelen + 1 < DETAIL_LEN ? valuelen + 1 : DETAIL_LEN;
    s->grpc_message = malloc(cap);
    if (s->grpc_message)
      mim_grpc_decode_message(value, valuelen, s->grpc_message, cap);
  } else if (namelen == 3 && memcmp(name, "err", 3) == 0) {
    /* Longer than any known cause: kept cut, it still reads as an unknown one. */
    size_t n = valuelen < sizeof s->err - 1 ? valuelen : sizeof s->err - 1;
    memcpy(s->err, value, n);
    s->err[n] = '\0';
  }
  return 0;
}

/* One reassembled message: a stream hands it on, a unary call keeps the first. */
static bool on_grpc_message(void *user, const uint8_t *msg, size_t len) {
  mim_h2_stream *s = user;
  if (!s->user)
    return false;
  s->msg_count++;
  if (!s->unary) {
    if (s->c->ev.on_message)
      s->c->ev.on_message(s->user, msg, len);
    return s->user != NULL; /* the callback may have cancelled the stream */
  }
  if (s->msg_count > 1) {
    char detail[DETAIL_LEN];
    snprintf(detail, sizeof detail, "unary response from %s had several messages", s->c->peer);
    stream_fail(s, MIM_ERR_INTERNAL, detail);
    return false;
  }
  s->msg = len ? malloc(len) : NULL;
  if (len && !s->msg) {
    stream_fail(s, MIM_ERR_NO_MEMORY, "out of memory for the response");
    return false;
  }
  if (len)
    memcpy(s->msg, msg, len);
  s->msg_len = len;
  return true;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
  (void)flags;
  (void)user_data;
  mim_h2_stream *s = stream_of(session, stream_id);
  /* Data of a non-gRPC response is dropped: its status comes from the HTTP status. */
  if (!s || !s->user || s->http_status != 200 || !s->ct_ok)
    return 0;
  char detail[DETAIL_LEN];
  mim_status st =
      mim_grpc_reader_feed(&s->reader, data, len, on_grpc_message, s, detail, sizeof detail);
  if (st != MIM_OK && st != MIM_ERR_CANCELLED)
    stream_fail(s, st, detail);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  mim_h2_conn *c = user_data;
  mim_h2_stream *s = stream_of(session, stream_id);
  if (!s)
    return 0;
  if (s->user) {
    char detail[DETAIL_LEN];
    bool refused = error_code == NGHTTP2_REFUSED_STREAM;
    mim_status st = stream_final(s, error_code, detail, sizeof detail);
    if (st == MIM_OK)
      st = stream_check_body(s, detail, sizeof detail);
    stream_report(s, st, detail, refused);
  }
  stream_unlink_free(s);
  c->notify_ready = true;
  return 0;
}

static mim_h2_stream *find_stream(mim_h2_conn *c, int32_t id) {
  for (mim_h2_stream *s = c->streams; s; s = s->next)
    if (s->id == id)
      return s;
  return NULL;
}

/* A request whose HEADERS never went out (GOAWAY came first, or it was cancelled before
 * it was sent) never opened a stream: nghttp2 will not close it, so we do. */
static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int lib_error,
                             void *user_data) {
  mim_h2_conn *c = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  mim_h2_stream *s = find_stream(c, frame->hd.stream_id);
  if (!s || s->sent)
    return 0;
  char detail[DETAIL_LEN];
  snprintf(detail, sizeof detail, "request not sent to %s: %s", c->peer,
           nghttp2_strerror(lib_error));
  stream_report(s, MIM_ERR_UNAVAILABLE, detail, true);
  /* An opened stream is still closed by nghttp2 (on_stream_close frees it). */
  if (!stream_of(session, frame->hd.stream_id)) {
    stream_unlink_free(s);
    c->notify_ready = true;
  }
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  (void)user_data;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    mim_h2_stream *s = stream_of(session, frame->hd.stream_id);
    if (s)
      s->sent = true;
  }
  return 0;
}

static void keepalive_arm(mim_h2_conn *c, int64_t ms);

static void on_ping_ack(mim_h2_conn *c) {
  c->ping_outstanding = false;
  if (c->ka_timer && mim_timer_cancel(c->ka_timer)) {
    c->ka_timer = NULL;
    keepalive_arm(c, c->ka_ms);
  }
}

static void on_goaway(mim_h2_conn *c, const nghttp2_goaway *g) {
  c->goaway = true;
  if (g->error_code == NGHTTP2_ENHANCE_YOUR_CALM) {
    mim_log(MIM_LOG_WARN, "transport: %s asked for fewer pings (GOAWAY ENHANCE_YOUR_CALM)",
            c->peer);
    if (c->ev.on_calm_down)
      c->ev.on_calm_down(c->user);
  }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  (void)session;
  mim_h2_conn *c = user_data;
  switch (frame->hd.type) {
  case NGHTTP2_DATA:
  case NGHTTP2_HEADERS:
    c->pings_without_data = 0;
    break;
  case NGHTTP2_SETTINGS:
    if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
      c->notify_ready = c->established = true;
    break;
  case NGHTTP2_PING:
    if (frame->hd.flags & NGHTTP2_FLAG_ACK)
      on_ping_ack(c);
    break;
  case NGHTTP2_GOAWAY:
    on_goaway(c, &frame->goaway);
    break;
  default:
    break;
  }
  return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
  (void)session;
  (void)stream_id;
  (void)user_data;
  mim_h2_stream *s = source->ptr;
  if (s->cancelled)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = s->body_len - s->body_off;
  if (n > length)
    n = length;
  if (n)
    memcpy(buf, s->body + s->body_off, n);
  s->body_off += n;
  if (s->body_off == s->body_len)
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* ---- session ---- */

static mim_status session_new(mim_h2_conn *c) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: out of memory");
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: out of memory");
  }
  /* Pings are acknowledged by nghttp2 itself; flow control stays automatic: data is
   * consumed as soon as it has been delivered. */
  int rv = nghttp2_session_client_new2(&c->s, cbs, c, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0)
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: cannot create a session: %s", nghttp2_strerror(rv));
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, MIM_H2_STREAM_WINDOW}};
  rv = nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  if (rv == 0)
    rv = nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, MIM_H2_CONN_WINDOW);
  if (rv != 0)
    return mim_fail(MIM_ERR_INTERNAL, "h2: cannot submit SETTINGS: %s", nghttp2_strerror(rv));
  return MIM_OK;
}

static mim_h2_conn *conn_alloc(const mim_h2_events *events, void *user) {
  mim_h2_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->ev = *events;
  c->user = user;
  return c;
}

/* ---- output ---- */

static bool out_append(mim_h2_conn *c, const uint8_t *p, size_t n) {
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 16384;
    while (cap < c->out_len + n)
      cap *= 2;
    uint8_t *b = realloc(c->out, cap);
    if (!b)
      return false;
    c->out = b;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  return true;
}

/* Moves frames nghttp2 has ready into c->out (up to OUT_HIGH waiting). */
static void out_fill(mim_h2_conn *c) {
  while (!c->dead && c->out_len - c->out_off < OUT_HIGH) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->s, &p);
    if (n < 0) {
      conn_mark_dead(c, MIM_ERR_INTERNAL, "HTTP/2 session with %s failed: %s", c->peer,
                     nghttp2_strerror((int)n));
      return;
    }
    if (n == 0)
      break;
    if (!out_append(c, p, (size_t)n))
      conn_mark_dead(c, MIM_ERR_NO_MEMORY, "out of memory writing to %s", c->peer);
  }
  /* Once our GOAWAY for a connection error is out, nghttp2 reads no more: streams still
   * open would never end, also after a GOAWAY from the server (a clean drain has none
   * left). */
  if (!c->dead && c->nstreams > 0 && !nghttp2_session_want_read(c->s))
    conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "HTTP/2 protocol error from %s", c->peer);
}

/* Network mode: writes until nghttp2 has nothing more or the socket is full. */
static void conn_flush(mim_h2_conn *c) {
  for (;;) {
    if (c->out_off == c->out_len)
      c->out_off = c->out_len = 0;
    out_fill(c);
    if (c->dead || c->out_off == c->out_len)
      return;
    ssize_t n = mim_net_conn_write(c->nc, c->out + c->out_off, c->out_len - c->out_off);
    if (n == MIM_NET_AGAIN)
      return;
    if (n < 0) {
      conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "%s", mim_net_conn_error(c->nc));
      return;
    }
    c->out_off += (size_t)n;
  }
}

static void conn_update_interest(mim_h2_conn *c) {
  if (!c->watch)
    return;
  unsigned want = MIM_LOOP_READ | c->read_wants;
  if (c->out_off < c->out_len)
    want |= mim_net_conn_wants(c->nc) | MIM_LOOP_WRITE;
  if (want != c->interest) {
    c->interest = want;
    mim_reactor_watch_set(c->watch, want);
  }
}

/* Something was submitted: send it now, unless an I/O handler of this connection is
 * running (it flushes when nghttp2 has returned). */
static void conn_kick(mim_h2_conn *c) {
  if (c->in_io || c->dead || !c->nc)
    return;
  conn_flush(c);
  if (c->dead) {
    /* Handled by the I/O handler: a broken socket polls ready at once. */
    if (c->watch)
      mim_reactor_watch_set(c->watch, MIM_LOOP_READ | MIM_LOOP_WRITE);
    c->interest = MIM_LOOP_READ | MIM_LOOP_WRITE;
    return;
  }
  conn_update_interest(c);
}

/* ---- input ---- */

/* A TLS record header (alert or handshake, version 3.x): what a TLS server answers to
 * bytes that are not a ClientHello, such as our HTTP/2 preface. */
static bool looks_like_tls(const uint8_t *data, size_t len) {
  return len >= 3 && (data[0] == 0x15 || data[0] == 0x16) && data[1] == 0x03 && data[2] <= 0x04;
}

static void conn_feed(mim_h2_conn *c, const uint8_t *data, size_t len) {
  if (!c->established && !c->received_any && looks_like_tls(data, len)) {
    conn_mark_dead(c, MIM_ERR_UNAVAILABLE,
                   "%s answered with TLS to plaintext HTTP/2: use TLS for it (MIM_TLS_ON, or "
                   "a non-loopback endpoint)",
                   c->peer);
    return;
  }
  c->received_any = true;
  ssize_t rv = nghttp2_session_mem_recv(c->s, data, len);
  if (rv < 0)
    conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "HTTP/2 protocol error from %s: %s", c->peer,
                   nghttp2_strerror((int)rv));
}

/* Reads until the stream has nothing more (TLS may hold decrypted bytes). */
static void conn_read(mim_h2_conn *c) {
  uint8_t buf[READ_CHUNK];
  while (!c->dead) {
    ssize_t n = mim_net_conn_read(c->nc, buf, sizeof buf);
    if (n > 0) {
      conn_feed(c, buf, (size_t)n);
      continue;
    }
    if (n == MIM_NET_AGAIN) {
      c->read_wants = mim_net_conn_wants(c->nc) & ~MIM_LOOP_READ;
      return;
    }
    if (n == 0 && !c->established)
      conn_mark_dead(c, MIM_ERR_UNAVAILABLE,
                     "%s closed the connection before HTTP/2 started: is it a gRPC server, "
                     "and does it want TLS? (connection to %s closed by the server)",
                     c->peer, c->peer);
    else if (n == 0)
      conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "connection to %s closed by the server", c->peer);
    else
      conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "%s", mim_net_conn_error(c->nc));
  }
}

/* Every stream still attached ends; one whose request never left may be retried. */
static void conn_fail_streams(mim_h2_conn *c) {
  mim_h2_stream *next;
  for (mim_h2_stream *s = c->streams; s; s = next) {
    next = s->next;
    stream_report(s, c->dead_status, c->dead_detail, !s->sent);
  }
}

static void conn_finish(mim_h2_conn *c) {
  if (c->reported_dead)
    return;
  c->reported_dead = true;
  if (c->watch) {
    mim_reactor_unwatch(c->watch);
    c->watch = NULL;
  }
  if (c->ka_timer) {
    mim_timer_cancel(c->ka_timer);
    c->ka_timer = NULL;
  }
  if (c->dead)
    conn_fail_streams(c);
  if (c->ev.on_dead)
    c->ev.on_dead(c->user, c, c->dead ? c->dead_status : MIM_OK, c->dead ? c->dead_detail : "");
}

/* After I/O or a timer: tells the owner about capacity or the connection's end. */
static void conn_after_io(mim_h2_conn *c) {
  if (!c->dead && c->notify_ready && mim_h2_conn_can_submit(c) && c->ev.on_ready) {
    c->notify_ready = false;
    c->in_io = true; /* submits made by the owner are flushed below */
    c->ev.on_ready(c->user, c);
    c->in_io = false;
    if (!c->dead)
      conn_flush(c);
  }
  if (c->dead || (c->goaway && c->nstreams == 0)) {
    conn_finish(c);
    return;
  }
  conn_update_interest(c);
}

static void conn_io(void *user, unsigned events) {
  (void)events;
  mim_h2_conn *c = user;
  c->in_io = true;
  if (!c->dead)
    conn_read(c);
  if (!c->dead)
    conn_flush(c);
  c->in_io = false;
  conn_after_io(c);
}

/* ---- keepalive ---- */

static void keepalive_fire(void *user);

static void keepalive_arm(mim_h2_conn *c, int64_t ms) {
  if (mim_reactor_timer(c->r, ms, keepalive_fire, c, &c->ka_timer) != MIM_OK)
    c->ka_timer = NULL; /* only when the reactor is going away */
}

static bool ping_allowed(const mim_h2_conn *c) {
  return c->pings_without_data < PINGS_WITHOUT_DATA_OK ||
         cmn_mono_ms() - c->last_ping_ms >= SERVER_MIN_PING_INTERVAL_MS;
}

static void keepalive_fire(void *user) {
  mim_h2_conn *c = user;
  c->ka_timer = NULL;
  if (c->dead || c->reported_dead)
    return;
  if (c->ping_outstanding) {
    conn_mark_dead(c, MIM_ERR_UNAVAILABLE, "keepalive ping to %s not answered within %d ms",
                   c->peer, (int)c->ka_timeout_ms);
    conn_finish(c);
    return;
  }
  /* An idle connection is never pinged: servers treat that as abuse. */
  if (c->nstreams > 0 && ping_allowed(c) &&
      nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, NULL) == 0) {
    c->ping_outstanding = true;
    c->pings_without_data++;
    c->last_ping_ms = cmn_mono_ms();
    keepalive_arm(c, c->ka_timeout_ms);
    conn_kick(c);
    return;
  }
  keepalive_arm(c, c->ka_ms);
}

/* ---- public ---- */

mim_status mim_h2_conn_create(mim_reactor *r, mim_net_conn *nc, int64_t keepalive_ms,
                              int64_t keepalive_timeout_ms, const mim_h2_events *events,
                              void *conn_user, mim_h2_conn **out) {
  *out = NULL;
  mim_h2_conn *c = conn_alloc(events, conn_user);
  if (!c) {
    mim_net_conn_close(nc);
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: out of memory");
  }
  c->r = r;
  c->nc = nc;
  c->ka_ms = keepalive_ms > 0 ? keepalive_ms : MIM_H2_KEEPALIVE_MS;
  c->ka_timeout_ms = keepalive_timeout_ms > 0 ? keepalive_timeout_ms : MIM_H2_KEEPALIVE_TIMEOUT_MS;
  snprintf(c->peer, sizeof c->peer, "%s", mim_net_conn_peer(nc));
  mim_status st = session_new(c);
  if (st == MIM_OK) {
    c->interest = MIM_LOOP_READ | MIM_LOOP_WRITE;
    st = mim_reactor_watch(r, mim_net_conn_fd(nc), c->interest, conn_io, c, &c->watch);
  }
  if (st != MIM_OK) {
    mim_h2_conn_free(c);
    return st;
  }
  keepalive_arm(c, c->ka_ms);
  *out = c;
  return MIM_OK;
}

mim_status mim_h2_conn_create_mem(const mim_h2_events *events, void *conn_user, mim_h2_conn **out) {
  *out = NULL;
  mim_h2_conn *c = conn_alloc(events, conn_user);
  if (!c)
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: out of memory");
  snprintf(c->peer, sizeof c->peer, "memory");
  mim_status st = session_new(c);
  if (st != MIM_OK) {
    mim_h2_conn_free(c);
    return st;
  }
  *out = c;
  return MIM_OK;
}

mim_status mim_h2_conn_mem_recv(mim_h2_conn *c, const uint8_t *data, size_t len) {
  c->in_io = true;
  if (!c->dead)
    conn_feed(c, data, len);
  c->in_io = false;
  if (!c->dead && c->notify_ready && mim_h2_conn_can_submit(c) && c->ev.on_ready) {
    c->notify_ready = false;
    c->ev.on_ready(c->user, c);
  }
  if (c->dead) {
    conn_fail_streams(c);
    return mim_fail_with_detail(c->dead_status, c->dead_detail);
  }
  return MIM_OK;
}

size_t mim_h2_conn_mem_output(mim_h2_conn *c, const uint8_t **out) {
  c->out_off = c->out_len = 0;
  if (!c->dead)
    out_fill(c);
  if (c->dead)
    conn_fail_streams(c);
  if (out)
    *out = c->out;
  return c->out_len;
}

void mim_h2_conn_free(mim_h2_conn *c) {
  if (!c)
    return;
  if (c->watch)
    mim_reactor_unwatch(c->watch);
  if (c->ka_timer)
    mim_timer_cancel(c->ka_timer);
  /* Stream objects go first: nghttp2 does not report their close from session_del. */
  while (c->streams)
    stream_unlink_free(c->streams); // NOLINT(clang-analyzer-unix.Malloc): unlinks before freeing
  nghttp2_session_del(c->s);
  mim_net_conn_close(c->nc);
  free(c->out);
  free(c);
}

bool mim_h2_conn_can_submit(const mim_h2_conn *c) {
  if (c->dead || c->goaway || !c->s)
    return false;
  uint32_t max = nghttp2_session_get_remote_settings(c->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return c->nstreams < max;
}

bool mim_h2_conn_established(const mim_h2_conn *c) {
  return c->established;
}

size_t mim_h2_conn_streams(const mim_h2_conn *c) {
  return c->nstreams;
}

const char *mim_h2_conn_peer(const mim_h2_conn *c) {
  return c->peer;
}

static void nv_set(nghttp2_nv *nv, const char *name, const char *value) {
  nv->name = (uint8_t *)(uintptr_t)name;
  nv->namelen = strlen(name);
  nv->value = (uint8_t *)(uintptr_t)value;
  nv->valuelen = strlen(value);
  nv->flags = NGHTTP2_NV_FLAG_NONE;
}

static mim_status submit_request(mim_h2_conn *c, const mim_h2_request *req, mim_h2_stream *s) {
  nghttp2_nv nva[MAX_FIXED_HEADERS + MAX_EXTRA_HEADERS];
  size_t n = 0;
  char timeout[12];
  nv_set(&nva[n++], ":method", "POST");
  nv_set(&nva[n++], ":scheme", req->tls ? "https" : "http");
  nv_set(&nva[n++], ":path", req->path);
  nv_set(&nva[n++], ":authority", req->authority);
  nv_set(&nva[n++], "te", "trailers");
  nv_set(&nva[n++], "content-type", "application/grpc");
  nv_set(&nva[n++], "user-agent", USER_AGENT);
  if (req->timeout_ms > 0) {
    mim_grpc_timeout_value(req->timeout_ms, timeout);
    nv_set(&nva[n++], "grpc-timeout", timeout);
  }
  for (size_t i = 0; i < req->header_count && i < MAX_EXTRA_HEADERS; i++)
    nv_set(&nva[n++], req->headers[i].name, req->headers[i].value);
  nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_body};
  int32_t id = nghttp2_submit_request(c->s, NULL, nva, n, &dp, s);
  if (id < 0)
    return mim_fail(MIM_ERR_INTERNAL, "h2: cannot submit a request to %s: %s", c->peer,
                    nghttp2_strerror(id));
  s->id = id;
  return MIM_OK;
}

mim_status mim_h2_conn_submit(mim_h2_conn *c, const mim_h2_request *req, void *stream_user,
                              mim_h2_stream **out) {
  if (c->dead || c->goaway)
    return mim_fail(MIM_ERR_UNAVAILABLE, "connection to %s takes no new calls", c->peer);
  mim_h2_stream *s = calloc(1, sizeof *s);
  if (!s)
    return mim_fail(MIM_ERR_NO_MEMORY, "h2: out of memory");
  s->c = c;
  s->user = stream_user;
  s->body = req->body;
  s->body_len = req->body_len;
  s->unary = req->unary;
  mim_grpc_reader_init(&s->reader, 0);
  mim_status st = submit_request(c, req, s);
  if (st != MIM_OK) {
    mim_grpc_reader_free(&s->reader);
    free(s);
    return st;
  }
  s->next = c->streams;
  if (c->streams)
    c->streams->prev = s;
  c->streams = s;
  c->nstreams++;
  *out = s;
  conn_kick(c);
  return MIM_OK;
}

void mim_h2_stream_cancel(mim_h2_stream *s) {
  if (!s || !s->user)
    return;
  s->user = NULL;
  s->cancelled = true;
  s->body = NULL;
  mim_h2_conn *c = s->c;
  if (c->dead)
    return;
  nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
  conn_kick(c);
}
