/* reqlog.c - what a finished request leaves behind: one JSON access-log line and its metrics.
 *
 * Metrics go to the worker's own shard (no lock per request). Label values are bounded: the
 * alias only when it exists in the config (else "_unknown"), backends/models from the config,
 * classes from a fixed set, status codes.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attempt.h"
#include "relay.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "request.h"
#include "runtime.h"
#include "traffic.h"
#include "util/buf.h"
#include "util/clock.h"
#include "worker.h"

static const char *alias_label(const struct lp_request *req)
{
    return req->alias ? req->alias->name : "_unknown";
}

static const char *proto_name(enum lp_proto p)
{
    return lp_proto_name(p);
}

static int64_t att_dur_us(const struct lp_attempt *a)
{
    return (a->end_us ? a->end_us : lp_now_us()) - a->start_us;
}

static int64_t att_ttft_us(const struct lp_attempt *a)
{
    return a->first_us ? a->first_us - a->start_us : -1;
}

static void put_key(struct lp_buf *b, const char *key);

static void json_str(struct lp_buf *b, const char *key, const char *v)
{
    put_key(b, key);
    if (!v) {
        lp_buf_appends(b, "null");
        return;
    }
    lp_buf_appendc(b, '"');
    lp_buf_append_json_escaped(b, v, strlen(v));
    lp_buf_appendc(b, '"');
}

/* Secrets for masking the fields of one access line. */
struct mask_ctx {
    const char *const *secrets;
    size_t n;
    bool on;
};

/* "key":"v" with v masked (client- or upstream-supplied text) and JSON-escaped. */
static void json_str_masked(struct lp_buf *b, const char *key, const char *v,
                            const struct mask_ctx *m)
{
    if (!v || !m->on) {
        json_str(b, key, v);
        return;
    }
    struct lp_buf t;
    lp_buf_init(&t, 64 * 1024);
    lp_mask(v, strlen(v), &t, m->secrets, m->n);
    put_key(b, key);
    lp_buf_appendc(b, '"');
    lp_buf_append_json_escaped(b, t.data ? t.data : "", t.len);
    lp_buf_appendc(b, '"');
    lp_buf_free(&t);
}

/* Integer and millisecond formatting without printf: the access line is built for every request,
 * and printf's float path was a visible share of the per-request cost. */
static void put_u64(struct lp_buf *b, uint64_t v)
{
    char t[24];
    size_t n = sizeof t;
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lp_buf_append(b, t + n, sizeof t - n);
}

static void put_key(struct lp_buf *b, const char *key)
{
    lp_buf_appends(b, ",\"");
    lp_buf_appends(b, key);
    lp_buf_appends(b, "\":");
}

static void json_tok(struct lp_buf *b, const char *key, int64_t v)
{
    put_key(b, key);
    if (v >= 0)
        put_u64(b, (uint64_t)v);
    else
        lp_buf_appends(b, "null");
}

/* "key":1.234 from microseconds. */
static void json_ms(struct lp_buf *b, const char *key, int64_t us)
{
    if (us < 0)
        us = 0;
    put_key(b, key);
    put_u64(b, (uint64_t)us / 1000);
    char frac[4] = {'.', (char)('0' + us % 1000 / 100), (char)('0' + us % 100 / 10),
                    (char)('0' + us % 10)};
    lp_buf_append(b, frac, 4);
}

