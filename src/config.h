/* config.h - the configuration snapshot: YAML -> struct lp_config, validated.
 *
 * A struct lp_config is immutable once loaded and reference counted: a request holds the
 * snapshot it started with (lp_config_ref) and drops it when it finishes (lp_config_unref).
 * A reload builds a new snapshot and swaps a pointer; nothing in a published snapshot changes.
 *
 * The YAML schema is the reference system's (see docs/configuration.md). Every problem is
 * reported as a diagnostic naming file:line:col and the key. Unknown keys are warnings.
 */
#ifndef LP_CONFIG_H
#define LP_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/* Durations are milliseconds; 0 means "no limit" only where a field says so. */
struct lp_timeouts {
    int64_t connect_ms; /* default 10s */
    int64_t read_ms;    /* default 60s: max silence between upstream bytes once started */
    int64_t write_ms;   /* default 60s: max time to send the request body upstream / to a client */
    int64_t total_ms;   /* default 10m: whole request, all attempts and waits */
    int64_t ttft_ms;    /* default 3m: to the first response byte / first SSE event */
};

struct lp_kv {
    char *key;
    char *value;
};

/* A backend's active health probe (`health_check:`, prober.h). */
struct lp_health_check {
    bool enabled;             /* the key is present */
    char *path;               /* joined with the backend URL like an endpoint path, or a full
                                 http(s) URL; NULL = the dialect's model list */
    int64_t interval_ms;      /* between probes of a backend that is out; default 10 s */
    int64_t timeout_ms;       /* per probe; default 2 s */
    int healthy_after;        /* consecutive passes that bring it back; default 1 */
    int unhealthy_after;      /* consecutive failures that mark a healthy backend down; default 3 */
    int64_t idle_interval_ms; /* also probe a healthy backend this often; 0 = never (default) */
};

struct lp_backend {
    char *name;
    char *url;     /* as configured (after ${ENV} interpolation), without a trailing '/' */
    char *api_key; /* may be NULL/empty: then no upstream auth header is sent */
    bool enabled;
    enum lp_proto protocol;     /* wire protocol: openai unless "anthropic" */
    enum lp_dialect_id dialect; /* addressing and auth (dialect.h); from the protocol name */
    char *protocol_name;        /* as written ("openai" when absent) */
    char *api_version;          /* Azure `api-version` query value; NULL = LP_AZURE_API_VERSION */
    char
        *max_tokens_param; /* "max_tokens" | "max_completion_tokens"; NULL = as sent (paramfix.h) */
    char **drop_params;    /* top-level body members removed before sending (paramfix.h) */
    size_t n_drop_params;
    struct lp_health_check health_check;
    char *locale;               /* NULL when absent; sent as Accept-Language when set */
    char *tls_ca_file;          /* PEM bundle that verifies this backend's certificate (absolute
                                   path after loading); NULL = the system CA store */
    char *tls_ca_pem;           /* that file's contents, read at load (the own client builds its
                                   trust store from them on the loop without disk I/O) */
    bool http2;                 /* use the libcurl engine (HTTP/2 over TLS when offered) instead of
                                   the own HTTP/1.1 client */
    struct lp_timeouts timeout; /* effective: global timeout block overlaid with backend's own.
                                 * A scalar `timeout: 60s` on a backend overrides total_ms, which
                                 * then bounds one attempt on this backend (within the request's
                                 * global total). */
    struct lp_kv *headers;      /* extra upstream headers, in file order */
    size_t n_headers;
    int64_t max_tokens; /* 0 = no clamp */
    int max_concurrent; /* in-flight attempts on this backend; 0 = concurrency.per_backend_limit
                           when concurrency is enabled, else unlimited (traffic.h) */
    bool adaptive_concurrency; /* AIMD limit on in-flight attempts, at most the configured one */
    int line, col;             /* where the entry starts, for later diagnostics */
};

/* translation: how cross-protocol requests treat what the other protocol cannot express
 * (docs/translation.md). Set at the top level, per alias and per route; the most specific set
 * value wins. 0 (LP_XLAT_UNSET) everywhere means the default, reject. */
enum lp_xlat_unsupported {
    LP_XLAT_UNSET = 0,
    LP_XLAT_REJECT, /* answer 400 naming the parameter */
    LP_XLAT_DROP,   /* drop it, list it in X-LLM-Proxy-Dropped-Params and the access line */
};

