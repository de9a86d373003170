/* test_classify.c - error classification over real provider error bodies, overrides, hints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "classify.h"

/* 2025-01-01T00:00:00Z */
#define NOW_WALL 1735689600000LL

/* Real bodies as the providers send them (ids shortened). */
static const char OPENAI_QUOTA[] =
    "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan and "
    "billing details.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":"
    "\"insufficient_quota\"}}";
static const char OPENAI_RATE[] =
    "{\"error\":{\"message\":\"Rate limit reached for gpt-4o in organization org-abc on tokens "
    "per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.\","
    "\"type\":\"tokens\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
static const char OPENAI_KEY[] =
    "{\"error\":{\"message\":\"Incorrect API key provided: sk-proj-abcdef1234567890XYZ. You can "
    "find your API key at https://platform.openai.com/account/api-keys.\",\"type\":"
    "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
static const char OPENAI_CONTEXT[] =
    "{\"error\":{\"message\":\"This model's maximum context length is 128000 tokens. However, "
    "your messages resulted in 130512 tokens. Please reduce the length of the messages.\","
    "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":"
    "\"context_length_exceeded\"}}";
static const char OPENAI_MODEL[] =
    "{\"error\":{\"message\":\"The model `gpt-5-turbo` does not exist or you do not have access "
    "to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}";
static const char OPENAI_SERVER[] =
    "{\"error\":{\"message\":\"The server had an error while processing your request. Sorry "
    "about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
static const char OPENAI_POLICY[] =
    "{\"error\":{\"code\":\"content_policy_violation\",\"message\":\"Your request was rejected as "
    "a result of our safety system.\",\"param\":null,\"type\":\"invalid_request_error\"}}";
static const char OPENAI_BAD_PARAM[] =
    "{\"error\":{\"message\":\"Invalid type for 'temperature': expected a decimal, but got a "
    "string instead.\",\"type\":\"invalid_request_error\",\"param\":\"temperature\",\"code\":"
    "\"invalid_type\"}}";

