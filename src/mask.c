/* mask.c - hand-written scanners that find secrets in text and mask them (see mask.h).
 *
 * One left-to-right pass. Most bytes cannot start anything we look for, so a 256-entry trigger
 * table lets the loop skip them with one lookup; only at a trigger byte do the matchers run.
 * Every matcher returns the value's [start, end) within the input; the bytes before the value
 * (a keyword, "Bearer ", separators) are copied verbatim and the value is replaced by its
 * display form.
 */
#include "mask.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* A quoted value longer than this without a closing quote is masked up to here: the scan
 * stays bounded and an unterminated value still never leaks. */
#define MAX_QUOTED 8192
/* Minimum length of the key body after "sk-" (the reference's {20,}). */
#define SK_MIN_BODY 20
/* A value separated from its keyword only by blanks ("authorization failed") is masked only when
 * it is this long, to avoid masking ordinary words in prose; with ':' or '=' any length is. */
#define PROSE_MIN_VALUE 16

struct hit {
    size_t val_start; /* first byte to mask */
    size_t val_end;   /* one past the last byte to mask */
};

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Characters of an API key body: [A-Za-z0-9_-]. */
static bool is_keych(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

/* Characters of an unquoted credential token (RFC 6750 b64token plus '_'). */
static bool is_tokch(unsigned char c)
{
    return is_keych(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive: does `word` occur at in[i]? */
static bool ieq_at(const char *in, size_t len, size_t i, const char *word)
{
    size_t n = strlen(word);
    if (len - i < n)
        return false;
    for (size_t k = 0; k < n; k++) {
        if (lower((unsigned char)in[i + k]) != (unsigned char)word[k])
            return false;
    }
    return true;
}

static size_t span(const char *in, size_t len, size_t j, bool (*pred)(unsigned char))
{
    while (j < len && pred((unsigned char)in[j]))
        j++;
    return j;
}

/* End of a quoted value starting at j (just after the opening quote). With `escaped` the quote
 * was itself escaped (\"...\" inside a JSON string), so the value ends at the next backslash. */
static size_t quoted_end(const char *in, size_t len, size_t j, bool escaped)
{
    size_t lim = len - j > MAX_QUOTED ? j + MAX_QUOTED : len;
    for (size_t k = j; k < lim; k++) {
        if (escaped && in[k] == '\\')
            return k;
        if (!escaped && in[k] == '"' && (k == j || in[k - 1] != '\\'))
            return k;
    }
    return lim;
}

/* "sk-" + >= 20 key characters: the whole key is masked. */
static bool match_sk(const char *in, size_t len, size_t i, struct hit *h)
{
    if (!ieq_at(in, len, i, "sk-"))
        return false;
    size_t end = span(in, len, i + 3, is_keych);
    if (end - (i + 3) < SK_MIN_BODY)
        return false;
    *h = (struct hit){i, end};
    return true;
}

/* "Bearer <token>": keep the word and the blanks, mask the token. */
static bool match_bearer(const char *in, size_t len, size_t i, struct hit *h)
{
    if ((i > 0 && is_alnum((unsigned char)in[i - 1])) || !ieq_at(in, len, i, "bearer"))
        return false;
    size_t j = span(in, len, i + 6, is_blank);
    if (j == i + 6)
        return false;
    size_t end = span(in, len, j, is_tokch);
    if (end == j)
        return false;
    *h = (struct hit){j, end};
    return true;
}

/* Skip an auth scheme word ("Bearer ", "Basic ") at j if a credential follows it. */
static size_t skip_scheme(const char *in, size_t len, size_t j, size_t lim)
{
    size_t w = span(in, len, j, is_alpha);
    if (w == j || w >= lim || !is_blank((unsigned char)in[w]))
        return j;
    size_t t = span(in, len, w, is_blank);
    return (t < lim && is_tokch((unsigned char)in[t])) ? t : j;
}

/* After a keyword at kw_end: separators, then the value. Separators are any run of blanks,
 * quotes, backslashes, ':' and '='; a quote after ':' or '=' opens a quoted value. */
static bool match_value_after(const char *in, size_t len, size_t kw_end, bool scheme, struct hit *h)
{
    size_t j = kw_end;
    bool assigned = false, quoted = false, escaped = false;
    for (; j < len; j++) {
        unsigned char c = (unsigned char)in[j];
        if (c == ':' || c == '=') {
            assigned = true;
        } else if ((c == '"' || c == '\'') && assigned) {
            quoted = true;
            escaped = j > kw_end && in[j - 1] == '\\';
            j++;
            break;
        } else if (!is_blank(c) && c != '"' && c != '\'' && c != '\\') {
            break;
        }
    }
    if (j == kw_end)
        return false;
    size_t end;
    if (quoted) {
        end = quoted_end(in, len, j, escaped);
        if (scheme)
            j = skip_scheme(in, len, j, end);
    } else {
        if (scheme)
            j = skip_scheme(in, len, j, len);
        end = span(in, len, j, is_tokch);
    }
    if (end <= j || (!assigned && end - j < PROSE_MIN_VALUE))
        return false;
    *h = (struct hit){j, end};
    return true;
}

/* Error codes such as "invalid_api_key: Incorrect API key provided" name a key without holding
 * one; masking the word after them would only garble the message. True when the identifier
 * that ends at i (e.g. "invalid_" before "api_key") starts with such a qualifier. */
static bool is_error_code(const char *in, size_t i)
{
    static const char *const quals[] = {"invalid", "incorrect", "missing", "bad", "expired",
                                        "wrong",   "revoked",   "unknown", "no",  "empty"};
    size_t start = i;
    while (start > 0 && is_keych((unsigned char)in[start - 1]))
        start--;
    if (start == i)
        return false;
    for (size_t k = 0; k < sizeof quals / sizeof quals[0]; k++) {
        size_t n = strlen(quals[k]);
        if (i - start == n + 1 && ieq_at(in, i, start, quals[k]))
            return true;
    }
    return false;
}

/* authorization / api_key / api-key / apikey (also as the tail of x-api-key, proxy_api_key). */
static bool match_keyword(const char *in, size_t len, size_t i, struct hit *h)
{
    static const char *const words[] = {"authorization", "api_key", "api-key", "apikey"};
    /* Cheap reject first: 'a' is a common letter; only "au..." and "ap..." can match. */
    unsigned char c1 = i + 1 < len ? lower((unsigned char)in[i + 1]) : 0;
    if (c1 != 'u' && c1 != 'p')
        return false;
    if (is_error_code(in, i))
        return false;
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        if (ieq_at(in, len, i, words[k]))
            return match_value_after(in, len, i + strlen(words[k]), k == 0, h);
    }
    return false;
}

/* Secret-bearing names for JSON members and query parameters. */
static const char *const g_secret_names[] = {
    "access_token", "refresh_token", "id_token", "client_secret", "password", "secret", "token",
};

/* Length of the secret name at in[i] followed by `term`, or 0. */
static size_t name_at(const char *in, size_t len, size_t i, const char *const *names, size_t n,
                      char term)
{
    if (i >= len)
        return 0;
    unsigned char c0 = lower((unsigned char)in[i]);
    for (size_t k = 0; k < n; k++) {
        if ((unsigned char)names[k][0] != c0)
            continue; /* cheap reject: this runs at every '"' of a JSON line */
        size_t l = strlen(names[k]);
        if (ieq_at(in, len, i, names[k]) && i + l < len && in[i + l] == term)
            return l;
    }
    return 0;
}

/* JSON member "password": "value". */
static bool match_json_member(const char *in, size_t len, size_t i, struct hit *h)
{
    size_t n = sizeof g_secret_names / sizeof g_secret_names[0];
    size_t l = name_at(in, len, i + 1, g_secret_names, n, '"');
    if (l == 0)
        return false;
    size_t j = span(in, len, i + 1 + l + 1, is_blank);
    if (j >= len || in[j] != ':')
        return false;
    j = span(in, len, j + 1, is_blank);
    if (j >= len || in[j] != '"')
        return false;
    size_t end = quoted_end(in, len, j + 1, false);
    if (end == j + 1)
        return false;
    *h = (struct hit){j + 1, end};
    return true;
}

static bool is_query_valch(unsigned char c)
{
    return c > ' ' && c != '&' && c != '#' && c != '"' && c != '\'' && c != '<' && c != '>' &&
           c != 0x7f;
}

/* ?key=v, &api_key=v, &access_token=v ... (the '?' or '&' is at i). */
static bool match_query(const char *in, size_t len, size_t i, struct hit *h)
{
    static const char *const names[] = {"key",          "api_key",       "apikey", "api-key",
                                        "access_token", "refresh_token", "token",  "client_secret",
                                        "password",     "secret",        "sig",    "signature"};
    size_t l = name_at(in, len, i + 1, names, sizeof names / sizeof names[0], '=');
    if (l == 0)
        return false;
    size_t j = i + 1 + l + 1;
    size_t end = span(in, len, j, is_query_valch);
    if (end == j)
        return false;
    *h = (struct hit){j, end};
    return true;
}

static bool is_userinfo_ch(unsigned char c)
{
    return c > ' ' && c != '/' && c != '?' && c != '#' && c != '@' && c != '"' && c != '\'' &&
           c != '<' && c != '>' && c != 0x7f;
}

/* URL credentials: "://user:password@" masks the password, "://token@" the token (the ':' of
 * "://" is at i). Only when an '@' ends the userinfo before any '/', '?', '#' or blank. */
static bool match_userinfo(const char *in, size_t len, size_t i, struct hit *h)
{
    if (len - i < 4 || in[i + 1] != '/' || in[i + 2] != '/')
        return false;
    size_t j = i + 3, end = span(in, len, j, is_userinfo_ch);
    if (end == j || end >= len || in[end] != '@')
        return false;
    const char *colon = memchr(in + j, ':', end - j);
    size_t v = colon ? (size_t)(colon - in) + 1 : j;
    if (v == end)
        return false; /* "user:@host": nothing to mask */
    *h = (struct hit){v, end};
    return true;
}

/* The longest-listed registered secret starting at in[i]. */
static bool match_secret(const char *in, size_t len, size_t i, const char *const *secrets, size_t n,
                         struct hit *h)
{
    for (size_t k = 0; k < n; k++) {
        const char *s = secrets[k];
        /* First byte first: most trigger positions match no secret, and strlen per position per
         * secret dominated the cost of masking an access-log line. */
        if (!s || s[0] != in[i])
            continue;
        size_t l = strlen(s);
        if (l && l <= len - i && memcmp(in + i, s, l) == 0) {
            *h = (struct hit){i, i + l};
            return true;
        }
    }
    return false;
}

/* Grow h->val_end over any registered secret that starts inside the masked range and runs past
 * its end. Otherwise the tail of the masked form plus the verbatim text after it could spell the
 * secret (a pattern value that ends inside a secret, or a secret that overlaps itself). */
static void cover_overhangs(const char *in, size_t len, struct hit *h, const char *const *secrets,
                            size_t n)
{
    for (bool grown = true; grown;) {
        grown = false;
        for (size_t k = 0; k < n; k++) {
            size_t l = secrets[k] ? strlen(secrets[k]) : 0;
            /* Only a start within the last l-1 bytes can run past the end. */
            size_t p = h->val_end >= l ? h->val_end - l + 1 : 0;
            if (p <= h->val_start)
                p = h->val_start + 1;
            for (; l && p < h->val_end && p + l <= len; p++) {
                if (memcmp(in + p, secrets[k], l) == 0) {
                    h->val_end = p + l;
                    grown = true;
                }
            }
        }
    }
}

static bool match_pattern(const char *in, size_t len, size_t i, struct hit *h)
{
    switch (lower((unsigned char)in[i])) {
    case 's':
        return match_sk(in, len, i, h);
    case 'b':
        return match_bearer(in, len, i, h);
    case 'a':
        return match_keyword(in, len, i, h);
    case '"':
        return match_json_member(in, len, i, h);
    case '?':
    case '&':
        return match_query(in, len, i, h);
    case ':':
        return match_userinfo(in, len, i, h);
    default:
        return false;
    }
}

static bool find_hit(const char *in, size_t len, size_t i, const char *const *secrets, size_t n,
                     struct hit *h)
{
    if (!match_secret(in, len, i, secrets, n, h) && !match_pattern(in, len, i, h))
        return false;
    if (n)
        cover_overhangs(in, len, h, secrets, n);
    return true;
}

static void build_triggers(unsigned char trig[256], const char *const *secrets, size_t n)
{
    memset(trig, 0, 256);
    static const char fixed[] = "sSbBaA\"?&:";
    for (const char *p = fixed; *p; p++)
        trig[(unsigned char)*p] = 1;
    for (size_t k = 0; k < n; k++) {
        if (secrets[k] && secrets[k][0])
            trig[(unsigned char)secrets[k][0]] = 1;
    }
}

static enum lp_status append_masked(struct lp_buf *out, const char *s, size_t n)
{
    if (n < LP_MASK_MIN_REVEAL)
        return lp_buf_append(out, "****", 4);
    enum lp_status rc = lp_buf_append(out, s, 4);
    if (rc == LP_OK)
        rc = lp_buf_append(out, "****", 4);
    if (rc == LP_OK)
        rc = lp_buf_append(out, s + n - 4, 4);
    return rc;
}

void lp_mask_token(const char *s, size_t n, struct lp_buf *out)
{
    (void)append_masked(out, s, n);
}

size_t lp_mask(const char *in, size_t len, struct lp_buf *out, const char *const *secrets,
               size_t n_secrets)
{
    unsigned char trig[256];
    build_triggers(trig, secrets, n_secrets);
    size_t i = 0, copied = 0, n_masked = 0;
    while (i < len) {
        struct hit h;
        if (!trig[(unsigned char)in[i]] || !find_hit(in, len, i, secrets, n_secrets, &h)) {
            i++;
            continue;
        }
        if (lp_buf_append(out, in + copied, h.val_start - copied) != LP_OK ||
            append_masked(out, in + h.val_start, h.val_end - h.val_start) != LP_OK)
            return n_masked;
        n_masked++;
        i = copied = h.val_end;
    }
    if (len > copied)
        (void)lp_buf_append(out, in + copied, len - copied);
    return n_masked;
}

char *lp_mask_dup(const char *s, const char *const *secrets, size_t n_secrets)
{
    if (!s)
        return NULL;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_mask(s, strlen(s), &b, secrets, n_secrets);
    (void)lp_buf_append(&b, "", 0); /* allocate and NUL-terminate even when s is "" */
    return lp_buf_steal(&b, NULL);
}
