/* config_value.c - scalar parsers for the configuration: durations, sizes, listen addresses,
 * URLs, booleans, numbers and ${ENV} expansion.
 *
 * All of them are pure functions of their input (expansion also reads the environment) and
 * accept only a complete match: "10s " or "5x" are errors, never silently truncated.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"
#include "util/alloc.h"
#include "util/buf.h"

/* ---- durations ---------------------------------------------------------------------------- */

struct unit {
    const char *name;
    uint64_t ns;
};

static const struct unit duration_units[] = {
    {"ns", 1ULL},
    {"us", 1000ULL},
    {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign, as Go accepts */
    {"\xce\xbcs", 1000ULL}, /* U+03BC greek mu */
    {"ms", 1000000ULL},
    {"s", 1000000000ULL},
    {"m", 60ULL * 1000000000ULL},
    {"h", 3600ULL * 1000000000ULL},
};

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Parse the digits at *p into *v; false on overflow. Leaves *p after the digits. */
static bool take_digits(const char **p, uint64_t *v, int *ndigits)
{
    *v = 0;
    *ndigits = 0;
    while (isdigit((unsigned char)**p)) {
        uint64_t d = (uint64_t)(**p - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return false;
        *v = *v * 10 + d;
        (*p)++;
        (*ndigits)++;
    }
    return true;
}

static const struct unit *take_unit(const char **p)
{
    const char *q = *p;
    while (*q && *q != '.' && !isdigit((unsigned char)*q))
        q++;
    size_t n = (size_t)(q - *p);
    for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
        if (strlen(duration_units[i].name) == n && memcmp(duration_units[i].name, *p, n) == 0) {
            *p = q;
            return &duration_units[i];
        }
    }
    return NULL;
}

/* One "<number><unit>" element of a Go duration, in nanoseconds. Like Go, fraction digits beyond
 * what fits are dropped rather than rejected. */
static bool take_element(const char **p, uint64_t *out_ns)
{
    uint64_t whole, frac = 0, scale = 1;
    int nw, nf = 0;
    if (!take_digits(p, &whole, &nw))
        return false;
    if (**p == '.') {
        (*p)++;
        while (isdigit((unsigned char)**p)) {
            if (scale < 1000000000000000000ULL) {
                frac = frac * 10 + (uint64_t)(**p - '0');
                scale *= 10;
            }
            (*p)++;
            nf++;
        }
    }
    if (nw == 0 && nf == 0)
        return false;
    const struct unit *u = take_unit(p);
    if (!u || whole > (uint64_t)INT64_MAX / u->ns)
        return false;
    uint64_t ns = whole * u->ns;
    ns += (uint64_t)((long double)frac * (long double)u->ns / (long double)scale);
    if (ns > (uint64_t)INT64_MAX)
        return false;
    *out_ns = ns;
    return true;
}

bool lp_duration_parse(const char *s, int64_t *out_ms)
{
    if (!s)
        return false;
    if (*s == '+')
        s++;
    if (all_digits(s)) { /* bare integer: seconds (our extension; Go would want a unit) */
        uint64_t v;
        int n;
        const char *p = s;
        if (!take_digits(&p, &v, &n) || v > (uint64_t)INT64_MAX / 1000)
            return false;
        *out_ms = (int64_t)v * 1000;
        return true;
    }
    uint64_t total = 0;
    const char *p = s;
    if (*p == '\0')
        return false;
    while (*p) {
        uint64_t ns;
        if (!take_element(&p, &ns) || ns > (uint64_t)INT64_MAX - total)
            return false;
        total += ns;
    }
    *out_ms = (int64_t)((total + 999999) / 1000000); /* round up: 1ns is not "no timeout" */
    return true;
}

/* ---- sizes -------------------------------------------------------------------------------- */

static const struct unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", 1ULL << 10},
    {"kib", 1ULL << 10},
    {"ki", 1ULL << 10},
    {"m", 1ULL << 20},
    {"mib", 1ULL << 20},
    {"mi", 1ULL << 20},
    {"g", 1ULL << 30},
    {"gib", 1ULL << 30},
    {"gi", 1ULL << 30},
    {"t", 1ULL << 40},
    {"tib", 1ULL << 40},
    {"ti", 1ULL << 40},
    {"kb", 1000ULL},
    {"mb", 1000000ULL},
    {"gb", 1000000000ULL},
    {"tb", 1000000000000ULL},
};

