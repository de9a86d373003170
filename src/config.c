/* config.c - configuration snapshots: loading, diagnostics, lifetime and lookups.
 *
 * Loading is three steps. A pre-scan with libyaml's event parser reports syntax errors and
 * refuses documents that are too deep or too large before anything is built. The document
 * loader then builds the node graph, and config_walk.c maps it onto a struct lp_config that
 * starts out holding every default. Finally the cross-block fix-ups run (per-backend timeout
 * overlay, the "no backends" check) and the diagnostics of this load are sorted into file order.
 * Any error means no snapshot: a half-valid config is never published.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "config_internal.h"
#include "keys.h"
#include "util/alloc.h"

/* ---- diagnostics -------------------------------------------------------------------------- */

void lp_diags_init(struct lp_diags *d)
{
    *d = (struct lp_diags){0};
}

void lp_diags_free(struct lp_diags *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        LP_FREE(&d->items[i].file);
        LP_FREE(&d->items[i].msg);
    }
    LP_FREE(&d->items);
    d->n = 0;
    d->n_errors = 0;
}

char *lp_diag_format(const struct lp_diag *d)
{
    const char *lvl = d->level == LP_DIAG_ERROR ? "error" : "warning";
    const char *file = d->file ? d->file : "<config>";
    if (d->line <= 0)
        return lp_xasprintf("%s: %s: %s", file, lvl, d->msg);
    return lp_xasprintf("%s:%d:%d: %s: %s", file, d->line, d->col, lvl, d->msg);
}

static void diag_add(struct lp_config_walk *w, enum lp_diag_level lvl, int line, int col, char *msg)
{
    struct lp_diags *d = w->diags;
    if (lvl == LP_DIAG_ERROR)
        d->n_errors++;
    if (++w->n_added > LP_DIAGS_MAX) {
        free(msg);
        return;
    }
    d->items = lp_xrealloc(d->items, (d->n + 1) * sizeof *d->items);
    d->items[d->n++] = (struct lp_diag){lvl, lp_xstrdup(w->file), line, col, msg};
}

static char *vformat(const char *fmt, va_list ap)
{
    struct lp_buf b;
    lp_buf_init(&b, 4096); /* ceiling: a message quoting hostile input stays short */
    lp_buf_vprintf(&b, fmt, ap);
    if (b.len == 0) { /* see lp_config_expand_env: steal() of an empty buffer is unterminated */
        lp_buf_free(&b);
        return lp_xstrdup("");
    }
    size_t n;
    return lp_buf_steal(&b, &n);
}

void lp_config_diag(struct lp_config_walk *w, enum lp_diag_level lvl, int line, int col,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    if (w->path.len == 0) {
        diag_add(w, lvl, line, col, body);
        return;
    }
    diag_add(w, lvl, line, col, lp_xasprintf("%s: %s", w->path.data, body));
    free(body);
}

void lp_config_diag_raw(struct lp_config_walk *w, enum lp_diag_level lvl, int line, int col,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_add(w, lvl, line, col, vformat(fmt, ap));
    va_end(ap);
}

/* Insertion sort (stable, and the range holds at most LP_DIAGS_MAX + 2 items): diagnostics come
 * out of the walker in schema order, users read them in file order. Position-less ones last. */
static long diag_key(const struct lp_diag *d)
{
    return d->line > 0 ? (long)d->line * 100000L + d->col : 0x7fffffffL;
}

static void sort_diags(struct lp_diags *d, size_t from)
{
    for (size_t i = from + 1; i < d->n; i++) {
        struct lp_diag x = d->items[i];
        size_t j = i;
        while (j > from && diag_key(&d->items[j - 1]) > diag_key(&x)) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = x;
    }
}

/* ---- snapshot lifetime -------------------------------------------------------------------- */

