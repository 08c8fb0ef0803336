/* Internal: per-sender rate limits (token buckets keyed by a string), bounded: the
 * moderator drops signals of a publisher that sends more than its share, so a client
 * cannot make it flood a chat's topic. Pure (the caller passes the clock); not
 * thread-safe. */
#ifndef MIM_LIB_RATE_TABLE_H
#define MIM_LIB_RATE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys tracked at most: past that, the key idle the longest is forgotten (it starts
 * again with a full bucket). */
#define MIM_RATE_TABLE_MAX 1024u
#define MIM_RATE_KEY_MAX 128u /* longer keys are cut (token ids are shorter) */

typedef struct mim_rate_entry mim_rate_entry;
typedef struct mim_rate_table {
  mim_rate_entry *entries;
  size_t count;
  double per_second; /* refill rate */
  double burst;      /* bucket size */
} mim_rate_table;

void mim_rate_table_init(mim_rate_table *t, double per_second, double burst);
void mim_rate_table_free(mim_rate_table *t);

/* Takes one token of key at now_ms (monotonic): true when allowed. Out of memory:
 * allowed (a limiter must not lose the chat's signals). */
bool mim_rate_table_take(mim_rate_table *t, const char *key, int64_t now_ms);

#endif
