/* classify.c - pure error classification. See classify.h for the order of evidence and the
 * override precedence; docs/internals/resilience.md has the full table. */
#include "classify.h"

#include "mask.h"
#include "util/buf.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/json.h"

/* ---- class names and defaults ---------------------------------------------------------------- */

static const char *const class_names[LP_CLASS__COUNT] = {
    [LP_CLASS_OK] = "ok",
    [LP_CLASS_NETWORK] = "network",
    [LP_CLASS_TIMEOUT] = "timeout",
    [LP_CLASS_RATE_LIMIT] = "rate_limit",
    [LP_CLASS_OVERLOADED] = "overloaded",
    [LP_CLASS_SERVER] = "server",
    [LP_CLASS_AUTH] = "auth",
    [LP_CLASS_QUOTA] = "quota",
    [LP_CLASS_CONTEXT_LENGTH] = "context_length",
    [LP_CLASS_CONTENT_POLICY] = "content_policy",
    [LP_CLASS_MODEL_NOT_FOUND] = "model_not_found",
    [LP_CLASS_CLIENT] = "client",
    [LP_CLASS_UNSUPPORTED] = "unsupported",
    [LP_CLASS_LOCAL] = "local",
};

enum lp_err_class lp_class_by_name(const char *name)
{
    for (int c = 0; name && c < LP_CLASS__COUNT; c++)
        if (class_names[c] && strcmp(class_names[c], name) == 0)
            return (enum lp_err_class)c;
    return LP_CLASS_SERVER;
}

const char *lp_class_name(enum lp_err_class c)
{
    if ((int)c < 0 || c >= LP_CLASS__COUNT)
        return "?";
    return class_names[c];
}

/* Request-shape classes: the request, not the backend, is at fault. */
static bool is_request_shape(enum lp_err_class c)
{
    return c == LP_CLASS_CLIENT || c == LP_CLASS_CONTEXT_LENGTH || c == LP_CLASS_CONTENT_POLICY;
}

bool lp_class_fails_over(enum lp_err_class c)
{
    return c > LP_CLASS_OK && c < LP_CLASS__COUNT && !is_request_shape(c) && c != LP_CLASS_LOCAL;
}

/* Classes that say something about the backend's health (cooldown, breaker). */
static bool blames_backend(enum lp_err_class c)
{
    return lp_class_fails_over(c) && c != LP_CLASS_UNSUPPORTED;
}

/* ---- token and keyword tables ---------------------------------------------------------------- */

/* A needle searched case-insensitively inside a JSON error token (code/type/status). Order
 * matters: the first entry that matches any token, token by token, decides. */
struct needle {
    const char *s;
    enum lp_err_class cls;
};

/* Tokens that name the failure precisely. */
static const struct needle specific_tokens[] = {
    {"context_length", LP_CLASS_CONTEXT_LENGTH},
    {"content_filter", LP_CLASS_CONTENT_POLICY},
    {"content_policy", LP_CLASS_CONTENT_POLICY},
    {"responsibleaipolicyviolation", LP_CLASS_CONTENT_POLICY},
    {"model_not_found", LP_CLASS_MODEL_NOT_FOUND},
    {"deploymentnotfound", LP_CLASS_MODEL_NOT_FOUND},    /* Azure */
    {"operationnotsupported", LP_CLASS_MODEL_NOT_FOUND}, /* Azure: wrong kind of deployment */
    {"model_decommissioned", LP_CLASS_MODEL_NOT_FOUND},  /* Groq */
    {"capacity_exceeded", LP_CLASS_OVERLOADED},          /* Groq 498 flex tier */
    {"insufficient_quota", LP_CLASS_QUOTA},
    {"insufficient_user_quota", LP_CLASS_QUOTA},
    {"insufficient_balance", LP_CLASS_QUOTA},
    {"billing", LP_CLASS_QUOTA},
    {"payment_required", LP_CLASS_QUOTA},
    {"rate_limit", LP_CLASS_RATE_LIMIT},
    {"ratelimit", LP_CLASS_RATE_LIMIT},
    {"too_many_requests", LP_CLASS_RATE_LIMIT},
    {"resource_exhausted", LP_CLASS_RATE_LIMIT},
    {"overloaded", LP_CLASS_OVERLOADED},
    {"accounts_busy", LP_CLASS_OVERLOADED},
    {"no_eligible_accounts", LP_CLASS_OVERLOADED},
    {"unavailable", LP_CLASS_OVERLOADED},
    {"deadline_exceeded", LP_CLASS_TIMEOUT},
    {"invalid_api_key", LP_CLASS_AUTH},
    {"authentication", LP_CLASS_AUTH},
    {"permission", LP_CLASS_AUTH},
    {"unauthenticated", LP_CLASS_AUTH},
    {"unauthorized", LP_CLASS_AUTH},
    {"deactivated", LP_CLASS_AUTH},
};

