/* metrics.c - the metric table, per-thread shards and the Prometheus text exposition.
 *
 * Concurrency (see metrics.h): a shard has one writer, its owner thread. The owner alone reads
 * and resizes the shard's hash map, so lookups take no lock. The scraper never touches the hash
 * map: it walks the shard's series list under the shard mutex, and the owner links a new series
 * into that list under the same mutex. Series are never freed before lp_metrics_destroy, and
 * their label strings never change, so values are the only thing written concurrently with a
 * scrape, and those are relaxed atomics.
 */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util/alloc.h"
#include "util/buf.h"

#ifndef LP_VERSION
#define LP_VERSION "dev"
#endif

#define LABEL_VALUE_MAX 128
#define INITIAL_BUCKETS 64

struct metric_def {
    const char *name;
    enum lp_metric_type type;
    const char *help;
    const char *labels[LP_METRICS_MAX_LABELS + 1]; /* NULL-terminated */
    const double *buckets;                         /* histograms: upper bounds, ascending */
    size_t n_buckets;
    double scale; /* counters: exposed value = stored value * scale (0 means 1) */
};

/* Latency of whole requests and attempts: LLM calls run from a fraction of a second to minutes. */
static const double B_LATENCY[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
/* Time to first byte/token: the part users feel; finer below 3 s. */
static const double B_FIRST[] = {0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1,  1.5,
                                 2,     3,    5,   7.5,  10,  20,   30, 60};
/* The proxy's own time per request: expected well under a millisecond. */
static const double B_OVERHEAD[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.025,   0.05,   0.1,   0.25,   1};
#define BUCKETS(a) a, sizeof a / sizeof a[0]

#define MAX_BUCKETS 16
_Static_assert(sizeof B_LATENCY / sizeof B_LATENCY[0] <= MAX_BUCKETS, "bucket set too long");
_Static_assert(sizeof B_FIRST / sizeof B_FIRST[0] <= MAX_BUCKETS, "bucket set too long");
_Static_assert(sizeof B_OVERHEAD / sizeof B_OVERHEAD[0] <= MAX_BUCKETS, "bucket set too long");

/* clang-format off */
#define COUNTER(n, h, ...)                                                                         \
    {.name = n, .type = LP_METRIC_COUNTER, .help = h, .labels = {__VA_ARGS__}}
#define GAUGE(n, h, ...) {.name = n, .type = LP_METRIC_GAUGE, .help = h, .labels = {__VA_ARGS__}}
#define HISTOGRAM(n, h, b, ...)                                                                    \
    {.name = n, .type = LP_METRIC_HISTOGRAM, .help = h, .labels = {__VA_ARGS__},                   \
     .buckets = b, .n_buckets = sizeof b / sizeof b[0]}

/* The one declaration of every metric. tests/integration/test_deploy.py greps the names here,
 * and docs/operations.md lists them. */
static const struct metric_def g_defs[LP_M__COUNT] = {
    [LP_M_REQUESTS_TOTAL] = COUNTER("llm_proxy_requests_total",
        "Client requests finished, by model alias, client protocol and final HTTP status.",
        "alias", "protocol", "status"),
    [LP_M_REQUEST_DURATION_SECONDS] = HISTOGRAM("llm_proxy_request_duration_seconds",
        "Whole client request duration in seconds, from intake to the last byte sent.",
        B_LATENCY, "alias"),
    [LP_M_TTFB_SECONDS] = HISTOGRAM("llm_proxy_ttfb_seconds",
        "Time to the first response byte sent to the client, in seconds.", B_FIRST, "alias"),
    [LP_M_UPSTREAM_ATTEMPTS_TOTAL] = COUNTER("llm_proxy_upstream_attempts_total",
        "Upstream attempts by backend, upstream model and outcome class (ok on success).",
        "backend", "model", "class"),
    [LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS] = HISTOGRAM(
        "llm_proxy_upstream_attempt_duration_seconds",
        "Duration of one upstream attempt in seconds.", B_LATENCY, "backend"),
    [LP_M_UPSTREAM_TTFT_SECONDS] = HISTOGRAM("llm_proxy_upstream_ttft_seconds",
        "Time from sending an upstream request to its first token or event, in seconds.",
        B_FIRST, "backend"),
    [LP_M_FAILOVERS_TOTAL] = COUNTER("llm_proxy_failovers_total",
        "Failovers to the next candidate route, by the error class that caused them.",
        "reason"),
    [LP_M_RETRIES_TOTAL] = COUNTER("llm_proxy_retries_total",
        "Upstream attempts beyond the first one of a request.", NULL),
    [LP_M_BACKOFF_WAIT_SECONDS_TOTAL] = {.name = "llm_proxy_backoff_wait_seconds_total",
        .type = LP_METRIC_COUNTER, .labels = {NULL}, .scale = 1e-6, /* recorded in us */
        .help = "Total time spent waiting in backoff between attempts, in seconds."},
    [LP_M_COOLDOWN_ACTIVE] = GAUGE("llm_proxy_cooldown_active",
        "1 while a (backend, model) pair is cooling down and skipped by the planner.",
        "backend", "model"),
    [LP_M_BREAKER_STATE] = GAUGE("llm_proxy_breaker_state",
        "Circuit breaker state per backend: 0 closed, 1 open, 2 half-open.", "backend"),
    [LP_M_ALIAS_USABLE_ROUTES] = GAUGE("llm_proxy_alias_usable_routes",
        "Routes of an alias that are currently usable (not cooling, open or drained).",
        "alias"),
    [LP_M_ACTIVE_REQUESTS] = GAUGE("llm_proxy_active_requests",
        "Client requests in progress.", NULL),
    [LP_M_ACTIVE_STREAMS] = GAUGE("llm_proxy_active_streams",
        "Streaming (SSE) responses in progress.", NULL),
    [LP_M_STREAM_ABORTS_TOTAL] = COUNTER("llm_proxy_stream_aborts_total",
        "Streams ended abnormally after the first byte reached the client, by reason.",
        "reason"),
    [LP_M_TOKENS_TOTAL] = COUNTER("llm_proxy_tokens_total",
        "Tokens reported by upstream usage, by alias, backend and type (input, output, cached).",
        "alias", "backend", "type"),
    [LP_M_REQUEST_BYTES_TOTAL] = COUNTER("llm_proxy_request_bytes_total",
        "Client request body bytes received, by alias.", "alias"),
    [LP_M_RESPONSE_BYTES_TOTAL] = COUNTER("llm_proxy_response_bytes_total",
        "Response body bytes sent to clients, by alias.", "alias"),
    [LP_M_OVERHEAD_SECONDS] = HISTOGRAM("llm_proxy_overhead_seconds",
        "Proxy's own time per request in seconds: total time minus time waiting on upstreams.",
        B_OVERHEAD, NULL),
    [LP_M_CONFIG_RELOADS_TOTAL] = COUNTER("llm_proxy_config_reloads_total",
        "Configuration reloads by result (ok, error).", "result"),
    [LP_M_PROCESS_RESIDENT_MEMORY_BYTES] = GAUGE("llm_proxy_process_resident_memory_bytes",
        "Resident memory size of the proxy process in bytes.", NULL),
    [LP_M_PROCESS_OPEN_FDS] = GAUGE("llm_proxy_process_open_fds",
        "Open file descriptors of the proxy process.", NULL),
    [LP_M_PROCESS_CPU_SECONDS_TOTAL] = COUNTER("llm_proxy_process_cpu_seconds_total",
        "User plus system CPU time of the proxy process in seconds.", NULL),
    [LP_M_LOG_LINES_DROPPED_TOTAL] = COUNTER("llm_proxy_log_lines_dropped_total",
        "Log lines dropped because the log queue was full.", NULL),
    [LP_M_BUILD_INFO] = GAUGE("llm_proxy_build_info",
        "Always 1; the version label names the running build.", "version"),
    [LP_M_CLIENT_CONNECTIONS] = GAUGE("llm_proxy_client_connections",
        "Open client connections.", NULL),
    [LP_M_CLIENT_CONNECTIONS_LIMIT] = GAUGE("llm_proxy_client_connections_limit",
        "Open client connections at which accepting pauses (server.max_connections).", NULL),
    [LP_M_CLIENT_CONNECTIONS_REFUSED_TOTAL] = COUNTER(
        "llm_proxy_client_connections_refused_total",
        "Client connections closed at once because their address had max_connections_per_ip.",
        NULL),
    [LP_M_REDIS_UP] = GAUGE("llm_proxy_redis_up",
        "1 while the shared Redis answers, 0 while it is down or slow (only with a redis block).",
        NULL),
    [LP_M_REDIS_LATENCY_SECONDS] = GAUGE("llm_proxy_redis_latency_seconds",
        "Smoothed round trip of Redis commands.", NULL),
    [LP_M_REDIS_ERRORS_TOTAL] = COUNTER("llm_proxy_redis_errors_total",
        "Redis commands that failed, by kind (timeout, unavailable).", "kind"),
    [LP_M_CLUSTER_INSTANCES] = GAUGE("llm_proxy_cluster_instances",
        "Live llm-proxy instances sharing this Redis (by heartbeat).", NULL),
    [LP_M_CLUSTER_EVENTS_TOTAL] = COUNTER("llm_proxy_cluster_events_total",
        "Shared health events (cooldowns, breaker openings, drains) sent, received and applied.",
        "direction"),
    [LP_M_BODY_MEMORY_BYTES] = GAUGE("llm_proxy_body_memory_bytes",
        "Bytes held by request bodies being received or handled (limit: server.max_body_memory).",
        NULL),
    [LP_M_BODY_MEMORY_REFUSED_TOTAL] = COUNTER("llm_proxy_body_memory_refused_total",
        "Request bodies refused with 503 because server.max_body_memory was reached.", NULL),
    [LP_M_LIMITED_TOTAL] = COUNTER("llm_proxy_limited_total",
        "Requests answered 429 by a rate or key limit, by scope (global, ip, model, key_rpm, "
        "key_tpm, key_budget_day, key_budget_month, key_concurrency).", "scope"),
    [LP_M_SHED_TOTAL] = COUNTER("llm_proxy_shed_total",
        "Requests answered 503 for lack of capacity (queue_full, queue_timeout, "
        "backends_saturated) or that left while queued (client_gone).", "reason"),
    [LP_M_QUEUED_TOTAL] = COUNTER("llm_proxy_queued_total",
        "Requests that waited in the concurrency queue.", NULL),
    [LP_M_QUEUE_WAIT_SECONDS] = HISTOGRAM("llm_proxy_queue_wait_seconds",
        "Time requests waited in the concurrency queue, in seconds.", B_FIRST, NULL),
    [LP_M_QUEUE_LENGTH] = GAUGE("llm_proxy_queue_length",
        "Requests waiting in the concurrency queue now.", NULL),
    [LP_M_BACKEND_IN_FLIGHT] = GAUGE("llm_proxy_backend_in_flight",
        "Upstream attempts in flight per backend.", "backend"),
    [LP_M_BACKEND_CONCURRENCY_LIMIT] = GAUGE("llm_proxy_backend_concurrency_limit",
        "In-flight limit in force per backend (the adaptive one when enabled); 0 = none.",
        "backend"),
    [LP_M_KEY_REQUESTS_TOTAL] = COUNTER("llm_proxy_key_requests_total",
        "Requests per client key name and final HTTP status.", "key", "status"),
    [LP_M_KEY_TOKENS_TOTAL] = COUNTER("llm_proxy_key_tokens_total",
        "Tokens reported by upstream usage per client key name and type (input, output, "
        "cached).", "key", "type"),
    [LP_M_KEY_LIMITED_TOTAL] = COUNTER("llm_proxy_key_limited_total",
        "Requests of a client key refused by a limit, by key name and scope.", "key", "scope"),
    [LP_M_TRACE_SPANS_TOTAL] = COUNTER("llm_proxy_trace_spans_total",
        "Trace spans exported to the OTLP collector, dropped (queue full) or failed (collector "
        "down or refusing).", "result"),
    [LP_M_ROUTE_LATENCY_SECONDS] = GAUGE("llm_proxy_route_latency_seconds",
        "The balancer's decayed latency estimate per route: time to response head (kind head) "
        "or to the first stream event (kind first_event).", "backend", "model", "kind"),
    [LP_M_ROUTE_IN_FLIGHT] = GAUGE("llm_proxy_route_in_flight",
        "Upstream attempts in flight per route (backend, model), as the balancer counts them.",
        "backend", "model"),
    [LP_M_ROUTE_FAILURE_SCORE] = GAUGE("llm_proxy_route_failure_score",
        "The balancer's decayed failure score per route (1 per failure blaming the backend).",
        "backend", "model"),
    [LP_M_ROUTE_RATELIMIT_HEADROOM] = GAUGE("llm_proxy_route_ratelimit_headroom",
        "Smallest remaining/limit in the upstream's last rate-limit headers per route, while the "
        "reading is valid.", "backend", "model"),
    [LP_M_ROUTE_RATELIMIT_EXHAUSTED] = GAUGE("llm_proxy_route_ratelimit_exhausted",
        "1 while a route rests because its upstream reported a remaining count of 0.",
        "backend", "model"),
    [LP_M_HEDGES_TOTAL] = COUNTER("llm_proxy_hedges_total",
        "Hedged attempts (started alongside a silent first attempt) by result: won (its answer "
        "was used), lost (cancelled: another attempt answered first), failed, cancelled "
        "(the request ended otherwise).", "result"),
    [LP_M_HEDGE_BUDGET_DENIED_TOTAL] = COUNTER("llm_proxy_hedge_budget_denied_total",
        "Hedges that were due but not started because the alias's hedge budget was empty.",
        "alias"),
    [LP_M_HEDGE_DELAY_SECONDS] = HISTOGRAM("llm_proxy_hedge_delay_seconds",
        "The delay hedge timers were armed with (fixed, or the alias's measured percentile).",
        B_FIRST, NULL),
    [LP_M_HEDGE_LOSER_TOKENS_TOTAL] = COUNTER("llm_proxy_hedge_loser_tokens_total",
        "Hedging cost: estimated tokens of attempts cancelled because another attempt of a "
        "hedged request answered first (prompt bytes / 4, plus output tokens a buffered answer "
        "reported).", "alias"),
    [LP_M_PROBES_TOTAL] = COUNTER("llm_proxy_probes_total",
        "Active health probes of backends with health_check, by result (pass, fail). "
        "Not client traffic.",
        "backend", "result"),
    [LP_M_BACKEND_DOWN] = GAUGE("llm_proxy_backend_down",
        "1 while active health probes keep the backend out of rotation.", "backend"),
    [LP_M_PROBE_DURATION_SECONDS] = GAUGE("llm_proxy_probe_duration_seconds",
        "Duration of the backend's last active health probe.", "backend"),
};

/* clang-format on */

/* One time series in one shard. vals layout: counter and gauge [0] (a gauge holds int64 bits);
 * histogram: [0..n_buckets] per-bucket counts (the last is +Inf, not cumulative), then the sum
 * as double bits. The count is the cumulative +Inf bucket, so the two always agree. */
struct series {
    struct series *hnext; /* hash chain: owner thread only */
    struct series *next;  /* shard list: written under the shard mutex */
    uint64_t hash;
    enum lp_metric_id id;
    char *labels[LP_METRICS_MAX_LABELS];
    _Atomic uint64_t vals[];
};

struct lp_metrics_shard {
    struct lp_metrics *m;
    pthread_mutex_t mu; /* guards `head` against the scraper */
    struct series **table;
    size_t table_size; /* power of two */
    size_t n_series;
    struct series *head;
    size_t per_metric[LP_M__COUNT];
};

struct scrape_fn {
    lp_metrics_fn fn;
    void *ctx;
};

struct lp_metrics {
    int n_shards;
    struct lp_metrics_shard *shards;
    size_t series_cap;
    pthread_mutex_t scrape_mu; /* serialises scrapes; guards fns */
    struct scrape_fn fns[LP_M__COUNT];
};

/* ---- the table ---- */

static size_t n_labels(const struct metric_def *d)
{
    size_t n = 0;
    while (n < LP_METRICS_MAX_LABELS && d->labels[n])
        n++;
    return n;
}

static size_t n_vals(const struct metric_def *d)
{
    return d->type == LP_METRIC_HISTOGRAM ? d->n_buckets + 2 : 1;
}

const char *lp_metrics_name(enum lp_metric_id id)
{
    return (unsigned)id < LP_M__COUNT ? g_defs[id].name : NULL;
}

/* ---- series lookup (owner thread) ---- */

static const char *label_at(const char *const *labels, size_t i, size_t *len)
{
    const char *v = labels && labels[i] ? labels[i] : "";
    *len = strnlen(v, LABEL_VALUE_MAX);
    return v;
}

static uint64_t hash_labels(enum lp_metric_id id, const char *const *labels, size_t nl)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)id;
    for (size_t i = 0; i < nl; i++) {
        size_t len;
        const char *v = label_at(labels, i, &len);
        for (size_t k = 0; k < len; k++)
            h = (h ^ (unsigned char)v[k]) * 1099511628211ULL;
        h = (h ^ 0xffu) * 1099511628211ULL; /* separator: ("a","bc") != ("ab","c") */
    }
    return h;
}

