/* fuzz_mask.c - the secret masker must never crash, overrun or leak a registered secret.
 *
 * The first input byte chooses how much of the rest is a registered secret; the rest is the text.
 * Invariants checked: the masked output never contains a registered secret made of key
 * characters [A-Za-z0-9_-] with 16+ of them (a shorter one may reappear inside a masked form's
 * head or tail; one containing '*' could be assembled from "****"), and masking with a tiny
 * ceiling stays within it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"

static int is_key_secret(const char *s, size_t n)
{
    if (n < LP_MASK_MIN_REVEAL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t slen = data[0] % 40;
    data++;
    size--;
    if (slen > size)
        slen = size;
    char *secret = malloc(slen + 1);
    memcpy(secret, data, slen);
    secret[slen] = '\0';
    const char *secrets[] = {secret};
    const char *text = (const char *)data + slen;
    size_t tlen = size - slen;

    struct lp_buf out;
    lp_buf_init(&out, 0);
    lp_mask(text, tlen, &out, secrets, 1);
    if (is_key_secret(secret, slen) && out.len && memmem(out.data, out.len, secret, slen))
        abort();
    lp_buf_free(&out);

    struct lp_buf small;
    lp_buf_init(&small, 32);
    lp_mask(text, tlen, &small, secrets, 1);
    if (small.len > 32)
        abort();
    lp_buf_free(&small);
    free(secret);
    return 0;
}
