/* mim-local: --data-dir persistence. Records are written with one write(2) each on an
 * O_APPEND descriptor, so a crash of the process (not of the machine) never loses an
 * acknowledged write whatever the fsync policy; fsync only guards against power loss. */
#include "persist.h"

#include "clock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
  REC_HEADER = 0, /* u32 magic, u64 generation */
  REC_CACHE_NEW,  /* name */
  REC_CACHE_DEL,  /* name */
  REC_LIST_SET,   /* cache, key, i64 expiry, u32 n, n x value (n = 0: no list) */
  REC_LIST_PUSH,  /* cache, key, u8 flags (1 front, 2 fresh), u32 truncate, i64 expiry,
                   * u32 n, n x value */
  REC_LIST_POP,   /* cache, key, u8 front */
  REC_ITEM_DEL,   /* cache, key */
  REC_TOPIC,      /* cache, topic, u64 page, u64 next sequence number */
  REC_RING,       /* cache, topic, u32 n, n x (u64 seq, bytes packed item) */
};

#define MAGIC 0x314d494dU /* "MIM1" */
#define MAX_RECORD (1u << 30)
/* Test hook (documented in server/README.md): a smaller record limit, so the limit can be
 * tested at its boundary without gigabyte records. */
#define MAX_RECORD_ENV "MIM_LOCAL_MAX_RECORD_BYTES"
#define FSYNC_INTERVAL_MS 100

typedef struct topic_state {
  uint64_t page, next_seq;
  uint8_t *ring; /* REC_RING body (u32 n, items) kept for the topic's next incarnation */
  size_t ring_len;
} topic_state;

static void topic_state_free(void *v) {
  topic_state *t = v;
  if (t) {
    free(t->ring);
    free(t);
  }
}

typedef struct buf {
  uint8_t *d;
  size_t len, cap;
  bool oom;
  bool too_big; /* a record exceeds g_max_record: the reader would stop at it */
} buf;

/* Largest record payload, the same for writing and reading. One data directory per
 * process, set by persist_open. */
static uint32_t g_max_record = MAX_RECORD;

struct persist {
  pthread_mutex_t mu;
  char *dir;
  int log_fd;
  persist_fsync mode;
  uint64_t gen;
  uint64_t log_bytes;
  uint64_t compact_bytes;
  bool dirty;
  /* The log cannot take records: it lost its header (a failed restart after a snapshot)
   * or holds a torn record that could not be cut. Records appended to it would not be
   * replayed, so writes are refused until a compaction rewrites it. */
  bool broken;
  srv_hmap topics; /* "cache\0topic" -> topic_state */
  buf snap;        /* snapshot being built (between begin and end) */
  pthread_t thread;
  pthread_cond_t cv;
  bool thread_started, stopping;
};

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32) ---- */

static uint32_t g_crc_table[256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) {
      c = (c & 1) ? 0xedb88320U ^ (c >> 1) : c >> 1;
    }
    g_crc_table[i] = c;
  }
}

static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
  pthread_once(&g_crc_once, crc_init);
  uint32_t c = 0xffffffffU;
  for (size_t i = 0; i < n; i++) {
    c = g_crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  }
  return c ^ 0xffffffffU;
}

/* ---- encoding ---- */

static void buf_put(buf *b, const void *p, size_t n) {
  if (b->oom) {
    return;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) {
      cap *= 2;
    }
    uint8_t *nd = realloc(b->d, cap);
    if (!nd) {
      b->oom = true;
      return;
    }
    b->d = nd;
    b->cap = cap;
  }
  if (n) {
    memcpy(b->d + b->len, p, n);
  }
  b->len += n;
}

static void put_u8(buf *b, uint8_t v) {
  buf_put(b, &v, 1);
}

static void put_u32(buf *b, uint32_t v) {
  uint8_t x[4];
  for (int i = 0; i < 4; i++) {
    x[i] = (uint8_t)(v >> (8 * i));
  }
  buf_put(b, x, 4);
}

static void put_u64(buf *b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) {
    x[i] = (uint8_t)(v >> (8 * i));
  }
  buf_put(b, x, 8);
}

static void put_bytes(buf *b, const void *p, size_t n) {
  put_u32(b, (uint32_t)n);
  buf_put(b, p, n);
}

