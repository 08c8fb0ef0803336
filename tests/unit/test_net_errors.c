/* Network and TLS failures name host:port and say what to check, above the transport's
 * own words: refused, silent server (deadline), TLS spoken to a plaintext server and the
 * reverse, an untrusted or misnamed certificate, a name that cannot resolve. Loopback
 * only; the unresolvable name has a 64-byte label, which the resolver refuses without a
 * query (no network, no wait). Both transports (tests/scripts/transport_grpc.sh runs this
 * against the gRPC core one) give the same leading words. No detail may carry the token. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "mim_local.h"
#include "test_ca.h"
#include "time_scale.h"

#include <arpa/inet.h>
#include <momento/client.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN "secret-token-never-shown"

/* Pings host_port with a client of the given TLS mode; returns the status and copies the
 * detail. */
static mim_status ping(const char *host_port, mim_tls_mode tls, const char *ca_file,
                       int64_t deadline_ms, char *detail, size_t cap) {
  char *key = NULL;
  assert_int_equal(mim_credentials_encode_v1(host_port, TOKEN, &key), MIM_OK);
  mim_client_options o = MIM_CLIENT_OPTIONS_INIT;
  o.api_key = key;
  o.tls = tls;
  o.ca_file = ca_file;
  o.default_deadline_ms = deadline_ms * test_time_scale();
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  free(key);
  mim_status st = mim_client_ping(c);
  snprintf(detail, cap, "%s", mim_last_error_detail());
  mim_client_free(c);
  print_message("%s -> %s: %s\n", host_port, mim_status_name(st), detail);
  assert_null(strstr(detail, TOKEN));
  return st;
}

static void expect_words(const char *detail, const char *host_port, const char *hint) {
  assert_non_null(strstr(detail, host_port));
  assert_non_null(strstr(detail, hint));
}

/* A loopback socket bound to a free port; listening when listen_too. */
static int bound_socket(int listen_too, char *host_port, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  if (listen_too)
    assert_int_equal(listen(fd, 8), 0);
  snprintf(host_port, cap, "127.0.0.1:%d", ntohs(a.sin_port));
  return fd;
}

static void test_refused(void **state) {
  (void)state;
  char hp[64], detail[1024];
  close(bound_socket(0, hp, sizeof hp)); /* nothing listens there now */
  assert_int_equal(ping(hp, MIM_TLS_OFF, NULL, 5000, detail, sizeof detail), MIM_ERR_UNAVAILABLE);
  char want[128];
  snprintf(want, sizeof want, "nothing listens on %s: is the server running", hp);
  expect_words(detail, hp, want);
}

/* The kernel accepts the connection (backlog); nobody ever answers. */
static void test_silent_server(void **state) {
  (void)state;
  char hp[64], detail[1024];
  int fd = bound_socket(1, hp, sizeof hp);
  mim_status st = ping(hp, MIM_TLS_OFF, NULL, 300, detail, sizeof detail);
  close(fd);
  assert_int_equal(st, MIM_ERR_DEADLINE_EXCEEDED);
  char want[128];
  snprintf(want, sizeof want, "no answer from %s within %d ms", hp, 300 * test_time_scale());
  expect_words(detail, hp, want);
}

static void test_unresolvable(void **state) {
  (void)state;
  char hp[128], detail[1024];
  snprintf(hp, sizeof hp, "%.64s.example:443",
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  assert_int_equal(ping(hp, MIM_TLS_ON, NULL, 5000, detail, sizeof detail), MIM_ERR_UNAVAILABLE);
  char want[192];
  snprintf(want, sizeof want, "cannot resolve %s (DNS): check the endpoint", hp);
  expect_words(detail, hp, want);
}

static mim_local *start_local(const test_cert_files *cert) {
  const char *const tls_args[] = {"--tls-cert", cert ? cert->cert : "", "--tls-key",
                                  cert ? cert->key : "", NULL};
  mim_local_opts o = {.extra_args = cert ? tls_args : NULL};
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(&o, &s), 0);
  return s;
}

static void test_tls_to_plaintext_server(void **state) {
  (void)state;
  char detail[1024];
  mim_local *s = start_local(NULL);
  mim_status st = ping(s->endpoint, MIM_TLS_ON, NULL, 5000, detail, sizeof detail);
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "%s", s->endpoint);
  assert_int_equal(mim_local_stop(s), 0);
  assert_int_equal(st, MIM_ERR_UNAVAILABLE);
  expect_words(detail, endpoint, "does not speak TLS");
}

/* A TLS server spoken to in plaintext; also each certificate the client must refuse. */
static void test_tls_server(void **state) {
  (void)state;
  test_ca ca;
  assert_int_equal(test_ca_create(&ca), 0);
  char detail[1024];
  char endpoint[64];
  mim_local *s = start_local(&ca.good);
  snprintf(endpoint, sizeof endpoint, "%s", s->endpoint);
  mim_status plain = ping(endpoint, MIM_TLS_OFF, NULL, 5000, detail, sizeof detail);
  assert_int_equal(plain, MIM_ERR_UNAVAILABLE);
  expect_words(detail, endpoint, "TLS");
  assert_int_equal(ping(endpoint, MIM_TLS_ON, ca.ca_file, 5000, detail, sizeof detail), MIM_OK);
  assert_int_equal(mim_local_stop(s), 0);

  s = start_local(&ca.untrusted);
  mim_status untrusted = ping(s->endpoint, MIM_TLS_ON, ca.ca_file, 5000, detail, sizeof detail);
  assert_int_equal(untrusted, MIM_ERR_UNAVAILABLE);
  expect_words(detail, s->endpoint, "is not trusted");
  expect_words(detail, s->endpoint, "give the CA that signed it as ca_file");
  assert_int_equal(mim_local_stop(s), 0);

  s = start_local(&ca.wrong);
  mim_status wrong = ping(s->endpoint, MIM_TLS_ON, ca.ca_file, 5000, detail, sizeof detail);
  assert_int_equal(wrong, MIM_ERR_UNAVAILABLE);
  expect_words(detail, s->endpoint, "issued for another name");
  assert_int_equal(mim_local_stop(s), 0);
  test_ca_remove(&ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refused),      cmocka_unit_test(test_silent_server),
      cmocka_unit_test(test_unresolvable), cmocka_unit_test(test_tls_to_plaintext_server),
      cmocka_unit_test(test_tls_server),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
