/*
 * Internal: the gRPC call interface under list, topics, token and im.
 *
 * Two implementations, chosen at build time: transport/h2.c (default: our gRPC client
 * on libnghttp2 + OpenSSL, driven by lib/loop's reactor on its own thread or on the
 * application's loop) and transport/grpc.c (make TRANSPORT=grpc: gRPC core, one
 * completion queue and one event thread; it refuses loop mode). A transport connects
 * to each plane's host (cache, control, token) lazily. Requests and responses are
 * opaque protobuf bytes here: encoding belongs to the modules above (list, topics,
 * token).
 *
 * Callbacks (unary completion, stream message, stream close, timers) run on the event
 * thread, one at a time, never with an internal lock held. They must not block and must
 * not call mim_transport_free or mim_transport_unary_sync (that returns
 * MIM_ERR_FAILED_PRECONDITION there); they may start new calls, cancel calls and add or
 * cancel timers. A callback may run before the call that started it has returned.
 *
 * Once mim_transport_free has begun, starting a call or a timer fails with
 * MIM_ERR_CANCELLED (callbacks of cancelled calls may try; they are refused cleanly).
 *
 * Connections: TLS unless config->plaintext; keepalive pings every 30 s while calls are
 * open (10 s timeout; never more often than gRPC servers allow without data); messages
 * up to 16 MiB each way. Metadata sent on every call: authorization, cache (when given),
 * agent, runtime-version ("c:c11").
 */
#ifndef MIM_LIB_TRANSPORT_H
#define MIM_LIB_TRANSPORT_H

#include <momento/credentials.h>
#include <momento/loop.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mim_transport mim_transport;
typedef struct mim_call mim_call;

typedef struct mim_transport_config {
  const char *hosts[3];   /* "host:port" per mim_host_kind; NULL = that plane unused */
  const char *auth_token; /* "authorization" metadata; copied; may be "" */
  bool plaintext;         /* true only for a local server; default TLS */
  const char *ca_file;    /* PEM roots instead of the system roots; NULL = system */
  const char *agent;      /* "agent" metadata; NULL = "c:im:<version>" */
  /* Called on the event thread whenever a call or stream ends with
   * MIM_ERR_UNAUTHENTICATED, before its own callback: the place to fetch a fresh token
   * (mim_transport_set_auth_token). NULL = nothing to do. */
  void (*on_unauthenticated)(void *user);
  void *hook_user;
  /* NULL: the transport runs its own event thread. Otherwise the application's loop
   * drives it (see <momento/loop.h>; the event thread is then the thread calling
   * mim_transport_create). Copied. A transport that cannot be driven from outside
   * (TRANSPORT=grpc) fails with MIM_ERR_UNIMPLEMENTED. */
  const mim_loop_hooks *loop;
} mim_transport_config;

/* Creates channels (lazily connected) and starts the event thread. At least one host
 * must be set (else MIM_ERR_INVALID_ARGUMENT). An unreadable ca_file fails with
 * MIM_ERR_INVALID_ARGUMENT. Without ca_file, TLS uses /etc/ssl/certs/ca-certificates.crt
 * when present, else gRPC's default roots. Calls grpc_init (balanced by free). */
mim_status mim_transport_create(const mim_transport_config *config, mim_transport **out);

/* Cancels every call still in flight, waits until their callbacks have run (each gets
 * MIM_ERR_CANCELLED), stops the event thread and frees everything. Must not be called
 * from a transport callback (that is logged and ignored); in loop mode it must be
 * called on the loop thread (it drives the loop until the callbacks have run).
 * Pending timers are dropped without running. NULL is ignored. */
void mim_transport_free(mim_transport *t);

/* True when called on t's event thread: inside a transport callback, or (loop mode)
 * anywhere on the application's loop thread. Waiting there for the transport without
 * driving it would wait forever. */
bool mim_transport_on_event_thread(const mim_transport *t);

/* True in loop mode on the loop thread outside any transport callback: a blocking call
 * made there must drive the loop itself (mim_transport_run_until) instead of waiting on
 * a condition variable. Always false for a transport with its own thread. Inside a
 * callback (on_event_thread && !must_drive) a blocking call must fail instead. */
bool mim_transport_must_drive(const mim_transport *t);

/* Only when mim_transport_must_drive: runs the transport's events on the calling thread
 * (callbacks included) until done(arg) returns true (checked after every event) or the
 * monotonic clock (cmn_mono_ms) reaches deadline_ms. Returns done(arg). Elsewhere it
 * returns done(arg) at once without running anything. */
