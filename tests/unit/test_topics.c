/* Topics: publish/subscribe against mim-local, resume, reconnect, watchdog, unsubscribe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "grpc_test_server.h"
#include "mim_local.h"
#include "test_clock.h"

#include <momento/client.h>
#include <momento/token.h>
#include <momento/topics.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "cache"
#define WAIT_MS 10000      /* bound for anything that should happen "soon" */
#define RECONNECT_MS 20000 /* bound for a reconnect (gRPC's own reconnect backoff is ~1 s+) */
#define HEARTBEAT_MS 200
#define MAX_ITEMS 512

static mim_local *srv; /* the file's server: auth on, short heartbeats */

/* ---- time ---- */

/* ---- recorder: what a subscription's callbacks saw ---- */

typedef struct rec rec;
struct rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int items;
  uint64_t seq[MAX_ITEMS];
  uint64_t page[MAX_ITEMS];
  bool binary[MAX_ITEMS];
  char *data[MAX_ITEMS];
  size_t len[MAX_ITEMS];
  char publisher[MAX_ITEMS][32];
  int heartbeats;
  int discontinuities;
  uint64_t disc_last, disc_new, disc_page;
  int nstates;
  mim_subscription_state states[64];
  mim_status state_status[64];
  int connected, reconnecting, closed;
  /* unsubscribe-from-inside test */
  mim_subscription *_Atomic self;
  int unsub_at; /* > 0: unsubscribe from on_item when items reaches it */
  /* > 0: from on_item at this count, unsubscribe another subscription */
  int unsub_other_at;
  mim_subscription *other;
  rec *other_rec;
  bool unsub_on_reconnecting; /* unsubscribe from on_state(RECONNECTING) */
  /* race tests: set right after mim_topic_unsubscribe returned */
  atomic_bool unsubscribed;
  atomic_int late_callbacks;
};

static rec *rec_new(void) {
  rec *r = calloc(1, sizeof *r);
  assert_non_null(r);
  pthread_mutex_init(&r->mu, NULL);
  cmn_cond_init_monotonic(&r->cv);
  return r;
}

static void rec_free(rec *r) {
  for (int i = 0; i < r->items && i < MAX_ITEMS; i++)
    free(r->data[i]);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

static void check_late(rec *r) {
  if (atomic_load(&r->unsubscribed))
    atomic_fetch_add(&r->late_callbacks, 1);
}

static void on_item(void *user, const mim_topic_item *it) {
  rec *r = user;
  check_late(r);
  pthread_mutex_lock(&r->mu);
  int i = r->items;
  if (i < MAX_ITEMS) {
    r->seq[i] = it->sequence;
    r->page[i] = it->sequence_page;
    r->binary[i] = it->is_binary;
    r->len[i] = it->len;
    r->data[i] = malloc(it->len + 1);
    memcpy(r->data[i], it->data, it->len + 1); /* includes the promised NUL */
    snprintf(r->publisher[i], sizeof r->publisher[i], "%s", it->publisher_id);
  }
  r->items++;
  bool unsub = r->unsub_at > 0 && r->items == r->unsub_at;
  bool unsub_other = r->unsub_other_at > 0 && r->items == r->unsub_other_at;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (unsub) {
    mim_topic_unsubscribe(atomic_load(&r->self));
    atomic_store(&r->unsubscribed, true); /* nothing may follow, even on this thread */
  }
  if (unsub_other) {
    mim_topic_unsubscribe(r->other);
    atomic_store(&r->other_rec->unsubscribed, true);
  }
}

static void on_disc(void *user, uint64_t last, uint64_t next, uint64_t page) {
  rec *r = user;
  check_late(r);
  pthread_mutex_lock(&r->mu);
  r->discontinuities++;
  r->disc_last = last;
  r->disc_new = next;
  r->disc_page = page;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void on_heartbeat(void *user) {
  rec *r = user;
  check_late(r);
  pthread_mutex_lock(&r->mu);
  r->heartbeats++;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void on_state(void *user, mim_subscription_state st, mim_status status, const char *detail) {
  rec *r = user;
  (void)detail;
  check_late(r);
  pthread_mutex_lock(&r->mu);
  if (r->nstates < 64) {
    r->states[r->nstates] = st;
    r->state_status[r->nstates] = status;
    r->nstates++;
  }
  r->connected += st == MIM_SUB_CONNECTED;
  r->reconnecting += st == MIM_SUB_RECONNECTING;
  r->closed += st == MIM_SUB_CLOSED;
  bool unsub = r->unsub_on_reconnecting && st == MIM_SUB_RECONNECTING;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (unsub) {
    mim_topic_unsubscribe(atomic_load(&r->self));
    atomic_store(&r->unsubscribed, true);
  }
}

static mim_subscription_callbacks callbacks(rec *r) {
  mim_subscription_callbacks cb = {sizeof cb, on_item, on_disc, on_heartbeat, on_state, r};
  return cb;
}

/* Waits until *field >= target (read under r->mu); returns the last value seen. */
static int rec_wait(rec *r, const int *field, int target, int timeout_ms) {
  struct timespec until = cmn_deadline_after_ms(timeout_ms);
  pthread_mutex_lock(&r->mu);
  while (*field < target && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) {
  }
  int v = *field;
  pthread_mutex_unlock(&r->mu);
  return v;
}

static int rec_get(rec *r, const int *field) {
  pthread_mutex_lock(&r->mu);
  int v = *field;
  pthread_mutex_unlock(&r->mu);
  return v;
}

/* ---- servers and clients ---- */

static int start_server(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .heartbeat_ms = HEARTBEAT_MS};
  return mim_local_start(&o, &srv);
}

static int stop_server(void **state) {
  (void)state;
  int rc = mim_local_stop(srv);
  srv = NULL;
  return rc;
}

static mim_client *client_with_deadline(const mim_local *s, const char *key, int64_t ms) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = s->endpoint;
  o.control_host = s->endpoint;
  o.token_host = s->endpoint;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = ms;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  return c;
}

static mim_client *client_for(const mim_local *s, const char *key) {
  return client_with_deadline(s, key, 5000);
}

static mim_client *root_client(void) {
  return client_for(srv, srv->root_key);
}

/* A server of its own for tests that stop, restart or freeze it (any token works). */
static mim_local *start_private(int port) {
  const char *caches[] = {CACHE, NULL};
  char portbuf[16];
  snprintf(portbuf, sizeof portbuf, "%d", port);
  const char *extra[] = {"--port", portbuf, NULL};
  mim_local_opts o = {.caches = caches,
                      .heartbeat_ms = HEARTBEAT_MS,
                      .no_auth = 1,
                      .extra_args = port ? extra : NULL};
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(&o, &s), 0);
  return s;
}

