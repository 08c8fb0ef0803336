/* Internal: what the list, topics, token and im modules need from a mim_client. */
#ifndef MIM_LIB_CLIENT_INTERNAL_H
#define MIM_LIB_CLIENT_INTERNAL_H

#include "transport.h"

#include <momento/client.h>

/* The client's transport (owned by the client; valid until mim_client_free). */
mim_transport *mim_client_transport(const mim_client *client);

/* Deadline for calls that do not specify one (ms, > 0). */
int64_t mim_client_deadline_ms(const mim_client *client);

/* Argument checks shared by the modules: NULL or empty names, and cache names (which
 * travel as metadata: at most 255 bytes of printable ASCII). MIM_ERR_INVALID_ARGUMENT
 * with a detail naming `what`. */
mim_status mim_check_name(const char *what, const char *name);
mim_status mim_check_cache_name(const char *cache);

/* Whether the client's channels use TLS (after MIM_TLS_AUTO was resolved). */
bool mim_client_uses_tls(const mim_client *client);

/* TTL of list writes that do not give one (ms, > 0). */
uint64_t mim_client_default_ttl_ms(const mim_client *client);

/* The client's own auth token (a secret: never log it). Valid until mim_client_free. */
const char *mim_client_auth_token(const mim_client *client);

/* Base endpoint of the client's credential ("" when unknown): what minted tokens carry
 * when the server does not say. */
const char *mim_client_endpoint(const mim_client *client);

/* A call or stream was refused with UNAUTHENTICATED. When the client gets its tokens
 * from a token URL this asks for a fresh one (in the background; never blocks; repeated
 * requests are coalesced) and returns true: the caller may retry after a backoff. False
 * when the client's credential is fixed (retrying cannot help). Thread-safe. */
bool mim_client_token_rejected(mim_client *client);

/* True when the client fetches its tokens from a URL (a rejected token can be replaced). */
bool mim_client_refreshes_tokens(const mim_client *client);

/* Runs fn(arg) on a new detached thread: work a callback asked for that must not run on
 * the event thread because it waits for that thread (mim_leave, mim_moderator_stop).
 * mim_client_free waits until every such job has returned, so fn must finish in bounded
 * time and must not free the client. MIM_ERR_RESOURCE_EXHAUSTED (no thread) or
 * MIM_ERR_NO_MEMORY: fn does not run. */
mim_status mim_client_run_detached(mim_client *client, void (*fn)(void *), void *arg);

/* Tokens fetched from the token URL so far (the first one included); 0 without one. */
unsigned mim_client_token_fetches(const mim_client *client);

#endif
