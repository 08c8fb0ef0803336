/* mim-local enforces hosted Momento's published limits (issue 15): every hard limit is
 * refused RESOURCE_EXHAUSTED with the `err` trailer naming the cause (or
 * INVALID_ARGUMENT for TTL and permissions), just-under values pass, --limits none lifts
 * them and per-limit flags win; the rate limits refuse past their budget, recover after
 * a second and count the way Momento counts (ListFetch ceil(n/2), deliveries, concurrent
 * subscriptions released when a stream ends). Calls go through gRPC core's client
 * (grpc_probe) so the trailer is visible. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "cacheclient.pb-c.h"
#include "cachepubsub.pb-c.h"
#include "clock.h"
#include "grpc_probe.h"
#include "raw_client.h"
#include "time_scale.h"
#include "token.pb-c.h"

#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_PUSH "/cache_client.Scs/ListPushBack"
#define M_CONCAT "/cache_client.Scs/ListConcatenateBack"
#define M_FETCH "/cache_client.Scs/ListFetch"
#define M_LENGTH "/cache_client.Scs/ListLength"
#define M_PUBLISH "/cache_client.pubsub.Pubsub/Publish"
#define M_SUBSCRIBE "/cache_client.pubsub.Pubsub/Subscribe"
#define M_TOKEN "/token.Token/GenerateDisposableToken"
#define DEADLINE_MS 10000

static int scaled(int ms) {
  return ms * test_time_scale();
}

typedef struct server {
  mim_local *srv;
  grpc_probe *probe;
} server;

static int start(server *s, const char *const *extra) {
  const char *caches[] = {"q", "ops", "fetch", "bytes", "topics", "subs", NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  memset(s, 0, sizeof *s);
  if (mim_local_start(&o, &s->srv) != 0) {
    return -1;
  }
  char *tok = raw_root_token(s->srv);
  s->probe = tok ? grpc_probe_new(s->srv->endpoint, tok) : NULL;
  free(tok);
  return s->probe ? 0 : -1;
}

static void stop(server *s) {
  grpc_probe_free(s->probe);
  if (s->srv) {
    mim_local_stop(s->srv);
  }
}

/* ---- requests ---- */

static int call_msg(server *s, const char *method, const char *cache, const ProtobufCMessage *m,
                    grpc_probe_result *r) {
  size_t len = 0;
  uint8_t *buf = raw_pack(m, &len);
  int code = grpc_probe_call(s->probe, method, cache, buf, len, scaled(DEADLINE_MS), r);
  free(buf);
  return code;
}

static int push(server *s, const char *cache, const char *list, size_t n, uint64_t ttl,
                uint32_t truncate, grpc_probe_result *r) {
  uint8_t *v = calloc(n ? n : 1, 1);
  CacheClient__ListPushBackRequest req = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  req.value = (ProtobufCBinaryData){n, v};
  req.ttl_milliseconds = ttl;
  req.truncate_front_to_size = truncate;
  int code = call_msg(s, M_PUSH, cache, &req.base, r);
  free(v);
  return code;
}

/* count values of size bytes each in one ListConcatenateBack. */
static int concat(server *s, const char *cache, const char *list, size_t count, size_t size,
                  grpc_probe_result *r) {
  uint8_t *v = calloc(size ? size : 1, 1);
  ProtobufCBinaryData *vals = calloc(count, sizeof *vals);
  for (size_t i = 0; i < count; i++) {
    vals[i] = (ProtobufCBinaryData){size, v};
  }
  CacheClient__ListConcatenateBackRequest req = CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  req.n_values = count;
  req.values = vals;
  int code = call_msg(s, M_CONCAT, cache, &req.base, r);
  free(vals);
  free(v);
  return code;
}

