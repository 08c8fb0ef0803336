/* lib/list.c against mim-local: every list call, sync and async, with truncation, TTLs,
 * slices (negative indices too), missing lists, a missing cache and invalid arguments. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "clock.h"
#include "mim_local.h"

#include <arpa/inet.h>
#include <momento/list.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CACHE "instant-messaging"

static mim_local *srv;
static mim_client *cli;

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches};
  if (mim_local_start(&o, &srv) != 0)
    return -1;
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = srv->root_key;
  co.tls = MIM_TLS_OFF;
  co.default_deadline_ms = 10000;
  return mim_client_create(&co, &cli) == MIM_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_client_free(cli);
  cli = NULL;
  int rc = mim_local_stop(srv);
  srv = NULL;
  return rc;
}

static void push_str(const char *list, const char *v, bool back) {
  mim_status st = back ? mim_list_push_back(cli, CACHE, list, v, strlen(v), NULL, NULL)
                       : mim_list_push_front(cli, CACHE, list, v, strlen(v), NULL, NULL);
  assert_int_equal(st, MIM_OK);
}

/* Fills list with "0".."n-1". */
static void fill_digits(const char *list, int n) {
  assert_int_equal(mim_item_delete(cli, CACHE, list), MIM_OK);
  for (int i = 0; i < n; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    push_str(list, v, true);
  }
}

/* Asserts the list's values, joined with ",", equal want (found required). */
static void expect_values(const mim_list_values *lv, const char *want) {
  char got[4096] = "";
  size_t off = 0;
  assert_true(lv->found);
  for (size_t i = 0; i < lv->count; i++) {
    assert_int_equal(lv->values[i].data[lv->values[i].len], '\0');
    off += (size_t)snprintf(got + off, sizeof got - off, "%s%.*s", i ? "," : "",
                            (int)lv->values[i].len, (const char *)lv->values[i].data);
  }
  assert_string_equal(got, want);
}

static void expect_list(const char *list, const mim_list_range *r, const char *want) {
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, list, r, &lv), MIM_OK);
  assert_non_null(lv);
  expect_values(lv, want);
  mim_list_values_free(lv);
}

static mim_list_range rng(bool hs, int32_t s, bool he, int32_t e) {
  mim_list_range r = {hs, s, he, e};
  return r;
}

/* ---- sync ---- */

static void test_push_and_fetch(void **state) {
  (void)state;
  uint32_t n = 0;
  assert_int_equal(mim_list_push_back(cli, CACHE, "pf", "a", 1, NULL, &n), MIM_OK);
  assert_int_equal(n, 1);
  assert_int_equal(mim_list_push_back(cli, CACHE, "pf", "b", 1, NULL, &n), MIM_OK);
  assert_int_equal(n, 2);
  assert_int_equal(mim_list_push_front(cli, CACHE, "pf", "z", 1, NULL, &n), MIM_OK);
  assert_int_equal(n, 3);
  push_str("pf", "a", true); /* duplicates are allowed */
  expect_list("pf", NULL, "z,a,b,a");
  uint32_t len = 0;
  bool found = false;
  assert_int_equal(mim_list_length(cli, CACHE, "pf", &len, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(len, 4);
  assert_int_equal(mim_list_length(cli, CACHE, "pf", &len, NULL), MIM_OK);
  assert_int_equal(len, 4);
}

static void test_binary_and_empty_values(void **state) {
  (void)state;
  const uint8_t bin[] = {0x00, 0xff, 0x00, 0x7f, 0x80};
  assert_int_equal(mim_list_push_back(cli, CACHE, "bin", bin, sizeof bin, NULL, NULL), MIM_OK);
  assert_int_equal(mim_list_push_back(cli, CACHE, "bin", NULL, 0, NULL, NULL), MIM_OK);
  assert_int_equal(mim_list_push_back(cli, CACHE, "bin", "", 0, NULL, NULL), MIM_OK);
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, "bin", NULL, &lv), MIM_OK);
  assert_true(lv->found);
  assert_int_equal(lv->count, 3);
  assert_int_equal(lv->values[0].len, sizeof bin);
  assert_memory_equal(lv->values[0].data, bin, sizeof bin);
  assert_int_equal(lv->values[0].data[sizeof bin], 0);
  assert_int_equal(lv->values[1].len, 0);
  assert_int_equal(lv->values[1].data[0], 0);
  assert_int_equal(lv->values[2].len, 0);
  mim_list_values_free(lv);
  mim_list_values_free(NULL);
}

