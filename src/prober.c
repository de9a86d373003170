/* prober.c - active health probes on a worker loop (see prober.h). */
#include "prober.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dialect.h"
#include "health.h"
#include "log.h"
#include "runtime.h"
#include "upstream.h"
#include "urljoin.h"
#include "util/alloc.h"
#include "util/clock.h"

#define TICK_MS 200
#define MAX_HEADERS 8

struct probe {
    struct lp_prober *owner;
    struct probe *next;
    struct lp_upstream_xfer *xfer;
    struct lp_config *cfg; /* the snapshot the probe was started with (referenced) */
    size_t bi;             /* its backend's index in cfg */
    int64_t started_mono;
    int status;
    char *headers[MAX_HEADERS];
    size_t n_headers;
};

struct lp_prober {
    struct event_base *base;
    struct lp_upstream *up;
    struct lp_runtime *rt;
    int worker_idx;
    struct event *tick;
    bool stopped;
    struct probe *live; /* probes in flight */
};

char *lp_prober_url(const struct lp_backend *b)
{
    const char *path = b->health_check.path;
    if (path && (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8)))
        return lp_xstrdup(path);
    if (!path)
        path = b->dialect == LP_DIALECT_GOOGLE ? "/models" : "/v1/models";
    return lp_urljoin(b->url, path, NULL);
}

static void probe_free(struct probe *pr)
{
    for (size_t i = 0; i < pr->n_headers; i++)
        free(pr->headers[i]);
    lp_config_unref(pr->cfg);
    free(pr);
}

static void unlink_probe(struct lp_prober *p, struct probe *pr)
{
    for (struct probe **pp = &p->live; *pp; pp = &(*pp)->next)
        if (*pp == pr) {
            *pp = pr->next;
            return;
        }
}

static void on_head(void *arg, struct lp_upstream_xfer *x, int status)
{
    (void)x;
    ((struct probe *)arg)->status = status;
}

static enum lp_status on_data(void *arg, struct lp_upstream_xfer *x, const char *buf, size_t len)
{
    (void)arg, (void)x, (void)buf, (void)len;
    return LP_OK; /* the body says nothing more than the status */
}

static void on_done(void *arg, struct lp_upstream_xfer *x, enum lp_xfer_result res, const char *err)
{
    (void)x;
    struct probe *pr = arg;
    struct lp_prober *p = pr->owner;
    const struct lp_backend *b = &pr->cfg->backends[pr->bi];
    bool ok = res == LP_XFER_OK && pr->status >= 200 && pr->status < 300;
    char reason[96];
    if (res != LP_XFER_OK)
        snprintf(reason, sizeof reason, "%s", err && *err ? err : "transfer failed");
    else
        snprintf(reason, sizeof reason, "HTTP %d", pr->status);
    int change = lp_health_probe_done(p->rt->health, b, ok, reason, pr->started_mono, lp_now_ms(),
                                      lp_wall_ms());
    if (change > 0)
        lp_log_info(NULL, "health probe: backend '%s' passed (%s), back in rotation", b->name,
                    reason);
    else if (change < 0)
        lp_log_warn(NULL, "health probe: backend '%s' failed (%s), marked down", b->name, reason);
    pr->xfer = NULL;
    unlink_probe(p, pr);
    probe_free(pr);
}

static void on_probe_hdr(void *ctx, char *line)
{
    struct probe *pr = ctx;
    if (pr->n_headers < MAX_HEADERS - 1)
        pr->headers[pr->n_headers++] = line;
    else
        free(line);
}

static void start_probe(struct lp_prober *p, struct lp_config *cfg, size_t bi, int64_t now)
{
    const struct lp_backend *b = &cfg->backends[bi];
    struct probe *pr = lp_xcalloc(1, sizeof *pr);
    pr->owner = p;
    pr->cfg = lp_config_ref(cfg);
    pr->bi = bi;
    pr->started_mono = now;
    struct lp_dialect_req dr = {.backend = b, .ep = LP_EP_MODELS};
    lp_dialect_get(b->dialect)->auth_headers(&dr, on_probe_hdr, pr);
    on_probe_hdr(pr, lp_xstrdup("Accept: application/json"));
    char *url = lp_prober_url(b);
    const struct lp_health_check *hc = &b->health_check;
    struct lp_upstream_req req = {
        .url = url,
        .post = false,
        .headers = (const char *const *)pr->headers,
        .n_headers = pr->n_headers,
        .connect_timeout_ms = hc->timeout_ms,
        .total_timeout_ms = hc->timeout_ms,
        .ca_file = b->tls_ca_file,
        .http2 = b->http2,
    };
    static const struct lp_upstream_cbs cbs = {on_head, on_data, on_done};
    pr->xfer = lp_upstream_start(p->up, &req, &cbs, pr);
    free(url);
    if (!pr->xfer) {
        lp_health_probe_release(p->rt->health, b->name, now, hc->interval_ms);
        probe_free(pr);
        return;
    }
    pr->next = p->live;
    p->live = pr;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct lp_prober *p = arg;
    if (p->stopped)
        return;
    struct lp_config *cfg = lp_runtime_config(p->rt);
    int64_t now = lp_now_ms();
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct lp_backend *b = &cfg->backends[i];
        if (b->enabled && b->health_check.enabled &&
            lp_health_probe_claim(p->rt->health, cfg, b, now))
            start_probe(p, cfg, i, now);
    }
    lp_config_unref(cfg);
}

struct lp_prober *lp_prober_create(struct event_base *base, struct lp_upstream *up,
                                   struct lp_runtime *rt, int worker_idx)
{
    struct lp_prober *p = lp_xcalloc(1, sizeof *p);
    p->base = base;
    p->up = up;
    p->rt = rt;
    p->worker_idx = worker_idx;
    p->tick = event_new(base, -1, EV_PERSIST, on_tick, p);
    /* Workers tick out of phase so that due probes spread over the loops. */
    struct timeval tv = {0, (TICK_MS + 17 * (worker_idx % 8)) * 1000};
    event_add(p->tick, &tv);
    return p;
}

void lp_prober_stop(struct lp_prober *p)
{
    if (!p)
        return;
    p->stopped = true;
    event_del(p->tick);
}

void lp_prober_destroy(struct lp_prober *p)
{
    if (!p)
        return;
    event_free(p->tick);
    int64_t now = lp_now_ms();
    while (p->live) {
        struct probe *pr = p->live;
        p->live = pr->next;
        lp_upstream_cancel(pr->xfer);
        lp_health_probe_release(p->rt->health, pr->cfg->backends[pr->bi].name, now, 0);
        probe_free(pr);
    }
    free(p);
}
