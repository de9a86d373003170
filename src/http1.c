/* http1.c - pure incremental HTTP/1.x request head parser and chunked decoder (see http1.h). */
#include "http1.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar: the characters of a method or header name. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* field-vchar / obs-text / SP / HTAB: everything except the other controls and DEL. */
static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

size_t lp_http1_find_head_end(const char *buf, size_t len, size_t *scan)
{
    size_t i = *scan;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl) {
            *scan = len;
            return 0;
        }
        size_t p = (size_t)(nl - buf) + 1; /* just after this LF */
        if (p < len && buf[p] == '\n')
            return p + 1;
        if (p + 1 < len && buf[p] == '\r' && buf[p + 1] == '\n')
            return p + 2;
        if (p >= len || (p + 1 == len && buf[p] == '\r')) {
            /* Cannot decide yet: resume at this LF when more bytes arrive. */
            *scan = (size_t)(nl - buf);
            return 0;
        }
        i = p;
    }
    *scan = len;
    return 0;
}

/* The next line of buf[*pos, len): returns its start, sets *line_len (without CRLF/LF) and
 * advances *pos past the LF. NULL when no LF is left, or (with *bad set) for a bare CR or NUL. */
static char *next_line(char *buf, size_t len, size_t *pos, size_t *line_len, bool *bad)
{
    char *start = buf + *pos;
    char *nl = memchr(start, '\n', len - *pos);
    if (!nl)
        return NULL;
    size_t n = (size_t)(nl - start);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    /* A CR anywhere else, or a NUL, is never valid in a head. */
    if (memchr(start, '\r', n) || memchr(start, '\0', n))
        *bad = true;
    *line_len = n;
    *pos = (size_t)(nl - buf) + 1;
    return start;
}

static int parse_version(const char *v, size_t n, int *minor)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return 400;
    if (v[5] != '1')
        return 505;
    *minor = v[7] == '0' ? 0 : 1;
    return 0;
}

static bool valid_target(const char *t, size_t n)
{
    if (n == 0 || t[0] != '/')
        return false; /* origin-form only: no "*", no absolute-form */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

int lp_http1_parse_request_line(char *line, size_t len, struct lp_http1_request *req,
                                const char **reason)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    char *sp1 = memchr(line, ' ', len);
    if (!sp1 || sp1 == line) {
        *reason = "malformed request line";
        return 400;
    }
    for (char *p = line; p < sp1; p++) {
        if (!is_tchar((unsigned char)*p)) {
            *reason = "invalid method";
            return 400;
        }
    }
    char *target = sp1 + 1;
    size_t rest = len - (size_t)(target - line);
    char *sp2 = memchr(target, ' ', rest);
    if (!sp2) {
        *reason = "malformed request line";
        return 400;
    }
    size_t tlen = (size_t)(sp2 - target);
    char *ver = sp2 + 1;
    size_t vlen = len - (size_t)(ver - line);
    *sp1 = '\0';
    req->method = line;
    if (!valid_target(target, tlen)) {
        *reason = "invalid request target";
        return 400;
    }
    int minor = 0;
    int st = parse_version(ver, vlen, &minor);
    if (st != 0) {
        *reason = st == 505 ? "unsupported HTTP version" : "malformed HTTP version";
        return st;
    }
    *sp2 = '\0';
    char *q = memchr(target, '?', tlen);
    if (q) {
        *q = '\0';
        req->query = q + 1;
    }
    req->path = target;
    req->minor = minor;
    ver[vlen] = '\0';
    return 0;
}

static int parse_content_length(const char *v, int64_t *out)
{
    if (*out >= 0)
        return 400; /* duplicate, even if equal: simplest smuggling-safe rule */
    if (*v == '\0')
        return 400;
    int64_t n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return 400;
        if (n > (INT64_MAX - 9) / 10)
            return 400;
        n = n * 10 + (*v - '0');
    }
    *out = n;
    return 0;
}

/* Connection is a comma-separated token list; only close and keep-alive matter here. */
static void parse_connection(const char *v, bool *close, bool *keep)
{
    while (*v) {
        while (*v == ',' || is_ows(*v))
            v++;
        const char *s = v;
        while (*v && *v != ',' && !is_ows(*v))
            v++;
        size_t n = (size_t)(v - s);
        if (n == 5 && strncasecmp(s, "close", 5) == 0)
            *close = true;
        else if (n == 10 && strncasecmp(s, "keep-alive", 10) == 0)
            *keep = true;
    }
}