static mim_subscription *subscribe(mim_client *c, const char *topic, rec *r,
                                   const mim_subscribe_options *o) {
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscription *sub = NULL;
  mim_status st = mim_topic_subscribe(c, CACHE, topic, o, &cb, &sub);
  if (st != MIM_OK)
    print_message("subscribe %s: %s: %s\n", topic, mim_status_name(st), mim_last_error_detail());
  assert_int_equal(st, MIM_OK);
  assert_non_null(sub);
  atomic_store(&r->self, sub);
  return sub;
}

static void publish_n(mim_client *c, const char *topic, int from, int n) {
  for (int i = from; i < from + n; i++) {
    char text[32];
    snprintf(text, sizeof text, "m%d", i);
    assert_int_equal(mim_topic_publish_text(c, CACHE, topic, text), MIM_OK);
  }
}

/* ---- argument checks ---- */

static void test_publish_rejects_bad_input(void **state) {
  (void)state;
  mim_client *c = root_client();
  static const char *bad[] = {
      "\xC0\x80",         /* overlong NUL */
      "\xE0\x80\xAF",     /* overlong '/' */
      "\xED\xA0\x80",     /* UTF-16 surrogate */
      "\xF4\x90\x80\x80", /* above U+10FFFF */
      "\xF5\x80\x80\x80", /* invalid lead */
      "ok\xE2\x82",       /* truncated */
      "\x80",             /* lone continuation */
      "a\xC3(",           /* bad continuation */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(mim_topic_publish_text(c, CACHE, "t", bad[i]), MIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(mim_topic_publish_text_async(c, CACHE, "t", bad[i], NULL, NULL),
                     MIM_ERR_INVALID_ARGUMENT);
  }
  assert_non_null(strstr(mim_last_error_detail(), "UTF-8"));
  assert_int_equal(
      mim_topic_publish_text(c, CACHE, "t", "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), MIM_OK);
  assert_int_equal(mim_topic_publish_text(NULL, CACHE, "t", "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_publish_text(c, NULL, "t", "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_publish_text(c, CACHE, "", "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_publish_text(c, CACHE, "t", NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_publish_binary(c, CACHE, "t", NULL, 3), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_publish_binary(c, CACHE, "t", NULL, 0), MIM_OK);

  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscription *sub = (mim_subscription *)&cb; /* must be reset to NULL */
  assert_int_equal(mim_topic_subscribe(c, CACHE, "t", NULL, NULL, &sub), MIM_ERR_INVALID_ARGUMENT);
  assert_null(sub);
  cb.on_item = NULL;
  assert_int_equal(mim_topic_subscribe_async(c, CACHE, "t", NULL, &cb, &sub),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_topic_subscribe(c, "", "t", NULL, &cb, &sub), MIM_ERR_INVALID_ARGUMENT);
  mim_topic_unsubscribe(NULL);
  assert_int_equal(mim_subscription_last_sequence(NULL), 0);
  assert_int_equal(mim_subscription_sequence_page(NULL), 0);
  rec_free(r);
  mim_client_free(c);
}

/* ---- publish / subscribe ---- */

static void test_text_and_binary_in_order(void **state) {
  (void)state;
  mim_client *sc = root_client(), *pc = root_client();
  rec *r = rec_new();
  mim_subscription *sub = subscribe(sc, "order", r, NULL);
  assert_true(rec_get(r, &r->connected) >= 1);
  assert_int_equal(mim_subscription_last_sequence(sub), 0);
  const int n = 40;
  for (int i = 0; i < n; i++) {
    char text[32];
    snprintf(text, sizeof text, "text %d \xC3\xA9", i);
    if (i % 2 == 0) {
      assert_int_equal(mim_topic_publish_text(pc, CACHE, "order", text), MIM_OK);
    } else {
      uint8_t bin[5] = {0, 0xFF, (uint8_t)i, 0, 0x80};
      assert_int_equal(mim_topic_publish_binary(pc, CACHE, "order", bin, sizeof bin), MIM_OK);
    }
  }
  assert_int_equal(rec_wait(r, &r->items, n, WAIT_MS), n);
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < n; i++) {
    assert_int_equal(r->seq[i], r->seq[0] + (uint64_t)i);
    assert_int_equal(r->page[i], r->page[0]);
    assert_int_equal(r->binary[i], i % 2 == 1);
    assert_int_equal(r->data[i][r->len[i]], '\0');
    if (i % 2 == 0) {
      char text[32];
      snprintf(text, sizeof text, "text %d \xC3\xA9", i);
      assert_string_equal(r->data[i], text);
    } else {
      uint8_t bin[5] = {0, 0xFF, (uint8_t)i, 0, 0x80};
      assert_int_equal(r->len[i], sizeof bin);
      assert_memory_equal(r->data[i], bin, sizeof bin);
    }
  }
  assert_int_equal(r->seq[0], 1); /* a fresh topic starts at 1 */
  assert_true(r->page[0] != 0);
  uint64_t last = r->seq[n - 1], page = r->page[0];
  pthread_mutex_unlock(&r->mu);
  assert_int_equal(mim_subscription_last_sequence(sub), last);
  assert_int_equal(mim_subscription_sequence_page(sub), page);
  assert_int_equal(rec_get(r, &r->discontinuities), 0);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(pc);
  mim_client_free(sc);
}

static void test_heartbeats_arrive(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *r = rec_new();
  int64_t t0 = cmn_mono_ms();
  mim_subscription *sub = subscribe(c, "quiet", r, NULL);
  /* One at once (the confirmation), then one per HEARTBEAT_MS on the idle stream. */
  assert_true(rec_get(r, &r->heartbeats) >= 1);
  assert_true(rec_wait(r, &r->heartbeats, 4, WAIT_MS) >= 4);
  assert_true(cmn_mono_ms() - t0 >= 2 * HEARTBEAT_MS);
  assert_int_equal(rec_get(r, &r->items), 0);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
}

typedef struct pub_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int ok;
  mim_status last;
  char detail[128];
  mim_client *client;
  mim_status nested; /* what a blocking subscribe returned inside the callback */
} pub_waiter;

static void publish_cb(void *user, mim_status st, const char *detail) {
  pub_waiter *w = user;
  mim_status nested = MIM_OK;
  if (w->client) {
    rec *r = rec_new();
    mim_subscription_callbacks cb = callbacks(r);
    mim_subscription *sub = NULL;
    nested = mim_topic_subscribe(w->client, CACHE, "nested", NULL, &cb, &sub);
    rec_free(r);
  }
  pthread_mutex_lock(&w->mu);
  w->done++;
  w->ok += st == MIM_OK;
  w->last = st;
  w->nested = nested;
  snprintf(w->detail, sizeof w->detail, "%s", detail);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int pub_wait(pub_waiter *w, int target) {
  struct timespec until = cmn_deadline_after_ms(WAIT_MS);
  pthread_mutex_lock(&w->mu);
  while (w->done < target && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
  }
  int v = w->done;
  pthread_mutex_unlock(&w->mu);
  return v;
}

static void test_async_publish(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *r = rec_new();
  mim_subscription *sub = subscribe(c, "async", r, NULL);
  pub_waiter w = {.done = 0};
  pthread_mutex_init(&w.mu, NULL);
  cmn_cond_init_monotonic(&w.cv);
  const int n = 20;
  for (int i = 0; i < n; i++) {
    char text[16];
    snprintf(text, sizeof text, "a%d", i);
    if (i % 2)
      assert_int_equal(
          mim_topic_publish_binary_async(c, CACHE, "async", text, strlen(text), publish_cb, &w),
          MIM_OK);
    else
      assert_int_equal(mim_topic_publish_text_async(c, CACHE, "async", text, publish_cb, &w),
                       MIM_OK);
  }
  assert_int_equal(pub_wait(&w, n), n);
  assert_int_equal(w.ok, n);
  assert_int_equal(rec_wait(r, &r->items, n, WAIT_MS), n);
  /* A NULL callback is allowed. */
  assert_int_equal(mim_topic_publish_text_async(c, CACHE, "async", "nocb", NULL, NULL), MIM_OK);
  assert_int_equal(rec_wait(r, &r->items, n + 1, WAIT_MS), n + 1);
  /* Errors come through the callback; a blocking subscribe there is refused. */
  w.client = c;
  assert_int_equal(mim_topic_publish_text_async(c, "no-such-cache", "x", "y", publish_cb, &w),
                   MIM_OK);
  assert_int_equal(pub_wait(&w, n + 1), n + 1);
  assert_int_equal(w.last, MIM_ERR_NOT_FOUND);
  assert_int_equal(w.nested, MIM_ERR_FAILED_PRECONDITION);
  mim_topic_unsubscribe(sub);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  rec_free(r);
  mim_client_free(c);
}

/* ---- what goes on the wire: method paths and metadata ---- */

static void expect_last_call(grpc_test_server *ts, const char *method, const char *cache) {
  char buf[256];
  assert_true(grpc_test_server_last_method(ts, buf, sizeof buf));
  assert_string_equal(buf, method);
  assert_true(grpc_test_server_last_metadata(ts, "cache", buf, sizeof buf));
  assert_string_equal(buf, cache);
  assert_true(grpc_test_server_last_metadata(ts, "authorization", buf, sizeof buf));
  assert_true(buf[0] != '\0');
}

static void test_wire_paths_and_metadata(void **state) {
  (void)state;
  grpc_test_server *ts = grpc_test_server_start();
  assert_non_null(ts);
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.cache_host = grpc_test_server_address(ts);
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 5000;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  /* The test server knows none of these methods: it records them and answers
   * UNIMPLEMENTED, which also shows the status travels back unchanged. */
  assert_int_equal(mim_topic_publish_text(c, "c1", "t", "x"), MIM_ERR_UNIMPLEMENTED);
  expect_last_call(ts, "/cache_client.pubsub.Pubsub/Publish", "c1");
  pub_waiter w = {.done = 0};
  pthread_mutex_init(&w.mu, NULL);
  cmn_cond_init_monotonic(&w.cv);
  assert_int_equal(mim_topic_publish_binary_async(c, "c2", "t", "\0", 1, publish_cb, &w), MIM_OK);
  assert_int_equal(pub_wait(&w, 1), 1);
  assert_int_equal(w.last, MIM_ERR_UNIMPLEMENTED);
  expect_last_call(ts, "/cache_client.pubsub.Pubsub/Publish", "c2");
  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(c, "c3", "t", NULL, &cb, &sub), MIM_ERR_UNIMPLEMENTED);
  assert_null(sub);
  expect_last_call(ts, "/cache_client.pubsub.Pubsub/Subscribe", "c3");
  assert_int_equal(rec_get(r, &r->nstates), 0);
  rec_free(r);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  mim_client_free(c);
  grpc_test_server_stop(ts);
}

/* What one on_item call saw, copied (pointers are valid only during the call). */
typedef struct seen_item {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
  bool is_binary;
  uint8_t data[64];
  size_t len;
  char publisher[64];
} seen_item;

static void on_seen_item(void *user, const mim_topic_item *item) {
  seen_item *si = user;
  pthread_mutex_lock(&si->mu);
  si->count++;
  si->is_binary = item->is_binary;
  si->len = item->len;
  memcpy(si->data, item->data, item->len < sizeof si->data ? item->len : sizeof si->data);
  snprintf(si->publisher, sizeof si->publisher, "%s", item->publisher_id);
  pthread_cond_broadcast(&si->cv);
  pthread_mutex_unlock(&si->mu);
}

/* A text value with a NUL inside (valid UTF-8: U+0000) is delivered whole, with its
 * length from the wire, not cut at the NUL; a publisher id with a NUL inside is not
 * trusted (""). The test server sends such an item (mim-local refuses to store one). */
static void test_text_with_nul_received_whole(void **state) {
  (void)state;
  grpc_test_server *ts = grpc_test_server_start();
  assert_non_null(ts);
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.cache_host = grpc_test_server_address(ts);
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 5000;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  seen_item si = {.count = 0};
  pthread_mutex_init(&si.mu, NULL);
  cmn_cond_init_monotonic(&si.cv);
  mim_subscription_callbacks cb = {
      .struct_size = sizeof(mim_subscription_callbacks), .on_item = on_seen_item, .user = &si};
  mim_subscription *sub = NULL;
  /* MIM_OK: the item confirmed the stream, so on_item has run. */
  assert_int_equal(mim_topic_subscribe(c, "wire-text", "t", NULL, &cb, &sub), MIM_OK);
  mim_topic_unsubscribe(sub);
  assert_int_equal(si.count, 1);
  assert_false(si.is_binary);
  assert_int_equal(si.len, 7);
  assert_memory_equal(si.data, "abc\0def", 7);
  assert_string_equal(si.publisher, "");
  pthread_mutex_destroy(&si.mu);
  pthread_cond_destroy(&si.cv);
  mim_client_free(c);
  grpc_test_server_stop(ts);
}

static void test_missing_cache(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(c, "no-such-cache", "t", NULL, &cb, &sub),
                   MIM_ERR_NOT_FOUND);
  assert_null(sub);
  assert_int_equal(mim_topic_publish_text(c, "no-such-cache", "t", "x"), MIM_ERR_NOT_FOUND);
  assert_int_equal(rec_get(r, &r->nstates), 0); /* no callback at all */
  assert_int_equal(rec_get(r, &r->heartbeats), 0);
  /* Async: the failure of the first attempt is reported as CLOSED with its status. */
  assert_int_equal(mim_topic_subscribe_async(c, "no-such-cache", "t", NULL, &cb, &sub), MIM_OK);
  assert_non_null(sub);
  assert_int_equal(rec_wait(r, &r->closed, 1, WAIT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->states[0], MIM_SUB_CLOSED);
  assert_int_equal(r->state_status[0], MIM_ERR_NOT_FOUND);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
}

static void test_subscribe_async_and_resume_at(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *first = rec_new();
  mim_subscription *s1 = subscribe(c, "resume", first, NULL);
  publish_n(c, "resume", 0, 5);
  assert_int_equal(rec_wait(first, &first->items, 5, WAIT_MS), 5);
  uint64_t page = mim_subscription_sequence_page(s1);
  assert_int_equal(mim_subscription_last_sequence(s1), 5);

  /* Resume at 2 in the right page: 2..5 replayed, then live. */
  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscribe_options o = {
      .struct_size = sizeof(mim_subscribe_options), .resume_at = 2, .sequence_page = page};
  mim_subscription *s2 = NULL;
  assert_int_equal(mim_topic_subscribe_async(c, CACHE, "resume", &o, &cb, &s2), MIM_OK);
  assert_int_equal(rec_wait(r, &r->connected, 1, WAIT_MS), 1);
  assert_int_equal(rec_wait(r, &r->items, 4, WAIT_MS), 4);
  publish_n(c, "resume", 5, 1);
  assert_int_equal(rec_wait(r, &r->items, 5, WAIT_MS), 5);
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < 5; i++)
    assert_int_equal(r->seq[i], (uint64_t)i + 2);
  assert_string_equal(r->data[0], "m1");
  pthread_mutex_unlock(&r->mu);
  assert_int_equal(rec_get(r, &r->discontinuities), 0);

  /* A wrong page: discontinuity first (the ring's oldest is 1), then the ring. */
  rec *r3 = rec_new();
  mim_subscribe_options o3 = {
      .struct_size = sizeof(mim_subscribe_options), .resume_at = 3, .sequence_page = page + 1};
  mim_subscription *s3 = subscribe(c, "resume", r3, &o3);
  assert_int_equal(rec_wait(r3, &r3->discontinuities, 1, WAIT_MS), 1);
  assert_int_equal(rec_wait(r3, &r3->items, 6, WAIT_MS), 6);
  pthread_mutex_lock(&r3->mu);
  assert_int_equal(r3->disc_last, 2);
  assert_int_equal(r3->disc_new, 1); /* next value delivered */
  assert_int_equal(r3->disc_page, page);
  assert_int_equal(r3->seq[0], 1);
  pthread_mutex_unlock(&r3->mu);

  mim_topic_unsubscribe(s3);
  mim_topic_unsubscribe(s2);
  mim_topic_unsubscribe(s1);
  rec_free(r3);
  rec_free(r);
  rec_free(first);
  mim_client_free(c);
}

/* ---- tokens: publisher id and permissions ---- */

static void test_publisher_id_and_permissions(void **state) {
  (void)state;
  mim_client *root = root_client();
  mim_disposable_token *tok = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room", 600, "alice", &tok), MIM_OK);
  mim_client *alice = client_for(srv, tok->credential);
  mim_disposable_token *ro = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, "room", 600, "bob", &ro), MIM_OK);
  mim_client *bob = client_for(srv, ro->credential);

  rec *r = rec_new();
  mim_subscription *sub = subscribe(root, "room", r, NULL);
  assert_int_equal(mim_topic_publish_text(alice, CACHE, "room", "hi from alice"), MIM_OK);
  assert_int_equal(rec_wait(r, &r->items, 1, WAIT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_string_equal(r->publisher[0], "alice");
  assert_string_equal(r->data[0], "hi from alice");
  pthread_mutex_unlock(&r->mu);

  /* alice may not touch another topic; bob (moderated) may subscribe but not publish. */
  rec *denied = rec_new();
  mim_subscription_callbacks cb = callbacks(denied);
  mim_subscription *none = NULL;
  assert_int_equal(mim_topic_subscribe(alice, CACHE, "other", NULL, &cb, &none),
                   MIM_ERR_PERMISSION_DENIED);
  assert_null(none);
  assert_int_equal(mim_topic_publish_text(alice, CACHE, "other", "x"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_topic_publish_text(bob, CACHE, "room", "x"), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_topic_subscribe(bob, CACHE, "room-input", NULL, &cb, &none),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(rec_get(denied, &denied->nstates), 0);
  rec *br = rec_new();
  mim_subscription *bsub = subscribe(bob, "room", br, NULL);
  assert_int_equal(mim_topic_publish_text(bob, CACHE, "room-input", "to the moderator"), MIM_OK);
  assert_int_equal(mim_topic_publish_binary(alice, CACHE, "room", "\x01\x02", 2), MIM_OK);
  assert_int_equal(rec_wait(br, &br->items, 1, WAIT_MS), 1);
  pthread_mutex_lock(&br->mu);
  assert_string_equal(br->publisher[0], "alice");
  assert_true(br->binary[0]);
  pthread_mutex_unlock(&br->mu);

  mim_topic_unsubscribe(bsub);
  mim_topic_unsubscribe(sub);
  rec_free(br);
  rec_free(denied);
  rec_free(r);
  mim_client_free(bob);
  mim_client_free(alice);
  mim_disposable_token_free(ro);
  mim_disposable_token_free(tok);
  mim_client_free(root);
}

/* ---- resume after the server cut streams (SIGUSR1) ---- */

static void test_resume_after_stream_cut(void **state) {
  (void)state;
  mim_client *sc = root_client(), *pc = root_client();
  rec *r = rec_new();
  mim_subscription *sub = subscribe(sc, "cut", r, NULL);
  const int rounds = 5, per = 10;
  for (int k = 0; k < rounds; k++) {
    publish_n(pc, "cut", k * per, per / 2);
    assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
    publish_n(pc, "cut", k * per + per / 2, per / 2); /* likely while we reconnect */
    assert_true(rec_wait(r, &r->connected, k + 2, RECONNECT_MS) >= k + 2);
  }
  assert_int_equal(rec_wait(r, &r->items, rounds * per, WAIT_MS), rounds * per);
  publish_n(pc, "cut", rounds * per, 1);
  assert_int_equal(rec_wait(r, &r->items, rounds * per + 1, WAIT_MS), rounds * per + 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->items, rounds * per + 1); /* no duplicate */
  for (int i = 0; i < r->items; i++) {
    char text[32];
    snprintf(text, sizeof text, "m%d", i);
    assert_string_equal(r->data[i], text);
    assert_int_equal(r->seq[i], (uint64_t)i + 1);
  }
  assert_int_equal(r->discontinuities, 0);
  assert_true(r->reconnecting >= rounds);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(pc);
  mim_client_free(sc);
}

/* ---- non-retryable end: the cache goes away under a live subscription ---- */

static void test_cache_deleted_closes(void **state) {
  (void)state;
  mim_client *c = root_client();
  assert_int_equal(mim_cache_create(c, "doomed"), MIM_OK);
  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscribe_options so = {.struct_size = sizeof(mim_subscribe_options),
                              .backoff_initial_ms = 20,
                              .backoff_max_ms = 100};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(c, "doomed", "t", &so, &cb, &sub), MIM_OK);
  assert_int_equal(mim_cache_delete(c, "doomed"), MIM_OK);
  /* Either the stream ends and the re-subscribe gets NOT_FOUND, or the server ends the
   * stream with NOT_FOUND directly: both close the subscription for good. */
  assert_int_equal(rec_wait(r, &r->closed, 1, RECONNECT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->states[r->nstates - 1], MIM_SUB_CLOSED);
  assert_int_equal(r->state_status[r->nstates - 1], MIM_ERR_NOT_FOUND);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
}

/* ---- a lost stream that never saw a value: conservative discontinuity ---- */

static void test_blind_reconnect_reports_gap(void **state) {
  (void)state;
  mim_client *c = root_client();
  publish_n(c, "blind", 0, 2); /* values 1 and 2, before we subscribe */
  rec *r = rec_new();
  mim_subscription *sub = subscribe(c, "blind", r, NULL);
  assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
  assert_true(rec_wait(r, &r->connected, 2, RECONNECT_MS) >= 2);
  publish_n(c, "blind", 2, 1);
  assert_int_equal(rec_wait(r, &r->items, 1, WAIT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->discontinuities, 1);
  assert_int_equal(r->disc_last, 0);
  assert_int_equal(r->disc_new, 3);
  assert_int_equal(r->seq[0], 3);
  assert_int_equal(r->disc_page, r->page[0]);
  pthread_mutex_unlock(&r->mu);
  /* Now the position is known: the next cut resumes exactly, without a discontinuity. */
  assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
  publish_n(c, "blind", 3, 1);
  assert_true(rec_wait(r, &r->connected, 3, RECONNECT_MS) >= 3);
  publish_n(c, "blind", 4, 1);
  assert_int_equal(rec_wait(r, &r->items, 3, WAIT_MS), 3);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->discontinuities, 1);
  assert_int_equal(r->seq[1], 4);
  assert_int_equal(r->seq[2], 5);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
}

/* ---- reconnect across a server restart on the same port ---- */

static void test_reconnect_after_restart(void **state) {
  (void)state;
  mim_local *s = start_private(0);
  int port = s->port;
  mim_client *sc = client_for(s, s->root_key), *pc = client_for(s, s->root_key);
  rec *r = rec_new();
  mim_subscribe_options so = {.struct_size = sizeof(mim_subscribe_options),
                              .backoff_initial_ms = 50,
                              .backoff_max_ms = 500};
  mim_subscription *sub = subscribe(sc, "restart", r, &so);
  publish_n(pc, "restart", 0, 3);
  assert_int_equal(rec_wait(r, &r->items, 3, WAIT_MS), 3);
  uint64_t old_page = mim_subscription_sequence_page(sub);

  assert_true(mim_local_stop(s) >= 0);
  /* (more than one when a slow stop let the client retry meanwhile) */
  assert_true(rec_wait(r, &r->reconnecting, 1, WAIT_MS) >= 1);
  s = start_private(port);
  assert_int_equal(s->port, port);
  assert_true(rec_wait(r, &r->connected, 2, RECONNECT_MS) >= 2);
  /* A new server is a new topic incarnation: the page changed, so a discontinuity. */
  assert_int_equal(rec_wait(r, &r->discontinuities, 1, WAIT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->disc_last, 3);
  assert_int_equal(r->disc_new, 1);
  assert_true(r->disc_page != old_page);
  bool saw_reconnecting_before_connected = false;
  for (int i = 1; i < r->nstates; i++)
    if (r->states[i - 1] == MIM_SUB_RECONNECTING && r->states[i] == MIM_SUB_CONNECTED)
      saw_reconnecting_before_connected = true;
  assert_true(saw_reconnecting_before_connected);
  assert_int_equal(r->closed, 0);
  pthread_mutex_unlock(&r->mu);

  /* The publisher's channel reconnects on its own; delivery continues. */
  int64_t until = cmn_mono_ms() + RECONNECT_MS;
  while (mim_topic_publish_text(pc, CACHE, "restart", "after") != MIM_OK && cmn_mono_ms() < until) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL); /* retry pacing while the publisher's channel reconnects */
  }
  assert_int_equal(rec_wait(r, &r->items, 4, WAIT_MS), 4);
  pthread_mutex_lock(&r->mu);
  assert_string_equal(r->data[3], "after");
  assert_int_equal(r->seq[3], 1);
  assert_int_equal(r->page[3], r->disc_page);
  pthread_mutex_unlock(&r->mu);

  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(pc);
  mim_client_free(sc);
  assert_int_equal(mim_local_stop(s), 0);
}

/* ---- a server that never confirms: the first attempt ends at the client deadline ---- */

static void test_unconfirmed_first_attempt_times_out(void **state) {
  (void)state;
  mim_local *s = start_private(0);
  mim_client *c = client_with_deadline(s, s->root_key, 600);
  assert_int_equal(mim_local_freeze(s, 10000), 0);
  rec *r = rec_new();
  mim_subscription_callbacks cb = callbacks(r);
  mim_subscription *sub = NULL;
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_topic_subscribe(c, CACHE, "stuck", NULL, &cb, &sub),
                   MIM_ERR_DEADLINE_EXCEEDED);
  int64_t took = cmn_mono_ms() - t0;
  assert_null(sub);
  assert_true(took >= 500 && took < 600 + 3000);
  assert_int_equal(rec_get(r, &r->nstates), 0);

  assert_int_equal(mim_topic_subscribe_async(c, CACHE, "stuck", NULL, &cb, &sub), MIM_OK);
  assert_int_equal(rec_wait(r, &r->closed, 1, WAIT_MS), 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->nstates, 1);
  assert_int_equal(r->state_status[0], MIM_ERR_DEADLINE_EXCEEDED);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  assert_int_equal(mim_local_signal(s, SIGCONT), 0);
  rec_free(r);
  mim_client_free(c);
  assert_int_equal(mim_local_stop(s), 0);
}

/* ---- backoff: full jitter under a growing cap, reset by a confirmed stream ---- */

/* Re-subscribe delays the library logged ("... re-subscribing in N ms"), in order, with
 * CONNECTED_MARK wherever the subscription reported CONNECTED (a confirmed stream), so
 * that the check can look at the first delay after each confirmation: on a loaded
 * machine a stream can also be lost between the test's steps. */
#define CONNECTED_MARK (-1)
static struct {
  pthread_mutex_t mu;
  int n;
  long long delay[256];
} delays = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};

static void delays_add(long long v) {
  pthread_mutex_lock(&delays.mu);
  if (delays.n < 256)
    delays.delay[delays.n++] = v;
  pthread_mutex_unlock(&delays.mu);
}

static void capture_delays(mim_log_level level, const char *msg, void *user) {
  (void)level;
  (void)user;
  const char *p = strstr(msg, "re-subscribing in ");
  if (p && strstr(msg, "stream of backoff lost"))
    delays_add(atoll(p + strlen("re-subscribing in ")));
}

static void on_state_marking(void *user, mim_subscription_state st, mim_status status,
                             const char *detail) {
  if (st == MIM_SUB_CONNECTED)
    delays_add(CONNECTED_MARK);
  on_state(user, st, status, detail);
}

/* Delays logged so far, not counting the marks. */
static int delays_count(void) {
  pthread_mutex_lock(&delays.mu);
  int n = 0;
  for (int i = 0; i < delays.n; i++)
    n += delays.delay[i] != CONNECTED_MARK;
  pthread_mutex_unlock(&delays.mu);
  return n;
}

static void test_backoff_grows_and_resets(void **state) {
  (void)state;
  mim_local *s = start_private(0);
  int port = s->port;
  mim_client *c = client_for(s, s->root_key);
  rec *r = rec_new();
  mim_subscribe_options so = {.struct_size = sizeof(mim_subscribe_options),
                              .backoff_initial_ms = 20,
                              .backoff_max_ms = 160};
  mim_set_log_callback(capture_delays, MIM_LOG_INFO, NULL);
  mim_subscription_callbacks cb = callbacks(r);
  cb.on_state = on_state_marking;
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(c, CACHE, "backoff", &so, &cb, &sub), MIM_OK);
  assert_true(mim_local_stop(s) >= 0);
  /* Server gone: attempts fail fast; wait for a few of them. */
  int64_t until = cmn_mono_ms() + RECONNECT_MS;
  while (delays_count() < 7 && cmn_mono_ms() < until) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL); /* polling a counter the event thread advances */
  }
  s = start_private(port);
  assert_true(rec_wait(r, &r->connected, 2, RECONNECT_MS) >= 2);
  assert_true(delays_count() >= 7);
  /* A confirmed stream resets the backoff: the next loss starts at the initial cap. */
  assert_int_equal(mim_local_signal(s, SIGUSR1), 0);
  assert_true(rec_wait(r, &r->connected, 3, RECONNECT_MS) >= 3);
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  pthread_mutex_lock(&delays.mu);
  /* The outage: delays after the first confirmation, up to the next, under a cap that
   * doubles from 20 to 160. */
  assert_int_equal(delays.delay[0], CONNECTED_MARK);
  long long cap = 20, max_seen = 0;
  int i = 1, in_outage = 0;
  for (; i < delays.n && delays.delay[i] != CONNECTED_MARK; i++, in_outage++) {
    assert_true(delays.delay[i] >= 0);
    assert_true(delays.delay[i] <= cap);
    if (delays.delay[i] > max_seen)
      max_seen = delays.delay[i];
    cap = cap * 2 > 160 ? 160 : cap * 2;
  }
  assert_true(in_outage >= 7);
  assert_true(max_seen > 20); /* the cap did grow (7 uniform draws all <= 20: ~never) */
  /* Every loss right after a confirmation (the restart's, then SIGUSR1's) is back at the
   * initial cap. */
  int resets = 0;
  for (; i + 1 < delays.n; i++) {
    if (delays.delay[i] == CONNECTED_MARK && delays.delay[i + 1] != CONNECTED_MARK) {
      assert_true(delays.delay[i + 1] <= 20);
      resets++;
    }
  }
  assert_true(resets >= 1);
  pthread_mutex_unlock(&delays.mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
  assert_int_equal(mim_local_stop(s), 0);
}

