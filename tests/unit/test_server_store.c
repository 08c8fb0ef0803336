/* mim-local's cache lists and names under attack and at their limits (issue 13): a
 * ListErase of many overlapping ranges costs O(list) once and leaves the cache to other
 * callers (item 4); a request that changes nothing writes nothing to the data directory,
 * a cut at one end a few bytes (item 9); a NUL inside a string field is refused on every
 * path, never cut at (item 12); ListCaches pages by next_token, CreateCache stops at 10
 * caches and list names at 4 KiB (item 10). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "cacheclient.pb-c.h"
#include "controlclient.pb-c.h"
#include "raw_client.h"
#include "time_scale.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE "store"
#define M_CONCAT "/cache_client.Scs/ListConcatenateBack"
#define M_FETCH "/cache_client.Scs/ListFetch"
#define M_LENGTH "/cache_client.Scs/ListLength"
#define M_ERASE "/cache_client.Scs/ListErase"
#define M_RETAIN "/cache_client.Scs/ListRetain"
#define M_REMOVE "/cache_client.Scs/ListRemove"

/* ---- helpers ---- */

static ProtobufCBinaryData name_of(const char *s) {
  return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

/* Appends values from..from+n-1 to list; value i is i (4 bytes, big-endian) padded with
 * 'x' to vlen bytes. */
static void concat(mim_transport *t, const char *list, uint32_t from, size_t n, size_t vlen) {
  ProtobufCBinaryData *v = calloc(n, sizeof *v);
  uint8_t *buf = calloc(n, vlen);
  assert_non_null(v);
  assert_non_null(buf);
  for (size_t i = 0; i < n; i++) {
    uint8_t *d = buf + i * vlen;
    uint32_t x = from + (uint32_t)i;
    memset(d, 'x', vlen);
    d[0] = (uint8_t)(x >> 24);
    d[1] = (uint8_t)(x >> 16);
    d[2] = (uint8_t)(x >> 8);
    d[3] = (uint8_t)x;
    v[i] = (ProtobufCBinaryData){vlen, d};
  }
  CacheClient__ListConcatenateBackRequest r = CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  r.list_name = name_of(list);
  r.values = v;
  r.n_values = n;
  assert_int_equal(raw_call(t, M_CONCAT, CACHE, &r.base, NULL, NULL), MIM_OK);
  free(v);
  free(buf);
}

static uint32_t index_of(const ProtobufCBinaryData *v) {
  assert_true(v->len >= 4);
  return (uint32_t)v->data[0] << 24 | (uint32_t)v->data[1] << 16 | (uint32_t)v->data[2] << 8 |
         v->data[3];
}

/* The list's value indices into out (malloc'd); -1 when the list is missing. */
static long fetch_indices(mim_transport *t, const char *list, uint32_t **out) {
  CacheClient__ListFetchRequest r = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  r.list_name = name_of(list);
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(t, M_FETCH, CACHE, &r.base, &resp, &len), MIM_OK);
  CacheClient__ListFetchResponse *m = cache_client____list_fetch_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  long n = -1;
  *out = NULL;
  if (m->list_case == CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND) {
    n = (long)m->found->n_values;
    *out = calloc(m->found->n_values + 1, sizeof **out);
    assert_non_null(*out);
    for (size_t i = 0; i < m->found->n_values; i++) {
      (*out)[i] = index_of(&m->found->values[i]);
    }
  }
  cache_client____list_fetch_response__free_unpacked(m, NULL);
  return n;
}

/* ListErase of n ranges; the status, and the length left (-1 if missing) in *left. */
static mim_status erase(mim_transport *t, const char *list, const uint32_t (*ranges)[2], size_t n,
                        long *left) {
  CacheClient__ListRange *rs = calloc(n + 1, sizeof *rs);
  CacheClient__ListRange **ptrs = calloc(n + 1, sizeof *ptrs);
  assert_non_null(rs);
  assert_non_null(ptrs);
  for (size_t i = 0; i < n; i++) {
    cache_client____list_range__init(&rs[i]);
    rs[i].begin_index = ranges[i][0];
    rs[i].count = ranges[i][1];
    ptrs[i] = &rs[i];
  }
  CacheClient__ListEraseRequest__ListRanges some =
      CACHE_CLIENT____LIST_ERASE_REQUEST____LIST_RANGES__INIT;
  some.ranges = ptrs;
  some.n_ranges = n;
  CacheClient__ListEraseRequest r = CACHE_CLIENT____LIST_ERASE_REQUEST__INIT;
  r.list_name = name_of(list);
  r.erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME;
  r.some = &some;
  uint8_t *resp = NULL;
  size_t len = 0;
  mim_status st = raw_call(t, M_ERASE, CACHE, &r.base, &resp, &len);
  free(rs);
  free(ptrs);
  if (st == MIM_OK && left) {
    CacheClient__ListEraseResponse *m =
        cache_client____list_erase_response__unpack(NULL, len, resp);
    assert_non_null(m);
    *left = m->list_case == CACHE_CLIENT____LIST_ERASE_RESPONSE__LIST_FOUND
                ? (long)m->found->list_length
                : -1;
    cache_client____list_erase_response__free_unpacked(m, NULL);
  }
  free(resp);
  return st;
}

