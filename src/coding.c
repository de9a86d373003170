/* coding.c - incremental gzip/deflate decoding on zlib. See coding.h for the contract. */
#include "coding.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "util/alloc.h"

enum dstate {
    DS_SNIFF, /* deflate: waiting for two bytes to tell zlib from raw deflate */
    DS_RUN,   /* inside a compressed stream (or gzip member) */
    DS_END,   /* a stream ended cleanly; gzip may start another member */
    DS_ERROR,
};

struct lp_coding {
    z_stream z;
    bool z_init;
    enum lp_coding_kind kind;
    enum dstate st;
    uint32_t max_ratio;
    unsigned char sniff[2];
    size_t n_sniff;   /* bytes held in sniff */
    size_t sniff_off; /* of those, already given to zlib */
    uint64_t total_in;
    uint64_t total_out;
    const char *err;
};

/* ---- Content-Encoding values --------------------------------------------------------------- */

static bool token_is(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

enum lp_coding_kind lp_coding_kind_of(const char *v)
{
    enum lp_coding_kind k = LP_CODING_IDENTITY;
    if (!v)
        return k;
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        size_t n = (size_t)(t - p);
        enum lp_coding_kind this = LP_CODING_UNSUPPORTED;
        if (n == 0 || token_is(p, n, "identity"))
            this = LP_CODING_IDENTITY;
        else if (token_is(p, n, "gzip") || token_is(p, n, "x-gzip"))
            this = LP_CODING_GZIP;
        else if (token_is(p, n, "deflate"))
            this = LP_CODING_DEFLATE;
        if (this != LP_CODING_IDENTITY)
            k = k == LP_CODING_IDENTITY ? this : LP_CODING_UNSUPPORTED; /* stacked: unsupported */
        p = e;
    }
    return k;
}

const char *lp_coding_kind_name(enum lp_coding_kind k)
{
    switch (k) {
    case LP_CODING_IDENTITY:
        return "identity";
    case LP_CODING_GZIP:
        return "gzip";
    case LP_CODING_DEFLATE:
        return "deflate";
    default:
        return "unsupported";
    }
}

/* ---- decoder ------------------------------------------------------------------------------- */

/* zlib could not allocate its state (a few tens of KiB): the util/alloc policy, abort. */
static void oom(void)
{
    fputs("llm-proxy: out of memory (zlib)\n", stderr);
    abort();
}

static enum lp_status fail(struct lp_coding *c, const char *why)
{
    if (c->st != DS_ERROR) {
        c->st = DS_ERROR;
        c->err = why;
    }
    return LP_ERR;
}

static bool z_start(struct lp_coding *c, int window_bits)
{
    memset(&c->z, 0, sizeof c->z);
    if (inflateInit2(&c->z, window_bits) != Z_OK)
        return false;
    c->z_init = true;
    c->st = DS_RUN;
    return true;
}

struct lp_coding *lp_coding_new(enum lp_coding_kind kind, uint32_t max_ratio)
{
    if (kind != LP_CODING_GZIP && kind != LP_CODING_DEFLATE)
        return NULL;
    struct lp_coding *c = lp_xcalloc(1, sizeof *c);
    c->kind = kind;
    c->max_ratio = max_ratio ? max_ratio : LP_CODING_DEFAULT_RATIO;
    if (kind == LP_CODING_GZIP) {
        if (!z_start(c, 15 + 16))
            oom();
    } else {
        c->st = DS_SNIFF;
    }
    return c;
}

void lp_coding_free(struct lp_coding *c)
{
    if (!c)
        return;
    if (c->z_init)
        inflateEnd(&c->z);
    free(c);
}

/* RFC 1950: CM 8, CINFO <= 7, the 16-bit header a multiple of 31. */
static bool is_zlib_header(const unsigned char h[2])
{
    return (h[0] & 0x0f) == 8 && (h[0] >> 4) <= 7 && ((h[0] << 8) | h[1]) % 31 == 0;
}

