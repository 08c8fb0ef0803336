/* The library's one unary call path: pack -> transport call -> unpack. */
#include "pb_call.h"

#include "client_internal.h"
#include "error.h"
#include "stats.h"

#include <stdlib.h>
#include <string.h>

/* Decodes a response (NULL when the method does not read it). A string with a NUL
 * inside (a name, a key) would reach us cut at the NUL, a different value: refused. */
static mim_status decode(const mim_pb_method *method, const uint8_t *bytes, size_t len,
                         ProtobufCMessage **out) {
  *out = NULL;
  if (!method->response)
    return MIM_OK;
  const char *bad = mim_pb_nul_in_strings(method->response, bytes, len);
  if (bad)
    return mim_fail(MIM_ERR_PROTOCOL, "%s: field %s of the response holds a NUL byte", method->path,
                    bad);
  return mim_pb_unpack(method->response, bytes, len, out);
}

mim_status mim_pb_call(mim_client *client, const mim_pb_method *method, const char *cache,
                       const ProtobufCMessage *request, ProtobufCMessage **resp) {
  if (resp)
    *resp = NULL;
  mim_pb_buf buf;
  mim_status st = mim_pb_pack(request, &buf);
  if (st != MIM_OK)
    return st;
  uint8_t *bytes = NULL;
  size_t len = 0;
  /* The transport refuses this on its event thread (FAILED_PRECONDITION). */
  st = mim_transport_unary_sync(mim_client_transport(client), method->host, method->path, cache,
                                buf.data, buf.len, mim_client_deadline_ms(client), &bytes, &len);
  mim_client_after_drive(client); /* loop mode: it may have run callbacks that defer jobs */
  size_t sent = buf.len;
  mim_pb_buf_release(&buf);
  ProtobufCMessage *msg = NULL;
  if (st == MIM_OK)
    st = decode(method, bytes, len, &msg);
  mim_stats_call(client, method->host, method->path, mim_stats_request_ops(request), sent, len, st,
                 st == MIM_OK ? NULL : mim_last_error_detail(), msg);
  if (bytes && method->secret_response)
    explicit_bzero(bytes, len);
  free(bytes);
  if (resp)
    *resp = msg;
  else
    mim_pb_free(msg);
  return st;
}

/* One call in flight: what the completion gets, and the completion. */
typedef struct pending_call {
  mim_pb_pending pub;
  mim_pb_done_fn done;
  mim_client *client;   /* for its counters */
  size_t sent;          /* request bytes */
  unsigned request_ops; /* mim_stats_request_ops of the request */
} pending_call;

/* Runs on the event thread. A decoding failure is described through the event thread's
 * own thread-local detail, which nothing else reads. */
static void call_done(void *user, mim_status status, const char *detail, const uint8_t *bytes,
                      size_t len) {
  pending_call *call = user;
  mim_clear_error();
  ProtobufCMessage *msg = NULL;
  if (status == MIM_OK) {
    status = decode(call->pub.method, bytes, len, &msg);
    detail = status == MIM_OK ? "" : mim_last_error_detail();
  } else if (!detail) {
    detail = "";
  }
  mim_stats_call(call->client, call->pub.method->host, call->pub.method->path, call->request_ops,
                 call->sent, len, status, detail, msg);
  call->done(&call->pub, status, detail, msg);
  mim_pb_free(msg);
  free(call);
}

mim_status mim_pb_call_async(mim_client *client, const mim_pb_method *method, const char *cache,
                             const ProtobufCMessage *request, mim_pb_done_fn done,
                             mim_pb_user_fn user_fn, void *user) {
  if (method->secret_response) /* see mim_pb_method: its bytes would escape zeroing */
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s returns a secret: call it with mim_pb_call",
                    method->path);
  pending_call *call = malloc(sizeof *call);
  if (!call)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory starting %s", method->path);
  call->pub = (mim_pb_pending){.method = method, .user_fn = user_fn, .user = user};
  call->done = done;
  call->client = client;
  call->request_ops = mim_stats_request_ops(request);
  mim_pb_buf buf;
  mim_status st = mim_pb_pack(request, &buf);
  if (st == MIM_OK) {
    call->sent = buf.len;
    st = mim_transport_unary(mim_client_transport(client), method->host, method->path, cache,
                             buf.data, buf.len, mim_client_deadline_ms(client), call_done, call,
                             NULL);
    mim_pb_buf_release(&buf);
  }
  if (st != MIM_OK)
    free(call); /* call_done will not run */
  return st;
}
