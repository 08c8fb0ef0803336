/* Shared floor (library, mim-local, tests, bench): the clocks and the deadlines of timed
 * condition waits. Every pthread_cond_timedwait in the project waits on CLOCK_MONOTONIC,
 * so a wall-clock step (NTP, a suspended VM) neither cuts a wait short nor stretches it:
 * a condition variable that is waited on with a deadline is created with
 * cmn_cond_init_monotonic and given deadlines from cmn_deadline_after_ms. */
#ifndef MIM_COMMON_CLOCK_H
#define MIM_COMMON_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: for elapsed time, timers and expiries. */
int64_t cmn_mono_ms(void);

/* CLOCK_REALTIME in milliseconds since the epoch: for timestamps other hosts read. */
int64_t cmn_wall_ms(void);

/* pthread_cond_init with a CLOCK_MONOTONIC attribute; 0 or the pthread error number. */
int cmn_cond_init_monotonic(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC instant ms from now (ms < 0 counts as 0), in the absolute form
 * pthread_cond_timedwait takes for a cv made by cmn_cond_init_monotonic. */
struct timespec cmn_deadline_after_ms(int64_t ms);

#endif
