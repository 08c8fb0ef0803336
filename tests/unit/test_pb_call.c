/* lib/pb_call.c, the library's one unary call path, against the in-process gRPC test
 * server: what travels (path, cache metadata), decoding, statuses and details, the
 * client's deadline, ownership in the async form, and the event-thread rule. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "grpc_test_server.h"
#include "pb_call.h"
#include "time_scale.h"

#include <cacheclient.pb-c.h>
#include <momento/client.h>
#include <momento/credentials.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The echo method answers with the request's bytes, so a request message decodes as
 * itself: a ListPushBackResponse goes out and comes back. */
static const mim_pb_method echo_method = {MIM_HOST_CACHE, "/test.Echo/Unary",
                                          &cache_client____list_push_back_response__descriptor,
                                          false};
/* Field 1 is a varint in the request but a sub-message here: the answer cannot decode. */
static const mim_pb_method echo_as_fetch = {
    MIM_HOST_CACHE, "/test.Echo/Unary", &cache_client____list_fetch_response__descriptor, false};
static const mim_pb_method echo_unread = {MIM_HOST_CACHE, "/test.Echo/Unary", NULL, false};
static const mim_pb_method not_found = {MIM_HOST_CACHE, "/test.Fail/NotFound",
                                        &cache_client____list_push_back_response__descriptor,
                                        false};
static const mim_pb_method hang = {MIM_HOST_CACHE, "/test.Hang/Unary",
                                   &cache_client____list_push_back_response__descriptor, false};
static const mim_pb_method bad_path = {MIM_HOST_CACHE, "no-slash",
                                       &cache_client____list_push_back_response__descriptor, false};

static const mim_pb_method echo_secret = {
    MIM_HOST_CACHE, "/test.Echo/Unary", &cache_client____list_push_back_response__descriptor, true};

typedef struct fixture {
  grpc_test_server *server;
  mim_client *client;
} fixture;

static mim_client *client_for(grpc_test_server *server, int64_t deadline_ms) {
  char *key = NULL;
  if (mim_credentials_encode_v1("127.0.0.1", "test-token", &key) != MIM_OK)
    return NULL;
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = grpc_test_server_address(server);
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = deadline_ms;
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  free(key);
  return st == MIM_OK ? c : NULL;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f)
    return -1;
  f->server = grpc_test_server_start();
  f->client = f->server ? client_for(f->server, 10000LL * test_time_scale()) : NULL;
  *state = f;
  return f->client ? 0 : -1;
}

static int teardown(void **state) {
  fixture *f = *state;
  mim_client_free(f->client);
  grpc_test_server_stop(f->server);
  free(f);
  return 0;
}

/* A ListPushBackResponse with list_length n, used as a request. */
static CacheClient__ListPushBackResponse length_msg(uint32_t n) {
  CacheClient__ListPushBackResponse m = CACHE_CLIENT____LIST_PUSH_BACK_RESPONSE__INIT;
  m.list_length = n;
  return m;
}

/* ---- blocking form ---- */

static void test_sync_round_trip(void **state) {
  fixture *f = *state;
  CacheClient__ListPushBackResponse req = length_msg(42);
  ProtobufCMessage *resp = NULL;
  assert_int_equal(mim_pb_call(f->client, &echo_method, "my-cache", &req.base, &resp), MIM_OK);
  assert_non_null(resp);
  assert_ptr_equal(resp->descriptor, &cache_client____list_push_back_response__descriptor);
  assert_int_equal(((CacheClient__ListPushBackResponse *)resp)->list_length, 42);
  mim_pb_free(resp);
  char buf[128];
  assert_true(grpc_test_server_last_method(f->server, buf, sizeof buf));
  assert_string_equal(buf, "/test.Echo/Unary");
  assert_true(grpc_test_server_last_metadata(f->server, "cache", buf, sizeof buf));
  assert_string_equal(buf, "my-cache");
  /* No cache: no "cache" metadata. */
  assert_int_equal(mim_pb_call(f->client, &echo_method, NULL, &req.base, NULL), MIM_OK);
  assert_false(grpc_test_server_last_metadata(f->server, "cache", buf, sizeof buf));
}

static void test_sync_undecodable(void **state) {
  fixture *f = *state;
  CacheClient__ListPushBackResponse req = length_msg(42);
  ProtobufCMessage *resp = (ProtobufCMessage *)&req; /* must be reset */
  assert_int_equal(mim_pb_call(f->client, &echo_as_fetch, "c", &req.base, &resp), MIM_ERR_PROTOCOL);
  assert_null(resp);
  assert_non_null(strstr(mim_last_error_detail(), "could not decode"));
  /* Without resp the answer is still decoded, so the failure is the same. */
  assert_int_equal(mim_pb_call(f->client, &echo_as_fetch, "c", &req.base, NULL), MIM_ERR_PROTOCOL);
}

static void test_sync_unread_response(void **state) {
  fixture *f = *state;
  CacheClient__ListPushBackResponse req = length_msg(7);
  ProtobufCMessage *resp = (ProtobufCMessage *)&req;
  assert_int_equal(mim_pb_call(f->client, &echo_unread, "c", &req.base, &resp), MIM_OK);
  assert_null(resp);
}

static void test_sync_server_status(void **state) {
  fixture *f = *state;
  CacheClient__ListPushBackResponse req = length_msg(1);
  ProtobufCMessage *resp = (ProtobufCMessage *)&req;
  assert_int_equal(mim_pb_call(f->client, &not_found, "c", &req.base, &resp), MIM_ERR_NOT_FOUND);
  assert_null(resp);
  assert_string_equal(mim_last_error_detail(), "cache not found");
}