/* Tokens that only say "your request" or "our side": used when the status says nothing. */
static const struct needle generic_tokens[] = {
    {"invalid_request", LP_CLASS_CLIENT},   {"bad_request", LP_CLASS_CLIENT},
    {"invalid_argument", LP_CLASS_CLIENT},  {"failed_precondition", LP_CLASS_CLIENT},
    {"request_too_large", LP_CLASS_CLIENT}, {"not_found", LP_CLASS_MODEL_NOT_FOUND},
    {"api_error", LP_CLASS_SERVER},         {"server_error", LP_CLASS_SERVER},
    {"internal", LP_CLASS_SERVER},
};

/* Keywords in the human message (JSON) or the raw body (non-JSON). */
static const struct needle keywords[] = {
    {"prompt is too long", LP_CLASS_CONTEXT_LENGTH},
    {"maximum context length", LP_CLASS_CONTEXT_LENGTH},
    {"context length", LP_CLASS_CONTEXT_LENGTH},
    {"context window", LP_CLASS_CONTEXT_LENGTH},
    {"context_length_exceeded", LP_CLASS_CONTEXT_LENGTH},
    {"exceeds the maximum number of tokens", LP_CLASS_CONTEXT_LENGTH}, /* Gemini */
    {"content_policy", LP_CLASS_CONTENT_POLICY},
    {"content policy", LP_CLASS_CONTENT_POLICY},
    {"content management policy", LP_CLASS_CONTENT_POLICY},
    {"content_filter", LP_CLASS_CONTENT_POLICY},
    {"safety", LP_CLASS_CONTENT_POLICY},
    {"model_not_found", LP_CLASS_MODEL_NOT_FOUND},
    {"has been disabled", LP_CLASS_AUTH},
    {"location is not supported", LP_CLASS_AUTH}, /* Gemini region block */
    {"invalid subscription key", LP_CLASS_AUTH},  /* Azure */
    {"invalid api token", LP_CLASS_AUTH},         /* Cohere */
    {"invalid_api_key", LP_CLASS_AUTH},
    {"invalid api key", LP_CLASS_AUTH},
    {"incorrect api key", LP_CLASS_AUTH},
    {"invalid x-api-key", LP_CLASS_AUTH},
    {"api key not valid", LP_CLASS_AUTH},
    {"authentication", LP_CLASS_AUTH},
    {"rate limit", LP_CLASS_RATE_LIMIT},
    {"rate_limit", LP_CLASS_RATE_LIMIT},
    {"too many requests", LP_CLASS_RATE_LIMIT},
    {"insufficient_quota", LP_CLASS_QUOTA},
    {"insufficient balance", LP_CLASS_QUOTA},
    {"credit balance is too low", LP_CLASS_QUOTA},
    {"billing", LP_CLASS_QUOTA},
    {"quota", LP_CLASS_QUOTA},
    {"余额不足", LP_CLASS_QUOTA},
    {"overloaded", LP_CLASS_OVERLOADED},
    {"upstream_all_accounts_busy", LP_CLASS_OVERLOADED},
    {"upstream_no_eligible_accounts", LP_CLASS_OVERLOADED},
    {"系统繁忙", LP_CLASS_OVERLOADED},
    {"服务繁忙", LP_CLASS_OVERLOADED},
    {"无可用渠道", LP_CLASS_OVERLOADED},
    {"server is busy", LP_CLASS_OVERLOADED},
    {"temporarily unavailable", LP_CLASS_OVERLOADED},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct needle *find_needle(const struct needle *t, size_t n, const char *hay)
{
    if (!hay || !*hay)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcasestr(hay, t[i].s))
            return &t[i];
    return NULL;
}

