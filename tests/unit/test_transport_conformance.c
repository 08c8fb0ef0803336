/*
 * Transport conformance suite: the same cases against two independent server
 * implementations of Momento's services, through lib/transport.h only, so they run
 * unchanged on every transport (TRANSPORT=grpc and TRANSPORT=h2).
 *
 *   group "mim-local": our gRPC-core server (tests/support/mim_local.h, --no-auth)
 *   group "grpc-js":   tests/interop/conform/server.js on @grpc/grpc-js and the official
 *                      @gomomento/generated-types (its test behaviour is documented there)
 *
 * The grpc-js group needs node (20+) and tests/interop/node_modules, which
 * tests/interop/npm-ci.sh installs when missing; without node its group setup fails
 * (reported FAILED, never silently passed). Where one server cannot show a behaviour
 * (mim-local has no "hang" method), the case reaches the same client-side condition
 * another way (SIGSTOP) and says so. Counts shrink under valgrind
 * (test_time_scale() > 3); every check still runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mim_local.h"
#include "pb.h"
#include "test_ca.h"
#include "test_clock.h"
#include "time_scale.h"
#include "transport.h"
#include "waiter.h"

#include <cacheclient.pb-c.h>
#include <cachepubsub.pb-c.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define CACHE "conform"
#define PING "/cache_client.Ping/Ping"
#define PUSH "/cache_client.Scs/ListPushBack"
#define FETCH "/cache_client.Scs/ListFetch"
#define PUBLISH "/cache_client.pubsub.Pubsub/Publish"
#define SUBSCRIBE "/cache_client.pubsub.Pubsub/Subscribe"
#define MIB ((size_t)1 << 20)
/* Must match FAIL_MESSAGE in tests/interop/conform/server.js. */
#define FAIL_MESSAGE "conform: 100% failed, na\xc3\xafve caf\xc3\xa9\ttab"

static int64_t scale(void) {
  return test_time_scale();
}
static int wait_ms(void) {
  return (int)(10000 * scale());
}
/* Fewer iterations under valgrind (20-50x slower), never fewer checks. */
static int count(int n) {
  return scale() > 3 ? n / 10 : n;
}

/* ---- the servers ---- */

typedef enum { SRV_MIM_LOCAL, SRV_GRPC_JS } server_kind;

typedef struct server {
  server_kind kind;
  mim_local *ml;  /* SRV_MIM_LOCAL */
  pid_t node_pid; /* SRV_GRPC_JS */
  char dir[64];
  char endpoint[64];
} server;

static server g_srv;

static int start_mim_local(server *s, const char *const *extra) {
  static const char *const caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .no_auth = 1, .extra_args = extra};
  if (mim_local_start(&o, &s->ml) != 0)
    return -1;
  s->kind = SRV_MIM_LOCAL;
  snprintf(s->endpoint, sizeof s->endpoint, "%s", s->ml->endpoint);
  return 0;
}

/* mim-local's limits: 5 MiB values (4 MiB requests fit; --limits none lifts hosted
 * Momento's 128 KB element and 1 MB item, these tests are about the transports' frames),
 * one subscriber per topic (a second subscribe succeeds only once the server has dropped
 * a cancelled one). */
static const char *const k_mim_args[] = {"--max-message-bytes", "5242880", "--limits", "none",
                                         "--max-subscribers",   "1",       NULL};

static const char *src_root(void) {
  const char *r = getenv("MIM_SRC_ROOT");
  return r && *r ? r : ".";
}

/* Installs tests/interop/node_modules when missing (tests/interop/npm-ci.sh). */
static int ensure_node_modules(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "bash '%s/tests/interop/npm-ci.sh'", src_root());
  int rc = system(cmd);
  if (rc != 0)
    fprintf(stderr, "conformance: %s failed (status %d)\n", cmd, rc);
  return rc == 0 ? 0 : -1;
}

/* In the forked child: only async-signal-safe calls (the parent may have threads). */
static void exec_node(char *const argv[], int out_fd) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  dup2(out_fd, STDOUT_FILENO);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0)
    dup2(devnull, STDIN_FILENO);
  execvp("node", argv);
  static const char msg[] = "conformance: cannot run node (not installed?)\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  _exit(127);
}

/* Reads the child's stdout until its "listening on HOST:PORT" line (bounded). */
static int read_listening_line(int fd, char *endpoint, size_t cap) {
  char buf[512];
  size_t len = 0;
  int64_t until = cmn_mono_ms() + 20000 * scale();
  while (len + 1 < sizeof buf) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int left = (int)(until - cmn_mono_ms());
    if (left <= 0 || poll(&p, 1, left) <= 0)
      return -1;
    ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
    const char *at = strstr(buf, "listening on ");
    if (at && strchr(at, '\n')) {
      snprintf(endpoint, cap, "%.*s", (int)strcspn(at + 13, "\r\n"), at + 13);
      return 0;
    }
  }
  return -1;
}

