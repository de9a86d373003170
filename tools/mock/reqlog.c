/* reqlog.c - the bounded log of upstream requests and the counters behind /_mock/stats.
 *
 * A ring of MOCK_LOG_ENTRIES slots indexed by uid. Bodies are kept up to MOCK_LOG_BODY_MAX bytes
 * each and MOCK_LOG_TOTAL_MAX in all (the oldest entries are dropped to stay under it), so a
 * long benchmark never grows the mock without bound.
 */
#include <stdlib.h>
#include <string.h>

#include "mock.h"
#include "util/alloc.h"

static void entry_clear(struct mock_log_entry *e)
{
    free(e->method);
    free(e->path);
    for (size_t i = 0; i < e->nhdrs; i++) {
        free(e->hdrs[i].name);
        free(e->hdrs[i].value);
    }
    free(e->hdrs);
    free(e->body);
    memset(e, 0, sizeof *e);
}

void mock_log_init(struct mock_log *l)
{
    memset(l, 0, sizeof *l);
    l->ring = lp_xcalloc(MOCK_LOG_ENTRIES, sizeof *l->ring);
    l->next_uid = 1;
    l->first_uid = 1;
    l->next_seq = 1;
}

static void drop_oldest(struct mock_log *l)
{
    struct mock_log_entry *e = &l->ring[l->first_uid % MOCK_LOG_ENTRIES];
    if (e->uid == l->first_uid) {
        l->body_total -= e->body_kept;
        entry_clear(e);
    }
    l->first_uid++;
}

void mock_log_reset(struct mock_log *l)
{
    while (l->first_uid < l->next_uid)
        drop_oldest(l);
    l->next_seq = 1;
    l->body_total = 0;
    l->connections = 0;
    l->requests = 0;
    l->aborted = 0;
}

void mock_log_free(struct mock_log *l)
{
    if (!l->ring)
        return;
    mock_log_reset(l);
    LP_FREE(&l->ring);
}

uint64_t mock_log_add(struct mock_log *l, const char *method, const char *path,
                      const struct mock_hdr *hdrs, size_t nhdrs, const char *body, size_t len,
                      uint64_t conn_id)
{
    size_t keep = len < MOCK_LOG_BODY_MAX ? len : MOCK_LOG_BODY_MAX;
    while (l->first_uid < l->next_uid && (l->next_uid - l->first_uid >= MOCK_LOG_ENTRIES ||
                                          l->body_total + keep > MOCK_LOG_TOTAL_MAX))
        drop_oldest(l);
    uint64_t uid = l->next_uid++;
    struct mock_log_entry *e = &l->ring[uid % MOCK_LOG_ENTRIES];
    e->uid = uid;
    e->seq = l->next_seq++;
    e->method = lp_xstrdup(method);
    e->path = lp_xstrdup(path);
    e->hdrs = lp_xcalloc(nhdrs + 1, sizeof *e->hdrs);
    for (size_t i = 0; i < nhdrs; i++) {
        e->hdrs[i].name = lp_xstrdup(hdrs[i].name);
        e->hdrs[i].value = lp_xstrdup(hdrs[i].value);
    }
    e->nhdrs = nhdrs;
    e->body = lp_xstrndup(body ? body : "", body ? keep : 0);
    e->body_kept = keep;
    e->body_bytes = len;
    e->conn_id = conn_id;
    e->t_ms = 0;
    e->t_us = 0;
    l->body_total += keep;
    l->requests++;
    return uid;
}

struct mock_log_entry *mock_log_find(struct mock_log *l, uint64_t uid)
{
    if (uid < l->first_uid || uid >= l->next_uid)
        return NULL;
    struct mock_log_entry *e = &l->ring[uid % MOCK_LOG_ENTRIES];
    return e->uid == uid ? e : NULL;
}

static void json_str(struct lp_buf *b, const char *s, size_t n)
{
    lp_buf_appendc(b, '"');
    lp_buf_append_json_escaped(b, s, n);
    lp_buf_appendc(b, '"');
}

/* Headers as an object; a repeated name is joined with ", " as HTTP allows. */
static void headers_to_json(const struct mock_log_entry *e, struct lp_buf *b)
{
    lp_buf_appendc(b, '{');
    bool first = true;
    for (size_t i = 0; i < e->nhdrs; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(e->hdrs[j].name, e->hdrs[i].name) == 0;
        if (seen)
            continue;
        if (!first)
            lp_buf_appendc(b, ',');
        first = false;
        json_str(b, e->hdrs[i].name, strlen(e->hdrs[i].name));
        lp_buf_append(b, ":\"", 2);
        const char *sep = "";
        for (size_t j = i; j < e->nhdrs; j++) {
            if (strcmp(e->hdrs[j].name, e->hdrs[i].name) != 0)
                continue;
            lp_buf_appends(b, sep);
            lp_buf_append_json_escaped(b, e->hdrs[j].value, strlen(e->hdrs[j].value));
            sep = ", ";
        }
        lp_buf_appendc(b, '"');
    }
    lp_buf_appendc(b, '}');
}

static void entry_to_json(const struct mock_log_entry *e, struct lp_buf *b)
{
    lp_buf_printf(b, "{\"seq\":%llu,\"method\":", (unsigned long long)e->seq);
    json_str(b, e->method, strlen(e->method));
    lp_buf_appends(b, ",\"path\":");
    json_str(b, e->path, strlen(e->path));
    lp_buf_appends(b, ",\"headers\":");
    headers_to_json(e, b);
    lp_buf_appends(b, ",\"body\":");
    json_str(b, e->body, e->body_kept);
    lp_buf_printf(
        b,
        ",\"body_bytes\":%zu,\"body_truncated\":%s,\"conn_id\":%llu,\"t_ms\":%lld,\"t_us\":%lld,"
        "\"status\":%d,\"completed\":%s,\"client_aborted\":%s}",
        e->body_bytes, e->body_kept < e->body_bytes ? "true" : "false",
        (unsigned long long)e->conn_id, (long long)e->t_ms, (long long)e->t_us, e->status,
        e->completed ? "true" : "false", e->client_aborted ? "true" : "false");
}

void mock_log_to_json(const struct mock_log *l, struct lp_buf *b)
{
    lp_buf_appendc(b, '[');
    bool first = true;
    for (uint64_t uid = l->first_uid; uid < l->next_uid; uid++) {
        const struct mock_log_entry *e = &l->ring[uid % MOCK_LOG_ENTRIES];
        if (e->uid != uid)
            continue;
        if (!first)
            lp_buf_appendc(b, ',');
        first = false;
        entry_to_json(e, b);
    }
    lp_buf_appendc(b, ']');
}
