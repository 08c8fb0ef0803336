/* Token vending over HTTP: examples/token-vendor against mim-local, and clients built from
 * a token URL (first fetch, permissions of the vended token, refresh, subscriptions that
 * outlive their tokens, unreachable vendors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_internal.h"
#include "mim_local.h"
#include "test_clock.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <momento/client.h>
#include <momento/im.h>
#include <momento/list.h>
#include <momento/token.h>
#include <momento/topics.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CACHE "instant-messaging"
#define WAIT_MS 20000
#define MESSAGES 100
#define PUBLISH_EVERY_MS 50
#define CUT_AT 60 /* the server cuts every stream after this many messages (~3 s) */

static mim_local *srv;

typedef struct vendor {
  pid_t pid;
  int port;
  char dir[64];
  char port_file[96];
} vendor;

/* ---- time ---- */

/* ---- the vendor process ---- */

static const char *vendor_binary(void) {
  static char path[512];
  const char *b = getenv("MIM_BUILD");
  snprintf(path, sizeof path, "%s/examples/token-vendor", b && *b ? b : "build");
  return path;
}

static int read_port(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int port = 0;
  if (fscanf(f, "%d", &port) != 1)
    port = 0;
  fclose(f);
  return port;
}

static void exec_vendor(const vendor *v, const char *valid_for, const char *key_file) {
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
  int null = open("/dev/null", O_RDONLY);
  if (null >= 0)
    dup2(null, 0);
  const char *argv[] = {vendor_binary(), "--port",      "0",          "--port-file", v->port_file,
                        "--endpoint",    srv->endpoint, "--key-file", key_file,      "--plaintext",
                        "--valid-for",   valid_for,     NULL};
  execv(argv[0], (char *const *)argv);
  fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

/* Starts token-vendor on a free port with the key in key_file (NULL = the server's root
 * key); waits (bounded) until its port file exists. */
static void vendor_start_with_key(vendor *v, int valid_for, const char *key_file) {
  memset(v, 0, sizeof *v);
  snprintf(v->dir, sizeof v->dir, "/tmp/mim-vendor-XXXXXX");
  assert_non_null(mkdtemp(v->dir));
  snprintf(v->port_file, sizeof v->port_file, "%s/port", v->dir);
  char vf[16];
  snprintf(vf, sizeof vf, "%d", valid_for);
  fflush(NULL);
  v->pid = fork();
  assert_true(v->pid >= 0);
  if (v->pid == 0)
    exec_vendor(v, vf, key_file ? key_file : srv->key_file);
  int64_t deadline = cmn_mono_ms() + 10000;
  while (!(v->port = read_port(v->port_file)) && cmn_mono_ms() < deadline) {
    int st;
    assert_int_equal(waitpid(v->pid, &st, WNOHANG), 0); /* it must not have exited */
    test_sleep_ms(20);
  }
  assert_true(v->port > 0);
}

static void vendor_start(vendor *v, int valid_for) {
  vendor_start_with_key(v, valid_for, NULL);
}

/* SIGTERM, bounded wait; the vendor must exit cleanly (0). */
static void vendor_stop(vendor *v) {
  kill(v->pid, SIGTERM);
  int st = 0;
  pid_t r = 0;
  for (int64_t deadline = cmn_mono_ms() + 10000; (r = waitpid(v->pid, &st, WNOHANG)) == 0;) {
    if (cmn_mono_ms() > deadline) {
      kill(v->pid, SIGKILL);
      waitpid(v->pid, &st, 0);
      fail_msg("token-vendor did not stop on SIGTERM");
    }
    test_sleep_ms(20);
  }
  unlink(v->port_file);
  rmdir(v->dir);
  assert_int_equal(r, v->pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

static void token_url(const vendor *v, const char *query, char *out, size_t cap) {
  snprintf(out, cap, "http://127.0.0.1:%d/token?%s", v->port, query);
}

/* ---- HTTP from the test (libcurl) ---- */

typedef struct reply {
  long code;
  char body[4096];
  size_t len;
} reply;

static size_t collect(char *p, size_t size, size_t n, void *user) {
  reply *r = user;
  size_t len = size * n;
  if (len > sizeof r->body - 1 - r->len)
    len = sizeof r->body - 1 - r->len;
  memcpy(r->body + r->len, p, len);
  r->len += len;
  r->body[r->len] = '\0';
  return size * n;
}

static void http_get(const vendor *v, const char *path, reply *r) {
  char url[512];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", v->port, path);
  memset(r, 0, sizeof *r);
  CURL *h = curl_easy_init();
  assert_non_null(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  assert_int_equal(curl_easy_perform(h), CURLE_OK);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
  curl_easy_cleanup(h);
}

/* ---- clients ---- */

static mim_client *root_client(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.cache_host = o.control_host = o.token_host = srv->endpoint;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  return c;
}

static mim_status url_client(const char *url, int64_t margin_ms, mim_client **out) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.token_url = url;
  o.token_refresh_margin_ms = margin_ms;
  return mim_client_create(&o, out);
}

static int group_setup(void **state) {
  (void)state;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches};
  return mim_local_start(&o, &srv) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  int rc = srv ? mim_local_stop(srv) : 0;
  curl_global_cleanup();
  return rc == 0 ? 0 : -1;
}

/* ---- the vendor over HTTP ---- */

static void expect_400(const vendor *v, const char *path, const char *what) {
  reply r;
  http_get(v, path, &r);
  assert_int_equal(r.code, 400);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  const char *err = json_string_value(json_object_get(j, "error"));
  assert_non_null(err);
  assert_non_null(strstr(err, what));
  json_decref(j);
}

static void test_vendor_answers(void **state) {
  (void)state;
  vendor v;
  vendor_start(&v, 600);
  reply r;
  http_get(&v, "/token?chat=room.1&user=al-ice_2&mode=moderated", &r);
  assert_int_equal(r.code, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  assert_true(strlen(json_string_value(json_object_get(j, "token"))) > 20);
  json_int_t exp = json_integer_value(json_object_get(j, "expires_at"));
  json_int_t now = (json_int_t)time(NULL);
  assert_true(exp >= now + 590 && exp <= now + 610);
  assert_string_equal(json_string_value(json_object_get(j, "chat")), "room.1");
  assert_string_equal(json_string_value(json_object_get(j, "user")), "al-ice_2");
  assert_string_equal(json_string_value(json_object_get(j, "mode")), "moderated");
  json_decref(j);

  char long_id[80];
  memset(long_id, 'a', 65);
  long_id[65] = '\0';
  char path[200];
  expect_400(&v, "/token?chat=room%201&user=alice&mode=client", "chat");
  expect_400(&v, "/token?chat=&user=alice&mode=client", "chat");
  expect_400(&v, "/token?user=alice&mode=client", "chat");
  snprintf(path, sizeof path, "/token?chat=%s&user=alice&mode=client", long_id);
  expect_400(&v, path, "chat");
  long_id[64] = '\0'; /* 64 characters is the longest allowed */
  snprintf(path, sizeof path, "/token?chat=%s&user=alice&mode=client", long_id);
  http_get(&v, path, &r);
  assert_int_equal(r.code, 200);
  expect_400(&v, "/token?chat=room1&user=a/b&mode=client", "user");
  expect_400(&v, "/token?chat=room1&mode=client", "user");
  expect_400(&v, "/token?chat=room1&user=alice&mode=admin", "mode");
  expect_400(&v, "/token?chat=room1&user=alice", "mode");
  http_get(&v, "/nope", &r);
  assert_int_equal(r.code, 404);
  http_get(&v, "/token/extra?chat=room1&user=alice&mode=client", &r);
  assert_int_equal(r.code, 404);
  vendor_stop(&v);
}

/* A vendor whose own key may not mint (a disposable token never may) answers 502 with
 * the status name, not the key. */
static void test_vendor_mint_failure(void **state) {
  (void)state;
  mim_client *root = root_client();
  mim_disposable_token *weak = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, "room1", 600, "weak", &weak),
                   MIM_OK);
  mim_client_free(root);
  char key_file[] = "/tmp/mim-weak-key-XXXXXX";
  int fd = mkstemp(key_file);
  assert_true(fd >= 0);
  size_t len = strlen(weak->credential);
  assert_int_equal(write(fd, weak->credential, len), (ssize_t)len);
  close(fd);
  vendor v;
  vendor_start_with_key(&v, 600, key_file);
  reply r;
  /* Not even its own grants (room1), let alone another chat. */
  http_get(&v, "/token?chat=room1&user=alice&mode=client", &r);
  assert_int_equal(r.code, 502);
  http_get(&v, "/token?chat=room2&user=alice&mode=client", &r);
  assert_int_equal(r.code, 502);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "MIM_ERR_PERMISSION_DENIED");
  json_decref(j);
  assert_null(strstr(r.body, weak->api_key));
  vendor_stop(&v);
  unlink(key_file);
  mim_disposable_token_free(weak);
}

