/* mim-local --data-dir: caches, lists (values, order, expiry) and topic sequence state
 * survive a clean restart and a kill -9; a torn tail (a record cut short at the end of
 * the log) is dropped and the server starts; any other damage makes it refuse to start
 * and leave the files as they are, unless --recover, which keeps a copy of them and
 * loads every intact record. Each test has its own data
 * directory and a fixed --auth-secret-file, so tokens stay valid across restarts. */
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
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CACHE "persist"
#define WAIT_MS 10000

#define M_PUSH "/cache_client.Scs/ListPushBack"
#define M_FETCH "/cache_client.Scs/ListFetch"
#define M_POP_FRONT "/cache_client.Scs/ListPopFront"
#define M_REMOVE "/cache_client.Scs/ListRemove"
#define M_CREATE "/control_client.ScsControl/CreateCache"
#define M_DELETE "/control_client.ScsControl/DeleteCache"

typedef struct fixture {
  char dir[64];    /* temp dir: secret + data/ */
  char data[96];   /* the --data-dir */
  char secret[96]; /* the --auth-secret-file */
  mim_local *srv;
  mim_transport *t;
} fixture;

static int fixture_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f) {
    return -1;
  }
  snprintf(f->dir, sizeof f->dir, "/tmp/mim-persist-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->data, sizeof f->data, "%s/data", f->dir);
  snprintf(f->secret, sizeof f->secret, "%s/secret", f->dir);
  FILE *fp = fopen(f->secret, "w");
  if (!fp) {
    free(f);
    return -1;
  }
  fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", fp);
  fclose(fp);
  *state = f;
  return 0;
}

static void remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
      }
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int fixture_teardown(void **state) {
  fixture *f = *state;
  if (f->t) {
    mim_transport_free(f->t);
  }
  if (f->srv) {
    mim_local_kill(f->srv);
  }
  remove_tree(f->dir);
  free(f);
  return 0;
}

/* Appends n bytes to the file at path (a torn or bad tail written behind the server). */
static void append_bytes(const char *path, const void *bytes, size_t n) {
  int fd = open(path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, bytes, n), (ssize_t)n);
  close(fd);
}

/* file_size_limit > 0: the server's RLIMIT_FSIZE (see mim_local_opts). */
static void start_limited(fixture *f, const char *fsync_mode, const char *compact_bytes,
                          long long file_size_limit) {
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {
      "--data-dir", f->data,           "--fsync",     fsync_mode, "--auth-secret-file",
      f->secret,    "--compact-bytes", compact_bytes, NULL};
  mim_local_opts o = {.caches = caches,
                      .extra_args = extra,
                      .log_level = "warn",
                      .file_size_limit = file_size_limit};
  assert_int_equal(mim_local_start(&o, &f->srv), 0);
  f->t = raw_connect(f->srv, NULL);
  assert_non_null(f->t);
}

static void start_with(fixture *f, const char *fsync_mode, const char *compact_bytes) {
  start_limited(f, fsync_mode, compact_bytes, 0);
}

static void start(fixture *f, const char *fsync_mode) {
  start_with(f, fsync_mode, "67108864");
}

static void disconnect(fixture *f) {
  mim_transport_free(f->t);
  f->t = NULL;
}

/* SIGTERM: must exit 0. */
static void stop(fixture *f) {
  disconnect(f);
  assert_int_equal(mim_local_stop(f->srv), 0);
  f->srv = NULL;
}

static void kill9(fixture *f) {
  disconnect(f);
  assert_int_equal(mim_local_kill(f->srv), 137);
  f->srv = NULL;
}

static void push(fixture *f, const char *cache, const char *list, const char *v, uint64_t ttl) {
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  r.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
  r.ttl_milliseconds = ttl;
  assert_int_equal(raw_call(f->t, M_PUSH, cache, &r.base, NULL, NULL), MIM_OK);
}

/* The list joined with ',' into out ("<missing>" if it does not exist). */
static void fetch(fixture *f, const char *cache, const char *list, char *out, size_t cap) {
  CacheClient__ListFetchRequest r = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(f->t, M_FETCH, cache, &r.base, &resp, &len), MIM_OK);
  CacheClient__ListFetchResponse *m = cache_client____list_fetch_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  out[0] = '\0';
  if (m->list_case != CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND) {
    snprintf(out, cap, "<missing>");
  } else {
    size_t at = 0;
    for (size_t i = 0; i < m->found->n_values && at + 1 < cap; i++) {
      at += (size_t)snprintf(out + at, cap - at, "%s%.*s", i ? "," : "",
                             (int)m->found->values[i].len, (const char *)m->found->values[i].data);
    }
  }
  cache_client____list_fetch_response__free_unpacked(m, NULL);
}

static void assert_list(fixture *f, const char *cache, const char *list, const char *want) {
  char got[8192];
  fetch(f, cache, list, got, sizeof got);
  assert_string_equal(got, want);
}

static void pop_front(fixture *f, const char *list) {
  CacheClient__ListPopFrontRequest r = CACHE_CLIENT____LIST_POP_FRONT_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  assert_int_equal(raw_call(f->t, M_POP_FRONT, CACHE, &r.base, NULL, NULL), MIM_OK);
}

static void remove_value(fixture *f, const char *list, const char *v) {
  CacheClient__ListRemoveRequest r = CACHE_CLIENT____LIST_REMOVE_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  r.remove_case = CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE;
  r.all_elements_with_value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
  assert_int_equal(raw_call(f->t, M_REMOVE, CACHE, &r.base, NULL, NULL), MIM_OK);
}

static void create_cache(fixture *f, const char *name) {
  ControlClient__CreateCacheRequest r = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  r.cache_name = (char *)name;
  assert_int_equal(raw_call(f->t, M_CREATE, NULL, &r.base, NULL, NULL), MIM_OK);
}

