/* The mim-local test helper: start on a free port, files and key, clean stop, kill. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "clock.h"
#include "mim_local.h"

/* Standard base64 decode into out (NUL-terminated); length or -1. */
static long b64_decode(const char *in, char *out, size_t cap) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint32_t acc = 0;
  int bits = 0;
  size_t n = 0;
  for (const char *p = in; *p != '\0' && *p != '='; p++) {
    const char *hit = strchr(alphabet, *p);
    if (hit == NULL) {
      return -1;
    }
    acc = (acc << 6) | (uint32_t)(hit - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n + 1 >= cap) {
        return -1;
      }
      out[n++] = (char)((acc >> bits) & 0xff);
    }
  }
  out[n] = '\0';
  return (long)n;
}

static int tcp_connects(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return 0;
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static int path_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void test_start_stop_is_clean(void **state) {
  (void)state;
  const char *caches[] = {"cache-a", "cache-b", NULL};
  mim_local_opts o = {.caches = caches};
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(&o, &s), 0);
  assert_non_null(s);
  assert_true(s->port > 0 && s->port <= 65535);
  char want[64];
  snprintf(want, sizeof want, "127.0.0.1:%d", s->port);
  assert_string_equal(s->endpoint, want);
  assert_true(tcp_connects(s->port));

  /* The root key is a v1 credential: base64 JSON naming this endpoint and an api_key. */
  assert_non_null(s->root_key);
  char json[8192];
  assert_true(b64_decode(s->root_key, json, sizeof json) > 0);
  assert_non_null(strstr(json, "\"api_key\""));
  assert_non_null(strstr(json, want));

  char dir[64];
  snprintf(dir, sizeof dir, "%s", s->dir);
  assert_true(path_exists(dir));
  assert_true(mim_local_alive(s));
  assert_int_equal(mim_local_stop(s), 0); /* SIGTERM -> exit status 0 */
  assert_false(path_exists(dir));         /* temp files are gone */
}

static void test_flags_are_accepted(void **state) {
  (void)state;
  const char *caches[] = {"instant-messaging", NULL};
  mim_local_opts o = {.caches = caches,
                      .no_auth = 1,
                      .heartbeat_ms = 200,
                      .replay = 16,
                      .set_replay = 1,
                      .log_level = "debug"};
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(&o, &s), 0);
  assert_true(tcp_connects(s->port));
  assert_int_equal(mim_local_stop(s), 0);
}

static void test_two_servers_get_different_ports(void **state) {
  (void)state;
  mim_local *a = NULL;
  mim_local *b = NULL;
  assert_int_equal(mim_local_start(NULL, &a), 0);
  assert_int_equal(mim_local_start(NULL, &b), 0);
  assert_int_not_equal(a->port, b->port);
  assert_int_equal(mim_local_stop(b), 0);
  assert_true(tcp_connects(a->port)); /* stopping one leaves the other alone */
  assert_int_equal(mim_local_stop(a), 0);
}

static void test_kill_ends_the_process(void **state) {
  (void)state;
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(NULL, &s), 0);
  pid_t pid = s->pid;
  assert_int_equal(mim_local_kill(s), 128 + SIGKILL);
  assert_int_equal(kill(pid, 0), -1); /* reaped: the pid no longer exists */
  assert_int_equal(errno, ESRCH);
}

/* A test that fails before mim_local_stop: the process's exit kills and frees the server
 * (removing its files), even a frozen one, but not one its parent started before the fork. */
static void test_exit_kills_a_server_left_running(void **state) {
  (void)state;
  mim_local *parents = NULL;
  assert_int_equal(mim_local_start(NULL, &parents), 0);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    close(fds[0]);
    mim_local *s = NULL;
    if (mim_local_start(NULL, &s) != 0 || mim_local_freeze(s, 10000) != 0)
      _exit(3);
    ssize_t n = write(fds[1], s->dir, sizeof s->dir);
    exit(n == (ssize_t)sizeof s->dir ? 0 : 4); /* exit, not _exit: atexit handlers run */
  }
  close(fds[1]);
  char dir[sizeof((mim_local *)NULL)->dir] = "";
  ssize_t n = read(fds[0], dir, sizeof dir);
  close(fds[0]);
  int st = 0;
  assert_int_equal(waitpid(child, &st, 0), child); /* bounded: the handler uses SIGKILL */
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(n, (ssize_t)sizeof dir);
  assert_false(path_exists(dir));
  assert_true(mim_local_alive(parents));
  assert_true(path_exists(parents->dir));
  assert_int_equal(mim_local_stop(parents), 0);
}

static void test_missing_binary_fails_fast(void **state) {
  (void)state;
  mim_local_opts o = {.binary = "/nonexistent/mim-local", .start_timeout_ms = 5000};
  mim_local *s = (mim_local *)&o; /* must be reset to NULL */
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_local_start(&o, &s), -1);
  int64_t took = cmn_mono_ms() - t0;
  assert_null(s);
  /* The early exit is noticed at once, not at the deadline. */
  assert_true(took < 3000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_missing_binary_fails_fast),
      cmocka_unit_test(test_start_stop_is_clean),
      cmocka_unit_test(test_flags_are_accepted),
      cmocka_unit_test(test_two_servers_get_different_ports),
      cmocka_unit_test(test_kill_ends_the_process),
      cmocka_unit_test(test_exit_kills_a_server_left_running),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
