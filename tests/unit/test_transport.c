/* Transport tests against the in-process gRPC core test server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "grpc_test_server.h"
#include "test_clock.h"
#include "transport.h"
#include "waiter.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000 /* upper bound for anything that should happen "soon" */

/* Timing slack in ms for timer precision checks; sanitizer and valgrind runs are slow
 * (run-all.sh passes SANITIZE; set MIM_TEST_SLOW=1 by hand under valgrind). */
static int64_t slack_ms(void) {
  const char *san = getenv("SANITIZE");
  const char *slow = getenv("MIM_TEST_SLOW");
  return (san && *san) || (slow && *slow) ? 300 : 30;
}

typedef struct fixture {
  grpc_test_server *server;
  mim_transport *t;
} fixture;

/* ---- helpers ---- */

static mim_transport *make_transport(const char *cache_host, const char *agent) {
  mim_transport_config cfg = {
      .hosts = {cache_host, NULL, NULL}, .auth_token = "tok-1", .plaintext = true, .agent = agent};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  assert_non_null(t);
  return t;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->server = grpc_test_server_start();
  assert_non_null(f->server);
  f->t = make_transport(grpc_test_server_address(f->server), NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  mim_transport_free(f->t);
  grpc_test_server_stop(f->server);
  free(f);
  return 0;
}

/* Result of one async unary call. */
typedef struct unary_result {
  waiter w;
  mim_status status;
  char detail[256];
  char response[256];
  size_t response_len;
  mim_call *call; /* for cancel-from-callback tests */
} unary_result;

static void unary_cb(void *user, mim_status status, const char *detail, const uint8_t *response,
                     size_t response_len) {
  unary_result *r = user;
  r->status = status;
  snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "(null)");
  r->response_len = response_len;
  if (response_len && response_len < sizeof r->response)
    memcpy(r->response, response, response_len);
  waiter_bump(&r->w);
}

static mim_status sync_call(fixture *f, const char *method, const char *req, int64_t deadline_ms,
                            char *out, size_t cap) {
  uint8_t *resp = NULL;
  size_t len = 0;
  mim_status st =
      mim_transport_unary_sync(f->t, MIM_HOST_CACHE, method, "my-cache", (const uint8_t *)req,
                               req ? strlen(req) : 0, deadline_ms, &resp, &len);
  if (out) {
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n)
      memcpy(out, resp, n);
    out[n] = '\0';
  }
  free(resp);
  return st;
}

/* ---- unary ---- */

static void test_unary_sync_ping_and_echo(void **state) {
  fixture *f = *state;
  uint8_t *resp = (uint8_t *)"x";
  size_t len = 99;
  assert_int_equal(mim_transport_unary_sync(f->t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                            NULL, 0, 2000, &resp, &len),
                   MIM_OK);
  assert_null(resp);
  assert_int_equal(len, 0);
  char out[64];
  assert_int_equal(sync_call(f, "/test.Echo/Unary", "hello bytes", 2000, out, sizeof out), MIM_OK);
  assert_string_equal(out, "hello bytes");
}

static void test_unary_large_message(void **state) {
  fixture *f = *state;
  size_t n = 2 * 1024 * 1024 + 7;
  uint8_t *req = malloc(n);
  assert_non_null(req);
  for (size_t i = 0; i < n; i++)
    req[i] = (uint8_t)(i * 31 + 7);
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(mim_transport_unary_sync(f->t, MIM_HOST_CACHE, "/test.Echo/Unary", NULL, req, n,
                                            5000, &resp, &len),
                   MIM_OK);
  assert_int_equal(len, n);
  assert_memory_equal(resp, req, n);
  free(resp);
  free(req);
}

static void test_unary_async_ok(void **state) {
  fixture *f = *state;
  unary_result r = {0};
  waiter_init(&r.w);
  const char *req = "async!";
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/test.Echo/Unary", NULL,
                                       (const uint8_t *)req, strlen(req), 2000, unary_cb, &r, NULL),
                   MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.response_len, strlen(req));
  assert_memory_equal(r.response, req, strlen(req));
  waiter_destroy(&r.w);
}

