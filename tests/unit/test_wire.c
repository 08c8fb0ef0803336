/* Wire check against Momento's official protobufs (issue 5, item 7).
 *
 * tests/interop/wire/server.js is a grpc-js server whose services and message classes come
 * from Momento's published @gomomento/generated-types. It decodes every request our client
 * sends with the official class and appends a JSON record (method path, metadata, decoded
 * fields by their official names, raw bytes, and whether the official class re-encodes
 * exactly the bytes it got) to a file before it answers. Each test here makes calls with
 * the public API and compares the record with what it sent, field by field, and checks
 * that our client decodes the official server's answers. This proves our lib/proto files
 * agree with Momento's on paths, field numbers and types, independent of mim-local.
 * test_schema_matches_official adds the static half: tests/interop/wire/schema.js compares
 * every message, field, oneof, enum value and method of lib/proto (as described by
 * protoc-c) with the official classes, including those no call here exercises.
 *
 * By default the test installs the pinned npm packages (tests/interop/wire/ensure-deps.sh,
 * `npm ci` only when needed) and spawns `node tests/interop/wire/server.js` on a free
 * loopback port; it must run from the repository root (as `make check` does), or
 * MIM_WIRE_DIR must name the wire directory. With MIM_WIRE_ENDPOINT=host:port and
 * MIM_WIRE_RECORD=<record file> it uses a server that is already running instead. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif

#define CACHE "wire-cache"
#define AUTH_TOKEN "wire-test-token"
#define DEPS_TIMEOUT "300"     /* seconds for npm ci (first run only) */
#define START_TIMEOUT_MS 20000 /* node start-up on a busy 2-core box */
#define STOP_TIMEOUT_MS 5000   /* SIGTERM grace before SIGKILL */
#define WAIT_TIMEOUT_MS 10000  /* for subscription items */
#define READY_LINE "wire server listening on "

/* Must match tests/interop/wire/server.js. */
#define PUSH_LENGTH 7
#define FIRST_SEQUENCE 41
#define FIRST_PAGE 7
#define PUBLISHER "wire-publisher"

static struct {
  pid_t pid; /* our node child, or -1 when using MIM_WIRE_ENDPOINT */
  int out_fd;
  char dir[64];
  char record[128];
  char endpoint[64];
  long offset; /* how far the record file has been consumed */
  mim_client *cli;
} W = {.pid = -1, .out_fd = -1};

static const char *wire_dir(void) {
  const char *d = getenv("MIM_WIRE_DIR");
  return d != NULL && d[0] != '\0' ? d : "tests/interop/wire";
}

/* ---- the node server ---- */

/* Runs argv to completion (it bounds itself); returns its exit status or -1. */
static int run_to_end(char *const argv[]) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  if (pid < 0)
    return -1;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int spawn_server(const char *script) {
  int p[2];
  if (pipe(p) != 0)
    return -1;
  char port_file[160];
  snprintf(port_file, sizeof port_file, "%s/port", W.dir);
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
#ifdef __linux__
    /* A crashed test must not leave the server behind. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(126);
#endif
    (void)parent;
    close(p[0]);
    dup2(p[1], STDOUT_FILENO);
    execlp("node", "node", script, "--host", "127.0.0.1", "--port", "0", "--port-file", port_file,
           "--record", W.record, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  fcntl(p[0], F_SETFD, FD_CLOEXEC);
  W.pid = pid;
  W.out_fd = p[0];
  return 0;
}

/* Reads the server's stdout until its ready line names the port. */
static int wait_ready(void) {
  char out[2048] = "";
  size_t len = 0;
  long long deadline = cmn_mono_ms() + START_TIMEOUT_MS;
  for (;;) {
    const char *line = strstr(out, READY_LINE);
    if (line != NULL && strchr(line, '\n') != NULL) {
      int port = atoi(strrchr(line, ':') + 1);
      if (port <= 0 || port > 65535)
        return -1;
      snprintf(W.endpoint, sizeof W.endpoint, "127.0.0.1:%d", port);
      return 0;
    }
    long long left = deadline - cmn_mono_ms();
    if (left <= 0 || len + 1 >= sizeof out) {
      fprintf(stderr, "wire: server not ready after %d ms\n", START_TIMEOUT_MS);
      return -1;
    }
    struct pollfd pfd = {.fd = W.out_fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)left) <= 0)
      continue;
    ssize_t n = read(W.out_fd, out + len, sizeof out - 1 - len);
    if (n <= 0) {
      fprintf(stderr, "wire: server exited before it was ready\n");
      return -1;
    }
    fwrite(out + len, 1, (size_t)n, stdout);
    len += (size_t)n;
    out[len] = '\0';
  }
}