static struct lp_config *config_new(const char *path, const char *dir)
{
    struct lp_config *c = lp_xcalloc(1, sizeof *c);
    atomic_init(&c->refcount, 1);
    c->path = lp_xstrdup(path);
    c->dir = lp_xstrdup(dir);
    c->listen = lp_xstrdup(":8765");
    /* Every default is declared here, once; the walker only overwrites what a file sets, and
     * the request path uses these values without restating them. */
    c->timeout = (struct lp_timeouts){
        .connect_ms = 10000,
        .read_ms = 60000,
        .write_ms = 60000,
        .total_ms = 600000,
        .ttft_ms = 180000,
    };
    c->fallback = (struct lp_fallback_cfg){
        .cooldown_seconds = 60,
        .backoff_initial_ms = 100,
        .backoff_max_ms = 5000,
        .backoff_multiplier = 2.0,
        .backoff_jitter = 0.1,
        .circuit_failure_threshold = 5,
        .circuit_success_threshold = 2,
        .circuit_open_timeout_s = 60,
        .circuit_half_open_max = 1,
        .when_all_cooling = LP_ALL_COOLING_FAIL,
    };
    c->server = (struct lp_server_cfg){
        .max_body_size = 64LL << 20,
        .max_header_size = 64LL << 10,
        .idle_timeout_ms = 60000,
        .threads = 0,
        .shutdown_timeout_ms = 30000,
        .body_timeout_ms = 60000,
        .min_body_rate = 1024,
        .max_connections = 0,
        .max_connections_per_ip = 0,
        .max_body_memory = 256LL << 20,
    };
    c->proxy.forward_client_ip = true;
    c->proxy.default_max_tokens = 0; /* unset: the route/backend value or the model's limit */
    c->logging.level = lp_xstrdup("info");
    c->logging.mask_sensitive = true;
    c->metrics.enabled = true;
    c->tracing.sample_ratio = 1.0;
    c->logging.base_dir = lp_xstrdup("./logs");
    c->logging.max_body_log_bytes = 4096;
    c->logging.rotation.max_size_mb = -1;
    c->logging.rotation.time_strategy = -1;
    c->redis.key_prefix = lp_xstrdup("llm-proxy:");
    c->redis.timeout_ms = 50;
    c->redis.on_error = LP_REDIS_FAIL_OPEN;
    c->rate_limit =
        (struct lp_rate_limit_cfg){.global_rps = 1000, .per_ip_rps = 100, .burst_factor = 1.5};
    c->concurrency = (struct lp_concurrency_cfg){.max_requests = 500,
                                                 .max_queue_size = 1000,
                                                 .queue_timeout_ms = 30000,
                                                 .per_backend_limit = 100,
                                                 .lease_ttl_ms = 15000};
    c->routing = (struct lp_routing_cfg){
        .strategy = LP_STRATEGY_LATENCY,
        .decay_ms = 10000,
        .hedge = {.delay_ms = 500, .max_extra = 1, .budget_percent = 10},
    };
    return c;
}

static void free_strv(char ***v, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*v)[i]);
    LP_FREE(v);
    *n = 0;
}

static void free_alias(struct lp_alias *a)
{
    for (size_t i = 0; i < a->n_routes; i++) {
        LP_FREE(&a->routes[i].backend);
        LP_FREE(&a->routes[i].model);
    }
    LP_FREE(&a->routes);
    free_strv(&a->fallbacks, &a->n_fallbacks);
    LP_FREE(&a->name);
}