static void delete_cache(fixture *f, const char *name) {
  ControlClient__DeleteCacheRequest r = CONTROL_CLIENT____DELETE_CACHE_REQUEST__INIT;
  r.cache_name = (char *)name;
  assert_int_equal(raw_call(f->t, M_DELETE, NULL, &r.base, NULL, NULL), MIM_OK);
}

/* Subscribes (resume_at, page), publishes one marker and returns the subscriber once
 * the marker arrived; the caller checks and frees it. */
static raw_sub *resume_and_mark(fixture *f, const char *topic, uint64_t resume_at, uint64_t page,
                                uint64_t marker_seq) {
  raw_sub *s = calloc(1, sizeof *s);
  assert_non_null(s);
  raw_sub_init(s);
  assert_int_equal(raw_subscribe(f->t, CACHE, topic, resume_at, page, s), MIM_OK);
  assert_true(raw_sub_wait(s, RAW_HEARTBEATS, 1, WAIT_MS));
  assert_int_equal(raw_publish(f->t, CACHE, topic, "marker", 6, true), MIM_OK);
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    /* marker_seq 0: unknown, the first item is the marker (nothing to replay). */
    bool done = (marker_seq ? s->last_seq >= marker_seq : s->items > 0) || s->closed;
    size_t n = s->items;
    pthread_mutex_unlock(&s->mu);
    if (done || cmn_mono_ms() > deadline) {
      break;
    }
    raw_sub_wait(s, RAW_ITEMS, n + 1, 100);
  }
  raw_sub_cancel(s);
  assert_true(raw_sub_wait_closed(s, WAIT_MS));
  return s;
}

static void free_sub(raw_sub *s) {
  raw_sub_destroy(s);
  free(s);
}

/* Publishes n messages; returns the page and the last sequence number (seen live). */
static void publish_seen(fixture *f, const char *topic, int n, uint64_t *page, uint64_t *last) {
  raw_sub *s = calloc(1, sizeof *s);
  assert_non_null(s);
  raw_sub_init(s);
  assert_int_equal(raw_subscribe(f->t, CACHE, topic, 0, 0, s), MIM_OK);
  assert_true(raw_sub_wait(s, RAW_HEARTBEATS, 1, WAIT_MS));
  for (int i = 0; i < n; i++) {
    char v[16];
    int len = snprintf(v, sizeof v, "m%d", i);
    assert_int_equal(raw_publish(f->t, CACHE, topic, v, (size_t)len, true), MIM_OK);
  }
  assert_true(raw_sub_wait(s, RAW_ITEMS, (size_t)n, WAIT_MS));
  raw_sub_cancel(s);
  assert_true(raw_sub_wait_closed(s, WAIT_MS));
  assert_int_equal(s->bad_order, 0);
  *page = s->page;
  *last = s->last_seq;
  free_sub(s);
}

static void test_clean_restart(void **state) {
  fixture *f = *state;
  start(f, "interval");
  char *token = raw_root_token(f->srv);
  assert_non_null(token);
  create_cache(f, "made");
  push(f, "made", "other", "o1", 0);
  push(f, CACHE, "l1", "a", 60000);
  push(f, CACHE, "l1", "b", 60000);
  push(f, CACHE, "l1", "c", 60000);
  remove_value(f, "l1", "b");
  push(f, CACHE, "l2", "x", 0);
  push(f, CACHE, "l2", "y", 0);
  pop_front(f, "l2");
  int64_t short_pushed = cmn_mono_ms();
  push(f, CACHE, "short", "s", 1500);
  assert_list(f, CACHE, "short", "s");
  uint64_t page = 0, last = 0;
  publish_seen(f, "t", 3, &page, &last);
  assert_int_equal(last, 3);
  assert_true(page > 0);
  stop(f);

  start(f, "interval");
  /* The old root token is still valid (same secret). */
  mim_transport *old = raw_connect(f->srv, token);
  assert_non_null(old);
  assert_int_equal(raw_ping(old), MIM_OK);
  mim_transport_free(old);
  free(token);
  assert_list(f, "made", "other", "o1");
  assert_list(f, CACHE, "l1", "a,c");
  assert_list(f, CACHE, "l2", "y");
  /* The short list's TTL kept counting across the restart: gone 1.5 s after its push. */
  int64_t wait_until = short_pushed + 1600;
  while (cmn_mono_ms() < wait_until) {
    usleep(20000);
  }
  assert_list(f, CACHE, "short", "<missing>");
  /* Resuming right after the last message: nothing lost, no discontinuity, same page. */
  raw_sub *s = resume_and_mark(f, "t", last + 1, page, last + 1);
  assert_int_equal(s->discontinuities, 0);
  assert_int_equal(s->first_seq, last + 1);
  assert_int_equal(s->last_seq, last + 1);
  assert_int_equal(s->items, 1);
  assert_int_equal(s->page, page);
  free_sub(s);
  /* The replay ring was kept at the clean stop: an older resume replays from it. */
  s = resume_and_mark(f, "t", 2, page, last + 2);
  assert_int_equal(s->discontinuities, 0);
  assert_int_equal(s->first_seq, 2);
  assert_int_equal(s->last_seq, last + 2);
  assert_int_equal(s->items, last + 1);
  assert_int_equal(s->bad_order, 0);
  free_sub(s);
  /* A crash now: the ring kept at the earlier clean stop is stale (numbering jumps to
   * the reserved block's end) and must not be replayed as if contiguous. */
  kill9(f);
  start(f, "interval");
  s = resume_and_mark(f, "t", 2, page, 0);
  assert_int_equal(s->discontinuities, 1);
  assert_int_equal(s->items, 1);
  assert_true(s->last_seq > last + 2);
  assert_int_equal(s->page, page);
  free_sub(s);
  stop(f);
}

static int damaged_dirs(const fixture *f, char *out, size_t cap);

