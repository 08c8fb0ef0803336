/* mim-local: in-memory caches of lists and dictionaries. Expired items vanish lazily on
 * access and in the periodic sweep. An emptied list no longer exists (as in Momento). */
#include "store.h"

#include "clock.h"
#include "persist.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* An item: a list, or (is_dict) a dictionary whose fields live in `fields` (v stays
 * NULL, len 0, so list code never walks a dictionary). */
typedef struct st_list {
  ProtobufCBinaryData *v;
  size_t len, cap;
  size_t bytes;       /* sum of the values' (a dictionary: fields' and values') sizes */
  int64_t expires_ms; /* monotonic clock */
  bool is_dict;
  srv_hmap fields; /* dictionary: field -> st_field */
} st_list;

/* A dictionary value. */
typedef struct st_field {
  size_t len;
  uint8_t data[];
} st_field;

typedef struct st_cache {
  pthread_mutex_t mu;
  srv_hmap lists; /* list name -> st_list */
} st_cache;

struct store {
  pthread_rwlock_t lock;
  srv_hmap caches; /* cache name -> st_cache */
  uint64_t default_ttl_ms;
  size_t max_list_len;
  size_t max_item_bytes; /* a list's total value bytes (0: no limit) */
  persist *p;            /* --data-dir, or NULL */
};

/* Monotonic expiry <-> wall clock, for the data directory (restarts reset the former). */
static int64_t mono_to_wall(int64_t mono) {
  return cmn_wall_ms() + (mono - cmn_mono_ms());
}

static int64_t wall_to_mono(int64_t wall) {
  return cmn_mono_ms() + (wall - cmn_wall_ms());
}

static st_result from_persist(persist_rc rc) {
  return rc == PERSIST_OK ? ST_OK : (rc == PERSIST_TOO_BIG ? ST_TOO_BIG : ST_IO);
}

static void list_free(void *p) {
  st_list *l = p;
  store_values_free(l->v, l->len);
  if (l->is_dict) {
    srv_hmap_destroy(&l->fields, free);
  }
  free(l);
}

static void cache_free(void *p) {
  st_cache *c = p;
  srv_hmap_destroy(&c->lists, list_free);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

store *store_new(uint64_t default_ttl_ms, size_t max_list_len) {
  store *s = calloc(1, sizeof *s);
  if (!s) {
    return NULL;
  }
  pthread_rwlock_init(&s->lock, NULL);
  srv_hmap_init(&s->caches);
  s->default_ttl_ms = default_ttl_ms;
  s->max_list_len = max_list_len;
  return s;
}

void store_free(store *s) {
  if (!s) {
    return;
  }
  srv_hmap_destroy(&s->caches, cache_free);
  pthread_rwlock_destroy(&s->lock);
  free(s);
}

void store_values_free(ProtobufCBinaryData *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].data);
  }
  free(v);
}

/* ---- caches ---- */

st_result store_cache_create(store *s, const char *name) {
  return store_cache_create_capped(s, name, 0);
}

st_result store_cache_create_capped(store *s, const char *name, size_t max_caches) {
  st_result r = ST_OK;
  pthread_rwlock_wrlock(&s->lock);
  if (srv_hmap_get(&s->caches, name, strlen(name))) {
    r = ST_EXISTS;
  } else if (max_caches && s->caches.count >= max_caches) {
    r = ST_TOO_MANY;
  } else {
    st_cache *c = calloc(1, sizeof *c);
    if (!c) {
      r = ST_NOMEM;
    } else {
      pthread_mutex_init(&c->mu, NULL);
      srv_hmap_init(&c->lists);
      if (!srv_hmap_put(&s->caches, name, strlen(name), c)) {
        cache_free(c);
        r = ST_NOMEM;
      } else if (s->p && (r = from_persist(persist_cache(s->p, true, name))) != ST_OK) {
        cache_free(srv_hmap_remove(&s->caches, name, strlen(name)));
      }
    }
  }
  pthread_rwlock_unlock(&s->lock);
  return r;
}

st_result store_cache_delete(store *s, const char *name) {
  pthread_rwlock_wrlock(&s->lock);
  st_cache *c = srv_hmap_get(&s->caches, name, strlen(name));
  st_result r = !c ? ST_NO_CACHE : (s->p ? from_persist(persist_cache(s->p, false, name)) : ST_OK);
  if (r == ST_OK) {
    srv_hmap_remove(&s->caches, name, strlen(name));
  }
  pthread_rwlock_unlock(&s->lock);
  if (r != ST_OK) {
    return r;
  }
  cache_free(c); /* no operation holds it: they run under the read lock */
  return ST_OK;
}

