/* Chaos tests of the IM API (issue 8): many senders and receivers in one chat while
 *  - a proxy (tests/support/chaos_proxy.h) cuts every connection every 0.2-0.5 s and
 *    stalls them now and then: every message is shown exactly once, in per-sender order,
 *    by every receiver, the history keeps the last N in order, and no client is restarted;
 *  - mim-local is killed (SIGKILL) and restarted on the same port mid-chat, without and
 *    with --data-dir: clients reconnect by themselves; without persistence what was lost
 *    is reported to the app (on_event), with persistence nothing is lost;
 *  - a receiver whose connection comes back far behind (more than the history cap) gets
 *    the missed messages in order (regression: the list used to be shown first).
 * Each run prints a "chaos:" summary line with its figures. Knobs for experiments:
 * MIM_CHAOS_MSGS, MIM_CHAOS_RESTART_MSGS (messages per sender), MIM_CHAOS_FILTER (cmocka
 * test filter), MIM_CHAOS_VERBOSE=1 (progress on stderr). Every wait has a deadline;
 * servers and proxy are stopped on every path (cmocka teardown after a failed assert). */
/* cmocka.h needs these first, in this order. */
// clang-format off
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "chaos_proxy.h"
#include "mim_local.h"
#include "test_clock.h"
#include "time_scale.h"

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CACHE "chaos"
#define CHAT "room"
#define MAX_SENDERS 10
#define MAX_MSGS 1000
#define MAX_RECEIVERS 8
/* Deadlines and the proxy's timings are multiplied by test_time_scale() (instrumented
 * runs); the message counts by MIM_CHAOS_MSGS / MIM_CHAOS_RESTART_MSGS (tests/run-all.sh
 * lowers them there); the checks stay the same. */
#define CALL_DEADLINE_MS 5000
#define SEND_TIMEOUT_MS 60000 /* outbox retries give up after this */
#define JOIN_TRIES 20

/* ---- time ---- */

/* ---- library log: counts of what the library did under faults ---- */

static struct {
  atomic_long send_retries;  /* outbox: "send <id>: <status>, retry n" */
  atomic_long dups_live;     /* im: "duplicate of <id> (live) skipped": a repeat on the topic */
  atomic_long dups_history;  /* ... (history): a refetched list value already shown */
  atomic_long discontinuity; /* im: "discontinuity ..." */
  atomic_long streams_lost;  /* topics: "stream of ... lost" */
  atomic_long warnings;      /* anything at WARN or worse */
} logc;

static void count_log(mim_log_level level, const char *msg, void *user) {
  (void)user;
  if (strstr(msg, ", retry "))
    atomic_fetch_add(&logc.send_retries, 1);
  else if (strstr(msg, "duplicate of ") && strstr(msg, "(live)"))
    atomic_fetch_add(&logc.dups_live, 1);
  else if (strstr(msg, "duplicate of "))
    atomic_fetch_add(&logc.dups_history, 1);
  else if (strstr(msg, ": discontinuity "))
    atomic_fetch_add(&logc.discontinuity, 1);
  else if (strstr(msg, "topics: stream of "))
    atomic_fetch_add(&logc.streams_lost, 1);
  if (level <= MIM_LOG_WARN && atomic_fetch_add(&logc.warnings, 1) < 20)
    fprintf(stderr, "lib: %s\n", msg); /* the first few only: context for a failure */
}

static void reset_log_counts(void) {
  atomic_store(&logc.send_retries, 0);
  atomic_store(&logc.dups_live, 0);
  atomic_store(&logc.dups_history, 0);
  atomic_store(&logc.discontinuity, 0);
  atomic_store(&logc.streams_lost, 0);
  atomic_store(&logc.warnings, 0);
}

/* ---- a participant: one client, one session; what its session showed ---- */

typedef struct party {
  int index;
  mim_client *client;
  mim_session *session;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* shown by on_message */
  uint8_t shown[MAX_SENDERS][MAX_MSGS];
  int first[MAX_SENDERS], last[MAX_SENDERS]; /* -1 = none yet */
  long distinct, dup_shown, order_bad, bad_text;
  /* reported by on_event */
  int reconnecting, connected, closed, lost_reports, other_errors;
  /* a sender's outcomes (on_send_result) */
  long sent_ok, sent_failed;
  atomic_int started; /* mim_send calls begun (senders) */
  int nmsgs;          /* messages this sender sends */
  int send_errors;    /* mim_send returned an error */
  /* late joiners: how many messages of each sender were sent when the join began */
  int sent_before_join[MAX_SENDERS];
} party;

static void party_init(party *p, int index) {
  memset(p, 0, sizeof *p);
  p->index = index;
  pthread_mutex_init(&p->mu, NULL);
  cmn_cond_init_monotonic(&p->cv);
  for (int k = 0; k < MAX_SENDERS; k++)
    p->first[k] = p->last[k] = -1;
}

