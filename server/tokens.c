/* mim-local: token.Token (GenerateDisposableToken). As in hosted Momento, only an API
 * key mints: here that is a super-user token (the root key). A disposable token (always
 * explicit permissions) cannot mint at all, so it can never hand out a child that
 * outlives it or carries another token id (the publisher id receivers trust). */
#include "handlers.h"
#include "utf8.h"

#include "token.pb-c.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TOKEN_ID_BYTES 256

/* Who may mint what; fails the call and returns false otherwise. */
static bool minting_allowed(srv_call *call, const Token__GenerateDisposableTokenRequest *r,
                            const auth_claims *caller) {
  if (!caller->super_user) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                  "a disposable token cannot mint tokens; mint with an API key (the root key)");
    return false;
  }
  /* A super-user token could mint again: a disposable one must stay explicit. */
  if (r->permissions->kind_case != PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                  "a disposable token needs explicit permissions (super-user is for API keys)");
    return false;
  }
  /* Always true for a super-user caller; kept so that the rule holds by construction
   * should minting ever be opened to explicit callers. */
  if (!auth_covers(caller, r->permissions)) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                  "requested permissions exceed the caller's permissions");
    return false;
  }
  return true;
}

/* Hosted Momento allows at most 10 permissions per API key or token, a hard limit. No
 * `err` cause names it (the SDKs know none), so the refusal is INVALID_ARGUMENT, the
 * status of a request that can never succeed as it is. */
static bool permissions_fit(app *a, srv_call *call,
                            const Token__GenerateDisposableTokenRequest *r) {
  size_t max = a->limits.max_token_permissions;
  size_t n = r->permissions->explicit_ ? r->permissions->explicit_->n_permissions : 0;
  if (max && n > max) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                  "a token with %zu permissions exceeds the limit of %zu permissions per token", n,
                  max);
    return false;
  }
  return true;
}

/* A child never outlives the token that minted it. expires is 0 only for a --no-auth
 * caller without a token, which has no lifetime to inherit. */
static uint64_t child_expiry(const auth_claims *caller, uint32_t valid_for_seconds) {
  uint64_t until = (uint64_t)time(NULL) + valid_for_seconds;
  return caller->expires != 0 && caller->expires < until ? caller->expires : until;
}

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
  if (!minting_allowed(call, r, caller) || !permissions_fit(a, call, r)) {
    return;
  }
  uint64_t until = child_expiry(caller, r->expires->valid_for_seconds);
  char *tok = auth_mint(&a->key, r->permissions, r->token_id, until);
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
  srv_log(LOG_INFO, "minted a token (id \"%s\", valid until %llu)", r->token_id,
          (unsigned long long)until);
  free(tok);
}

void tokens_generate(app *a, srv_call *call, const uint8_t *req, size_t len) {
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