/* A subscription that comes back while the server shuts down is refused: it must not be
 * told CONNECTED by a dying server (nor hold its shutdown until the grace runs out). The
 * hook widens the window between the streams' end and the rpc layer's stop to 800 ms,
 * in which the client retries every 10-20 ms. */
static void test_shutdown_refuses_new_subscriptions(void **state) {
  (void)state;
  setenv("MIM_LOCAL_SHUTDOWN_PAUSE_MS", "800", 1);
  mim_local *s = start_private(0);
  unsetenv("MIM_LOCAL_SHUTDOWN_PAUSE_MS");
  mim_client *c = client_for(s, s->root_key);
  rec *r = rec_new();
  mim_subscribe_options so = {
      .struct_size = sizeof(mim_subscribe_options), .backoff_initial_ms = 10, .backoff_max_ms = 20};
  mim_subscription *sub = subscribe(c, "dying", r, &so);
  assert_int_equal(rec_wait(r, &r->connected, 1, WAIT_MS), 1);
  assert_int_equal(mim_local_stop(s), 0);
  assert_true(rec_wait(r, &r->reconnecting, 1, WAIT_MS) >= 1);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->connected, 1);
  pthread_mutex_unlock(&r->mu);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
}

/* ---- heartbeat watchdog: a frozen server ---- */