static void test_metadata_sent(void **state) {
  fixture *f = *state;
  char v[128];
  assert_int_equal(sync_call(f, "/cache_client.Ping/Ping", NULL, 2000, NULL, 0), MIM_OK);
  assert_true(grpc_test_server_last_metadata(f->server, "authorization", v, sizeof v));
  assert_string_equal(v, "tok-1");
  assert_true(grpc_test_server_last_metadata(f->server, "cache", v, sizeof v));
  assert_string_equal(v, "my-cache");
  assert_true(grpc_test_server_last_metadata(f->server, "agent", v, sizeof v));
  assert_string_equal(v, "c:im:" MIM_VERSION_STRING);
  assert_true(grpc_test_server_last_metadata(f->server, "runtime-version", v, sizeof v));
  assert_string_equal(v, "c:c11");
  assert_true(grpc_test_server_last_method(f->server, v, sizeof v));
  assert_string_equal(v, "/cache_client.Ping/Ping");

  /* No cache name: no "cache" header. */
  uint8_t *resp;
  size_t len;
  assert_int_equal(mim_transport_unary_sync(f->t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                            NULL, 0, 2000, &resp, &len),
                   MIM_OK);
  free(resp);
  assert_false(grpc_test_server_last_metadata(f->server, "cache", v, sizeof v));
}

static void test_custom_agent(void **state) {
  fixture *f = *state;
  mim_transport *t = make_transport(grpc_test_server_address(f->server), "c:test:9");
  uint8_t *resp;
  size_t len;
  assert_int_equal(mim_transport_unary_sync(t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                            NULL, 0, 2000, &resp, &len),
                   MIM_OK);
  free(resp);
  char v[64];
  assert_true(grpc_test_server_last_metadata(f->server, "agent", v, sizeof v));
  assert_string_equal(v, "c:test:9");
  mim_transport_free(t);
}

static void test_set_auth_token(void **state) {
  fixture *f = *state;
  char v[64];
  assert_int_equal(mim_transport_set_auth_token(f->t, "tok-2"), MIM_OK);
  assert_int_equal(sync_call(f, "/cache_client.Ping/Ping", NULL, 2000, NULL, 0), MIM_OK);
  assert_true(grpc_test_server_last_metadata(f->server, "authorization", v, sizeof v));
  assert_string_equal(v, "tok-2");
  assert_int_equal(mim_transport_set_auth_token(f->t, ""), MIM_OK);
  assert_int_equal(sync_call(f, "/cache_client.Ping/Ping", NULL, 2000, NULL, 0), MIM_OK);
  assert_true(grpc_test_server_last_metadata(f->server, "authorization", v, sizeof v));
  assert_string_equal(v, "");
  assert_int_equal(mim_transport_set_auth_token(f->t, NULL), MIM_ERR_INVALID_ARGUMENT);
}