/* ---- dictionaries ---- */

#define M_DICT_SET "/cache_client.Scs/DictionarySet"
#define M_DICT_FETCH "/cache_client.Scs/DictionaryFetch"

static void dict_set(fixture *f, const char *dict, const char *field, const char *value,
                     uint64_t ttl) {
  CacheClient__DictionaryFieldValuePair pair = CACHE_CLIENT____DICTIONARY_FIELD_VALUE_PAIR__INIT;
  pair.field = (ProtobufCBinaryData){strlen(field), (uint8_t *)field};
  pair.value = (ProtobufCBinaryData){strlen(value), (uint8_t *)value};
  CacheClient__DictionaryFieldValuePair *items[] = {&pair};
  CacheClient__DictionarySetRequest r = CACHE_CLIENT____DICTIONARY_SET_REQUEST__INIT;
  r.dictionary_name = (ProtobufCBinaryData){strlen(dict), (uint8_t *)dict};
  r.n_items = 1;
  r.items = items;
  r.ttl_milliseconds = ttl;
  assert_int_equal(raw_call(f->t, M_DICT_SET, CACHE, &r.base, NULL, NULL), MIM_OK);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

/* The dictionary as "f=v" pairs, sorted, joined with ',' ("<missing>" if none). */
static void assert_dict(fixture *f, const char *dict, const char *want) {
  CacheClient__DictionaryFetchRequest r = CACHE_CLIENT____DICTIONARY_FETCH_REQUEST__INIT;
  r.dictionary_name = (ProtobufCBinaryData){strlen(dict), (uint8_t *)dict};
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(f->t, M_DICT_FETCH, CACHE, &r.base, &resp, &len), MIM_OK);
  CacheClient__DictionaryFetchResponse *m =
      cache_client____dictionary_fetch_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  char got[1024] = "<missing>";
  if (m->dictionary_case == CACHE_CLIENT____DICTIONARY_FETCH_RESPONSE__DICTIONARY_FOUND) {
    char pairs[16][48];
    size_t n = m->found->n_items;
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
      snprintf(pairs[i], sizeof pairs[i], "%.*s=%.*s", (int)m->found->items[i]->field.len,
               (const char *)m->found->items[i]->field.data, (int)m->found->items[i]->value.len,
               (const char *)m->found->items[i]->value.data);
    }
    qsort(pairs, n, sizeof pairs[0], cmp_str);
    got[0] = '\0';
    for (size_t i = 0; i < n; i++) {
      strcat(got, i ? "," : "");
      strcat(got, pairs[i]);
    }
  }
  cache_client____dictionary_fetch_response__free_unpacked(m, NULL);
  assert_string_equal(got, want);
}

static bool dict_missing(fixture *f, const char *dict) {
  CacheClient__DictionaryFetchRequest r = CACHE_CLIENT____DICTIONARY_FETCH_REQUEST__INIT;
  r.dictionary_name = (ProtobufCBinaryData){strlen(dict), (uint8_t *)dict};
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(f->t, M_DICT_FETCH, CACHE, &r.base, &resp, &len), MIM_OK);
  CacheClient__DictionaryFetchResponse *m =
      cache_client____dictionary_fetch_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(m);
  bool missing = m->dictionary_case != CACHE_CLIENT____DICTIONARY_FETCH_RESPONSE__DICTIONARY_FOUND;
  cache_client____dictionary_fetch_response__free_unpacked(m, NULL);
  return missing;
}

/* Dictionaries come back from the log (after kill -9 with fsync always) and from the
 * snapshot the restart compacted them into; a replaced field keeps its last value, an
 * expired dictionary stays gone, and a deleted one does not come back. */
static void test_dictionaries_survive(void **state) {
  fixture *f = *state;
  start(f, "always");
  dict_set(f, "d1", "alice", "m1", 60000);
  dict_set(f, "d1", "bob", "m2", 60000);
  dict_set(f, "d1", "alice", "m3", 60000);
  dict_set(f, "gone", "x", "y", 60000);
  dict_set(f, "short", "s", "t", 1000);
  CacheClient__DeleteRequest del = CACHE_CLIENT____DELETE_REQUEST__INIT;
  del.cache_key = (ProtobufCBinaryData){4, (uint8_t *)"gone"};
  assert_int_equal(raw_call(f->t, "/cache_client.Scs/Delete", CACHE, &del.base, NULL, NULL),
                   MIM_OK);
  kill9(f);

  start(f, "always"); /* replays the log, then compacts it into a snapshot */
  assert_dict(f, "d1", "alice=m3,bob=m2");
  assert_dict(f, "gone", "<missing>");
  dict_set(f, "d1", "carol", "m4", 60000);
  stop(f);

  start(f, "interval"); /* the snapshot, then the log after it */
  assert_dict(f, "d1", "alice=m3,bob=m2,carol=m4");
  /* Its expiry came back too: it runs out (polled, bounded). */
  int64_t deadline = cmn_mono_ms() + 10000;
  while (!dict_missing(f, "short") && cmn_mono_ms() < deadline) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  assert_dict(f, "short", "<missing>");
  stop(f);
}

static long file_size(const fixture *f, const char *name);

/* A crash mid-append of a dict-set record (the log's last record cut short) is a torn
 * record like any other: dropped, and the server starts with what came before it. */
static void test_torn_dict_record(void **state) {
  fixture *f = *state;
  start(f, "always");
  dict_set(f, "d1", "alice", "m1", 60000);
  kill9(f);
  char log[160];
  snprintf(log, sizeof log, "%s/log", f->data);
  long before = file_size(f, "log");
  start(f, "always");
  stop(f); /* the restart compacted: the log holds only its header now */
  long header = file_size(f, "log");
  start(f, "always");
  dict_set(f, "d1", "bob", "m2", 60000);
  kill9(f);
  long after = file_size(f, "log");
  assert_true(after > header && before > header);
  assert_int_equal(truncate(log, after - 3), 0);
  start(f, "always");
  assert_dict(f, "d1", "alice=m1");
  stop(f);
}