static void test_watchdog_frozen_server(void **state) {
  (void)state;
  mim_local *s = start_private(0);
  mim_client *c = client_for(s, s->root_key);
  rec *r = rec_new();
  mim_subscribe_options so = {.struct_size = sizeof(mim_subscribe_options),
                              .heartbeat_timeout_ms = 4 * HEARTBEAT_MS,
                              .backoff_initial_ms = 50,
                              .backoff_max_ms = 200};
  mim_subscription *sub = subscribe(c, "frozen", r, &so);
  assert_int_equal(rec_wait(r, &r->heartbeats, 2, WAIT_MS), 2);
  assert_int_equal(mim_local_freeze(s, 10000), 0);
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(rec_wait(r, &r->reconnecting, 1, WAIT_MS), 1);
  int64_t noticed = cmn_mono_ms() - t0;
  assert_int_equal(mim_local_signal(s, SIGCONT), 0);
  assert_true(noticed <= 4 * HEARTBEAT_MS + 2000);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->states[r->nstates - 1], MIM_SUB_RECONNECTING);
  assert_int_equal(r->state_status[r->nstates - 1], MIM_ERR_UNAVAILABLE);
  pthread_mutex_unlock(&r->mu);
  assert_true(rec_wait(r, &r->connected, 2, RECONNECT_MS) >= 2);
  assert_int_equal(mim_topic_publish_text(c, CACHE, "frozen", "thawed"), MIM_OK);
  assert_int_equal(rec_wait(r, &r->items, 1, WAIT_MS), 1);
  assert_int_equal(rec_get(r, &r->closed), 0);
  mim_topic_unsubscribe(sub);
  rec_free(r);
  mim_client_free(c);
  assert_int_equal(mim_local_stop(s), 0);
}

