/* test_endpoint.c - endpoint table, path safety, query filtering and the dialect rows that
 * address upstream requests (endpoint.h, dialect.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dialect.h"
#include "endpoint.h"

static void test_path_safety(void **state)
{
    (void)state;
    static const char *const safe[] = {
        "/v1/chat/completions",
        "/v1/messages",
        "/",
        "/health",
        "//admin",
        "/v1/a.b",
        "/v1/...",
        "/v1/.well-known",
        "/v1/%41bc",
        "/v1/x%20y",
        "/v1/..a",
        "/v1/a..",
    };
    static const char *const unsafe[] = {
        "/v1/../admin",
        "/v1/./messages",
        "/v1/chat/completions/../../../x",
        "/..",
        "/.",
        "/v1/..",
        "/v1/%2e%2e/admin",
        "/v1/%2E%2e/admin",
        "/v1/.%2e/x",
        "/v1/%2e/x",
        "/v1%2fadmin",
        "/v1%2Fadmin",
        "/v1\\admin",
        "/v1/%5cadmin",
        "/v1/%5Cx",
        "/v1/%00",
        "/v1/%0d%0a",
        "/v1/%zz",
        "/v1/%4",
        "/v1/%",
        "v1/messages",
        "",
        "/v1/a\tb",
    };
    const char *why;
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++) {
        why = "x";
        if (!lp_endpoint_path_safe(safe[i], &why))
            fail_msg("'%s' refused: %s", safe[i], why);
        assert_null(why);
    }
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++) {
        why = NULL;
        if (lp_endpoint_path_safe(unsafe[i], &why))
            fail_msg("'%s' accepted", unsafe[i]);
        assert_non_null(why);
    }
    assert_false(lp_endpoint_path_safe(NULL, NULL));
}

static void test_lookup(void **state)
{
    (void)state;
    static const char *const pt[] = {"/v1/rerank", "/v2/custom"};
    struct {
        const char *path;
        enum lp_endpoint ep;
    } rows[] = {
        {"/v1/chat/completions", LP_EP_CHAT},
        {"/chat/completions", LP_EP_CHAT},
        {"/v1/messages", LP_EP_MESSAGES},
        {"/messages", LP_EP_MESSAGES},
        {"/v1/messages/count_tokens", LP_EP_COUNT_TOKENS},
        {"/v1/responses", LP_EP_RESPONSES},
        {"/v1/responses/compact", LP_EP_RESPONSES_COMPACT},
        {"/v1/completions", LP_EP_COMPLETIONS},
        {"/completions", LP_EP_COMPLETIONS},
        {"/v1/embeddings", LP_EP_EMBEDDINGS},
        {"/embeddings", LP_EP_EMBEDDINGS},
        {"/v1/models", LP_EP_MODELS},
        {"/models", LP_EP_MODELS},
        {"/v1/rerank", LP_EP_PASSTHROUGH},
        {"/v2/custom", LP_EP_PASSTHROUGH},
        {"/v1/does-not-exist", LP_EP_NONE},
        {"/v1/chat/completions/", LP_EP_NONE},
        {"/V1/chat/completions", LP_EP_NONE},
        {"/v1/messages/batches", LP_EP_NONE},
        {"/admin/x", LP_EP_NONE},
        {"/count_tokens", LP_EP_NONE},
        {"/v1/rerank/x", LP_EP_NONE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        enum lp_endpoint got = lp_endpoint_lookup(rows[i].path, pt, 2);
        if (got != rows[i].ep)
            fail_msg("%s: got %d, want %d", rows[i].path, (int)got, (int)rows[i].ep);
    }
    assert_int_equal(lp_endpoint_lookup("/v1/rerank", NULL, 0), LP_EP_NONE);
    assert_int_equal(lp_endpoint_lookup(NULL, pt, 2), LP_EP_NONE);
    /* Table invariants: every forwarded built-in endpoint has a /v1 path; only chat and messages
     * translate. */
    for (int ep = 0; ep < LP_EP__COUNT; ep++) {
        const struct lp_endpoint_desc *d = lp_endpoint_desc((enum lp_endpoint)ep);
        assert_int_equal(d->ep, ep);
        if (d->path)
            assert_int_equal(lp_endpoint_lookup(d->path, NULL, 0), ep);
        assert_true(d->translatable == (ep == LP_EP_CHAT || ep == LP_EP_MESSAGES));
    }
    assert_int_equal(lp_endpoint_desc((enum lp_endpoint)999)->ep, LP_EP_NONE);
}

