/* mim-local: replay of the data directory at start (see recovery.h). */
#include "recovery.h"

#include "record.h"
#include "util.h"

#include <stdlib.h>

/* persist_replay.ctx */
typedef struct replay_ctx {
  store *s;
  bool recover;
  size_t recreated; /* caches recreated for their intact list records (--recover) */
} replay_ctx;

static bool replay_list_set(store *s, rec_reader *r, const char *cache, st_bytes key) {
  int64_t exp = (int64_t)rec_get_le(r, 8);
  uint32_t n = 0;
  st_bytes *vals = rec_get_values(r, &n);
  if (!vals) {
    return false;
  }
  bool ok = !r->bad && store_restore_list(s, cache, key, vals, n, false, true, 0, exp) != ST_NOMEM;
  free(vals);
  return ok;
}

static bool replay_push(store *s, rec_reader *r, const char *cache, st_bytes key) {
  uint8_t flags = (uint8_t)rec_get_le(r, 1);
  uint32_t truncate = (uint32_t)rec_get_le(r, 4);
  int64_t exp = (int64_t)rec_get_le(r, 8);
  uint32_t n = 0;
  st_bytes *vals = rec_get_values(r, &n);
  if (!vals) {
    return false;
  }
  bool ok = !r->bad && store_restore_list(s, cache, key, vals, n, flags & 1, flags & 2, truncate,
                                          exp) != ST_NOMEM;
  free(vals);
  return ok;
}

/* The records about one list: cache, key, then what the type says. */
static bool replay_list(store *s, rec_reader *r, uint8_t type) {
  char cache[REC_NAME_MAX + 1];
  if (!rec_get_name(r, cache, sizeof cache)) {
    return false;
  }
  st_bytes key = rec_get_bytes(r);
  if (r->bad || key.len == 0) {
    return false;
  }
  if (type == REC_LIST_SET) {
    return replay_list_set(s, r, cache, key);
  }
  if (type == REC_LIST_PUSH) {
    return replay_push(s, r, cache, key);
  }
  if (type == REC_ITEM_DEL) {
    store_item_delete(s, cache, key);
    return true;
  }
  bool front = rec_get_le(r, 1) != 0;
  ProtobufCBinaryData popped;
  uint32_t len;
  if (!r->bad && store_list_pop(s, cache, key, front, &popped, &len) == ST_OK) {
    free(popped.data);
  }
  return !r->bad;
}

/* A dict-set record: cache, key, fresh, expiry, then field and value pairs. */
static bool replay_dict(store *s, rec_reader *r) {
  char cache[REC_NAME_MAX + 1];
  if (!rec_get_name(r, cache, sizeof cache)) {
    return false;
  }
  st_bytes key = rec_get_bytes(r);
  bool fresh = rec_get_le(r, 1) != 0;
  int64_t exp = (int64_t)rec_get_le(r, 8);
  uint32_t n = 0;
  st_bytes *fv = rec_get_values(r, &n); /* 2n values: field, value, ... */
  if (!fv || r->bad || key.len == 0 || n % 2 != 0) {
    free(fv);
    return false;
  }
  size_t pairs = (size_t)n / 2;
  st_bytes *split = malloc((2 * pairs + 1) * sizeof *split);
  bool ok = split != NULL;
  for (size_t i = 0; ok && i < pairs; i++) {
    split[i] = fv[2 * i];
    split[pairs + i] = fv[2 * i + 1];
  }
  ok = ok && store_restore_dict(s, cache, key, split, split + pairs, pairs, fresh, exp) != ST_NOMEM;
  free(split);
  free(fv);
  return ok;
}

/* Pubsub's records: they fill the topic table persist keeps for pubsub. */
static bool replay_topic(persist *p, rec_reader *r, uint8_t type) {
  char cache[REC_NAME_MAX + 1], topic[REC_NAME_MAX + 1];
  if (!rec_get_name(r, cache, sizeof cache) || !rec_get_name(r, topic, sizeof topic)) {
    return false;
  }
  if (type == REC_RING) {
    return persist_restore_ring(p, cache, topic, r->p, r->left);
  }
  uint64_t page = rec_get_le(r, 8), next = rec_get_le(r, 8);
  return !r->bad && persist_restore_topic(p, cache, topic, page, next);
}

/* --recover: a list's content for a cache whose creation record was lost in a damaged
 * region recreates the cache, so the intact record is not dropped with it. (List
 * records are written under the store's read lock, which a cache deletion holds for
 * writing while it logs, so they never follow the deletion; topic records may, and
 * recreate nothing.) */
static bool ensure_cache(replay_ctx *c, rec_reader r) {
  char cache[REC_NAME_MAX + 1];
  if (!c->recover || !rec_get_name(&r, cache, sizeof cache) || store_cache_exists(c->s, cache)) {
    return true;
  }
  c->recreated++;
  return store_cache_create(c->s, cache) != ST_NOMEM;
}

/* persist_replay.apply: one record's payload; false if it is malformed. */
static bool apply(void *ctx, persist *p, const uint8_t *d, size_t n) {
  replay_ctx *c = ctx;
  store *s = c->s;
  rec_reader r = {d, n, false};
  uint8_t type = (uint8_t)rec_get_le(&r, 1);
  char cache[REC_NAME_MAX + 1];
  switch (type) {
  case REC_CACHE_NEW:
    return rec_get_name(&r, cache, sizeof cache) && store_cache_create(s, cache) != ST_NOMEM;
  case REC_CACHE_DEL:
    if (!rec_get_name(&r, cache, sizeof cache)) {
      return false;
    }
    store_cache_delete(s, cache);
    persist_restore_cache_deleted(p, cache);
    return true;
  case REC_LIST_SET:
  case REC_LIST_PUSH:
    return ensure_cache(c, r) && replay_list(s, &r, type);
  case REC_LIST_POP:
  case REC_ITEM_DEL:
    return replay_list(s, &r, type);
  case REC_DICT_SET:
    return ensure_cache(c, r) && replay_dict(s, &r);
  case REC_TOPIC:
  case REC_RING:
    return replay_topic(p, &r, type);
  default:
    return false; /* including a header that is not the first record */
  }
}

static size_t cache_count(store *s) {
  size_t n = 0;
  char **names = store_cache_names(s, &n);
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
  }
  free(names);
  return n;
}

persist *recovery_open(const char *dir, persist_fsync mode, uint64_t compact_bytes, bool recover,
                       store *s) {
  replay_ctx ctx = {s, recover, 0};
  persist_replay replay = {apply, &ctx, recover};
  persist *p = persist_open(dir, mode, compact_bytes, &replay);
  if (!p) {
    return NULL;
  }
  if (ctx.recreated) {
    srv_log(LOG_WARN, "persist: --recover: recreated %zu caches whose creation record was lost",
            ctx.recreated);
  }
  /* Compact at once: a clean snapshot, and a log without a record cut short at its end
   * (damaged files got here only with recover, and a copy of them was kept). */
  if (!store_compact(s, p)) {
    srv_log(LOG_ERROR, "persist: cannot open the data directory");
    persist_close(p);
    return NULL;
  }
  size_t topics = 0;
  uint64_t gen = 0;
  persist_stats(p, &topics, &gen);
  srv_log(LOG_INFO, "persist: data directory loaded (%zu caches, %zu topics, generation %llu)",
          cache_count(s), topics, (unsigned long long)gen);
  return p;
}