/* SIGTERM, wait up to STOP_TIMEOUT_MS, then SIGKILL. */
static void stop_server(void) {
  if (W.pid <= 0)
    return;
  kill(W.pid, SIGTERM);
  long long deadline = cmn_mono_ms() + STOP_TIMEOUT_MS;
  for (;;) {
    int st;
    pid_t r = waitpid(W.pid, &st, WNOHANG);
    if (r == W.pid || (r < 0 && errno != EINTR))
      break;
    if (cmn_mono_ms() >= deadline) {
      fprintf(stderr, "wire: server ignored SIGTERM; killing it\n");
      kill(W.pid, SIGKILL);
      waitpid(W.pid, &st, 0);
      break;
    }
    /* Its stdout reaches EOF as it exits: wait on that (forwarding any last words). */
    struct pollfd pfd = {.fd = W.out_fd, .events = POLLIN};
    if (W.out_fd >= 0 && poll(&pfd, 1, 50) > 0) {
      char buf[512];
      ssize_t n = read(W.out_fd, buf, sizeof buf);
      if (n > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
      } else {
        close(W.out_fd);
        W.out_fd = -1;
      }
    } else if (W.out_fd < 0) {
      poll(NULL, 0, 10); /* exit is imminent; waitpid has no timeout */
    }
  }
  W.pid = -1;
}

static int start_own_server(void) {
  char ensure[512], script[512];
  snprintf(ensure, sizeof ensure, "%s/ensure-deps.sh", wire_dir());
  snprintf(script, sizeof script, "%s/server.js", wire_dir());
  if (access(script, R_OK) != 0) {
    fprintf(stderr, "wire: %s not found (run from the repository root or set MIM_WIRE_DIR)\n",
            script);
    return -1;
  }
  char *const deps[] = {"timeout", DEPS_TIMEOUT, "bash", ensure, NULL};
  if (run_to_end(deps) != 0) {
    fprintf(stderr, "wire: %s failed\n", ensure);
    return -1;
  }
  strcpy(W.dir, "/tmp/mim-wire-XXXXXX");
  if (mkdtemp(W.dir) == NULL)
    return -1;
  snprintf(W.record, sizeof W.record, "%s/record.jsonl", W.dir);
  if (spawn_server(script) != 0 || wait_ready() != 0) {
    stop_server();
    return -1;
  }
  return 0;
}

static int setup(void **state) {
  (void)state;
  const char *ep = getenv("MIM_WIRE_ENDPOINT");
  if (ep != NULL && ep[0] != '\0') {
    const char *rec = getenv("MIM_WIRE_RECORD");
    if (rec == NULL || rec[0] == '\0') {
      fprintf(stderr, "wire: MIM_WIRE_ENDPOINT needs MIM_WIRE_RECORD (the --record file)\n");
      return -1;
    }
    snprintf(W.endpoint, sizeof W.endpoint, "%s", ep);
    snprintf(W.record, sizeof W.record, "%s", rec);
    FILE *f = fopen(W.record, "r"); /* skip what earlier runs left there */
    if (f != NULL) {
      fseek(f, 0, SEEK_END);
      W.offset = ftell(f);
      fclose(f);
    }
  } else if (start_own_server() != 0) {
    return -1;
  }
  /* The key names an endpoint that does not resolve: every plane must come from the
   * endpoint overrides. */
  char *key = NULL;
  if (mim_credentials_encode_v1("wire.invalid", AUTH_TOKEN, &key) != MIM_OK)
    return -1;
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = key;
  co.cache_host = W.endpoint;
  co.control_host = W.endpoint;
  co.token_host = W.endpoint;
  co.tls = MIM_TLS_OFF;
  co.default_deadline_ms = 10000;
  mim_status st = mim_client_create(&co, &W.cli);
  free(key);
  return st == MIM_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_client_free(W.cli);
  W.cli = NULL;
  stop_server();
  if (W.out_fd >= 0)
    close(W.out_fd);
  if (W.dir[0] != '\0') {
    unlink(W.record);
    char port_file[160];
    snprintf(port_file, sizeof port_file, "%s/port", W.dir);
    unlink(port_file);
    rmdir(W.dir);
  }
  return 0;
}

/* ---- records ---- */

/* The next record the server wrote (they are written before the answer goes out, so a
 * returned call's record is there). NULL when there is none. */
static json_t *next_record(void) {
  FILE *f = fopen(W.record, "r");
  if (f == NULL)
    return NULL;
  json_t *rec = NULL;
  char *line = NULL;
  size_t cap = 0;
  if (fseek(f, W.offset, SEEK_SET) == 0) {
    ssize_t n = getline(&line, &cap, f);
    if (n > 0 && line[n - 1] == '\n') {
      W.offset += (long)n;
      json_error_t err;
      rec = json_loads(line, 0, &err);
      if (rec == NULL)
        fprintf(stderr, "wire: bad record line: %s\n", err.text);
    }
  }
  free(line);
  fclose(f);
  return rec;
}

static void print_json(const char *label, const json_t *j) {
  char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
  fprintf(stderr, "  %s: %s\n", label, s != NULL ? s : "(null)");
  free(s);
}