bool store_cache_exists(store *s, const char *name) {
  pthread_rwlock_rdlock(&s->lock);
  bool found = srv_hmap_get(&s->caches, name, strlen(name)) != NULL;
  pthread_rwlock_unlock(&s->lock);
  return found;
}

typedef struct names_ctx {
  char **names;
  size_t n;
} names_ctx;

static bool collect_name(void *ctx, srv_hentry *e) {
  names_ctx *nc = ctx;
  char *copy = strdup((const char *)e->key);
  if (copy) {
    nc->names[nc->n++] = copy;
  }
  return false;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char **store_cache_names(store *s, size_t *n) {
  pthread_rwlock_rdlock(&s->lock);
  names_ctx nc = {calloc(s->caches.count + 1, sizeof(char *)), 0};
  *n = 0;
  if (!nc.names) {
    pthread_rwlock_unlock(&s->lock);
    return NULL; /* qsort must not be given NULL, even with no elements */
  }
  srv_hmap_filter(&s->caches, collect_name, &nc);
  pthread_rwlock_unlock(&s->lock);
  qsort(nc.names, nc.n, sizeof(char *), cmp_names);
  *n = nc.n;
  return nc.names;
}

static bool drop_if_expired(void *ctx, srv_hentry *e) {
  st_list *l = e->val;
  if (l->expires_ms <= *(int64_t *)ctx) {
    list_free(l);
    return true;
  }
  return false;
}

static bool sweep_cache(void *ctx, srv_hentry *e) {
  st_cache *c = e->val;
  pthread_mutex_lock(&c->mu);
  srv_hmap_filter(&c->lists, drop_if_expired, ctx);
  pthread_mutex_unlock(&c->mu);
  return false;
}

void store_sweep(store *s) {
  int64_t now = cmn_mono_ms();
  pthread_rwlock_rdlock(&s->lock);
  srv_hmap_filter(&s->caches, sweep_cache, &now);
  pthread_rwlock_unlock(&s->lock);
}

/* ---- list helpers ---- */

/* Locks the table (shared) and the cache; NULL (nothing locked) if it does not exist. */
static st_cache *open_cache(store *s, const char *name) {
  pthread_rwlock_rdlock(&s->lock);
  st_cache *c = srv_hmap_get(&s->caches, name, strlen(name));
  if (!c) {
    pthread_rwlock_unlock(&s->lock);
    return NULL;
  }
  pthread_mutex_lock(&c->mu);
  return c;
}

static void close_cache(store *s, st_cache *c) {
  pthread_mutex_unlock(&c->mu);
  pthread_rwlock_unlock(&s->lock);
}

/* The live item under key, dropping it first if it expired. */
static st_list *find_item(st_cache *c, st_bytes key) {
  st_list *l = srv_hmap_get(&c->lists, key.data, key.len);
  if (l && l->expires_ms <= cmn_mono_ms()) {
    list_free(srv_hmap_remove(&c->lists, key.data, key.len));
    l = NULL;
  }
  return l;
}

/* The live list under key; NULL with *why ST_MISSING, or ST_WRONG_TYPE when key holds
 * a dictionary. */
static st_list *find_list(st_cache *c, st_bytes key, st_result *why) {
  st_list *l = find_item(c, key);
  *why = !l ? ST_MISSING : ST_WRONG_TYPE;
  return l && !l->is_dict ? l : NULL;
}

static void drop_if_empty(st_cache *c, st_bytes key, st_list *l) {
  if (l->len == 0) {
    list_free(srv_hmap_remove(&c->lists, key.data, key.len));
  }
}

static int64_t expiry_for(const store *s, uint64_t ttl_ms) {
  uint64_t ttl = ttl_ms ? ttl_ms : s->default_ttl_ms;
  if (ttl > (uint64_t)INT64_MAX / 4) {
    ttl = (uint64_t)INT64_MAX / 4;
  }
  return cmn_mono_ms() + (int64_t)ttl;
}

static bool dup_value(ProtobufCBinaryData *dst, const uint8_t *data, size_t len) {
  dst->data = malloc(len ? len : 1);
  dst->len = len;
  if (!dst->data) {
    return false;
  }
  if (len) {
    memcpy(dst->data, data, len);
  }
  return true;
}

/* Removes [from, from+n) from the list, freeing the elements. */
static void list_cut(st_list *l, size_t from, size_t n) {
  for (size_t i = from; i < from + n; i++) {
    l->bytes -= l->v[i].len;
    free(l->v[i].data);
  }
  memmove(l->v + from, l->v + from + n, (l->len - from - n) * sizeof *l->v);
  l->len -= n;
}

static bool list_reserve(st_list *l, size_t extra) {
  if (l->len + extra <= l->cap) {
    return true;
  }
  size_t cap = l->cap ? l->cap : 8;
  while (cap < l->len + extra) {
    cap *= 2;
  }
  ProtobufCBinaryData *nv = realloc(l->v, cap * sizeof *nv);
  if (!nv) {
    return false;
  }
  l->v = nv;
  l->cap = cap;
  return true;
}

/* Inserts copies of vals at the front or back; false (list unchanged) on OOM. */
static bool list_insert(st_list *l, const st_bytes *vals, size_t n, bool front) {
  if (n == 0) {
    return true; /* an empty list has no array: l->v + 0 would be NULL arithmetic */
  }
  if (!list_reserve(l, n)) {
    return false;
  }
  ProtobufCBinaryData *tmp = calloc(n ? n : 1, sizeof *tmp);
  if (!tmp) {
    return false;
  }
  size_t added = 0;
  for (size_t i = 0; i < n; i++) {
    if (!dup_value(&tmp[i], vals[i].data, vals[i].len)) {
      store_values_free(tmp, i);
      return false;
    }
    added += vals[i].len;
  }
  l->bytes += added;
  if (front) {
    memmove(l->v + n, l->v, l->len * sizeof *l->v);
    memcpy(l->v, tmp, n * sizeof *tmp);
  } else {
    memcpy(l->v + l->len, tmp, n * sizeof *tmp);
  }
  l->len += n;
  free(tmp);
  return true;
}

/* Resolves a slice to [*b, *e) within len, clamped like a Python slice. */
static void resolve_range(st_range r, size_t len, size_t *b, size_t *e) {
  int64_t n = (int64_t)len;
  int64_t start = r.has_start ? r.start : 0;
  int64_t end = r.has_end ? r.end : n;
  start = start < 0 ? start + n : start;
  end = end < 0 ? end + n : end;
  start = start < 0 ? 0 : (start > n ? n : start);
  end = end < 0 ? 0 : (end > n ? n : end);
  *b = (size_t)start;
  *e = (size_t)(end > start ? end : start);
}

/* ---- list operations ---- */

/* The list's total bytes once n values are pushed and `cut` elements truncated from the
 * other end (of the old elements and the new ones together). O(n + cut): the values
 * the write adds or frees, never the rest of the list. */
static size_t bytes_after_push(const st_list *l, const st_bytes *vals, size_t n, bool front,
                               size_t cut) {
  size_t cur = l ? l->len : 0;
  size_t total = l ? l->bytes : 0;
  for (size_t i = 0; i < n; i++) {
    total += vals[i].len;
  }
  for (size_t i = 0; i < cut; i++) {
    /* Push back cuts from the front of old + new; push front from the back of new + old. */
    size_t len;
    if (!front) {
      len = i < cur ? l->v[i].len : vals[i - cur].len;
    } else {
      len = i < cur ? l->v[cur - 1 - i].len : vals[n - 1 - (i - cur)].len;
    }
    total -= len;
  }
  return total;
}

static st_result push_locked(store *s, st_cache *c, const char *cache, st_bytes key,
                             const st_bytes *vals, size_t n, bool front, st_ttl ttl,
                             uint32_t truncate, uint32_t *len, size_t *item_bytes) {
  st_result why;
  st_list *l = find_list(c, key, &why);
  if (!l && why == ST_WRONG_TYPE) {
    return why;
  }
  size_t cur = l ? l->len : 0;
  size_t after = cur + n;
  if (truncate && after > truncate) {
    after = truncate;
  }
  if (s->max_list_len && after > s->max_list_len) {
    return ST_TOO_LONG;
  }
  if (s->max_item_bytes) {
    *item_bytes = bytes_after_push(l, vals, n, front, cur + n - after);
    if (*item_bytes > s->max_item_bytes) {
      return ST_ITEM_TOO_BIG;
    }
  }
  bool created = false;
  int64_t old_expiry = l ? l->expires_ms : 0;
  if (!l) {
    l = calloc(1, sizeof *l);
    if (!l || !srv_hmap_put(&c->lists, key.data, key.len, l)) {
      free(l);
      return ST_NOMEM;
    }
    created = true;
  }
  if (!list_insert(l, vals, n, front)) {
    if (created) {
      list_free(srv_hmap_remove(&c->lists, key.data, key.len));
    }
    return ST_NOMEM;
  }
  if (created || ttl.refresh) {
    l->expires_ms = expiry_for(s, ttl.ttl_ms);
  }
  if (s->p) {
    /* Recorded before the truncation frees anything, so a failure can be undone. */
    st_result r = from_persist(persist_push(s->p, cache, key, vals, n, front, created, truncate,
                                            mono_to_wall(l->expires_ms)));
    if (r != ST_OK) {
      list_cut(l, front ? 0 : l->len - n, n);
      l->expires_ms = old_expiry;
      if (created) {
        list_free(srv_hmap_remove(&c->lists, key.data, key.len));
      }
      return r;
    }
  }
  if (truncate && l->len > truncate) {
    /* Push back truncates the front, push front truncates the back. */
    size_t excess = l->len - truncate;
    list_cut(l, front ? truncate : 0, excess);
  }
  *len = (uint32_t)l->len;
  drop_if_empty(c, key, l);
  return ST_OK;
}

st_result store_list_push(store *s, const char *cache, st_bytes key, const st_bytes *vals, size_t n,
                          bool front, st_ttl ttl, uint32_t truncate, uint32_t *len,
                          size_t *item_bytes) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  size_t ignored = 0;
  st_result r = push_locked(s, c, cache, key, vals, n, front, ttl, truncate, len,
                            item_bytes ? item_bytes : &ignored);
  close_cache(s, c);
  return r;
}