/* ---- what the body says ---------------------------------------------------------------------- */

#define MAX_TOKENS 6
#define MAX_MSGS 3

/* Borrowed strings out of the parsed JSON (or the raw text), valid while the JSON lives. */
struct err_info {
    struct json_object *root; /* owned */
    const char *tokens[MAX_TOKENS];
    size_t n_tokens;
    const char *msgs[MAX_MSGS];
    size_t n_msgs;
    int embedded_status; /* numeric code 100..599 found in the body, 0 if none */
    bool envelope;       /* the JSON is an error envelope */
    const char *text;    /* NUL-terminated copy of the inspected body bytes (owned) */
};

static void add_token(struct err_info *e, const char *s)
{
    if (s && *s && e->n_tokens < MAX_TOKENS)
        e->tokens[e->n_tokens++] = s;
}

static void add_msg(struct err_info *e, const char *s)
{
    if (s && *s && e->n_msgs < MAX_MSGS)
        e->msgs[e->n_msgs++] = s;
}

/* A "code"-like member: a string is a token (a numeric string is also a status hint); an
 * integer in 100..599 is a status hint (business codes like MiniMax 2013 are not). */
static void add_code(struct err_info *e, struct json_object *obj, const char *key)
{
    struct json_object *v = lp_json_get(obj, key);
    int64_t n = 0;
    if (!v)
        return;
    if (lp_json_is_str(v)) {
        const char *s = lp_json_str(v);
        char *end = NULL;
        long l = strtol(s, &end, 10);
        if (end != s && *end == '\0')
            n = l;
        else
            add_token(e, s);
    } else if (json_object_is_type(v, json_type_int)) {
        n = json_object_get_int64(v);
    }
    if (n >= 100 && n <= 599 && !e->embedded_status)
        e->embedded_status = (int)n;
}

/* {"error":{...}} (OpenAI, Azure, Gemini, most relays) and {"type":"error","error":{...}}
 * (Anthropic). */
static void extract_nested(struct err_info *e, struct json_object *err)
{
    e->envelope = true;
    add_code(e, err, "code");
    add_token(e, lp_json_get_str(err, "type"));
    add_code(e, err, "status");
    add_token(e, lp_json_get_str(lp_json_get_obj(err, "innererror"), "code"));
    add_msg(e, lp_json_get_str(err, "message"));
}

/* Flat relays: {"code":..,"message":..}, {"code":500,"msg":"系统繁忙"}, MiniMax base_resp. */
static void extract_flat(struct err_info *e, struct json_object *root)
{
    const char *msg = lp_json_get_str(root, "message");
    if (!msg)
        msg = lp_json_get_str(root, "msg");
    if (!msg)
        msg = lp_json_get_str(root, "error_msg");
    bool has_code = lp_json_get(root, "code") || lp_json_get(root, "error_code");
    if (has_code && msg) {
        e->envelope = true;
        add_code(e, root, "code");
        add_code(e, root, "error_code");
        add_token(e, lp_json_get_str(root, "type"));
        add_msg(e, msg);
    }
    struct json_object *base = lp_json_get_obj(root, "base_resp");
    int64_t sc = 0;
    if (base && lp_json_get_int64(base, "status_code", &sc) && sc != 0) {
        e->envelope = true;
        add_msg(e, lp_json_get_str(base, "status_msg"));
    }
}

