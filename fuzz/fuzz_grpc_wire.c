/* libFuzzer harness: the gRPC wire rules (lib/h2/grpc_wire.h).
 *  - the message reader fed the input (after a 2-byte header: split seed, stop point) in
 *    pseudo-random pieces, limit 64 KiB: it must deliver exactly what a plain one-pass
 *    parse of the whole input finds (same messages, same error, same partial state),
 *    stop when the callback says so, and refuse feeds after an error or a stop;
 *  - grpc-status parsing agrees with a reference parse; percent-decoding always yields a
 *    C string within the buffer, no longer than the input; grpc-timeout always yields
 *    1 to 8 digits and a unit; content-type and HTTP mapping never crash. */
#include "h2/grpc_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT ((size_t)64 * 1024)

static void fail(const char *what) {
  fprintf(stderr, "fuzz_grpc_wire: %s\n", what);
  abort();
}

/* Order-sensitive digest of the messages, with their count. */
typedef struct digest {
  uint64_t hash;
  size_t count;
  size_t stop_at; /* 1-based; 0 = never stop */
} digest;

static void mix(digest *d, const uint8_t *msg, size_t len) {
  uint64_t h = d->hash ^ (len * 0x9E3779B97F4A7C15ULL);
  for (size_t i = 0; i < len; i++)
    h = (h ^ msg[i]) * 0x100000001B3ULL;
  d->hash = h * 31 + 7;
  d->count++;
}

static bool on_message(void *user, const uint8_t *msg, size_t len) {
  digest *d = user;
  if (!msg || len > LIMIT)
    fail("message NULL or over the limit");
  mix(d, msg, len);
  return d->stop_at == 0 || d->count < d->stop_at;
}

/* What a straightforward parse of the whole stream gives. */
typedef struct expected {
  digest d;
  mim_status st;
  bool partial;
} expected;

static expected reference(const uint8_t *data, size_t len, size_t stop_at) {
  expected e = {{0, 0, stop_at}, MIM_OK, false};
  size_t i = 0;
  while (i < len) {
    if (len - i < MIM_GRPC_PREFIX_LEN) {
      e.partial = true;
      return e;
    }
    const uint8_t *p = data + i;
    if (p[0] > 1) {
      e.st = MIM_ERR_INTERNAL;
      return e;
    }
    if (p[0] == 1) {
      e.st = MIM_ERR_INTERNAL;
      return e;
    }
    size_t n = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
    if (n > LIMIT) {
      e.st = MIM_ERR_RESOURCE_EXHAUSTED;
      return e;
    }
    if (len - i - MIM_GRPC_PREFIX_LEN < n) {
      e.partial = true;
      return e;
    }
    mix(&e.d, p + MIM_GRPC_PREFIX_LEN, n);
    i += MIM_GRPC_PREFIX_LEN + n;
    if (stop_at && e.d.count == stop_at) {
      e.st = MIM_ERR_CANCELLED;
      return e;
    }
  }
  return e;
}

static uint32_t next_rand(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void reader_agrees(const uint8_t *data, size_t size) {
  if (size < 2)
    return;
  uint32_t seed = 0x9E3779B9u ^ ((uint32_t)data[0] << 8);
  size_t stop_at = data[1] % 8; /* 0 (never) or the 1st..7th message */
  data += 2;
  size_t len = size - 2;
  expected want = reference(data, len, stop_at);

  mim_grpc_reader r;
  mim_grpc_reader_init(&r, LIMIT);
  digest got = {0, 0, stop_at};
  mim_status st = MIM_OK;
  char detail[128] = "";
  size_t i = 0;
  while (i < len && st == MIM_OK) {
    /* Piece sizes: mostly small (prefix and body splits), sometimes large. */
    uint32_t rnd = next_rand(&seed);
    size_t piece = (rnd & 3) == 0 ? rnd % 4096 : rnd % 9;
    if (piece > len - i)
      piece = len - i;
    st = mim_grpc_reader_feed(&r, data + i, piece, on_message, &got, detail, sizeof detail);
    i += piece;
  }
  if (st != want.st || got.count != want.d.count || got.hash != want.d.hash)
    fail("reader disagrees with the one-pass reference parse");
  if (st == MIM_OK && mim_grpc_reader_partial(&r) != want.partial)
    fail("partial state disagrees");
  /* A stop writes no detail (the buffer may belong to what the callback freed). */
  if (st != MIM_OK && (st == MIM_ERR_CANCELLED) != (detail[0] == '\0'))
    fail("detail missing for an error, or written for a stop");
  if (st != MIM_OK &&
      mim_grpc_reader_feed(&r, data, len, on_message, &got, NULL, 0) != MIM_ERR_INTERNAL)
    fail("a stopped reader accepted more input");
  if (r.cap > LIMIT)
    fail("buffer grew past the limit");
  mim_grpc_reader_free(&r);
}

/* The reference: all digits, then strtol (which also takes leading zeros) in range. */
static void status_agrees(const uint8_t *data, size_t size) {
  long code = -7;
  bool ok = mim_grpc_parse_status(data, size, &code);
  if (size >= 4096)
    return; /* beyond the reference's buffer: the call above still ran */
  bool want = size > 0;
  for (size_t i = 0; want && i < size; i++)
    want = data[i] >= '0' && data[i] <= '9';
  long n = 0;
  if (want) {
    char text[4096];
    memcpy(text, data, size);
    text[size] = '\0';
    errno = 0;
    n = strtol(text, NULL, 10);
    want = errno != ERANGE;
  }
  if (ok != want || (ok && code != n))
    fail("grpc-status parse disagrees with strtol");
  if (!ok && code != -7)
    fail("a failed grpc-status parse wrote the code");
  (void)mim_status_from_grpc_code(code);
}

static void decode_bounded(const uint8_t *data, size_t size) {
  char out[96];
  size_t cap = size ? 1 + data[0] % sizeof out : sizeof out;
  memset(out, 'Z', sizeof out);
  mim_grpc_decode_message(data, size, out, cap);
  size_t n = strnlen(out, cap);
  if (n >= cap)
    fail("decoded message not terminated within cap");
  if (n > size)
    fail("decoding made the message longer");
  for (size_t i = cap; i < sizeof out; i++) {
    if (out[i] != 'Z')
      fail("decoding wrote past cap");
  }
}

static void small_rules(const uint8_t *data, size_t size) {
  int64_t ms = 0;
  memcpy(&ms, data, size < sizeof ms ? size : sizeof ms);
  char t[12];
  mim_grpc_timeout_value(ms, t);
  size_t digits = strspn(t, "0123456789");
  if (digits < 1 || digits > 8 || !strchr("HMSm", t[digits]) || t[digits] == '\0' ||
      t[digits + 1] != '\0' || t[0] == '0')
    fail("grpc-timeout value malformed");
  int http = 0;
  memcpy(&http, data, size < sizeof http ? size : sizeof http);
  (void)mim_status_from_http(http);
  (void)mim_grpc_content_type_ok(data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_agrees(data, size);
  status_agrees(data, size);
  decode_bounded(data, size);
  small_rules(data, size);
  return 0;
}
