/* The operations budget (issue 15): a join fetches only its initial history,
 * mim_history_before pages back through the rest with ranges, and mim_client_stats_get
 * counts calls, operations as Momento bills them, bytes, retries and refusals. Each count
 * is checked exactly on a client that does nothing else. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "chaos_proxy.h"
#include "envelope.h"
#include "error.h"
#include "mim_local.h"
#include "stats.h"
#include "test_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "budget-test"
#define WAIT_MS 20000

static mim_local *srv;
static mim_client *root;

static const char *new_chat(char *buf, size_t n, const char *tag) {
  static int counter;
  snprintf(buf, n, "chat-%s-%d", tag, counter++);
  return buf;
}

/* ---- what a session delivered ---- */

#define MAX_RECS 64

typedef struct collector {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
  char text[MAX_RECS][16];
  bool history[MAX_RECS];
} collector;

static void collector_init(collector *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
}

static void collector_free(collector *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  collector *c = user;
  pthread_mutex_lock(&c->mu);
  if (c->n < MAX_RECS) {
    snprintf(c->text[c->n], sizeof c->text[0], "%s", m->text);
    c->history[c->n] = m->from_history;
  }
  c->n++;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

/* Waits (bounded) until c holds n messages. */
static bool wait_count(collector *c, size_t n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(WAIT_MS / 1000) * test_time_scale();
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  while (c->n < n && rc == 0)
    rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
  bool ok = c->n >= n;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

static mim_session *join(mim_client *cl, const char *chat, uint32_t cap, uint32_t initial,
                         collector *c) {
  mim_join_options o;
  mim_join_options_init(&o);
  o.history_cap = cap;
  o.initial_history = initial;
  mim_session *s = NULL;
  mim_status st = mim_join(cl, CACHE, chat, &o, on_message, c, &s);
  if (st != MIM_OK)
    fail_msg("mim_join(%s): %s %s", chat, mim_status_name(st), mim_last_error_detail());
  return s;
}

/* Puts n chat messages "m<first>".. at the end of the chat's list with one concatenate
 * (on the root client), ids saved in ids when not NULL. */
static void fill(const char *chat, int first, int n, char (*ids)[MIM_ENVELOPE_ID_SIZE]) {
  mim_bytes *values = calloc((size_t)n, sizeof *values);
  assert_non_null(values);
  for (int i = 0; i < n; i++) {
    char id[MIM_ENVELOPE_ID_SIZE], text[16];
    assert_int_equal(mim_envelope_new_id(id), MIM_OK);
    snprintf(text, sizeof text, "m%d", first + i);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(mim_envelope_build(id, "filler", text, 1, &json, &len), MIM_OK);
    values[i] = (mim_bytes){(const uint8_t *)json, len};
    if (ids)
      memcpy(ids[first + i], id, sizeof id);
  }
  mim_list_write_options wo = {.struct_size = sizeof(mim_list_write_options), .refresh_ttl = true};
  assert_int_equal(mim_list_concat_back(root, CACHE, chat, values, (size_t)n, &wo, NULL), MIM_OK);
  for (int i = 0; i < n; i++)
    free((void *)values[i].data);
  free(values);
}

static mim_client_stats stats(mim_client *cl) {
  mim_client_stats st = MIM_CLIENT_STATS_INIT;
  assert_int_equal(mim_client_stats_get(cl, &st), MIM_OK);
  return st;
}

/* ---- join ---- */

/* 30 messages in the list: a default join shows the newest 20 and costs one ListFetch of
 * 20 values (10 operations) plus the subscribe (1 topic operation). */
static void test_join_fetches_initial_history(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "initial");
  fill(chat, 0, 30, NULL);
  mim_client *cl = test_client_from_key(srv->root_key);
  collector c;
  collector_init(&c);
  mim_session *s = join(cl, chat, 0, 0, &c);
  mim_client_stats st = stats(cl);
  assert_int_equal(c.n, 20);
  for (size_t i = 0; i < 20; i++) {
    char want[16];
    snprintf(want, sizeof want, "m%zu", 10 + i);
    assert_string_equal(c.text[i], want);
    assert_true(c.history[i]);
  }
  assert_int_equal(st.calls, 1);
  assert_int_equal(st.failed_calls, 0);
  assert_int_equal(st.cache_operations, 10);
  assert_int_equal(st.topic_operations, 1);
  assert_int_equal(st.subscriptions, 1);
  assert_int_equal(st.control_calls, 0);
  assert_int_equal(st.messages_received, 0);
  assert_int_equal(st.retries, 0);
  assert_true(st.bytes_sent > 0);
  assert_true(st.bytes_received > 600); /* 20 envelopes of at least 30 bytes */
  mim_leave(s);

  /* initial_history 5: 5 values, 3 operations. */
  collector c5;
  collector_init(&c5);
  s = join(cl, chat, 0, 5, &c5);
  assert_int_equal(c5.n, 5);
  assert_string_equal(c5.text[0], "m25");
  assert_int_equal(stats(cl).cache_operations, 10 + 3);
  mim_leave(s);

  /* At least the history cap: the whole list (30 values, 15 operations). */
  collector call;
  collector_init(&call);
  s = join(cl, chat, 10, 10, &call);
  assert_int_equal(call.n, 30);
  assert_int_equal(stats(cl).cache_operations, 10 + 3 + 15);
  mim_leave(s);
  mim_client_free(cl);
  collector_free(&c);
  collector_free(&c5);
  collector_free(&call);
}

/* ---- paging ---- */

static void expect_page(const mim_message_list *page, int first, int n) {
  assert_int_equal(page->count, n);
  for (int i = 0; i < n; i++) {
    char want[16];
    snprintf(want, sizeof want, "m%d", first + i);
    assert_string_equal(page->messages[i].text, want);
    assert_true(page->messages[i].from_history);
  }
}

static void test_history_before_pages(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "pages");
  static char ids[30][MIM_ENVELOPE_ID_SIZE];
  fill(chat, 0, 30, ids);
  mim_client *cl = test_client_from_key(srv->root_key);
  collector c;
  collector_init(&c);
  mim_session *s = join(cl, chat, 0, 0, &c); /* shows m10..m29 */
  uint64_t ops = stats(cl).cache_operations;
  mim_message_list *page = NULL;
  bool more = false;
  /* Before the oldest shown (20th from the end): one fetch where the join ended, of the
   * page plus the slack (values 18..38 from the end: the 13 the list has, 7 ops). */
  assert_int_equal(mim_history_before(s, ids[10], 8, &page, &more), MIM_OK);
  expect_page(page, 2, 8);
  assert_true(more);
  mim_message_list_free(page);
  assert_int_equal(stats(cl).cache_operations, ops += 7);
  /* The start of the list: fewer than asked, nothing more (values 26..46: 5, 3 ops). */
  assert_int_equal(mim_history_before(s, ids[2], 8, &page, &more), MIM_OK);
  expect_page(page, 0, 2);
  assert_false(more);
  mim_message_list_free(page);
  assert_int_equal(stats(cl).cache_operations, ops += 3);
  assert_int_equal(mim_history_before(s, ids[0], 8, &page, &more), MIM_OK);
  expect_page(page, 0, 0);
  assert_false(more);
  mim_message_list_free(page);
  assert_int_equal(stats(cl).cache_operations, ops += 2);
  /* The newest 3: one fetch of 3 values (2 operations). */
  assert_int_equal(mim_history_before(s, NULL, 3, &page, &more), MIM_OK);
  expect_page(page, 27, 3);
  assert_true(more);
  mim_message_list_free(page);
  assert_int_equal(stats(cl).cache_operations, ops += 2);
  /* A before_id away from where the last page ended: the guess (values 1..21 from the
   * end) misses the 8 older values, so a tail of 2 * 8 + 20 follows (the whole list). */
  assert_int_equal(mim_history_before(s, ids[10], 8, &page, &more), MIM_OK);
  expect_page(page, 2, 8);
  assert_true(more);
  mim_message_list_free(page);
  assert_int_equal(stats(cl).cache_operations, ops += 11 + 15);
  /* Errors. */
  page = NULL;
  assert_int_equal(mim_history_before(s, "no-such-id", 8, &page, &more), MIM_ERR_NOT_FOUND);
  assert_null(page);
  assert_int_equal(mim_history_before(s, NULL, 0, &page, &more), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_history_before(s, NULL, 3, NULL, &more), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_history_before(NULL, NULL, 3, &page, &more), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_history_before(s, NULL, 3, &page, NULL), MIM_OK); /* more optional */
  mim_message_list_free(page);
  mim_leave(s);
  mim_client_free(cl);
  collector_free(&c);
}