static void test_large_value(void **state) {
  (void)state;
  size_t n = 128 * 1024; /* hosted Momento's largest list element */
  uint8_t *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (uint8_t)(i * 31 + 7);
  assert_int_equal(mim_list_push_back(cli, CACHE, "big", big, n, NULL, NULL), MIM_OK);
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, "big", NULL, &lv), MIM_OK);
  assert_int_equal(lv->count, 1);
  assert_int_equal(lv->values[0].len, n);
  assert_memory_equal(lv->values[0].data, big, n);
  mim_list_values_free(lv);
  free(big);
}

static void test_concat(void **state) {
  (void)state;
  mim_bytes back[] = {{(const uint8_t *)"c", 1}, {(const uint8_t *)"d", 1}};
  mim_bytes front[] = {{(const uint8_t *)"a", 1}, {(const uint8_t *)"b", 1}};
  uint32_t n = 0;
  assert_int_equal(mim_list_concat_back(cli, CACHE, "cat", back, 2, NULL, &n), MIM_OK);
  assert_int_equal(n, 2);
  assert_int_equal(mim_list_concat_front(cli, CACHE, "cat", front, 2, NULL, &n), MIM_OK);
  assert_int_equal(n, 4);
  expect_list("cat", NULL, "a,b,c,d");
}

static void test_truncation(void **state) {
  (void)state;
  mim_list_write_options o = {
      .struct_size = sizeof(mim_list_write_options), .refresh_ttl = true, .truncate_to = 3};
  uint32_t n = 0;
  for (int i = 0; i < 5; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    assert_int_equal(mim_list_push_back(cli, CACHE, "trunc", v, strlen(v), &o, &n), MIM_OK);
  }
  assert_int_equal(n, 3);
  expect_list("trunc", NULL, "2,3,4"); /* the oldest dropped from the front */

  o.truncate_to = 2; /* push front drops from the back */
  assert_int_equal(mim_list_push_front(cli, CACHE, "trunc", "x", 1, &o, &n), MIM_OK);
  assert_int_equal(n, 2);
  expect_list("trunc", NULL, "x,2");

  mim_bytes vals[] = {
      {(const uint8_t *)"p", 1}, {(const uint8_t *)"q", 1}, {(const uint8_t *)"r", 1}};
  o.truncate_to = 4;
  assert_int_equal(mim_list_concat_back(cli, CACHE, "trunc", vals, 3, &o, &n), MIM_OK);
  assert_int_equal(n, 4);
  expect_list("trunc", NULL, "2,p,q,r");
  assert_int_equal(mim_list_concat_front(cli, CACHE, "trunc", vals, 3, &o, &n), MIM_OK);
  assert_int_equal(n, 4);
  expect_list("trunc", NULL, "p,q,r,2");
}

static void test_ttl(void **state) {
  (void)state;
  mim_list_write_options o = {
      .struct_size = sizeof(mim_list_write_options), .ttl_ms = 60000, .refresh_ttl = true};
  assert_int_equal(mim_list_push_back(cli, CACHE, "ttl", "a", 1, &o, NULL), MIM_OK);
  uint64_t left = 0;
  bool found = false;
  assert_int_equal(mim_item_ttl(cli, CACHE, "ttl", &left, &found), MIM_OK);
  assert_true(found);
  assert_true(left > 50000 && left <= 60000);

  /* refresh_ttl false keeps the existing TTL even though this write asks for more. */
  o.ttl_ms = 600000;
  o.refresh_ttl = false;
  assert_int_equal(mim_list_push_back(cli, CACHE, "ttl", "b", 1, &o, NULL), MIM_OK);
  assert_int_equal(mim_item_ttl(cli, CACHE, "ttl", &left, &found), MIM_OK);
  assert_true(left <= 60000);

  /* refresh_ttl true resets it. */
  o.refresh_ttl = true;
  assert_int_equal(mim_list_push_back(cli, CACHE, "ttl", "c", 1, &o, NULL), MIM_OK);
  assert_int_equal(mim_item_ttl(cli, CACHE, "ttl", &left, &found), MIM_OK);
  assert_true(left > 500000 && left <= 600000);

  /* Default options: the server's default TTL (mim-local: one day). */
  assert_int_equal(mim_list_push_back(cli, CACHE, "ttl-default", "a", 1, NULL, NULL), MIM_OK);
  assert_int_equal(mim_item_ttl(cli, CACHE, "ttl-default", &left, &found), MIM_OK);
  assert_true(found);
  assert_true(left > 0);

  assert_int_equal(mim_item_ttl(cli, CACHE, "no-such-item", &left, &found), MIM_OK);
  assert_false(found);
  assert_int_equal(left, 0);
}