static void record_metrics(struct lp_request *req, int64_t total_us, int64_t overhead_us)
{
    struct lp_metrics_shard *s = req->w->metrics;
    if (!s || !req->cfg->metrics.enabled || !req->llm)
        return; /* health checks, scrapes and admin calls are not traffic */
    char status[16];
    snprintf(status, sizeof status, "%d", req->final_status);
    const char *alias = alias_label(req);
    const char *l_req[] = {alias, proto_name(req->client), status};
    lp_metrics_inc(s, LP_M_REQUESTS_TOTAL, l_req, 1);
    const char *l_alias[] = {alias};
    lp_metrics_observe(s, LP_M_REQUEST_DURATION_SECONDS, l_alias, (double)total_us / 1e6);
    if (req->t_first_byte_us)
        lp_metrics_observe(s, LP_M_TTFB_SECONDS, l_alias,
                           (double)(req->t_first_byte_us - req->t0_us) / 1e6);
    lp_metrics_inc(s, LP_M_REQUEST_BYTES_TOTAL, l_alias, req->bytes_in);
    lp_metrics_inc(s, LP_M_RESPONSE_BYTES_TOTAL, l_alias, req->bytes_out);
    lp_metrics_observe(s, LP_M_OVERHEAD_SECONDS, NULL, (double)overhead_us / 1e6);
    const struct lp_attempt *ok = NULL;
    for (size_t i = 0; i < req->n_log; i++) {
        const struct lp_attempt *r = req->log[i];
        const char *cls = r->cls ? r->cls : "cancelled";
        const char *l_att[] = {r->cand->backend->name, r->cand->route->model, cls};
        lp_metrics_inc(s, LP_M_UPSTREAM_ATTEMPTS_TOTAL, l_att, 1);
        const char *l_b[] = {r->cand->backend->name};
        lp_metrics_observe(s, LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, l_b,
                           (double)att_dur_us(r) / 1e6);
        if (att_ttft_us(r) >= 0)
            lp_metrics_observe(s, LP_M_UPSTREAM_TTFT_SECONDS, l_b, (double)att_ttft_us(r) / 1e6);
        if (r == req->winner && r->cls && strcmp(r->cls, "ok") == 0)
            ok = r;
    }
    if (ok) {
        const char *backend = ok->cand->backend->name;
        const char *types[] = {"input", "output", "cached"};
        int64_t vals[] = {req->tok_in, req->tok_out, req->tok_cached};
        for (int i = 0; i < 3; i++) {
            if (vals[i] > 0) {
                const char *l_tok[] = {alias, backend, types[i]};
                lp_metrics_inc(s, LP_M_TOKENS_TOTAL, l_tok, (uint64_t)vals[i]);
            }
        }
    }
}

