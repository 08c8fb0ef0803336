/*
 * Cache lists over /cache_client.Scs/<Method>. Each public call validates its input,
 * packs one request, makes one unary call on the cache plane (the cache name travels as
 * "cache" metadata) and turns the response's found/missing oneof into plain results.
 */
#include "client_internal.h"
#include "error.h"
#include "pb.h"
#include "pb_call.h"
#include "struct_size.h"

#include <cacheclient.pb-c.h>
#include <common.pb-c.h>
#include <momento/list.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define SCS "/cache_client.Scs/"

/* ---- validation ---- */

static mim_status check_target(const mim_client *c, const char *cache, const char *key_what,
                               const char *key) {
  mim_clear_error();
  if (!c)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  mim_status st = mim_check_cache_name(cache);
  return st == MIM_OK ? mim_check_list_name(key_what, key) : st;
}

static mim_status check_value(const void *value, size_t len) {
  if (!value && len > 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "value is NULL but len is %zu", len);
  return MIM_OK;
}

/* Same-signed bounds can be checked locally; mixed signs depend on the list length. */
static mim_status check_range(const mim_list_range *r) {
  if (!r || !r->has_start || !r->has_end)
    return MIM_OK;
  if ((r->start < 0) == (r->end < 0) && r->start > r->end)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "range start %d is after end %d", (int)r->start,
                    (int)r->end);
  return MIM_OK;
}

/* The options a write really uses, in *eff: defaults for NULL (refresh_ttl), the
 * client's default TTL for 0 (the server's idea of a default TTL differs between
 * deployments, so always send one). Fails on a bad struct_size. */
static mim_status write_opts(const mim_client *c, const mim_list_write_options *o,
                             mim_list_write_options *eff) {
  *eff = (mim_list_write_options){.struct_size = sizeof *eff, .refresh_ttl = true};
  if (o) {
    mim_status st = mim_struct_copy_in(eff, sizeof *eff, o,
                                       MIM_SIZE_THROUGH(mim_list_write_options, truncate_to),
                                       "list write: options", "MIM_LIST_WRITE_OPTIONS_INIT");
    if (st != MIM_OK)
      return st;
  }
  if (eff->ttl_ms == 0)
    eff->ttl_ms = mim_client_default_ttl_ms(c);
  return MIM_OK;
}

/* ---- methods ---- */

#define SCS_METHOD(name, response)                                                                 \
  { MIM_HOST_CACHE, SCS name, &(response), false }

static const mim_pb_method push_back_method =
    SCS_METHOD("ListPushBack", cache_client____list_push_back_response__descriptor);
static const mim_pb_method push_front_method =
    SCS_METHOD("ListPushFront", cache_client____list_push_front_response__descriptor);
static const mim_pb_method concat_back_method =
    SCS_METHOD("ListConcatenateBack", cache_client____list_concatenate_back_response__descriptor);
static const mim_pb_method concat_front_method =
    SCS_METHOD("ListConcatenateFront", cache_client____list_concatenate_front_response__descriptor);
static const mim_pb_method fetch_method =
    SCS_METHOD("ListFetch", cache_client____list_fetch_response__descriptor);
static const mim_pb_method length_method =
    SCS_METHOD("ListLength", cache_client____list_length_response__descriptor);
static const mim_pb_method retain_method =
    SCS_METHOD("ListRetain", cache_client____list_retain_response__descriptor);
static const mim_pb_method remove_method =
    SCS_METHOD("ListRemove", cache_client____list_remove_response__descriptor);
static const mim_pb_method erase_method =
    SCS_METHOD("ListErase", cache_client____list_erase_response__descriptor);
static const mim_pb_method pop_front_method =
    SCS_METHOD("ListPopFront", cache_client____list_pop_front_response__descriptor);
static const mim_pb_method pop_back_method =
    SCS_METHOD("ListPopBack", cache_client____list_pop_back_response__descriptor);
static const mim_pb_method delete_method =
    SCS_METHOD("Delete", cache_client____delete_response__descriptor);