static st_result fetch_locked(st_cache *c, st_bytes key, st_range r, ProtobufCBinaryData **out,
                              size_t *n) {
  st_result why;
  st_list *l = find_list(c, key, &why);
  if (!l) {
    return why;
  }
  size_t b, e;
  resolve_range(r, l->len, &b, &e);
  *out = calloc(e - b + 1, sizeof **out);
  if (!*out) {
    return ST_NOMEM;
  }
  for (size_t i = b; i < e; i++) {
    if (!dup_value(&(*out)[i - b], l->v[i].data, l->v[i].len)) {
      store_values_free(*out, i - b);
      *out = NULL;
      return ST_NOMEM;
    }
  }
  *n = e - b;
  return ST_OK;
}

st_result store_list_fetch(store *s, const char *cache, st_bytes key, st_range r,
                           ProtobufCBinaryData **out, size_t *n) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  *out = NULL;
  *n = 0;
  st_result res = fetch_locked(c, key, r, out, n);
  close_cache(s, c);
  return res;
}

st_result store_list_length(store *s, const char *cache, st_bytes key, uint32_t *len) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result why;
  st_list *l = find_list(c, key, &why);
  if (l) {
    *len = (uint32_t)l->len;
  }
  close_cache(s, c);
  return l ? ST_OK : why;
}

