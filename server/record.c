/* mim-local: the --data-dir record format (see record.h). */
#include "record.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECORD (1u << 30)
#define MAX_RECORD_ENV "MIM_LOCAL_MAX_RECORD_BYTES"

static uint32_t g_limit = MAX_RECORD;

uint32_t rec_limit(void) {
  return g_limit;
}

void rec_limit_init(void) {
  const char *max = getenv(MAX_RECORD_ENV);
  unsigned long long m = max ? strtoull(max, NULL, 10) : 0;
  g_limit = m >= 64 && m <= MAX_RECORD ? (uint32_t)m : MAX_RECORD;
}

/* ---- CRC-32 ---- */

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

uint32_t rec_crc32(const uint8_t *p, size_t n) {
  pthread_once(&g_crc_once, crc_init);
  uint32_t c = 0xffffffffU;
  for (size_t i = 0; i < n; i++) {
    c = g_crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  }
  return c ^ 0xffffffffU;
}

/* ---- encoding ---- */

void rec_put(rec_buf *b, const void *p, size_t n) {
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

void rec_put_u8(rec_buf *b, uint8_t v) {
  rec_put(b, &v, 1);
}

void rec_put_u32(rec_buf *b, uint32_t v) {
  uint8_t x[4];
  for (int i = 0; i < 4; i++) {
    x[i] = (uint8_t)(v >> (8 * i));
  }
  rec_put(b, x, 4);
}

void rec_put_u64(rec_buf *b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) {
    x[i] = (uint8_t)(v >> (8 * i));
  }
  rec_put(b, x, 8);
}

void rec_put_bytes(rec_buf *b, const void *p, size_t n) {
  rec_put_u32(b, (uint32_t)n);
  rec_put(b, p, n);
}

void rec_put_str(rec_buf *b, const char *s) {
  rec_put_bytes(b, s, strlen(s));
}

/* Starts a record at the end of b: room for its length and CRC, then the type. Returns
 * its offset for rec_seal. */
size_t rec_begin(rec_buf *b, uint8_t type) {
  size_t at = b->len;
  rec_put_u32(b, 0);
  rec_put_u32(b, 0);
  rec_put_u8(b, type);
  return at;
}

/* Fills in length and CRC of the record that starts at offset at. */
void rec_seal(rec_buf *b, size_t at) {
  if (b->oom) {
    return;
  }
  size_t n = b->len - at - 8;
  if (n > g_limit) {
    b->too_big = true; /* never written: replay would stop at it */
    return;
  }
  uint32_t crc = rec_crc32(b->d + at + 8, n);
  for (int i = 0; i < 4; i++) {
    b->d[at + i] = (uint8_t)(n >> (8 * i));
    b->d[at + 4 + i] = (uint8_t)(crc >> (8 * i));
  }
}

/* ---- decoding ---- */

static const uint8_t *get_raw(rec_reader *r, size_t n) {
  if (r->bad || r->left < n) {
    r->bad = true;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

uint64_t rec_get_le(rec_reader *r, int n) {
  const uint8_t *p = get_raw(r, (size_t)n);
  uint64_t v = 0;
  for (int i = 0; p && i < n; i++) {
    v |= (uint64_t)p[i] << (8 * i);
  }
  return v;
}

st_bytes rec_get_bytes(rec_reader *r) {
  uint32_t n = (uint32_t)rec_get_le(r, 4);
  const uint8_t *p = get_raw(r, n);
  return (st_bytes){p ? p : (const uint8_t *)"", p ? n : 0};
}

/* A NUL-terminated copy of a name into out (cap bytes); false if it does not fit. */
bool rec_get_name(rec_reader *r, char *out, size_t cap) {
  st_bytes b = rec_get_bytes(r);
  if (r->bad || b.len == 0 || b.len >= cap || memchr(b.data, 0, b.len)) {
    r->bad = true;
    return false;
  }
  memcpy(out, b.data, b.len);
  out[b.len] = '\0';
  return true;
}

/* A count, then that many values (pointing into the record); NULL when the record is
 * short or out of memory. Free the array (not the values). */
st_bytes *rec_get_values(rec_reader *r, uint32_t *count) {
  uint32_t n = (uint32_t)rec_get_le(r, 4);
  if (r->bad || n > r->left / 4) {
    return NULL;
  }
  st_bytes *vals = calloc(n ? n : 1, sizeof *vals);
  if (!vals) {
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    vals[i] = rec_get_bytes(r);
  }
  *count = n;
  return vals;
}

/* ---- checks at start-up ---- */

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

rec_frame rec_frame_at(const uint8_t *d, size_t len, size_t off, uint32_t *n) {
  *n = 0;
  if (off > len || len - off < 8) {
    return REC_FRAME_SHORT;
  }
  *n = le32(d + off);
  if (*n == 0 || *n > g_limit) {
    return REC_FRAME_BAD;
  }
  if (*n > len - off - 8) {
    return REC_FRAME_SHORT;
  }
  return rec_crc32(d + off + 8, *n) == le32(d + off + 4) ? REC_FRAME_OK : REC_FRAME_BAD;
}

/* A record's head as far as it is there: length, type, first field (the cache name). */
static bool head_in_range(const uint8_t *d, size_t have) {
  uint32_t n = have >= 4 ? le32(d) : 5;
  if (n < 5 || n > g_limit) {
    return false;
  }
  if (have >= 9 && (d[8] < REC_CACHE_NEW || d[8] > REC_TYPE_LAST)) {
    return false;
  }
  uint32_t name = have >= 13 ? le32(d + 9) : 1;
  return name > 0 && name <= REC_NAME_MAX && name <= n - 5;
}

bool rec_plausible_at(const uint8_t *d, size_t len, size_t off) {
  /* The cheap checks first: the CRC is computed only for the rare offset that passes. */
  if (off > len || len - off < 8 + 5 || !head_in_range(d + off, 13) ||
      le32(d + off) > len - off - 8) {
    return false;
  }
  uint32_t m;
  return rec_frame_at(d, len, off, &m) == REC_FRAME_OK;
}

bool rec_torn_at(const uint8_t *d, size_t len, size_t off) {
  size_t have = off < len ? len - off : 0;
  return have > 0 && (have < 8 || le32(d + off) > have - 8) && head_in_range(d + off, have);
}

size_t rec_resync(const uint8_t *d, size_t len, size_t from) {
  for (size_t off = from; off < len; off++) {
    if (rec_plausible_at(d, len, off)) {
      return off;
    }
  }
  return len;
}

bool rec_read_header(const uint8_t *d, size_t len, uint64_t *gen, size_t *hlen) {
  uint32_t n;
  if (rec_frame_at(d, len, 0, &n) != REC_FRAME_OK || n != 13 || d[8] != REC_HEADER) {
    return false;
  }
  rec_reader r = {d + 9, 12, false};
  if (rec_get_le(&r, 4) != REC_MAGIC) {
    return false;
  }
  *gen = rec_get_le(&r, 8);
  *hlen = 8 + 13;
  return !r.bad;
}

void rec_put_header(rec_buf *b, uint64_t gen) {
  size_t at = rec_begin(b, REC_HEADER);
  rec_put_u32(b, REC_MAGIC);
  rec_put_u64(b, gen);
  rec_seal(b, at);
}