static bool same_labels(const struct series *se, const char *const *labels, size_t nl)
{
    for (size_t i = 0; i < nl; i++) {
        size_t len;
        const char *v = label_at(labels, i, &len);
        if (strncmp(se->labels[i], v, len) != 0 || se->labels[i][len] != '\0')
            return false;
    }
    return true;
}

static struct series *find(struct lp_metrics_shard *s, enum lp_metric_id id, uint64_t h,
                           const char *const *labels, size_t nl)
{
    for (struct series *se = s->table[h & (s->table_size - 1)]; se; se = se->hnext) {
        if (se->hash == h && se->id == id && same_labels(se, labels, nl))
            return se;
    }
    return NULL;
}

static void grow_table(struct lp_metrics_shard *s)
{
    size_t size = s->table_size * 2;
    struct series **t = lp_xcalloc(size, sizeof *t);
    for (size_t i = 0; i < s->table_size; i++) {
        for (struct series *se = s->table[i], *nx; se; se = nx) {
            nx = se->hnext;
            se->hnext = t[se->hash & (size - 1)];
            t[se->hash & (size - 1)] = se;
        }
    }
    free(s->table);
    s->table = t;
    s->table_size = size;
}

static struct series *new_series(struct lp_metrics_shard *s, enum lp_metric_id id, uint64_t h,
                                 const char *const *labels, size_t nl)
{
    size_t nv = n_vals(&g_defs[id]);
    struct series *se = lp_xcalloc(1, sizeof *se + nv * sizeof se->vals[0]);
    se->hash = h;
    se->id = id;
    for (size_t i = 0; i < nl; i++) {
        size_t len;
        const char *v = label_at(labels, i, &len);
        se->labels[i] = lp_xstrndup(v, len);
    }
    for (size_t i = 0; i < nv; i++)
        atomic_init(&se->vals[i], 0);
    if (s->n_series >= s->table_size)
        grow_table(s);
    se->hnext = s->table[h & (s->table_size - 1)];
    s->table[h & (s->table_size - 1)] = se;
    s->n_series++;
    s->per_metric[id]++;
    return se;
}

