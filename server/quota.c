/* mim-local: token buckets per cache for hosted Momento's rate limits. */
#include "quota.h"

#include "clock.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QUOTA_MAX_NAMESPACES 1024
/* Tokens are kept in thousandths so that a refill of a few ms at a low rate counts. */
#define MILLI 1000

typedef struct bucket {
  int64_t milli;   /* may go negative: debt from a call that cost more than was left */
  int64_t last_ms; /* last refill (monotonic); 0 = never used, starts full */
} bucket;

struct quota_ns {
  pthread_mutex_t mu;
  bucket b[QUOTA_NBUCKETS];
  uint64_t subs;
};

struct quota {
  quota_config cfg;
  uint64_t rate[QUOTA_NBUCKETS];
  pthread_rwlock_t lock;
  srv_hmap names; /* cache name -> quota_ns */
  quota_ns overflow;
};

static void ns_init(quota_ns *ns) {
  memset(ns, 0, sizeof *ns);
  pthread_mutex_init(&ns->mu, NULL);
}

static void ns_free(void *p) {
  quota_ns *ns = p;
  pthread_mutex_destroy(&ns->mu);
  free(ns);
}

quota *quota_new(const quota_config *cfg, bool *failed) {
  *failed = false;
  if (!cfg->cache_ops_per_s && !cfg->cache_bytes_per_s && !cfg->topic_ops_per_s &&
      !cfg->topic_subscriptions) {
    return NULL;
  }
  quota *q = calloc(1, sizeof *q);
  if (!q) {
    *failed = true;
    return NULL;
  }
  q->cfg = *cfg;
  q->rate[QUOTA_CACHE_OPS] = cfg->cache_ops_per_s;
  q->rate[QUOTA_CACHE_BYTES] = cfg->cache_bytes_per_s;
  q->rate[QUOTA_TOPIC_OPS] = cfg->topic_ops_per_s;
  pthread_rwlock_init(&q->lock, NULL);
  srv_hmap_init(&q->names);
  ns_init(&q->overflow);
  return q;
}

void quota_free(quota *q) {
  if (!q) {
    return;
  }
  srv_hmap_destroy(&q->names, ns_free);
  pthread_mutex_destroy(&q->overflow.mu);
  pthread_rwlock_destroy(&q->lock);
  free(q);
}

quota_ns *quota_ns_get(quota *q, const char *cache) {
  if (!q) {
    return NULL;
  }
  size_t len = strlen(cache);
  pthread_rwlock_rdlock(&q->lock);
  quota_ns *ns = srv_hmap_get(&q->names, cache, len);
  pthread_rwlock_unlock(&q->lock);
  if (ns) {
    return ns;
  }
  pthread_rwlock_wrlock(&q->lock);
  ns = srv_hmap_get(&q->names, cache, len); /* another thread may have added it */
  if (!ns && q->names.count < QUOTA_MAX_NAMESPACES && (ns = malloc(sizeof *ns)) != NULL) {
    ns_init(ns);
    if (!srv_hmap_put(&q->names, cache, len, ns)) {
      ns_free(ns);
      ns = NULL;
    }
  }
  pthread_rwlock_unlock(&q->lock);
  return ns ? ns : &q->overflow;
}

/* Brings the bucket up to now: rate tokens per second, capped at one second's worth. */
static void refill(bucket *b, uint64_t rate, int64_t now) {
  int64_t cap = (int64_t)rate * MILLI;
  if (b->last_ms == 0) {
    b->milli = cap;
  } else {
    /* Only as long as it takes to fill up (debt included), so the product stays small. */
    int64_t to_full = (cap - b->milli) / (int64_t)rate + 1;
    int64_t elapsed = now - b->last_ms;
    elapsed = elapsed < 0 ? 0 : (elapsed > to_full ? to_full : elapsed);
    b->milli += elapsed * (int64_t)rate;
    b->milli = b->milli > cap ? cap : b->milli;
  }
  b->last_ms = now;
}

/* test: refuse when the bucket holds less than one unit; charge: take amount (after the test
 * passed). */
static bool bucket_op(quota *q, quota_ns *ns, quota_bucket which, bool test, bool charge,
                      uint64_t amount) {
  uint64_t rate = q ? q->rate[which] : 0;
  if (!rate || !ns) {
    return true;
  }
  int64_t now = cmn_mono_ms();
  now = now > 0 ? now : 1;
  pthread_mutex_lock(&ns->mu);
  bucket *b = &ns->b[which];
  refill(b, rate, now);
  bool ok = !test || b->milli >= MILLI;
  if (ok && charge) {
    uint64_t cap = amount > (uint64_t)INT32_MAX ? (uint64_t)INT32_MAX : amount;
    b->milli -= (int64_t)cap * MILLI;
  }
  pthread_mutex_unlock(&ns->mu);
  return ok;
}

bool quota_admit(quota *q, quota_ns *ns, quota_bucket b) {
  return bucket_op(q, ns, b, true, false, 0);
}

void quota_charge(quota *q, quota_ns *ns, quota_bucket b, uint64_t amount) {
  bucket_op(q, ns, b, false, true, amount);
}

bool quota_sub_acquire(quota *q, quota_ns *ns) {
  if (!q || !ns || !q->cfg.topic_subscriptions) {
    return true;
  }
  pthread_mutex_lock(&ns->mu);
  bool ok = ns->subs < q->cfg.topic_subscriptions;
  ns->subs += ok;
  pthread_mutex_unlock(&ns->mu);
  return ok;
}

void quota_sub_release(void *arg) {
  quota_ns *ns = arg;
  pthread_mutex_lock(&ns->mu);
  ns->subs -= ns->subs > 0;
  pthread_mutex_unlock(&ns->mu);
}

uint64_t quota_limit(const quota *q, quota_bucket b) {
  return q ? q->rate[b] : 0;
}

uint64_t quota_sub_limit(const quota *q) {
  return q ? q->cfg.topic_subscriptions : 0;
}

uint64_t quota_element_ops(uint64_t n) {
  return n <= 2 ? 1 : (n + 1) / 2;
}
