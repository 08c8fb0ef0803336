/* A blocking gRPC core client call that reports the status and the `err` trailer. */
#include "grpc_probe.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <stdlib.h>
#include <string.h>

struct grpc_probe {
  grpc_channel *channel;
  grpc_completion_queue *cq;
  char *token;
};

grpc_probe *grpc_probe_new(const char *target, const char *token) {
  grpc_probe *p = calloc(1, sizeof *p);
  if (!p) {
    return NULL;
  }
  grpc_init();
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  p->channel = grpc_channel_create(target, creds, NULL);
  grpc_channel_credentials_release(creds);
  p->cq = grpc_completion_queue_create_for_pluck(NULL);
  p->token = token ? strdup(token) : NULL;
  if (!p->channel || !p->cq || (token && !p->token)) {
    grpc_probe_free(p);
    return NULL;
  }
  return p;
}

void grpc_probe_free(grpc_probe *p) {
  if (!p) {
    return;
  }
  if (p->channel) {
    grpc_channel_destroy(p->channel);
  }
  if (p->cq) {
    grpc_completion_queue_shutdown(p->cq);
    while (
        grpc_completion_queue_pluck(p->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(p->cq);
  }
  free(p->token);
  free(p);
  grpc_shutdown();
}

static void copy_slice(char *dst, size_t cap, grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  n = n < cap - 1 ? n : cap - 1;
  memcpy(dst, GRPC_SLICE_START_PTR(s), n);
  dst[n] = '\0';
}

static void read_trailers(const grpc_metadata_array *md, grpc_probe_result *r) {
  for (size_t i = 0; i < md->count; i++) {
    if (grpc_slice_str_cmp(md->metadata[i].key, "err") == 0) {
      copy_slice(r->err, sizeof r->err, md->metadata[i].value);
    }
  }
}

/* Runs the whole call as one batch and waits for it. */
static int run(grpc_probe *p, grpc_call *call, grpc_metadata *md, size_t nmd, grpc_byte_buffer *req,
               gpr_timespec deadline, grpc_probe_result *r) {
  grpc_metadata_array initial, trailing;
  grpc_metadata_array_init(&initial);
  grpc_metadata_array_init(&trailing);
  grpc_byte_buffer *resp = NULL;
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = nmd;
  ops[0].data.send_initial_metadata.metadata = md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = req;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &resp;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[5].data.recv_status_on_client.status = &code;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag = 0;
  if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
    /* The call's own deadline ends it; a second more lets its status arrive. */
    grpc_event ev = grpc_completion_queue_pluck(
        p->cq, &tag, gpr_time_add(deadline, gpr_time_from_seconds(1, GPR_TIMESPAN)), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
      r->code = (int)code;
      copy_slice(r->message, sizeof r->message, details);
      read_trailers(&trailing, r);
      if (resp) {
        r->has_response = 1;
        r->response_len = grpc_byte_buffer_length(resp);
      }
    }
  }
  if (resp) {
    grpc_byte_buffer_destroy(resp);
  }
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&initial);
  grpc_metadata_array_destroy(&trailing);
  return r->code;
}

int grpc_probe_call(grpc_probe *p, const char *method, const char *cache, const uint8_t *req,
                    size_t len, int deadline_ms, grpc_probe_result *r) {
  memset(r, 0, sizeof *r);
  r->code = -1;
  grpc_slice path = grpc_slice_from_copied_string(method);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
  grpc_call *call = grpc_channel_create_call(p->channel, NULL, GRPC_PROPAGATE_DEFAULTS, p->cq, path,
                                             NULL, deadline, NULL);
  grpc_slice_unref(path);
  if (!call) {
    return r->code;
  }
  grpc_metadata md[2];
  size_t nmd = 0;
  memset(md, 0, sizeof md);
  if (p->token) {
    md[nmd].key = grpc_slice_from_static_string("authorization");
    md[nmd++].value = grpc_slice_from_copied_string(p->token);
  }
  if (cache) {
    md[nmd].key = grpc_slice_from_static_string("cache");
    md[nmd++].value = grpc_slice_from_copied_string(cache);
  }
  grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&body, 1);
  grpc_slice_unref(body);
  run(p, call, md, nmd, bb, deadline, r);
  grpc_byte_buffer_destroy(bb);
  for (size_t i = 0; i < nmd; i++) {
    grpc_slice_unref(md[i].value);
  }
  grpc_call_unref(call);
  return r->code;
}
