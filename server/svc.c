/* mim-local: method dispatch, auth glue, and the small services (ping, control plane,
 * token minting). */
#include "svc.h"

#include "cacheping.pb-c.h"
#include "controlclient.pb-c.h"
#include "token.pb-c.h"
#include "utf8.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

bool svc_auth(app *a, srv_call *call, const char *fallback_token, auth_claims *claims) {
  size_t len = 0;
  const char *tok = srv_call_meta(call, "authorization", &len);
  if ((!tok || len == 0) && fallback_token && *fallback_token) {
    tok = fallback_token;
    len = strlen(fallback_token);
  }
  const char *why = NULL;
  if (auth_verify(&a->key, tok, len, claims, &why)) {
    if (a->no_auth) {
      claims->super_user = true;
    }
    return true;
  }
  if (a->no_auth) {
    memset(claims, 0, sizeof *claims);
    claims->super_user = true;
    claims->token_id = strdup("");
    return claims->token_id != NULL;
  }
  srv_call_fail(call, GRPC_STATUS_UNAUTHENTICATED, "%s", why);
  return false;
}

void *svc_unpack(srv_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *req,
                 size_t len) {
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
  if (!m) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "could not decode %s", desc->name);
  }
  return m;
}

bool svc_name(srv_call *call, const char *what, const char *s, size_t len, char *buf) {
  if (!s || len == 0) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s is missing or empty", what);
    return false;
  }
  if (len >= SVC_MAX_NAME || memchr(s, '\0', len) || !cmn_utf8_valid(s, len)) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s is invalid or too long", what);
    return false;
  }
  memcpy(buf, s, len);
  buf[len] = '\0';
  return true;
}

/* ---- ping ---- */

/* No token needed: the official SDKs ping without an authorization header. */
static void ping(app *a, srv_call *call, const uint8_t *req, size_t len) {
  (void)a;
  (void)req;
  (void)len;
  CacheClient__PingResponse resp = CACHE_CLIENT____PING_RESPONSE__INIT;
  srv_call_reply(call, &resp.base);
}

/* ---- control plane (super-user only) ---- */

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

static void create_cache(app *a, srv_call *call, const uint8_t *req, size_t len) {
  ControlClient__CreateCacheRequest *r;
  char name[SVC_MAX_NAME];
  if (!control_auth(a, call) ||
      !(r = svc_unpack(call, &control_client____create_cache_request__descriptor, req, len))) {
    return;
  }
  if (svc_name(call, "cache_name", r->cache_name, strlen(r->cache_name), name)) {
    st_result res = store_cache_create(a->store, name);
    if (res == ST_EXISTS) {
      srv_call_fail(call, GRPC_STATUS_ALREADY_EXISTS, "cache already exists: %s", name);
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
  control_client____create_cache_request__free_unpacked(r, NULL);
}

static void delete_cache(app *a, srv_call *call, const uint8_t *req, size_t len) {
  ControlClient__DeleteCacheRequest *r;
  char name[SVC_MAX_NAME];
  if (!control_auth(a, call) ||
      !(r = svc_unpack(call, &control_client____delete_cache_request__descriptor, req, len))) {
    return;
  }
  if (svc_name(call, "cache_name", r->cache_name, strlen(r->cache_name), name)) {
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
  control_client____delete_cache_request__free_unpacked(r, NULL);
}

static void list_caches(app *a, srv_call *call, const uint8_t *req, size_t len) {
  ControlClient__ListCachesRequest *r;
  if (!control_auth(a, call) ||
      !(r = svc_unpack(call, &control_client____list_caches_request__descriptor, req, len))) {
    return;
  }
  control_client____list_caches_request__free_unpacked(r, NULL);
  size_t n = 0;
  char **names = store_cache_names(a->store, &n);
  ControlClient__Cache *caches = calloc(n + 1, sizeof *caches);
  ControlClient__Cache **ptrs = calloc(n + 1, sizeof *ptrs);
  if (!caches || !ptrs) {
    srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    for (size_t i = 0; i < n; i++) {
      control_client____cache__init(&caches[i]);
      caches[i].cache_name = names[i];
      ptrs[i] = &caches[i];
    }
    ControlClient__ListCachesResponse resp = CONTROL_CLIENT____LIST_CACHES_RESPONSE__INIT;
    resp.n_cache = n;
    resp.cache = ptrs;
    srv_call_reply(call, &resp.base);
  }
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
  }
  free(names);
  free(caches);
  free(ptrs);
}

/* ---- tokens ---- */

#define MAX_TOKEN_ID_BYTES 256

static void mint(app *a, srv_call *call, const Token__GenerateDisposableTokenRequest *r,
                 const auth_claims *caller) {
  if (!r->expires || r->expires->valid_for_seconds == 0) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "expires.valid_for_seconds is required");
    return;
  }
  if (!r->permissions ||
      r->permissions->kind_case == PERMISSION_MESSAGES__PERMISSIONS__KIND__NOT_SET) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "permissions are required");
    return;
  }
  /* The SDKs allow 64 characters; 256 bytes leaves room for UTF-8 and keeps minted
   * tokens well inside gRPC's metadata limits. */
  if (strlen(r->token_id) > MAX_TOKEN_ID_BYTES) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "token_id is too long (max %d bytes)",
                  MAX_TOKEN_ID_BYTES);
    return;
  }
  if (!cmn_utf8_valid(r->token_id, strlen(r->token_id))) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "token_id is not valid UTF-8");
    return;
  }
  if (!caller->super_user && !caller->perms) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED, "token lacks permission to mint tokens");
    return;
  }
  if (!auth_covers(caller, r->permissions)) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                  "requested permissions exceed the caller's permissions");
    return;
  }
  uint64_t until = (uint64_t)time(NULL) + r->expires->valid_for_seconds;
  bool su = r->permissions->kind_case == PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  char *tok = auth_mint(&a->key, su ? NULL : r->permissions, r->token_id, until);
  if (!tok) {
    srv_call_fail(call, GRPC_STATUS_INTERNAL, "could not mint a token");
    return;
  }
  /* Never hand out a token this server would refuse: protobuf-c decodes some
   * permission encodings (e.g. a field numbered 0 in a long tag) that it cannot
   * re-encode into something it decodes again. */
  auth_claims check;
  const char *why = NULL;
  if (!auth_verify(&a->key, tok, strlen(tok), &check, &why)) {
    explicit_bzero(tok, strlen(tok));
    free(tok);
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "permissions cannot be encoded in a token");
    return;
  }
  auth_claims_clear(&check);
  Token__GenerateDisposableTokenResponse resp = TOKEN____GENERATE_DISPOSABLE_TOKEN_RESPONSE__INIT;
  resp.api_key = tok;
  resp.endpoint = a->endpoint;
  resp.valid_until = until;
  srv_call_reply(call, &resp.base);
  srv_log(LOG_INFO, "minted a token (id \"%s\", valid %u s)", r->token_id,
          r->expires->valid_for_seconds);
  free(tok);
}

