/* mim-local topics under conditions the official SDKs do not produce on purpose: streams
 * cancelled at every stage (before the first item, after some items, during a flood, by
 * freeing the transport), 1,000 concurrent subscribers on one topic, a subscriber that
 * stops reading while others keep up (bounded server memory), and shutdown with open
 * streams. The file's server must exit with status 0 on SIGTERM (streams freed). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "controlclient.pb-c.h"
#include "raw_client.h"
#include "time_scale.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define CACHE "pubsub"
#define REPLAY 64     /* --replay */
#define MAX_QUEUE 128 /* --max-queue: per-subscriber bound before overflow */
/* Upper bound for anything that should happen soon (longer under valgrind). */
#define WAIT_MS wait_ms()

/* MIM_TEST_SLOW=1: a slow run (e.g. mim-local under valgrind via MIM_LOCAL_BIN). */
static bool slow_mode(void) {
  const char *slow = getenv("MIM_TEST_SLOW");
  return slow && *slow;
}

/* Under valgrind or a sanitizer, freed blocks sit in a quarantine (tens to hundreds of
 * MiB), so the server's RSS says nothing about what it keeps. */
static bool rss_meaningful(void) {
  const char *san = getenv("SANITIZE");
  return !slow_mode() && !(san && *san);
}

/* Sanitizers run the flood tests' both ends 5-15x slower on a 2-core machine: a
 * resumed subscriber behind a full-speed flood once took more than 10 s for 20 items
 * under TSan. */
static int wait_ms(void) {
  const char *san = getenv("SANITIZE");
  return slow_mode() ? 60000 : san && *san ? 30000 : 10000;
}

static mim_local *srv;
static mim_transport *root;

static int start_server_with(mim_local **out, const char *more_arg, const char *more_val) {
  const char *caches[] = {CACHE, NULL};
  /* --limits none: these tests fan out messages up to the 1 MiB frame cap, far beyond
   * hosted Momento's 4 KB payload (test_server_quotas covers that limit). */
  const char *extra[] = {"--max-queue", "128", "--limits", "none", more_arg, more_val, NULL};
  mim_local_opts o = {.caches = caches,
                      .extra_args = extra,
                      .replay = REPLAY,
                      .set_replay = 1,
                      .log_level = "warn"};
  return mim_local_start(&o, out);
}

static int start_server(mim_local **out) {
  return start_server_with(out, NULL, NULL);
}

/* Stops a server: 0 when it exited with status 0 promptly. mim-local gives calls still
 * open at SIGTERM a 2 s grace before cancelling them, so a stop that takes that long
 * means a stream the server never finished (a leaked subscriber). MIM_TEST_SLOW=1
 * (valgrind runs) lifts the time bound. */
static int stop_server(mim_local *s) {
  int64_t t0 = cmn_mono_ms();
  int rc = mim_local_stop(s);
  int64_t ms = cmn_mono_ms() - t0;
  if (rc != 0) {
    fprintf(stderr, "mim-local exit status %d (want 0)\n", rc);
    return -1;
  }
  if (ms >= 1900 && !slow_mode()) {
    fprintf(stderr, "mim-local took %lld ms to stop: streams left open?\n", (long long)ms);
    return -1;
  }
  return 0;
}

static int setup(void **state) {
  (void)state;
  if (start_server(&srv) != 0) {
    return -1;
  }
  root = raw_connect(srv, NULL);
  return root ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_transport_free(root);
  return stop_server(srv);
}

static void assert_serving(void) {
  assert_true(mim_local_alive(srv));
  assert_int_equal(raw_ping(root), MIM_OK);
}

static void publish_n(mim_transport *t, const char *topic, int n) {
  for (int i = 0; i < n; i++) {
    char v[32];
    int len = snprintf(v, sizeof v, "m%d", i);
    assert_int_equal(raw_publish(t, CACHE, topic, v, (size_t)len, true), MIM_OK);
  }
}

/* A new subscriber on topic sees the next n publishes, in order, without gaps. */
static void assert_topic_works(const char *topic) {
  /* On the heap and leaked if an assertion fails: its stream may still be running. */
  raw_sub *s = calloc(1, sizeof *s);
  assert_non_null(s);
  raw_sub_init(s);
  assert_int_equal(raw_subscribe(root, CACHE, topic, 0, 0, s), MIM_OK);
  assert_true(raw_sub_wait(s, RAW_HEARTBEATS, 1, WAIT_MS));
  publish_n(root, topic, 5);
  assert_true(raw_sub_wait(s, RAW_ITEMS, 5, WAIT_MS));
  raw_sub_cancel(s);
  assert_true(raw_sub_wait_closed(s, WAIT_MS));
  assert_int_equal(s->bad_order, 0);
  assert_int_equal(s->discontinuities, 0);
  assert_int_equal(s->undecodable, 0);
  raw_sub_destroy(s);
  free(s);
}

static void close_and_check(raw_sub *s, mim_status want) {
  assert_true(raw_sub_wait_closed(s, WAIT_MS));
  if (s->close_status != want) {
    fprintf(stderr, "stream closed with %s (%s), want %s\n", mim_status_name(s->close_status),
            s->close_detail, mim_status_name(want));
  }
  assert_int_equal(s->close_status, want);
}

/* ---- cancellation ---- */

static void test_cancel_before_first_item(void **state) {
  (void)state;
  enum { N = 100 };
  raw_sub *subs = calloc(N, sizeof *subs);
  assert_non_null(subs);
  /* Cancelled at once: most before the server has even sent the first heartbeat. */
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(root, CACHE, "early", 0, 0, &subs[i]), MIM_OK);
    raw_sub_cancel(&subs[i]);
  }
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].items, 0);
    raw_sub_destroy(&subs[i]);
  }
  /* Cancelled after the heartbeat but before any item. */
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(root, CACHE, "early", 0, 0, &subs[i]), MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
    raw_sub_cancel(&subs[i]);
  }
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].items, 0);
    raw_sub_destroy(&subs[i]);
  }
  free(subs);
  /* The topic still delivers to a new subscriber (no stale subscriber blocks it). */
  assert_topic_works("early");
  assert_serving();
}