static void party_destroy(party *p) {
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  party *p = user;
  int k = -1, q = -1;
  pthread_mutex_lock(&p->mu);
  if (m->kind != MIM_MESSAGE_CHAT || sscanf(m->text, "s%d-%d", &k, &q) != 2 || k < 0 ||
      k >= MAX_SENDERS || q < 0 || q >= MAX_MSGS) {
    p->bad_text++;
  } else if (p->shown[k][q]++ > 0) {
    p->dup_shown++;
  } else {
    p->distinct++;
    if (q <= p->last[k] && p->order_bad++ < 5)
      fprintf(stderr, "party %d: s%d-%d shown after s%d-%d (%s, seq %llu)\n", p->index, k, q, k,
              p->last[k], m->from_history ? "history" : "live", (unsigned long long)m->sequence);
    if (q <= p->last[k])
      ;
    else
      p->last[k] = q;
    if (p->first[k] < 0)
      p->first[k] = q;
  }
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void on_event(mim_session *s, mim_subscription_state state, mim_status status,
                     const char *detail, void *user) {
  (void)s;
  party *p = user;
  pthread_mutex_lock(&p->mu);
  if (state == MIM_SUB_RECONNECTING)
    p->reconnecting++;
  else if (state == MIM_SUB_CLOSED)
    p->closed++;
  else if (state == MIM_SUB_CONNECTED && status == MIM_OK)
    p->connected++;
  else if (status == MIM_ERR_RESOURCE_EXHAUSTED)
    p->lost_reports++;
  else
    p->other_errors++;
  if (state == MIM_SUB_CONNECTED && status != MIM_OK)
    fprintf(stderr, "party %d: %s: %s\n", p->index, mim_status_name(status), detail);
  pthread_mutex_unlock(&p->mu);
}

static void on_send_result(mim_session *s, const char *id, mim_status status, const char *detail,
                           void *user) {
  (void)s;
  party *p = user;
  pthread_mutex_lock(&p->mu);
  if (status == MIM_OK) {
    p->sent_ok++;
  } else {
    p->sent_failed++;
    fprintf(stderr, "sender %d: send %s failed: %s: %s\n", p->index, id, mim_status_name(status),
            detail);
  }
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Waits until *field (under p->mu) reaches target or the deadline passes; returns it. */
static void tick(void);

static long wait_for(party *p, const long *field, long target, int64_t deadline) {
  pthread_mutex_lock(&p->mu);
  long v = *field;
  while (v < target && cmn_mono_ms() < deadline) {
    struct timespec ts = cmn_deadline_after_ms(100);
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    v = *field;
    pthread_mutex_unlock(&p->mu);
    tick();
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return v;
}

static mim_client *new_client(const char *endpoint, const char *key) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = o.control_host = o.token_host = endpoint;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = (int64_t)CALL_DEADLINE_MS * test_time_scale();
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  return c;
}

static uint32_t history_cap;

/* Joins with the same client until it works (bounded): under chaos a join may fail
 * like any call; the client itself is never replaced. Returns the failed attempts. */
static int join(party *p, int64_t deadline) {
  mim_join_options o;
  mim_join_options_init(&o);
  char name[16];
  snprintf(name, sizeof name, "p%d", p->index);
  o.display_name = name;
  o.history_cap = history_cap;
  o.on_event = on_event;
  o.on_send_result = on_send_result;
  o.outbox_limit = MAX_MSGS + 16;
  o.send_timeout_ms = (uint32_t)(SEND_TIMEOUT_MS * test_time_scale());
  o.flush_timeout_ms = (uint32_t)(5000 * test_time_scale());
  int failures = 0;
  for (int i = 0; i < JOIN_TRIES && cmn_mono_ms() < deadline; i++) {
    mim_status st = mim_join(p->client, CACHE, CHAT, &o, on_message, p, &p->session);
    if (st == MIM_OK)
      return failures;
    failures++;
    fprintf(stderr, "party %d: join failed (%s: %s); trying again\n", p->index, mim_status_name(st),
            mim_last_error_detail());
  }
  fail_msg("party %d could not join", p->index);
  return failures;
}

/* ---- senders ---- */

/* Every sender stops at the gate before its middle message until the late receivers
 * have joined: with nothing in flight meanwhile, "everything sent after the join began
 * is shown" is an exact check. (mim_send only queues: with senders running, thousands of
 * queued messages could be pushed between the snapshot and the join's subscription, and
 * those beyond history_cap rightly missed.) */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* made in main, on CLOCK_MONOTONIC */
  bool closed;
  int waiting; /* senders at the gate */
} send_gate = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void send_gate_set(bool closed) {
  pthread_mutex_lock(&send_gate.mu);
  send_gate.closed = closed;
  pthread_cond_broadcast(&send_gate.cv);
  pthread_mutex_unlock(&send_gate.mu);
}

/* Bounded: a failed test that never reopens the gate must not hang the senders. */
static void send_gate_pass(void) {
  int64_t until = cmn_mono_ms() + 120000L * test_time_scale();
  pthread_mutex_lock(&send_gate.mu);
  send_gate.waiting++;
  pthread_cond_broadcast(&send_gate.cv);
  while (send_gate.closed && cmn_mono_ms() < until) {
    struct timespec ts = cmn_deadline_after_ms(100);
    pthread_cond_timedwait(&send_gate.cv, &send_gate.mu, &ts);
  }
  send_gate.waiting--;
  pthread_mutex_unlock(&send_gate.mu);
}

/* true when n senders are at the gate before the deadline. */
static bool send_gate_wait_for(int n, int64_t deadline) {
  pthread_mutex_lock(&send_gate.mu);
  while (send_gate.waiting < n && cmn_mono_ms() < deadline) {
    struct timespec ts = cmn_deadline_after_ms(100);
    pthread_cond_timedwait(&send_gate.cv, &send_gate.mu, &ts);
  }
  bool all = send_gate.waiting >= n;
  pthread_mutex_unlock(&send_gate.mu);
  return all;
}

/* Waits (bounded) until every sender has nmsgs confirmed, then adds up the outcomes. */
static void sum_send_results(party *senders, int nsenders, int nmsgs, int64_t deadline, long *ok,
                             long *failed, long *errors) {
  for (int k = 0; k < nsenders; k++) {
    party *p = &senders[k];
    wait_for(p, &p->sent_ok, nmsgs, deadline);
    pthread_mutex_lock(&p->mu);
    *ok += p->sent_ok;
    *failed += p->sent_failed;
    *errors += p->send_errors;
    pthread_mutex_unlock(&p->mu);
  }
}

static void *sender_main(void *arg) {
  party *p = arg;
  for (int q = 0; q < p->nmsgs; q++) {
    if (q == p->nmsgs / 2)
      send_gate_pass();
    char text[32];
    snprintf(text, sizeof text, "s%d-%d", p->index, q);
    atomic_fetch_add(&p->started, 1);
    mim_status st = mim_send(p->session, text, NULL);
    if (st != MIM_OK) {
      pthread_mutex_lock(&p->mu);
      p->send_errors++;
      pthread_mutex_unlock(&p->mu);
      fprintf(stderr, "sender %d: mim_send(%s): %s: %s\n", p->index, text, mim_status_name(st),
              mim_last_error_detail());
    }
  }
  return NULL;
}

static long total_started(party *senders, int n) {
  long t = 0;
  for (int k = 0; k < n; k++)
    t += atomic_load(&senders[k].started);
  return t;
}

static long total_sent(party *senders, int n) {
  long t = 0;
  for (int k = 0; k < n; k++) {
    pthread_mutex_lock(&senders[k].mu);
    t += senders[k].sent_ok;
    pthread_mutex_unlock(&senders[k].mu);
  }
  return t;
}

/* A progress line on stderr at most once a second (env MIM_CHAOS_VERBOSE=1), to see
 * where the time goes. */
static void progress(party *senders, int ns, party *receivers, int nr, chaos_proxy *proxy,
                     int64_t t0) {
  static int64_t last;
  if (!getenv("MIM_CHAOS_VERBOSE") || cmn_mono_ms() - last < 1000)
    return;
  last = cmn_mono_ms();
  long ok = 0, minr = -1;
  for (int k = 0; k < ns; k++) {
    pthread_mutex_lock(&senders[k].mu);
    ok += senders[k].sent_ok;
    pthread_mutex_unlock(&senders[k].mu);
  }
  for (int i = 0; i < nr; i++) {
    pthread_mutex_lock(&receivers[i].mu);
    if (minr < 0 || receivers[i].distinct < minr)
      minr = receivers[i].distinct;
    pthread_mutex_unlock(&receivers[i].mu);
  }
  chaos_proxy_stats ps = {0};
  if (proxy)
    chaos_proxy_get_stats(proxy, &ps);
  fprintf(stderr, "%6.1fs: started=%ld sent_ok=%ld min_received=%ld accepted=%llu open=%llu\n",
          (double)(cmn_mono_ms() - t0) / 1000.0, total_started(senders, ns), ok, minr,
          (unsigned long long)ps.accepted, (unsigned long long)ps.open);
}

/* ---- the scene: server, proxy and parties of one test; torn down on every path ---- */

typedef struct scene {
  mim_local *srv;
  chaos_proxy *proxy;
  char data_dir[64]; /* --data-dir, "" = none */
  party *senders, *receivers;
  int nsenders, nreceivers;
} scene;

static scene sc;
static int64_t scene_t0;

static void tick(void) {
  if (sc.senders && sc.receivers)
    progress(sc.senders, sc.nsenders, sc.receivers, sc.nreceivers, sc.proxy, scene_t0);
}

static void leave_all(party *ps, int n) {
  for (int i = 0; i < n; i++) {
    mim_leave(ps[i].session);
    ps[i].session = NULL;
  }
  for (int i = 0; i < n; i++) {
    mim_client_free(ps[i].client);
    ps[i].client = NULL;
  }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  (void)state;
  /* Chaos off first so leaving (which flushes) is quick. */
  if (sc.proxy)
    chaos_proxy_pause(sc.proxy);
  if (sc.senders) {
    leave_all(sc.senders, sc.nsenders);
    for (int i = 0; i < sc.nsenders; i++)
      party_destroy(&sc.senders[i]);
    free(sc.senders);
  }
  if (sc.receivers) {
    leave_all(sc.receivers, sc.nreceivers);
    for (int i = 0; i < sc.nreceivers; i++)
      party_destroy(&sc.receivers[i]);
    free(sc.receivers);
  }
  chaos_proxy_stop(sc.proxy);
  int rc = 0;
  if (sc.srv)
    rc = mim_local_stop(sc.srv) == 0 ? 0 : -1;
  if (sc.data_dir[0])
    nftw(sc.data_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  memset(&sc, 0, sizeof sc);
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  return rc;
}

static void start_server(int port, int no_auth) {
  const char *caches[] = {CACHE, NULL};
  char portbuf[16];
  snprintf(portbuf, sizeof portbuf, "%d", port);
  const char *extra[8];
  int n = 0;
  if (port) {
    extra[n++] = "--port";
    extra[n++] = portbuf;
  }
  if (sc.data_dir[0]) {
    extra[n++] = "--data-dir";
    extra[n++] = sc.data_dir;
  }
  extra[n] = NULL;
  mim_local_opts o = {
      .caches = caches, .heartbeat_ms = 500, .no_auth = no_auth, .extra_args = extra};
  assert_int_equal(mim_local_start(&o, &sc.srv), 0);
}

static party *new_parties(int n, int first_index) {
  party *ps = calloc((size_t)n, sizeof *ps);
  assert_non_null(ps);
  for (int i = 0; i < n; i++)
    party_init(&ps[i], first_index + i);
  return ps;
}

/* Env override for local experiments (e.g. a short run under valgrind). */
static int env_int(const char *name, int dflt, int max) {
  const char *v = getenv(name);
  int n = v ? atoi(v) : 0;
  return n > 0 && n <= max ? n : dflt;
}

/* ---- checks ---- */

/* Every message of every sender shown once, in order, from message from[k] on. */
static void check_party(party *p, const int *from, int nsenders, int nmsgs, const char *what) {
  pthread_mutex_lock(&p->mu);
  long expect = 0;
  for (int k = 0; k < nsenders; k++) {
    for (int q = from[k]; q < nmsgs; q++) {
      if (p->shown[k][q] != 1)
        fail_msg("%s %d: message s%d-%d shown %d times", what, p->index, k, q, p->shown[k][q]);
    }
    expect += nmsgs - from[k];
  }
  if (p->dup_shown || p->order_bad || p->bad_text || p->closed)
    fail_msg("%s %d: %ld duplicates shown, %ld out of order, %ld unparsable, %d closed", what,
             p->index, p->dup_shown, p->order_bad, p->bad_text, p->closed);
  assert_true(p->distinct >= expect);
  pthread_mutex_unlock(&p->mu);
}

/* The list (read directly, no proxy) holds the last messages pushed, `cap` of them when
 * more were pushed, else all (unless !complete): for each sender a run of consecutive messages
 * ending with its last one, in order. Repeats of a message (a retried push) are counted
 * and skipped; returns them. */
static int check_list(mim_client *c, uint32_t cap, int nsenders, int nmsgs, bool complete) {
  mim_list_values *vals = NULL;
  assert_int_equal(mim_list_fetch(c, CACHE, CHAT, NULL, &vals), MIM_OK);
  assert_true(vals->found);
  int top[MAX_SENDERS], repeats = 0;
  for (int k = 0; k < MAX_SENDERS; k++)
    top[k] = -1;
  for (size_t i = 0; i < vals->count; i++) {
    const char *t = strstr((const char *)vals->values[i].data, "\"text\":\"");
    int k = -1, q = -1;
    assert_non_null(t);
    assert_int_equal(sscanf(t + 8, "s%d-%d", &k, &q), 2);
    assert_true(k >= 0 && k < nsenders && q >= 0 && q < nmsgs);
    if (top[k] >= 0 && q <= top[k]) {
      repeats++;
      continue;
    }
    if (top[k] >= 0 && q != top[k] + 1)
      fail_msg("list: s%d-%d follows s%d-%d", k, q, k, top[k]);
    top[k] = q;
  }
  for (int k = 0; k < nsenders; k++)
    if (top[k] >= 0 && top[k] != nmsgs - 1)
      fail_msg("list: sender %d ends at %d, not its last message", k, top[k]);
  size_t total = (size_t)nsenders * (size_t)nmsgs;
  if (!complete)
    ; /* a server that lost its data: only the shape above is known */
  else if (total > cap)
    assert_int_equal(vals->count, cap);
  else
    assert_int_equal(vals->count - (size_t)repeats, total);
  mim_list_values_free(vals);
  return repeats;
}

/* Slower runs get proportionally longer-lived connections and stalls: a connection must
 * live long enough to do some work between cuts. */
static void scale_chaos(chaos_proxy_opts *po) {
  int k = test_time_scale();
  po->cut_min_ms *= k;
  po->cut_max_ms *= k;
  po->stall_min_ms *= k;
  po->stall_max_ms *= k;
  po->stall_gap_min_ms *= k;
  po->stall_gap_max_ms *= k;
}

/* ---- test 1: cuts and stalls ---- */

static void test_chaos_proxy(void **state) {
  (void)state;
  const int nsenders = MAX_SENDERS, nmsgs = env_int("MIM_CHAOS_MSGS", MAX_MSGS, MAX_MSGS);
  const int nearly = 5, nlate = 2;
  history_cap = 200;
  reset_log_counts();
  mim_set_log_callback(count_log, MIM_LOG_DEBUG, NULL);
  int64_t t0 = cmn_mono_ms(), deadline = t0 + 150000 * (int64_t)test_time_scale();
  scene_t0 = t0;

  start_server(0, 0);
  chaos_proxy_opts po;
  chaos_proxy_opts_init(&po);
  scale_chaos(&po);
  po.seed = 8;
  po.start_paused = 1; /* everyone joins first; chaos from the first message on */
  po.listeners = nsenders + nearly + nlate; /* a connection per client (see the proxy) */
  sc.proxy = chaos_proxy_start(sc.srv->port, &po);
  assert_non_null(sc.proxy);
  char via[MAX_SENDERS + MAX_RECEIVERS][64];
  for (int i = 0; i < po.listeners; i++)
    snprintf(via[i], sizeof via[i], "127.0.0.1:%d", chaos_proxy_port(sc.proxy, i));

  sc.nsenders = nsenders;
  sc.senders = new_parties(nsenders, 0);
  sc.nreceivers = nearly + nlate;
  sc.receivers = new_parties(nearly + nlate, 100);
  int join_failures = 0;
  for (int i = 0; i < nearly + nlate; i++)
    sc.receivers[i].client = new_client(via[nsenders + i], sc.srv->root_key);
  for (int i = 0; i < nearly; i++)
    join_failures += join(&sc.receivers[i], deadline);
  for (int k = 0; k < nsenders; k++) {
    sc.senders[k].client = new_client(via[k], sc.srv->root_key);
    sc.senders[k].nmsgs = nmsgs;
    join_failures += join(&sc.senders[k], deadline);
  }

  chaos_proxy_resume(sc.proxy);
  send_gate_set(true);
  pthread_t th[MAX_SENDERS];
  for (int k = 0; k < nsenders; k++)
    assert_int_equal(pthread_create(&th[k], NULL, sender_main, &sc.senders[k]), 0);

  /* Half way (every sender at its gate, everything before it confirmed): two more
   * receivers join, the chaos paused meanwhile, then the senders go on. */
  assert_true(send_gate_wait_for(nsenders, deadline));
  for (int k = 0; k < nsenders; k++) {
    party *sp = &sc.senders[k];
    assert_int_equal(wait_for(sp, &sp->sent_ok, nmsgs / 2, deadline), nmsgs / 2);
  }
  for (int i = nearly; i < nearly + nlate; i++) {
    party *p = &sc.receivers[i];
    for (int k = 0; k < nsenders; k++) {
      pthread_mutex_lock(&sc.senders[k].mu);
      p->sent_before_join[k] = (int)sc.senders[k].sent_ok;
      pthread_mutex_unlock(&sc.senders[k].mu);
    }
    chaos_proxy_pause(sc.proxy);
    join_failures += join(p, deadline);
    chaos_proxy_resume(sc.proxy);
  }
  send_gate_set(false);
  for (int k = 0; k < nsenders; k++)
    pthread_join(th[k], NULL);
  int64_t t_sent = cmn_mono_ms();

  /* Every send finally succeeds (outbox retries), then every receiver has everything. */
  long sent_ok = 0, sent_failed = 0, send_errors = 0;
  sum_send_results(sc.senders, nsenders, nmsgs, deadline, &sent_ok, &sent_failed, &send_errors);
  long total = (long)nsenders * nmsgs;
  for (int i = 0; i < nearly; i++)
    wait_for(&sc.receivers[i], &sc.receivers[i].distinct, total, deadline);
  for (int k = 0; k < nsenders; k++)
    wait_for(&sc.senders[k], &sc.senders[k].distinct, total, deadline);
  /* A late joiner has at most `total` too; wait until its senders' last messages came. */
  for (int i = nearly; i < nearly + nlate; i++) {
    party *p = &sc.receivers[i];
    pthread_mutex_lock(&p->mu);
    for (int k = 0; k < nsenders; k++) {
      while (!p->shown[k][nmsgs - 1] && cmn_mono_ms() < deadline) {
        struct timespec ts = cmn_deadline_after_ms(100);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
      }
    }
    pthread_mutex_unlock(&p->mu);
  }
  int64_t t_done = cmn_mono_ms();
  chaos_proxy_pause(sc.proxy);
  chaos_proxy_stats ps;
  chaos_proxy_get_stats(sc.proxy, &ps);

  /* The history, read directly from the server. */
  mim_client *direct = new_client(sc.srv->endpoint, sc.srv->root_key);
  int list_repeats = check_list(direct, history_cap, nsenders, nmsgs, true);
  mim_client_free(direct);

  char per[256] = "";
  size_t used = 0;
  long lost = 0;
  for (int i = 0; i < nearly + nlate; i++) {
    party *p = &sc.receivers[i];
    pthread_mutex_lock(&p->mu);
    long expect = total;
    if (i >= nearly) {
      expect = 0;
      for (int k = 0; k < nsenders; k++)
        expect += nmsgs - (p->first[k] < 0 ? nmsgs : p->first[k]);
    }
    lost += expect - p->distinct;
    used += (size_t)snprintf(per + used, sizeof per - used, "%s%ld%s", i ? "," : "", p->distinct,
                             i >= nearly ? "(late)" : "");
    pthread_mutex_unlock(&p->mu);
  }
  printf("chaos: sent=%ld send_ok=%ld send_failed=%ld send_errors=%ld send_retries=%ld "
         "received=[%s] dups_dropped_live=%ld history_overlap_dropped=%ld lost=%ld list_repeats=%d "
         "join_retries=%d "
         "streams_lost=%ld discontinuities=%ld proxy: accepted=%llu cuts=%llu stalls=%llu "
         "bytes_up=%llu bytes_down=%llu wall=%.1fs (sending %.1fs)\n",
         total, sent_ok, sent_failed, send_errors, atomic_load(&logc.send_retries), per,
         atomic_load(&logc.dups_live), atomic_load(&logc.dups_history), lost, list_repeats,
         join_failures, atomic_load(&logc.streams_lost), atomic_load(&logc.discontinuity),
         (unsigned long long)ps.accepted, (unsigned long long)ps.cut,
         (unsigned long long)ps.stalled, (unsigned long long)ps.bytes_up,
         (unsigned long long)ps.bytes_down, (double)(t_done - t0) / 1000.0,
         (double)(t_sent - t0) / 1000.0);
  fflush(stdout);

  assert_int_equal(send_errors, 0);
  assert_int_equal(sent_failed, 0);
  assert_int_equal(sent_ok, total);
  assert_true(ps.cut > 0 && ps.stalled > 0);
  int from_start[MAX_SENDERS] = {0};
  for (int i = 0; i < nearly; i++)
    check_party(&sc.receivers[i], from_start, nsenders, nmsgs, "receiver");
  for (int k = 0; k < nsenders; k++)
    check_party(&sc.senders[k], from_start, nsenders, nmsgs, "sender");
  for (int i = nearly; i < nearly + nlate; i++) {
    party *p = &sc.receivers[i];
    int from[MAX_SENDERS];
    for (int k = 0; k < nsenders; k++) {
      /* Everything not yet sent when the join began must be there (and the run before). */
      from[k] = p->first[k] < 0 ? nmsgs : p->first[k];
      if (from[k] > p->sent_before_join[k])
        fail_msg("late receiver %d: sender %d starts at %d, but %d was sent after the join",
                 p->index, k, from[k], p->sent_before_join[k]);
    }
    check_party(p, from, nsenders, nmsgs, "late receiver");
  }
  assert_int_equal(lost, 0);
}

/* ---- test 2: mim-local killed and restarted on the same port ---- */

/* Senders and receivers talk to the server directly; when about 3/8 of the messages are
 * sent it is killed (SIGKILL) and started again on its port, with the same --data-dir if
 * persist. The clients are never replaced. Any token works (--no-auth): a restarted
 * server without persistence has a new signing secret. */
static void run_restart(bool persist) {
  const int nsenders = 2, nmsgs = env_int("MIM_CHAOS_RESTART_MSGS", 400, MAX_MSGS), nrecv = 3;
  history_cap = 1000; /* the list can hold every message: with persistence, all must be there */
  reset_log_counts();
  mim_set_log_callback(count_log, MIM_LOG_DEBUG, NULL);
  int64_t t0 = cmn_mono_ms(), deadline = t0 + 90000 * (int64_t)test_time_scale();
  scene_t0 = t0;
  if (persist) {
    snprintf(sc.data_dir, sizeof sc.data_dir, "/tmp/mim-chaos-XXXXXX");
    assert_non_null(mkdtemp(sc.data_dir));
  }
  start_server(0, 1);
  const int port = sc.srv->port;
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "%s", sc.srv->endpoint);

  sc.nsenders = nsenders;
  sc.senders = new_parties(nsenders, 0);
  sc.nreceivers = nrecv;
  sc.receivers = new_parties(nrecv, 100);
  for (int i = 0; i < nrecv; i++) {
    sc.receivers[i].client = new_client(endpoint, sc.srv->root_key);
    join(&sc.receivers[i], deadline);
  }
  for (int k = 0; k < nsenders; k++) {
    sc.senders[k].client = new_client(endpoint, sc.srv->root_key);
    sc.senders[k].nmsgs = nmsgs;
    join(&sc.senders[k], deadline);
  }
  pthread_t th[MAX_SENDERS];
  for (int k = 0; k < nsenders; k++)
    assert_int_equal(pthread_create(&th[k], NULL, sender_main, &sc.senders[k]), 0);
  long total = (long)nsenders * nmsgs;
  while (total_sent(sc.senders, nsenders) < total * 3 / 8 && cmn_mono_ms() < deadline) {
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL); /* polls the senders' progress counters */
  }
  long sent_at_kill = total_sent(sc.senders, nsenders);
  int64_t t_kill = cmn_mono_ms();
  assert_int_equal(mim_local_kill(sc.srv), 137);
  sc.srv = NULL;
  start_server(port, 1);
  assert_int_equal(sc.srv->port, port);
  int64_t t_up = cmn_mono_ms();
  for (int k = 0; k < nsenders; k++)
    pthread_join(th[k], NULL);

  long sent_ok = 0, sent_failed = 0, send_errors = 0;
  sum_send_results(sc.senders, nsenders, nmsgs, deadline, &sent_ok, &sent_failed, &send_errors);
  /* Each sender's last message comes live after the restart, after the gap-fill (if any)
   * and its report: once every party shows them, it has shown all it ever will. */
  party *all[MAX_SENDERS + MAX_RECEIVERS];
  int nall = 0;
  for (int i = 0; i < nrecv; i++)
    all[nall++] = &sc.receivers[i];
  for (int k = 0; k < nsenders; k++)
    all[nall++] = &sc.senders[k];
  for (int a = 0; a < nall; a++) {
    party *p = all[a];
    pthread_mutex_lock(&p->mu);
    for (int k = 0; k < nsenders; k++)
      while (!p->shown[k][nmsgs - 1] && cmn_mono_ms() < deadline) {
        struct timespec ts = cmn_deadline_after_ms(100);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
      }
    pthread_mutex_unlock(&p->mu);
  }
  int64_t t_done = cmn_mono_ms();

  mim_client *direct = new_client(endpoint, sc.srv->root_key);
  int list_repeats = check_list(direct, history_cap, nsenders, nmsgs, persist);
  mim_list_values *vals = NULL;
  assert_int_equal(mim_list_fetch(direct, CACHE, CHAT, NULL, &vals), MIM_OK);
  size_t list_len = vals->count;
  mim_list_values_free(vals);
  mim_client_free(direct);

  char per[512] = "";
  size_t used = 0;
  long lost_all = 0, reordered = 0;
  int reports_all = 0;
  for (int a = 0; a < nall; a++) {
    party *p = all[a];
    pthread_mutex_lock(&p->mu);
    long lost = total - p->distinct;
    lost_all += lost;
    reordered += p->order_bad;
    reports_all += p->lost_reports;
    used += (size_t)snprintf(per + used, sizeof per - used, "%s%s%d:shown=%ld,lost=%ld,reported=%d",
                             a ? " " : "", a < nrecv ? "r" : "s", p->index, p->distinct, lost,
                             p->lost_reports);
    pthread_mutex_unlock(&p->mu);
  }
  printf("chaos-restart(%s): sent=%ld send_ok=%ld send_failed=%ld send_errors=%ld "
         "send_retries=%ld sent_before_kill=%ld [%s] lost=%ld loss_reports=%d reordered=%ld "
         "dups_dropped_live=%ld discontinuities=%ld streams_lost=%ld list_len=%zu "
         "list_repeats=%d restart=%lldms wall=%.1fs\n",
         persist ? "data-dir" : "no data-dir", total, sent_ok, sent_failed, send_errors,
         atomic_load(&logc.send_retries), sent_at_kill, per, lost_all, reports_all, reordered,
         atomic_load(&logc.dups_live), atomic_load(&logc.discontinuity),
         atomic_load(&logc.streams_lost), list_len, list_repeats, (long long)(t_up - t_kill),
         (double)(t_done - t0) / 1000.0);
  fflush(stdout);

  assert_int_equal(send_errors, 0);
  assert_int_equal(sent_failed, 0);
  assert_int_equal(sent_ok, total);
  for (int a = 0; a < nall; a++) {
    party *p = all[a];
    pthread_mutex_lock(&p->mu);
    /* Reconnected by itself, shows nothing twice nor out of order, and got every
     * sender's last message. */
    if (p->reconnecting < 1 || p->closed || p->dup_shown || p->bad_text)
      fail_msg("party %d: %d reconnects, %d closed, %ld duplicates shown, %ld unparsable", p->index,
               p->reconnecting, p->closed, p->dup_shown, p->bad_text);
    /* Order holds with persistence. Without, a message pushed to the old server and
     * published on the new one is not in the new list: the gap-fill can show its
     * sender's next message first (documented for mim_join). */
    if (persist && p->order_bad)
      fail_msg("party %d: %ld out of order", p->index, p->order_bad);
    for (int k = 0; k < nsenders; k++)
      if (p->shown[k][nmsgs - 1] != 1)
        fail_msg("party %d: last message of sender %d shown %d times", p->index, k,
                 p->shown[k][nmsgs - 1]);
    long lost = total - p->distinct;
    if (persist && (lost != 0 || p->lost_reports != 0))
      fail_msg("party %d: with --data-dir %ld lost, %d loss reports", p->index, lost,
               p->lost_reports);
    /* Without persistence the server forgot the chat: the app must be told, whether
     * or not this party happened to miss a message. */
    if (!persist && p->lost_reports < 1)
      fail_msg("party %d: the restart was not reported (%ld lost)", p->index, lost);
    pthread_mutex_unlock(&p->mu);
  }
  if (persist) {
    int from_start[MAX_SENDERS] = {0};
    for (int a = 0; a < nall; a++)
      check_party(all[a], from_start, nsenders, nmsgs, "party");
  }
}

