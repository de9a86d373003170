/* otlp.c - the OTLP/HTTP JSON trace exporter (see otlp.h).
 *
 * One process-wide exporter: a ring of queued fragments under a mutex (held for a pointer push
 * or pop), one thread that batches and POSTs with a blocking libcurl easy handle. Workers never
 * wait for the thread: submit pushes or drops, and wakes the thread only when a full batch is
 * ready; otherwise the schedule delay wakes it.
 */
#include "otlp.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "runtime.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/rand.h"

struct item {
    char *data; /* JSON span objects, or protobuf ScopeSpans.spans fields */
    size_t len;
    int n;
    bool pb;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    bool running, stopping;
    struct lp_runtime *rt;
    struct item *ring; /* capacity max_queue (an item holds at least one span) */
    size_t head, count, spans;
    size_t max_queue, batch;
    int64_t delay_ms, timeout_ms;
    char instance_id[40];
    CURL *curl; /* the exporter thread's handle (kept between exports) */
    atomic_uint_fast64_t exported, dropped, failed, batches, retries;
} X = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t env_int(const char *name, int64_t def, int64_t lo, int64_t hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        lp_log_warn(NULL, "%s=%.40s is not a number in [%lld, %lld]; using %lld", name, s,
                    (long long)lo, (long long)hi, (long long)def);
        return def;
    }
    return v;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pthread_cond_timedwait on CLOCK_MONOTONIC until mono_ms() == until. */
static void wait_until(int64_t until)
{
    struct timespec ts = {until / 1000, (until % 1000) * 1000000};
    pthread_cond_timedwait(&X.cv, &X.mu, &ts);
}

/* ---- one export --------------------------------------------------------------------------- */

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

struct answer {
    long retry_after_s;
};

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = sz * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        /* A collector's hint, bounded: garbage, negative or huge values never overflow. */
        errno = 0;
        long v = strtol(p + 12, NULL, 10);
        a->retry_after_s = errno == ERANGE || v < 0 ? 0 : v > 3600 ? 3600 : v;
    }
    return len;
}

static void put_attr(struct lp_buf *b, bool first, const char *k, const char *v)
{
    lp_buf_appends(b, first ? "{\"key\":\"" : ",{\"key\":\"");
    lp_buf_appends(b, k);
    lp_buf_appends(b, "\",\"value\":{\"stringValue\":\"");
    lp_buf_append_json_escaped(b, v, strlen(v));
    lp_buf_appends(b, "\"}}");
}

/* POST one payload; true when the collector accepted it or refused it for good (a 4xx other than
 * 429 is not retried: the payload would be refused again). *retry_ms: wait before the next try. */
static bool post_once(const struct lp_config *cfg, const struct lp_buf *body, bool pb,
                      int64_t timeout_ms, bool *accepted, int64_t *retry_ms)
{
    const struct lp_tracing_cfg *t = &cfg->tracing;
    /* One handle for the thread's life: its connection to the collector is kept alive. */
    if (!X.curl && !(X.curl = curl_easy_init()))
        return false;
    CURL *h = X.curl;
    curl_easy_reset(h);
    struct lp_buf url;
    lp_buf_init(&url, 4096);
    const char *e = t->otlp_endpoint ? t->otlp_endpoint : "";
    size_t el = strlen(e);
    while (el && e[el - 1] == '/')
        el--;
    lp_buf_append(&url, e, el);
    lp_buf_appends(&url, "/v1/traces");
    struct curl_slist *hl = curl_slist_append(NULL, pb ? "Content-Type: application/x-protobuf"
                                                       : "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; i < t->n_otlp_headers; i++) {
        char *line = lp_xasprintf("%s: %s", t->otlp_headers[i].key, t->otlp_headers[i].value);
        hl = curl_slist_append(hl, line);
        free(line);
    }
    struct answer ans = {0};
    curl_easy_setopt(h, CURLOPT_URL, url.data ? url.data : "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &ans);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llm-proxy/" LP_VERSION " otlp");
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    lp_buf_free(&url);
    *accepted = rc == CURLE_OK && status >= 200 && status < 300;
    *retry_ms = ans.retry_after_s > 0 ? ans.retry_after_s * 1000 : 0;
    if (*accepted)
        return true;
    bool retryable =
        rc != CURLE_OK || status == 429 || status == 502 || status == 503 || status == 504;
    if (!retryable || X.stopping) {
        /* The endpoint may carry credentials (https://user:token@collector): masked. */
        struct lp_buf m;
        lp_buf_init(&m, 4096);
        lp_mask(e, el, &m, NULL, 0);
        if (rc != CURLE_OK)
            lp_log_warn(NULL, "trace export to %s refused (%s); spans dropped",
                        m.data ? m.data : "", curl_easy_strerror(rc));
        else
            lp_log_warn(NULL, "trace export to %s refused (HTTP %ld); spans dropped",
                        m.data ? m.data : "", status);
        lp_buf_free(&m);
        return true;
    }
    return false;
}

