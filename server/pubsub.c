/* mim-local: topics and subscriptions. A published item is serialized once into a
 * reference-counted slice shared by the replay ring and every subscriber queue. */
#include "pubsub.h"

#include "clock.h"
#include "persist.h"
#include "topic_state.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sub sub;

typedef struct ring_item {
  uint64_t seq;
  grpc_slice msg;
} ring_item;

typedef struct topic {
  atomic_int refs;
  pthread_mutex_t mu;
  uint64_t page;
  uint64_t last_seq; /* 0 = nothing published yet */
  uint64_t reserved; /* --data-dir: sequence numbers below this are on record */
  ring_item *ring;   /* holds seqs (last_seq - ring_len, last_seq] */
  size_t ring_cap, ring_len, ring_head;
  size_t ring_max;       /* the ring grows on demand up to this (--replay) */
  size_t ring_bytes;     /* payload bytes held by the ring */
  size_t ring_max_bytes; /* oldest items are evicted beyond this */
  sub **subs;
  size_t nsubs, subs_cap;
  atomic_bool dead; /* its cache was deleted: no more publishes or subscribers; the
                     * table entry is replaced on the next lookup */
} topic;

struct sub {
  atomic_int refs; /* one for membership, one for the stream close callback */
  atomic_bool detached;
  atomic_llong last_sent_ms;
  int64_t expires_ms; /* wall clock: its token's expiry (INT64_MAX: none); the stream
                       * then ends UNAUTHENTICATED and gets nothing more */
  pubsub *ps;
  topic *t;
  srv_call *call;
  sub *prev, *next;          /* list of all subscribers (heartbeats, shutdown) */
  void (*on_end)(void *arg); /* run when the last reference goes (may be NULL) */
  void *end_arg;
};

struct pubsub {
  pubsub_config cfg;
  pthread_rwlock_t lock;
  srv_hmap topics; /* "cache\0topic" -> topic */
  pthread_mutex_t subs_mu;
  sub *subs;
  size_t nsubs;
  bool closed; /* under subs_mu: shutting down, no new subscriber is linked */
  grpc_slice heartbeat;
  pthread_t thread;
  pthread_mutex_t tick_mu;
  pthread_cond_t tick_cv;
  bool stopping, thread_started;
};

/* ---- topics ---- */

static void topic_unref(topic *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) {
    return;
  }
  for (size_t i = 0; i < t->ring_len; i++) {
    grpc_slice_unref(t->ring[(t->ring_head + i) % t->ring_cap].msg);
  }
  free(t->ring);
  free(t->subs);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

static void topic_unref_void(void *t) {
  topic_unref(t);
}

static topic *topic_new(size_t replay, size_t replay_bytes) {
  topic *t = calloc(1, sizeof *t);
  if (!t) {
    return NULL;
  }
  /* Rings start small: most topics (one per chat) never hold many messages. */
  t->ring_max = replay ? replay : 1;
  t->ring_max_bytes = replay_bytes;
  t->ring_cap = t->ring_max < 16 ? t->ring_max : 16;
  t->ring = calloc(t->ring_cap, sizeof *t->ring);
  if (!t->ring) {
    free(t);
    return NULL;
  }
  atomic_init(&t->refs, 1); /* the table's reference */
  pthread_mutex_init(&t->mu, NULL);
  t->page = srv_random_page();
  return t;
}

static void ring_push_locked(topic *t, uint64_t seq, grpc_slice msg);

/* --data-dir: a ring kept at the last clean stop goes back into the new topic. */
static void restore_ring_item(void *ctx, uint64_t seq, st_bytes msg) {
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg.data, msg.len);
  ring_push_locked(ctx, seq, s);
  grpc_slice_unref(s);
}