struct lp_xlat_cfg {
    enum lp_xlat_unsupported unsupported;
};

struct lp_route {
    char *backend;                  /* backend name as written */
    size_t backend_idx;             /* index into lp_config.backends (validated to exist) */
    char *model;                    /* upstream model name */
    int priority;                   /* lower is preferred; default 0 */
    bool enabled;                   /* default true */
    bool has_protocol;              /* route-level protocol override present */
    enum lp_proto protocol;         /* valid when has_protocol */
    int64_t max_tokens;             /* 0 = inherit the backend's */
    int weight;                     /* share under routing.strategy weighted; default 1, 0 = last */
    struct lp_xlat_cfg translation; /* route-level translation block */
    int line, col;                  /* where the route entry starts */
};

/* How the usable routes of one priority are ordered (balance.h). */
enum lp_strategy {
    LP_STRATEGY_LATENCY = 0, /* default: power of two choices over the measured cost */
    LP_STRATEGY_RANDOM,      /* the reference's shuffle */
    LP_STRATEGY_ROUND_ROBIN, /* one counter per alias, shared by every worker */
    LP_STRATEGY_WEIGHTED,    /* random by route weight */
};

/* routing.hedge: a second attempt when the first is still silent after the delay. */
struct lp_hedge_cfg {
    bool enabled;       /* a hedge block is configured (and max_extra > 0) */
    int64_t delay_ms;   /* fixed delay; default 500 ms */
    int delay_pct;      /* pNN of the alias's measured time to first event; 0 = fixed */
    int max_extra;      /* extra attempts per request, 0..3; default 1 */
    int budget_percent; /* hedges per 100 requests, 1..100; default 10 */
};

/* routing: top level, overlaid per alias by models.<alias>.routing. */
struct lp_routing_cfg {
    enum lp_strategy strategy;
    bool strategy_set;
    int64_t decay_ms; /* how fast estimates forget (time constant); default 10 s */
    bool decay_set;
    struct lp_hedge_cfg hedge;
    bool hedge_set;
};

struct lp_alias {
    char *name;
    bool enabled; /* default true */
    struct lp_route *routes;
    size_t n_routes;
    char *
        *fallbacks; /* fallback.alias_fallback[name], in order; may name unknown aliases (warned) */
    size_t n_fallbacks;
    struct lp_routing_cfg routing;  /* effective: its own routing block over the top-level one */
    struct lp_xlat_cfg translation; /* alias-level translation block (unset fields inherit) */
    int line, col;                  /* where the alias key is written */
};

enum lp_when_all_cooling {
    LP_ALL_COOLING_FAIL = 0,
    LP_ALL_COOLING_TRY_SOONEST = 1,
};

struct lp_fallback_cfg {
    int cooldown_seconds; /* default 60 (<=0 -> 60, as the reference's Validate) */
    int max_retries;      /* as written; see docs/configuration.md for the semantics */
    bool max_retries_set;
    bool enable_backoff;                       /* default false */
    int backoff_initial_ms;                    /* default 100 */
    int backoff_max_ms;                        /* default 5000 */
    double backoff_multiplier;                 /* default 2.0 */
    double backoff_jitter;                     /* default 0.1; out of [0,1] -> 0.1 */
    bool enable_circuit_breaker;               /* default false */
    int circuit_failure_threshold;             /* default 5 */
    int circuit_success_threshold;             /* default 2 */
    int circuit_open_timeout_s;                /* default 60 */
    int circuit_half_open_max;                 /* default 1: probes admitted at once in half-open */
    enum lp_when_all_cooling when_all_cooling; /* default fail */
};

/* detection (eras A/B) and error_fallback (era C): explicit user overrides on classification. */
struct lp_detection_cfg {
    char **error_codes; /* "429", "4xx", "5xx", ... as written */
    size_t n_error_codes;
    char **error_patterns; /* case-sensitive substrings */
    size_t n_error_patterns;
};

struct lp_error_fallback_cfg {
    bool present;
    bool server_error_enabled;
    bool client_error_enabled;
    int *client_codes;
    size_t n_client_codes;
    char **client_patterns; /* case-insensitive substrings */
    size_t n_client_patterns;
};

/* An address block (server.trusted_proxies): IPv4 blocks are stored IPv4-mapped (::ffff:a.b.c.d,
 * prefix + 96), so one compare serves both families. */
