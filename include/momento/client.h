/*
 * libmomento-im: the client handle.
 *
 * A mim_client holds the credential, the gRPC channels to the cache, control and token
 * hosts, and one internal event thread. Create one per process (or per identity) and
 * share it: every function taking a mim_client is thread-safe.
 *
 * Callbacks registered through a client (async completions, topic subscriptions, chat
 * sessions) run on the client's event thread, one at a time. They must return quickly,
 * must not call mim_client_free, and must not call blocking (sync) functions of the same
 * client; they may call the *_async functions.
 */
#ifndef MOMENTO_CLIENT_H
#define MOMENTO_CLIENT_H

#include <momento/common.h>
#include <momento/credentials.h>
#include <momento/loop.h>
#include <stdbool.h>
#include <string.h> /* memset in the inline *_init functions */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_client mim_client;

typedef enum mim_tls_mode {
  /* TLS verified against the system roots (or ca_file), except plaintext when every
   * host is a loopback address (127.0.0.0/8, ::1, localhost: a local mim-local) and no
   * ca_file is given. */
  MIM_TLS_AUTO = 0,
  MIM_TLS_ON = 1, /* always TLS, also on loopback (mim-local --tls-cert) */
  MIM_TLS_OFF = 2 /* never TLS: only for a server you reach over a trusted path */
} mim_tls_mode;

typedef struct mim_client_options {
  size_t struct_size; /* sizeof(mim_client_options): MIM_CLIENT_OPTIONS_INIT sets it */
  /* A v1 API key or disposable token, or a legacy JWT. NULL: use `credentials` if set,
   * else the MOMENTO_API_KEY environment variable. Copied. */
  const char *api_key;
  /* Alternative to api_key: an already parsed credential (copied; caller keeps it). */
  const mim_credentials *credentials;
  /* Alternative to a key: a token vendor's URL (http or https; TLS verified). The client
   * GETs it, expects JSON {"token": "<v1 credential>", "expires_at": <epoch seconds>}
   * (what examples/token-vendor serves), uses that token, and fetches a fresh one in the
   * background before it expires and after the server refused it (UNAUTHENTICATED on a
   * subscription stream or a publish); subscriptions re-subscribe (resuming) instead of
   * closing when refused. Calls started after a refresh use the new token; a refused call
   * itself is not retried. Copied; must not be combined with api_key or credentials. */
  const char *token_url;
  /* When to refresh: 0 = at 80% of each token's remaining lifetime; > 0 = this many ms
   * before it expires; < 0 = only after a refusal. */
  int64_t token_refresh_margin_ms;
  /* Endpoint overrides, "host:port" (NULL = derived from the credential). */
  const char *cache_host;
  const char *control_host;
  const char *token_host;
  /* Transport security; default MIM_TLS_AUTO. */
  mim_tls_mode tls;
  /* PEM file of trusted roots instead of the system roots (NULL = system). */
  const char *ca_file;
  /* Deadline of each call when the call does not give one; 0 = 15000 ms. */
  int64_t default_deadline_ms;
  /* TTL of list writes that do not give one (ttl_ms 0); 0 = 24 hours. The library
   * always sends an explicit TTL, as the official SDKs do. */
  uint64_t default_ttl_ms;
  /* Optional log callback for this process (see mim_set_log_callback). */
  mim_log_fn log_fn;
  mim_log_level log_level;
  void *log_user;
  /* NULL (default): the client runs its own event thread. Otherwise the application's
   * event loop drives the client and no library thread exists (see <momento/loop.h>);
   * the hooks are copied. */
  const mim_loop_hooks *loop;
  /* Largest message envelope mim_send (and a moderator's forward) publishes, in bytes;
   * 0 = 4096, hosted Momento's hard limit on a topic message payload ("Quotas and
   * Limits" for Topics). A larger envelope is refused before anything is queued. Raise
   * it only for a deployment whose topics accept more (mim-local --max-topic-payload or
   * --limits none); the library never publishes more than 262144 bytes. */
  size_t max_topic_payload_bytes;
} mim_client_options;

/* Defaults (everything unset, MIM_TLS_AUTO) with struct_size set:
 * `mim_client_options o = MIM_CLIENT_OPTIONS_INIT;`. */
#define MIM_CLIENT_OPTIONS_INIT                                                                    \
  { .struct_size = sizeof(mim_client_options) }

/* Fills *options with defaults, as MIM_CLIENT_OPTIONS_INIT does. Inline, so that it writes
 * the struct as the header the program was compiled against defines it, never more, whatever
 * library version the program runs with. NULL is ignored. */
static inline void mim_client_options_init(mim_client_options *options) {
  if (options) {
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
  }
}