static void put_str(buf *b, const char *s) {
  put_bytes(b, s, strlen(s));
}

/* Starts a record at the end of b: room for its length and CRC, then the type. Returns
 * its offset for rec_seal. */
static size_t rec_begin(buf *b, uint8_t type) {
  size_t at = b->len;
  put_u32(b, 0);
  put_u32(b, 0);
  put_u8(b, type);
  return at;
}

/* Fills in length and CRC of the record that starts at offset at. */
static void rec_seal(buf *b, size_t at) {
  if (b->oom) {
    return;
  }
  size_t n = b->len - at - 8;
  if (n > g_max_record) {
    b->too_big = true; /* never written: replay would stop at it */
    return;
  }
  uint32_t crc = crc32_ieee(b->d + at + 8, n);
  for (int i = 0; i < 4; i++) {
    b->d[at + i] = (uint8_t)(n >> (8 * i));
    b->d[at + 4 + i] = (uint8_t)(crc >> (8 * i));
  }
}

/* ---- decoding ---- */

typedef struct rd {
  const uint8_t *p;
  size_t left;
  bool bad;
} rd;

static const uint8_t *get_raw(rd *r, size_t n) {
  if (r->bad || r->left < n) {
    r->bad = true;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

static uint64_t get_le(rd *r, int n) {
  const uint8_t *p = get_raw(r, (size_t)n);
  uint64_t v = 0;
  for (int i = 0; p && i < n; i++) {
    v |= (uint64_t)p[i] << (8 * i);
  }
  return v;
}

static st_bytes get_bytes(rd *r) {
  uint32_t n = (uint32_t)get_le(r, 4);
  const uint8_t *p = get_raw(r, n);
  return (st_bytes){p ? p : (const uint8_t *)"", p ? n : 0};
}

/* A NUL-terminated copy of a name into out (cap bytes); false if it does not fit. */
static bool get_name(rd *r, char *out, size_t cap) {
  st_bytes b = get_bytes(r);
  if (r->bad || b.len == 0 || b.len >= cap || memchr(b.data, 0, b.len)) {
    r->bad = true;
    return false;
  }
  memcpy(out, b.data, b.len);
  out[b.len] = '\0';
  return true;
}

/* ---- files ---- */

static bool write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static char *path_in(const persist *p, const char *name) {
  size_t n = strlen(p->dir) + strlen(name) + 2;
  char *s = malloc(n);
  if (s) {
    snprintf(s, n, "%s/%s", p->dir, name);
  }
  return s;
}

/* Reads a whole file; NULL with *len = 0 if it does not exist or cannot be read. */
static uint8_t *slurp(const char *path, size_t *len) {
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return NULL;
  }
  struct stat st;
  uint8_t *d = NULL;
  if (fstat(fd, &st) == 0 && (d = malloc((size_t)st.st_size + 1))) {
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t r = read(fd, d + got, (size_t)st.st_size - got);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r <= 0) {
        break;
      }
      got += (size_t)r;
    }
    if (got < (size_t)st.st_size) {
      free(d); /* a partial file replayed and compacted would lose its tail for good */
      d = NULL;
      errno = EIO;
    }
    *len = d ? got : 0;
  }
  close(fd);
  return d;
}

static void fsync_dir(const persist *p) {
  int fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* ---- topic table ---- */

static size_t topic_key(char *out, size_t cap, const char *cache, const char *topic) {
  size_t a = strlen(cache), b = strlen(topic);
  if (a + 1 + b > cap) {
    return 0;
  }
  memcpy(out, cache, a);
  out[a] = '\0';
  memcpy(out + a + 1, topic, b);
  return a + 1 + b;
}

static bool topic_put_locked(persist *p, const char *cache, const char *topic, uint64_t page,
                             uint64_t next) {
  char key[1024];
  size_t klen = topic_key(key, sizeof key, cache, topic);
  if (!klen) {
    return false;
  }
  topic_state *t = srv_hmap_get(&p->topics, key, klen);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t || !srv_hmap_put(&p->topics, key, klen, t)) {
      free(t);
      return false;
    }
  }
  t->page = page;
  t->next_seq = next;
  return true;
}

