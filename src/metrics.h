/* metrics.h - Prometheus metrics, declared once in a table (metrics.c), counted per thread.
 *
 * Every metric is a row of the table in metrics.c: name, type, help, label names, bucket set.
 * The enum below indexes that table; the row comment says what to pass.
 *
 * Hot path: each worker thread owns one shard. lp_metrics_inc / _observe / _gauge_add find the
 * series for (metric, label values) in the shard's own hash map and bump relaxed atomics: no
 * lock is taken for a series the shard has seen before. The first sight of a label tuple takes
 * the shard's mutex (contended only by a concurrent scrape) to allocate the series. A shard
 * must only be updated by its owner thread (one writer); any thread may scrape.
 *
 * Label values are bounded by the config (aliases, backends, models, classes, status codes),
 * never request ids. As a safety net each metric holds at most `series_cap` series per shard;
 * further label tuples are counted in one series whose every label value is "_other".
 *
 * Scrape-time values (breaker and cooldown states, usable routes, process stats, dropped log
 * lines) come from callbacks that emit samples while lp_metrics_render runs.
 */
#ifndef LP_METRICS_H
#define LP_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum lp_metric_type {
    LP_METRIC_COUNTER,
    LP_METRIC_GAUGE,
    LP_METRIC_HISTOGRAM,
};

