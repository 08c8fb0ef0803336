/* Test helper: one blocking call to a gRPC server through gRPC core's client API,
 * reporting what the library's transports do not (yet) surface: the raw status code,
 * the status message and the `err` trailing metadata entry that hosted Momento (and
 * mim-local) attach to a limit refusal.
 *
 *   grpc_probe *p = grpc_probe_new("127.0.0.1:PORT", token);
 *   grpc_probe_result r;
 *   grpc_probe_call(p, "/cache_client.Scs/ListPushBack", "cache", req, len, 5000, &r);
 *   assert_int_equal(r.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
 *   assert_string_equal(r.err, "element_size_limit_exceeded");
 *   grpc_probe_free(p);
 *
 * Not thread-safe: one thread per probe. The probe initialises gRPC core while it lives. */
#ifndef MIM_TESTS_GRPC_PROBE_H
#define MIM_TESTS_GRPC_PROBE_H

#include <stddef.h>
#include <stdint.h>

typedef struct grpc_probe grpc_probe;

typedef struct grpc_probe_result {
  int code;            /* grpc_status_code; -1 if the call could not be made */
  char message[512];   /* the status message (cut to fit) */
  char err[128];       /* the `err` trailer's value, "" when there is none */
  size_t response_len; /* bytes of the (first) response message */
  int has_response;
} grpc_probe_result;

/* A plaintext channel to target; token (may be NULL: none) goes into "authorization"
 * metadata. NULL on failure. */
grpc_probe *grpc_probe_new(const char *target, const char *token);
void grpc_probe_free(grpc_probe *p);
/* Sends one request (raw bytes) with metadata "cache" (when cache is not NULL) and
 * waits up to deadline_ms for the final status. A server stream's first message is
 * read; an unending stream ends in DEADLINE_EXCEEDED. Returns r->code. */
int grpc_probe_call(grpc_probe *p, const char *method, const char *cache, const uint8_t *req,
                    size_t len, int deadline_ms, grpc_probe_result *r);

#endif