static bool drop_cache_topic(void *ctx, srv_hentry *e) {
  const char *cache = ctx;
  size_t n = strlen(cache);
  if (e->klen > n && memcmp(e->key, cache, n + 1) == 0) {
    topic_state_free(e->val);
    return true;
  }
  return false;
}

/* Walks a ring body (u32 n, n x (u64 seq, bytes)); fn may be NULL. false if malformed
 * or its sequence numbers are not consecutive. *last gets the last one (0: empty). */
static bool ring_walk(const uint8_t *d, size_t len, uint64_t *last,
                      void (*fn)(void *ctx, uint64_t seq, st_bytes msg), void *ctx) {
  rd r = {d, len, false};
  uint32_t n = (uint32_t)get_le(&r, 4);
  *last = 0;
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    uint64_t seq = get_le(&r, 8);
    st_bytes msg = get_bytes(&r);
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

/* Keeps a copy of a ring body for cache/topic (which must have a topic record). */
static bool ring_put_locked(persist *p, const char *cache, const char *topic, const uint8_t *d,
                            size_t len) {
  char key[1024];
  size_t klen = topic_key(key, sizeof key, cache, topic);
  topic_state *t = klen ? srv_hmap_get(&p->topics, key, klen) : NULL;
  uint64_t last;
  if (!t || !ring_walk(d, len, &last, NULL, NULL)) {
    return t != NULL; /* no topic: ignore the ring; malformed: a bad record */
  }
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    return false;
  }
  memcpy(copy, d, len);
  free(t->ring);
  t->ring = copy;
  t->ring_len = len;
  return true;
}

/* ---- replay ---- */

/* A count, then that many values (pointing into the record); NULL when the record is
 * short or out of memory. Free the array (not the values). */
static st_bytes *get_values(rd *r, uint32_t *count) {
  uint32_t n = (uint32_t)get_le(r, 4);
  if (r->bad || n > r->left / 4) {
    return NULL;
  }
  st_bytes *vals = calloc(n ? n : 1, sizeof *vals);
  if (!vals) {
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    vals[i] = get_bytes(r);
  }
  *count = n;
  return vals;
}

static bool replay_list_set(store *s, rd *r, const char *cache, st_bytes key) {
  int64_t exp = (int64_t)get_le(r, 8);
  uint32_t n = 0;
  st_bytes *vals = get_values(r, &n);
  if (!vals) {
    return false;
  }
  bool ok = !r->bad && store_restore_list(s, cache, key, vals, n, false, true, 0, exp) != ST_NOMEM;
  free(vals);
  return ok;
}

static bool replay_push(store *s, rd *r, const char *cache, st_bytes key) {
  uint8_t flags = (uint8_t)get_le(r, 1);
  uint32_t truncate = (uint32_t)get_le(r, 4);
  int64_t exp = (int64_t)get_le(r, 8);
  uint32_t n = 0;
  st_bytes *vals = get_values(r, &n);
  if (!vals) {
    return false;
  }
  bool ok = !r->bad && store_restore_list(s, cache, key, vals, n, flags & 1, flags & 2, truncate,
                                          exp) != ST_NOMEM;
  free(vals);
  return ok;
}

