/* statuspage.c - the status page's assets (see statuspage.h). */
#include "statuspage.h"

#include <stddef.h>
#include <string.h>

#include "edge.h"
#include "request.h"

/* Generated from src/status/ by cmake/embed.cmake. */
extern const unsigned char lp_asset_status_html[], lp_asset_status_js[], lp_asset_status_css[];
extern const size_t lp_asset_status_html_len, lp_asset_status_js_len, lp_asset_status_css_len;

/* Only the page's own files, and requests to its own origin (the admin API and /metrics). */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

bool lp_statuspage_owns(const char *path)
{
    return strcmp(path, "/status") == 0 || strcmp(path, "/status.js") == 0 ||
           strcmp(path, "/status.css") == 0;
}

void lp_statuspage_serve(struct lp_request *req)
{
    const char *p = req->path, *ct;
    const unsigned char *body;
    size_t len;
    if (strcmp(p, "/status.js") == 0) {
        body = lp_asset_status_js;
        len = lp_asset_status_js_len;
        ct = "text/javascript; charset=utf-8";
    } else if (strcmp(p, "/status.css") == 0) {
        body = lp_asset_status_css;
        len = lp_asset_status_css_len;
        ct = "text/css; charset=utf-8";
    } else {
        body = lp_asset_status_html;
        len = lp_asset_status_html_len;
        ct = "text/html; charset=utf-8";
    }
    struct lp_edge_header h[] = {
        {"Content-Security-Policy", CSP},      {"Cache-Control", "no-store"},
        {"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"},
        {"X-Frame-Options", "DENY"},
    };
    lp_request_reply(req, 200, ct, (const char *)body, len, h, sizeof h / sizeof h[0]);
}
