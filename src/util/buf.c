#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void lp_buf_init(struct lp_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX / 2;
}

void lp_buf_free(struct lp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void lp_buf_reset(struct lp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

enum lp_status lp_buf_reserve(struct lp_buf *b, size_t extra)
{
    size_t max = b->max ? b->max : SIZE_MAX / 2;
    if (extra > max || b->len > max - extra)
        return LP_ERR_TOOBIG;
    size_t need = b->len + extra + 1; /* +1 keeps room for the terminating NUL */
    if (need <= b->cap)
        return LP_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap < SIZE_MAX / 4 ? cap * 2 : need;
    b->data = lp_xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0'; /* keep the invariant for a fresh allocation too */
    return LP_OK;
}

enum lp_status lp_buf_append(struct lp_buf *b, const void *p, size_t n)
{
    enum lp_status rc = lp_buf_reserve(b, n);
    if (rc != LP_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LP_OK;
}

enum lp_status lp_buf_appends(struct lp_buf *b, const char *s)
{
    return lp_buf_append(b, s, strlen(s));
}

enum lp_status lp_buf_appendc(struct lp_buf *b, char c)
{
    return lp_buf_append(b, &c, 1);
}

enum lp_status lp_buf_vprintf(struct lp_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return LP_ERR;
    enum lp_status rc = lp_buf_reserve(b, (size_t)n);
    if (rc != LP_OK)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return LP_OK;
}

enum lp_status lp_buf_printf(struct lp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum lp_status rc = lp_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

enum lp_status lp_buf_append_json_escaped(struct lp_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[7];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                tmp[0] = '\\';
                tmp[1] = 'u';
                tmp[2] = '0';
                tmp[3] = '0';
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 15];
                tmp[6] = '\0';
                esc = tmp;
            }
        }
        if (!esc)
            continue;
        if (lp_buf_append(b, s + start, i - start) != LP_OK || lp_buf_appends(b, esc) != LP_OK)
            return LP_ERR_TOOBIG;
        start = i + 1;
    }
    return lp_buf_append(b, s + start, n - start);
}

void lp_buf_consume(struct lp_buf *b, size_t n)
{
    if (n >= b->len) {
        lp_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *lp_buf_steal(struct lp_buf *b, size_t *len_out)
{
    if (!b->data)
        lp_buf_reserve(b, 0);
    char *p = b->data;
    if (len_out)
        *len_out = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