static void test_status_mapping(void **state) {
  fixture *f = *state;
  static const struct {
    const char *req;
    mim_status want;
    const char *detail;
  } cases[] = {
      {"5 no such cache", MIM_ERR_NOT_FOUND, "no such cache"},
      {"7 not allowed here", MIM_ERR_PERMISSION_DENIED, "not allowed here"},
      {"16 token expired", MIM_ERR_UNAUTHENTICATED, "token expired"},
      {"3 bad list name", MIM_ERR_INVALID_ARGUMENT, "bad list name"},
      {"8 too many requests", MIM_ERR_RESOURCE_EXHAUSTED,
       "[err=unknown] Limit exceeded for this account: too many requests"},
      {"14 try again", MIM_ERR_UNAVAILABLE, "try again"},
      {"6 exists", MIM_ERR_ALREADY_EXISTS, "exists"},
      {"9 precondition", MIM_ERR_FAILED_PRECONDITION, "precondition"},
      {"13 boom", MIM_ERR_INTERNAL, "boom"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(sync_call(f, "/test.Fail/Status", cases[i].req, 2000, NULL, 0), cases[i].want);
    assert_string_equal(mim_last_error_detail(), cases[i].detail);
  }
  assert_int_equal(sync_call(f, "/test.Fail/NotFound", NULL, 2000, NULL, 0), MIM_ERR_NOT_FOUND);
  assert_string_equal(mim_last_error_detail(), "cache not found");
  assert_int_equal(sync_call(f, "/no.Such/Method", NULL, 2000, NULL, 0), MIM_ERR_UNIMPLEMENTED);

  /* Async path passes the detail too. */
  unary_result r = {0};
  waiter_init(&r.w);
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/test.Fail/NotFound", "c", NULL, 0,
                                       2000, unary_cb, &r, NULL),
                   MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_NOT_FOUND);
  assert_string_equal(r.detail, "cache not found");
  assert_int_equal(r.response_len, 0);
  waiter_destroy(&r.w);
}

/* RESOURCE_EXHAUSTED names its cause from the "err" trailer, without it from the
 * message's words, and an unknown err stays unknown; other statuses keep their text. */
static const struct {
  const char *req;
  mim_status want;
  mim_limit_cause cause;
  const char *detail;
} err_cases[] = {
    {"8 operations_rate_limit_exceeded slow down", MIM_ERR_RESOURCE_EXHAUSTED,
     MIM_LIMIT_OPERATIONS_RATE,
     "[err=operations_rate_limit_exceeded] Request rate limit exceeded for this account: slow "
     "down"},
    {"8 throughput_rate_limit_exceeded x", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_THROUGHPUT_RATE,
     NULL},
    {"8 topic_subscriptions_limit_exceeded x", MIM_ERR_RESOURCE_EXHAUSTED,
     MIM_LIMIT_TOPIC_SUBSCRIPTIONS, NULL},
    {"8 request_size_limit_exceeded x", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_REQUEST_SIZE, NULL},
    {"8 item_size_limit_exceeded x", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_ITEM_SIZE, NULL},
    {"8 element_size_limit_exceeded x", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_ELEMENT_SIZE, NULL},
    {"8 - too many subscribers", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_TOPIC_SUBSCRIPTIONS, NULL},
    {"8 - too much throughput", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_THROUGHPUT_RATE, NULL},
    {"8 brand_new_limit_exceeded operations", MIM_ERR_RESOURCE_EXHAUSTED, MIM_LIMIT_UNKNOWN,
     "[err=unknown] Limit exceeded for this account: operations"},
    {"5 operations_rate_limit_exceeded no such cache", MIM_ERR_NOT_FOUND, MIM_LIMIT_NONE,
     "no such cache"},
};

static void test_limit_cause_unary(void **state) {
  fixture *f = *state;
  for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
    assert_int_equal(sync_call(f, "/test.Fail/Err", err_cases[i].req, 2000, NULL, 0),
                     err_cases[i].want);
    assert_int_equal(mim_last_error_cause(), err_cases[i].cause);
    if (err_cases[i].detail)
      assert_string_equal(mim_last_error_detail(), err_cases[i].detail);
  }
  /* The async path hands the same detail to its callback. */
  unary_result r = {0};
  waiter_init(&r.w);
  const char *req = err_cases[0].req;
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/test.Fail/Err", "c",
                                       (const uint8_t *)req, strlen(req), 2000, unary_cb, &r, NULL),
                   MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_RESOURCE_EXHAUSTED);
  assert_string_equal(r.detail, err_cases[0].detail);
  waiter_destroy(&r.w);
}

static void test_unary_deadline(void **state) {
  fixture *f = *state;
  int64_t start = cmn_mono_ms();
  assert_int_equal(sync_call(f, "/test.Hang/Unary", NULL, 200, NULL, 0), MIM_ERR_DEADLINE_EXCEEDED);
  int64_t took = cmn_mono_ms() - start;
  assert_true(took >= 150);
  assert_true(took < 3000);
  assert_true(strlen(mim_last_error_detail()) > 0);
}