static void extract_json(struct err_info *e)
{
    struct json_object *root = e->root;
    if (lp_json_is_arr(root)) /* Gemini via some gateways: [{"error":{...}}] */
        root = lp_json_arr_at(root, 0);
    if (!lp_json_is_obj(root))
        return;
    struct json_object *err = lp_json_get_obj(root, "error");
    const char *type = lp_json_get_str(root, "type");
    if (err) {
        extract_nested(e, err);
    } else if (lp_json_get_str(root, "error")) {
        e->envelope = true; /* {"error":"upstream said no"} */
        add_msg(e, lp_json_get_str(root, "error"));
    } else {
        extract_flat(e, root);
    }
    if (type && strcmp(type, "error") == 0)
        e->envelope = true;
}

static void err_info_init(struct err_info *e, const char *body, size_t len)
{
    memset(e, 0, sizeof *e);
    if (len > LP_CLASSIFY_MAX_BODY)
        len = LP_CLASSIFY_MAX_BODY;
    e->text = lp_xstrndup(body ? body : "", body ? len : 0);
    if (len == 0)
        return;
    e->root = lp_json_parse(e->text, strlen(e->text), NULL);
    if (e->root)
        extract_json(e);
}

static void err_info_free(struct err_info *e)
{
    if (e->root)
        json_object_put(e->root);
    free((char *)e->text);
    memset(e, 0, sizeof *e);
}

/* The texts keywords are searched in: the messages of a JSON error, else the whole body. A JSON
 * envelope's other fields (e.g. an echoed request) are deliberately not searched. */
static const struct needle *find_keyword(const struct err_info *e)
{
    if (e->root && e->n_msgs == 0 && e->envelope)
        return NULL;
    if (!e->root || !e->envelope)
        return find_needle(keywords, COUNT(keywords), e->text);
    for (size_t i = 0; i < e->n_msgs; i++) {
        const struct needle *k = find_needle(keywords, COUNT(keywords), e->msgs[i]);
        if (k)
            return k;
    }
    return NULL;
}

static const struct needle *find_token(const struct err_info *e, const struct needle *t, size_t n)
{
    for (size_t i = 0; i < e->n_tokens; i++) {
        const struct needle *k = find_needle(t, n, e->tokens[i]);
        if (k)
            return k;
    }
    return NULL;
}

static bool mentions_model(const struct err_info *e)
{
    for (size_t i = 0; i < e->n_msgs; i++)
        if (strcasestr(e->msgs[i], "model"))
            return true;
    return !e->envelope && strcasestr(e->text, "model") != NULL;
}

/* ---- the decision ---------------------------------------------------------------------------- */

static enum lp_err_class class_of_transport(enum lp_transport t)
{
    switch (t) {
    case LP_TR_TIMEOUT_CONNECT:
    case LP_TR_TIMEOUT_TTFT:
    case LP_TR_TIMEOUT_READ:
    case LP_TR_TIMEOUT_TOTAL:
        return LP_CLASS_TIMEOUT;
    case LP_TR_PROTOCOL:
        return LP_CLASS_SERVER;
    case LP_TR_LOCAL:
        return LP_CLASS_LOCAL;
    default:
        return LP_CLASS_NETWORK;
    }
}

static const char *transport_name(enum lp_transport t)
{
    switch (t) {
    case LP_TR_CONNECT:
        return "connect failed";
    case LP_TR_TLS:
        return "TLS handshake failed";
    case LP_TR_RESET:
        return "connection reset";
    case LP_TR_DNS:
        return "DNS resolution failed";
    case LP_TR_TIMEOUT_CONNECT:
        return "connect timeout";
    case LP_TR_TIMEOUT_TTFT:
        return "time-to-first-token timeout";
    case LP_TR_TIMEOUT_READ:
        return "read timeout";
    case LP_TR_TIMEOUT_TOTAL:
        return "total timeout";
    case LP_TR_PROTOCOL:
        return "malformed upstream response";
    case LP_TR_LOCAL:
        return "local resource exhausted";
    default:
        return "transport error";
    }
}