/* Takes the next record and checks what every call must carry: the method path, the
 * official class re-encoding exactly our bytes, authorization, and the cache metadata
 * (cache NULL: must be absent). Returns its "request" object (owned by *rec). */
static json_t *expect_call(json_t **rec, const char *path, const char *cache) {
  *rec = next_record();
  if (*rec == NULL)
    fail_msg("no record for %s", path);
  const char *got = json_string_value(json_object_get(*rec, "path"));
  if (got == NULL || strcmp(got, path) != 0) {
    print_json("record", *rec);
    fail_msg("expected a call to %s, the server saw %s", path, got ? got : "(none)");
  }
  if (!json_is_true(json_object_get(*rec, "roundtrip"))) {
    print_json("record", *rec);
    fail_msg("%s: the official class does not re-encode our bytes exactly (unknown field "
             "or wrong type): raw %s, official %s",
             path, json_string_value(json_object_get(*rec, "raw")),
             json_string_value(json_object_get(*rec, "reserialized")));
  }
  json_t *md = json_object_get(*rec, "metadata");
  const char *auth = json_string_value(json_object_get(md, "authorization"));
  if (auth == NULL || strcmp(auth, AUTH_TOKEN) != 0)
    fail_msg("%s: authorization metadata is %s", path, auth ? "wrong" : "missing");
  const char *c = json_string_value(json_object_get(md, "cache"));
  if (cache == NULL && c != NULL)
    fail_msg("%s: unexpected cache metadata \"%s\"", path, c);
  if (cache != NULL && (c == NULL || strcmp(c, cache) != 0))
    fail_msg("%s: cache metadata is \"%s\", expected \"%s\"", path, c ? c : "(missing)", cache);
  json_t *req = json_object_get(*rec, "request");
  assert_non_null(req);
  return req;
}

/* Exact comparison of the decoded request with what we meant to send (all fields). */
static void expect_request(const json_t *req, json_t *want) {
  assert_non_null(want);
  if (!json_equal((json_t *)req, want)) {
    print_json("official decode", req);
    print_json("expected       ", want);
    json_decref(want);
    fail_msg("decoded request differs from what the client was asked to send");
  }
  json_decref(want);
}

/* Lowercase hex of bytes, as the server reports bytes fields. The result lives in one of
 * a ring of static buffers, so a few can be arguments of the same call. */
static const char *hex(const void *data, size_t len) {
  static char ring[8][512];
  static unsigned next;
  char *buf = ring[next++ % 8];
  const uint8_t *p = data;
  assert_true(len * 2 < sizeof ring[0]);
  for (size_t i = 0; i < len; i++)
    snprintf(buf + 2 * i, 3, "%02x", p[i]);
  buf[2 * len] = '\0';
  return buf;
}

static const char *hexs(const char *s) {
  return hex(s, strlen(s));
}

/* Consumes the next record and checks path, metadata and the exact decoded request. */
static void expect(const char *path, const char *cache, json_t *want) {
  json_t *rec;
  json_t *req = expect_call(&rec, path, cache);
  expect_request(req, want);
  json_decref(rec);
}

/* Per-test setup: a failed test may have left records; each test starts after them. */
static int skip_old_records(void **state) {
  (void)state;
  json_t *rec;
  while ((rec = next_record()) != NULL)
    json_decref(rec);
  return 0;
}

/* Per-test teardown check: the test consumed every call the server saw, so no call went
 * out that the test did not expect (a retry, a stray re-subscription). */
static void expect_no_more(void) {
  json_t *rec = next_record();
  if (rec != NULL) {
    print_json("record", rec);
    json_decref(rec);
    fail_msg("the server saw a call the test did not expect");
  }
}

#define SCS(m) "/cache_client.Scs/" m

/* ---- lists ---- */