static const mim_pb_method item_ttl_method =
    SCS_METHOD("ItemGetTtl", cache_client____item_get_ttl_response__descriptor);

/* ---- results ---- */

static mim_status no_result(const ProtobufCMessage *resp) {
  return mim_fail(MIM_ERR_PROTOCOL, "%s has neither found nor missing",
                  resp->descriptor->short_name);
}

/* Reads a found-or-missing response (a oneof of a Found and a Missing message, the shape
 * mim-local's REPLY_FOUND writes): runs `use` with f pointing at the Found message,
 * nothing for Missing, and sets st to a protocol error for neither. oneof / ONEOF name
 * the response's case field (list or result). */
#define READ_FOUND(m, st, Camel, UPPER, oneof, ONEOF, f, use)                                      \
  do {                                                                                             \
    const CacheClient__##Camel##Response *r_ = (const CacheClient__##Camel##Response *)(m);        \
    if (r_->oneof##_case == CACHE_CLIENT____##UPPER##_RESPONSE__##ONEOF##_FOUND) {                 \
      /* NOLINTNEXTLINE(bugprone-macro-parentheses): f is the name being declared */               \
      const CacheClient__##Camel##Response__Found *f = r_->found;                                  \
      use;                                                                                         \
    } else if (r_->oneof##_case != CACHE_CLIENT____##UPPER##_RESPONSE__##ONEOF##_MISSING) {        \
      (st) = no_result(m);                                                                         \
    }                                                                                              \
  } while (0)

/* Reads found{list_length} or missing into *new_length (left at 0 for missing). */
#define READ_LENGTH(m, st, Camel, UPPER, new_length)                                               \
  READ_FOUND(m, st, Camel, UPPER, list, LIST, f_, set_u32(new_length, f_->list_length))

static void set_u32(uint32_t *out, uint32_t v) {
  if (out)
    *out = v;
}

static void set_bool(bool *out, bool v) {
  if (out)
    *out = v;
}

/* ---- fetch results ---- */

static size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

/* One block: the struct, the mim_bytes array, then each value NUL-terminated, so the
 * caller frees everything with a single free(). */
static mim_status make_values(bool found, const ProtobufCBinaryData *vals, size_t n,
                              mim_list_values **out) {
  size_t head = align_up(sizeof(mim_list_values), alignof(mim_bytes));
  if (n > (SIZE_MAX - head) / sizeof(mim_bytes))
    return mim_fail(MIM_ERR_NO_MEMORY, "list of %zu values is too large", n);
  size_t total = head + n * sizeof(mim_bytes);
  for (size_t i = 0; i < n; i++) {
    if (vals[i].len >= SIZE_MAX - total)
      return mim_fail(MIM_ERR_NO_MEMORY, "list values are too large");
    total += vals[i].len + 1;
  }
  unsigned char *blk = malloc(total);
  if (!blk)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for %zu list values", n);
  mim_list_values *lv = (mim_list_values *)blk;
  mim_bytes *arr = (mim_bytes *)(blk + head);
  unsigned char *p = blk + head + n * sizeof(mim_bytes);
  lv->found = found;
  lv->count = n;
  lv->values = n ? arr : NULL;
  for (size_t i = 0; i < n; i++) {
    if (vals[i].len)
      memcpy(p, vals[i].data, vals[i].len);
    p[vals[i].len] = '\0';
    arr[i].data = p;
    arr[i].len = vals[i].len;
    p += vals[i].len + 1;
  }
  *out = lv;
  return MIM_OK;
}

MIM_API void mim_list_values_free(mim_list_values *values) {
  free(values);
}

static mim_status fetch_result(const CacheClient__ListFetchResponse *r, mim_list_values **out) {
  switch (r->list_case) {
  case CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND:
    return make_values(true, r->found->values, r->found->n_values, out);
  case CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_MISSING:
    return make_values(false, NULL, 0, out);
  default:
    return no_result(&r->base);
  }
}

/* ---- request builders (shared by sync and async forms) ---- */