/* Step 4: what the HTTP status alone says. LP_CLASS_OK when it says nothing (2xx, 0). */
static enum lp_err_class class_of_status(int status, const struct err_info *e)
{
    if (status == 429)
        return LP_CLASS_RATE_LIMIT;
    if (status == 529)
        return LP_CLASS_OVERLOADED;
    if (status == 408 || status == 504)
        return LP_CLASS_TIMEOUT;
    if (status == 401 || status == 403)
        return LP_CLASS_AUTH;
    if (status == 402)
        return LP_CLASS_QUOTA;
    if (status == 404) {
        /* The proxy builds the URL, so a 404 is about this backend (unknown model, wrong base
         * URL), not about the client's request, unless the backend says it is. */
        const struct needle *g = find_token(e, generic_tokens, COUNT(generic_tokens));
        if (!mentions_model(e) && g && g->cls == LP_CLASS_CLIENT)
            return LP_CLASS_CLIENT;
        return LP_CLASS_MODEL_NOT_FOUND;
    }
    if (status >= 500 && status <= 599)
        return LP_CLASS_SERVER;
    if (status >= 400 && status <= 499)
        return LP_CLASS_CLIENT;
    if ((status >= 100 && status < 200) || (status >= 300 && status < 400) || status >= 600)
        return LP_CLASS_SERVER;
    return LP_CLASS_OK;
}

/* Steps 2-6 for a response (not a transport failure). *why gets the deciding token or keyword. */
static enum lp_err_class class_of_response(int status, const struct err_info *e, const char **why)
{
    const struct needle *k = find_token(e, specific_tokens, COUNT(specific_tokens));
    if (k) {
        *why = k->s;
        return k->cls;
    }
    if ((k = find_keyword(e))) {
        *why = k->s;
        return k->cls;
    }
    enum lp_err_class c = class_of_status(status, e);
    if (c == LP_CLASS_OK && e->embedded_status)
        c = class_of_status(e->embedded_status, e);
    if (c != LP_CLASS_OK)
        return c;
    if ((k = find_token(e, generic_tokens, COUNT(generic_tokens)))) {
        *why = k->s;
        return k->cls;
    }
    return LP_CLASS_SERVER;
}

static bool is_success(const struct lp_classify_in *in, const struct err_info *e)
{
    return in->transport == LP_TR_NONE && in->status >= 200 && in->status <= 299 &&
           !in->from_sse_event && !e->envelope;
}

/* ---- user overrides -------------------------------------------------------------------------- */

static bool body_has(const struct err_info *e, const char *pat, bool nocase)
{
    if (!pat || !*pat)
        return false;
    return nocase ? strcasestr(e->text, pat) != NULL : strstr(e->text, pat) != NULL;
}

/* True when a configured code/pattern explicitly asks for a failover of this response. */
static bool forced_by_config(const struct lp_config *cfg, int status, const struct err_info *e)
{
    const struct lp_detection_cfg *d = &cfg->detection;
    for (size_t i = 0; i < d->n_error_patterns; i++)
        if (body_has(e, d->error_patterns[i], false))
            return true;
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    /* Only exact codes count: "4xx"/"5xx" wildcards are what the classification already does. */
    for (size_t i = 0; i < d->n_error_codes; i++)
        if (d->error_codes[i] && strcmp(d->error_codes[i], code) == 0)
            return true;
    const struct lp_error_fallback_cfg *f = &cfg->error_fallback;
    if (!f->present || !f->client_error_enabled)
        return false;
    for (size_t i = 0; i < f->n_client_codes; i++)
        if (f->client_codes[i] == status)
            return true;
    for (size_t i = 0; i < f->n_client_patterns; i++)
        if (body_has(e, f->client_patterns[i], true))
            return true;
    return false;
}

