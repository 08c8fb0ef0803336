/*
 * Internal: byte streams for the HTTP/2 transport. Resolves "host:port" without
 * blocking the loop, connects without blocking to every resolved address (IPv4 and
 * IPv6), and optionally runs TLS (ALPN "h2", SNI, hostname verification) over the
 * socket. What comes out is a connected, non-blocking byte stream read and written by
 * the HTTP/2 layer.
 *
 * Threading: everything here runs on the reactor's loop thread, except that name
 * resolution of non-numeric hosts happens on one resolver thread per mim_net (started on
 * first need, joined by mim_net_free); its results are posted back to the loop.
 */
#ifndef MIM_LIB_H2_NET_H
#define MIM_LIB_H2_NET_H

#include "loop/reactor.h"

#include <momento/common.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mim_net mim_net;           /* per transport: TLS context + resolver */
typedef struct mim_net_conn mim_net_conn; /* one connected byte stream */
typedef struct mim_net_dial mim_net_dial; /* one connect attempt in progress */

typedef struct mim_net_config {
  bool tls;            /* false: plaintext (h2c with prior knowledge) */
  const char *ca_file; /* PEM roots instead of the system roots; NULL = system */
} mim_net_config;

/* Creates the shared part: the OpenSSL client context (TLS 1.2+, ALPN "h2", peer
 * verification on, roots from ca_file or the system store). An unreadable or empty
 * ca_file gives MIM_ERR_INVALID_ARGUMENT naming the file. Loop thread not required. */
mim_status mim_net_create(mim_reactor *r, const mim_net_config *config, mim_net **out);

/* Frees the context and joins the resolver thread (a lookup still running is waited
 * for: getaddrinfo cannot be interrupted; its result is dropped). Every dial must have
 * completed or been cancelled first. Loop thread, or after the reactor stopped. NULL is
 * ignored. */
void mim_net_free(mim_net *net);

/* Outcome of a dial: on MIM_OK conn is connected (TLS handshake done and ALPN "h2"
 * agreed when TLS) and owned by the callee; otherwise conn is NULL and detail says what
 * failed, naming host:port (DNS failure: MIM_ERR_UNAVAILABLE "resolving host:port: ...";
 * refused / unreachable: MIM_ERR_UNAVAILABLE; certificate or hostname mismatch or no
 * ALPN h2: MIM_ERR_UNAVAILABLE with the verification error; timeout:
 * MIM_ERR_DEADLINE_EXCEEDED). Runs on the loop thread, never inside mim_net_dial_start. */
typedef void (*mim_net_dial_cb)(void *user, mim_status status, const char *detail,
                                mim_net_conn *conn);

/* Loop thread only. Starts connecting to host_port ("host:port", "[v6]:port"), trying
 * every resolved address (a later one is started when an earlier one fails or has not
 * connected within 250 ms; the first to connect wins), within timeout_ms in total. The
 * callback runs exactly once unless mim_net_dial_cancel is called first.
 * (Named _start: a function cannot share the name of the mim_net_dial type.) */
mim_status mim_net_dial_start(mim_net *net, const char *host_port, int64_t timeout_ms,
                              mim_net_dial_cb cb, void *user, mim_net_dial **out);

/* Loop thread only: abandons a dial whose callback has not run; it never will. */
void mim_net_dial_cancel(mim_net_dial *dial);

/* The socket, for mim_reactor_watch by the caller. */
int mim_net_conn_fd(const mim_net_conn *c);

/* Result of read/write beyond byte counts. */
#define MIM_NET_AGAIN (-1) /* nothing now: wait for mim_net_conn_wants() */
#define MIM_NET_ERROR (-2) /* the stream is broken: see mim_net_conn_error() */

/* Reads up to cap bytes: > 0 bytes read, 0 = orderly end of stream, MIM_NET_AGAIN,
 * MIM_NET_ERROR. */
ssize_t mim_net_conn_read(mim_net_conn *c, void *buf, size_t cap);

/* Writes up to len bytes: > 0 bytes taken, MIM_NET_AGAIN, MIM_NET_ERROR. */
ssize_t mim_net_conn_write(mim_net_conn *c, const void *buf, size_t len);

/* What the stream waits for after MIM_NET_AGAIN (MIM_LOOP_READ and/or MIM_LOOP_WRITE: a
 * TLS read can need the socket writable and the other way round). */
unsigned mim_net_conn_wants(const mim_net_conn *c);

/* Text of the last MIM_NET_ERROR (errno text or the TLS error), naming host:port. */
const char *mim_net_conn_error(const mim_net_conn *c);

/* "host:port" this stream is connected to (as given to mim_net_dial_start). */
const char *mim_net_conn_peer(const mim_net_conn *c);

/* Closes (TLS close_notify best effort, never blocking) and frees. The caller must have
 * removed its watch first. NULL ignored. */
void mim_net_conn_close(mim_net_conn *c);

#endif