static void test_kill9_with_fsync_always(void **state) {
  fixture *f = *state;
  start(f, "always");
  char want[4096] = "";
  size_t at = 0;
  for (int i = 0; i < 200; i++) {
    char v[16];
    snprintf(v, sizeof v, "v%d", i);
    push(f, CACHE, "k", v, 0);
    at += (size_t)snprintf(want + at, sizeof want - at, "%s%s", i ? "," : "", v);
  }
  uint64_t page = 0, last = 0;
  publish_seen(f, "t", 5, &page, &last);
  kill9(f);

  /* A torn record at the tail: a length that promises more than the file holds. */
  char log_path[160];
  snprintf(log_path, sizeof log_path, "%s/log", f->data);
  const uint8_t torn[] = {0x40, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 4, 'k'};
  append_bytes(log_path, torn, sizeof torn);

  start(f, "always"); /* a torn tail is a crash mid-append, not damage */
  char none[512];
  assert_int_equal(damaged_dirs(f, none, sizeof none), 0);
  assert_list(f, CACHE, "k", want);
  /* After a crash numbering goes on from the reserved block (documented): strictly
   * increasing, same page, and a resume reports the possible gap. */
  raw_sub *s = resume_and_mark(f, "t", last + 1, page, 0);
  assert_int_equal(s->page, page);
  assert_true(s->last_seq > last);
  assert_int_equal(s->discontinuities, 1);
  free_sub(s);
  /* Still writable and consistent after the torn tail was cut. */
  push(f, CACHE, "k", "after", 0);
  stop(f);
  start(f, "never");
  strcat(want, ",after");
  assert_list(f, CACHE, "k", want);
  stop(f);
}

/* Finds needle in the file and flips one byte of it; false if absent. */
static bool corrupt(const char *path, const char *needle) {
  FILE *fp = fopen(path, "r+b");
  if (!fp) {
    return false;
  }
  static uint8_t data[1 << 20];
  size_t n = fread(data, 1, sizeof data, fp);
  size_t k = strlen(needle);
  bool done = false;
  for (size_t i = 0; i + k <= n && !done; i++) {
    if (memcmp(data + i, needle, k) == 0) {
      fseek(fp, (long)i, SEEK_SET);
      fputc(needle[0] ^ 0x20, fp);
      done = true;
    }
  }
  fclose(fp);
  return done;
}

static long file_size(const fixture *f, const char *name) {
  char path[160];
  snprintf(path, sizeof path, "%s/%s", f->data, name);
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static bool copy_file(const char *from, const char *to) {
  static uint8_t data[1 << 20];
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  bool ok = in && out;
  size_t n = ok ? fread(data, 1, sizeof data, in) : 0;
  ok = ok && fwrite(data, 1, n, out) == n;
  if (in) {
    fclose(in);
  }
  if (out) {
    ok = fclose(out) == 0 && ok;
  }
  return ok;
}

/* The log outgrows --compact-bytes: it is folded into the snapshot while serving. */
static void test_compaction_while_serving(void **state) {
  fixture *f = *state;
  start_with(f, "interval", "4096");
  char want[8192] = "";
  size_t at = 0;
  char v[128];
  for (int i = 0; i < 60; i++) {
    snprintf(v, sizeof v, "value-%03d-%080d", i, i);
    push(f, CACHE, "big", v, 0);
    at += (size_t)snprintf(want + at, sizeof want - at, "%s%s", i ? "," : "", v);
  }
  assert_true(file_size(f, "log") > 4096 || file_size(f, "snapshot") > 4096);
  /* The heartbeat thread's once-a-second tick compacts. */
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  while (file_size(f, "log") > 4096 && cmn_mono_ms() < deadline) {
    usleep(20000);
  }
  assert_true(file_size(f, "log") <= 4096);
  /* A compaction ran (the tick may come part-way through the pushes on a slow run, so
   * the rest is still in the log): every value is in one of the two files. */
  assert_true(file_size(f, "snapshot") > 0);
  assert_true(file_size(f, "snapshot") + file_size(f, "log") > 60 * 90);
  assert_list(f, CACHE, "big", want);
  kill9(f);
  start(f, "interval");
  assert_list(f, CACHE, "big", want);
  stop(f);
}

/* A crash after the snapshot's rename but before the log's truncation leaves a log
 * that the snapshot already holds: its older generation makes replay skip it. */
static void test_stale_log_is_skipped(void **state) {
  fixture *f = *state;
  start(f, "interval");
  push(f, CACHE, "once", "a", 0);
  stop(f);
  start(f, "interval"); /* "a" is in the snapshot now; the log gets a push onto it */
  push(f, CACHE, "once", "b", 0);
  kill9(f);
  char log_path[160], old_path[160];
  snprintf(log_path, sizeof log_path, "%s/log", f->data);
  snprintf(old_path, sizeof old_path, "%s/log.old", f->dir);
  assert_true(copy_file(log_path, old_path));
  start(f, "interval"); /* replays, then compacts into a newer snapshot */
  assert_list(f, CACHE, "once", "a,b");
  kill9(f);
  assert_true(copy_file(old_path, log_path));
  start(f, "interval");
  assert_list(f, CACHE, "once", "a,b"); /* not a,b,b */
  stop(f);
}

/* A deleted cache stays deleted; recreated, it starts empty with a new topic page. */
static void test_cache_delete_survives(void **state) {
  fixture *f = *state;
  start(f, "interval");
  create_cache(f, "gone");
  push(f, "gone", "l", "v", 0);
  uint64_t page = 0, last = 0;
  publish_seen(f, "t", 2, &page, &last); /* on CACHE: kept */
  delete_cache(f, "gone");
  stop(f);
  start(f, "interval");
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){1, (uint8_t *)"l"};
  r.value = (ProtobufCBinaryData){1, (uint8_t *)"w"};
  assert_int_equal(raw_call(f->t, M_PUSH, "gone", &r.base, NULL, NULL), MIM_ERR_NOT_FOUND);
  create_cache(f, "gone");
  assert_list(f, "gone", "l", "<missing>");
  raw_sub *s = resume_and_mark(f, "t", last + 1, page, last + 1);
  assert_int_equal(s->discontinuities, 0);
  assert_int_equal(s->page, page);
  free_sub(s);
  stop(f);
}

