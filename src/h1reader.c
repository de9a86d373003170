/* h1reader.c - incremental HTTP/1.1 response reader (see h1reader.h). */
#include "h1reader.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "util/alloc.h"

enum { RS_HEAD = 0, RS_LENGTH, RS_CHUNKED, RS_CLOSE, RS_DONE, RS_ERROR };

/* Chunked framing states (the data itself is returned as spans). */
enum {
    CS_SIZE = 0,
    CS_EXT,
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_START,
    CS_TRAILER_LINE,
    CS_TRAILER_LF,
    CS_END,
};

#define MAX_CHUNK_LINE 4096
#define MAX_TRAILERS 16384

void lp_h1reader_init(struct lp_h1reader *r)
{
    memset(r, 0, sizeof *r);
}

void lp_h1reader_free(struct lp_h1reader *r)
{
    free(r->head);
    free(r->hoff);
    memset(r, 0, sizeof *r);
}

static enum lp_h1r_event fail(struct lp_h1reader *r, const char *why)
{
    r->state = RS_ERROR;
    r->error = why;
    return LP_H1R_ERROR;
}

/* The head is complete in r->head[0, r->head_len): parse it, choose the body's framing. */
static enum lp_h1r_event head_done(struct lp_h1reader *r)
{
    struct lp_http1_header h[LP_H1R_MAX_HEADERS];
    struct lp_http1_response resp;
    const char *why = NULL;
    if (lp_http1_parse_response_head(r->head, r->head_len, &resp, h, LP_H1R_MAX_HEADERS, &why) != 0)
        return fail(r, why);
    if (resp.status < 200) {
        if (resp.status == 101)
            return fail(r, "unexpected 101 Switching Protocols");
        /* An interim response: the final one follows on the same connection. */
        r->head_len = 0;
        r->scan = 0;
        return LP_H1R_MORE;
    }
    r->status = resp.status;
    r->minor = resp.minor;
    r->keep_alive = resp.keep_alive;
    free(r->hoff);
    r->hoff = resp.n_headers ? lp_xmalloc(resp.n_headers * 2 * sizeof *r->hoff) : NULL;
    for (size_t i = 0; i < resp.n_headers; i++) {
        r->hoff[2 * i] = (uint32_t)(h[i].name - r->head);
        r->hoff[2 * i + 1] = (uint32_t)(h[i].value - r->head);
    }
    r->n_hdrs = resp.n_headers;
    if (resp.status == 204 || resp.status == 304) {
        if (resp.chunked || (resp.status == 204 && resp.content_length > 0))
            return fail(r, "body announced on a 204 or 304 response");
        r->state = RS_DONE;
    } else if (resp.chunked) {
        r->state = RS_CHUNKED;
        r->cstate = CS_SIZE;
    } else if (resp.content_length >= 0) {
        r->remaining = (uint64_t)resp.content_length;
        r->state = RS_LENGTH;
    } else {
        r->state = RS_CLOSE;
        r->keep_alive = false;
    }
    return LP_H1R_HEAD;
}

