/* mim-local: cache_client.Scs (lists, dictionaries, Delete, ItemGetTtl). Every request carries the
 * cache in the "cache" metadata and its key (list name / cache key) in field 1. */
#include "handlers.h"

#include "cacheclient.pb-c.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Ranges one ListErase may carry. */
#define SCS_MAX_ERASE_RANGES 10000

typedef struct scs_ctx {
  app *a;
  srv_call *call;
  char cache[SVC_MAX_NAME];
  st_bytes key;
  uint64_t ops;   /* what the call costs as Momento counts operations */
  uint64_t bytes; /* value bytes it carried, request and response */
  quota_ns *ns;   /* its cache's rate buckets */
  bool charged;   /* ops and bytes taken from them */
} scs_ctx;

/* Takes the call's cost from its cache's buckets, once: before the reply leaves, so
 * the client's next call (perhaps on another server thread) already sees it. */
static void scs_charge(scs_ctx *x) {
  if (x->charged) {
    return;
  }
  x->charged = true;
  quota_charge(x->a->quota, x->ns, QUOTA_CACHE_OPS, x->ops);
  quota_charge(x->a->quota, x->ns, QUOTA_CACHE_BYTES, x->bytes);
}

static void scs_reply(scs_ctx *x, const ProtobufCMessage *resp) {
  scs_charge(x);
  srv_call_reply(x->call, resp);
}

typedef void (*scs_op)(scs_ctx *x, const void *req);

/* Maps a store failure to a status; true when the handler should reply normally. */
static bool scs_ok(scs_ctx *x, st_result r) {
  switch (r) {
  case ST_OK:
  case ST_MISSING:
    return true;
  case ST_NO_CACHE:
    srv_call_fail(x->call, GRPC_STATUS_NOT_FOUND, "cache not found: %s", x->cache);
    return false;
  case ST_WRONG_TYPE:
    /* What hosted Momento answers for a collection call on an item of another type. */
    srv_call_fail(x->call, GRPC_STATUS_FAILED_PRECONDITION,
                  "the item under this key is of another type than the operation expects");
    return false;
  case ST_TOO_LONG:
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "list would exceed the length limit");
    return false;
  case ST_IO:
    /* Retryable: the list was left as it was, so a retry cannot apply it twice. */
    srv_call_fail(x->call, GRPC_STATUS_UNAVAILABLE,
                  "the server could not record the write in its data directory; nothing changed");
    return false;
  case ST_TOO_BIG:
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "the write exceeds the data directory's record limit; nothing changed");
    return false;
  default:
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return false;
  }
}

/* Replies found or missing for the responses shaped that way (a oneof of a Found and a
 * Missing message): fill is the statement that sets found's fields; oneof / ONEOF name
 * the response's case field (list or result). */
#define REPLY_FOUND(x, res, Camel, UPPER, oneof, ONEOF, fill)                                      \
  do {                                                                                             \
    CacheClient__##Camel##Response resp = CACHE_CLIENT____##UPPER##_RESPONSE__INIT;                \
    CacheClient__##Camel##Response__Found found =                                                  \
        CACHE_CLIENT____##UPPER##_RESPONSE____FOUND__INIT;                                         \
    CacheClient__##Camel##Response__Missing missing =                                              \
        CACHE_CLIENT____##UPPER##_RESPONSE____MISSING__INIT;                                       \
    if ((res) == ST_OK) {                                                                          \
      fill;                                                                                        \
      resp.oneof##_case = CACHE_CLIENT____##UPPER##_RESPONSE__##ONEOF##_FOUND;                     \
      resp.found = &found;                                                                         \
    } else {                                                                                       \
      resp.oneof##_case = CACHE_CLIENT____##UPPER##_RESPONSE__##ONEOF##_MISSING;                   \
      resp.missing = &missing;                                                                     \
    }                                                                                              \
    scs_reply((x), &resp.base);                                                                    \
  } while (0)

/* Replies found{list_length} or missing. */
#define REPLY_LEN(x, res, len, Camel, UPPER)                                                       \
  REPLY_FOUND(x, res, Camel, UPPER, list, LIST, found.list_length = (len))

