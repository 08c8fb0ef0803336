/* The outbox under hosted Momento's refusals (lib/outbox.c), against the in-process gRPC
 * test server whose Publish refuses on demand (cache "refuse:N:ERR"): throttling causes
 * are retried with a backoff of at least 500 ms, size and unknown causes never, a
 * throttled message that runs out of send time is reported with its cause, and an
 * envelope over the topic payload limit is refused before anything is queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <momento/client.h>
#include <momento/credentials.h>
#include <momento/topics.h>

#include "grpc_test_server.h"
#include "outbox.h"
#include "time_scale.h"
#include "waiter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THROTTLE_FLOOR_MS 500

typedef struct fixture {
  grpc_test_server *server;
  mim_client *client;
  waiter results;
  mim_status status; /* of the last result */
  char detail[512];
  char id[64];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->server = grpc_test_server_start();
  assert_non_null(f->server);
  mim_credentials *creds = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(
                       "test-key", grpc_test_server_address(f->server), &creds),
                   MIM_OK);
  mim_client_options o;
  mim_client_options_init(&o);
  o.credentials = creds;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 5000 * (int64_t)test_time_scale();
  assert_int_equal(mim_client_create(&o, &f->client), MIM_OK);
  mim_credentials_free(creds);
  waiter_init(&f->results);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  mim_client_free(f->client);
  grpc_test_server_stop(f->server);
  waiter_destroy(&f->results);
  free(f);
  return 0;
}

static void on_result(void *owner, const char *id, mim_status status, const char *detail) {
  fixture *f = owner;
  f->status = status;
  snprintf(f->detail, sizeof f->detail, "%s", detail);
  snprintf(f->id, sizeof f->id, "%s", id);
  waiter_bump(&f->results);
}

static mim_outbox *outbox_for(fixture *f, const char *cache, int64_t send_timeout_ms) {
  mim_outbox_config cfg = {.client = f->client,
                           .cache = cache,
                           .list = NULL,
                           .topic = "t",
                           .limit = 16,
                           .send_timeout_ms = send_timeout_ms,
                           .on_result = on_result,
                           .owner = f};
  mim_outbox *ob = NULL;
  assert_int_equal(mim_outbox_new(&cfg, &ob), MIM_OK);
  return ob;
}

/* A message of exactly len bytes (its content does not matter to the outbox). */
static char *payload(size_t len) {
  char *p = malloc(len + 1);
  assert_non_null(p);
  memset(p, 'x', len);
  p[len] = '\0';
  return p;
}

static int wait_ms(void) {
  return 20000 * test_time_scale();
}

/* Sends one message through a fresh outbox and waits for its result. */
static void send_one(fixture *f, const char *cache, int64_t send_timeout_ms) {
  int want = waiter_count(&f->results) + 1;
  mim_outbox *ob = outbox_for(f, cache, send_timeout_ms);
  assert_int_equal(mim_outbox_send(ob, "m1", payload(10), 10, 0), MIM_OK);
  assert_int_equal(waiter_wait(&f->results, want, wait_ms()), want);
  mim_outbox_close(ob, 0);
}

/* The publishes seen, and each gap between them at least the throttling floor. */
static int publishes_spaced(fixture *f, int64_t min_gap_ms) {
  int64_t at[64];
  int n = grpc_test_server_publish_times(f->server, at, 64);
  for (int i = 1; i < n && i < 64; i++)
    assert_true(at[i] - at[i - 1] >= min_gap_ms);
  return n;
}

static void test_throttled_retried(void **state) {
  fixture *f = *state;
  send_one(f, "refuse:2:operations_rate_limit_exceeded", 60000);
  assert_int_equal(f->status, MIM_OK);
  assert_string_equal(f->id, "m1");
  /* The timer waits at least the floor; the server's clock reads a little coarser. */
  assert_int_equal(publishes_spaced(f, THROTTLE_FLOOR_MS - 5), 3);
}

static void test_throughput_retried(void **state) {
  fixture *f = *state;
  send_one(f, "refuse:1:throughput_rate_limit_exceeded", 60000);
  assert_int_equal(f->status, MIM_OK);
  assert_int_equal(publishes_spaced(f, THROTTLE_FLOOR_MS - 5), 2);
}

