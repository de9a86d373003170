/* jscan.c - one-pass JSON validator that records a request's top-level model/stream fields.
 *
 * The scanner is iterative: an explicit stack of open containers (capped at
 * LP_JSCAN_MAX_DEPTH) replaces recursion, so hostile nesting can neither blow the C stack nor
 * cost memory. Each byte is looked at a constant number of times. Strings are validated in place;
 * only the model value is ever decoded (into the one allocation this module makes).
 */
#include "jscan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/utf8.h"

/* Which top-level key the value being scanned belongs to. */
enum topkey {
    KEY_OTHER = 0,
    KEY_MODEL,
    KEY_STREAM,
    KEY_STREAM_OPTIONS,
    KEY_INCLUDE_USAGE, /* only inside the top-level stream_options object */
};

enum state {
    ST_VALUE,      /* a value must come next */
    ST_KEY,        /* an object key must come next (after ',') */
    ST_KEY_OR_END, /* just after '{': a key or '}' */
    ST_AFTER,      /* after a value: ',' or the closing bracket of the current container */
};

struct scanner {
    const unsigned char *p;
    size_t len;
    size_t pos;
    const char *err;
    size_t err_off;
    struct lp_jscan *out;
    int depth;              /* number of open containers */
    enum topkey key1;       /* key of the current depth-1 member */
    enum topkey key2;       /* key of the current member inside top-level stream_options */
    bool in_stream_options; /* depth >= 2 and the depth-2 container is stream_options' value */
    size_t top_val_start;   /* where the current depth-1 member's value began */
    unsigned char stack[LP_JSCAN_MAX_DEPTH]; /* '{' or '[' per open container */
};

static bool fail(struct scanner *s, const char *msg, size_t off)
{
    s->err = msg;
    s->err_off = off;
    return false;
}

static void skip_ws(struct scanner *s)
{
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return;
        s->pos++;
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* SWAR: true when any byte of v is < 0x20, >= 0x80, '"' or '\\'. The classic has-zero-byte
 * trick; it never misses a special byte (a false positive only sends us to the byte loop). */
static bool word_has_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\'); /* zero bytes where v has " or \\ */
    uint64_t zq = (q - ones) & ~q, zb = (b - ones) & ~b;  /* high bit set: a zero byte */
    uint64_t ctl = (v - ones * 0x20) & ~v;                /* high bit set: a byte < 0x20 */
    return ((zq | zb | ctl | v) & high) != 0;             /* v & high: a byte >= 0x80 */
}

/* Skip plain printable ASCII (the bulk of a prompt) from pos; returns the first other byte's
 * offset, or len. Eight bytes at a time while no word holds a special byte. */
static size_t skip_plain(const unsigned char *p, size_t pos, size_t len)
{
    while (len - pos >= 8) {
        uint64_t v;
        memcpy(&v, p + pos, 8);
        if (word_has_special(v))
            break;
        pos += 8;
    }
    while (pos < len) {
        unsigned char c = p[pos];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            break;
        pos++;
    }
    return pos;
}

/* Validate the string starting at s->pos (which holds '"'); leave pos after the closing quote.
 * *has_esc tells the caller whether the raw bytes equal the decoded value. */
