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

/* Reads a varint at *p (< end); false if it is cut short or longer than 10 bytes. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; *p < end && shift < 70; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      return true;
    }
  }
  return false;
}

/* Steps over a value that is not length-delimited; false if malformed (or a group,
 * which protobuf-c does not decode). */
static bool wire_skip(unsigned wt, const uint8_t **p, const uint8_t *end) {
  uint64_t v;
  size_t size = wt == 1 ? 8 : 4;
  if (wt == 0) {
    return wire_varint(p, end, &v);
  }
  if ((wt != 1 && wt != 5) || (size_t)(end - *p) < size) {
    return false;
  }
  *p += size;
  return true;
}

/* Nested messages followed at most this deep (the protocol's go 3 or 4 deep). */
#define SVC_MAX_WIRE_DEPTH 16

/* The name of a string field of desc (nested messages included) whose bytes on the
 * wire hold a NUL, or NULL. Called on a request that decoded, so it is well formed. */
static const char *string_with_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                                   size_t len, int depth) {
  if (!p || len == 0) {
    return NULL; /* an empty request may come as NULL: no arithmetic on it */
  }
  const uint8_t *end = p + len;
  uint64_t tag, n;
  while (p < end && wire_varint(&p, end, &tag)) {
    unsigned wt = (unsigned)(tag & 7);
    if (wt != 2) {
      if (!wire_skip(wt, &p, end)) {
        return NULL;
      }
      continue;
    }
    if (!wire_varint(&p, end, &n) || n > (uint64_t)(end - p)) {
      return NULL;
    }
    const ProtobufCFieldDescriptor *f =
        tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                               : NULL;
    const char *bad = NULL;
    if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, '\0', (size_t)n)) {
      bad = f->name;
    } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < SVC_MAX_WIRE_DEPTH) {
      bad = string_with_nul(f->descriptor, p, (size_t)n, depth + 1);
    }
    if (bad) {
      return bad;
    }
    p += n;
  }
  return NULL;
}

void *svc_unpack(srv_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *req,
                 size_t len) {
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
  if (!m) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "could not decode %s", desc->name);
    return NULL;
  }
  /* protobuf-c hands string fields over NUL-terminated, without their length: a string
   * holding U+0000 would reach the handlers cut short (text "abc\0def" published as
   * "abc", cache "a\0b" taken for cache "a"). Refused here, for every request. */
  const char *bad = string_with_nul(desc, req, len, 0);
  if (bad) {
    protobuf_c_message_free_unpacked(m, NULL);
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                  "%s contains a NUL character (U+0000), which mim-local does not accept in "
                  "strings (use a binary value)",
                  bad);
    return NULL;
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
