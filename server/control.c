/* mim-local: control_client.ScsControl (create, delete and list caches; super-user
 * only). */
#include "handlers.h"

#include "controlclient.pb-c.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static bool control_auth(app *a, srv_call *call) {
  auth_claims claims;
  if (!svc_auth(a, call, NULL, &claims)) {
    return false;
  }
  bool ok = claims.super_user;
  auth_claims_clear(&claims);
  if (!ok) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                  "the control plane needs a super-user token");
  }
  return ok;
}

/* The super-user check, then the request's cache_name (create and delete both carry
 * one) validated into name; false when the call was failed. */
static bool cache_name_request(app *a, srv_call *call, const ProtobufCMessageDescriptor *desc,
                               const uint8_t *req, size_t len, char *name) {
  ProtobufCMessage *m;
  if (!control_auth(a, call) || !(m = svc_unpack(call, desc, req, len))) {
    return false;
  }
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(desc, "cache_name");
  const char *cache = f ? *(char *const *)(const void *)((const char *)m + f->offset) : "";
  bool ok = svc_name(call, "cache_name", cache, strlen(cache), name);
  protobuf_c_message_free_unpacked(m, NULL);
  return ok;
}

void control_create_cache(app *a, srv_call *call, const uint8_t *req, size_t len) {
  char name[SVC_MAX_NAME];
  if (cache_name_request(a, call, &control_client____create_cache_request__descriptor, req, len,
                         name)) {
    size_t max = a->max_caches ? a->max_caches : SVC_DEFAULT_MAX_CACHES;
    st_result res = store_cache_create_capped(a->store, name, max);
    if (res == ST_EXISTS) {
      srv_call_fail(call, GRPC_STATUS_ALREADY_EXISTS, "cache already exists: %s", name);
    } else if (res == ST_TOO_MANY) {
      srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                    "cache limit exceeded: at most %zu caches (delete one first)", max);
    } else if (res == ST_IO || res == ST_TOO_BIG) {
      srv_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                    "the server could not record the write in its data directory");
    } else if (res != ST_OK) {
      srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
      srv_log(LOG_INFO, "created cache %s", name);
      ControlClient__CreateCacheResponse resp = CONTROL_CLIENT____CREATE_CACHE_RESPONSE__INIT;
      srv_call_reply(call, &resp.base);
    }
  }
}

void control_delete_cache(app *a, srv_call *call, const uint8_t *req, size_t len) {
  char name[SVC_MAX_NAME];
  if (cache_name_request(a, call, &control_client____delete_cache_request__descriptor, req, len,
                         name)) {
    st_result res = store_cache_delete(a->store, name);
    if (res == ST_IO || res == ST_TOO_BIG) {
      srv_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                    "the server could not record the write in its data directory");
    } else if (res != ST_OK) {
      srv_call_fail(call, GRPC_STATUS_NOT_FOUND, "cache not found: %s", name);
    } else {
      pubsub_drop_cache(a->ps, name);
      srv_log(LOG_INFO, "deleted cache %s", name);
      ControlClient__DeleteCacheResponse resp = CONTROL_CLIENT____DELETE_CACHE_RESPONSE__INIT;
      srv_call_reply(call, &resp.base);
    }
  }
}

/* Caches per ListCaches reply: names are below 256 bytes, so a page stays under 30 KB,
 * far below a client's 4 MiB receive limit. */
#define CONTROL_LIST_PAGE 100

/* Replies names[from, from + count), with next_token the last name given when more
 * follow (the cursor is a name, so caches made or deleted meanwhile shift nothing). */
static void reply_cache_page(srv_call *call, char **names, size_t from, size_t count, bool more) {
  ControlClient__Cache *caches = calloc(count + 1, sizeof *caches);
  ControlClient__Cache **ptrs = calloc(count + 1, sizeof *ptrs);
  if (!caches || !ptrs) {
    srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    for (size_t i = 0; i < count; i++) {
      control_client____cache__init(&caches[i]);
      caches[i].cache_name = names[from + i];
      ptrs[i] = &caches[i];
    }
    ControlClient__ListCachesResponse resp = CONTROL_CLIENT____LIST_CACHES_RESPONSE__INIT;
    resp.n_cache = count;
    resp.cache = ptrs;
    resp.next_token = more ? names[from + count - 1] : (char *)"";
    srv_call_reply(call, &resp.base);
  }
  free(caches);
  free(ptrs);
}

/* Sorted names, one page at a time: the caches whose names sort after next_token. */
void control_list_caches(app *a, srv_call *call, const uint8_t *req, size_t len) {
  ControlClient__ListCachesRequest *r;
  if (!control_auth(a, call) ||
      !(r = svc_unpack(call, &control_client____list_caches_request__descriptor, req, len))) {
    return;
  }
  size_t n = 0;
  char **names = store_cache_names(a->store, &n);
  const char *after = r->next_token ? r->next_token : "";
  size_t from = 0;
  while (*after && from < n && strcmp(names[from], after) <= 0) {
    from++;
  }
  size_t count = n - from < CONTROL_LIST_PAGE ? n - from : CONTROL_LIST_PAGE;
  reply_cache_page(call, names, from, count, from + count < n);
  control_client____list_caches_request__free_unpacked(r, NULL);
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
  }
  free(names);
}
