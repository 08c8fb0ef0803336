/* lib/client.c against mim-local: options, creation from every key source and its
 * failures, ping (also to a closed port), cache create/delete, log callback install,
 * and the internal accessors other modules rely on. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "client_internal.h"
#include "mim_local.h"

#include <arpa/inet.h>
#include <momento/client.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mim_local *srv;

static int start_server(void **state) {
  (void)state;
  const char *caches[] = {"instant-messaging", NULL};
  mim_local_opts o = {.caches = caches};
  return mim_local_start(&o, &srv);
}

static int stop_server(void **state) {
  (void)state;
  int rc = mim_local_stop(srv);
  srv = NULL;
  return rc;
}

static mim_client *root_client(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_non_null(c);
  return c;
}

/* A loopback port nothing listens on: bind an ephemeral port, then release it. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_options_init_defaults(void **state) {
  (void)state;
  mim_client_options o;
  memset(&o, 0xab, sizeof o);
  mim_client_options_init(&o);
  assert_null(o.api_key);
  assert_null(o.credentials);
  assert_null(o.cache_host);
  assert_null(o.control_host);
  assert_null(o.token_host);
  assert_int_equal(o.tls, MIM_TLS_AUTO);
  assert_null(o.ca_file);
  assert_int_equal(o.default_deadline_ms, 0);
  assert_null(o.log_fn);
  assert_null(o.log_user);
  mim_client_options_init(NULL); /* ignored, no crash */
}

static void test_create_rejects_bad_input(void **state) {
  (void)state;
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  assert_int_equal(mim_client_create(&o, NULL), MIM_ERR_INVALID_ARGUMENT);

  mim_client *c = (mim_client *)&o;
  o.api_key = "not a key";
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  assert_string_not_equal(mim_last_error_detail(), "");

  o.api_key = "";
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);

  o.api_key = srv->root_key;
  o.default_deadline_ms = -1;
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  o.default_deadline_ms = 0;

  o.cache_host = "bad host:with:colons:99999";
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
}

