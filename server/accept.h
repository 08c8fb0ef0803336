/* mim-local: its own accept loop for plaintext connections, handed to gRPC core one by
 * one. gRPC core 1.51 stops accepting for good after one accept4() fails with EMFILE,
 * and has no connection limit; this loop keeps file descriptors in reserve (refusing
 * connections beyond them, with a log line) and waits out an EMFILE instead. */
#ifndef MIM_SERVER_ACCEPT_H
#define MIM_SERVER_ACCEPT_H

#include <grpc/grpc.h>
#include <stdbool.h>

typedef struct srv_acceptor srv_acceptor;

/* Binds every address host resolves to on port (0: a free one, the same for all);
 * *bound_port gets the port. Nothing is accepted yet. NULL on failure (logged). */
srv_acceptor *srv_acceptor_bind(const char *host, int port, int *bound_port);

/* Accepts on a thread of its own into server, which must be started. False (logged)
 * if the thread could not start. */
bool srv_acceptor_run(srv_acceptor *a, grpc_server *server);

/* Stops accepting and closes the listening sockets; connections already handed over
 * stay with the server. Call before shutting the server down. NULL is ignored. */
void srv_acceptor_stop(srv_acceptor *a);

/* File descriptors kept free for everything but new connections, at a soft limit of
 * limit: an eighth of it, at least 16 and at most 256. */
int srv_acceptor_reserve(int limit);

#endif