/* Finds or creates the topic and returns it with a reference (NULL on OOM). */
static topic *topic_get(pubsub *ps, const char *cache, const char *name) {
  char key[1024];
  size_t klen = topic_state_key(key, sizeof key, cache, name);
  if (klen == 0) {
    return NULL;
  }
  pthread_rwlock_rdlock(&ps->lock);
  topic *t = srv_hmap_get(&ps->topics, key, klen);
  if (t && !atomic_load(&t->dead)) {
    atomic_fetch_add(&t->refs, 1);
  } else {
    t = NULL;
  }
  pthread_rwlock_unlock(&ps->lock);
  if (t) {
    return t;
  }
  pthread_rwlock_wrlock(&ps->lock);
  t = srv_hmap_get(&ps->topics, key, klen);
  if (t && atomic_load(&t->dead)) {
    topic_unref(srv_hmap_remove(&ps->topics, key, klen)); /* a new incarnation follows */
    t = NULL;
  }
  if (!t) {
    t = topic_new(ps->cfg.replay, ps->cfg.replay_bytes);
    uint64_t page, next;
    if (t && ps->cfg.persist && persist_topic_get(ps->cfg.persist, cache, name, &page, &next)) {
      t->page = page; /* the incarnation survives a restart */
      t->last_seq = next - 1;
      t->reserved = next;
      persist_topic_take_ring(ps->cfg.persist, cache, name, t->last_seq, restore_ring_item, t);
    }
    if (t && !srv_hmap_put(&ps->topics, key, klen, t)) {
      topic_unref(t);
      t = NULL;
    }
  }
  if (t) {
    atomic_fetch_add(&t->refs, 1);
  }
  pthread_rwlock_unlock(&ps->lock);
  return t;
}

/* Doubles the ring (up to ring_max), keeping its order; false if it cannot grow. */
static bool ring_grow_locked(topic *t) {
  if (t->ring_cap >= t->ring_max) {
    return false;
  }
  size_t cap = t->ring_cap * 2 < t->ring_max ? t->ring_cap * 2 : t->ring_max;
  ring_item *nr = malloc(cap * sizeof *nr);
  if (!nr) {
    return false;
  }
  for (size_t i = 0; i < t->ring_len; i++) {
    nr[i] = t->ring[(t->ring_head + i) % t->ring_cap];
  }
  free(t->ring);
  t->ring = nr;
  t->ring_cap = cap;
  t->ring_head = 0;
  return true;
}

static void ring_evict_locked(topic *t) {
  grpc_slice old = t->ring[t->ring_head].msg;
  t->ring_bytes -= GRPC_SLICE_LENGTH(old);
  grpc_slice_unref(old);
  t->ring_head = (t->ring_head + 1) % t->ring_cap;
  t->ring_len--;
}

/* Appends an item, evicting the oldest ones beyond the count or byte limits (the
 * newest item is always kept). */
static void ring_push_locked(topic *t, uint64_t seq, grpc_slice msg) {
  if (t->ring_cap == 0) {
    return; /* never: topic_new sizes the ring to at least one slot */
  }
  size_t n = GRPC_SLICE_LENGTH(msg);
  while (t->ring_len > 0 && t->ring_bytes + n > t->ring_max_bytes) {
    ring_evict_locked(t);
  }
  if (t->ring_len == t->ring_cap && !ring_grow_locked(t)) {
    ring_evict_locked(t);
  }
  t->ring[(t->ring_head + t->ring_len) % t->ring_cap] = (ring_item){seq, grpc_slice_ref(msg)};
  t->ring_len++;
  t->ring_bytes += n;
}

/* ---- subscribers ---- */

static void sub_unref(sub *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) {
    return;
  }
  srv_call_unref(s->call);
  topic_unref(s->t);
  if (s->on_end) {
    s->on_end(s->end_arg);
  }
  free(s);
}

static void send_item(sub *s, grpc_slice msg, uint64_t seq) {
  srv_stream_send(s->call, msg, seq);
  atomic_store(&s->last_sent_ms, cmn_mono_ms());
}