/* ---- protobuf framing (opentelemetry/proto/collector/trace/v1: ExportTraceServiceRequest) ---- */

static void pb_varint(struct lp_buf *b, uint64_t v)
{
    char t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (char)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (char)v;
    lp_buf_append(b, t, n);
}

static void pb_str(struct lp_buf *b, uint8_t tag, const char *s)
{
    lp_buf_appendc(b, (char)tag);
    pb_varint(b, strlen(s));
    lp_buf_appends(b, s);
}

/* KeyValue{1: key, 2: AnyValue{1: string_value}} as Resource.attributes (field 1). */
static void pb_attr(struct lp_buf *b, const char *k, const char *v)
{
    struct lp_buf any, kv;
    lp_buf_init(&any, 0);
    lp_buf_init(&kv, 0);
    pb_str(&any, 0x0a, v);
    pb_str(&kv, 0x0a, k);
    lp_buf_appendc(&kv, 0x12);
    pb_varint(&kv, any.len);
    lp_buf_append(&kv, any.data, any.len);
    lp_buf_appendc(b, 0x0a);
    pb_varint(b, kv.len);
    lp_buf_append(b, kv.data, kv.len);
    lp_buf_free(&any);
    lp_buf_free(&kv);
}

/* ExportTraceServiceRequest{1: ResourceSpans{1: Resource, 2: ScopeSpans{1: scope, 2: spans...}}} */
static void pb_payload(struct lp_buf *b, const char *svc, struct item *items, size_t n)
{
    struct lp_buf res, scope;
    lp_buf_init(&res, 0);
    lp_buf_init(&scope, 0);
    pb_attr(&res, "service.name", svc);
    pb_attr(&res, "service.version", LP_VERSION);
    pb_attr(&res, "service.instance.id", X.instance_id);
    pb_attr(&res, "telemetry.sdk.name", "llm-proxy");
    pb_attr(&res, "telemetry.sdk.language", "cpp");
    pb_str(&scope, 0x0a, "llm-proxy");
    pb_str(&scope, 0x12, LP_VERSION);
    size_t spans = 0;
    for (size_t i = 0; i < n; i++)
        spans += items[i].len;
    size_t ss = 1 + 1 + scope.len + spans; /* the scope is short: one length byte */
    struct lp_buf head;                    /* everything before the spans */
    lp_buf_init(&head, 0);
    lp_buf_appendc(&head, 0x0a); /* Resource */
    pb_varint(&head, res.len);
    lp_buf_append(&head, res.data, res.len);
    lp_buf_appendc(&head, 0x12); /* ScopeSpans */
    pb_varint(&head, ss);
    lp_buf_appendc(&head, 0x0a); /* InstrumentationScope */
    pb_varint(&head, scope.len);
    lp_buf_append(&head, scope.data, scope.len);
    size_t rs = head.len + spans;
    lp_buf_appendc(b, 0x0a); /* ResourceSpans */
    pb_varint(b, rs);
    lp_buf_append(b, head.data, head.len);
    for (size_t i = 0; i < n; i++) {
        lp_buf_append(b, items[i].data, items[i].len);
        free(items[i].data);
    }
    lp_buf_free(&res);
    lp_buf_free(&scope);
    lp_buf_free(&head);
}

/* Build the request payload of items[0..n) (all of one encoding) and send it, retrying. Runs
 * unlocked. */