/* Starts server.js, plaintext or (tls not NULL) serving that certificate. */
static int start_node(server *s, const test_cert_files *tls) {
  static int modules_ok;
  if (!modules_ok && ensure_node_modules() != 0)
    return -1;
  modules_ok = 1;
  snprintf(s->dir, sizeof s->dir, "/tmp/mim-conform-XXXXXX");
  if (!mkdtemp(s->dir))
    return -1;
  char port_file[96], js[512];
  snprintf(port_file, sizeof port_file, "%s/port", s->dir);
  snprintf(js, sizeof js, "%s/tests/interop/conform/server.js", src_root());
  char *argv[] = {"node", js, port_file, NULL, NULL, NULL, NULL, NULL};
  if (tls) {
    argv[3] = "--tls-cert";
    argv[4] = (char *)tls->cert;
    argv[5] = "--tls-key";
    argv[6] = (char *)tls->key;
  }
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  s->node_pid = fork();
  if (s->node_pid == 0) {
    close(fds[0]);
    exec_node(argv, fds[1]);
  }
  close(fds[1]);
  s->kind = SRV_GRPC_JS;
  int rc = s->node_pid > 0 ? read_listening_line(fds[0], s->endpoint, sizeof s->endpoint) : -1;
  close(fds[0]);
  if (rc != 0)
    fprintf(stderr,
            "conformance: the grpc-js server (node %s/tests/interop/conform/server.js) "
            "did not start: is node 20+ installed?\n",
            src_root());
  return rc;
}

static void stop_node(server *s) {
  if (s->node_pid > 0) {
    kill(s->node_pid, SIGTERM);
    int st = 0;
    waitpid(s->node_pid, &st, 0);
    s->node_pid = 0;
  }
  char port_file[96];
  snprintf(port_file, sizeof port_file, "%s/port", s->dir);
  unlink(port_file);
  rmdir(s->dir);
}

static int group_setup_mim_local(void **state) {
  (void)state;
  memset(&g_srv, 0, sizeof g_srv);
  return start_mim_local(&g_srv, k_mim_args);
}

static int group_teardown_mim_local(void **state) {
  (void)state;
  return mim_local_stop(g_srv.ml) == 0 ? 0 : -1;
}

static int group_setup_node(void **state) {
  (void)state;
  memset(&g_srv, 0, sizeof g_srv);
  int rc = start_node(&g_srv, NULL);
  if (rc != 0)
    stop_node(&g_srv);
  return rc;
}

static int group_teardown_node(void **state) {
  (void)state;
  stop_node(&g_srv);
  return 0;
}

/* ---- the transport and calls ---- */

static mim_transport *transport_to(const char *endpoint) {
  mim_transport_config cfg = {.hosts = {endpoint, NULL, NULL}, .auth_token = "", .plaintext = true};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  return t;
}

/* One unary call's outcome; the response is copied (malloc'd) for large messages. */
typedef struct unary_result {
  waiter w;
  mim_status status;
  char detail[256];
  uint8_t *response;
  size_t response_len;
  int64_t done_ms;
  waiter *shared; /* bumped too when not NULL (many calls, one waiter) */
} unary_result;

static void unary_cb(void *user, mim_status status, const char *detail, const uint8_t *response,
                     size_t response_len) {
  unary_result *r = user;
  r->status = status;
  snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
  r->response_len = response_len;
  if (response_len) {
    r->response = malloc(response_len);
    if (r->response)
      memcpy(r->response, response, response_len);
  }
  r->done_ms = cmn_mono_ms();
  waiter *shared = r->shared;
  waiter_bump(&r->w);
  if (shared)
    waiter_bump(shared);
}

static void result_init(unary_result *r) {
  memset(r, 0, sizeof *r);
  waiter_init(&r->w);
  r->status = MIM_ERR_UNKNOWN;
}

static void result_free(unary_result *r) {
  free(r->response);
  waiter_destroy(&r->w);
}

static void start_unary(mim_transport *t, const char *method, const char *cache,
                        const mim_pb_buf *req, int64_t deadline_ms, unary_result *r,
                        mim_call **call) {
  assert_int_equal(mim_transport_unary(t, MIM_HOST_CACHE, method, cache, req ? req->data : NULL,
                                       req ? req->len : 0, deadline_ms, unary_cb, r, call),
                   MIM_OK);
}