static bool values_fit(scs_ctx *x, const ProtobufCBinaryData *v, size_t n) {
  size_t limit = x->a->limits.max_element_size;
  for (size_t i = 0; i < n; i++) {
    x->bytes += v[i].len;
    if (limit && v[i].len > limit) {
      srv_call_fail_limit(x->call, "element_size_limit_exceeded",
                          "list element of %zu bytes exceeds the element size limit of %zu bytes",
                          v[i].len, limit);
      return false;
    }
    if (v[i].len > x->a->max_message_bytes) {
      srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "value of %zu bytes exceeds %zu",
                    v[i].len, x->a->max_message_bytes);
      return false;
    }
  }
  return true;
}

/* Hosted Momento caps every TTL (one day); 0 means the server's default. */
static bool ttl_ok(scs_ctx *x, uint64_t ttl_ms) {
  uint64_t max = x->a->limits.max_ttl_ms;
  if (max && ttl_ms > max) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT,
                  "ttl_milliseconds of %llu exceeds the maximum TTL of %llu ms",
                  (unsigned long long)ttl_ms, (unsigned long long)max);
    return false;
  }
  return true;
}

/* Pushes n values; ProtobufCBinaryData and st_bytes differ in layout, so convert. */
static void push(scs_ctx *x, const ProtobufCBinaryData *v, size_t n, bool front, uint64_t ttl,
                 bool refresh, uint32_t truncate, ProtobufCMessage *resp, uint32_t *len_field) {
  x->ops = quota_element_ops(n);
  if (!values_fit(x, v, n) || !ttl_ok(x, ttl)) {
    return;
  }
  st_bytes *vals = calloc(n ? n : 1, sizeof *vals);
  if (!vals) {
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    vals[i] = (st_bytes){v[i].data, v[i].len};
  }
  st_ttl t = {ttl, refresh};
  size_t item = 0;
  st_result r =
      store_list_push(x->a->store, x->cache, x->key, vals, n, front, t, truncate, len_field, &item);
  free(vals);
  if (r == ST_ITEM_TOO_BIG) {
    srv_call_fail_limit(x->call, "item_size_limit_exceeded",
                        "list of %zu bytes after this write would exceed the item size limit "
                        "of %zu bytes; nothing was written",
                        item, x->a->limits.max_item_size);
  } else if (scs_ok(x, r)) {
    scs_reply(x, resp);
  }
}

static void op_push_back(scs_ctx *x, const void *req) {
  const CacheClient__ListPushBackRequest *r = req;
  CacheClient__ListPushBackResponse resp = CACHE_CLIENT____LIST_PUSH_BACK_RESPONSE__INIT;
  push(x, &r->value, 1, false, r->ttl_milliseconds, r->refresh_ttl, r->truncate_front_to_size,
       &resp.base, &resp.list_length);
}

static void op_push_front(scs_ctx *x, const void *req) {
  const CacheClient__ListPushFrontRequest *r = req;
  CacheClient__ListPushFrontResponse resp = CACHE_CLIENT____LIST_PUSH_FRONT_RESPONSE__INIT;
  push(x, &r->value, 1, true, r->ttl_milliseconds, r->refresh_ttl, r->truncate_back_to_size,
       &resp.base, &resp.list_length);
}

static void op_concat_back(scs_ctx *x, const void *req) {
  const CacheClient__ListConcatenateBackRequest *r = req;
  CacheClient__ListConcatenateBackResponse resp =
      CACHE_CLIENT____LIST_CONCATENATE_BACK_RESPONSE__INIT;
  push(x, r->values, r->n_values, false, r->ttl_milliseconds, r->refresh_ttl,
       r->truncate_front_to_size, &resp.base, &resp.list_length);
}

static void op_concat_front(scs_ctx *x, const void *req) {
  const CacheClient__ListConcatenateFrontRequest *r = req;
  CacheClient__ListConcatenateFrontResponse resp =
      CACHE_CLIENT____LIST_CONCATENATE_FRONT_RESPONSE__INIT;
  push(x, r->values, r->n_values, true, r->ttl_milliseconds, r->refresh_ttl,
       r->truncate_back_to_size, &resp.base, &resp.list_length);
}