static void send_discontinuity(sub *s, uint64_t last, uint64_t next, uint64_t page) {
  CacheClient__Pubsub__Discontinuity d = CACHE_CLIENT__PUBSUB____DISCONTINUITY__INIT;
  d.last_topic_sequence = last;
  d.new_topic_sequence = next;
  d.new_sequence_page = page;
  CacheClient__Pubsub__SubscriptionItem it = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__INIT;
  it.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_DISCONTINUITY;
  it.discontinuity = &d;
  grpc_slice msg = srv_pack_slice(&it.base);
  /* Tagged with the first sequence it reports lost: if an overflow drops it before it
   * went out, the replacement discontinuity still starts from there. */
  send_item(s, msg, last + 1);
  grpc_slice_unref(msg);
}

static void unlink_sub(pubsub *ps, sub *s) {
  pthread_mutex_lock(&ps->subs_mu);
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    ps->subs = s->next;
  }
  if (s->next) {
    s->next->prev = s->prev;
  }
  ps->nsubs--;
  pthread_mutex_unlock(&ps->subs_mu);
}

/* Removes s from its topic and from the list of all subscribers, then ends its stream.
 * Only the first caller does anything; it drops the membership reference. */
static void sub_detach(sub *s, grpc_status_code code, const char *msg) {
  if (atomic_exchange(&s->detached, true)) {
    return;
  }
  topic *t = s->t;
  pthread_mutex_lock(&t->mu);
  for (size_t i = 0; i < t->nsubs; i++) {
    if (t->subs[i] == s) {
      t->subs[i] = t->subs[--t->nsubs];
      break;
    }
  }
  pthread_mutex_unlock(&t->mu);
  unlink_sub(s->ps, s);
  srv_stream_finish(s->call, code, msg, true);
  sub_unref(s);
}

/* Stream close callback (client cancelled, connection lost, or status sent). */
static void sub_on_close(void *user) {
  sub *s = user;
  sub_detach(s, GRPC_STATUS_CANCELLED, "subscription closed");
  sub_unref(s);
}

/* Queues one live item (the caller kicks the stream when this returns true); on queue
 * overflow the queued items (not the one already handed to gRPC) are dropped and a
 * discontinuity {last = the last seq the client will have received, new = seq - 1
 * (positioned just before this item), page} tells it which sequence numbers it lost.
 * Memory per subscriber stays bounded. */
static bool deliver_locked(pubsub *ps, topic *t, sub *s, uint64_t seq, grpc_slice msg,
                           int64_t now_ms, int64_t wall_ms) {
  if (wall_ms >= s->expires_ms) {
    return false; /* its token has expired: the heartbeat thread ends the stream */
  }
  size_t bytes = 0;
  size_t n = srv_stream_pending(s->call, &bytes);
  if (n >= ps->cfg.max_queue || bytes + GRPC_SLICE_LENGTH(msg) > ps->cfg.max_queue_bytes) {
    uint64_t first_dropped = srv_stream_drop_pending(s->call);
    uint64_t last_ok = first_dropped ? first_dropped - 1 : seq - 1;
    srv_log(LOG_WARN, "slow subscriber overflowed its queue; dropped items after seq %llu",
            (unsigned long long)last_ok);
    send_discontinuity(s, last_ok, seq - 1, t->page);
  }
  bool kick = false;
  srv_stream_enqueue(s->call, msg, seq, &kick);
  atomic_store(&s->last_sent_ms, now_ms);
  return kick;
}

/* Fans an item out under the topic lock, but starts the idle streams' writes (the
 * costly gRPC part) only after the lock is released: other publishers to the topic
 * wait for the queueing alone. */
