/* lib/dictionary.c against mim-local: set, get and fetch; a field replaced; missing
 * dictionaries and fields; a list and a dictionary under one key refused both ways;
 * TTLs (refresh and not); the element and item size limits; invalid arguments. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "cacheclient.pb-c.h"
#include "clock.h"
#include "raw_client.h"
#include "test_client.h"

#include <momento/dictionary.h>
#include <momento/token.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "instant-messaging"

static mim_local *srv;
static mim_client *cli;

static int setup(void **state) {
  (void)state;
  const char *const caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &cli);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &cli);
}

static mim_status set_str(const char *dict, const char *field, const char *value) {
  return mim_dictionary_set_field(cli, CACHE, dict, field, strlen(field), value, strlen(value),
                                  NULL);
}

/* Asserts field's value (NULL: the field is absent). */
static void expect_field(const char *dict, const char *field, const char *want) {
  uint8_t *v = (uint8_t *)"x";
  size_t len = 99;
  bool found = !want;
  assert_int_equal(
      mim_dictionary_get_field(cli, CACHE, dict, field, strlen(field), &v, &len, &found), MIM_OK);
  if (!want) {
    assert_false(found);
    assert_null(v);
    assert_int_equal(len, 0);
    return;
  }
  assert_true(found);
  assert_int_equal(len, strlen(want));
  assert_memory_equal(v, want, len);
  assert_int_equal(v[len], '\0');
  free(v);
}

/* The fetched entries as "f=v" sorted and joined with ",". */
static void expect_fetch(const char *dict, bool want_found, const char *want) {
  mim_dictionary_entries *de = NULL;
  assert_int_equal(mim_dictionary_fetch(cli, CACHE, dict, &de), MIM_OK);
  assert_non_null(de);
  assert_int_equal(de->found, want_found);
  char items[16][64];
  assert_true(de->count <= 16);
  for (size_t i = 0; i < de->count; i++) {
    assert_int_equal(de->entries[i].field.data[de->entries[i].field.len], '\0');
    snprintf(items[i], sizeof items[i], "%s=%s", (const char *)de->entries[i].field.data,
             (const char *)de->entries[i].value.data);
  }
  qsort(items, de->count, sizeof items[0], (int (*)(const void *, const void *))strcmp);
  char got[1024] = "";
  for (size_t i = 0; i < de->count; i++) {
    strcat(got, i ? "," : "");
    strcat(got, items[i]);
  }
  assert_string_equal(got, want);
  mim_dictionary_entries_free(de);
}

static void test_set_get_fetch(void **state) {
  (void)state;
  expect_fetch("d1", false, "");
  expect_field("d1", "alice", NULL);
  assert_int_equal(set_str("d1", "alice", "m1"), MIM_OK);
  assert_int_equal(set_str("d1", "bob", "m2"), MIM_OK);
  expect_field("d1", "alice", "m1");
  expect_field("d1", "carol", NULL); /* a field missing from a dictionary that exists */
  assert_int_equal(set_str("d1", "alice", "m3"), MIM_OK); /* replaced, not added */
  expect_fetch("d1", true, "alice=m3,bob=m2");
  /* Bytes, not strings: an empty value and a field with a NUL in it. */
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d1", "a\0b", 3, NULL, 0, NULL), MIM_OK);
  uint8_t *v = NULL;
  size_t len = 9;
  bool found = false;
  assert_int_equal(mim_dictionary_get_field(cli, CACHE, "d1", "a\0b", 3, &v, &len, &found), MIM_OK);
  assert_true(found);
  assert_int_equal(len, 0);
  free(v);
  expect_field("d1", "a", NULL);
  /* value, len and found may each be NULL. */
  assert_int_equal(mim_dictionary_get_field(cli, CACHE, "d1", "bob", 3, NULL, NULL, NULL), MIM_OK);
  assert_int_equal(mim_item_delete(cli, CACHE, "d1"), MIM_OK);
  expect_fetch("d1", false, "");
}

/* Momento refuses a dictionary call on a list and a list call on a dictionary with
 * FAILED_PRECONDITION, and leaves the item as it was. */
