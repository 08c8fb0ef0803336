/* How much slower than a plain build the current test run is expected to be. */
#ifndef MIM_TESTS_TIME_SCALE_H
#define MIM_TESTS_TIME_SCALE_H

/* $MIM_TEST_TIME_SCALE if set (a positive integer), else 3 in sanitizer builds ($SANITIZE,
 * set by tests/run-all.sh) and valgrind runs ($MIM_TEST_SLOW), else 1. Multiply deadlines
 * and waits by it, never what a test checks. Plain libc. */
int test_time_scale(void);

#endif
