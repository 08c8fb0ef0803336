/* Timing allowance for slow (instrumented) test runs; see time_scale.h. */
#include "time_scale.h"

#include <stdlib.h>

int test_time_scale(void) {
  const char *v = getenv("MIM_TEST_TIME_SCALE");
  int n = v ? atoi(v) : 0;
  if (n > 0)
    return n;
  const char *san = getenv("SANITIZE");
  const char *slow = getenv("MIM_TEST_SLOW");
  return (san && *san) || (slow && *slow) ? 3 : 1;
}
