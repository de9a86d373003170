/* urljoin.c - upstream URL joining (the rules are listed in urljoin.h). */
#include "urljoin.h"

#include <stdbool.h>
#include <string.h>

#include "util/buf.h"

/* s[0..slen) starts with pre[0..plen) ending on a segment boundary. */
static bool has_seg_prefix(const char *s, size_t slen, const char *pre, size_t plen)
{
    return slen >= plen && memcmp(s, pre, plen) == 0 && (slen == plen || s[plen] == '/');
}

/* s[0..slen) ends with suf[0..suflen), which itself starts with '/', so the match is on a
 * segment boundary by construction. */
static bool has_suffix(const char *s, size_t slen, const char *suf, size_t suflen)
{
    return slen >= suflen && memcmp(s + slen - suflen, suf, suflen) == 0;
}

/* Choose the joined path as a (head, tail) pair: the result path is head followed by tail. */
static void join_path(const char *bp, size_t bplen, const char *rp, size_t rplen, size_t *head_len,
                      size_t *tail_off)
{
    *head_len = bplen;
    *tail_off = 0;
    if (bplen == 0 || has_seg_prefix(rp, rplen, bp, bplen)) {
        *head_len = 0; /* rules 1 and 2: the request path alone */
        return;
    }
    bool req_v1 = has_seg_prefix(rp, rplen, "/v1", 3);
    if (req_v1 && has_suffix(bp, bplen, "/v1", 3)) {
        *tail_off = 3; /* rule 3: don't double /v1 */
        return;
    }
    size_t suf = req_v1 ? 3 : 0;
    if (rplen - suf > 1 && has_suffix(bp, bplen, rp + suf, rplen - suf))
        *tail_off = rplen; /* rule 4: the base already names the endpoint */
}

char *lp_urljoin(const char *base, const char *req_path, const char *query)
{
    const char *sep = strstr(base, "://");
    const char *auth = sep ? sep + 3 : base;
    const char *path = auth + strcspn(auth, "/?#");
    size_t plen = strcspn(path, "?#");
    const char *bq = path[plen] == '?' ? path + plen + 1 : "";
    size_t bqlen = strcspn(bq, "#");
    while (plen > 0 && path[plen - 1] == '/')
        plen--;

    const char *rp = req_path ? req_path : "";
    size_t rplen = strlen(rp);
    bool add_slash = rp[0] != '/';
    struct lp_buf tmp;
    lp_buf_init(&tmp, 0);
    if (add_slash) { /* normalise "chat/completions" to "/chat/completions" */
        lp_buf_appendc(&tmp, '/');
        lp_buf_append(&tmp, rp, rplen);
        rp = tmp.data;
        rplen = tmp.len;
    }

    size_t head_len, tail_off;
    join_path(path, plen, rp, rplen, &head_len, &tail_off);

    const char *q = query ? query : "";
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_append(&b, base, (size_t)(path - base));
    lp_buf_append(&b, path, head_len);
    lp_buf_append(&b, rp + tail_off, rplen - tail_off);
    if (bqlen || q[0])
        lp_buf_appendc(&b, '?');
    lp_buf_append(&b, bq, bqlen);
    if (bqlen && q[0])
        lp_buf_appendc(&b, '&');
    lp_buf_appends(&b, q);
    lp_buf_free(&tmp);
    return lp_buf_steal(&b, NULL);
}
