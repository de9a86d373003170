/* micro.c - in-process micro-benchmarks of the per-request work that is not I/O:
 *
 *   1. request: pass-through (validate + rewrite model) vs translation, for a ~20 KB chat
 *      request, OpenAI -> Anthropic and Anthropic -> OpenAI;
 *   2. stream: a 200-event stream relayed by the pass-through tap vs translated, per stream;
 *   3. scrape: rendering /metrics with 50 aliases x 10 backends of series;
 *   4. Google Gemini backends: the same request translated OpenAI -> Gemini and Anthropic ->
 *      Gemini (through a2o), a 200-event Gemini stream to OpenAI and to Anthropic (through o2a),
 *      and a non-streaming Gemini answer to both client protocols.
 *
 * Prints microseconds per operation (best of 5 rounds, each long enough to be timed reliably)
 * and the ratio to pass-through. Usage: lp-microbench [rounds_scale [case [iterations]]]; with a
 * case (a2o, o2a, so2a, sa2o, o2g, a2g, sg2o, sg2a, rg2o, rg2a, ro2a, and the pass-through
 * baselines pto, pta, spto, spta) only that case runs, for instruction counts under callgrind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jscan.h"
#include "metrics.h"
#include "proto/stream_xlat.h"
#include "proto/xlat.h"
#include "sse.h"
#include "util/buf.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef void (*bench_fn)(void *ctx);

/* Best-of-5 mean time per call in microseconds. */
static double measure(bench_fn fn, void *ctx, int iters)
{
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_us();
        for (int i = 0; i < iters; i++)
            fn(ctx);
        double per = (now_us() - t0) / iters;
        if (per < best)
            best = per;
    }
    return best;
}

/* ---- request bodies ------------------------------------------------------------------------ */

static char *make_openai_request(size_t target)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_appends(&b, "{\"model\":\"team/"
                       "gpt\",\"stream\":true,\"messages\":[{\"role\":\"system\",\"content\":\"");
    for (int i = 0; b.len < target / 2; i++)
        lp_buf_printf(&b, "You are a careful coding agent; rule %d: keep answers short. ", i);
    lp_buf_appends(&b, "\"}");
    for (int i = 0; b.len < target; i++) {
        lp_buf_printf(
            &b,
            ",{\"role\":\"user\",\"content\":\"Please read file src/mod%d.c and explain the "
            "function on line %d in detail.\"}",
            i, i * 7);
        lp_buf_printf(
            &b,
            ",{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_%d\","
            "\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":"
            "\"{\\\"path\\\":\\\"src/mod%d.c\\\"}\"}}]}",
            i, i);
        lp_buf_printf(&b,
                      ",{\"role\":\"tool\",\"tool_call_id\":\"call_%d\",\"content\":\"1\\tint "
                      "main(void) { return %d; }\\n2\\t\"}",
                      i, i);
    }
    lp_buf_appends(&b,
                   "],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"read_file\","
                   "\"description\":\"Read a file\",\"parameters\":{\"type\":\"object\","
                   "\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}}}],"
                   "\"temperature\":0.2,\"max_tokens\":4096}");
    return lp_buf_steal(&b, NULL);
}

struct req_ctx {
    const char *body;
    size_t len;
    enum lp_proto from, to;
};

static void run_passthrough(void *p)
{
    struct req_ctx *c = p;
    struct lp_jscan s;
    if (lp_jscan_request(c->body, c->len, &s, NULL, NULL) != LP_OK)
        abort();
    size_t n;
    char *out = lp_jscan_rewrite_model(c->body, c->len, &s, "gpt-4.1-2025-04-14", &n);
    free(out);
    lp_jscan_free(&s);
}

static void run_translate(void *p)
{
    struct req_ctx *c = p;
    struct lp_jscan s;
    /* Intake scans every body (validation, model, stream) before the route is known. */
    if (lp_jscan_request(c->body, c->len, &s, NULL, NULL) != LP_OK)
        abort();
    lp_jscan_free(&s);
    struct lp_xlat_opts o = {
        .upstream_model = "claude-sonnet-4-5", .default_max_tokens = 4096, .stream = true};
    struct lp_xlat_err err;
    size_t n;
    char *out = lp_xlat_request(c->from, c->to, c->body, c->len, &o, &n, &err);
    if (!out) {
        fprintf(stderr, "translation failed: %s\n", err.message);
        abort();
    }
    free(out);
}

