/* test_config.c - the configuration loader: schema, defaults, diagnostics, value parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define REFERENCE_YAML LP_FIXTURES_DIR "/../../examples/reference.yaml"

/* ---- helpers ------------------------------------------------------------------------------ */

static struct lp_config *load(const char *yaml, struct lp_diags *d)
{
    lp_diags_init(d);
    return lp_config_load_string(yaml, strlen(yaml), "t.yaml", d);
}

static size_t count_level(const struct lp_diags *d, enum lp_diag_level lvl)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++)
        n += d->items[i].level == lvl;
    return n;
}

static void dump(const struct lp_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        char *s = lp_diag_format(&d->items[i]);
        fprintf(stderr, "  diag: %s\n", s);
        free(s);
    }
}

/* Assert a diagnostic with exactly this level, position and message exists. */
static void expect_diag(const struct lp_diags *d, enum lp_diag_level lvl, int line, int col,
                        const char *msg)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct lp_diag *g = &d->items[i];
        if (g->level == lvl && g->line == line && g->col == col && strcmp(g->msg, msg) == 0)
            return;
    }
    fprintf(stderr, "missing %s at %d:%d: %s\n", lvl == LP_DIAG_ERROR ? "error" : "warning", line,
            col, msg);
    dump(d);
    fail();
}

/* Load, expect failure with exactly one error at line:col with msg. */
static void expect_one_error(const char *yaml, int line, int col, const char *msg)
{
    struct lp_diags d;
    struct lp_config *cfg = load(yaml, &d);
    if (cfg || d.n_errors != 1)
        dump(&d);
    assert_null(cfg);
    assert_int_equal(d.n_errors, 1);
    expect_diag(&d, LP_DIAG_ERROR, line, col, msg);
    lp_diags_free(&d);
}

#define BASE_BACKEND                                                                               \
    "backends:\n"                                                                                  \
    "  - name: a\n"                                                                                \
    "    url: https://a.example/v1\n"

/* ---- reference example, list form, defaults ----------------------------------------------- */

static void test_reference_example(void **state)
{
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *cfg = lp_config_load_file(REFERENCE_YAML, &d);
    if (!cfg || d.n_errors)
        dump(&d);
    assert_non_null(cfg);
    assert_int_equal(d.n_errors, 0);
    /* Two warnings: per_model_rps names an alias the example does not define, and the summary
     * of accepted-but-unimplemented keys (rate_limit and concurrency are implemented now). */
    assert_int_equal(d.n, 2);
    assert_int_equal(count_level(&d, LP_DIAG_WARNING), 2);
    assert_non_null(strstr(d.items[0].msg, "per_model_rps names unknown alias \"gpt-4\""));
    assert_non_null(strstr(d.items[1].msg, "accepted but not implemented"));
    assert_null(strstr(d.items[1].msg, "rate_limit"));
    assert_null(strstr(d.items[1].msg, "concurrency"));
    assert_non_null(strstr(d.items[1].msg, "logging.categories"));
    assert_true(cfg->rate_limit.enabled);
    assert_int_equal(cfg->concurrency.max_requests, 500);

    assert_string_equal(cfg->listen, ":8080");
    assert_string_equal(cfg->proxy_api_key, "sk-your-unified-api-key");
    assert_int_equal(cfg->n_backends, 8);
    long az = lp_config_find_backend(cfg, "azure-openai");
    assert_true(az >= 0);
    assert_int_equal(cfg->backends[az].protocol, LP_PROTO_OPENAI);
    assert_string_equal(cfg->backends[az].protocol_name, "azure");
    assert_int_equal(cfg->backends[az].dialect, LP_DIALECT_AZURE);
    assert_null(cfg->backends[az].api_version);
    assert_int_equal(cfg->backends[az].timeout.total_ms, 60000);   /* backend scalar timeout */
    assert_int_equal(cfg->backends[az].timeout.connect_ms, 10000); /* from the global block */
    long an = lp_config_find_backend(cfg, "anthropic");
    assert_int_equal(cfg->backends[an].protocol, LP_PROTO_ANTHROPIC);
    assert_string_equal(cfg->backends[an].locale, "en-US");
    assert_int_equal(cfg->backends[an].timeout.total_ms, 15 * 60000);
    assert_false(cfg->backends[lp_config_find_backend(cfg, "secondary")].enabled);

    assert_int_equal(cfg->n_aliases, 2);
    assert_string_equal(cfg->aliases[0].name, "anthropic/claude-sonnet-4"); /* sorted */
    const struct lp_alias *a = lp_config_find_alias(cfg, "anthropic/claude-sonnet-4", 25);
    assert_non_null(a);
    assert_int_equal(a->n_routes, 2);
    assert_int_equal(a->routes[1].priority, 2);
    assert_false(a->routes[1].enabled);
    assert_int_equal(a->routes[1].backend_idx, lp_config_find_backend(cfg, "secondary"));
    assert_int_equal(a->n_fallbacks, 1);
    assert_string_equal(a->fallbacks[0], "openai/gpt-4o");
    assert_false(lp_config_find_alias(cfg, "openai/gpt-4o", 13)->enabled);

    assert_int_equal(cfg->fallback.cooldown_seconds, 300);
    assert_true(cfg->fallback.max_retries_set);
    assert_int_equal(cfg->fallback.max_retries, 0);
    assert_true(cfg->fallback.enable_backoff);
    assert_int_equal(cfg->timeout.total_ms, 15 * 60000);
    assert_int_equal(cfg->detection.n_error_codes, 2);
    assert_string_equal(cfg->detection.error_codes[1], "5xx");
    assert_int_equal(cfg->detection.n_error_patterns, 9);
    assert_false(cfg->error_fallback.present);
    assert_string_equal(cfg->path, REFERENCE_YAML);
    assert_non_null(strstr(cfg->dir, "examples"));
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

/* The shipped examples load without a single diagnostic. */
static void test_examples_clean(void **state)
{
    static const char *const files[] = {
        LP_FIXTURES_DIR "/../../examples/minimal.yaml",
        LP_FIXTURES_DIR "/../../examples/multi-backend.yaml",
        LP_FIXTURES_DIR "/../../examples/traffic.yaml",
        LP_FIXTURES_DIR "/../../examples/providers.yaml",
        LP_FIXTURES_DIR "/../../examples/routing.yaml",
    };
    setenv("TEAM_WEB_KEY", "team-web-key", 1);
    setenv("CLAUDE_CODE_KEY", "claude-code-key", 1);
    setenv("BATCH_KEY", "batch-key", 1);
    setenv("OPENAI_API_KEY", "sk-test", 1);
    setenv("LLM_PROXY_KEY", "proxy-key", 1);
    setenv("RELAY_API_KEY", "relay-key", 1);
    setenv("ANTHROPIC_API_KEY", "ant-key", 1);
    setenv("AZURE_OPENAI_API_KEY", "az-key", 1);
    setenv("GEMINI_API_KEY", "gem-key", 1);
    setenv("VERTEX_ACCESS_TOKEN", "ya29.token", 1);
    setenv("DEEPSEEK_API_KEY", "ds-key", 1);
    setenv("GROQ_API_KEY", "gsk-key", 1);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct lp_diags d;
        lp_diags_init(&d);
        struct lp_config *cfg = lp_config_load_file(files[i], &d);
        if (!cfg || d.n)
            dump(&d);
        assert_non_null(cfg);
        assert_int_equal(d.n, 0);
        lp_config_unref(cfg);
        lp_diags_free(&d);
    }
}

