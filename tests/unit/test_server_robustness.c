/* mim-local against what the official SDKs never send: garbage protobuf, oversize values
 * and frames, unknown methods, missing metadata, missing/garbled/tampered tokens, and
 * thousands of connects/disconnects. One server (small limits) for the whole file; it
 * must still serve after each test and exit with status 0 on SIGTERM. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "cacheclient.pb-c.h"
#include "cachepubsub.pb-c.h"
#include "controlclient.pb-c.h"
#include "raw_client.h"
#include "time_scale.h"
#include "token.pb-c.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE "robust"
#define MAX_MSG 4096 /* --max-message-bytes */
#define MAX_LIST 8   /* --max-list-length */

#define M_PUSH "/cache_client.Scs/ListPushBack"
#define M_FETCH "/cache_client.Scs/ListFetch"
#define M_PUBLISH "/cache_client.pubsub.Pubsub/Publish"
#define M_SUBSCRIBE "/cache_client.pubsub.Pubsub/Subscribe"
#define M_TOKEN "/token.Token/GenerateDisposableToken"
#define M_CREATE "/control_client.ScsControl/CreateCache"

static mim_local *srv;
static mim_transport *root; /* root token, all planes */

/* The server's HMAC secret is ours (--auth-secret-file), so tests can sign tokens whose
 * payload is malformed: that reaches the server's payload parser behind the MAC check. */
static char g_dir[64];
static char g_secret_file[128];
static uint8_t g_secret[32];
static char g_gen_secret_file[128]; /* one the server generates (test_generated_secret) */

static int write_secret(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/mim-robust-XXXXXX");
  if (!mkdtemp(g_dir)) {
    return -1;
  }
  snprintf(g_secret_file, sizeof g_secret_file, "%s/secret", g_dir);
  FILE *f = fopen(g_secret_file, "w");
  if (!f) {
    return -1;
  }
  for (size_t i = 0; i < sizeof g_secret; i++) {
    g_secret[i] = (uint8_t)(i * 37 + 11);
    fprintf(f, "%02x", g_secret[i]);
  }
  fputc('\n', f);
  return fclose(f) == 0 ? 0 : -1;
}

static int setup(void **state) {
  (void)state;
  if (write_secret() != 0) {
    return -1;
  }
  const char *caches[] = {CACHE, NULL};
  /* --limits none: the extreme values here (a TTL of UINT64_MAX, ...) must be clamped
   * safely when no hosted limit refuses them first (test_server_quotas covers those). */
  const char *extra[] = {"--max-message-bytes",
                         "4096",
                         "--max-list-length",
                         "8",
                         "--limits",
                         "none",
                         "--auth-secret-file",
                         g_secret_file,
                         NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  if (mim_local_start(&o, &srv) != 0) {
    return -1;
  }
  root = raw_connect(srv, NULL);
  return root ? 0 : -1;
}

/* The server must exit by itself with status 0 on SIGTERM. */
static int teardown(void **state) {
  (void)state;
  mim_transport_free(root);
  int rc = mim_local_stop(srv);
  unlink(g_secret_file);
  unlink(g_gen_secret_file);
  rmdir(g_dir);
  if (rc != 0) {
    fprintf(stderr, "mim-local exit status %d (want 0)\n", rc);
  }
  return rc;
}

/* After every test: the server is alive and answers. */
static void assert_serving(void) {
  assert_true(mim_local_alive(srv));
  assert_int_equal(raw_ping(root), MIM_OK);
}

static mim_status push_back(mim_transport *t, const char *cache, const char *list, const void *v,
                            size_t len) {
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name.data = (uint8_t *)list;
  r.list_name.len = strlen(list);
  r.value.data = (uint8_t *)v;
  r.value.len = len;
  return raw_call(t, M_PUSH, cache, &r.base, NULL, NULL);
}

static mim_status fetch(mim_transport *t, const char *cache, const char *list) {
  CacheClient__ListFetchRequest r = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  r.list_name.data = (uint8_t *)list;
  r.list_name.len = strlen(list);
  return raw_call(t, M_FETCH, cache, &r.base, NULL, NULL);
}

/* Status of a Subscribe: the server's refusal, or MIM_OK once it accepted (its first
 * heartbeat came; the stream is then cancelled). *items counts what arrived first. */
static mim_status subscribe_status(mim_transport *t, const char *cache, const char *topic,
                                   size_t *items) {
  /* On the heap and leaked if an assertion fails: its stream may still be running. */
  raw_sub *s = calloc(1, sizeof *s);
  assert_non_null(s);
  raw_sub_init(s);
  mim_status st = raw_subscribe(t, cache, topic, 0, 0, s);
  if (st == MIM_OK) {
    bool accepted = raw_sub_wait(s, RAW_HEARTBEATS, 1, 5000);
    if (accepted) {
      raw_sub_cancel(s);
    }
    assert_true(raw_sub_wait_closed(s, 5000));
    st = accepted ? MIM_OK : s->close_status;
    *items = accepted ? 0 : s->items + s->heartbeats + s->discontinuities;
  }
  raw_sub_destroy(s);
  free(s);
  return st;
}

/* Mints a read-write token for every cache (the root key may; a disposable token never
 * mints); body_token is the body's auth_token. */
static mim_status gen_token(mim_transport *t, const char *body_token) {
  raw_grant grant;
  Token__GenerateDisposableTokenRequest__Expires e =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  e.valid_for_seconds = 60;
  Token__GenerateDisposableTokenRequest r = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  r.expires = &e;
  r.permissions = raw_grant_all_caches(&grant);
  r.auth_token = (char *)body_token;
  r.token_id = (char *)"robust-test";
  return raw_call(t, M_TOKEN, NULL, &r.base, NULL, NULL);
}

static mim_status create_cache(mim_transport *t, const char *name) {
  ControlClient__CreateCacheRequest r = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  r.cache_name = (char *)name;
  return raw_call(t, M_CREATE, NULL, &r.base, NULL, NULL);
}

/* ---- garbage protobuf ---- */

typedef struct blob {
  const char *name;
  const uint8_t *data;
  size_t len;
} blob;

/* Bodies protobuf-c must refuse whatever the message type. */
static const uint8_t g_trunc_len[] = {0x0a, 0x64, 'a', 'b', 'c'}; /* field 1, len 100, 3 bytes */
static const uint8_t g_bad_wire[] = {0x0f, 0x01, 0x02};           /* wire type 7 */
static const uint8_t g_long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; /* 11-byte varint */
static const uint8_t g_trunc_tag[] = {0x80};                                 /* tag cut short */
static const uint8_t g_zero_tag[] = {0x00, 0x00};                            /* field number 0 */
static const blob g_garbage[] = {
    {"truncated length", g_trunc_len, sizeof g_trunc_len},
    {"wire type 7", g_bad_wire, sizeof g_bad_wire},
    {"11-byte varint", g_long_varint, sizeof g_long_varint},
    {"truncated tag", g_trunc_tag, sizeof g_trunc_tag},
    {"field 0", g_zero_tag, sizeof g_zero_tag},
};
#define N_GARBAGE (sizeof g_garbage / sizeof g_garbage[0])

static void test_garbage_unary(void **state) {
  (void)state;
  static const struct {
    const char *method;
    const char *cache;
  } methods[] = {{M_PUSH, CACHE},
                 {M_FETCH, CACHE},
                 {M_PUBLISH, NULL},
                 {M_TOKEN, NULL},
                 {M_CREATE, NULL},
                 {"/cache_client.Scs/ListConcatenateBack", CACHE},
                 {"/cache_client.Scs/ListRemove", CACHE}};
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    for (size_t g = 0; g < N_GARBAGE; g++) {
      char detail[256];
      mim_status st = raw_call_bytes(root, methods[m].method, methods[m].cache, g_garbage[g].data,
                                     g_garbage[g].len, NULL, NULL, detail, sizeof detail);
      if (st != MIM_ERR_INVALID_ARGUMENT) {
        fprintf(stderr, "%s with %s: %s (%s)\n", methods[m].method, g_garbage[g].name,
                mim_status_name(st), detail);
      }
      assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
    }
  }
  /* Control: the same methods accept well-formed requests, so the refusals above were
   * about the bytes. */
  assert_int_equal(push_back(root, CACHE, "garbage-ok", "v", 1), MIM_OK);
  assert_int_equal(fetch(root, CACHE, "garbage-ok"), MIM_OK);
  assert_int_equal(raw_publish(root, CACHE, "garbage-ok", "v", 1, true), MIM_OK);
  assert_int_equal(gen_token(root, NULL), MIM_OK);
  assert_serving();
}

