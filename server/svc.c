/* mim-local: the checks every handler starts with (caller's token, request decoding,
 * name validation). Each one fails the call itself, so a handler just returns. */
#include "svc.h"

#include "utf8.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

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