static void test_era_a_list_form(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND "  - {name: b, url: 'http://10.0.0.2:8000/v1/'}\n"
                                              "models:\n"
                                              "  gpt-4o:\n"
                                              "    - {backend: a, model: gpt-4o, priority: 2}\n"
                                              "    - {backend: b, model: gpt-4o-mini}\n",
                                 &d);
    assert_non_null(cfg);
    assert_int_equal(d.n, 0);
    const struct lp_alias *a = lp_config_find_alias(cfg, "gpt-4o", 6);
    assert_non_null(a);
    assert_true(a->enabled);
    assert_int_equal(a->n_routes, 2);
    assert_string_equal(a->routes[0].model, "gpt-4o");
    assert_int_equal(a->routes[0].priority, 2);
    assert_int_equal(a->routes[1].priority, 0);
    assert_int_equal(a->routes[1].backend_idx, 1);
    assert_true(a->routes[1].enabled);
    assert_string_equal(cfg->backends[1].url, "http://10.0.0.2:8000/v1"); /* '/' stripped */
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_defaults(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND, &d);
    assert_non_null(cfg);
    assert_int_equal(d.n, 0);
    assert_string_equal(cfg->listen, ":8765");
    assert_null(cfg->proxy_api_key);
    assert_null(cfg->admin_api_key);
    assert_int_equal(cfg->timeout.connect_ms, 10000);
    assert_int_equal(cfg->timeout.read_ms, 60000);
    assert_int_equal(cfg->timeout.write_ms, 60000);
    assert_int_equal(cfg->timeout.total_ms, 600000);
    assert_int_equal(cfg->timeout.ttft_ms, 180000);
    assert_memory_equal(&cfg->backends[0].timeout, &cfg->timeout, sizeof cfg->timeout);
    const struct lp_backend *b = &cfg->backends[0];
    assert_true(b->enabled);
    assert_int_equal(b->protocol, LP_PROTO_OPENAI);
    assert_string_equal(b->protocol_name, "openai");
    assert_null(b->api_key);
    assert_null(b->locale);
    assert_int_equal(b->n_headers, 0);
    assert_int_equal(b->max_tokens, 0);
    assert_int_equal(b->line, 2);
    assert_int_equal(b->col, 5);
    const struct lp_fallback_cfg *f = &cfg->fallback;
    assert_int_equal(f->cooldown_seconds, 60);
    assert_false(f->max_retries_set);
    assert_false(f->enable_backoff);
    assert_int_equal(f->backoff_initial_ms, 100);
    assert_int_equal(f->backoff_max_ms, 5000);
    assert_true(f->backoff_multiplier == 2.0);
    assert_true(f->backoff_jitter == 0.1);
    assert_false(f->enable_circuit_breaker);
    assert_int_equal(f->circuit_failure_threshold, 5);
    assert_int_equal(f->circuit_success_threshold, 2);
    assert_int_equal(f->circuit_open_timeout_s, 60);
    assert_int_equal(f->circuit_half_open_max, 1);
    assert_int_equal(f->when_all_cooling, LP_ALL_COOLING_FAIL);
    assert_int_equal(cfg->server.max_body_size, 64 << 20);
    assert_int_equal(cfg->server.max_header_size, 64 << 10);
    assert_int_equal(cfg->server.idle_timeout_ms, 60000);
    assert_int_equal(cfg->server.threads, 0);
    assert_int_equal(cfg->server.shutdown_timeout_ms, 30000);
    assert_int_equal(cfg->server.body_timeout_ms, 60000);
    assert_int_equal(cfg->server.min_body_rate, 1024);
    assert_int_equal(cfg->server.max_connections, 0);
    assert_int_equal(cfg->server.max_connections_per_ip, 0);
    assert_int_equal(cfg->server.max_body_memory, 256 << 20);
    assert_true(cfg->proxy.forward_client_ip);
    assert_false(cfg->proxy.enable_system_prompt);
    assert_int_equal(cfg->proxy.default_max_tokens, 0); /* unset: per-model table */
    assert_string_equal(cfg->logging.level, "info");
    assert_true(cfg->logging.mask_sensitive);
    assert_string_equal(cfg->logging.base_dir, "./logs");
    assert_null(cfg->logging.access_log);
    assert_false(cfg->logging.log_bodies);
    assert_int_equal(cfg->logging.max_body_log_bytes, 4096);
    assert_int_equal(cfg->n_aliases, 0);
    assert_false(cfg->error_fallback.present);
    assert_string_equal(cfg->path, "t.yaml");
    assert_string_equal(cfg->dir, ".");
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_new_keys(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load("admin_api_key: adm\n"
                                 "server: {max_body_size: 10MB, max_header_size: 512KiB,"
                                 " idle_timeout: 90s, threads: 4, shutdown_timeout: 5s,"
                                 " body_timeout: 2m, min_body_rate: 0, max_connections: 500,"
                                 " max_connections_per_ip: 20, max_body_memory: 1GiB}\n"
                                 "proxy: {default_max_tokens: 8192,"
                                 " system_prompt: {custom_variables: {_OS: windows}}}\n"
                                 "logging: {level: WARNING, mask_sensitive: false,"
                                 " access_log: /tmp/a.log, error_log: e.log, log_bodies: true,"
                                 " max_body_log_bytes: 1KiB}\n"
                                 "fallback: {when_all_cooling: try_soonest,"
                                 " circuit_half_open_max: 3, backoff_jitter: 7}\n"
                                 "error_fallback:\n"
                                 "  server_error: {enabled: true}\n"
                                 "  client_error: {enabled: true, codes: [401, 429],"
                                 " patterns: [quota]}\n" BASE_BACKEND "    protocol: Anthropic\n"
                                 "    max_tokens: 1000\n"
                                 "    headers: {X-Title: demo, HTTP-Referer: 'https://x'}\n"
                                 "models:\n"
                                 "  m:\n"
                                 "    routes: [{backend: a, model: x, protocol: openai,"
                                 " max_tokens: 50}]\n",
                                 &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_int_equal(d.n_errors, 0);
    expect_diag(&d, LP_DIAG_WARNING, 5, 85,
                "fallback.backoff_jitter: backoff_jitter 7 is outside [0, 1]; using 0.1");
    assert_string_equal(cfg->admin_api_key, "adm");
    assert_int_equal(cfg->server.max_body_size, 10000000);
    assert_int_equal(cfg->server.max_header_size, 512 * 1024);
    assert_int_equal(cfg->server.idle_timeout_ms, 90000);
    assert_int_equal(cfg->server.threads, 4);
    assert_int_equal(cfg->server.shutdown_timeout_ms, 5000);
    assert_int_equal(cfg->server.body_timeout_ms, 120000);
    assert_int_equal(cfg->server.min_body_rate, 0);
    assert_int_equal(cfg->server.max_connections, 500);
    assert_int_equal(cfg->server.max_connections_per_ip, 20);
    assert_int_equal(cfg->server.max_body_memory, 1LL << 30);
    assert_int_equal(cfg->proxy.default_max_tokens, 8192);
    assert_int_equal(cfg->proxy.n_custom_variables, 1);
    assert_string_equal(cfg->proxy.custom_variables[0].key, "_OS");
    assert_string_equal(cfg->proxy.custom_variables[0].value, "windows");
    assert_string_equal(cfg->logging.level, "warn");
    assert_false(cfg->logging.mask_sensitive);
    assert_string_equal(cfg->logging.access_log, "/tmp/a.log");
    assert_string_equal(cfg->logging.error_log, "e.log");
    assert_true(cfg->logging.log_bodies);
    assert_int_equal(cfg->logging.max_body_log_bytes, 1024);
    assert_int_equal(cfg->fallback.when_all_cooling, LP_ALL_COOLING_TRY_SOONEST);
    assert_int_equal(cfg->fallback.circuit_half_open_max, 3);
    assert_true(cfg->fallback.backoff_jitter == 0.1);
    assert_true(cfg->error_fallback.present);
    assert_true(cfg->error_fallback.server_error_enabled);
    assert_true(cfg->error_fallback.client_error_enabled);
    assert_int_equal(cfg->error_fallback.n_client_codes, 2);
    assert_int_equal(cfg->error_fallback.client_codes[1], 429);
    assert_string_equal(cfg->error_fallback.client_patterns[0], "quota");
    const struct lp_backend *b = &cfg->backends[0];
    assert_int_equal(b->protocol, LP_PROTO_ANTHROPIC);
    assert_int_equal(b->max_tokens, 1000);
    assert_int_equal(b->n_headers, 2);
    assert_string_equal(b->headers[0].key, "X-Title");
    assert_string_equal(b->headers[1].value, "https://x");
    const struct lp_route *r = &cfg->aliases[0].routes[0];
    assert_true(r->has_protocol);
    assert_int_equal(r->protocol, LP_PROTO_OPENAI);
    assert_int_equal(r->max_tokens, 50);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_backend_timeout_overlay(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load("timeout: {connect_timeout: 2s, read_timeout: 30s}\n"
                                 "backends:\n"
                                 "  - name: a\n"
                                 "    url: https://a.example\n"
                                 "    timeout: {read_timeout: 5m, ttft_timeout: 45s}\n"
                                 "  - name: b\n"
                                 "    url: https://b.example\n"
                                 "    timeout: 90s\n"
                                 "  - {name: c, url: 'https://c.example'}\n",
                                 &d);
    assert_non_null(cfg);
    assert_int_equal(d.n, 0);
    const struct lp_timeouts *a = &cfg->backends[0].timeout, *b = &cfg->backends[1].timeout,
                             *c = &cfg->backends[2].timeout;
    assert_int_equal(a->connect_ms, 2000); /* global */
    assert_int_equal(a->read_ms, 300000);  /* own */
    assert_int_equal(a->write_ms, 60000);  /* default */
    assert_int_equal(a->total_ms, 600000); /* default */
    assert_int_equal(a->ttft_ms, 45000);   /* own */
    assert_int_equal(b->total_ms, 90000);  /* scalar form = total_timeout */
    assert_int_equal(b->read_ms, 30000);
    assert_memory_equal(c, &cfg->timeout, sizeof *c);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_merge_keys(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load("x-defaults: &def {url: 'https://shared.example/v1',"
                                 " api_key: k1, locale: de}\n"
                                 "backends:\n"
                                 "  - {<<: *def, name: a, api_key: own}\n"
                                 "  - {<<: *def, name: b}\n",
                                 &d);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].api_key, "own"); /* own key wins over merged */
    assert_string_equal(cfg->backends[1].api_key, "k1");
    assert_string_equal(cfg->backends[1].url, "https://shared.example/v1");
    assert_int_equal(d.n, 1); /* only the unknown top-level "x-defaults" */
    expect_diag(&d, LP_DIAG_WARNING, 1, 1, "x-defaults: unknown key (ignored)");
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

/* ---- errors: each with its position and key path ------------------------------------------ */

static void test_error_syntax(void **state)
{
    expect_one_error("backends:\n"
                     "  - name: a\n"
                     "    url: [https://a\n",
                     4, 1,
                     "YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
                     "sequence at line 3, column 10)");
}

static void test_error_wrong_types(void **state)
{
    expect_one_error("backends: {a: 1}\n", 1, 11,
                     "backends: expected a list of backends, got a mapping");
    expect_one_error(BASE_BACKEND "    api_key: {x: y}\n", 4, 14,
                     "backends[0].api_key: expected a string, got a mapping");
    expect_one_error(BASE_BACKEND "    enabled: 1\n", 4, 14,
                     "backends[0].enabled: expected true or false, got \"1\"");
    expect_one_error(BASE_BACKEND "models:\n"
                                  "  m: {routes: [{backend: a, model: x, priority: high}]}\n",
                     5, 49, "models[\"m\"].routes[0].priority: expected an integer, got \"high\"");
    expect_one_error(BASE_BACKEND "server: {threads: -1}\n", 4, 19,
                     "server.threads: -1 is out of range [0, 1024]");
    expect_one_error(BASE_BACKEND "fallback: {circuit_half_open_max: 0}\n", 4, 35,
                     "fallback.circuit_half_open_max: 0 is out of range [1, 1000000]");
    expect_one_error(BASE_BACKEND "server: {max_body_size: 12 parsecs}\n", 4, 25,
                     "server.max_body_size: invalid size \"12 parsecs\" (examples: 65536, "
                     "512KiB, 64MiB, 10MB)");
    expect_one_error("- a\n- b\n", 1, 1, "the top level must be a mapping, got a list");
    expect_one_error(BASE_BACKEND "server: {max_connections: -5}\n", 4, 27,
                     "server.max_connections: -5 is out of range [0, 16777216]");
    expect_one_error(BASE_BACKEND "server: {body_timeout: 0s}\n", 4, 24,
                     "server.body_timeout: duration must be greater than zero");
    expect_one_error(BASE_BACKEND "server:\n  max_body_size: 512MiB\n", 5, 3,
                     "server: max_body_memory (268435456 bytes) is smaller than max_body_size "
                     "(536870912 bytes): a body of the largest allowed size could never be "
                     "accepted; raise max_body_memory");
}

static void test_error_duplicate_backend(void **state)
{
    expect_one_error(BASE_BACKEND "  - name: b\n"
                                  "    url: https://b.example\n"
                                  "  - name: a\n"
                                  "    url: https://c.example\n",
                     6, 11, "backends[2].name: duplicate backend \"a\" (first defined at line 2)");
}

static void test_error_route_missing_backend(void **state)
{
    expect_one_error(BASE_BACKEND "models:\n"
                                  "  \"gpt-4o\":\n"
                                  "    routes:\n"
                                  "      - backend: nope\n"
                                  "        model: gpt-4o\n",
                     7, 18, "models[\"gpt-4o\"].routes[0].backend: unknown backend \"nope\"");
    /* backends listed after models in the file still resolve */
    struct lp_diags d;
    struct lp_config *cfg = load("models: {m: [{backend: a, model: x}]}\n" BASE_BACKEND, &d);
    assert_non_null(cfg);
    assert_int_equal(cfg->aliases[0].n_routes, 1);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_error_route_missing_model(void **state)
{
    expect_one_error(BASE_BACKEND "models:\n"
                                  "  \"gpt-4o\":\n"
                                  "    routes:\n"
                                  "      - backend: a\n"
                                  "        priority: 1\n",
                     7, 9, "models[\"gpt-4o\"].routes[0]: missing required key \"model\"");
    expect_one_error("backends:\n"
                     "  - url: https://a.example\n",
                     2, 5, "backends[0]: missing required key \"name\"");
    expect_one_error("backends:\n"
                     "  - {name: ~, url: 'https://a.example'}\n",
                     2, 12, "backends[0]: \"name\" must not be empty");
}

static void test_error_bad_duration(void **state)
{
    expect_one_error(BASE_BACKEND "timeout:\n"
                                  "  read_timeout: 10x\n",
                     5, 17,
                     "timeout.read_timeout: invalid duration \"10x\" (examples: 300ms, 10s, "
                     "1m30s, 2h)");
    expect_one_error(BASE_BACKEND "timeout: {total_timeout: 0s}\n", 4, 26,
                     "timeout.total_timeout: duration must be greater than zero");
    expect_one_error(BASE_BACKEND "timeout: {total_timeout: -5s}\n", 4, 26,
                     "timeout.total_timeout: invalid duration \"-5s\" (examples: 300ms, 10s, "
                     "1m30s, 2h)");
    expect_one_error(BASE_BACKEND "    timeout: {connect_timeout: 1parsec}\n", 4, 32,
                     "backends[0].timeout.connect_timeout: invalid duration \"1parsec\" "
                     "(examples: 300ms, 10s, 1m30s, 2h)");
}

static void test_error_bad_url(void **state)
{
    expect_one_error("backends:\n"
                     "  - {name: a, url: 'ftp://a.example'}\n",
                     2, 20,
                     "backends[0].url: invalid URL \"ftp://a.example\": must start with http:// "
                     "or https://");
    expect_one_error("backends:\n"
                     "  - {name: a, url: 'https:///v1'}\n",
                     2, 20, "backends[0].url: invalid URL \"https:///v1\": has no host");
    expect_one_error(
        "backends:\n"
        "  - {name: a, url: 'http://a.example:99999'}\n",
        2, 20, "backends[0].url: invalid URL \"http://a.example:99999\": has an invalid port");
}

static void test_tls_ca_file(void **state)
{
    (void)state;
    expect_one_error("backends:\n"
                     "  - name: a\n"
                     "    url: https://a.example/v1\n"
                     "    tls_ca_file: /nonexistent/ca.pem\n",
                     4, 18,
                     "backends[0].tls_ca_file: cannot read tls_ca_file \"/nonexistent/ca.pem\": "
                     "No such file or directory");
    /* A readable file loads; the path is kept as given when absolute. */
    struct lp_diags d;
    struct lp_config *cfg = load("backends:\n"
                                 "  - name: a\n"
                                 "    url: https://a.example/v1\n"
                                 "    tls_ca_file: /etc/passwd\n",
                                 &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].tls_ca_file, "/etc/passwd");
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_error_bad_protocol(void **state)
{
    expect_one_error(
        BASE_BACKEND "    protocol: bogus\n", 4, 15,
        "backends[0].protocol: unknown protocol \"bogus\" (expected openai, "
        "anthropic, google, azure, or an OpenAI-compatible provider such as deepseek, groq, "
        "mistral, cohere, openrouter, ollama or vllm; any OpenAI-compatible server "
        "works as \"openai\")");
    expect_one_error(
        BASE_BACKEND "models: {m: [{backend: a, model: x, protocol: soap}]}\n", 4, 47,
        "models[\"m\"][0].protocol: unknown protocol \"soap\" (expected openai, "
        "anthropic, google, azure, or an OpenAI-compatible provider such as deepseek, groq, "
        "mistral, cohere, openrouter, ollama or vllm; any OpenAI-compatible server "
        "works as \"openai\")");
}

/* Provider names: each maps to its dialect; api_version is checked and only meant for azure. */
static void test_provider_names(void **state)
{
    (void)state;
    struct lp_diags d;
    struct lp_config *cfg =
        load("backends:\n"
             "  - {name: az, url: 'https://r.openai.azure.com', protocol: azure,"
             " api_version: 2025-04-01-preview}\n"
             "  - {name: g, url: 'https://api.groq.com/openai/v1', protocol: GROQ}\n"
             "  - {name: c, url: 'https://api.cohere.com', protocol: cohere}\n"
             "  - {name: o, url: 'http://127.0.0.1:11434/v1', protocol: ollama,"
             " api_version: 2024-10-21, max_tokens_param: max_tokens,"
             " drop_params: [logprobs, store]}\n"
             "models: {m: [{backend: az, model: x}]}\n",
             &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_int_equal(cfg->backends[0].dialect, LP_DIALECT_AZURE);
    assert_string_equal(cfg->backends[0].api_version, "2025-04-01-preview");
    assert_int_equal(cfg->backends[1].dialect, LP_DIALECT_OPENAI);
    assert_int_equal(cfg->backends[1].protocol, LP_PROTO_OPENAI);
    assert_int_equal(cfg->backends[2].dialect, LP_DIALECT_COHERE);
    assert_int_equal(cfg->backends[3].dialect, LP_DIALECT_OPENAI);
    assert_string_equal(cfg->backends[3].max_tokens_param, "max_tokens");
    assert_int_equal(cfg->backends[3].n_drop_params, 2);
    assert_string_equal(cfg->backends[3].drop_params[1], "store");
    bool warned = false;
    for (size_t i = 0; i < d.n; i++)
        warned |= strstr(d.items[i].msg, "api_version only applies to protocol azure") != NULL;
    assert_true(warned);
    lp_config_unref(cfg);
    lp_diags_free(&d);
    /* health_check: a mapping, `true` (defaults), errors */
    cfg = load("backends:\n"
               "  - {name: p, url: 'http://h/v1', health_check: {path: /healthz, interval: 5s,"
               " timeout: 500ms, healthy_after: 2, unhealthy_after: 4, idle_interval: 1m}}\n"
               "  - {name: q, url: 'http://h/v1', health_check: true}\n"
               "  - {name: r, url: 'http://h/v1'}\n"
               "models: {m: [{backend: p, model: x}]}\n",
               &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    const struct lp_health_check *hc = &cfg->backends[0].health_check;
    assert_true(hc->enabled);
    assert_string_equal(hc->path, "/healthz");
    assert_int_equal(hc->interval_ms, 5000);
    assert_int_equal(hc->timeout_ms, 500);
    assert_int_equal(hc->healthy_after, 2);
    assert_int_equal(hc->unhealthy_after, 4);
    assert_int_equal(hc->idle_interval_ms, 60000);
    hc = &cfg->backends[1].health_check;
    assert_true(hc->enabled);
    assert_null(hc->path);
    assert_int_equal(hc->interval_ms, 10000);
    assert_int_equal(hc->timeout_ms, 2000);
    assert_int_equal(hc->healthy_after, 1);
    assert_int_equal(hc->unhealthy_after, 3);
    assert_false(cfg->backends[2].health_check.enabled);
    lp_config_unref(cfg);
    lp_diags_free(&d);
    expect_one_error(BASE_BACKEND "    health_check: {path: '/../admin'}\n", 4, 26,
                     "backends[0].health_check.path: health_check.path \"/../admin\": "
                     "dot-segment ('.' or '..') in the request path");
    /* google: a ?key= in the URL moves to api_key with a warning that never shows the key */
    cfg = load("backends:\n"
               "  - {name: g, url: 'https://generativelanguage.googleapis.com/v1beta/models/"
               "gemini-1.5-pro?key=AIzaSECRET&x=1', protocol: google}\n"
               "  - {name: v, url: 'https://aiplatform.googleapis.com/v1/projects/p/locations/l"
               "/publishers/google/models/gemini-2.5-pro?key=AIzaOTHER', protocol: Vertex,"
               " api_key: tok}\n"
               "models: {m: [{backend: g, model: x}]}\n",
               &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_int_equal(cfg->backends[0].dialect, LP_DIALECT_GOOGLE);
    assert_int_equal(cfg->backends[0].protocol, LP_PROTO_GOOGLE);
    assert_string_equal(cfg->backends[0].api_key, "AIzaSECRET");
    assert_string_equal(
        cfg->backends[0].url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro?x=1");
    assert_string_equal(cfg->backends[1].api_key, "tok");
    assert_null(strchr(cfg->backends[1].url, '?'));
    size_t moved = 0;
    for (size_t i = 0; i < d.n; i++) {
        assert_null(strstr(d.items[i].msg, "AIza"));
        moved += strstr(d.items[i].msg, "?key=") != NULL;
    }
    assert_int_equal(moved, 2);
    lp_config_unref(cfg);
    lp_diags_free(&d);
    expect_one_error(BASE_BACKEND "    max_tokens_param: max_output\n", 4, 23,
                     "backends[0].max_tokens_param: max_tokens_param must be max_tokens or "
                     "max_completion_tokens, got \"max_output\"");
    expect_one_error(BASE_BACKEND "    protocol: azure\n    api_version: latest\n", 5, 18,
                     "backends[0].api_version: api_version \"latest\" is not an Azure API "
                     "version (e.g. \"2024-10-21\")");
}

static void test_error_duplicate_alias(void **state)
{
    expect_one_error(BASE_BACKEND "models:\n"
                                  "  m1: [{backend: a, model: x}]\n"
                                  "  m2: [{backend: a, model: y}]\n"
                                  "  m1: [{backend: a, model: z}]\n",
                     7, 3, "models: duplicate key \"m1\" (first defined at line 5)");
}

static void test_error_no_backends(void **state)
{
    expect_one_error("listen: ':9000'\n", 1, 1,
                     "backends: missing; at least one backend is required");
    expect_one_error("listen: ':9000'\nbackends: []\n", 2, 11,
                     "backends: at least one backend is required");
    expect_one_error("", 0, 0, "empty configuration; at least one backend is required");
    expect_one_error("---\n# nothing\n", 0, 0,
                     "empty configuration; at least one backend is required");
}

static void test_error_when_all_cooling(void **state)
{
    expect_one_error(BASE_BACKEND "fallback:\n"
                                  "  when_all_cooling: panic\n",
                     5, 21,
                     "fallback.when_all_cooling: invalid value \"panic\" (expected fail or "
                     "try_soonest)");
}

/* routing: top level and per alias; the alias's own keys win, the rest comes from the top. */
static void test_routing(void **state)
{
    struct lp_diags d;
    struct lp_config *c = load("backends:\n"
                               "  - {name: a, url: 'http://x'}\n"
                               "  - {name: b, url: 'http://y'}\n"
                               "models:\n"
                               "  m:\n"
                               "    routes:\n"
                               "      - {backend: a, model: x, weight: 3}\n"
                               "      - {backend: b, model: x}\n"
                               "  n:\n"
                               "    routing: {strategy: weighted, hedge: {delay: p95}}\n"
                               "    routes: [{backend: a, model: y}]\n"
                               "routing:\n"
                               "  strategy: round_robin\n"
                               "  decay: 30s\n"
                               "  hedge: {delay: 250ms, max_extra: 2, budget_percent: 5}\n",
                               &d);
    dump(&d);
    assert_non_null(c);
    assert_int_equal(c->routing.strategy, LP_STRATEGY_ROUND_ROBIN);
    assert_int_equal(c->routing.decay_ms, 30000);
    assert_true(c->routing.hedge.enabled);
    const struct lp_alias *m = lp_config_find_alias(c, "m", 1),
                          *n = lp_config_find_alias(c, "n", 1);
    assert_int_equal(m->routes[0].weight, 3);
    assert_int_equal(m->routes[1].weight, 1);
    assert_int_equal(m->routing.strategy, LP_STRATEGY_ROUND_ROBIN);
    assert_int_equal(m->routing.hedge.delay_ms, 250);
    assert_int_equal(m->routing.hedge.max_extra, 2);
    assert_int_equal(m->routing.hedge.budget_percent, 5);
    assert_int_equal(n->routing.strategy, LP_STRATEGY_WEIGHTED);
    assert_int_equal(n->routing.decay_ms, 30000);
    assert_int_equal(n->routing.hedge.delay_pct, 95);
    assert_int_equal(n->routing.hedge.max_extra, 1);
    assert_int_equal(n->routing.hedge.budget_percent, 10);
    lp_config_unref(c);
    lp_diags_free(&d);

    c = load(BASE_BACKEND, &d);
    assert_non_null(c);
    assert_int_equal(c->routing.strategy, LP_STRATEGY_LATENCY); /* the default */
    assert_int_equal(c->routing.decay_ms, 10000);
    assert_false(c->routing.hedge.enabled);
    lp_config_unref(c);
    lp_diags_free(&d);

    expect_one_error(BASE_BACKEND "routing:\n  strategy: fastest\n", 5, 13,
                     "routing.strategy: unknown strategy \"fastest\" (expected latency, random, "
                     "round_robin or weighted)");
    expect_one_error(BASE_BACKEND "routing:\n  hedge: {delay: p101}\n", 5, 18,
                     "routing.hedge.delay: invalid percentile \"p101\" (expected p50 .. p99)");
    expect_one_error(BASE_BACKEND "routing:\n  hedge: {max_extra: 4}\n", 5, 22,
                     "routing.hedge.max_extra: 4 is out of range [0, 3]");
    expect_one_error(BASE_BACKEND "routing:\n  decay: 10ms\n", 5, 10,
                     "routing.decay: decay must be between 100ms and 1h");
}

static void test_error_misc(void **state)
{
    expect_one_error(BASE_BACKEND "listen: 'localhost'\n", 4, 9,
                     "listen: invalid listen address \"localhost\" (expected :port, host:port or "
                     "[v6]:port)");
    expect_one_error(BASE_BACKEND "    headers: {'Bad Name': x}\n", 4, 15,
                     "backends[0].headers[\"Bad Name\"]: invalid header name");
    expect_one_error(BASE_BACKEND "    headers: {X-A: \"a\\r\\nX-Injected: 1\"}\n", 4, 20,
                     "backends[0].headers[\"X-A\"]: header value must not contain CR or LF");
    expect_one_error(BASE_BACKEND "    name: b\n", 4, 5,
                     "backends[0]: duplicate key \"name\" (first defined at line 2)");
}

static void test_reports_all_errors(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load("backends:\n"
                                 "  - {name: a, url: 'nope'}\n"
                                 "  - {name: a, url: 'https://x', protocol: soap}\n"
                                 "timeout: {read_timeout: forever}\n"
                                 "models: {m: [{backend: zz, model: x}]}\n",
                                 &d);
    assert_null(cfg);
    assert_int_equal(d.n_errors, 5);
    /* sorted into file order */
    assert_int_equal(d.items[0].line, 2);
    assert_int_equal(d.items[1].line, 3);
    assert_int_equal(d.items[2].line, 3);
    assert_int_equal(d.items[3].line, 4);
    assert_int_equal(d.items[4].line, 5);
    lp_diags_free(&d);
}

/* ---- warnings ----------------------------------------------------------------------------- */

static void test_unknown_key_warning(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND "    api_kye: k\n"
                                              "frobnicate: 1\n",
                                 &d);
    assert_non_null(cfg);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.n_errors, 0);
    expect_diag(&d, LP_DIAG_WARNING, 4, 5,
                "backends[0].api_kye: unknown key (ignored); did you mean \"api_key\"?");
    expect_diag(&d, LP_DIAG_WARNING, 5, 1, "frobnicate: unknown key (ignored)");
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_alias_fallback_unknown_warning(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND "models: {m: [{backend: a, model: x}]}\n"
                                              "fallback:\n"
                                              "  alias_fallback:\n"
                                              "    m: [ghost, m]\n"
                                              "    nobody: [m]\n",
                                 &d);
    assert_non_null(cfg);
    assert_int_equal(d.n_errors, 0);
    expect_diag(&d, LP_DIAG_WARNING, 7, 9,
                "fallback.alias_fallback[\"m\"][0]: alias_fallback names unknown alias \"ghost\"");
    expect_diag(&d, LP_DIAG_WARNING, 7, 16,
                "fallback.alias_fallback[\"m\"][1]: alias \"m\" falls back to itself");
    expect_diag(&d, LP_DIAG_WARNING, 8, 5,
                "fallback.alias_fallback[\"nobody\"]: alias_fallback for unknown alias (ignored)");
    const struct lp_alias *m = lp_config_find_alias(cfg, "m", 1);
    assert_int_equal(m->n_fallbacks, 2); /* kept: the router skips unknown ones */
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

/* ---- environment interpolation ------------------------------------------------------------ */

static void test_env_interpolation(void **state)
{
    setenv("LPT_KEY", "sk-from-env", 1);
    setenv("LPT_HOST", "api.example.com", 1);
    setenv("LPT_EMPTY", "", 1);
    setenv("LPT_PRIO", "7", 1);
    unsetenv("LPT_MISSING");
    unsetenv("LPT_UNSET");
    struct lp_diags d;
    struct lp_config *cfg = load("proxy_api_key: ${LPT_KEY}\n"
                                 "admin_api_key: \"pre-${LPT_MISSING}-post\"\n"
                                 "backends:\n"
                                 "  - name: a\n"
                                 "    url: https://${LPT_HOST}/v1\n"
                                 "    api_key: ${LPT_UNSET:-fallback-key}\n"
                                 "    locale: ${LPT_EMPTY:-en-US}\n"
                                 "    headers: {X-Cost: \"$$5 ${LPT_KEY}\"}\n"
                                 "models: {m: [{backend: a, model: x, priority: '${LPT_PRIO}'}]}\n"
                                 "server: {threads: '${LPT_UNSET}'}\n",
                                 &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_string_equal(cfg->proxy_api_key, "sk-from-env");
    assert_string_equal(cfg->admin_api_key, "pre--post");
    assert_string_equal(cfg->backends[0].url, "https://api.example.com/v1");
    assert_string_equal(cfg->backends[0].api_key, "fallback-key");
    assert_string_equal(cfg->backends[0].locale, "en-US"); /* set but empty -> default */
    assert_string_equal(cfg->backends[0].headers[0].value, "$5 sk-from-env");
    assert_int_equal(cfg->aliases[0].routes[0].priority, 7);
    assert_int_equal(cfg->server.threads, 0); /* unset -> empty -> the default stays */
    expect_diag(&d, LP_DIAG_WARNING, 2, 16,
                "admin_api_key: environment variable LPT_MISSING is not set (using \"\")");
    expect_diag(&d, LP_DIAG_WARNING, 10, 19,
                "server.threads: environment variable LPT_UNSET is not set (using \"\")");
    assert_int_equal(d.n, 2);
    lp_config_unref(cfg);
    lp_diags_free(&d);

    /* an empty quoted string stays an empty (terminated) string */
    cfg = load(BASE_BACKEND "proxy_api_key: ''\ndetection: {error_codes: ['']}\n", &d);
    assert_non_null(cfg);
    assert_string_equal(cfg->proxy_api_key, "");
    assert_string_equal(cfg->detection.error_codes[0], "");
    lp_config_unref(cfg);
    lp_diags_free(&d);

    cfg = load(BASE_BACKEND "proxy_api_key: 'a${oops'\n", &d);
    assert_non_null(cfg);
    assert_string_equal(cfg->proxy_api_key, "a${oops");
    expect_diag(&d, LP_DIAG_WARNING, 4, 16,
                "proxy_api_key: malformed ${...} kept literally (write $$ for a literal '$')");
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

/* ---- value parsers ------------------------------------------------------------------------ */

static void test_duration_parse(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"0", 0},         {"0s", 0},       {"10", 10000},     {"300ms", 300}, {"10s", 10000},
        {"1m30s", 90000}, {"2h", 7200000}, {"1.5s", 1500},    {".5s", 500},   {"1h2m3.5s", 3723500},
        {"1500us", 2},    {"1ns", 1},      {"1\xc2\xb5s", 1}, {"+5s", 5000},  {"1m0.001s", 60001},
        {"15m", 900000},  {"5.s", 5000},   {"100ms1ms", 101},
    };
    static const char *const bad[] = {
        "",
        "s",
        "-1s",
        "-5",
        "10x",
        "1.5",
        "1 s",
        " 1s",
        "1s ",
        "1.s.",
        "h",
        "1d",
        "1e3s",
        "99999999999999999999s",
        "9223372037s",
        "1..5s",
        "ms",
        "+",
        "1S",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        if (!lp_duration_parse(ok[i].s, &v) || v != ok[i].ms)
            fail_msg("duration \"%s\": got %lld, want %lld", ok[i].s, (long long)v,
                     (long long)ok[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (lp_duration_parse(bad[i], &v) || v != 42)
            fail_msg("duration \"%s\" should be rejected", bad[i]);
    }
    assert_false(lp_duration_parse(NULL, &(int64_t){0}));
}

static void test_size_parse(void **state)
{
    static const struct {
        const char *s;
        int64_t v;
    } ok[] = {
        {"0", 0},           {"65536", 65536},    {"64MiB", 64 << 20}, {"10MB", 10000000},
        {"512KiB", 524288}, {"512 kib", 524288}, {"1k", 1024},        {"2G", 2LL << 30},
        {"3B", 3},          {"1gb", 1000000000}, {"1Mi", 1 << 20},
    };
    static const char *const bad[] = {
        "", "MB", "-1", "1.5MB", "10 parsecs", "1MBB", "99999999999999999999", "9999999999999TB"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        if (!lp_size_parse(ok[i].s, &v) || v != ok[i].v)
            fail_msg("size \"%s\": got %lld", ok[i].s, (long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (lp_size_parse(bad[i], &v))
            fail_msg("size \"%s\" should be rejected", bad[i]);
    }
}

static void test_listen_parse(void **state)
{
    static const struct {
        const char *s, *host;
        int port;
    } ok[] = {
        {":8080", "", 8080},
        {"0.0.0.0:8080", "0.0.0.0", 8080},
        {"[::1]:8765", "::1", 8765},
        {"localhost:1", "localhost", 1},
        {"9000", "", 9000},
        {":0", "", 0},
        {"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
    };
    static const char *const bad[] = {"",          ":",      "localhost", "::1:8080",
                                      "[::1]8080", "[]:80",  ":65536",    ":-1",
                                      "host:port", "a b:80", "[::1:80",   ":123456"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char host[64] = "junk";
        int port = -1;
        if (!lp_listen_parse(ok[i].s, host, sizeof host, &port))
            fail_msg("listen \"%s\" rejected", ok[i].s);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64];
        int port;
        if (lp_listen_parse(bad[i], host, sizeof host, &port))
            fail_msg("listen \"%s\" should be rejected", bad[i]);
    }
    char tiny[4];
    int port;
    assert_false(lp_listen_parse("localhost:80", tiny, sizeof tiny, &port));
    assert_true(lp_listen_parse("localhost:80", NULL, 0, &port));
}

/* ---- lifecycle, lookups, formatting ------------------------------------------------------- */

static void test_refcount(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND, &d);
    assert_non_null(cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 1);
    assert_ptr_equal(lp_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 2);
    lp_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refcount), 1);
    assert_string_equal(cfg->backends[0].name, "a"); /* still alive */
    lp_config_unref(cfg); /* frees; ASan reports a leak or a use-after-free otherwise */
    lp_config_unref(NULL);
    assert_null(lp_config_ref(NULL));
    lp_diags_free(&d);
}

static void test_find_alias(void **state)
{
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND "models:\n"
                                              "  zeta: [{backend: a, model: z}]\n"
                                              "  alpha: [{backend: a, model: a}]\n"
                                              "  mid/x: [{backend: a, model: m}]\n",
                                 &d);
    assert_non_null(cfg);
    assert_string_equal(cfg->aliases[0].name, "alpha");
    assert_string_equal(cfg->aliases[2].name, "zeta");
    const char *body = "mid/x\"}"; /* not NUL-terminated at the name: a view into a body */
    const struct lp_alias *a = lp_config_find_alias(cfg, body, 5);
    assert_non_null(a);
    assert_string_equal(a->routes[0].model, "m");
    assert_null(lp_config_find_alias(cfg, "mid", 3));
    assert_null(lp_config_find_alias(cfg, "mid/xy", 6));
    assert_null(lp_config_find_alias(cfg, "", 0));
    assert_int_equal(lp_config_find_backend(cfg, "a"), 0);
    assert_int_equal(lp_config_find_backend(cfg, "b"), -1);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_diag_format_and_file(void **state)
{
    struct lp_diag dg = {LP_DIAG_ERROR, "c.yaml", 3, 7, "backends[0].url: bad"};
    char *s = lp_diag_format(&dg);
    assert_string_equal(s, "c.yaml:3:7: error: backends[0].url: bad");
    free(s);
    dg.level = LP_DIAG_WARNING;
    dg.line = 0;
    s = lp_diag_format(&dg);
    assert_string_equal(s, "c.yaml: warning: backends[0].url: bad");
    free(s);

    struct lp_diags d;
    lp_diags_init(&d);
    assert_null(lp_config_load_file("/nonexistent/dir/config.yaml", &d));
    assert_int_equal(d.n_errors, 1);
    assert_string_equal(d.items[0].file, "/nonexistent/dir/config.yaml");
    assert_non_null(strstr(d.items[0].msg, "cannot read configuration"));
    lp_diags_free(&d);

    char path[] = "/tmp/lp_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = BASE_BACKEND "bogus: 1\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    struct lp_config *cfg = lp_config_load_file(path, &d);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->dir, "/tmp");
    assert_string_equal(d.items[0].file, path);
    lp_config_unref(cfg);
    lp_diags_free(&d);
    unlink(path);
}

static void test_hostile_inputs(void **state)
{
    /* billion laughs through aliases: the walker's visit budget stops it */
    const char *laughs = "a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1}\n"
                         "b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n"
                         "c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n"
                         "d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n"
                         "e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n"
                         "f: &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\n"
                         "backends: [{<<: *f}]\n";
    struct lp_diags d;
    assert_null(load(laughs, &d));
    if (d.n_errors != 1)
        dump(&d);
    assert_int_equal(d.n_errors, 1);
    expect_diag(&d, LP_DIAG_ERROR, 0, 0,
                "document too complex (more than 200000 node visits; alias expansion?)");
    lp_diags_free(&d);
    /* a self-referencing node and deep nesting */
    assert_null(load("backends: &x [*x]\n", &d));
    lp_diags_free(&d);
    char deep[400];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    assert_null(load(deep, &d));
    lp_diags_free(&d);
    /* thousands of problems: stored diagnostics are capped, errors still counted */
    char *many = malloc(64 * 1000 + 64);
    size_t cap = 64 * 1000 + 64, o = (size_t)snprintf(many, cap, "backends:\n");
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(many + o, cap - o, "  - {name: n%d, url: bad}\n", i);
    assert_null(load(many, &d));
    assert_int_equal(d.n_errors, 1000);
    assert_int_equal(d.n, LP_DIAGS_MAX + 1);
    lp_diags_free(&d);
    free(many);
    /* embedded NUL in a scalar */
    static const char nul[] = "backends: [{name: \"a\\0b\", url: 'https://x'}]\n";
    assert_null(load(nul, &d));
    lp_diags_free(&d);
}

/* concurrency.scope: cluster needs the redis block, wherever either stands in the file. */
static void test_concurrency_scope(void **state)
{
    (void)state;
    expect_one_error(
        BASE_BACKEND "concurrency:\n  enabled: true\n  scope: cluster\n", 6, 10,
        "concurrency.scope: cluster needs a redis block (the slots are leased in Redis)");
    expect_one_error(
        BASE_BACKEND "concurrency: {scope: everywhere}\n", 4, 22,
        "concurrency.scope: unknown value \"everywhere\" (expected instance or cluster)");
    struct lp_diags d;
    struct lp_config *cfg = load(BASE_BACKEND "concurrency: {scope: cluster, lease_ttl: 3s}\n"
                                              "redis: {url: \"redis://127.0.0.1:6379/0\"}\n",
                                 &d);
    if (!cfg)
        dump(&d);
    assert_non_null(cfg);
    assert_int_equal(cfg->concurrency.scope, LP_CONC_CLUSTER);
    assert_int_equal(cfg->concurrency.lease_ttl_ms, 3000);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_example),
        cmocka_unit_test(test_examples_clean),
        cmocka_unit_test(test_tls_ca_file),
        cmocka_unit_test(test_era_a_list_form),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_new_keys),
        cmocka_unit_test(test_backend_timeout_overlay),
        cmocka_unit_test(test_merge_keys),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_wrong_types),
        cmocka_unit_test(test_error_duplicate_backend),
        cmocka_unit_test(test_error_route_missing_backend),
        cmocka_unit_test(test_error_route_missing_model),
        cmocka_unit_test(test_error_bad_duration),
        cmocka_unit_test(test_error_bad_url),
        cmocka_unit_test(test_error_bad_protocol),
        cmocka_unit_test(test_provider_names),
        cmocka_unit_test(test_error_duplicate_alias),
        cmocka_unit_test(test_error_no_backends),
        cmocka_unit_test(test_error_when_all_cooling),
        cmocka_unit_test(test_error_misc),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_reports_all_errors),
        cmocka_unit_test(test_unknown_key_warning),
        cmocka_unit_test(test_alias_fallback_unknown_warning),
        cmocka_unit_test(test_env_interpolation),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_size_parse),
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_find_alias),
        cmocka_unit_test(test_diag_format_and_file),
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_concurrency_scope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