static void test_garbage_subscribe(void **state) {
  (void)state;
  for (size_t g = 0; g < N_GARBAGE; g++) {
    size_t items = 99;
    mim_status st = raw_stream_status(root, M_SUBSCRIBE, NULL, g_garbage[g].data, g_garbage[g].len,
                                      5000, &items);
    if (st != MIM_ERR_INVALID_ARGUMENT) {
      fprintf(stderr, "Subscribe with %s: %s\n", g_garbage[g].name, mim_status_name(st));
    }
    assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(items, 0); /* not even a heartbeat before the refusal */
  }
  /* A well-formed subscription is accepted (it stays open until cancelled). */
  static raw_sub s;
  raw_sub_init(&s);
  assert_int_equal(raw_subscribe(root, CACHE, "garbage-ok", 0, 0, &s), MIM_OK);
  assert_true(raw_sub_wait(&s, RAW_HEARTBEATS, 1, 5000));
  raw_sub_cancel(&s);
  assert_true(raw_sub_wait_closed(&s, 5000));
  assert_int_equal(s.close_status, MIM_ERR_CANCELLED);
  raw_sub_destroy(&s);
  assert_serving();
}

/* Valid protobuf that is semantically empty: INVALID_ARGUMENT, not a crash. */
static void test_empty_requests(void **state) {
  (void)state;
  const char *unary[][2] = {{M_PUSH, CACHE}, {M_PUBLISH, NULL}, {M_TOKEN, NULL}, {M_CREATE, NULL}};
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
    char detail[256];
    mim_status st =
        raw_call_bytes(root, unary[i][0], unary[i][1], NULL, 0, NULL, NULL, detail, sizeof detail);
    if (st != MIM_ERR_INVALID_ARGUMENT) {
      fprintf(stderr, "empty %s: %s (%s)\n", unary[i][0], mim_status_name(st), detail);
    }
    assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
  }
  size_t items = 99;
  assert_int_equal(raw_stream_status(root, M_SUBSCRIBE, NULL, NULL, 0, 5000, &items),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(items, 0);
  assert_serving();
}

/* ---- limits ---- */