static mim_status list_length(mim_transport *t, const char *list) {
  CacheClient__ListLengthRequest r = CACHE_CLIENT____LIST_LENGTH_REQUEST__INIT;
  r.list_name = name_of(list);
  return raw_call(t, M_LENGTH, CACHE, &r.base, NULL, NULL);
}

/* ---- item 4: ListErase with many overlapping ranges ---- */

typedef struct erase_job {
  mim_transport *t;
  const uint32_t (*ranges)[2];
  size_t n;
  mim_status st;
  long left;
  int64_t took_ms;
  volatile int done; /* read by the main thread after the join, or polled as a hint */
} erase_job;

static void *erase_thread(void *arg) {
  erase_job *j = arg;
  int64_t t0 = cmn_mono_ms();
  j->st = erase(j->t, "big", j->ranges, j->n, &j->left);
  j->took_ms = cmn_mono_ms() - t0;
  __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* The attack of issue 13 item 4, bounded: 100,000 entries, then one ListErase of 10,000
 * ranges that each cover almost the whole list. Before the fix each range marked its
 * elements one by one under the cache lock (10^9 steps, seconds); now the ranges are
 * merged first and the list is walked once. Meanwhile another connection's Ping and
 * ListLength on the same cache must answer within 100 ms (scaled). */
static void test_erase_many_overlapping_ranges(void **state) {
  (void)state;
  enum { N = 100000, BATCH = 2000, R = 10000 };
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .log_level = "warn"};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  mim_transport *a = raw_connect_own(srv, NULL), *b = raw_connect_own(srv, NULL);
  assert_non_null(a);
  assert_non_null(b);
  for (uint32_t i = 0; i < N; i += BATCH) {
    concat(a, "big", i, BATCH, 8);
  }
  /* Every range starts in [0, 100) and runs to 200 before the end: their union is
   * [0, N - 101), so the last 101 entries stay. */
  uint32_t(*ranges)[2] = calloc(R, sizeof *ranges);
  assert_non_null(ranges);
  for (size_t i = 0; i < R; i++) {
    ranges[i][0] = (uint32_t)(i % 100);
    ranges[i][1] = N - 200;
  }
  long rss0 = raw_proc_kib(srv->pid, "VmRSS");
  erase_job job = {.t = a, .ranges = (const uint32_t(*)[2])ranges, .n = R};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, erase_thread, &job), 0);
  int64_t worst = 0;
  int probes = 0;
  while (!__atomic_load_n(&job.done, __ATOMIC_ACQUIRE) || probes < 5) {
    int64_t t0 = cmn_mono_ms();
    assert_int_equal(raw_ping(b), MIM_OK);
    assert_int_equal(list_length(b, "big"), MIM_OK);
    int64_t dt = cmn_mono_ms() - t0;
    worst = dt > worst ? dt : worst;
    probes++;
  }
  pthread_join(th, NULL);
  printf("erase of %d ranges on %d entries: %lld ms; worst Ping+ListLength meanwhile %lld ms "
         "(%d probes)\n",
         R, N, (long long)job.took_ms, (long long)worst, probes);
  long rss1 = raw_proc_kib(srv->pid, "VmRSS");
  printf("server RSS before the erase %ld KiB, after %ld KiB\n", rss0, rss1);
  /* Within 10%; instrumented runs hold freed memory back (ASan's quarantine), so there
   * the allowance grows with the time scale (30% under sanitizers). */
  assert_true(rss0 > 0 && rss1 > 0 && rss1 * 10 <= rss0 * (10 + test_time_scale()));
  assert_int_equal(job.st, MIM_OK);
  assert_int_equal(job.left, 101);
  assert_true(worst <= (int64_t)100 * test_time_scale());
  assert_true(job.took_ms <= (int64_t)1000 * test_time_scale());
  uint32_t *got = NULL;
  assert_int_equal(fetch_indices(a, "big", &got), 101);
  for (uint32_t i = 0; i < 101; i++) {
    assert_int_equal(got[i], N - 101 + i);
  }
  free(got);
  /* One range more than the limit is refused whole, and the list stays as it was. */
  uint32_t(*many)[2] = calloc(R + 1, sizeof *many);
  assert_non_null(many);
  assert_int_equal(erase(a, "big", (const uint32_t(*)[2])many, R + 1, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(fetch_indices(a, "big", &got), 101);
  free(got);
  free(many);
  free(ranges);
  mim_transport_free(a);
  mim_transport_free(b);
  assert_int_equal(mim_local_stop(srv), 0);
}

/* Overlapping, touching, empty, out-of-range and unsorted ranges erase exactly the
 * union of what they name (checked against a model). */
static void test_erase_ranges_union(void **state) {
  (void)state;
  enum { N = 60, ROUNDS = 40 };
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .log_level = "warn"};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  unsigned seed = 13;
  for (int round = 0; round < ROUNDS; round++) {
    concat(t, "u", 0, N, 6);
    bool dead[N] = {false};
    uint32_t ranges[8][2];
    size_t n = 1 + (size_t)(rand_r(&seed) % 8);
    for (size_t i = 0; i < n; i++) {
      ranges[i][0] = (uint32_t)(rand_r(&seed) % (N + 10));
      ranges[i][1] = i == 7 ? UINT32_MAX : (uint32_t)(rand_r(&seed) % 25);
      for (uint64_t k = ranges[i][0]; k < (uint64_t)ranges[i][0] + ranges[i][1] && k < N; k++) {
        dead[k] = true;
      }
    }
    long left = 0;
    assert_int_equal(erase(t, "u", (const uint32_t(*)[2])ranges, n, &left), MIM_OK);
    uint32_t *got = NULL;
    long have = fetch_indices(t, "u", &got);
    long w = 0;
    for (uint32_t k = 0; k < N; k++) {
      if (!dead[k]) {
        assert_true(w < have);
        assert_int_equal(got[w++], k);
      }
    }
    assert_int_equal(w ? have : -1, w ? w : -1);
    assert_int_equal(left, w ? w : -1);
    free(got);
    if (w) {
      const uint32_t everything[1][2] = {{0, N}};
      assert_int_equal(erase(t, "u", everything, 1, NULL), MIM_OK);
    }
  }
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(srv), 0);
}