/* The smallest record that turns the list into kept[0..w): the format has no record for
 * "remove these elements", so a cut at one end is an empty push that truncates (a few
 * bytes whatever the list's size), an emptied list an item delete, a change of expiry
 * alone an empty push, and only a change in the middle rewrites the whole list. */
static persist_rc record_kept(store *s, const char *cache, st_bytes key, const st_list *l,
                              const bool *dead, const ProtobufCBinaryData *kept, size_t w,
                              int64_t expires_ms) {
  int64_t wall = mono_to_wall(expires_ms);
  if (w == 0) {
    return persist_item_delete(s->p, cache, key);
  }
  if (w == l->len) {
    return persist_push(s->p, cache, key, NULL, 0, false, false, 0, wall);
  }
  size_t first = 0;
  while (dead[first]) {
    first++;
  }
  /* w alive elements in a row from the first alive one are all of them. */
  bool contiguous = true;
  for (size_t i = first; contiguous && i < first + w; i++) {
    contiguous = !dead[i];
  }
  if (contiguous && (first == 0 || first + w == l->len)) {
    /* Pushing nothing at the front truncates the back, and the other way round. */
    return persist_push(s->p, cache, key, NULL, 0, first == 0, false, (uint32_t)w, wall);
  }
  return persist_list_set(s->p, cache, key, kept, w, wall);
}

/* Keeps the elements not marked dead and sets the expiry, after recording the change
 * when persisting: if that fails the list is left as it was. A request that changes
 * nothing writes nothing. */
static st_result commit_kept(store *s, st_cache *c, const char *cache, st_bytes key, st_list *l,
                             const bool *dead, int64_t expires_ms, uint32_t *len) {
  size_t w = 0;
  for (size_t i = 0; i < l->len; i++) {
    w += !dead[i];
  }
  if (w == l->len && expires_ms == l->expires_ms) {
    *len = (uint32_t)w;
    return ST_OK;
  }
  ProtobufCBinaryData *kept = malloc((l->len + 1) * sizeof *kept);
  if (!kept) {
    return ST_NOMEM;
  }
  w = 0;
  for (size_t i = 0; i < l->len; i++) {
    if (!dead[i]) {
      kept[w++] = l->v[i]; /* shares the data until the change is committed */
    }
  }
  st_result r =
      s->p ? from_persist(record_kept(s, cache, key, l, dead, kept, w, expires_ms)) : ST_OK;
  if (r == ST_OK) {
    for (size_t i = 0; i < l->len; i++) {
      if (dead[i]) {
        l->bytes -= l->v[i].len;
        free(l->v[i].data);
      }
    }
    if (w) {
      memcpy(l->v, kept, w * sizeof *kept);
    }
    l->len = w;
    l->expires_ms = expires_ms;
    *len = (uint32_t)w;
    drop_if_empty(c, key, l);
  }
  free(kept);
  return r;
}