/* The PushBack and PushFront requests encode alike (field 5 truncates the other end),
 * and so do the two Concatenate requests: one message of each serves both ends, as one
 * pop request serves both pops. The method alone says which end is written. */
static const ProtobufCMessage *push_request(const char *list, const void *value, size_t len,
                                            const mim_list_write_options *o,
                                            CacheClient__ListPushBackRequest *req) {
  CacheClient__ListPushBackRequest init = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  *req = init;
  req->list_name = mim_pb_name(list);
  req->value = mim_pb_bytes(value, len);
  req->ttl_milliseconds = o->ttl_ms;
  req->refresh_ttl = o->refresh_ttl;
  req->truncate_front_to_size = o->truncate_to;
  return &req->base;
}

static const mim_pb_method *push_method(bool back) {
  return back ? &push_back_method : &push_front_method;
}

/* All four write responses (push and concatenate, either end) carry list_length only. */
static uint32_t written_length(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  if (d == &cache_client____list_push_back_response__descriptor)
    return ((const CacheClient__ListPushBackResponse *)m)->list_length;
  if (d == &cache_client____list_push_front_response__descriptor)
    return ((const CacheClient__ListPushFrontResponse *)m)->list_length;
  if (d == &cache_client____list_concatenate_back_response__descriptor)
    return ((const CacheClient__ListConcatenateBackResponse *)m)->list_length;
  return ((const CacheClient__ListConcatenateFrontResponse *)m)->list_length;
}

/* Unbounded ends are sent explicitly, as the official SDKs do. */
static Common__Unbounded unbounded = COMMON____UNBOUNDED__INIT;

/* Fills the range oneofs of a ListFetch or ListRetain request (UPPER names which; the
 * fields are the same in both). */
#define SET_RANGE(req, r, UPPER)                                                                   \
  do {                                                                                             \
    if ((r) && (r)->has_start) {                                                                   \
      (req)->start_index_case = CACHE_CLIENT____##UPPER##_REQUEST__START_INDEX_INCLUSIVE_START;    \
      (req)->inclusive_start = (r)->start;                                                         \
    } else {                                                                                       \
      (req)->start_index_case = CACHE_CLIENT____##UPPER##_REQUEST__START_INDEX_UNBOUNDED_START;    \
      (req)->unbounded_start = &unbounded;                                                         \
    }                                                                                              \
    if ((r) && (r)->has_end) {                                                                     \
      (req)->end_index_case = CACHE_CLIENT____##UPPER##_REQUEST__END_INDEX_EXCLUSIVE_END;          \
      (req)->exclusive_end = (r)->end;                                                             \
    } else {                                                                                       \
      (req)->end_index_case = CACHE_CLIENT____##UPPER##_REQUEST__END_INDEX_UNBOUNDED_END;          \
      (req)->unbounded_end = &unbounded;                                                           \
    }                                                                                              \
  } while (0)

static const ProtobufCMessage *fetch_request(const char *list, const mim_list_range *range,
                                             CacheClient__ListFetchRequest *req) {
  CacheClient__ListFetchRequest init = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  *req = init;
  req->list_name = mim_pb_name(list);
  SET_RANGE(req, range, LIST_FETCH);
  return &req->base;
}

/* ---- push / concat ---- */

static mim_status check_push(const mim_client *c, const char *cache, const char *list,
                             const void *value, size_t len) {
  mim_status st = check_target(c, cache, "list name", list);
  return st == MIM_OK ? check_value(value, len) : st;
}

static mim_status push(bool back, mim_client *c, const char *cache, const char *list,
                       const void *value, size_t len, const mim_list_write_options *o,
                       uint32_t *new_length) {
  set_u32(new_length, 0);
  mim_list_write_options eff;
  mim_status st = check_push(c, cache, list, value, len);
  if (st == MIM_OK)
    st = write_opts(c, o, &eff);
  if (st != MIM_OK)
    return st;
  CacheClient__ListPushBackRequest req;
  ProtobufCMessage *resp;
  st = mim_pb_call(c, push_method(back), cache, push_request(list, value, len, &eff, &req), &resp);
  if (st == MIM_OK)
    set_u32(new_length, written_length(resp));
  mim_pb_free(resp);
  return st;
}

