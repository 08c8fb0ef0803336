/* libFuzzer harness: the client side of an HTTP/2 connection (lib/h2/conn.h, memory
 * mode) fed arbitrary server bytes: frames, HPACK blocks, gRPC prefixes.
 *
 * Three calls are in flight (unary, server-streaming, unary) on stream ids 1, 3, 5. The
 * input is a 2-byte header (split seed, action flags) and the server's bytes, fed in
 * pseudo-random pieces; the client's output is drained after each piece. Checked:
 *  - on_close runs at most once per call, never after the call was cancelled, always
 *    with a detail; on_message only for the streaming call, only before its close;
 *  - when the connection fails, every call still open got its on_close (a connection
 *    the input left alive is then fed junk bytes that fail it, so this covers every
 *    input: a connection that ignores them reads no more and must not keep calls open);
 *  - a unary success carries its one message; the callbacks may cancel and submit;
 *  - nothing leaks (libFuzzer's leak check) and the sanitizers stay quiet.
 *
 * Seeds: MIM_FUZZ_H2_SEEDS=<dir> ./fuzz_h2_client writes the seed corpus (responses
 * made by nghttp2's own server session to this harness's requests) and checks the valid
 * one completes all three calls with MIM_OK, then exits. */
#include "h2/conn.h"
#include "h2/grpc_wire.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  ACT_CANCEL_EARLY = 1,    /* cancel call 2 before any server byte */
  ACT_CANCEL_MIDWAY = 2,   /* cancel call 2 after the first piece */
  ACT_SUBMIT_ON_CLOSE = 4, /* submit one more call from the first on_close */
  ACT_CANCEL_ON_X = 8,     /* the streaming call cancels itself on a message "X..." */
};

#define NCALLS 4 /* three at start, one maybe submitted from a callback */

typedef struct call {
  mim_h2_stream *s;
  bool submitted, streaming, cancelled;
  int closes, messages;
  mim_status status;
} call;

typedef struct harness {
  mim_h2_conn *c;
  call calls[NCALLS];
  unsigned actions;
  bool submitted_late;
} harness;

static harness *current;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_h2_client: %s\n", what);
  abort();
}

/* Request bodies must outlive their calls: static. */
static const uint8_t unary_body[] = {0, 0, 0, 0, 4, 'p', 'i', 'n', 'g'};
static const uint8_t stream_body[] = {0, 0, 0, 0, 2, 0x0a, 0x00};
static const mim_h2_header meta[] = {{"authorization", "fuzz-token"}, {"cache", "c"}};

static void submit_call(harness *h, int i, bool streaming) {
  mim_h2_request req = {
      .path = streaming ? "/cache_client.pubsub.Pubsub/Subscribe" : "/cache_client.Ping/Ping",
      .authority = "fuzz:443",
      .tls = true,
      .timeout_ms = 5000,
      .headers = meta,
      .header_count = sizeof meta / sizeof meta[0],
      .body = streaming ? stream_body : unary_body,
      .body_len = streaming ? sizeof stream_body : sizeof unary_body,
      .unary = !streaming,
  };
  call *k = &h->calls[i];
  k->streaming = streaming;
  if (mim_h2_conn_submit(h->c, &req, k, &k->s) == MIM_OK)
    k->submitted = true;
}

static void cancel_call(call *k) {
  if (!k->submitted || k->cancelled || k->closes)
    return;
  mim_h2_stream_cancel(k->s);
  k->cancelled = true;
}

static void on_message(void *stream_user, const uint8_t *msg, size_t len) {
  call *k = stream_user;
  if (!k->streaming || k->closes || k->cancelled || !msg)
    fail("on_message for a unary, closed or cancelled call");
  k->messages++;
  if ((current->actions & ACT_CANCEL_ON_X) && len > 0 && msg[0] == 'X')
    cancel_call(k);
}

static void on_close(void *stream_user, mim_status status, const char *detail, const uint8_t *msg,
                     size_t len, bool refused) {
  (void)refused;
  call *k = stream_user;
  if (k->closes || k->cancelled || !k->submitted)
    fail("on_close twice, after a cancel, or for a call never submitted");
  if (!detail)
    fail("on_close without a detail");
  if (status == MIM_OK && !k->streaming && len > 0 && !msg)
    fail("a unary success without its message bytes");
  if (status != MIM_OK && (msg || len))
    fail("a failure with a message");
  k->closes++;
  k->status = status;
  harness *h = current;
  if ((h->actions & ACT_SUBMIT_ON_CLOSE) && !h->submitted_late && mim_h2_conn_can_submit(h->c)) {
    h->submitted_late = true;
    submit_call(h, 3, false);
  }
}

static const mim_h2_events events = {.on_message = on_message, .on_close = on_close};