static void test_oversize_publish(void **state) {
  (void)state;
  char *big = malloc(MAX_MSG + 1);
  assert_non_null(big);
  memset(big, 'x', MAX_MSG + 1);
  assert_int_equal(raw_publish(root, CACHE, "big", big, MAX_MSG, true), MIM_OK);
  assert_int_equal(raw_publish(root, CACHE, "big", big, MAX_MSG + 1, true),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(raw_publish(root, CACHE, "big", big, MAX_MSG, false), MIM_OK);
  assert_int_equal(raw_publish(root, CACHE, "big", big, MAX_MSG + 1, false),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  free(big);
  assert_serving();
}

static void test_oversize_list(void **state) {
  (void)state;
  char *big = malloc(MAX_MSG + 1);
  assert_non_null(big);
  memset(big, 'y', MAX_MSG + 1);
  assert_int_equal(push_back(root, CACHE, "big-list", big, MAX_MSG), MIM_OK);
  assert_int_equal(push_back(root, CACHE, "big-list", big, MAX_MSG + 1),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  free(big);
  /* --max-list-length: MAX_LIST items fit, one more does not. */
  for (int i = 1; i < MAX_LIST; i++) {
    assert_int_equal(push_back(root, CACHE, "big-list", "v", 1), MIM_OK);
  }
  assert_int_equal(push_back(root, CACHE, "big-list", "v", 1), MIM_ERR_RESOURCE_EXHAUSTED);
  /* ... unless the push truncates back to the limit. */
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name.data = (uint8_t *)"big-list";
  r.list_name.len = 8;
  r.value.data = (uint8_t *)"w";
  r.value.len = 1;
  r.truncate_front_to_size = MAX_LIST;
  uint8_t *resp = NULL;
  size_t rlen = 0;
  assert_int_equal(raw_call(root, M_PUSH, CACHE, &r.base, &resp, &rlen), MIM_OK);
  CacheClient__ListPushBackResponse *pr =
      cache_client____list_push_back_response__unpack(NULL, rlen, resp);
  assert_non_null(pr);
  assert_int_equal(pr->list_length, MAX_LIST);
  cache_client____list_push_back_response__free_unpacked(pr, NULL);
  free(resp);
  assert_serving();
}

/* An 8 MiB gRPC message, far above the server's receive limit: an error, not a crash. */
static void test_huge_frame(void **state) {
  (void)state;
  size_t n = 8u << 20;
  uint8_t *huge = malloc(n);
  assert_non_null(huge);
  memset(huge, 'z', n);
  /* Both as a value inside a valid message and as raw bytes. */
  int64_t t0 = cmn_mono_ms();
  mim_status st = push_back(root, CACHE, "huge", huge, n);
  assert_int_not_equal(st, MIM_OK);
  fprintf(stderr, "8 MiB ListPushBack: %s in %lld ms\n", mim_status_name(st),
          (long long)(cmn_mono_ms() - t0));
  assert_int_equal(st, MIM_ERR_RESOURCE_EXHAUSTED);
  st = raw_publish(root, CACHE, "huge", huge, n, false);
  assert_int_equal(st, MIM_ERR_RESOURCE_EXHAUSTED);
  st = raw_call_bytes(root, M_FETCH, CACHE, huge, n, NULL, NULL, NULL, 0);
  assert_int_not_equal(st, MIM_OK);
  size_t items = 99;
  st = raw_stream_status(root, M_SUBSCRIBE, NULL, huge, n, 5000, &items);
  assert_int_not_equal(st, MIM_OK);
  assert_int_not_equal(st, MIM_ERR_DEADLINE_EXCEEDED);
  assert_int_equal(items, 0);
  free(huge);
  assert_serving();
  /* The connection that carried the huge frames still works for ordinary calls. */
  assert_int_equal(push_back(root, CACHE, "huge-after", "ok", 2), MIM_OK);
}

/* ---- extreme indices and TTLs ---- */

/* Count of values ListFetch returns for [start, end) (Python-slice semantics), or -1 when
 * the list is missing. The call must succeed. */
static int fetch_count(const char *list, int32_t start, int32_t end) {
  CacheClient__ListFetchRequest r = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  r.list_name.data = (uint8_t *)list;
  r.list_name.len = strlen(list);
  r.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START;
  r.inclusive_start = start;
  r.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_EXCLUSIVE_END;
  r.exclusive_end = end;
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(root, M_FETCH, CACHE, &r.base, &resp, &len), MIM_OK);
  CacheClient__ListFetchResponse *fr = cache_client____list_fetch_response__unpack(NULL, len, resp);
  assert_non_null(fr);
  int n = fr->list_case == CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND
              ? (int)fr->found->n_values
              : -1;
  cache_client____list_fetch_response__free_unpacked(fr, NULL);
  free(resp);
  return n;
}

static void fill5(const char *list) {
  CacheClient__DeleteRequest d = CACHE_CLIENT____DELETE_REQUEST__INIT;
  d.cache_key.data = (uint8_t *)list;
  d.cache_key.len = strlen(list);
  assert_int_equal(raw_call(root, "/cache_client.Scs/Delete", CACHE, &d.base, NULL, NULL), MIM_OK);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(push_back(root, CACHE, list, "v", 1), MIM_OK);
  }
}

static void test_extreme_indices(void **state) {
  (void)state;
  fill5("idx");
  assert_int_equal(fetch_count("idx", INT32_MIN, INT32_MAX), 5);
  assert_int_equal(fetch_count("idx", INT32_MAX, INT32_MIN), 0);
  assert_int_equal(fetch_count("idx", INT32_MIN, INT32_MIN), 0);
  assert_int_equal(fetch_count("idx", INT32_MAX, INT32_MAX), 0);
  assert_int_equal(fetch_count("idx", -1, INT32_MAX), 1);
  assert_int_equal(fetch_count("idx", INT32_MIN, -1), 4);
  assert_int_equal(fetch_count("idx", -6, 5), 5);
  assert_int_equal(fetch_count("idx", 4, -1), 0);
  /* Erase far beyond the end, with a count that overflows 32-bit begin + count. */
  CacheClient__ListRange r1 = CACHE_CLIENT____LIST_RANGE__INIT;
  r1.begin_index = UINT32_MAX;
  r1.count = UINT32_MAX;
  CacheClient__ListRange r2 = CACHE_CLIENT____LIST_RANGE__INIT;
  r2.begin_index = 3;
  r2.count = UINT32_MAX; /* 3 + count wraps in 32 bits */
  CacheClient__ListRange *rs[] = {&r1, &r2};
  CacheClient__ListEraseRequest__ListRanges some =
      CACHE_CLIENT____LIST_ERASE_REQUEST____LIST_RANGES__INIT;
  some.n_ranges = 2;
  some.ranges = rs;
  CacheClient__ListEraseRequest e = CACHE_CLIENT____LIST_ERASE_REQUEST__INIT;
  e.list_name.data = (uint8_t *)"idx";
  e.list_name.len = 3;
  e.erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME;
  e.some = &some;
  assert_int_equal(raw_call(root, "/cache_client.Scs/ListErase", CACHE, &e.base, NULL, NULL),
                   MIM_OK);
  assert_int_equal(fetch_count("idx", INT32_MIN, INT32_MAX), 3); /* indices 3 and 4 erased */
  /* Retain with extreme bounds. */
  CacheClient__ListRetainRequest rt = CACHE_CLIENT____LIST_RETAIN_REQUEST__INIT;
  rt.list_name.data = (uint8_t *)"idx";
  rt.list_name.len = 3;
  rt.start_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__START_INDEX_INCLUSIVE_START;
  rt.inclusive_start = INT32_MIN;
  rt.end_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX_EXCLUSIVE_END;
  rt.exclusive_end = INT32_MAX;
  rt.ttl_milliseconds = UINT64_MAX; /* the largest TTL: clamped, not overflowed */
  assert_int_equal(raw_call(root, "/cache_client.Scs/ListRetain", CACHE, &rt.base, NULL, NULL),
                   MIM_OK);
  assert_int_equal(fetch_count("idx", INT32_MIN, INT32_MAX), 3);
  /* A push with the largest TTL keeps the list alive (not expired by a wrapped clock). */
  CacheClient__ListPushBackRequest pb = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  pb.list_name.data = (uint8_t *)"idx";
  pb.list_name.len = 3;
  pb.value.data = (uint8_t *)"w";
  pb.value.len = 1;
  pb.ttl_milliseconds = UINT64_MAX;
  pb.refresh_ttl = true;
  assert_int_equal(raw_call(root, M_PUSH, CACHE, &pb.base, NULL, NULL), MIM_OK);
  assert_int_equal(fetch_count("idx", INT32_MIN, INT32_MAX), 4);
  rt.inclusive_start = INT32_MAX;
  rt.exclusive_end = INT32_MIN;
  assert_int_equal(raw_call(root, "/cache_client.Scs/ListRetain", CACHE, &rt.base, NULL, NULL),
                   MIM_OK);
  int left = fetch_count("idx", INT32_MIN, INT32_MAX);
  assert_true(left == 0 || left == -1); /* emptied (an empty list may read as missing) */
  assert_serving();
}

/* ---- methods, metadata, caches ---- */

/* Regression (fuzz_server_request): a ListConcatenateBack/Front with no values at all
 * on a list that does not exist did pointer arithmetic on the list's NULL array (UBSan).
 * It must answer, change nothing, and the list must work normally afterwards. */
static void test_concat_zero_values(void **state) {
  (void)state;
  static const char *const methods[] = {"/cache_client.Scs/ListConcatenateBack",
                                        "/cache_client.Scs/ListConcatenateFront"};
  /* list_name "z0" (field 1), ttl_milliseconds 2 (field 3), no values (field 2). */
  static const uint8_t req[] = {0x0a, 0x02, 'z', '0', 0x18, 0x02};
  for (size_t i = 0; i < 2; i++) {
    char detail[256] = "";
    mim_status st =
        raw_call_bytes(root, methods[i], CACHE, req, sizeof req, NULL, NULL, detail, sizeof detail);
    if (st != MIM_OK && st != MIM_ERR_INVALID_ARGUMENT) {
      fprintf(stderr, "%s with no values: %s (%s)\n", methods[i], mim_status_name(st), detail);
    }
    assert_true(st == MIM_OK || st == MIM_ERR_INVALID_ARGUMENT);
  }
  assert_int_equal(push_back(root, CACHE, "z0", "v", 1), MIM_OK);
  assert_int_equal(fetch_count("z0", 0, 10), 1);
  assert_serving();
}

/* protobuf-c decodes a field numbered 0 written with a two-byte tag but cannot re-encode
 * it into something it decodes again: the server must refuse to mint such a token
 * rather than hand out one it will later reject (found by fuzz_server_request). */
static void test_mint_unencodable_permissions(void **state) {
  (void)state;
  static const uint8_t req[] = {
      0x0a, 0x02, 0x08, 0x3c, /* expires { valid_for_seconds: 60 } */
      0x1a, 0x0f,             /* permissions (15 bytes) */
      0x12, 0x0a,             /*   explicit */
      0x0a, 0x08,             /*     permissions[0] */
      0x0a, 0x06,             /*       cache_permissions */
      0x08, 0x01,             /*         role: CacheReadWrite */
      0x12, 0x00,             /*         all_caches {} */
      0x22, 0x00,             /*         all_items {} */
      0x80, 0x00, 0x01,       /*   field 0 (varint 1) with a two-byte tag */
  };
  char detail[256] = "";
  uint8_t *resp = NULL;
  size_t resp_len = 0;
  mim_status st =
      raw_call_bytes(root, M_TOKEN, NULL, req, sizeof req, &resp, &resp_len, detail, sizeof detail);
  free(resp);
  if (st != MIM_ERR_INVALID_ARGUMENT)
    fprintf(stderr, "mint with field 0: %s (%s)\n", mim_status_name(st), detail);
  assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
  assert_serving();
}

static void test_unknown_method(void **state) {
  (void)state;
  const char *methods[] = {"/cache_client.Scs/NoSuchMethod",
                           "/cache_client.Scs/",
                           "/cache_client.pubsub.Pubsub/Unsubscribe",
                           "/no.such.Service/Call",
                           "/token.Token/Revoke",
                           "/control_client.ScsControl/FlushCache"};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    char detail[256];
    mim_status st =
        raw_call_bytes(root, methods[i], CACHE, NULL, 0, NULL, NULL, detail, sizeof detail);
    if (st != MIM_ERR_UNIMPLEMENTED) {
      fprintf(stderr, "%s: %s (%s)\n", methods[i], mim_status_name(st), detail);
    }
    assert_int_equal(st, MIM_ERR_UNIMPLEMENTED);
  }
  /* A 1000-character method name. */
  char longm[1024] = "/cache_client.Scs/";
  size_t off = strlen(longm);
  memset(longm + off, 'L', 1000 - off);
  longm[1000] = '\0';
  assert_int_equal(raw_call_bytes(root, longm, CACHE, NULL, 0, NULL, NULL, NULL, 0),
                   MIM_ERR_UNIMPLEMENTED);
  /* A known method with a suffix must not be matched by prefix. */
  assert_int_equal(raw_call_bytes(root, M_PUBLISH "X", NULL, NULL, 0, NULL, NULL, NULL, 0),
                   MIM_ERR_UNIMPLEMENTED);
  assert_serving();
}