bool lp_size_parse(const char *s, int64_t *out)
{
    if (!s)
        return false;
    const char *p = s;
    uint64_t v;
    int n;
    if (!take_digits(&p, &v, &n) || n == 0)
        return false;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
        if (strcasecmp(p, size_units[i].name) != 0)
            continue;
        if (v > (uint64_t)INT64_MAX / size_units[i].ns)
            return false;
        *out = (int64_t)(v * size_units[i].ns);
        return true;
    }
    return false;
}

/* ---- listen addresses --------------------------------------------------------------------- */

static bool parse_port(const char *s, int *port)
{
    if (!all_digits(s) || strlen(s) > 5)
        return false;
    long v = strtol(s, NULL, 10);
    if (v > 65535)
        return false;
    *port = (int)v;
    return true;
}

static bool host_chars_ok(const char *h, size_t n, bool bracketed)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        bool ok =
            isalnum(c) || c == '-' || c == '.' || c == '_' || (bracketed && (c == ':' || c == '%'));
        if (!ok)
            return false;
    }
    return true;
}

bool lp_listen_parse(const char *s, char *host, size_t host_len, int *port)
{
    if (!s || !*s || !port)
        return false;
    const char *h = s, *portstr;
    size_t hl;
    bool bracketed = s[0] == '[';
    if (bracketed) {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        h = s + 1;
        hl = (size_t)(close - h);
        portstr = close + 2;
        if (hl == 0)
            return false;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) { /* bare port */
            hl = 0;
            portstr = s;
        } else {
            hl = (size_t)(colon - s);
            portstr = colon + 1;
        }
    }
    if (!host_chars_ok(h, hl, bracketed) || !parse_port(portstr, port))
        return false;
    if (host) {
        if (hl + 1 > host_len)
            return false;
        memcpy(host, h, hl);
        host[hl] = '\0';
    }
    return true;
}

/* ---- URLs --------------------------------------------------------------------------------- */

const char *lp_config_url_problem(const char *url)
{
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8;
    else
        return "must start with http:// or https://";
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return "contains whitespace or control characters";
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at) { /* skip user:password@ */
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *host = p, *port = NULL;
    size_t hl;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close)
            return "has an unterminated [IPv6] host";
        host = p + 1;
        hl = (size_t)(close - host);
        if (close + 1 < p + alen) {
            if (close[1] != ':')
                return "has garbage after the [IPv6] host";
            port = close + 2;
        }
        if (hl == 0 || !host_chars_ok(host, hl, true))
            return "has an invalid host";
    } else {
        const char *colon = memchr(p, ':', alen);
        hl = colon ? (size_t)(colon - p) : alen;
        port = colon ? colon + 1 : NULL;
        if (hl == 0)
            return "has no host";
        if (!host_chars_ok(host, hl, false))
            return "has an invalid host";
    }
    if (port) {
        size_t pl = (size_t)(p + alen - port);
        char buf[8];
        int v;
        if (pl == 0 || pl >= sizeof buf)
            return "has an invalid port";
        memcpy(buf, port, pl);
        buf[pl] = '\0';
        if (!parse_port(buf, &v) || v == 0)
            return "has an invalid port";
    }
    return NULL;
}

/* ---- booleans and numbers ----------------------------------------------------------------- */

bool lp_config_parse_bool(const char *s, bool *out)
{
    /* YAML 1.1 booleans, as yaml.v2/v3 accept them for bool fields; numbers are not booleans. */
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool lp_config_parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!all_digits(p))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

bool lp_config_parse_float(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    /* Only decimal notation: strtod would also take "inf", "nan" and hex floats. */
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q) && !strchr(".eE+-", *q))
            return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* ---- OTEL_EXPORTER_OTLP_HEADERS ----------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* s[0..n) trimmed of blanks and percent-decoded into a heap string; NULL on a bad escape or a
 * control character. */
