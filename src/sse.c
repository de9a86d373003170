/* sse.c - incremental SSE parser (see sse.h for the grammar and the memory bound).
 *
 * Two cheap passes touch each byte: lp_sse_feed scans new bytes for blank lines only to enforce
 * the per-event ceiling before buffering them, and lp_sse_next parses lines. Both keep their
 * position across calls, so a long line arriving in many chunks is never rescanned.
 */
#include "sse.h"

#include <stdint.h>
#include <string.h>

#define SSE_DEFAULT_MAX (1024 * 1024)

static const char bom[3] = {'\xEF', '\xBB', '\xBF'};

static void reset_event(struct lp_sse_parser *p)
{
    p->event_rel = p->event_len = 0;
    p->data_rel = p->data_len = 0;
    p->n_data = 0;
    p->has_field = false;
}

void lp_sse_init(struct lp_sse_parser *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof *p);
    p->max_event = max_event_bytes ? max_event_bytes : SSE_DEFAULT_MAX;
    /* The buffer's own bound is enforced by lp_sse_feed (pending incomplete event <= max_event);
     * complete events waiting to be taken are bounded by the caller's chunk size. */
    lp_buf_init(&p->buf, 0);
    /* Joined data is always shorter than the event's raw bytes. */
    lp_buf_init(&p->scratch, p->max_event + 64);
    p->b_line_start = true;
}

void lp_sse_free(struct lp_sse_parser *p)
{
    lp_buf_free(&p->buf);
    lp_buf_free(&p->scratch);
    p->start = p->scan = p->lscan = p->boundary = 0;
    reset_event(p);
}

/* Drop consumed bytes [0, start) lazily: a full drain is a free reset; otherwise move only when
 * the consumed prefix is at least half the buffer, so the total bytes moved never exceed the
 * bytes consumed (amortised O(1) per byte, not a memmove per event). */
static void compact(struct lp_sse_parser *p)
{
    size_t s = p->start;
    if (s == 0 || (s < p->buf.len && s < p->buf.len / 2))
        return;
    lp_buf_consume(&p->buf, s);
    p->scan -= s;
    p->lscan -= s;
    p->boundary = p->boundary > s ? p->boundary - s : 0;
    p->start = 0;
}

/* Offset of the first '\n' or '\r' in p[i, len), or len. SWAR over 8-byte words (the has-zero-
 * byte trick on v^"\n\n.." and v^"\r\r..") because event payloads are long lines of JSON. */
static size_t find_eol(const char *p, size_t i, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (len - i >= 8) {
        uint64_t v, n, r;
        memcpy(&v, p + i, 8);
        n = v ^ (ones * '\n');
        r = v ^ (ones * '\r');
        if (((n - ones) & ~n & high) | ((r - ones) & ~r & high))
            break;
        i += 8;
    }
    while (i < len && p[i] != '\n' && p[i] != '\r')
        i++;
    return i;
}

/* Scan new bytes for event ends (blank lines) and check that no event, complete or still
 * pending, is larger than the ceiling. Commits the scan state only on success. This is an
 * approximation of lp_sse_next's parse that may differ by the BOM or one '\n', which does not
 * matter for a ceiling. */
static enum lp_status check_ceiling(struct lp_sse_parser *p, const char *buf, size_t len)
{
    size_t base = p->buf.len;
    size_t evb = p->boundary > p->start ? p->boundary : p->start;
    size_t boundary = p->boundary;
    bool ls = p->b_line_start, pcr = p->b_prev_cr;
    for (size_t i = 0; i < len; i++) {
        size_t j = find_eol(buf, i, len);
        if (j > i)
            ls = pcr = false; /* ordinary bytes before the terminator */
        if (j == len)
            break;
        i = j;
        size_t abs = base + j;
        if (buf[j] == '\n' && pcr) { /* second half of a CRLF whose CR already ended the line */
            pcr = false;
            if (boundary == abs)
                boundary = evb = abs + 1;
            continue;
        }
        if (ls) {
            if (abs + 1 - evb > p->max_event)
                return LP_ERR_TOOBIG;
            boundary = evb = abs + 1;
        }
        ls = true;
        pcr = buf[j] == '\r';
    }
    if (base + len - evb > p->max_event)
        return LP_ERR_TOOBIG;
    p->boundary = boundary;
    p->b_line_start = ls;
    p->b_prev_cr = pcr;
    return LP_OK;
}