static void fan_out(pubsub *ps, topic *t, uint64_t seq, grpc_slice msg) {
  srv_call **kick = t->nsubs ? malloc(t->nsubs * sizeof *kick) : NULL;
  size_t nkick = 0;
  /* Clock reads once per publish, not per subscriber. */
  int64_t now_ms = cmn_mono_ms(), wall_ms = cmn_wall_ms();
  for (size_t i = 0; i < t->nsubs; i++) {
    srv_call *call = t->subs[i]->call;
    if (deliver_locked(ps, t, t->subs[i], seq, msg, now_ms, wall_ms)) {
      if (kick) {
        srv_call_ref(call);
        kick[nkick++] = call;
      } else {
        srv_stream_kick(call); /* no memory for the list: kick in place */
      }
    }
  }
  pthread_mutex_unlock(&t->mu);
  for (size_t i = 0; i < nkick; i++) {
    srv_stream_kick(kick[i]);
    srv_call_unref(kick[i]);
  }
  free(kick);
}

static void kill_topic(topic *t, grpc_status_code code, const char *msg);

/* True when the topic's cache no longer exists although the topic is alive: a publish
 * or subscribe raced with the cache's deletion and created it afterwards. The caller
 * then kills it (outside the topic lock), so a re-created cache starts afresh. */
static bool orphaned_locked(pubsub *ps, topic *t, const char *cache) {
  return !atomic_load(&t->dead) && ps->cfg.cache_exists &&
         !ps->cfg.cache_exists(ps->cfg.cache_arg, cache);
}

/* ---- publish ---- */

static grpc_slice pack_topic_item(uint64_t seq, uint64_t page,
                                  const CacheClient__Pubsub__TopicValue *value,
                                  const char *publisher_id) {
  CacheClient__Pubsub__TopicItem item = CACHE_CLIENT__PUBSUB____TOPIC_ITEM__INIT;
  item.topic_sequence_number = seq;
  item.value = (CacheClient__Pubsub__TopicValue *)value;
  item.publisher_id = (char *)publisher_id;
  item.sequence_page = page;
  CacheClient__Pubsub__SubscriptionItem it = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__INIT;
  it.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM;
  it.item = &item;
  return srv_pack_slice(&it.base);
}

ps_result pubsub_publish(pubsub *ps, const char *cache, const char *name,
                         const CacheClient__Pubsub__TopicValue *value, const char *publisher_id,
                         size_t *delivered) {
  *delivered = 0;
  topic *t = topic_get(ps, cache, name);
  if (!t) {
    return PS_NOMEM;
  }
  pthread_mutex_lock(&t->mu);
  ps_result r = PS_GONE;
  bool orphan = orphaned_locked(ps, t, cache);
  bool unrecorded = false;
  if (!orphan && !t->dead && ps->cfg.persist && t->last_seq + 1 >= t->reserved) {
    /* One record per block: after a crash numbering goes on from the block's end. A
     * block that is not on record cannot be used (a restart would reuse its numbers). */
    uint64_t reserve = t->last_seq + 1 + PERSIST_SEQ_BLOCK;
    unrecorded = persist_topic_set(ps->cfg.persist, cache, name, t->page, reserve) != PERSIST_OK;
    t->reserved = unrecorded ? t->reserved : reserve;
  }
  if (unrecorded) {
    pthread_mutex_unlock(&t->mu);
    r = PS_UNRECORDED;
  } else if (!orphan && !t->dead) {
    uint64_t seq = ++t->last_seq;
    grpc_slice msg = pack_topic_item(seq, t->page, value, publisher_id);
    ring_push_locked(t, seq, msg);
    *delivered = t->nsubs;
    fan_out(ps, t, seq, msg); /* unlocks the topic */
    grpc_slice_unref(msg);
    r = PS_OK;
  } else {
    pthread_mutex_unlock(&t->mu);
  }
  if (orphan) {
    kill_topic(t, GRPC_STATUS_NOT_FOUND, "cache was deleted");
  }
  topic_unref(t);
  return r;
}

/* ---- subscribe ---- */