/* ---- unsubscribe ---- */

typedef struct flood {
  mim_client *client;
  atomic_bool stop;
  atomic_int published;
} flood;

static void *flood_main(void *arg) {
  flood *f = arg;
  for (int i = 0; i < 200000 && !atomic_load(&f->stop); i++) {
    if (mim_topic_publish_text(f->client, CACHE, "flood", "x") == MIM_OK)
      atomic_fetch_add(&f->published, 1);
  }
  return NULL;
}

static void wait_published(flood *f, int target) {
  int64_t until = cmn_mono_ms() + WAIT_MS;
  while (atomic_load(&f->published) < target && cmn_mono_ms() < until) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL); /* polling a counter another thread advances */
  }
  assert_true(atomic_load(&f->published) >= target);
}

static void test_unsubscribe_races_flood(void **state) {
  (void)state;
  mim_client *sc = root_client();
  flood f = {.client = root_client()};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, flood_main, &f), 0);
  for (int round = 0; round < 6; round++) {
    rec *r = rec_new();
    mim_subscription *sub = subscribe(sc, "flood", r, NULL);
    assert_true(rec_wait(r, &r->items, 20 + round * 10, WAIT_MS) >= 20 + round * 10);
    mim_topic_unsubscribe(sub);
    atomic_store(&r->unsubscribed, true);
    int base = atomic_load(&f.published);
    wait_published(&f, base + 50); /* the flood goes on after unsubscribe returned */
    assert_int_equal(atomic_load(&r->late_callbacks), 0);
    rec_free(r);
  }
  atomic_store(&f.stop, true);
  pthread_join(th, NULL);
  mim_client_free(f.client);
  mim_client_free(sc);
}