/* Pushes a value of n bytes (all c) onto cache/list; returns the status. */
static mim_status try_push_to(fixture *f, const char *cache, const char *list, char c, size_t n) {
  static uint8_t v[8192];
  assert_true(n <= sizeof v);
  memset(v, c, n);
  CacheClient__ListPushBackRequest r = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  r.list_name = (ProtobufCBinaryData){strlen(list), (uint8_t *)list};
  r.value = (ProtobufCBinaryData){n, v};
  return raw_call(f->t, M_PUSH, cache, &r.base, NULL, NULL);
}

static mim_status try_push(fixture *f, const char *list, char c, size_t n) {
  return try_push_to(f, CACHE, list, c, n);
}

/* assert_list for long lists. */
static void assert_long_list(fixture *f, const char *list, const char *want) {
  static char got[70000];
  fetch(f, CACHE, list, got, sizeof got);
  assert_string_equal(got, want);
}

/* Appends a value (n times c) to a comma-joined list like the one fetch builds. */
static void want_add(char *want, size_t cap, char c, size_t n) {
  size_t at = strlen(want);
  if (at) {
    assert_true(at + 1 < cap);
    want[at++] = ',';
  }
  assert_true(at + n < cap);
  memset(want + at, c, n);
  want[at + n] = '\0';
}

/* A log that cannot grow (RLIMIT_FSIZE, set in the server only): a write that could
 * not be logged is refused (UNAVAILABLE) and not applied; what was acknowledged, and
 * only that, is there after a restart. The server is started with SIGXFSZ at its
 * default action (kill), as a shell starts it: mim-local must ignore the signal itself
 * and see EFBIG like a full disk, not die. */
static void test_unlogged_write_is_refused(void **state) {
  fixture *f = *state;
  start_limited(f, "always", "67108864", 8192);

  static char want[32768];
  want[0] = '\0';
  mim_status st = MIM_OK;
  int acked = 0;
  for (int i = 0; i < 40 && st == MIM_OK; i++) { /* 40 x 512 bytes: well past the limit */
    st = try_push(f, "k", (char)('a' + i % 26), 512);
    if (st == MIM_OK) {
      want_add(want, sizeof want, (char)('a' + i % 26), 512);
      acked++;
    }
  }
  assert_true(mim_local_alive(f->srv)); /* not killed by SIGXFSZ */
  assert_int_equal(st, MIM_ERR_UNAVAILABLE);
  assert_true(acked > 0);
  assert_long_list(f, "k", want); /* memory agrees with the log */
  /* Fill the rest with the smallest records until they fail too. */
  for (int i = 0; i < 200 && (st = try_push(f, "k", '.', 1)) == MIM_OK; i++) {
    want_add(want, sizeof want, '.', 1);
  }
  assert_int_equal(st, MIM_ERR_UNAVAILABLE);
  /* Records at least as large: a new list, a topic's first publish (the record of its
   * sequence block, 47 bytes like the last push). */
  assert_int_equal(try_push(f, "new", 'n', 1), MIM_ERR_UNAVAILABLE);
  assert_list(f, CACHE, "new", "<missing>");
  assert_int_equal(raw_publish(f->t, CACHE, "topic-x", "m", 1, true), MIM_ERR_UNAVAILABLE);
  /* A cache whose record (62 bytes) does not fit either: not created. */
  const char *long_cache = "a-cache-whose-name-makes-its-record-62-bytes-long";
  ControlClient__CreateCacheRequest cr = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  cr.cache_name = (char *)long_cache;
  assert_int_equal(raw_call(f->t, M_CREATE, NULL, &cr.base, NULL, NULL), MIM_ERR_UNAVAILABLE);
  assert_int_equal(try_push_to(f, long_cache, "l", 'v', 1), MIM_ERR_NOT_FOUND);
  assert_long_list(f, "k", want);
  kill9(f);

  start(f, "always");
  assert_long_list(f, "k", want);
  assert_list(f, CACHE, "new", "<missing>");
  assert_int_equal(try_push_to(f, long_cache, "l", 'v', 1), MIM_ERR_NOT_FOUND);
  stop(f);
}

/* The log cannot be restarted after a snapshot (DIR/log.tmp is in the way): writes are
 * refused until a later compaction works, and a crash in between loses nothing that
 * was acknowledged. */
static void test_failed_log_restart_refuses_writes(void **state) {
  fixture *f = *state;
  start_with(f, "interval", "4096");
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s/log.tmp", f->data);
  assert_int_equal(mkdir(tmp, 0700), 0);
  static char want[65536];
  want[0] = '\0';
  int64_t deadline = cmn_mono_ms() + WAIT_MS;
  mim_status st = MIM_OK;
  int i = 0;
  /* The once-a-second tick compacts once the log passes 4096 bytes. */
  while (st == MIM_OK && cmn_mono_ms() < deadline && strlen(want) + 600 < sizeof want) {
    char c = (char)('a' + i++ % 26);
    st = try_push(f, "k", c, 256);
    if (st == MIM_OK) {
      want_add(want, sizeof want, c, 256);
      usleep(20000);
    }
  }
  assert_int_equal(st, MIM_ERR_UNAVAILABLE);
  assert_int_equal(try_push(f, "k", '!', 1), MIM_ERR_UNAVAILABLE);
  assert_long_list(f, "k", want);
  assert_int_equal(rmdir(tmp), 0);
  deadline = cmn_mono_ms() + WAIT_MS;
  while ((st = try_push(f, "k", '+', 1)) != MIM_OK && cmn_mono_ms() < deadline) {
    usleep(20000);
  }
  assert_int_equal(st, MIM_OK);
  want_add(want, sizeof want, '+', 1);
  kill9(f);
  start(f, "interval");
  assert_long_list(f, "k", want);
  stop(f);
}