/* Applies one record's payload; false if it is malformed. */
static bool apply(persist *p, store *s, const uint8_t *d, size_t n, uint64_t *gen) {
  rd r = {d, n, false};
  uint8_t type = (uint8_t)get_le(&r, 1);
  char cache[1024], topic[1024];
  ProtobufCBinaryData popped;
  uint32_t len;
  switch (type) {
  case REC_HEADER:
    if (get_le(&r, 4) != MAGIC) {
      return false;
    }
    *gen = get_le(&r, 8);
    return !r.bad;
  case REC_CACHE_NEW:
    return get_name(&r, cache, sizeof cache) && store_cache_create(s, cache) != ST_NOMEM;
  case REC_CACHE_DEL:
    if (!get_name(&r, cache, sizeof cache)) {
      return false;
    }
    store_cache_delete(s, cache);
    srv_hmap_filter(&p->topics, drop_cache_topic, cache);
    return true;
  case REC_LIST_SET:
  case REC_LIST_PUSH:
  case REC_LIST_POP:
  case REC_ITEM_DEL: {
    if (!get_name(&r, cache, sizeof cache)) {
      return false;
    }
    st_bytes key = get_bytes(&r);
    if (r.bad || key.len == 0) {
      return false;
    }
    if (type == REC_LIST_SET) {
      return replay_list_set(s, &r, cache, key);
    }
    if (type == REC_LIST_PUSH) {
      return replay_push(s, &r, cache, key);
    }
    if (type == REC_ITEM_DEL) {
      store_item_delete(s, cache, key);
      return true;
    }
    bool front = get_le(&r, 1) != 0;
    if (!r.bad && store_list_pop(s, cache, key, front, &popped, &len) == ST_OK) {
      free(popped.data);
    }
    return !r.bad;
  }
  case REC_TOPIC: {
    if (!get_name(&r, cache, sizeof cache) || !get_name(&r, topic, sizeof topic)) {
      return false;
    }
    uint64_t page = get_le(&r, 8), next = get_le(&r, 8);
    return !r.bad && topic_put_locked(p, cache, topic, page, next);
  }
  case REC_RING:
    if (!get_name(&r, cache, sizeof cache) || !get_name(&r, topic, sizeof topic)) {
      return false;
    }
    return ring_put_locked(p, cache, topic, r.p, r.left);
  default:
    return false;
  }
}

/* Replays a file; returns the length of its valid prefix. *gen gets its header's
 * generation (0 if none). */
static size_t replay_file(persist *p, store *s, const uint8_t *d, size_t len, uint64_t *gen,
                          const char *what) {
  size_t off = 0;
  *gen = 0;
  while (off + 8 <= len) {
    uint32_t n =
        (uint32_t)(d[off] | d[off + 1] << 8 | d[off + 2] << 16 | (uint32_t)d[off + 3] << 24);
    uint32_t crc =
        (uint32_t)(d[off + 4] | d[off + 5] << 8 | d[off + 6] << 16 | (uint32_t)d[off + 7] << 24);
    if (n == 0 || n > g_max_record || n > len - off - 8) {
      break; /* torn tail */
    }
    if (crc32_ieee(d + off + 8, n) != crc) {
      srv_log(LOG_WARN, "persist: %s: bad CRC at offset %zu; ignoring the rest", what, off);
      break;
    }
    bool is_header = d[off + 8] == REC_HEADER;
    if (off == 0 ? !is_header : is_header) {
      break; /* a file starts with exactly one header */
    }
    if (!apply(p, s, d + off + 8, n, gen)) {
      srv_log(LOG_WARN, "persist: %s: bad record at offset %zu; ignoring the rest", what, off);
      break;
    }
    off += 8 + n;
  }
  if (off < len) {
    srv_log(LOG_WARN, "persist: %s: dropped %zu trailing bytes", what, len - off);
  }
  return off;
}

/* The header's generation without applying anything. */
static uint64_t file_gen(const uint8_t *d, size_t len) {
  if (len < 8 + 13 || d[8] != REC_HEADER) {
    return 0;
  }
  rd r = {d + 9, 12, false};
  if (get_le(&r, 4) != MAGIC) {
    return 0;
  }
  return get_le(&r, 8);
}

static bool load(persist *p, store *s) {
  char *snap_path = path_in(p, "snapshot"), *log_path = path_in(p, "log");
  bool ok = snap_path && log_path;
  size_t slen = 0, llen = 0;
  /* Only a missing file means "nothing yet": on any other failure the start must fail,
   * since the compaction that follows would overwrite the data with an empty store. */
  uint8_t *snap = ok ? slurp(snap_path, &slen) : NULL;
  ok = ok && (snap || errno == ENOENT);
  uint8_t *log = ok ? slurp(log_path, &llen) : NULL;
  ok = ok && (log || errno == ENOENT);
  uint64_t sgen = 0, lgen = 0;
  if (snap) {
    replay_file(p, s, snap, slen, &sgen, "snapshot");
  }
  if (log && file_gen(log, llen) >= sgen && file_gen(log, llen) > 0) {
    /* A log older than the snapshot was compacted into it already (a crash between the
     * snapshot's rename and the log's truncation). */
    replay_file(p, s, log, llen, &lgen, "log");
  }
  p->gen = (sgen > lgen ? sgen : lgen);
  free(snap);
  free(log);
  free(snap_path);
  free(log_path);
  return ok;
}