/* Several threads subscribe and unsubscribe on one client while a flood runs. */
typedef struct churn {
  mim_client *client;
  atomic_int failures;
} churn;

static void *churn_main(void *arg) {
  churn *ch = arg;
  for (int round = 0; round < 4; round++) {
    rec *r = rec_new();
    mim_subscription_callbacks cb = callbacks(r);
    mim_subscription *sub = NULL;
    if (mim_topic_subscribe(ch->client, CACHE, "flood", NULL, &cb, &sub) != MIM_OK) {
      atomic_fetch_add(&ch->failures, 1);
      rec_free(r);
      continue;
    }
    if (rec_wait(r, &r->items, 5, WAIT_MS) < 5)
      atomic_fetch_add(&ch->failures, 1);
    mim_topic_unsubscribe(sub);
    atomic_store(&r->unsubscribed, true);
    /* Give a late callback (a bug) the chance to show up while the flood goes on. */
    uint64_t seen = 0;
    for (int i = 0; i < 1000; i++)
      seen += (uint64_t)atomic_load(&r->late_callbacks);
    if (seen || atomic_load(&r->late_callbacks))
      atomic_fetch_add(&ch->failures, 1);
    rec_free(r);
  }
  return NULL;
}

static void test_concurrent_subscribers(void **state) {
  (void)state;
  flood f = {.client = root_client()};
  pthread_t pub;
  assert_int_equal(pthread_create(&pub, NULL, flood_main, &f), 0);
  churn ch = {.client = root_client()};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, churn_main, &ch), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  atomic_store(&f.stop, true);
  pthread_join(pub, NULL);
  assert_int_equal(atomic_load(&ch.failures), 0);
  mim_client_free(ch.client);
  mim_client_free(f.client);
}

