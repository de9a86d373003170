/* util/ct.h - constant-time comparison of secrets. */
#ifndef LP_UTIL_CT_H
#define LP_UTIL_CT_H

#include <stdbool.h>
#include <stddef.h>

/* Constant-time comparison of a presented key a[0..alen) against the configured one
 * b[0..blen): the running time depends only on blen (the configured key's length), never on
 * where or whether the contents differ, and a length difference does not short-circuit the
 * content comparison. Returns true only for equal length and bytes. NULL with length 0 is
 * allowed. */
bool lp_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
