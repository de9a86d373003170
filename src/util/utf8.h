/* util/utf8.h - UTF-8 well-formedness, shared by the JSON scanner and the error-body writer. */
#ifndef LP_UTIL_UTF8_H
#define LP_UTIL_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence at p, which has `avail` >= 1 readable bytes,
 * per the RFC 3629 table (no overlongs, no UTF-16 surrogates, nothing above U+10FFFF); 0 if the
 * sequence is ill-formed or truncated. ASCII gives 1. */
static inline size_t lp_utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF; /* bounds for the second byte */
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

#endif
