/* Internal (library, mim-local, tests, bench): the CLOCK_REALTIME instant ms from now, the
 * absolute form pthread_cond_timedwait takes. */
#ifndef MIM_LIB_ABS_TIME_H
#define MIM_LIB_ABS_TIME_H

#include <stdint.h>
#include <time.h>

static inline struct timespec mim_abs_time_after_ms(int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

#endif