/* ---- a client from a token URL ---- */

static void test_client_from_token_url(void **state) {
  (void)state;
  vendor v;
  vendor_start(&v, 600);
  char url[256];
  token_url(&v, "chat=room1&user=alice&mode=client", url, sizeof url);
  mim_client *c = NULL;
  assert_int_equal(url_client(url, 0, &c), MIM_OK);
  assert_int_equal(mim_client_token_fetches(c), 1);
  assert_int_equal(mim_list_push_back(c, CACHE, "room1", "hello", 5, NULL, NULL), MIM_OK);
  mim_list_values *vals = NULL;
  assert_int_equal(mim_list_fetch(c, CACHE, "room1", NULL, &vals), MIM_OK);
  assert_int_equal(vals->count, 1);
  assert_string_equal((const char *)vals->values[0].data, "hello");
  mim_list_values_free(vals);
  /* The token is scoped to its chat. */
  assert_int_equal(mim_list_push_back(c, CACHE, "room2", "x", 1, NULL, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_list_fetch(c, CACHE, "room2", NULL, &vals), MIM_ERR_PERMISSION_DENIED);
  mim_client_free(c);

  /* A key and a token URL together are ambiguous. */
  mim_client_options o;
  mim_client_options_init(&o);
  o.token_url = url;
  o.api_key = srv->root_key;
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  vendor_stop(&v);
}

/* A port nobody listens on: bound, then closed. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_unreachable_or_refusing_url(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/token?chat=a&user=b&mode=client", closed_port());
  mim_client *c = NULL;
  assert_int_equal(url_client(url, 0, &c), MIM_ERR_UNAVAILABLE);
  assert_null(c);
  const char *d = mim_last_error_detail();
  assert_non_null(strstr(d, "token URL"));
  assert_non_null(strstr(d, "onnect")); /* curl's "Couldn't connect to server" */

  vendor v;
  vendor_start(&v, 600);
  token_url(&v, "chat=bad%20chat&user=b&mode=client", url, sizeof url);
  assert_int_equal(url_client(url, 0, &c), MIM_ERR_UNAVAILABLE);
  assert_null(c);
  d = mim_last_error_detail();
  assert_non_null(strstr(d, "HTTP 400"));
  assert_non_null(strstr(d, "chat must be"));
  snprintf(url, sizeof url, "http://127.0.0.1:%d/elsewhere", v.port);
  assert_int_equal(url_client(url, 0, &c), MIM_ERR_UNAVAILABLE);
  assert_non_null(strstr(mim_last_error_detail(), "HTTP 404"));
  /* https to a plaintext server: the TLS handshake fails, nothing falls back. */
  snprintf(url, sizeof url, "https://127.0.0.1:%d/token?chat=a&user=b&mode=client", v.port);
  assert_int_equal(url_client(url, 0, &c), MIM_ERR_UNAVAILABLE);
  fprintf(stderr, "https to plaintext: %s\n", mim_last_error_detail());
  assert_non_null(strstr(mim_last_error_detail(), "SSL"));
  /* Only http and https. */
  assert_int_equal(url_client("file:///etc/hostname", 0, &c), MIM_ERR_UNAVAILABLE);
  assert_null(c);
  vendor_stop(&v);
}