static void apply_overrides(const struct lp_config *cfg, int status, const struct err_info *e,
                            struct lp_decision *d)
{
    if (!cfg || d->cls == LP_CLASS_OK)
        return;
    const struct lp_error_fallback_cfg *f = &cfg->error_fallback;
    if (f->present && !f->server_error_enabled && status >= 500 && status <= 599 && d->failover) {
        d->failover = false;
        d->cooldown = false;
        d->forced = true;
    }
    if (!d->failover && forced_by_config(cfg, status, e)) {
        d->failover = true;
        d->forced = true;
        /* A request-shape error means the request did not suit this backend; the backend
         * itself is healthy, so it is neither cooled down nor counted by its breaker. */
        d->cooldown = !is_request_shape(d->cls);
    }
}

/* ---- cooldown hints -------------------------------------------------------------------------- */

static int64_t hint_delay(const struct lp_classify_in *in)
{
    int64_t best = 0, v = 0;
    if (in->retry_after && lp_parse_retry_after(in->retry_after, in->now_wall_ms, &v) && v > best)
        best = v;
    if (in->retry_after_ms) {
        char *end = NULL;
        double ms = strtod(in->retry_after_ms, &end);
        if (end != in->retry_after_ms && ms > best && ms < 1e15)
            best = (int64_t)ms;
    }
    for (size_t i = 0; i < LP_CLASSIFY_MAX_RESET; i++)
        if (in->ratelimit_reset[i] &&
            lp_parse_ratelimit_reset(in->ratelimit_reset[i], in->now_wall_ms, &v) && v > best)
            best = v;
    return best > LP_CLASSIFY_MAX_HINT_MS ? LP_CLASSIFY_MAX_HINT_MS : best;
}

static void set_cooldown(const struct lp_classify_in *in, const struct lp_config *cfg,
                         struct lp_decision *d)
{
    int secs = cfg && cfg->fallback.cooldown_seconds > 0 ? cfg->fallback.cooldown_seconds : 60;
    d->cooldown_ms = (int64_t)secs * 1000;
    bool hinted = d->cls == LP_CLASS_RATE_LIMIT || d->cls == LP_CLASS_OVERLOADED ||
                  in->status == 429 || in->status == 503 || in->status == 529;
    if (hinted)
        d->hint_ms = hint_delay(in);
    if (d->hint_ms > d->cooldown_ms)
        d->cooldown_ms = d->hint_ms;
}

/* ---- the reason string ----------------------------------------------------------------------- */

/* Copy a message into the reason, flattening control characters and masking anything that looks
 * like an API key ("sk-..."), so the reason is safe for logs and the admin view. */
static void append_sanitized(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(dst);
    for (const char *p = src; *p && n + 1 < cap; p++) {
        if ((p[0] == 's' || p[0] == 'S') && (p[1] == 'k' || p[1] == 'K') && p[2] == '-') {
            const char *q = p + 3;
            while (isalnum((unsigned char)*q) || *q == '-' || *q == '_' || *q == '*')
                q++;
            if (q - p >= 9) {
                int w = snprintf(dst + n, cap - n, "sk-***");
                n += (size_t)w < cap - n ? (size_t)w : cap - n - 1;
                p = q - 1;
                continue;
            }
        }
        dst[n++] = iscntrl((unsigned char)*p) ? ' ' : *p;
        if (n + 1 >= cap && p[1]) {
            /* Truncated: never leave half a UTF-8 sequence at the end. */
            while (n > 0 && ((unsigned char)dst[n - 1] & 0xC0) == 0x80)
                n--;
            if (n > 0 && (unsigned char)dst[n - 1] >= 0xC0)
                n--;
            break;
        }
    }
    dst[n] = '\0';
}