static void test_cancel_after_some_items(void **state) {
  (void)state;
  enum { N = 20, PUBLISHED = 30 };
  static raw_sub subs[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    subs[i].cancel_at_items = (size_t)i + 1; /* cancelled from its own callback */
    assert_int_equal(raw_subscribe(root, CACHE, "mid", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  publish_n(root, "mid", PUBLISHED);
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    /* Nothing was lost before the cancel; at most what was already in flight follows. */
    assert_true(subs[i].items >= (size_t)i + 1);
    assert_true(subs[i].items <= PUBLISHED);
    assert_int_equal(subs[i].first_seq, 1);
    assert_int_equal(subs[i].bad_order, 0);
    raw_sub_destroy(&subs[i]);
  }
  assert_topic_works("mid");
  assert_serving();
}

/* Streams that are still open when their transport is freed are cancelled by it. */
static void test_transport_freed_with_open_streams(void **state) {
  (void)state;
  enum { N = 50 };
  static raw_sub subs[N];
  mim_transport *t = raw_connect_own(srv, NULL);
  assert_non_null(t);
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(t, CACHE, "freed", 0, 0, &subs[i]), MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  publish_n(root, "freed", 3);
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, 3, WAIT_MS));
  }
  mim_transport_free(t); /* every on_close has run when this returns */
  for (int i = 0; i < N; i++) {
    assert_true(subs[i].closed);
    assert_int_equal(subs[i].close_status, MIM_ERR_CANCELLED);
    raw_sub_destroy(&subs[i]);
  }
  assert_topic_works("freed");
  assert_serving();
}

typedef struct flooder {
  pthread_t th;
  const char *topic;
  size_t value_len;
  atomic_bool stop;
  atomic_long published;
  atomic_long failed;
  mim_status first_failure;
} flooder;

static void *flood_main(void *arg) {
  flooder *f = arg;
  mim_transport *t = raw_connect_own(srv, NULL);
  uint8_t *v = calloc(1, f->value_len);
  if (!t || !v) {
    atomic_fetch_add(&f->failed, 1);
    free(v);
    mim_transport_free(t);
    return NULL;
  }
  while (!atomic_load(&f->stop)) {
    mim_status st = raw_publish(t, CACHE, f->topic, v, f->value_len, false);
    if (st == MIM_OK) {
      atomic_fetch_add(&f->published, 1);
    } else if (atomic_fetch_add(&f->failed, 1) == 0) {
      f->first_failure = st;
    }
  }
  free(v);
  mim_transport_free(t);
  return NULL;
}

static void test_cancel_during_flood(void **state) {
  (void)state;
  enum { TRANSPORTS = 3, PER = 20, N = TRANSPORTS * PER };
  mim_transport *ts[TRANSPORTS];
  raw_sub *subs = calloc(N, sizeof *subs);
  assert_non_null(subs);
  for (int i = 0; i < TRANSPORTS; i++) {
    ts[i] = raw_connect_own(srv, NULL);
    assert_non_null(ts[i]);
  }
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(ts[i % TRANSPORTS], CACHE, "flood", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  static flooder f = {.topic = "flood", .value_len = 512};
  assert_int_equal(pthread_create(&f.th, NULL, flood_main, &f), 0);
  int64_t t0 = cmn_mono_ms();
  /* Cancel subscriber i once it has seen about 5*i items: spread over the flood. */
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, (size_t)(5 * i + 1), WAIT_MS));
    raw_sub_cancel(&subs[i]);
  }
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].bad_order, 0);
    raw_sub_destroy(&subs[i]);
  }
  /* The flood goes on after all its subscribers left. */
  long before = atomic_load(&f.published);
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  while (atomic_load(&f.published) < before + 100 && cmn_mono_ms() < deadline) {
    assert_int_equal(raw_ping(root), MIM_OK);
  }
  atomic_store(&f.stop, true);
  pthread_join(f.th, NULL);
  fprintf(stderr, "flood: %ld publishes in %lld ms while %d subscribers were cancelled\n",
          atomic_load(&f.published), (long long)(cmn_mono_ms() - t0), N);
  if (atomic_load(&f.failed)) {
    fprintf(stderr, "flood publisher failed: %s\n", mim_status_name(f.first_failure));
  }
  assert_int_equal(atomic_load(&f.failed), 0);
  assert_true(atomic_load(&f.published) >= before + 100);
  for (int i = 0; i < TRANSPORTS; i++) {
    mim_transport_free(ts[i]);
  }
  free(subs);
  assert_topic_works("flood");
  assert_serving();
}

/* ---- scale ---- */

static void test_thousand_subscribers(void **state) {
  (void)state;
  enum { TRANSPORTS = 10, PER = 100, N = TRANSPORTS * PER, MSGS = 100 };
  mim_transport *ts[TRANSPORTS];
  raw_sub *subs = calloc(N, sizeof *subs);
  assert_non_null(subs);
  int64_t t0 = cmn_mono_ms();
  int base = raw_proc_sockets(srv->pid);
  for (int i = 0; i < TRANSPORTS; i++) {
    ts[i] = raw_connect_own(srv, NULL); /* TRANSPORTS separate TCP connections */
    assert_non_null(ts[i]);
  }
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(ts[i / PER], CACHE, "thousand", 0, 0, &subs[i]), MIM_OK);
  }
  /* The first heartbeat means the subscription is live: nothing published later is missed. */
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  int64_t t1 = cmn_mono_ms();
  int during = raw_proc_sockets(srv->pid);
  assert_true(during >= base + TRANSPORTS);
  size_t want_bytes = 0;
  for (int i = 0; i < MSGS; i++) {
    char v[32];
    int len = snprintf(v, sizeof v, "message-%d", i);
    want_bytes += (size_t)len;
    assert_int_equal(raw_publish(root, CACHE, "thousand", v, (size_t)len, true), MIM_OK);
  }
  int64_t t2 = cmn_mono_ms();
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, MSGS, WAIT_MS));
  }
  int64_t t3 = cmn_mono_ms();
  for (int i = 0; i < N; i++) {
    raw_sub *s = &subs[i];
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->items, MSGS);
    assert_int_equal(s->first_seq, 1); /* a fresh topic starts at 1 */
    assert_int_equal(s->last_seq, MSGS);
    assert_int_equal(s->bad_order, 0); /* consecutive sequence numbers */
    assert_int_equal(s->discontinuities, 0);
    assert_int_equal(s->undecodable, 0);
    assert_int_equal(s->value_bytes, want_bytes);
    assert_int_equal(s->page, subs[0].page);
    pthread_mutex_unlock(&s->mu);
    raw_sub_cancel(s);
  }
  assert_true(subs[0].page != 0);
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    raw_sub_destroy(&subs[i]);
  }
  int64_t t4 = cmn_mono_ms();
  for (int i = 0; i < TRANSPORTS; i++) {
    mim_transport_free(ts[i]);
  }
  free(subs);
  assert_true(raw_wait_sockets_at_most(srv->pid, base, WAIT_MS) <= base);
  fprintf(stderr, "server sockets: %d before, %d with the subscribers' connections\n", base,
          during);
  fprintf(stderr,
          "1000 subscribers: subscribe %lld ms, publish %d %lld ms, all delivered +%lld ms, "
          "cancel %lld ms, total %lld ms\n",
          (long long)(t1 - t0), MSGS, (long long)(t2 - t1), (long long)(t3 - t2),
          (long long)(t4 - t3), (long long)(cmn_mono_ms() - t0));
  assert_true(slow_mode() || cmn_mono_ms() - t0 < 30000); /* bounded */
  assert_topic_works("thousand");
  assert_serving();
}