static bool scan_string(struct scanner *s, bool *has_esc)
{
    const unsigned char *p = s->p;
    size_t start = s->pos++;
    *has_esc = false;
    for (;;) {
        s->pos = skip_plain(p, s->pos, s->len);
        if (s->pos >= s->len)
            return fail(s, "unterminated string", start);
        unsigned char c = p[s->pos];
        if (c == '"') {
            s->pos++;
            return true;
        }
        if (c == '\\') {
            *has_esc = true;
            if (s->pos + 1 >= s->len)
                return fail(s, "unterminated string", start);
            switch (p[s->pos + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                s->pos += 2;
                continue;
            case 'u':
                for (size_t i = 2; i < 6; i++)
                    if (s->pos + i >= s->len || hexval(p[s->pos + i]) < 0)
                        return fail(s, "invalid \\u escape", s->pos);
                s->pos += 6;
                continue;
            default:
                return fail(s, "invalid escape in string", s->pos);
            }
        }
        if (c < 0x20)
            return fail(s, "control character in string", s->pos);
        size_t n = lp_utf8_seq_len(p + s->pos, s->len - s->pos);
        if (n == 0)
            return fail(s, "invalid UTF-8 in string", s->pos);
        s->pos += n;
    }
}

static bool is_digit(const struct scanner *s)
{
    return s->pos < s->len && s->p[s->pos] >= '0' && s->p[s->pos] <= '9';
}

static void skip_digits(struct scanner *s)
{
    while (is_digit(s))
        s->pos++;
}

/* RFC 8259 number grammar; the magnitude is unbounded because we never convert it. */
static bool scan_number(struct scanner *s)
{
    if (s->p[s->pos] == '-')
        s->pos++;
    if (!is_digit(s))
        return fail(s, "invalid number", s->pos);
    if (s->p[s->pos] == '0') {
        s->pos++;
        if (is_digit(s))
            return fail(s, "leading zero in number", s->pos - 1);
    } else
        skip_digits(s);
    if (s->pos < s->len && s->p[s->pos] == '.') {
        s->pos++;
        if (!is_digit(s))
            return fail(s, "invalid number: digit expected after '.'", s->pos);
        skip_digits(s);
    }
    if (s->pos < s->len && (s->p[s->pos] | 0x20) == 'e') {
        s->pos++;
        if (s->pos < s->len && (s->p[s->pos] == '+' || s->p[s->pos] == '-'))
            s->pos++;
        if (!is_digit(s))
            return fail(s, "invalid number: digit expected in exponent", s->pos);
        skip_digits(s);
    }
    return true;
}

static bool scan_literal(struct scanner *s, const char *lit, size_t n)
{
    if (s->len - s->pos < n || memcmp(s->p + s->pos, lit, n) != 0)
        return fail(s, "invalid literal", s->pos);
    s->pos += n;
    return true;
}

static void put_utf8(uint32_t cp, char *dst, size_t *o)
{
    unsigned char *d = (unsigned char *)dst + *o;
    if (cp < 0x80) {
        d[0] = (unsigned char)cp;
        *o += 1;
    } else if (cp < 0x800) {
        d[0] = (unsigned char)(0xC0 | (cp >> 6));
        d[1] = (unsigned char)(0x80 | (cp & 0x3F));
        *o += 2;
    } else if (cp < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (cp >> 12));
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (cp & 0x3F));
        *o += 3;
    } else {
        d[0] = (unsigned char)(0xF0 | (cp >> 18));
        d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[3] = (unsigned char)(0x80 | (cp & 0x3F));
        *o += 4;
    }
}

/* 4 hex digits at p[0..4), or -1. */
static long hex4(const unsigned char *p, size_t avail)
{
    if (avail < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decode the inside of a string (no quotes) into dst, which must hold n bytes: the decoded form
 * is never longer than the escaped one (\uXXXX is 6 bytes for at most 3, a pair 12 for 4, and a
 * lone surrogate becomes the 3-byte U+FFFD). Defensive against truncated escapes. */
static size_t decode_into(const unsigned char *s, size_t n, char *dst)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c != '\\') {
            dst[o++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= n)
            break;
        unsigned char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b':
            dst[o++] = '\b';
            continue;
        case 'f':
            dst[o++] = '\f';
            continue;
        case 'n':
            dst[o++] = '\n';
            continue;
        case 'r':
            dst[o++] = '\r';
            continue;
        case 't':
            dst[o++] = '\t';
            continue;
        case 'u':
            break;
        default:
            dst[o++] = (char)e;
            continue;
        }
        long cp = hex4(s + i, n - i);
        if (cp < 0)
            break;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && n - i >= 6 && s[i] == '\\' && s[i + 1] == 'u') {
            long lo = hex4(s + i + 2, n - i - 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD; /* lone surrogate: keep the result valid UTF-8 */
        put_utf8((uint32_t)cp, dst, &o);
    }
    return o;
}

char *lp_jscan_decode_string(const char *tok, size_t tok_len, size_t *out_len)
{
    if (tok_len < 2 || tok[0] != '"' || tok[tok_len - 1] != '"')
        return NULL;
    char *dst = lp_xmalloc(tok_len - 1);
    size_t n = decode_into((const unsigned char *)tok + 1, tok_len - 2, dst);
    dst[n] = '\0';
    if (out_len)
        *out_len = n;
    return dst;
}

/* Compare the key token [start, end) (quotes included) with a short literal, unescaping when
 * needed so that "mod\u0065l" counts as "model". Keys of interest are < 32 bytes. */
static bool key_is(const struct scanner *s, size_t start, size_t end, bool has_esc, const char *lit)
{
    size_t litlen = strlen(lit);
    const unsigned char *raw = s->p + start + 1;
    size_t rawlen = end - start - 2;
    if (!has_esc)
        return rawlen == litlen && memcmp(raw, lit, litlen) == 0;
    if (rawlen > 6 * 32)
        return false;
    char tmp[6 * 32];
    size_t n = decode_into(raw, rawlen, tmp);
    return n == litlen && memcmp(tmp, lit, litlen) == 0;
}

