/* A counter with a condition variable for tests: callbacks bump it, the test waits for
 * a value (monotonic clock, bounded). */
#ifndef MIM_TESTS_WAITER_H
#define MIM_TESTS_WAITER_H

#include <pthread.h>

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
} waiter;

void waiter_init(waiter *w);
void waiter_destroy(waiter *w);
void waiter_bump(waiter *w);
/* Waits until count >= target or timeout_ms passed; returns the count seen. */
int waiter_wait(waiter *w, int target, int timeout_ms);
int waiter_count(waiter *w);

#endif