static void op_fetch(scs_ctx *x, const void *req) {
  const CacheClient__ListFetchRequest *r = req;
  st_range rg = {r->start_index_case ==
                     CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START,
                 r->end_index_case == CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_EXCLUSIVE_END,
                 r->inclusive_start, r->exclusive_end};
  ProtobufCBinaryData *vals = NULL;
  size_t n = 0;
  st_result res = store_list_fetch(x->a->store, x->cache, x->key, rg, &vals, &n);
  x->ops = quota_element_ops(n);
  for (size_t i = 0; i < n; i++) {
    x->bytes += vals[i].len;
  }
  if (scs_ok(x, res)) {
    REPLY_FOUND(x, res, ListFetch, LIST_FETCH, list, LIST, found.n_values = n; found.values = vals);
  }
  store_values_free(vals, n);
}

static void op_length(scs_ctx *x, const void *req) {
  (void)req;
  uint32_t len = 0;
  st_result res = store_list_length(x->a->store, x->cache, x->key, &len);
  if (scs_ok(x, res)) {
    REPLY_FOUND(x, res, ListLength, LIST_LENGTH, list, LIST, found.length = len);
  }
}

static void op_retain(scs_ctx *x, const void *req) {
  const CacheClient__ListRetainRequest *r = req;
  st_range rg = {r->start_index_case ==
                     CACHE_CLIENT____LIST_RETAIN_REQUEST__START_INDEX_INCLUSIVE_START,
                 r->end_index_case == CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX_EXCLUSIVE_END,
                 r->inclusive_start, r->exclusive_end};
  if (!ttl_ok(x, r->ttl_milliseconds)) {
    return;
  }
  uint32_t len = 0;
  st_ttl t = {r->ttl_milliseconds, r->refresh_ttl};
  st_result res = store_list_retain(x->a->store, x->cache, x->key, rg, t, &len);
  if (scs_ok(x, res)) {
    REPLY_LEN(x, res, len, ListRetain, LIST_RETAIN);
  }
}

static void op_remove(scs_ctx *x, const void *req) {
  const CacheClient__ListRemoveRequest *r = req;
  if (r->remove_case != CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT, "all_elements_with_value is required");
    return;
  }
  uint32_t len = 0;
  st_bytes v = {r->all_elements_with_value.data, r->all_elements_with_value.len};
  x->bytes += v.len;
  st_result res = store_list_remove_value(x->a->store, x->cache, x->key, v, &len);
  if (scs_ok(x, res)) {
    REPLY_LEN(x, res, len, ListRemove, LIST_REMOVE);
  }
}

static void op_erase(scs_ctx *x, const void *req) {
  const CacheClient__ListEraseRequest *r = req;
  bool all = r->erase_case == CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_ALL;
  if (!all && r->erase_case != CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT, "erase needs some ranges or all");
    return;
  }
  size_t n = all ? 0 : r->some->n_ranges;
  if (n > SCS_MAX_ERASE_RANGES) {
    /* Bounds the sort the store does per request (Momento publishes no limit). */
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT,
                  "ListErase takes at most %d ranges, got %zu", SCS_MAX_ERASE_RANGES, n);
    return;
  }
  st_erase *ranges = calloc(n + 1, sizeof *ranges);
  if (!ranges) {
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    ranges[i] = (st_erase){r->some->ranges[i]->begin_index, r->some->ranges[i]->count};
  }
  uint32_t len = 0;
  st_result res = store_list_erase(x->a->store, x->cache, x->key, ranges, n, all, &len);
  free(ranges);
  if (scs_ok(x, res)) {
    REPLY_LEN(x, res, len, ListErase, LIST_ERASE);
  }
}

/* ListPopFront and ListPopBack differ only in their types and the end they pop. */
#define DEFINE_POP(name, Camel, UPPER, end, is_front)                                              \
  static void name(scs_ctx *x, const void *req) {                                                  \
    (void)req;                                                                                     \
    ProtobufCBinaryData v = {0, NULL};                                                             \
    uint32_t len = 0;                                                                              \
    st_result res = store_list_pop(x->a->store, x->cache, x->key, is_front, &v, &len);             \
    x->bytes += v.len;                                                                             \
    if (scs_ok(x, res)) {                                                                          \
      REPLY_FOUND(x, res, Camel, UPPER, list, LIST, found.end = v; found.list_length = len);       \
    }                                                                                              \
    free(v.data);                                                                                  \
  }

DEFINE_POP(op_pop_front, ListPopFront, LIST_POP_FRONT, front, true)
DEFINE_POP(op_pop_back, ListPopBack, LIST_POP_BACK, back, false)

/* ---- dictionaries ---- */

