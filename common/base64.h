/* Shared floor: base64 (RFC 4648) encoding and decoding. Decoding takes the alphabet
 * and the padding rule from the caller, because the callers differ on purpose: the
 * library's credential parser wants one named alphabet, mim-local's token verifier
 * accepts only the one canonical encoding (so one token has one spelling). No logging:
 * a caller that reports a failure names what was bad from the result and offset given
 * back. */
#ifndef MIM_COMMON_BASE64_H
#define MIM_COMMON_BASE64_H

#include <stddef.h>
#include <stdint.h>

typedef enum cmn_b64_alphabet {
  CMN_B64_STD,   /* '+' '/'; encoding pads with '=' */
  CMN_B64_URL,   /* '-' '_'; encoding does not pad */
  CMN_B64_EITHER /* decoding only: both alphabets, even mixed in one text */
} cmn_b64_alphabet;

typedef enum cmn_b64_padding {
  CMN_B64_PAD_OPTIONAL, /* none, or exactly the one or two '=' completing the last quantum */
  CMN_B64_PAD_IGNORED,  /* any run of trailing '=' is dropped unchecked */
  /* Exactly what cmn_b64_encode writes: the '=' completing the last quantum for
   * CMN_B64_STD, none for CMN_B64_URL, and the unused low bits of the last character
   * zero, so that every byte string has one encoding. CMN_B64_EITHER has no canonical
   * form: every text is CMN_B64_BAD_LENGTH. */
  CMN_B64_PAD_CANONICAL
} cmn_b64_padding;

typedef enum cmn_b64_result {
  CMN_B64_OK,
  CMN_B64_BAD_CHAR,   /* a character outside the alphabet (offset in *bad_at) */
  CMN_B64_BAD_LENGTH, /* the data length cannot be base64, or the padding does not fit */
  CMN_B64_BAD_BITS,   /* CMN_B64_PAD_CANONICAL only: unused bits of the last character set */
  CMN_B64_NO_MEMORY
} cmn_b64_result;

/* The length of the encoding of len bytes (without the terminating NUL). */
size_t cmn_b64_encoded_len(size_t len, cmn_b64_alphabet alphabet);

/* A malloc'd NUL-terminated encoding of data[0..len) in CMN_B64_STD or CMN_B64_URL, or
 * NULL on allocation failure (or CMN_B64_EITHER, which names no alphabet to write). */
char *cmn_b64_encode(const void *data, size_t len, cmn_b64_alphabet alphabet);

/* Checks text[0..len) without decoding. *data_chars gets the count of characters left
 * once the padding rule has removed the padding (set whatever the result); on
 * CMN_B64_BAD_CHAR *bad_at gets the offset of the first bad character. The unused
 * bits of the last character must be zero only under CMN_B64_PAD_CANONICAL. */
cmn_b64_result cmn_b64_check(const char *text, size_t len, cmn_b64_alphabet alphabet,
                             cmn_b64_padding padding, size_t *data_chars, size_t *bad_at);

/* Checks (as cmn_b64_check, bad_at may be NULL) and decodes text[0..len) into a malloc'd
 * buffer, NUL-terminated for convenience, *out_len bytes long. On any result but
 * CMN_B64_OK, *out is NULL. A caller decoding a secret zeroes *out before freeing it:
 * nothing else of the decoded bytes is left behind. */
cmn_b64_result cmn_b64_decode(const char *text, size_t len, cmn_b64_alphabet alphabet,
                              cmn_b64_padding padding, uint8_t **out, size_t *out_len,
                              size_t *bad_at);

#endif