static int length(server *s, const char *cache, const char *list, grpc_probe_result *r,
                  uint32_t *len) {
  CacheClient__ListLengthRequest req = CACHE_CLIENT____LIST_LENGTH_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  size_t blen = 0;
  uint8_t *buf = raw_pack(&req.base, &blen);
  int code = grpc_probe_call(s->probe, M_LENGTH, cache, buf, blen, scaled(DEADLINE_MS), r);
  free(buf);
  if (len) {
    /* Found{length} is field 1 of field 1: 0x0a LEN 0x08 varint (short lists). */
    *len = 0;
    mim_transport *t = raw_connect(s->srv, NULL);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    if (t && raw_call(t, M_LENGTH, cache, &req.base, &resp, &rlen) == MIM_OK) {
      CacheClient__ListLengthResponse *lr =
          cache_client____list_length_response__unpack(NULL, rlen, resp);
      if (lr && lr->list_case == CACHE_CLIENT____LIST_LENGTH_RESPONSE__LIST_FOUND) {
        *len = lr->found->length;
      }
      cache_client____list_length_response__free_unpacked(lr, NULL);
    }
    free(resp);
    mim_transport_free(t);
  }
  return code;
}

static int fetch_all(server *s, const char *cache, const char *list, grpc_probe_result *r) {
  CacheClient__ListFetchRequest req = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  req.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  return call_msg(s, M_FETCH, cache, &req.base, r);
}

static int publish(server *s, const char *cache, const char *topic, size_t n,
                   grpc_probe_result *r) {
  uint8_t *v = calloc(n ? n : 1, 1);
  CacheClient__Pubsub__TopicValue tv = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  tv.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY;
  tv.binary = (ProtobufCBinaryData){n, v};
  CacheClient__Pubsub__PublishRequest req = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  req.cache_name = (char *)cache;
  req.topic = (char *)topic;
  req.value = &tv;
  int code = call_msg(s, M_PUBLISH, NULL, &req.base, r);
  free(v);
  return code;
}

/* A token request with n explicit permissions (each read-write on every cache). */
static int mint(server *s, size_t n, grpc_probe_result *r) {
  raw_grant g;
  PermissionMessages__Permissions *perms = raw_grant_all_caches(&g);
  PermissionMessages__PermissionsType **types = calloc(n, sizeof *types);
  for (size_t i = 0; i < n; i++) {
    types[i] = &g.type;
  }
  g.explicit_.n_permissions = n;
  g.explicit_.permissions = types;
  Token__GenerateDisposableTokenRequest__Expires ex =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  ex.valid_for_seconds = 60;
  Token__GenerateDisposableTokenRequest req = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  req.expires = &ex;
  req.permissions = perms;
  req.token_id = "quota";
  int code = call_msg(s, M_TOKEN, NULL, &req.base, r);
  free(types);
  return code;
}

