/*
 * Internal: the gRPC-over-HTTP/2 rules that do not depend on a connection: message
 * framing (5-byte prefix), status from trailers or from the HTTP status, grpc-message
 * percent-encoding, grpc-timeout. Pure functions and a small reassembly buffer: no I/O,
 * no threads, so the fuzzers and unit tests can drive them directly.
 */
#ifndef MIM_LIB_H2_GRPC_WIRE_H
#define MIM_LIB_H2_GRPC_WIRE_H

#include "error.h" /* mim_status_from_grpc_code: the one gRPC code table */

#include <momento/common.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest message the transport sends or accepts (bytes after the 5-byte prefix). */
#define MIM_GRPC_MAX_MESSAGE ((size_t)16 * 1024 * 1024)
#define MIM_GRPC_PREFIX_LEN 5

/* Writes the prefix of an uncompressed message of len bytes into out. */
void mim_grpc_prefix(uint8_t out[MIM_GRPC_PREFIX_LEN], size_t len);

/* Reassembles messages from DATA frame payloads of one stream. */
typedef struct mim_grpc_reader {
  uint8_t prefix[MIM_GRPC_PREFIX_LEN];
  size_t prefix_len; /* bytes of the prefix seen so far */
  uint8_t *buf;      /* the message being assembled (malloc'd, reused) */
  size_t need;       /* its length from the prefix */
  size_t have;       /* bytes of it seen so far */
  size_t cap;
  size_t max;         /* limit for this reader; 0 = MIM_GRPC_MAX_MESSAGE */
  mim_status stopped; /* MIM_OK, or why feeding must not go on (error or callback stop) */
} mim_grpc_reader;

/* Called once per complete message; bytes valid during the call only (they may point
 * into the fed data itself: a message that arrives whole is not copied). A zero-length
 * message gives len 0 and a non-NULL msg. Return false to stop (the feed returns
 * MIM_ERR_CANCELLED without touching the reader again, so the callback may free it; a
 * reader not freed refuses later feeds). Returning true with the reader freed is a bug. */
typedef bool (*mim_grpc_message_fn)(void *user, const uint8_t *msg, size_t len);

void mim_grpc_reader_init(mim_grpc_reader *r, size_t max);
void mim_grpc_reader_free(mim_grpc_reader *r);

/* Feeds bytes; calls on_message for each message completed. Errors (the stream must then
 * be reset): a compressed message (flag 1: we never ask for compression) gives
 * MIM_ERR_INTERNAL "compressed message received but no compression was negotiated"; a
 * flag other than 0/1, MIM_ERR_INTERNAL; a message longer than max,
 * MIM_ERR_RESOURCE_EXHAUSTED naming both sizes (refused from the prefix, before any
 * allocation); no memory, MIM_ERR_NO_MEMORY; fed again after an error or a stop,
 * MIM_ERR_INTERNAL. detail (cap bytes, may be NULL) gets the message. The buffer grows
 * with the bytes that actually arrive (not with the announced length) and is reused for
 * the following messages. */
mim_status mim_grpc_reader_feed(mim_grpc_reader *r, const uint8_t *data, size_t len,
                                mim_grpc_message_fn on_message, void *user, char *detail,
                                size_t detail_cap);

/* True when a message is partly received (the stream ended inside a message = error). */
bool mim_grpc_reader_partial(const mim_grpc_reader *r);

/* mim_status_from_grpc_code(long code) (lib/error.h) maps a grpc-status value, 0..16, to
 * mim_status; anything else is MIM_ERR_UNKNOWN. */

/* The status gRPC assigns to a response that has an HTTP status but no grpc-status:
 * 400 and 431 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 429/502/503/504 UNAVAILABLE, anything else (200 included) UNKNOWN (gRPC's
 * doc/http-grpc-status-mapping.md), then mapped as mim_status_from_grpc_code does. */
mim_status mim_status_from_http(int http_status);

/* Parses a grpc-status header value (1*DIGIT: decimal, no sign, no spaces, leading zeros
 * allowed); false if malformed or too large for a long. */
bool mim_grpc_parse_status(const uint8_t *value, size_t len, long *code);

/* Percent-decodes a grpc-message value into out (cap bytes, always NUL-terminated when
 * cap > 0). "%" and two hex digits (either case) give that byte; an invalid or cut-off
 * escape is kept literally, as gRPC does. NUL bytes (decoded or raw) become '?' so the
 * result is a C string. When it does not fit, it is cut before the last whole UTF-8
 * sequence that fits, so a truncated message never ends in half a character. */
void mim_grpc_decode_message(const uint8_t *value, size_t len, char *out, size_t cap);

/* Formats a grpc-timeout value for a deadline ms from now: "<n>m" while n fits the
 * protocol's 8 digits, else the first of seconds "S", minutes "M", hours "H" that fits,
 * rounded up (the server never gives up before the client); beyond 99999999 hours,
 * "99999999H". out needs 12 bytes. ms <= 0 gives "1m" (the value must be positive). */
void mim_grpc_timeout_value(int64_t ms, char out[12]);

/* Checks the response's content-type: "application/grpc" (any letter case) optionally
 * followed by "+..." or ";...". */
bool mim_grpc_content_type_ok(const uint8_t *value, size_t len);

#endif
