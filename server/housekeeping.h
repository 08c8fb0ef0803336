/* mim-local: housekeeping on its own timer thread, about once a second: expired lists
 * are swept out of the store and, with --data-dir, the log is compacted into a snapshot
 * once it outgrew its threshold (or a failed compaction left it refusing writes).
 * Kept off pubsub's heartbeat thread, so a long compaction (the store held exclusively)
 * never delays heartbeats. */
#ifndef MIM_SERVER_HOUSEKEEPING_H
#define MIM_SERVER_HOUSEKEEPING_H

#include "persist.h"
#include "store.h"

typedef struct housekeeping housekeeping;

/* Starts the thread; p may be NULL (memory only). NULL if it could not start. */
housekeeping *housekeeping_start(store *s, persist *p);
/* Wakes and joins the thread (a round under way finishes first) and frees h. Call
 * before s or p is freed. NULL: no-op. */
void housekeeping_stop(housekeeping *h);

#endif
