/*
 * Internal: byte streams for the HTTP/2 transport. Resolves "host:port" without
 * blocking the loop, connects without blocking to every resolved address (IPv4 and
 * IPv6), and optionally runs TLS (ALPN "h2", SNI, hostname verification) over the
 * socket. What comes out is a connected, non-blocking byte stream read and written by
 * the HTTP/2 layer.
 *
 * Threading: everything here runs on the reactor's loop thread, except that name
 * resolution of non-numeric hosts happens on one resolver thread per mim_net (started on
 * first need, stopped by mim_net_free); its results are posted back to the loop. Lookups
 * run one at a time, in order: a name whose DNS server hangs delays the names after it
 * (each dial still ends by its own timeout).
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
 * ca_file gives MIM_ERR_INVALID_ARGUMENT naming the file. The system store is
 * /etc/ssl/certs read lazily through its hash links when it has them (a handshake loads
 * only the roots it needs), else /etc/ssl/certs/ca-certificates.crt, else OpenSSL's
 * default paths. Loop thread not required. */
mim_status mim_net_create(mim_reactor *r, const mim_net_config *config, mim_net **out);

/* Frees the context and stops the resolver thread without waiting for the network: an
 * idle thread is joined; one inside getaddrinfo (which cannot be interrupted) is detached
 * and ends by itself when the lookup returns, dropping its result. Every dial must have
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
 * every resolved address, the two families alternating (RFC 8305): a later address is
 * started when an earlier one fails or has not connected within 250 ms; the first to
 * connect wins. All of it (lookup, connect, TLS handshake) within timeout_ms. The
 * callback runs exactly once unless mim_net_dial_cancel is called first. Numeric hosts
 * need no lookup; names go to the resolver thread. A bad host_port gives
 * MIM_ERR_INVALID_ARGUMENT here (no callback). (Named _start: a function cannot share
 * the name of the mim_net_dial type.) */
mim_status mim_net_dial_start(mim_net *net, const char *host_port, int64_t timeout_ms,
                              mim_net_dial_cb cb, void *user, mim_net_dial **out);

/* Loop thread only: abandons a dial whose callback has not run; it never will. */
void mim_net_dial_cancel(mim_net_dial *dial);

/* The socket, for mim_reactor_watch by the caller. */
int mim_net_conn_fd(const mim_net_conn *c);

/* Result of read/write beyond byte counts. */
#define MIM_NET_AGAIN (-1) /* nothing now: wait for mim_net_conn_wants() */
#define MIM_NET_ERROR (-2) /* the stream is broken: see mim_net_conn_error() */

/* The stream calls below belong to the loop thread (or whoever owns the conn); none is
 * thread-safe. */

/* Reads up to cap bytes: > 0 bytes read, 0 = orderly end of stream (also a TLS peer that
 * closes without close_notify: HTTP/2 notices truncation itself), MIM_NET_AGAIN,
 * MIM_NET_ERROR. After the socket was reported readable, keep reading until
 * MIM_NET_AGAIN (or 0 / MIM_NET_ERROR): TLS may hold decrypted bytes (SSL_pending) that
 * the socket no longer shows, so stopping after one read can stall the stream for good. */
ssize_t mim_net_conn_read(mim_net_conn *c, void *buf, size_t cap);

/* Writes up to len bytes: > 0 bytes taken (possibly fewer than len), MIM_NET_AGAIN,
 * MIM_NET_ERROR. Never raises SIGPIPE. After MIM_NET_AGAIN the next write must offer the
 * same bytes again, at least as many, from any address (OpenSSL's rule for a retried
 * SSL_write; harmless for plain TCP). */
ssize_t mim_net_conn_write(mim_net_conn *c, const void *buf, size_t len);

/* What the stream waits for (MIM_LOOP_READ and/or MIM_LOOP_WRITE): the union of what the
 * last read and the last write that returned MIM_NET_AGAIN wait for (a TLS read can need
 * the socket writable and the other way round); a write that takes bytes clears its
 * part. MIM_LOOP_READ right after the dial. */
unsigned mim_net_conn_wants(const mim_net_conn *c);

/* Text of the last MIM_NET_ERROR (errno text or the TLS error), naming host:port. */
const char *mim_net_conn_error(const mim_net_conn *c);

/* "host:port" this stream is connected to (as given to mim_net_dial_start). */
const char *mim_net_conn_peer(const mim_net_conn *c);

/* Closes (TLS close_notify best effort, never blocking) and frees. The caller must have
 * removed its watch first. NULL ignored. */
void mim_net_conn_close(mim_net_conn *c);

/* Tests only: the lookup the resolver thread runs (getaddrinfo by default), so a test can
 * make a name resolve to several addresses. Set it before the first dial of a mim_net;
 * the list it returns is released with freeaddrinfo. */
struct addrinfo;
extern int (*mim_net_lookup_fn)(const char *host, const char *port, const struct addrinfo *hints,
                                struct addrinfo **res);

/* Tests only: where the system roots are looked for (read by mim_net_create). */
extern const char *mim_net_system_ca_dir;
extern const char *mim_net_system_ca_file;

#endif
