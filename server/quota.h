/* mim-local: hosted Momento's soft limits (rate limits), off unless configured.
 * Per cache (a topic namespace is its cache): data-plane operations per second, value
 * bytes per second, topic operations per second (publishes and deliveries), and
 * concurrent subscriptions. Each rate is a token bucket holding one second's worth
 * (the burst), refilled continuously. A call is admitted while its bucket holds at least
 * one unit (one operation, one byte); what it costs is taken afterwards (a ListFetch costs what it
 * returned), so a big call can leave the bucket in debt that the following calls wait out.
 *
 * Thread-safe: a reader-writer lock over the table of caches (exclusive only to add
 * one) and one small mutex per cache; every function is O(1). */
#ifndef MIM_SERVER_QUOTA_H
#define MIM_SERVER_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

typedef struct quota quota;
typedef struct quota_ns quota_ns;

/* 0 turns a limit off. */
typedef struct quota_config {
  uint64_t cache_ops_per_s;
  uint64_t cache_bytes_per_s;
  uint64_t topic_ops_per_s;
  uint64_t topic_subscriptions;
} quota_config;

typedef enum {
  QUOTA_CACHE_OPS = 0,
  QUOTA_CACHE_BYTES,
  QUOTA_TOPIC_OPS,
  QUOTA_NBUCKETS
} quota_bucket;

/* NULL when every limit is off (then every function below accepts a NULL quota and
 * admits everything) or on allocation failure (*failed set). */
quota *quota_new(const quota_config *cfg, bool *failed);
void quota_free(quota *q);

/* The per-cache state (created on first use); NULL when q is NULL. Stable until
 * quota_free. Beyond QUOTA_MAX_NAMESPACES names, the rest share one entry, so the table
 * stays bounded whatever names callers invent. */
quota_ns *quota_ns_get(quota *q, const char *cache);
/* False when bucket b of ns holds less than one unit (the call is to be refused). Off:
 * always true. */
bool quota_admit(quota *q, quota_ns *ns, quota_bucket b);
/* Takes amount (operations or bytes) from bucket b; never refuses. */
void quota_charge(quota *q, quota_ns *ns, quota_bucket b, uint64_t amount);
/* Counts one more concurrent subscription; false (nothing counted) at the limit. */
bool quota_sub_acquire(quota *q, quota_ns *ns);
/* Counts one subscription less (ns is a quota_ns; shaped as a callback for
 * pubsub_subscribe_ex). Only after an acquire that returned true with the limit on. */
void quota_sub_release(void *ns);
/* The configured value of bucket b's limit (for messages). */
uint64_t quota_limit(const quota *q, quota_bucket b);
uint64_t quota_sub_limit(const quota *q);

/* Momento's cost of a call that moves n elements: ceil(n / 2), at least 1. */
uint64_t quota_element_ops(uint64_t n);

#endif
