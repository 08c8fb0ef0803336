/* Strict UTF-8 validation by lead-byte classes (Unicode table 3-7). */
#include "utf8.h"

#include <stdint.h>

/* Length of the sequence that lead byte c starts and the allowed range of its second
 * byte, or 0 when c cannot start one. The narrowed ranges are where the rules live:
 * E0 and F0 exclude overlong forms, ED excludes surrogates, F4 stops at U+10FFFF; C0,
 * C1 and F5..FF could only start overlong or out-of-range forms. */
static size_t sequence_len(uint8_t c, uint8_t *lo, uint8_t *hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return 2;
  if (c >= 0xE0 && c <= 0xEF) {
    *lo = c == 0xE0 ? 0xA0 : 0x80;
    *hi = c == 0xED ? 0x9F : 0xBF;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    *lo = c == 0xF0 ? 0x90 : 0x80;
    *hi = c == 0xF4 ? 0x8F : 0xBF;
    return 4;
  }
  return 0;
}

/* True when the n-byte sequence at s (n bytes are there) is well formed. */
static bool sequence_ok(const uint8_t *s, size_t n, uint8_t lo, uint8_t hi) {
  if (n == 1)
    return true;
  if (s[1] < lo || s[1] > hi)
    return false;
  for (size_t k = 2; k < n; k++) {
    if ((s[k] & 0xC0) != 0x80)
      return false;
  }
  return true;
}

size_t cmn_utf8_invalid_at(const void *str, size_t len) {
  const uint8_t *s = str;
  size_t i = 0;
  while (i < len) {
    uint8_t lo, hi;
    size_t n = sequence_len(s[i], &lo, &hi);
    if (n == 0 || n > len - i || !sequence_ok(s + i, n, lo, hi))
      return i;
    i += n;
  }
  return SIZE_MAX;
}

bool cmn_utf8_valid(const void *s, size_t len) {
  return cmn_utf8_invalid_at(s, len) == SIZE_MAX;
}