static void assert_refused(const grpc_probe_result *r, const char *err, const char *words) {
  if (r->code != GRPC_STATUS_RESOURCE_EXHAUSTED || strcmp(r->err, err) != 0 ||
      !strstr(r->message, words)) {
    fprintf(stderr, "expected RESOURCE_EXHAUSTED err=%s \"%s\", got %d err=\"%s\": %s\n", err,
            words, r->code, r->err, r->message);
  }
  assert_int_equal(r->code, GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_string_equal(r->err, err);
  assert_non_null(strstr(r->message, words));
}

static void assert_ok(const grpc_probe_result *r) {
  if (r->code != GRPC_STATUS_OK) {
    fprintf(stderr, "expected OK, got %d err=\"%s\": %s\n", r->code, r->err, r->message);
  }
  assert_int_equal(r->code, GRPC_STATUS_OK);
  assert_string_equal(r->err, "");
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* ---- hard limits at the hosted values (the default) ---- */

static void test_topic_payload(void **state) {
  server *s = *state;
  grpc_probe_result r;
  publish(s, "q", "t", 4096, &r);
  assert_ok(&r);
  publish(s, "q", "t", 4097, &r);
  assert_refused(&r, "request_size_limit_exceeded",
                 "topic message of 4097 bytes exceeds the request limit of 4096 bytes");
}

static void test_element_size(void **state) {
  server *s = *state;
  grpc_probe_result r;
  push(s, "q", "elem", 131072, 0, 0, &r);
  assert_ok(&r);
  push(s, "q", "elem", 200000, 0, 0, &r);
  assert_refused(&r, "element_size_limit_exceeded",
                 "list element of 200000 bytes exceeds the element size limit of 131072 bytes");
  concat(s, "q", "elem", 3, 131073, &r);
  assert_refused(&r, "element_size_limit_exceeded", "131073 bytes");
}

static void test_item_size_after_truncation(void **state) {
  server *s = *state;
  grpc_probe_result r;
  uint32_t len = 0;
  /* 8 x 128 KiB is exactly 1 MiB: accepted. */
  concat(s, "q", "item", 8, 131072, &r);
  assert_ok(&r);
  push(s, "q", "item", 1, 0, 0, &r);
  assert_refused(&r, "item_size_limit_exceeded",
                 "list of 1048577 bytes after this write would exceed the item size limit of "
                 "1048576 bytes");
  length(s, "q", "item", &r, &len);
  assert_int_equal(len, 8); /* nothing was written */
  /* With the front truncated to 8 elements the list stays at 1 MiB: accepted. */
  push(s, "q", "item", 131072, 0, 8, &r);
  assert_ok(&r);
  push(s, "q", "item", 10, 0, 9, &r);
  assert_refused(&r, "item_size_limit_exceeded", "1048586 bytes");
  /* Truncation to 1 element of 10 bytes: the old megabyte goes. */
  push(s, "q", "item", 10, 0, 1, &r);
  assert_ok(&r);
  concat(s, "q", "item", 8, 131070, &r);
  assert_ok(&r); /* 10 + 8 x 131070 bytes: fits only because the list shrank */
  length(s, "q", "item", &r, &len);
  assert_int_equal(len, 9);
}

static void test_ttl_cap(void **state) {
  server *s = *state;
  grpc_probe_result r;
  push(s, "q", "ttl", 1, 86400000, 0, &r);
  assert_ok(&r);
  push(s, "q", "ttl", 1, 86400001, 0, &r);
  assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(r.message, "ttl_milliseconds of 86400001 exceeds the maximum TTL"));
}

static void test_token_permissions(void **state) {
  server *s = *state;
  grpc_probe_result r;
  mint(s, 10, &r);
  assert_ok(&r);
  mint(s, 11, &r);
  assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(r.message, "11 permissions exceeds the limit of 10"));
}

/* ---- --limits none, and per-limit flags winning in either order ---- */