/* ---- writing ---- */

/* Cuts what a failed append left behind: replay stops at the first bad record, so
 * every later record appended behind a torn one would be lost at the next start. */
static void cut_tail_locked(persist *p) {
  if (ftruncate(p->log_fd, (off_t)p->log_bytes) != 0) {
    srv_log(LOG_ERROR, "persist: cannot cut a torn log record: %s", strerror(errno));
    p->broken = true;
  }
}

/* Appends the sealed records in b. Anything but PERSIST_OK means nothing was recorded
 * and the caller must not apply the change (memory and disk must agree). */
static persist_rc log_write_locked(persist *p, buf *b) {
  if (b->too_big) {
    srv_log(LOG_WARN, "persist: refused a record larger than %u bytes", g_max_record);
    return PERSIST_TOO_BIG;
  }
  if (b->oom || p->log_fd < 0 || p->broken) {
    /* A broken log was reported when it broke: one line per refused write would flood. */
    srv_log(p->broken && !b->oom ? LOG_DEBUG : LOG_ERROR, "persist: cannot record a mutation (%s)",
            b->oom ? "out of memory" : "the log is not writable");
    return PERSIST_FAILED;
  }
  if (!write_all(p->log_fd, b->d, b->len)) {
    srv_log(LOG_ERROR, "persist: log write failed: %s", strerror(errno));
    cut_tail_locked(p);
    return PERSIST_FAILED;
  }
  if (p->mode == PERSIST_FSYNC_ALWAYS && fdatasync(p->log_fd) != 0) {
    /* Not known to be on disk: under "always" that cannot be acknowledged. */
    srv_log(LOG_ERROR, "persist: log fdatasync failed: %s", strerror(errno));
    cut_tail_locked(p);
    return PERSIST_FAILED;
  }
  p->log_bytes += b->len;
  p->dirty = p->mode != PERSIST_FSYNC_ALWAYS;
  return PERSIST_OK;
}

/* Appends the records built in b (outside the lock) and frees b. */
static persist_rc emit(persist *p, buf *b) {
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, b);
  pthread_mutex_unlock(&p->mu);
  free(b->d);
  return rc;
}

persist_rc persist_cache(persist *p, bool create, const char *name) {
  buf b = {0};
  rec_begin(&b, create ? REC_CACHE_NEW : REC_CACHE_DEL);
  put_str(&b, name);
  rec_seal(&b, 0);
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, &b);
  if (rc == PERSIST_OK && !create) {
    srv_hmap_filter(&p->topics, drop_cache_topic, (void *)name);
  }
  pthread_mutex_unlock(&p->mu);
  free(b.d);
  return rc;
}

static size_t put_list_head(buf *b, uint8_t type, const char *cache, st_bytes key) {
  size_t at = rec_begin(b, type);
  put_str(b, cache);
  put_bytes(b, key.data, key.len);
  return at;
}

persist_rc persist_push(persist *p, const char *cache, st_bytes key, const st_bytes *vals, size_t n,
                        bool front, bool fresh, uint32_t truncate, int64_t expires_wall) {
  buf b = {0};
  put_list_head(&b, REC_LIST_PUSH, cache, key);
  put_u8(&b, (uint8_t)((front ? 1 : 0) | (fresh ? 2 : 0)));
  put_u32(&b, truncate);
  put_u64(&b, (uint64_t)expires_wall);
  put_u32(&b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    put_bytes(&b, vals[i].data, vals[i].len);
  }
  rec_seal(&b, 0);
  return emit(p, &b);
}

/* A list's whole content as a list-set record followed, when it would not fit in one
 * record, by push-back records: a long list never makes a record the reader refuses.
 * Only a single value too large on its own leaves b->too_big set. */