static void config_free(struct lp_config *c)
{
    free(c->secrets);
    for (size_t i = 0; i < c->n_backends; i++)
        lp_config_free_backend(&c->backends[i]);
    free(c->backends);
    for (size_t i = 0; i < c->n_aliases; i++)
        free_alias(&c->aliases[i]);
    free(c->aliases);
    free_strv(&c->passthrough_paths, &c->n_passthrough_paths);
    free_strv(&c->detection.error_codes, &c->detection.n_error_codes);
    free_strv(&c->detection.error_patterns, &c->detection.n_error_patterns);
    free(c->error_fallback.client_codes);
    free_strv(&c->error_fallback.client_patterns, &c->error_fallback.n_client_patterns);
    for (size_t i = 0; i < c->proxy.n_custom_variables; i++) {
        free(c->proxy.custom_variables[i].key);
        free(c->proxy.custom_variables[i].value);
    }
    free(c->proxy.custom_variables);
    free(c->tracing.otlp_endpoint);
    free(c->tracing.service_name);
    for (size_t i = 0; i < c->tracing.n_otlp_headers; i++) {
        free(c->tracing.otlp_headers[i].key);
        free(c->tracing.otlp_headers[i].value);
    }
    free(c->tracing.otlp_headers);
    free(c->redis.url);
    free(c->redis.key_prefix);
    free(c->redis.host);
    free(c->redis.user);
    free(c->redis.password);
    for (size_t i = 0; i < c->rate_limit.n_per_model; i++)
        free(c->rate_limit.per_model[i].alias);
    free(c->rate_limit.per_model);
    for (size_t i = 0; i < c->n_keys; i++)
        lp_config_free_key(&c->keys[i]);
    free(c->keys);
    free(c->server.trusted_proxies);
    free(c->logging.level);
    free(c->logging.base_dir);
    free(c->logging.access_log);
    free(c->logging.error_log);
    free(c->path);
    free(c->dir);
    free(c->listen);
    free(c->proxy_api_key);
    free(c->admin_api_key);
    free(c);
}

struct lp_config *lp_config_ref(struct lp_config *cfg)
{
    if (cfg)
        atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);
    return cfg;
}

void lp_config_unref(struct lp_config *cfg)
{
    /* acq_rel: the thread that frees must see every other holder's last reads finished. */
    if (cfg && atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_acq_rel) == 1) {
        if (cfg->attached && cfg->attached_free)
            cfg->attached_free(cfg->attached);
        config_free(cfg);
    }
}

/* ---- lookups ------------------------------------------------------------------------------ */

static int cmp_name_alias(const char *name, size_t len, const struct lp_alias *a)
{
    size_t alen = strlen(a->name);
    int c = memcmp(name, a->name, len < alen ? len : alen);
    if (c)
        return c;
    return (len > alen) - (len < alen);
}