static uint32_t next_rand(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void start(harness *h, unsigned actions) {
  memset(h, 0, sizeof *h);
  h->actions = actions;
  current = h;
  if (mim_h2_conn_create_mem(&events, h, &h->c) != MIM_OK)
    fail("cannot create a memory connection");
  submit_call(h, 0, false);
  submit_call(h, 1, true);
  submit_call(h, 2, false);
  if (actions & ACT_CANCEL_EARLY)
    cancel_call(&h->calls[2]);
}

/* Feeds the server's bytes in pieces; returns false once the connection failed. */
static bool feed_all(harness *h, const uint8_t *data, size_t len, uint32_t seed) {
  size_t i = 0;
  bool first = true;
  (void)mim_h2_conn_mem_output(h->c, NULL);
  while (i < len) {
    uint32_t rnd = next_rand(&seed);
    size_t piece = (rnd & 3) == 0 ? rnd % 70 : 1 + rnd % 4096;
    if (piece > len - i)
      piece = len - i;
    mim_status st = mim_h2_conn_mem_recv(h->c, data + i, piece);
    i += piece;
    (void)mim_h2_conn_mem_output(h->c, NULL);
    if (st != MIM_OK)
      return false;
    if (first && (h->actions & ACT_CANCEL_MIDWAY))
      cancel_call(&h->calls[2]);
    first = false;
  }
  return true;
}

/* Every call submitted and not cancelled heard its end exactly once. */
static void check_all_closed(const harness *h) {
  for (int i = 0; i < NCALLS; i++) {
    const call *k = &h->calls[i];
    if (k->submitted && !k->cancelled && k->closes != 1)
      fail("a call never told its end by a connection that failed or reads no more");
  }
}

/* Kills a connection the input left alive: once a partly received frame (at most the
 * default 16 KiB payload) is done, 0xff bytes read as a frame far over the size limit.
 * Returns true if it survived. */
static bool kill_with_junk(harness *h) {
  static uint8_t junk[16384 + 2 * 9];
  if (junk[0] == 0)
    memset(junk, 0xff, sizeof junk);
  (void)mim_h2_conn_mem_recv(h->c, junk, sizeof junk);
  /* nghttp2 reads no more once its GOAWAY is out: the connection knows it is dead after
   * the output is taken, and says so on the next receive. */
  (void)mim_h2_conn_mem_output(h->c, NULL);
  return mim_h2_conn_mem_recv(h->c, junk, 1) == MIM_OK;
}

static void run(const uint8_t *data, size_t size, harness *h) {
  uint32_t seed = 0x2545F491u ^ ((uint32_t)data[0] << 16);
  start(h, data[1]);
  /* Junk a connection survives is junk it ignores (it reads no more): either way no call
   * may be left open. */
  if (feed_all(h, data + 2, size - 2, seed))
    (void)kill_with_junk(h);
  check_all_closed(h);
  mim_h2_conn_free(h->c);
  current = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  harness h;
  run(data, size, &h);
  return 0;
}

/* ---- seed generation: nghttp2's server session answers this harness's requests ---- */

typedef struct srv_body {
  const uint8_t *data;
  size_t len, off;
  const nghttp2_nv *trailers;
  size_t ntrailers;
} srv_body;

static srv_body srv_bodies[8]; /* by stream id */

static nghttp2_nv nv(const char *name, const char *value) {
  nghttp2_nv v = {(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name),
                  strlen(value), NGHTTP2_NV_FLAG_NONE};
  return v;
}

static ssize_t srv_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
  (void)user_data;
  srv_body *b = source->ptr;
  size_t n = b->len - b->off < length ? b->len - b->off : length;
  memcpy(buf, b->data + b->off, n);
  b->off += n;
  if (b->off == b->len) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (b->ntrailers) {
      *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_submit_trailer(session, stream_id, b->trailers, b->ntrailers);
    }
  }
  return (ssize_t)n;
}

/* Answers stream id with HEADERS, body as DATA and trailers (or Trailers-Only when body
 * is NULL and status is 200). */
static void srv_respond(nghttp2_session *srv, int32_t id, const char *status, const uint8_t *body,
                        size_t len, const nghttp2_nv *trailers, size_t ntrailers) {
  nghttp2_nv head[8];
  size_t n = 0;
  head[n++] = nv(":status", status);
  head[n++] = nv("content-type", "application/grpc");
  if (!body) {
    for (size_t i = 0; i < ntrailers; i++)
      head[n++] = trailers[i];
    nghttp2_submit_response(srv, id, head, n, NULL);
    return;
  }
  srv_bodies[id] = (srv_body){body, len, 0, trailers, ntrailers};
  nghttp2_data_provider dp = {.source.ptr = &srv_bodies[id], .read_callback = srv_read};
  nghttp2_submit_response(srv, id, head, n, &dp);
}

typedef void (*srv_script)(nghttp2_session *srv);

static const uint8_t pong[] = {0, 0, 0, 0, 4, 'p', 'o', 'n', 'g'};
static const uint8_t three[] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'X', 'y'};
static const uint8_t compressed[] = {1, 0, 0, 0, 1, 'z'};