/* Slow path: first sight of a label tuple. Past the cap, the "_other" series absorbs it. */
static struct series *create_series(struct lp_metrics_shard *s, enum lp_metric_id id, uint64_t h,
                                    const char *const *labels, size_t nl)
{
    static const char *const other[LP_METRICS_MAX_LABELS] = {"_other", "_other", "_other",
                                                             "_other"};
    pthread_mutex_lock(&s->mu);
    struct series *se = NULL;
    if (s->per_metric[id] >= s->m->series_cap) {
        labels = other;
        h = hash_labels(id, other, nl);
        se = find(s, id, h, other, nl);
    }
    if (!se) {
        se = new_series(s, id, h, labels, nl);
        se->next = s->head;
        s->head = se; /* published to the scraper under s->mu */
    }
    pthread_mutex_unlock(&s->mu);
    return se;
}

static struct series *get_series(struct lp_metrics_shard *s, enum lp_metric_id id,
                                 const char *const *labels, enum lp_metric_type type)
{
    if (!s || (unsigned)id >= LP_M__COUNT || g_defs[id].type != type)
        return NULL;
    size_t nl = n_labels(&g_defs[id]);
    uint64_t h = hash_labels(id, labels, nl);
    struct series *se = find(s, id, h, labels, nl);
    return se ? se : create_series(s, id, h, labels, nl);
}

