/* Internal: what the list, topics, token and im modules need from a mim_client. */
#ifndef MIM_LIB_CLIENT_INTERNAL_H
#define MIM_LIB_CLIENT_INTERNAL_H

#include "names.h"
#include "transport.h"

#include <momento/client.h>
#include <momento/topics.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* The client's transport (owned by the client; valid until mim_client_free). */
mim_transport *mim_client_transport(const mim_client *client);

/* Deadline for calls that do not specify one (ms, > 0). */
int64_t mim_client_deadline_ms(const mim_client *client);

/* Argument check shared by the modules: NULL or empty strings. MIM_ERR_INVALID_ARGUMENT
 * with a detail naming `what`. Names sent to Momento have their own rules: names.h. */
mim_status mim_check_name(const char *what, const char *name);

/* Whether the client's channels use TLS (after MIM_TLS_AUTO was resolved). */
bool mim_client_uses_tls(const mim_client *client);

/* TTL of list writes that do not give one (ms, > 0). */
uint64_t mim_client_default_ttl_ms(const mim_client *client);

/* Hosted Momento's topic payload limit: the default of max_topic_payload_bytes. */
#define MIM_DEFAULT_TOPIC_PAYLOAD ((size_t)4096)

/* Largest envelope the library publishes (options.max_topic_payload_bytes, > 0). */
size_t mim_client_max_topic_payload(const mim_client *client);

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

/* Runs fn(arg) later, outside the callback that asks for it: work that must not run
 * inside a callback because it waits for the event thread (mim_leave,
 * mim_moderator_stop). Thread mode: on a new detached thread. Loop mode (no library
 * thread may exist): queued, and run on the loop thread outside callbacks, where its
 * waits drive the loop: when the application's mim_loop_fd_ready / mim_loop_timeout that
 * ran the callback returns (a zero-delay transport timer wakes the loop when the
 * callback ran inside a blocking call instead), or in mim_client_free.
 * mim_client_free waits until every such job has returned, so fn must finish in bounded
 * time and must not free the client. MIM_ERR_RESOURCE_EXHAUSTED (no thread) or
 * MIM_ERR_NO_MEMORY: fn does not run. */
mim_status mim_client_run_detached(mim_client *client, void (*fn)(void *), void *arg);

/* Counts a job about to be started (mim_client_free waits for it as for a running one)
 * until mim_client_release_jobs: for a callback that lets the application see an
 * outcome before it starts the job that follows from it. Thread-safe. */
void mim_client_hold_jobs(mim_client *client);
void mim_client_release_jobs(mim_client *client);

/* True when the application's loop drives the client (mim_client_options.loop). */
bool mim_client_loop_mode(const mim_client *client);

/* True inside a callback of the client (on its event thread, not driving the loop): a
 * blocking call made there must fail with MIM_ERR_FAILED_PRECONDITION. */
bool mim_client_in_callback(const mim_client *client);

/* The one way the library waits for its event thread. Called with mu held (returns with
 * it held) until done(arg) (called with mu held) is true or the CLOCK_MONOTONIC instant
 * *until passes (until NULL: no bound; cv then needs no monotonic clock). Thread mode,
 * or loop mode off the loop thread: waits on cv, which whoever makes done true must
 * broadcast. Loop mode on the loop thread outside callbacks: drives the loop
 * (mim_transport_run_until) with mu released. Returns done(arg). Not inside a
 * callback (check mim_client_in_callback first). */
bool mim_client_wait_locked(mim_client *client, pthread_mutex_t *mu, pthread_cond_t *cv,
                            bool (*done)(void *), void *arg, const struct timespec *until);

/* After driving the loop outside mim_client_wait_locked (a blocking transport call):
 * makes sure jobs deferred meanwhile run once the application's loop is back. */
void mim_client_after_drive(mim_client *client);

/* What the application owns through a client and must end before mim_client_free:
 * joined sessions, started moderators, its own subscriptions. Each embeds a mim_live;
 * mim_client_free ends those still tracked (in kind order, logging a warning with the
 * counts) by calling their close, which frees the object. Close runs off callbacks, on a
 * thread that may wait for the event thread (loop mode: on the loop thread, driving). */
typedef enum mim_live_kind {
  MIM_LIVE_SESSION,
  MIM_LIVE_MODERATOR,
  MIM_LIVE_SUBSCRIPTION,
  MIM_LIVE_KINDS
} mim_live_kind;

typedef struct mim_live {
  struct mim_live *prev, *next;
  mim_live_kind kind;
  void (*close)(struct mim_live *live);
  bool linked; /* under the client's lock */
} mim_live;

/* Starts tracking live (the object now belongs to the application). Thread-safe. */
void mim_client_track(mim_client *client, mim_live *live, mim_live_kind kind,
                      void (*close)(mim_live *live));

/* Stops tracking live (the application ends it itself); no-op when not tracked.
 * Thread-safe. */
void mim_client_untrack(mim_client *client, mim_live *live);

/* A subscription a session or moderator made for itself (it ends it): not the
 * application's, so mim_client_free leaves it to its owner. */
void mim_subscription_internal(mim_subscription *sub);

/* Tokens fetched from the token URL so far (the first one included); 0 without one. */
unsigned mim_client_token_fetches(const mim_client *client);

#endif
