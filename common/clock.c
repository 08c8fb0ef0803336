/* Clocks and condition-wait deadlines (see clock.h for why everything waits on
 * CLOCK_MONOTONIC). */
#include "clock.h"

static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cmn_mono_ms(void) {
  return clock_ms(CLOCK_MONOTONIC);
}

int64_t cmn_wall_ms(void) {
  return clock_ms(CLOCK_REALTIME);
}

int cmn_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  int rc = pthread_condattr_init(&attr);
  if (rc != 0)
    return rc;
  rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
  return rc;
}

struct timespec cmn_deadline_after_ms(int64_t ms) {
  if (ms < 0)
    ms = 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}