/* A vendor that accepts the connection and never answers: creation gives up after the
 * 10 s total timeout instead of hanging. */
static void test_silent_url_times_out(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0); /* the kernel completes the handshake; no accept */
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/token", ntohs(a.sin_port));
  mim_client *c = NULL;
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(url_client(url, 0, &c), MIM_ERR_UNAVAILABLE);
  int64_t took = cmn_mono_ms() - t0;
  close(fd);
  assert_null(c);
  assert_non_null(strstr(mim_last_error_detail(), "Timeout"));
  assert_true(took >= 9000 && took < 15000);
}

/* ---- a subscription outliving its tokens ---- */

typedef struct rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
  int got[MESSAGES * 2];
  int discontinuities;
  int closed;
} rec;

static void on_item(void *user, const mim_topic_item *item) {
  rec *r = user;
  int n = -1;
  if (sscanf((const char *)item->data, "m%d", &n) != 1)
    n = -1;
  pthread_mutex_lock(&r->mu);
  if (r->count < MESSAGES * 2)
    r->got[r->count] = n;
  r->count++;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void on_discontinuity(void *user, uint64_t last, uint64_t next, uint64_t page) {
  (void)last;
  (void)next;
  (void)page;
  rec *r = user;
  pthread_mutex_lock(&r->mu);
  r->discontinuities++;
  pthread_mutex_unlock(&r->mu);
}

static void on_state(void *user, mim_subscription_state s, mim_status st, const char *detail) {
  rec *r = user;
  if (s != MIM_SUB_CLOSED)
    return;
  fprintf(stderr, "subscription closed: %s: %s\n", mim_status_name(st), detail);
  pthread_mutex_lock(&r->mu);
  r->closed++;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Waits until more than `count` items arrived or the subscription closed; false on
 * timeout. */
static bool wait_beyond(rec *r, int count, int64_t ms) {
  struct timespec until = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  while (r->count <= count && !r->closed && rc == 0)
    rc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
  bool beyond = r->count > count;
  pthread_mutex_unlock(&r->mu);
  return beyond;
}

/* Publishes MESSAGES values for ~5 s with a root client while a token-URL client with
 * 2-second tokens is subscribed; the server ends each stream when its token expires, and
 * with cut also cuts every stream midway, after the first token has expired, so the
 * re-subscribe needs a fresh one. Every value must arrive exactly once and in order.
 * Returns the subscriber's token fetches. */
static unsigned run_expiry(const char *chat, int64_t margin_ms, bool cut) {
  vendor v;
  vendor_start(&v, 2);
  char url[256], query[128];
  snprintf(query, sizeof query, "chat=%s&user=bob&mode=client", chat);
  token_url(&v, query, url, sizeof url);
  mim_client *sub_client = NULL;
  assert_int_equal(url_client(url, margin_ms, &sub_client), MIM_OK);
  mim_client *pub = root_client();
  rec r = {.count = 0};
  pthread_mutex_init(&r.mu, NULL);
  cmn_cond_init_monotonic(&r.cv);
  mim_subscription_callbacks cb = {.struct_size = sizeof(mim_subscription_callbacks),
                                   .on_item = on_item,
                                   .on_discontinuity = on_discontinuity,
                                   .on_state = on_state,
                                   .user = &r};
  mim_subscription *sub = NULL;
  /* A 2-second token can expire before the first subscribe on a slow machine (valgrind);
   * the refusal makes the client fetch a fresh one, so a later attempt succeeds. */
  mim_status st = MIM_ERR_UNAUTHENTICATED;
  for (int attempt = 0; attempt < 10 && st == MIM_ERR_UNAUTHENTICATED; attempt++) {
    if (attempt > 0)
      test_sleep_ms(300);
    st = mim_topic_subscribe(sub_client, CACHE, chat, NULL, &cb, &sub);
  }
  assert_int_equal(st, MIM_OK);
  for (int i = 0; i < MESSAGES; i++) {
    if (cut && i == CUT_AT)
      assert_int_equal(mim_local_signal(srv, SIGUSR1), 0);
    char msg[16];
    snprintf(msg, sizeof msg, "m%d", i);
    assert_int_equal(mim_topic_publish_text(pub, CACHE, chat, msg), MIM_OK);
    test_sleep_ms(PUBLISH_EVERY_MS); /* paces the publisher over the tokens' lifetimes */
  }
  assert_true(wait_beyond(&r, MESSAGES - 1, WAIT_MS));
  /* Nothing beyond the last value may follow (a duplicate would). */
  assert_false(wait_beyond(&r, MESSAGES, 500));
  pthread_mutex_lock(&r.mu);
  assert_int_equal(r.count, MESSAGES);
  for (int i = 0; i < MESSAGES; i++)
    assert_int_equal(r.got[i], i);
  assert_int_equal(r.discontinuities, 0);
  assert_int_equal(r.closed, 0);
  pthread_mutex_unlock(&r.mu);
  mim_topic_unsubscribe(sub);
  unsigned fetches = mim_client_token_fetches(sub_client);
  mim_client_free(sub_client);
  mim_client_free(pub);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  vendor_stop(&v);
  return fetches;
}

/* Refreshed ahead of expiry (80% of the lifetime): several fetches in 5 s. */
static void test_subscription_survives_expiry_proactive(void **state) {
  (void)state;
  unsigned fetches = run_expiry("exp-ahead", 0, true);
  fprintf(stderr, "proactive: %u token fetches\n", fetches);
  assert_true(fetches >= 3);
}

/* No refresh ahead of time: the re-subscribe after the cut is refused (the token has
 * expired), the client fetches a fresh token and the subscription resumes. */
static void test_subscription_survives_expiry_on_refusal(void **state) {
  (void)state;
  unsigned fetches = run_expiry("exp-refused", -1, true);
  fprintf(stderr, "on refusal: %u token fetches\n", fetches);
  assert_true(fetches >= 2);
}

/* No cut and no refresh ahead of time: the server itself ends the stream when the token
 * expires (UNAUTHENTICATED); the client fetches a fresh token and resumes where it was. */
static void test_subscription_ended_at_expiry_resumes(void **state) {
  (void)state;
  unsigned fetches = run_expiry("exp-ended", -1, false);
  fprintf(stderr, "ended at expiry: %u token fetches\n", fetches);
  assert_true(fetches >= 2);
}

/* Publishes until the status is (or is not, with want_ok false) MIM_OK; bounded. */
static bool publish_until(mim_client *c, const char *topic, bool want_ok) {
  for (int64_t deadline = cmn_mono_ms() + 8000; cmn_mono_ms() < deadline; test_sleep_ms(100)) {
    mim_status st = mim_topic_publish_text(c, CACHE, topic, "x");
    if (want_ok ? st == MIM_OK : st == MIM_ERR_UNAUTHENTICATED)
      return true;
    assert_true(st == MIM_OK || st == MIM_ERR_UNAUTHENTICATED);
  }
  return false;
}

/* Without refreshes ahead of time, a publish refused for an expired token makes the
 * client fetch a new one, so a later publish goes through. */
static void test_refused_publish_refreshes(void **state) {
  (void)state;
  vendor v;
  vendor_start(&v, 2);
  char url[256];
  token_url(&v, "chat=pub-refused&user=carol&mode=client", url, sizeof url);
  mim_client *c = NULL;
  assert_int_equal(url_client(url, -1, &c), MIM_OK);
  assert_int_equal(mim_topic_publish_text(c, CACHE, "pub-refused", "x"), MIM_OK);
  assert_true(publish_until(c, "pub-refused", false)); /* the token expired */
  assert_true(publish_until(c, "pub-refused", true));  /* a fresh one was fetched */
  assert_int_equal(mim_client_token_fetches(c), 2);
  mim_client_free(c);
  vendor_stop(&v);
}

/* The same for a list call: any call refused for its token triggers the refresh. */
static bool push_until(mim_client *c, const char *list, bool want_ok) {
  for (int64_t deadline = cmn_mono_ms() + 8000; cmn_mono_ms() < deadline; test_sleep_ms(100)) {
    mim_status st = mim_list_push_back(c, CACHE, list, "x", 1, NULL, NULL);
    if (want_ok ? st == MIM_OK : st == MIM_ERR_UNAUTHENTICATED)
      return true;
    assert_true(st == MIM_OK || st == MIM_ERR_UNAUTHENTICATED);
  }
  return false;
}

static void test_refused_list_call_refreshes(void **state) {
  (void)state;
  vendor v;
  vendor_start(&v, 2);
  char url[256];
  token_url(&v, "chat=list-refused&user=dave&mode=client", url, sizeof url);
  mim_client *c = NULL;
  assert_int_equal(url_client(url, -1, &c), MIM_OK);
  assert_true(push_until(c, "list-refused", true));
  assert_true(push_until(c, "list-refused", false)); /* the token expired */
  assert_true(push_until(c, "list-refused", true));  /* a fresh one was fetched */
  assert_int_equal(mim_client_token_fetches(c), 2);
  mim_client_free(c);
  vendor_stop(&v);
}

/* ---- the IM outbox ---- */

typedef struct results {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char id[MIM_MESSAGE_ID_SIZE];
  mim_status status;
  int count;
} results;

static void on_send_result(mim_session *session, const char *id, mim_status status,
                           const char *detail, void *user) {
  (void)session;
  (void)detail;
  results *r = user;
  pthread_mutex_lock(&r->mu);
  snprintf(r->id, sizeof r->id, "%s", id);
  r->status = status;
  r->count++;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void ignore_message(mim_session *session, const mim_message *msg, void *user) {
  (void)session;
  (void)msg;
  (void)user;
}

/* A message sent after the session's token expired (no refresh ahead of time): the push
 * is refused with UNAUTHENTICATED, the client fetches a fresh token, and the outbox
 * retries, so the message is sent. */
static void test_outbox_retries_after_token_refresh(void **state) {
  (void)state;
  vendor v;
  vendor_start(&v, 2);
  char url[256];
  token_url(&v, "chat=outbox-auth&user=erin&mode=client", url, sizeof url);
  mim_client *c = NULL;
  assert_int_equal(url_client(url, -1, &c), MIM_OK);
  results r = {.count = 0};
  pthread_mutex_init(&r.mu, NULL);
  cmn_cond_init_monotonic(&r.cv);
  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.on_send_result = on_send_result;
  mim_session *s = NULL;
  /* A 2-second token can expire before the join on a slow machine; the refusal fetches
   * a fresh one. */
  mim_status st = MIM_ERR_UNAUTHENTICATED;
  for (int attempt = 0; attempt < 10 && st == MIM_ERR_UNAUTHENTICATED; attempt++) {
    if (attempt > 0)
      test_sleep_ms(300);
    st = mim_join(c, CACHE, "outbox-auth", &jo, ignore_message, &r, &s);
  }
  assert_int_equal(st, MIM_OK);
  unsigned before = mim_client_token_fetches(c);
  /* Waits for the clock, not for a race: the token (2 s, whole seconds) must be expired. */
  test_sleep_ms(3200);
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(s, "after expiry", id), MIM_OK);
  struct timespec until = cmn_deadline_after_ms(WAIT_MS);
  pthread_mutex_lock(&r.mu);
  while (r.count == 0 && pthread_cond_timedwait(&r.cv, &r.mu, &until) == 0) {
  }
  assert_int_equal(r.count, 1);
  assert_string_equal(r.id, id);
  assert_int_equal(r.status, MIM_OK);
  pthread_mutex_unlock(&r.mu);
  assert_true(mim_client_token_fetches(c) > before);
  mim_leave(s);
  mim_client_free(c);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  vendor_stop(&v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vendor_answers),
      cmocka_unit_test(test_vendor_mint_failure),
      cmocka_unit_test(test_client_from_token_url),
      cmocka_unit_test(test_unreachable_or_refusing_url),
      cmocka_unit_test(test_silent_url_times_out),
      cmocka_unit_test(test_subscription_survives_expiry_proactive),
      cmocka_unit_test(test_subscription_survives_expiry_on_refusal),
      cmocka_unit_test(test_subscription_ended_at_expiry_resumes),
      cmocka_unit_test(test_refused_publish_refreshes),
      cmocka_unit_test(test_refused_list_call_refreshes),
      cmocka_unit_test(test_outbox_retries_after_token_refresh),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