/* The largest message (default --max-message-bytes, 1 MiB) fans out intact; one byte more
 * is refused. */
static void test_largest_message_fan_out(void **state) {
  (void)state;
  enum { N = 20, BIG = 1 << 20 };
  mim_transport *t = raw_connect_own(srv, NULL);
  assert_non_null(t);
  static raw_sub subs[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(t, CACHE, "big", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  uint8_t *v = malloc(BIG + 1);
  assert_non_null(v);
  for (size_t i = 0; i < BIG + 1; i++) {
    v[i] = (uint8_t)(i * 131 + 7);
  }
  assert_int_equal(raw_publish(root, CACHE, "big", v, BIG + 1, false), MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(raw_publish(root, CACHE, "big", v, BIG, false), MIM_OK);
  assert_int_equal(raw_publish(root, CACHE, "big", v, 1, false), MIM_OK);
  uint64_t want = raw_value_hash(raw_value_hash(0, v, BIG), v, 1);
  free(v);
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, 2, WAIT_MS));
    raw_sub_cancel(&subs[i]);
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].items, 2);
    assert_int_equal(subs[i].value_bytes, BIG + 1);
    assert_int_equal(subs[i].value_hash, want); /* byte-exact */
    assert_int_equal(subs[i].bad_order, 0);
    raw_sub_destroy(&subs[i]);
  }
  mim_transport_free(t);
  assert_serving();
}

/* ---- a slow subscriber ---- */

/* On its own server, so that its memory baseline is not inflated by earlier tests. */
static void test_slow_subscriber(void **state) {
  (void)state;
  enum { MSGS = 3000, VALUE = 16384, WARM = 2, TOTAL = MSGS + WARM, FAST_BATCH = MAX_QUEUE / 4 };
  mim_local *s2;
  assert_int_equal(start_server(&s2), 0);
  mim_transport *pub = raw_connect(s2, NULL);
  assert_non_null(pub);
  /* Each stream has its own transport: the slow one blocks its transport's event thread. */
  mim_transport *slow_t = raw_connect_own(s2, NULL);
  mim_transport *fast_t = raw_connect_own(s2, NULL);
  assert_non_null(slow_t);
  assert_non_null(fast_t);
  static raw_sub slow, fast;
  raw_sub_init(&slow);
  raw_sub_init(&fast);
  assert_int_equal(raw_subscribe(slow_t, CACHE, "slow", 0, 0, &slow), MIM_OK);
  assert_int_equal(raw_subscribe(fast_t, CACHE, "slow", 0, 0, &fast), MIM_OK);
  assert_true(raw_sub_wait(&slow, RAW_HEARTBEATS, 1, WAIT_MS));
  assert_true(raw_sub_wait(&fast, RAW_HEARTBEATS, 1, WAIT_MS));
  raw_sub_set_block(&slow, true); /* the next message parks the slow reader */

  /* Baseline after a warm-up burst that every reader takes (allocator and gRPC pools). */
  for (int i = 0; i < WARM; i++) {
    assert_int_equal(raw_publish(pub, CACHE, "slow", "warm", 4, true), MIM_OK);
  }
  assert_true(raw_sub_wait(&fast, RAW_ITEMS, WARM, WAIT_MS));
  long rss0 = raw_proc_kib(s2->pid, "VmRSS");
  uint8_t *v = calloc(1, VALUE);
  assert_non_null(v);
  int64_t t0 = cmn_mono_ms();
  for (int i = 0; i < MSGS; i++) {
    assert_int_equal(raw_publish(pub, CACHE, "slow", v, VALUE, false), MIM_OK);
    /* Paced by the fast reader: the server drops what a reader falls MAX_QUEUE items
     * behind on, and on a loaded machine this process's reader thread can be kept
     * off the CPU that long while its publisher thread runs. The slow reader stays
     * parked whatever the pace. */
    if ((i + 1) % FAST_BATCH == 0) {
      assert_true(raw_sub_wait(&fast, RAW_ITEMS, WARM + i + 1, WAIT_MS));
    }
  }
  int64_t t1 = cmn_mono_ms();
  free(v);
  /* The fast reader got every message, in order, while the slow one was stuck. */
  assert_true(raw_sub_wait(&fast, RAW_ITEMS, TOTAL, WAIT_MS));
  int64_t t2 = cmn_mono_ms();
  long hwm = raw_proc_kib(s2->pid, "VmHWM");
  long rss1 = raw_proc_kib(s2->pid, "VmRSS");
  assert_true(raw_sub_wait_blocking(&slow, WAIT_MS));
  pthread_mutex_lock(&fast.mu);
  assert_int_equal(fast.items, TOTAL);
  assert_int_equal(fast.bad_order, 0);
  assert_int_equal(fast.discontinuities, 0);
  pthread_mutex_unlock(&fast.mu);
  fprintf(stderr,
          "slow subscriber: %d x %d B published in %lld ms, fast reader done +%lld ms; "
          "server RSS %ld -> %ld KiB (peak %ld KiB) for %d MiB published\n",
          MSGS, VALUE, (long long)(t1 - t0), (long long)(t2 - t1), rss0, rss1, hwm,
          MSGS * VALUE >> 20);
  /* Bounded: the slow stream may hold its queue (MAX_QUEUE items), the ring (REPLAY) and
   * what HTTP/2 flow control lets through, far less than the 46 MiB published. */
  assert_true(t2 - t1 < 5000); /* the fast reader was not held back */
  assert_true(rss0 > 0 && rss1 > 0);
  if (rss_meaningful()) {
    assert_true(rss1 - rss0 < 16 * 1024);
  }

  /* Released, the slow reader catches up: a discontinuity tells it what it lost, and it
   * ends at the newest item, in order after the gap. */
  raw_sub_set_block(&slow, false);
  bool disc = raw_sub_wait(&slow, RAW_DISCONTINUITIES, 1, WAIT_MS);
  pthread_mutex_lock(&slow.mu);
  bool ended = slow.closed && slow.close_status != MIM_ERR_CANCELLED;
  pthread_mutex_unlock(&slow.mu);
  assert_true(disc || ended);
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  for (;;) {
    pthread_mutex_lock(&slow.mu);
    bool done = slow.last_seq == TOTAL || slow.closed;
    size_t n = slow.items;
    pthread_mutex_unlock(&slow.mu);
    if (done || cmn_mono_ms() > deadline) {
      break;
    }
    raw_sub_wait(&slow, RAW_ITEMS, n + 1, 100);
  }
  pthread_mutex_lock(&slow.mu);
  fprintf(stderr,
          "slow reader: %zu items, %zu discontinuities (last %llu -> new %llu), closed %d\n",
          slow.items, slow.discontinuities, (unsigned long long)slow.disc_last,
          (unsigned long long)slow.disc_new, (int)slow.closed);
  if (!slow.closed) {
    assert_int_equal(slow.last_seq, TOTAL);
    assert_true(slow.items < TOTAL);
    assert_int_equal(slow.bad_order, 0);
    assert_true(slow.disc_new >= slow.disc_last);
  }
  pthread_mutex_unlock(&slow.mu);
  raw_sub_cancel(&slow);
  raw_sub_cancel(&fast);
  assert_true(raw_sub_wait_closed(&slow, WAIT_MS));
  assert_true(raw_sub_wait_closed(&fast, WAIT_MS));
  mim_transport_free(slow_t);
  mim_transport_free(fast_t);
  raw_sub_destroy(&slow);
  raw_sub_destroy(&fast);
  assert_int_equal(raw_ping(pub), MIM_OK);
  mim_transport_free(pub);
  assert_int_equal(stop_server(s2), 0);
}