/* A blocking call through the async API; the result must be freed (result_free). */
static void unary(mim_transport *t, const char *method, const char *cache, const mim_pb_buf *req,
                  unary_result *r) {
  result_init(r);
  start_unary(t, method, cache, req, wait_ms(), r, NULL);
  assert_int_equal(waiter_wait(&r->w, 1, wait_ms() + 5000), 1);
}

static mim_status ping(mim_transport *t, const char *cache) {
  unary_result r;
  unary(t, PING, cache, NULL, &r);
  mim_status st = r.status;
  if (st != MIM_OK)
    fprintf(stderr, "ping: status %d: %s\n", st, r.detail);
  result_free(&r);
  return st;
}

static void pack_push(mim_pb_buf *buf, const char *list, const uint8_t *value, size_t len) {
  CacheClient__ListPushBackRequest req = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  req.value = (ProtobufCBinaryData){len, (uint8_t *)value};
  req.ttl_milliseconds = 600000;
  assert_int_equal(mim_pb_pack(&req.base, buf), MIM_OK);
}

static void pack_fetch(mim_pb_buf *buf, const char *list) {
  CacheClient__ListFetchRequest req = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  assert_int_equal(mim_pb_pack(&req.base, buf), MIM_OK);
}

static void push(mim_transport *t, const char *list, const uint8_t *value, size_t len) {
  mim_pb_buf buf;
  pack_push(&buf, list, value, len);
  unary_result r;
  unary(t, PUSH, CACHE, &buf, &r);
  mim_pb_buf_release(&buf);
  if (r.status != MIM_OK)
    fprintf(stderr, "push %s (%zu bytes): %d %s\n", list, len, r.status, r.detail);
  assert_int_equal(r.status, MIM_OK);
  result_free(&r);
}

/* ListFetch; the caller frees r. */
static void fetch(mim_transport *t, const char *list, unary_result *r) {
  mim_pb_buf buf;
  pack_fetch(&buf, list);
  unary(t, FETCH, CACHE, &buf, r);
  mim_pb_buf_release(&buf);
}

static CacheClient__ListFetchResponse *decode_fetch(const unary_result *r) {
  ProtobufCMessage *m = NULL;
  assert_int_equal(mim_pb_unpack(&cache_client____list_fetch_response__descriptor, r->response,
                                 r->response_len, &m),
                   MIM_OK);
  return (CacheClient__ListFetchResponse *)m;
}

/* ---- streams ---- */

typedef struct stream_result {
  waiter messages; /* every message */
  waiter closed;
  pthread_mutex_t mu;
  char last_text[64]; /* text of the last item ("" for heartbeats) */
  int items;
  int undecodable; /* messages that are not a _SubscriptionItem: must stay 0 */
  mim_status status;
  char detail[256];
  mim_call *call;
  waiter *shared_first; /* bumped on the first message, when not NULL */
  waiter *shared_closed;
} stream_result;

static void on_message(void *user, const uint8_t *msg, size_t len) {
  stream_result *s = user;
  ProtobufCMessage *m = NULL;
  if (mim_pb_unpack(&cache_client__pubsub____subscription_item__descriptor, msg, len, &m) ==
      MIM_OK) {
    const CacheClient__Pubsub__SubscriptionItem *it = (const void *)m;
    pthread_mutex_lock(&s->mu);
    if (it->kind_case == CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM) {
      const CacheClient__Pubsub__TopicValue *v = it->item->value;
      snprintf(s->last_text, sizeof s->last_text, "%s", v && v->text ? v->text : "");
      s->items++;
    }
    pthread_mutex_unlock(&s->mu);
    mim_pb_free(m);
  } else {
    pthread_mutex_lock(&s->mu);
    s->undecodable++;
    pthread_mutex_unlock(&s->mu);
  }
  int first = s->messages.count == 0;
  waiter_bump(&s->messages);
  if (first && s->shared_first)
    waiter_bump(s->shared_first);
}

static void on_close(void *user, mim_status status, const char *detail) {
  stream_result *s = user;
  s->status = status;
  snprintf(s->detail, sizeof s->detail, "%s", detail ? detail : "");
  waiter *shared = s->shared_closed;
  waiter_bump(&s->closed);
  if (shared)
    waiter_bump(shared);
}

static void stream_init(stream_result *s) {
  memset(s, 0, sizeof *s);
  waiter_init(&s->messages);
  waiter_init(&s->closed);
  pthread_mutex_init(&s->mu, NULL);
  s->status = MIM_ERR_UNKNOWN;
}

static void stream_free(stream_result *s) {
  assert_int_equal(s->undecodable, 0);
  waiter_destroy(&s->messages);
  waiter_destroy(&s->closed);
  pthread_mutex_destroy(&s->mu);
}

