/* mim-local: the application state shared by the service handlers and the checks every
 * handler starts with (auth, request decoding, name validation). Below the handlers:
 * it knows none of them. */
#ifndef MIM_SERVER_SVC_H
#define MIM_SERVER_SVC_H

#include "auth.h"
#include "pubsub.h"
#include "quota.h"
#include "rpc.h"
#include "store.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#define SVC_MAX_NAME 256
/* Longest list name / cache key in bytes (hosted Momento documents none below its 1 MB
 * item size; names are kept in every record and hash table, so mim-local caps them). */
#define SVC_MAX_KEY 4096
/* Caches CreateCache may make: hosted Momento's default quota per account. */
#define SVC_DEFAULT_MAX_CACHES 10

/* Hosted Momento's hard limits (server/README.md, "Hosted Momento's limits"); 0 turns
 * one off. The item size limit lives in the store, which keeps each list's total. */
typedef struct svc_limits {
  size_t max_topic_payload;     /* Publish value bytes: request_size_limit_exceeded */
  size_t max_element_size;      /* each list value: element_size_limit_exceeded */
  size_t max_item_size;         /* a list's total (enforced by the store; for messages) */
  uint64_t max_ttl_ms;          /* ttl_milliseconds: INVALID_ARGUMENT */
  size_t max_token_permissions; /* explicit permissions per minted token */
} svc_limits;

typedef struct app {
  store *store;
  pubsub *ps;
  auth_key key;
  bool no_auth;
  char endpoint[300]; /* "HOST:PORT" handed out with tokens */
  size_t max_message_bytes;
  size_t max_caches; /* CreateCache refuses beyond it; 0 = SVC_DEFAULT_MAX_CACHES */
  svc_limits limits;
  quota *quota; /* rate limits; NULL when all are off */
} app;

/* Verifies the caller's token into *claims; on failure fails the call UNAUTHENTICATED
 * and returns false. With --no-auth every caller is super-user (a valid token still
 * contributes its token id). fallback_token (may be NULL) is used when the metadata
 * carries none. */
bool svc_auth(app *a, srv_call *call, const char *fallback_token, auth_claims *claims);
/* Decodes the request; on failure fails the call INVALID_ARGUMENT and returns NULL. A
 * string field (nested ones too) holding a NUL is such a failure: protobuf-c would hand
 * it over cut at the NUL. */
void *svc_unpack(srv_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *req,
                 size_t len);
/* Copies a name into buf (NUL-terminated); false (call failed INVALID_ARGUMENT) if it is
 * empty, too long, contains a NUL or is not UTF-8. what names it in the error message. */
bool svc_name(srv_call *call, const char *what, const char *s, size_t len, char *buf);

#endif