static void test_ttl_expiry(void **state) {
  (void)state;
  mim_list_write_options o = {
      .struct_size = sizeof(mim_list_write_options), .ttl_ms = 300, .refresh_ttl = true};
  assert_int_equal(mim_list_push_back(cli, CACHE, "short", "a", 1, &o, NULL), MIM_OK);
  /* Poll (bounded) until the server reports it gone. */
  int64_t deadline = cmn_mono_ms() + 5000;
  bool found = true;
  while (found && cmn_mono_ms() < deadline) {
    uint32_t len;
    assert_int_equal(mim_list_length(cli, CACHE, "short", &len, &found), MIM_OK);
    if (found) {
      struct timespec ts = {0, 20 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  assert_false(found);
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, "short", NULL, &lv), MIM_OK);
  assert_false(lv->found);
  mim_list_values_free(lv);
}

static void test_slices(void **state) {
  (void)state;
  fill_digits("sl", 10);
  mim_list_range r = rng(true, 2, true, 5);
  expect_list("sl", &r, "2,3,4");
  r = rng(true, -3, false, 0);
  expect_list("sl", &r, "7,8,9");
  r = rng(false, 0, true, -8);
  expect_list("sl", &r, "0,1");
  r = rng(true, -4, true, -1);
  expect_list("sl", &r, "6,7,8");
  r = rng(true, 3, true, -3);
  expect_list("sl", &r, "3,4,5,6");
  r = rng(false, 0, false, 0);
  expect_list("sl", &r, "0,1,2,3,4,5,6,7,8,9");
  r = rng(true, 4, true, 4);
  expect_list("sl", &r, ""); /* empty slice of an existing list: found, no values */
  r = rng(true, 20, true, 30);
  expect_list("sl", &r, "");
  r = rng(true, -100, true, 2);
  expect_list("sl", &r, "0,1");
}

static void test_missing_list(void **state) {
  (void)state;
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, "nope", NULL, &lv), MIM_OK);
  assert_non_null(lv);
  assert_false(lv->found);
  assert_int_equal(lv->count, 0);
  mim_list_values_free(lv);
  uint32_t len = 99;
  bool found = true;
  assert_int_equal(mim_list_length(cli, CACHE, "nope", &len, &found), MIM_OK);
  assert_false(found);
  assert_int_equal(len, 0);
  uint8_t *v = (uint8_t *)"x";
  size_t vl = 9;
  assert_int_equal(mim_list_pop_front(cli, CACHE, "nope", &v, &vl, &found), MIM_OK);
  assert_false(found);
  assert_null(v);
  assert_int_equal(vl, 0);
  uint32_t n = 99;
  assert_int_equal(mim_list_retain(cli, CACHE, "nope", NULL, NULL, &n), MIM_OK);
  assert_int_equal(n, 0);
  n = 99;
  assert_int_equal(mim_list_remove_value(cli, CACHE, "nope", "a", 1, &n), MIM_OK);
  assert_int_equal(n, 0);
  n = 99;
  assert_int_equal(mim_list_erase(cli, CACHE, "nope", NULL, 0, &n), MIM_OK);
  assert_int_equal(n, 0);
  assert_int_equal(mim_item_delete(cli, CACHE, "nope"), MIM_OK);
}

