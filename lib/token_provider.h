/*
 * Internal: credentials fetched over HTTP(S) from a token vendor, and kept fresh.
 *
 * The vendor answers GET <url> with JSON {"token": "<v1 credential>", "expires_at": <epoch
 * seconds>, ...}. The first token is fetched by the caller (mim_token_fetch, blocking,
 * before the transport exists); a provider then refreshes it on its own worker thread
 * (libcurl is blocking, so never on the event thread) and installs each new token with
 * mim_transport_set_auth_token. Tokens are secrets: never logged.
 */
#ifndef MIM_LIB_TOKEN_PROVIDER_H
#define MIM_LIB_TOKEN_PROVIDER_H

#include "transport.h"

#include <stdint.h>

typedef struct mim_token_provider mim_token_provider;

/* GETs url (connect timeout 5 s, total 10 s, TLS verified, HTTP/2 over TLS when offered).
 * On MIM_OK *credential is the malloc'd v1 credential string (the caller zeroes and frees
 * it) and *expires_at its expiry in epoch seconds. Errors: MIM_ERR_INVALID_ARGUMENT (NULL
 * or empty url), MIM_ERR_UNAVAILABLE (connection failure, timeout or a non-200 answer: the
 * curl error or HTTP status is in the detail), MIM_ERR_PROTOCOL (the body is not the
 * expected JSON), MIM_ERR_NO_MEMORY. */
mim_status mim_token_fetch(const char *url, char **credential, uint64_t *expires_at);

/* Parses a vendor's answer (len bytes of JSON) as mim_token_fetch does, with the same
 * results. jansson's copy of the token is zeroed before the document is freed. */
mim_status mim_token_parse_answer(const char *data, size_t len, char **credential,
                                  uint64_t *expires_at);

/* Starts refreshing the token that expires at expires_at (epoch s) into t. margin_ms:
 * 0 = refresh at 80% of each token's remaining lifetime; > 0 = that long before expiry;
 * < 0 = only when asked (mim_token_provider_refresh). Failed fetches are retried with
 * backoff (1 s doubling to 30 s). url is copied. */
mim_status mim_token_provider_start(const char *url, int64_t margin_ms, uint64_t expires_at,
                                    mim_transport *t, mim_token_provider **out);

/* A token was refused: fetch a new one now. Ignored while a fetch is under way, within
 * 1 s of a successful one (its token is the fresh one) and while failed fetches are
 * being retried with backoff. Never blocks. Thread-safe. */
void mim_token_provider_refresh(mim_token_provider *p);

/* Successful fetches so far, the initial one included. Thread-safe. */
unsigned mim_token_provider_fetches(mim_token_provider *p);

/* Stops the worker (aborting a fetch in progress) and waits for it; afterwards the
 * provider no longer touches the transport. Then free it with mim_token_provider_free.
 * NULL is ignored. */
void mim_token_provider_stop(mim_token_provider *p);
void mim_token_provider_free(mim_token_provider *p);

#endif