static void test_unary_cancel(void **state) {
  fixture *f = *state;
  unary_result r = {0};
  waiter_init(&r.w);
  mim_call *call = NULL;
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/test.Hang/Unary", NULL, NULL, 0, 0,
                                       unary_cb, &r, &call),
                   MIM_OK);
  assert_non_null(call);
  /* Make sure the server really has the call before cancelling it. */
  int64_t until = cmn_mono_ms() + WAIT_MS;
  while (grpc_test_server_call_count(f->server) < 1 && cmn_mono_ms() < until)
    waiter_wait(&r.w, 1, 5);
  assert_int_equal(waiter_count(&r.w), 0);
  mim_call_cancel(call);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_CANCELLED);
  /* Exactly once: a later ping completes and the count stays 1. */
  assert_int_equal(sync_call(f, "/cache_client.Ping/Ping", NULL, 2000, NULL, 0), MIM_OK);
  assert_int_equal(waiter_count(&r.w), 1);
  waiter_destroy(&r.w);
}

static void test_unused_plane(void **state) {
  fixture *f = *state;
  uint8_t *resp;
  size_t len;
  unary_result r = {0};
  assert_int_equal(mim_transport_unary_sync(f->t, MIM_HOST_CONTROL, "/cache_client.Ping/Ping", NULL,
                                            NULL, 0, 1000, &resp, &len),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_TOKEN, "/cache_client.Ping/Ping", NULL, NULL,
                                       0, 1000, unary_cb, &r, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  mim_stream_callbacks cbs = {NULL, NULL, NULL};
  assert_int_equal(mim_transport_stream(f->t, MIM_HOST_CONTROL, "/test.Stream/Count", NULL, NULL, 0,
                                        1000, &cbs, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      mim_transport_unary(f->t, (mim_host_kind)7, "/x/y", NULL, NULL, 0, 1000, unary_cb, &r, NULL),
      MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "no-slash", NULL, NULL, 0, 1000,
                                       unary_cb, &r, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  mim_transport_config none = {.plaintext = true};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&none, &t), MIM_ERR_INVALID_ARGUMENT);
  assert_null(t);
}

static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t alen = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  close(fd); /* nothing listens there now */
  return ntohs(a.sin_port);
}

static void test_closed_port_unavailable(void **state) {
  (void)state;
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", closed_port());
  mim_transport *t = make_transport(host, NULL);
  uint8_t *resp;
  size_t len;
  int64_t start = cmn_mono_ms();
  assert_int_equal(mim_transport_unary_sync(t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                            NULL, 0, 3000, &resp, &len),
                   MIM_ERR_UNAVAILABLE);
  assert_true(cmn_mono_ms() - start < 3000);
  mim_transport_free(t);
}

static void test_tls_default(void **state) {
  fixture *f = *state;
  /* TLS is the default: a TLS client cannot talk to the plaintext server. */
  mim_transport_config cfg = {.hosts = {grpc_test_server_address(f->server), NULL, NULL},
                              .auth_token = "tok"};
  mim_transport *t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
  uint8_t *resp;
  size_t len;
  /* Generous deadline: loading the system roots is slow under valgrind. */
  mim_status st = mim_transport_unary_sync(t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL, NULL,
                                           0, 20000, &resp, &len);
  mim_transport_free(t);
  assert_int_equal(st, MIM_ERR_UNAVAILABLE);

  cfg.ca_file = "/nonexistent/ca.pem";
  t = NULL;
  assert_int_equal(mim_transport_create(&cfg, &t), MIM_ERR_INVALID_ARGUMENT);
  assert_null(t);
  assert_non_null(strstr(mim_last_error_detail(), "/nonexistent/ca.pem"));

  if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
    cfg.ca_file = "/etc/ssl/certs/ca-certificates.crt";
    assert_int_equal(mim_transport_create(&cfg, &t), MIM_OK);
    mim_transport_free(t);
  }
}

