/* mim-local: disposable tokens (mint + verify with HMAC-SHA256) and permission checks.
 *
 * Token format (what goes into `authorization`, and the api_key of a v1 credential):
 *   "mim1." + base64url(payload) + "." + base64url(HMAC-SHA256(secret, "mim1." +
 * base64url(payload))) payload (binary, big-endian): u8 version = 1 | u64 expires (epoch seconds) |
 * u16 id_len | id bytes | the rest: a serialized permission_messages.Permissions message. base64url
 * is unpadded. Verification recomputes the MAC and compares it in constant time (CRYPTO_memcmp)
 * before looking at the payload. */
#ifndef MIM_SERVER_AUTH_H
#define MIM_SERVER_AUTH_H

#include "permissionmessages.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct auth_claims {
  bool super_user;
  char *token_id;                         /* malloc'd, never NULL after verify */
  uint64_t expires;                       /* epoch seconds */
  PermissionMessages__Permissions *perms; /* NULL for super-user */
} auth_claims;

typedef struct auth_key {
  uint8_t secret[64];
  size_t len;
  uint64_t id; /* unique per auth_key_init: tokens verified under it are cached by it */
} auth_key;

/* Loads the secret from path if it exists (64 hex chars = 32 bytes, or raw bytes of at
 * least 16), else generates one and writes it there (mode 0600). path NULL: in memory. */
bool auth_key_init(auth_key *key, const char *path);

/* Mints a token; perms NULL = super-user. Returns a malloc'd string or NULL. */
char *auth_mint(const auth_key *key, const PermissionMessages__Permissions *perms,
                const char *token_id, uint64_t expires);

/* Verifies a token. On false, *why says what is wrong (static text, no token). A token
 * whose MAC checked out is remembered (a small cache, compared in constant time), so
 * the next call with it skips the HMAC; its expiry and claims are still read every time. */
bool auth_verify(const auth_key *key, const char *token, size_t len, auth_claims *out,
                 const char **why);
void auth_claims_clear(auth_claims *c);

typedef enum { VERB_READ, VERB_WRITE } auth_cache_verb;
typedef enum { VERB_SUBSCRIBE, VERB_PUBLISH } auth_topic_verb;

bool auth_allows_cache(const auth_claims *c, const char *cache, const uint8_t *key, size_t key_len,
                       auth_cache_verb verb);
bool auth_allows_topic(const auth_claims *c, const char *cache, const char *topic,
                       auth_topic_verb verb);
/* True when every grant in req is covered by one of the caller's grants. */
bool auth_covers(const auth_claims *caller, const PermissionMessages__Permissions *req);

#endif