static void gen_token(app *a, srv_call *call, const uint8_t *req, size_t len) {
  Token__GenerateDisposableTokenRequest *r =
      svc_unpack(call, &token____generate_disposable_token_request__descriptor, req, len);
  if (!r) {
    return;
  }
  auth_claims caller;
  if (svc_auth(a, call, r->auth_token, &caller)) {
    mint(a, call, r, &caller);
    auth_claims_clear(&caller);
  }
  token____generate_disposable_token_request__free_unpacked(r, NULL);
}

/* ---- dispatch ---- */

/* What clients call most: ping, publish, subscribe, and the IM list calls. */
const char *const srv_hot_methods[] = {
    "/cache_client.Ping/Ping",
    "/cache_client.pubsub.Pubsub/Publish",
    "/cache_client.pubsub.Pubsub/Subscribe",
    "/cache_client.Scs/ListPushBack",
    "/cache_client.Scs/ListFetch",
    NULL,
};

typedef void (*handler_fn)(app *a, srv_call *call, const uint8_t *req, size_t len);

static const struct {
  const char *path;
  handler_fn fn;
} g_methods[] = {
    {"/cache_client.Ping/Ping", ping},
    {"/control_client.ScsControl/CreateCache", create_cache},
    {"/control_client.ScsControl/DeleteCache", delete_cache},
    {"/control_client.ScsControl/ListCaches", list_caches},
    {"/token.Token/GenerateDisposableToken", gen_token},
    {"/cache_client.pubsub.Pubsub/Publish", topics_publish},
    {"/cache_client.pubsub.Pubsub/Subscribe", topics_subscribe},
};

void svc_dispatch(void *user, srv_call *call, const char *method, const uint8_t *req, size_t len) {
  app *a = user;
  static const char scs[] = "/cache_client.Scs/";
  if (strncmp(method, scs, sizeof scs - 1) == 0) {
    scs_handle(a, call, method + sizeof scs - 1, req, len);
    return;
  }
  for (size_t i = 0; i < sizeof g_methods / sizeof g_methods[0]; i++) {
    if (strcmp(method, g_methods[i].path) == 0) {
      g_methods[i].fn(a, call, req, len);
      return;
    }
  }
  srv_log(LOG_DEBUG, "unknown method %s", method);
  srv_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", method);
}
