/* test_metrics.c - the metric table and the Prometheus exposition: escaping, cumulative
 * histogram buckets, multi-shard sums, the series cap, callbacks, /admin/stats JSON, and (when
 * installed) `promtool check metrics` on a rendered exposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "util/json.h"

static char *render(struct lp_metrics *m)
{
    size_t len = 0;
    char *s = lp_metrics_render(m, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The value on the line that starts with `prefix` followed by a space, or NAN when absent. */
static double value_of(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return 0.0 / 0.0;
}

static void test_counter_and_escaping(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(2);
    struct lp_metrics_shard *s = lp_metrics_shard(m, 0);
    const char *weird[] = {"a\"b\\c\nd", "openai", "200"};
    const char *plain[] = {"gpt", "anthropic", "502"};
    lp_metrics_inc(s, LP_M_REQUESTS_TOTAL, weird, 3);
    lp_metrics_inc(s, LP_M_REQUESTS_TOTAL, plain, 1);
    lp_metrics_inc(s, LP_M_REQUESTS_TOTAL, plain, 1);
    char *t = render(m);
    assert_non_null(strstr(t, "\nllm_proxy_requests_total{alias=\"a\\\"b\\\\c\\nd\","
                              "protocol=\"openai\",status=\"200\"} 3\n"));
    assert_non_null(strstr(t, "\nllm_proxy_requests_total{alias=\"gpt\",protocol=\"anthropic\","
                              "status=\"502\"} 2\n"));
    assert_int_equal(count_of(t, "# TYPE llm_proxy_requests_total counter\n"), 1);
    assert_int_equal(count_of(t, "# HELP llm_proxy_requests_total "), 1);
    free(t);
    lp_metrics_destroy(m);
}