static void subscribe(mim_transport *t, const char *topic, stream_result *s) {
  CacheClient__Pubsub__SubscriptionRequest req = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  req.cache_name = (char *)CACHE;
  req.topic = (char *)topic;
  mim_pb_buf buf;
  assert_int_equal(mim_pb_pack(&req.base, &buf), MIM_OK);
  mim_stream_callbacks cb = {.on_message = on_message, .on_close = on_close, .user = s};
  assert_int_equal(mim_transport_stream(t, MIM_HOST_CACHE, SUBSCRIBE, CACHE, buf.data, buf.len, 0,
                                        &cb, &s->call),
                   MIM_OK);
  mim_pb_buf_release(&buf);
}

static void publish(mim_transport *t, const char *topic, const char *text) {
  CacheClient__Pubsub__TopicValue v = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT;
  v.text = (char *)text;
  CacheClient__Pubsub__PublishRequest req = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  req.cache_name = (char *)CACHE;
  req.topic = (char *)topic;
  req.value = &v;
  mim_pb_buf buf;
  assert_int_equal(mim_pb_pack(&req.base, &buf), MIM_OK);
  unary_result r;
  unary(t, PUBLISH, CACHE, &buf, &r);
  mim_pb_buf_release(&buf);
  assert_int_equal(r.status, MIM_OK);
  result_free(&r);
}

/* Waits for the stream's end; the caller checks s->status. */
static void wait_closed(stream_result *s) {
  assert_int_equal(waiter_wait(&s->closed, 1, wait_ms()), 1);
}

/* The grpc-js server's "cancelled=C peers=P"; with min_cancelled > 0 it answers once C
 * reaches that (or after 5 s), as the server handles a cancel on its own schedule. */
static void node_stats(mim_transport *t, int min_cancelled, int *cancelled, int *peers) {
  char list[48];
  if (min_cancelled > 0)
    snprintf(list, sizeof list, "conform:stats:%d", min_cancelled);
  else
    snprintf(list, sizeof list, "conform:stats");
  unary_result r;
  fetch(t, list, &r);
  assert_int_equal(r.status, MIM_OK);
  CacheClient__ListFetchResponse *resp = decode_fetch(&r);
  assert_int_equal(resp->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND);
  assert_int_equal(resp->found->n_values, 1);
  char text[64];
  ProtobufCBinaryData v = resp->found->values[0];
  snprintf(text, sizeof text, "%.*s", (int)v.len, (const char *)v.data);
  assert_int_equal(sscanf(text, "cancelled=%d peers=%d", cancelled, peers), 2);
  mim_pb_free(&resp->base);
  result_free(&r);
}

/* ---- cases ---- */

static void test_unary_ok(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  assert_int_equal(ping(t, NULL), MIM_OK);
  push(t, "rt", (const uint8_t *)"first", 5);
  push(t, "rt", (const uint8_t *)"", 0);
  push(t, "rt", (const uint8_t *)"th\0rd", 5);
  unary_result r;
  fetch(t, "rt", &r);
  assert_int_equal(r.status, MIM_OK);
  CacheClient__ListFetchResponse *resp = decode_fetch(&r);
  assert_int_equal(resp->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND);
  assert_int_equal(resp->found->n_values, 3);
  assert_memory_equal(resp->found->values[0].data, "first", 5);
  assert_int_equal(resp->found->values[1].len, 0);
  assert_int_equal(resp->found->values[2].len, 5);
  assert_memory_equal(resp->found->values[2].data, "th\0rd", 5);
  mim_pb_free(&resp->base);
  result_free(&r);
  mim_transport_free(t);
}

static void test_stream_publish(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  stream_result s;
  stream_init(&s);
  subscribe(t, "chat", &s);
  /* Both servers send a heartbeat at once: the subscription is in place after it. */
  assert_int_equal(waiter_wait(&s.messages, 1, wait_ms()), 1);
  publish(t, "chat", "hello");
  publish(t, "chat", "world");
  assert_true(waiter_wait(&s.messages, 3, wait_ms()) >= 3);
  pthread_mutex_lock(&s.mu);
  assert_int_equal(s.items, 2);
  assert_string_equal(s.last_text, "world");
  pthread_mutex_unlock(&s.mu);
  mim_call_cancel(s.call);
  wait_closed(&s);
  assert_int_equal(s.status, MIM_ERR_CANCELLED);
  stream_free(&s);
  mim_transport_free(t);
}

/* The server ends the stream: grpc-js after N items with OK; mim-local has no such
 * method, so SIGUSR1 (its test control) ends every stream with UNAVAILABLE. */