/* ---- recording ---- */

void lp_metrics_inc(struct lp_metrics_shard *s, enum lp_metric_id id, const char *const *labels,
                    uint64_t v)
{
    struct series *se = get_series(s, id, labels, LP_METRIC_COUNTER);
    if (se)
        atomic_fetch_add_explicit(&se->vals[0], v, memory_order_relaxed);
}

void lp_metrics_gauge_add(struct lp_metrics_shard *s, enum lp_metric_id id,
                          const char *const *labels, int64_t delta)
{
    struct series *se = get_series(s, id, labels, LP_METRIC_GAUGE);
    if (se) /* two's complement: adding the uint64 image of a negative delta subtracts */
        atomic_fetch_add_explicit(&se->vals[0], (uint64_t)delta, memory_order_relaxed);
}

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

void lp_metrics_observe(struct lp_metrics_shard *s, enum lp_metric_id id, const char *const *labels,
                        double value)
{
    if (isnan(value))
        return;
    struct series *se = get_series(s, id, labels, LP_METRIC_HISTOGRAM);
    if (!se)
        return;
    const struct metric_def *d = &g_defs[id];
    size_t b = 0;
    while (b < d->n_buckets && value > d->buckets[b])
        b++;
    atomic_fetch_add_explicit(&se->vals[b], 1, memory_order_relaxed);
    /* The sum has a single writer (the owner), so load-add-store cannot lose an update. */
    _Atomic uint64_t *sum = &se->vals[d->n_buckets + 1];
    double cur = bits_to_double(atomic_load_explicit(sum, memory_order_relaxed));
    atomic_store_explicit(sum, double_to_bits(cur + value), memory_order_relaxed);
}