/* ---- streams ---- */

typedef struct stream_result {
  waiter closed;
  waiter messages;
  char msgs[64][16];
  int n;
  int closes;
  int msgs_after_close;
  mim_status status;
  char detail[256];
  mim_call *call;
  bool cancel_on_first;
  mim_timer *cancel_in_close; /* cancelled from on_close when set */
  bool cancel_result;
} stream_result;

static void on_message(void *user, const uint8_t *msg, size_t len) {
  stream_result *r = user;
  if (r->closes)
    r->msgs_after_close++;
  if (r->n < 64) {
    size_t k = len < 15 ? len : 15;
    memcpy(r->msgs[r->n], msg, k);
    r->msgs[r->n][k] = '\0';
  }
  r->n++;
  if (r->cancel_on_first && r->n == 1)
    mim_call_cancel(r->call);
  waiter_bump(&r->messages);
}

static void on_close(void *user, mim_status status, const char *detail) {
  stream_result *r = user;
  r->closes++;
  r->status = status;
  if (r->cancel_in_close)
    r->cancel_result = mim_timer_cancel(r->cancel_in_close);
  snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "(null)");
  waiter_bump(&r->closed);
}

static void stream_result_init(stream_result *r) {
  memset(r, 0, sizeof *r);
  waiter_init(&r->closed);
  waiter_init(&r->messages);
}

static void stream_result_destroy(stream_result *r) {
  waiter_destroy(&r->closed);
  waiter_destroy(&r->messages);
}

static mim_status start_stream(fixture *f, const char *method, const char *req, int64_t deadline_ms,
                               stream_result *r) {
  mim_stream_callbacks cbs = {on_message, on_close, r};
  return mim_transport_stream(f->t, MIM_HOST_CACHE, method, "my-cache", (const uint8_t *)req,
                              req ? strlen(req) : 0, deadline_ms, &cbs, &r->call);
}