static void test_stream_end(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  stream_result s;
  stream_init(&s);
  if (g_srv.kind == SRV_GRPC_JS) {
    subscribe(t, "stream:5", &s);
    wait_closed(&s);
    assert_int_equal(s.status, MIM_OK);
    assert_int_equal(s.items, 5);
    assert_string_equal(s.last_text, "item-5");
  } else {
    subscribe(t, "ending", &s);
    assert_int_equal(waiter_wait(&s.messages, 1, wait_ms()), 1);
    assert_int_equal(mim_local_signal(g_srv.ml, SIGUSR1), 0);
    wait_closed(&s);
    assert_int_equal(s.status, MIM_ERR_UNAVAILABLE);
  }
  stream_free(&s);
  mim_transport_free(t);
}

/* A call the server will not answer: grpc-js's "hang"; mim-local frozen (SIGSTOP). The
 * connection is set up first so the call itself is what waits. */
static void begin_hang(mim_transport *t) {
  assert_int_equal(ping(t, NULL), MIM_OK);
  if (g_srv.kind == SRV_MIM_LOCAL)
    assert_int_equal(mim_local_freeze(g_srv.ml, 5000), 0);
}

static void end_hang(void) {
  if (g_srv.kind == SRV_MIM_LOCAL)
    assert_int_equal(mim_local_signal(g_srv.ml, SIGCONT), 0);
}

static void test_deadline(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  begin_hang(t);
  const int64_t deadline = 300;
  unary_result r;
  result_init(&r);
  int64_t start = cmn_mono_ms();
  start_unary(t, PING, "hang", NULL, deadline, &r, NULL);
  int got = waiter_wait(&r.w, 1, wait_ms());
  end_hang();
  assert_int_equal(got, 1);
  assert_int_equal(r.status, MIM_ERR_DEADLINE_EXCEEDED);
  int64_t took = r.done_ms - start;
  assert_true(took >= deadline - 20);
  assert_true(took <= deadline + 1000 * scale());
  result_free(&r);
  assert_int_equal(ping(t, NULL), MIM_OK);
  mim_transport_free(t);
}

static void test_cancel_unary(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  int before = 0, after = 0, peers = 0;
  if (g_srv.kind == SRV_GRPC_JS)
    node_stats(t, 0, &before, &peers);
  begin_hang(t);
  unary_result r;
  result_init(&r);
  mim_call *call = NULL;
  start_unary(t, PING, "hang", NULL, 0, &r, &call);
  /* A call on the same connection started after it completes only once the server has
   * read that far, so the hung call has reached the server (grpc-js). */
  if (g_srv.kind == SRV_GRPC_JS)
    assert_int_equal(ping(t, NULL), MIM_OK);
  int64_t start = cmn_mono_ms();
  mim_call_cancel(call);
  int got = waiter_wait(&r.w, 1, wait_ms());
  end_hang();
  assert_int_equal(got, 1);
  assert_int_equal(r.status, MIM_ERR_CANCELLED);
  assert_true(r.done_ms - start <= 1000 * scale());
  result_free(&r);
  if (g_srv.kind == SRV_GRPC_JS) {
    node_stats(t, before + 1, &after, &peers);
    assert_int_equal(after, before + 1);
  } else {
    assert_int_equal(ping(t, NULL), MIM_OK);
  }
  mim_transport_free(t);
}

/* grpc-js counts the cancel; mim-local (one subscriber per topic here) takes a new
 * subscriber on the topic only once it has dropped the cancelled one. */
static void test_cancel_stream(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  int before = 0, after = 0, peers = 0;
  if (g_srv.kind == SRV_GRPC_JS)
    node_stats(t, 0, &before, &peers);
  stream_result s;
  stream_init(&s);
  subscribe(t, "cancel-me", &s);
  assert_int_equal(waiter_wait(&s.messages, 1, wait_ms()), 1);
  mim_call_cancel(s.call);
  wait_closed(&s);
  assert_int_equal(s.status, MIM_ERR_CANCELLED);
  stream_free(&s);
  if (g_srv.kind == SRV_GRPC_JS) {
    node_stats(t, before + 1, &after, &peers);
    assert_int_equal(after, before + 1);
  } else {
    /* The server drops the subscriber on its own threads: retry, paced, bounded. */
    mim_status st = MIM_ERR_UNKNOWN;
    for (int i = 0; i < 50 && st != MIM_OK; i++) {
      stream_result again;
      stream_init(&again);
      subscribe(t, "cancel-me", &again);
      if (waiter_wait(&again.messages, 1, wait_ms()) == 1) {
        st = MIM_OK;
        mim_call_cancel(again.call);
      }
      wait_closed(&again);
      if (st != MIM_OK) {
        assert_int_equal(again.status, MIM_ERR_RESOURCE_EXHAUSTED);
        test_sleep_ms(100);
      }
      stream_free(&again);
    }
    assert_int_equal(st, MIM_OK);
  }
  mim_transport_free(t);
}