/* Every field and value must fit the element size limit, like a list's values. */
static bool pairs_fit(scs_ctx *x, CacheClient__DictionaryFieldValuePair *const *items, size_t n) {
  size_t limit = x->a->limits.max_element_size;
  for (size_t i = 0; i < n; i++) {
    size_t len =
        items[i]->field.len > items[i]->value.len ? items[i]->field.len : items[i]->value.len;
    x->bytes += items[i]->field.len + items[i]->value.len;
    if (limit && len > limit) {
      srv_call_fail_limit(x->call, "element_size_limit_exceeded",
                          "dictionary field or value of %zu bytes exceeds the element size limit "
                          "of %zu bytes",
                          len, limit);
      return false;
    }
  }
  return true;
}

/* Splits the pairs into fields and values (st_bytes: two arrays of 2n, one block). */
static st_bytes *split_pairs(CacheClient__DictionaryFieldValuePair *const *items, size_t n) {
  st_bytes *fv = calloc(2 * n + 1, sizeof *fv);
  for (size_t i = 0; fv && i < n; i++) {
    fv[i] = (st_bytes){items[i]->field.data, items[i]->field.len};
    fv[n + i] = (st_bytes){items[i]->value.data, items[i]->value.len};
  }
  return fv;
}

static void op_dict_set(scs_ctx *x, const void *req) {
  const CacheClient__DictionarySetRequest *r = req;
  size_t n = r->n_items;
  x->ops = quota_element_ops(n);
  if (n == 0) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT, "items is empty");
    return;
  }
  if (!pairs_fit(x, r->items, n) || !ttl_ok(x, r->ttl_milliseconds)) {
    return;
  }
  st_bytes *fv = split_pairs(r->items, n);
  size_t item = 0;
  st_result res = fv ? store_dict_set(x->a->store, x->cache, x->key, fv, fv + n, n,
                                      (st_ttl){r->ttl_milliseconds, r->refresh_ttl}, &item)
                     : ST_NOMEM;
  free(fv);
  if (res == ST_ITEM_TOO_BIG) {
    srv_call_fail_limit(x->call, "item_size_limit_exceeded",
                        "dictionary of %zu bytes after this write would exceed the item size "
                        "limit of %zu bytes; nothing was written",
                        item, x->a->limits.max_item_size);
  } else if (res == ST_TOO_LONG) {
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "dictionary would exceed the field count limit; nothing was written");
  } else if (scs_ok(x, res)) {
    CacheClient__DictionarySetResponse resp = CACHE_CLIENT____DICTIONARY_SET_RESPONSE__INIT;
    scs_reply(x, &resp.base);
  }
}

/* Answers found{one part per field, Hit + value or Miss} or missing. */
static void reply_dict_get(scs_ctx *x, st_result res, ProtobufCBinaryData *vals, size_t n) {
  CacheClient__DictionaryGetResponse__DictionaryGetResponsePart *parts =
      calloc(n + 1, sizeof *parts);
  CacheClient__DictionaryGetResponse__DictionaryGetResponsePart **ptrs =
      calloc(n + 1, sizeof *ptrs);
  if (!parts || !ptrs) {
    srv_call_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    for (size_t i = 0; i < n; i++) {
      CacheClient__DictionaryGetResponse__DictionaryGetResponsePart p =
          CACHE_CLIENT____DICTIONARY_GET_RESPONSE____DICTIONARY_GET_RESPONSE_PART__INIT;
      p.result =
          vals[i].data ? CACHE_CLIENT__ECACHE_RESULT__Hit : CACHE_CLIENT__ECACHE_RESULT__Miss;
      p.cache_body = vals[i].data ? vals[i] : (ProtobufCBinaryData){0, NULL};
      x->bytes += vals[i].len;
      parts[i] = p;
      ptrs[i] = &parts[i];
    }
    REPLY_FOUND(x, res, DictionaryGet, DICTIONARY_GET, dictionary, DICTIONARY, found.n_items = n;
                found.items = ptrs);
  }
  free(ptrs);
  free(parts);
}