static void export_items(struct item *items, size_t n, size_t spans, int64_t deadline_cap_ms)
{
    struct lp_config *cfg = lp_runtime_config(X.rt);
    struct lp_buf b;
    lp_buf_init(&b, 0);
    size_t total = 1024;
    for (size_t i = 0; i < n; i++)
        total += items[i].len + 1;
    lp_buf_reserve(&b, total); /* one allocation for the payload */
    const char *svc = cfg->tracing.service_name ? cfg->tracing.service_name : "llm-proxy";
    bool pb = items[0].pb;
    if (pb) {
        pb_payload(&b, svc, items, n);
    } else {
        lp_buf_appends(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
        put_attr(&b, true, "service.name", svc);
        put_attr(&b, false, "service.version", LP_VERSION);
        put_attr(&b, false, "service.instance.id", X.instance_id);
        put_attr(&b, false, "telemetry.sdk.name", "llm-proxy");
        put_attr(&b, false, "telemetry.sdk.language", "cpp");
        lp_buf_appends(
            &b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"llm-proxy\",\"version\":\"" LP_VERSION
                "\"},\"spans\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                lp_buf_appendc(&b, ',');
            lp_buf_append(&b, items[i].data, items[i].len);
            free(items[i].data);
        }
        lp_buf_appends(&b, "]}]}]}");
    }
    atomic_fetch_add(&X.batches, 1);
    int64_t start = mono_ms();
    int64_t deadline = start + (deadline_cap_ms > 0 ? deadline_cap_ms : X.timeout_ms);
    int64_t backoff = 1000;
    bool done = false, accepted = false;
    for (int attempt = 0; attempt < 5 && !done; attempt++) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        int64_t retry_ms = 0;
        done = post_once(cfg, &b, pb, left, &accepted, &retry_ms);
        if (done)
            break;
        int64_t wait = retry_ms > 0 ? retry_ms : backoff;
        backoff *= 2;
        if (mono_ms() + wait >= deadline)
            break;
        atomic_fetch_add(&X.retries, 1);
        pthread_mutex_lock(&X.mu);
        int64_t until = mono_ms() + wait;
        while (!X.stopping && mono_ms() < until)
            wait_until(until);
        bool stop = X.stopping;
        pthread_mutex_unlock(&X.mu);
        if (stop)
            break;
    }
    if (accepted)
        atomic_fetch_add(&X.exported, spans);
    else
        atomic_fetch_add(&X.failed, spans);
    lp_buf_free(&b);
    lp_config_unref(cfg);
}

/* Take up to one batch off the queue (locked) and export it (unlocked). */
static void export_batch(int64_t deadline_cap_ms)
{
    size_t cap = X.count, n = 0, spans = 0;
    struct item *items = lp_xmalloc((cap ? cap : 1) * sizeof *items);
    while (X.count && (n == 0 || (spans + (size_t)X.ring[X.head].n <= X.batch &&
                                  X.ring[X.head].pb == items[0].pb))) {
        items[n] = X.ring[X.head];
        spans += (size_t)items[n].n;
        n++;
        X.head = (X.head + 1) % X.max_queue;
        X.count--;
    }
    X.spans -= spans;
    pthread_mutex_unlock(&X.mu);
    if (n)
        export_items(items, n, spans, deadline_cap_ms);
    free(items);
    pthread_mutex_lock(&X.mu);
}

static void *exporter_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&X.mu);
    int64_t last = mono_ms();
    while (!X.stopping) {
        int64_t due = last + X.delay_ms;
        if (X.spans < X.batch && mono_ms() < due) {
            wait_until(due);
            continue;
        }
        if (X.spans)
            export_batch(0);
        last = mono_ms();
    }
    /* Stopping: what is queued gets a short, single-try chance. */
    int64_t end = mono_ms() + 2000;
    while (X.count && mono_ms() < end)
        export_batch(end - mono_ms());
    while (X.count) {
        struct item *it = &X.ring[X.head];
        atomic_fetch_add(&X.dropped, (uint64_t)it->n);
        free(it->data);
        X.head = (X.head + 1) % X.max_queue;
        X.count--;
    }
    X.spans = 0;
    pthread_mutex_unlock(&X.mu);
    if (X.curl)
        curl_easy_cleanup(X.curl);
    X.curl = NULL;
    return NULL;
}

