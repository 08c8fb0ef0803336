/*
 * Internal: protobuf-c helpers shared by the modules (list, topics, token, client).
 * Unary calls go through pb_call.h, which builds on these.
 *
 * Packing: small messages go into a buffer on the caller's stack, large ones into the
 * heap; either way release the buffer with mim_pb_buf_release (which also zeroes it, so
 * a request that carried something sensitive does not linger).
 *
 *   mim_pb_buf buf;
 *   mim_status st = mim_pb_pack(&req.base, &buf);
 *   if (st != MIM_OK) return st;
 *   ... use buf.data / buf.len ...
 *   mim_pb_buf_release(&buf);
 *
 * Unpacking maps a decode failure to MIM_ERR_PROTOCOL with a detail naming the message.
 */
#ifndef MIM_LIB_PB_H
#define MIM_LIB_PB_H

#include <momento/common.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Messages up to this size are packed without a heap allocation. */
#define MIM_PB_STACK_SIZE 512

typedef struct mim_pb_buf {
  uint8_t *data; /* points at stack or at a malloc'd block */
  size_t len;
  uint8_t stack[MIM_PB_STACK_SIZE];
} mim_pb_buf;

/* Serializes msg into buf. Errors: MIM_ERR_NO_MEMORY (buf is then empty and needs no
 * release, though releasing it is harmless). */
mim_status mim_pb_pack(const ProtobufCMessage *msg, mim_pb_buf *buf);

/* Zeroes the packed bytes and frees them if they were on the heap. */
void mim_pb_buf_release(mim_pb_buf *buf);

/* Parses len bytes (data may be NULL when len is 0: an empty message) as desc.
 * On MIM_OK *out is owned by the caller: free with mim_pb_free.
 * Errors: MIM_ERR_PROTOCOL ("could not decode <message name>"). */
mim_status mim_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         ProtobufCMessage **out);

/* Frees an unpacked message. NULL is ignored. */
void mim_pb_free(ProtobufCMessage *msg);

/* protobuf-c hands string fields over as C strings, so a NUL inside one cuts it. This
 * finds the bytes of a length-delimited field on the wire instead: path[0] is a field
 * number in data, path[1] one inside that field's last occurrence, and so on (the last
 * occurrence of each, as for a singular field; protobuf's merging of repeated
 * occurrences of a message field is not modelled, so callers check the result against
 * what protobuf-c decoded). True with *out and *out_len pointing into data when found;
 * false when absent or data is malformed. */
/* The name of the first string field in data (a desc, nested messages included) that
 * holds a NUL byte, or NULL. protobuf-c would cut such a string at the NUL and hand over
 * a different value; callers refuse the message instead. */
const char *mim_pb_nul_in_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                  size_t len);

bool mim_pb_find_bytes(const uint8_t *data, size_t len, const uint32_t *path, size_t depth,
                       const uint8_t **out, size_t *out_len);

/* A protobuf bytes field over the caller's bytes (not copied: valid while they are;
 * protobuf-c only reads them when packing). */
static inline ProtobufCBinaryData mim_pb_bytes(const void *data, size_t len) {
  ProtobufCBinaryData b = {len, (uint8_t *)data};
  return b;
}

/* The bytes of a NUL-terminated name, without the NUL. */
static inline ProtobufCBinaryData mim_pb_name(const char *name) {
  return mim_pb_bytes(name, strlen(name));
}

#endif