static void test_client_proto(void **state)
{
    (void)state;
    assert_int_equal(lp_endpoint_client_proto("/v1/messages"), LP_PROTO_ANTHROPIC);
    assert_int_equal(lp_endpoint_client_proto("/v1/messages/count_tokens"), LP_PROTO_ANTHROPIC);
    assert_int_equal(lp_endpoint_client_proto("/messages"), LP_PROTO_ANTHROPIC);
    assert_int_equal(lp_endpoint_client_proto("/v1/messages/../x"), LP_PROTO_ANTHROPIC);
    assert_int_equal(lp_endpoint_client_proto("/v1/messagesx"), LP_PROTO_OPENAI);
    assert_int_equal(lp_endpoint_client_proto("/v1/chat/completions"), LP_PROTO_OPENAI);
    assert_int_equal(lp_endpoint_client_proto(NULL), LP_PROTO_OPENAI);
}

static void check_filter(enum lp_endpoint ep, const char *q, const char *want)
{
    char *got = lp_endpoint_filter_query(ep, q);
    if (!want) {
        if (got)
            fail_msg("query '%s' on %d: got '%s', want nothing", q ? q : "(null)", (int)ep, got);
    } else {
        if (!got || strcmp(got, want) != 0)
            fail_msg("query '%s' on %d: got '%s', want '%s'", q, (int)ep, got ? got : "(null)",
                     want);
    }
    free(got);
}

static void test_query_filter(void **state)
{
    (void)state;
    check_filter(LP_EP_MESSAGES, "beta=true", "beta=true");
    check_filter(LP_EP_MESSAGES, "key=sk-proxy&beta=true", "beta=true");
    check_filter(LP_EP_MESSAGES, "beta=true&api_key=x&x=1", "beta=true");
    check_filter(LP_EP_COUNT_TOKENS, "beta=true", "beta=true");
    check_filter(LP_EP_CHAT, "key=sk-proxy", NULL);
    check_filter(LP_EP_CHAT, "beta=true", NULL);
    check_filter(LP_EP_CHAT, NULL, NULL);
    check_filter(LP_EP_CHAT, "", NULL);
    check_filter(LP_EP_PASSTHROUGH, "top_n=3&key=x&Access-Token=y&API_KEY=z&apiKey=w&q=1",
                 "top_n=3&q=1");
    check_filter(LP_EP_PASSTHROUGH, "%6bey=x&a=1", "a=1"); /* %6b = 'k' */
    check_filter(LP_EP_PASSTHROUGH, "client_secret=1&password=2&sig=3&session_id=4&b", "b");
    check_filter(LP_EP_PASSTHROUGH, "&&a=1&&", "a=1");
    assert_false(lp_endpoint_query_param_allowed(LP_EP_MESSAGES, "", 0));
}

/* ---- dialect rows --------------------------------------------------------------------------- */

struct hdrs {
    char *v[8];
    size_t n;
};

static void collect(void *ctx, char *line)
{
    struct hdrs *h = ctx;
    assert_true(h->n < 8);
    h->v[h->n++] = line;
}

static void hdrs_free(struct hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i]);
    h->n = 0;
}

static void check_url(const struct lp_dialect *d, const char *base, enum lp_endpoint ep,
                      const char *query, const char *want)
{
    struct lp_backend b = {.url = (char *)base, .name = "b"};
    struct lp_dialect_req r = {
        .backend = &b, .ep = ep, .model = "m", .query = query, .passthrough_path = "/v1/rerank"};
    char *got = d->url(&r);
    if (!want) {
        if (got)
            fail_msg("%s %s ep %d: got '%s', want no URL", d->name, base, (int)ep, got);
    } else if (!got || strcmp(got, want) != 0) {
        fail_msg("%s %s ep %d: got '%s', want '%s'", d->name, base, (int)ep, got ? got : "(null)",
                 want);
    }
    free(got);
}