static void test_missing_cache(void **state) {
  (void)state;
  const char *c = "no-such-cache";
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_push_back(cli, c, "l", "a", 1, NULL, NULL), MIM_ERR_NOT_FOUND);
  assert_string_not_equal(mim_last_error_detail(), "");
  assert_int_equal(mim_list_fetch(cli, c, "l", NULL, &lv), MIM_ERR_NOT_FOUND);
  assert_null(lv);
  assert_int_equal(mim_list_length(cli, c, "l", NULL, NULL), MIM_ERR_NOT_FOUND);
  mim_bytes one = {(const uint8_t *)"a", 1};
  assert_int_equal(mim_list_concat_back(cli, c, "l", &one, 1, NULL, NULL), MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_list_pop_back(cli, c, "l", NULL, NULL, NULL), MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_item_delete(cli, c, "l"), MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_item_ttl(cli, c, "l", NULL, NULL), MIM_ERR_NOT_FOUND);
}

static void test_retain(void **state) {
  (void)state;
  fill_digits("ret", 6);
  mim_list_range r = rng(true, 1, true, -1);
  uint32_t n = 0;
  assert_int_equal(mim_list_retain(cli, CACHE, "ret", &r, NULL, &n), MIM_OK);
  assert_int_equal(n, 4);
  expect_list("ret", NULL, "1,2,3,4");
  r = rng(true, -2, false, 0);
  assert_int_equal(mim_list_retain(cli, CACHE, "ret", &r, NULL, &n), MIM_OK);
  assert_int_equal(n, 2);
  expect_list("ret", NULL, "3,4");
}

static void test_remove_value(void **state) {
  (void)state;
  assert_int_equal(mim_item_delete(cli, CACHE, "rm"), MIM_OK);
  const char *vals[] = {"a", "b", "a", "c", "a"};
  for (int i = 0; i < 5; i++)
    push_str("rm", vals[i], true);
  uint32_t n = 0;
  assert_int_equal(mim_list_remove_value(cli, CACHE, "rm", "a", 1, &n), MIM_OK);
  assert_int_equal(n, 2);
  expect_list("rm", NULL, "b,c");
  assert_int_equal(mim_list_remove_value(cli, CACHE, "rm", "zz", 2, &n), MIM_OK);
  assert_int_equal(n, 2);
}

static void test_erase(void **state) {
  (void)state;
  fill_digits("er", 6);
  mim_list_erase_range one = {1, 2};
  uint32_t n = 0;
  assert_int_equal(mim_list_erase(cli, CACHE, "er", &one, 1, &n), MIM_OK);
  assert_int_equal(n, 4);
  expect_list("er", NULL, "0,3,4,5");
  assert_int_equal(mim_list_erase(cli, CACHE, "er", NULL, 0, &n), MIM_OK);
  assert_int_equal(n, 0);
  uint32_t len = 9;
  bool found = true;
  assert_int_equal(mim_list_length(cli, CACHE, "er", &len, &found), MIM_OK);
  assert_int_equal(len, 0);
}