static void test_stream_count(void **state) {
  fixture *f = *state;
  stream_result r;
  stream_result_init(&r);
  assert_int_equal(start_stream(f, "/test.Stream/Count", "50", 5000, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.n, 50);
  for (int i = 0; i < 50; i++) {
    char want[16];
    snprintf(want, sizeof want, "msg-%d", i);
    assert_string_equal(r.msgs[i], want);
  }
  assert_int_equal(r.msgs_after_close, 0);
  char v[64];
  assert_true(grpc_test_server_last_metadata(f->server, "cache", v, sizeof v));
  assert_string_equal(v, "my-cache");
  stream_result_destroy(&r);

  /* An empty stream closes OK with no message. */
  stream_result_init(&r);
  assert_int_equal(start_stream(f, "/test.Stream/Count", "0", 5000, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_OK);
  assert_int_equal(r.n, 0);
  stream_result_destroy(&r);
}

static void test_stream_cancel_foreign_thread(void **state) {
  fixture *f = *state;
  stream_result r;
  stream_result_init(&r);
  assert_int_equal(start_stream(f, "/test.Stream/Hang", NULL, 0, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.messages, 1, WAIT_MS), 1);
  assert_string_equal(r.msgs[0], "first");
  assert_int_equal(waiter_count(&r.closed), 0);
  mim_call_cancel(r.call);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_CANCELLED);
  assert_int_equal(sync_call(f, "/cache_client.Ping/Ping", NULL, 2000, NULL, 0), MIM_OK);
  assert_int_equal(r.closes, 1);
  assert_int_equal(r.msgs_after_close, 0);
  stream_result_destroy(&r);
}

static void test_stream_cancel_from_callback(void **state) {
  fixture *f = *state;
  stream_result r;
  stream_result_init(&r);
  r.cancel_on_first = true;
  assert_int_equal(start_stream(f, "/test.Stream/Hang", NULL, 0, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_CANCELLED);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.closes, 1);
  stream_result_destroy(&r);
}

static void test_stream_deadline(void **state) {
  fixture *f = *state;
  stream_result r;
  stream_result_init(&r);
  int64_t start = cmn_mono_ms();
  assert_int_equal(start_stream(f, "/test.Stream/Hang", NULL, 300, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  int64_t took = cmn_mono_ms() - start;
  assert_int_equal(r.status, MIM_ERR_DEADLINE_EXCEEDED);
  assert_int_equal(r.n, 1);
  assert_true(took >= 250 && took < 3000);
  stream_result_destroy(&r);
}

/* A stream that delivered a message and then ended RESOURCE_EXHAUSTED (the status in
 * trailers), and one refused at once (Trailers-Only): both carry the cause. */
static void test_limit_cause_stream(void **state) {
  fixture *f = *state;
  static const char *const methods[] = {"/test.Stream/FailErr", "/test.Fail/Err"};
  for (size_t m = 0; m < 2; m++) {
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
      stream_result r;
      stream_result_init(&r);
      assert_int_equal(start_stream(f, methods[m], err_cases[i].req, 2000, &r), MIM_OK);
      assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
      assert_int_equal(r.status, err_cases[i].want);
      assert_int_equal(mim_limit_cause_of(r.detail), err_cases[i].cause);
      if (err_cases[i].detail)
        assert_string_equal(r.detail, err_cases[i].detail);
      assert_int_equal(r.n, m == 0 ? 1 : 0);
      stream_result_destroy(&r);
    }
  }
}

static void test_stream_error_status(void **state) {
  fixture *f = *state;
  stream_result r;
  stream_result_init(&r);
  assert_int_equal(start_stream(f, "/test.Fail/NotFound", NULL, 2000, &r), MIM_OK);
  assert_int_equal(waiter_wait(&r.closed, 1, WAIT_MS), 1);
  assert_int_equal(r.status, MIM_ERR_NOT_FOUND);
  assert_string_equal(r.detail, "cache not found");
  assert_int_equal(r.n, 0);
  stream_result_destroy(&r);
}

/* ---- timers ---- */

typedef struct timer_result {
  waiter w;
  int64_t fired_at[8];
  int order[8];
  int n;
  int id;
  mim_transport *t;
  mim_status nested_status;
  bool nested_cancel;
  mim_timer *self;
} timer_result;

typedef struct timer_arg {
  timer_result *r;
  int id;
} timer_arg;

static void timer_fired(void *user) {
  timer_arg *a = user;
  timer_result *r = a->r;
  if (r->n < 8) {
    r->fired_at[r->n] = cmn_mono_ms();
    r->order[r->n] = a->id;
  }
  r->n++;
  waiter_bump(&r->w);
}

static void test_timer_foreign_thread(void **state) {
  fixture *f = *state;
  timer_result r = {0};
  waiter_init(&r.w);
  timer_arg a1 = {&r, 1}, a2 = {&r, 2}, a3 = {&r, 3};
  int64_t start = cmn_mono_ms();
  /* Added out of order; the 40 ms one becomes the earliest after the loop went to sleep. */
  assert_int_equal(mim_transport_timer(f->t, 300, timer_fired, &a3, NULL), MIM_OK);
  assert_int_equal(mim_transport_timer(f->t, 120, timer_fired, &a2, NULL), MIM_OK);
  assert_int_equal(mim_transport_timer(f->t, 40, timer_fired, &a1, NULL), MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 3, WAIT_MS), 3);
  assert_int_equal(r.order[0], 1);
  assert_int_equal(r.order[1], 2);
  assert_int_equal(r.order[2], 3);
  assert_true(r.fired_at[0] - start >= 40);
  assert_true(r.fired_at[0] - start < 40 + slack_ms());
  assert_true(r.fired_at[1] - start >= 120);
  assert_true(r.fired_at[1] - start < 120 + slack_ms());
  assert_true(r.fired_at[2] - start >= 300);
  assert_true(r.fired_at[2] - start < 300 + slack_ms());

  /* "Soon": a zero delay posted while the loop sleeps with no deadline. */
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_transport_timer(f->t, 0, timer_fired, &a1, NULL), MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 4, WAIT_MS), 4);
  assert_true(r.fired_at[3] - t0 < slack_ms() / 3);
  waiter_destroy(&r.w);
}

