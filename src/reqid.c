/* reqid.c - request ids and constant-time comparison (see reqid.h). */
#include "reqid.h"

#include <stdatomic.h>
#include <string.h>

#include "util/rand.h"

/* The one global of this module, by design: a process-wide counter makes ids unique within a
 * process regardless of how the per-thread RNGs were seeded. */
static atomic_uint_fast32_t reqid_counter;

static void put_hex(char *dst, uint64_t v, int ndigits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = ndigits - 1; i >= 0; i--) {
        dst[i] = hex[v & 15];
        v >>= 4;
    }
}

void lp_reqid_new(uint64_t *rng, char out[LP_REQID_MAX])
{
    uint32_t n = (uint32_t)atomic_fetch_add_explicit(&reqid_counter, 1, memory_order_relaxed);
    /* Multiplying by an odd constant is a bijection mod 2^32: unique, but not sequential. */
    uint32_t mixed = n * 0x9E3779B1u;
    memcpy(out, "req_", 4);
    put_hex(out + 4, lp_rand_next(rng), 16);
    put_hex(out + 20, mixed, 8);
    out[28] = '\0';
}

bool lp_reqid_sane(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n + 1 >= LP_REQID_MAX)
            return false;
    }
    return n > 0;
}
