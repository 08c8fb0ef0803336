/* Shared floor: retry backoff and the one small PRNG behind its jitter. Every retry
 * loop in the project (outbox sends, topic re-subscribes, token refreshes) takes its
 * delay from here, so they all follow the one documented rule:
 *   ceiling(n) = min(cap, base * 2^n)       n = 0 for the first retry
 *   delay(n)   = uniform in [0, ceiling(n)]  ("full jitter")
 * Full jitter spreads clients that failed together over the whole window instead of
 * letting them retry in step. Not thread-safe per generator: each owner keeps its own
 * cmn_rng under its own lock. */
#ifndef MIM_COMMON_BACKOFF_H
#define MIM_COMMON_BACKOFF_H

#include <stdint.h>

/* splitmix64: fast, 8 bytes of state, good enough for jitter; never for secrets. */
typedef struct cmn_rng {
  uint64_t state;
} cmn_rng;

/* Seeds from getrandom(2), or, when that fails, from the clocks and the address of rng
 * (generators in one process still differ). */
void cmn_rng_seed(cmn_rng *rng);

/* A fixed seed, for tests that need a repeatable sequence. */
void cmn_rng_seed_with(cmn_rng *rng, uint64_t seed);

uint64_t cmn_rng_next(cmn_rng *rng);

/* Uniform in [0, bound] (inclusive); bound may be UINT64_MAX. */
uint64_t cmn_rng_upto(cmn_rng *rng, uint64_t bound);

/* min(cap, base * 2^attempt) without overflow; base <= 0 gives 0, cap < base gives cap. */
int64_t cmn_backoff_ceiling_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt);

/* The full-jitter delay before retry number attempt (0 = the first retry). */
int64_t cmn_backoff_full_jitter_ms(cmn_rng *rng, int64_t base_ms, int64_t cap_ms, unsigned attempt);

/* A delay that never goes below floor_ms, for a server that asked us to slow down
 * (throttling): uniform in [floor, ceiling], ceiling = min(cap, floor * 2^(attempt+1)),
 * so the window doubles per retry while every retry still waits at least floor_ms. */
int64_t cmn_backoff_floor_jitter_ms(cmn_rng *rng, int64_t floor_ms, int64_t cap_ms,
                                    unsigned attempt);

#endif
