/* Internal: reading the caller's extensible structs (the struct_size rule of
 * <momento/common.h> and docs/ABI.md) in one place. */
#ifndef MIM_LIB_STRUCT_SIZE_H
#define MIM_LIB_STRUCT_SIZE_H

#include <momento/common.h>
#include <stddef.h>

/* Bytes of a struct up to and including `member`: the size of the struct's first
 * released version when `member` was its last field. Stays right when fields are
 * appended later, unlike sizeof. */
#define MIM_SIZE_THROUGH(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* Copies the caller's struct src (which starts with its struct_size) into dst, the
 * library's own struct of dst_size bytes: fields the caller's version lacks become zero
 * (their defaults), dst's struct_size becomes dst_size. min_size is the struct's first
 * released size (MIM_SIZE_THROUGH). `what` names the argument for the error ("mim_join:
 * options"), `init` the macro that sets struct_size. Errors, with dst untouched:
 * MIM_ERR_INVALID_ARGUMENT when struct_size is 0, below min_size, or above dst_size with
 * any of the unknown bytes non-zero (a newer program setting fields this library does
 * not have). */
mim_status mim_struct_copy_in(void *dst, size_t dst_size, const void *src, size_t min_size,
                              const char *what, const char *init);

/* Copies the library's struct src (src_size bytes) into the caller's dst, whose
 * struct_size says how much of it the caller has room for; dst's struct_size stays.
 * Errors as mim_struct_copy_in for struct_size 0 or below min_size. */
mim_status mim_struct_copy_out(void *dst, const void *src, size_t src_size, size_t min_size,
                               const char *what, const char *init);

#endif