const struct lp_alias *lp_config_find_alias(const struct lp_config *cfg, const char *name,
                                            size_t len)
{
    if (!cfg || !name)
        return NULL;
    size_t lo = 0, hi = cfg->n_aliases;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name_alias(name, len, &cfg->aliases[mid]);
        if (c == 0)
            return &cfg->aliases[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *lp_strategy_name(enum lp_strategy s)
{
    switch (s) {
    case LP_STRATEGY_LATENCY:
        return "latency";
    case LP_STRATEGY_RANDOM:
        return "random";
    case LP_STRATEGY_ROUND_ROBIN:
        return "round_robin";
    case LP_STRATEGY_WEIGHTED:
        return "weighted";
    }
    return "?";
}

long lp_config_find_backend(const struct lp_config *cfg, const char *name)
{
    if (!cfg || !name)
        return -1;
    for (size_t i = 0; i < cfg->n_backends; i++)
        if (strcmp(cfg->backends[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* libyaml reader errors carry a byte offset rather than a mark. */
static void offset_to_pos(const char *s, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void syntax_error(struct lp_config_walk *w, const yaml_parser_t *p, const char *yaml,
                         size_t len)
{
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR)
        offset_to_pos(yaml, len, p->problem_offset, &line, &col);
    if (p->error == YAML_MEMORY_ERROR) {
        lp_config_diag_raw(w, LP_DIAG_ERROR, 0, 0, "YAML parser out of memory");
        return;
    }
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->context)
        lp_config_diag_raw(w, LP_DIAG_ERROR, line, col,
                           "YAML syntax error: %s (%s at line %d, "
                           "column %d)",
                           problem, p->context, (int)p->context_mark.line + 1,
                           (int)p->context_mark.column + 1);
    else
        lp_config_diag_raw(w, LP_DIAG_ERROR, line, col, "YAML syntax error: %s", problem);
}

/* Parse the whole stream as events: syntax errors, nesting depth and size are checked here, so
 * the document loader below only ever builds something of bounded size. */
static bool prescan(struct lp_config_walk *w, const char *yaml, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, docs = 0;
    long events = 0;
    bool ok = false, done = false;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            syntax_error(w, &p, yaml, len);
            goto out;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        else if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs == 2)
            lp_config_diag_raw(w, LP_DIAG_WARNING, line, col,
                               "only the first YAML document is used; later ones are ignored");
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (depth > LP_CONFIG_MAX_DEPTH || ++events > LP_CONFIG_MAX_EVENTS) {
            lp_config_diag_raw(w, LP_DIAG_ERROR, line, col,
                               depth > LP_CONFIG_MAX_DEPTH ? "YAML nested more than %d levels deep"
                                                           : "YAML document has more than %d nodes",
                               depth > LP_CONFIG_MAX_DEPTH ? LP_CONFIG_MAX_DEPTH
                                                           : LP_CONFIG_MAX_EVENTS);
            goto out;
        }
    }
    ok = true;
out:
    yaml_parser_delete(&p);
    return ok;
}

/* Each backend's timeout keys that it did not set come from the global timeout block. */
static void overlay_timeouts(struct lp_config *c)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        struct lp_timeouts *t = &c->backends[i].timeout;
        const struct lp_timeouts *g = &c->timeout;
        t->connect_ms = t->connect_ms ? t->connect_ms : g->connect_ms;
        t->read_ms = t->read_ms ? t->read_ms : g->read_ms;
        t->write_ms = t->write_ms ? t->write_ms : g->write_ms;
        t->total_ms = t->total_ms ? t->total_ms : g->total_ms;
        t->ttft_ms = t->ttft_ms ? t->ttft_ms : g->ttft_ms;
    }
}

/* Each alias's routing keys that it did not set come from the top-level routing block (the hedge
 * block is taken whole: an alias's own hedge block replaces the top-level one). */
static void overlay_routing(struct lp_config *c)
{
    for (size_t i = 0; i < c->n_aliases; i++) {
        struct lp_routing_cfg *r = &c->aliases[i].routing;
        const struct lp_routing_cfg *g = &c->routing;
        if (!r->strategy_set)
            r->strategy = g->strategy;
        if (!r->decay_set)
            r->decay_ms = g->decay_ms;
        if (!r->hedge_set)
            r->hedge = g->hedge;
    }
}

static void finish_diags(struct lp_config_walk *w)
{
    if (w->n_ignored > 0)
        lp_config_diag_raw(w, LP_DIAG_WARNING, w->ignored_line, w->ignored_col,
                           "accepted but not implemented (ignored): %s", w->ignored.data);
    if (w->n_added > LP_DIAGS_MAX) {
        size_t dropped = w->n_added - LP_DIAGS_MAX;
        w->n_added = 0; /* let this one summary through */
        lp_config_diag_raw(w, LP_DIAG_WARNING, 0, 0, "%zu more diagnostics not shown", dropped);
    }
    sort_diags(w->diags, w->diags_start);
}

static void collect_secrets(struct lp_config *c);

/* Client key lookups compare SHA-256 digests (keys.h): computed once per snapshot. */
static void derive_digests(struct lp_config *c)
{
    if (c->proxy_api_key && c->proxy_api_key[0])
        lp_keys_digest(c->proxy_api_key, strlen(c->proxy_api_key), c->proxy_key_digest);
    for (size_t i = 0; i < c->n_keys; i++)
        lp_keys_digest(c->keys[i].key, strlen(c->keys[i].key), c->keys[i].digest);
}

static struct lp_config *load(const char *yaml, size_t len, const char *file, const char *dir,
                              struct lp_diags *diags)
{
    struct lp_config_walk w = {
        .file = file, .diags = diags, .diags_start = diags->n, .root_line = 1, .root_col = 1};
    size_t errors_before = diags->n_errors;
    struct lp_config *cfg = NULL;
    yaml_parser_t p;
    yaml_document_t doc;
    lp_buf_init(&w.path, 1024);
    lp_buf_init(&w.ignored, 2048);
    if (len > LP_CONFIG_MAX_INPUT) {
        lp_config_diag_raw(&w, LP_DIAG_ERROR, 0, 0, "file too large (%zu bytes; limit %u)", len,
                           LP_CONFIG_MAX_INPUT);
        goto out;
    }
    if (!prescan(&w, yaml, len))
        goto out;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&p, &doc)) {
        syntax_error(&w, &p, yaml, len);
        yaml_parser_delete(&p);
        goto out;
    }
    cfg = config_new(file, dir);
    w.doc = &doc;
    w.cfg = cfg;
    if (!yaml_document_get_root_node(&doc))
        lp_config_diag_raw(&w, LP_DIAG_ERROR, 0, 0,
                           "empty configuration; at least one backend "
                           "is required");
    else
        lp_config_walk_root(&w);
    overlay_timeouts(cfg);
    overlay_routing(cfg);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