static void put_list_set(buf *b, const char *cache, st_bytes key, const ProtobufCBinaryData *v,
                         size_t n, int64_t expires_wall) {
  size_t i = 0;
  bool first = true;
  do {
    /* type, cache, key, [flags, truncate,] expiry, count */
    size_t size = 1 + 4 + strlen(cache) + 4 + key.len + (first ? 0 : 5) + 8 + 4;
    size_t end = i;
    while (end < n && size + 4 + v[end].len <= g_max_record) {
      size += 4 + v[end].len;
      end++;
    }
    if (end == i && i < n) {
      end = i + 1; /* too large alone: rec_seal flags it */
    }
    size_t at = put_list_head(b, first ? REC_LIST_SET : REC_LIST_PUSH, cache, key);
    if (!first) {
      put_u8(b, 0); /* back, onto the list the set record started */
      put_u32(b, 0);
    }
    put_u64(b, (uint64_t)expires_wall);
    put_u32(b, (uint32_t)(end - i));
    for (; i < end; i++) {
      put_bytes(b, v[i].data, v[i].len);
    }
    rec_seal(b, at);
    first = false;
  } while (i < n);
}

persist_rc persist_list_set(persist *p, const char *cache, st_bytes key,
                            const ProtobufCBinaryData *v, size_t n, int64_t expires_wall) {
  buf b = {0};
  put_list_set(&b, cache, key, v, n, expires_wall);
  return emit(p, &b);
}

persist_rc persist_pop(persist *p, const char *cache, st_bytes key, bool front) {
  buf b = {0};
  put_list_head(&b, REC_LIST_POP, cache, key);
  put_u8(&b, front ? 1 : 0);
  rec_seal(&b, 0);
  return emit(p, &b);
}

persist_rc persist_item_delete(persist *p, const char *cache, st_bytes key) {
  buf b = {0};
  put_list_head(&b, REC_ITEM_DEL, cache, key);
  rec_seal(&b, 0);
  return emit(p, &b);
}

static void put_topic(buf *b, const char *cache, const char *topic, uint64_t page, uint64_t next) {
  rec_begin(b, REC_TOPIC);
  put_str(b, cache);
  put_str(b, topic);
  put_u64(b, page);
  put_u64(b, next);
}

bool persist_topic_get(persist *p, const char *cache, const char *topic, uint64_t *page,
                       uint64_t *next_seq) {
  char key[1024];
  size_t klen = topic_key(key, sizeof key, cache, topic);
  pthread_mutex_lock(&p->mu);
  topic_state *t = klen ? srv_hmap_get(&p->topics, key, klen) : NULL;
  if (t) {
    *page = t->page;
    *next_seq = t->next_seq;
  }
  pthread_mutex_unlock(&p->mu);
  return t != NULL;
}

persist_rc persist_topic_set(persist *p, const char *cache, const char *topic, uint64_t page,
                             uint64_t next_seq) {
  buf b = {0};
  put_topic(&b, cache, topic, page, next_seq);
  rec_seal(&b, 0);
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, &b);
  if (rc == PERSIST_OK && !topic_put_locked(p, cache, topic, page, next_seq)) {
    /* On record but not in the table the next snapshot is built from. */
    rc = PERSIST_FAILED;
  }
  pthread_mutex_unlock(&p->mu);
  free(b.d);
  return rc;
}

void persist_topic_ring(persist *p, const char *cache, const char *topic, size_t n,
                        const uint64_t *seqs, const st_bytes *msgs) {
  buf b = {0};
  rec_begin(&b, REC_RING);
  put_str(&b, cache);
  put_str(&b, topic);
  size_t body = b.len;
  put_u32(&b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    put_u64(&b, seqs[i]);
    put_bytes(&b, msgs[i].data, msgs[i].len);
  }
  rec_seal(&b, 0);
  pthread_mutex_lock(&p->mu);
  if (!b.oom && !b.too_big) {
    ring_put_locked(p, cache, topic, b.d + body, b.len - body);
  }
  log_write_locked(p, &b); /* at a clean stop: a ring that is not kept costs a discontinuity */
  pthread_mutex_unlock(&p->mu);
  free(b.d);
}

void persist_topic_take_ring(persist *p, const char *cache, const char *topic, uint64_t last_seq,
                             void (*fn)(void *ctx, uint64_t seq, st_bytes msg), void *ctx) {
  char key[1024];
  size_t klen = topic_key(key, sizeof key, cache, topic);
  pthread_mutex_lock(&p->mu);
  topic_state *t = klen ? srv_hmap_get(&p->topics, key, klen) : NULL;
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
  pthread_mutex_unlock(&p->mu);
}

