/* mim-local: deleting a cache ends the streams of every topic in it, however many (the
 * topics are taken out of the table in fixed batches, without allocating, so that no
 * subscriber of a deleted cache is left waiting when memory is short). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "controlclient.pb-c.h"
#include "raw_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 10000
#define M_CREATE "/control_client.ScsControl/CreateCache"
#define M_DELETE "/control_client.ScsControl/DeleteCache"

/* More topics than one batch (64), so the deletion needs several passes. */
static void test_delete_ends_every_topic(void **state) {
  (void)state;
  enum { N = 150 };
  const char *caches[] = {"keep", NULL};
  mim_local_opts o = {.caches = caches, .log_level = "warn"};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  ControlClient__CreateCacheRequest cr = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  cr.cache_name = (char *)"doomed";
  assert_int_equal(raw_call(t, M_CREATE, NULL, &cr.base, NULL, NULL), MIM_OK);
  raw_sub *subs = calloc(N + 1, sizeof *subs);
  assert_non_null(subs);
  char name[32];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    snprintf(name, sizeof name, "topic-%d", i);
    assert_int_equal(raw_subscribe(t, "doomed", name, 0, 0, &subs[i]), MIM_OK);
  }
  /* A topic of another cache stays. */
  raw_sub_init(&subs[N]);
  assert_int_equal(raw_subscribe(t, "keep", "topic-0", 0, 0, &subs[N]), MIM_OK);
  for (int i = 0; i <= N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  ControlClient__DeleteCacheRequest dr = CONTROL_CLIENT____DELETE_CACHE_REQUEST__INIT;
  dr.cache_name = (char *)"doomed";
  assert_int_equal(raw_call(t, M_DELETE, NULL, &dr.base, NULL, NULL), MIM_OK);
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait_closed(&subs[i], WAIT_MS));
    assert_int_equal(subs[i].close_status, MIM_ERR_NOT_FOUND);
    raw_sub_destroy(&subs[i]);
  }
  assert_int_equal(raw_publish(t, "keep", "topic-0", "x", 1, true), MIM_OK);
  assert_true(raw_sub_wait(&subs[N], RAW_ITEMS, 1, WAIT_MS));
  raw_sub_cancel(&subs[N]);
  assert_true(raw_sub_wait_closed(&subs[N], WAIT_MS));
  assert_int_equal(subs[N].close_status, MIM_ERR_CANCELLED);
  raw_sub_destroy(&subs[N]);
  free(subs);
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(srv), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delete_ends_every_topic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
