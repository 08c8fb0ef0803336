/*
 * In-process gRPC core test server for transport tests: plaintext, 127.0.0.1, a free
 * port, its own completion-queue thread. Handles every method generically:
 *
 *   /cache_client.Ping/Ping   empty response, OK
 *   /test.Echo/Unary          echoes the request bytes, OK
 *   /test.Fail/Status         request is "<grpc code> <detail>"; answers that status
 *   /test.Fail/Err            request is "<grpc code> <err> <detail>"; answers that status
 *                             with a trailing metadata entry "err" (none when err is "-")
 *   /test.Stream/FailErr      same request; sends one message "first", then that status
 *   /test.Fail/NotFound       NOT_FOUND "cache not found"
 *   /test.Stream/Count        request is a decimal N; streams "msg-0".."msg-<N-1>", OK
 *   /test.Stream/Hang         sends one message "first", then never ends (until cancel)
 *   /test.Hang/Unary          never answers (until the client cancels or times out)
 *   /cache_client.pubsub.Pubsub/Subscribe with metadata cache "wire-text": streams one
 *                             item whose text value is "abc\0def" (7 bytes) and whose
 *                             publisher_id is "p\0q", then never ends (until cancel)
 *   /cache_client.pubsub.Pubsub/Publish with metadata cache "refuse:N:ERR": the first N
 *                             such publishes fail RESOURCE_EXHAUSTED with err=ERR (none
 *                             for "-"), later ones succeed (see publish_times)
 *   /cache_client.pubsub.Pubsub/Subscribe with metadata cache "subcut:N:ERR": the first
 *                             such call gets a heartbeat, then RESOURCE_EXHAUSTED with
 *                             err=ERR; the next N are refused so at once; later ones get
 *                             a heartbeat and stay open (counted with publish_times)
 *   /token.Token/GenerateDisposableToken  answers a token response whose api_key is
 *                             "ab\0cd" (a NUL inside), OK
 *   anything else             UNIMPLEMENTED
 *
 * The request metadata of the most recent call is kept and readable from any thread.
 */
#ifndef MIM_TESTS_GRPC_TEST_SERVER_H
#define MIM_TESTS_GRPC_TEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct grpc_test_server grpc_test_server;

/* Starts a server on 127.0.0.1:<free port>; NULL on failure. */
grpc_test_server *grpc_test_server_start(void);

/* Server settings for transport tests; 0 = gRPC's default. */
typedef struct grpc_test_server_options {
  int max_concurrent_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS per connection */
  int max_connection_age_ms;       /* GOAWAY after this age (gRPC adds +-10% jitter) */
  int max_connection_age_grace_ms; /* then streams still open get this long */
} grpc_test_server_options;

/* Like grpc_test_server_start, with options (NULL = none). */
grpc_test_server *grpc_test_server_start_with(const grpc_test_server_options *o);

/* Cancels every call, stops the thread and frees the server. NULL is ignored. */
void grpc_test_server_stop(grpc_test_server *s);

int grpc_test_server_port(const grpc_test_server *s);

/* "127.0.0.1:<port>" (owned by the server). */
const char *grpc_test_server_address(const grpc_test_server *s);

/* Copies the value of request metadata `key` of the most recent call (NUL-terminated,
 * truncated to cap) into buf. Returns false when that call did not carry the key. */
bool grpc_test_server_last_metadata(grpc_test_server *s, const char *key, char *buf, size_t cap);

/* Copies the method path of the most recent call; false if there was none. */
bool grpc_test_server_last_method(grpc_test_server *s, char *buf, size_t cap);

/* Number of "refuse:" publishes and "subcut:" subscribes so far; their arrival times
 * (CLOCK_MONOTONIC ms, the first cap, at most 64) go to out. */
int grpc_test_server_publish_times(grpc_test_server *s, int64_t *out, int cap);

/* Number of calls the server has accepted so far. */
int grpc_test_server_call_count(grpc_test_server *s);

/* Number of accepted calls that have ended (answered, or cancelled by the client). */
int grpc_test_server_finished_count(grpc_test_server *s);

#endif
