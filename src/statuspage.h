/* statuspage.h - GET /status: the live status page, compiled into the binary.
 *
 * Three static assets (src/status/status.html, .js, .css, embedded at build time by
 * cmake/embed.cmake) served without authentication: they hold no data and no secrets. The page
 * asks for the admin key once, keeps it in sessionStorage and sends it as a header (never in a
 * URL) to GET /admin/status, which it polls every second, and reads GET /metrics for rates,
 * error rates and time-to-first-token quantiles. A Content-Security-Policy allows only the
 * page's own script, style and same-origin requests.
 */
#ifndef LP_STATUSPAGE_H
#define LP_STATUSPAGE_H

#include <stdbool.h>

struct lp_request;

/* Whether path is one of the page's assets. */
bool lp_statuspage_owns(const char *path);
/* Answer a GET of one of the page's assets (lp_statuspage_owns(path) is true). */
void lp_statuspage_serve(struct lp_request *req);

#endif