/* ---- compaction ---- */

bool persist_wants_compaction(persist *p) {
  pthread_mutex_lock(&p->mu);
  bool big = p->log_bytes > p->compact_bytes || p->broken; /* a rewrite repairs it */
  pthread_mutex_unlock(&p->mu);
  return big;
}

static void put_header(buf *b, uint64_t gen) {
  size_t at = b->len;
  put_u32(b, 0);
  put_u32(b, 0);
  put_u8(b, REC_HEADER);
  put_u32(b, MAGIC);
  put_u64(b, gen);
  rec_seal(b, at);
}

bool persist_snapshot_begin(persist *p) {
  pthread_mutex_lock(&p->mu); /* held until persist_snapshot_end */
  p->snap = (buf){0};
  put_header(&p->snap, p->gen + 1);
  return true;
}

/* Appends a cache record to the snapshot buffer. */
void persist_snapshot_cache(persist *p, const char *name) {
  size_t at = p->snap.len;
  put_u32(&p->snap, 0);
  put_u32(&p->snap, 0);
  put_u8(&p->snap, REC_CACHE_NEW);
  put_str(&p->snap, name);
  rec_seal(&p->snap, at);
}

void persist_snapshot_list(persist *p, const char *cache, st_bytes key,
                           const ProtobufCBinaryData *v, size_t n, int64_t expires_wall) {
  buf tmp = {0};
  put_list_set(&tmp, cache, key, v, n, expires_wall);
  p->snap.oom |= tmp.oom;
  p->snap.too_big |= tmp.too_big;
  buf_put(&p->snap, tmp.d, tmp.len);
  free(tmp.d);
}

static bool snapshot_topic(void *ctx, srv_hentry *e) {
  persist *p = ctx;
  topic_state *t = e->val;
  const char *cache = (const char *)e->key;
  const char *topic = cache + strlen(cache) + 1;
  buf tmp = {0};
  put_topic(&tmp, cache, topic, t->page, t->next_seq);
  rec_seal(&tmp, 0);
  if (t->ring) {
    size_t at = tmp.len;
    put_u32(&tmp, 0);
    put_u32(&tmp, 0);
    put_u8(&tmp, REC_RING);
    put_str(&tmp, cache);
    put_str(&tmp, topic);
    buf_put(&tmp, t->ring, t->ring_len);
    rec_seal(&tmp, at);
  }
  p->snap.oom |= tmp.oom;
  p->snap.too_big |= tmp.too_big;
  buf_put(&p->snap, tmp.d, tmp.len);
  free(tmp.d);
  return false;
}

/* Writes DIR/snapshot.tmp, fsyncs, renames over DIR/snapshot. */
static bool write_snapshot(persist *p) {
  char *tmp = path_in(p, "snapshot.tmp"), *dst = path_in(p, "snapshot");
  bool ok = false;
  int fd = tmp && dst ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  if (fd >= 0) {
    ok = write_all(fd, p->snap.d, p->snap.len) && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, dst) == 0;
    if (!ok) {
      unlink(tmp);
    }
    fsync_dir(p);
  }
  free(tmp);
  free(dst);
  return ok;
}

/* Replaces the log with one that holds only the new generation's header: written to
 * log.tmp, synced, renamed over the log. On failure the old log stays as it was. */
static bool reset_log(persist *p, uint64_t gen) {
  buf h = {0};
  put_header(&h, gen);
  char *tmp = path_in(p, "log.tmp"), *dst = path_in(p, "log");
  int fd = !h.oom && tmp && dst
               ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)
               : -1;
  bool ok = fd >= 0 && write_all(fd, h.d, h.len) && fdatasync(fd) == 0 && rename(tmp, dst) == 0;
  if (ok) {
    fsync_dir(p);
    /* dup2 swaps the file behind the same descriptor number at once, so the fsync
     * thread (which uses the number outside the lock) never sees a closed one. */
    ok = dup2(fd, p->log_fd) >= 0;
  }
  int err = errno; /* for the caller's message, past the clean-up below */
  if (!ok && tmp) {
    unlink(tmp);
  }
  if (fd >= 0) {
    close(fd);
  }
  if (ok) {
    p->log_bytes = h.len;
  }
  free(tmp);
  free(dst);
  free(h.d);
  errno = err;
  return ok;
}