void lp_otlp_start(struct lp_runtime *rt)
{
    pthread_mutex_lock(&X.mu);
    if (X.running) {
        pthread_mutex_unlock(&X.mu);
        return;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    X.rt = rt;
    X.max_queue = (size_t)env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, 1 << 20);
    X.batch = (size_t)env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, 1 << 20);
    if (X.batch > X.max_queue)
        X.batch = X.max_queue; /* as the specification asks */
    X.delay_ms = env_int("OTEL_BSP_SCHEDULE_DELAY", 5000, 1, 3600 * 1000);
    X.timeout_ms = env_int("OTEL_BSP_EXPORT_TIMEOUT", 30000, 1, 3600 * 1000);
    X.ring = lp_xcalloc(X.max_queue, sizeof *X.ring);
    X.head = X.count = X.spans = 0;
    uint64_t rng;
    lp_rand_seed(&rng);
    uint64_t a = lp_rand_next(&rng), b = lp_rand_next(&rng);
    snprintf(X.instance_id, sizeof X.instance_id, "%08x-%04x-4%03x-%04x-%012llx",
             (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & 0xffffffffffffULL));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&X.cv, &ca);
    pthread_condattr_destroy(&ca);
    X.stopping = false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals belong to the main thread */
    int rc = pthread_create(&X.th, NULL, exporter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        lp_log_error(NULL, "cannot start the trace exporter thread: %s", strerror(rc));
        free(X.ring);
        X.ring = NULL;
        pthread_cond_destroy(&X.cv);
    } else {
        X.running = true;
        lp_log_info(NULL, "trace exporter started (queue %zu spans, batch %zu, delay %lld ms)",
                    X.max_queue, X.batch, (long long)X.delay_ms);
    }
    pthread_mutex_unlock(&X.mu);
}

void lp_otlp_submit(char *data, size_t len, int n_spans, bool protobuf)
{
    pthread_mutex_lock(&X.mu);
    if (!X.running || X.stopping || X.count >= X.max_queue ||
        X.spans + (size_t)n_spans > X.max_queue) {
        pthread_mutex_unlock(&X.mu);
        atomic_fetch_add(&X.dropped, (uint64_t)n_spans);
        free(data);
        return;
    }
    X.ring[(X.head + X.count) % X.max_queue] = (struct item){data, len, n_spans, protobuf};
    X.count++;
    size_t before = X.spans;
    X.spans += (size_t)n_spans;
    bool wake = before < X.batch && X.spans >= X.batch;
    pthread_mutex_unlock(&X.mu);
    if (wake)
        pthread_cond_signal(&X.cv);
}

void lp_otlp_stop(void)
{
    pthread_mutex_lock(&X.mu);
    if (!X.running) {
        pthread_mutex_unlock(&X.mu);
        return;
    }
    X.stopping = true;
    pthread_cond_broadcast(&X.cv);
    pthread_mutex_unlock(&X.mu);
    pthread_join(X.th, NULL);
    pthread_mutex_lock(&X.mu);
    X.running = false;
    free(X.ring);
    X.ring = NULL;
    pthread_cond_destroy(&X.cv);
    pthread_mutex_unlock(&X.mu);
}

void lp_otlp_stats(struct lp_otlp_stats *out)
{
    out->exported = atomic_load(&X.exported);
    out->dropped = atomic_load(&X.dropped);
    out->failed = atomic_load(&X.failed);
    out->batches = atomic_load(&X.batches);
    out->retries = atomic_load(&X.retries);
}

static void counter_spans(struct lp_metrics_sink *s, void *ctx)
{
    (void)ctx;
    struct lp_otlp_stats st;
    lp_otlp_stats(&st);
    const char *l1[] = {"exported"}, *l2[] = {"dropped"}, *l3[] = {"failed"};
    lp_metrics_sink_put(s, l1, (double)st.exported);
    lp_metrics_sink_put(s, l2, (double)st.dropped);
    lp_metrics_sink_put(s, l3, (double)st.failed);
}

void lp_otlp_register_metrics(struct lp_runtime *rt)
{
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_TRACE_SPANS_TOTAL, counter_spans, NULL);
}