static void test_wrong_type(void **state) {
  (void)state;
  assert_int_equal(mim_list_push_back(cli, CACHE, "l1", "v", 1, NULL, NULL), MIM_OK);
  assert_int_equal(set_str("l1", "f", "v"), MIM_ERR_FAILED_PRECONDITION);
  bool found = true;
  assert_int_equal(mim_dictionary_get_field(cli, CACHE, "l1", "f", 1, NULL, NULL, &found),
                   MIM_ERR_FAILED_PRECONDITION);
  assert_false(found);
  mim_dictionary_entries *de = (mim_dictionary_entries *)1;
  assert_int_equal(mim_dictionary_fetch(cli, CACHE, "l1", &de), MIM_ERR_FAILED_PRECONDITION);
  assert_null(de);
  uint32_t len = 0;
  assert_int_equal(mim_list_length(cli, CACHE, "l1", &len, NULL), MIM_OK);
  assert_int_equal(len, 1);

  assert_int_equal(set_str("d2", "f", "v"), MIM_OK);
  assert_int_equal(mim_list_push_back(cli, CACHE, "d2", "v", 1, NULL, NULL),
                   MIM_ERR_FAILED_PRECONDITION);
  mim_list_values *lv = NULL;
  assert_int_equal(mim_list_fetch(cli, CACHE, "d2", NULL, &lv), MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(mim_list_length(cli, CACHE, "d2", &len, NULL), MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(mim_list_pop_front(cli, CACHE, "d2", NULL, NULL, NULL),
                   MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(mim_list_remove_value(cli, CACHE, "d2", "v", 1, NULL),
                   MIM_ERR_FAILED_PRECONDITION);
  expect_fetch("d2", true, "f=v");
  /* Delete and ItemGetTtl take any type. */
  uint64_t left = 0;
  found = false;
  assert_int_equal(mim_item_ttl(cli, CACHE, "d2", &left, &found), MIM_OK);
  assert_true(found);
  assert_true(left > 0);
  assert_int_equal(mim_item_delete(cli, CACHE, "d2"), MIM_OK);
  assert_int_equal(mim_list_push_back(cli, CACHE, "d2", "v", 1, NULL, NULL), MIM_OK);
  assert_int_equal(mim_item_delete(cli, CACHE, "d2"), MIM_OK);
  assert_int_equal(mim_item_delete(cli, CACHE, "l1"), MIM_OK);
}

static uint64_t ttl_of(const char *key) {
  uint64_t left = 0;
  bool found = false;
  assert_int_equal(mim_item_ttl(cli, CACHE, key, &left, &found), MIM_OK);
  assert_true(found);
  return left;
}

static void test_ttl(void **state) {
  (void)state;
  mim_dictionary_write_options o = MIM_DICTIONARY_WRITE_OPTIONS_INIT;
  o.ttl_ms = 60000;
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d3", "a", 1, "1", 1, &o), MIM_OK);
  assert_true(ttl_of("d3") <= 60000);
  o.ttl_ms = 3600000; /* without refresh an existing dictionary keeps its TTL */
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d3", "b", 1, "2", 1, &o), MIM_OK);
  assert_true(ttl_of("d3") <= 60000);
  o.refresh_ttl = true;
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d3", "c", 1, "3", 1, &o), MIM_OK);
  assert_true(ttl_of("d3") > 60000);
  /* NULL options: the client's TTL (a day), refreshed. */
  assert_int_equal(set_str("d3", "d", "4"), MIM_OK);
  assert_true(ttl_of("d3") > 3600000);
  o.ttl_ms = 86400001; /* hosted Momento's cap is a day */
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d3", "e", 1, "5", 1, &o),
                   MIM_ERR_INVALID_ARGUMENT);
  o.ttl_ms = 1; /* expires at once */
  assert_int_equal(mim_item_delete(cli, CACHE, "d3"), MIM_OK);
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d3", "a", 1, "1", 1, &o), MIM_OK);
  int64_t deadline = cmn_mono_ms() + (int64_t)5000 * test_time_scale();
  mim_dictionary_entries *de = NULL;
  do {
    mim_dictionary_entries_free(de);
    assert_int_equal(mim_dictionary_fetch(cli, CACHE, "d3", &de), MIM_OK);
  } while (de->found && cmn_mono_ms() < deadline);
  assert_false(de->found);
  mim_dictionary_entries_free(de);
}

/* Hosted limits (mim-local's default): 128 KB per field or value, 1 MB per item. */
static void test_limits(void **state) {
  (void)state;
  size_t big = 131072;
  char *v = calloc(1, big + 1);
  assert_non_null(v);
  memset(v, 'x', big + 1);
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d4", "f", 1, v, big + 1, NULL),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d4", v, big + 1, "v", 1, NULL),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  /* Seven 128 KB values fit in 1 MB (with their 2-byte fields); the eighth does not. */
  for (int i = 0; i < 7; i++) {
    char f[8];
    snprintf(f, sizeof f, "f%d", i);
    assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d4", f, 2, v, big, NULL), MIM_OK);
  }
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d4", "f7", 2, v, big, NULL),
                   MIM_ERR_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(mim_last_error_detail(), "item size"));
  /* Replacing a field counts its old bytes out: it still fits. */
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d4", "f0", 2, v, big, NULL), MIM_OK);
  expect_field("d4", "f7", NULL);
  assert_int_equal(mim_item_delete(cli, CACHE, "d4"), MIM_OK);
  free(v);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "", "f", 1, "v", 1, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "mim_dictionary_set_field: "));
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d", NULL, 1, "v", 1, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d", "f", 1, NULL, 1, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  mim_dictionary_write_options o = {.struct_size = 1};
  assert_int_equal(mim_dictionary_set_field(cli, CACHE, "d", "f", 1, "v", 1, &o),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_dictionary_get_field(cli, "bad\tcache", "d", "f", 1, NULL, NULL, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_dictionary_fetch(cli, CACHE, "d", NULL), MIM_ERR_INVALID_ARGUMENT);
  mim_dictionary_entries *de = NULL;
  assert_int_equal(mim_dictionary_fetch(cli, "other-cache", "d", &de), MIM_ERR_NOT_FOUND);
  assert_null(de);
  mim_dictionary_entries_free(NULL);
}