/* ---- ordering and resume edge cases ---- */

typedef struct pub_thread {
  pthread_t th;
  mim_local *server;
  int id, n;
  mim_status failure;
  char detail[256]; /* the failing call's detail, for the test's message */
} pub_thread;

static void *pub_main(void *arg) {
  pub_thread *p = arg;
  mim_transport *t = raw_connect_own(p->server, NULL);
  if (!t) {
    p->failure = MIM_ERR_UNAVAILABLE;
    return NULL;
  }
  for (int i = 0; i < p->n && p->failure == MIM_OK; i++) {
    char v[32];
    int len = snprintf(v, sizeof v, "p%d-%d", p->id, i);
    p->failure = raw_publish(t, CACHE, "many-pubs", v, (size_t)len, true);
    if (p->failure != MIM_OK) {
      snprintf(p->detail, sizeof p->detail, "publish %d: %s", i, mim_last_error_detail());
    }
  }
  mim_transport_free(t);
  return NULL;
}

/* Concurrent publishers: one gapless sequence, and every subscriber sees the same order.
 * Own server with a queue larger than the burst, so that a subscriber the scheduler
 * starves cannot overflow (that would be a discontinuity, tested elsewhere). */
static void test_concurrent_publishers(void **state) {
  (void)state;
  enum { PUBS = 4, EACH = 250, TOTAL = PUBS * EACH, SUBS = 20 };
  mim_local *s2;
  assert_int_equal(start_server_with(&s2, "--max-queue", "4096"), 0);
  mim_transport *ts[2] = {raw_connect_own(s2, NULL), raw_connect_own(s2, NULL)};
  assert_non_null(ts[0]);
  assert_non_null(ts[1]);
  static raw_sub subs[SUBS];
  for (int i = 0; i < SUBS; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(ts[i % 2], CACHE, "many-pubs", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  static pub_thread pubs[PUBS];
  int64_t t0 = cmn_mono_ms();
  for (int i = 0; i < PUBS; i++) {
    pubs[i] = (pub_thread){.server = s2, .id = i, .n = EACH};
    assert_int_equal(pthread_create(&pubs[i].th, NULL, pub_main, &pubs[i]), 0);
  }
  for (int i = 0; i < PUBS; i++) {
    pthread_join(pubs[i].th, NULL);
    if (pubs[i].failure != MIM_OK) {
      fprintf(stderr, "publisher %d: %s (%s)\n", i, mim_status_name(pubs[i].failure),
              pubs[i].detail[0] ? pubs[i].detail : "could not connect");
    }
    assert_int_equal(pubs[i].failure, MIM_OK);
  }
  for (int i = 0; i < SUBS; i++) {
    if (!raw_sub_wait(&subs[i], RAW_ITEMS, TOTAL, WAIT_MS)) {
      fprintf(stderr, "subscriber %d: %zu items, %zu discontinuities, closed %d (%s)\n", i,
              subs[i].items, subs[i].discontinuities, (int)subs[i].closed,
              mim_status_name(subs[i].close_status));
      fail();
    }
  }
  fprintf(stderr, "%d publishers x %d messages to %d subscribers in %lld ms\n", PUBS, EACH, SUBS,
          (long long)(cmn_mono_ms() - t0));
  for (int i = 0; i < SUBS; i++) {
    raw_sub_cancel(&subs[i]);
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].items, TOTAL);
    assert_int_equal(subs[i].first_seq, 1);
    assert_int_equal(subs[i].last_seq, TOTAL);
    assert_int_equal(subs[i].bad_order, 0);
    assert_int_equal(subs[i].value_hash, subs[0].value_hash); /* same order everywhere */
    raw_sub_destroy(&subs[i]);
  }
  mim_transport_free(ts[0]);
  mim_transport_free(ts[1]);
  assert_int_equal(stop_server(s2), 0);
}