/* A record the reader would refuse is never written: at the limit it is written and
 * read back; one byte over, the write fails and changes nothing. A list whose whole
 * content exceeds the limit is split over several records. The limit is lowered for
 * the test through the server's MIM_LOCAL_MAX_RECORD_BYTES test hook. */
static void test_record_limit_boundary(void **state) {
  fixture *f = *state;
  assert_int_equal(setenv("MIM_LOCAL_MAX_RECORD_BYTES", "1024", 1), 0);
  start(f, "interval");
  /* A push record: type, cache, key, flags, truncate, expiry, count, value. */
  size_t overhead = 1 + 4 + strlen(CACHE) + 4 + 1 + 1 + 4 + 8 + 4 + 4;
  size_t fits = 1024 - overhead;
  assert_int_equal(try_push(f, "b", 'x', fits + 1), MIM_ERR_RESOURCE_EXHAUSTED);
  assert_list(f, CACHE, "b", "<missing>");
  assert_int_equal(try_push(f, "b", 'x', fits), MIM_OK);
  static char want[8192], want_c[8192];
  want[0] = want_c[0] = '\0';
  want_add(want, sizeof want, 'x', fits);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(try_push(f, "c", (char)('a' + i), 400), MIM_OK);
    if (i != 2) {
      want_add(want_c, sizeof want_c, (char)('a' + i), 400);
    }
  }
  /* ListRemove records the whole list (5 x 400 bytes): split over records. */
  char gone[401];
  memset(gone, 'c', 400);
  gone[400] = '\0';
  remove_value(f, "c", gone);
  assert_list(f, CACHE, "c", want_c);
  kill9(f);
  start(f, "interval"); /* the same limit when reading */
  assert_list(f, CACHE, "b", want);
  assert_list(f, CACHE, "c", want_c);
  stop(f); /* the snapshot holds the split list too */
  start(f, "interval");
  assert_list(f, CACHE, "c", want_c);
  stop(f);
  unsetenv("MIM_LOCAL_MAX_RECORD_BYTES");
}

/* ---- damaged files: refused unless --recover, never silently dropped ---- */

typedef struct file_bytes {
  uint8_t *d;
  size_t len;
} file_bytes;

static file_bytes read_bytes(const char *path) {
  file_bytes b = {NULL, 0};
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  assert_int_equal(fseek(fp, 0, SEEK_END), 0);
  long n = ftell(fp);
  assert_true(n >= 0);
  rewind(fp);
  b.d = malloc((size_t)n + 1);
  assert_non_null(b.d);
  b.len = fread(b.d, 1, (size_t)n, fp);
  assert_int_equal(b.len, (size_t)n);
  fclose(fp);
  return b;
}

static void write_bytes(const char *path, const uint8_t *d, size_t len) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(d, 1, len, fp), len);
  assert_int_equal(fclose(fp), 0);
}

static void data_path(const fixture *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", f->data, name);
}

/* Both files as they are now (a missing one reads as empty). */
typedef struct data_files {
  file_bytes snap, log;
} data_files;

static data_files save_files(const fixture *f) {
  char sp[160], lp[160];
  data_path(f, "snapshot", sp, sizeof sp);
  data_path(f, "log", lp, sizeof lp);
  return (data_files){read_bytes(sp), read_bytes(lp)};
}

static void assert_same(file_bytes a, file_bytes b) {
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.d, b.d, a.len);
}

static void assert_files_unchanged(const fixture *f, const data_files *before) {
  data_files now = save_files(f);
  assert_same(before->snap, now.snap);
  assert_same(before->log, now.log);
  free(now.snap.d);
  free(now.log.d);
}

static void free_files(data_files *d) {
  free(d->snap.d);
  free(d->log.d);
}

/* The DIR/damaged-* directories --recover made (0, or 1 with its path in out). */
static int damaged_dirs(const fixture *f, char *out, size_t cap) {
  DIR *d = opendir(f->data);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "damaged-", 8) == 0 && n++ == 0) {
      snprintf(out, cap, "%s/%s", f->data, e->d_name);
    }
  }
  closedir(d);
  return n;
}

/* --recover kept both files exactly as they were before the start. */
static void assert_kept_aside(const fixture *f, const data_files *before) {
  char dir[512], path[600];
  assert_int_equal(damaged_dirs(f, dir, sizeof dir), 1);
  snprintf(path, sizeof path, "%s/snapshot", dir);
  file_bytes b = read_bytes(path);
  assert_same(before->snap, b);
  free(b.d);
  snprintf(path, sizeof path, "%s/log", dir);
  b = read_bytes(path);
  assert_same(before->log, b);
  free(b.d);
}

/* Runs mim-local on the damaged directory without --recover: it must exit non-zero on
 * its own, saying which file is damaged and where. */