/* Which elements an operation removes: one flag per element. */
typedef void (*mark_fn)(const st_list *l, bool *dead, const void *arg);

/* The shared body of retain, remove and erase. */
static st_result list_rewrite(store *s, const char *cache, st_bytes key, st_ttl ttl, mark_fn mark,
                              const void *arg, uint32_t *len) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r;
  st_list *l = find_list(c, key, &r);
  bool *dead = l ? calloc(l->len + 1, sizeof *dead) : NULL;
  if (l && !dead) {
    r = ST_NOMEM;
  } else if (l) {
    mark(l, dead, arg);
    int64_t expires = ttl.refresh ? expiry_for(s, ttl.ttl_ms) : l->expires_ms;
    r = commit_kept(s, c, cache, key, l, dead, expires, len);
  }
  free(dead);
  close_cache(s, c);
  return r;
}

static void mark_outside(const st_list *l, bool *dead, const void *arg) {
  size_t b, e;
  resolve_range(*(const st_range *)arg, l->len, &b, &e);
  for (size_t i = 0; i < l->len; i++) {
    dead[i] = i < b || i >= e;
  }
}

st_result store_list_retain(store *s, const char *cache, st_bytes key, st_range r, st_ttl ttl,
                            uint32_t *len) {
  return list_rewrite(s, cache, key, ttl, mark_outside, &r, len);
}

static void mark_value(const st_list *l, bool *dead, const void *arg) {
  const st_bytes *value = arg;
  for (size_t i = 0; i < l->len; i++) {
    dead[i] = l->v[i].len == value->len &&
              (value->len == 0 || memcmp(l->v[i].data, value->data, value->len) == 0);
  }
}

st_result store_list_remove_value(store *s, const char *cache, st_bytes key, st_bytes value,
                                  uint32_t *len) {
  return list_rewrite(s, cache, key, (st_ttl){0, false}, mark_value, &value, len);
}

/* An erase range as [begin, end): begin + count may exceed 32 bits. */
typedef struct erase_span {
  uint64_t begin, end;
} erase_span;

typedef struct erase_arg {
  const erase_span *spans; /* sorted, disjoint */
  size_t n;
  bool all;
} erase_arg;

static int cmp_span(const void *a, const void *b) {
  const erase_span *x = a, *y = b;
  return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Sorts the ranges and merges those that overlap or touch, so that marking them costs
 * O(list length) however many ranges overlap. Runs before any lock is taken: its cost
 * depends only on the request. NULL on OOM. */
static erase_span *coalesce_ranges(const st_erase *ranges, size_t n, size_t *out_n) {
  erase_span *sp = calloc(n + 1, sizeof *sp);
  if (!sp) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    sp[i] = (erase_span){ranges[i].begin, (uint64_t)ranges[i].begin + ranges[i].count};
  }
  if (n > 1) {
    qsort(sp, n, sizeof *sp, cmp_span);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (sp[i].end == sp[i].begin) {
      continue;
    }
    if (w > 0 && sp[i].begin <= sp[w - 1].end) {
      sp[w - 1].end = sp[i].end > sp[w - 1].end ? sp[i].end : sp[w - 1].end;
    } else {
      sp[w++] = sp[i];
    }
  }
  *out_n = w;
  return sp;
}

/* The ranges are indices of the list before erasing; each element is marked once. */
static void mark_ranges(const st_list *l, bool *dead, const void *arg) {
  const erase_arg *ea = arg;
  for (size_t i = 0; i < ea->n && ea->spans[i].begin < l->len; i++) {
    uint64_t end = ea->spans[i].end < l->len ? ea->spans[i].end : l->len;
    memset(dead + ea->spans[i].begin, 1, (size_t)(end - ea->spans[i].begin) * sizeof *dead);
  }
  if (ea->all && l->len) {
    memset(dead, 1, l->len * sizeof *dead);
  }
}

st_result store_list_erase(store *s, const char *cache, st_bytes key, const st_erase *ranges,
                           size_t n, bool all, uint32_t *len) {
  erase_arg ea = {NULL, 0, all};
  erase_span *spans = coalesce_ranges(ranges, all ? 0 : n, &ea.n);
  if (!spans) {
    return ST_NOMEM;
  }
  ea.spans = spans;
  st_result r = list_rewrite(s, cache, key, (st_ttl){0, false}, mark_ranges, &ea, len);
  free(spans);
  return r;
}