static enum topkey classify_key(const struct scanner *s, size_t start, bool has_esc)
{
    size_t end = s->pos;
    if (s->depth == 1) {
        if (key_is(s, start, end, has_esc, "model"))
            return KEY_MODEL;
        if (key_is(s, start, end, has_esc, "stream"))
            return KEY_STREAM;
        if (key_is(s, start, end, has_esc, "stream_options"))
            return KEY_STREAM_OPTIONS;
    } else if (s->depth == 2 && s->in_stream_options) {
        if (key_is(s, start, end, has_esc, "include_usage"))
            return KEY_INCLUDE_USAGE;
    }
    return KEY_OTHER;
}

static bool token_is_true(const struct scanner *s, size_t start, size_t end)
{
    return end - start == 4 && memcmp(s->p + start, "true", 4) == 0;
}

/* A complete value of a depth-1 member ended at s->pos: record it if it is one of ours. */
static void on_top_value(struct scanner *s, size_t start)
{
    struct lp_jscan *o = s->out;
    size_t end = s->pos;
    switch (s->key1) {
    case KEY_MODEL:
        if (o->has_model && !o->dup_key)
            o->dup_key = "model";
        LP_FREE(&o->model);
        o->has_model = true;
        o->model_off = start;
        o->model_len = end - start;
        o->model_is_string = s->p[start] == '"';
        o->model_nul_free = true;
        if (o->model_is_string) {
            size_t n = 0;
            o->model = lp_jscan_decode_string((const char *)s->p + start, end - start, &n);
            o->model_nul_free = strlen(o->model) == n;
        }
        break;
    case KEY_STREAM:
        if (o->has_stream && !o->dup_key)
            o->dup_key = "stream";
        o->has_stream = true;
        o->stream = token_is_true(s, start, end);
        o->stream_is_bool =
            o->stream || (end - start == 5 && memcmp(s->p + start, "false", 5) == 0);
        break;
    case KEY_STREAM_OPTIONS:
        if (o->stream_options_len && !o->dup_key)
            o->dup_key = "stream_options";
        o->stream_options_off = start;
        o->stream_options_len = end - start;
        break;
    default:
        break;
    }
}

/* A scalar value ended at s->pos after starting at `start`. */
static void on_scalar(struct scanner *s, size_t start)
{
    if (s->depth == 1)
        on_top_value(s, start);
    else if (s->depth == 2 && s->in_stream_options && s->key2 == KEY_INCLUDE_USAGE)
        s->out->has_stream_options_include_usage = token_is_true(s, start, s->pos);
}

static bool push(struct scanner *s, unsigned char kind)
{
    if (s->depth >= LP_JSCAN_MAX_DEPTH)
        return fail(s, "nesting too deep", s->pos);
    if (s->depth == 1) {
        s->top_val_start = s->pos;
        s->in_stream_options = kind == '{' && s->key1 == KEY_STREAM_OPTIONS;
    }
    s->stack[s->depth++] = kind;
    s->pos++;
    return true;
}

/* Close the current container at s->pos (which holds `closer`). */
static bool pop(struct scanner *s, unsigned char closer)
{
    unsigned char want = s->stack[s->depth - 1] == '{' ? '}' : ']';
    if (closer != want)
        return fail(s, "mismatched bracket", s->pos);
    s->depth--;
    s->pos++;
    if (s->depth == 1) {
        on_top_value(s, s->top_val_start);
        s->in_stream_options = false;
    }
    return true;
}

/* Parse one value at s->pos. Containers only open here; the main loop handles their insides. */
static bool scan_value(struct scanner *s, enum state *st)
{
    size_t start = s->pos;
    bool esc;
    bool ok;
    switch (s->p[start]) {
    case '{':
        *st = ST_KEY_OR_END;
        return push(s, '{');
    case '[':
        if (!push(s, '['))
            return false;
        skip_ws(s);
        if (s->pos < s->len && s->p[s->pos] == ']') {
            *st = ST_AFTER;
            return pop(s, ']');
        }
        *st = ST_VALUE;
        return true;
    case '"':
        ok = scan_string(s, &esc);
        break;
    case 't':
        ok = scan_literal(s, "true", 4);
        break;
    case 'f':
        ok = scan_literal(s, "false", 5);
        break;
    case 'n':
        ok = scan_literal(s, "null", 4);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        ok = scan_number(s);
        break;
    default:
        return fail(s, "value expected", start);
    }
    if (ok)
        on_scalar(s, start);
    *st = ST_AFTER;
    return ok;
}

