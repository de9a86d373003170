/* admin.h - operator endpoints: /metrics, /readyz and /admin/....
 *
 * /metrics and /readyz need no key (scrapers and load balancers); every /admin/... endpoint needs
 * the admin_api_key when one is configured, else the proxy_api_key.
 *   GET  /metrics                          Prometheus text exposition
 *   GET  /readyz                           200 while at least one route can be tried, else 503
 *   GET  /admin/stats                      the reference's JSON snapshot
 *   GET  /admin/backends                   breaker, cooldown and drain state per backend/model
 *   GET  /admin/config                     the effective config, secrets masked
 *   POST /admin/reload                     reload the config file; errors are returned
 *   POST /admin/backends/{name}/drain      take a backend out of routing
 *   POST /admin/backends/{name}/undrain    put it back
 */
#ifndef LP_ADMIN_H
#define LP_ADMIN_H

#include <stdbool.h>

struct lp_request;
struct lp_runtime;

struct lp_config;

/* True for the paths this module serves. */
bool lp_admin_owns(const char *path);
/* The key every /admin/... endpoint requires: admin_api_key when set and non-empty, else
 * proxy_api_key (NULL or "" = none). Borrowed from cfg. */
const char *lp_admin_key(const struct lp_config *cfg);
/* Serve one admin request (answers synchronously, or later for /admin/reload: then it keeps
 * req->admin_job set, installs req->on_teardown to cancel the job, and finishes req itself when
 * the job completes). */
void lp_admin_handle(struct lp_request *req);
/* Register the scrape-time gauges (cooldowns, breakers, usable routes, active requests). */
void lp_admin_register_metrics(struct lp_runtime *rt);

#endif