static void test_timer_cancel(void **state) {
  fixture *f = *state;
  timer_result r = {0};
  waiter_init(&r.w);
  timer_arg cancelled = {&r, 9}, sentinel = {&r, 1};
  mim_timer *tm = NULL;
  assert_int_equal(mim_transport_timer(f->t, 50, timer_fired, &cancelled, &tm), MIM_OK);
  assert_non_null(tm);
  assert_true(mim_timer_cancel(tm));
  /* The sentinel fires after the cancelled timer's time; only it may have run. */
  assert_int_equal(mim_transport_timer(f->t, 100, timer_fired, &sentinel, NULL), MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.order[0], 1);
  waiter_destroy(&r.w);
}

/* Runs on the event thread: checks what may and may not be done there. */
static void nested_timer(void *user) {
  timer_arg *a = user;
  timer_result *r = a->r;
  uint8_t *resp;
  size_t len;
  r->nested_status = mim_transport_unary_sync(r->t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL,
                                              NULL, 0, 1000, &resp, &len);
  r->nested_cancel = mim_timer_cancel(r->self); /* inside its own callback: false at once */
  static timer_arg child;
  child = (timer_arg){r, 2};
  r->fired_at[0] = cmn_mono_ms();
  r->n++;
  mim_transport_timer(r->t, 30, timer_fired, &child, NULL);
}

static void test_timer_from_event_thread(void **state) {
  fixture *f = *state;
  timer_result r = {0};
  waiter_init(&r.w);
  r.t = f->t;
  timer_arg a = {&r, 1};
  assert_int_equal(mim_transport_timer(f->t, 0, nested_timer, &a, &r.self), MIM_OK);
  assert_int_equal(waiter_wait(&r.w, 1, WAIT_MS), 1);
  assert_int_equal(r.nested_status, MIM_ERR_FAILED_PRECONDITION);
  assert_false(r.nested_cancel);
  assert_int_equal(r.order[1], 2);
  assert_true(r.fired_at[1] - r.fired_at[0] >= 30);
  assert_true(r.fired_at[1] - r.fired_at[0] < 30 + slack_ms());
  waiter_destroy(&r.w);
}

/* A unary callback (event thread) schedules a timer. */
typedef struct chain {
  timer_result tr;
  timer_arg arg;
  mim_transport *t;
} chain;

static void chain_unary_done(void *user, mim_status status, const char *detail,
                             const uint8_t *response, size_t len) {
  (void)detail, (void)response, (void)len;
  chain *c = user;
  if (status == MIM_OK)
    mim_transport_timer(c->t, 20, timer_fired, &c->arg, NULL);
}

static void test_timer_from_callback(void **state) {
  fixture *f = *state;
  chain c = {0};
  waiter_init(&c.tr.w);
  c.arg = (timer_arg){&c.tr, 5};
  c.t = f->t;
  assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/cache_client.Ping/Ping", NULL, NULL,
                                       0, 2000, chain_unary_done, &c, NULL),
                   MIM_OK);
  assert_int_equal(waiter_wait(&c.tr.w, 1, WAIT_MS), 1);
  assert_int_equal(c.tr.order[0], 5);
  waiter_destroy(&c.tr.w);
}

/* ---- shutdown ---- */