/* ---- scrape: collect, sort, merge ---- */

struct sample {
    enum lp_metric_id id;
    char *labels[LP_METRICS_MAX_LABELS];
    double v;       /* counter / gauge value; histogram sum */
    uint64_t *hist; /* histogram: n_buckets + 1 per-bucket counts */
};

struct samples {
    struct sample *v;
    size_t n, cap;
};

struct lp_metrics_sink {
    struct samples *out;
    enum lp_metric_id id;
};

static struct sample *add_sample(struct samples *ss, enum lp_metric_id id,
                                 const char *const *labels)
{
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? ss->cap * 2 : 64;
        ss->v = lp_xrealloc(ss->v, ss->cap * sizeof *ss->v);
    }
    struct sample *sm = &ss->v[ss->n++];
    memset(sm, 0, sizeof *sm);
    sm->id = id;
    size_t nl = n_labels(&g_defs[id]);
    for (size_t i = 0; i < nl; i++) {
        size_t len;
        const char *v = label_at(labels, i, &len);
        sm->labels[i] = lp_xstrndup(v, len);
    }
    return sm;
}

static void free_samples(struct samples *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        for (size_t k = 0; k < LP_METRICS_MAX_LABELS; k++)
            free(ss->v[i].labels[k]);
        free(ss->v[i].hist);
    }
    LP_FREE(&ss->v);
    ss->n = ss->cap = 0;
}