struct lp_cidr {
    unsigned char addr[16];
    int bits; /* 0..128 */
};

struct lp_server_cfg {
    int64_t max_body_size;       /* bytes, default 64 MiB */
    int64_t max_header_size;     /* bytes, default 64 KiB */
    int64_t idle_timeout_ms;     /* keep-alive idle and header-read timeout, default 60s */
    int threads;                 /* 0 = one per core */
    int64_t shutdown_timeout_ms; /* drain deadline on SIGTERM, default 30s */
    int64_t body_timeout_ms; /* a request body must arrive within this (from the end of its head),
                                default 60s */
    int64_t
        min_body_rate; /* bytes/s a body must keep up after its first 5 s, default 1 KiB; 0 = off */
    int max_connections;        /* open client connections, process-wide; 0 (default) = derived from
                                   RLIMIT_NOFILE */
    int max_connections_per_ip; /* per peer address; 0 (default) = half of max_connections */
    int64_t max_body_memory;    /* bytes held by request bodies, process-wide, default 256 MiB (>=
                                   max_body_size) */
    struct lp_cidr *trusted_proxies; /* peers whose X-Forwarded-For / X-Real-IP are believed */
    size_t n_trusted_proxies;
};

/* rate_limit (the reference's schema): token buckets, rate = rps, burst = max(1, floor(rps x
 * burst_factor)), checked global -> per IP -> per model. */
struct lp_model_rps {
    char *alias;
    double rps;
};

struct lp_rate_limit_cfg {
    bool enabled;                   /* default false */
    double global_rps;              /* default 1000, 1..10000 */
    double per_ip_rps;              /* default 100, 0..1000 (0 = no per-IP limit) */
    double burst_factor;            /* default 1.5, 1..3 */
    struct lp_model_rps *per_model; /* alias -> rps (0.1..5000); unlisted aliases: global_rps */
    size_t n_per_model;
};

/* concurrency.scope: where max_requests and max_queue_size are counted. */
enum lp_conc_scope {
    LP_CONC_INSTANCE = 0, /* per process (the default, and the reference's meaning) */
    LP_CONC_CLUSTER,      /* across every instance sharing the redis block: leased slots */
};

/* concurrency (the reference's schema, plus scope). */
struct lp_concurrency_cfg {
    bool enabled;             /* default false */
    int max_requests;         /* default 500, 1..10000: LLM requests in flight */
    int max_queue_size;       /* default 1000, 0..100000: waiting requests (FIFO) */
    int64_t queue_timeout_ms; /* default 30s, 1s..5m: longest wait for a slot */
    int per_backend_limit;    /* default 100, 1..1000: in-flight attempts per backend */
    enum lp_conc_scope scope; /* default instance; cluster needs a redis block */
    int64_t lease_ttl_ms;     /* cluster scope: a dead instance's slots return after this
                                 (default 15s, 1s..5m; renewed every third of it) */
};

/* keys[]: client keys with their own limits. 0 means "no limit" for every number. */
struct lp_client_key {
    char *name;               /* shown in logs, metrics and /admin/keys (never the key) */
    char *key;                /* the secret */
    unsigned char digest[32]; /* SHA-256 of key: lookups compare digests (keys.h) */
    char **models;            /* alias names or globs (*, ?); none = every alias */
    size_t n_models;
    int64_t rpm;              /* requests per minute */
    int64_t tpm;              /* tokens (input + output) per minute */
    int max_concurrent;       /* requests in flight */
    int64_t tokens_per_day;   /* budget per UTC day */
    int64_t tokens_per_month; /* budget per UTC calendar month */
    int line, col;
};

struct lp_proxy_cfg {
    bool enable_system_prompt; /* default false */
    bool forward_client_ip;    /* default true */
    struct lp_kv *custom_variables;
    size_t n_custom_variables;
    int64_t default_max_tokens; /* translating to Anthropic without max_tokens and without a
                                 * route/backend max_tokens; 0 (default) = per-model table */
};

/* The reference's rotation keys (era B flat keys and the v2.1 `rotation:` block write the same
 * fields). Resolved into struct lp_logrotate_opts by lp_logcfg_rotation (logcfg.c). */