/* Subscribes with resume_at/page, publishes a live marker (sequence marker_seq) and checks
 * what arrived up to it: want_disc discontinuities, then items from want_first (0 = only
 * the marker), gapless. */
static void check_resume(const char *topic, uint64_t resume_at, uint64_t page, size_t want_disc,
                         uint64_t want_first, uint64_t marker_seq) {
  /* On the heap and leaked if an assertion fails: its stream may still be running. */
  raw_sub *s = calloc(1, sizeof *s);
  assert_non_null(s);
  raw_sub_init(s);
  assert_int_equal(raw_subscribe(root, CACHE, topic, resume_at, page, s), MIM_OK);
  assert_true(raw_sub_wait(s, RAW_HEARTBEATS, 1, WAIT_MS));
  assert_int_equal(raw_publish(root, CACHE, topic, "marker", 6, true), MIM_OK);
  /* Wait for the marker: everything replayed precedes it. */
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    bool done = s->last_seq == marker_seq || s->closed;
    size_t n = s->items;
    pthread_mutex_unlock(&s->mu);
    if (done || cmn_mono_ms() > deadline) {
      break;
    }
    raw_sub_wait(s, RAW_ITEMS, n + 1, 100);
  }
  raw_sub_cancel(s);
  close_and_check(s, MIM_ERR_CANCELLED);
  if (s->discontinuities != want_disc || s->last_seq != marker_seq ||
      (want_first ? s->first_seq != want_first : s->items != 1)) {
    fprintf(stderr,
            "resume_at %llu page %llu: %zu disc (last %llu new %llu), %zu items %llu..%llu\n",
            (unsigned long long)resume_at, (unsigned long long)page, s->discontinuities,
            (unsigned long long)s->disc_last, (unsigned long long)s->disc_new, s->items,
            (unsigned long long)s->first_seq, (unsigned long long)s->last_seq);
  }
  assert_int_equal(s->discontinuities, want_disc);
  assert_int_equal(s->last_seq, marker_seq);
  assert_int_equal(s->bad_order, 0);
  assert_int_equal(s->undecodable, 0);
  if (want_first) {
    assert_int_equal(s->first_seq, want_first);
    assert_int_equal(s->items, marker_seq - want_first + 1);
  } else {
    assert_int_equal(s->items, 1); /* only the live marker */
  }
  raw_sub_destroy(s);
  free(s);
}

/* Extreme resume positions and pages are answered (replay or discontinuity), not crashed. */
static void test_resume_edge_cases(void **state) {
  (void)state;
  const char *topic = "resume-edges";
  static raw_sub probe;
  raw_sub_init(&probe);
  assert_int_equal(raw_subscribe(root, CACHE, topic, 0, 0, &probe), MIM_OK);
  assert_true(raw_sub_wait(&probe, RAW_HEARTBEATS, 1, WAIT_MS));
  publish_n(root, topic, 10);
  assert_true(raw_sub_wait(&probe, RAW_ITEMS, 10, WAIT_MS));
  raw_sub_cancel(&probe);
  assert_true(raw_sub_wait_closed(&probe, WAIT_MS));
  uint64_t page = probe.page;
  raw_sub_destroy(&probe);
  assert_true(page != 0);
  uint64_t other = page == 12345 ? 54321 : 12345;
  uint64_t seq = 10; /* last published; each check publishes one marker */
  /* Same page, in the ring: replay from there, no discontinuity. */
  seq++;
  check_resume(topic, 5, page, 0, 5, seq);
  /* Page 0 = "same page". */
  seq++;
  check_resume(topic, 3, 0, 0, 3, seq);
  /* resume_at == next: nothing to replay, no discontinuity. */
  seq++;
  check_resume(topic, seq, page, 0, 0, seq);
  /* From the future, from another page, and at the extremes: a discontinuity, then the
   * whole ring (all of 1..seq-1 still fits: --replay 64). */
  seq++;
  check_resume(topic, seq + 5, page, 1, 1, seq);
  seq++;
  check_resume(topic, 5, other, 1, 1, seq);
  seq++;
  check_resume(topic, UINT64_MAX, page, 1, 1, seq);
  seq++;
  check_resume(topic, UINT64_MAX, UINT64_MAX, 1, 1, seq);
  seq++;
  check_resume(topic, 1, UINT64_MAX, 1, 1, seq);
  /* Past the ring: only the newest REPLAY items come back after a discontinuity. */
  publish_n(root, topic, 100);
  seq += 100 + 1;
  check_resume(topic, 1, page, 1, seq - REPLAY, seq);
  assert_serving();
}

/* A stream deadline ends subscriptions from the client side mid-flood; the server copes. */
static void test_stream_deadlines(void **state) {
  (void)state;
  enum { N = 30 };
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  static flooder f = {.topic = "deadline", .value_len = 256};
  assert_int_equal(pthread_create(&f.th, NULL, flood_main, &f), 0);
  static raw_sub subs[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    subs[i].deadline_ms = 100 + 10 * i;
    assert_int_equal(raw_subscribe(t, CACHE, "deadline", 0, 0, &subs[i]), MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_DEADLINE_EXCEEDED);
    assert_int_equal(subs[i].bad_order, 0);
    raw_sub_destroy(&subs[i]);
  }
  atomic_store(&f.stop, true);
  pthread_join(f.th, NULL);
  assert_int_equal(atomic_load(&f.failed), 0);
  assert_true(atomic_load(&f.published) > 0);
  mim_transport_free(t);
  assert_topic_works("deadline");
  assert_serving();
}