/* Queues what a new subscriber gets after its first heartbeat.
 * resume_at == 0: live only.
 * resume_at > 0, same page (or page 0 = a client that does not track pages) and
 *   oldest <= resume_at <= next: replay [resume_at, next) from the ring, then live.
 * Otherwise (too old, page changed, or a number from the future): a discontinuity,
 *   then everything the ring still holds (from `oldest`), then live.
 * Discontinuity fields (here and on queue overflow): last_topic_sequence = the last
 * sequence number the client had (resume_at - 1), new_topic_sequence = the sequence
 * number the stream is now positioned at, i.e. one less than the next item delivered
 * (oldest - 1 here), new_sequence_page = the current page. The official SDKs store
 * new_topic_sequence as "last seen" and resume at new_topic_sequence + 1, so this
 * choice makes a reconnect right after the discontinuity lose nothing. */
static void queue_replay_locked(topic *t, sub *s, uint64_t resume_at, uint64_t page) {
  uint64_t next = t->last_seq + 1;
  uint64_t oldest = next - t->ring_len;
  if (resume_at == 0) {
    return;
  }
  uint64_t from = resume_at;
  bool same_page = page == 0 || page == t->page;
  if (!same_page || resume_at < oldest || resume_at > next) {
    from = oldest;
    send_discontinuity(s, resume_at - 1, oldest - 1, t->page);
  }
  for (uint64_t seq = from; seq < next; seq++) {
    ring_item *it = &t->ring[(t->ring_head + (seq - oldest)) % t->ring_cap];
    send_item(s, it->msg, it->seq);
  }
}

/* Returns false when the server is shutting down: pubsub_shutdown has ended (or is
 * ending) the streams of the list, so the caller must end this one itself. */
static bool link_sub(pubsub *ps, sub *s) {
  pthread_mutex_lock(&ps->subs_mu);
  s->next = ps->subs;
  if (ps->subs) {
    ps->subs->prev = s;
  }
  ps->subs = s;
  ps->nsubs++;
  bool open = !ps->closed;
  pthread_mutex_unlock(&ps->subs_mu);
  return open;
}

static bool topic_add_sub(topic *t, sub *s) {
  if (t->nsubs == t->subs_cap) {
    size_t cap = t->subs_cap ? t->subs_cap * 2 : 4;
    sub **ns = realloc(t->subs, cap * sizeof *ns);
    if (!ns) {
      return false;
    }
    t->subs = ns;
    t->subs_cap = cap;
  }
  t->subs[t->nsubs++] = s;
  return true;
}

/* Under the topic lock: registers s everywhere and queues heartbeat + replay. */
static ps_result attach_locked(pubsub *ps, topic *t, sub *s, uint64_t resume_at, uint64_t page,
                               bool *shutting_down) {
  if (t->dead) {
    return PS_GONE;
  }
  if (t->nsubs >= ps->cfg.max_subscribers) {
    return PS_TOO_MANY;
  }
  if (!topic_add_sub(t, s)) {
    return PS_NOMEM;
  }
  if (!srv_stream_on_close(s->call, sub_on_close, s)) {
    t->nsubs--; /* the client is already gone: nothing to serve */
    return PS_GONE;
  }
  if (!link_sub(ps, s)) {
    /* No publisher may reach it (it was added last, under this lock); the caller ends
     * the stream, which is now owned here like any other. */
    t->nsubs--;
    *shutting_down = true;
    return PS_OK;
  }
  /* The first item confirms the subscription: everything published from now on is
   * queued behind it, since publishers take this same topic lock. */
  send_item(s, ps->heartbeat, 0);
  queue_replay_locked(t, s, resume_at, page);
  return PS_OK;
}

ps_result pubsub_subscribe(pubsub *ps, srv_call *call, const char *cache, const char *name,
                           uint64_t resume_at, uint64_t page, uint64_t token_expires) {
  return pubsub_subscribe_ex(ps, call, cache, name, resume_at, page, token_expires, NULL, NULL);
}

