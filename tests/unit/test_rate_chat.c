/* The "done when": a chat under hosted Momento's rate limits. mim-local runs with
 * --rate-limits momento (100 cache operations/s, 1 MB/s, 100 topic operations/s per
 * namespace with every delivery counted, 100 subscriptions); 5 clients, each joined to
 * one chat, send 200 messages each concurrently. The server throttles their publishes
 * (operations_rate_limit_exceeded); the outboxes retry them with their >= 500 ms backoff,
 * and every message reaches every member exactly once, each sender's in order. At the
 * hosted rates 1000 messages take about 60 s, too long for every make check mode: make
 * check sends 40 each (20 under valgrind), `make check-rate-chat` (a phase of .ci/run)
 * the 200 (MIM_RATE_CHAT_MESSAGES); every check runs at each size. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "clock.h"
#include "envelope.h"
#include "mim_local.h"
#include "test_client.h"
#include "time_scale.h"
#include "waiter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "rate-chat"
#define CHAT "busy"
#define MEMBERS 5
#define MAX_PER_SENDER 200

static void on_log(mim_log_level level, const char *message, void *user) {
  (void)level;
  (void)user;
  if (getenv("MIM_TEST_LOG"))
    fprintf(stderr, "log: %s\n", message);
}

static mim_client_stats stats_of(mim_client *c) {
  mim_client_stats st = MIM_CLIENT_STATS_INIT;
  assert_int_equal(mim_client_stats_get(c, &st), MIM_OK);
  return st;
}

/* Messages per sender: MIM_RATE_CHAT_MESSAGES (1..MAX_PER_SENDER), else 40 (20 under
 * valgrind). */
static int messages_per_sender(void) {
  const char *v = getenv("MIM_RATE_CHAT_MESSAGES");
  int n = v ? atoi(v) : 0;
  if (n > 0 && n <= MAX_PER_SENDER)
    return n;
  return test_time_scale() > 3 ? 20 : 40;
}

typedef struct member {
  mim_client *client;
  mim_session *session;
  int index;
  int per_sender;
  pthread_t thread;
  /* received[s][k]: how often message k of sender s arrived; next[s]: the k expected */
  pthread_mutex_t mu;
  int received[MEMBERS][MAX_PER_SENDER];
  int next[MEMBERS];
  int out_of_order, foreign;
  waiter deliveries;
  waiter results;
  atomic_int send_failures;
  mim_limit_cause last_cause; /* of the last failed send */
} member;

static void on_message(mim_session *session, const mim_message *msg, void *user) {
  (void)session;
  member *m = user;
  int s = -1, k = -1;
  pthread_mutex_lock(&m->mu);
  if (sscanf(msg->text, "m%d-%d", &s, &k) != 2 || s < 0 || s >= MEMBERS || k < 0 ||
      k >= MAX_PER_SENDER) {
    m->foreign++;
  } else {
    m->received[s][k]++;
    m->out_of_order += k != m->next[s];
    m->next[s] = k + 1;
  }
  pthread_mutex_unlock(&m->mu);
  waiter_bump(&m->deliveries);
}

static void on_send_result(mim_session *session, const char *id, mim_status status,
                           const char *detail, void *user) {
  (void)session;
  (void)id;
  member *m = user;
  if (status != MIM_OK) {
    fprintf(stderr, "member %d: send failed: %s (%s)\n", m->index, mim_status_name(status), detail);
    m->last_cause = mim_limit_cause_of(detail);
    atomic_fetch_add(&m->send_failures, 1);
  }
  waiter_bump(&m->results);
}

static void *send_all(void *arg) {
  member *m = arg;
  for (int k = 0; k < m->per_sender; k++) {
    char text[32];
    snprintf(text, sizeof text, "m%d-%d", m->index, k);
    mim_status st = mim_send(m->session, text, NULL);
    if (st != MIM_OK) {
      fprintf(stderr, "member %d: mim_send %d: %s (%s)\n", m->index, k, mim_status_name(st),
              mim_last_error_detail());
      atomic_fetch_add(&m->send_failures, 1);
    }
  }
  return NULL;
}