/* ---- streams --------------------------------------------------------------------------------- */

static char *make_openai_stream(int events)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    const char *pre =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":";
    lp_buf_printf(&b, "%s{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
                  pre);
    for (int i = 0; i < events - 3; i++)
        lp_buf_printf(&b, "%s{\"content\":\"token%d \"},\"finish_reason\":null}]}\n\n", pre, i);
    lp_buf_printf(&b,
                  "%s{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,"
                  "\"completion_tokens\":197,\"total_tokens\":217}}\n\n",
                  pre);
    lp_buf_appends(&b, "data: [DONE]\n\n");
    return lp_buf_steal(&b, NULL);
}

static char *make_anthropic_stream(int events)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_appends(
        &b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],"
            "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":20,"
            "\"output_tokens\":1}}}\n\n");
    lp_buf_appends(
        &b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
            "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for (int i = 0; i < events - 5; i++)
        lp_buf_printf(
            &b,
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
            "\"delta\":{\"type\":\"text_delta\",\"text\":\"token%d \"}}\n\n",
            i);
    lp_buf_appends(
        &b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    lp_buf_appends(
        &b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
            "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":195}}\n\n");
    lp_buf_appends(&b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    return lp_buf_steal(&b, NULL);
}

struct stream_ctx {
    const char *data;
    size_t len;
    enum lp_proto up, client;
    bool translate;
    size_t chunk; /* upstream delivery size */
};

static void run_stream(void *p)
{
    struct stream_ctx *c = p;
    struct lp_sse_parser sse;
    lp_sse_init(&sse, 1 << 20);
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        c->translate ? lp_stream_xlat_new(c->up, c->client, "alias", false, "req_1") : NULL;
    struct lp_stream_tap tap;
    lp_stream_tap_init(&tap, c->up, true);
    size_t sink = 0;
    for (size_t off = 0; off < c->len; off += c->chunk) {
        size_t n = c->len - off < c->chunk ? c->len - off : c->chunk;
        lp_sse_feed(&sse, c->data + off, n);
        struct lp_sse_event ev;
        while (lp_sse_next(&sse, &ev) == LP_OK) {
            if (x) {
                lp_buf_reset(&out);
                lp_stream_xlat_event(x, ev.event, ev.event_len, ev.data, ev.data_len, &out);
                sink += out.len;
            } else if (!lp_stream_tap_event(&tap, ev.event, ev.event_len, ev.data, ev.data_len)) {
                sink += ev.raw_len;
            }
        }
    }
    if (x && lp_stream_xlat_eof(x, &out) != LP_OK) /* Gemini streams end at EOF */
        abort();
    if (sink == 0)
        abort();
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
    lp_sse_free(&sse);
}

static char *make_gemini_stream(int events)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    for (int i = 0; i < events; i++)
        lp_buf_printf(
            &b,
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"token%d \"}],"
            "\"role\":\"model\"}%s,\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":20,"
            "\"candidatesTokenCount\":%d,\"totalTokenCount\":%d},\"modelVersion\":"
            "\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
            i, i == events - 1 ? ",\"finishReason\":\"STOP\"" : "", i + 1, i + 21);
    return lp_buf_steal(&b, NULL);
}

/* ---- non-streaming answers ----------------------------------------------------------------- */

struct resp_ctx {
    const char *body;
    size_t len;
    enum lp_proto from, to;
};

static void run_response(void *p)
{
    struct resp_ctx *c = p;
    size_t n;
    char *out = lp_xlat_response(c->from, c->to, c->body, c->len, "alias", &n);
    if (!out)
        abort();
    free(out);
}

