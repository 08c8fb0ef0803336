/* mim-local: the record format of --data-dir's snapshot and log (server/README.md):
 *   u32 payload length | u32 CRC-32 of the payload | payload
 * little-endian; the payload is a type byte and its fields (strings and byte strings as
 * u32 length + bytes). Encoding into a growing buffer, and a bounds-checked reader.
 * No files and no locks: persist.c writes and reads them, recovery.c interprets them. */
#ifndef MIM_SERVER_RECORD_H
#define MIM_SERVER_RECORD_H

#include "bytes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
  REC_DICT_SET,   /* cache, key, u8 fresh (replace the item), i64 expiry, u32 2n,
                   * n x (field, value), applied in order */
  REC_TYPE_LAST = REC_DICT_SET, /* a head with a larger type is not a record */
};

#define REC_MAGIC 0x314d494dU /* "MIM1" */

/* Longest cache or topic name replay reads back (longer ones make a record malformed). */
#define REC_NAME_MAX 1023

/* Largest record payload, the same for writing and reading. One data directory per
 * process: rec_limit_init sets it when the directory is opened. */
uint32_t rec_limit(void);
/* Test hook (documented in server/README.md): MIM_LOCAL_MAX_RECORD_BYTES (64 to 1 GiB)
 * lowers the limit, so it can be tested at its boundary without gigabyte records. */
void rec_limit_init(void);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32). */
uint32_t rec_crc32(const uint8_t *p, size_t n);

typedef struct rec_buf {
  uint8_t *d;
  size_t len, cap;
  bool oom;
  bool too_big; /* a record exceeds rec_limit(): the reader would stop at it */
} rec_buf;

void rec_put(rec_buf *b, const void *p, size_t n);
void rec_put_u8(rec_buf *b, uint8_t v);
void rec_put_u32(rec_buf *b, uint32_t v);
void rec_put_u64(rec_buf *b, uint64_t v);
void rec_put_bytes(rec_buf *b, const void *p, size_t n);
void rec_put_str(rec_buf *b, const char *s);
/* Starts a record at the end of b: room for its length and CRC, then the type. Returns
 * its offset for rec_seal. */
size_t rec_begin(rec_buf *b, uint8_t type);
/* Fills in length and CRC of the record that starts at offset at (or flags too_big). */
void rec_seal(rec_buf *b, size_t at);
/* A whole header record (the first of each file). */
void rec_put_header(rec_buf *b, uint64_t gen);

typedef struct rec_reader {
  const uint8_t *p;
  size_t left;
  bool bad; /* read past the end or malformed: every later read fails too */
} rec_reader;

/* An n-byte little-endian number (0 once bad). */
uint64_t rec_get_le(rec_reader *r, int n);
st_bytes rec_get_bytes(rec_reader *r);
/* A NUL-terminated copy of a name into out (cap bytes); false if it does not fit. */
bool rec_get_name(rec_reader *r, char *out, size_t cap);
/* A count, then that many values (pointing into the record); NULL when the record is
 * short or out of memory. Free the array (not the values). */
st_bytes *rec_get_values(rec_reader *r, uint32_t *count);
/* What a file holds at an offset (damage checks at start-up). */
typedef enum {
  REC_FRAME_OK,    /* length in range and the CRC matches */
  REC_FRAME_SHORT, /* fewer than 8 bytes left, or the length runs past the end */
  REC_FRAME_BAD,   /* length 0 or over rec_limit(), or the CRC does not match */
} rec_frame;

/* Checks the record at off of a file of len bytes; *n gets its payload length. */
rec_frame rec_frame_at(const uint8_t *d, size_t len, size_t off, uint32_t *n);
/* True if a record that is not a header starts at off: its frame checks out, its type
 * is known and its first field (every such record starts with a cache name) fits. A
 * CRC match on random bytes has odds of 2^-32; the other checks make a false match
 * rarer still, and cheap to reject before the CRC is computed. */
bool rec_plausible_at(const uint8_t *d, size_t len, size_t off);
/* The first offset from `from` on where rec_plausible_at holds; len if none. */
size_t rec_resync(const uint8_t *d, size_t len, size_t from);
/* True if the bytes from off to the end can be the start of a record whose write was
 * cut short: the length runs past the end, and the length, type and first field's
 * length, as far as present, are in range (random bytes pass with odds below 2^-30
 * once 13 bytes are there; fewer cannot hold a record). */
bool rec_torn_at(const uint8_t *d, size_t len, size_t off);
/* The header record at the start of a file: true with its generation and length if it
 * is whole and checks out (length, CRC, type, magic). */
bool rec_read_header(const uint8_t *d, size_t len, uint64_t *gen, size_t *hlen);

#endif
