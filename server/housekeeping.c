/* mim-local: the once-a-second housekeeping thread (see housekeeping.h). */
#include "housekeeping.h"

#include "clock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define HOUSEKEEPING_INTERVAL_MS 1000

struct housekeeping {
  store *s;
  persist *p;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping; /* under mu */
};

static void housekeeping_round(housekeeping *h) {
  store_sweep(h->s);
  if (h->p && persist_wants_compaction(h->p)) {
    store_compact(h->s, h->p);
  }
}

static void *housekeeping_thread(void *arg) {
  housekeeping *h = arg;
  pthread_mutex_lock(&h->mu);
  while (!h->stopping) {
    struct timespec until = cmn_deadline_after_ms(HOUSEKEEPING_INTERVAL_MS);
    pthread_cond_timedwait(&h->cv, &h->mu, &until);
    if (h->stopping) {
      break;
    }
    /* Not under mu: a stop request must not wait behind a whole round's locking. */
    pthread_mutex_unlock(&h->mu);
    housekeeping_round(h);
    pthread_mutex_lock(&h->mu);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

housekeeping *housekeeping_start(store *s, persist *p) {
  housekeeping *h = calloc(1, sizeof *h);
  if (!h) {
    return NULL;
  }
  h->s = s;
  h->p = p;
  pthread_mutex_init(&h->mu, NULL);
  cmn_cond_init_monotonic(&h->cv); /* the thread waits on it with a deadline */
  if (pthread_create(&h->thread, NULL, housekeeping_thread, h) != 0) {
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return NULL;
  }
  return h;
}

void housekeeping_stop(housekeeping *h) {
  if (!h) {
    return;
  }
  pthread_mutex_lock(&h->mu);
  h->stopping = true;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->thread, NULL);
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  free(h);
}