/* Paging back through a list much longer than a page: every message once, in order,
 * one fetch of the page plus a few values per page, also after messages pushed meanwhile
 * moved the values away from where the last page ended (then tails find them again). */
#define DEEP_N 400
static void test_history_before_deep(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "deep");
  static char ids[DEEP_N + 30][MIM_ENVELOPE_ID_SIZE];
  for (int i = 0; i < DEEP_N; i += 100)
    fill(chat, i, 100, ids);
  mim_client *cl = test_client_from_key(srv->root_key);
  collector c;
  collector_init(&c);
  mim_session *s = join(cl, chat, 1000, 0, &c);
  int oldest = DEEP_N - 20;
  int pages = 0;
  bool more = true;
  mim_client_stats before = stats(cl);
  while (more) {
    if (pages == 4) /* 30 newer messages: the next page is 30 further from the end */
      fill(chat, DEEP_N, 30, ids);
    mim_message_list *page = NULL;
    assert_int_equal(mim_history_before(s, ids[oldest], 25, &page, &more), MIM_OK);
    int n = oldest < 25 ? oldest : 25;
    expect_page(page, oldest - n, n);
    oldest -= n;
    mim_message_list_free(page);
    assert_true(++pages <= DEEP_N / 25 + 1);
  }
  assert_int_equal(oldest, 0);
  mim_client_stats after = stats(cl);
  uint64_t fetches = after.calls - before.calls;
  uint64_t ops = after.cache_operations - before.cache_operations;
  print_message("deep: %d pages, %llu fetches, %llu operations\n", pages,
                (unsigned long long)fetches, (unsigned long long)ops);
  /* Each page: values 23..60 from the end of where the last one ended (19 ops); the
   * displaced one also a tail of 70 and one of 280 (35 + 140 ops). */
  assert_int_equal(fetches, pages + 2);
  assert_true(ops <= 19u * (unsigned)pages + 35 + 140);
  mim_leave(s);
  mim_client_free(cl);
  collector_free(&c);
}