/* ---- item 9: only real changes reach the data directory ---- */

typedef struct data_dir {
  char dir[64];  /* temp dir */
  char data[96]; /* the --data-dir inside it */
  char log[128]; /* its log file */
} data_dir;

static void data_dir_make(data_dir *d) {
  snprintf(d->dir, sizeof d->dir, "/tmp/mim-store-XXXXXX");
  assert_non_null(mkdtemp(d->dir));
  snprintf(d->data, sizeof d->data, "%s/data", d->dir);
  snprintf(d->log, sizeof d->log, "%s/log", d->data);
}

static void remove_tree(const char *path) {
  DIR *dir = opendir(path);
  if (!dir) {
    unlink(path);
    return;
  }
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      char sub[512];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      remove_tree(sub);
    }
  }
  closedir(dir);
  rmdir(path);
}

static mim_local *start_persistent(const data_dir *d) {
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {"--data-dir", d->data, "--fsync", "never", NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  return srv;
}

static long file_bytes(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ListRetain of [start, end) (INT32_MIN / INT32_MAX: open); ttl_ms > 0 refreshes. */
static void retain(mim_transport *t, const char *list, int32_t start, int32_t end,
                   uint64_t ttl_ms) {
  CacheClient__ListRetainRequest r = CACHE_CLIENT____LIST_RETAIN_REQUEST__INIT;
  r.list_name = name_of(list);
  if (start != INT32_MIN) {
    r.start_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__START_INDEX_INCLUSIVE_START;
    r.inclusive_start = start;
  }
  if (end != INT32_MAX) {
    r.end_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX_EXCLUSIVE_END;
    r.exclusive_end = end;
  }
  r.ttl_milliseconds = ttl_ms;
  r.refresh_ttl = ttl_ms > 0;
  assert_int_equal(raw_call(t, M_RETAIN, CACHE, &r.base, NULL, NULL), MIM_OK);
}

/* ListRemove of the value concat() made for index i (vlen bytes). */
static void remove_index(mim_transport *t, const char *list, uint32_t i, size_t vlen) {
  uint8_t *v = malloc(vlen);
  assert_non_null(v);
  memset(v, 'x', vlen);
  v[0] = (uint8_t)(i >> 24);
  v[1] = (uint8_t)(i >> 16);
  v[2] = (uint8_t)(i >> 8);
  v[3] = (uint8_t)i;
  CacheClient__ListRemoveRequest r = CACHE_CLIENT____LIST_REMOVE_REQUEST__INIT;
  r.list_name = name_of(list);
  r.remove_case = CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE;
  r.all_elements_with_value = (ProtobufCBinaryData){vlen, v};
  assert_int_equal(raw_call(t, M_REMOVE, CACHE, &r.base, NULL, NULL), MIM_OK);
  free(v);
}

/* Asserts the log grew by at most max bytes since *size, and moves *size on. */
static void assert_log_growth(const data_dir *d, long *size, long max, const char *what) {
  long now = file_bytes(d->log);
  printf("%-40s log %ld -> %ld bytes (+%ld)\n", what, *size, now, now - *size);
  assert_true(now >= *size && now - *size <= max);
  *size = now;
}

/* A 200 KiB list: requests that change nothing leave the log as it was (before: each
 * rewrote the whole list, +200 KiB per request); a cut at one end, a TTL refresh or an
 * emptied list log a few bytes; and after a restart the list is what the requests made
 * of it. */
static void test_unchanged_list_is_not_logged(void **state) {
  (void)state;
  enum { N = 200, VLEN = 1024, SMALL = 256 };
  data_dir d;
  data_dir_make(&d);
  mim_local *srv = start_persistent(&d);
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  concat(t, "L", 0, N, VLEN);
  concat(t, "M", 0, 10, VLEN);
  long size = file_bytes(d.log);
  assert_true(size > N * VLEN);
  remove_index(t, "L", N + 5, VLEN);
  assert_log_growth(&d, &size, 0, "ListRemove of an absent value");
  retain(t, "L", INT32_MIN, INT32_MAX, 0);
  assert_log_growth(&d, &size, 0, "ListRetain of the whole list");
  retain(t, "L", -N - 50, N + 50, 0);
  assert_log_growth(&d, &size, 0, "ListRetain beyond both ends");
  const uint32_t past_end[1][2] = {{N, 100}};
  assert_int_equal(erase(t, "L", past_end, 1, NULL), MIM_OK);
  assert_log_growth(&d, &size, 0, "ListErase past the end");
  retain(t, "L", 50, INT32_MAX, 0); /* 50..199 */
  assert_log_growth(&d, &size, SMALL, "ListRetain cutting the front");
  retain(t, "L", 0, 100, 0); /* 50..149 */
  assert_log_growth(&d, &size, SMALL, "ListRetain cutting the back");
  retain(t, "L", INT32_MIN, INT32_MAX, 3600000);
  assert_log_growth(&d, &size, SMALL, "ListRetain refreshing the TTL only");
  retain(t, "L", 10, 90, 0); /* 60..139: both ends, the whole list is logged */
  remove_index(t, "L", 100, VLEN);
  const uint32_t all_of_m[1][2] = {{0, 10}};
  assert_int_equal(erase(t, "M", all_of_m, 1, NULL), MIM_OK);
  size = file_bytes(d.log);
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(srv), 0);

  srv = start_persistent(&d);
  t = raw_connect(srv, NULL);
  assert_non_null(t);
  uint32_t *got = NULL;
  assert_int_equal(fetch_indices(t, "L", &got), 79);
  for (uint32_t i = 0, want = 60; i < 79; i++, want++) {
    want += want == 100;
    assert_int_equal(got[i], want);
  }
  free(got);
  assert_int_equal(fetch_indices(t, "M", &got), -1);
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(srv), 0);
  remove_tree(d.dir);
}

