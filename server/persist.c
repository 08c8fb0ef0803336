/* mim-local: --data-dir persistence. Records are written with one write(2) each on an
 * O_APPEND descriptor, so a crash of the process (not of the machine) never loses an
 * acknowledged write whatever the fsync policy; fsync only guards against power loss. */
#include "persist.h"

#include "clock.h"

#include "record.h"
#include "topic_state.h"
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

#define FSYNC_INTERVAL_MS 100

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
  topic_states topics; /* pubsub's page / next sequence number / kept ring per topic */
  rec_buf snap;        /* snapshot being built (between begin and end) */
  pthread_t thread;
  pthread_cond_t cv;
  bool thread_started, stopping;
};

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

/* ---- replay ---- */

/* Damaged regions logged one by one per file; more are only counted. */
#define DAMAGE_LINES 10

/* What start-up found in one file. */
typedef struct file_scan {
  const char *dir;
  const char *what;  /* "snapshot" or "log" */
  bool tail_ok;      /* a record cut short at the end is a crash mid-append (the log) */
  size_t damaged;    /* damaged regions */
  size_t first_bad;  /* offset of the first */
  size_t lost_bytes; /* bytes in damaged regions */
  size_t after;      /* intact records read after the first damaged region */
} file_scan;

static void damage(file_scan *fs, size_t off, size_t to, const char *why) {
  if (fs->damaged++ == 0) {
    fs->first_bad = off;
  }
  fs->lost_bytes += to - off;
  if (fs->damaged <= DAMAGE_LINES) {
    srv_log(LOG_ERROR, "persist: %s/%s: damaged at offset %zu (%s): %zu bytes unreadable", fs->dir,
            fs->what, off, why, to - off);
  }
}

/* Where reading can go on after a bad record at off: right behind it if its length
 * still leads to a record (a flipped bit in its payload), else at the next offset
 * where a record checks out. A fresh scan could find a record-like value inside the
 * damaged record's payload, so the record's own length is tried first. */
static size_t skip_damage(const uint8_t *d, size_t len, size_t off, rec_frame fr, uint32_t n) {
  if (fr != REC_FRAME_SHORT && n > 0 && n <= rec_limit() && n <= len - off - 8 &&
      rec_plausible_at(d, len, off + 8 + n)) {
    return off + 8 + n;
  }
  return rec_resync(d, len, off + 1);
}

/* Reads the header; returns where the records start (past the damage if it is bad). */
static size_t scan_header(const uint8_t *d, size_t len, file_scan *fs, uint64_t *gen, bool *known) {
  size_t hlen = 0;
  *known = len > 0 && rec_read_header(d, len, gen, &hlen);
  if (*known || len == 0) {
    return hlen; /* an empty log: created, then a crash before the first compaction */
  }
  uint32_t n;
  rec_frame fr = rec_frame_at(d, len, 0, &n);
  size_t next = fr == REC_FRAME_OK && d[8] != REC_HEADER ? 0 : skip_damage(d, len, 0, fr, n);
  damage(fs, 0, next, "bad or missing header");
  return next;
}

/* Whether what is left from a bad record on (no record follows) is what a crash
 * mid-append leaves: a record cut short, or zeros where the file grew but its data
 * never reached the disk (a power loss on some file systems). Not damage: logged. */
static bool torn_tail(const file_scan *fs, const uint8_t *d, size_t len, size_t off) {
  bool zeros = true;
  for (size_t i = off; i < len && zeros; i++) {
    zeros = d[i] == 0;
  }
  if (!zeros && !rec_torn_at(d, len, off)) {
    return false;
  }
  srv_log(zeros ? LOG_WARN : LOG_INFO, "persist: %s/%s: dropped %s from offset %zu to its end",
          fs->dir, fs->what, zeros ? "zero bytes" : "a record cut short", off);
  return true;
}

/* Replays the records of a file from off on, past any damage (every region found is
 * recorded in fs). */
static void replay_records(persist *p, const persist_replay *rp, const uint8_t *d, size_t len,
                           size_t off, file_scan *fs) {
  while (off < len) {
    uint32_t n;
    rec_frame fr = rec_frame_at(d, len, off, &n);
    if (fr == REC_FRAME_OK) {
      /* A header is only valid as the first record. */
      if (d[off + 8] != REC_HEADER && rp->apply(rp->ctx, p, d + off + 8, n)) {
        fs->after += fs->damaged > 0;
      } else {
        damage(fs, off, off + 8 + n, "a record that does not parse");
      }
      off += 8 + n;
      continue;
    }
    size_t next = skip_damage(d, len, off, fr, n);
    if (next == len && fs->tail_ok && torn_tail(fs, d, len, off)) {
      return;
    }
    damage(fs, off, next,
           fr == REC_FRAME_SHORT ? "a record that runs past the end" : "bad length or CRC");
    off = next;
  }
}