bool mim_transport_run_until(mim_transport *t, bool (*done)(void *arg), void *arg,
                             int64_t deadline_ms);

/* Replaces the auth token used by calls started from now on. Thread-safe. */
mim_status mim_transport_set_auth_token(mim_transport *t, const char *auth_token);

/* Completion of a unary call. On MIM_OK, response holds the response bytes (valid only
 * during the callback); otherwise detail holds the server's message (or ours). */
typedef void (*mim_unary_cb)(void *user, mim_status status, const char *detail,
                             const uint8_t *response, size_t response_len);

/* Starts a unary call. method is the full path ("/cache_client.Scs/ListFetch");
 * cache_name, when not NULL, is sent as "cache" metadata. deadline_ms <= 0 means no
 * deadline. The request bytes are copied. On MIM_OK the callback will run exactly
 * once; on any other return it will not. If out_call is not NULL it receives a handle
 * usable with mim_call_cancel until the callback has returned (then it is invalid); it
 * is stored before the callback can run. An unused plane (hosts[host] == NULL) gives
 * MIM_ERR_INVALID_ARGUMENT. The callback gets a non-OK status with the server's status
 * message as detail (mapped by mim_status_from_grpc); on MIM_OK response may be NULL
 * with response_len 0 for an empty message. */
mim_status mim_transport_unary(mim_transport *t, mim_host_kind host, const char *method,
                               const char *cache_name, const uint8_t *request, size_t request_len,
                               int64_t deadline_ms, mim_unary_cb cb, void *user,
                               mim_call **out_call);

/* Blocking unary call. On MIM_OK *response is malloc'd (caller frees; may be NULL when
 * the response is empty). On failure the thread's error detail is set. Must not be
 * called from a transport callback. */
mim_status mim_transport_unary_sync(mim_transport *t, mim_host_kind host, const char *method,
                                    const char *cache_name, const uint8_t *request,
                                    size_t request_len, int64_t deadline_ms, uint8_t **response,
                                    size_t *response_len);

/* Server-streaming call callbacks. on_message gets each message (bytes valid only during
 * the callback). on_close runs exactly once, last, with the final status (MIM_OK when the
 * server ended the stream cleanly). */
typedef struct mim_stream_callbacks {
  void (*on_message)(void *user, const uint8_t *message, size_t len);
  void (*on_close)(void *user, mim_status status, const char *detail);
  void *user;
} mim_stream_callbacks;

/* Starts a server-streaming call with one request message. deadline_ms <= 0 = none.
 * On MIM_OK on_close will run exactly once; *out_call is valid until on_close returns.
 * on_message may be NULL (messages are then discarded); on_close is required. */
mim_status mim_transport_stream(mim_transport *t, mim_host_kind host, const char *method,
                                const char *cache_name, const uint8_t *request, size_t request_len,
                                int64_t deadline_ms, const mim_stream_callbacks *callbacks,
                                mim_call **out_call);

/* Requests cancellation; the call's completion/close callback still runs once, with
 * MIM_ERR_CANCELLED unless it had already finished. Safe from any thread, including
 * callbacks, as long as the call's final callback has not returned yet. */
void mim_call_cancel(mim_call *call);

/* Runs cb(user) on the event thread once, after at least delay_ms (0 = soon), serialized
 * with all other transport callbacks. Used for reconnect backoff, heartbeat watchdogs
 * and deferring work out of caller threads. On MIM_OK *out_timer (if not NULL) stays
 * valid until cb has returned or mim_timer_cancel has returned. Thread-safe. */
typedef struct mim_timer mim_timer;
mim_status mim_transport_timer(mim_transport *t, int64_t delay_ms, void (*cb)(void *user),
                               void *user, mim_timer **out_timer);

/* Cancels a timer that has not fired: returns true if cb will never run, false if it
 * already ran or is running (from another thread: this waits until it returned; from
 * the event thread inside that very callback: returns at once). */
bool mim_timer_cancel(mim_timer *timer);

/* Loop mode: what mim_loop_fd_ready and mim_loop_timeout hand to the transport. Loop
 * thread only; ignored by a transport that runs its own thread. */
void mim_transport_loop_fd_ready(mim_transport *t, int fd, unsigned events);
void mim_transport_loop_timeout(mim_transport *t);

#endif