/* ---- counting ---- */

/* A join of an empty chat, then 3 sends received by the same session: each send is a
 * push (1 operation) and a publish (1 topic operation), each delivery 1 topic operation. */
static void test_stats_send_and_receive(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "send");
  mim_client *cl = test_client_from_key(srv->root_key);
  collector c;
  collector_init(&c);
  mim_session *s = join(cl, chat, 0, 0, &c);
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_send(s, "hello", NULL), MIM_OK);
  assert_true(wait_count(&c, 3));
  mim_leave(s); /* flushes: every send has finished */
  mim_client_stats st = stats(cl);
  assert_int_equal(st.calls, 1 + 3 * 2);
  assert_int_equal(st.failed_calls, 0);
  assert_int_equal(st.cache_operations, 1 + 3); /* the fetch of a missing list, 3 pushes */
  assert_int_equal(st.topic_operations, 1 + 3 + 3);
  assert_int_equal(st.messages_received, 3);
  assert_int_equal(st.subscriptions, 1);
  assert_int_equal(st.retries, 0);
  assert_int_equal(st.throttled, 0);
  mim_client_free(cl);
  collector_free(&c);
}

/* Concatenates cost one operation per two values; failures no operation. */
static void test_stats_list_calls(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "list");
  mim_client *cl = test_client_from_key(srv->root_key);
  mim_bytes v[5] = {{(const uint8_t *)"a", 1},
                    {(const uint8_t *)"b", 1},
                    {(const uint8_t *)"c", 1},
                    {(const uint8_t *)"d", 1},
                    {(const uint8_t *)"e", 1}};
  assert_int_equal(mim_list_concat_back(cl, CACHE, chat, v, 5, NULL, NULL), MIM_OK);
  assert_int_equal(stats(cl).cache_operations, 3);
  assert_int_equal(mim_list_concat_front(cl, CACHE, chat, v, 2, NULL, NULL), MIM_OK);
  assert_int_equal(stats(cl).cache_operations, 4);
  mim_list_values *vals = NULL;
  assert_int_equal(mim_list_fetch(cl, CACHE, chat, NULL, &vals), MIM_OK);
  mim_list_values_free(vals);
  assert_int_equal(stats(cl).cache_operations, 4 + 4); /* 7 values */
  assert_int_equal(mim_list_length(cl, CACHE, chat, NULL, NULL), MIM_OK);
  assert_int_equal(stats(cl).cache_operations, 9);
  assert_int_equal(mim_list_length(cl, "no-such-cache", chat, NULL, NULL), MIM_ERR_NOT_FOUND);
  mim_client_stats st = stats(cl);
  assert_int_equal(st.cache_operations, 9);
  assert_int_equal(st.calls, 5);
  assert_int_equal(st.failed_calls, 1);
  assert_int_equal(st.limit_refusals, 0);
  assert_true(st.bytes_sent > 10 && st.bytes_received > 7);
  assert_int_equal(mim_client_stats_get(NULL, &st), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_client_stats_get(cl, NULL), MIM_ERR_INVALID_ARGUMENT);
  mim_client_free(cl);
}

/* Refusals are classified from the detail every transport builds for RESOURCE_EXHAUSTED
 * (mim_format_limit_detail): rates count as throttled, sizes only as limit refusals. */
