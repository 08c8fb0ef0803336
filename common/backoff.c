/* Exponential backoff with full jitter, and the splitmix64 generator behind it. */
#include "backoff.h"

#include "clock.h"

#include <sys/random.h>

void cmn_rng_seed_with(cmn_rng *rng, uint64_t seed) {
  rng->state = seed;
}

void cmn_rng_seed(cmn_rng *rng) {
  uint64_t seed;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
    /* Jitter only has to differ between clients, not be unpredictable. */
    seed = (uint64_t)cmn_wall_ms() ^ ((uint64_t)cmn_mono_ms() << 20) ^ (uint64_t)(uintptr_t)rng;
  }
  cmn_rng_seed_with(rng, seed);
}

uint64_t cmn_rng_next(cmn_rng *rng) {
  uint64_t z = (rng->state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t cmn_rng_upto(cmn_rng *rng, uint64_t bound) {
  if (bound == UINT64_MAX)
    return cmn_rng_next(rng);
  /* Rejecting the top partial block keeps every value equally likely. */
  uint64_t span = bound + 1;
  uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t v;
  do {
    v = cmn_rng_next(rng);
  } while (v >= limit);
  return v % span;
}

int64_t cmn_backoff_ceiling_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt) {
  if (base_ms <= 0 || cap_ms <= 0)
    return 0;
  if (cap_ms < base_ms)
    return cap_ms;
  int64_t d = base_ms;
  for (unsigned i = 0; i < attempt && d < cap_ms; i++)
    d = d > cap_ms / 2 ? cap_ms : d * 2;
  return d < cap_ms ? d : cap_ms;
}

int64_t cmn_backoff_full_jitter_ms(cmn_rng *rng, int64_t base_ms, int64_t cap_ms,
                                   unsigned attempt) {
  int64_t ceiling = cmn_backoff_ceiling_ms(base_ms, cap_ms, attempt);
  return (int64_t)cmn_rng_upto(rng, (uint64_t)ceiling);
}

int64_t cmn_backoff_floor_jitter_ms(cmn_rng *rng, int64_t floor_ms, int64_t cap_ms,
                                    unsigned attempt) {
  if (floor_ms <= 0)
    return cmn_backoff_full_jitter_ms(rng, 0, cap_ms, attempt);
  if (cap_ms <= floor_ms)
    return floor_ms;
  int64_t ceiling = cmn_backoff_ceiling_ms(floor_ms, cap_ms, attempt + 1);
  return floor_ms + (int64_t)cmn_rng_upto(rng, (uint64_t)(ceiling - floor_ms));
}