static void test_list_push_back(void **state) {
  (void)state;
  const uint8_t value[] = {'h', 'i', 0x00, 0xff, '\n'};
  mim_list_write_options o = {.struct_size = sizeof(mim_list_write_options),
                              .ttl_ms = 3600000,
                              .refresh_ttl = true,
                              .truncate_to = 100};
  uint32_t len = 0;
  assert_int_equal(mim_list_push_back(W.cli, CACHE, "chat-1", value, sizeof value, &o, &len),
                   MIM_OK);
  assert_int_equal(len, PUSH_LENGTH);
  char v[16];
  snprintf(v, sizeof v, "%s", hex(value, sizeof value));
  expect(SCS("ListPushBack"), CACHE,
         json_pack("{s:s, s:s, s:I, s:b, s:i}", "list_name", hexs("chat-1"), "value", v,
                   "ttl_milliseconds", (json_int_t)3600000, "refresh_ttl", 1,
                   "truncate_front_to_size", 100));

  /* Defaults: the client's default TTL (24 h), refresh, no truncation. */
  assert_int_equal(mim_list_push_back(W.cli, CACHE, "chat-1", "x", 1, NULL, NULL), MIM_OK);
  expect(SCS("ListPushBack"), CACHE,
         json_pack("{s:s, s:s, s:i, s:b, s:i}", "list_name", hexs("chat-1"), "value", hexs("x"),
                   "ttl_milliseconds", 86400000, "refresh_ttl", 1, "truncate_front_to_size", 0));

  /* No refresh: refresh_ttl false. */
  mim_list_write_options keep = {
      .struct_size = sizeof(mim_list_write_options), .ttl_ms = 5000, .refresh_ttl = false};
  assert_int_equal(mim_list_push_back(W.cli, CACHE, "chat-1", "y", 1, &keep, NULL), MIM_OK);
  expect(SCS("ListPushBack"), CACHE,
         json_pack("{s:s, s:s, s:i, s:b, s:i}", "list_name", hexs("chat-1"), "value", hexs("y"),
                   "ttl_milliseconds", 5000, "refresh_ttl", 0, "truncate_front_to_size", 0));
  expect_no_more();
}

static void test_list_push_front_and_concat(void **state) {
  (void)state;
  mim_list_write_options o = {.struct_size = sizeof(mim_list_write_options),
                              .ttl_ms = 60000,
                              .refresh_ttl = true,
                              .truncate_to = 3};
  uint32_t len = 0;
  assert_int_equal(mim_list_push_front(W.cli, CACHE, "l2", "front", 5, &o, &len), MIM_OK);
  assert_int_equal(len, PUSH_LENGTH);
  expect(SCS("ListPushFront"), CACHE,
         json_pack("{s:s, s:s, s:i, s:b, s:i}", "list_name", hexs("l2"), "value", hexs("front"),
                   "ttl_milliseconds", 60000, "refresh_ttl", 1, "truncate_back_to_size", 3));

  mim_bytes vals[] = {
      {(const uint8_t *)"a", 1}, {(const uint8_t *)"", 0}, {(const uint8_t *)"ccc", 3}};
  len = 0;
  assert_int_equal(mim_list_concat_back(W.cli, CACHE, "l2", vals, 3, &o, &len), MIM_OK);
  assert_int_equal(len, PUSH_LENGTH);
  expect(SCS("ListConcatenateBack"), CACHE,
         json_pack("{s:s, s:[s,s,s], s:i, s:b, s:i}", "list_name", hexs("l2"), "values", "61", "",
                   "636363", "ttl_milliseconds", 60000, "refresh_ttl", 1, "truncate_front_to_size",
                   3));

  assert_int_equal(mim_list_concat_front(W.cli, CACHE, "l2", vals, 1, &o, NULL), MIM_OK);
  expect(SCS("ListConcatenateFront"), CACHE,
         json_pack("{s:s, s:[s], s:i, s:b, s:i}", "list_name", hexs("l2"), "values", "61",
                   "ttl_milliseconds", 60000, "refresh_ttl", 1, "truncate_back_to_size", 3));
  expect_no_more();
}

/* The server's canned found answer (server.js FETCH_VALUES). */
static void expect_canned_values(const mim_list_values *v) {
  static const char *const want[] = {"wire-a", "wire-b", "wire-\xc3\xa9"};
  assert_true(v->found);
  assert_int_equal(v->count, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(v->values[i].len, strlen(want[i]));
    assert_memory_equal(v->values[i].data, want[i], v->values[i].len);
  }
}

static void test_list_fetch(void **state) {
  (void)state;
  mim_list_values *v = NULL;
  /* Whole list: both ends unbounded. */
  assert_int_equal(mim_list_fetch(W.cli, CACHE, "chat-1", NULL, &v), MIM_OK);
  expect_canned_values(v);
  mim_list_values_free(v);
  expect(SCS("ListFetch"), CACHE,
         json_pack("{s:s, s:{}, s:{}}", "list_name", hexs("chat-1"), "unbounded_start",
                   "unbounded_end"));

  /* Negative start, exclusive (negative) end: sint32 on the wire. */
  mim_list_range r = {.has_start = true, .start = -3, .has_end = true, .end = -1};
  assert_int_equal(mim_list_fetch(W.cli, CACHE, "chat-1", &r, &v), MIM_OK);
  expect_canned_values(v);
  mim_list_values_free(v);
  expect(SCS("ListFetch"), CACHE,
         json_pack("{s:s, s:i, s:i}", "list_name", hexs("chat-1"), "inclusive_start", -3,
                   "exclusive_end", -1));

  /* Start 0 is a set oneof member, not an absent field; end unbounded. */
  mim_list_range r0 = {.has_start = true, .start = 0};
  assert_int_equal(mim_list_fetch(W.cli, CACHE, "chat-1", &r0, &v), MIM_OK);
  mim_list_values_free(v);
  expect(SCS("ListFetch"), CACHE,
         json_pack("{s:s, s:i, s:{}}", "list_name", hexs("chat-1"), "inclusive_start", 0,
                   "unbounded_end"));

  /* Unbounded start, positive end. */
  mim_list_range r1 = {.has_end = true, .end = 2};
  assert_int_equal(mim_list_fetch(W.cli, CACHE, "chat-1", &r1, &v), MIM_OK);
  mim_list_values_free(v);
  expect(SCS("ListFetch"), CACHE,
         json_pack("{s:s, s:{}, s:i}", "list_name", hexs("chat-1"), "unbounded_start",
                   "exclusive_end", 2));

  /* The official missing answer. */
  assert_int_equal(mim_list_fetch(W.cli, CACHE, "list-missing", NULL, &v), MIM_OK);
  assert_false(v->found);
  assert_int_equal(v->count, 0);
  mim_list_values_free(v);
  expect(SCS("ListFetch"), CACHE,
         json_pack("{s:s, s:{}, s:{}}", "list_name", hexs("list-missing"), "unbounded_start",
                   "unbounded_end"));
  expect_no_more();
}