static void test_limits_none(void **state) {
  (void)state;
  server s;
  const char *extra[] = {"--limits", "none", NULL};
  assert_int_equal(start(&s, extra), 0);
  grpc_probe_result r;
  publish(&s, "q", "t", 5000, &r);
  assert_ok(&r);
  push(&s, "q", "big", 200000, 2 * 86400000ULL, 0, &r);
  assert_ok(&r);
  concat(&s, "q", "big", 5, 200000, &r); /* 1.2 MB in the list */
  assert_ok(&r);
  mint(&s, 11, &r);
  assert_ok(&r);
  /* The frame cap (--max-message-bytes, a DoS guard) is unchanged. */
  publish(&s, "q", "t", (1 << 20) + 1, &r);
  assert_int_equal(r.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_string_equal(r.err, "");
  stop(&s);
}

static void test_flags_override(void **state) {
  (void)state;
  server s;
  const char *extra[] = {
      "--max-element-size", "1000", "--limits", "none", "--max-topic-payload", "100",
      "--max-item-size",    "3000", NULL};
  assert_int_equal(start(&s, extra), 0);
  grpc_probe_result r;
  publish(&s, "q", "t", 100, &r);
  assert_ok(&r);
  publish(&s, "q", "t", 101, &r);
  assert_refused(&r, "request_size_limit_exceeded", "request limit of 100 bytes");
  push(&s, "q", "l", 1000, 0, 0, &r);
  assert_ok(&r);
  push(&s, "q", "l", 1001, 0, 0, &r);
  assert_refused(&r, "element_size_limit_exceeded", "limit of 1000 bytes");
  concat(&s, "q", "l", 3, 1000, &r);
  assert_refused(&r, "item_size_limit_exceeded", "4000 bytes");
  push(&s, "q", "l", 1, 2 * 86400000ULL, 0, &r); /* the TTL cap is lifted */
  assert_ok(&r);
  stop(&s);
  /* And the other order: --limits momento after a lifted limit keeps the flag. */
  const char *extra2[] = {"--max-topic-payload", "0", "--limits", "momento", NULL};
  assert_int_equal(start(&s, extra2), 0);
  publish(&s, "q", "t", 5000, &r);
  assert_ok(&r);
  push(&s, "q", "l", 200000, 0, 0, &r);
  assert_refused(&r, "element_size_limit_exceeded", "131072");
  stop(&s);
}

static void test_bad_limit_flags(void **state) {
  (void)state;
  const char *bad[][3] = {{"--limits", "hosted", NULL},
                          {"--rate-limits", "x", NULL},
                          {"--max-item-size", "-1", NULL},
                          {"--cache-ops-per-s", "ten", NULL}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mim_local_opts o = {.extra_args = bad[i], .log_level = "warn", .start_timeout_ms = 5000};
    mim_local *srv = NULL;
    assert_int_not_equal(mim_local_start(&o, &srv), 0);
  }
}

/* ---- rate limits ---- */

/* Calls ListLength until refused (bounded); returns how many passed. The bucket refills
 * while the calls run (10 per second), so the count may exceed the burst by that. */
static size_t calls_until_refused(server *s, const char *cache, int64_t *elapsed_ms,
                                  grpc_probe_result *r) {
  int64_t t0 = cmn_mono_ms();
  size_t ok = 0;
  for (int i = 0; i < 500; i++) {
    if (length(s, cache, "x", r, NULL) != GRPC_STATUS_OK) {
      break;
    }
    ok++;
  }
  *elapsed_ms = cmn_mono_ms() - t0;
  return ok;
}

static void test_cache_ops_rate(void **state) {
  server *s = *state;
  grpc_probe_result r;
  int64_t ms = 0;
  size_t ok = calls_until_refused(s, "ops", &ms, &r);
  assert_refused(&r, "operations_rate_limit_exceeded",
                 "cache ops exceeded its rate limit of 10 operations per second");
  assert_true(ok >= 10);
  assert_true(ok <= 10 + (size_t)(ms / 100) + 1);
  sleep_ms(1100);
  length(s, "ops", "x", &r, NULL);
  assert_ok(&r); /* recovered after a second */
}

/* Waits (bounded) until the cache's bucket admits a call again. */
static void wait_admitted(server *s, const char *cache) {
  grpc_probe_result r;
  for (int i = 0; i < 40; i++) {
    if (length(s, cache, "x", &r, NULL) == GRPC_STATUS_OK) {
      return;
    }
    sleep_ms(250);
  }
  fail_msg("cache %s never admitted a call again", cache);
}

static void test_list_fetch_costs_half(void **state) {
  server *s = *state;
  grpc_probe_result r;
  concat(s, "fetch", "l", 59, 1, &r); /* costs 30: the bucket (10) goes into debt */
  assert_ok(&r);
  length(s, "fetch", "x", &r, NULL);
  assert_refused(&r, "operations_rate_limit_exceeded", "fetch");
  sleep_ms(3100);
  wait_admitted(s, "fetch");
  sleep_ms(1100);                 /* full again: 10 */
  fetch_all(s, "fetch", "l", &r); /* 59 elements cost ceil(59 / 2) = 30: 10 - 30 = -20 */
  assert_ok(&r);
  length(s, "fetch", "x", &r, NULL);
  assert_refused(&r, "operations_rate_limit_exceeded", "fetch");
  /* Had it cost 1 the bucket would be full again by now; costing 30 it is at -8. */
  sleep_ms(1200);
  length(s, "fetch", "x", &r, NULL);
  assert_refused(&r, "operations_rate_limit_exceeded", "fetch");
  /* Had it cost 59 (-49) it would still be refused at 3.2 s; costing 30 it passes. */
  sleep_ms(2000);
  length(s, "fetch", "x", &r, NULL);
  assert_ok(&r);
}

static void test_cache_bytes_rate(void **state) {
  server *s = *state;
  grpc_probe_result r;
  /* 10000 bytes per second: 6000 + 9000 are admitted (the second into a debt of 5000
   * bytes, half a second's worth, so slow runs still see the refusal), then nothing. */
  push(s, "bytes", "b", 6000, 0, 0, &r);
  assert_ok(&r);
  push(s, "bytes", "b", 9000, 0, 0, &r);
  assert_ok(&r);
  push(s, "bytes", "b", 10, 0, 0, &r);
  assert_refused(&r, "throughput_rate_limit_exceeded",
                 "cache bytes exceeded its throughput limit of 10000 bytes per second");
  sleep_ms(1100);
  /* Response bytes count too: fetching the 15000 bytes back empties it again. */
  fetch_all(s, "bytes", "b", &r);
  assert_ok(&r);
  push(s, "bytes", "b", 10, 0, 0, &r);
  assert_refused(&r, "throughput_rate_limit_exceeded", "bytes");
}

static void test_topic_ops_count_deliveries(void **state) {
  server *s = *state;
  mim_transport *t = raw_connect(s->srv, NULL);
  assert_non_null(t);
  raw_sub sub;
  raw_sub_init(&sub);
  assert_int_equal(raw_subscribe(t, "topics", "news", 0, 0, &sub), MIM_OK);
  assert_true(raw_sub_wait(&sub, RAW_HEARTBEATS, 1, scaled(5000)));
  /* Each publish costs 2 (itself and its delivery): 5 fit in 10 per second. */
  grpc_probe_result r;
  int64_t t0 = cmn_mono_ms();
  size_t ok = 0;
  for (int i = 0; i < 100 && publish(s, "topics", "news", 10, &r) == GRPC_STATUS_OK; i++) {
    ok++;
  }
  int64_t ms = cmn_mono_ms() - t0;
  assert_refused(&r, "operations_rate_limit_exceeded",
                 "topic namespace topics exceeded its rate limit of 10 operations per second");
  assert_true(ok >= 5);
  assert_true(ok <= 5 + (size_t)(ms / 200) + 1);
  assert_true(raw_sub_wait(&sub, RAW_ITEMS, ok, scaled(5000)));
  sleep_ms(1100);
  publish(s, "topics", "news", 10, &r);
  assert_ok(&r);
  raw_sub_cancel(&sub);
  assert_true(raw_sub_wait_closed(&sub, scaled(5000)));
  raw_sub_destroy(&sub);
  mim_transport_free(t);
}

static void subscribe_req(uint8_t **buf, size_t *len) {
  CacheClient__Pubsub__SubscriptionRequest req = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  req.cache_name = "subs";
  req.topic = "room";
  *buf = raw_pack(&req.base, len);
}

static void test_subscriptions_limit(void **state) {
  server *s = *state;
  mim_transport *t = raw_connect(s->srv, NULL);
  assert_non_null(t);
  raw_sub subs[2];
  for (int i = 0; i < 2; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(t, "subs", "room", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, scaled(5000)));
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  subscribe_req(&buf, &len);
  grpc_probe_result r;
  grpc_probe_call(s->probe, M_SUBSCRIBE, NULL, buf, len, scaled(DEADLINE_MS), &r);
  assert_refused(&r, "topic_subscriptions_limit_exceeded",
                 "topic namespace subs already has its limit of 2 concurrent subscribers");
  /* Another namespace has its own count. */
  raw_sub other;
  raw_sub_init(&other);
  assert_int_equal(raw_subscribe(t, "topics", "room", 0, 0, &other), MIM_OK);
  assert_true(raw_sub_wait(&other, RAW_HEARTBEATS, 1, scaled(5000)));
  /* When a stream ends its place is freed (once the server has let go of it). */
  raw_sub_cancel(&subs[0]);
  assert_true(raw_sub_wait_closed(&subs[0], scaled(5000)));
  raw_sub again;
  bool admitted = false;
  for (int i = 0; i < 50 && !admitted; i++) {
    raw_sub_init(&again);
    assert_int_equal(raw_subscribe(t, "subs", "room", 0, 0, &again), MIM_OK);
    admitted = raw_sub_wait(&again, RAW_HEARTBEATS, 1, scaled(5000));
    if (!admitted) {
      assert_true(raw_sub_wait_closed(&again, scaled(5000)));
      raw_sub_destroy(&again);
      sleep_ms(100);
    }
  }
  assert_true(admitted);
  raw_sub *open[] = {&subs[1], &other, &again};
  for (size_t i = 0; i < 3; i++) {
    raw_sub_cancel(open[i]);
    assert_true(raw_sub_wait_closed(open[i], scaled(5000)));
    raw_sub_destroy(open[i]);
  }
  raw_sub_destroy(&subs[0]);
  free(buf);
  mim_transport_free(t);
}

static void test_rate_limits_momento(void **state) {
  (void)state;
  server s;
  const char *extra[] = {"--rate-limits", "momento", "--cache-ops-per-s", "20", NULL};
  assert_int_equal(start(&s, extra), 0);
  grpc_probe_result r;
  int64_t ms = 0;
  /* The per-limit flag wins over the mode; the others take the hosted values. */
  size_t ok = calls_until_refused(&s, "ops", &ms, &r);
  assert_refused(&r, "operations_rate_limit_exceeded", "20 operations per second");
  assert_true(ok >= 20);
  for (int i = 0; i < 60 && publish(&s, "topics", "t", 10, &r) == GRPC_STATUS_OK; i++) {
  }
  assert_int_equal(r.code, GRPC_STATUS_OK); /* 60 publishes fit in 100 per second */
  stop(&s);
}

/* ---- fixtures ---- */

static int setup_hard(void **state) {
  static server s;
  *state = &s;
  return start(&s, NULL);
}

static int setup_rates(void **state) {
  static server s;
  *state = &s;
  const char *extra[] = {"--cache-ops-per-s",
                         "10",
                         "--cache-bytes-per-s",
                         "10000",
                         "--topic-ops-per-s",
                         "10",
                         "--topic-subscriptions",
                         "2",
                         NULL};
  return start(&s, extra);
}

static int teardown(void **state) {
  stop(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest hard[] = {
      cmocka_unit_test(test_topic_payload),
      cmocka_unit_test(test_element_size),
      cmocka_unit_test(test_item_size_after_truncation),
      cmocka_unit_test(test_ttl_cap),
      cmocka_unit_test(test_token_permissions),
      cmocka_unit_test(test_limits_none),
      cmocka_unit_test(test_flags_override),
      cmocka_unit_test(test_bad_limit_flags),
  };
  const struct CMUnitTest rates[] = {
      cmocka_unit_test(test_cache_ops_rate),      cmocka_unit_test(test_list_fetch_costs_half),
      cmocka_unit_test(test_cache_bytes_rate),    cmocka_unit_test(test_topic_ops_count_deliveries),
      cmocka_unit_test(test_subscriptions_limit), cmocka_unit_test(test_rate_limits_momento),
  };
  int rc = cmocka_run_group_tests_name("hard limits", hard, setup_hard, teardown);
  return rc | cmocka_run_group_tests_name("rate limits", rates, setup_rates, teardown);
}
