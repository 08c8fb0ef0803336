/* gRPC-over-HTTP/2 rules that need no connection: the 5-byte message prefix, status from
 * trailers or HTTP status, grpc-message decoding, grpc-timeout. See grpc_wire.h. */
#include "h2/grpc_wire.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAG_COMPRESSED 1u
/* First allocation for a message that arrives in pieces: small messages (the common
 * case) then never reallocate. */
#define READER_MIN_CAP 256
#define TIMEOUT_MAX_VALUE 99999999LL /* grpc-timeout: at most 8 digits */

void mim_grpc_prefix(uint8_t out[MIM_GRPC_PREFIX_LEN], size_t len) {
  uint32_t n = (uint32_t)len;
  out[0] = 0;
  out[1] = (uint8_t)(n >> 24);
  out[2] = (uint8_t)(n >> 16);
  out[3] = (uint8_t)(n >> 8);
  out[4] = (uint8_t)n;
}

void mim_grpc_reader_init(mim_grpc_reader *r, size_t max) {
  memset(r, 0, sizeof *r);
  r->max = max ? max : MIM_GRPC_MAX_MESSAGE;
  r->stopped = MIM_OK;
}

void mim_grpc_reader_free(mim_grpc_reader *r) {
  free(r->buf);
  r->buf = NULL;
  r->cap = 0;
}

bool mim_grpc_reader_partial(const mim_grpc_reader *r) {
  return r->prefix_len > 0;
}

/* Records the error in detail, in the thread's error detail and in the reader, which then
 * refuses further feeds. */