static void test_list_other_calls(void **state) {
  (void)state;
  uint32_t n = 0;
  bool found = false;
  assert_int_equal(mim_list_length(W.cli, CACHE, "l3", &n, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(n, 3);
  expect(SCS("ListLength"), CACHE, json_pack("{s:s}", "list_name", hexs("l3")));

  mim_list_range r = {.has_start = true, .start = -2};
  mim_list_write_options o = {
      .struct_size = sizeof(mim_list_write_options), .ttl_ms = 9000, .refresh_ttl = true};
  assert_int_equal(mim_list_retain(W.cli, CACHE, "l3", &r, &o, &n), MIM_OK);
  assert_int_equal(n, 2);
  expect(SCS("ListRetain"), CACHE,
         json_pack("{s:s, s:i, s:{}, s:i, s:b}", "list_name", hexs("l3"), "inclusive_start", -2,
                   "unbounded_end", "ttl_milliseconds", 9000, "refresh_ttl", 1));

  assert_int_equal(mim_list_remove_value(W.cli, CACHE, "l3", "gone", 4, &n), MIM_OK);
  assert_int_equal(n, 2);
  expect(SCS("ListRemove"), CACHE,
         json_pack("{s:s, s:s}", "list_name", hexs("l3"), "all_elements_with_value", hexs("gone")));

  mim_list_erase_range er[] = {{.begin = 1, .count = 2}, {.begin = 5, .count = 1}};
  assert_int_equal(mim_list_erase(W.cli, CACHE, "l3", er, 2, &n), MIM_OK);
  assert_int_equal(n, 1);
  expect(SCS("ListErase"), CACHE,
         json_pack("{s:s, s:{s:[{s:i,s:i},{s:i,s:i}]}}", "list_name", hexs("l3"), "some", "ranges",
                   "begin_index", 1, "count", 2, "begin_index", 5, "count", 1));
  assert_int_equal(mim_list_erase(W.cli, CACHE, "l3", NULL, 0, &n), MIM_OK);
  expect(SCS("ListErase"), CACHE, json_pack("{s:s, s:{}}", "list_name", hexs("l3"), "all"));

  uint8_t *val = NULL;
  size_t vlen = 0;
  assert_int_equal(mim_list_pop_front(W.cli, CACHE, "l3", &val, &vlen, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(vlen, 10);
  assert_memory_equal(val, "wire-front", 10);
  free(val);
  expect(SCS("ListPopFront"), CACHE, json_pack("{s:s}", "list_name", hexs("l3")));
  assert_int_equal(mim_list_pop_back(W.cli, CACHE, "l3", &val, &vlen, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(vlen, 9);
  assert_memory_equal(val, "wire-back", 9);
  free(val);
  expect(SCS("ListPopBack"), CACHE, json_pack("{s:s}", "list_name", hexs("l3")));

  assert_int_equal(mim_item_delete(W.cli, CACHE, "l3"), MIM_OK);
  expect(SCS("Delete"), CACHE, json_pack("{s:s}", "cache_key", hexs("l3")));
  uint64_t ttl = 0;
  assert_int_equal(mim_item_ttl(W.cli, CACHE, "l3", &ttl, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(ttl, 12345);
  expect(SCS("ItemGetTtl"), CACHE, json_pack("{s:s}", "cache_key", hexs("l3")));
  expect_no_more();
}

/* ---- topics ---- */

#define PUBLISH "/cache_client.pubsub.Pubsub/Publish"
#define SUBSCRIBE "/cache_client.pubsub.Pubsub/Subscribe"

static void test_publish(void **state) {
  (void)state;
  assert_int_equal(mim_topic_publish_text(W.cli, CACHE, "chat-1", "hello \xe2\x9c\x93"), MIM_OK);
  expect(PUBLISH, CACHE,
         json_pack("{s:s, s:s, s:{s:s}}", "cache_name", CACHE, "topic", "chat-1", "value", "text",
                   "hello \xe2\x9c\x93"));

  const uint8_t bin[] = {0x00, 0x01, 0xfe, 0xff, 'z'};
  assert_int_equal(mim_topic_publish_binary(W.cli, CACHE, "chat-1-input", bin, sizeof bin), MIM_OK);
  expect(PUBLISH, CACHE,
         json_pack("{s:s, s:s, s:{s:s}}", "cache_name", CACHE, "topic", "chat-1-input", "value",
                   "binary", hex(bin, sizeof bin)));

  /* An empty text is still a set text member (the oneof says which kind it is). */
  assert_int_equal(mim_topic_publish_text(W.cli, CACHE, "chat-1", ""), MIM_OK);
  expect(PUBLISH, CACHE,
         json_pack("{s:s, s:s, s:{s:s}}", "cache_name", CACHE, "topic", "chat-1", "value", "text",
                   ""));
  expect_no_more();
}

/* Items a subscription received, for waiting on them from the test thread. */
typedef struct sub_log {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
  uint64_t seq[16];
  uint64_t page[16];
  char text[16][64];
  char publisher[16][32];
  int heartbeats;
  int gaps;
  uint64_t gap[3]; /* last discontinuity: last, next, page */
} sub_log;

static void sub_log_init(sub_log *l) {
  memset(l, 0, sizeof *l);
  pthread_mutex_init(&l->mu, NULL);
  cmn_cond_init_monotonic(&l->cv);
}

static void sub_log_destroy(sub_log *l) {
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
}

static void on_item(void *user, const mim_topic_item *it) {
  sub_log *l = user;
  pthread_mutex_lock(&l->mu);
  if (l->n < 16) {
    l->seq[l->n] = it->sequence;
    l->page[l->n] = it->sequence_page;
    snprintf(l->text[l->n], sizeof l->text[0], "%s%s", it->is_binary ? "bin:" : "",
             (const char *)it->data);
    snprintf(l->publisher[l->n], sizeof l->publisher[0], "%s", it->publisher_id);
    l->n++;
  }
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

static void on_heartbeat(void *user) {
  sub_log *l = user;
  pthread_mutex_lock(&l->mu);
  l->heartbeats++;
  pthread_mutex_unlock(&l->mu);
}

/* Waits until at least n items arrived; false on timeout. */
static bool wait_items(sub_log *l, int n) {
  struct timespec dl = cmn_deadline_after_ms(WAIT_TIMEOUT_MS);
  pthread_mutex_lock(&l->mu);
  int rc = 0;
  while (l->n < n && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&l->cv, &l->mu, &dl);
  bool ok = l->n >= n;
  pthread_mutex_unlock(&l->mu);
  return ok;
}

static void expect_item(sub_log *l, int i, uint64_t seq, uint64_t page, const char *topic) {
  char want[64];
  snprintf(want, sizeof want, "wire-item-%s", topic);
  pthread_mutex_lock(&l->mu);
  uint64_t s = l->seq[i], p = l->page[i];
  char text[64], pub[32];
  memcpy(text, l->text[i], sizeof text);
  memcpy(pub, l->publisher[i], sizeof pub);
  pthread_mutex_unlock(&l->mu);
  assert_int_equal(s, seq);
  assert_int_equal(p, page);
  assert_string_equal(text, want);
  assert_string_equal(pub, PUBLISHER);
}

static json_t *subscribe_request(const char *topic, uint64_t resume_at, uint64_t page) {
  return json_pack("{s:s, s:s, s:I, s:I}", "cache_name", CACHE, "topic", topic,
                   "resume_at_topic_sequence_number", (json_int_t)resume_at, "sequence_page",
                   (json_int_t)page);
}

/* Fresh subscribe (resume_at 0), then the server ends the stream after one item: the
 * library's own re-subscription must ask for the next sequence number in that page. */
static void test_subscribe_fresh_then_resume(void **state) {
  (void)state;
  sub_log l;
  sub_log_init(&l);
  mim_subscription_callbacks cb = {.struct_size = sizeof(mim_subscription_callbacks),
                                   .on_item = on_item,
                                   .on_heartbeat = on_heartbeat,
                                   .user = &l};
  mim_subscribe_options o = {.struct_size = sizeof(mim_subscribe_options),
                             .backoff_initial_ms = 20,
                             .backoff_max_ms = 200};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(W.cli, CACHE, "chat-1", &o, &cb, &sub), MIM_OK);
  bool got = wait_items(&l, 2);
  mim_topic_unsubscribe(sub);
  assert_true(got);
  expect(SUBSCRIBE, CACHE, subscribe_request("chat-1", 0, 0));
  expect_item(&l, 0, FIRST_SEQUENCE, FIRST_PAGE, "chat-1");
  /* The resumed stream's record was written before its item was sent. */
  expect(SUBSCRIBE, CACHE, subscribe_request("chat-1", FIRST_SEQUENCE + 1, FIRST_PAGE));
  expect_item(&l, 1, FIRST_SEQUENCE + 1, FIRST_PAGE, "chat-1");
  sub_log_destroy(&l);
  expect_no_more();
}

/* An explicit resume position goes out as given (large values, above 32 bits). */
static void test_subscribe_resume_at(void **state) {
  (void)state;
  sub_log l;
  sub_log_init(&l);
  mim_subscription_callbacks cb = {
      .struct_size = sizeof(mim_subscription_callbacks), .on_item = on_item, .user = &l};
  const uint64_t at = 5000000000ULL, page = 4294967301ULL;
  mim_subscribe_options o = {
      .struct_size = sizeof(mim_subscribe_options), .resume_at = at, .sequence_page = page};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(W.cli, CACHE, "room", &o, &cb, &sub), MIM_OK);
  bool got = wait_items(&l, 1);
  mim_topic_unsubscribe(sub);
  assert_true(got);
  expect(SUBSCRIBE, CACHE, subscribe_request("room", at, page));
  expect_item(&l, 0, at, page, "room");
  sub_log_destroy(&l);
  expect_no_more();
}

static void on_discontinuity(void *user, uint64_t last, uint64_t next, uint64_t page) {
  sub_log *l = user;
  pthread_mutex_lock(&l->mu);
  l->gaps++;
  l->gap[0] = last;
  l->gap[1] = next;
  l->gap[2] = page;
  pthread_mutex_unlock(&l->mu);
}

/* The official _Discontinuity reaches the callback (new_sequence is the wire's
 * new_topic_sequence + 1, see topics.h) before the item that follows it. */
static void test_subscribe_discontinuity(void **state) {
  (void)state;
  sub_log l;
  sub_log_init(&l);
  mim_subscription_callbacks cb = {.struct_size = sizeof(mim_subscription_callbacks),
                                   .on_item = on_item,
                                   .on_discontinuity = on_discontinuity,
                                   .user = &l};
  mim_subscribe_options o = {
      .struct_size = sizeof(mim_subscribe_options), .resume_at = 100, .sequence_page = 2};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(W.cli, CACHE, "gap", &o, &cb, &sub), MIM_OK);
  bool got = wait_items(&l, 1);
  mim_topic_unsubscribe(sub);
  assert_true(got);
  expect(SUBSCRIBE, CACHE, subscribe_request("gap", 100, 2));
  assert_int_equal(l.gaps, 1);
  assert_int_equal(l.gap[0], 99);
  assert_int_equal(l.gap[1], 110);
  assert_int_equal(l.gap[2], 3);
  expect_item(&l, 0, 110, 3, "gap");
  sub_log_destroy(&l);
  expect_no_more();
}

/* ---- tokens ---- */

#define TOKEN "/token.Token/GenerateDisposableToken"

/* CachePermissions / TopicPermissions as the official decoder names them (roles:
 * CacheReadWrite 1, CacheReadOnly 2; TopicReadWrite 1, TopicReadOnly 2, TopicWriteOnly 3). */
static json_t *cache_grant(int role, const char *cache, const char *key) {
  return json_pack("{s:{s:i, s:{s:s}, s:{s:s}}}", "cache_permissions", "role", role,
                   "cache_selector", "cache_name", cache, "item_selector", "key", hexs(key));
}

static json_t *topic_grant(int role, const char *cache, const char *topic) {
  return json_pack("{s:{s:i, s:{s:s}, s:{s:s}}}", "topic_permissions", "role", role,
                   "cache_selector", "cache_name", cache, "topic_selector", "topic_name", topic);
}

static json_t *token_request(uint32_t secs, const char *token_id, json_t *grants) {
  return json_pack("{s:{s:i}, s:s, s:{s:{s:o}}, s:s}", "expires", "valid_for_seconds", (int)secs,
                   "auth_token", "wire-test-token", "permissions", "explicit", "permissions",
                   grants, "token_id", token_id);
}

static void expect_minted(const mim_disposable_token *t) {
  assert_string_equal(t->api_key, "wire-minted-key");
  assert_string_equal(t->endpoint, "wire.example.com");
  assert_int_equal(t->valid_until, 1893456000);
  mim_credentials *c = NULL;
  assert_int_equal(mim_credentials_from_string(t->credential, &c), MIM_OK);
  assert_string_equal(mim_credentials_auth_token(c), "wire-minted-key");
  assert_string_equal(mim_credentials_endpoint(c), "wire.example.com");
  mim_credentials_free(c);
}

static void test_token_client_only(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(W.cli, CACHE, "chat-1", 3600, "alice", &t),
                   MIM_OK);
  expect_minted(t);
  mim_disposable_token_free(t);
  expect(TOKEN, NULL,
         token_request(
             3600, "alice",
             json_pack("[o,o,o]", cache_grant(1, CACHE, "chat-1"), topic_grant(1, CACHE, "chat-1"),
                       cache_grant(1, CACHE, "chat-1-read")))); /* read markers (PROTOCOL 8) */
  expect_no_more();
}

static void test_token_moderated(void **state) {
  (void)state;
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_moderated(W.cli, CACHE, "chat-1", 600, "bob", &t), MIM_OK);
  expect_minted(t);
  mim_disposable_token_free(t);
  expect(TOKEN, NULL,
         token_request(600, "bob",
                       json_pack("[o,o,o,o]", cache_grant(2, CACHE, "chat-1"),
                                 topic_grant(3, CACHE, "chat-1-input"),
                                 topic_grant(2, CACHE, "chat-1"),
                                 cache_grant(1, CACHE, "chat-1-read"))));
  expect_no_more();
}

/* Selectors the two policies do not use: all caches, all items/topics, prefixes. */
static void test_token_selectors(void **state) {
  (void)state;
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_WRITE_ONLY, NULL, NULL, false), MIM_OK);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, "chat-", true), MIM_OK);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, NULL, NULL, false),
                   MIM_OK);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, "room-", true),
                   MIM_OK);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate(W.cli, p, 60, NULL, &t), MIM_OK);
  mim_permissions_free(p);
  expect_minted(t);
  mim_disposable_token_free(t);
  json_t *grants =
      json_pack("[{s:{s:i, s:{}, s:{}}}, {s:{s:i, s:{s:s}, s:{s:s}}}, {s:{s:i, s:{}, s:{}}},"
                " {s:{s:i, s:{s:s}, s:{s:s}}}]",
                "cache_permissions", "role", 3, "all_caches", "all_items", /* */
                "cache_permissions", "role", 2, "cache_selector", "cache_name", CACHE,
                "item_selector", "key_prefix", hexs("chat-"),               /* */
                "topic_permissions", "role", 2, "all_caches", "all_topics", /* */
                "topic_permissions", "role", 1, "cache_selector", "cache_name", CACHE,
                "topic_selector", "topic_name_prefix", "room-");
  expect(TOKEN, NULL, token_request(60, "", grants));
  expect_no_more();
}