st_result store_list_pop(store *s, const char *cache, st_bytes key, bool front,
                         ProtobufCBinaryData *out, uint32_t *len) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r;
  st_list *l = find_list(c, key, &r);
  r = l ? ST_OK : r;
  if (l && s->p) {
    r = from_persist(persist_pop(s->p, cache, key, front));
  }
  if (l && r == ST_OK) {
    size_t at = front ? 0 : l->len - 1;
    *out = l->v[at]; /* ownership moves to the caller */
    l->bytes -= out->len;
    memmove(l->v + at, l->v + at + 1, (l->len - at - 1) * sizeof *l->v);
    l->len--;
    *len = (uint32_t)l->len;
    drop_if_empty(c, key, l);
  }
  close_cache(s, c);
  return r;
}

st_result store_item_delete(store *s, const char *cache, st_bytes key) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r = ST_OK;
  if (srv_hmap_get(&c->lists, key.data, key.len)) {
    r = s->p ? from_persist(persist_item_delete(s->p, cache, key)) : ST_OK;
    if (r == ST_OK) {
      list_free(srv_hmap_remove(&c->lists, key.data, key.len));
    }
  }
  close_cache(s, c);
  return r;
}

st_result store_item_ttl(store *s, const char *cache, st_bytes key, uint64_t *remaining_ms) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_list *l = find_item(c, key);
  if (l) {
    int64_t left = l->expires_ms - cmn_mono_ms();
    *remaining_ms = left > 0 ? (uint64_t)left : 0;
  }
  close_cache(s, c);
  return l ? ST_OK : ST_MISSING;
}

/* ---- dictionaries ---- */

static st_field *field_new(st_bytes v) {
  st_field *f = malloc(sizeof *f + (v.len ? v.len : 1));
  if (f) {
    f->len = v.len;
    if (v.len) {
      memcpy(f->data, v.data, v.len);
    }
  }
  return f;
}

/* The pairs a set really applies: skip[i] is true when a later pair names the same
 * field (the last one wins). Built before any store lock is taken, as its cost depends
 * only on the request. False on OOM. */
static bool mark_overridden(const st_bytes *fields, size_t n, bool *skip) {
  srv_hmap seen;
  srv_hmap_init(&seen);
  bool ok = true;
  for (size_t i = n; ok && i-- > 0;) {
    if (srv_hmap_get(&seen, fields[i].data, fields[i].len)) {
      skip[i] = true;
    } else {
      ok = srv_hmap_put(&seen, fields[i].data, fields[i].len, &seen);
    }
  }
  srv_hmap_destroy(&seen, NULL);
  return ok;
}

/* The dictionary's field count and bytes once the set is applied. */
static void dict_after_set(const st_list *d, const st_bytes *fields, const st_bytes *values,
                           size_t n, const bool *skip, size_t *count, size_t *bytes) {
  *count = d ? d->fields.count : 0;
  *bytes = d ? d->bytes : 0;
  for (size_t i = 0; i < n; i++) {
    if (skip[i]) {
      continue;
    }
    const st_field *old = d ? srv_hmap_get(&d->fields, fields[i].data, fields[i].len) : NULL;
    if (old) {
      *bytes -= fields[i].len + old->len;
    } else {
      (*count)++;
    }
    *bytes += fields[i].len + values[i].len;
  }
}

/* Replaces or adds one field; false (dictionary unchanged) on OOM. */
static bool dict_put(st_list *d, st_bytes field, st_bytes value) {
  st_field *nv = field_new(value);
  if (!nv) {
    return false;
  }
  st_field *old = srv_hmap_remove(&d->fields, field.data, field.len);
  if (!srv_hmap_put(&d->fields, field.data, field.len, nv)) {
    free(nv);
    if (old && !srv_hmap_put(&d->fields, field.data, field.len, old)) {
      d->bytes -= field.len + old->len; /* unreachable in practice: the slot was just freed */
      free(old);
    }
    return false;
  }
  d->bytes += field.len + value.len;
  if (old) {
    d->bytes -= field.len + old->len;
    free(old);
  }
  return true;
}

static st_list *dict_new(st_cache *c, st_bytes key) {
  st_list *d = calloc(1, sizeof *d);
  if (!d) {
    return NULL;
  }
  d->is_dict = true;
  srv_hmap_init(&d->fields);
  if (!srv_hmap_put(&c->lists, key.data, key.len, d)) {
    list_free(d);
    return NULL;
  }
  return d;
}

/* Applies the pairs not skipped, creating the dictionary when d is NULL, and sets its
 * expiry; ST_NOMEM leaves the fields before the failure set. */