/* ---- item 12: strings are taken whole or refused, never cut at a NUL ---- */

#define M_PUBLISH "/cache_client.pubsub.Pubsub/Publish"
#define M_SUBSCRIBE "/cache_client.pubsub.Pubsub/Subscribe"
#define M_CREATE "/control_client.ScsControl/CreateCache"
#define M_TOKEN "/token.Token/GenerateDisposableToken"

/* A hand-built request: the library and protobuf-c both cut strings at a NUL. */
typedef struct wire {
  uint8_t b[512];
  size_t n;
} wire;

static void wire_varint(wire *w, uint64_t v) {
  do {
    assert_true(w->n < sizeof w->b);
    w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
}

static void wire_bytes(wire *w, unsigned field, const void *d, size_t len) {
  wire_varint(w, (uint64_t)field << 3 | 2);
  wire_varint(w, len);
  assert_true(w->n + len <= sizeof w->b);
  memcpy(w->b + w->n, d, len);
  w->n += len;
}

/* _PublishRequest {cache_name 1, topic 2, value 3 {text 1 | binary 2}}. */
static mim_status publish_raw(mim_transport *t, const char *cache, size_t clen, const char *topic,
                              size_t tlen, const char *value, size_t vlen, bool text) {
  wire v = {0}, w = {0};
  wire_bytes(&v, text ? 1 : 2, value, vlen);
  wire_bytes(&w, 1, cache, clen);
  wire_bytes(&w, 2, topic, tlen);
  wire_bytes(&w, 3, v.b, v.n);
  char detail[256] = "";
  mim_status st = raw_call_bytes(t, M_PUBLISH, NULL, w.b, w.n, NULL, NULL, detail, sizeof detail);
  printf("publish (%s, %zu bytes): %d %s\n", text ? "text" : "binary", vlen, (int)st, detail);
  return st;
}

/* A NUL inside any string field of a request (nested ones included) is refused with
 * INVALID_ARGUMENT on every path, one test each below. Before, each was cut at the NUL
 * and taken for something else ("abc\0def" delivered as "abc", topic "t\0x" published
 * on "t", cache "new\0x" created as "new", token id "al\0ice" minted as "al"). Bytes
 * fields keep their NULs. */
static mim_local *nul_srv;

static int nul_setup(void **state) {
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .log_level = "warn"};
  *state = NULL;
  if (mim_local_start(&o, &nul_srv) != 0) {
    return -1;
  }
  *state = raw_connect(nul_srv, NULL);
  return *state ? 0 : -1;
}