struct head_flags {
    bool conn_close, conn_keep, have_te, te_other, expect_other, have_host;
};

/* Apply the semantics of the headers that frame the message. Returns 0 or a status. */
static int note_header(struct lp_http1_request *req, struct head_flags *f, const char *name,
                       size_t nlen, const char *value, const char **reason)
{
    switch (nlen) {
    case 4:
        if (strcasecmp(name, "host") == 0) {
            if (f->have_host) {
                *reason = "duplicate Host";
                return 400;
            }
            f->have_host = true;
        }
        break;
    case 6:
        if (strcasecmp(name, "expect") == 0 && strcasecmp(value, "100-continue") == 0)
            req->expect_continue = true;
        else if (strcasecmp(name, "expect") == 0)
            f->expect_other = true;
        break;
    case 10:
        if (strcasecmp(name, "connection") == 0)
            parse_connection(value, &f->conn_close, &f->conn_keep);
        break;
    case 14:
        if (strcasecmp(name, "content-length") == 0 &&
            parse_content_length(value, &req->content_length) != 0) {
            *reason = "invalid or duplicate Content-Length";
            return 400;
        }
        break;
    case 17:
        if (strcasecmp(name, "transfer-encoding") == 0) {
            /* Exactly one "chunked" is supported; lists and repeats are refused. */
            if (f->have_te || strcasecmp(value, "chunked") != 0)
                f->te_other = true;
            f->have_te = true;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Split one "name: value" line in place (NUL after the name and after the trimmed value).
 * Returns 0 with *nlen and *value set, or 400. */
static int split_header_line(char *line, size_t n, size_t *nlen, char **value, const char **reason)
{
    if (is_ows(line[0])) {
        *reason = "obsolete line folding";
        return 400;
    }
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == n || line[i] != ':') {
        *reason = "invalid header name";
        return 400;
    }
    *nlen = i;
    line[i++] = '\0';
    while (i < n && is_ows(line[i]))
        i++;
    size_t end = n;
    while (end > i && is_ows(line[end - 1]))
        end--;
    for (size_t k = i; k < end; k++) {
        if (!is_value_char((unsigned char)line[k])) {
            *reason = "invalid header value";
            return 400;
        }
    }
    line[end] = '\0';
    *value = line + i;
    return 0;
}

/* One "name: value" line, in place. Returns 0 or a status. */
static int parse_header_line(struct lp_http1_request *req, struct head_flags *f, char *line,
                             size_t n, const char **reason)
{
    size_t nlen = 0;
    char *value = NULL;
    int st = split_header_line(line, n, &nlen, &value, reason);
    if (st != 0)
        return st;
    if (req->n_headers == LP_HTTP1_MAX_HEADERS) {
        *reason = "too many headers";
        return 431;
    }
    req->headers[req->n_headers++] = (struct lp_http1_header){.name = line, .value = value};
    return note_header(req, f, line, nlen, value, reason);
}

/* Combine the framing headers once all are known. */
static int finish_head(struct lp_http1_request *req, const struct head_flags *f,
                       const char **reason)
{
    if (f->have_te && req->content_length >= 0) {
        *reason = "both Content-Length and Transfer-Encoding";
        return 400;
    }
    if (f->te_other) {
        *reason = "unsupported Transfer-Encoding";
        return 501;
    }
    req->chunked = f->have_te;
    if (f->expect_other) {
        *reason = "unsupported expectation";
        return 417;
    }
    if (req->minor == 0)
        req->keep_alive = f->conn_keep && !f->conn_close && !req->chunked;
    else
        req->keep_alive = !f->conn_close;
    if (req->minor == 0)
        req->expect_continue = false; /* 100 Continue is an HTTP/1.1 mechanism */
    return 0;
}

int lp_http1_parse_head(char *buf, size_t len, struct lp_http1_request *req, const char **reason)
{
    memset(req, 0, offsetof(struct lp_http1_request, headers));
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = false;
    *reason = "";
    size_t pos = 0, n = 0;
    bool bad = false;
    char *line = next_line(buf, len, &pos, &n, &bad);
    if (!line || bad) {
        *reason = "malformed request line";
        return 400;
    }
    int st = lp_http1_parse_request_line(line, n, req, reason);
    if (st != 0)
        return st;
    struct head_flags f = {0};
    while ((line = next_line(buf, len, &pos, &n, &bad)) != NULL && n > 0) {
        if (bad) {
            *reason = "invalid character in header";
            return 400;
        }
        st = parse_header_line(req, &f, line, n, reason);
        if (st != 0)
            return st;
    }
    if (!line || bad || pos != len) {
        *reason = "malformed header block";
        return 400;
    }
    return finish_head(req, &f, reason);
}

const char *lp_http1_header_get(const struct lp_http1_request *req, const char *name)
{
    /* First bytes compared with the case bit folded before the full compare: a cheap filter
     * with false positives only ('@' and '`' fold together), never false negatives. */
    unsigned char first = (unsigned char)name[0] | 0x20;
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *h = req->headers[i].name;
        if (((unsigned char)h[0] | 0x20) == first && strcasecmp(h, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

/* ---- chunked decoder ---- */

enum {
    CH_SIZE = 0, /* hex digits of the chunk size */
    CH_EXT,      /* after the size: BWS / ";" extensions up to the line break */
    CH_SIZE_LF,  /* saw CR after the size line, need LF */
    CH_DATA,     /* `remaining` data bytes */
    CH_DATA_CR,  /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* at the start of a trailer line (or the final empty line) */
    CH_TRAILER_LINE,
    CH_TRAILER_LF, /* saw CR of the final empty line, need LF */
    CH_DONE,
    CH_ERR_PARSE,
    CH_ERR_TOOBIG,
};

void lp_http1_chunked_init(struct lp_http1_chunked *c)
{
    memset(c, 0, sizeof *c);
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

/* The size line ended: either the last chunk (trailers follow) or data of `remaining` bytes. */
static int size_line_done(struct lp_http1_chunked *c, const struct lp_buf *out)
{
    if (c->remaining == 0)
        return CH_TRAILER_START;
    if (c->remaining > out->max - out->len)
        return CH_ERR_TOOBIG;
    return CH_DATA;
}

/* One framing byte (every state except CH_DATA). Returns the next state. */
static int step(struct lp_http1_chunked *c, char ch, const struct lp_buf *out)
{
    /* The size line (with extensions) is bounded; it carries no body data. */
    if (c->state <= CH_SIZE_LF && ++c->line_bytes > LP_HTTP1_MAX_CHUNK_LINE)
        return CH_ERR_PARSE;
    switch (c->state) {
    case CH_SIZE: {
        int h = hexval(ch);
        if (h >= 0) {
            if (++c->digits > 15)
                return CH_ERR_PARSE; /* > 2^60: refuse before it can overflow */
            c->remaining = c->remaining * 16 + (uint64_t)h;
            return CH_SIZE;
        }
        if (c->digits == 0)
            return CH_ERR_PARSE;
        if (ch == '\r')
            return CH_SIZE_LF;
        if (ch == '\n')
            return size_line_done(c, out);
        if (ch == ';' || is_ows(ch))
            return CH_EXT;
        return CH_ERR_PARSE;
    }
    case CH_EXT:
        if (ch == '\r')
            return CH_SIZE_LF;
        if (ch == '\n')
            return size_line_done(c, out);
        return is_value_char((unsigned char)ch) ? CH_EXT : CH_ERR_PARSE;
    case CH_SIZE_LF:
        return ch == '\n' ? size_line_done(c, out) : CH_ERR_PARSE;
    case CH_DATA_CR:
        if (ch == '\r')
            return CH_DATA_LF;
        return ch == '\n' ? CH_SIZE : CH_ERR_PARSE;
    case CH_DATA_LF:
        return ch == '\n' ? CH_SIZE : CH_ERR_PARSE;
    case CH_TRAILER_START:
        if (ch == '\r')
            return CH_TRAILER_LF;
        if (ch == '\n')
            return CH_DONE;
        return is_tchar((unsigned char)ch) ? CH_TRAILER_LINE : CH_ERR_PARSE;
    case CH_TRAILER_LINE:
        if (ch == '\n')
            return CH_TRAILER_START;
        return (ch == '\r' || is_value_char((unsigned char)ch)) ? CH_TRAILER_LINE : CH_ERR_PARSE;
    case CH_TRAILER_LF:
        return ch == '\n' ? CH_DONE : CH_ERR_PARSE;
    default:
        return c->state;
    }
}

static enum lp_status chunked_result(int state)
{
    switch (state) {
    case CH_DONE:
        return LP_OK;
    case CH_ERR_TOOBIG:
        return LP_ERR_TOOBIG;
    case CH_ERR_PARSE:
        return LP_ERR_PARSE;
    default:
        return LP_AGAIN;
    }
}

enum lp_status lp_http1_chunked_feed(struct lp_http1_chunked *c, const char *in, size_t len,
                                     size_t *used, struct lp_buf *out)
{
    size_t i = 0;
    while (i < len && c->state < CH_DONE) {
        if (c->state == CH_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (lp_buf_append(out, in + i, n) != LP_OK) {
                c->state = CH_ERR_TOOBIG; /* cannot happen: checked on the size line */
                break;
            }
            i += n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        int prev = c->state;
        if (prev >= CH_TRAILER_START && ++c->trailer_bytes > LP_HTTP1_MAX_TRAILERS) {
            c->state = CH_ERR_PARSE;
            break;
        }
        c->state = step(c, in[i++], out);
        /* A new line starts: reset the per-line counters. */
        if (c->state == CH_SIZE && prev != CH_SIZE) {
            c->remaining = 0;
            c->digits = 0;
            c->line_bytes = 0;
        }
    }
    *used = i;
    return chunked_result(c->state);
}

/* ---- response head ---- */

/* "HTTP/1.x SSS[ reason]" in place. Returns 0 or -1. */
static int parse_status_line(char *line, size_t n, struct lp_http1_response *resp,
                             const char **reason)
{
    if (n < 12 || line[8] != ' ' || parse_version(line, 8, &resp->minor) != 0) {
        *reason = "malformed status line";
        return -1;
    }
    int st = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9') {
            *reason = "malformed status code";
            return -1;
        }
        st = st * 10 + (line[i] - '0');
    }
    if (st < 100 || (n > 12 && line[12] != ' ')) {
        *reason = "malformed status code";
        return -1;
    }
    for (size_t i = 13; i < n; i++) {
        if (!is_value_char((unsigned char)line[i])) {
            *reason = "invalid reason phrase";
            return -1;
        }
    }
    resp->status = st;
    return 0;
}

/* The framing headers of a response. Returns 0 or -1. */
static int note_response_header(struct lp_http1_response *resp, struct head_flags *f,
                                const char *name, size_t nlen, const char *value,
                                const char **reason)
{
    if (nlen == 14 && strcasecmp(name, "content-length") == 0) {
        if (parse_content_length(value, &resp->content_length) != 0) {
            *reason = "invalid or duplicate Content-Length";
            return -1;
        }
    } else if (nlen == 17 && strcasecmp(name, "transfer-encoding") == 0) {
        if (f->have_te || strcasecmp(value, "chunked") != 0)
            f->te_other = true;
        f->have_te = true;
    } else if (nlen == 10 && strcasecmp(name, "connection") == 0) {
        parse_connection(value, &f->conn_close, &f->conn_keep);
    }
    return 0;
}

int lp_http1_parse_response_head(char *buf, size_t len, struct lp_http1_response *resp,
                                 struct lp_http1_header *hdrs, size_t max_hdrs, const char **reason)
{
    memset(resp, 0, sizeof *resp);
    resp->content_length = -1;
    *reason = "";
    size_t pos = 0, n = 0;
    bool bad = false;
    char *line = next_line(buf, len, &pos, &n, &bad);
    if (!line || bad) {
        *reason = "malformed status line";
        return -1;
    }
    if (parse_status_line(line, n, resp, reason) != 0)
        return -1;
    line[8] = '\0';
    struct head_flags f = {0};
    while ((line = next_line(buf, len, &pos, &n, &bad)) != NULL && n > 0) {
        size_t nlen = 0;
        char *value = NULL;
        if (bad || split_header_line(line, n, &nlen, &value, reason) != 0) {
            if (bad)
                *reason = "invalid character in header";
            return -1;
        }
        if (resp->n_headers == max_hdrs) {
            *reason = "too many response headers";
            return -1;
        }
        hdrs[resp->n_headers++] = (struct lp_http1_header){.name = line, .value = value};
        if (note_response_header(resp, &f, line, nlen, value, reason) != 0)
            return -1;
    }
    if (!line || bad || pos != len) {
        *reason = "malformed header block";
        return -1;
    }
    if (f.have_te && resp->content_length >= 0) {
        *reason = "both Content-Length and Transfer-Encoding";
        return -1;
    }
    if (f.te_other) {
        *reason = "unsupported Transfer-Encoding";
        return -1;
    }
    resp->chunked = f.have_te;
    resp->keep_alive = resp->minor == 0 ? f.conn_keep && !f.conn_close : !f.conn_close;
    return 0;
}