void lp_metrics_sink_put(struct lp_metrics_sink *sink, const char *const *labels, double value)
{
    if (sink && g_defs[sink->id].type != LP_METRIC_HISTOGRAM)
        add_sample(sink->out, sink->id, labels)->v = value;
}

static void collect_series(struct samples *ss, const struct series *se)
{
    const struct metric_def *d = &g_defs[se->id];
    struct sample *sm = add_sample(ss, se->id, (const char *const *)se->labels);
    if (d->type == LP_METRIC_HISTOGRAM) {
        sm->hist = lp_xcalloc(d->n_buckets + 1, sizeof *sm->hist);
        for (size_t b = 0; b <= d->n_buckets; b++)
            sm->hist[b] = atomic_load_explicit(&se->vals[b], memory_order_relaxed);
        sm->v =
            bits_to_double(atomic_load_explicit(&se->vals[d->n_buckets + 1], memory_order_relaxed));
    } else if (d->type == LP_METRIC_GAUGE) {
        sm->v = (double)(int64_t)atomic_load_explicit(&se->vals[0], memory_order_relaxed);
    } else {
        uint64_t u = atomic_load_explicit(&se->vals[0], memory_order_relaxed);
        sm->v = (double)u * (d->scale ? d->scale : 1.0);
    }
}

static int cmp_sample(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    for (size_t i = 0; i < LP_METRICS_MAX_LABELS && x->labels[i]; i++) {
        int c = strcmp(x->labels[i], y->labels[i]);
        if (c)
            return c;
    }
    return 0;
}

/* Sum adjacent samples with equal (metric, labels) into the first; free the rest. */
static void merge_samples(struct samples *ss)
{
    size_t w = 0;
    for (size_t r = 0; r < ss->n; r++) {
        struct sample *cur = &ss->v[r];
        if (w > 0 && cmp_sample(&ss->v[w - 1], cur) == 0) {
            struct sample *into = &ss->v[w - 1];
            into->v += cur->v;
            for (size_t b = 0; cur->hist && b <= g_defs[cur->id].n_buckets; b++)
                into->hist[b] += cur->hist[b];
            for (size_t k = 0; k < LP_METRICS_MAX_LABELS; k++)
                free(cur->labels[k]);
            free(cur->hist);
            continue;
        }
        ss->v[w++] = *cur;
    }
    ss->n = w;
}

/* Called with m->scrape_mu held. */
static void collect(struct lp_metrics *m, struct samples *ss)
{
    for (int i = 0; i < m->n_shards; i++) {
        struct lp_metrics_shard *s = &m->shards[i];
        pthread_mutex_lock(&s->mu);
        for (const struct series *se = s->head; se; se = se->next)
            collect_series(ss, se);
        pthread_mutex_unlock(&s->mu);
    }
    for (int id = 0; id < LP_M__COUNT; id++) {
        if (!m->fns[id].fn)
            continue;
        struct lp_metrics_sink sink = {ss, (enum lp_metric_id)id};
        m->fns[id].fn(&sink, m->fns[id].ctx);
    }
    if (ss->n)
        qsort(ss->v, ss->n, sizeof *ss->v, cmp_sample);
    merge_samples(ss);
}

/* ---- text exposition ---- */

/* The shortest %g form that reads back as exactly v (0.7, not 0.69999999999999996). */
static void put_shortest(struct lp_buf *b, double v)
{
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    lp_buf_appends(b, s);
}

