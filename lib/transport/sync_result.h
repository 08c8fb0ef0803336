/*
 * Internal: the result of a blocking unary call, filled by the call's completion
 * callback on the event thread and taken by the waiting thread. Shared by both
 * transports' mim_transport_unary_sync (each waits its own way).
 */
#ifndef MIM_LIB_TRANSPORT_SYNC_RESULT_H
#define MIM_LIB_TRANSPORT_SYNC_RESULT_H

#include <momento/common.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIM_SYNC_DETAIL_LEN 512

typedef struct mim_sync_result {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* monotonic: timed waits use cmn_deadline_after_ms */
  bool done;
  mim_status status;
  char detail[MIM_SYNC_DETAIL_LEN];
  uint8_t *response; /* malloc'd copy, owned until taken */
  size_t response_len;
} mim_sync_result;

void mim_sync_result_init(mim_sync_result *r);
void mim_sync_result_destroy(mim_sync_result *r);

/* A mim_unary_cb (user = the mim_sync_result): copies the response and wakes waiters. */
void mim_sync_result_done(void *user, mim_status status, const char *detail,
                          const uint8_t *response, size_t response_len);

/* True once mim_sync_result_done ran (a predicate for mim_transport_run_until). */
bool mim_sync_result_is_done(void *user);

/* After done: moves the response out (MIM_OK; *response may be NULL when empty), or sets
 * the calling thread's error detail and returns the call's status. */
mim_status mim_sync_result_take(mim_sync_result *r, uint8_t **response, size_t *response_len);

#endif
