/* mim-local: start-up with --data-dir. Opens the data directory, replays its snapshot
 * and log into the store and into pubsub's topic state (kept by persist until each
 * topic is first used), then compacts at once. The only module that knows both the
 * store and the record format: persistence itself knows no store, the store knows no
 * records. */
#ifndef MIM_SERVER_RECOVERY_H
#define MIM_SERVER_RECOVERY_H

#include "persist.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

/* s must not record yet (no store_set_persist): replayed changes are already on disk.
 * NULL on error (logged), including damaged files without recover (--recover: keep a
 * copy of them and load every intact record; see persist_replay). */
persist *recovery_open(const char *dir, persist_fsync mode, uint64_t compact_bytes, bool recover,
                       store *s);

#endif