static void test_restart_without_data_dir(void **state) {
  (void)state;
  run_restart(false);
}

static void test_restart_with_data_dir(void **state) {
  (void)state;
  run_restart(true);
}

/* ---- test 3: a receiver far behind when its connection comes back ---- */

/* Regression: after a plain reconnect the session used to fetch the list and show it
 * before the topic's replay of what was missed, so with more missed messages than the
 * history cap the newest ones came first. The receiver's connection is held while 30
 * messages are sent (cap 5), then cut: the resumed stream must bring all of them, in
 * order, with no loss report. */
static void test_reconnect_far_behind_keeps_order(void **state) {
  (void)state;
  const int nmsgs = 33;
  history_cap = 5;
  reset_log_counts();
  mim_set_log_callback(count_log, MIM_LOG_DEBUG, NULL);
  int64_t deadline = cmn_mono_ms() + 30000 * (int64_t)test_time_scale();
  start_server(0, 0);
  chaos_proxy_opts po;
  chaos_proxy_opts_init(&po);
  po.start_paused = 1;
  sc.proxy = chaos_proxy_start(sc.srv->port, &po);
  assert_non_null(sc.proxy);
  char via[64];
  snprintf(via, sizeof via, "127.0.0.1:%d", chaos_proxy_port(sc.proxy, 0));
  sc.nsenders = 1;
  sc.senders = new_parties(1, 0);
  sc.nreceivers = 1;
  sc.receivers = new_parties(1, 100);
  party *snd = &sc.senders[0], *rcv = &sc.receivers[0];
  rcv->client = new_client(via, sc.srv->root_key);
  join(rcv, deadline);
  snd->client = new_client(sc.srv->endpoint, sc.srv->root_key);
  join(snd, deadline);
  for (int q = 0; q < nmsgs; q++) {
    char text[32];
    snprintf(text, sizeof text, "s0-%d", q);
    if (q == 3) {
      assert_int_equal(wait_for(rcv, &rcv->distinct, 3, deadline), 3);
      chaos_proxy_hold(sc.proxy, 1);
    }
    assert_int_equal(mim_send(snd->session, text, NULL), MIM_OK);
    assert_int_equal(wait_for(snd, &snd->sent_ok, q + 1, deadline), q + 1);
  }
  chaos_proxy_cut_all(sc.proxy);
  chaos_proxy_hold(sc.proxy, 0);
  wait_for(rcv, &rcv->distinct, nmsgs, deadline);
  pthread_mutex_lock(&rcv->mu);
  printf("chaos-behind: shown=%ld of %d, out of order=%ld, reconnects=%d, loss reports=%d\n",
         rcv->distinct, nmsgs, rcv->order_bad, rcv->reconnecting, rcv->lost_reports);
  assert_true(rcv->reconnecting >= 1);
  assert_int_equal(rcv->lost_reports, 0);
  pthread_mutex_unlock(&rcv->mu);
  int from_start[MAX_SENDERS] = {0};
  check_party(rcv, from_start, 1, nmsgs, "receiver");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_chaos_proxy, teardown),
      cmocka_unit_test_teardown(test_restart_without_data_dir, teardown),
      cmocka_unit_test_teardown(test_restart_with_data_dir, teardown),
      cmocka_unit_test_teardown(test_reconnect_far_behind_keeps_order, teardown),
  };
  /* MIM_CHAOS_FILTER=test_restart* runs only the matching tests (experiments). */
  cmn_cond_init_monotonic(&send_gate.cv);
  if (getenv("MIM_CHAOS_FILTER"))
    cmocka_set_test_filter(getenv("MIM_CHAOS_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