/* Label order is the order listed; pass label values in that order. */
enum lp_metric_id {
    LP_M_REQUESTS_TOTAL,           /* counter {alias,protocol,status}: client requests finished */
    LP_M_REQUEST_DURATION_SECONDS, /* histogram {alias}: whole request, seconds */
    LP_M_TTFB_SECONDS,             /* histogram {alias}: first byte sent to the client */
    LP_M_UPSTREAM_ATTEMPTS_TOTAL,  /* counter {backend,model,class}: class "ok" on success */
    LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, /* histogram {backend} */
    LP_M_UPSTREAM_TTFT_SECONDS,      /* histogram {backend}: first token/event from upstream */
    LP_M_FAILOVERS_TOTAL,            /* counter {reason}: moved on to the next candidate */
    LP_M_RETRIES_TOTAL,              /* counter {}: attempts beyond the first */
    LP_M_BACKOFF_WAIT_SECONDS_TOTAL, /* counter {}: pass MICROSECONDS to lp_metrics_inc */
    LP_M_COOLDOWN_ACTIVE,            /* gauge {backend,model}: 1 while cooling (callback) */
    LP_M_BREAKER_STATE,              /* gauge {backend}: 0 closed, 1 open, 2 half-open (callback) */
    LP_M_ALIAS_USABLE_ROUTES,        /* gauge {alias}: routes not cooling/open/drained (callback) */
    LP_M_ACTIVE_REQUESTS,            /* gauge {}: lp_metrics_gauge_add +1 / -1 */
    LP_M_ACTIVE_STREAMS,             /* gauge {}: lp_metrics_gauge_add +1 / -1 */
    LP_M_STREAM_ABORTS_TOTAL,        /* counter {reason}: streams ended after commit */
    LP_M_TOKENS_TOTAL,               /* counter {alias,backend,type}: type input|output|cached */
    LP_M_REQUEST_BYTES_TOTAL,        /* counter {alias}: client request body bytes */
    LP_M_RESPONSE_BYTES_TOTAL,       /* counter {alias}: response body bytes sent to clients */
    LP_M_OVERHEAD_SECONDS,           /* histogram {}: total time minus upstream wait */
    LP_M_CONFIG_RELOADS_TOTAL,       /* counter {result}: result ok|error */
    LP_M_PROCESS_RESIDENT_MEMORY_BYTES, /* gauge {}: built in, from /proc/self/statm */
    LP_M_PROCESS_OPEN_FDS,              /* gauge {}: built in, from /proc/self/fd */
    LP_M_PROCESS_CPU_SECONDS_TOTAL,     /* counter {}: built in, from /proc/self/stat */
    LP_M_LOG_LINES_DROPPED_TOTAL,       /* counter {}: built in, lp_log_dropped() */
    LP_M_BUILD_INFO,                    /* gauge {version}: always 1, built in */
    LP_M_CLIENT_CONNECTIONS,            /* gauge {}: open client connections (callback) */
    LP_M_CLIENT_CONNECTIONS_LIMIT,      /* gauge {}: effective server.max_connections (callback) */
    LP_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, /* counter {}: closed at max_connections_per_ip
                                              (callback) */
    LP_M_BODY_MEMORY_BYTES,                /* gauge {}: bytes held by request bodies (callback) */
    LP_M_BODY_MEMORY_REFUSED_TOTAL,        /* counter {}: bodies refused with 503 (callback) */
    LP_M_REDIS_UP,                         /* gauge {}: 1 while Redis answers (callback) */
    LP_M_REDIS_LATENCY_SECONDS,            /* gauge {}: smoothed Redis round trip (callback) */
    LP_M_REDIS_ERRORS_TOTAL,               /* counter {kind}: timeout|unavailable (callback) */
    LP_M_CLUSTER_INSTANCES,                /* gauge {}: live instances by heartbeat (callback) */
    LP_M_CLUSTER_EVENTS_TOTAL, /* counter {direction}: sent|received|applied (callback) */
    /* traffic control (traffic.c) */
    LP_M_LIMITED_TOTAL,      /* counter {scope}: answered 429 by a rate or key limit */
    LP_M_SHED_TOTAL,         /* counter {reason}: answered 503 for capacity, or left the queue */
    LP_M_QUEUED_TOTAL,       /* counter {}: requests that waited for a concurrency slot */
    LP_M_QUEUE_WAIT_SECONDS, /* histogram {}: time waited in the concurrency queue */
    LP_M_QUEUE_LENGTH,       /* gauge {}: requests waiting now (callback) */
    LP_M_BACKEND_IN_FLIGHT,  /* gauge {backend}: attempts in flight (callback) */
    LP_M_BACKEND_CONCURRENCY_LIMIT, /* gauge {backend}: limit in force, 0 = none (callback) */
    LP_M_KEY_REQUESTS_TOTAL,        /* counter {key,status}: requests per client key name */
    LP_M_KEY_TOKENS_TOTAL, /* counter {key,type}: tokens per client key, type input|output|cached */
    LP_M_KEY_LIMITED_TOTAL, /* counter {key,scope}: a key's requests refused by a limit */
    LP_M_TRACE_SPANS_TOTAL, /* counter {result}: exported|dropped|failed spans (callback) */
    /* smart routing (routestats.c, balance.c) */
    LP_M_ROUTE_LATENCY_SECONDS, /* gauge {backend,model,kind}: decayed estimate, kind
                                   head|first_event (callback) */
    LP_M_ROUTE_IN_FLIGHT, /* gauge {backend,model}: attempts in flight on the route (callback) */
    LP_M_ROUTE_FAILURE_SCORE,       /* gauge {backend,model}: decayed failure score (callback) */
    LP_M_ROUTE_RATELIMIT_HEADROOM,  /* gauge {backend,model}: upstream remaining/limit (callback) */
    LP_M_ROUTE_RATELIMIT_EXHAUSTED, /* gauge {backend,model}: 1 while resting until reset (callback)
                                     */
    LP_M_HEDGES_TOTAL,              /* counter {result}: won|lost|failed|cancelled */
    LP_M_HEDGE_BUDGET_DENIED_TOTAL, /* counter {alias}: a hedge was due but the budget was empty */
    LP_M_HEDGE_DELAY_SECONDS,       /* histogram {}: the delay a hedge timer was armed with */
    LP_M_HEDGE_LOSER_TOKENS_TOTAL,  /* counter {alias}: estimated tokens of cancelled race losers */
    /* active health probes (prober.c) */
    LP_M_PROBES_TOTAL,           /* counter {backend,result}: pass|fail (callback) */
    LP_M_BACKEND_DOWN,           /* gauge {backend}: 1 while marked down by probes (callback) */
    LP_M_PROBE_DURATION_SECONDS, /* gauge {backend}: duration of the last probe (callback) */
    LP_M__COUNT
};