static void join_member(member *m, const mim_local *srv, int index, int per_sender) {
  m->index = index;
  m->per_sender = per_sender;
  pthread_mutex_init(&m->mu, NULL);
  waiter_init(&m->deliveries);
  waiter_init(&m->results);
  m->client = test_client_from_key(srv->root_key);
  mim_join_options o;
  mim_join_options_init(&o);
  o.display_name = "member";
  o.send_timeout_ms = 600000; /* throttling only slows the queue down: never give up */
  o.on_send_result = on_send_result;
  assert_int_equal(mim_join(m->client, CACHE, CHAT, &o, on_message, m, &m->session), MIM_OK);
}

static void leave_member(member *m) {
  mim_leave(m->session);
  mim_client_free(m->client);
  waiter_destroy(&m->deliveries);
  waiter_destroy(&m->results);
  pthread_mutex_destroy(&m->mu);
}

static void check_member(member *m, int per_sender) {
  pthread_mutex_lock(&m->mu);
  for (int s = 0; s < MEMBERS; s++)
    for (int k = 0; k < per_sender; k++)
      if (m->received[s][k] != 1)
        fail_msg("member %d got message %d of sender %d %d times", m->index, k, s,
                 m->received[s][k]);
  assert_int_equal(m->out_of_order, 0);
  assert_int_equal(m->foreign, 0);
  pthread_mutex_unlock(&m->mu);
  assert_int_equal(atomic_load(&m->send_failures), 0);
}

/* The server is stopped by the teardown, also when a check failed. */
static int setup(void **state) {
  mim_set_log_callback(on_log, MIM_LOG_INFO, NULL);
  static const char *const caches[] = {CACHE, NULL};
  static const char *const args[] = {"--rate-limits", "momento", NULL};
  mim_local_opts lo = {.caches = caches, .extra_args = args};
  mim_local *srv = NULL;
  if (mim_local_start(&lo, &srv) != 0)
    return -1;
  *state = srv;
  return 0;
}

static int teardown(void **state) {
  mim_local_stop(*state);
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  return 0;
}

static void test_five_senders_at_hosted_rates(void **state) {
  int per_sender = messages_per_sender();
  int total = MEMBERS * per_sender;
  mim_local *srv = *state;
  static member members[MEMBERS];
  memset(members, 0, sizeof members);
  for (int i = 0; i < MEMBERS; i++)
    join_member(&members[i], srv, i, per_sender);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < MEMBERS; i++)
    assert_int_equal(pthread_create(&members[i].thread, NULL, send_all, &members[i]), 0);
  for (int i = 0; i < MEMBERS; i++)
    pthread_join(members[i].thread, NULL);
  /* 6 topic operations per message (publish + 5 deliveries) at 100/s: ~60 s for 1000. */
  int wait_ms = 300000 * test_time_scale();
  for (int i = 0; i < MEMBERS; i++) {
    assert_int_equal(waiter_wait(&members[i].results, per_sender, wait_ms), per_sender);
    assert_int_equal(waiter_wait(&members[i].deliveries, total, wait_ms), total);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
  uint64_t throttled = 0, retries = 0;
  for (int i = 0; i < MEMBERS; i++) {
    mim_client_stats st = stats_of(members[i].client);
    throttled += st.throttled;
    retries += st.retries;
  }
  fprintf(stderr, "rate chat: %d messages to %d members in %ld ms, %llu throttled, %llu retries\n",
          total, MEMBERS, ms, (unsigned long long)throttled, (unsigned long long)retries);
  for (int i = 0; i < MEMBERS; i++)
    check_member(&members[i], per_sender);
  /* The server did throttle, and every refusal was retried: without the retries some
   * sends would have failed above. */
  assert_true(throttled > 0);
  assert_true(retries >= throttled);
  for (int i = 0; i < MEMBERS; i++)
    leave_member(&members[i]);
}

/* ---- hosted Momento's hard limits end to end (mim-local's defaults) ---- */

static int start_with(void **state, const char *const *args) {
  mim_set_log_callback(on_log, MIM_LOG_INFO, NULL);
  static const char *const caches[] = {CACHE, NULL};
  mim_local_opts lo = {.caches = caches, .extra_args = args};
  mim_local *srv = NULL;
  if (mim_local_start(&lo, &srv) != 0)
    return -1;
  *state = srv;
  return 0;
}

static int setup_default(void **state) {
  return start_with(state, NULL);
}

/* A server whose topics take less than the client believes (1000 bytes). */
static int setup_small_payload(void **state) {
  static const char *const args[] = {"--max-topic-payload", "1000", NULL};
  return start_with(state, args);
}