__attribute__((format(printf, 5, 6))) static mim_status
reader_fail(mim_grpc_reader *r, mim_status st, char *detail, size_t cap, const char *fmt, ...) {
  char text[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (detail && cap > 0)
    snprintf(detail, cap, "%s", text);
  r->stopped = st;
  return mim_fail_with_detail(st, text);
}

/* Validates a complete prefix; the length is checked before anything is allocated. */
static mim_status prefix_done(mim_grpc_reader *r, char *detail, size_t cap) {
  uint8_t flag = r->prefix[0];
  if (flag == FLAG_COMPRESSED)
    return reader_fail(r, MIM_ERR_INTERNAL, detail, cap,
                       "compressed message received but no compression was negotiated");
  if (flag != 0)
    return reader_fail(r, MIM_ERR_INTERNAL, detail, cap,
                       "invalid gRPC message flag 0x%02x (want 0: uncompressed)", flag);
  size_t len = ((size_t)r->prefix[1] << 24) | ((size_t)r->prefix[2] << 16) |
               ((size_t)r->prefix[3] << 8) | r->prefix[4];
  if (len > r->max)
    return reader_fail(r, MIM_ERR_RESOURCE_EXHAUSTED, detail, cap,
                       "received message larger than max (%zu vs. %zu bytes)", len, r->max);
  r->need = len;
  r->have = 0;
  return MIM_OK;
}

/* Makes room for have + n bytes, growing geometrically with what arrived so a peer that
 * announces a large message and sends little costs little. */
static mim_status reserve(mim_grpc_reader *r, size_t n, char *detail, size_t cap) {
  size_t want = r->have + n;
  if (want <= r->cap)
    return MIM_OK;
  size_t next = r->cap < READER_MIN_CAP ? READER_MIN_CAP : r->cap * 2;
  if (next < want)
    next = want;
  if (next > r->need)
    next = r->need;
  uint8_t *grown = realloc(r->buf, next);
  if (!grown)
    return reader_fail(r, MIM_ERR_NO_MEMORY, detail, cap,
                       "out of memory for a %zu-byte gRPC message", r->need);
  r->buf = grown;
  r->cap = next;
  return MIM_OK;
}

/* Hands one message over. The reader is marked stopped first and reset after: if the
 * callback stops, it may have freed the reader, which is then never touched again. */
static bool deliver(mim_grpc_reader *r, const uint8_t *msg, size_t len, mim_grpc_message_fn fn,
                    void *user) {
  /* len is passed by value before the reset below clears r->need. */
  r->prefix_len = 0;
  r->need = 0;
  r->have = 0;
  r->stopped = MIM_ERR_CANCELLED;
  static const uint8_t empty[1] = {0};
  if (!fn(user, msg ? msg : empty, len))
    return false;
  r->stopped = MIM_OK;
  return true;
}

/* Consumes prefix bytes from data; returns how many. */
static size_t take_prefix(mim_grpc_reader *r, const uint8_t *data, size_t len) {
  size_t n = MIM_GRPC_PREFIX_LEN - r->prefix_len;
  if (n > len)
    n = len;
  memcpy(r->prefix + r->prefix_len, data, n);
  r->prefix_len += n;
  return n;
}

mim_status mim_grpc_reader_feed(mim_grpc_reader *r, const uint8_t *data, size_t len,
                                mim_grpc_message_fn on_message, void *user, char *detail,
                                size_t detail_cap) {
  if (r->stopped != MIM_OK)
    return reader_fail(r, MIM_ERR_INTERNAL, detail, detail_cap,
                       "gRPC message reader fed after it stopped (%s)",
                       mim_status_name(r->stopped));
  size_t i = 0;
  for (;;) {
    if (r->prefix_len < MIM_GRPC_PREFIX_LEN) {
      if (i == len)
        return MIM_OK;
      i += take_prefix(r, data + i, len - i);
      if (r->prefix_len < MIM_GRPC_PREFIX_LEN)
        return MIM_OK;
      mim_status st = prefix_done(r, detail, detail_cap);
      if (st != MIM_OK)
        return st;
    }
    size_t missing = r->need - r->have;
    size_t avail = len - i;
    const uint8_t *msg = NULL;
    if (r->have == 0 && avail >= missing) {
      msg = data + i; /* whole in this feed: no copy */
      i += missing;
    } else {
      size_t n = avail < missing ? avail : missing;
      if (n > 0) {
        mim_status st = reserve(r, n, detail, detail_cap);
        if (st != MIM_OK)
          return st;
        memcpy(r->buf + r->have, data + i, n);
        r->have += n;
        i += n;
      }
      if (r->have < r->need)
        return MIM_OK;
      msg = r->buf;
    }
    if (!deliver(r, msg, r->need, on_message, user))
      return mim_fail_with_detail(MIM_ERR_CANCELLED, "stopped by the message callback");
  }
}

/* gRPC's table for responses without grpc-status, as gRPC status numbers; the numbers go
 * through the one gRPC code table (mim_status_from_grpc_code). */
enum {
  GRPC_UNKNOWN = 2,
  GRPC_PERMISSION_DENIED = 7,
  GRPC_UNIMPLEMENTED = 12,
  GRPC_INTERNAL = 13,
  GRPC_UNAVAILABLE = 14,
  GRPC_UNAUTHENTICATED = 16
};

static long grpc_code_from_http(int http_status) {
  switch (http_status) {
  case 400:
  case 431:
    return GRPC_INTERNAL;
  case 401:
    return GRPC_UNAUTHENTICATED;
  case 403:
    return GRPC_PERMISSION_DENIED;
  case 404:
    return GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return GRPC_UNAVAILABLE;
  default:
    return GRPC_UNKNOWN;
  }
}

mim_status mim_status_from_http(int http_status) {
  return mim_status_from_grpc_code(grpc_code_from_http(http_status));
}

bool mim_grpc_parse_status(const uint8_t *value, size_t len, long *code) {
  if (!value || len == 0)
    return false;
  long n = 0;
  for (size_t i = 0; i < len; i++) {
    if (value[i] < '0' || value[i] > '9')
      return false;
    int d = value[i] - '0';
    if (n > (LONG_MAX - d) / 10)
      return false;
    n = n * 10 + d;
  }
  *code = n;
  return true;
}

static int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Decodes the escape at value[i] if it is one; returns the bytes consumed (3 or 1). */
static size_t decode_one(const uint8_t *value, size_t len, size_t i, uint8_t *out) {
  if (value[i] == '%' && len - i >= 3) {
    int hi = hex_value(value[i + 1]);
    int lo = hex_value(value[i + 2]);
    if (hi >= 0 && lo >= 0) {
      *out = (uint8_t)(hi << 4 | lo);
      return 3;
    }
  }
  *out = value[i];
  return 1;
}

/* Length of the UTF-8 sequence a lead byte starts (1 for ASCII and for stray bytes, which
 * are then kept one by one). */
static size_t utf8_seq_len(uint8_t lead) {
  if (lead >= 0xF0 && lead <= 0xF7)
    return 4;
  if (lead >= 0xE0)
    return lead <= 0xEF ? 3 : 1;
  if (lead >= 0xC0)
    return 2;
  return 1;
}

/* Drops a UTF-8 sequence the cut at n left incomplete. */
static size_t utf8_cut(const char *s, size_t n) {
  size_t start = n;
  while (start > 0 && n - start < 3 && ((uint8_t)s[start - 1] & 0xC0) == 0x80)
    start--;
  if (start == 0)
    return n;
  uint8_t lead = (uint8_t)s[start - 1];
  size_t want = utf8_seq_len(lead);
  if (want > 1 && n - (start - 1) < want)
    return start - 1;
  return n;
}

void mim_grpc_decode_message(const uint8_t *value, size_t len, char *out, size_t cap) {
  if (!out || cap == 0)
    return;
  size_t n = 0;
  size_t i = 0;
  bool cut = false;
  while (value && i < len) {
    if (n + 1 >= cap) {
      cut = true;
      break;
    }
    uint8_t b = 0;
    i += decode_one(value, len, i, &b);
    ((uint8_t *)out)[n++] = b == 0 ? (uint8_t)'?' : b;
  }
  if (cut)
    n = utf8_cut(out, n);
  out[n] = '\0';
}

void mim_grpc_timeout_value(int64_t ms, char out[12]) {
  if (ms <= 0) {
    snprintf(out, 12, "1m");
    return;
  }
  /* Each unit in milliseconds, from the finest the protocol lets us use. */
  static const struct {
    int64_t ms;
    char unit;
  } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
  for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
    int64_t n = ms / units[u].ms + (ms % units[u].ms != 0);
    if (n <= TIMEOUT_MAX_VALUE) {
      snprintf(out, 12, "%u%c", (unsigned)n, units[u].unit);
      return;
    }
  }
  snprintf(out, 12, "%uH", (unsigned)TIMEOUT_MAX_VALUE);
}

bool mim_grpc_content_type_ok(const uint8_t *value, size_t len) {
  static const char want[] = "application/grpc";
  size_t n = sizeof want - 1;
  if (!value || len < n)
    return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = value[i];
    if (c >= 'A' && c <= 'Z')
      c = (uint8_t)(c - 'A' + 'a');
    if (c != (uint8_t)want[i])
      return false;
  }
  return len == n || value[n] == '+' || value[n] == ';';
}