static void assert_refused(fixture *f, const char *file) {
  char bin[160], out[160];
  const char *env = getenv("MIM_LOCAL_BIN"), *b = getenv("MIM_BUILD");
  snprintf(bin, sizeof bin, "%s/bin/mim-local", b && b[0] ? b : "build");
  snprintf(out, sizeof out, "%s/refused.out", f->dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
      _exit(126);
    }
    const char *path = env && env[0] ? env : bin;
    execl(path, path, "--port", "0", "--data-dir", f->data, "--auth-secret-file", f->secret,
          "--cache", CACHE, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  int64_t deadline = cmn_mono_ms() + (int64_t)WAIT_MS * test_time_scale();
  pid_t got = 0;
  while ((got = waitpid(pid, &st, WNOHANG)) == 0 && cmn_mono_ms() < deadline) {
    usleep(10000);
  }
  if (got == 0) {
    kill(pid, SIGKILL); /* it started instead of refusing */
    waitpid(pid, &st, 0);
  }
  assert_int_equal(got, pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 1);
  file_bytes text = read_bytes(out);
  text.d[text.len] = '\0';
  char want[200];
  snprintf(want, sizeof want, "%s/%s: damaged at offset", f->data, file);
  assert_non_null(strstr((char *)text.d, want));
  assert_non_null(strstr((char *)text.d, "refusing to start"));
  free(text.d);
}

static void start_recover(fixture *f) {
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {"--data-dir",         f->data,   "--fsync",   "interval",
                         "--auth-secret-file", f->secret, "--recover", NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra, .log_level = "warn"};
  assert_int_equal(mim_local_start(&o, &f->srv), 0);
  f->t = raw_connect(f->srv, NULL);
  assert_non_null(f->t);
}

/* The damaged directory is refused without --recover (the files untouched), then
 * started with --recover (the damaged files kept aside exactly as they were). */
static void refuse_then_recover(fixture *f, const char *damaged_file) {
  data_files before = save_files(f);
  assert_refused(f, damaged_file);
  assert_files_unchanged(f, &before);
  start_recover(f);
  assert_kept_aside(f, &before);
  free_files(&before);
}

/* Flips one bit of the byte at off. */
static void flip_bit(const fixture *f, const char *name, size_t off) {
  char path[160];
  data_path(f, name, path, sizeof path);
  file_bytes b = read_bytes(path);
  assert_true(off < b.len);
  b.d[off] ^= 0x10;
  write_bytes(path, b.d, b.len);
  free(b.d);
}

/* Values "v0".."v<n-1>" pushed onto list, and the comma-joined list in want. */
static void push_many(fixture *f, const char *list, int n, char *want, size_t cap) {
  size_t at = strlen(want);
  for (int i = 0; i < n; i++) {
    char v[16];
    snprintf(v, sizeof v, "v%d", i);
    push(f, CACHE, list, v, 0);
    at += (size_t)snprintf(want + at, cap - at, "%s%s", at ? "," : "", v);
    assert_true(at < cap);
  }
}

/* Fewer records under valgrind, where every push is ~50x slower; the check is the same. */
static int later_records(void) {
  return test_time_scale() > 3 ? 101 : 501;
}

/* A flipped bit in the log's header record: before, the log's generation could not be
 * read and the whole log (a cache and its values) was skipped without a word. */
static void test_damaged_log_header(void **state) {
  fixture *f = *state;
  start(f, "interval");
  create_cache(f, "made");
  push(f, "made", "l", "kept", 0);
  push(f, CACHE, "k", "also", 0);
  kill9(f);
  flip_bit(f, "log", 12); /* in the "MIM1" magic */
  refuse_then_recover(f, "log");
  assert_list(f, "made", "l", "kept");
  assert_list(f, CACHE, "k", "also");
  stop(f);
  /* Recovered, compacted and clean: a plain start works again. */
  start(f, "interval");
  assert_list(f, "made", "l", "kept");
  stop(f);
}

/* One flipped bit mid-log: before, that record and all 501 intact ones after it were
 * dropped and the log then overwritten. Now every record after it is recovered. */
static void test_damaged_log_middle(void **state) {
  fixture *f = *state;
  start(f, "interval");
  static char want[16384];
  want[0] = '\0';
  push(f, CACHE, "c", "one", 0);
  push(f, CACHE, "c", "damaged", 0);
  push_many(f, "after", later_records(), want, sizeof want);
  kill9(f);
  char log_path[160];
  data_path(f, "log", log_path, sizeof log_path);
  assert_true(corrupt(log_path, "damaged"));
  refuse_then_recover(f, "log");
  assert_list(f, CACHE, "c", "one");
  assert_long_list(f, "after", want);
  push(f, CACHE, "c", "four", 0);
  stop(f);
  start(f, "interval");
  assert_list(f, CACHE, "c", "one,four");
  assert_long_list(f, "after", want);
  stop(f);
}

/* Offset of needle in the file (asserts it is there). */
static size_t find_in(const fixture *f, const char *name, const char *needle) {
  char path[160];
  data_path(f, name, path, sizeof path);
  file_bytes b = read_bytes(path);
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= b.len; i++) {
    if (memcmp(b.d + i, needle, k) == 0) {
      free(b.d);
      return i;
    }
  }
  free(b.d);
  fail_msg("%s not in %s", needle, name);
  return 0;
}

/* One flipped bit in a snapshot: before, the list it hit and every list after it were
 * dropped. Now only the damaged record's list is lost, and only with --recover. */
static void test_damaged_snapshot(void **state) {
  fixture *f = *state;
  start(f, "interval");
  push(f, CACHE, "a", "alpha", 0);
  push(f, CACHE, "b", "bravo-damaged", 0);
  push(f, CACHE, "c", "charlie", 0);
  push(f, CACHE, "d", "delta", 0);
  stop(f);
  start(f, "interval"); /* the start-up compaction moves it all into the snapshot */
  push(f, CACHE, "e", "echo", 0);
  stop(f);
  flip_bit(f, "snapshot", find_in(f, "snapshot", "bravo-damaged") + 3);
  refuse_then_recover(f, "snapshot");
  assert_list(f, CACHE, "a", "alpha");
  assert_list(f, CACHE, "b", "<missing>");
  assert_list(f, CACHE, "c", "charlie");
  assert_list(f, CACHE, "d", "delta");
  assert_list(f, CACHE, "e", "echo"); /* the log on top of it */
  stop(f);
}