struct lp_log_rotation_cfg {
    double max_size_mb; /* max_file_size_mb / rotation.max_size_mb; < 0 = not given */
    int time_strategy;  /* time_rotation / rotation.time_strategy: enum lp_logrotate_time,
                           -1 = not given */
    int64_t max_age_days;
    int64_t max_backups;
    bool compress;
    bool rotate_by_size;
    bool rotate_by_time;
    bool max_age_set, max_backups_set, compress_set, rotate_by_size_set, rotate_by_time_set;
};

struct lp_logging_cfg {
    char *level;                /* "debug" | "info" | "warn" | "error"; default "info" */
    bool mask_sensitive;        /* default true */
    char *base_dir;             /* default "./logs" */
    char *access_log;           /* path of the JSON access log; NULL = stderr... see docs */
    char *error_log;            /* operational log file; NULL = stderr only */
    bool log_bodies;            /* default false */
    int64_t max_body_log_bytes; /* default 4096 */
    struct lp_log_rotation_cfg rotation;
};

enum lp_redis_on_error {
    LP_REDIS_FAIL_OPEN = 0,   /* Redis slow or down: this instance's share of each limit */
    LP_REDIS_FAIL_CLOSED = 1, /* Redis slow or down: refuse (429/503) */
};

/* redis: shared state for several instances (cluster.c). Absent = everything in process. */
struct lp_redis_cfg {
    bool present;
    char *url;          /* as written, after ${ENV} (holds the password: masked everywhere) */
    char *key_prefix;   /* default "llm-proxy:" */
    int64_t timeout_ms; /* per command, default 50 ms */
    enum lp_redis_on_error on_error; /* default fail_open */
    /* From the URL (validated when loaded): */
    char *host;
    int port;
    char *user, *password;
    int db;
};

enum lp_otlp_protocol { LP_OTLP_HTTP_JSON = 0, LP_OTLP_HTTP_PROTOBUF };

/* tracing: OpenTelemetry spans exported over OTLP/HTTP (trace.h, otlp.h). */
struct lp_tracing_cfg {
    bool enabled;               /* default false */
    char *otlp_endpoint;        /* collector base URL ({endpoint}/v1/traces); default
                                   OTEL_EXPORTER_OTLP_ENDPOINT; required when enabled */
    struct lp_kv *otlp_headers; /* sent to the collector (secrets: masked); default
                                   OTEL_EXPORTER_OTLP_HEADERS ("k=v,k2=v2") */
    size_t n_otlp_headers;
    enum lp_otlp_protocol protocol; /* otlp_protocol; default OTEL_EXPORTER_OTLP_PROTOCOL, else
                                       http/json */
    bool protocol_set;
    double sample_ratio; /* root requests sampled, [0, 1]; default 1 (parent-based) */
    char *service_name;  /* default OTEL_SERVICE_NAME, else "llm-proxy" */
};

struct lp_metrics_cfg {
    bool enabled; /* default true: record Prometheus metrics (off only for benchmarking) */
};

struct lp_config {
    atomic_int refcount;
    char *path;          /* file the snapshot was loaded from ("<string>" for tests) */
    char *dir;           /* directory of path, for resolving relative file names */
    char *listen;        /* default ":8765" */
    char *proxy_api_key; /* "" or NULL = no auth */
    char *admin_api_key; /* NULL = use proxy_api_key */
    struct lp_backend *backends;
    size_t n_backends;
    struct lp_alias *aliases; /* sorted by name (strcmp) for lp_config_find_alias */
    size_t n_aliases;
    char **passthrough_paths; /* extra upstream paths forwarded as-is (endpoint.h) */
    size_t n_passthrough_paths;
    struct lp_fallback_cfg fallback;
    struct lp_detection_cfg detection;
    struct lp_error_fallback_cfg error_fallback;
    struct lp_timeouts timeout;
    struct lp_server_cfg server;
    struct lp_proxy_cfg proxy;
    struct lp_logging_cfg logging;
    struct lp_metrics_cfg metrics;
    struct lp_tracing_cfg tracing;
    struct lp_redis_cfg redis;
    struct lp_rate_limit_cfg rate_limit;
    struct lp_concurrency_cfg concurrency;
    struct lp_routing_cfg routing;  /* top level; each alias holds its effective copy */
    struct lp_xlat_cfg translation; /* top-level translation block */
    struct lp_client_key *keys;
    size_t n_keys;
    unsigned char proxy_key_digest[32]; /* SHA-256 of proxy_api_key (when set) */
    const char **secrets;               /* derived: see lp_config_secrets */
    size_t n_secrets;
    /* Derived data loaded with this snapshot (the system prompts), freed with it: set once by
     * the loader before the snapshot is published, never changed afterwards. */
    void *attached;
    void (*attached_free)(void *);
};