static void test_unsubscribe_inside_on_item(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *r = rec_new(), *control = rec_new();
  r->unsub_at = 3;
  mim_subscription *ctl = subscribe(c, "inside", control, NULL);
  subscribe(c, "inside", r, NULL); /* freed by its own on_item */
  publish_n(c, "inside", 0, 10);
  assert_int_equal(rec_wait(control, &control->items, 10, WAIT_MS), 10);
  publish_n(c, "inside", 10, 5);
  assert_int_equal(rec_wait(control, &control->items, 15, WAIT_MS), 15);
  assert_true(atomic_load(&r->unsubscribed));
  assert_int_equal(rec_get(r, &r->items), 3);
  assert_int_equal(atomic_load(&r->late_callbacks), 0);
  mim_topic_unsubscribe(ctl);
  rec_free(control);
  rec_free(r);
  mim_client_free(c);
}

/* One subscription's callback ends another one; a state callback ends its own. */
static void test_unsubscribe_from_other_callbacks(void **state) {
  (void)state;
  mim_client *c = root_client();
  rec *a = rec_new(), *b = rec_new(), *control = rec_new();
  mim_subscription *ctl = subscribe(c, "others", control, NULL);
  mim_subscription *sa = subscribe(c, "others", a, NULL);
  b->other = sa;
  b->other_rec = a;
  b->unsub_other_at = 2;
  mim_subscription *sb = subscribe(c, "others", b, NULL);
  publish_n(c, "others", 0, 8);
  assert_int_equal(rec_wait(control, &control->items, 8, WAIT_MS), 8);
  assert_int_equal(rec_wait(b, &b->items, 8, WAIT_MS), 8);
  assert_true(atomic_load(&a->unsubscribed));
  assert_true(rec_get(a, &a->items) <= 3);
  assert_int_equal(atomic_load(&a->late_callbacks), 0);

  /* Unsubscribe from inside on_state(RECONNECTING), i.e. from the stream-close path. */
  rec *r = rec_new();
  r->unsub_on_reconnecting = true;
  subscribe(c, "others", r, NULL); /* freed by its own on_state */
  assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
  assert_int_equal(rec_wait(r, &r->reconnecting, 1, WAIT_MS), 1);
  assert_true(rec_wait(control, &control->connected, 2, RECONNECT_MS) >= 2);
  publish_n(c, "others", 8, 2);
  assert_int_equal(rec_wait(control, &control->items, 10, WAIT_MS), 10);
  assert_true(atomic_load(&r->unsubscribed));
  assert_int_equal(rec_get(r, &r->connected), 1);
  assert_int_equal(atomic_load(&r->late_callbacks), 0);

  mim_topic_unsubscribe(sb);
  mim_topic_unsubscribe(ctl);
  rec_free(r);
  rec_free(control);
  rec_free(b);
  rec_free(a);
  mim_client_free(c);
}

