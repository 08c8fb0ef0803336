/* mim-local: pubsub's persisted state per topic, kept for --data-dir: the page and the
 * first sequence number to use after a restart, and the replay ring a clean stop left
 * for the topic's next incarnation. Filled from REC_TOPIC / REC_RING records at start,
 * updated as pubsub reserves sequence blocks, written into every snapshot.
 *
 * Not thread-safe: persist.c owns the one table and guards it with its mutex, so a
 * topic record and the table entry change together (and a cache deletion's record
 * drops its topics atomically). */
#ifndef MIM_SERVER_TOPIC_STATE_H
#define MIM_SERVER_TOPIC_STATE_H

#include "bytes.h"
#include "record.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct topic_states {
  srv_hmap map; /* "cache\0topic" -> entry */
} topic_states;

/* Writes the table key of a topic, "cache\0topic", into out; its length, or 0 if it
 * does not fit in cap bytes. pubsub's own topic table uses the same keys. */
size_t topic_state_key(char *out, size_t cap, const char *cache, const char *topic);

/* Called with each item of a kept ring, oldest first. */
typedef void (*topic_ring_fn)(void *ctx, uint64_t seq, st_bytes msg);

void topic_states_init(topic_states *ts);
void topic_states_destroy(topic_states *ts);
size_t topic_states_count(const topic_states *ts);

/* false when out of memory or the names are too long for a key. */
bool topic_states_set(topic_states *ts, const char *cache, const char *topic, uint64_t page,
                      uint64_t next_seq);
bool topic_states_get(topic_states *ts, const char *cache, const char *topic, uint64_t *page,
                      uint64_t *next_seq);
/* Forgets every topic of a deleted cache. */
void topic_states_drop_cache(topic_states *ts, const char *cache);

/* Keeps a copy of a ring body (u32 n, n x (u64 seq, bytes)) for a topic that has a
 * state. A ring for an unknown topic is ignored (true); false for a malformed body or
 * out of memory. */
bool topic_states_keep_ring(topic_states *ts, const char *cache, const char *topic,
                            const uint8_t *body, size_t len);
/* Hands a kept ring to fn, oldest first, if it ends at last_seq (else drops it); the
 * copy here is freed either way. */
void topic_states_take_ring(topic_states *ts, const char *cache, const char *topic,
                            uint64_t last_seq, topic_ring_fn fn, void *ctx);

/* Appends a sealed REC_TOPIC record. */
void topic_states_put_record(rec_buf *b, const char *cache, const char *topic, uint64_t page,
                             uint64_t next_seq);
/* Appends every topic's REC_TOPIC record, and its REC_RING record if it has a ring. */
void topic_states_snapshot(topic_states *ts, rec_buf *out);

#endif