/* Run inflate on [in, in_len) into [out, out_cap); updates totals and state. */
static enum lp_status run(struct lp_coding *c, const unsigned char *in, size_t in_len, size_t *used,
                          char *out, size_t out_cap, size_t *produced)
{
    c->z.next_in = (Bytef *)in;
    c->z.avail_in = (uInt)(in_len > UINT32_MAX ? UINT32_MAX : in_len);
    c->z.next_out = (Bytef *)out;
    c->z.avail_out = (uInt)(out_cap > UINT32_MAX ? UINT32_MAX : out_cap);
    uInt in0 = c->z.avail_in, out0 = c->z.avail_out;
    int zr = inflate(&c->z, Z_NO_FLUSH);
    *used = in0 - c->z.avail_in;
    *produced = out0 - c->z.avail_out;
    c->total_in += *used;
    c->total_out += *produced;
    switch (zr) {
    case Z_OK:
    case Z_BUF_ERROR: /* no progress possible now: more input or more room needed */
        break;
    case Z_STREAM_END:
        c->st = DS_END;
        break;
    case Z_MEM_ERROR:
        oom();
        break;
    default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
        return fail(c, c->kind == LP_CODING_GZIP ? "corrupt gzip body" : "corrupt deflate body");
    }
    if (c->total_out > (uint64_t)c->max_ratio * c->total_in + LP_CODING_SLACK)
        return fail(c, "decoded body exceeds the expansion ceiling (compression bomb)");
    return LP_OK;
}

enum lp_status lp_coding_feed(struct lp_coding *c, const char *in, size_t in_len, size_t *in_used,
                              char *out, size_t out_cap, size_t *out_len)
{
    *in_used = 0;
    *out_len = 0;
    if (c->st == DS_ERROR)
        return LP_ERR;
    const unsigned char *p = (const unsigned char *)in;
    size_t n = in_len;
    if (c->st == DS_SNIFF) {
        while (c->n_sniff < 2 && n > 0) {
            c->sniff[c->n_sniff++] = *p++;
            n--;
            (*in_used)++;
        }
        if (c->n_sniff < 2)
            return LP_OK;
        if (!z_start(c, is_zlib_header(c->sniff) ? 15 : -15))
            oom();
        /* The sniffed bytes were counted as consumed: account for them in total_in as zlib
         * takes them below. */
    }
    while (c->st != DS_ERROR && *out_len < out_cap) {
        size_t used = 0, produced = 0;
        if (c->sniff_off < c->n_sniff && c->st == DS_RUN) {
            /* The two sniffed bytes go to zlib before the caller's input. */
            if (run(c, c->sniff + c->sniff_off, c->n_sniff - c->sniff_off, &used, out + *out_len,
                    out_cap - *out_len, &produced) != LP_OK)
                return LP_ERR;
            c->sniff_off += used;
            *out_len += produced;
            if (used == 0 && produced == 0)
                break;
            continue;
        }
        if (c->st == DS_END) {
            if (n == 0)
                break;
            if (c->kind != LP_CODING_GZIP)
                return fail(c, "data after the end of the deflate body");
            /* Another gzip member. */
            if (inflateReset(&c->z) != Z_OK)
                return fail(c, "corrupt gzip body");
            c->st = DS_RUN;
        }
        if (run(c, p, n, &used, out + *out_len, out_cap - *out_len, &produced) != LP_OK) {
            *in_used += used;
            *out_len += produced;
            return LP_ERR;
        }
        p += used;
        n -= used;
        *in_used += used;
        *out_len += produced;
        if (used == 0 && produced == 0)
            break; /* zlib needs more input (n == 0) or holds nothing more */
    }
    return LP_OK;
}

enum lp_status lp_coding_feed_buf(struct lp_coding *c, const char *in, size_t in_len,
                                  struct lp_buf *out)
{
    char tmp[16384];
    size_t off = 0;
    for (;;) {
        size_t used = 0, n = 0;
        if (lp_coding_feed(c, in + off, in_len - off, &used, tmp, sizeof tmp, &n) != LP_OK)
            return LP_ERR;
        off += used;
        if (n && lp_buf_append(out, tmp, n) != LP_OK) {
            fail(c, "decoded body larger than its buffer limit");
            return LP_ERR_TOOBIG;
        }
        if (off == in_len && n < sizeof tmp)
            return LP_OK;
    }
}

enum lp_status lp_coding_finish(struct lp_coding *c)
{
    switch (c->st) {
    case DS_ERROR:
        return LP_ERR;
    case DS_END:
        return LP_OK;
    case DS_SNIFF:
        if (c->n_sniff == 0)
            return LP_OK;
        return fail(c, "truncated deflate body");
    case DS_RUN:
        if (c->total_in == 0 && c->sniff_off == 0 && c->n_sniff == 0)
            return LP_OK; /* nothing was fed: an empty body */
        return fail(c,
                    c->kind == LP_CODING_GZIP ? "truncated gzip body" : "truncated deflate body");
    }
    return LP_ERR;
}

const char *lp_coding_error(const struct lp_coding *c)
{
    return c->err;
}

uint64_t lp_coding_total_in(const struct lp_coding *c)
{
    return c->total_in;
}

uint64_t lp_coding_total_out(const struct lp_coding *c)
{
    return c->total_out;
}