/* Server paths the library's one-field calls do not take, through raw requests: a set
 * naming a field twice (the last wins, counted once against the item size), a get of
 * several fields (one part per field, in order), empty requests refused. */
static void test_raw_requests(void **state) {
  (void)state;
  mim_transport *t = raw_connect(srv, NULL);
  assert_non_null(t);
  CacheClient__DictionaryFieldValuePair p[3];
  CacheClient__DictionaryFieldValuePair *items[3];
  const char *pairs[3][2] = {{"a", "first"}, {"b", "x"}, {"a", "last"}};
  for (int i = 0; i < 3; i++) {
    cache_client____dictionary_field_value_pair__init(&p[i]);
    p[i].field = (ProtobufCBinaryData){strlen(pairs[i][0]), (uint8_t *)pairs[i][0]};
    p[i].value = (ProtobufCBinaryData){strlen(pairs[i][1]), (uint8_t *)pairs[i][1]};
    items[i] = &p[i];
  }
  CacheClient__DictionarySetRequest set = CACHE_CLIENT____DICTIONARY_SET_REQUEST__INIT;
  set.dictionary_name = (ProtobufCBinaryData){2, (uint8_t *)"r1"};
  set.items = items;
  set.n_items = 3;
  set.ttl_milliseconds = 60000;
  assert_int_equal(raw_call(t, "/cache_client.Scs/DictionarySet", CACHE, &set.base, NULL, NULL),
                   MIM_OK);
  expect_fetch("r1", true, "a=last,b=x");
  set.n_items = 0;
  assert_int_equal(raw_call(t, "/cache_client.Scs/DictionarySet", CACHE, &set.base, NULL, NULL),
                   MIM_ERR_INVALID_ARGUMENT);

  ProtobufCBinaryData fields[] = {{1, (uint8_t *)"b"}, {1, (uint8_t *)"z"}, {1, (uint8_t *)"a"}};
  CacheClient__DictionaryGetRequest get = CACHE_CLIENT____DICTIONARY_GET_REQUEST__INIT;
  get.dictionary_name = (ProtobufCBinaryData){2, (uint8_t *)"r1"};
  get.fields = fields;
  get.n_fields = 3;
  uint8_t *resp = NULL;
  size_t len = 0;
  assert_int_equal(raw_call(t, "/cache_client.Scs/DictionaryGet", CACHE, &get.base, &resp, &len),
                   MIM_OK);
  CacheClient__DictionaryGetResponse *g =
      cache_client____dictionary_get_response__unpack(NULL, len, resp);
  free(resp);
  assert_non_null(g);
  assert_int_equal(g->dictionary_case, CACHE_CLIENT____DICTIONARY_GET_RESPONSE__DICTIONARY_FOUND);
  assert_int_equal(g->found->n_items, 3);
  assert_int_equal(g->found->items[0]->result, CACHE_CLIENT__ECACHE_RESULT__Hit);
  assert_memory_equal(g->found->items[0]->cache_body.data, "x", 1);
  assert_int_equal(g->found->items[1]->result, CACHE_CLIENT__ECACHE_RESULT__Miss);
  assert_int_equal(g->found->items[2]->result, CACHE_CLIENT__ECACHE_RESULT__Hit);
  assert_memory_equal(g->found->items[2]->cache_body.data, "last", 4);
  cache_client____dictionary_get_response__free_unpacked(g, NULL);
  get.n_fields = 0;
  assert_int_equal(raw_call(t, "/cache_client.Scs/DictionaryGet", CACHE, &get.base, NULL, NULL),
                   MIM_ERR_INVALID_ARGUMENT);

  /* A field named twice in one set counts once against the 1 MB item size: seven 128 KB
   * fields (2-byte names), then one set naming an eighth (1-byte name) twice, fit to the
   * last byte but one (counted twice they would not). */
  size_t big = 131070;
  char *v = malloc(big);
  assert_non_null(v);
  memset(v, 'v', big);
  for (int i = 0; i < 7; i++) {
    char f[4] = {'g', (char)('0' + i), 0};
    assert_int_equal(mim_dictionary_set_field(cli, CACHE, "r2", f, 2, v, big, NULL), MIM_OK);
  }
  p[0].field = (ProtobufCBinaryData){1, (uint8_t *)"f"};
  p[0].value = (ProtobufCBinaryData){big, (uint8_t *)v};
  CacheClient__DictionaryFieldValuePair *same[2] = {&p[0], &p[0]};
  set.dictionary_name = (ProtobufCBinaryData){2, (uint8_t *)"r2"};
  set.items = same;
  set.n_items = 2;
  assert_int_equal(raw_call(t, "/cache_client.Scs/DictionarySet", CACHE, &set.base, NULL, NULL),
                   MIM_OK);
  uint8_t *got = NULL;
  size_t got_len = 0;
  bool found = false;
  assert_int_equal(mim_dictionary_get_field(cli, CACHE, "r2", "f", 1, &got, &got_len, &found),
                   MIM_OK);
  assert_true(found);
  assert_int_equal(got_len, big);
  free(got);
  free(v);
  mim_transport_free(t);
}