MIM_API mim_status mim_list_push_back(mim_client *client, const char *cache, const char *list,
                                      const void *value, size_t len,
                                      const mim_list_write_options *options, uint32_t *new_length) {
  return mim_arg_in(__func__, push(true, client, cache, list, value, len, options, new_length));
}

MIM_API mim_status mim_list_push_front(mim_client *client, const char *cache, const char *list,
                                       const void *value, size_t len,
                                       const mim_list_write_options *options,
                                       uint32_t *new_length) {
  return mim_arg_in(__func__, push(false, client, cache, list, value, len, options, new_length));
}

static mim_status check_values(const mim_bytes *values, size_t count) {
  if (count == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "no values to concatenate");
  if (!values)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "values is NULL but count is %zu", count);
  for (size_t i = 0; i < count; i++)
    if (!values[i].data && values[i].len > 0)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT, "values[%zu].data is NULL", i);
  return MIM_OK;
}

/* vals is only pointed at. */
static const ProtobufCMessage *concat_request(const char *list, ProtobufCBinaryData *vals,
                                              size_t count, const mim_list_write_options *o,
                                              CacheClient__ListConcatenateBackRequest *req) {
  CacheClient__ListConcatenateBackRequest init =
      CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  *req = init;
  req->list_name = mim_pb_name(list);
  req->n_values = count;
  req->values = vals;
  req->ttl_milliseconds = o->ttl_ms;
  req->refresh_ttl = o->refresh_ttl;
  req->truncate_front_to_size = o->truncate_to;
  return &req->base;
}

static mim_status concat(bool back, mim_client *c, const char *cache, const char *list,
                         const mim_bytes *values, size_t count, const mim_list_write_options *o,
                         uint32_t *new_length) {
  set_u32(new_length, 0);
  mim_status st = check_target(c, cache, "list name", list);
  if (st == MIM_OK)
    st = check_values(values, count);
  mim_list_write_options eff;
  if (st == MIM_OK)
    st = write_opts(c, o, &eff);
  if (st != MIM_OK)
    return st;
  ProtobufCBinaryData *vals = calloc(count, sizeof *vals);
  if (!vals)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for %zu values", count);
  for (size_t i = 0; i < count; i++)
    vals[i] = mim_pb_bytes(values[i].data, values[i].len);
  CacheClient__ListConcatenateBackRequest req;
  ProtobufCMessage *resp;
  st = mim_pb_call(c, back ? &concat_back_method : &concat_front_method, cache,
                   concat_request(list, vals, count, &eff, &req), &resp);
  free(vals);
  if (st == MIM_OK)
    set_u32(new_length, written_length(resp));
  mim_pb_free(resp);
  return st;
}

MIM_API mim_status mim_list_concat_back(mim_client *client, const char *cache, const char *list,
                                        const mim_bytes *values, size_t count,
                                        const mim_list_write_options *options,
                                        uint32_t *new_length) {
  return mim_arg_in(__func__,
                    concat(true, client, cache, list, values, count, options, new_length));
}

MIM_API mim_status mim_list_concat_front(mim_client *client, const char *cache, const char *list,
                                         const mim_bytes *values, size_t count,
                                         const mim_list_write_options *options,
                                         uint32_t *new_length) {
  return mim_arg_in(__func__,
                    concat(false, client, cache, list, values, count, options, new_length));
}

/* ---- reads ---- */

MIM_API mim_status mim_list_fetch(mim_client *client, const char *cache, const char *list,
                                  const mim_list_range *range, mim_list_values **out) {
  if (out)
    *out = NULL;
  mim_status st = check_target(client, cache, "list name", list);
  if (st == MIM_OK && !out)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL");
  if (st == MIM_OK)
    st = check_range(range);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ListFetchRequest req;
  ProtobufCMessage *resp;
  st = mim_pb_call(client, &fetch_method, cache, fetch_request(list, range, &req), &resp);
  if (st == MIM_OK)
    st = fetch_result((const CacheClient__ListFetchResponse *)resp, out);
  mim_pb_free(resp);
  return mim_arg_in(__func__, st);
}