/* Mask configured keys (any shape) and key patterns in src before it is truncated into the
 * reason, so neither a whole key nor a cut-off prefix of one can reach a reply or the admin
 * view. */
static void append_masked(char *dst, size_t cap, const char *src, const struct lp_config *cfg)
{
    size_t n;
    const char *const *secrets = lp_config_secrets(cfg, &n);
    struct lp_buf b;
    lp_buf_init(&b, 8192);
    lp_mask(src, strlen(src), &b, secrets, n);
    append_sanitized(dst, cap, b.data ? b.data : "");
    lp_buf_free(&b);
}

static void set_reason(struct lp_decision *d, const struct lp_classify_in *in,
                       const struct err_info *e, const char *why, const struct lp_config *cfg)
{
    if (in->transport != LP_TR_NONE) {
        snprintf(d->reason, sizeof d->reason, "%s", transport_name(in->transport));
        return;
    }
    const char *label = e->n_tokens ? e->tokens[0] : why ? why : lp_class_name(d->cls);
    snprintf(d->reason, sizeof d->reason, "%d%s ", in->status, in->from_sse_event ? " sse" : "");
    append_masked(d->reason, sizeof d->reason, label, cfg);
    const char *msg = e->n_msgs ? e->msgs[0] : (!e->root ? e->text : NULL);
    if (msg && *msg) {
        append_sanitized(d->reason, sizeof d->reason, ": ");
        append_masked(d->reason, sizeof d->reason, msg, cfg);
    }
}

/* A 404/405/501 on an optional endpoint that does not name the model: the backend simply does
 * not serve that endpoint (e.g. /v1/responses on a chat-only relay). */
static bool is_not_served(int status, enum lp_err_class cls, const struct err_info *e)
{
    if (status == 405 || status == 501)
        return true;
    return status == 404 && (cls == LP_CLASS_MODEL_NOT_FOUND || cls == LP_CLASS_CLIENT) &&
           !mentions_model(e);
}

/* ---- entry point ----------------------------------------------------------------------------- */

void lp_classify(const struct lp_classify_in *in, const struct lp_config *cfg,
                 struct lp_decision *out)
{
    memset(out, 0, sizeof *out);
    struct err_info e;
    err_info_init(&e, in->transport == LP_TR_NONE ? in->body : NULL, in->body_len);
    const char *why = NULL;
    if (in->transport != LP_TR_NONE)
        out->cls = class_of_transport(in->transport);
    else if (is_success(in, &e))
        out->cls = LP_CLASS_OK;
    else
        out->cls = class_of_response(in->status, &e, &why);

    if (out->cls != LP_CLASS_OK && in->transport == LP_TR_NONE && in->optional_endpoint &&
        is_not_served(in->status, out->cls, &e))
        out->cls = LP_CLASS_UNSUPPORTED;
    if (out->cls != LP_CLASS_OK) {
        out->failover = lp_class_fails_over(out->cls);
        out->cooldown = blames_backend(out->cls);
        out->breaker_failure = out->cooldown;
        if (in->transport == LP_TR_NONE)
            apply_overrides(cfg, in->status, &e, out);
        if (out->cooldown)
            set_cooldown(in, cfg, out);
        set_reason(out, in, &e, why, cfg);
    }
    err_info_free(&e);
}

/* ---- time hint parsers ----------------------------------------------------------------------- */

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A non-negative decimal number ("20", "0.5") filling the whole string (spaces allowed). */
static bool parse_number(const char *s, double *out)
{
    s = skip_ws(s);
    if (!isdigit((unsigned char)*s) && *s != '.')
        return false;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0 || *skip_ws(end) != '\0')
        return false;
    *out = v;
    return true;
}

static int64_t clamp_delay(double ms)
{
    if (ms <= 0)
        return 0;
    if (ms > 9.0e15)
        return (int64_t)9.0e15;
    return (int64_t)ceil(ms);
}