static void put_value(struct lp_buf *b, double v)
{
    if (isnan(v))
        lp_buf_appends(b, "NaN");
    else if (isinf(v))
        lp_buf_appends(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        lp_buf_printf(b, "%.0f", v);
    else
        put_shortest(b, v);
}

static void put_escaped(struct lp_buf *b, const char *s, bool quote_too)
{
    for (; *s; s++) {
        if (*s == '\\')
            lp_buf_appends(b, "\\\\");
        else if (*s == '\n')
            lp_buf_appends(b, "\\n");
        else if (*s == '"' && quote_too)
            lp_buf_appends(b, "\\\"");
        else
            lp_buf_appendc(b, *s);
    }
}

/* {a="x",b="y",le="0.5"} - le may be NULL; nothing at all when there are no labels. */
static void put_labels(struct lp_buf *b, const struct sample *sm, const char *le)
{
    const struct metric_def *d = &g_defs[sm->id];
    size_t nl = n_labels(d);
    if (nl == 0 && !le)
        return;
    lp_buf_appendc(b, '{');
    for (size_t i = 0; i < nl; i++) {
        lp_buf_printf(b, "%s%s=\"", i ? "," : "", d->labels[i]);
        put_escaped(b, sm->labels[i], true);
        lp_buf_appendc(b, '"');
    }
    if (le)
        lp_buf_printf(b, "%sle=\"%s\"", nl ? "," : "", le);
    lp_buf_appendc(b, '}');
}

static void put_histogram(struct lp_buf *b, const struct sample *sm)
{
    const struct metric_def *d = &g_defs[sm->id];
    uint64_t acc = 0;
    for (size_t i = 0; i <= d->n_buckets; i++) {
        char le[32];
        if (i < d->n_buckets)
            snprintf(le, sizeof le, "%.15g", d->buckets[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        acc += sm->hist[i];
        lp_buf_printf(b, "%s_bucket", d->name);
        put_labels(b, sm, le);
        lp_buf_printf(b, " %llu\n", (unsigned long long)acc);
    }
    lp_buf_printf(b, "%s_sum", d->name);
    put_labels(b, sm, NULL);
    lp_buf_appendc(b, ' ');
    put_value(b, sm->v);
    lp_buf_printf(b, "\n%s_count", d->name);
    put_labels(b, sm, NULL);
    lp_buf_printf(b, " %llu\n", (unsigned long long)acc);
}

static void put_sample(struct lp_buf *b, const struct sample *sm)
{
    if (g_defs[sm->id].type == LP_METRIC_HISTOGRAM) {
        put_histogram(b, sm);
        return;
    }
    lp_buf_appends(b, g_defs[sm->id].name);
    put_labels(b, sm, NULL);
    lp_buf_appendc(b, ' ');
    put_value(b, sm->v);
    lp_buf_appendc(b, '\n');
}

static void put_metric(struct lp_buf *b, const struct metric_def *d, const struct sample *first,
                       size_t n, enum lp_metric_id id)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    lp_buf_printf(b, "# HELP %s ", d->name);
    put_escaped(b, d->help, false);
    lp_buf_printf(b, "\n# TYPE %s %s\n", d->name, types[d->type]);
    for (size_t i = 0; i < n; i++)
        put_sample(b, &first[i]);
    if (n == 0 && n_labels(d) == 0) {
        /* A metric without labels always has its one series: expose the zero. */
        uint64_t zeros[MAX_BUCKETS + 1] = {0};
        struct sample z = {.id = id, .hist = zeros};
        put_sample(b, &z);
    }
}

char *lp_metrics_render(struct lp_metrics *m, size_t *len)
{
    struct samples ss = {0};
    struct lp_buf b;
    lp_buf_init(&b, 0);
    pthread_mutex_lock(&m->scrape_mu);
    collect(m, &ss);
    pthread_mutex_unlock(&m->scrape_mu);
    size_t i = 0;
    for (int id = 0; id < LP_M__COUNT; id++) {
        size_t start = i;
        while (i < ss.n && ss.v[i].id == (enum lp_metric_id)id)
            i++;
        put_metric(&b, &g_defs[id], ss.v + start, i - start, (enum lp_metric_id)id);
    }
    free_samples(&ss);
    return lp_buf_steal(&b, len);
}

/* ---- /admin/stats ---- */

/* Samples of one metric are contiguous and sorted by labels, so grouping by the first label
 * (the backend) is a walk over adjacent runs. */
static void put_by_backend(struct lp_buf *b, const struct samples *ss, enum lp_metric_id id,
                           int what)
{
    bool first = true;
    size_t i = 0;
    while (i < ss->n && ss->v[i].id != id)
        i++;
    while (i < ss->n && ss->v[i].id == id) {
        const char *backend = ss->v[i].labels[0];
        double total = 0, errors = 0, sum = 0;
        uint64_t count = 0;
        for (; i < ss->n && ss->v[i].id == id && strcmp(ss->v[i].labels[0], backend) == 0; i++) {
            const struct sample *sm = &ss->v[i];
            total += sm->v;
            if (id == LP_M_UPSTREAM_ATTEMPTS_TOTAL && strcmp(sm->labels[2], "ok") != 0)
                errors += sm->v;
            if (sm->hist) {
                sum += sm->v;
                for (size_t k = 0; k <= g_defs[id].n_buckets; k++)
                    count += sm->hist[k];
            }
        }
        lp_buf_appends(b, first ? "\"" : ",\"");
        lp_buf_append_json_escaped(b, backend, strlen(backend));
        lp_buf_appends(b, "\":");
        if (what == 0)
            lp_buf_printf(b, "%.0f", total);
        else if (what == 1)
            lp_buf_printf(b, "%.0f", errors);
        else
            lp_buf_printf(b, "%.1f", count ? sum * 1000.0 / (double)count : 0.0);
        first = false;
    }
}

char *lp_metrics_stats_json(struct lp_metrics *m, size_t *len)
{
    struct samples ss = {0};
    pthread_mutex_lock(&m->scrape_mu);
    collect(m, &ss);
    pthread_mutex_unlock(&m->scrape_mu);
    double active = 0;
    for (size_t i = 0; i < ss.n; i++) {
        if (ss.v[i].id == LP_M_ACTIVE_REQUESTS)
            active += ss.v[i].v;
    }
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_appends(&b, "{\"requests_total\":{");
    put_by_backend(&b, &ss, LP_M_UPSTREAM_ATTEMPTS_TOTAL, 0);
    lp_buf_appends(&b, "},\"backend_errors\":{");
    put_by_backend(&b, &ss, LP_M_UPSTREAM_ATTEMPTS_TOTAL, 1);
    lp_buf_appends(&b, "},\"avg_duration_ms\":{");
    put_by_backend(&b, &ss, LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, 2);
    lp_buf_printf(&b, "},\"active_requests\":%.0f}", active);
    free_samples(&ss);
    return lp_buf_steal(&b, len);
}

/* ---- built-in scrape-time metrics ---- */

static void on_scrape_rss(struct lp_metrics_sink *sink, void *ctx)
{
    (void)ctx;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f && fscanf(f, "%lu %lu", &size, &resident) == 2)
        lp_metrics_sink_put(sink, NULL, (double)resident * (double)sysconf(_SC_PAGESIZE));
    if (f)
        fclose(f);
}

static void on_scrape_fds(struct lp_metrics_sink *sink, void *ctx)
{
    (void)ctx;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return;
    long n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        n += e->d_name[0] != '.';
    closedir(dir);
    lp_metrics_sink_put(sink, NULL, (double)(n - 1)); /* minus the directory's own fd */
}

static void on_scrape_cpu(struct lp_metrics_sink *sink, void *ctx)
{
    (void)ctx;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which is in parentheses and may contain spaces. utime and
     * stime are fields 14 and 15 of the line, i.e. the 12th and 13th after ") ". */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
        lp_metrics_sink_put(sink, NULL, (double)(ut + st) / (double)sysconf(_SC_CLK_TCK));
}

static void on_scrape_log_dropped(struct lp_metrics_sink *sink, void *ctx)
{
    (void)ctx;
    lp_metrics_sink_put(sink, NULL, (double)lp_log_dropped());
}

static void on_scrape_build_info(struct lp_metrics_sink *sink, void *ctx)
{
    (void)ctx;
    const char *v[] = {LP_VERSION};
    lp_metrics_sink_put(sink, v, 1);
}

/* ---- lifecycle ---- */

void lp_metrics_set_gauge_fn(struct lp_metrics *m, enum lp_metric_id id, lp_metrics_fn fn,
                             void *ctx)
{
    if (!m || (unsigned)id >= LP_M__COUNT || g_defs[id].type == LP_METRIC_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->scrape_mu);
    m->fns[id] = (struct scrape_fn){fn, ctx};
    pthread_mutex_unlock(&m->scrape_mu);
}

struct lp_metrics *lp_metrics_create(int n_shards)
{
    if (n_shards < 1)
        n_shards = 1;
    struct lp_metrics *m = lp_xcalloc(1, sizeof *m);
    m->n_shards = n_shards;
    m->series_cap = LP_METRICS_DEFAULT_SERIES_CAP;
    pthread_mutex_init(&m->scrape_mu, NULL);
    m->shards = lp_xcalloc((size_t)n_shards, sizeof *m->shards);
    for (int i = 0; i < n_shards; i++) {
        struct lp_metrics_shard *s = &m->shards[i];
        s->m = m;
        pthread_mutex_init(&s->mu, NULL);
        s->table_size = INITIAL_BUCKETS;
        s->table = lp_xcalloc(s->table_size, sizeof *s->table);
    }
    lp_metrics_set_gauge_fn(m, LP_M_PROCESS_RESIDENT_MEMORY_BYTES, on_scrape_rss, NULL);
    lp_metrics_set_gauge_fn(m, LP_M_PROCESS_OPEN_FDS, on_scrape_fds, NULL);
    lp_metrics_set_gauge_fn(m, LP_M_PROCESS_CPU_SECONDS_TOTAL, on_scrape_cpu, NULL);
    lp_metrics_set_gauge_fn(m, LP_M_LOG_LINES_DROPPED_TOTAL, on_scrape_log_dropped, NULL);
    lp_metrics_set_gauge_fn(m, LP_M_BUILD_INFO, on_scrape_build_info, NULL);
    return m;
}

void lp_metrics_destroy(struct lp_metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_shards; i++) {
        struct lp_metrics_shard *s = &m->shards[i];
        for (struct series *se = s->head, *nx; se; se = nx) {
            nx = se->next;
            for (size_t k = 0; k < LP_METRICS_MAX_LABELS; k++)
                free(se->labels[k]);
            free(se);
        }
        free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    free(m->shards);
    pthread_mutex_destroy(&m->scrape_mu);
    free(m);
}

struct lp_metrics_shard *lp_metrics_shard(struct lp_metrics *m, int idx)
{
    return m && idx >= 0 && idx < m->n_shards ? &m->shards[idx] : NULL;
}

void lp_metrics_set_series_cap(struct lp_metrics *m, size_t cap)
{
    if (m && cap >= 1)
        m->series_cap = cap;
}
