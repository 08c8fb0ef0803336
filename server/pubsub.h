/* mim-local: topics with sequence numbers, pages, a replay ring, subscribers with
 * bounded queues, and a heartbeat thread.
 *
 * Locking: a reader-writer lock over the topic table (shared on the publish path,
 * exclusive only to create or drop topics), one mutex per topic (sequence, ring and
 * its subscriber list), one mutex over the list of all subscribers (heartbeats), and
 * each stream's own lock inside rpc.c. Order: topic -> all-subscribers -> stream. */
#ifndef MIM_SERVER_PUBSUB_H
#define MIM_SERVER_PUBSUB_H

#include "cachepubsub.pb-c.h"
#include "rpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pubsub pubsub;

typedef struct pubsub_config {
  size_t replay;          /* items kept per topic for resume */
  size_t replay_bytes;    /* ... and at most this many payload bytes */
  size_t max_queue;       /* items queued per subscriber before it overflows */
  size_t max_queue_bytes; /* ... or bytes queued */
  size_t max_subscribers; /* per topic */
  int heartbeat_ms;
  /* Whether a cache still exists (NULL: always); checked under the topic lock so a
   * topic created while its cache was being deleted does not outlive it. */
  bool (*cache_exists)(void *arg, const char *cache);
  void *cache_arg;
  /* --data-dir (NULL: memory only): topics resume their page and sequence numbers. */
  struct persist *persist;
} pubsub_config;

/* PS_UNRECORDED: --data-dir could not record the topic's sequence state; not published. */
typedef enum { PS_OK = 0, PS_TOO_MANY, PS_GONE, PS_NOMEM, PS_UNRECORDED } ps_result;

/* Starts the heartbeat thread. */
pubsub *pubsub_new(const pubsub_config *cfg);
/* Publishes to cache/topic (the caller checked auth and that the cache exists).
 * *delivered gets the number of subscribers it was queued for (0 unless PS_OK). */
ps_result pubsub_publish(pubsub *ps, const char *cache, const char *topic,
                         const CacheClient__Pubsub__TopicValue *value, const char *publisher_id,
                         size_t *delivered);
/* Turns call into a subscription stream; on PS_OK the stream is owned here. On other
 * results the caller fails the call. token_expires (epoch seconds, 0 = never) is when
 * the subscriber's token ends: from then on nothing more is delivered, and within one
 * heartbeat-thread tick (at most 250 ms) the stream ends with UNAUTHENTICATED. */
ps_result pubsub_subscribe(pubsub *ps, srv_call *call, const char *cache, const char *topic,
                           uint64_t resume_at, uint64_t page, uint64_t token_expires);
/* The same; on PS_OK, on_end(end_arg) runs exactly once when the subscription is over
 * (its stream ended and the server let go of it), on any thread. On other results it
 * never runs. on_end may be NULL. */
ps_result pubsub_subscribe_ex(pubsub *ps, srv_call *call, const char *cache, const char *topic,
                              uint64_t resume_at, uint64_t page, uint64_t token_expires,
                              void (*on_end)(void *arg), void *end_arg);
/* Resets every topic of a deleted cache; their subscribers' streams end (NOT_FOUND). */
void pubsub_drop_cache(pubsub *ps, const char *cache);
/* Ends every open subscription stream with this status, keeping topics, sequence
 * numbers, pages and replay rings (used by SIGUSR1 to test client resume). */
void pubsub_end_streams(pubsub *ps, grpc_status_code code, const char *msg);
/* Records every topic's exact next sequence number (clean shutdown, after the rpc layer
 * stopped), so a restart continues without a gap. No-op without persistence. */
void pubsub_persist_topics(pubsub *ps);
/* Stops the heartbeat thread and ends every stream (UNAVAILABLE); a subscription that
 * arrives afterwards is ended the same way before anything is sent on it. */
void pubsub_shutdown(pubsub *ps);
/* Frees everything; after pubsub_shutdown and after the rpc layer drained. */
void pubsub_free(pubsub *ps);

#endif