enum lp_diag_level {
    LP_DIAG_WARNING = 1,
    LP_DIAG_ERROR = 2,
};

struct lp_diag {
    enum lp_diag_level level;
    char *file;
    int line;  /* 1-based; 0 when not tied to a position */
    int col;   /* 1-based */
    char *msg; /* "key: problem", e.g. "backends[1].name: duplicate backend \"a\"" */
};

/* At most LP_DIAGS_MAX diagnostics are stored per load (garbage input could produce thousands);
 * later ones are dropped but still counted in n_errors, and one warning says so. */
#define LP_DIAGS_MAX 200

struct lp_diags {
    struct lp_diag *items;
    size_t n;
    size_t n_errors; /* errors seen, including any dropped beyond LP_DIAGS_MAX */
};

void lp_diags_init(struct lp_diags *d);
void lp_diags_free(struct lp_diags *d);
/* Format one diagnostic as "file:line:col: error: msg" (or "warning: msg"; "file: error: msg" when
 * line is 0) into a new heap string the caller frees. */
char *lp_diag_format(const struct lp_diag *d);

/* Load and validate a config file. Returns a snapshot with refcount 1, or NULL when there was at
 * least one error. Every error and warning is appended to diags (which the caller owns).
 * `${VAR}` and `${VAR:-default}` in scalar values are expanded from the environment. */
struct lp_config *lp_config_load_file(const char *path, struct lp_diags *diags);
/* The same from memory; `name` is used in diagnostics and relative paths resolve from the CWD. */
struct lp_config *lp_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct lp_diags *diags);

struct lp_config *lp_config_ref(struct lp_config *cfg);
/* Drop a reference; the last one frees the snapshot. NULL is ignored. */
void lp_config_unref(struct lp_config *cfg);

/* The configured secrets (proxy, admin and backend keys; empty ones skipped), longest first so
 * lp_mask prefers the longer of two keys sharing a prefix. Computed once when the snapshot is
 * loaded; the array and strings are borrowed, valid while cfg is. cfg NULL gives 0. */
const char *const *lp_config_secrets(const struct lp_config *cfg, size_t *n);

/* Alias by exact name name[0..len) (binary search; name need not be NUL-terminated), enabled or
 * not, or NULL. */
const struct lp_alias *lp_config_find_alias(const struct lp_config *cfg, const char *name,
                                            size_t len);
/* Name of a routing strategy ("latency", ...). */
const char *lp_strategy_name(enum lp_strategy s);

/* Index of the backend named `name`, or -1. */
long lp_config_find_backend(const struct lp_config *cfg, const char *name);

/* Parse a Go duration ("300ms", "10s", "1m30s", "2h", "1.5s"; units ns, us, µs, ms, s, m, h;
 * fractions and concatenation allowed; optional leading '+'). A bare integer is seconds.
 * A non-zero duration below 1ms rounds up to 1ms (never silently to 0).
 * Returns false on a malformed, negative or overflowing duration; *out_ms is untouched then. */
bool lp_duration_parse(const char *s, int64_t *out_ms);

/* Parse a byte size: a non-negative integer of bytes, or an integer with a unit: B, K/KiB, M/MiB,
 * G/GiB, T/TiB (powers of 1024) or KB/MB/GB/TB (powers of 1000), case-insensitive, optional
 * space between number and unit ("64MiB", "10MB", "512 KiB"). False on garbage or overflow. */
bool lp_size_parse(const char *s, int64_t *out);

/* Parse a listen address (":8080", "0.0.0.0:8080", "[::1]:8080", "localhost:8080", or a bare
 * port "8080") into host ("" for any; brackets removed) and port (0..65535; 0 = ephemeral).
 * host may be NULL to only validate. False when malformed or the host does not fit host_len. */
bool lp_listen_parse(const char *s, char *host, size_t host_len, int *port);

/* Parse the OTEL_EXPORTER_OTLP_HEADERS format ("name=value,name2=value2", blanks trimmed, values
 * percent-decoded) into a new lp_kv array. False with *why (static) on a malformed list; nothing
 * is allocated then. */
bool lp_config_parse_otlp_headers(const char *s, struct lp_kv **kv, size_t *n, const char **why);

#endif
