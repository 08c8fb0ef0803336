/*
 * Cache dictionaries over /cache_client.Scs/Dictionary{Set,Get,Fetch}: validate, pack one
 * request, one unary call on the cache plane (lib/pb_call.h), and turn the response's
 * found/missing oneof into plain results, as lib/list.c does for lists.
 */
#include "client_internal.h"
#include "error.h"
#include "pb.h"
#include "pb_call.h"
#include "struct_size.h"

#include <cacheclient.pb-c.h>
#include <momento/dictionary.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define SCS "/cache_client.Scs/"

static const mim_pb_method set_method = {MIM_HOST_CACHE, SCS "DictionarySet",
                                         &cache_client____dictionary_set_response__descriptor,
                                         false};
static const mim_pb_method get_method = {MIM_HOST_CACHE, SCS "DictionaryGet",
                                         &cache_client____dictionary_get_response__descriptor,
                                         false};
static const mim_pb_method fetch_method = {MIM_HOST_CACHE, SCS "DictionaryFetch",
                                           &cache_client____dictionary_fetch_response__descriptor,
                                           false};

/* ---- validation ---- */

static mim_status check_target(const mim_client *c, const char *cache, const char *dictionary) {
  mim_clear_error();
  if (!c)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  mim_status st = mim_check_cache_name(cache);
  return st == MIM_OK ? mim_check_list_name("dictionary name", dictionary) : st;
}