static st_result dict_apply(st_cache *c, st_bytes key, st_list *d, const st_bytes *fields,
                            const st_bytes *values, size_t n, const bool *skip, int64_t expires) {
  if (!d && !(d = dict_new(c, key))) {
    return ST_NOMEM;
  }
  st_result r = ST_OK;
  for (size_t i = 0; i < n && r == ST_OK; i++) {
    if ((!skip || !skip[i]) && !dict_put(d, fields[i], values[i])) {
      r = ST_NOMEM;
    }
  }
  d->expires_ms = expires;
  if (d->fields.count == 0) {
    list_free(srv_hmap_remove(&c->lists, key.data, key.len));
  }
  return r;
}

static st_result dict_set_locked(store *s, st_cache *c, const char *cache, st_bytes key,
                                 const st_bytes *fields, const st_bytes *values, size_t n,
                                 const bool *skip, st_ttl ttl, size_t *item_bytes) {
  st_list *d = find_item(c, key);
  if (d && !d->is_dict) {
    return ST_WRONG_TYPE;
  }
  size_t count, bytes;
  dict_after_set(d, fields, values, n, skip, &count, &bytes);
  if (s->max_list_len && count > s->max_list_len) {
    return ST_TOO_LONG;
  }
  *item_bytes = bytes;
  if (s->max_item_bytes && bytes > s->max_item_bytes) {
    return ST_ITEM_TOO_BIG;
  }
  int64_t expires = !d || ttl.refresh ? expiry_for(s, ttl.ttl_ms) : d->expires_ms;
  if (s->p) {
    /* Recorded first: a failure leaves the dictionary as it was. */
    st_result r = from_persist(
        persist_dict_set(s->p, cache, key, fields, values, n, false, mono_to_wall(expires)));
    if (r != ST_OK) {
      return r;
    }
  }
  return dict_apply(c, key, d, fields, values, n, skip, expires);
}

st_result store_dict_set(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                         const st_bytes *values, size_t n, st_ttl ttl, size_t *item_bytes) {
  bool *skip = calloc(n + 1, sizeof *skip);
  if (!skip || !mark_overridden(fields, n, skip)) {
    free(skip);
    return ST_NOMEM;
  }
  st_result r = ST_NO_CACHE;
  st_cache *c = open_cache(s, cache);
  if (c) {
    size_t ignored = 0;
    r = dict_set_locked(s, c, cache, key, fields, values, n, skip, ttl,
                        item_bytes ? item_bytes : &ignored);
    close_cache(s, c);
  }
  free(skip);
  return r;
}

/* The live dictionary under key; NULL with *why ST_MISSING or ST_WRONG_TYPE (a list). */
static st_list *find_dict(st_cache *c, st_bytes key, st_result *why) {
  st_list *d = find_item(c, key);
  *why = !d ? ST_MISSING : ST_WRONG_TYPE;
  return d && d->is_dict ? d : NULL;
}

static st_result dict_get_locked(st_cache *c, st_bytes key, const st_bytes *fields, size_t n,
                                 ProtobufCBinaryData *out) {
  st_result r;
  st_list *d = find_dict(c, key, &r);
  if (!d) {
    return r;
  }
  for (size_t i = 0; i < n; i++) {
    const st_field *f = srv_hmap_get(&d->fields, fields[i].data, fields[i].len);
    if (f && !dup_value(&out[i], f->data, f->len)) {
      return ST_NOMEM;
    }
  }
  return ST_OK;
}

st_result store_dict_get(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                         size_t n, ProtobufCBinaryData *out) {
  memset(out, 0, n * sizeof *out);
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r = dict_get_locked(c, key, fields, n, out);
  close_cache(s, c);
  if (r == ST_NOMEM) {
    for (size_t i = 0; i < n; i++) {
      free(out[i].data);
      out[i] = (ProtobufCBinaryData){0, NULL};
    }
  }
  return r;
}

typedef struct fetch_ctx {
  ProtobufCBinaryData *out;
  size_t w;
  bool ok;
} fetch_ctx;

static bool copy_pair(void *ctx, srv_hentry *e) {
  fetch_ctx *fc = ctx;
  const st_field *f = e->val;
  if (fc->ok && (fc->ok = dup_value(&fc->out[fc->w], e->key, e->klen))) {
    fc->w++;
    if ((fc->ok = dup_value(&fc->out[fc->w], f->data, f->len))) {
      fc->w++;
    }
  }
  return false;
}

st_result store_dict_fetch(store *s, const char *cache, st_bytes key, ProtobufCBinaryData **out,
                           size_t *n) {
  *out = NULL;
  *n = 0;
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r;
  st_list *d = find_dict(c, key, &r);
  if (d) {
    fetch_ctx fc = {calloc(2 * d->fields.count + 1, sizeof *fc.out), 0, true};
    fc.ok = fc.out != NULL;
    srv_hmap_filter(&d->fields, copy_pair, &fc);
    r = fc.ok ? ST_OK : ST_NOMEM;
    if (fc.ok) {
      *out = fc.out;
      *n = fc.w / 2;
    } else {
      store_values_free(fc.out, fc.w);
    }
  }
  close_cache(s, c);
  return r;
}