static void op_dict_get(scs_ctx *x, const void *req) {
  const CacheClient__DictionaryGetRequest *r = req;
  size_t n = r->n_fields;
  x->ops = quota_element_ops(n);
  if (n == 0) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT, "fields is empty");
    return;
  }
  st_bytes *fields = calloc(n, sizeof *fields);
  ProtobufCBinaryData *vals = calloc(n, sizeof *vals);
  st_result res = fields && vals ? ST_OK : ST_NOMEM;
  for (size_t i = 0; res == ST_OK && i < n; i++) {
    fields[i] = (st_bytes){r->fields[i].data, r->fields[i].len};
  }
  if (res == ST_OK) {
    res = store_dict_get(x->a->store, x->cache, x->key, fields, n, vals);
  }
  if (scs_ok(x, res)) {
    reply_dict_get(x, res, vals, n);
  }
  if (vals) {
    store_values_free(vals, n);
  }
  free(fields);
}

static void op_dict_fetch(scs_ctx *x, const void *req) {
  (void)req;
  ProtobufCBinaryData *fv = NULL;
  size_t n = 0;
  st_result res = store_dict_fetch(x->a->store, x->cache, x->key, &fv, &n);
  x->ops = quota_element_ops(n);
  CacheClient__DictionaryFieldValuePair *pairs = calloc(n + 1, sizeof *pairs);
  CacheClient__DictionaryFieldValuePair **ptrs = calloc(n + 1, sizeof *ptrs);
  if (res == ST_OK && (!pairs || !ptrs)) {
    res = ST_NOMEM;
  }
  for (size_t i = 0; res == ST_OK && i < n; i++) {
    CacheClient__DictionaryFieldValuePair p = CACHE_CLIENT____DICTIONARY_FIELD_VALUE_PAIR__INIT;
    p.field = fv[2 * i];
    p.value = fv[2 * i + 1];
    x->bytes += p.field.len + p.value.len;
    pairs[i] = p;
    ptrs[i] = &pairs[i];
  }
  if (scs_ok(x, res)) {
    REPLY_FOUND(x, res, DictionaryFetch, DICTIONARY_FETCH, dictionary, DICTIONARY,
                found.n_items = n;
                found.items = ptrs);
  }
  free(ptrs);
  free(pairs);
  store_values_free(fv, 2 * n);
}

static void op_delete(scs_ctx *x, const void *req) {
  (void)req;
  if (scs_ok(x, store_item_delete(x->a->store, x->cache, x->key))) {
    CacheClient__DeleteResponse resp = CACHE_CLIENT____DELETE_RESPONSE__INIT;
    scs_reply(x, &resp.base);
  }
}

static void op_item_ttl(scs_ctx *x, const void *req) {
  (void)req;
  uint64_t left = 0;
  st_result res = store_item_ttl(x->a->store, x->cache, x->key, &left);
  if (scs_ok(x, res)) {
    REPLY_FOUND(x, res, ItemGetTtl, ITEM_GET_TTL, result, RESULT,
                found.remaining_ttl_millis = left);
  }
}

static const struct {
  const char *name;
  const ProtobufCMessageDescriptor *desc;
  auth_cache_verb verb;
  scs_op fn;
} g_ops[] = {
    {"ListPushBack", &cache_client____list_push_back_request__descriptor, VERB_WRITE, op_push_back},
    {"ListPushFront", &cache_client____list_push_front_request__descriptor, VERB_WRITE,
     op_push_front},
    {"ListConcatenateBack", &cache_client____list_concatenate_back_request__descriptor, VERB_WRITE,
     op_concat_back},
    {"ListConcatenateFront", &cache_client____list_concatenate_front_request__descriptor,
     VERB_WRITE, op_concat_front},
    {"ListFetch", &cache_client____list_fetch_request__descriptor, VERB_READ, op_fetch},
    {"ListLength", &cache_client____list_length_request__descriptor, VERB_READ, op_length},
    {"ListRetain", &cache_client____list_retain_request__descriptor, VERB_WRITE, op_retain},
    {"ListRemove", &cache_client____list_remove_request__descriptor, VERB_WRITE, op_remove},
    {"ListErase", &cache_client____list_erase_request__descriptor, VERB_WRITE, op_erase},
    {"ListPopFront", &cache_client____list_pop_front_request__descriptor, VERB_WRITE, op_pop_front},
    {"ListPopBack", &cache_client____list_pop_back_request__descriptor, VERB_WRITE, op_pop_back},
    {"DictionarySet", &cache_client____dictionary_set_request__descriptor, VERB_WRITE, op_dict_set},
    {"DictionaryGet", &cache_client____dictionary_get_request__descriptor, VERB_READ, op_dict_get},
    {"DictionaryFetch", &cache_client____dictionary_fetch_request__descriptor, VERB_READ,
     op_dict_fetch},
    {"Delete", &cache_client____delete_request__descriptor, VERB_WRITE, op_delete},
    {"ItemGetTtl", &cache_client____item_get_ttl_request__descriptor, VERB_READ, op_item_ttl},
};