static void fill_random(uint8_t *d, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    d[i] = (uint8_t)(seed >> 16);
  }
}

/* Random bytes over part of the log: the records after them are found again. Random
 * bytes over the whole log: before, dropped silently; now refused, and with --recover
 * the snapshot's content is there. */
static void test_random_bytes_over_log(void **state) {
  fixture *f = *state;
  start(f, "interval");
  static char want[16384];
  want[0] = '\0';
  push(f, CACHE, "before", "b0", 0);
  push(f, CACHE, "gone", "g0-0123456789-0123456789-0123456789", 0);
  push_many(f, "after", later_records(), want, sizeof want);
  kill9(f);
  char log_path[160];
  data_path(f, "log", log_path, sizeof log_path);
  file_bytes b = read_bytes(log_path);
  size_t at = find_in(f, "log", "g0-0123456789");
  /* From inside the record's head into the next record's (v0's) length and CRC: no
   * length leads past them, the reader must search for the next record. */
  fill_random(b.d + at - 20, 64, 7);
  write_bytes(log_path, b.d, b.len);
  free(b.d);
  assert_memory_equal(want, "v0,", 3);
  memmove(want, want + 3, strlen(want + 3) + 1);
  refuse_then_recover(f, "log");
  assert_list(f, CACHE, "before", "b0");
  assert_list(f, CACHE, "gone", "<missing>");
  assert_long_list(f, "after", want);
  stop(f);
  /* Now all of it: the log is all random. */
  char dir[512];
  assert_int_equal(damaged_dirs(f, dir, sizeof dir), 1);
  remove_tree(dir);
  start(f, "interval"); /* compacts: "after" is in the snapshot */
  push(f, CACHE, "lost", "l0", 0);
  kill9(f);
  b = read_bytes(log_path);
  fill_random(b.d, b.len, 11);
  write_bytes(log_path, b.d, b.len);
  free(b.d);
  refuse_then_recover(f, "log");
  assert_long_list(f, "after", want);
  assert_list(f, CACHE, "lost", "<missing>");
  stop(f);
}

/* Random bytes behind an intact header, the first four of which read as a length that
 * runs past the end (a quarter of random words are at most the 1 GiB record limit):
 * they must not pass for a torn final record and be dropped without a word. */
static void test_random_bytes_after_header(void **state) {
  fixture *f = *state;
  start(f, "interval");
  push(f, CACHE, "kept", "k0", 0);
  stop(f);
  start(f, "interval"); /* "kept" is in the snapshot now */
  push(f, CACHE, "lost", "l0", 0);
  kill9(f);
  char log_path[160];
  data_path(f, "log", log_path, sizeof log_path);
  static uint8_t d[21 + 65536];
  file_bytes b = read_bytes(log_path);
  assert_true(b.len > 21);
  memcpy(d, b.d, 21); /* the header */
  free(b.d);
  fill_random(d + 21, sizeof d - 21, 5);
  const uint8_t mib[4] = {0, 0, 0x10, 0}; /* 1 MiB */
  memcpy(d + 21, mib, 4);
  write_bytes(log_path, d, sizeof d);
  refuse_then_recover(f, "log");
  assert_list(f, CACHE, "kept", "k0");
  assert_list(f, CACHE, "lost", "<missing>");
  stop(f);
}

/* Zeros after the last record (the file grew, its data never reached the disk: a power
 * loss mid-append on some file systems) are a torn tail too, not damage. */
static void test_zero_tail_is_torn(void **state) {
  fixture *f = *state;
  start(f, "interval");
  push(f, CACHE, "k", "v", 0);
  kill9(f);
  char log_path[160];
  data_path(f, "log", log_path, sizeof log_path);
  static const uint8_t zeros[100];
  append_bytes(log_path, zeros, sizeof zeros);
  start(f, "interval");
  char none[512];
  assert_int_equal(damaged_dirs(f, none, sizeof none), 0);
  assert_list(f, CACHE, "k", "v");
  stop(f);
}

/* A damaged cache-creation record: with --recover the intact list records after it
 * bring the cache back instead of being dropped with it. */
static void test_damaged_cache_record(void **state) {
  fixture *f = *state;
  start(f, "interval");
  create_cache(f, "made");
  push(f, "made", "l", "kept", 0);
  push(f, "made", "l", "too", 0);
  kill9(f);
  flip_bit(f, "log", find_in(f, "log", "made")); /* the first: the cache record */
  refuse_then_recover(f, "log");
  assert_list(f, "made", "l", "kept,too");
  stop(f);
}

/* Only a record cut short at the end of the log is a torn write: a whole final record
 * that fails its CRC, or does not parse, is damage. */
static void test_bad_final_record_is_damage(void **state) {
  fixture *f = *state;
  start(f, "interval");
  push(f, CACHE, "k", "v", 0);
  kill9(f);
  char log_path[160];
  data_path(f, "log", log_path, sizeof log_path);
  /* Length 2, a CRC that does not match, type 5 and one byte. */
  const uint8_t bad[] = {2, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 5, 1};
  append_bytes(log_path, bad, sizeof bad);
  refuse_then_recover(f, "log");
  assert_list(f, CACHE, "k", "v");
  stop(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_clean_restart, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_dictionaries_survive, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_torn_dict_record, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_kill9_with_fsync_always, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_damaged_log_header, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_damaged_log_middle, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_damaged_snapshot, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_random_bytes_over_log, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_final_record_is_damage, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_damaged_cache_record, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_zero_tail_is_torn, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_random_bytes_after_header, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_compaction_while_serving, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_stale_log_is_skipped, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_cache_delete_survives, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unlogged_write_is_refused, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_failed_log_restart_refuses_writes, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_record_limit_boundary, fixture_setup, fixture_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