void store_set_max_item_bytes(store *s, size_t max_item_bytes) {
  pthread_rwlock_wrlock(&s->lock);
  s->max_item_bytes = max_item_bytes;
  pthread_rwlock_unlock(&s->lock);
}

/* ---- persistence ---- */

void store_set_persist(store *s, persist *p) {
  pthread_rwlock_wrlock(&s->lock);
  s->p = p;
  pthread_rwlock_unlock(&s->lock);
}

typedef struct snap_ctx {
  persist *p;
  const char *cache;
  int64_t now;
} snap_ctx;

/* A dictionary goes into the snapshot one pair per record, the first one fresh: no
 * copy of its pairs is needed while the store is held. */
typedef struct dict_snap {
  snap_ctx *sc;
  st_bytes key;
  int64_t expires_wall;
  bool first;
} dict_snap;

static bool snapshot_pair(void *ctx, srv_hentry *e) {
  dict_snap *ds = ctx;
  const st_field *f = e->val;
  st_bytes field = {e->key, e->klen}, value = {f->data, f->len};
  persist_snapshot_dict(ds->sc->p, ds->sc->cache, ds->key, &field, &value, 1, ds->first,
                        ds->expires_wall);
  ds->first = false;
  return false;
}

static bool snapshot_list(void *ctx, srv_hentry *e) {
  snap_ctx *sc = ctx;
  st_list *l = e->val;
  if (l->is_dict && l->expires_ms > sc->now) {
    dict_snap ds = {sc, {e->key, e->klen}, mono_to_wall(l->expires_ms), true};
    srv_hmap_filter(&l->fields, snapshot_pair, &ds);
    return false;
  }
  if (l->expires_ms > sc->now && l->len && !l->is_dict) {
    persist_snapshot_list(sc->p, sc->cache, (st_bytes){e->key, e->klen}, l->v, l->len,
                          mono_to_wall(l->expires_ms));
  }
  return false;
}

static bool snapshot_cache(void *ctx, srv_hentry *e) {
  snap_ctx *sc = ctx;
  persist_snapshot_cache(sc->p, (const char *)e->key);
  snap_ctx lc = {sc->p, (const char *)e->key, sc->now};
  srv_hmap_filter(&((st_cache *)e->val)->lists, snapshot_list, &lc);
  return false;
}

bool store_compact(store *s, persist *p) {
  pthread_rwlock_wrlock(&s->lock); /* every list operation holds it shared */
  snap_ctx sc = {p, NULL, cmn_mono_ms()};
  persist_snapshot_begin(p);
  srv_hmap_filter(&s->caches, snapshot_cache, &sc);
  bool ok = persist_snapshot_end(p);
  pthread_rwlock_unlock(&s->lock);
  return ok;
}

st_result store_restore_dict(store *s, const char *cache, st_bytes key, const st_bytes *fields,
                             const st_bytes *values, size_t n, bool fresh, int64_t expires_wall) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_list *d = srv_hmap_get(&c->lists, key.data, key.len);
  if (d && (fresh || !d->is_dict)) {
    list_free(srv_hmap_remove(&c->lists, key.data, key.len));
    d = NULL;
  }
  st_result r = dict_apply(c, key, d, fields, values, n, NULL, wall_to_mono(expires_wall));
  close_cache(s, c);
  return r;
}

st_result store_restore_list(store *s, const char *cache, st_bytes key, const st_bytes *vals,
                             size_t n, bool front, bool fresh, uint32_t truncate,
                             int64_t expires_wall) {
  st_cache *c = open_cache(s, cache);
  if (!c) {
    return ST_NO_CACHE;
  }
  st_result r = ST_OK;
  st_list *l = srv_hmap_get(&c->lists, key.data, key.len);
  if (l && fresh) {
    list_cut(l, 0, l->len);
  }
  if (!l) {
    l = calloc(1, sizeof *l);
    if (!l || !srv_hmap_put(&c->lists, key.data, key.len, l)) {
      free(l);
      l = NULL;
      r = ST_NOMEM;
    }
  }
  if (l && !list_insert(l, vals, n, front)) {
    r = ST_NOMEM;
  }
  if (l) {
    if (truncate && l->len > truncate) {
      list_cut(l, front ? truncate : 0, l->len - truncate);
    }
    l->expires_ms = wall_to_mono(expires_wall);
    drop_if_empty(c, key, l);
  }
  close_cache(s, c);
  return r;
}