static void test_dialect_urls(void **state)
{
    (void)state;
    const struct lp_dialect *o = lp_dialect_get(LP_DIALECT_OPENAI);
    const struct lp_dialect *a = lp_dialect_get(LP_DIALECT_ANTHROPIC);
    assert_int_equal(o->wire, LP_PROTO_OPENAI);
    assert_int_equal(a->wire, LP_PROTO_ANTHROPIC);
    check_url(o, "https://h/v1", LP_EP_CHAT, NULL, "https://h/v1/chat/completions");
    check_url(o, "https://h/v1", LP_EP_RESPONSES, NULL, "https://h/v1/responses");
    check_url(o, "https://api.deepseek.com/chat/completions", LP_EP_CHAT, NULL,
              "https://api.deepseek.com/chat/completions");
    check_url(o, "https://h/v1", LP_EP_PASSTHROUGH, "top_n=2", "https://h/v1/rerank?top_n=2");
    check_url(o, "https://h/v1", LP_EP_MESSAGES, NULL, NULL);
    check_url(o, "https://h/v1", LP_EP_COUNT_TOKENS, NULL, NULL);
    check_url(o, "https://h/v1", LP_EP_MODELS, NULL, NULL);
    check_url(a, "https://api.anthropic.com", LP_EP_MESSAGES, "beta=true",
              "https://api.anthropic.com/v1/messages?beta=true");
    check_url(a, "https://api.anthropic.com", LP_EP_COUNT_TOKENS, NULL,
              "https://api.anthropic.com/v1/messages/count_tokens");
    check_url(a, "https://api.anthropic.com", LP_EP_CHAT, NULL, NULL);
    check_url(a, "https://api.anthropic.com", LP_EP_RESPONSES, NULL, NULL);
    /* Out of range ids give the OpenAI row. */
    assert_ptr_equal(lp_dialect_get((enum lp_dialect_id)77), o);
}

static void check_azure(const char *base, const char *version, enum lp_endpoint ep,
                        const char *query, const char *want)
{
    struct lp_backend b = {.url = (char *)base, .name = "az", .api_version = (char *)version};
    struct lp_dialect_req r = {
        .backend = &b, .ep = ep, .model = "gpt 4o", .query = query, .passthrough_path = "/extra"};
    char *got = lp_dialect_get(LP_DIALECT_AZURE)->url(&r);
    if (!want ? got != NULL : (!got || strcmp(got, want) != 0))
        fail_msg("azure %s ep %d: got '%s', want '%s'", base, (int)ep, got ? got : "(null)",
                 want ? want : "(none)");
    free(got);
}