/* An error before any message (Trailers-Only): code and percent-decoded message. */
static void test_trailers_only_error(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  unary_result r;
  if (g_srv.kind == SRV_GRPC_JS) {
    unary(t, PING, "fail:9", NULL, &r);
    assert_int_equal(r.status, MIM_ERR_FAILED_PRECONDITION);
    assert_string_equal(r.detail, FAIL_MESSAGE);
  } else {
    mim_pb_buf buf;
    pack_fetch(&buf, "x");
    unary(t, FETCH, "no-such-cache", &buf, &r);
    mim_pb_buf_release(&buf);
    assert_int_equal(r.status, MIM_ERR_NOT_FOUND);
    assert_true(r.detail[0] != '\0');
    assert_null(strchr(r.detail, '%'));
  }
  result_free(&r);
  mim_transport_free(t);
}

/* The grpc-js server refuses like hosted Momento past a limit: RESOURCE_EXHAUSTED with
 * the cause in the "err" trailer, in a Trailers-Only answer (Ping) and after a message
 * (Subscribe); without err the cause comes from the words, an unknown err stays unknown. */
static void test_limit_cause(void **state) {
  (void)state;
  static const struct {
    const char *spec;
    mim_limit_cause cause;
  } cases[] = {
      {"limit:operations_rate_limit_exceeded", MIM_LIMIT_OPERATIONS_RATE},
      {"limit:throughput_rate_limit_exceeded", MIM_LIMIT_THROUGHPUT_RATE},
      {"limit:topic_subscriptions_limit_exceeded", MIM_LIMIT_TOPIC_SUBSCRIPTIONS},
      {"limit:request_size_limit_exceeded", MIM_LIMIT_REQUEST_SIZE},
      {"limit:-", MIM_LIMIT_TOPIC_SUBSCRIPTIONS},
      {"limit:no_such_limit_exceeded", MIM_LIMIT_UNKNOWN},
  };
  mim_transport *t = transport_to(g_srv.endpoint);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unary_result r;
    unary(t, PING, cases[i].spec, NULL, &r);
    assert_int_equal(r.status, MIM_ERR_RESOURCE_EXHAUSTED);
    assert_int_equal(mim_limit_cause_of(r.detail), cases[i].cause);
    assert_non_null(strstr(r.detail, cases[i].cause == MIM_LIMIT_TOPIC_SUBSCRIPTIONS &&
                                             strcmp(cases[i].spec, "limit:-") == 0
                                         ? ": too many subscribers"
                                         : ": conform limit: "));
    result_free(&r);
    stream_result s;
    stream_init(&s);
    subscribe(t, cases[i].spec, &s);
    wait_closed(&s);
    assert_int_equal(s.status, MIM_ERR_RESOURCE_EXHAUSTED);
    assert_int_equal(mim_limit_cause_of(s.detail), cases[i].cause);
    stream_free(&s);
  }
  mim_transport_free(t);
}

static void test_unimplemented(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  unary_result r;
  unary(t, "/cache_client.Scs/NoSuchMethod", CACHE, NULL, &r);
  assert_int_equal(r.status, MIM_ERR_UNIMPLEMENTED);
  result_free(&r);
  unary(t, "/no.such.Service/Ping", CACHE, NULL, &r);
  assert_int_equal(r.status, MIM_ERR_UNIMPLEMENTED);
  result_free(&r);
  mim_transport_free(t);
}

/* Pushes values of the given sizes (filled with their index) to list. */
static void push_sizes(mim_transport *t, const char *list, const size_t *sizes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t *v = malloc(sizes[i]);
    assert_non_null(v);
    memset(v, (int)('a' + i), sizes[i]);
    push(t, list, v, sizes[i]);
    free(v);
  }
}

/* Values making a ListFetch response exactly total bytes: each value costs 5 bytes of
 * framing (tag + 4-byte length, as each is >= 2 MiB), the Found wrapper 5 more. */
static void four_values_for(size_t total, size_t sizes[4]) {
  size_t payload = total - 25; /* 4 values x 5 + the wrapper's 5 */
  const size_t each = 4 * MIB - 64;
  for (int i = 0; i < 3; i++)
    sizes[i] = each;
  sizes[3] = payload - (size_t)3 * each;
}