static char *otlp_part(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    char *out = lp_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int a = hexval((unsigned char)s[i + 1]), b = hexval((unsigned char)s[i + 2]);
            if (a < 0 || b < 0) {
                free(out);
                return NULL;
            }
            c = a * 16 + b;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            free(out);
            return NULL;
        }
        *o++ = (char)c;
    }
    *o = '\0';
    return out;
}

bool lp_config_parse_otlp_headers(const char *s, struct lp_kv **kv, size_t *n, const char **why)
{
    struct lp_kv *v = NULL;
    size_t k = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (strspn(s, " \t") >= len) { /* an empty entry ("a=1,,b=2") */
            s += len + (end != NULL);
            continue;
        }
        char *name = eq ? otlp_part(s, (size_t)(eq - s)) : NULL;
        char *value = eq ? otlp_part(eq + 1, len - (size_t)(eq - s) - 1) : NULL;
        bool tok = name && name[0];
        for (const char *p = name; tok && *p; p++)
            tok = isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p);
        if (!tok || !value || k >= 64) {
            *why = !eq      ? "an entry without '='"
                   : !tok   ? "an invalid header name"
                   : !value ? "an invalid value (bad %-escape or a control character)"
                            : "more than 64 headers";
            free(name);
            free(value);
            for (size_t i = 0; i < k; i++) {
                free(v[i].key);
                free(v[i].value);
            }
            free(v);
            return false;
        }
        v = lp_xrealloc(v, (k + 1) * sizeof *v);
        v[k++] = (struct lp_kv){name, value};
        s += len + (end != NULL);
    }
    *kv = v;
    *n = k;
    return true;
}

/* ---- ${ENV} expansion --------------------------------------------------------------------- */

static bool is_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Expand one "${...}" whose inside is body[0..n): 1 done, 0 malformed, -1 over the ceiling. */
static int expand_ref(struct lp_buf *out, const char *body, size_t n, lp_env_missing_fn on_missing,
                      void *ctx)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (body[i] == ':' && body[i + 1] == '-') {
            sep = body + i;
            break;
        }
    }
    size_t name_len = sep ? (size_t)(sep - body) : n;
    if (!is_name(body, name_len))
        return 0;
    char *name = lp_xstrndup(body, name_len);
    const char *val = getenv(name);
    enum lp_status rc = LP_OK;
    if (sep && (!val || !*val))
        rc = lp_buf_append(out, sep + 2, n - name_len - 2);
    else if (val)
        rc = lp_buf_appends(out, val);
    else if (on_missing)
        on_missing(ctx, name);
    free(name);
    return rc == LP_OK ? 1 : -1;
}

char *lp_config_expand_env(const char *s, size_t len, lp_env_missing_fn on_missing, void *ctx,
                           bool *bad)
{
    struct lp_buf out;
    lp_buf_init(&out, LP_CONFIG_MAX_SCALAR);
    *bad = false;
    size_t i = 0;
    int rc = 1;
    while (i < len && rc >= 0) {
        const char *dollar = memchr(s + i, '$', len - i);
        size_t upto = dollar ? (size_t)(dollar - s) : len;
        if (lp_buf_append(&out, s + i, upto - i) != LP_OK)
            rc = -1;
        i = upto;
        if (i >= len || rc < 0)
            break;
        if (i + 1 < len && s[i + 1] == '$') { /* "$$" is a literal '$' */
            rc = lp_buf_appendc(&out, '$') == LP_OK ? 1 : -1;
            i += 2;
            continue;
        }
        bool brace = i + 1 < len && s[i + 1] == '{';
        const char *close = brace ? memchr(s + i + 2, '}', len - i - 2) : NULL;
        rc = close ? expand_ref(&out, s + i + 2, (size_t)(close - s) - i - 2, on_missing, ctx) : 0;
        if (rc == 0) { /* not a reference: keep the '$' literally */
            *bad = *bad || brace;
            rc = lp_buf_appendc(&out, '$') == LP_OK ? 1 : -1;
            i++;
            continue;
        }
        i = (size_t)(close - s) + 1;
    }
    if (rc < 0 || out.len == 0) {
        /* lp_buf_steal() of a never-grown buffer does not NUL-terminate: build "" ourselves. */
        lp_buf_free(&out);
        return rc < 0 ? NULL : lp_xstrdup("");
    }
    size_t n;
    return lp_buf_steal(&out, &n);
}
