/* See waiter.h. */
#include "waiter.h"

#include "clock.h"

#include <errno.h>

void waiter_init(waiter *w) {
  pthread_mutex_init(&w->mu, NULL);
  cmn_cond_init_monotonic(&w->cv);
  w->count = 0;
}

void waiter_destroy(waiter *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

void waiter_bump(waiter *w) {
  pthread_mutex_lock(&w->mu);
  w->count++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

int waiter_wait(waiter *w, int target, int timeout_ms) {
  struct timespec until = cmn_deadline_after_ms(timeout_ms);
  pthread_mutex_lock(&w->mu);
  while (w->count < target) {
    if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
      break;
  }
  int n = w->count;
  pthread_mutex_unlock(&w->mu);
  return n;
}

int waiter_count(waiter *w) {
  pthread_mutex_lock(&w->mu);
  int n = w->count;
  pthread_mutex_unlock(&w->mu);
  return n;
}