bool persist_snapshot_end(persist *p) {
  srv_hmap_filter(&p->topics, snapshot_topic, p);
  bool ok = !p->snap.oom && !p->snap.too_big && write_snapshot(p);
  if (ok) {
    p->gen++;
    ok = reset_log(p, p->gen);
    /* The old log's generation is now older than the snapshot's: records appended to
     * it would be skipped at the next start, so refuse writes until a retry works. */
    p->broken = !ok;
    if (!ok) {
      srv_log(LOG_ERROR,
              "persist: cannot restart the log after a snapshot: %s; refusing "
              "writes until a compaction succeeds",
              strerror(errno));
    }
  } else {
    srv_log(LOG_ERROR, "persist: cannot write the snapshot; keeping the log");
  }
  free(p->snap.d);
  p->snap = (buf){0};
  pthread_mutex_unlock(&p->mu);
  return ok;
}

/* ---- life cycle ---- */

bool persist_parse_fsync(const char *s, persist_fsync *out) {
  static const char *names[] = {"always", "interval", "never"};
  for (int i = 0; i < 3; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (persist_fsync)i;
      return true;
    }
  }
  return false;
}

/* --fsync interval: one fdatasync per 100 ms when something was written. */
static void *fsync_thread(void *arg) {
  persist *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stopping) {
    struct timespec ts = cmn_deadline_after_ms(FSYNC_INTERVAL_MS);
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    if (p->dirty) {
      p->dirty = false;
      int fd = p->log_fd;
      pthread_mutex_unlock(&p->mu);
      fdatasync(fd); /* the descriptor lives until persist_close joined this thread */
      pthread_mutex_lock(&p->mu);
    }
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void destroy(persist *p) {
  if (p->log_fd >= 0) {
    close(p->log_fd);
  }
  srv_hmap_destroy(&p->topics, topic_state_free);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->dir);
  free(p);
}

persist *persist_open(const char *dir, persist_fsync mode, uint64_t compact_bytes, store *s) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    srv_log(LOG_ERROR, "persist: cannot create the data directory: %s", strerror(errno));
    return NULL;
  }
  persist *p = calloc(1, sizeof *p);
  if (!p) {
    return NULL;
  }
  p->dir = strdup(dir);
  p->mode = mode;
  p->compact_bytes = compact_bytes ? compact_bytes : PERSIST_COMPACT_BYTES;
  const char *max = getenv(MAX_RECORD_ENV);
  unsigned long long m = max ? strtoull(max, NULL, 10) : 0;
  g_max_record = m >= 64 && m <= MAX_RECORD ? (uint32_t)m : MAX_RECORD;
  p->log_fd = -1;
  pthread_mutex_init(&p->mu, NULL);
  cmn_cond_init_monotonic(&p->cv);
  srv_hmap_init(&p->topics);
  char *log_path = p->dir ? path_in(p, "log") : NULL;
  bool ok = log_path && load(p, s);
  if (ok) {
    p->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ok = p->log_fd >= 0;
  }
  free(log_path);
  /* Compact at once: a clean snapshot, and a log without its torn or corrupt tail. */
  ok = ok && store_compact(s, p);
  if (!ok) {
    srv_log(LOG_ERROR, "persist: cannot open the data directory");
    destroy(p);
    return NULL;
  }
  if (mode == PERSIST_FSYNC_INTERVAL) {
    p->thread_started = pthread_create(&p->thread, NULL, fsync_thread, p) == 0;
  }
  size_t ncaches = 0;
  char **names = store_cache_names(s, &ncaches);
  for (size_t i = 0; i < ncaches; i++) {
    free(names[i]);
  }
  free(names);
  srv_log(LOG_INFO, "persist: data directory loaded (%zu caches, %zu topics, generation %llu)",
          ncaches, p->topics.count, (unsigned long long)p->gen);
  return p;
}

void persist_close(persist *p) {
  if (!p) {
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (p->thread_started) {
    pthread_join(p->thread, NULL);
  }
  if (p->log_fd >= 0 && p->mode != PERSIST_FSYNC_NEVER) {
    fdatasync(p->log_fd);
  }
  destroy(p);
}
