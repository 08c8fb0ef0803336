/* protobuf-c helpers: pack into a stack-or-heap buffer, unpack with a protocol error. */
#include "pb.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

mim_status mim_pb_pack(const ProtobufCMessage *msg, mim_pb_buf *buf) {
  buf->data = buf->stack;
  buf->len = 0;
  size_t need = protobuf_c_message_get_packed_size(msg);
  if (need > sizeof buf->stack) {
    buf->data = malloc(need);
    if (!buf->data) {
      buf->data = buf->stack;
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory encoding %s request",
                      msg->descriptor->short_name);
    }
  }
  buf->len = protobuf_c_message_pack(msg, buf->data);
  return MIM_OK;
}

void mim_pb_buf_release(mim_pb_buf *buf) {
  if (!buf || !buf->data)
    return;
  /* explicit_bzero: a plain memset right before free/scope exit may be optimized out. */
  explicit_bzero(buf->data, buf->len);
  if (buf->data != buf->stack)
    free(buf->data);
  buf->data = NULL;
  buf->len = 0;
}

mim_status mim_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         ProtobufCMessage **out) {
  static const uint8_t empty[1] = {0};
  *out = protobuf_c_message_unpack(desc, NULL, len, data ? data : empty);
  if (!*out)
    return mim_fail(MIM_ERR_PROTOCOL, "could not decode %s (%zu bytes)", desc->short_name, len);
  return MIM_OK;
}

void mim_pb_free(ProtobufCMessage *msg) {
  if (msg)
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* Reads a base-128 varint at *p (< end); false when truncated or longer than 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return true;
  }
  return false;
}

/* Skips a field's value of this wire type; false when malformed (groups included:
 * proto3 has none). */
static bool skip_value(const uint8_t **p, const uint8_t *end, unsigned wire_type) {
  uint64_t n;
  switch (wire_type) {
  case 0: /* varint */
    return read_varint(p, end, &n);
  case 1: /* fixed64 */
    n = 8;
    break;
  case 5: /* fixed32 */
    n = 4;
    break;
  default:
    return false;
  }
  if ((uint64_t)(end - *p) < n)
    return false;
  *p += n;
  return true;
}

/* The last length-delimited occurrence of field `number` in [data, data + len). */
static bool find_field(const uint8_t *data, size_t len, uint32_t number, const uint8_t **out,
                       size_t *out_len) {
  const uint8_t *p = data, *end = data + len;
  bool found = false;
  while (p < end) {
    uint64_t key, n;
    if (!read_varint(&p, end, &key))
      return false;
    unsigned wire_type = (unsigned)(key & 7);
    if (wire_type != 2) {
      if (!skip_value(&p, end, wire_type))
        return false;
      continue;
    }
    if (!read_varint(&p, end, &n) || (uint64_t)(end - p) < n)
      return false;
    if (key >> 3 == number) {
      *out = p;
      *out_len = (size_t)n;
      found = true;
    }
    p += n;
  }
  return found;
}

bool mim_pb_find_bytes(const uint8_t *data, size_t len, const uint32_t *path, size_t depth,
                       const uint8_t **out, size_t *out_len) {
  static const uint8_t empty[1] = {0};
  const uint8_t *at = data ? data : empty;
  size_t n = data ? len : 0;
  for (size_t i = 0; i < depth; i++)
    if (!find_field(at, n, path[i], &at, &n))
      return false;
  *out = at;
  *out_len = n;
  return true;
}

#define MAX_NESTING 32

/* The first string field at or under desc (wire bytes data/len) holding a NUL byte. */
static const char *nul_in_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                  size_t len, int depth) {
  const uint8_t *p = data, *end = data + len;
  while (p < end && depth < MAX_NESTING) {
    uint64_t key, n;
    if (!read_varint(&p, end, &key))
      return NULL; /* malformed: protobuf-c says so */
    unsigned wire_type = (unsigned)(key & 7);
    if (wire_type != 2) {
      if (!skip_value(&p, end, wire_type))
        return NULL;
      continue;
    }
    if (!read_varint(&p, end, &n) || (uint64_t)(end - p) < n || key >> 3 > UINT32_MAX)
      return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
    const char *bad = NULL;
    if (f && f->type == PROTOBUF_C_TYPE_STRING && n && memchr(p, 0, (size_t)n))
      bad = f->name;
    else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
      bad = nul_in_strings(f->descriptor, p, (size_t)n, depth + 1);
    if (bad)
      return bad;
    p += n;
  }
  return NULL;
}

const char *mim_pb_nul_in_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                  size_t len) {
  return data ? nul_in_strings(desc, data, len, 0) : NULL;
}