/* Creates a client. options NULL = defaults (key from MOMENTO_API_KEY, TLS). *out is
 * owned by the caller; free with mim_client_free. A log_fn in the options is installed
 * process-wide (mim_set_log_callback; log_level 0 = MIM_LOG_INFO) once creation succeeded.
 * Errors: MIM_ERR_INVALID_ARGUMENT (no or malformed key, an auth token over 7 KiB: gRPC
 * servers drop connections carrying more than 8 KiB of metadata; bad host, token_url
 * together with a key), MIM_ERR_NO_MEMORY, MIM_ERR_INTERNAL (gRPC could not start). No gRPC
 * traffic happens here: a wrong endpoint shows up as MIM_ERR_UNAVAILABLE on the first
 * call. With token_url the first token is fetched here (blocking, at most 10 s):
 * MIM_ERR_UNAVAILABLE when the URL cannot be reached or does not answer 200 (the curl
 * error or HTTP status is in the detail), MIM_ERR_PROTOCOL for an unusable answer. */
MIM_API mim_status mim_client_create(const mim_client_options *options, mim_client **out);

/* Cancels everything still in flight (their callbacks run with MIM_ERR_CANCELLED),
 * waits for running callbacks, stops the event thread and frees the client. Sessions and
 * subscriptions must be left/unsubscribed first; a mim_leave or mim_moderator_stop
 * deferred from a callback is waited for (each is bounded by its flush time, a call
 * deadline and a backoff). Must not be called from a callback (there it logs an error
 * and does nothing). NULL is ignored. */
MIM_API void mim_client_free(mim_client *client);

/* What a client has done since mim_client_create, to predict a bill and the hosted
 * limits (see README "Operations budget"). Every count only grows. */
typedef struct mim_client_stats {
  size_t struct_size;    /* set by the caller: MIM_CLIENT_STATS_INIT */
  uint64_t calls;        /* unary calls started, every plane, whatever their outcome */
  uint64_t failed_calls; /* of those, the ones that ended with an error status */
  /* Cache data-plane operations as Momento counts them against the per-cache rate (100/s
   * hosted), for calls that succeeded: ListFetch ceil(values returned / 2), at least 1;
   * ListConcatenate* ceil(values / 2); every other cache call (push, length, remove,
   * Ping...) 1. */
  uint64_t cache_operations;
  /* Topic operations as Momento counts them against the per-namespace rate: each
   * successful publish 1, each subscribe stream started 1 (first and re-subscribes), each
   * message delivered on a subscription 1 (heartbeats and discontinuities not). */
  uint64_t topic_operations;
  uint64_t control_calls;     /* control-plane and token calls (in calls; in no operations) */
  uint64_t subscriptions;     /* subscribe streams started, re-subscribes included */
  uint64_t messages_received; /* messages delivered on subscriptions (in topic_operations) */
  /* Protobuf message bytes (no gRPC or HTTP/2 framing, no headers): requests of unary
   * calls and subscribes; responses of unary calls that succeeded and every stream
   * message (heartbeats included). */
  uint64_t bytes_sent;
  uint64_t bytes_received;
  uint64_t retries; /* outbox send retries and re-subscribes after a lost stream */
  /* Refusals with MIM_ERR_RESOURCE_EXHAUSTED whose cause is a rate (see
   * mim_limit_cause_is_throttling), from calls and subscribe streams. */
  uint64_t throttled;
  uint64_t limit_refusals; /* every MIM_ERR_RESOURCE_EXHAUSTED from the server (throttled incl.) */
} mim_client_stats;

#define MIM_CLIENT_STATS_INIT                                                                      \
  { .struct_size = sizeof(mim_client_stats) }

/* Copies the client's counters into *out (the first out->struct_size bytes of them;
 * struct_size itself is left as it is). Each counter is read atomically; the set is
 * not a snapshot across counters (calls in flight may show in some and not others).
 * Thread-safe, never blocks, callable from callbacks. Errors: MIM_ERR_INVALID_ARGUMENT
 * (NULL, struct_size 0 or too small). */
MIM_API mim_status mim_client_stats_get(mim_client *client, mim_client_stats *out);

/* Round trip to the cache host's Ping. Errors: any call status. Blocking. */
MIM_API mim_status mim_client_ping(mim_client *client);

/* Control plane (needs a super-user key). Blocking. Errors: MIM_ERR_INVALID_ARGUMENT
 * (NULL/empty/blank name, over 255 bytes or not printable ASCII: README "Names"),
 * MIM_ERR_ALREADY_EXISTS (create), MIM_ERR_NOT_FOUND (delete),
 * MIM_ERR_PERMISSION_DENIED, and call errors. */
MIM_API mim_status mim_cache_create(mim_client *client, const char *cache_name);
MIM_API mim_status mim_cache_delete(mim_client *client, const char *cache_name);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_CLIENT_H */
