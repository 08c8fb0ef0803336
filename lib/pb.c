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