static int setup_one_subscription(void **state) {
  static const char *const args[] = {"--topic-subscriptions", "1", NULL};
  return start_with(state, args);
}

static int teardown_server(void **state) {
  mim_local_stop(*state);
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  return 0;
}

/* Text whose envelope (display name "member") is exactly len bytes. */
static char *text_for_envelope(size_t len) {
  char *json = NULL;
  size_t base = 0;
  mim_envelope e = {.type = MIM_ENV_MSG,
                    .id = "00000000000000000000000000000000",
                    .from = "member",
                    .uid = "member", /* the user id defaults to the display name */
                    .text = "",
                    .ts = cmn_wall_ms()};
  assert_int_equal(mim_envelope_build_v2(&e, &json, &base), MIM_OK);
  free(json);
  char *text = malloc(len - base + 1);
  assert_non_null(text);
  memset(text, 'a', len - base);
  text[len - base] = '\0';
  return text;
}

/* 4096 bytes go through mim-local's default limits to the other member; 4097 are
 * refused by mim_send itself, with nothing queued and no on_send_result. */
static void test_payload_limit_end_to_end(void **state) {
  static member a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  join_member(&a, *state, 0, 0);
  join_member(&b, *state, 1, 0);
  char *fits = text_for_envelope(4096);
  char *over = text_for_envelope(4097);
  assert_int_equal(mim_send(a.session, over, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "4096"));
  assert_int_equal(mim_send(a.session, fits, NULL), MIM_OK);
  assert_int_equal(waiter_wait(&a.results, 1, 20000 * test_time_scale()), 1);
  assert_int_equal(waiter_wait(&b.deliveries, 1, 20000 * test_time_scale()), 1);
  assert_int_equal(waiter_count(&a.results), 1); /* none for the refused one */
  assert_int_equal(atomic_load(&a.send_failures), 0);
  assert_int_equal(b.foreign, 1); /* (not an "m<s>-<k>" text) */
  free(fits);
  free(over);
  leave_member(&a);
  leave_member(&b);
}

/* The server refuses for size (request_size_limit_exceeded): final, never retried, the
 * cause readable without string matching. */
static void test_size_refusal_not_retried(void **state) {
  static member a;
  memset(&a, 0, sizeof a);
  join_member(&a, *state, 0, 0);
  char *text = text_for_envelope(2000);
  uint64_t before = stats_of(a.client).retries;
  mim_status st = mim_send(a.session, text, NULL);
  mim_limit_cause cause = mim_last_error_cause();
  if (st == MIM_OK) { /* the first attempt took longer than mim_send waits */
    assert_int_equal(waiter_wait(&a.results, 1, 20000 * test_time_scale()), 1);
    assert_int_equal(atomic_load(&a.send_failures), 1);
    cause = a.last_cause;
  } else {
    assert_int_equal(st, MIM_ERR_RESOURCE_EXHAUSTED);
  }
  assert_int_equal(cause, MIM_LIMIT_REQUEST_SIZE);
  assert_int_equal(stats_of(a.client).retries, before);
  assert_int_equal(stats_of(a.client).limit_refusals, 1);
  free(text);
  leave_member(&a);
}

/* The namespace's subscription limit ends a join with its own status and cause. */
static void test_subscription_limit_ends_join(void **state) {
  static member a;
  memset(&a, 0, sizeof a);
  join_member(&a, *state, 0, 0);
  mim_client *c = test_client_from_key(((mim_local *)*state)->root_key);
  mim_session *s = NULL;
  assert_int_equal(mim_join(c, CACHE, CHAT, NULL, on_message, &a, &s), MIM_ERR_RESOURCE_EXHAUSTED);
  assert_null(s);
  assert_int_equal(mim_last_error_cause(), MIM_LIMIT_TOPIC_SUBSCRIPTIONS);
  mim_client_free(c);
  leave_member(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_payload_limit_end_to_end, setup_default,
                                      teardown_server),
      cmocka_unit_test_setup_teardown(test_size_refusal_not_retried, setup_small_payload,
                                      teardown_server),
      cmocka_unit_test_setup_teardown(test_subscription_limit_ends_join, setup_one_subscription,
                                      teardown_server),
      cmocka_unit_test_setup_teardown(test_five_senders_at_hosted_rates, setup, teardown)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