ps_result pubsub_subscribe_ex(pubsub *ps, srv_call *call, const char *cache, const char *name,
                              uint64_t resume_at, uint64_t page, uint64_t token_expires,
                              void (*on_end)(void *arg), void *end_arg) {
  sub *s = calloc(1, sizeof *s);
  topic *t = s ? topic_get(ps, cache, name) : NULL;
  if (!t) {
    free(s);
    return PS_NOMEM;
  }
  atomic_init(&s->refs, 2);
  s->ps = ps;
  s->t = t;
  s->call = call;
  s->on_end = on_end;
  s->end_arg = end_arg;
  srv_call_ref(call);
  atomic_init(&s->last_sent_ms, cmn_mono_ms());
  s->expires_ms = token_expires == 0 || token_expires >= (uint64_t)(INT64_MAX / 1000)
                      ? INT64_MAX
                      : (int64_t)token_expires * 1000;
  pthread_mutex_lock(&t->mu);
  bool orphan = orphaned_locked(ps, t, cache);
  bool shutting_down = false;
  ps_result r = orphan ? PS_GONE : attach_locked(ps, t, s, resume_at, page, &shutting_down);
  pthread_mutex_unlock(&t->mu);
  if (orphan) {
    kill_topic(t, GRPC_STATUS_NOT_FOUND, "cache was deleted");
  }
  if (shutting_down) {
    /* Fully attached, so ended like the others: no heartbeat went out, the client sees
     * UNAVAILABLE rather than a confirmation from a server about to exit. */
    sub_detach(s, GRPC_STATUS_UNAVAILABLE, "server shutting down");
    srv_log(LOG_INFO, "a subscription to %s/%s arrived during shutdown; ended it", cache, name);
  }
  if (r != PS_OK) {
    srv_call_unref(call);
    topic_unref(t);
    free(s);
  }
  return r;
}

/* ---- cache deletion and shutdown ---- */

/* Topics are taken out of the table in fixed batches: nothing to allocate, so no topic
 * of a deleted cache is left behind with its subscribers waiting. */
#define DROP_BATCH 64

typedef struct drop_ctx {
  const char *cache;
  size_t len;
  topic *out[DROP_BATCH];
  size_t n;
} drop_ctx;

static bool take_topic_of_cache(void *ctx, srv_hentry *e) {
  drop_ctx *d = ctx;
  if (d->n == DROP_BATCH || e->klen <= d->len || memcmp(e->key, d->cache, d->len + 1) != 0) {
    return false; /* a full batch: the next pass takes it */
  }
  d->out[d->n++] = e->val;
  return true;
}

/* Ends the streams one subscriber at a time, without allocating (kill_topic when out of
 * memory). sub_detach takes each out of t->subs; one already being detached elsewhere is
 * skipped. The topic is dead, so none are added: at most nsubs rounds. */
static void detach_each(topic *t, grpc_status_code code, const char *msg) {
  for (;;) {
    sub *s = NULL;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->nsubs && !s; i++) {
      if (!atomic_load(&t->subs[i]->detached)) {
        s = t->subs[i];
        atomic_fetch_add(&s->refs, 1);
      }
    }
    pthread_mutex_unlock(&t->mu);
    if (!s) {
      return;
    }
    sub_detach(s, code, msg);
    sub_unref(s);
  }
}

/* Marks a topic dead and ends its subscribers' streams. */
static void kill_topic(topic *t, grpc_status_code code, const char *msg) {
  pthread_mutex_lock(&t->mu);
  t->dead = true;
  size_t n = t->nsubs;
  sub **copy = n ? malloc(n * sizeof *copy) : NULL;
  if (n && !copy) {
    pthread_mutex_unlock(&t->mu);
    detach_each(t, code, msg); /* no memory for the copy: must not leave them hanging */
    return;
  }
  if (copy) {
    memcpy(copy, t->subs, n * sizeof *copy);
    for (size_t i = 0; i < n; i++) {
      atomic_fetch_add(&copy[i]->refs, 1);
    }
  }
  pthread_mutex_unlock(&t->mu);
  for (size_t i = 0; copy && i < n; i++) {
    sub_detach(copy[i], code, msg);
    sub_unref(copy[i]);
  }
  free(copy);
}

