/* Base64 (RFC 4648) with the caller's alphabet and padding rule. */
#include "base64.h"

#include <stdbool.h>
#include <stdlib.h>

static const char std_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cmn_b64_encoded_len(size_t len, cmn_b64_alphabet alphabet) {
  if (alphabet == CMN_B64_URL)
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
  return (len + 2) / 3 * 4;
}

char *cmn_b64_encode(const void *data, size_t len, cmn_b64_alphabet alphabet) {
  if (alphabet == CMN_B64_EITHER)
    return NULL;
  const uint8_t *in = data;
  const char *chars = alphabet == CMN_B64_URL ? url_chars : std_chars;
  size_t out_len = cmn_b64_encoded_len(len, alphabet);
  char *out = malloc(out_len + 1);
  if (!out)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    size_t n = len - i < 3 ? len - i : 3;
    uint32_t v = (uint32_t)in[i] << 16;
    if (n > 1)
      v |= (uint32_t)in[i + 1] << 8;
    if (n > 2)
      v |= in[i + 2];
    /* n bytes fill n + 1 characters; the rest of the quantum is padding. */
    for (size_t k = 0; k <= n; k++)
      out[o++] = chars[(v >> (18 - 6 * k)) & 63];
    for (size_t k = n + 1; k < 4 && alphabet == CMN_B64_STD; k++)
      out[o++] = '=';
  }
  out[o] = '\0';
  return out;
}

/* The 6-bit value of c in the alphabet, or -1 when c is not in it. */
static int char_value(char c, cmn_b64_alphabet alphabet) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  bool std = alphabet != CMN_B64_URL, url = alphabet != CMN_B64_STD;
  if ((std && c == '+') || (url && c == '-'))
    return 62;
  if ((std && c == '/') || (url && c == '_'))
    return 63;
  return -1;
}

/* The count of trailing '=' the padding rule removes. */
static size_t padding_len(const char *text, size_t len, cmn_b64_padding padding) {
  size_t max = padding == CMN_B64_PAD_IGNORED ? len : 2;
  size_t pad = 0;
  while (pad < max && pad < len && text[len - 1 - pad] == '=')
    pad++;
  return pad;
}

/* Whether pad '=' fit a text of len characters under the padding rule. */
static bool padding_fits(size_t len, size_t pad, cmn_b64_alphabet alphabet,
                         cmn_b64_padding padding) {
  if (padding == CMN_B64_PAD_IGNORED)
    return true;
  if (padding == CMN_B64_PAD_OPTIONAL)
    return pad == 0 || len % 4 == 0;
  /* Canonical: the padding the encoder writes, no more and no less. */
  if (alphabet == CMN_B64_STD)
    return len % 4 == 0;
  return alphabet == CMN_B64_URL && pad == 0;
}

/* Whether the bits the last of n data characters carries beyond the last whole byte
 * are zero (a decoder drops them, so any other value is a second spelling). */
static bool spare_bits_zero(const char *text, size_t n, cmn_b64_alphabet alphabet) {
  if (n % 4 == 0)
    return true;
  int spare = n % 4 == 2 ? 4 : 2; /* 12 bits hold one byte, 18 bits hold two */
  return (char_value(text[n - 1], alphabet) & ((1 << spare) - 1)) == 0;
}

cmn_b64_result cmn_b64_check(const char *text, size_t len, cmn_b64_alphabet alphabet,
                             cmn_b64_padding padding, size_t *data_chars, size_t *bad_at) {
  size_t pad = padding_len(text, len, padding);
  size_t n = len - pad;
  *data_chars = n;
  for (size_t i = 0; i < n; i++) {
    if (char_value(text[i], alphabet) < 0) {
      if (bad_at)
        *bad_at = i;
      return CMN_B64_BAD_CHAR;
    }
  }
  /* One character leftover holds 6 bits, not a byte; padding must end a quantum. */
  if (n % 4 == 1 || !padding_fits(len, pad, alphabet, padding))
    return CMN_B64_BAD_LENGTH;
  if (padding == CMN_B64_PAD_CANONICAL && !spare_bits_zero(text, n, alphabet))
    return CMN_B64_BAD_BITS;
  return CMN_B64_OK;
}

cmn_b64_result cmn_b64_decode(const char *text, size_t len, cmn_b64_alphabet alphabet,
                              cmn_b64_padding padding, uint8_t **out, size_t *out_len,
                              size_t *bad_at) {
  *out = NULL;
  *out_len = 0;
  size_t n;
  cmn_b64_result r = cmn_b64_check(text, len, alphabet, padding, &n, bad_at);
  if (r != CMN_B64_OK)
    return r;
  uint8_t *buf = malloc(n / 4 * 3 + 3);
  if (!buf)
    return CMN_B64_NO_MEMORY;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 6) | (uint32_t)char_value(text[i], alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[o++] = (uint8_t)(acc >> bits);
    }
  }
  buf[o] = '\0';
  *out = buf;
  *out_len = o;
  return CMN_B64_OK;
}
