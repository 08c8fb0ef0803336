/* Clock helpers shared by the test programs: elapsed time, deadlines for condition
 * waits, and sleeps that survive signals. Plain POSIX; thread-safe. */
#ifndef MIM_TESTS_TEST_CLOCK_H
#define MIM_TESTS_TEST_CLOCK_H

#include "abs_time.h" /* mim_abs_time_after_ms: deadlines for condition waits */

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: for measuring elapsed time and bounding loops. */
int64_t test_mono_ms(void);

/* Sleeps ms milliseconds, resuming after signals. For pacing a scenario (e.g. letting a
 * token expire), never for waiting on a result: wait on the result with a deadline. */
void test_sleep_ms(int64_t ms);

#endif