static void test_dialect_azure(void **state)
{
    (void)state;
    const char *dep = "https://r.openai.azure.com/openai/deployments/d1";
    assert_int_equal(lp_dialect_get(LP_DIALECT_AZURE)->wire, LP_PROTO_OPENAI);
    /* deployment URL: OpenAI paths without /v1, the default api-version */
    check_azure(dep, NULL, LP_EP_CHAT, NULL,
                "https://r.openai.azure.com/openai/deployments/d1/chat/completions"
                "?api-version=" LP_AZURE_API_VERSION);
    check_azure(dep, "2025-04-01-preview", LP_EP_EMBEDDINGS, NULL,
                "https://r.openai.azure.com/openai/deployments/d1/embeddings"
                "?api-version=2025-04-01-preview");
    /* the full method URL (reference style) is not doubled */
    check_azure("https://r.openai.azure.com/openai/deployments/d1/chat/completions", NULL,
                LP_EP_CHAT, NULL,
                "https://r.openai.azure.com/openai/deployments/d1/chat/completions"
                "?api-version=" LP_AZURE_API_VERSION);
    /* an api-version written in the URL wins */
    check_azure("https://r.openai.azure.com/openai/deployments/d1?api-version=2024-06-01", NULL,
                LP_EP_CHAT, NULL,
                "https://r.openai.azure.com/openai/deployments/d1/chat/completions"
                "?api-version=2024-06-01");
    /* a bare resource URL: the route's model is the deployment (escaped) */
    check_azure("https://r.openai.azure.com", NULL, LP_EP_CHAT, NULL,
                "https://r.openai.azure.com/openai/deployments/gpt%204o/chat/completions"
                "?api-version=" LP_AZURE_API_VERSION);
    check_azure("https://r.openai.azure.com/openai", NULL, LP_EP_COMPLETIONS, NULL,
                "https://r.openai.azure.com/openai/deployments/gpt%204o/completions"
                "?api-version=" LP_AZURE_API_VERSION);
    /* the v1 API: OpenAI paths, no api-version, responses available */
    check_azure("https://r.openai.azure.com/openai/v1", NULL, LP_EP_CHAT, NULL,
                "https://r.openai.azure.com/openai/v1/chat/completions");
    check_azure("https://r.openai.azure.com/openai/v1", NULL, LP_EP_RESPONSES, NULL,
                "https://r.openai.azure.com/openai/v1/responses");
    /* responses do not exist on deployment URLs; messages never */
    check_azure(dep, NULL, LP_EP_RESPONSES, NULL, NULL);
    check_azure(dep, NULL, LP_EP_MESSAGES, NULL, NULL);
    /* a passthrough path keeps the client's filtered query after api-version */
    check_azure(dep, NULL, LP_EP_PASSTHROUGH, "x=1",
                "https://r.openai.azure.com/openai/deployments/d1/extra"
                "?api-version=" LP_AZURE_API_VERSION "&x=1");

    /* the key goes in api-key, never as a Bearer token */
    struct lp_backend b = {.name = "az", .url = (char *)dep, .api_key = "azkey"};
    struct lp_dialect_req r = {.backend = &b, .ep = LP_EP_CHAT};
    struct hdrs h = {0};
    lp_dialect_get(LP_DIALECT_AZURE)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.v[0], "api-key: azkey");
    hdrs_free(&h);

    /* Cohere: a bare host gets /compatibility/v1, a written path is kept */
    const struct lp_dialect *c = lp_dialect_get(LP_DIALECT_COHERE);
    check_url(c, "https://api.cohere.com", LP_EP_CHAT, NULL,
              "https://api.cohere.com/compatibility/v1/chat/completions");
    check_url(c, "https://api.cohere.ai/compatibility/v1", LP_EP_EMBEDDINGS, NULL,
              "https://api.cohere.ai/compatibility/v1/embeddings");
    check_url(c, "https://api.cohere.com", LP_EP_MESSAGES, NULL, NULL);
}

static void check_google(const char *base, bool stream, const char *want)
{
    struct lp_backend b = {.url = (char *)base, .name = "g"};
    struct lp_dialect_req r = {
        .backend = &b, .ep = LP_EP_CHAT, .model = "gemini-2.5-flash", .stream = stream};
    char *got = lp_dialect_get(LP_DIALECT_GOOGLE)->url(&r);
    if (!got || strcmp(got, want) != 0)
        fail_msg("google %s: got '%s', want '%s'", base, got ? got : "(null)", want);
    free(got);
}

static void test_dialect_google(void **state)
{
    (void)state;
    const char *gl = "https://generativelanguage.googleapis.com";
    const char *vx = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/"
                     "us-central1";
    assert_int_equal(lp_dialect_get(LP_DIALECT_GOOGLE)->wire, LP_PROTO_GOOGLE);
    check_google("https://generativelanguage.googleapis.com/v1beta", false,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                 ":generateContent");
    check_google("https://generativelanguage.googleapis.com/v1beta", true,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                 ":streamGenerateContent?alt=sse");
    check_google(gl, false,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                 ":generateContent");
    /* the reference's form: the URL names the model */
    check_google("https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro", true,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro"
                 ":streamGenerateContent?alt=sse");
    check_google("https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro"
                 ":generateContent",
                 true,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro"
                 ":streamGenerateContent?alt=sse");
    check_google("https://generativelanguage.googleapis.com/v1beta/models", false,
                 "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                 ":generateContent");
    /* Vertex AI: cut at the location or at publishers/google, or the full model URL */
    check_google(vx, false,
                 "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/"
                 "us-central1/publishers/google/models/gemini-2.5-flash:generateContent");
    check_google("https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/"
                 "google",
                 true,
                 "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/"
                 "google/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    check_google("https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/"
                 "google/models/gemini-2.0-flash",
                 false,
                 "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/"
                 "google/models/gemini-2.0-flash:generateContent");
    /* only generation endpoints */
    struct lp_backend b = {.url = (char *)gl, .name = "g", .api_key = "AIzaX"};
    struct lp_dialect_req r = {.backend = &b, .ep = LP_EP_EMBEDDINGS, .model = "m"};
    assert_null(lp_dialect_get(LP_DIALECT_GOOGLE)->url(&r));
    r.ep = LP_EP_MESSAGES;
    char *u = lp_dialect_get(LP_DIALECT_GOOGLE)->url(&r);
    assert_non_null(u);
    free(u);
    /* keys: x-goog-api-key for Gemini, Bearer for Vertex */
    struct hdrs h = {0};
    lp_dialect_get(LP_DIALECT_GOOGLE)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.v[0], "x-goog-api-key: AIzaX");
    hdrs_free(&h);
    b.url = (char *)vx;
    lp_dialect_get(LP_DIALECT_GOOGLE)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.v[0], "Authorization: Bearer AIzaX");
    hdrs_free(&h);
}

