/* mim-local: the gRPC core server, its completion-queue threads and the life cycle of
 * one generic call (unary reply helpers and a server-streaming write queue). */
#ifndef MIM_SERVER_RPC_H
#define MIM_SERVER_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_rpc srv_rpc;
typedef struct srv_call srv_call;

/* Called on a CQ thread once the request message of a call arrived. The handler must
 * eventually finish the call exactly once: srv_call_reply / srv_call_fail for unary
 * calls, or keep it as a stream (srv_stream_*) and finish it later. */
typedef void (*srv_dispatch_fn)(void *app, srv_call *call, const char *method, const uint8_t *req,
                                size_t req_len);

typedef struct srv_rpc_config {
  const char *host;
  int port;
  const char *tls_cert_pem; /* both set: TLS; else plaintext */
  const char *tls_key_pem;
  size_t max_receive_bytes;
  /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (0: gRPC's default, none). */
  int max_streams_per_connection;
  /* Memory gRPC core may use for transports and calls (its resource quota); 0: none. */
  size_t memory_quota_bytes;
  /* Test hook: gRPC core's GRPC_ARG_MAX_CONNECTION_AGE_MS (GOAWAY after that long; 1 s
   * grace for calls in flight). 0: connections live for ever. */
  int max_connection_age_ms;
  int cq_threads;
  srv_dispatch_fn dispatch;
  void *app;
  /* The methods worth registering with gRPC so their calls arrive with the request
   * already read (one completion less per call); NULL-terminated (NULL: none). Named by
   * the dispatcher; calls to any other method take the generic path. Must outlive the
   * server. */
  const char *const *hot_methods;
} srv_rpc_config;

/* Binds and starts serving; *bound_port gets the port actually bound. NULL on failure
 * (logged). */
srv_rpc *srv_rpc_start(const srv_rpc_config *cfg, int *bound_port);
/* Stops accepting, waits up to grace_ms for calls to end (then cancels them), drains
 * the queue, joins the threads and frees everything. Streams must have been finished
 * by their owners before (or they are cancelled). */
void srv_rpc_stop(srv_rpc *rpc, int grace_ms);

/* Request metadata lookup: value of the first entry named key, or NULL. */
const char *srv_call_meta(const srv_call *call, const char *key, size_t *len);

/* Unary completion: status OK with a response message. */
void srv_call_reply(srv_call *call, const ProtobufCMessage *msg);
/* Unary (or stream-rejection) completion with an error status and message. */
void srv_call_fail(srv_call *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A limit refusal: RESOURCE_EXHAUSTED with a trailing metadata entry `err: <err>` (the
 * cause as hosted Momento names it, e.g. "element_size_limit_exceeded"; a string that
 * lives for ever, such as a literal) and the formatted message. */
void srv_call_fail_limit(srv_call *call, const char *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void srv_call_ref(srv_call *call);
void srv_call_unref(srv_call *call);

/* Streams. The close callback runs once on a CQ thread when the call is over (client
 * cancelled, connection lost, or after the final status was sent). Returns false if
 * the call is already over (the callback will then never run). */
bool srv_stream_on_close(srv_call *call, void (*fn)(void *user), void *user);
/* Queues one message (the slice is referenced, not consumed); tag is an opaque number
 * remembered with it (the topic sequence, 0 for control items). Returns false if the
 * stream is finishing or broken. Messages go out one at a time, in order. */
bool srv_stream_send(srv_call *call, grpc_slice msg, uint64_t tag);
/* Like srv_stream_send, but only queues: when *need_kick comes back true the caller
 * must call srv_stream_kick later (e.g. after releasing its own lock), so the costly
 * start of the write happens outside that lock. Order is kept. */
bool srv_stream_enqueue(srv_call *call, grpc_slice msg, uint64_t tag, bool *need_kick);
void srv_stream_kick(srv_call *call);
/* Messages queued but not yet handed to gRPC (count; *bytes gets their size). */
size_t srv_stream_pending(srv_call *call, size_t *bytes);
/* Drops every queued message not yet handed to gRPC; returns the smallest non-zero tag
 * dropped (0 if none). */
uint64_t srv_stream_drop_pending(srv_call *call);
/* Ends the stream with a status after the queued messages (or at once, dropping them,
 * when drop is true). Idempotent: only the first call counts. */
void srv_stream_finish(srv_call *call, grpc_status_code code, const char *msg, bool drop);

/* Serializes a protobuf message into a new slice (caller unrefs). */
grpc_slice srv_pack_slice(const ProtobufCMessage *msg);

#endif