out:
    finish_diags(&w);
    lp_buf_free(&w.path);
    lp_buf_free(&w.ignored);
    if (cfg && diags->n_errors > errors_before) {
        config_free(cfg);
        cfg = NULL;
    }
    if (cfg) {
        collect_secrets(cfg);
        derive_digests(cfg);
    }
    return cfg;
}

/* The snapshot's secrets, longest first (see lp_config_secrets). */
static void collect_secrets(struct lp_config *c)
{
    c->secrets =
        lp_xcalloc(c->n_backends + c->n_keys + c->tracing.n_otlp_headers + 4, sizeof *c->secrets);
    size_t n = 0;
    if (c->proxy_api_key && c->proxy_api_key[0])
        c->secrets[n++] = c->proxy_api_key;
    if (c->admin_api_key && c->admin_api_key[0])
        c->secrets[n++] = c->admin_api_key;
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].api_key && c->backends[i].api_key[0])
            c->secrets[n++] = c->backends[i].api_key;
    if (c->redis.password && c->redis.password[0])
        c->secrets[n++] = c->redis.password;
    for (size_t i = 0; i < c->n_keys; i++)
        c->secrets[n++] = c->keys[i].key;
    for (size_t i = 0; i < c->tracing.n_otlp_headers; i++)
        if (c->tracing.otlp_headers[i].value[0])
            c->secrets[n++] = c->tracing.otlp_headers[i].value;
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && strlen(c->secrets[j]) > strlen(c->secrets[j - 1]); j--) {
            const char *t = c->secrets[j];
            c->secrets[j] = c->secrets[j - 1];
            c->secrets[j - 1] = t;
        }
    }
    c->n_secrets = n;
}

struct lp_config *lp_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct lp_diags *diags)
{
    return load(yaml ? yaml : "", yaml ? len : 0, name ? name : "<string>", ".", diags);
}

/* Read a whole file, refusing anything over the input ceiling before allocating for it. */
char *lp_config_read_file(const char *path, size_t *len, int *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    *err = 0;
    if (!f || fstat(fileno(f), &st) != 0) {
        *err = errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        *err = EISDIR;
        goto out;
    }
    if (st.st_size > (off_t)LP_CONFIG_MAX_INPUT) {
        *err = EFBIG;
        goto out;
    }
    buf = lp_xmalloc((size_t)st.st_size + 1);
    *len = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        *err = EIO;
        LP_FREE(&buf);
    }
out:
    if (f)
        fclose(f);
    return buf;
}

struct lp_config *lp_config_load_file(const char *path, struct lp_diags *diags)
{
    size_t len = 0;
    int err;
    char *yaml = lp_config_read_file(path, &len, &err);
    if (!yaml) {
        struct lp_config_walk w = {.file = path, .diags = diags, .diags_start = diags->n};
        lp_config_diag_raw(&w, LP_DIAG_ERROR, 0, 0, "cannot read configuration: %s", strerror(err));
        return NULL;
    }
    char *copy = lp_xstrdup(path);
    struct lp_config *cfg = load(yaml, len, path, dirname(copy), diags);
    free(copy);
    free(yaml);
    return cfg;
}

const char *const *lp_config_secrets(const struct lp_config *cfg, size_t *n)
{
    *n = cfg ? cfg->n_secrets : 0;
    return cfg ? (const char *const *)cfg->secrets : NULL;
}