/* Every metric of the table is exposed with HELP and TYPE exactly once. */
static void test_every_metric_declared(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    char *t = render(m);
    for (int id = 0; id < LP_M__COUNT; id++) {
        const char *name = lp_metrics_name((enum lp_metric_id)id);
        assert_non_null(name);
        assert_int_equal(strncmp(name, "llm_proxy_", 10), 0);
        char buf[160];
        snprintf(buf, sizeof buf, "# TYPE %s ", name);
        assert_int_equal(count_of(t, buf), 1);
        snprintf(buf, sizeof buf, "# HELP %s ", name);
        assert_int_equal(count_of(t, buf), 1);
    }
    assert_null(lp_metrics_name(LP_M__COUNT));
    /* label-less metrics expose their zero; built-ins have live values */
    assert_true(value_of(t, "llm_proxy_retries_total") == 0);
    assert_true(value_of(t, "llm_proxy_active_requests") == 0);
    assert_true(value_of(t, "llm_proxy_overhead_seconds_count") == 0);
    assert_true(value_of(t, "llm_proxy_overhead_seconds_bucket{le=\"+Inf\"}") == 0);
    assert_true(value_of(t, "llm_proxy_process_resident_memory_bytes") > 0);
    assert_true(value_of(t, "llm_proxy_process_open_fds") >= 3);
    assert_true(value_of(t, "llm_proxy_process_cpu_seconds_total") >= 0);
    assert_true(value_of(t, "llm_proxy_log_lines_dropped_total") >= 0);
    assert_non_null(strstr(t, "\nllm_proxy_build_info{version=\""));
    free(t);
    lp_metrics_destroy(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    struct lp_metrics_shard *s = lp_metrics_shard(m, 0);
    const char *l[] = {"x"};
    lp_metrics_observe(s, LP_M_REQUEST_DURATION_SECONDS, l, 0.05); /* on a bound: le="0.05" */
    lp_metrics_observe(s, LP_M_REQUEST_DURATION_SECONDS, l, 0.3);
    lp_metrics_observe(s, LP_M_REQUEST_DURATION_SECONDS, l, 700);       /* above the last bound */
    lp_metrics_observe(s, LP_M_REQUEST_DURATION_SECONDS, l, 0.0 / 0.0); /* NaN: ignored */
    char *t = render(m);
#define B(le) value_of(t, "llm_proxy_request_duration_seconds_bucket{alias=\"x\",le=\"" le "\"}")
    assert_true(B("0.05") == 1);
    assert_true(B("0.1") == 1);
    assert_true(B("0.25") == 1);
    assert_true(B("0.5") == 2);
    assert_true(B("2.5") == 2);
    assert_true(B("600") == 2);
    assert_true(B("+Inf") == 3);
#undef B
    assert_true(value_of(t, "llm_proxy_request_duration_seconds_count{alias=\"x\"}") == 3);
    double sum = value_of(t, "llm_proxy_request_duration_seconds_sum{alias=\"x\"}");
    assert_true(sum > 700.3499 && sum < 700.3501);
    /* buckets appear in ascending order, +Inf last */
    const char *p05 = strstr(t, "le=\"0.05\""), *p600 = strstr(t, "{alias=\"x\",le=\"600\"");
    const char *pinf = strstr(t, "{alias=\"x\",le=\"+Inf\"");
    assert_true(p05 && p600 && pinf && p05 < p600 && p600 < pinf);
    free(t);
    lp_metrics_destroy(m);
}

static void test_multi_shard_sum(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(3);
    const char *a[] = {"b1", "m1", "ok"}, *b[] = {"b1", "m1", "timeout"}, *bk[] = {"b1"};
    lp_metrics_inc(lp_metrics_shard(m, 0), LP_M_UPSTREAM_ATTEMPTS_TOTAL, a, 2);
    lp_metrics_inc(lp_metrics_shard(m, 1), LP_M_UPSTREAM_ATTEMPTS_TOTAL, a, 5);
    lp_metrics_inc(lp_metrics_shard(m, 2), LP_M_UPSTREAM_ATTEMPTS_TOTAL, b, 1);
    lp_metrics_gauge_add(lp_metrics_shard(m, 0), LP_M_ACTIVE_REQUESTS, NULL, 3);
    lp_metrics_gauge_add(lp_metrics_shard(m, 1), LP_M_ACTIVE_REQUESTS, NULL, -1);
    lp_metrics_observe(lp_metrics_shard(m, 0), LP_M_UPSTREAM_TTFT_SECONDS, bk, 0.2);
    lp_metrics_observe(lp_metrics_shard(m, 2), LP_M_UPSTREAM_TTFT_SECONDS, bk, 4);
    lp_metrics_inc(lp_metrics_shard(m, 1), LP_M_BACKOFF_WAIT_SECONDS_TOTAL, NULL, 1500000);
    char *t = render(m);
    assert_true(value_of(t, "llm_proxy_upstream_attempts_total{backend=\"b1\",model=\"m1\","
                            "class=\"ok\"}") == 7);
    assert_true(value_of(t, "llm_proxy_upstream_attempts_total{backend=\"b1\",model=\"m1\","
                            "class=\"timeout\"}") == 1);
    assert_int_equal(count_of(t, "llm_proxy_upstream_attempts_total{"), 2);
    assert_true(value_of(t, "llm_proxy_active_requests") == 2);
    assert_true(value_of(t, "llm_proxy_upstream_ttft_seconds_bucket{backend=\"b1\",le=\"0.25\"}") ==
                1);
    assert_true(value_of(t, "llm_proxy_upstream_ttft_seconds_bucket{backend=\"b1\",le=\"5\"}") ==
                2);
    assert_true(value_of(t, "llm_proxy_upstream_ttft_seconds_count{backend=\"b1\"}") == 2);
    assert_true(value_of(t, "llm_proxy_backoff_wait_seconds_total") == 1.5);
    free(t);
    lp_metrics_destroy(m);
}

static void test_series_cap(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    lp_metrics_set_series_cap(m, 3);
    struct lp_metrics_shard *s = lp_metrics_shard(m, 0);
    const char *names[] = {"a1", "a2", "a3", "a4", "a5"};
    for (int i = 0; i < 5; i++) {
        const char *l[] = {names[i]};
        lp_metrics_inc(s, LP_M_REQUEST_BYTES_TOTAL, l, 10);
    }
    const char *a1[] = {"a1"}, *a5[] = {"a5"};
    lp_metrics_inc(s, LP_M_REQUEST_BYTES_TOTAL, a1, 1); /* known series keeps counting */
    lp_metrics_inc(s, LP_M_REQUEST_BYTES_TOTAL, a5, 1); /* overflow keeps going to _other */
    char *t = render(m);
    assert_int_equal(count_of(t, "\nllm_proxy_request_bytes_total{"), 4);
    assert_true(value_of(t, "llm_proxy_request_bytes_total{alias=\"a1\"}") == 11);
    assert_true(value_of(t, "llm_proxy_request_bytes_total{alias=\"a3\"}") == 10);
    assert_true(value_of(t, "llm_proxy_request_bytes_total{alias=\"_other\"}") == 21);
    assert_null(strstr(t, "alias=\"a4\""));
    /* the cap is per metric: another metric still gets its own series */
    const char *r[] = {"ok"};
    lp_metrics_inc(s, LP_M_CONFIG_RELOADS_TOTAL, r, 1);
    free(t);
    t = render(m);
    assert_true(value_of(t, "llm_proxy_config_reloads_total{result=\"ok\"}") == 1);
    free(t);
    lp_metrics_destroy(m);
}

/* Long label values are truncated to 128 bytes, and equal after truncation means one series. */
static void test_long_label(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    char v1[300], v2[300];
    memset(v1, 'z', sizeof v1 - 1);
    v1[sizeof v1 - 1] = '\0';
    memcpy(v2, v1, sizeof v2);
    v2[200] = 'y';
    const char *l1[] = {v1}, *l2[] = {v2};
    lp_metrics_inc(lp_metrics_shard(m, 0), LP_M_RESPONSE_BYTES_TOTAL, l1, 1);
    lp_metrics_inc(lp_metrics_shard(m, 0), LP_M_RESPONSE_BYTES_TOTAL, l2, 1);
    char *t = render(m);
    assert_int_equal(count_of(t, "\nllm_proxy_response_bytes_total{"), 1);
    char line[200];
    snprintf(line, sizeof line, "llm_proxy_response_bytes_total{alias=\"%.128s\"}", v1);
    assert_true(value_of(t, line) == 2);
    free(t);
    lp_metrics_destroy(m);
}

static void emit_breakers(struct lp_metrics_sink *sink, void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    const char *b1[] = {"b1"}, *b2[] = {"b2"};
    lp_metrics_sink_put(sink, b1, 1);
    lp_metrics_sink_put(sink, b2, 2);
}

static void test_callbacks(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    int calls = 0;
    lp_metrics_set_gauge_fn(m, LP_M_BREAKER_STATE, emit_breakers, &calls);
    lp_metrics_set_gauge_fn(m, LP_M_OVERHEAD_SECONDS, emit_breakers, &calls); /* histogram: no */
    char *t = render(m);
    assert_int_equal(calls, 1);
    assert_true(value_of(t, "llm_proxy_breaker_state{backend=\"b1\"}") == 1);
    assert_true(value_of(t, "llm_proxy_breaker_state{backend=\"b2\"}") == 2);
    free(t);
    lp_metrics_set_gauge_fn(m, LP_M_BREAKER_STATE, NULL, NULL);
    t = render(m);
    assert_null(strstr(t, "llm_proxy_breaker_state{"));
    free(t);
    lp_metrics_destroy(m);
}

/* Recording with the wrong type, a NULL shard or a bad id changes nothing. */
static void test_misuse_ignored(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(1);
    struct lp_metrics_shard *s = lp_metrics_shard(m, 0);
    assert_null(lp_metrics_shard(m, 1));
    assert_null(lp_metrics_shard(m, -1));
    lp_metrics_inc(s, LP_M_OVERHEAD_SECONDS, NULL, 5);
    lp_metrics_observe(s, LP_M_RETRIES_TOTAL, NULL, 5);
    lp_metrics_gauge_add(s, LP_M_RETRIES_TOTAL, NULL, 5);
    lp_metrics_inc(NULL, LP_M_RETRIES_TOTAL, NULL, 5);
    lp_metrics_inc(s, LP_M__COUNT, NULL, 5);
    char *t = render(m);
    assert_true(value_of(t, "llm_proxy_retries_total") == 0);
    assert_true(value_of(t, "llm_proxy_overhead_seconds_count") == 0);
    free(t);
    lp_metrics_destroy(m);
    lp_metrics_destroy(NULL);
}

static void test_stats_json(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(2);
    struct lp_metrics_shard *s0 = lp_metrics_shard(m, 0), *s1 = lp_metrics_shard(m, 1);
    const char *ok1[] = {"b1", "m", "ok"}, *to1[] = {"b1", "m2", "timeout"};
    const char *ok2[] = {"b2", "m", "ok"}, *b1[] = {"b1"};
    lp_metrics_inc(s0, LP_M_UPSTREAM_ATTEMPTS_TOTAL, ok1, 3);
    lp_metrics_inc(s1, LP_M_UPSTREAM_ATTEMPTS_TOTAL, to1, 1);
    lp_metrics_inc(s1, LP_M_UPSTREAM_ATTEMPTS_TOTAL, ok2, 2);
    lp_metrics_observe(s0, LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, b1, 0.1);
    lp_metrics_observe(s1, LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, b1, 0.3);
    lp_metrics_gauge_add(s0, LP_M_ACTIVE_REQUESTS, NULL, 2);
    size_t len;
    char *j = lp_metrics_stats_json(m, &len);
    assert_string_equal(j, "{\"requests_total\":{\"b1\":4,\"b2\":2},"
                           "\"backend_errors\":{\"b1\":1,\"b2\":0},"
                           "\"avg_duration_ms\":{\"b1\":200.0},\"active_requests\":2}");
    struct json_object *o = lp_json_parse(j, len, NULL);
    assert_non_null(o);
    json_object_put(o);
    free(j);
    lp_metrics_destroy(m);
    /* empty registry: still valid JSON with the four keys */
    m = lp_metrics_create(1);
    j = lp_metrics_stats_json(m, &len);
    assert_string_equal(j, "{\"requests_total\":{},\"backend_errors\":{},"
                           "\"avg_duration_ms\":{},\"active_requests\":0}");
    free(j);
    lp_metrics_destroy(m);
}

#define N_WORKERS 4
#define N_INCS 20000

struct worker_arg {
    struct lp_metrics *m;
    int idx;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    struct lp_metrics_shard *s = lp_metrics_shard(a->m, a->idx);
    const char *l[] = {"alias", "openai", "200"};
    for (int i = 0; i < N_INCS; i++) {
        lp_metrics_inc(s, LP_M_REQUESTS_TOTAL, l, 1);
        const char *al[] = {i % 2 ? "odd" : "even"};
        lp_metrics_observe(s, LP_M_TTFB_SECONDS, al, 0.01);
    }
    return NULL;
}

/* Workers record on their own shards while another thread scrapes; the final sum is exact. */
static void test_concurrent_scrape(void **state)
{
    (void)state;
    struct lp_metrics *m = lp_metrics_create(N_WORKERS);
    pthread_t th[N_WORKERS];
    struct worker_arg args[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        args[i] = (struct worker_arg){m, i};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int k = 0; k < 20; k++)
        free(lp_metrics_render(m, NULL));
    for (int i = 0; i < N_WORKERS; i++)
        pthread_join(th[i], NULL);
    char *t = render(m);
    assert_true(value_of(t, "llm_proxy_requests_total{alias=\"alias\",protocol=\"openai\","
                            "status=\"200\"}") == N_WORKERS * N_INCS);
    assert_true(value_of(t, "llm_proxy_ttfb_seconds_count{alias=\"odd\"}") ==
                N_WORKERS * N_INCS / 2);
    free(t);
    lp_metrics_destroy(m);
}

/* A full exposition (every metric with series, escapes included) passes promtool's parser and
 * linter. Skipped only when promtool is not installed. */
static void test_promtool(void **state)
{
    (void)state;
    if (access("/usr/bin/promtool", X_OK) != 0) {
        skip();
        return;
    }
    struct lp_metrics *m = lp_metrics_create(2);
    struct lp_metrics_shard *s = lp_metrics_shard(m, 0);
    /* Padded to LP_METRICS_MAX_LABELS: a metric reads as many values as it has labels. */
    const char *three[] = {"we\"ird\\al\nias", "openai", "200", "x"};
    const char *one[] = {"b1", "x", "y", "z"}, *two[] = {"b1", "gpt-4o", "first_event", "z"};
    for (int id = 0; id < LP_M__COUNT; id++) {
        lp_metrics_inc(s, (enum lp_metric_id)id, three, 2);
        lp_metrics_observe(s, (enum lp_metric_id)id, one, 0.7);
        lp_metrics_gauge_add(lp_metrics_shard(m, 1), (enum lp_metric_id)id, two, -1);
    }
    char *t = render(m);
    FILE *p = popen("/usr/bin/promtool check metrics >/dev/null 2>&1", "w");
    assert_non_null(p);
    fputs(t, p);
    int st = pclose(p);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        /* show promtool's complaints, then fail */
        FILE *q = popen("/usr/bin/promtool check metrics 1>&2", "w");
        fputs(t, q);
        pclose(q);
        fail_msg("promtool check metrics failed (status %d)", st);
    }
    free(t);
    lp_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_escaping),
        cmocka_unit_test(test_every_metric_declared),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_multi_shard_sum),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_long_label),
        cmocka_unit_test(test_callbacks),
        cmocka_unit_test(test_misuse_ignored),
        cmocka_unit_test(test_stats_json),
        cmocka_unit_test(test_concurrent_scrape),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
