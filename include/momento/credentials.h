/*
 * libmomento-im: Momento credentials (API keys and disposable tokens).
 *
 * Accepted forms:
 *  - v1 key / disposable token: base64 (standard alphabet, padding optional) of a
 *    JSON object {"endpoint": "<base endpoint>", "api_key": "<auth token>"};
 *  - legacy key: a JWT whose (unverified) claims hold "c" (cache host) and "cp"
 *    (control host); the whole JWT is the auth token. The claims name no token host:
 *    the cache host "c" is used for it, as the official SDKs do;
 *  - v2 key: an opaque auth token plus a base endpoint given separately (Momento's
 *    "global API keys", JWTs with the claim "t": "g"; mim_credentials_from_string
 *    recognises one and says to use mim_credentials_from_key_and_endpoint).
 * Surrounding ASCII whitespace is ignored; keys longer than 64 KiB are refused
 * without being decoded. Auth tokens must be printable ASCII (they travel as gRPC
 * metadata).
 *
 * From a base endpoint E the hosts are cache.E, control.E and token.E on port 443
 * with TLS. An endpoint that already names a port ("127.0.0.1:8080", "[::1]:9000",
 * "localhost:8080") is used as-is for all three planes: that is how a local server
 * such as mim-local is addressed; an IP address without a port ("127.0.0.1",
 * "[::1]") is likewise used for all three planes, on port 443. Any host can be
 * overridden afterwards with mim_credentials_set_host(). Hosts are names (letters,
 * digits, '-', '.', '_'), IPv4 or IPv6 addresses, optionally with a port 1-65535.
 *
 * A parsed credential keeps the auth token in memory that is zeroed when freed. The
 * token is never logged and never copied into an error detail.
 */
#ifndef MOMENTO_CREDENTIALS_H
#define MOMENTO_CREDENTIALS_H

#include <momento/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_credentials mim_credentials;

typedef enum mim_host_kind {
  MIM_HOST_CACHE = 0,   /* data plane: lists and topics */
  MIM_HOST_CONTROL = 1, /* control plane: create/delete/list caches */
  MIM_HOST_TOKEN = 2    /* token service: disposable tokens */
} mim_host_kind;

/* Parses a v1 key/disposable token or a legacy JWT. On success *out is a new
 * credential owned by the caller (free with mim_credentials_free). Errors:
 * MIM_ERR_INVALID_ARGUMENT for NULL/empty/malformed input (detail says what is wrong,
 * never the key), MIM_ERR_NO_MEMORY. Thread-safe. */
MIM_API mim_status mim_credentials_from_string(const char *key, mim_credentials **out);

/* Builds a credential from an opaque (v2) key and a base endpoint ("host" or
 * "host:port"). Errors as above. Thread-safe. */
MIM_API mim_status mim_credentials_from_key_and_endpoint(const char *key, const char *endpoint,
                                                         mim_credentials **out);

/* Reads the environment variable (MOMENTO_API_KEY when var_name is NULL) and parses
 * it with mim_credentials_from_string. MIM_ERR_INVALID_ARGUMENT when it is unset or
 * empty. Thread-safe as long as nobody calls setenv() concurrently. */
MIM_API mim_status mim_credentials_from_env(const char *var_name, mim_credentials **out);

/* Deep copy. Errors: MIM_ERR_INVALID_ARGUMENT, MIM_ERR_NO_MEMORY. */
MIM_API mim_status mim_credentials_copy(const mim_credentials *creds, mim_credentials **out);

/* Frees a credential and zeroes its secret. NULL is ignored. */
MIM_API void mim_credentials_free(mim_credentials *creds);

/* "host:port" for a plane. Owned by the credential; valid until it is freed or the
 * host is overridden. NULL only for NULL creds or a kind that is not a mim_host_kind. */
MIM_API const char *mim_credentials_host(const mim_credentials *creds, mim_host_kind kind);

/* Overrides the "host:port" of one plane (an endpoint override). A host without a
 * port gets 443. Errors: MIM_ERR_INVALID_ARGUMENT, MIM_ERR_NO_MEMORY. Not thread-safe
 * against concurrent use of the same credential. */
MIM_API mim_status mim_credentials_set_host(mim_credentials *creds, mim_host_kind kind,
                                            const char *host_port);

/* The base endpoint given by the key ("" for a legacy JWT). Owned by the credential.
 * NULL for NULL creds. */
MIM_API const char *mim_credentials_endpoint(const mim_credentials *creds);

/* The auth token sent as "authorization" metadata. Owned by the credential. Treat as
 * a secret: do not log it. NULL for NULL creds. */
MIM_API const char *mim_credentials_auth_token(const mim_credentials *creds);

/* Encodes an auth token and base endpoint as a v1 credential string (base64 JSON),
 * the form handed to clients. *out is malloc'd, owned by the caller (free()). */
MIM_API mim_status mim_credentials_encode_v1(const char *endpoint, const char *auth_token,
                                             char **out);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_CREDENTIALS_H */