void pubsub_drop_cache(pubsub *ps, const char *cache) {
  drop_ctx d = {.cache = cache, .len = strlen(cache)};
  do {
    d.n = 0;
    pthread_rwlock_wrlock(&ps->lock);
    srv_hmap_filter(&ps->topics, take_topic_of_cache, &d);
    pthread_rwlock_unlock(&ps->lock);
    for (size_t i = 0; i < d.n; i++) {
      kill_topic(d.out[i], GRPC_STATUS_NOT_FOUND, "cache was deleted");
      topic_unref(d.out[i]);
    }
  } while (d.n == DROP_BATCH);
}

/* ---- heartbeat thread ---- */

/* Subscribers whose token expired are ended in batches taken under subs_mu and
 * detached after it (sub_detach takes the topic lock, which comes first). */
#define EXPIRE_BATCH 64

/* Heartbeats the idle subscribers and collects up to EXPIRE_BATCH expired ones (with a
 * reference each); returns how many. */
static size_t heartbeat_idle_locked(pubsub *ps, int64_t now, int64_t wall, sub **expired) {
  size_t n = 0;
  for (sub *s = ps->subs; s; s = s->next) {
    if (atomic_load(&s->detached)) {
      continue; /* being ended elsewhere: not collected again by the next pass */
    }
    if (wall >= s->expires_ms) {
      if (n < EXPIRE_BATCH) {
        atomic_fetch_add(&s->refs, 1);
        expired[n++] = s;
      }
    } else if (now - atomic_load(&s->last_sent_ms) >= ps->cfg.heartbeat_ms) {
      send_item(s, ps->heartbeat, 0);
    }
  }
  return n;
}

/* One tick: heartbeats, then every subscription whose token has expired ends with
 * UNAUTHENTICATED (the client fetches a fresh token and resumes). A pass per batch:
 * each is one walk of the list, as the heartbeats are. */
static void heartbeat_idle(pubsub *ps) {
  sub *expired[EXPIRE_BATCH];
  size_t n;
  do {
    int64_t now = cmn_mono_ms(), wall = cmn_wall_ms();
    pthread_mutex_lock(&ps->subs_mu);
    n = heartbeat_idle_locked(ps, now, wall, expired);
    pthread_mutex_unlock(&ps->subs_mu);
    for (size_t i = 0; i < n; i++) {
      sub_detach(expired[i], GRPC_STATUS_UNAUTHENTICATED, "auth token has expired");
      sub_unref(expired[i]); // NOLINT(clang-analyzer-unix.Malloc): refcount not modelled
    }
  } while (n == EXPIRE_BATCH);
}

static void *heartbeat_thread(void *arg) {
  pubsub *ps = arg;
  int tick_ms = ps->cfg.heartbeat_ms / 4;
  tick_ms = tick_ms < 10 ? 10 : (tick_ms > 250 ? 250 : tick_ms);
  pthread_mutex_lock(&ps->tick_mu);
  while (!ps->stopping) {
    struct timespec ts = cmn_deadline_after_ms(tick_ms);
    pthread_cond_timedwait(&ps->tick_cv, &ps->tick_mu, &ts);
    if (ps->stopping) {
      break;
    }
    pthread_mutex_unlock(&ps->tick_mu);
    heartbeat_idle(ps);
    pthread_mutex_lock(&ps->tick_mu);
  }
  pthread_mutex_unlock(&ps->tick_mu);
  return NULL;
}