static void test_free_with_calls_in_flight(void **state) {
  fixture *f = *state;
  mim_transport *t = make_transport(grpc_test_server_address(f->server), NULL);
  unary_result u1 = {0}, u2 = {0};
  waiter_init(&u1.w);
  waiter_init(&u2.w);
  stream_result s;
  stream_result_init(&s);
  timer_result tr = {0};
  waiter_init(&tr.w);
  timer_arg ta = {&tr, 1};
  int before = grpc_test_server_call_count(f->server);
  assert_int_equal(mim_transport_unary(t, MIM_HOST_CACHE, "/test.Hang/Unary", NULL, NULL, 0, 0,
                                       unary_cb, &u1, NULL),
                   MIM_OK);
  assert_int_equal(mim_transport_unary(t, MIM_HOST_CACHE, "/test.Hang/Unary", NULL, NULL, 0, 0,
                                       unary_cb, &u2, NULL),
                   MIM_OK);
  mim_stream_callbacks cbs = {on_message, on_close, &s};
  assert_int_equal(
      mim_transport_stream(t, MIM_HOST_CACHE, "/test.Stream/Hang", NULL, NULL, 0, 0, &cbs, NULL),
      MIM_OK);
  assert_int_equal(mim_transport_timer(t, 60000, timer_fired, &ta, &s.cancel_in_close), MIM_OK);
  timer_arg ta2 = {&tr, 2};
  assert_int_equal(mim_transport_timer(t, 60000, timer_fired, &ta2, NULL), MIM_OK);
  /* Let the server see all three calls, so they are truly in flight. */
  assert_int_equal(waiter_wait(&s.messages, 1, WAIT_MS), 1);
  int64_t until = cmn_mono_ms() + WAIT_MS;
  while (grpc_test_server_call_count(f->server) < before + 3 && cmn_mono_ms() < until)
    waiter_wait(&s.closed, 1, 5);
  int64_t start = cmn_mono_ms();
  mim_transport_free(t);
  assert_true(cmn_mono_ms() - start < 2000);
  assert_int_equal(waiter_count(&u1.w), 1);
  assert_int_equal(u1.status, MIM_ERR_CANCELLED);
  assert_int_equal(waiter_count(&u2.w), 1);
  assert_int_equal(u2.status, MIM_ERR_CANCELLED);
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.status, MIM_ERR_CANCELLED);
  assert_true(s.cancel_result); /* timers stay valid for callbacks running during free */
  assert_int_equal(tr.n, 0);
  waiter_destroy(&u1.w);
  waiter_destroy(&u2.w);
  stream_result_destroy(&s);
  waiter_destroy(&tr.w);
}

static void test_many_concurrent_unary(void **state) {
  fixture *f = *state;
  enum { N = 200 };
  static unary_result r[N];
  for (int i = 0; i < N; i++) {
    char req[16];
    snprintf(req, sizeof req, "r%d", i);
    memset(&r[i], 0, sizeof r[i]);
    waiter_init(&r[i].w);
    assert_int_equal(mim_transport_unary(f->t, MIM_HOST_CACHE, "/test.Echo/Unary", NULL,
                                         (const uint8_t *)req, strlen(req), 5000, unary_cb, &r[i],
                                         NULL),
                     MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    char want[16];
    snprintf(want, sizeof want, "r%d", i);
    assert_int_equal(waiter_wait(&r[i].w, 1, WAIT_MS), 1);
    assert_int_equal(r[i].status, MIM_OK);
    assert_int_equal(r[i].response_len, strlen(want));
    assert_memory_equal(r[i].response, want, strlen(want));
    waiter_destroy(&r[i].w);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_unary_sync_ping_and_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_async_ok, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_large_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metadata_sent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_custom_agent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_auth_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_mapping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limit_cause_unary, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limit_cause_stream, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unused_plane, setup, teardown),
      cmocka_unit_test(test_closed_port_unavailable),
      cmocka_unit_test_setup_teardown(test_tls_default, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_count, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_cancel_foreign_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_cancel_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_error_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timer_foreign_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timer_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timer_from_event_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timer_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_with_calls_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_concurrent_unary, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
