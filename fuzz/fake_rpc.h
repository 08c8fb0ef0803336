/* Fuzz support: fake calls for server/rpc.h (see fake_rpc.c). */
#ifndef MIM_FUZZ_FAKE_RPC_H
#define MIM_FUZZ_FAKE_RPC_H

#include "rpc.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct fake_call_info {
  const char *token; /* "authorization" metadata (NUL-terminated) or NULL */
  const char *cache; /* "cache" metadata (cache_len bytes) or NULL */
  size_t cache_len;
  int finished;         /* completions seen (reply, fail or stream finish) */
  int code;             /* status of the last completion */
  bool streaming;       /* a close callback was registered */
  bool stream_finished; /* srv_stream_finish was called */
  size_t sent;          /* stream messages accepted */
} fake_call_info;

/* A call with one reference (the caller's); token and cache must outlive it. */
srv_call *fake_call_new(const char *token, const char *cache, size_t cache_len);
fake_call_info fake_call_result(srv_call *c);
/* Simulates the end of the call (client gone): runs the close callback once, if any. */
void fake_call_close(srv_call *c);

#endif