/* A read-only grant on a dictionary key: get and fetch, never set. */
static void test_read_only_token(void **state) {
  (void)state;
  assert_int_equal(set_str("ro", "f", "v"), MIM_OK);
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, "ro", false), MIM_OK);
  mim_disposable_token *tok = NULL;
  assert_int_equal(mim_token_generate(cli, p, 600, "reader", &tok), MIM_OK);
  mim_permissions_free(p);
  mim_client *ro = test_client_from_key(tok->credential);
  mim_disposable_token_free(tok);
  bool found = false;
  assert_int_equal(mim_dictionary_get_field(ro, CACHE, "ro", "f", 1, NULL, NULL, &found), MIM_OK);
  assert_true(found);
  mim_dictionary_entries *de = NULL;
  assert_int_equal(mim_dictionary_fetch(ro, CACHE, "ro", &de), MIM_OK);
  assert_int_equal(de->count, 1);
  mim_dictionary_entries_free(de);
  assert_int_equal(mim_dictionary_set_field(ro, CACHE, "ro", "f", 1, "w", 1, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_dictionary_get_field(ro, CACHE, "other", "f", 1, NULL, NULL, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  expect_field("ro", "f", "v");
  mim_client_free(ro);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_get_fetch),
      cmocka_unit_test(test_wrong_type),
      cmocka_unit_test(test_ttl),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_invalid_arguments),
      cmocka_unit_test(test_raw_requests),
      cmocka_unit_test(test_read_only_token),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