static void script_ok(nghttp2_session *srv) {
  static nghttp2_nv ok[1], notfound[2];
  ok[0] = nv("grpc-status", "0");
  notfound[0] = nv("grpc-status", "5");
  notfound[1] = nv("grpc-message", "cache%20not%20found%20%E2%9C%93");
  srv_respond(srv, 1, "200", pong, sizeof pong, ok, 1);
  srv_respond(srv, 3, "200", three, sizeof three, ok, 1);
  srv_respond(srv, 5, "200", NULL, 0, notfound, 2); /* Trailers-Only */
}

static void script_http_errors(nghttp2_session *srv) {
  static nghttp2_nv none[1];
  none[0] = nv("x-none", "1");
  srv_respond(srv, 1, "503", NULL, 0, NULL, 0);
  srv_respond(srv, 3, "200", compressed, sizeof compressed, none, 1);
  srv_respond(srv, 5, "404", NULL, 0, NULL, 0);
}

static void script_reset_goaway(nghttp2_session *srv) {
  static nghttp2_nv ok[1];
  ok[0] = nv("grpc-status", "0");
  srv_respond(srv, 1, "200", pong, sizeof pong, ok, 1);
  nghttp2_submit_rst_stream(srv, NGHTTP2_FLAG_NONE, 3, NGHTTP2_REFUSED_STREAM);
  nghttp2_submit_goaway(srv, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, NULL, 0);
}

/* Runs the harness's client against a server session; returns the server's bytes. */
static size_t make_seed(srv_script script, uint8_t *out, size_t cap) {
  harness h;
  start(&h, 0);
  nghttp2_session_callbacks *cbs = NULL;
  nghttp2_session *srv = NULL;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_session_server_new(&srv, cbs, NULL) != 0)
    fail("seed: no server session");
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(srv, NGHTTP2_FLAG_NONE, NULL, 0);
  const uint8_t *p;
  size_t n = mim_h2_conn_mem_output(h.c, &p);
  if (nghttp2_session_mem_recv(srv, p, n) != (ssize_t)n)
    fail("seed: server refused the client's bytes");
  script(srv);
  size_t len = 0;
  for (;;) {
    const uint8_t *q;
    ssize_t m = nghttp2_session_mem_send(srv, &q);
    if (m <= 0)
      break;
    if (len + (size_t)m > cap)
      fail("seed: too long");
    memcpy(out + len, q, (size_t)m);
    len += (size_t)m;
  }
  nghttp2_session_del(srv);
  mim_h2_conn_free(h.c);
  current = NULL;
  return len;
}

static void write_seed(const char *dir, const char *name, const uint8_t *hdr, const uint8_t *b,
                       size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(hdr, 1, 2, f) != 2 || fwrite(b, 1, len, f) != len || fclose(f) != 0)
    fail("seed: cannot write");
}

static void write_seeds(const char *dir) {
  static uint8_t buf[65536];
  static const struct {
    const char *name;
    srv_script script;
    uint8_t hdr[2];
  } seeds[] = {
      {"ok-unary-stream-trailers-only", script_ok, {0, 0}},
      {"ok-split-cancel-on-x", script_ok, {0x5a, ACT_CANCEL_ON_X | ACT_SUBMIT_ON_CLOSE}},
      {"ok-cancel-midway", script_ok, {0x11, ACT_CANCEL_MIDWAY}},
      {"http-503-compressed-404", script_http_errors, {0, ACT_CANCEL_EARLY}},
      {"rst-refused-goaway", script_reset_goaway, {0x33, 0}},
  };
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    size_t len = make_seed(seeds[i].script, buf, sizeof buf);
    write_seed(dir, seeds[i].name, seeds[i].hdr, buf, len);
  }
  /* The valid exchange must complete every call as the server meant. */
  size_t len = make_seed(script_ok, buf, sizeof buf);
  harness h;
  start(&h, 0);
  if (!feed_all(&h, buf, len, 1))
    fail("seed: the valid exchange failed the connection");
  const call *k = h.calls;
  if (k[0].closes != 1 || k[0].status != MIM_OK || k[1].closes != 1 || k[1].status != MIM_OK ||
      k[1].messages != 3 || k[2].closes != 1 || k[2].status != MIM_ERR_NOT_FOUND) {
    for (int i = 0; i < 3; i++)
      fprintf(stderr, "call %d: closes %d status %s messages %d\n", i, k[i].closes,
              mim_status_name(k[i].status), k[i].messages);
    fail("seed: the valid exchange did not end as the server said");
  }
  mim_h2_conn_free(h.c);
  fprintf(stderr, "fuzz_h2_client: seeds written to %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *dir = getenv("MIM_FUZZ_H2_SEEDS");
  if (dir) {
    write_seeds(dir);
    exit(0);
  }
  return 0;
}
