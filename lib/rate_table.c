/* Per-sender token buckets: see rate_table.h. A linear scan: relayed signals are few
 * (a legitimate member sends under one a second) and the table is bounded. */
#include "rate_table.h"

#include <stdlib.h>
#include <string.h>

struct mim_rate_entry {
  char key[MIM_RATE_KEY_MAX + 1];
  double tokens;
  int64_t at_ms; /* last refill */
};

void mim_rate_table_init(mim_rate_table *t, double per_second, double burst) {
  memset(t, 0, sizeof *t);
  t->per_second = per_second;
  t->burst = burst;
}

void mim_rate_table_free(mim_rate_table *t) {
  free(t->entries);
  t->entries = NULL;
  t->count = 0;
}

/* key's entry, a new one (full bucket), or NULL when out of memory. */
static mim_rate_entry *entry_for(mim_rate_table *t, const char *key, int64_t now_ms) {
  mim_rate_entry *oldest = NULL;
  for (size_t i = 0; i < t->count; i++) {
    mim_rate_entry *e = &t->entries[i];
    if (strncmp(e->key, key, MIM_RATE_KEY_MAX) == 0)
      return e;
    if (!oldest || e->at_ms < oldest->at_ms)
      oldest = e;
  }
  if (!t->entries && !(t->entries = calloc(MIM_RATE_TABLE_MAX, sizeof *t->entries)))
    return NULL;
  mim_rate_entry *e = t->count < MIM_RATE_TABLE_MAX ? &t->entries[t->count++] : oldest;
  strncpy(e->key, key, MIM_RATE_KEY_MAX);
  e->key[MIM_RATE_KEY_MAX] = '\0';
  e->tokens = t->burst;
  e->at_ms = now_ms;
  return e;
}

bool mim_rate_table_take(mim_rate_table *t, const char *key, int64_t now_ms) {
  mim_rate_entry *e = entry_for(t, key, now_ms);
  if (!e)
    return true;
  if (now_ms > e->at_ms) {
    e->tokens += (double)(now_ms - e->at_ms) * t->per_second / 1000.0;
    e->tokens = e->tokens > t->burst ? t->burst : e->tokens;
    e->at_ms = now_ms;
  }
  if (e->tokens < 1.0)
    return false;
  e->tokens -= 1.0;
  return true;
}