/* Deleting a cache ends its topics' streams (NOT_FOUND); a re-created cache starts its
 * topics afresh (sequence 1, new page). */
static void test_cache_deleted_under_subscribers(void **state) {
  (void)state;
  enum { N = 20 };
  ControlClient__CreateCacheRequest cr = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  cr.cache_name = (char *)"doomed";
  ControlClient__DeleteCacheRequest dr = CONTROL_CLIENT____DELETE_CACHE_REQUEST__INIT;
  dr.cache_name = (char *)"doomed";
  assert_int_equal(
      raw_call(root, "/control_client.ScsControl/CreateCache", NULL, &cr.base, NULL, NULL), MIM_OK);
  static raw_sub subs[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(root, "doomed", i % 2 ? "t1" : "t2", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  for (int i = 0; i < 5; i++) {
    assert_int_equal(raw_publish(root, "doomed", "t1", "x", 1, true), MIM_OK);
  }
  assert_int_equal(
      raw_call(root, "/control_client.ScsControl/DeleteCache", NULL, &dr.base, NULL, NULL), MIM_OK);
  uint64_t old_page = 0;
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_NOT_FOUND);
    if (i % 2) {
      assert_int_equal(subs[i].items, 5);
      old_page = subs[i].page;
    }
    raw_sub_destroy(&subs[i]);
  }
  assert_int_equal(raw_publish(root, "doomed", "t1", "x", 1, true), MIM_ERR_NOT_FOUND);
  assert_int_equal(
      raw_call(root, "/control_client.ScsControl/CreateCache", NULL, &cr.base, NULL, NULL), MIM_OK);
  static raw_sub s;
  raw_sub_init(&s);
  assert_int_equal(raw_subscribe(root, "doomed", "t1", 0, 0, &s), MIM_OK);
  assert_true(raw_sub_wait(&s, RAW_HEARTBEATS, 1, WAIT_MS));
  assert_int_equal(raw_publish(root, "doomed", "t1", "y", 1, true), MIM_OK);
  assert_true(raw_sub_wait(&s, RAW_ITEMS, 1, WAIT_MS));
  raw_sub_cancel(&s);
  close_and_check(&s, MIM_ERR_CANCELLED);
  assert_int_equal(s.first_seq, 1);
  assert_true(s.page != old_page);
  raw_sub_destroy(&s);
  assert_int_equal(
      raw_call(root, "/control_client.ScsControl/DeleteCache", NULL, &dr.base, NULL, NULL), MIM_OK);
  assert_serving();
}

/* Many topics at once, each with its own subscriber. */
static void test_many_topics(void **state) {
  (void)state;
  enum { N = 500 };
  raw_sub *subs = calloc(N, sizeof *subs);
  assert_non_null(subs);
  char name[32];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    snprintf(name, sizeof name, "topic-%d", i);
    assert_int_equal(raw_subscribe(root, CACHE, name, 0, 0, &subs[i]), MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
    snprintf(name, sizeof name, "topic-%d", i);
    assert_int_equal(raw_publish(root, CACHE, name, name, strlen(name), true), MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, 1, WAIT_MS));
    raw_sub_cancel(&subs[i]);
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    assert_int_equal(subs[i].items, 1);
    assert_int_equal(subs[i].first_seq, 1);
    snprintf(name, sizeof name, "topic-%d", i);
    assert_int_equal(subs[i].value_bytes, strlen(name));
    raw_sub_destroy(&subs[i]);
  }
  free(subs);
  assert_serving();
}

/* ---- cancelled subscribers are really gone ---- */

/* Subscribes and waits for the server's answer: MIM_OK once accepted (first heartbeat),
 * else the refusal. On MIM_OK the stream stays open in *s. */
static mim_status try_subscribe(mim_transport *t, const char *topic, raw_sub *s,
                                int64_t deadline_ms) {
  raw_sub_init(s);
  s->deadline_ms = deadline_ms;
  mim_status st = raw_subscribe(t, CACHE, topic, 0, 0, s);
  if (st == MIM_OK && !raw_sub_wait(s, RAW_HEARTBEATS, 1, WAIT_MS)) {
    assert_true(raw_sub_wait_closed(s, WAIT_MS));
    st = s->close_status == MIM_OK ? MIM_ERR_UNKNOWN : s->close_status;
  }
  if (st != MIM_OK) {
    raw_sub_destroy(s);
  }
  return st;
}

/* Fills the topic up to --max-subscribers again, waiting (bounded) for the server to
 * release the slots of cancelled streams; fails if a slot never comes back. */
static void refill(mim_transport *t, const char *topic, raw_sub *subs, int n, int64_t deadline_ms) {
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  for (int i = 0; i < n; i++) {
    mim_status st;
    while ((st = try_subscribe(t, topic, &subs[i], deadline_ms)) == MIM_ERR_RESOURCE_EXHAUSTED &&
           cmn_mono_ms() < deadline) {
      /* the server has not yet seen an earlier cancel: try again */
    }
    if (st != MIM_OK) {
      fprintf(stderr, "slot %d never came back: %s\n", i, mim_status_name(st));
    }
    assert_int_equal(st, MIM_OK);
  }
}

static void cancel_all(raw_sub *subs, int n) {
  for (int i = 0; i < n; i++) {
    raw_sub_cancel(&subs[i]);
  }
  for (int i = 0; i < n; i++) {
    close_and_check(&subs[i], MIM_ERR_CANCELLED);
    raw_sub_destroy(&subs[i]);
  }
}

/* With --max-subscribers 5 a topic's slots show whether the server detached streams that
 * were cancelled before their first item, after items, by a deadline, or by a transport
 * going away. */