/* Field 1 of every Scs request is the key as bytes. */
static st_bytes request_key(const ProtobufCMessage *m) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(m->descriptor, 1);
  const ProtobufCBinaryData *b = (const void *)((const char *)m + f->offset);
  return (st_bytes){b->data, b->len};
}

/* Cache metadata and the permission check (the token was verified before). */
static bool scs_admit(scs_ctx *x, const ProtobufCMessage *m, auth_cache_verb verb,
                      const char *method, const auth_claims *claims) {
  size_t len = 0;
  const char *cache = srv_call_meta(x->call, "cache", &len);
  if (!svc_name(x->call, "cache metadata", cache, len, x->cache)) {
    return false;
  }
  x->key = request_key(m);
  if (x->key.len > SVC_MAX_KEY) {
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT,
                  "list name / cache key of %zu bytes exceeds %d", x->key.len, SVC_MAX_KEY);
    return false;
  }
  if (x->key.len == 0) {
    /* Field 1's own name: cache_key, list_name or dictionary_name. */
    srv_call_fail(x->call, GRPC_STATUS_INVALID_ARGUMENT, "%s is missing or empty",
                  protobuf_c_message_descriptor_get_field(m->descriptor, 1)->name);
    return false;
  }
  if (!auth_allows_cache(claims, x->cache, x->key.data, x->key.len, verb)) {
    srv_call_fail(x->call, GRPC_STATUS_PERMISSION_DENIED,
                  "token lacks permission for %s on this item of cache %s", method, x->cache);
    return false;
  }
  return true;
}

/* The rate limits (--cache-ops-per-s, --cache-bytes-per-s): a call is refused while
 * either bucket of its cache is empty. */
static bool scs_rate_ok(scs_ctx *x, quota_ns *ns) {
  quota *q = x->a->quota;
  if (!quota_admit(q, ns, QUOTA_CACHE_OPS)) {
    srv_call_fail_limit(x->call, "operations_rate_limit_exceeded",
                        "cache %s exceeded its rate limit of %llu operations per second", x->cache,
                        (unsigned long long)quota_limit(q, QUOTA_CACHE_OPS));
    return false;
  }
  if (!quota_admit(q, ns, QUOTA_CACHE_BYTES)) {
    srv_call_fail_limit(x->call, "throughput_rate_limit_exceeded",
                        "cache %s exceeded its throughput limit of %llu bytes per second", x->cache,
                        (unsigned long long)quota_limit(q, QUOTA_CACHE_BYTES));
    return false;
  }
  return true;
}

/* Runs an admitted call; what it cost is taken from its cache's buckets as it replies
 * (a refused one's after its refusal). */
static void scs_execute(scs_ctx *x, size_t op, const ProtobufCMessage *m) {
  x->ns = quota_ns_get(x->a->quota, x->cache);
  if (!scs_rate_ok(x, x->ns)) {
    return;
  }
  g_ops[op].fn(x, m);
  scs_charge(x);
}

static void scs_run(app *a, srv_call *call, size_t op, const uint8_t *req, size_t len) {
  auth_claims claims;
  if (!svc_auth(a, call, NULL, &claims)) {
    return;
  }
  scs_ctx x = {.a = a, .call = call, .ops = 1};
  ProtobufCMessage *m = svc_unpack(call, g_ops[op].desc, req, len);
  if (m && scs_admit(&x, m, g_ops[op].verb, g_ops[op].name, &claims)) {
    scs_execute(&x, op, m);
  }
  if (m) {
    protobuf_c_message_free_unpacked(m, NULL);
  }
  auth_claims_clear(&claims);
}

void scs_handle(app *a, srv_call *call, const char *method, const uint8_t *req, size_t len) {
  for (size_t i = 0; i < sizeof g_ops / sizeof g_ops[0]; i++) {
    if (strcmp(method, g_ops[i].name) == 0) {
      scs_run(a, call, i, req, len);
      return;
    }
  }
  srv_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method cache_client.Scs/%s", method);
}
