/* util/ct.c - see ct.h. */
#include "util/ct.h"

bool lp_ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Walk the configured key's full length whatever the presented key is. Reading a[i] only for
     * i < alen branches on alen, which the caller (the presenter) already knows. The volatile
     * accumulator keeps the compiler from turning the loop into an early-exit memcmp. */
    volatile unsigned char acc = 0;
    size_t diff_len = alen ^ blen;
    for (size_t i = 0; i < blen; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        acc |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return (acc == 0) & (diff_len == 0);
}