static bool scan_key(struct scanner *s, enum state *st)
{
    size_t start = s->pos;
    bool esc;
    if (s->p[start] != '"')
        return fail(s,
                    *st == ST_KEY ? "object key expected (trailing comma?)"
                                  : "object key or '}' expected",
                    start);
    if (!scan_string(s, &esc))
        return false;
    enum topkey k = classify_key(s, start, esc);
    if (s->depth == 1) {
        s->key1 = k;
        if (k == KEY_STREAM_OPTIONS) /* a duplicate stream_options replaces the earlier one */
            s->out->has_stream_options_include_usage = false;
    } else if (s->depth == 2)
        s->key2 = k;
    skip_ws(s);
    if (s->pos >= s->len || s->p[s->pos] != ':')
        return fail(s, "':' expected after object key", s->pos);
    s->pos++;
    *st = ST_VALUE;
    return true;
}

static bool scan_after(struct scanner *s, enum state *st)
{
    unsigned char c = s->p[s->pos];
    if (c == ',') {
        s->pos++;
        *st = s->stack[s->depth - 1] == '{' ? ST_KEY : ST_VALUE;
        return true;
    }
    if (c == '}' || c == ']')
        return pop(s, c);
    return fail(s, s->stack[s->depth - 1] == '{' ? "',' or '}' expected" : "',' or ']' expected",
                s->pos);
}

static bool scan_body(struct scanner *s)
{
    skip_ws(s);
    if (s->pos >= s->len)
        return fail(s, "empty body", s->pos);
    if (s->p[s->pos] != '{')
        return fail(s, "request body must be a JSON object", s->pos);
    enum state st = ST_VALUE;
    do {
        skip_ws(s);
        if (s->pos >= s->len)
            return fail(s, "unexpected end of input", s->pos);
        bool ok;
        if (st == ST_VALUE)
            ok = scan_value(s, &st);
        else if (st == ST_AFTER)
            ok = scan_after(s, &st);
        else if (st == ST_KEY_OR_END && s->p[s->pos] == '}') {
            st = ST_AFTER;
            ok = pop(s, '}');
        } else
            ok = scan_key(s, &st);
        if (!ok)
            return false;
    } while (s->depth > 0);
    skip_ws(s);
    if (s->pos != s->len)
        return fail(s, "trailing data after JSON value", s->pos);
    return true;
}

enum lp_status lp_jscan_request(const char *body, size_t len, struct lp_jscan *out,
                                const char **err_msg, size_t *err_off)
{
    memset(out, 0, sizeof *out);
    out->model_nul_free = true;
    struct scanner s = {
        .p = (const unsigned char *)body,
        .len = body ? len : 0,
        .out = out,
    };
    if (scan_body(&s))
        return LP_OK;
    lp_jscan_free(out);
    if (err_msg)
        *err_msg = s.err;
    if (err_off)
        *err_off = s.err_off;
    return LP_ERR_PARSE;
}

void lp_jscan_free(struct lp_jscan *s)
{
    if (!s)
        return;
    free(s->model);
    memset(s, 0, sizeof *s);
    s->model_nul_free = true;
}

char *lp_jscan_rewrite_model(const char *body, size_t len, const struct lp_jscan *s,
                             const char *new_model, size_t *out_len)
{
    size_t mlen = strlen(new_model);
    struct lp_buf b;
    lp_buf_init(&b, 0);
    /* One reservation covers the worst case (every byte escaped as \u00XX) so appends never
     * reallocate mid-body. */
    lp_buf_reserve(&b, len + 6 * mlen + 16);
    if (s->has_model) {
        lp_buf_append(&b, body, s->model_off);
        lp_buf_appendc(&b, '"');
        lp_buf_append_json_escaped(&b, new_model, mlen);
        lp_buf_appendc(&b, '"');
        size_t tail = s->model_off + s->model_len;
        lp_buf_append(&b, body + tail, len - tail);
    } else {
        size_t i = 0;
        while (i < len && body[i] != '{')
            i++;
        i = i < len ? i + 1 : len; /* just after '{' (a validated body always has one) */
        size_t j = i;
        while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r'))
            j++;
        bool empty = j >= len || body[j] == '}';
        lp_buf_append(&b, body, i);
        lp_buf_appends(&b, "\"model\":\"");
        lp_buf_append_json_escaped(&b, new_model, mlen);
        lp_buf_appends(&b, empty ? "\"" : "\",");
        lp_buf_append(&b, body + i, len - i);
    }
    return lp_buf_steal(&b, out_len);
}