static bool parse_http_date(const char *s, int64_t *unix_ms)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };
    for (size_t i = 0; i < COUNT(formats); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(s, formats[i], &tm);
        if (end && *skip_ws(end) == '\0') {
            *unix_ms = (int64_t)timegm(&tm) * 1000;
            return true;
        }
    }
    return false;
}

bool lp_parse_retry_after(const char *v, int64_t now_wall_ms, int64_t *delay_ms)
{
    double secs;
    int64_t at;
    if (!v || !delay_ms)
        return false;
    if (parse_number(v, &secs)) {
        *delay_ms = clamp_delay(secs * 1000.0);
        return true;
    }
    if (parse_http_date(skip_ws(v), &at)) {
        *delay_ms = clamp_delay((double)(at - now_wall_ms));
        return true;
    }
    return false;
}

/* Go-style duration: one or more <number><unit> with unit h, m, s, ms, us, µs, ns. */
static bool parse_go_duration(const char *s, double *ms)
{
    static const struct {
        const char *u;
        double ms;
    } units[] = {
        {"ms", 1.0},   {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ns", 1e-6},
        {"h", 3600e3}, {"m", 60e3},  {"s", 1e3},
    };
    double total = 0;
    s = skip_ws(s);
    if (!*s)
        return false;
    while (*s && *s != ' ') {
        char *end = NULL;
        if (!isdigit((unsigned char)*s) && *s != '.')
            return false;
        double v = strtod(s, &end);
        if (end == s || !isfinite(v))
            return false;
        size_t i = 0;
        while (i < COUNT(units) && strncmp(end, units[i].u, strlen(units[i].u)) != 0)
            i++;
        if (i == COUNT(units))
            return false;
        total += v * units[i].ms;
        s = end + strlen(units[i].u);
    }
    if (*skip_ws(s) != '\0')
        return false;
    *ms = total;
    return true;
}

/* RFC 3339: 2025-01-01T00:00:00[.fff](Z|+hh:mm|-hh:mm). */
static bool parse_rfc3339(const char *s, int64_t *unix_ms)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n == 0)
        return false;
    const char *p = s + n;
    double frac = 0;
    if (*p == '.') {
        char *end = NULL;
        frac = strtod(p, &end);
        p = end;
    }
    int off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m == 0)
            return false;
        off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 1 + m;
    } else {
        return false;
    }
    if (*skip_ws(p) != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *unix_ms = ((int64_t)timegm(&tm) - (int64_t)off_min * 60) * 1000 + (int64_t)(frac * 1000);
    return true;
}

bool lp_parse_ratelimit_reset(const char *v, int64_t now_wall_ms, int64_t *delay_ms)
{
    double num, ms;
    int64_t at;
    if (!v || !delay_ms)
        return false;
    if (parse_number(v, &num)) {
        if (num > 1e12) /* Unix ms */
            *delay_ms = clamp_delay(num - (double)now_wall_ms);
        else if (num > 1e9) /* Unix seconds */
            *delay_ms = clamp_delay(num * 1000.0 - (double)now_wall_ms);
        else
            *delay_ms = clamp_delay(num * 1000.0);
        return true;
    }
    if (parse_go_duration(v, &ms)) {
        *delay_ms = clamp_delay(ms);
        return true;
    }
    if (parse_rfc3339(skip_ws(v), &at)) {
        *delay_ms = clamp_delay((double)(at - now_wall_ms));
        return true;
    }
    return false;
}

bool lp_classify_is_reset_header(const char *name)
{
    if (!name)
        return false;
    if (strncasecmp(name, "x-ratelimit-reset", 17) == 0)
        return name[17] == '\0' || name[17] == '-';
    size_t n = strlen(name);
    return strncasecmp(name, "anthropic-ratelimit-", 20) == 0 && n > 26 &&
           strcasecmp(name + n - 6, "-reset") == 0;
}
