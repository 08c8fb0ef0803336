/* Shared floor: the one strict UTF-8 validator (RFC 3629: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF). proto3 string fields and the library's "text"
 * promise both need exactly this; callers with stricter rules (no NUL) add them on top. */
#ifndef MIM_COMMON_UTF8_H
#define MIM_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The offset of the first byte of the first invalid sequence in s[0..len), or SIZE_MAX
 * when all of it is valid. A sequence cut short by the end counts as invalid at its
 * lead byte. NUL is a valid character here. */
size_t cmn_utf8_invalid_at(const void *s, size_t len);

/* True when s[0..len) is valid UTF-8 (cmn_utf8_invalid_at finds nothing). */
bool cmn_utf8_valid(const void *s, size_t len);

#endif