MIM_API mim_status mim_list_length(mim_client *client, const char *cache, const char *list,
                                   uint32_t *length, bool *found) {
  set_u32(length, 0);
  set_bool(found, false);
  mim_status st = check_target(client, cache, "list name", list);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ListLengthRequest req = CACHE_CLIENT____LIST_LENGTH_REQUEST__INIT;
  req.list_name = mim_pb_name(list);
  ProtobufCMessage *m;
  st = mim_pb_call(client, &length_method, cache, &req.base, &m);
  if (st == MIM_OK)
    READ_FOUND(m, st, ListLength, LIST_LENGTH, list, LIST, f, {
      set_u32(length, f->length);
      set_bool(found, true);
    });
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

/* ---- retain / remove / erase ---- */

MIM_API mim_status mim_list_retain(mim_client *client, const char *cache, const char *list,
                                   const mim_list_range *range,
                                   const mim_list_write_options *options, uint32_t *new_length) {
  set_u32(new_length, 0);
  mim_status st = check_target(client, cache, "list name", list);
  if (st == MIM_OK)
    st = check_range(range);
  mim_list_write_options eff;
  if (st == MIM_OK)
    st = write_opts(client, options, &eff);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  const mim_list_write_options *o = &eff;
  CacheClient__ListRetainRequest req = CACHE_CLIENT____LIST_RETAIN_REQUEST__INIT;
  req.list_name = mim_pb_name(list);
  SET_RANGE(&req, range, LIST_RETAIN);
  req.ttl_milliseconds = o->ttl_ms;
  req.refresh_ttl = o->refresh_ttl;
  ProtobufCMessage *m;
  st = mim_pb_call(client, &retain_method, cache, &req.base, &m);
  if (st == MIM_OK)
    READ_LENGTH(m, st, ListRetain, LIST_RETAIN, new_length);
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

MIM_API mim_status mim_list_remove_value(mim_client *client, const char *cache, const char *list,
                                         const void *value, size_t len, uint32_t *new_length) {
  set_u32(new_length, 0);
  mim_status st = check_target(client, cache, "list name", list);
  if (st == MIM_OK)
    st = check_value(value, len);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ListRemoveRequest req = CACHE_CLIENT____LIST_REMOVE_REQUEST__INIT;
  req.list_name = mim_pb_name(list);
  req.remove_case = CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE;
  req.all_elements_with_value = mim_pb_bytes(value, len);
  ProtobufCMessage *m;
  st = mim_pb_call(client, &remove_method, cache, &req.base, &m);
  if (st == MIM_OK)
    READ_LENGTH(m, st, ListRemove, LIST_REMOVE, new_length);
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

static mim_status check_erase(const mim_list_erase_range *ranges, size_t n) {
  if (!ranges && n > 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "ranges is NULL but n is %zu", n);
  if (ranges && n == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "ranges given but n is 0 (pass NULL to erase all)");
  return MIM_OK;
}

/* Builds the oneof: "all" for no ranges, else one _ListRange per range. The pointers in
 * req point into the caller-provided arrays, which must outlive the packing. */
static void erase_body(CacheClient__ListEraseRequest *req, const mim_list_erase_range *ranges,
                       size_t n, CacheClient__ListEraseRequest__All *all,
                       CacheClient__ListEraseRequest__ListRanges *some, CacheClient__ListRange *rs,
                       CacheClient__ListRange **rp) {
  if (n == 0) {
    req->erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_ALL;
    req->all = all;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    CacheClient__ListRange init = CACHE_CLIENT____LIST_RANGE__INIT;
    rs[i] = init;
    rs[i].begin_index = ranges[i].begin;
    rs[i].count = ranges[i].count;
    rp[i] = &rs[i];
  }
  some->n_ranges = n;
  some->ranges = rp;
  req->erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME;
  req->some = some;
}

MIM_API mim_status mim_list_erase(mim_client *client, const char *cache, const char *list,
                                  const mim_list_erase_range *ranges, size_t n,
                                  uint32_t *new_length) {
  set_u32(new_length, 0);
  mim_status st = check_target(client, cache, "list name", list);
  if (st == MIM_OK)
    st = check_erase(ranges, n);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ListRange *rs = n ? calloc(n, sizeof *rs) : NULL;
  CacheClient__ListRange **rp = n ? calloc(n, sizeof *rp) : NULL;
  if (n && (!rs || !rp)) {
    free(rs);
    free(rp);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for %zu ranges", n);
  }
  CacheClient__ListEraseRequest req = CACHE_CLIENT____LIST_ERASE_REQUEST__INIT;
  CacheClient__ListEraseRequest__All all = CACHE_CLIENT____LIST_ERASE_REQUEST____ALL__INIT;
  CacheClient__ListEraseRequest__ListRanges some =
      CACHE_CLIENT____LIST_ERASE_REQUEST____LIST_RANGES__INIT;
  req.list_name = mim_pb_name(list);
  erase_body(&req, ranges, n, &all, &some, rs, rp);
  ProtobufCMessage *m;
  st = mim_pb_call(client, &erase_method, cache, &req.base, &m);
  free(rs);
  free(rp);
  if (st == MIM_OK)
    READ_LENGTH(m, st, ListErase, LIST_ERASE, new_length);
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

/* ---- pop ---- */

static mim_status give_value(const ProtobufCBinaryData *v, uint8_t **value, size_t *len) {
  if (value) {
    *value = malloc(v->len + 1);
    if (!*value)
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for a %zu-byte value", v->len);
    if (v->len)
      memcpy(*value, v->data, v->len);
    (*value)[v->len] = '\0';
  }
  if (len)
    *len = v->len;
  return MIM_OK;
}

static mim_status pop(bool front, mim_client *c, const char *cache, const char *list,
                      uint8_t **value, size_t *len, bool *found) {
  if (value)
    *value = NULL;
  if (len)
    *len = 0;
  set_bool(found, false);
  mim_status st = check_target(c, cache, "list name", list);
  if (st != MIM_OK)
    return st;
  /* Both requests are just list_name = 1, so one encoding serves both methods. */
  CacheClient__ListPopFrontRequest req = CACHE_CLIENT____LIST_POP_FRONT_REQUEST__INIT;
  req.list_name = mim_pb_name(list);
  ProtobufCMessage *m;
  st = mim_pb_call(c, front ? &pop_front_method : &pop_back_method, cache, &req.base, &m);
  const ProtobufCBinaryData *v = NULL;
  if (st == MIM_OK && front)
    READ_FOUND(m, st, ListPopFront, LIST_POP_FRONT, list, LIST, f, v = &f->front);
  else if (st == MIM_OK)
    READ_FOUND(m, st, ListPopBack, LIST_POP_BACK, list, LIST, f, v = &f->back);
  if (v) {
    st = give_value(v, value, len);
    set_bool(found, st == MIM_OK);
  }
  mim_pb_free(m);
  return st;
}

MIM_API mim_status mim_list_pop_front(mim_client *client, const char *cache, const char *list,
                                      uint8_t **value, size_t *len, bool *found) {
  return mim_arg_in(__func__, pop(true, client, cache, list, value, len, found));
}

MIM_API mim_status mim_list_pop_back(mim_client *client, const char *cache, const char *list,
                                     uint8_t **value, size_t *len, bool *found) {
  return mim_arg_in(__func__, pop(false, client, cache, list, value, len, found));
}

/* ---- items ---- */

MIM_API mim_status mim_item_delete(mim_client *client, const char *cache, const char *key) {
  mim_status st = check_target(client, cache, "key", key);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__DeleteRequest req = CACHE_CLIENT____DELETE_REQUEST__INIT;
  req.cache_key = mim_pb_name(key);
  ProtobufCMessage *m;
  st = mim_pb_call(client, &delete_method, cache, &req.base, &m);
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

MIM_API mim_status mim_item_ttl(mim_client *client, const char *cache, const char *key,
                                uint64_t *remaining_ms, bool *found) {
  if (remaining_ms)
    *remaining_ms = 0;
  set_bool(found, false);
  mim_status st = check_target(client, cache, "key", key);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ItemGetTtlRequest req = CACHE_CLIENT____ITEM_GET_TTL_REQUEST__INIT;
  req.cache_key = mim_pb_name(key);
  ProtobufCMessage *m;
  st = mim_pb_call(client, &item_ttl_method, cache, &req.base, &m);
  if (st == MIM_OK)
    READ_FOUND(m, st, ItemGetTtl, ITEM_GET_TTL, result, RESULT, f, {
      if (remaining_ms)
        *remaining_ms = f->remaining_ttl_millis;
      set_bool(found, true);
    });
  mim_pb_free(m);
  return mim_arg_in(__func__, st);
}

/* ---- async ---- */

/* Runs on the event thread. */
static void write_done(const mim_pb_pending *call, mim_status st, const char *detail,
                       const ProtobufCMessage *resp) {
  mim_list_write_cb cb = (mim_list_write_cb)call->user_fn;
  if (cb)
    cb(call->user, st, detail, st == MIM_OK ? written_length(resp) : 0);
}

static mim_status push_async(bool back, mim_client *c, const char *cache, const char *list,
                             const void *value, size_t len, const mim_list_write_options *o,
                             mim_list_write_cb cb, void *user) {
  mim_list_write_options eff;
  mim_status st = check_push(c, cache, list, value, len);
  if (st == MIM_OK)
    st = write_opts(c, o, &eff);
  if (st != MIM_OK)
    return st;
  CacheClient__ListPushBackRequest req;
  return mim_pb_call_async(c, push_method(back), cache, push_request(list, value, len, &eff, &req),
                           write_done, (mim_pb_user_fn)cb, user);
}

MIM_API mim_status mim_list_push_back_async(mim_client *client, const char *cache, const char *list,
                                            const void *value, size_t len,
                                            const mim_list_write_options *options,
                                            mim_list_write_cb cb, void *user) {
  return mim_arg_in(__func__, push_async(true, client, cache, list, value, len, options, cb, user));
}

MIM_API mim_status mim_list_push_front_async(mim_client *client, const char *cache,
                                             const char *list, const void *value, size_t len,
                                             const mim_list_write_options *options,
                                             mim_list_write_cb cb, void *user) {
  return mim_arg_in(__func__,
                    push_async(false, client, cache, list, value, len, options, cb, user));
}

/* Runs on the event thread; a result that cannot be turned into values is described
 * through the event thread's own detail. */
static void fetch_done(const mim_pb_pending *call, mim_status st, const char *detail,
                       const ProtobufCMessage *resp) {
  mim_list_values *values = NULL;
  if (st == MIM_OK) {
    st = fetch_result((const CacheClient__ListFetchResponse *)resp, &values);
    if (st != MIM_OK)
      detail = mim_last_error_detail();
  }
  ((mim_list_fetch_cb)call->user_fn)(call->user, st, detail, values);
  mim_list_values_free(values);
}

MIM_API mim_status mim_list_fetch_async(mim_client *client, const char *cache, const char *list,
                                        const mim_list_range *range, mim_list_fetch_cb cb,
                                        void *user) {
  mim_status st = check_target(client, cache, "list name", list);
  if (st == MIM_OK && !cb)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "cb is NULL");
  if (st == MIM_OK)
    st = check_range(range);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  CacheClient__ListFetchRequest req;
  return mim_arg_in(__func__, mim_pb_call_async(client, &fetch_method, cache,
                                                fetch_request(list, range, &req), fetch_done,
                                                (mim_pb_user_fn)cb, user));
}