static void test_cancelled_streams_release_slots(void **state) {
  (void)state;
  enum { MAX = 5 };
  mim_local *s2;
  assert_int_equal(start_server_with(&s2, "--max-subscribers", "5"), 0);
  mim_transport *t = raw_connect(s2, NULL);
  assert_non_null(t);
  static raw_sub subs[MAX], extra;
  refill(t, "slots", subs, MAX, 0);
  assert_int_equal(try_subscribe(t, "slots", &extra, 0), MIM_ERR_RESOURCE_EXHAUSTED);
  /* 1: cancelled after the heartbeat. */
  cancel_all(subs, MAX);
  refill(t, "slots", subs, MAX, 0);
  /* 2: cancelled after items. */
  assert_int_equal(raw_publish(t, CACHE, "slots", "x", 1, true), MIM_OK);
  for (int i = 0; i < MAX; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, 1, WAIT_MS));
  }
  cancel_all(subs, MAX);
  /* 3: cancelled at once, before the server could answer (many times the limit). */
  for (int round = 0; round < 10; round++) {
    for (int i = 0; i < MAX; i++) {
      raw_sub_init(&subs[i]);
      assert_int_equal(raw_subscribe(t, CACHE, "slots", 0, 0, &subs[i]), MIM_OK);
      raw_sub_cancel(&subs[i]);
    }
    for (int i = 0; i < MAX; i++) {
      assert_true(raw_sub_wait_closed(&subs[i], WAIT_MS));
      raw_sub_destroy(&subs[i]);
    }
  }
  refill(t, "slots", subs, MAX, 0);
  cancel_all(subs, MAX);
  /* 4: ended by a deadline (accepted first: refill retries while the server is still
   * releasing the slots cancelled just above). */
  refill(t, "slots", subs, MAX, 500);
  for (int i = 0; i < MAX; i++) {
    close_and_check(&subs[i], MIM_ERR_DEADLINE_EXCEEDED);
    raw_sub_destroy(&subs[i]);
  }
  refill(t, "slots", subs, MAX, 0);
  cancel_all(subs, MAX);
  /* 5: their transport freed (connection closed). */
  mim_transport *t2 = raw_connect_own(s2, NULL); /* its own TCP connection, then closed */
  assert_non_null(t2);
  refill(t2, "slots", subs, MAX, 0);
  mim_transport_free(t2);
  for (int i = 0; i < MAX; i++) {
    raw_sub_destroy(&subs[i]);
  }
  refill(t, "slots", subs, MAX, 0);
  cancel_all(subs, MAX);
  mim_transport_free(t);
  assert_int_equal(stop_server(s2), 0);
}

/* ---- server-side cuts and heartbeats ---- */

/* SIGUSR1 ends every subscription mid-flood (UNAVAILABLE); resuming at last+1 on the same
 * page continues without a gap or a duplicate (or says what was lost). */
static void test_server_cut_mid_flood(void **state) {
  (void)state;
  enum { N = 20 };
  mim_transport *t = raw_connect_own(srv, NULL);
  assert_non_null(t);
  static raw_sub subs[N], again[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(t, CACHE, "cut", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  static flooder f = {.topic = "cut", .value_len = 64};
  assert_int_equal(pthread_create(&f.th, NULL, flood_main, &f), 0);
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&subs[i], RAW_ITEMS, 20, WAIT_MS));
  }
  assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
  for (int i = 0; i < N; i++) {
    close_and_check(&subs[i], MIM_ERR_UNAVAILABLE);
    assert_int_equal(subs[i].bad_order, 0);
  }
  /* Resume while the flood goes on. */
  for (int i = 0; i < N; i++) {
    raw_sub_init(&again[i]);
    assert_int_equal(raw_subscribe(t, CACHE, "cut", subs[i].last_seq + 1, subs[i].page, &again[i]),
                     MIM_OK);
  }
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait(&again[i], RAW_ITEMS, 20, WAIT_MS));
  }
  atomic_store(&f.stop, true);
  pthread_join(f.th, NULL);
  assert_int_equal(atomic_load(&f.failed), 0);
  for (int i = 0; i < N; i++) {
    raw_sub_cancel(&again[i]);
    close_and_check(&again[i], MIM_ERR_CANCELLED);
    assert_int_equal(again[i].bad_order, 0);
    assert_int_equal(again[i].page, subs[i].page);
    if (again[i].discontinuities == 0) {
      assert_int_equal(again[i].first_seq, subs[i].last_seq + 1); /* no gap, no duplicate */
    } else {
      assert_int_equal(again[i].disc_last, subs[i].last_seq); /* what was lost is stated */
      assert_true(again[i].first_seq > subs[i].last_seq + 1);
    }
    raw_sub_destroy(&subs[i]);
    raw_sub_destroy(&again[i]);
  }
  mim_transport_free(t);
  assert_serving();
}

/* An idle stream gets heartbeats (--heartbeat-ms) and none are due while items flow. */
static void test_heartbeats_on_idle_streams(void **state) {
  (void)state;
  mim_local *s2;
  assert_int_equal(start_server_with(&s2, "--heartbeat-ms", "100"), 0);
  mim_transport *t = raw_connect(s2, NULL);
  assert_non_null(t);
  static raw_sub s;
  raw_sub_init(&s);
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(raw_subscribe(t, CACHE, "idle", 0, 0, &s), MIM_OK);
  assert_true(raw_sub_wait(&s, RAW_HEARTBEATS, 5, WAIT_MS)); /* the first, then idle ones */
  int64_t took = cmn_mono_ms() - t0;
  fprintf(stderr, "5 heartbeats at --heartbeat-ms 100 in %lld ms\n", (long long)took);
  assert_true(took >= 300); /* not a burst: paced by the idle interval */
  raw_sub_cancel(&s);
  close_and_check(&s, MIM_ERR_CANCELLED);
  assert_int_equal(s.items, 0);
  raw_sub_destroy(&s);
  mim_transport_free(t);
  assert_int_equal(stop_server(s2), 0);
}

/* ---- a client process that dies ---- */

#define CHILD_FLAG "--child-subscriber"
#define CHILD_KEY_ENV "MIM_TEST_CHILD_KEY"

extern char **environ;

/* Child mode (this same binary): open n subscriptions to PORT/topic on their own
 * connections, print "ready", then wait to be killed (at most 60 s). */