/* Writes a new file with exactly d[0..len), synced. */
static bool write_new_file(const char *path, const uint8_t *d, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return false;
  }
  bool ok = write_all(fd, d, len) && fsync(fd) == 0;
  return close(fd) == 0 && ok;
}

/* A new DIR/damaged-<UTC time>[-k] directory into out. */
static bool make_damaged_dir(const persist *p, char *out, size_t cap) {
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
  for (int k = 0; k < 100; k++) {
    snprintf(out, cap, k ? "%s/damaged-%s-%d" : "%s/damaged-%s", p->dir, stamp, k);
    if (mkdir(out, 0700) == 0) {
      return true;
    }
    if (errno != EEXIST) {
      break;
    }
  }
  srv_log(LOG_ERROR, "persist: cannot create %s: %s", out, strerror(errno));
  return false;
}

/* --recover: copies both files, exactly as they were read, into a new directory before
 * the compaction that follows replaces them. */
static bool keep_damaged(const persist *p, const uint8_t *snap, size_t slen, const uint8_t *log,
                         size_t llen) {
  char dir[4096], path[4200];
  if (!make_damaged_dir(p, dir, sizeof dir)) {
    return false;
  }
  bool ok = true;
  if (snap) {
    snprintf(path, sizeof path, "%s/snapshot", dir);
    ok = write_new_file(path, snap, slen);
  }
  if (ok && log) {
    snprintf(path, sizeof path, "%s/log", dir);
    ok = write_new_file(path, log, llen);
  }
  if (!ok) {
    srv_log(LOG_ERROR, "persist: cannot keep a copy of the damaged files in %s: %s", dir,
            strerror(errno));
    return false;
  }
  fsync_dir(p);
  srv_log(LOG_WARN, "persist: --recover: the damaged files, as read, are kept in %s", dir);
  return true;
}

/* Damage found: refuse to start (the files stay as they are), or with --recover keep
 * a copy of them and go on with every intact record. */
static bool judge_damage(const persist *p, const persist_replay *rp, const file_scan *fs,
                         const uint8_t *snap, size_t slen, const uint8_t *log, size_t llen) {
  size_t after = fs[0].after + fs[1].after, lost = fs[0].lost_bytes + fs[1].lost_bytes;
  const file_scan *first = fs[0].damaged ? &fs[0] : &fs[1];
  if (!rp->recover) {
    srv_log(LOG_ERROR,
            "persist: %s/%s is damaged (first at offset %zu; %zu bytes unreadable in all, "
            "%zu intact records after the damage): refusing to start, the files are left "
            "unchanged. Start with --recover to keep a copy of them in %s/damaged-<time>/ "
            "and load every intact record",
            first->dir, first->what, first->first_bad, lost, after, first->dir);
    return false;
  }
  if (!keep_damaged(p, snap, slen, log, llen)) {
    return false;
  }
  srv_log(LOG_WARN,
          "persist: --recover: loaded what is intact; %zu unreadable bytes skipped, %zu intact "
          "records read after the damage",
          lost, after);
  return true;
}

/* Whether the log belongs on top of the snapshot: a log of an older generation was
 * compacted into it already (a crash between the snapshot's rename and the log's
 * truncation). A newer log means the snapshot it was built on is missing or old. */
static bool log_is_current(file_scan *ss, bool have_snap, bool sknown, uint64_t sgen, bool lknown,
                           uint64_t lgen) {
  if (!lknown || (have_snap && !sknown)) {
    return true; /* unknown generations (damaged headers): keep every record there is */
  }
  if (lgen > sgen) {
    srv_log(LOG_ERROR, "persist: %s/log is of generation %llu, but the snapshot %s", ss->dir,
            (unsigned long long)lgen, have_snap ? "is older" : "is missing");
    damage(ss, 0, 0, have_snap ? "older than the log" : "missing");
  }
  return lgen >= sgen;
}