pubsub *pubsub_new(const pubsub_config *cfg) {
  pubsub *ps = calloc(1, sizeof *ps);
  if (!ps) {
    return NULL;
  }
  ps->cfg = *cfg;
  if (ps->cfg.heartbeat_ms <= 0) {
    ps->cfg.heartbeat_ms = 5000;
  }
  pthread_rwlock_init(&ps->lock, NULL);
  srv_hmap_init(&ps->topics);
  pthread_mutex_init(&ps->subs_mu, NULL);
  pthread_mutex_init(&ps->tick_mu, NULL);
  cmn_cond_init_monotonic(&ps->tick_cv);
  CacheClient__Pubsub__Heartbeat hb = CACHE_CLIENT__PUBSUB____HEARTBEAT__INIT;
  CacheClient__Pubsub__SubscriptionItem it = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__INIT;
  it.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_HEARTBEAT;
  it.heartbeat = &hb;
  ps->heartbeat = srv_pack_slice(&it.base);
  ps->thread_started = pthread_create(&ps->thread, NULL, heartbeat_thread, ps) == 0;
  return ps;
}

void pubsub_end_streams(pubsub *ps, grpc_status_code code, const char *msg) {
  for (;;) {
    pthread_mutex_lock(&ps->subs_mu);
    sub *s = ps->subs;
    if (s) {
      atomic_fetch_add(&s->refs, 1);
    }
    pthread_mutex_unlock(&ps->subs_mu);
    if (!s) {
      break;
    }
    sub_detach(s, code, msg);
    /* The reference taken above kept s alive through sub_detach's own unref. */
    sub_unref(s); // NOLINT(clang-analyzer-unix.Malloc): refcount not modelled
  }
}

static bool persist_topic(void *ctx, srv_hentry *e) {
  pubsub *ps = ctx;
  topic *t = e->val;
  const char *cache = (const char *)e->key;
  const char *name = cache + strlen(cache) + 1;
  pthread_mutex_lock(&t->mu);
  if (!atomic_load(&t->dead) && t->last_seq > 0) {
    persist_topic_set(ps->cfg.persist, cache, name, t->page, t->last_seq + 1);
    uint64_t *seqs = malloc((t->ring_len + 1) * sizeof *seqs);
    st_bytes *msgs = malloc((t->ring_len + 1) * sizeof *msgs);
    if (seqs && msgs) {
      for (size_t i = 0; i < t->ring_len; i++) {
        ring_item *it = &t->ring[(t->ring_head + i) % t->ring_cap];
        seqs[i] = it->seq;
        msgs[i] = (st_bytes){GRPC_SLICE_START_PTR(it->msg), GRPC_SLICE_LENGTH(it->msg)};
      }
      persist_topic_ring(ps->cfg.persist, cache, name, t->ring_len, seqs, msgs);
    }
    free(seqs);
    free(msgs);
  }
  pthread_mutex_unlock(&t->mu);
  return false;
}

void pubsub_persist_topics(pubsub *ps) {
  if (!ps->cfg.persist) {
    return;
  }
  pthread_rwlock_rdlock(&ps->lock);
  srv_hmap_filter(&ps->topics, persist_topic, ps);
  pthread_rwlock_unlock(&ps->lock);
}

void pubsub_shutdown(pubsub *ps) {
  pthread_mutex_lock(&ps->tick_mu);
  ps->stopping = true;
  pthread_cond_broadcast(&ps->tick_cv);
  pthread_mutex_unlock(&ps->tick_mu);
  if (ps->thread_started) {
    pthread_join(ps->thread, NULL);
    ps->thread_started = false;
  }
  pthread_mutex_lock(&ps->subs_mu);
  ps->closed = true;
  pthread_mutex_unlock(&ps->subs_mu);
  pubsub_end_streams(ps, GRPC_STATUS_UNAVAILABLE, "server shutting down");
}

void pubsub_free(pubsub *ps) {
  if (!ps) {
    return;
  }
  srv_hmap_destroy(&ps->topics, topic_unref_void);
  grpc_slice_unref(ps->heartbeat);
  pthread_rwlock_destroy(&ps->lock);
  pthread_mutex_destroy(&ps->subs_mu);
  pthread_mutex_destroy(&ps->tick_mu);
  pthread_cond_destroy(&ps->tick_cv);
  free(ps);
}
