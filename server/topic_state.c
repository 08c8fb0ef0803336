/* mim-local: pubsub's persisted topic state (see topic_state.h). */
#include "topic_state.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
  uint64_t page, next_seq;
  uint8_t *ring; /* REC_RING body (u32 n, items) kept for the topic's next incarnation */
  size_t ring_len;
} entry;

static void entry_free(void *v) {
  entry *t = v;
  if (t) {
    free(t->ring);
    free(t);
  }
}

void topic_states_init(topic_states *ts) {
  srv_hmap_init(&ts->map);
}

void topic_states_destroy(topic_states *ts) {
  srv_hmap_destroy(&ts->map, entry_free);
}

size_t topic_states_count(const topic_states *ts) {
  return ts->map.count;
}

size_t topic_state_key(char *out, size_t cap, const char *cache, const char *topic) {
  size_t a = strlen(cache), b = strlen(topic);
  if (a + 1 + b > cap) {
    return 0;
  }
  memcpy(out, cache, a);
  out[a] = '\0';
  memcpy(out + a + 1, topic, b);
  return a + 1 + b;
}

static entry *find(topic_states *ts, const char *cache, const char *topic) {
  char key[1024];
  size_t klen = topic_state_key(key, sizeof key, cache, topic);
  return klen ? srv_hmap_get(&ts->map, key, klen) : NULL;
}

bool topic_states_set(topic_states *ts, const char *cache, const char *topic, uint64_t page,
                      uint64_t next_seq) {
  char key[1024];
  size_t klen = topic_state_key(key, sizeof key, cache, topic);
  if (!klen) {
    return false;
  }
  entry *t = srv_hmap_get(&ts->map, key, klen);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t || !srv_hmap_put(&ts->map, key, klen, t)) {
      free(t);
      return false;
    }
  }
  t->page = page;
  t->next_seq = next_seq;
  return true;
}

bool topic_states_get(topic_states *ts, const char *cache, const char *topic, uint64_t *page,
                      uint64_t *next_seq) {
  entry *t = find(ts, cache, topic);
  if (t) {
    *page = t->page;
    *next_seq = t->next_seq;
  }
  return t != NULL;
}

static bool drop_cache_topic(void *ctx, srv_hentry *e) {
  const char *cache = ctx;
  size_t n = strlen(cache);
  if (e->klen > n && memcmp(e->key, cache, n + 1) == 0) {
    entry_free(e->val);
    return true;
  }
  return false;
}

void topic_states_drop_cache(topic_states *ts, const char *cache) {
  srv_hmap_filter(&ts->map, drop_cache_topic, (void *)cache);
}

/* Walks a ring body (u32 n, n x (u64 seq, bytes)); fn may be NULL. false if malformed
 * or its sequence numbers are not consecutive. *last gets the last one (0: empty). */
static bool ring_walk(const uint8_t *d, size_t len, uint64_t *last, topic_ring_fn fn, void *ctx) {
  rec_reader r = {d, len, false};
  uint32_t n = (uint32_t)rec_get_le(&r, 4);
  *last = 0;
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    uint64_t seq = rec_get_le(&r, 8);
    st_bytes msg = rec_get_bytes(&r);
    if (r.bad || seq == 0 || (i > 0 && seq != *last + 1)) {
      return false;
    }
    *last = seq;
    if (fn) {
      fn(ctx, seq, msg);
    }
  }
  return !r.bad && r.left == 0;
}

bool topic_states_keep_ring(topic_states *ts, const char *cache, const char *topic,
                            const uint8_t *body, size_t len) {
  entry *t = find(ts, cache, topic);
  uint64_t last;
  if (!t || !ring_walk(body, len, &last, NULL, NULL)) {
    return t != NULL; /* no topic: ignore the ring; malformed: a bad record */
  }
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    return false;
  }
  memcpy(copy, body, len);
  free(t->ring);
  t->ring = copy;
  t->ring_len = len;
  return true;
}

void topic_states_take_ring(topic_states *ts, const char *cache, const char *topic,
                            uint64_t last_seq, topic_ring_fn fn, void *ctx) {
  entry *t = find(ts, cache, topic);
  uint64_t last = 0;
  /* Only a ring that ends right before the next number continues the topic (after a
   * crash the numbering jumped to the end of its block: the ring is stale). */
  if (t && t->ring && ring_walk(t->ring, t->ring_len, &last, NULL, NULL) && last == last_seq) {
    ring_walk(t->ring, t->ring_len, &last, fn, ctx);
  }
  if (t) {
    free(t->ring);
    t->ring = NULL;
    t->ring_len = 0;
  }
}

void topic_states_put_record(rec_buf *b, const char *cache, const char *topic, uint64_t page,
                             uint64_t next_seq) {
  size_t at = rec_begin(b, REC_TOPIC);
  rec_put_str(b, cache);
  rec_put_str(b, topic);
  rec_put_u64(b, page);
  rec_put_u64(b, next_seq);
  rec_seal(b, at);
}

static bool snapshot_topic(void *ctx, srv_hentry *e) {
  rec_buf *out = ctx;
  entry *t = e->val;
  const char *cache = (const char *)e->key;
  const char *topic = cache + strlen(cache) + 1;
  topic_states_put_record(out, cache, topic, t->page, t->next_seq);
  if (t->ring) {
    size_t at = rec_begin(out, REC_RING);
    rec_put_str(out, cache);
    rec_put_str(out, topic);
    rec_put(out, t->ring, t->ring_len);
    rec_seal(out, at);
  }
  return false;
}

void topic_states_snapshot(topic_states *ts, rec_buf *out) {
  srv_hmap_filter(&ts->map, snapshot_topic, out);
}