static bool load(persist *p, const persist_replay *rp) {
  char *snap_path = path_in(p, "snapshot"), *log_path = path_in(p, "log");
  bool ok = snap_path && log_path;
  size_t slen = 0, llen = 0;
  /* Only a missing file means "nothing yet": on any other failure the start must fail,
   * since the compaction that follows would overwrite the data with an empty store. */
  uint8_t *snap = ok ? slurp(snap_path, &slen) : NULL;
  ok = ok && (snap || errno == ENOENT);
  uint8_t *log = ok ? slurp(log_path, &llen) : NULL;
  ok = ok && (log || errno == ENOENT);
  file_scan fs[2] = {{.dir = p->dir, .what = "snapshot"},
                     {.dir = p->dir, .what = "log", .tail_ok = true}};
  uint64_t sgen = 0, lgen = 0;
  bool sknown = false, lknown = false;
  size_t sstart = ok && snap ? scan_header(snap, slen, &fs[0], &sgen, &sknown) : 0;
  size_t lstart = ok && log ? scan_header(log, llen, &fs[1], &lgen, &lknown) : 0;
  if (ok && snap) {
    replay_records(p, rp, snap, slen, sstart, &fs[0]);
  }
  if (ok && log && llen > 0 && log_is_current(&fs[0], snap != NULL, sknown, sgen, lknown, lgen)) {
    replay_records(p, rp, log, llen, lstart, &fs[1]);
  }
  p->gen = (sgen > lgen ? sgen : lgen);
  if (ok && fs[0].damaged + fs[1].damaged) {
    ok = judge_damage(p, rp, fs, snap, slen, log, llen);
  }
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
static persist_rc log_write_locked(persist *p, rec_buf *b) {
  if (b->too_big) {
    srv_log(LOG_WARN, "persist: refused a record larger than %u bytes", rec_limit());
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
static persist_rc emit(persist *p, rec_buf *b) {
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, b);
  pthread_mutex_unlock(&p->mu);
  free(b->d);
  return rc;
}

persist_rc persist_cache(persist *p, bool create, const char *name) {
  rec_buf b = {0};
  rec_begin(&b, create ? REC_CACHE_NEW : REC_CACHE_DEL);
  rec_put_str(&b, name);
  rec_seal(&b, 0);
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, &b);
  if (rc == PERSIST_OK && !create) {
    topic_states_drop_cache(&p->topics, name);
  }
  pthread_mutex_unlock(&p->mu);
  free(b.d);
  return rc;
}

static size_t put_list_head(rec_buf *b, uint8_t type, const char *cache, st_bytes key) {
  size_t at = rec_begin(b, type);
  rec_put_str(b, cache);
  rec_put_bytes(b, key.data, key.len);
  return at;
}

persist_rc persist_push(persist *p, const char *cache, st_bytes key, const st_bytes *vals, size_t n,
                        bool front, bool fresh, uint32_t truncate, int64_t expires_wall) {
  rec_buf b = {0};
  put_list_head(&b, REC_LIST_PUSH, cache, key);
  rec_put_u8(&b, (uint8_t)((front ? 1 : 0) | (fresh ? 2 : 0)));
  rec_put_u32(&b, truncate);
  rec_put_u64(&b, (uint64_t)expires_wall);
  rec_put_u32(&b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    rec_put_bytes(&b, vals[i].data, vals[i].len);
  }
  rec_seal(&b, 0);
  return emit(p, &b);
}

/* A list's whole content as a list-set record followed, when it would not fit in one
 * record, by push-back records: a long list never makes a record the reader refuses.
 * Only a single value too large on its own leaves b->too_big set. */
static void put_list_set(rec_buf *b, const char *cache, st_bytes key, const ProtobufCBinaryData *v,
                         size_t n, int64_t expires_wall) {
  size_t i = 0;
  bool first = true;
  do {
    /* type, cache, key, [flags, truncate,] expiry, count */
    size_t size = 1 + 4 + strlen(cache) + 4 + key.len + (first ? 0 : 5) + 8 + 4;
    size_t end = i;
    while (end < n && size + 4 + v[end].len <= rec_limit()) {
      size += 4 + v[end].len;
      end++;
    }
    if (end == i && i < n) {
      end = i + 1; /* too large alone: rec_seal flags it */
    }
    size_t at = put_list_head(b, first ? REC_LIST_SET : REC_LIST_PUSH, cache, key);
    if (!first) {
      rec_put_u8(b, 0); /* back, onto the list the set record started */
      rec_put_u32(b, 0);
    }
    rec_put_u64(b, (uint64_t)expires_wall);
    rec_put_u32(b, (uint32_t)(end - i));
    for (; i < end; i++) {
      rec_put_bytes(b, v[i].data, v[i].len);
    }
    rec_seal(b, at);
    first = false;
  } while (i < n);
}

persist_rc persist_list_set(persist *p, const char *cache, st_bytes key,
                            const ProtobufCBinaryData *v, size_t n, int64_t expires_wall) {
  rec_buf b = {0};
  put_list_set(&b, cache, key, v, n, expires_wall);
  return emit(p, &b);
}

persist_rc persist_pop(persist *p, const char *cache, st_bytes key, bool front) {
  rec_buf b = {0};
  put_list_head(&b, REC_LIST_POP, cache, key);
  rec_put_u8(&b, front ? 1 : 0);
  rec_seal(&b, 0);
  return emit(p, &b);
}

/* A dictionary's pairs as dict-set records, split so no record exceeds the reader's
 * limit (only a pair too large on its own leaves b->too_big set); the first carries
 * fresh, the rest add to it. */
static void put_dict_set(rec_buf *b, const char *cache, st_bytes key, const st_bytes *fields,
                         const st_bytes *values, size_t n, bool fresh, int64_t expires_wall) {
  size_t i = 0;
  bool first = true;
  do {
    /* type, cache, key, fresh, expiry, count */
    size_t size = 1 + 4 + strlen(cache) + 4 + key.len + 1 + 8 + 4;
    size_t end = i;
    while (end < n && size + 8 + fields[end].len + values[end].len <= rec_limit()) {
      size += 8 + fields[end].len + values[end].len;
      end++;
    }
    if (end == i && i < n) {
      end = i + 1; /* too large alone: rec_seal flags it */
    }
    size_t at = put_list_head(b, REC_DICT_SET, cache, key);
    rec_put_u8(b, first && fresh ? 1 : 0);
    rec_put_u64(b, (uint64_t)expires_wall);
    rec_put_u32(b, (uint32_t)(2 * (end - i))); /* values: field, value, field, ... */
    for (; i < end; i++) {
      rec_put_bytes(b, fields[i].data, fields[i].len);
      rec_put_bytes(b, values[i].data, values[i].len);
    }
    rec_seal(b, at);
    first = false;
  } while (i < n);
}

persist_rc persist_dict_set(persist *p, const char *cache, st_bytes key, const st_bytes *fields,
                            const st_bytes *values, size_t n, bool fresh, int64_t expires_wall) {
  rec_buf b = {0};
  put_dict_set(&b, cache, key, fields, values, n, fresh, expires_wall);
  return emit(p, &b);
}

persist_rc persist_item_delete(persist *p, const char *cache, st_bytes key) {
  rec_buf b = {0};
  put_list_head(&b, REC_ITEM_DEL, cache, key);
  rec_seal(&b, 0);
  return emit(p, &b);
}

bool persist_topic_get(persist *p, const char *cache, const char *topic, uint64_t *page,
                       uint64_t *next_seq) {
  pthread_mutex_lock(&p->mu);
  bool found = topic_states_get(&p->topics, cache, topic, page, next_seq);
  pthread_mutex_unlock(&p->mu);
  return found;
}

persist_rc persist_topic_set(persist *p, const char *cache, const char *topic, uint64_t page,
                             uint64_t next_seq) {
  rec_buf b = {0};
  topic_states_put_record(&b, cache, topic, page, next_seq);
  pthread_mutex_lock(&p->mu);
  persist_rc rc = log_write_locked(p, &b);
  if (rc == PERSIST_OK && !topic_states_set(&p->topics, cache, topic, page, next_seq)) {
    /* On record but not in the table the next snapshot is built from. */
    rc = PERSIST_FAILED;
  }
  pthread_mutex_unlock(&p->mu);
  free(b.d);
  return rc;
}

void persist_topic_ring(persist *p, const char *cache, const char *topic, size_t n,
                        const uint64_t *seqs, const st_bytes *msgs) {
  rec_buf b = {0};
  size_t at = rec_begin(&b, REC_RING);
  rec_put_str(&b, cache);
  rec_put_str(&b, topic);
  size_t body = b.len;
  rec_put_u32(&b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    rec_put_u64(&b, seqs[i]);
    rec_put_bytes(&b, msgs[i].data, msgs[i].len);
  }
  rec_seal(&b, at);
  pthread_mutex_lock(&p->mu);
  if (!b.oom && !b.too_big) {
    topic_states_keep_ring(&p->topics, cache, topic, b.d + body, b.len - body);
  }
  log_write_locked(p, &b); /* at a clean stop: a ring that is not kept costs a discontinuity */
  pthread_mutex_unlock(&p->mu);
  free(b.d);
}

void persist_topic_take_ring(persist *p, const char *cache, const char *topic, uint64_t last_seq,
                             topic_ring_fn fn, void *ctx) {
  pthread_mutex_lock(&p->mu);
  topic_states_take_ring(&p->topics, cache, topic, last_seq, fn, ctx);
  pthread_mutex_unlock(&p->mu);
}

/* ---- replay of pubsub's topic records (startup, before any other thread) ---- */

bool persist_restore_topic(persist *p, const char *cache, const char *topic, uint64_t page,
                           uint64_t next_seq) {
  pthread_mutex_lock(&p->mu);
  bool ok = topic_states_set(&p->topics, cache, topic, page, next_seq);
  pthread_mutex_unlock(&p->mu);
  return ok;
}

bool persist_restore_ring(persist *p, const char *cache, const char *topic, const uint8_t *body,
                          size_t len) {
  pthread_mutex_lock(&p->mu);
  bool ok = topic_states_keep_ring(&p->topics, cache, topic, body, len);
  pthread_mutex_unlock(&p->mu);
  return ok;
}

void persist_restore_cache_deleted(persist *p, const char *cache) {
  pthread_mutex_lock(&p->mu);
  topic_states_drop_cache(&p->topics, cache);
  pthread_mutex_unlock(&p->mu);
}

/* ---- compaction ---- */

bool persist_wants_compaction(persist *p) {
  pthread_mutex_lock(&p->mu);
  bool big = p->log_bytes > p->compact_bytes || p->broken; /* a rewrite repairs it */
  pthread_mutex_unlock(&p->mu);
  return big;
}

bool persist_snapshot_begin(persist *p) {
  pthread_mutex_lock(&p->mu); /* held until persist_snapshot_end */
  p->snap = (rec_buf){0};
  rec_put_header(&p->snap, p->gen + 1);
  return true;
}

/* Appends a cache record to the snapshot buffer. */
void persist_snapshot_cache(persist *p, const char *name) {
  size_t at = rec_begin(&p->snap, REC_CACHE_NEW);
  rec_put_str(&p->snap, name);
  rec_seal(&p->snap, at);
}

void persist_snapshot_list(persist *p, const char *cache, st_bytes key,
                           const ProtobufCBinaryData *v, size_t n, int64_t expires_wall) {
  rec_buf tmp = {0};
  put_list_set(&tmp, cache, key, v, n, expires_wall);
  p->snap.oom |= tmp.oom;
  p->snap.too_big |= tmp.too_big;
  rec_put(&p->snap, tmp.d, tmp.len);
  free(tmp.d);
}

void persist_snapshot_dict(persist *p, const char *cache, st_bytes key, const st_bytes *fields,
                           const st_bytes *values, size_t n, bool fresh, int64_t expires_wall) {
  rec_buf tmp = {0};
  put_dict_set(&tmp, cache, key, fields, values, n, fresh, expires_wall);
  p->snap.oom |= tmp.oom;
  p->snap.too_big |= tmp.too_big;
  rec_put(&p->snap, tmp.d, tmp.len);
  free(tmp.d);
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
  rec_buf h = {0};
  rec_put_header(&h, gen);
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
  topic_states_snapshot(&p->topics, &p->snap);
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
  p->snap = (rec_buf){0};
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
  topic_states_destroy(&p->topics);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->dir);
  free(p);
}

persist *persist_open(const char *dir, persist_fsync mode, uint64_t compact_bytes,
                      const persist_replay *replay) {
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
  rec_limit_init();
  p->log_fd = -1;
  pthread_mutex_init(&p->mu, NULL);
  cmn_cond_init_monotonic(&p->cv);
  topic_states_init(&p->topics);
  char *log_path = p->dir ? path_in(p, "log") : NULL;
  bool ok = log_path && load(p, replay);
  if (ok) {
    p->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ok = p->log_fd >= 0;
  }
  free(log_path);
  if (!ok) {
    srv_log(LOG_ERROR, "persist: cannot open the data directory");
    destroy(p);
    return NULL;
  }
  if (mode == PERSIST_FSYNC_INTERVAL) {
    p->thread_started = pthread_create(&p->thread, NULL, fsync_thread, p) == 0;
  }
  return p;
}

void persist_stats(persist *p, size_t *topics, uint64_t *generation) {
  pthread_mutex_lock(&p->mu);
  *topics = topic_states_count(&p->topics);
  *generation = p->gen;
  pthread_mutex_unlock(&p->mu);
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