static void test_stats_refusals(void **state) {
  (void)state;
  mim_client *cl = test_client_from_key(srv->root_key);
  char detail[256];
  mim_format_limit_detail(detail, sizeof detail, "operations_rate_limit_exceeded", "slow down");
  mim_stats_call(cl, MIM_HOST_CACHE, "/cache_client.Scs/ListFetch", 0, 10, 0,
                 MIM_ERR_RESOURCE_EXHAUSTED, detail, NULL);
  mim_format_limit_detail(detail, sizeof detail, "throughput_rate_limit_exceeded", "slow down");
  mim_stats_stream_end(cl, MIM_ERR_RESOURCE_EXHAUSTED, detail);
  mim_format_limit_detail(detail, sizeof detail, "element_size_limit_exceeded", "too big");
  mim_stats_call(cl, MIM_HOST_CACHE, "/cache_client.Scs/ListPushBack", 0, 10, 0,
                 MIM_ERR_RESOURCE_EXHAUSTED, detail, NULL);
  mim_stats_call(cl, MIM_HOST_CACHE, "/cache_client.Scs/ListPushBack", 0, 10, 0,
                 MIM_ERR_RESOURCE_EXHAUSTED, "no cause given", NULL);
  mim_stats_call(cl, MIM_HOST_CACHE, "/cache_client.Scs/ListPushBack", 0, 10, 0,
                 MIM_ERR_UNAVAILABLE, detail, NULL);
  mim_stats_call(cl, MIM_HOST_CONTROL, "/control_client.ScsControl/CreateCache", 0, 10, 4, MIM_OK,
                 NULL, NULL);
  mim_client_stats st = stats(cl);
  assert_int_equal(st.throttled, 2);
  assert_int_equal(st.limit_refusals, 4);
  assert_int_equal(st.calls, 5);
  assert_int_equal(st.failed_calls, 4);
  assert_int_equal(st.control_calls, 1);
  assert_int_equal(st.cache_operations, 0);
  assert_int_equal(st.bytes_sent, 50);
  assert_int_equal(st.bytes_received, 4);
  mim_client_free(cl);
}

/* A lost connection: the subscription re-subscribes and the send in flight is retried by
 * the outbox; both count as retries, each stream started as a subscription. */
static void test_stats_retries(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "retry");
  chaos_proxy_opts po;
  chaos_proxy_opts_init(&po);
  po.start_paused = 1; /* only the scripted faults below */
  chaos_proxy *proxy = chaos_proxy_start(srv->port, &po);
  assert_non_null(proxy);
  char via[64];
  snprintf(via, sizeof via, "127.0.0.1:%d", chaos_proxy_port(proxy, 0));
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.cache_host = o.control_host = o.token_host = via;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 10000 * (int64_t)test_time_scale();
  mim_client *cl = NULL;
  assert_int_equal(mim_client_create(&o, &cl), MIM_OK);
  collector c;
  collector_init(&c);
  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.flush_timeout_ms = 20000u * (uint32_t)test_time_scale();
  mim_session *s = NULL;
  assert_int_equal(mim_join(cl, CACHE, chat, &jo, on_message, &c, &s), MIM_OK);
  /* The push waits in the held connection (mim_send returns once queued), then the cut
   * fails it and the subscription. */
  chaos_proxy_hold(proxy, 1);
  assert_int_equal(mim_send(s, "through the cut", NULL), MIM_OK);
  chaos_proxy_cut_all(proxy);
  chaos_proxy_hold(proxy, 0);
  assert_true(wait_count(&c, 1));
  mim_leave(s); /* flushed: the send has finished */
  mim_client_stats st = stats(cl);
  print_message("retries: %llu, subscriptions %llu, calls %llu (%llu failed)\n",
                (unsigned long long)st.retries, (unsigned long long)st.subscriptions,
                (unsigned long long)st.calls, (unsigned long long)st.failed_calls);
  assert_int_equal(c.n, 1);
  assert_true(st.subscriptions >= 2);
  assert_true(st.failed_calls >= 1);
  /* Every re-subscribe and every failed push or publish was retried. */
  assert_int_equal(st.retries, st.subscriptions - 1 + st.failed_calls);
  mim_client_free(cl);
  chaos_proxy_stop(proxy);
  collector_free(&c);
}

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

int main(void) {
  setenv("CMOCKA_TEST_ABORT", "1", 0); /* sessions call into collectors on test stacks */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join_fetches_initial_history),
      cmocka_unit_test(test_history_before_pages),
      cmocka_unit_test(test_history_before_deep),
      cmocka_unit_test(test_stats_send_and_receive),
      cmocka_unit_test(test_stats_list_calls),
      cmocka_unit_test(test_stats_refusals),
      cmocka_unit_test(test_stats_retries),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
