/* The result slot of a blocking unary call (see sync_result.h). */
#include "transport/sync_result.h"

#include "clock.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mim_sync_result_init(mim_sync_result *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  cmn_cond_init_monotonic(&r->cv);
}

void mim_sync_result_destroy(mim_sync_result *r) {
  free(r->response); /* not taken: the caller gave up on it */
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

void mim_sync_result_done(void *user, mim_status status, const char *detail,
                          const uint8_t *response, size_t response_len) {
  mim_sync_result *r = user;
  uint8_t *copy = NULL;
  if (status == MIM_OK && response_len) {
    copy = malloc(response_len);
    if (copy)
      memcpy(copy, response, response_len);
    else
      status = MIM_ERR_NO_MEMORY, detail = "out of memory copying the response";
  }
  pthread_mutex_lock(&r->mu);
  r->status = status;
  snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
  r->response = copy;
  r->response_len = copy ? response_len : 0;
  r->done = true;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

bool mim_sync_result_is_done(void *user) {
  mim_sync_result *r = user;
  pthread_mutex_lock(&r->mu);
  bool done = r->done;
  pthread_mutex_unlock(&r->mu);
  return done;
}

mim_status mim_sync_result_take(mim_sync_result *r, uint8_t **response, size_t *response_len) {
  if (r->status != MIM_OK)
    return mim_fail_with_detail(r->status, r->detail[0] ? r->detail : mim_strerror(r->status));
  *response = r->response;
  *response_len = r->response_len;
  r->response = NULL;
  r->response_len = 0;
  return MIM_OK;
}
