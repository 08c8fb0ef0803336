/*
 * Internal: one HTTP/2 client connection carrying gRPC calls (libnghttp2).
 *
 * A connection owns an nghttp2 client session and, in network mode, a connected
 * mim_net_conn watched on the reactor. It turns responses into gRPC results: messages
 * reassembled by mim_grpc_reader, the status from trailers, a Trailers-Only response or
 * the HTTP status, RST_STREAM and connection loss mapped as gRPC maps them. What calls
 * exist, which connection they use, deadlines and retries belong to the transport above
 * (lib/transport/h2.c).
 *
 * Threading: loop thread only (nothing here locks). Callbacks (mim_h2_events) run on
 * the loop thread from inside the connection's I/O or timer callbacks, or from
 * mim_h2_conn_mem_recv. They may submit and cancel streams on any connection; they
 * must not free the connection, except from on_dead, which is its last callback.
 *
 * Memory mode (fuzzing, unit tests): mim_h2_conn_create_mem makes a session whose I/O
 * is memory: feed server bytes with mim_h2_conn_mem_recv, take what the client wants to
 * send with mim_h2_conn_mem_output. No reactor, no timers (no keepalive), no socket. A
 * fuzz harness (fuzz/fuzz_h2_client.c):
 *     mim_h2_conn *c; mim_h2_conn_create_mem(&events, user, &c);
 *     mim_h2_conn_submit(c, &req, stream_user, &s);       (a unary and a stream call)
 *     mim_h2_conn_mem_output(c, NULL) ... mim_h2_conn_mem_recv(c, data, size);
 *     mim_h2_conn_free(c);
 * Byte sequences that start a server's side need a server preface (a SETTINGS frame)
 * first; the client preface is what mim_h2_conn_mem_output returns first.
 */
#ifndef MIM_LIB_H2_CONN_H
#define MIM_LIB_H2_CONN_H

#include "h2/net.h"
#include "loop/reactor.h"

#include <momento/common.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mim_h2_conn mim_h2_conn;
typedef struct mim_h2_stream mim_h2_stream;

/* Flow control: generous windows, and data is consumed as it is delivered, so one slow
 * subscriber never stalls the others on the connection. */
#define MIM_H2_STREAM_WINDOW (16 * 1024 * 1024)
#define MIM_H2_CONN_WINDOW (64 * 1024 * 1024)
#define MIM_H2_KEEPALIVE_MS 30000
#define MIM_H2_KEEPALIVE_TIMEOUT_MS 10000

typedef struct mim_h2_events {
  /* A streaming call received a message (bytes valid during the call only). */
  void (*on_message)(void *stream_user, const uint8_t *msg, size_t len);
  /* A stream ended: status and detail (never NULL); for a unary stream on MIM_OK the one
   * response message (msg may be NULL when empty). refused: the server never processed
   * the request (GOAWAY above its last stream id, REFUSED_STREAM, or the connection
   * failed before the request was sent): it may be retried on another connection.
   * Not called for a stream cancelled with mim_h2_stream_cancel. */
  void (*on_close)(void *stream_user, mim_status status, const char *detail, const uint8_t *msg,
                   size_t len, bool refused);
  /* The connection can take more streams (its SETTINGS arrived, or a stream ended).
   * May be NULL. */
  void (*on_ready)(void *conn_user, mim_h2_conn *c);
  /* The connection is finished: failed (status != MIM_OK, every stream already got its
   * on_close), or drained after a GOAWAY (MIM_OK). The last callback: the owner frees
   * the connection now or later. Network mode only. */
  void (*on_dead)(void *conn_user, mim_h2_conn *c, mim_status status, const char *detail);
  /* The server said ENHANCE_YOUR_CALM (too many pings): the owner should double the
   * keepalive interval of future connections. May be NULL. */
  void (*on_calm_down)(void *conn_user);
} mim_h2_events;

typedef struct mim_h2_header {
  const char *name; /* lower case */
  const char *value;
} mim_h2_header;

typedef struct mim_h2_request {
  const char *path;             /* "/service/method" */
  const char *authority;        /* host:port */
  bool tls;                     /* :scheme https or http */
  int64_t timeout_ms;           /* > 0: grpc-timeout is sent */
  const mim_h2_header *headers; /* after the fixed ones (authorization, cache, ...) */
  size_t header_count;
  /* The whole request body: gRPC prefix + message. Not copied: it must stay valid until
   * on_close ran or mim_h2_stream_cancel returned. */
  const uint8_t *body;
  size_t body_len;
  bool unary; /* exactly one response message expected */
} mim_h2_request;

/* Network mode: takes ownership of nc (also on failure), watches its fd, sends the
 * client preface and SETTINGS. keepalive_ms: interval of keepalive pings while streams
 * are open (0 = MIM_H2_KEEPALIVE_MS). */
mim_status mim_h2_conn_create(mim_reactor *r, mim_net_conn *nc, int64_t keepalive_ms,
                              const mim_h2_events *events, void *conn_user, mim_h2_conn **out);

/* Memory mode (see the top of this file). */
mim_status mim_h2_conn_create_mem(const mim_h2_events *events, void *conn_user, mim_h2_conn **out);

/* Memory mode: feeds bytes from the server. Returns MIM_OK, or the error that failed
 * the connection (its streams then got on_close first). */
mim_status mim_h2_conn_mem_recv(mim_h2_conn *c, const uint8_t *data, size_t len);

/* Memory mode: appends what the client has to send to *out_len bytes at *out (valid
 * until the next call on c; out may be NULL to discard). Returns the byte count. */
size_t mim_h2_conn_mem_output(mim_h2_conn *c, const uint8_t **out);

/* Frees the connection (closing its socket); streams still open are dropped without
 * callbacks. NULL ignored. */
void mim_h2_conn_free(mim_h2_conn *c);

/* True when a new stream may be submitted now: alive, no GOAWAY, and below the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS. */
bool mim_h2_conn_can_submit(const mim_h2_conn *c);

/* Streams submitted and not yet closed. */
size_t mim_h2_conn_streams(const mim_h2_conn *c);

/* "host:port" of the peer ("memory" in memory mode). */
const char *mim_h2_conn_peer(const mim_h2_conn *c);

/* Starts a stream. On MIM_OK exactly one on_close will follow unless
 * mim_h2_stream_cancel is called first. *out valid until then. */
mim_status mim_h2_conn_submit(mim_h2_conn *c, const mim_h2_request *req, void *stream_user,
                              mim_h2_stream **out);

/* Resets the stream (RST_STREAM CANCEL) and forgets its user: no callback follows. */
void mim_h2_stream_cancel(mim_h2_stream *s);

#endif