static mim_status check_bytes(const char *what, const void *data, size_t len) {
  if (!data && len > 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is NULL but its length is %zu", what, len);
  return MIM_OK;
}

/* The options a write really uses: refresh for NULL, the client's TTL for 0 (always
 * sent: the server's default differs between deployments). */
static mim_status write_opts(const mim_client *c, const mim_dictionary_write_options *o,
                             mim_dictionary_write_options *eff) {
  *eff = (mim_dictionary_write_options){.struct_size = sizeof *eff, .refresh_ttl = true};
  if (o) {
    mim_status st = mim_struct_copy_in(
        eff, sizeof *eff, o, MIM_SIZE_THROUGH(mim_dictionary_write_options, refresh_ttl),
        "dictionary write: options", "MIM_DICTIONARY_WRITE_OPTIONS_INIT");
    if (st != MIM_OK)
      return st;
  }
  if (eff->ttl_ms == 0)
    eff->ttl_ms = mim_client_default_ttl_ms(c);
  return MIM_OK;
}

static mim_status no_result(const ProtobufCMessage *resp) {
  return mim_fail(MIM_ERR_PROTOCOL, "%s has neither found nor missing",
                  resp->descriptor->short_name);
}

/* ---- set ---- */

static mim_status set_field(mim_client *c, const char *cache, const char *dictionary,
                            const void *field, size_t field_len, const void *value,
                            size_t value_len, const mim_dictionary_write_options *o) {
  mim_status st = check_target(c, cache, dictionary);
  if (st == MIM_OK)
    st = check_bytes("field", field, field_len);
  if (st == MIM_OK)
    st = check_bytes("value", value, value_len);
  mim_dictionary_write_options eff;
  if (st == MIM_OK)
    st = write_opts(c, o, &eff);
  if (st != MIM_OK)
    return st;
  CacheClient__DictionaryFieldValuePair pair = CACHE_CLIENT____DICTIONARY_FIELD_VALUE_PAIR__INIT;
  pair.field = mim_pb_bytes(field, field_len);
  pair.value = mim_pb_bytes(value, value_len);
  CacheClient__DictionaryFieldValuePair *items[] = {&pair};
  CacheClient__DictionarySetRequest req = CACHE_CLIENT____DICTIONARY_SET_REQUEST__INIT;
  req.dictionary_name = mim_pb_name(dictionary);
  req.n_items = 1;
  req.items = items;
  req.ttl_milliseconds = eff.ttl_ms;
  req.refresh_ttl = eff.refresh_ttl;
  return mim_pb_call(c, &set_method, cache, &req.base, NULL);
}

MIM_API mim_status mim_dictionary_set_field(mim_client *client, const char *cache,
                                            const char *dictionary, const void *field,
                                            size_t field_len, const void *value, size_t value_len,
                                            const mim_dictionary_write_options *options) {
  return mim_arg_in(
      __func__, set_field(client, cache, dictionary, field, field_len, value, value_len, options));
}

/* ---- get ---- */

static uint8_t *copy_nul(const ProtobufCBinaryData *b) {
  uint8_t *p = malloc(b->len + 1);
  if (p) {
    if (b->len)
      memcpy(p, b->data, b->len);
    p[b->len] = '\0';
  }
  return p;
}

/* One part per requested field: Hit with the value, or Miss. */
static mim_status read_part(const CacheClient__DictionaryGetResponse *r, uint8_t **value,
                            size_t *len, bool *found) {
  if (r->dictionary_case == CACHE_CLIENT____DICTIONARY_GET_RESPONSE__DICTIONARY_MISSING)
    return MIM_OK;
  if (r->dictionary_case != CACHE_CLIENT____DICTIONARY_GET_RESPONSE__DICTIONARY_FOUND)
    return no_result(&r->base);
  if (r->found->n_items != 1)
    return mim_fail(MIM_ERR_PROTOCOL, "DictionaryGet answered %zu parts for 1 field",
                    r->found->n_items);
  const CacheClient__DictionaryGetResponse__DictionaryGetResponsePart *p = r->found->items[0];
  if (p->result == CACHE_CLIENT__ECACHE_RESULT__Miss)
    return MIM_OK;
  if (p->result != CACHE_CLIENT__ECACHE_RESULT__Hit)
    return mim_fail(MIM_ERR_PROTOCOL, "DictionaryGet part has result %d", (int)p->result);
  if (value && !(*value = copy_nul(&p->cache_body)))
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for a %zu-byte value", p->cache_body.len);
  if (len)
    *len = p->cache_body.len;
  if (found)
    *found = true;
  return MIM_OK;
}

static mim_status get_field(mim_client *c, const char *cache, const char *dictionary,
                            const void *field, size_t field_len, uint8_t **value, size_t *len,
                            bool *found) {
  mim_status st = check_target(c, cache, dictionary);
  if (st == MIM_OK)
    st = check_bytes("field", field, field_len);
  if (st != MIM_OK)
    return st;
  ProtobufCBinaryData fields[] = {mim_pb_bytes(field, field_len)};
  CacheClient__DictionaryGetRequest req = CACHE_CLIENT____DICTIONARY_GET_REQUEST__INIT;
  req.dictionary_name = mim_pb_name(dictionary);
  req.n_fields = 1;
  req.fields = fields;
  ProtobufCMessage *resp;
  st = mim_pb_call(c, &get_method, cache, &req.base, &resp);
  if (st == MIM_OK)
    st = read_part((const CacheClient__DictionaryGetResponse *)resp, value, len, found);
  mim_pb_free(resp);
  return st;
}

MIM_API mim_status mim_dictionary_get_field(mim_client *client, const char *cache,
                                            const char *dictionary, const void *field,
                                            size_t field_len, uint8_t **value, size_t *len,
                                            bool *found) {
  if (value)
    *value = NULL;
  if (len)
    *len = 0;
  if (found)
    *found = false;
  mim_status st = get_field(client, cache, dictionary, field, field_len, value, len, found);
  if (st != MIM_OK && found)
    *found = false;
  return mim_arg_in(__func__, st);
}

/* ---- fetch ---- */

static size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

/* Copies b NUL-terminated to *p, points dst at it and moves *p past it. */
static void place(unsigned char **p, const ProtobufCBinaryData *b, mim_bytes *dst) {
  if (b->len)
    memcpy(*p, b->data, b->len);
  (*p)[b->len] = '\0';
  dst->data = *p;
  dst->len = b->len;
  *p += b->len + 1;
}

/* One block: the struct, the entry array, then every field and value NUL-terminated,
 * so one free() releases everything. */
static mim_status make_entries(bool found, CacheClient__DictionaryFieldValuePair *const *items,
                               size_t n, mim_dictionary_entries **out) {
  size_t head = align_up(sizeof(mim_dictionary_entries), alignof(mim_dictionary_entry));
  if (n > (SIZE_MAX - head) / sizeof(mim_dictionary_entry))
    return mim_fail(MIM_ERR_NO_MEMORY, "dictionary of %zu fields is too large", n);
  size_t total = head + n * sizeof(mim_dictionary_entry);
  for (size_t i = 0; i < n; i++) {
    size_t add = items[i]->field.len + items[i]->value.len + 2; /* each bounded by a message */
    if (add >= SIZE_MAX - total)
      return mim_fail(MIM_ERR_NO_MEMORY, "dictionary entries are too large");
    total += add;
  }
  unsigned char *blk = malloc(total);
  if (!blk)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for %zu dictionary fields", n);
  mim_dictionary_entries *de = (mim_dictionary_entries *)blk;
  mim_dictionary_entry *arr = (mim_dictionary_entry *)(blk + head);
  unsigned char *p = blk + head + n * sizeof(mim_dictionary_entry);
  de->found = found;
  de->count = n;
  de->entries = n ? arr : NULL;
  for (size_t i = 0; i < n; i++) {
    place(&p, &items[i]->field, &arr[i].field);
    place(&p, &items[i]->value, &arr[i].value);
  }
  *out = de;
  return MIM_OK;
}

static mim_status fetch_result(const CacheClient__DictionaryFetchResponse *r,
                               mim_dictionary_entries **out) {
  switch (r->dictionary_case) {
  case CACHE_CLIENT____DICTIONARY_FETCH_RESPONSE__DICTIONARY_FOUND:
    return make_entries(true, r->found->items, r->found->n_items, out);
  case CACHE_CLIENT____DICTIONARY_FETCH_RESPONSE__DICTIONARY_MISSING:
    return make_entries(false, NULL, 0, out);
  default:
    return no_result(&r->base);
  }
}

/* out is not NULL. */
static mim_status fetch(mim_client *client, const char *cache, const char *dictionary,
                        mim_dictionary_entries **out) {
  mim_status st = check_target(client, cache, dictionary);
  if (st != MIM_OK)
    return st;
  CacheClient__DictionaryFetchRequest req = CACHE_CLIENT____DICTIONARY_FETCH_REQUEST__INIT;
  req.dictionary_name = mim_pb_name(dictionary);
  ProtobufCMessage *resp;
  st = mim_pb_call(client, &fetch_method, cache, &req.base, &resp);
  if (st == MIM_OK)
    st = fetch_result((const CacheClient__DictionaryFetchResponse *)resp, out);
  mim_pb_free(resp);
  return st;
}

MIM_API mim_status mim_dictionary_fetch(mim_client *client, const char *cache,
                                        const char *dictionary, mim_dictionary_entries **out) {
  if (!out) {
    mim_status st = check_target(client, cache, dictionary);
    return mim_arg_in(__func__,
                      st != MIM_OK ? st : mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL"));
  }
  *out = NULL;
  return mim_arg_in(__func__, fetch(client, cache, dictionary, out));
}

MIM_API void mim_dictionary_entries_free(mim_dictionary_entries *entries) {
  free(entries);
}