static enum lp_h1r_event feed_head(struct lp_h1reader *r, const char *in, size_t len, size_t *used)
{
    size_t old = r->head_len;
    size_t room = LP_H1R_MAX_HEAD - old;
    size_t n = len < room ? len : room;
    if (r->head_cap < old + n) {
        size_t cap = r->head_cap ? r->head_cap : 512;
        while (cap < old + n)
            cap *= 2;
        r->head = lp_xrealloc(r->head, cap);
        r->head_cap = cap;
    }
    memcpy(r->head + old, in, n);
    r->head_len = old + n;
    size_t end = lp_http1_find_head_end(r->head, r->head_len, &r->scan);
    if (end == 0) {
        *used = n;
        if (r->head_len == LP_H1R_MAX_HEAD)
            return fail(r, "response head larger than 64 KiB");
        return LP_H1R_MORE;
    }
    *used = end - old;
    r->head_len = end;
    return head_done(r);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int size_line_done(struct lp_h1reader *r)
{
    return r->remaining == 0 ? CS_TRAILER_START : CS_DATA;
}

/* One framing byte of a chunked body; returns the next state or -1 on an error. */
static int chunk_step(struct lp_h1reader *r, char ch)
{
    if (r->cstate <= CS_SIZE_LF && ++r->line_bytes > MAX_CHUNK_LINE)
        return -1;
    if (r->cstate >= CS_TRAILER_START && ++r->trailer_bytes > MAX_TRAILERS)
        return -1;
    switch (r->cstate) {
    case CS_SIZE: {
        int h = hexval(ch);
        if (h >= 0) {
            if (++r->digits > 15)
                return -1;
            r->remaining = r->remaining * 16 + (uint64_t)h;
            return CS_SIZE;
        }
        if (r->digits == 0)
            return -1;
        if (ch == '\r')
            return CS_SIZE_LF;
        if (ch == '\n')
            return size_line_done(r);
        return (ch == ';' || ch == ' ' || ch == '\t') ? CS_EXT : -1;
    }
    case CS_EXT:
        if (ch == '\r')
            return CS_SIZE_LF;
        if (ch == '\n')
            return size_line_done(r);
        return is_value_char((unsigned char)ch) ? CS_EXT : -1;
    case CS_SIZE_LF:
        return ch == '\n' ? size_line_done(r) : -1;
    case CS_DATA_CR:
        if (ch == '\r')
            return CS_DATA_LF;
        return ch == '\n' ? CS_SIZE : -1;
    case CS_DATA_LF:
        return ch == '\n' ? CS_SIZE : -1;
    case CS_TRAILER_START:
        if (ch == '\r')
            return CS_TRAILER_LF;
        if (ch == '\n')
            return CS_END;
        return (ch != ':' && ch > 0x20 && ch < 0x7f) ? CS_TRAILER_LINE : -1;
    case CS_TRAILER_LINE:
        if (ch == '\n')
            return CS_TRAILER_START;
        return (ch == '\r' || is_value_char((unsigned char)ch)) ? CS_TRAILER_LINE : -1;
    case CS_TRAILER_LF:
        return ch == '\n' ? CS_END : -1;
    default:
        return -1;
    }
}

static enum lp_h1r_event feed_chunked(struct lp_h1reader *r, const char *in, size_t len,
                                      size_t *used, const char **data, size_t *dlen)
{
    size_t i = 0;
    while (i < len) {
        if (r->cstate == CS_DATA) {
            size_t n = len - i;
            if (n > r->remaining)
                n = (size_t)r->remaining;
            r->remaining -= n;
            if (r->remaining == 0)
                r->cstate = CS_DATA_CR;
            *data = in + i;
            *dlen = n;
            *used = i + n;
            return LP_H1R_DATA;
        }
        int prev = r->cstate;
        int next = chunk_step(r, in[i++]);
        if (next < 0) {
            *used = i;
            return fail(r, "malformed chunked framing");
        }
        r->cstate = next;
        if (next == CS_SIZE && prev != CS_SIZE) {
            r->remaining = 0;
            r->digits = 0;
            r->line_bytes = 0;
        }
        if (next == CS_END) {
            r->state = RS_DONE;
            *used = i;
            return LP_H1R_DONE;
        }
    }
    *used = i;
    return LP_H1R_MORE;
}

enum lp_h1r_event lp_h1reader_feed(struct lp_h1reader *r, const char *in, size_t len, size_t *used,
                                   const char **data, size_t *dlen)
{
    *used = 0;
    *data = NULL;
    *dlen = 0;
    if (len)
        r->any = true;
    switch (r->state) {
    case RS_HEAD: {
        /* Interim (1xx) heads are consumed here: go on with the bytes after them. */
        enum lp_h1r_event ev = LP_H1R_MORE;
        while (*used < len && ev == LP_H1R_MORE) {
            size_t u = 0;
            ev = feed_head(r, in + *used, len - *used, &u);
            *used += u;
        }
        return ev;
    }
    case RS_LENGTH:
        if (r->remaining == 0) {
            r->state = RS_DONE;
            return LP_H1R_DONE;
        }
        if (len == 0)
            return LP_H1R_MORE;
        *dlen = len < r->remaining ? len : (size_t)r->remaining;
        r->remaining -= *dlen;
        *data = in;
        *used = *dlen;
        return LP_H1R_DATA;
    case RS_CHUNKED:
        return feed_chunked(r, in, len, used, data, dlen);
    case RS_CLOSE:
        if (len == 0)
            return LP_H1R_MORE;
        *data = in;
        *dlen = *used = len;
        return LP_H1R_DATA;
    case RS_DONE:
        return LP_H1R_DONE;
    default:
        return LP_H1R_ERROR;
    }
}

enum lp_h1r_event lp_h1reader_eof(struct lp_h1reader *r)
{
    switch (r->state) {
    case RS_CLOSE:
        r->state = RS_DONE;
        return LP_H1R_DONE;
    case RS_DONE:
        return LP_H1R_DONE;
    case RS_LENGTH:
        if (r->remaining == 0) {
            r->state = RS_DONE;
            return LP_H1R_DONE;
        }
        return fail(r, "connection closed before the end of the body");
    case RS_HEAD:
        return fail(r, r->any ? "connection closed inside the response head"
                              : "connection closed before a response");
    case RS_CHUNKED:
        return fail(r, "connection closed before the last chunk");
    default:
        return LP_H1R_ERROR;
    }
}

bool lp_h1reader_started(const struct lp_h1reader *r)
{
    return r->any;
}

bool lp_h1reader_reusable(const struct lp_h1reader *r)
{
    return r->state == RS_DONE && r->keep_alive;
}

const char *lp_h1reader_error(const struct lp_h1reader *r)
{
    return r->error ? r->error : "malformed response";
}

int lp_h1reader_status(const struct lp_h1reader *r)
{
    return r->status;
}

int lp_h1reader_minor(const struct lp_h1reader *r)
{
    return r->minor;
}

size_t lp_h1reader_header_count(const struct lp_h1reader *r)
{
    return r->n_hdrs;
}

void lp_h1reader_header_at(const struct lp_h1reader *r, size_t i, const char **name,
                           const char **value)
{
    *name = r->head + r->hoff[2 * i];
    *value = r->head + r->hoff[2 * i + 1];
}

const char *lp_h1reader_header(const struct lp_h1reader *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (strcasecmp(r->head + r->hoff[2 * i], name) == 0)
            return r->head + r->hoff[2 * i + 1];
    }
    return NULL;
}