static int nul_teardown(void **state) {
  if (*state) {
    mim_transport_free(*state);
  }
  return mim_local_stop(nul_srv) == 0 ? 0 : -1;
}

/* Publish: text with a NUL is refused (nothing delivered); binary keeps it. */
static void test_nul_in_published_text(void **state) {
  mim_transport *t = *state;
  raw_sub sub;
  raw_sub_init(&sub);
  assert_int_equal(raw_subscribe(t, CACHE, "t", 0, 0, &sub), MIM_OK);
  assert_true(raw_sub_wait(&sub, RAW_HEARTBEATS, 1, 10000));
  mim_status text = publish_raw(t, CACHE, 5, "t", 1, "abc\0def", 7, true);
  assert_int_equal(publish_raw(t, CACHE, 5, "t", 1, "abc\0def", 7, false), MIM_OK);
  assert_int_equal(publish_raw(t, CACHE, 5, "t", 1, "ok", 2, true), MIM_OK);
  assert_true(raw_sub_wait(&sub, RAW_ITEMS, 2, 10000));
  raw_sub_cancel(&sub);
  assert_true(raw_sub_wait_closed(&sub, 10000));
  pthread_mutex_lock(&sub.mu);
  size_t items = sub.items, bytes = sub.value_bytes;
  uint64_t hash = sub.value_hash;
  pthread_mutex_unlock(&sub.mu);
  printf("subscriber: %zu items, %zu bytes\n", items, bytes);
  assert_int_equal(text, MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(items, 2);
  assert_int_equal(bytes, 9);
  assert_true(hash == raw_value_hash(raw_value_hash(0, (const uint8_t *)"abc\0def", 7),
                                     (const uint8_t *)"ok", 2));
  raw_sub_destroy(&sub);
}

/* Publish: a topic or cache name with a NUL is refused, not taken for its prefix. */
static void test_nul_in_publish_names(void **state) {
  mim_transport *t = *state;
  assert_int_equal(publish_raw(t, CACHE, 5, "t\0x", 3, "a", 1, true), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(publish_raw(t, CACHE "\0x", 7, "t", 1, "a", 1, true), MIM_ERR_INVALID_ARGUMENT);
}

static void test_nul_in_subscribe_topic(void **state) {
  wire w = {0};
  wire_bytes(&w, 1, CACHE, 5);
  wire_bytes(&w, 2, "t\0x", 3);
  assert_int_equal(raw_stream_status(*state, M_SUBSCRIBE, NULL, w.b, w.n, 10000, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
}

static void test_nul_in_created_cache_name(void **state) {
  mim_transport *t = *state;
  wire w = {0};
  wire_bytes(&w, 1, "new\0x", 5);
  mim_status bad = raw_call_bytes(t, M_CREATE, NULL, w.b, w.n, NULL, NULL, NULL, 0);
  w.n = 0;
  wire_bytes(&w, 1, "new", 3); /* not created by the refused request */
  assert_int_equal(raw_call_bytes(t, M_CREATE, NULL, w.b, w.n, NULL, NULL, NULL, 0), MIM_OK);
  assert_int_equal(bad, MIM_ERR_INVALID_ARGUMENT);
}

/* GenerateDisposableToken {expires 1 {valid_for_seconds 1}, permissions 3, token_id 4}. */
static void test_nul_in_token_id(void **state) {
  raw_grant grant; /* the root key may not mint a super-user token */
  size_t perms_len;
  uint8_t *perms = raw_pack(&raw_grant_all_caches(&grant)->base, &perms_len);
  assert_non_null(perms);
  wire ex = {0}, w = {0};
  wire_varint(&ex, 1 << 3);
  wire_varint(&ex, 60);
  wire_bytes(&w, 1, ex.b, ex.n);
  wire_bytes(&w, 3, perms, perms_len);
  free(perms);
  size_t common = w.n;
  wire_bytes(&w, 4, "alice", 5);
  assert_int_equal(raw_call_bytes(*state, M_TOKEN, NULL, w.b, w.n, NULL, NULL, NULL, 0), MIM_OK);
  w.n = common;
  wire_bytes(&w, 4, "al\0ice", 6);
  assert_int_equal(raw_call_bytes(*state, M_TOKEN, NULL, w.b, w.n, NULL, NULL, NULL, 0),
                   MIM_ERR_INVALID_ARGUMENT);
}

/* List values are bytes: a NUL stays. */
static void test_nul_in_list_value(void **state) {
  mim_transport *t = *state;
  CacheClient__ListConcatenateBackRequest r = CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  ProtobufCBinaryData v = {7, (uint8_t *)"abc\0def"};
  r.list_name = name_of("nul");
  r.values = &v;
  r.n_values = 1;
  assert_int_equal(raw_call(t, M_CONCAT, CACHE, &r.base, NULL, NULL), MIM_OK);
  CacheClient__ListFetchRequest fr = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  fr.list_name = name_of("nul");
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(t, M_FETCH, CACHE, &fr.base, &resp, &len), MIM_OK);
  CacheClient__ListFetchResponse *m = cache_client____list_fetch_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  assert_int_equal(m->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND);
  assert_int_equal(m->found->n_values, 1);
  assert_int_equal(m->found->values[0].len, 7);
  assert_memory_equal(m->found->values[0].data, "abc\0def", 7);
  cache_client____list_fetch_response__free_unpacked(m, NULL);
}

/* ---- item 10: ListCaches pages, cache count and list name limits ---- */

#define M_LIST_CACHES "/control_client.ScsControl/ListCaches"
#define M_DELETE "/control_client.ScsControl/DeleteCache"
#define M_PUSH "/cache_client.Scs/ListPushBack"

/* One ListCaches page after token: names appended to all[*n], the next token into next. */
static size_t list_caches_page(mim_transport *t, const char *token, char (*all)[16], size_t *n,
                               size_t cap, char *next, size_t next_cap) {
  ControlClient__ListCachesRequest r = CONTROL_CLIENT____LIST_CACHES_REQUEST__INIT;
  r.next_token = (char *)token;
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(t, M_LIST_CACHES, NULL, &r.base, &resp, &len), MIM_OK);
  ControlClient__ListCachesResponse *m =
      control_client____list_caches_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  size_t got = m->n_cache;
  for (size_t i = 0; i < m->n_cache; i++) {
    assert_true(*n < cap);
    snprintf(all[(*n)++], sizeof all[0], "%s", m->cache[i]->cache_name);
  }
  snprintf(next, next_cap, "%s", m->next_token ? m->next_token : "");
  control_client____list_caches_response__free_unpacked(m, NULL);
  return got;
}

/* 150 caches come back in pages of at most 100, each once, in order, following
 * next_token (before: all in one reply, next_token empty, so ~16,000 caches exceeded a
 * client's 4 MiB receive limit). CreateCache stops at 10, so the caches come from
 * --cache, 50 per start (the helper passes at most 128 arguments), kept in a data
 * directory across the starts. */
static void test_list_caches_pages(void **state) {
  (void)state;
  enum { N = 150, PER_START = 50, PAGE = 100 };
  static char names[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "c%03d", i);
  }
  data_dir d;
  data_dir_make(&d);
  const char *extra[] = {"--data-dir", d.data, "--fsync", "never", NULL};
  mim_local *srv = NULL;
  for (int from = 0; from < N; from += PER_START) {
    const char *caches[PER_START + 1];
    for (int i = 0; i < PER_START; i++) {
      caches[i] = names[from + i];
    }
    caches[PER_START] = NULL;
    mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
    if (srv) {
      assert_int_equal(mim_local_stop(srv), 0);
    }
    assert_int_equal(mim_local_start(&o, &srv), 0);
  }
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  static char seen[N + 1][16];
  size_t n = 0;
  char token[64] = "";
  int pages = 0;
  do {
    size_t got = list_caches_page(t, token, seen, &n, N + 1, token, sizeof token);
    printf("page %d: %zu caches, next_token \"%s\"\n", pages, got, token);
    assert_true(got <= PAGE);
    assert_true(++pages <= N / PAGE + 1);
  } while (token[0]);
  assert_int_equal(n, N);
  for (size_t i = 0; i < N; i++) {
    assert_string_equal(seen[i], names[i]);
  }
  mim_transport_free(t);
  assert_int_equal(mim_local_stop(srv), 0);
  remove_tree(d.dir);
}

static mim_status cache_call(mim_transport *t, const char *method, const char *name) {
  ControlClient__CreateCacheRequest r = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  r.cache_name = (char *)name; /* DeleteCache's request has the same one field */
  return raw_call(t, method, NULL, &r.base, NULL, NULL);
}

/* CreateCache stops at hosted Momento's 10 caches with RESOURCE_EXHAUSTED (those of
 * --cache count too); deleting one makes room again. */
static void test_cache_count_limit(void **state) {
  mim_transport *t = *state; /* nul_setup's server: one cache, CACHE */
  char name[32];
  for (int i = 1; i < 10; i++) {
    snprintf(name, sizeof name, "extra-%d", i);
    assert_int_equal(cache_call(t, M_CREATE, name), MIM_OK);
  }
  assert_int_equal(cache_call(t, M_CREATE, "one-too-many"), MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(cache_call(t, M_CREATE, "extra-1"), MIM_ERR_ALREADY_EXISTS);
  assert_int_equal(cache_call(t, M_DELETE, "extra-1"), MIM_OK);
  assert_int_equal(cache_call(t, M_CREATE, "one-too-many"), MIM_OK);
}

static mim_status push_named(mim_transport *t, size_t name_len) {
  char *name = malloc(name_len);
  assert_non_null(name);
  memset(name, 'n', name_len);
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){name_len, (uint8_t *)name};
  r.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
  mim_status st = raw_call(t, M_PUSH, CACHE, &r.base, NULL, NULL);
  free(name);
  return st;
}

/* List names / cache keys: at most 4096 bytes (before: a 1 MB name was accepted). */
static void test_list_name_limit(void **state) {
  mim_transport *t = *state;
  assert_int_equal(push_named(t, 4096), MIM_OK);
  assert_int_equal(push_named(t, 4097), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(push_named(t, 1000000), MIM_ERR_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_erase_many_overlapping_ranges),
      cmocka_unit_test(test_erase_ranges_union),
      cmocka_unit_test(test_unchanged_list_is_not_logged),
      cmocka_unit_test_setup_teardown(test_nul_in_published_text, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_nul_in_publish_names, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_nul_in_subscribe_topic, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_nul_in_created_cache_name, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_nul_in_token_id, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_nul_in_list_value, nul_setup, nul_teardown),
      cmocka_unit_test(test_list_caches_pages),
      cmocka_unit_test_setup_teardown(test_cache_count_limit, nul_setup, nul_teardown),
      cmocka_unit_test_setup_teardown(test_list_name_limit, nul_setup, nul_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