enum lp_status lp_sse_feed(struct lp_sse_parser *p, const char *buf, size_t len)
{
    if (p->failed)
        return LP_ERR_TOOBIG;
    if (len == 0)
        return LP_OK;
    compact(p);
    if (check_ceiling(p, buf, len) != LP_OK || lp_buf_append(&p->buf, buf, len) != LP_OK) {
        p->failed = true;
        return LP_ERR_TOOBIG;
    }
    return LP_OK;
}

static void add_data(struct lp_sse_parser *p, size_t v, size_t vlen)
{
    const char *d = p->buf.data;
    p->n_data++;
    if (p->n_data == 1) {
        /* The common case (one data line) points into the buffer: no copy. */
        p->data_rel = v - p->start;
        p->data_len = vlen;
        return;
    }
    if (p->n_data == 2) {
        lp_buf_reset(&p->scratch);
        if (lp_buf_append(&p->scratch, d + p->start + p->data_rel, p->data_len) != LP_OK)
            p->failed = true;
    }
    if (lp_buf_appendc(&p->scratch, '\n') != LP_OK ||
        lp_buf_append(&p->scratch, d + v, vlen) != LP_OK)
        p->failed = true; /* cannot happen while the feed ceiling holds; noted for safety */
}

static bool name_is(const char *name, size_t n, const char *lit, size_t litlen)
{
    return n == litlen && memcmp(name, lit, n) == 0;
}

/* One non-blank line [a, b) of the current event. */
static void on_line(struct lp_sse_parser *p, size_t a, size_t b)
{
    const char *d = p->buf.data;
    if (d[a] == ':')
        return; /* comment */
    const char *colon = memchr(d + a, ':', b - a);
    size_t name_end = colon ? (size_t)(colon - d) : b;
    size_t v = colon ? name_end + 1 : b;
    if (v < b && d[v] == ' ')
        v++;
    p->has_field = true;
    if (name_is(d + a, name_end - a, "data", 4))
        add_data(p, v, b - v);
    else if (name_is(d + a, name_end - a, "event", 5)) {
        p->event_rel = v - p->start;
        p->event_len = b - v;
    }
    /* "id", "retry" and unknown fields are ignored. */
}

static void emit(struct lp_sse_parser *p, size_t end, struct lp_sse_event *ev)
{
    const char *base = p->buf.data + p->start;
    ev->raw = base;
    ev->raw_len = end - p->start;
    ev->event = p->event_len ? base + p->event_rel : "";
    ev->event_len = p->event_len;
    if (p->n_data > 1) {
        ev->data = p->scratch.data;
        ev->data_len = p->scratch.len;
    } else {
        ev->data = p->n_data ? base + p->data_rel : "";
        ev->data_len = p->data_len;
    }
    ev->is_comment_only = !p->has_field;
    ev->has_data = p->n_data > 0;
    p->start = p->scan = p->lscan = end;
    reset_event(p);
}

/* Skip a BOM at the very start of the stream. false: more bytes are needed to decide. */
static bool check_bom(struct lp_sse_parser *p, bool at_eof)
{
    size_t avail = p->buf.len;
    size_t n = avail < 3 ? avail : 3;
    if (memcmp(p->buf.data ? p->buf.data : "", bom, n) == 0) {
        if (avail < 3 && !at_eof)
            return false;
        if (avail >= 3)
            p->scan = p->lscan = 3;
    }
    p->bom_done = true;
    return true;
}

static enum lp_status next_event(struct lp_sse_parser *p, struct lp_sse_event *ev, bool at_eof)
{
    if (!p->bom_done && !check_bom(p, at_eof))
        return LP_AGAIN;
    const char *d = p->buf.data;
    size_t len = p->buf.len;
    for (;;) {
        size_t i = find_eol(d, p->lscan > p->scan ? p->lscan : p->scan, len);
        p->lscan = i;
        if (i >= len)
            return LP_AGAIN;
        size_t next = i + 1;
        if (d[i] == '\r') {
            if (i + 1 == len && !at_eof)
                return LP_AGAIN; /* a '\n' may follow in the next chunk */
            if (i + 1 < len && d[i + 1] == '\n')
                next = i + 2;
        }
        if (i == p->scan) {
            emit(p, next, ev);
            return LP_OK;
        }
        on_line(p, p->scan, i);
        p->scan = p->lscan = next;
    }
}

enum lp_status lp_sse_next(struct lp_sse_parser *p, struct lp_sse_event *ev)
{
    return next_event(p, ev, false);
}

enum lp_status lp_sse_finish(struct lp_sse_parser *p, struct lp_sse_event *ev)
{
    return next_event(p, ev, true);
}

size_t lp_sse_pending(const struct lp_sse_parser *p)
{
    return p->buf.len - p->start;
}