void lp_reqlog_write(struct lp_request *req)
{
    /* Recorded once, just before the response's last byte is handed to the edge, so a client
     * that reads its answer and then scrapes /metrics (maybe on another worker) sees it. */
    if (req->recorded)
        return;
    req->recorded = true;
    int64_t now = lp_now_us();
    int64_t total_us = now - req->t0_us;
    int64_t overhead_us = total_us - req->upstream_wait_us;
    if (overhead_us < 0)
        overhead_us = 0;
    record_metrics(req, total_us, overhead_us);
    lp_traffic_record(req); /* reconcile the key's token reservation with the real usage */
    const char *al = req->cfg->logging.access_log;
    if (!req->path || (al && (strcmp(al, "off") == 0 || strcmp(al, "none") == 0)))
        return;
    struct lp_buf b;
    lp_buf_init(&b, 64 * 1024);
    lp_buf_appends(&b, "{\"ts\":");
    put_u64(&b, (uint64_t)(req->t0_wall_ms / 1000));
    char ms[4] = {'.', (char)('0' + req->t0_wall_ms % 1000 / 100),
                  (char)('0' + req->t0_wall_ms % 100 / 10), (char)('0' + req->t0_wall_ms % 10)};
    lp_buf_append(&b, ms, 4);
    lp_buf_appends(&b, ",\"type\":\"access\"");

    json_str(&b, "client_ip", req->peer);
    json_str(&b, "protocol", proto_name(req->client));
    json_str(&b, "method", req->method);
    struct mask_ctx m = {.on = req->cfg->logging.mask_sensitive};
    if (m.on)
        m.secrets = lp_config_secrets(req->cfg, &m.n);
    json_str_masked(&b, "req_id", req->id, &m); /* a client-chosen X-Request-Id could be a key */
    json_str_masked(&b, "path", req->path, &m);
    json_str_masked(&b, "alias", req->alias_name, &m);
    lp_buf_appends(&b, req->stream ? ",\"stream\":true" : ",\"stream\":false");
    json_tok(&b, "status", req->final_status);
    lp_buf_appends(&b, ",\"attempts\":[");
    for (size_t i = 0; i < req->n_log; i++) {
        const struct lp_attempt *r = req->log[i];
        const char *bname = r->cand->backend->name;
        lp_buf_appends(&b, i ? ",{" : "{");
        lp_buf_appends(&b, "\"backend\":\"");
        lp_buf_append_json_escaped(&b, bname, strlen(bname));
        lp_buf_appends(&b, "\"");
        json_str(&b, "model", r->cand->route->model);
        json_str(&b, "class", r->cls ? r->cls : "cancelled");
        json_tok(&b, "status", r->rec_status);
        json_ms(&b, "duration_ms", att_dur_us(r));
        if (att_ttft_us(r) >= 0)
            json_ms(&b, "ttft_ms", att_ttft_us(r));
        if (r->cause[0])
            json_str_masked(&b, "cause", r->cause, &m);
        if (r->hedge)
            lp_buf_appends(&b, ",\"hedge\":true");
        lp_buf_appends(&b, "}");
    }
    lp_buf_appends(&b, "]");
    json_tok(&b, "bytes_in", (int64_t)req->bytes_in);
    json_tok(&b, "bytes_out", (int64_t)req->bytes_out);
    json_tok(&b, "tokens_in", req->tok_in);
    json_tok(&b, "tokens_out", req->tok_out);
    json_tok(&b, "tokens_cached", req->tok_cached);
    json_ms(&b, "total_ms", total_us);
    json_ms(&b, "overhead_ms", overhead_us);
    if (req->t_first_byte_us)
        json_ms(&b, "ttfb_ms", req->t_first_byte_us - req->t0_us);
    if (req->backoff_total_ms)
        json_tok(&b, "backoff_ms", req->backoff_total_ms);
    if (req->abort_reason)
        json_str(&b, "abort", req->abort_reason);
    if (req->client_gone)
        lp_buf_appends(&b, ",\"client_gone\":true");
    if (req->stream_end != LP_END_NONE)
        json_str(&b, "stream_end", lp_stream_end_name(req->stream_end));
    if (req->error_msg_set)
        json_str_masked(&b, "error", req->error_msg, &m);
    if (req->winner && req->winner->translate && req->winner->xnotes.dropped[0])
        json_str_masked(&b, "dropped_params", req->winner->xnotes.dropped, &m);
    lp_traffic_log_fields(req, &b); /* "key", "limited", "queue_ms" */
    lp_buf_appends(&b, "}");
    /* Every client- or upstream-supplied field was masked above; the rest are our own values
     * (ids, numbers, names from the config, class names). */
    if (m.on)
        lp_log_access_premasked(b.data, b.len);
    else
        lp_log_access(b.data, b.len);
    lp_buf_free(&b);
}

void lp_reqlog_abort(struct lp_request *req, const char *reason)
{
    if (req->abort_reason)
        return;
    req->abort_reason = reason;
    const char *l[] = {reason};
    lp_metrics_inc(req->w->metrics, LP_M_STREAM_ABORTS_TOTAL, l, 1);
}

void lp_reqlog_failover(struct lp_request *req, const char *reason)
{
    const char *l[] = {reason};
    lp_metrics_inc(req->w->metrics, LP_M_FAILOVERS_TOTAL, l, 1);
}

void lp_reqlog_retry(struct lp_request *req)
{
    lp_metrics_inc(req->w->metrics, LP_M_RETRIES_TOTAL, NULL, 1);
}

void lp_reqlog_backoff(struct lp_request *req, int64_t delay_ms)
{
    lp_metrics_inc(req->w->metrics, LP_M_BACKOFF_WAIT_SECONDS_TOTAL, NULL,
                   (uint64_t)delay_ms * 1000);
}
