/* A stand-in for server/rpc.c so the fuzz harnesses can drive mim-local's handlers
 * without gRPC: a call is a struct with its metadata, its completion is recorded, and
 * stream messages are counted and dropped. The checks here are the call contract every
 * handler must keep (finish a call at most once, never use it after the last unref). */
#include "fake_rpc.h"

#include <grpc/slice.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_call {
  atomic_int refs;
  fake_call_info info;
  pthread_mutex_t mu;
  void (*on_close)(void *user);
  void *close_user;
  bool closed;
};

static void contract_violation(const char *what) {
  fprintf(stderr, "fake_rpc: handler broke the call contract: %s\n", what);
  abort();
}

srv_call *fake_call_new(const char *token, const char *cache, size_t cache_len) {
  srv_call *c = calloc(1, sizeof *c);
  if (!c) {
    abort();
  }
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->mu, NULL);
  c->info.token = token;
  c->info.cache = cache;
  c->info.cache_len = cache_len;
  return c;
}

fake_call_info fake_call_result(srv_call *c) {
  pthread_mutex_lock(&c->mu);
  fake_call_info i = c->info;
  pthread_mutex_unlock(&c->mu);
  return i;
}

/* The client goes away: the close callback (if any stream registered one) runs once. */
void fake_call_close(srv_call *c) {
  pthread_mutex_lock(&c->mu);
  void (*fn)(void *) = c->closed ? NULL : c->on_close;
  void *user = c->close_user;
  c->closed = true;
  pthread_mutex_unlock(&c->mu);
  if (fn) {
    fn(user);
  }
}

const char *srv_call_meta(const srv_call *call, const char *key, size_t *len) {
  const char *v = NULL;
  size_t n = 0;
  if (strcmp(key, "authorization") == 0 && call->info.token) {
    v = call->info.token;
    n = strlen(v);
  } else if (strcmp(key, "cache") == 0 && call->info.cache) {
    v = call->info.cache;
    n = call->info.cache_len;
  }
  if (len) {
    *len = n;
  }
  return v;
}

static void finish(srv_call *call, int code, bool streaming) {
  pthread_mutex_lock(&call->mu);
  bool again = call->info.finished > 0;
  call->info.finished++;
  call->info.code = code;
  if (streaming) {
    call->info.stream_finished = true;
  }
  pthread_mutex_unlock(&call->mu);
  if (again && !streaming) {
    contract_violation("unary call finished twice");
  }
}

void srv_call_reply(srv_call *call, const ProtobufCMessage *msg) {
  /* Serializing checks the response is a well-formed message (required sub-messages
   * set, oneof cases consistent) the way the real layer would send it. */
  grpc_slice s = srv_pack_slice(msg);
  grpc_slice_unref(s);
  finish(call, GRPC_STATUS_OK, false);
}

void srv_call_fail(srv_call *call, grpc_status_code code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (code == GRPC_STATUS_OK) {
    contract_violation("failed with status OK");
  }
  finish(call, (int)code, false);
}

void srv_call_fail_limit(srv_call *call, const char *err, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!err || !err[0]) {
    contract_violation("limit refusal without a cause");
  }
  finish(call, (int)GRPC_STATUS_RESOURCE_EXHAUSTED, false);
}

void srv_call_ref(srv_call *call) {
  if (atomic_fetch_add(&call->refs, 1) <= 0) {
    contract_violation("ref after the last unref");
  }
}

void srv_call_unref(srv_call *call) {
  int before = atomic_fetch_sub(&call->refs, 1);
  if (before <= 0) {
    contract_violation("unref without a reference");
  }
  if (before == 1) {
    pthread_mutex_destroy(&call->mu);
    free(call);
  }
}

bool srv_stream_on_close(srv_call *call, void (*fn)(void *user), void *user) {
  pthread_mutex_lock(&call->mu);
  bool ok = !call->closed && !call->on_close;
  if (ok) {
    call->on_close = fn;
    call->close_user = user;
    call->info.streaming = true;
  }
  pthread_mutex_unlock(&call->mu);
  return ok;
}

static bool count_send(srv_call *call) {
  pthread_mutex_lock(&call->mu);
  bool ok = !call->closed && !call->info.stream_finished;
  if (ok) {
    call->info.sent++;
  }
  pthread_mutex_unlock(&call->mu);
  return ok;
}

bool srv_stream_send(srv_call *call, grpc_slice msg, uint64_t tag) {
  (void)msg;
  (void)tag;
  return count_send(call);
}

bool srv_stream_enqueue(srv_call *call, grpc_slice msg, uint64_t tag, bool *need_kick) {
  (void)msg;
  (void)tag;
  *need_kick = false;
  return count_send(call);
}

void srv_stream_kick(srv_call *call) {
  (void)call;
}

size_t srv_stream_pending(srv_call *call, size_t *bytes) {
  (void)call;
  if (bytes) {
    *bytes = 0;
  }
  return 0;
}

uint64_t srv_stream_drop_pending(srv_call *call) {
  (void)call;
  return 0;
}

void srv_stream_finish(srv_call *call, grpc_status_code code, const char *msg, bool drop) {
  (void)msg;
  (void)drop;
  pthread_mutex_lock(&call->mu);
  bool first = !call->info.stream_finished;
  if (first) {
    call->info.stream_finished = true;
    call->info.finished++;
    call->info.code = (int)code;
  }
  pthread_mutex_unlock(&call->mu);
}

grpc_slice srv_pack_slice(const ProtobufCMessage *msg) {
  if (!protobuf_c_message_check(msg)) {
    contract_violation("response message does not check");
  }
  size_t n = protobuf_c_message_get_packed_size(msg);
  grpc_slice s = grpc_slice_malloc(n);
  if (protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s)) != n) {
    contract_violation("packed size mismatch");
  }
  return s;
}