/* Unsubscribe right after an async subscribe, before anything ran, and with the client
 * freed at once: nothing may leak or run later. */
static void test_unsubscribe_immediately(void **state) {
  (void)state;
  for (int i = 0; i < 20; i++) {
    mim_client *c = root_client();
    rec *r = rec_new();
    mim_subscription_callbacks cb = callbacks(r);
    mim_subscription *sub = NULL;
    assert_int_equal(mim_topic_subscribe_async(c, CACHE, "quick", NULL, &cb, &sub), MIM_OK);
    if (i % 2) {
      rec_wait(r, &r->connected, 1, WAIT_MS);
    }
    mim_topic_unsubscribe(sub);
    atomic_store(&r->unsubscribed, true);
    mim_client_free(c);
    assert_int_equal(atomic_load(&r->late_callbacks), 0);
    rec_free(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_publish_rejects_bad_input),
      cmocka_unit_test(test_text_and_binary_in_order),
      cmocka_unit_test(test_heartbeats_arrive),
      cmocka_unit_test(test_async_publish),
      cmocka_unit_test(test_missing_cache),
      cmocka_unit_test(test_wire_paths_and_metadata),
      cmocka_unit_test(test_text_with_nul_received_whole),
      cmocka_unit_test(test_subscribe_async_and_resume_at),
      cmocka_unit_test(test_publisher_id_and_permissions),
      cmocka_unit_test(test_resume_after_stream_cut),
      cmocka_unit_test(test_cache_deleted_closes),
      cmocka_unit_test(test_blind_reconnect_reports_gap),
      cmocka_unit_test(test_reconnect_after_restart),
      cmocka_unit_test(test_watchdog_frozen_server),
      cmocka_unit_test(test_backoff_grows_and_resets),
      cmocka_unit_test(test_shutdown_refuses_new_subscriptions),
      cmocka_unit_test(test_unconfirmed_first_attempt_times_out),
      cmocka_unit_test(test_unsubscribe_races_flood),
      cmocka_unit_test(test_concurrent_subscribers),
      cmocka_unit_test(test_unsubscribe_inside_on_item),
      cmocka_unit_test(test_unsubscribe_from_other_callbacks),
      cmocka_unit_test(test_unsubscribe_immediately),
  };
  const char *only = getenv("TOPICS_TEST"); /* e.g. TOPICS_TEST='test_watchdog*' */
  if (only && *only)
    cmocka_set_test_filter(only);
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