static const char ANTH_OVERLOADED[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
static const char ANTH_RATE[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"This request "
    "would exceed your organization's rate limit of 50 requests per minute.\"}}";
static const char ANTH_AUTH[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid "
    "x-api-key\"}}";
static const char ANTH_PERM[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"Your API key does "
    "not have permission to use the specified resource.\"}}";
static const char ANTH_TOO_LONG[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is "
    "too long: 208473 tokens > 200000 maximum\"}}";
static const char ANTH_MODEL[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"model: "
    "claude-3-opus-latestx\"},\"request_id\":\"req_011\"}";
static const char ANTH_API[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server "
    "error\"}}";
static const char ANTH_BAD[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
    "\"messages.1.content.0.tool_result.tool_use_id: unexpected tool_use_id\"}}";
static const char ANTH_CREDIT[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Your credit "
    "balance is too low to access the Anthropic API. Please go to Plans & Billing.\"}}";

static const char AZURE_FILTER[] =
    "{\"error\":{\"message\":\"The response was filtered due to the prompt triggering Azure "
    "OpenAI's content management policy.\",\"type\":null,\"param\":\"prompt\",\"code\":"
    "\"content_filter\",\"status\":400,\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\","
    "\"content_filter_result\":{\"hate\":{\"filtered\":true,\"severity\":\"high\"}}}}}";
static const char AZURE_429[] =
    "{\"error\":{\"code\":\"429\",\"message\":\"Requests to the ChatCompletions_Create Operation "
    "under Azure OpenAI API version 2024-02-01 have exceeded token rate limit of your current "
    "OpenAI S0 pricing tier. Please retry after 6 seconds.\"}}";

static const char DEEPSEEK_402[] =
    "{\"error\":{\"message\":\"Insufficient Balance\",\"type\":\"unknown_error\",\"param\":null,"
    "\"code\":\"invalid_request_error\"}}";
static const char DEEPSEEK_400[] =
    "{\"error\":{\"message\":\"Failed to deserialize the JSON body into the target type: "
    "messages[0]: missing field `content` at line 1 column 40\",\"type\":"
    "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_request_error\"}}";

static const char GEMINI_429[] =
    "[{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\","
    "\"status\":\"RESOURCE_EXHAUSTED\"}}]";
static const char GEMINI_503[] =
    "{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\","
    "\"status\":\"UNAVAILABLE\"}}";

static const char RELAY_BUSY[] =
    "{\"error\":{\"message\":\"upstream_all_accounts_busy\",\"type\":\"upstream_error\","
    "\"code\":\"upstream_all_accounts_busy\"}}";
static const char RELAY_NO_ACCOUNTS[] =
    "{\"error\":{\"message\":\"no eligible accounts for this model\",\"type\":\"api_error\","
    "\"code\":\"upstream_no_eligible_accounts\"}}";
static const char RELAY_SYSBUSY[] =
    "{\"code\":500,\"msg\":\"系统繁忙，请稍后再试\",\"success\":false}";
static const char RELAY_SYSBUSY_200[] = "{\"code\":\"10001\",\"message\":\"系统繁忙，请稍后重试\"}";
static const char MINIMAX_2013[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"bad_request_error\",\"message\":\"invalid params, "
    "invalid chat setting (2013)\",\"http_code\":\"400\"},\"request_id\":\"04e1b8\"}";
static const char ORG_DISABLED[] =
    "{\"error\":{\"message\":\"This organization has been disabled.\",\"type\":"
    "\"invalid_request_error\",\"param\":null,\"code\":null}}";
static const char NGINX_502[] =
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    "Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
static const char OLLAMA_404[] =
    "{\"error\":\"model 'llama3:70b' not found, try pulling it first\"}";
static const char OPENAI_SSE_ERR[] =
    "{\"error\":{\"message\":\"The server had an error processing your request.\",\"type\":"
    "\"server_error\",\"param\":null,\"code\":null}}";
static const char ANTH_SSE_BAD[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"}}";
static const char OK_CHAT[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
    "{\"role\":\"assistant\",\"content\":\"the quota is fine, no rate limit\"}}]}";
static const char OK_ANTH[] =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[]}";

enum { Y = 1, N = 0 };

/* Provider shapes (issue 16): Gemini, Azure, Groq, Cohere. */
static const char GEMINI_KEY_INVALID[] =
    "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\","
    "\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
    "ErrorInfo\",\"reason\":\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}";
static const char GEMINI_CONTEXT[] =
    "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds the maximum "
    "number of tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}";
static const char GEMINI_REGION[] =
    "{\"error\":{\"code\":400,\"message\":\"User location is not supported for the API use.\","
    "\"status\":\"FAILED_PRECONDITION\"}}";
static const char GEMINI_BAD_FIELD[] =
    "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received. Unknown name "
    "\\\"foo\\\": Cannot find field.\",\"status\":\"INVALID_ARGUMENT\"}}";
static const char GEMINI_NO_CALLERS[] =
    "{\"error\":{\"code\":403,\"message\":\"Method doesn't allow unregistered callers\","
    "\"status\":\"PERMISSION_DENIED\"}}";
static const char GEMINI_MODEL_404[] =
    "{\"error\":{\"code\":404,\"message\":\"models/gemini-9 is not found for API version "
    "v1beta, or is not supported for generateContent.\",\"status\":\"NOT_FOUND\"}}";
static const char AZURE_DEPLOYMENT[] =
    "{\"error\":{\"code\":\"DeploymentNotFound\",\"message\":\"The API deployment for this "
    "resource does not exist. If you created the deployment within the last 5 minutes, please "
    "wait a moment and try again.\"}}";
static const char AZURE_KEY[] =
    "{\"error\":{\"code\":\"401\",\"message\":\"Access denied due to invalid subscription key or "
    "wrong API endpoint. Make sure to provide a valid key for an active subscription and use a "
    "correct regional API endpoint for your resource.\"}}";
static const char AZURE_OP[] =
    "{\"error\":{\"code\":\"OperationNotSupported\",\"message\":\"The chatCompletion operation "
    "does not work with the specified model, text-embedding-ada-002. Please choose different "
    "model and try again.\"}}";
static const char AZURE_404[] = "{\"error\":{\"code\":\"404\",\"message\":\"Resource not found\"}}";
static const char GROQ_DECOMMISSIONED[] =
    "{\"error\":{\"message\":\"The model `mixtral-8x7b-32768` has been decommissioned and is no "
    "longer supported.\",\"type\":\"invalid_request_error\",\"code\":\"model_decommissioned\"}}";
static const char GROQ_498[] =
    "{\"error\":{\"message\":\"Flex tier capacity exceeded. This model is currently at capacity; "
    "please try again later.\",\"type\":\"capacity_exceeded\",\"code\":\"capacity_exceeded\"}}";
static const char COHERE_TOKEN[] = "{\"id\":\"x\",\"message\":\"invalid api token\"}";

struct row {
    const char *name;
    enum lp_transport tr;
    int status;
    const char *body;
    bool sse;
    enum lp_err_class cls;
    int failover, cooldown, breaker;
};

static const struct row rows[] = {
    {"openai quota 429", 0, 429, OPENAI_QUOTA, 0, LP_CLASS_QUOTA, Y, Y, Y},
    {"openai rate 429", 0, 429, OPENAI_RATE, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"openai key 401", 0, 401, OPENAI_KEY, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"openai context 400", 0, 400, OPENAI_CONTEXT, 0, LP_CLASS_CONTEXT_LENGTH, N, N, N},
    {"openai model 404", 0, 404, OPENAI_MODEL, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"openai server 500", 0, 500, OPENAI_SERVER, 0, LP_CLASS_SERVER, Y, Y, Y},
    {"openai policy 400", 0, 400, OPENAI_POLICY, 0, LP_CLASS_CONTENT_POLICY, N, N, N},
    {"openai bad param 400", 0, 400, OPENAI_BAD_PARAM, 0, LP_CLASS_CLIENT, N, N, N},
    {"anthropic overloaded 529", 0, 529, ANTH_OVERLOADED, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"anthropic rate 429", 0, 429, ANTH_RATE, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"anthropic auth 401", 0, 401, ANTH_AUTH, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"anthropic perm 403", 0, 403, ANTH_PERM, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"anthropic too long 400", 0, 400, ANTH_TOO_LONG, 0, LP_CLASS_CONTEXT_LENGTH, N, N, N},
    {"anthropic model 404", 0, 404, ANTH_MODEL, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"anthropic api 500", 0, 500, ANTH_API, 0, LP_CLASS_SERVER, Y, Y, Y},
    {"anthropic bad 400", 0, 400, ANTH_BAD, 0, LP_CLASS_CLIENT, N, N, N},
    {"anthropic credit 400", 0, 400, ANTH_CREDIT, 0, LP_CLASS_QUOTA, Y, Y, Y},
    {"anthropic sse overloaded", 0, 200, ANTH_OVERLOADED, Y, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"anthropic sse invalid", 0, 200, ANTH_SSE_BAD, Y, LP_CLASS_CLIENT, N, N, N},
    {"openai sse server", 0, 200, OPENAI_SSE_ERR, Y, LP_CLASS_SERVER, Y, Y, Y},
    {"sse unparseable", 0, 200, "oops", Y, LP_CLASS_SERVER, Y, Y, Y},
    {"azure filter 400", 0, 400, AZURE_FILTER, 0, LP_CLASS_CONTENT_POLICY, N, N, N},
    {"azure 429", 0, 429, AZURE_429, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"deepseek 402", 0, 402, DEEPSEEK_402, 0, LP_CLASS_QUOTA, Y, Y, Y},
    {"deepseek 400", 0, 400, DEEPSEEK_400, 0, LP_CLASS_CLIENT, N, N, N},
    {"gemini array 429", 0, 429, GEMINI_429, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"gemini array in 200", 0, 200, GEMINI_429, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"gemini 503", 0, 503, GEMINI_503, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"gemini key invalid 400", 0, 400, GEMINI_KEY_INVALID, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"gemini context 400", 0, 400, GEMINI_CONTEXT, 0, LP_CLASS_CONTEXT_LENGTH, N, N, N},
    {"gemini region 400", 0, 400, GEMINI_REGION, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"gemini bad field 400", 0, 400, GEMINI_BAD_FIELD, 0, LP_CLASS_CLIENT, N, N, N},
    {"gemini no callers 403", 0, 403, GEMINI_NO_CALLERS, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"gemini model 404", 0, 404, GEMINI_MODEL_404, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"azure deployment 404", 0, 404, AZURE_DEPLOYMENT, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"azure key 401", 0, 401, AZURE_KEY, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"azure op 400", 0, 400, AZURE_OP, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"azure 404", 0, 404, AZURE_404, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"groq decommissioned 404", 0, 404, GROQ_DECOMMISSIONED, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"groq decommissioned 400", 0, 400, GROQ_DECOMMISSIONED, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"groq 498", 0, 498, GROQ_498, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"cohere token 401", 0, 401, COHERE_TOKEN, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"relay all busy 503", 0, 503, RELAY_BUSY, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"relay no accounts 503", 0, 503, RELAY_NO_ACCOUNTS, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"relay sysbusy 500", 0, 500, RELAY_SYSBUSY, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"relay sysbusy in 200", 0, 200, RELAY_SYSBUSY_200, 0, LP_CLASS_OVERLOADED, Y, Y, Y},
    {"minimax 2013 400", 0, 400, MINIMAX_2013, 0, LP_CLASS_CLIENT, N, N, N},
    {"org disabled 400", 0, 400, ORG_DISABLED, 0, LP_CLASS_AUTH, Y, Y, Y},
    {"nginx html 502", 0, 502, NGINX_502, 0, LP_CLASS_SERVER, Y, Y, Y},
    {"empty 503", 0, 503, "", 0, LP_CLASS_SERVER, Y, Y, Y},
    {"empty 429", 0, 429, NULL, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"empty 400", 0, 400, "", 0, LP_CLASS_CLIENT, N, N, N},
    {"empty 404", 0, 404, "", 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"text 413", 0, 413, "Request Entity Too Large", 0, LP_CLASS_CLIENT, N, N, N},
    {"ollama 404", 0, 404, OLLAMA_404, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"gateway 504", 0, 504, "Gateway Time-out", 0, LP_CLASS_TIMEOUT, Y, Y, Y},
    /* Truncated JSON: keywords are searched in the raw text instead. */
    {"truncated json 500", 0, 500, "{\"error\":{\"type\":\"overloaded_er", 0, LP_CLASS_OVERLOADED,
     Y, Y, Y},
    {"truncated json 400", 0, 400, "{\"error\":{\"message\":\"prompt is too lo", 0, LP_CLASS_CLIENT,
     N, N, N},
    {"redirect 301", 0, 301, "", 0, LP_CLASS_SERVER, Y, Y, Y},
    {"ok chat", 0, 200, OK_CHAT, 0, LP_CLASS_OK, N, N, N},
    {"ok anthropic", 0, 200, OK_ANTH, 0, LP_CLASS_OK, N, N, N},
    {"ok truncated", 0, 200, "{\"id\":\"chatcmpl", 0, LP_CLASS_OK, N, N, N},
    {"connect", LP_TR_CONNECT, 0, NULL, 0, LP_CLASS_NETWORK, Y, Y, Y},
    {"tls", LP_TR_TLS, 0, NULL, 0, LP_CLASS_NETWORK, Y, Y, Y},
    {"reset", LP_TR_RESET, 0, NULL, 0, LP_CLASS_NETWORK, Y, Y, Y},
    {"dns", LP_TR_DNS, 0, NULL, 0, LP_CLASS_NETWORK, Y, Y, Y},
    {"ttft timeout", LP_TR_TIMEOUT_TTFT, 0, NULL, 0, LP_CLASS_TIMEOUT, Y, Y, Y},
    {"read timeout", LP_TR_TIMEOUT_READ, 0, NULL, 0, LP_CLASS_TIMEOUT, Y, Y, Y},
    {"protocol", LP_TR_PROTOCOL, 0, NULL, 0, LP_CLASS_SERVER, Y, Y, Y},
    /* Our own shortage (no fds): nobody's fault, no failover (the next try fails the same). */
    {"local", LP_TR_LOCAL, 0, NULL, 0, LP_CLASS_LOCAL, N, N, N},
};

/* On an optional endpoint (anything but chat completions / messages) a 404, 405 or 501 that
 * does not name the model means "this backend does not serve it": try the next route, but
 * never cool the route down or count for its breaker (a client choosing /v1/responses on a
 * chat-only relay must not take that relay away from everyone). */
static const struct row optional_rows[] = {
    {"empty 404", 0, 404, "", 0, LP_CLASS_UNSUPPORTED, Y, N, N},
    {"html 404", 0, 404, "<html>Not Found</html>", 0, LP_CLASS_UNSUPPORTED, Y, N, N},
    {"json 404", 0, 404,
     "{\"error\":{\"message\":\"Not found\",\"type\":\"invalid_request_error\"}}", 0,
     LP_CLASS_UNSUPPORTED, Y, N, N},
    {"405", 0, 405, "Method Not Allowed", 0, LP_CLASS_UNSUPPORTED, Y, N, N},
    {"501", 0, 501, "", 0, LP_CLASS_UNSUPPORTED, Y, N, N},
    /* Still about the model: cooled as before. */
    {"openai model 404", 0, 404, OPENAI_MODEL, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    {"ollama 404", 0, 404, OLLAMA_404, 0, LP_CLASS_MODEL_NOT_FOUND, Y, Y, Y},
    /* Other statuses are unchanged. */
    {"openai rate 429", 0, 429, OPENAI_RATE, 0, LP_CLASS_RATE_LIMIT, Y, Y, Y},
    {"empty 400", 0, 400, "", 0, LP_CLASS_CLIENT, N, N, N},
    {"empty 503", 0, 503, "", 0, LP_CLASS_SERVER, Y, Y, Y},
};

static void test_optional_endpoint(void **state)
{
    (void)state;
    struct lp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fallback.cooldown_seconds = 60;
    for (size_t i = 0; i < sizeof optional_rows / sizeof optional_rows[0]; i++) {
        const struct row *r = &optional_rows[i];
        struct lp_classify_in in = {.transport = r->tr,
                                    .status = r->status,
                                    .body = r->body,
                                    .body_len = r->body ? strlen(r->body) : 0,
                                    .optional_endpoint = true,
                                    .now_wall_ms = 0};
        struct lp_decision d;
        lp_classify(&in, &cfg, &d);
        if (d.cls != r->cls || d.failover != r->failover || d.cooldown != r->cooldown ||
            d.breaker_failure != r->breaker)
            fail_msg("%s: got %s failover=%d cooldown=%d breaker=%d, want %s", r->name,
                     lp_class_name(d.cls), d.failover, d.cooldown, d.breaker_failure,
                     lp_class_name(r->cls));
    }
    /* Even a user override that forces failover on 404 never cools an unsupported endpoint. */
    char *codes[] = {"404", "4xx"};
    cfg.detection.error_codes = codes;
    cfg.detection.n_error_codes = 2;
    struct lp_classify_in in = {.status = 404, .body = "", .optional_endpoint = true};
    struct lp_decision d;
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cls, LP_CLASS_UNSUPPORTED);
    assert_false(d.cooldown);
    assert_false(d.breaker_failure);
}

static struct lp_config base_cfg(void)
{
    struct lp_config c;
    memset(&c, 0, sizeof c);
    c.fallback.cooldown_seconds = 60;
    return c;
}

static void classify_row(const struct row *r, const struct lp_config *cfg, struct lp_decision *d)
{
    struct lp_classify_in in = {.transport = r->tr,
                                .status = r->status,
                                .body = r->body,
                                .body_len = r->body ? strlen(r->body) : 0,
                                .from_sse_event = r->sse,
                                .now_wall_ms = NOW_WALL};
    lp_classify(&in, cfg, d);
}

static void test_table(void **state)
{
    struct lp_config cfg = base_cfg();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        struct lp_decision d;
        classify_row(r, &cfg, &d);
        if (d.cls != r->cls || d.failover != r->failover || d.cooldown != r->cooldown ||
            d.breaker_failure != r->breaker)
            fail_msg("%s: got %s failover=%d cooldown=%d breaker=%d (reason \"%s\"), want %s",
                     r->name, lp_class_name(d.cls), d.failover, d.cooldown, d.breaker_failure,
                     d.reason, lp_class_name(r->cls));
        if (d.cooldown)
            assert_int_equal(d.cooldown_ms, 60000);
        if (d.cls != LP_CLASS_OK)
            assert_true(d.reason[0] != '\0');
        assert_false(d.forced);
    }
}

static void test_reason_masks_and_truncates(void **state)
{
    struct lp_decision d;
    struct lp_classify_in in = {.status = 401, .body = OPENAI_KEY, .body_len = strlen(OPENAI_KEY)};
    lp_classify(&in, NULL, &d);
    assert_null(strstr(d.reason, "abcdef1234567890"));
    assert_non_null(strstr(d.reason, "sk-***"));
    assert_non_null(strstr(d.reason, "401 invalid_api_key"));

    /* Multi-byte text truncated at the end of reason[] leaves valid UTF-8 (no dangling lead). */
    char body[600];
    size_t bl = (size_t)snprintf(body, sizeof body, "{\"code\":500,\"msg\":\"");
    for (int i = 0; i < 60; i++)
        bl += (size_t)snprintf(body + bl, sizeof body - bl, "繁");
    snprintf(body + bl, sizeof body - bl, "\"}");
    in = (struct lp_classify_in){.status = 500, .body = body, .body_len = strlen(body)};
    lp_classify(&in, NULL, &d);
    size_t n = strlen(d.reason);
    assert_true(n < sizeof d.reason);
    /* Every 繁 is 3 bytes: count the bytes after "500 " that belong to the message. */
    const char *msg = strstr(d.reason, ": ");
    assert_non_null(msg);
    assert_int_equal(strlen(msg + 2) % 3, 0);
}

static void test_cooldown_hints(void **state)
{
    struct lp_config cfg = base_cfg();
    cfg.fallback.cooldown_seconds = 10;
    struct lp_decision d;
    struct lp_classify_in in = {
        .status = 429, .body = AZURE_429, .body_len = strlen(AZURE_429), .now_wall_ms = NOW_WALL};
    in.retry_after = "6"; /* shorter than the configured cooldown: the cooldown stays */
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 10000);
    assert_int_equal(d.hint_ms, 6000);

    in.retry_after = "120";
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 120000);

    in.retry_after = "Wed, 01 Jan 2025 00:05:00 GMT"; /* 5 minutes after NOW_WALL */
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 300000);

    in.retry_after = NULL;
    in.ratelimit_reset[0] = "1s";
    in.ratelimit_reset[1] = "6m0s"; /* the longest hint wins */
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 360000);

    in.ratelimit_reset[0] = in.ratelimit_reset[1] = NULL;
    in.retry_after_ms = "45000";
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 45000);

    in.retry_after_ms = NULL;
    in.retry_after = "99999999"; /* absurd: clamped */
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, LP_CLASSIFY_MAX_HINT_MS);

    /* A hint on a non-rate-limit class (500) does not stretch the cooldown. */
    in = (struct lp_classify_in){.status = 500, .retry_after = "600", .now_wall_ms = NOW_WALL};
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 10000);

    /* cooldown_seconds <= 0 -> 60 s. */
    cfg.fallback.cooldown_seconds = 0;
    lp_classify(&in, &cfg, &d);
    assert_int_equal(d.cooldown_ms, 60000);
}

static void test_parse_retry_after(void **state)
{
    struct {
        const char *v;
        bool ok;
        int64_t ms;
    } cases[] = {
        {"0", true, 0},
        {"30", true, 30000},
        {" 1.5 ", true, 1500},
        {"Wed, 01 Jan 2025 00:01:00 GMT", true, 60000},
        {"Wednesday, 01-Jan-25 00:00:10 GMT", true, 10000},
        {"Wed Jan  1 00:00:20 2025", true, 20000},
        {"Tue, 31 Dec 2024 23:00:00 GMT", true, 0}, /* past */
        {"", false, 0},
        {"-5", false, 0},
        {"soon", false, 0},
        {"30s", false, 0},
        {"Wed, 01 Jan 2025 00:01:00 GMT junk", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;
        bool ok = lp_parse_retry_after(cases[i].v, NOW_WALL, &ms);
        if (ok != cases[i].ok || (ok && ms != cases[i].ms))
            fail_msg("retry-after \"%s\": ok=%d ms=%lld", cases[i].v, ok, (long long)ms);
    }
    int64_t ms;
    assert_false(lp_parse_retry_after(NULL, NOW_WALL, &ms));
}

static void test_parse_ratelimit_reset(void **state)
{
    struct {
        const char *v;
        bool ok;
        int64_t ms;
    } cases[] = {
        {"1s", true, 1000},
        {"6m0s", true, 360000},
        {"20ms", true, 20},
        {"1h2m3.5s", true, 3723500},
        {"0.5", true, 500},
        {"17", true, 17000},
        {"2025-01-01T00:00:30Z", true, 30000},
        {"2025-01-01T00:00:30.250Z", true, 30250},
        {"2025-01-01T08:01:00+08:00", true, 60000},
        {"2024-12-31T00:00:00Z", true, 0},
        {"1735689660", true, 60000},   /* Unix seconds */
        {"1735689605000", true, 5000}, /* Unix ms */
        {"6x", false, 0},
        {"2025-01-01T00:00:30", false, 0}, /* no zone */
        {"", false, 0},
        {"m", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;
        bool ok = lp_parse_ratelimit_reset(cases[i].v, NOW_WALL, &ms);
        if (ok != cases[i].ok || (ok && ms != cases[i].ms))
            fail_msg("reset \"%s\": ok=%d ms=%lld", cases[i].v, ok, (long long)ms);
    }
}

static void test_reset_header_names(void **state)
{
    assert_true(lp_classify_is_reset_header("x-ratelimit-reset-requests"));
    assert_true(lp_classify_is_reset_header("X-RateLimit-Reset-Tokens"));
    assert_true(lp_classify_is_reset_header("x-ratelimit-reset"));
    assert_true(lp_classify_is_reset_header("anthropic-ratelimit-requests-reset"));
    assert_true(lp_classify_is_reset_header("anthropic-ratelimit-output-tokens-reset"));
    assert_false(lp_classify_is_reset_header("x-ratelimit-remaining-requests"));
    assert_false(lp_classify_is_reset_header("x-ratelimit-resetx"));
    assert_false(lp_classify_is_reset_header("anthropic-ratelimit-requests-limit"));
    assert_false(lp_classify_is_reset_header("retry-after"));
    assert_false(lp_classify_is_reset_header(NULL));
}

/* ---- overrides ---- */

static char *reference_patterns[] = {"insufficient_quota",
                                     "rate_limit",
                                     "exceeded",
                                     "billing",
                                     "quota",
                                     "organization has been disabled",
                                     "upstream_all_accounts_busy",
                                     "upstream_no_eligible_accounts",
                                     "invalid chat setting"};
static char *wildcards[] = {"4xx", "5xx"};

static void decide(const struct lp_config *cfg, int status, const char *body, struct lp_decision *d)
{
    struct lp_classify_in in = {.status = status,
                                .body = body,
                                .body_len = body ? strlen(body) : 0,
                                .now_wall_ms = NOW_WALL};
    lp_classify(&in, cfg, d);
}

static void test_detection_wildcards_do_not_fail_over_client_errors(void **state)
{
    struct lp_config cfg = base_cfg();
    cfg.detection.error_codes = wildcards;
    cfg.detection.n_error_codes = 2;
    struct lp_decision d;
    decide(&cfg, 400, DEEPSEEK_400, &d);
    assert_false(d.failover);
    assert_false(d.cooldown);
    decide(&cfg, 400, OPENAI_POLICY, &d);
    assert_false(d.failover);
    decide(&cfg, 500, OPENAI_SERVER, &d); /* still fails over, as classified */
    assert_true(d.failover);
    assert_false(d.forced);
}

static void test_detection_exact_code_forces(void **state)
{
    struct lp_config cfg = base_cfg();
    char *codes[] = {"429", "400", "garbage"};
    cfg.detection.error_codes = codes;
    cfg.detection.n_error_codes = 3;
    struct lp_decision d;
    decide(&cfg, 400, DEEPSEEK_400, &d);
    assert_int_equal(d.cls, LP_CLASS_CLIENT);
    assert_true(d.failover);
    assert_true(d.forced);
    assert_false(d.cooldown);        /* the backend is healthy */
    assert_false(d.breaker_failure); /* and not counted against it */
    decide(&cfg, 422, "{}", &d);
    assert_false(d.failover);
    decide(&cfg, 200, OK_CHAT, &d); /* never on success */
    assert_int_equal(d.cls, LP_CLASS_OK);
    assert_false(d.failover);
}

static void test_detection_patterns(void **state)
{
    struct lp_config cfg = base_cfg();
    cfg.detection.error_patterns = reference_patterns;
    cfg.detection.n_error_patterns = sizeof reference_patterns / sizeof reference_patterns[0];
    struct lp_decision d;
    decide(&cfg, 400, MINIMAX_2013, &d); /* "invalid chat setting" */
    assert_true(d.failover);
    assert_true(d.forced);
    assert_false(d.cooldown);
    decide(&cfg, 400, OPENAI_CONTEXT, &d); /* "exceeded" matches: next backend, no cooldown */
    assert_int_equal(d.cls, LP_CLASS_CONTEXT_LENGTH);
    assert_true(d.failover);
    assert_false(d.cooldown);
    decide(&cfg, 400, ANTH_BAD, &d); /* nothing matches */
    assert_false(d.failover);

    char *cs[] = {"Invalid Chat Setting"}; /* detection patterns are case-sensitive */
    cfg.detection.error_patterns = cs;
    cfg.detection.n_error_patterns = 1;
    decide(&cfg, 400, MINIMAX_2013, &d);
    assert_false(d.failover);
    decide(&cfg, 200, OK_CHAT, &d); /* a pattern inside a successful answer is ignored */
    assert_int_equal(d.cls, LP_CLASS_OK);
}

static void test_error_fallback_client(void **state)
{
    struct lp_config cfg = base_cfg();
    int codes[] = {401, 403, 429, 422};
    char *pats[] = {"INVALID CHAT SETTING"}; /* case-insensitive */
    cfg.error_fallback = (struct lp_error_fallback_cfg){.present = true,
                                                        .server_error_enabled = true,
                                                        .client_error_enabled = true,
                                                        .client_codes = codes,
                                                        .n_client_codes = 4,
                                                        .client_patterns = pats,
                                                        .n_client_patterns = 1};
    struct lp_decision d;
    decide(&cfg, 422, "{\"detail\":\"bad\"}", &d);
    assert_true(d.failover);
    assert_true(d.forced);
    decide(&cfg, 400, MINIMAX_2013, &d);
    assert_true(d.failover);
    decide(&cfg, 400, DEEPSEEK_400, &d);
    assert_false(d.failover);

    cfg.error_fallback.client_error_enabled = false; /* codes/patterns inactive */
    decide(&cfg, 400, MINIMAX_2013, &d);
    assert_false(d.failover);
    decide(&cfg, 429, OPENAI_RATE, &d); /* overrides never remove a classified failover */
    assert_true(d.failover);
}

static void test_error_fallback_server_disabled(void **state)
{
    struct lp_config cfg = base_cfg();
    cfg.error_fallback.present = true;
    cfg.error_fallback.server_error_enabled = false;
    struct lp_decision d;
    decide(&cfg, 500, OPENAI_SERVER, &d);
    assert_int_equal(d.cls, LP_CLASS_SERVER);
    assert_false(d.failover);
    assert_false(d.cooldown);
    assert_true(d.breaker_failure); /* still evidence that the backend is unhealthy */
    decide(&cfg, 529, ANTH_OVERLOADED, &d);
    assert_false(d.failover);
    decide(&cfg, 429, ANTH_RATE, &d); /* not a 5xx */
    assert_true(d.failover);
    struct lp_classify_in in = {.transport = LP_TR_CONNECT};
    lp_classify(&in, &cfg, &d); /* transport failures are not "server errors" */
    assert_true(d.failover);

    /* Absent block (present=false): 5xx fails over even though the flag is false. */
    cfg.error_fallback.present = false;
    decide(&cfg, 500, OPENAI_SERVER, &d);
    assert_true(d.failover);

    /* An explicit pattern beats server_error.enabled:false. */
    cfg.error_fallback.present = true;
    char *pats[] = {"had an error"};
    cfg.detection.error_patterns = pats;
    cfg.detection.n_error_patterns = 1;
    decide(&cfg, 500, OPENAI_SERVER, &d);
    assert_true(d.failover);
    assert_true(d.cooldown);
}

static void test_class_names(void **state)
{
    assert_string_equal(lp_class_name(LP_CLASS_NETWORK), "network");
    assert_string_equal(lp_class_name(LP_CLASS_CONTEXT_LENGTH), "context_length");
    assert_string_equal(lp_class_name(LP_CLASS_MODEL_NOT_FOUND), "model_not_found");
    assert_string_equal(lp_class_name(LP_CLASS__COUNT), "?");
    for (int c = 0; c < LP_CLASS__COUNT; c++)
        assert_non_null(lp_class_name((enum lp_err_class)c));
    assert_false(lp_class_fails_over(LP_CLASS_OK));
    assert_false(lp_class_fails_over(LP_CLASS_CLIENT));
    assert_true(lp_class_fails_over(LP_CLASS_QUOTA));
}

/* Garbage bodies never crash and always produce a decision. */
static void test_garbage_bodies(void **state)
{
    const char *bodies[] = {"[",
                            "[]",
                            "[1,2]",
                            "{\"error\":[1]}",
                            "{\"error\":{\"code\":{}}}",
                            "{\"error\":null}",
                            "null",
                            "\"str\"",
                            "{\"code\":1e999,\"message\":1}",
                            "{\"base_resp\":{\"status_code\":\"x\"}}",
                            "\xff\xfe\x00\x01"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct lp_decision d;
        struct lp_classify_in in = {
            .status = 500, .body = bodies[i], .body_len = strlen(bodies[i]) + (i == 10 ? 2 : 0)};
        lp_classify(&in, NULL, &d);
        assert_int_equal(d.cls, LP_CLASS_SERVER);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optional_endpoint),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_reason_masks_and_truncates),
        cmocka_unit_test(test_cooldown_hints),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test(test_parse_ratelimit_reset),
        cmocka_unit_test(test_reset_header_names),
        cmocka_unit_test(test_detection_wildcards_do_not_fail_over_client_errors),
        cmocka_unit_test(test_detection_exact_code_forces),
        cmocka_unit_test(test_detection_patterns),
        cmocka_unit_test(test_error_fallback_client),
        cmocka_unit_test(test_error_fallback_server_disabled),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_garbage_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
