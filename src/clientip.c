/* clientip.c - trusted-proxy aware client address (see clientip.h). */
#include "clientip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
    return *len > 0;
}

bool lp_ip_parse(const char *s, size_t len, unsigned char out[16])
{
    char t[INET6_ADDRSTRLEN + 8];
    if (!s || !trim(&s, &len) || len >= sizeof t)
        return false;
    if (s[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        size_t n = (size_t)(close - s - 1);
        memcpy(t, s + 1, n);
        t[n] = '\0';
        return inet_pton(AF_INET6, t, out) == 1;
    }
    memcpy(t, s, len);
    t[len] = '\0';
    if (inet_pton(AF_INET6, t, out) == 1)
        return true;
    char *colon = strchr(t, ':'); /* a.b.c.d:port */
    if (colon && !strchr(colon + 1, ':'))
        *colon = '\0';
    unsigned char v4[4];
    if (inet_pton(AF_INET, t, v4) != 1)
        return false;
    memcpy(out, v4_prefix, 12);
    memcpy(out + 12, v4, 4);
    return true;
}

bool lp_cidr_parse(const char *s, struct lp_cidr *out)
{
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned char a[16];
    if (!lp_ip_parse(s, alen, a))
        return false;
    /* "[v6]" and "v4:port" forms are addresses, not blocks. */
    const char *p = s;
    while (*p == ' ')
        p++;
    if (*p == '[')
        return false;
    bool v4 = memcmp(a, v4_prefix, 12) == 0 && memchr(s, '.', alen) != NULL;
    int max = v4 ? 32 : 128;
    int bits = max;
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        while (*end == ' ')
            end++;
        if (end == slash + 1 || *end || v < 0 || v > max)
            return false;
        bits = (int)v;
    }
    if (v4)
        bits += 96;
    for (int i = bits; i < 128; i++)
        if (a[i / 8] & (0x80 >> (i % 8)))
            return false; /* host bits set */
    memcpy(out->addr, a, 16);
    out->bits = bits;
    return true;
}

static bool in_block(const struct lp_cidr *c, const unsigned char a[16])
{
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

bool lp_cidr_match(const struct lp_cidr *blocks, size_t n, const unsigned char addr[16])
{
    for (size_t i = 0; i < n; i++)
        if (in_block(&blocks[i], addr))
            return true;
    return false;
}

static void format_ip(const unsigned char a[16], char *out, size_t out_len)
{
    char t[INET6_ADDRSTRLEN];
    if (memcmp(a, v4_prefix, 12) == 0)
        inet_ntop(AF_INET, a + 12, t, sizeof t);
    else
        inet_ntop(AF_INET6, a, t, sizeof t);
    snprintf(out, out_len, "%s", t);
}

bool lp_clientip_resolve(const char *peer, const char *xff, const char *real_ip,
                         const struct lp_cidr *trusted, size_t n_trusted, char *out, size_t out_len)
{
    unsigned char a[16];
    if (!peer || !lp_ip_parse(peer, strlen(peer), a)) {
        snprintf(out, out_len, "%s", peer ? peer : "");
        return false;
    }
    format_ip(a, out, out_len);
    if (!n_trusted || !lp_cidr_match(trusted, n_trusted, a))
        return false;
    bool used = false;
    if (xff && *xff) {
        /* Right to left: each hop is the address the proxy to its right saw. Stop at the first
         * one that is not a trusted proxy; a garbled hop ends the walk at the last good one. */
        size_t end = strlen(xff);
        while (end > 0) {
            size_t start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            unsigned char h[16];
            if (!lp_ip_parse(xff + start, end - start, h))
                break;
            format_ip(h, out, out_len);
            used = true;
            if (!lp_cidr_match(trusted, n_trusted, h))
                break;
            end = start > 0 ? start - 1 : 0;
        }
        return used;
    }
    if (real_ip && lp_ip_parse(real_ip, strlen(real_ip), a)) {
        format_ip(a, out, out_len);
        return true;
    }
    return false;
}