static void test_sync_client_deadline(void **state) {
  fixture *f = *state;
  mim_client *c = client_for(f->server, 200LL * test_time_scale());
  assert_non_null(c);
  CacheClient__ListPushBackResponse req = length_msg(1);
  assert_int_equal(mim_pb_call(c, &hang, "c", &req.base, NULL), MIM_ERR_DEADLINE_EXCEEDED);
  mim_client_free(c);
}

/* ---- callback form ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  mim_status status;
  char detail[256];
  bool had_response;
  bool saw_marker; /* the user_fn given at the start came back */
  uint32_t length;
  mim_client *client; /* for the nested blocking call */
  mim_status nested;  /* what that call returned */
} waiter;

static void waiter_init(waiter *w, mim_client *client) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->client = client;
  w->nested = MIM_OK;
}

static void waiter_destroy(waiter *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

/* Stands in for a module's callback: only its address travels. */
static void marker(void) {}

static void done(const mim_pb_pending *pending, mim_status status, const char *detail,
                 const ProtobufCMessage *response) {
  waiter *w = pending->user;
  pthread_mutex_lock(&w->mu);
  w->calls++;
  w->status = status;
  snprintf(w->detail, sizeof w->detail, "%s", detail ? detail : "(null)");
  w->had_response = response != NULL;
  w->saw_marker = pending->user_fn == marker;
  if (response && response->descriptor == &cache_client____list_push_back_response__descriptor)
    w->length = ((const CacheClient__ListPushBackResponse *)response)->list_length;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* Tries a blocking call from the event thread before reporting. */
static void done_nested(const mim_pb_pending *pending, mim_status status, const char *detail,
                        const ProtobufCMessage *response) {
  waiter *w = pending->user;
  CacheClient__ListPushBackResponse req = length_msg(1);
  w->nested = mim_pb_call(w->client, &echo_method, "c", &req.base, NULL);
  done(pending, status, detail, response);
}

static void wait_done(waiter *w) {
  pthread_mutex_lock(&w->mu);
  while (w->calls == 0)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

/* Starts method with a request of list_length n and, when it started, waits for the
 * completion fn. w is initialized here (waiter_destroy it after). Returns the start's
 * status. */
static mim_status call_and_wait(fixture *f, const mim_pb_method *method, uint32_t n,
                                mim_pb_done_fn fn, waiter *w) {
  waiter_init(w, f->client);
  CacheClient__ListPushBackResponse req = length_msg(n);
  mim_status st = mim_pb_call_async(f->client, method, "c", &req.base, fn, marker, w);
  if (st == MIM_OK)
    wait_done(w);
  return st;
}

static void test_async_round_trip(void **state) {
  waiter w;
  assert_int_equal(call_and_wait(*state, &echo_method, 99, done, &w), MIM_OK);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, MIM_OK);
  assert_string_equal(w.detail, "");
  assert_true(w.had_response);
  assert_int_equal(w.length, 99);
  assert_true(w.saw_marker);
  waiter_destroy(&w);
}

static void test_async_undecodable(void **state) {
  waiter w;
  assert_int_equal(call_and_wait(*state, &echo_as_fetch, 99, done, &w), MIM_OK);
  assert_int_equal(w.status, MIM_ERR_PROTOCOL);
  assert_non_null(strstr(w.detail, "could not decode"));
  assert_false(w.had_response);
  waiter_destroy(&w);
}

static void test_async_server_status(void **state) {
  waiter w;
  assert_int_equal(call_and_wait(*state, &not_found, 1, done, &w), MIM_OK);
  assert_int_equal(w.status, MIM_ERR_NOT_FOUND);
  assert_string_equal(w.detail, "cache not found");
  assert_false(w.had_response);
  waiter_destroy(&w);
}

static void test_async_refused_start(void **state) {
  fixture *f = *state;
  waiter w;
  assert_int_equal(call_and_wait(f, &bad_path, 1, done, &w), MIM_ERR_INVALID_ARGUMENT);
  waiter_destroy(&w);
  /* The refused completion never runs, and the secret one is refused before any call. */
  assert_int_equal(call_and_wait(f, &echo_secret, 1, done, &w), MIM_ERR_INVALID_ARGUMENT);
  waiter_destroy(&w);
  assert_int_equal(call_and_wait(f, &echo_method, 1, done, &w), MIM_OK);
  assert_int_equal(w.calls, 1);
  assert_int_equal(grpc_test_server_call_count(f->server), 1);
  waiter_destroy(&w);
}

static void test_sync_secret_response(void **state) {
  fixture *f = *state;
  CacheClient__ListPushBackResponse req = length_msg(1);
  ProtobufCMessage *resp = NULL;
  assert_int_equal(mim_pb_call(f->client, &echo_secret, "c", &req.base, &resp), MIM_OK);
  assert_int_equal(((CacheClient__ListPushBackResponse *)resp)->list_length, 1);
  mim_pb_free(resp);
}

static void test_sync_from_event_thread(void **state) {
  waiter w;
  assert_int_equal(call_and_wait(*state, &echo_method, 5, done_nested, &w), MIM_OK);
  assert_int_equal(w.status, MIM_OK);
  assert_int_equal(w.nested, MIM_ERR_FAILED_PRECONDITION);
  waiter_destroy(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sync_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_undecodable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_unread_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_server_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_client_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_undecodable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_server_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_refused_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_secret_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_from_event_thread, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