#define LP_METRICS_MAX_LABELS 4
#define LP_METRICS_DEFAULT_SERIES_CAP 10000

struct lp_metrics;
struct lp_metrics_shard;
struct lp_metrics_sink;

/* Create the registry with n_shards shards (n_shards >= 1; one per worker thread, plus one for
 * any other thread that records). The built-in process and log metrics are registered.
 * Never NULL (aborts on OOM). Free with lp_metrics_destroy. */
struct lp_metrics *lp_metrics_create(int n_shards);
/* Free everything. Accepts NULL. No shard may be in use. */
void lp_metrics_destroy(struct lp_metrics *m);
/* Shard idx (0 <= idx < n_shards), or NULL when out of range. Owned by m. */
struct lp_metrics_shard *lp_metrics_shard(struct lp_metrics *m, int idx);
/* Set the per-shard series cap of every metric (>= 1). Call before recording. */
void lp_metrics_set_series_cap(struct lp_metrics *m, size_t cap);

/* Add v to a counter. labels holds one value per label name (NULL entries mean ""; labels may be
 * NULL for a metric without labels). Values are copied when a series is created and truncated
 * to 128 bytes. A wrong metric type or a NULL shard is ignored. */
void lp_metrics_inc(struct lp_metrics_shard *s, enum lp_metric_id id, const char *const *labels,
                    uint64_t v);
/* Record one observation (seconds, bytes...) in a histogram. NaN is ignored. */
void lp_metrics_observe(struct lp_metrics_shard *s, enum lp_metric_id id, const char *const *labels,
                        double value);
/* Add delta (may be negative) to a gauge; the exposed value is the sum over shards. */
void lp_metrics_gauge_add(struct lp_metrics_shard *s, enum lp_metric_id id,
                          const char *const *labels, int64_t delta);

/* A scrape-time callback emits samples with lp_metrics_sink_put; it runs on the scraping thread
 * while lp_metrics_render or lp_metrics_stats_json runs, so it must be thread-safe with respect
 * to what it reads. */
typedef void (*lp_metrics_fn)(struct lp_metrics_sink *sink, void *ctx);
/* Emit one sample for the callback's metric (labels as for lp_metrics_inc; copied). Samples with
 * equal labels, from callbacks and shards, are summed. */
void lp_metrics_sink_put(struct lp_metrics_sink *sink, const char *const *labels, double value);
/* Register (or with fn NULL, remove) the scrape-time callback of a counter or gauge. One per
 * metric; a later call replaces the earlier one. Thread-safe with respect to scrapes. */
void lp_metrics_set_gauge_fn(struct lp_metrics *m, enum lp_metric_id id, lp_metrics_fn fn,
                             void *ctx);

/* Render the Prometheus text exposition format 0.0.4 (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8"). Returns a heap string the caller frees; *len
 * (when non-NULL) gets its length. Thread-safe; scrapes are serialised. */
char *lp_metrics_render(struct lp_metrics *m, size_t *len);

/* The reference's JSON snapshot for GET /admin/stats:
 * {"requests_total":{backend:n},"backend_errors":{backend:n},"avg_duration_ms":{backend:x},
 *  "active_requests":n}
 * computed from upstream_attempts_total (all classes / classes other than "ok"),
 * upstream_attempt_duration_seconds (sum/count) and active_requests. Heap string, caller frees. */
char *lp_metrics_stats_json(struct lp_metrics *m, size_t *len);

/* Name of a metric as exposed (for tests and docs). NULL when id is out of range. */
const char *lp_metrics_name(enum lp_metric_id id);

#endif
