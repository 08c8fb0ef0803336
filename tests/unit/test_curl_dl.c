/* libcurl is loaded only when a token URL is used (lib/curl_dl.c): a client from a key
 * works without it ever entering the process, a token URL loads it, and a missing
 * libcurl fails the token URL with a status that names the package to install. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "curl_dl.h"
#include "mim_local.h"
#include "test_client.h"

#include <arpa/inet.h>
#include <momento/client.h>
#include <momento/list.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* Whether a file whose name contains "libcurl" is mapped into this process. */
static int curl_mapped(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    found = strstr(line, "/libcurl") != NULL;
  fclose(f);
  return found;
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

static mim_status url_client(const char *url, mim_client **out) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.token_url = url;
  o.default_deadline_ms = 10000;
  return mim_client_create(&o, out);
}

static void test_key_client_never_loads_curl(void **state) {
  (void)state;
  assert_false(curl_mapped()); /* the test program itself does not link it */
  mim_client *c = test_client_from_key(srv->root_key);
  assert_int_equal(mim_client_ping(c), MIM_OK);
  assert_int_equal(mim_list_push_back(c, "instant-messaging", "curl-dl", "x", 1, NULL, NULL),
                   MIM_OK);
  mim_client_free(c);
  assert_false(curl_mapped());
}

/* The child's verdict as its exit code: 0 = the token URL failed as it should. */
static int missing_curl_child(const char *url) {
  mim_curl_set_soname_for_test("libcurl-not-installed.so.4");
  mim_client *c = NULL;
  mim_status st = url_client(url, &c);
  const char *d = mim_last_error_detail();
  if (st != MIM_ERR_UNAVAILABLE || c) {
    fprintf(stderr, "status %s, client %p\n", mim_status_name(st), (void *)c);
    return 1;
  }
  if (!strstr(d, "libcurl4") || !strstr(d, "token URL")) {
    fprintf(stderr, "detail does not name the package: %s\n", d);
    return 2;
  }
  /* Every later attempt gives the same answer (the load is tried once). */
  if (url_client(url, &c) != MIM_ERR_UNAVAILABLE || !strstr(mim_last_error_detail(), "libcurl4"))
    return 3;
  return curl_mapped() ? 4 : 0;
}

/* In a child process: the library tries to load libcurl once per process, and this
 * process must still load the real one afterwards. Runs first: no client exists yet, so
 * the child is forked from a single-threaded process. */
static void test_missing_curl_is_named(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/token", closed_port());
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(missing_curl_child(url));
  int ws = 0;
  assert_int_equal(waitpid(pid, &ws, 0), pid);
  assert_true(WIFEXITED(ws));
  assert_int_equal(WEXITSTATUS(ws), 0);
}

static void test_token_url_loads_curl(void **state) {
  (void)state;
  assert_false(curl_mapped());
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/token", closed_port());
  mim_client *c = NULL;
  /* Nobody listens: curl itself reports it, so it was loaded and ran. */
  assert_int_equal(url_client(url, &c), MIM_ERR_UNAVAILABLE);
  assert_null(c);
  assert_non_null(strstr(mim_last_error_detail(), "onnect"));
  assert_true(curl_mapped());
}

int main(void) {
  /* In this order: the fork comes while this process has no client (so no library
   * thread), and the last one loads libcurl for good. */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_missing_curl_is_named),
      cmocka_unit_test(test_key_client_never_loads_curl),
      cmocka_unit_test(test_token_url_loads_curl),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