static void test_create_without_any_key(void **state) {
  (void)state;
  unsetenv("MOMENTO_API_KEY");
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(NULL, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  mim_client_options o;
  mim_client_options_init(&o);
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
}

static void test_create_from_env_and_ping(void **state) {
  (void)state;
  assert_int_equal(setenv("MOMENTO_API_KEY", srv->root_key, 1), 0);
  mim_client_options o;
  mim_client_options_init(&o);
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  unsetenv("MOMENTO_API_KEY");
  assert_int_equal(mim_client_ping(c), MIM_OK);
  mim_client_free(c);
}

static void test_create_from_credentials_object(void **state) {
  (void)state;
  mim_credentials *creds = NULL;
  assert_int_equal(mim_credentials_from_string(srv->root_key, &creds), MIM_OK);
  mim_client_options o;
  mim_client_options_init(&o);
  o.credentials = creds;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  mim_credentials_free(creds); /* the client keeps its own copy */
  assert_int_equal(mim_client_ping(c), MIM_OK);
  mim_client_free(c);
}

static void test_accessors(void **state) {
  (void)state;
  mim_client *c = root_client();
  assert_non_null(mim_client_transport(c));
  assert_int_equal(mim_client_deadline_ms(c), 15000);
  assert_string_equal(mim_client_endpoint(c), srv->endpoint);
  mim_client_free(c);

  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 1234;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_int_equal(mim_client_deadline_ms(c), 1234);
  mim_client_free(c);
  mim_client_free(NULL);
}

static void test_ping_ok(void **state) {
  (void)state;
  mim_client *c = root_client();
  assert_int_equal(mim_client_ping(c), MIM_OK);
  assert_int_equal(mim_client_ping(c), MIM_OK);
  mim_client_free(c);
  assert_int_equal(mim_client_ping(NULL), MIM_ERR_INVALID_ARGUMENT);
}

static void test_ping_closed_port_is_unavailable(void **state) {
  (void)state;
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", closed_port());
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  o.cache_host = host; /* override: the other planes still point at mim-local */
  o.default_deadline_ms = 5000;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_int_equal(mim_client_ping(c), MIM_ERR_UNAVAILABLE);
  /* Only the cache plane was overridden: control still works. */
  assert_int_equal(mim_cache_create(c, "override-check"), MIM_OK);
  assert_int_equal(mim_cache_delete(c, "override-check"), MIM_OK);
  mim_client_free(c);
}

static void test_cache_create_delete(void **state) {
  (void)state;
  mim_client *c = root_client();
  assert_int_equal(mim_cache_create(c, "test-cache-1"), MIM_OK);
  assert_int_equal(mim_cache_create(c, "test-cache-1"), MIM_ERR_ALREADY_EXISTS);
  assert_int_equal(mim_cache_create(c, "instant-messaging"), MIM_ERR_ALREADY_EXISTS);
  assert_int_equal(mim_cache_delete(c, "test-cache-1"), MIM_OK);
  assert_int_equal(mim_cache_delete(c, "test-cache-1"), MIM_ERR_NOT_FOUND);
  assert_string_not_equal(mim_last_error_detail(), "");
  assert_int_equal(mim_cache_delete(c, "never-existed"), MIM_ERR_NOT_FOUND);
  /* Re-creating after delete works. */
  assert_int_equal(mim_cache_create(c, "test-cache-1"), MIM_OK);
  assert_int_equal(mim_cache_delete(c, "test-cache-1"), MIM_OK);
  mim_client_free(c);
}

static void test_cache_calls_reject_bad_input(void **state) {
  (void)state;
  mim_client *c = root_client();
  assert_int_equal(mim_cache_create(c, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_cache_create(c, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_cache_delete(c, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_cache_delete(c, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_cache_create(NULL, "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_cache_delete(NULL, "x"), MIM_ERR_INVALID_ARGUMENT);
  mim_client_free(c);
}

static void test_unauthenticated_key(void **state) {
  (void)state;
  /* Well-formed v1 key naming this server, with a token the server never issued. */
  char *key = NULL;
  assert_int_equal(mim_credentials_encode_v1(srv->endpoint, "forged-token", &key), MIM_OK);
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  free(key);
  assert_int_equal(mim_cache_create(c, "forged"), MIM_ERR_UNAUTHENTICATED);
  mim_client_free(c);
}

static void test_tls_options(void **state) {
  (void)state;
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.ca_file = "/nonexistent/roots.pem";
  mim_client *c = (mim_client *)&o;
  assert_int_equal(mim_client_create(&o, &c), MIM_ERR_INVALID_ARGUMENT);
  assert_null(c);
  /* TLS to a plaintext server: creation is fine, the call cannot connect. The failed
   * handshake takes seconds under valgrind (MIM_TEST_SLOW=1): allow for it there. */
  o.ca_file = NULL;
  o.tls = MIM_TLS_ON;
  o.default_deadline_ms = getenv("MIM_TEST_SLOW") && *getenv("MIM_TEST_SLOW") ? 60000 : 5000;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_int_equal(mim_client_ping(c), MIM_ERR_UNAVAILABLE);
  mim_client_free(c);
}

/* MIM_TLS_AUTO: plaintext only when every plane is on loopback. */
static void test_tls_auto(void **state) {
  (void)state;
  struct {
    const char *cache, *control, *token;
    mim_tls_mode mode;
    bool tls;
  } cases[] = {
      {"127.0.0.1:1", "127.0.0.2:1", "127.9.9.9:1", MIM_TLS_AUTO, false},
      {"localhost:1", "[::1]:1", "localhost", MIM_TLS_AUTO, false},
      {"cache.example.com:443", "127.0.0.1:1", "127.0.0.1:1", MIM_TLS_AUTO, true},
      {"127.0.0.1:1", "127.0.0.1:1", "localhost.example.com:443", MIM_TLS_AUTO, true},
      {"128.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", MIM_TLS_AUTO, true},
      {"127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", MIM_TLS_ON, true},
      {"cache.example.com:443", "control.example.com:443", "token.example.com:443", MIM_TLS_OFF,
       false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mim_client_options o;
    mim_client_options_init(&o);
    o.api_key = srv->root_key;
    o.cache_host = cases[i].cache;
    o.control_host = cases[i].control;
    o.token_host = cases[i].token;
    o.tls = cases[i].mode;
    mim_client *c = NULL;
    assert_int_equal(mim_client_create(&o, &c), MIM_OK);
    if (mim_client_uses_tls(c) != cases[i].tls)
      fail_msg("case %zu: tls %d, expected %d", i, mim_client_uses_tls(c), cases[i].tls);
    mim_client_free(c);
  }
  /* The root key names 127.0.0.1:PORT: with no TLS setting at all it reaches mim-local. */
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_int_equal(mim_client_ping(c), MIM_OK);
  mim_client_free(c);
}

typedef struct log_capture {
  pthread_mutex_t mu;
  int lines;
  int saw_created;
  int saw_secret;
} log_capture;

static void capture_log(mim_log_level level, const char *message, void *user) {
  (void)level;
  log_capture *cap = user;
  pthread_mutex_lock(&cap->mu);
  cap->lines++;
  if (strstr(message, "client created"))
    cap->saw_created = 1;
  if (strstr(message, srv->root_key))
    cap->saw_secret = 1;
  pthread_mutex_unlock(&cap->mu);
}

static void test_log_callback_installed(void **state) {
  (void)state;
  log_capture cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.tls = MIM_TLS_OFF;
  o.log_fn = capture_log;
  o.log_level = MIM_LOG_DEBUG;
  o.log_user = &cap;
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  assert_int_equal(mim_client_ping(c), MIM_OK);
  mim_client_free(c);
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  assert_true(cap.lines > 0);
  assert_true(cap.saw_created);
  assert_false(cap.saw_secret);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_init_defaults),
      cmocka_unit_test(test_create_rejects_bad_input),
      cmocka_unit_test(test_create_without_any_key),
      cmocka_unit_test(test_create_from_env_and_ping),
      cmocka_unit_test(test_create_from_credentials_object),
      cmocka_unit_test(test_accessors),
      cmocka_unit_test(test_ping_ok),
      cmocka_unit_test(test_ping_closed_port_is_unavailable),
      cmocka_unit_test(test_cache_create_delete),
      cmocka_unit_test(test_cache_calls_reject_bad_input),
      cmocka_unit_test(test_unauthenticated_key),
      cmocka_unit_test(test_tls_options),
      cmocka_unit_test(test_tls_auto),
      cmocka_unit_test(test_log_callback_installed),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
