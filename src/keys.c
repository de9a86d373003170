/* keys.c - constant-time client key lookup, model permissions, token estimates (see keys.h). */
#include "keys.h"

#include <fnmatch.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <strings.h>
#include <string.h>

#include "edge.h"
#include "reqid.h"
#include "util/json.h"

/* The SHA-256 implementation, fetched once: OpenSSL 3 would look it up again on every call
 * through EVP_sha256(). */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;
/* One digest context per thread, reused: allocating one per lookup cost as much as hashing. */
static pthread_key_t g_ctx_key;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void fetch_sha256(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    pthread_key_create(&g_ctx_key, free_ctx);
}

void lp_keys_digest(const char *s, size_t len, unsigned char out[32])
{
    pthread_once(&g_sha256_once, fetch_sha256);
    EVP_MD_CTX *ctx = pthread_getspecific(g_ctx_key);
    if (!ctx && (ctx = EVP_MD_CTX_new()) != NULL)
        pthread_setspecific(g_ctx_key, ctx);
    unsigned int n = 32;
    if (!g_sha256 || !ctx || !EVP_DigestInit_ex2(ctx, g_sha256, NULL) ||
        !EVP_DigestUpdate(ctx, s, len) || !EVP_DigestFinal_ex(ctx, out, &n))
        memset(out, 0, 32); /* never matches a real digest of a non-empty key */
}

bool lp_keys_required(const struct lp_config *cfg)
{
    return (cfg->proxy_api_key && cfg->proxy_api_key[0]) || cfg->n_keys > 0;
}

enum lp_key_auth lp_keys_match(const struct lp_config *cfg, const char *presented, size_t len,
                               const struct lp_client_key **key)
{
    *key = NULL;
    if (!lp_keys_required(cfg))
        return LP_KEY_OPEN;
    if (!presented || len == 0)
        return LP_KEY_MISSING;
    if (cfg->n_keys == 0) /* only the proxy key: a constant-time compare, no digest needed */
        return lp_ct_equal(presented, len, cfg->proxy_api_key, strlen(cfg->proxy_api_key))
                   ? LP_KEY_PROXY
                   : LP_KEY_INVALID;
    unsigned char d[32];
    lp_keys_digest(presented, len, d);
    /* Every digest is compared, whatever matched first. */
    bool proxy = cfg->proxy_api_key && cfg->proxy_api_key[0] &&
                 CRYPTO_memcmp(d, cfg->proxy_key_digest, 32) == 0;
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < cfg->n_keys; i++) {
        int diff = CRYPTO_memcmp(d, cfg->keys[i].digest, 32);
        size_t mask = (size_t)0 - (size_t)(diff == 0); /* all ones on a match */
        found = (found & ~mask) | (i & mask);
    }
    if (proxy)
        return LP_KEY_PROXY;
    if (found != SIZE_MAX) {
        *key = &cfg->keys[found];
        return LP_KEY_CLIENT;
    }
    return LP_KEY_INVALID;
}

enum lp_key_auth lp_keys_match_headers(const struct lp_config *cfg, const struct lp_edge_req *er,
                                       const struct lp_client_key **key)
{
    *key = NULL;
    if (!lp_keys_required(cfg))
        return LP_KEY_OPEN;
    enum lp_key_auth r = LP_KEY_MISSING;
    const char *auth = lp_edge_req_header(er, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        r = lp_keys_match(cfg, t, strlen(t), key);
        if (r == LP_KEY_PROXY || r == LP_KEY_CLIENT)
            return r;
    } else if (auth) {
        r = LP_KEY_INVALID;
    }
    const char *xk = lp_edge_req_header(er, "x-api-key");
    if (xk) {
        enum lp_key_auth rx = lp_keys_match(cfg, xk, strlen(xk), key);
        if (rx != LP_KEY_MISSING)
            r = rx;
    }
    return r;
}

bool lp_keys_model_allowed(const struct lp_client_key *k, const char *alias)
{
    if (!k || k->n_models == 0)
        return true;
    for (size_t i = 0; i < k->n_models; i++) {
        const char *m = k->models[i];
        if (strcmp(m, alias) == 0)
            return true;
        if (strpbrk(m, "*?[") && fnmatch(m, alias, 0) == 0)
            return true;
    }
    return false;
}

bool lp_keys_counts_tokens(const struct lp_client_key *k)
{
    return k && (k->tpm > 0 || k->tokens_per_day > 0 || k->tokens_per_month > 0);
}

int64_t lp_keys_estimate_tokens(const char *body, size_t len, int64_t default_max_tokens)
{
    int64_t prompt = (int64_t)(len / 4) + 1;
    int64_t answer = default_max_tokens > 0 ? default_max_tokens : 4096;
    struct json_object *o = body && len ? lp_json_parse(body, len, NULL) : NULL;
    if (o && lp_json_is_obj(o)) {
        static const char *const names[] = {"max_tokens", "max_completion_tokens",
                                            "max_output_tokens"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            int64_t v;
            if (lp_json_get_int64(o, names[i], &v) && v > 0) {
                answer = v;
                break;
            }
        }
    }
    if (o)
        json_object_put(o);
    return prompt + answer;
}