/* ---- ping and control plane ---- */

static void test_ping_and_control(void **state) {
  (void)state;
  assert_int_equal(mim_client_ping(W.cli), MIM_OK);
  expect("/cache_client.Ping/Ping", NULL, json_object());
  assert_int_equal(mim_cache_create(W.cli, "new-cache"), MIM_OK);
  expect("/control_client.ScsControl/CreateCache", NULL,
         json_pack("{s:s}", "cache_name", "new-cache"));
  assert_int_equal(mim_cache_delete(W.cli, "new-cache"), MIM_OK);
  expect("/control_client.ScsControl/DeleteCache", NULL,
         json_pack("{s:s}", "cache_name", "new-cache"));
  expect_no_more();
}

/* ---- schema ---- */

/* The static half: every message, field, oneof, enum value and method of lib/proto
 * against the official classes (tests/interop/wire/schema.js), including the ones no call
 * above exercises. */
static void test_schema_matches_official(void **state) {
  (void)state;
  char dir[] = "/tmp/mim-wire-schema-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char pb[64], script[512];
  snprintf(pb, sizeof pb, "%s/ours.pb", dir);
  snprintf(script, sizeof script, "%s/schema.js", wire_dir());
  const char *protoc = getenv("PROTOC_C");
  if (protoc == NULL || protoc[0] == '\0')
    protoc = "protoc-c";
  char *const gen[] = {"sh",
                       "-c",
                       "\"$0\" --descriptor_set_out=\"$1\" --include_imports -Ilib/proto "
                       "lib/proto/*.proto",
                       (char *)protoc,
                       pb,
                       NULL};
  int gen_rc = run_to_end(gen);
  char *const cmp[] = {"timeout", "60", "node", script, pb, NULL};
  int cmp_rc = gen_rc == 0 ? run_to_end(cmp) : -1;
  unlink(pb);
  rmdir(dir);
  if (gen_rc != 0)
    fail_msg("%s could not describe lib/proto (exit %d; run from the repository root)", protoc,
             gen_rc);
  if (cmp_rc != 0)
    fail_msg("lib/proto differs from the official schema (see MISMATCH lines above)");
}

#define T(f) cmocka_unit_test_setup(f, skip_old_records)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_schema_matches_official),
      T(test_list_push_back),
      T(test_list_push_front_and_concat),
      T(test_list_fetch),
      T(test_list_other_calls),
      T(test_publish),
      T(test_subscribe_fresh_then_resume),
      T(test_subscribe_resume_at),
      T(test_subscribe_discontinuity),
      T(test_token_client_only),
      T(test_token_moderated),
      T(test_token_selectors),
      T(test_ping_and_control),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
