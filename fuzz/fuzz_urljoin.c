/* fuzz_urljoin.c - libFuzzer target for the upstream URL joiner (src/urljoin.h).
 *
 * Input: "base\0req_path\0query" (a missing part is passed as NULL; the base always exists).
 * Checks beyond "no crash, no leak": never NULL; the result starts with the base's
 * scheme://authority; it contains the request path's endpoint (the path minus a leading "/v1"
 * segment); a non-empty query ends it; it is never longer than all parts plus "/", "?" and "&".
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "urljoin.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static size_t authority_end(const char *base)
{
    const char *sep = strstr(base, "://");
    const char *auth = sep ? sep + 3 : base;
    return (size_t)(auth - base) + strcspn(auth, "/?#");
}

static void check_join(const char *base, const char *path, const char *query)
{
    char *r = lp_urljoin(base, path, query);
    CHECK(r != NULL);
    size_t rlen = strlen(r), alen = authority_end(base);
    CHECK(strncmp(r, base, alen) == 0);
    const char *p = path ? path : "";
    const char *q = query ? query : "";
    size_t qlen = strlen(q);
    CHECK(rlen <= strlen(base) + strlen(p) + qlen + 3);
    if (qlen)
        CHECK(rlen > qlen && strcmp(r + rlen - qlen, q) == 0);
    /* The endpoint: the request path without its leading '/' and a leading "v1" segment. */
    const char *ep = p[0] == '/' ? p + 1 : p;
    if (!strncmp(ep, "v1", 2) && (ep[2] == '/' || ep[2] == '\0'))
        ep += 2;
    CHECK(strstr(r + alen, ep) != NULL);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    const char *parts[3] = {s, NULL, NULL};
    char *z = s;
    for (int i = 1; i < 3; i++) {
        z = memchr(z, '\0', size - (size_t)(z - s));
        if (!z)
            break;
        parts[i] = ++z; /* at most s + size, the terminator: "" */
    }
    check_join(parts[0], parts[1], parts[2]);
    check_join(parts[0], parts[1], NULL);
    free(s);
    return 0;
}
