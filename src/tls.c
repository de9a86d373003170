/* tls.c - OpenSSL client contexts, verification and session resumption (see tls.h). */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

struct ctx_entry {
    char *pem; /* NULL: the system store */
    SSL_CTX *ctx;
    struct ctx_entry *next;
};

/* The last session of one origin; referenced by its connections (SSL app data). */
struct sess_slot {
    char *origin;
    SSL_SESSION *sess;
    struct sess_slot *next;
};

struct lp_tls {
    struct ctx_entry *ctxs;
    struct sess_slot *slots;
};

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* The system trust store, loaded once per process and shared by every worker's contexts
 * (X509_STORE is reference-counted and safe to share for verification). */
static pthread_once_t system_once = PTHREAD_ONCE_INIT;
static X509_STORE *system_store;

static void load_system_store(void)
{
    X509_STORE *st = X509_STORE_new();
    if (!st)
        return;
    if (X509_STORE_load_file(st, X509_get_default_cert_file()) != 1)
        X509_STORE_set_default_paths(st);
    ERR_clear_error();
    system_store = st;
}

void lp_tls_preload(void)
{
    pthread_once(&system_once, load_system_store);
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct sess_slot *slot = SSL_get_app_data(ssl);
    if (!slot)
        return 0;
    if (slot->sess)
        SSL_SESSION_free(slot->sess);
    slot->sess = sess; /* returning 1 keeps the reference */
    return 1;
}

static SSL_CTX *ctx_new(const char *pem, const char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        *err = "cannot create a TLS context";
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A peer closing without close_notify reads as an end of stream; the HTTP framing decides
     * whether the response was complete. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (!pem) {
        lp_tls_preload(); /* normally done already, off the loop (see tls.h) */
        if (!system_store) {
            *err = "cannot load the system CA store";
            SSL_CTX_free(ctx);
            return NULL;
        }
        X509_STORE_up_ref(system_store);
        SSL_CTX_set_cert_store(ctx, system_store);
        return ctx;
    }
    BIO *bio = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509_INFO) *infos = bio ? PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL) : NULL;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);
        if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
            added++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    ERR_clear_error();
    if (added == 0) {
        *err = "tls_ca_file holds no certificate";
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct lp_tls *lp_tls_create(void)
{
    return lp_xcalloc(1, sizeof(struct lp_tls));
}

void lp_tls_destroy(struct lp_tls *t)
{
    if (!t)
        return;
    while (t->ctxs) {
        struct ctx_entry *e = t->ctxs;
        t->ctxs = e->next;
        SSL_CTX_free(e->ctx);
        free(e->pem);
        free(e);
    }
    while (t->slots) {
        struct sess_slot *s = t->slots;
        t->slots = s->next;
        if (s->sess)
            SSL_SESSION_free(s->sess);
        free(s->origin);
        free(s);
    }
    free(t);
}

SSL_CTX *lp_tls_ctx(struct lp_tls *t, const char *ca_pem, const char **err)
{
    for (struct ctx_entry *e = t->ctxs; e; e = e->next) {
        if ((!ca_pem && !e->pem) || (ca_pem && e->pem && strcmp(ca_pem, e->pem) == 0))
            return e->ctx;
    }
    SSL_CTX *ctx = ctx_new(ca_pem, err);
    if (!ctx)
        return NULL;
    struct ctx_entry *e = lp_xcalloc(1, sizeof *e);
    e->pem = lp_xstrdup(ca_pem);
    e->ctx = ctx;
    e->next = t->ctxs;
    t->ctxs = e;
    return ctx;
}

static struct sess_slot *slot_for(struct lp_tls *t, const char *origin)
{
    for (struct sess_slot *s = t->slots; s; s = s->next) {
        if (strcmp(s->origin, origin) == 0)
            return s;
    }
    struct sess_slot *s = lp_xcalloc(1, sizeof *s);
    s->origin = lp_xstrdup(origin);
    s->next = t->slots;
    t->slots = s;
    return s;
}

SSL *lp_tls_conn(struct lp_tls *t, SSL_CTX *ctx, int fd, const char *host, bool is_ip,
                 const char *origin)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    bool ok = SSL_set_fd(ssl, fd) == 1 &&
              SSL_set_alpn_protos(ssl, alpn_http11, sizeof alpn_http11 - 1) == 0;
    if (ok && is_ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    } else if (ok) {
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    struct sess_slot *slot = slot_for(t, origin);
    SSL_set_app_data(ssl, slot);
    if (slot->sess)
        SSL_set_session(ssl, slot->sess);
    SSL_set_connect_state(ssl);
    return ssl;
}

const char *lp_tls_handshake_error(SSL *ssl, int rc, const char *host, char *buf, size_t len)
{
    long v = SSL_get_verify_result(ssl);
    int e = SSL_get_error(ssl, rc);
    if (v != X509_V_OK) {
        snprintf(buf, len, "TLS certificate verification failed for %s: %s", host,
                 X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, len, "TLS handshake with %s failed: %s", host, strerror(errno));
    } else if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
        snprintf(buf, len, "TLS handshake with %s failed: connection closed", host);
    } else {
        unsigned long err = ERR_peek_last_error();
        char ebuf[160];
        ERR_error_string_n(err, ebuf, sizeof ebuf);
        snprintf(buf, len, "TLS handshake with %s failed: %s", host, err ? ebuf : "protocol error");
    }
    ERR_clear_error();
    return buf;
}