static void test_large_messages(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  size_t four = 4 * MIB;
  push_sizes(t, "big4", &four, 1);
  unary_result r;
  fetch(t, "big4", &r);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.response_len, 4 * MIB + 10);
  CacheClient__ListFetchResponse *resp = decode_fetch(&r);
  assert_int_equal(resp->found->n_values, 1);
  assert_int_equal(resp->found->values[0].len, 4 * MIB);
  assert_int_equal(resp->found->values[0].data[4 * MIB - 1], 'a');
  mim_pb_free(&resp->base);
  result_free(&r);

  size_t sizes[4];
  four_values_for(16 * MIB, sizes);
  push_sizes(t, "big16", sizes, 4);
  fetch(t, "big16", &r);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.response_len, 16 * MIB);
  result_free(&r);

  four_values_for(16 * MIB + 1, sizes);
  push_sizes(t, "big16p1", sizes, 4);
  fetch(t, "big16p1", &r);
  assert_int_equal(r.status, MIM_ERR_RESOURCE_EXHAUSTED);
  result_free(&r);
  /* The connection is still fine. */
  assert_int_equal(ping(t, NULL), MIM_OK);
  mim_transport_free(t);
}

static void test_concurrent_unary(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  const int n = count(1000);
  unary_result *rs = calloc((size_t)n, sizeof *rs);
  assert_non_null(rs);
  waiter all;
  waiter_init(&all);
  for (int i = 0; i < n; i++) {
    result_init(&rs[i]);
    rs[i].shared = &all;
    start_unary(t, PING, NULL, NULL, (int64_t)wait_ms() * 3, &rs[i], NULL);
  }
  assert_int_equal(waiter_wait(&all, n, (int64_t)wait_ms() * 3 + 5000), n);
  int ok = 0;
  for (int i = 0; i < n; i++) {
    /* The shared bump comes after the result's own: wait for that one too. */
    waiter_wait(&rs[i].w, 1, wait_ms());
    ok += rs[i].status == MIM_OK;
    result_free(&rs[i]);
  }
  assert_int_equal(ok, n);
  free(rs);
  waiter_destroy(&all);
  mim_transport_free(t);
}

static void test_concurrent_streams(void **state) {
  (void)state;
  mim_transport *t = transport_to(g_srv.endpoint);
  const int n = count(200);
  stream_result *ss = calloc((size_t)n, sizeof *ss);
  assert_non_null(ss);
  waiter first, closed;
  waiter_init(&first);
  waiter_init(&closed);
  for (int i = 0; i < n; i++) {
    char topic[32];
    snprintf(topic, sizeof topic, "many-%d", i);
    stream_init(&ss[i]);
    ss[i].shared_first = &first;
    ss[i].shared_closed = &closed;
    subscribe(t, topic, &ss[i]);
  }
  assert_int_equal(waiter_wait(&first, n, (int64_t)wait_ms() * 3), n);
  publish(t, "many-0", "to the first");
  assert_true(waiter_wait(&ss[0].messages, 2, wait_ms()) >= 2);
  for (int i = 0; i < n; i++)
    mim_call_cancel(ss[i].call);
  assert_int_equal(waiter_wait(&closed, n, (int64_t)wait_ms() * 3), n);
  int cancelled = 0;
  for (int i = 0; i < n; i++) {
    wait_closed(&ss[i]);
    cancelled += ss[i].status == MIM_ERR_CANCELLED;
    stream_free(&ss[i]);
  }
  assert_int_equal(cancelled, n);
  free(ss);
  waiter_destroy(&first);
  waiter_destroy(&closed);
  mim_transport_free(t);
}

/* Calls keep succeeding across the server's graceful GOAWAY: grpc-js drains on a
 * "goaway" Ping (and counts the new connection); mim-local closes every connection
 * after 300 ms (--max-connection-age-ms, a server of its own). */
static void test_goaway(void **state) {
  (void)state;
  if (g_srv.kind == SRV_GRPC_JS) {
    mim_transport *t = transport_to(g_srv.endpoint);
    int c = 0, before = 0, after = 0;
    node_stats(t, 0, &c, &before);
    assert_int_equal(ping(t, "goaway"), MIM_OK);
    for (int i = 0; i < 5; i++)
      assert_int_equal(ping(t, NULL), MIM_OK);
    node_stats(t, 0, &c, &after);
    assert_true(after > before);
    mim_transport_free(t);
    return;
  }
  server s = {0};
  const char *const extra[] = {"--max-connection-age-ms", "300", NULL};
  assert_int_equal(start_mim_local(&s, extra), 0);
  mim_transport *t = transport_to(s.endpoint);
  int64_t until = cmn_mono_ms() + 1500;
  int calls = 0;
  while (cmn_mono_ms() < until || calls < 10) {
    assert_int_equal(ping(t, NULL), MIM_OK);
    calls++;
    test_sleep_ms(20); /* pacing: a few calls per connection lifetime */
  }
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(s.ml), 0);
}

/* mim-local stopped: calls fail UNAVAILABLE promptly; started again on the same port, the
 * same transport's calls succeed again (after its reconnect backoff). */