static int child_main(int port, const char *topic, int n) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  mim_local fake;
  memset(&fake, 0, sizeof fake);
  fake.port = port;
  snprintf(fake.endpoint, sizeof fake.endpoint, "127.0.0.1:%d", port);
  fake.root_key = getenv(CHILD_KEY_ENV);
  if (!fake.root_key) {
    return 2;
  }
  mim_transport *t = raw_connect_own(&fake, NULL);
  raw_sub *subs = calloc((size_t)n, sizeof *subs);
  if (!t || !subs) {
    return 3;
  }
  for (int i = 0; i < n; i++) {
    raw_sub_init(&subs[i]);
    if (raw_subscribe(t, CACHE, topic, 0, 0, &subs[i]) != MIM_OK ||
        !raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, 10000 * test_time_scale())) {
      return 4;
    }
  }
  printf("ready\n");
  fflush(stdout);
  struct timespec ts = {60, 0};
  nanosleep(&ts, NULL);
  return 5;
}

/* A subscriber process killed with SIGKILL (no cancel, no goodbye: the kernel closes its
 * socket): the server must release its streams, their slots and the connection. */
static void test_subscriber_process_killed(void **state) {
  (void)state;
  enum { MAX = 5 };
  mim_local *s2;
  assert_int_equal(start_server_with(&s2, "--max-subscribers", "5"), 0);
  mim_transport *t = raw_connect(s2, NULL);
  assert_non_null(t);
  assert_int_equal(raw_ping(t), MIM_OK);
  int base = raw_proc_sockets(s2->pid);
  assert_int_equal(setenv(CHILD_KEY_ENV, s2->root_key, 1), 0);
  int out[2];
  assert_int_equal(pipe(out), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  char port[16], n[16];
  snprintf(port, sizeof port, "%d", s2->port);
  snprintf(n, sizeof n, "%d", MAX);
  /* Spawn the file itself: under valgrind /proc/self/exe is valgrind's launcher, while
   * readlink of it names this test program. */
  char self[4096];
  ssize_t self_len = readlink("/proc/self/exe", self, sizeof self - 1);
  assert_true(self_len > 0);
  self[self_len] = '\0';
  char *argv[] = {self, (char *)CHILD_FLAG, port, (char *)"killed", n, NULL};
  pid_t child;
  assert_int_equal(posix_spawn(&child, self, &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  unsetenv(CHILD_KEY_ENV);
  close(out[1]);
  /* Wait (bounded) for "ready": the child holds all MAX slots. */
  struct pollfd pfd = {out[0], POLLIN, 0};
  char buf[16] = "";
  assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
  assert_true(read(out[0], buf, sizeof buf - 1) > 0);
  assert_int_equal(strncmp(buf, "ready", 5), 0);
  static raw_sub extra, subs[MAX];
  assert_int_equal(try_subscribe(t, "killed", &extra, 0), MIM_ERR_RESOURCE_EXHAUSTED);
  assert_true(raw_proc_sockets(s2->pid) > base);
  assert_int_equal(kill(child, SIGKILL), 0);
  int ws;
  assert_int_equal(waitpid(child, &ws, 0), child);
  assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
  close(out[0]);
  /* The dead client's connection and slots come back. */
  assert_true(raw_wait_sockets_at_most(s2->pid, base, WAIT_MS) <= base);
  refill(t, "killed", subs, MAX, 0);
  cancel_all(subs, MAX);
  mim_transport_free(t);
  assert_int_equal(stop_server(s2), 0);
}

/* ---- shutdown ---- */

/* SIGTERM with open (and busy) streams: every stream ends with UNAVAILABLE and the
 * server still exits with status 0. Uses its own server. */
static void test_shutdown_with_open_streams(void **state) {
  (void)state;
  enum { N = 40 };
  mim_local *s2;
  assert_int_equal(start_server(&s2), 0);
  mim_transport *t = raw_connect(s2, NULL);
  assert_non_null(t);
  static raw_sub subs[N];
  for (int i = 0; i < N; i++) {
    raw_sub_init(&subs[i]);
    assert_int_equal(raw_subscribe(t, CACHE, i % 2 ? "a" : "b", 0, 0, &subs[i]), MIM_OK);
    assert_true(raw_sub_wait(&subs[i], RAW_HEARTBEATS, 1, WAIT_MS));
  }
  assert_int_equal(raw_publish(t, CACHE, "a", "x", 1, true), MIM_OK);
  assert_int_equal(stop_server(s2), 0);
  for (int i = 0; i < N; i++) {
    assert_true(raw_sub_wait_closed(&subs[i], WAIT_MS));
    assert_int_not_equal(subs[i].close_status, MIM_OK);
    assert_int_not_equal(subs[i].close_status, MIM_ERR_CANCELLED);
    raw_sub_destroy(&subs[i]);
  }
  mim_transport_free(t);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], CHILD_FLAG) == 0) {
    return child_main(atoi(argv[2]), argv[3], atoi(argv[4]));
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cancel_before_first_item),
      cmocka_unit_test(test_cancel_after_some_items),
      cmocka_unit_test(test_transport_freed_with_open_streams),
      cmocka_unit_test(test_cancel_during_flood),
      cmocka_unit_test(test_thousand_subscribers),
      cmocka_unit_test(test_largest_message_fan_out),
      cmocka_unit_test(test_slow_subscriber),
      cmocka_unit_test(test_concurrent_publishers),
      cmocka_unit_test(test_resume_edge_cases),
      cmocka_unit_test(test_stream_deadlines),
      cmocka_unit_test(test_cache_deleted_under_subscribers),
      cmocka_unit_test(test_many_topics),
      cmocka_unit_test(test_cancelled_streams_release_slots),
      cmocka_unit_test(test_server_cut_mid_flood),
      cmocka_unit_test(test_heartbeats_on_idle_streams),
      cmocka_unit_test(test_subscriber_process_killed),
      cmocka_unit_test(test_shutdown_with_open_streams),
  };
  /* MIM_TEST_FILTER=test_foo (glob) runs only matching tests. */
  if (getenv("MIM_TEST_FILTER"))
    cmocka_set_test_filter(getenv("MIM_TEST_FILTER"));
  return cmocka_run_group_tests(tests, setup, teardown);
}