static void test_dialect_auth(void **state)
{
    (void)state;
    struct lp_backend b = {.name = "b", .url = "https://h", .api_key = "sk-backend"};
    struct lp_dialect_req r = {.backend = &b, .ep = LP_EP_CHAT};
    struct hdrs h = {0};
    lp_dialect_get(LP_DIALECT_OPENAI)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.v[0], "Authorization: Bearer sk-backend");
    hdrs_free(&h);

    r.ep = LP_EP_MESSAGES;
    lp_dialect_get(LP_DIALECT_ANTHROPIC)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.v[0], "x-api-key: sk-backend");
    assert_string_equal(h.v[1], "anthropic-version: 2023-06-01");
    hdrs_free(&h);

    /* A pass-through client's own version is forwarded by the caller: not added twice. */
    r.client_version = "2023-01-01";
    lp_dialect_get(LP_DIALECT_ANTHROPIC)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    hdrs_free(&h);

    /* No key: no credential header at all. */
    b.api_key = "";
    r.client_version = NULL;
    lp_dialect_get(LP_DIALECT_OPENAI)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 0);
    lp_dialect_get(LP_DIALECT_ANTHROPIC)->auth_headers(&r, collect, &h);
    assert_int_equal(h.n, 1);
    hdrs_free(&h);
}

static void test_dialect_routing(void **state)
{
    (void)state;
    assert_int_equal(lp_dialect_upstream_ep(LP_EP_CHAT, LP_PROTO_ANTHROPIC), LP_EP_MESSAGES);
    assert_int_equal(lp_dialect_upstream_ep(LP_EP_MESSAGES, LP_PROTO_OPENAI), LP_EP_CHAT);
    assert_int_equal(lp_dialect_upstream_ep(LP_EP_CHAT, LP_PROTO_OPENAI), LP_EP_CHAT);
    assert_int_equal(lp_dialect_upstream_ep(LP_EP_RESPONSES, LP_PROTO_OPENAI), LP_EP_RESPONSES);
    assert_int_equal(lp_dialect_upstream_ep(LP_EP_COUNT_TOKENS, LP_PROTO_OPENAI),
                     LP_EP_COUNT_TOKENS);
    struct lp_backend ob = {.protocol = LP_PROTO_OPENAI, .dialect = LP_DIALECT_OPENAI};
    struct lp_route plain = {0}, to_anth = {.has_protocol = true, .protocol = LP_PROTO_ANTHROPIC},
                    same = {.has_protocol = true, .protocol = LP_PROTO_OPENAI};
    assert_int_equal(lp_dialect_of_route(&ob, &plain), LP_DIALECT_OPENAI);
    assert_int_equal(lp_dialect_of_route(&ob, &to_anth), LP_DIALECT_ANTHROPIC);
    assert_int_equal(lp_dialect_of_route(&ob, &same), LP_DIALECT_OPENAI);
    assert_int_equal(lp_dialect_of_route(&ob, NULL), LP_DIALECT_OPENAI);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_safety),     cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_client_proto),    cmocka_unit_test(test_query_filter),
        cmocka_unit_test(test_dialect_urls),    cmocka_unit_test(test_dialect_auth),
        cmocka_unit_test(test_dialect_routing), cmocka_unit_test(test_dialect_azure),
        cmocka_unit_test(test_dialect_google),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