static void test_server_restart(void **state) {
  (void)state;
  server s = {0};
  assert_int_equal(start_mim_local(&s, NULL), 0);
  mim_transport *t = transport_to(s.endpoint);
  assert_int_equal(ping(t, NULL), MIM_OK);
  char port[16];
  snprintf(port, sizeof port, "%d", s.ml->port);
  assert_int_equal(mim_local_stop(s.ml), 0);
  int64_t start = cmn_mono_ms();
  assert_int_equal(ping(t, NULL), MIM_ERR_UNAVAILABLE);
  assert_true(cmn_mono_ms() - start <= 2000 * scale());
  const char *const extra[] = {"--port", port, NULL};
  assert_int_equal(start_mim_local(&s, extra), 0);
  mim_status st = MIM_ERR_UNAVAILABLE;
  int64_t until = cmn_mono_ms() + 15000 * scale();
  while (st == MIM_ERR_UNAVAILABLE && cmn_mono_ms() < until) {
    unary_result r;
    unary(t, PING, NULL, NULL, &r);
    st = r.status;
    result_free(&r);
    if (st == MIM_ERR_UNAVAILABLE)
      test_sleep_ms(100); /* the transport's reconnect backoff decides; pace the probe */
  }
  assert_int_equal(st, MIM_OK);
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(s.ml), 0);
}

/* TLS (tests/support/test_ca.h) against a server of its own of the group's kind
 * (mim-local --tls-cert/--tls-key, server.js --tls-cert/--tls-key): the good certificate
 * with our CA as ca_file works; a certificate for another host, an expired one and one
 * from an unknown CA each fail the call with UNAVAILABLE, promptly. */
static mim_status tls_ping(const test_cert_files *cert, const char *ca_file) {
  server s = {0};
  const char *const extra[] = {"--tls-cert", cert->cert, "--tls-key", cert->key, NULL};
  if (g_srv.kind == SRV_GRPC_JS) {
    int rc = start_node(&s, cert);
    if (rc != 0)
      stop_node(&s);
    assert_int_equal(rc, 0);
  } else {
    assert_int_equal(start_mim_local(&s, extra), 0);
  }
  mim_transport_config cfg = {
      .hosts = {s.endpoint, NULL, NULL}, .auth_token = "", .plaintext = false, .ca_file = ca_file};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  int64_t start = cmn_mono_ms();
  mim_status st = ping(t, NULL);
  assert_true(cmn_mono_ms() - start <= 5000 * scale());
  mim_transport_free(t);
  if (s.kind == SRV_GRPC_JS)
    stop_node(&s);
  else
    assert_int_equal(mim_local_stop(s.ml), 0);
  return st;
}

static void test_tls(void **state) {
  (void)state;
  test_ca ca;
  assert_int_equal(test_ca_create(&ca), 0);
  mim_status good = tls_ping(&ca.good, ca.ca_file);
  mim_status wrong = tls_ping(&ca.wrong, ca.ca_file);
  mim_status expired = tls_ping(&ca.expired, ca.ca_file);
  mim_status untrusted = tls_ping(&ca.untrusted, ca.ca_file);
  test_ca_remove(&ca);
  assert_int_equal(good, MIM_OK);
  assert_int_equal(wrong, MIM_ERR_UNAVAILABLE);
  assert_int_equal(expired, MIM_ERR_UNAVAILABLE);
  assert_int_equal(untrusted, MIM_ERR_UNAVAILABLE);
}

#define CASES()                                                                                    \
  cmocka_unit_test(test_unary_ok), cmocka_unit_test(test_stream_publish),                          \
      cmocka_unit_test(test_stream_end), cmocka_unit_test(test_deadline),                          \
      cmocka_unit_test(test_cancel_unary), cmocka_unit_test(test_cancel_stream),                   \
      cmocka_unit_test(test_trailers_only_error), cmocka_unit_test(test_unimplemented),            \
      cmocka_unit_test(test_large_messages), cmocka_unit_test(test_concurrent_unary),              \
      cmocka_unit_test(test_concurrent_streams), cmocka_unit_test(test_goaway),                    \
      cmocka_unit_test(test_tls)

int main(void) {
  /* Restarting a server on its port is mim-local's case only. */
  const struct CMUnitTest mim_cases[] = {CASES(), cmocka_unit_test(test_server_restart)};
  const struct CMUnitTest node_cases[] = {CASES(), cmocka_unit_test(test_limit_cause)};
  int failed = cmocka_run_group_tests_name("conformance: mim-local", mim_cases,
                                           group_setup_mim_local, group_teardown_mim_local);
  failed += cmocka_run_group_tests_name("conformance: grpc-js", node_cases, group_setup_node,
                                        group_teardown_node);
  return failed;
}
