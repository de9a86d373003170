/* tls.h - TLS for the own upstream client (OpenSSL): contexts, verification, sessions.
 *
 * One struct lp_tls per worker. A client context per CA bundle: the system store (the bundle
 * file OpenSSL was built with, read once per process by lp_tls_preload, which main.c calls at
 * startup when a backend needs it; otherwise the first https request without tls_ca_file reads
 * it once) or a backend's `tls_ca_file`, whose PEM text the config loader read. Every
 * connection verifies the peer's chain and its name (DNS name, or IP address for an IP
 * literal), sends SNI for names, offers ALPN "http/1.1" only, and resumes the last session of its
 * origin. Contexts release their record buffers while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), which keeps pooled connections small. TLS 1.2 at least.
 */
#ifndef LP_TLS_H
#define LP_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct lp_tls;

/* Load the system CA store now (once per process; blocking file I/O: call it off the loops). */
void lp_tls_preload(void);

/* Create a worker's TLS state (cheap: contexts are made on first use). */
struct lp_tls *lp_tls_create(void);
void lp_tls_destroy(struct lp_tls *t);

/* The context for `ca_pem` (a PEM bundle's text; NULL = the system store), created on first use
 * and kept for the worker's life. NULL with *err set when the bundle holds no certificate. */
SSL_CTX *lp_tls_ctx(struct lp_tls *t, const char *ca_pem, const char **err);

/* A client connection on `fd` for `host` (a DNS name, or an IP literal when is_ip), resuming the
 * last session saved under `origin` (and saving new ones there). NULL on failure. */
SSL *lp_tls_conn(struct lp_tls *t, SSL_CTX *ctx, int fd, const char *host, bool is_ip,
                 const char *origin);

/* Why a handshake failed (`rc` from SSL_connect): the certificate verification error with the
 * host, or OpenSSL's error. Written to buf. */
const char *lp_tls_handshake_error(SSL *ssl, int rc, const char *host, char *buf, size_t len);

#endif
