/* The struct_size rule: see struct_size.h. */
#include "struct_size.h"

#include "error.h"

#include <stdbool.h>
#include <string.h>

/* Reads the struct_size that starts the caller's struct p into *out and checks it. */
static mim_status read_size(const void *p, size_t *out, size_t min_size, const char *what,
                            const char *init) {
  size_t size;
  memcpy(&size, p, sizeof size);
  *out = size;
  if (size == 0) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s: struct_size is 0: initialise the struct with %s (docs/ABI.md)", what,
                    init);
  }
  if (size < min_size) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s: struct_size %zu is smaller than any version of the struct (%zu): "
                    "initialise it with %s",
                    what, size, min_size, init);
  }
  return MIM_OK;
}

static bool all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i]) {
      return false;
    }
  }
  return true;
}

mim_status mim_struct_copy_in(void *dst, size_t dst_size, const void *src, size_t min_size,
                              const char *what, const char *init) {
  size_t size;
  mim_status st = read_size(src, &size, min_size, what, init);
  if (st != MIM_OK) {
    return st;
  }
  if (size > dst_size && !all_zero((const unsigned char *)src + dst_size, size - dst_size)) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s: sets fields this libmomento-im (%s) does not have (struct_size %zu, "
                    "known %zu): the program was built against a newer version",
                    what, MIM_VERSION_STRING, size, dst_size);
  }
  memset(dst, 0, dst_size);
  memcpy(dst, src, size < dst_size ? size : dst_size);
  memcpy(dst, &dst_size, sizeof dst_size);
  return MIM_OK;
}

mim_status mim_struct_copy_out(void *dst, const void *src, size_t src_size, size_t min_size,
                               const char *what, const char *init) {
  size_t size;
  mim_status st = read_size(dst, &size, min_size, what, init);
  if (st != MIM_OK) {
    return st;
  }
  size_t n = size < src_size ? size : src_size;
  /* Everything after the caller's struct_size field, as far as both know. */
  memcpy((unsigned char *)dst + sizeof size, (const unsigned char *)src + sizeof size,
         n - sizeof size);
  return MIM_OK;
}