static void test_size_cause_not_retried(void **state) {
  fixture *f = *state;
  static const char *const caches[] = {
      "refuse:5:request_size_limit_exceeded", "refuse:5:element_size_limit_exceeded",
      "refuse:5:item_size_limit_exceeded", "refuse:5:topic_subscriptions_limit_exceeded"};
  static const mim_limit_cause causes[] = {MIM_LIMIT_REQUEST_SIZE, MIM_LIMIT_ELEMENT_SIZE,
                                           MIM_LIMIT_ITEM_SIZE, MIM_LIMIT_TOPIC_SUBSCRIPTIONS};
  for (int i = 0; i < 4; i++) {
    int before = grpc_test_server_publish_times(f->server, NULL, 0);
    send_one(f, caches[i], 60000);
    assert_int_equal(f->status, MIM_ERR_RESOURCE_EXHAUSTED);
    assert_int_equal(mim_limit_cause_of(f->detail), causes[i]);
    assert_int_equal(grpc_test_server_publish_times(f->server, NULL, 0), before + 1);
    assert_int_equal(waiter_count(&f->results), i + 1);
  }
}

static void test_unknown_cause_not_retried(void **state) {
  fixture *f = *state;
  send_one(f, "refuse:5:-", 60000);
  assert_int_equal(f->status, MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(mim_limit_cause_of(f->detail), MIM_LIMIT_UNKNOWN);
  assert_int_equal(grpc_test_server_publish_times(f->server, NULL, 0), 1);
}

/* Throttled for longer than the send timeout: one final report, the cause kept. */
static void test_throttled_until_timeout(void **state) {
  fixture *f = *state;
  int64_t timeout_ms = 1200 * (int64_t)test_time_scale();
  send_one(f, "refuse:1000:operations_rate_limit_exceeded", timeout_ms);
  assert_int_equal(f->status, MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(mim_limit_cause_of(f->detail), MIM_LIMIT_OPERATIONS_RATE);
  int n = publishes_spaced(f, THROTTLE_FLOOR_MS - 5);
  assert_true(n >= 2 && n <= 2 + timeout_ms / THROTTLE_FLOOR_MS);
  assert_int_equal(waiter_count(&f->results), 1);
}

/* Hosted Momento's 4 KB by default: 4096 bytes go out, 4097 are refused before anything
 * is queued (no result, no call), the detail names the limit, the sizes and the option. */
static void test_payload_limit(void **state) {
  fixture *f = *state;
  mim_outbox *ob = outbox_for(f, "refuse:0:-", 60000);
  assert_int_equal(mim_outbox_send(ob, "big", payload(4097), 4097, 0), MIM_ERR_INVALID_ARGUMENT);
  const char *d = mim_last_error_detail();
  assert_non_null(strstr(d, "4097 bytes"));
  assert_non_null(strstr(d, "limit of 4096 bytes"));
  assert_non_null(strstr(d, "max_topic_payload_bytes"));
  assert_int_equal(mim_outbox_send(ob, "fits", payload(4096), 4096, 0), MIM_OK);
  assert_int_equal(waiter_wait(&f->results, 1, wait_ms()), 1);
  assert_int_equal(f->status, MIM_OK);
  assert_string_equal(f->id, "fits");
  assert_int_equal(grpc_test_server_publish_times(f->server, NULL, 0), 1);
  mim_outbox_close(ob, 0);
}

/* The option raises (or lowers) the limit. */
static void test_payload_limit_option(void **state) {
  fixture *f = *state;
  mim_credentials *creds = NULL;
  assert_int_equal(mim_credentials_from_key_and_endpoint(
                       "test-key", grpc_test_server_address(f->server), &creds),
                   MIM_OK);
  mim_client_options o;
  mim_client_options_init(&o);
  o.credentials = creds;
  o.tls = MIM_TLS_OFF;
  o.max_topic_payload_bytes = 8192;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  mim_credentials_free(creds);
  mim_client *saved = f->client;
  f->client = c;
  mim_outbox *ob = outbox_for(f, "refuse:0:-", 60000);
  assert_int_equal(mim_outbox_send(ob, "big", payload(8193), 8193, 0), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_outbox_send(ob, "ok", payload(8192), 8192, 0), MIM_OK);
  assert_int_equal(waiter_wait(&f->results, 1, wait_ms()), 1);
  assert_int_equal(f->status, MIM_OK);
  mim_outbox_close(ob, 0);
  f->client = saved;
  mim_client_free(c);
}

/* ---- subscriptions ---- */

typedef struct sub_rec {
  waiter states;
  mim_subscription_state state[16];
  mim_status status[16];
  char detail[16][256];
  int n;
} sub_rec;

static void on_item(void *user, const mim_topic_item *item) {
  (void)user;
  (void)item;
}

static void on_state(void *user, mim_subscription_state state, mim_status status,
                     const char *detail) {
  sub_rec *r = user;
  if (r->n < 16) {
    r->state[r->n] = state;
    r->status[r->n] = status;
    snprintf(r->detail[r->n], sizeof r->detail[0], "%s", detail ? detail : "");
    r->n++;
  }
  waiter_bump(&r->states);
}

static mim_subscription *subscribe(fixture *f, const char *cache, sub_rec *r, mim_status want) {
  memset(r, 0, sizeof *r);
  waiter_init(&r->states);
  mim_subscription_callbacks cb = {.struct_size = sizeof(mim_subscription_callbacks),
                                   .on_item = on_item,
                                   .on_state = on_state,
                                   .user = r};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(f->client, cache, "t", NULL, &cb, &sub), want);
  return sub;
}

/* The namespace's subscription limit ends a subscription whose stream was cut with it:
 * CLOSED with the status and cause, no re-subscribe loop; a fresh subscribe refused so
 * fails at once with the cause. */
static void test_subscription_limit_closes(void **state) {
  fixture *f = *state;
  const char *cache = "subcut:5:topic_subscriptions_limit_exceeded";
  sub_rec r;
  mim_subscription *sub = subscribe(f, cache, &r, MIM_OK);
  assert_int_equal(waiter_wait(&r.states, 2, wait_ms()), 2);
  assert_int_equal(r.state[0], MIM_SUB_CONNECTED);
  assert_int_equal(r.state[1], MIM_SUB_CLOSED);
  assert_int_equal(r.status[1], MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(mim_limit_cause_of(r.detail[1]), MIM_LIMIT_TOPIC_SUBSCRIPTIONS);
  /* Nothing more happens: no re-subscribe reaches the server. */
  assert_int_equal(waiter_wait(&r.states, 3, 300), 2);
  assert_int_equal(grpc_test_server_publish_times(f->server, NULL, 0), 1);
  mim_topic_unsubscribe(sub);
  waiter_destroy(&r.states);

  sub_rec r2;
  assert_null(subscribe(f, cache, &r2, MIM_ERR_RESOURCE_EXHAUSTED));
  assert_int_equal(mim_last_error_cause(), MIM_LIMIT_TOPIC_SUBSCRIPTIONS);
  waiter_destroy(&r2.states);
}

/* A throttled re-subscribe is retried, each attempt at least 500 ms after the last. */
static void test_subscription_throttled_retried(void **state) {
  fixture *f = *state;
  sub_rec r;
  mim_subscription *sub = subscribe(f, "subcut:2:operations_rate_limit_exceeded", &r, MIM_OK);
  /* CONNECTED, RECONNECTING, CONNECTED */
  assert_int_equal(waiter_wait(&r.states, 3, wait_ms()), 3);
  assert_int_equal(r.state[1], MIM_SUB_RECONNECTING);
  assert_int_equal(mim_limit_cause_of(r.detail[1]), MIM_LIMIT_OPERATIONS_RATE);
  assert_int_equal(r.state[2], MIM_SUB_CONNECTED);
  assert_int_equal(publishes_spaced(f, THROTTLE_FLOOR_MS - 5), 4);
  mim_topic_unsubscribe(sub);
  waiter_destroy(&r.states);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_throttled_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_throughput_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_size_cause_not_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_cause_not_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_throttled_until_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payload_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payload_limit_option, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscription_limit_closes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscription_throttled_retried, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