static void test_missing_cache_metadata(void **state) {
  (void)state;
  assert_int_equal(push_back(root, NULL, "l", "v", 1), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(fetch(root, NULL, "l"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(fetch(root, "", "l"), MIM_ERR_INVALID_ARGUMENT);
  /* Missing list name is a bad argument too. */
  assert_int_equal(fetch(root, CACHE, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_serving();
}

static void test_missing_cache(void **state) {
  (void)state;
  assert_int_equal(push_back(root, "no-such-cache", "l", "v", 1), MIM_ERR_NOT_FOUND);
  assert_int_equal(fetch(root, "no-such-cache", "l"), MIM_ERR_NOT_FOUND);
  assert_int_equal(raw_publish(root, "no-such-cache", "t", "v", 1, true), MIM_ERR_NOT_FOUND);
  size_t items = 99;
  assert_int_equal(subscribe_status(root, "no-such-cache", "t", &items), MIM_ERR_NOT_FOUND);
  assert_int_equal(items, 0);
  /* Publish/subscribe without a cache name or topic are bad arguments. */
  assert_int_equal(raw_publish(root, "", "t", "v", 1, true), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(raw_publish(root, CACHE, "", "v", 1, true), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(subscribe_status(root, CACHE, "", &items), MIM_ERR_INVALID_ARGUMENT);
  assert_serving();
}

/* ---- tokens ---- */

/* Every authenticated kind of call refuses this token with UNAUTHENTICATED. */
static void expect_unauthenticated(const char *token, const char *what) {
  mim_transport *t = raw_connect(srv, token);
  assert_non_null(t);
  mim_status got[6];
  got[0] = push_back(t, CACHE, "auth", "v", 1);
  got[1] = fetch(t, CACHE, "auth");
  got[2] = raw_publish(t, CACHE, "auth", "v", 1, true);
  size_t items = 99;
  got[3] = subscribe_status(t, CACHE, "auth", &items);
  got[4] = gen_token(t, NULL);
  got[5] = create_cache(t, "auth-cache");
  for (size_t i = 0; i < 6; i++) {
    if (got[i] != MIM_ERR_UNAUTHENTICATED) {
      fprintf(stderr, "token %s, call %zu: %s\n", what, i, mim_status_name(got[i]));
    }
    assert_int_equal(got[i], MIM_ERR_UNAUTHENTICATED);
  }
  assert_int_equal(items, 0);
  /* Ping needs no token. */
  assert_int_equal(raw_ping(t), MIM_OK);
  mim_transport_free(t);
}

static void test_bad_tokens(void **state) {
  (void)state;
  char *good = raw_root_token(srv);
  assert_non_null(good);
  size_t n = strlen(good);
  assert_true(n > 20);
  expect_unauthenticated("", "empty");
  expect_unauthenticated("garbage", "garbage");
  expect_unauthenticated("mim1.", "prefix only");
  expect_unauthenticated("mim1.AAAA.BBBB", "short parts");
  /* Tampered: one character changed in the payload, in the MAC, or the MAC cut short. */
  const char *dot2 = strrchr(good, '.');
  assert_non_null(dot2);
  size_t mac_at = (size_t)(dot2 - good) + 1;
  size_t flips[] = {6, mac_at / 2, mac_at + 3};
  for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
    char *bad = strdup(good);
    assert_non_null(bad);
    bad[flips[i]] = bad[flips[i]] == 'A' ? 'B' : 'A';
    expect_unauthenticated(bad, "flipped char");
    free(bad);
  }
  char *cut = strdup(good);
  assert_non_null(cut);
  cut[n - 4] = '\0';
  expect_unauthenticated(cut, "MAC cut short");
  free(cut);
  /* A token sent in the request body of GenerateDisposableToken is checked the same way. */
  mim_transport *anon = raw_connect(srv, "");
  assert_non_null(anon);
  assert_int_equal(gen_token(anon, good), MIM_OK);
  char *bad = strdup(good);
  assert_non_null(bad);
  bad[mac_at + 1] = bad[mac_at + 1] == 'A' ? 'B' : 'A';
  assert_int_equal(gen_token(anon, bad), MIM_ERR_UNAUTHENTICATED);
  free(bad);
  mim_transport_free(anon);
  /* And the genuine token still works everywhere. */
  assert_int_equal(push_back(root, CACHE, "auth", "v", 1), MIM_OK);
  assert_int_equal(create_cache(root, "auth-cache"), MIM_OK);
  free(good);
  assert_serving();
}

/* ---- signed tokens with bad payloads ---- */

static char *b64url(const uint8_t *d, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char *out = malloc(n / 3 * 4 + 5);
  assert_non_null(out);
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    size_t k = n - i < 3 ? n - i : 3;
    if (k > 1) {
      v |= (uint32_t)d[i + 1] << 8;
    }
    if (k > 2) {
      v |= d[i + 2];
    }
    for (size_t j = 0; j < k + 1; j++) {
      out[o++] = abc[(v >> (18 - 6 * j)) & 63];
    }
  }
  out[o] = '\0';
  return out;
}

/* "mim1." + b64url(payload) + "." + b64url(HMAC-SHA256(secret, what precedes the dot)). */
static char *sign(const uint8_t *payload, size_t n) {
  char *p64 = b64url(payload, n);
  size_t plen = strlen(p64);
  char *signed_part = malloc(plen + 6);
  assert_non_null(signed_part);
  snprintf(signed_part, plen + 6, "mim1.%s", p64);
  free(p64);
  uint8_t mac[32];
  unsigned mlen = 0;
  assert_non_null(HMAC(EVP_sha256(), g_secret, sizeof g_secret, (const uint8_t *)signed_part,
                       strlen(signed_part), mac, &mlen));
  assert_int_equal(mlen, 32);
  char *m64 = b64url(mac, 32);
  size_t tl = strlen(signed_part) + 1 + strlen(m64) + 1;
  char *tok = malloc(tl);
  assert_non_null(tok);
  snprintf(tok, tl, "%s.%s", signed_part, m64);
  free(signed_part);
  free(m64);
  return tok;
}

/* version 1, expiry (u64 BE), id (u16 BE length + bytes), then perms bytes. */
static size_t payload(uint8_t *buf, uint8_t version, uint64_t expires, const char *id,
                      const uint8_t *perms, size_t perms_len) {
  size_t idl = strlen(id);
  buf[0] = version;
  for (int i = 0; i < 8; i++) {
    buf[1 + i] = (uint8_t)(expires >> (56 - 8 * i));
  }
  buf[9] = (uint8_t)(idl >> 8);
  buf[10] = (uint8_t)idl;
  memcpy(buf + 11, id, idl);
  if (perms_len) {
    memcpy(buf + 11 + idl, perms, perms_len);
  }
  return 11 + idl + perms_len;
}

static const uint8_t g_su_perms[] = {0x08, 0x00}; /* Permissions{super_user = SuperUser} */

static char *forged(uint8_t version, uint64_t expires, const uint8_t *perms, size_t n) {
  uint8_t buf[512];
  assert_true(n < 400);
  return sign(buf, payload(buf, version, expires, "forged", perms, n));
}

static void test_signed_bad_payloads(void **state) {
  (void)state;
  uint64_t now = (uint64_t)time(NULL);
  /* Control: a correctly signed super-user payload works, so the refusals below are about
   * the payloads and not about our signing. */
  char *ok = forged(1, now + 3600, g_su_perms, sizeof g_su_perms);
  mim_transport *t = raw_connect(srv, ok);
  assert_non_null(t);
  assert_int_equal(push_back(t, CACHE, "forged", "v", 1), MIM_OK);
  assert_int_equal(raw_publish(t, CACHE, "forged", "v", 1, true), MIM_OK);
  assert_int_equal(create_cache(t, "forged-cache"), MIM_OK);
  mim_transport_free(t);
  free(ok);

  char *bad[16];
  size_t nb = 0;
  bad[nb++] = forged(1, now - 10, g_su_perms, sizeof g_su_perms);   /* expired */
  bad[nb++] = forged(1, 0, g_su_perms, sizeof g_su_perms);          /* expiry 0 */
  bad[nb++] = forged(2, now + 3600, g_su_perms, sizeof g_su_perms); /* unknown version */
  bad[nb++] = forged(0, now + 3600, g_su_perms, sizeof g_su_perms);
  static const uint8_t junk[] = {0x0a, 0x64, 0x01}; /* perms: length 100, 1 byte */
  bad[nb++] = forged(1, now + 3600, junk, sizeof junk);
  static const uint8_t wire7[] = {0x0f};
  bad[nb++] = forged(1, now + 3600, wire7, sizeof wire7);
  bad[nb++] = sign((const uint8_t *)"", 0);             /* empty payload */
  bad[nb++] = sign((const uint8_t *)"\x01\x00\x00", 3); /* shorter than the header */
  uint8_t buf[64];
  size_t n = payload(buf, 1, now + 3600, "x", g_su_perms, sizeof g_su_perms);
  buf[9] = 0xff; /* id length 65535 in a 14-byte payload */
  buf[10] = 0xff;
  bad[nb++] = sign(buf, n);
  for (size_t i = 0; i < nb; i++) {
    char what[32];
    snprintf(what, sizeof what, "signed bad payload %zu", i);
    expect_unauthenticated(bad[i], what);
    free(bad[i]);
  }
  assert_serving();
}

/* Signed payloads with odd but decodable permissions: the token is valid, its grants
 * are empty or incomplete, so calls are denied (not crashed, not allowed). */
static void test_signed_odd_permissions(void **state) {
  (void)state;
  uint64_t now = (uint64_t)time(NULL);
  PermissionMessages__PermissionsType__CacheSelector sel =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__INIT; /* kind not set */
  PermissionMessages__PermissionsType__TopicSelector tsel =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__INIT; /* kind not set */
  PermissionMessages__PermissionsType__CachePermissions cp =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  cp.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
  cp.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
  cp.cache_selector = &sel;
  PermissionMessages__PermissionsType__TopicPermissions tp =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  tp.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite;
  tp.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
  tp.cache_selector = &sel;
  tp.topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR;
  tp.topic_selector = &tsel;
  PermissionMessages__PermissionsType g1 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  g1.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  g1.cache_permissions = &cp;
  PermissionMessages__PermissionsType g2 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  g2.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  g2.topic_permissions = &tp;
  PermissionMessages__PermissionsType g3 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT; /* empty */
  PermissionMessages__PermissionsType *gs[] = {&g1, &g2, &g3};
  PermissionMessages__ExplicitPermissions ex = PERMISSION_MESSAGES__EXPLICIT_PERMISSIONS__INIT;
  ex.n_permissions = 3;
  ex.permissions = gs;
  PermissionMessages__Permissions p = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  p.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  p.explicit_ = &ex;
  size_t plen;
  uint8_t *pb = raw_pack(&p.base, &plen);
  assert_non_null(pb);
  char *toks[2];
  toks[0] = forged(1, now + 3600, pb, plen);
  toks[1] = forged(1, now + 3600, NULL, 0); /* no permissions at all */
  free(pb);
  for (int i = 0; i < 2; i++) {
    mim_transport *t = raw_connect(srv, toks[i]);
    assert_non_null(t);
    assert_int_equal(push_back(t, CACHE, "odd", "v", 1), MIM_ERR_PERMISSION_DENIED);
    assert_int_equal(fetch(t, CACHE, "odd"), MIM_ERR_PERMISSION_DENIED);
    assert_int_equal(raw_publish(t, CACHE, "odd", "v", 1, true), MIM_ERR_PERMISSION_DENIED);
    size_t items = 99;
    assert_int_equal(subscribe_status(t, CACHE, "odd", &items), MIM_ERR_PERMISSION_DENIED);
    assert_int_equal(create_cache(t, "odd-cache"), MIM_ERR_PERMISSION_DENIED);
    assert_int_equal(gen_token(t, NULL), MIM_ERR_PERMISSION_DENIED);
    mim_transport_free(t);
    free(toks[i]);
  }
  assert_serving();
}

/* A token id too long for the token format is the caller's mistake. */
static void test_token_id_too_long(void **state) {
  (void)state;
  size_t n = 66000; /* > 65535, but the request still fits the receive limit */
  char *id = malloc(n + 1);
  assert_non_null(id);
  memset(id, 'i', n);
  id[n] = '\0';
  PermissionMessages__Permissions p = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  p.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  Token__GenerateDisposableTokenRequest__Expires e =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  e.valid_for_seconds = 60;
  Token__GenerateDisposableTokenRequest r = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  r.expires = &e;
  r.permissions = &p;
  r.token_id = id;
  char detail[256];
  size_t len;
  uint8_t *buf = raw_pack(&r.base, &len);
  assert_non_null(buf);
  mim_status st = raw_call_bytes(root, M_TOKEN, NULL, buf, len, NULL, NULL, detail, sizeof detail);
  if (st != MIM_ERR_INVALID_ARGUMENT) {
    fprintf(stderr, "66000-byte token_id: %s (%s)\n", mim_status_name(st), detail);
  }
  assert_int_equal(st, MIM_ERR_INVALID_ARGUMENT);
  free(buf);
  free(id);
  assert_serving();
}

/* ---- protobuf details hosted Momento enforces ---- */

/* proto3 string fields must be UTF-8: hosted Momento's decoder refuses anything else, and a
 * server that echoes invalid text would break subscribers whose decoders check (Go, Java). */
static void test_invalid_utf8_strings(void **state) {
  (void)state;
  static const char bad[] = "ok\xff\xfe";
  /* The same bytes as a binary value are fine; valid multi-byte UTF-8 text too. */
  assert_int_equal(raw_publish(root, CACHE, "utf8", bad, sizeof bad - 1, false), MIM_OK);
  assert_int_equal(raw_publish(root, CACHE, "t\xc3\xa9l\xc3\xa9", "\xe2\x82\xac", 3, true), MIM_OK);
  mim_status got[3];
  got[0] = raw_publish(root, CACHE, "utf8", bad, sizeof bad - 1, true); /* text value */
  got[1] = raw_publish(root, CACHE, "top\xc3", "v", 1, true);           /* topic name */
  size_t items = 99;
  got[2] = subscribe_status(root, CACHE, "sub\xff", &items);
  const char *what[] = {"text value", "publish topic name", "subscribe topic name"};
  for (int i = 0; i < 3; i++) {
    if (got[i] != MIM_ERR_INVALID_ARGUMENT) {
      fprintf(stderr, "invalid UTF-8 in %s: %s\n", what[i], mim_status_name(got[i]));
    }
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(got[i], MIM_ERR_INVALID_ARGUMENT);
  }
  assert_serving();
}

/* Unknown fields are skipped (proto3): newer clients may send fields we do not know. */
static void test_unknown_fields_ignored(void **state) {
  (void)state;
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name.data = (uint8_t *)"unknown-fields";
  r.list_name.len = 14;
  r.value.data = (uint8_t *)"v";
  r.value.len = 1;
  size_t len;
  uint8_t *packed = raw_pack(&r.base, &len);
  assert_non_null(packed);
  /* field 99 varint 7, field 100 length-delimited "xyz", field 101 fixed32 */
  static const uint8_t extra[] = {0x98, 0x06, 0x07, 0xa2, 0x06, 0x03, 'x', 'y',
                                  'z',  0xad, 0x06, 1,    2,    3,    4};
  uint8_t *buf = malloc(len + sizeof extra);
  assert_non_null(buf);
  memcpy(buf, packed, len);
  memcpy(buf + len, extra, sizeof extra);
  char detail[256];
  mim_status st = raw_call_bytes(root, M_PUSH, CACHE, buf, len + sizeof extra, NULL, NULL, detail,
                                 sizeof detail);
  if (st != MIM_OK) {
    fprintf(stderr, "push with unknown fields: %s (%s)\n", mim_status_name(st), detail);
  }
  assert_int_equal(st, MIM_OK);
  free(buf);
  free(packed);
  assert_serving();
}

/* Oversized metadata is refused by gRPC itself; the server stays up. */
static void test_huge_metadata(void **state) {
  (void)state;
  size_t n = 64 * 1024;
  char *tok = malloc(n + 1);
  assert_non_null(tok);
  memset(tok, 'A', n);
  tok[n] = '\0';
  mim_transport *t = raw_connect(srv, tok);
  assert_non_null(t);
  assert_int_not_equal(push_back(t, CACHE, "meta", "v", 1), MIM_OK);
  mim_transport_free(t);
  char *cache = malloc(n + 1);
  assert_non_null(cache);
  memset(cache, 'c', n);
  cache[n] = '\0';
  /* gRPC may drop the connection that carried oversized headers: use a throwaway one. */
  t = raw_connect(srv, NULL);
  assert_non_null(t);
  assert_int_not_equal(push_back(t, cache, "meta", "v", 1), MIM_OK);
  mim_transport_free(t);
  /* A long but legal cache name (1 KiB) is simply not found. */
  cache[1024] = '\0';
  mim_status st = push_back(root, cache, "meta", "v", 1);
  if (st != MIM_ERR_NOT_FOUND && st != MIM_ERR_INVALID_ARGUMENT) {
    fprintf(stderr, "1 KiB cache name: %s (%s)\n", mim_status_name(st), mim_last_error_detail());
  }
  assert_true(st == MIM_ERR_NOT_FOUND || st == MIM_ERR_INVALID_ARGUMENT);
  free(cache);
  free(tok);
  assert_serving();
}

/* ---- connection churn ---- */

typedef struct worker {
  pthread_t th;
  atomic_bool stop;
  atomic_long ok;
  atomic_long failed;
  mim_status first_failure;
} worker;

/* Keeps one client busy (push + fetch) while others connect and disconnect. */
static void *worker_main(void *arg) {
  worker *w = arg;
  mim_transport *t = raw_connect_own(srv, NULL);
  if (!t) {
    atomic_fetch_add(&w->failed, 1);
    return NULL;
  }
  while (!atomic_load(&w->stop)) {
    mim_status a = raw_publish(t, CACHE, "churn", "x", 1, true);
    mim_status b = fetch(t, CACHE, "churn");
    if (a == MIM_OK && b == MIM_OK) {
      atomic_fetch_add(&w->ok, 1);
    } else {
      if (atomic_fetch_add(&w->failed, 1) == 0) {
        w->first_failure = a != MIM_OK ? a : b;
      }
    }
  }
  mim_transport_free(t);
  return NULL;
}

static void test_connect_churn(void **state) {
  (void)state;
  enum { N = 2000 };
  static worker w;
  int base = raw_proc_sockets(srv->pid);
  assert_true(base >= 2); /* the listener and root's connection */
  assert_int_equal(pthread_create(&w.th, NULL, worker_main, &w), 0);
  int64_t t0 = cmn_mono_ms();
  int pings_ok = 0;
  for (int i = 0; i < N; i++) {
    mim_transport *t = raw_connect_own(srv, NULL); /* a real TCP connect each time */
    assert_non_null(t);
    if (raw_ping(t) == MIM_OK) {
      pings_ok++;
    }
    mim_transport_free(t);
    assert_true(cmn_mono_ms() - t0 < 60000 * test_time_scale()); /* bounded */
  }
  int64_t elapsed = cmn_mono_ms() - t0;
  atomic_store(&w.stop, true);
  pthread_join(w.th, NULL);
  fprintf(stderr,
          "churn: %d connect+ping+free in %lld ms (%.2f ms each); worker %ld ok, %ld failed\n", N,
          (long long)elapsed, (double)elapsed / N, atomic_load(&w.ok), atomic_load(&w.failed));
  /* Every connection the churn opened is closed by the server again (no socket leak). */
  int left = raw_wait_sockets_at_most(srv->pid, base, 10000);
  fprintf(stderr, "server sockets: %d before, %d after\n", base, left);
  assert_true(left <= base);
  assert_int_equal(pings_ok, N);
  assert_int_equal(atomic_load(&w.failed), 0);
  assert_true(atomic_load(&w.ok) > 0);
  assert_serving();
}

/* ---- a generated secret file ---- */

/* Reads the whole (small) file into buf as a string; its length, or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    return -1;
  }
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return (ssize_t)n;
}

static mim_local *start_with_secret(const char *path) {
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {"--auth-secret-file", path, NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  mim_local *s = NULL;
  assert_int_equal(mim_local_start(&o, &s), 0);
  return s;
}

static mim_status fetch_with(const mim_local *s, const char *token) {
  mim_transport *t = raw_connect(s, token);
  assert_non_null(t);
  mim_status st = fetch(t, CACHE, "gen-secret");
  mim_transport_free(t);
  return st;
}

/* A missing --auth-secret-file is created (0600, 64 hex digits and a newline) and read
 * back by the next server: tokens of the first verify on the second, not on another. */
static void test_generated_secret(void **state) {
  (void)state;
  snprintf(g_gen_secret_file, sizeof g_gen_secret_file, "%s/generated", g_dir);
  mim_local *a = start_with_secret(g_gen_secret_file);
  char *tok = raw_root_token(a);
  assert_non_null(tok);
  assert_int_equal(mim_local_stop(a), 0);
  struct stat st;
  assert_int_equal(stat(g_gen_secret_file, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  char text[100], again[100];
  ssize_t n = read_small_file(g_gen_secret_file, text, sizeof text);
  assert_int_equal(n, 65);
  assert_int_equal(strspn(text, "0123456789abcdef"), 64);
  assert_int_equal(text[64], '\n');
  mim_local *b = start_with_secret(g_gen_secret_file);
  assert_int_equal(fetch_with(b, tok), MIM_OK);
  assert_int_equal(fetch_with(srv, tok), MIM_ERR_UNAUTHENTICATED); /* another secret */
  assert_int_equal(mim_local_stop(b), 0);
  assert_int_equal(read_small_file(g_gen_secret_file, again, sizeof again), 65);
  assert_memory_equal(text, again, 65); /* read, not regenerated */
  free(tok);
  unlink(g_gen_secret_file);
  assert_serving();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_garbage_unary),
      cmocka_unit_test(test_garbage_subscribe),
      cmocka_unit_test(test_empty_requests),
      cmocka_unit_test(test_concat_zero_values),
      cmocka_unit_test(test_mint_unencodable_permissions),
      cmocka_unit_test(test_oversize_publish),
      cmocka_unit_test(test_oversize_list),
      cmocka_unit_test(test_huge_frame),
      cmocka_unit_test(test_extreme_indices),
      cmocka_unit_test(test_unknown_method),
      cmocka_unit_test(test_missing_cache_metadata),
      cmocka_unit_test(test_missing_cache),
      cmocka_unit_test(test_bad_tokens),
      cmocka_unit_test(test_signed_bad_payloads),
      cmocka_unit_test(test_signed_odd_permissions),
      cmocka_unit_test(test_token_id_too_long),
      cmocka_unit_test(test_invalid_utf8_strings),
      cmocka_unit_test(test_unknown_fields_ignored),
      cmocka_unit_test(test_huge_metadata),
      cmocka_unit_test(test_connect_churn),
      cmocka_unit_test(test_generated_secret),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