static char *make_answer(enum lp_proto p, size_t text_len)
{
    struct lp_buf t, b;
    lp_buf_init(&t, 0);
    lp_buf_init(&b, 0);
    for (int i = 0; t.len < text_len; i++)
        lp_buf_printf(&t, "word%d ", i);
    if (p == LP_PROTO_GOOGLE)
        lp_buf_printf(
            &b,
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"%s\"}],\"role\":"
            "\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":"
            "{\"promptTokenCount\":20,\"candidatesTokenCount\":300,\"totalTokenCount\":320},"
            "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}",
            t.data);
    else
        lp_buf_printf(&b,
                      "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,"
                      "\"model\":\"gpt\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                      "\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":"
                      "{\"prompt_tokens\":20,\"completion_tokens\":300,\"total_tokens\":320}}",
                      t.data);
    lp_buf_free(&t);
    return lp_buf_steal(&b, NULL);
}

/* One case by name, iters times (for callgrind); false for an unknown name. */
static bool run_only(const char *only, long iters, char *oreq, size_t olen, char *areq, size_t alen)
{
    static const struct {
        const char *name;
        int kind; /* 0 request, 1 stream, 2 response, 3 request pass-through */
        enum lp_proto from, to;
    } cases[] = {
        {"pto", 3, LP_PROTO_OPENAI, LP_PROTO_OPENAI},
        {"pta", 3, LP_PROTO_ANTHROPIC, LP_PROTO_ANTHROPIC},
        {"spto", 1, LP_PROTO_OPENAI, LP_PROTO_OPENAI},
        {"spta", 1, LP_PROTO_ANTHROPIC, LP_PROTO_ANTHROPIC},
        {"o2a", 0, LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC},
        {"a2o", 0, LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI},
        {"o2g", 0, LP_PROTO_OPENAI, LP_PROTO_GOOGLE},
        {"a2g", 0, LP_PROTO_ANTHROPIC, LP_PROTO_GOOGLE},
        {"so2a", 1, LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC},
        {"sa2o", 1, LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI},
        {"sg2o", 1, LP_PROTO_GOOGLE, LP_PROTO_OPENAI},
        {"sg2a", 1, LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC},
        {"ro2a", 2, LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC},
        {"rg2o", 2, LP_PROTO_GOOGLE, LP_PROTO_OPENAI},
        {"rg2a", 2, LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (strcmp(only, cases[k].name) != 0)
            continue;
        char *data = NULL;
        bool anth = cases[k].from == LP_PROTO_ANTHROPIC;
        struct req_ctx rc = {anth ? areq : oreq, anth ? alen : olen, cases[k].from, cases[k].to};
        if (cases[k].kind == 1)
            data = cases[k].from == LP_PROTO_GOOGLE ? make_gemini_stream(200)
                   : anth                           ? make_anthropic_stream(200)
                                                    : make_openai_stream(200);
        else if (cases[k].kind == 2)
            data = make_answer(cases[k].from, 2048);
        struct stream_ctx sc = {data,        data ? strlen(data) : 0,      cases[k].from,
                                cases[k].to, cases[k].from != cases[k].to, 4096};
        struct resp_ctx pc = {data, data ? strlen(data) : 0, cases[k].from, cases[k].to};
        for (long i = 0; i < iters; i++) {
            if (cases[k].kind == 3)
                run_passthrough(&rc);
            else if (cases[k].kind == 0)
                run_translate(&rc);
            else if (cases[k].kind == 1)
                run_stream(&sc);
            else
                run_response(&pc);
        }
        free(data);
        return true;
    }
    return false;
}

/* ---- scrape ---------------------------------------------------------------------------------- */

static void run_scrape(void *p)
{
    size_t len;
    char *s = lp_metrics_render(p, &len);
    free(s);
}

static struct lp_metrics *make_metrics(int aliases, int backends, size_t *series)
{
    struct lp_metrics *m = lp_metrics_create(2);
    struct lp_metrics_shard *sh = lp_metrics_shard(m, 0);
    char alias[32], backend[32], model[32];
    const char *classes[] = {"ok", "server", "rate_limit"};
    for (int a = 0; a < aliases; a++) {
        snprintf(alias, sizeof alias, "team/model-%d", a);
        const char *lr[] = {alias, "openai", "200"};
        lp_metrics_inc(sh, LP_M_REQUESTS_TOTAL, lr, 10);
        const char *la[] = {alias};
        lp_metrics_observe(sh, LP_M_REQUEST_DURATION_SECONDS, la, 0.8);
        lp_metrics_observe(sh, LP_M_TTFB_SECONDS, la, 0.2);
        for (int b = 0; b < backends; b++) {
            snprintf(backend, sizeof backend, "backend-%d", b);
            snprintf(model, sizeof model, "model-%d-%d", a, b);
            for (int k = 0; k < 3; k++) {
                const char *l[] = {backend, model, classes[k]};
                lp_metrics_inc(sh, LP_M_UPSTREAM_ATTEMPTS_TOTAL, l, 3);
            }
            const char *lt[] = {alias, backend, "input"};
            lp_metrics_inc(sh, LP_M_TOKENS_TOTAL, lt, 100);
            const char *lb[] = {backend};
            lp_metrics_observe(sh, LP_M_UPSTREAM_ATTEMPT_DURATION_SECONDS, lb, 0.5);
            lp_metrics_observe(sh, LP_M_UPSTREAM_TTFT_SECONDS, lb, 0.1);
        }
    }
    size_t len;
    char *s = lp_metrics_render(m, &len);
    size_t n = 0;
    for (char *q = s; (q = strchr(q, '\n')) != NULL; q++)
        n++;
    free(s);
    *series = n;
    return m;
}

int main(int argc, char **argv)
{
    int scale = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1;
    const char *only = argc > 2 ? argv[2] : NULL; /* profile one case: a2o, o2a, so2a, sa2o */
    if (scale < 1)
        scale = 1;
    char *oreq = make_openai_request(20 * 1024);
    size_t olen = strlen(oreq);
    /* The Anthropic request is the translation of the OpenAI one (same conversation). */
    struct lp_xlat_opts o = {
        .upstream_model = "claude", .default_max_tokens = 4096, .stream = true};
    struct lp_xlat_err err;
    size_t alen;
    char *areq = lp_xlat_request(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, oreq, olen, &o, &alen, &err);
    if (!areq) {
        fprintf(stderr, "cannot build the Anthropic body: %s\n", err.message);
        return 1;
    }

    if (only) {
        long iters = argc > 3 ? strtol(argv[3], NULL, 10) : 2000L * scale;
        bool ok = run_only(only, iters, oreq, olen, areq, alen);
        free(oreq);
        free(areq);
        if (!ok)
            fprintf(stderr, "unknown case %s\n", only);
        return ok ? 0 : 2;
    }
    printf("# llm-proxy micro-benchmarks (best of 5 rounds; microseconds per operation)\n\n");
    printf("| operation | size | us/op | ratio to pass-through |\n|---|---|---|---|\n");
    struct req_ctx pt_o = {oreq, olen, LP_PROTO_OPENAI, LP_PROTO_OPENAI};
    struct req_ctx pt_a = {areq, alen, LP_PROTO_ANTHROPIC, LP_PROTO_ANTHROPIC};
    struct req_ctx o2a = {oreq, olen, LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC};
    struct req_ctx a2o = {areq, alen, LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI};
    double t_pto = measure(run_passthrough, &pt_o, 2000 * scale);
    double t_pta = measure(run_passthrough, &pt_a, 2000 * scale);
    double t_o2a = measure(run_translate, &o2a, 300 * scale);
    double t_a2o = measure(run_translate, &a2o, 300 * scale);
    printf("| request pass-through (OpenAI) | %zu B | %.2f | 1.00 |\n", olen, t_pto);
    printf("| request OpenAI -> Anthropic | %zu B | %.2f | %.1f |\n", olen, t_o2a, t_o2a / t_pto);
    printf("| request pass-through (Anthropic) | %zu B | %.2f | 1.00 |\n", alen, t_pta);
    printf("| request Anthropic -> OpenAI | %zu B | %.2f | %.1f |\n", alen, t_a2o, t_a2o / t_pta);

    char *os = make_openai_stream(200), *as = make_anthropic_stream(200);
    struct stream_ctx s_pto = {os, strlen(os), LP_PROTO_OPENAI, LP_PROTO_OPENAI, false, 4096};
    struct stream_ctx s_o2a = {os, strlen(os), LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, true, 4096};
    struct stream_ctx s_pta = {as, strlen(as), LP_PROTO_ANTHROPIC, LP_PROTO_ANTHROPIC, false, 4096};
    struct stream_ctx s_a2o = {as, strlen(as), LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, true, 4096};
    double st_pto = measure(run_stream, &s_pto, 500 * scale);
    double st_o2a = measure(run_stream, &s_o2a, 100 * scale);
    double st_pta = measure(run_stream, &s_pta, 500 * scale);
    double st_a2o = measure(run_stream, &s_a2o, 100 * scale);
    printf("| stream pass-through (OpenAI, 200 events) | %zu B | %.2f | 1.00 |\n", strlen(os),
           st_pto);
    printf("| stream OpenAI -> Anthropic (200 events) | %zu B | %.2f | %.1f |\n", strlen(os),
           st_o2a, st_o2a / st_pto);
    printf("| stream pass-through (Anthropic, 200 events) | %zu B | %.2f | 1.00 |\n", strlen(as),
           st_pta);
    printf("| stream Anthropic -> OpenAI (200 events) | %zu B | %.2f | %.1f |\n", strlen(as),
           st_a2o, st_a2o / st_pta);

    /* Google Gemini backends */
    struct req_ctx o2g = {oreq, olen, LP_PROTO_OPENAI, LP_PROTO_GOOGLE};
    struct req_ctx a2g = {areq, alen, LP_PROTO_ANTHROPIC, LP_PROTO_GOOGLE};
    double t_o2g = measure(run_translate, &o2g, 300 * scale);
    double t_a2g = measure(run_translate, &a2g, 300 * scale);
    printf("| request OpenAI -> Gemini | %zu B | %.2f | %.1f |\n", olen, t_o2g, t_o2g / t_pto);
    printf("| request Anthropic -> Gemini (a2o + o2g) | %zu B | %.2f | %.1f |\n", alen, t_a2g,
           t_a2g / t_pta);
    char *gs = make_gemini_stream(200);
    struct stream_ctx s_g2o = {gs, strlen(gs), LP_PROTO_GOOGLE, LP_PROTO_OPENAI, true, 4096};
    struct stream_ctx s_g2a = {gs, strlen(gs), LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, true, 4096};
    double st_g2o = measure(run_stream, &s_g2o, 100 * scale);
    double st_g2a = measure(run_stream, &s_g2a, 100 * scale);
    printf("| stream Gemini -> OpenAI (200 events) | %zu B | %.2f | %.1f |\n", strlen(gs), st_g2o,
           st_g2o / st_pto);
    printf("| stream Gemini -> Anthropic (200 events, g2o + o2a) | %zu B | %.2f | %.1f |\n",
           strlen(gs), st_g2a, st_g2a / st_pto);
    char *ga = make_answer(LP_PROTO_GOOGLE, 2048), *oa = make_answer(LP_PROTO_OPENAI, 2048);
    struct resp_ctx r_o2a = {oa, strlen(oa), LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC};
    struct resp_ctx r_g2o = {ga, strlen(ga), LP_PROTO_GOOGLE, LP_PROTO_OPENAI};
    struct resp_ctx r_g2a = {ga, strlen(ga), LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC};
    double tr_o2a = measure(run_response, &r_o2a, 2000 * scale);
    double tr_g2o = measure(run_response, &r_g2o, 2000 * scale);
    double tr_g2a = measure(run_response, &r_g2a, 2000 * scale);
    printf("| answer OpenAI -> Anthropic (2 KB text) | %zu B | %.2f | - |\n", strlen(oa), tr_o2a);
    printf("| answer Gemini -> OpenAI (2 KB text) | %zu B | %.2f | - |\n", strlen(ga), tr_g2o);
    printf("| answer Gemini -> Anthropic (g2o + o2a) | %zu B | %.2f | - |\n", strlen(ga), tr_g2a);
    free(gs);
    free(ga);
    free(oa);

    size_t series = 0;
    struct lp_metrics *m = make_metrics(50, 10, &series);
    double t_scrape = measure(run_scrape, m, 20 * scale);
    printf("| /metrics render, 50 aliases x 10 backends | %zu lines | %.1f | - |\n", series,
           t_scrape);
    lp_metrics_destroy(m);

    free(oreq);
    free(areq);
    free(os);
    free(as);
    return 0;
}