static void test_pop(void **state) {
  (void)state;
  fill_digits("pop", 3);
  uint8_t *v = NULL;
  size_t len = 0;
  bool found = false;
  assert_int_equal(mim_list_pop_front(cli, CACHE, "pop", &v, &len, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(len, 1);
  assert_string_equal((char *)v, "0");
  free(v);
  assert_int_equal(mim_list_pop_back(cli, CACHE, "pop", &v, &len, &found), MIM_OK);
  assert_true(found);
  assert_string_equal((char *)v, "2");
  free(v);
  /* Outputs may be NULL: pop and discard. */
  assert_int_equal(mim_list_pop_back(cli, CACHE, "pop", NULL, NULL, NULL), MIM_OK);
  assert_int_equal(mim_list_pop_back(cli, CACHE, "pop", &v, &len, &found), MIM_OK);
  assert_false(found);
  assert_null(v);
}

static void test_item_delete(void **state) {
  (void)state;
  push_str("del", "a", true);
  assert_int_equal(mim_item_delete(cli, CACHE, "del"), MIM_OK);
  bool found = true;
  assert_int_equal(mim_list_length(cli, CACHE, "del", NULL, &found), MIM_OK);
  assert_false(found);
  assert_int_equal(mim_item_delete(cli, CACHE, "del"), MIM_OK);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  const mim_status E = MIM_ERR_INVALID_ARGUMENT;
  mim_list_values *lv = (mim_list_values *)&lv;
  mim_bytes one = {(const uint8_t *)"a", 1};
  mim_bytes bad = {NULL, 3};
  assert_int_equal(mim_list_push_back(NULL, CACHE, "l", "a", 1, NULL, NULL), E);
  assert_int_equal(mim_list_push_back(cli, NULL, "l", "a", 1, NULL, NULL), E);
  assert_int_equal(mim_list_push_back(cli, "", "l", "a", 1, NULL, NULL), E);
  assert_int_equal(mim_list_push_back(cli, CACHE, NULL, "a", 1, NULL, NULL), E);
  assert_int_equal(mim_list_push_front(cli, CACHE, "", "a", 1, NULL, NULL), E);
  assert_int_equal(mim_list_push_front(cli, CACHE, "l", NULL, 5, NULL, NULL), E);
  assert_string_not_equal(mim_last_error_detail(), "");
  assert_int_equal(mim_list_concat_back(cli, CACHE, "l", NULL, 2, NULL, NULL), E);
  assert_int_equal(mim_list_concat_back(cli, CACHE, "l", &one, 0, NULL, NULL), E);
  assert_int_equal(mim_list_concat_front(cli, CACHE, "l", &bad, 1, NULL, NULL), E);
  assert_int_equal(mim_list_fetch(cli, CACHE, "l", NULL, NULL), E);
  assert_int_equal(mim_list_fetch(cli, NULL, "l", NULL, &lv), E);
  assert_null(lv); /* reset even when the arguments are rejected */
  lv = (mim_list_values *)&lv;
  mim_list_range r = rng(true, 5, true, 2);
  assert_int_equal(mim_list_fetch(cli, CACHE, "l", &r, &lv), E);
  assert_null(lv);
  r = rng(true, -1, true, -3);
  assert_int_equal(mim_list_retain(cli, CACHE, "l", &r, NULL, NULL), E);
  assert_int_equal(mim_list_length(cli, CACHE, "", NULL, NULL), E);
  assert_int_equal(mim_list_remove_value(cli, CACHE, "l", NULL, 1, NULL), E);
  mim_list_erase_range er = {0, 1};
  assert_int_equal(mim_list_erase(cli, CACHE, "l", NULL, 2, NULL), E);
  assert_int_equal(mim_list_erase(cli, CACHE, "l", &er, 0, NULL), E);
  assert_int_equal(mim_list_pop_front(cli, "", "l", NULL, NULL, NULL), E);
  assert_int_equal(mim_list_pop_back(cli, CACHE, NULL, NULL, NULL, NULL), E);
  assert_int_equal(mim_item_delete(cli, CACHE, ""), E);
  assert_int_equal(mim_item_ttl(cli, CACHE, NULL, NULL, NULL), E);
}

/* ---- async ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  mim_status status;
  char detail[256];
  uint32_t new_length;
  char values[256];
  bool found;
  pthread_t thread;
} waiter;

static void waiter_init(waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  cmn_cond_init_monotonic(&w->cv);
}

static void waiter_destroy(waiter *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

/* Waits (bounded) until calls reaches n; returns the count seen. */
static int waiter_wait(waiter *w, int n) {
  struct timespec until = cmn_deadline_after_ms(10000);
  pthread_mutex_lock(&w->mu);
  while (w->calls < n) {
    if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
      break;
  }
  int got = w->calls;
  pthread_mutex_unlock(&w->mu);
  return got;
}

static void on_write(void *user, mim_status status, const char *detail, uint32_t new_length) {
  waiter *w = user;
  pthread_mutex_lock(&w->mu);
  w->calls++;
  w->status = status;
  snprintf(w->detail, sizeof w->detail, "%s", detail ? detail : "(null)");
  w->new_length = new_length;
  w->thread = pthread_self();
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void on_fetch(void *user, mim_status status, const char *detail,
                     const mim_list_values *values) {
  waiter *w = user;
  pthread_mutex_lock(&w->mu);
  w->calls++;
  w->status = status;
  snprintf(w->detail, sizeof w->detail, "%s", detail ? detail : "(null)");
  w->found = values && values->found;
  size_t off = 0;
  w->values[0] = '\0';
  for (size_t i = 0; values && i < values->count; i++)
    off += (size_t)snprintf(w->values + off, sizeof w->values - off, "%s%s", i ? "," : "",
                            (const char *)values->values[i].data);
  w->thread = pthread_self();
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void test_async_push_and_fetch(void **state) {
  (void)state;
  assert_int_equal(mim_item_delete(cli, CACHE, "as"), MIM_OK);
  waiter w;
  waiter_init(&w);
  /* Each push completes before the next starts, so the order is deterministic. */
  assert_int_equal(mim_list_push_back_async(cli, CACHE, "as", "b", 1, NULL, on_write, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 1), 1);
  assert_int_equal(w.status, MIM_OK);
  assert_string_equal(w.detail, "");
  assert_int_equal(w.new_length, 1);
  assert_false(pthread_equal(w.thread, pthread_self()));
  mim_list_write_options o = {
      .struct_size = sizeof(mim_list_write_options), .refresh_ttl = true, .truncate_to = 5};
  assert_int_equal(mim_list_push_front_async(cli, CACHE, "as", "a", 1, &o, on_write, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 2), 2);
  assert_int_equal(w.status, MIM_OK);
  assert_int_equal(w.new_length, 2);

  assert_int_equal(mim_list_fetch_async(cli, CACHE, "as", NULL, on_fetch, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 3), 3);
  assert_int_equal(w.status, MIM_OK);
  assert_true(w.found);
  assert_string_equal(w.values, "a,b");

  mim_list_range r = rng(true, -1, false, 0);
  assert_int_equal(mim_list_fetch_async(cli, CACHE, "as", &r, on_fetch, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 4), 4);
  assert_string_equal(w.values, "b");

  assert_int_equal(mim_list_fetch_async(cli, CACHE, "as-missing", NULL, on_fetch, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 5), 5);
  assert_int_equal(w.status, MIM_OK);
  assert_false(w.found);
  waiter_destroy(&w);
}

static void test_async_many_in_flight(void **state) {
  (void)state;
  assert_int_equal(mim_item_delete(cli, CACHE, "many"), MIM_OK);
  waiter w;
  waiter_init(&w);
  for (int i = 0; i < 50; i++)
    assert_int_equal(mim_list_push_back_async(cli, CACHE, "many", "x", 1, NULL, on_write, &w),
                     MIM_OK);
  assert_int_equal(waiter_wait(&w, 50), 50);
  uint32_t len = 0;
  assert_int_equal(mim_list_length(cli, CACHE, "many", &len, NULL), MIM_OK);
  assert_int_equal(len, 50);
  /* Fire and forget: a NULL write callback is allowed. */
  assert_int_equal(mim_list_push_back_async(cli, CACHE, "many", "y", 1, NULL, NULL, NULL), MIM_OK);
  waiter_destroy(&w);
}

static void test_async_errors(void **state) {
  (void)state;
  waiter w;
  waiter_init(&w);
  assert_int_equal(mim_list_push_back_async(cli, "no-such-cache", "l", "a", 1, NULL, on_write, &w),
                   MIM_OK);
  assert_int_equal(waiter_wait(&w, 1), 1);
  assert_int_equal(w.status, MIM_ERR_NOT_FOUND);
  assert_string_not_equal(w.detail, "");
  assert_int_equal(mim_list_fetch_async(cli, "no-such-cache", "l", NULL, on_fetch, &w), MIM_OK);
  assert_int_equal(waiter_wait(&w, 2), 2);
  assert_int_equal(w.status, MIM_ERR_NOT_FOUND);
  assert_false(w.found);

  /* Rejected calls never run their callback. */
  const mim_status E = MIM_ERR_INVALID_ARGUMENT;
  assert_int_equal(mim_list_push_back_async(cli, CACHE, "", "a", 1, NULL, on_write, &w), E);
  assert_int_equal(mim_list_push_front_async(NULL, CACHE, "l", "a", 1, NULL, on_write, &w), E);
  assert_int_equal(mim_list_push_front_async(cli, CACHE, "l", NULL, 1, NULL, on_write, &w), E);
  assert_int_equal(mim_list_fetch_async(cli, CACHE, "l", NULL, NULL, NULL), E);
  assert_int_equal(mim_list_fetch_async(cli, NULL, "l", NULL, on_fetch, &w), E);
  /* Nothing was started for them: after another round trip the count is still 2. */
  assert_int_equal(mim_client_ping(cli), MIM_OK);
  pthread_mutex_lock(&w.mu);
  assert_int_equal(w.calls, 2);
  pthread_mutex_unlock(&w.mu);
  waiter_destroy(&w);
}

/* From a callback: a sync call is refused (it would deadlock the event thread), an
 * async call is fine and its callback runs later on the same thread. */
typedef struct nested {
  waiter w;
  mim_status sync_status;
  mim_status async_status;
} nested;

static void nested_inner(void *user, mim_status status, const char *detail, uint32_t new_length) {
  on_write(&((nested *)user)->w, status, detail, new_length);
}

static void nested_outer(void *user, mim_status status, const char *detail, uint32_t new_length) {
  nested *n = user;
  (void)status;
  (void)detail;
  (void)new_length;
  n->sync_status = mim_list_length(cli, CACHE, "nest", NULL, NULL);
  n->async_status = mim_list_push_back_async(cli, CACHE, "nest", "2", 1, NULL, nested_inner, n);
  on_write(&n->w, MIM_OK, "", 0);
}

static void test_calls_from_a_callback(void **state) {
  (void)state;
  assert_int_equal(mim_item_delete(cli, CACHE, "nest"), MIM_OK);
  nested n;
  memset(&n, 0, sizeof n);
  waiter_init(&n.w);
  assert_int_equal(mim_list_push_back_async(cli, CACHE, "nest", "1", 1, NULL, nested_outer, &n),
                   MIM_OK);
  assert_int_equal(waiter_wait(&n.w, 2), 2);
  assert_int_equal(n.sync_status, MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(n.async_status, MIM_OK);
  assert_int_equal(n.w.status, MIM_OK);
  assert_int_equal(n.w.new_length, 2);
  waiter_destroy(&n.w);
}

/* A loopback socket that accepts TCP connections (the kernel completes them) but never
 * speaks HTTP/2, so calls to it stay pending until their deadline. Returns the fd. */
static int silent_listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_free_cancels_pending_async(void **state) {
  (void)state;
  int port = 0;
  int fd = silent_listener(&port);
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", port);
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  o.cache_host = host;
  o.default_deadline_ms = 60000;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  waiter w;
  waiter_init(&w);
  assert_int_equal(mim_list_fetch_async(c, CACHE, "l", NULL, on_fetch, &w), MIM_OK);
  assert_int_equal(mim_list_push_back_async(c, CACHE, "l", "a", 1, NULL, on_write, &w), MIM_OK);
  int64_t t0 = cmn_mono_ms();
  mim_client_free(c); /* must not wait for the 60 s deadline */
  assert_true(cmn_mono_ms() - t0 < 10000);
  pthread_mutex_lock(&w.mu);
  assert_int_equal(w.calls, 2); /* both callbacks ran before free returned */
  assert_int_equal(w.status, MIM_ERR_CANCELLED);
  pthread_mutex_unlock(&w.mu);
  waiter_destroy(&w);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_and_fetch),
      cmocka_unit_test(test_binary_and_empty_values),
      cmocka_unit_test(test_large_value),
      cmocka_unit_test(test_concat),
      cmocka_unit_test(test_truncation),
      cmocka_unit_test(test_ttl),
      cmocka_unit_test(test_ttl_expiry),
      cmocka_unit_test(test_slices),
      cmocka_unit_test(test_missing_list),
      cmocka_unit_test(test_missing_cache),
      cmocka_unit_test(test_retain),
      cmocka_unit_test(test_remove_value),
      cmocka_unit_test(test_erase),
      cmocka_unit_test(test_pop),
      cmocka_unit_test(test_item_delete),
      cmocka_unit_test(test_invalid_arguments),
      cmocka_unit_test(test_async_push_and_fetch),
      cmocka_unit_test(test_async_many_in_flight),
      cmocka_unit_test(test_async_errors),
      cmocka_unit_test(test_calls_from_a_callback),
      cmocka_unit_test(test_free_cancels_pending_async),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
