/* Clock helpers shared by the test programs: elapsed time, deadlines for condition
 * waits, and sleeps that survive signals. Plain POSIX; thread-safe. */
#ifndef MIM_TESTS_TEST_CLOCK_H
#define MIM_TESTS_TEST_CLOCK_H

#include "clock.h" /* cmn_mono_ms, cmn_cond_init_monotonic, cmn_deadline_after_ms */

#include <stdint.h>
#include <time.h>

/* Sleeps ms milliseconds, resuming after signals. For pacing a scenario (e.g. letting a
 * token expire), never for waiting on a result: wait on the result with a deadline. */
void test_sleep_ms(int64_t ms);

#endif
