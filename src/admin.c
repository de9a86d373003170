/* admin.c - /metrics, /readyz and /admin/.... See admin.h. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apierr.h"
#include "cluster.h"
#include "dialect.h"
#include "budget.h"
#include "conncap.h"
#include "edge.h"
#include "failfeed.h"
#include "health.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "reload.h"
#include "request.h"
#include "router.h"
#include "routestats.h"
#include "statuspage.h"
#include "runtime.h"
#include "traffic.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/json.h"
#include "worker.h"

bool lp_admin_owns(const char *path)
{
    return strcmp(path, "/metrics") == 0 || strcmp(path, "/readyz") == 0 ||
           lp_statuspage_owns(path) || strncmp(path, "/admin/", 7) == 0 ||
           strcmp(path, "/admin") == 0;
}

const char *lp_admin_key(const struct lp_config *cfg)
{
    return cfg->admin_api_key && cfg->admin_api_key[0] ? cfg->admin_api_key : cfg->proxy_api_key;
}

static void reply_json(struct lp_request *req, int status, const char *body, size_t len)
{
    lp_request_reply(req, status, "application/json", body, len, NULL, 0);
}

/* ---- scrape-time gauges ------------------------------------------------------------------ */

static void gauge_active_requests(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    lp_metrics_sink_put(sink, NULL, (double)atomic_load(&rt->active_llm));
}

static void gauge_active_streams(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    lp_metrics_sink_put(sink, NULL, (double)atomic_load(&rt->active_streams));
}

/* The edge's process-wide limits (conncap, budget); absent before startup created them. */
static void gauge_edge_limits(struct lp_metrics_sink *sink, void *ctx, enum lp_metric_id id)
{
    struct lp_runtime *rt = ctx;
    struct lp_conncap_stats st = {0};
    if (rt->conncap)
        lp_conncap_stats(rt->conncap, &st);
    double v = 0;
    switch (id) {
    case LP_M_CLIENT_CONNECTIONS:
        v = (double)st.open;
        break;
    case LP_M_CLIENT_CONNECTIONS_LIMIT:
        v = (double)st.max_total;
        break;
    case LP_M_CLIENT_CONNECTIONS_REFUSED_TOTAL:
        v = (double)st.refused_addr;
        break;
    case LP_M_BODY_MEMORY_BYTES:
        v = rt->bodies ? (double)lp_budget_used(rt->bodies) : 0;
        break;
    default:
        v = rt->bodies ? (double)lp_budget_refusals(rt->bodies) : 0;
        break;
    }
    lp_metrics_sink_put(sink, NULL, v);
}

static void gauge_client_connections(struct lp_metrics_sink *s, void *ctx)
{
    gauge_edge_limits(s, ctx, LP_M_CLIENT_CONNECTIONS);
}
static void gauge_client_connections_limit(struct lp_metrics_sink *s, void *ctx)
{
    gauge_edge_limits(s, ctx, LP_M_CLIENT_CONNECTIONS_LIMIT);
}
static void counter_connections_refused(struct lp_metrics_sink *s, void *ctx)
{
    gauge_edge_limits(s, ctx, LP_M_CLIENT_CONNECTIONS_REFUSED_TOTAL);
}
static void gauge_body_memory(struct lp_metrics_sink *s, void *ctx)
{
    gauge_edge_limits(s, ctx, LP_M_BODY_MEMORY_BYTES);
}
static void counter_body_memory_refused(struct lp_metrics_sink *s, void *ctx)
{
    gauge_edge_limits(s, ctx, LP_M_BODY_MEMORY_REFUSED_TOTAL);
}

/* Whether the route (a, r) repeats a (backend, model) pair of an earlier route of any alias. */
static bool pair_seen_before(const struct lp_config *cfg, size_t a, size_t r)
{
    const struct lp_route *x = &cfg->aliases[a].routes[r];
    for (size_t i = 0; i <= a; i++) {
        const struct lp_alias *al = &cfg->aliases[i];
        size_t end = i == a ? r : al->n_routes;
        for (size_t k = 0; k < end; k++)
            if (al->routes[k].backend_idx == x->backend_idx &&
                strcmp(al->routes[k].model, x->model) == 0)
                return true;
    }
    return false;
}

static void gauge_cooldowns(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    struct lp_config *cfg = lp_runtime_config(rt);
    int64_t now = lp_now_ms();
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        const struct lp_alias *al = &cfg->aliases[a];
        for (size_t r = 0; r < al->n_routes; r++) {
            const struct lp_route *rt_ = &al->routes[r];
            const struct lp_backend *b = &cfg->backends[rt_->backend_idx];
            if (pair_seen_before(cfg, a, r))
                continue; /* one sample per pair: equal label sets would be summed */
            const char *l[] = {b->name, rt_->model};
            lp_metrics_sink_put(
                sink, l, lp_health_pair_cooling(rt->health, b->name, rt_->model, now) ? 1.0 : 0.0);
        }
    }
    lp_config_unref(cfg);
}

static void gauge_usable_routes(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    struct lp_config *cfg = lp_runtime_config(rt);
    int64_t now = lp_now_ms();
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        const struct lp_alias *al = &cfg->aliases[a];
        if (!al->enabled)
            continue;
        int usable = 0;
        for (size_t r = 0; r < al->n_routes; r++) {
            const struct lp_route *ro = &al->routes[r];
            const struct lp_backend *b = &cfg->backends[ro->backend_idx];
            if (ro->enabled && b->enabled &&
                lp_health_route_state(rt->health, cfg, b, ro->model, now, NULL) == LP_ROUTE_USABLE)
                usable++;
        }
        const char *l[] = {al->name};
        lp_metrics_sink_put(sink, l, usable);
    }
    lp_config_unref(cfg);
}

static void gauge_breakers(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    struct lp_config *cfg = lp_runtime_config(rt);
    int64_t now = lp_now_ms();
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const char *l[] = {cfg->backends[i].name};
        lp_metrics_sink_put(sink, l, lp_health_breaker_gauge(rt->health, l[0], now));
    }
    lp_config_unref(cfg);
}

/* Active health probes: one sample set per backend with a health_check that was probed. */
static void probe_samples(struct lp_metrics_sink *sink, void *ctx, enum lp_metric_id id)
{
    struct lp_runtime *rt = ctx;
    struct lp_config *cfg = lp_runtime_config(rt);
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct lp_backend *b = &cfg->backends[i];
        struct lp_probe_stats st;
        if (!b->health_check.enabled)
            continue;
        bool any = lp_health_probe_stats(rt->health, b->name, &st);
        if (id == LP_M_PROBES_TOTAL) {
            const char *pass[] = {b->name, "pass"}, *fail[] = {b->name, "fail"};
            lp_metrics_sink_put(sink, pass, (double)st.passes);
            lp_metrics_sink_put(sink, fail, (double)st.fails);
        } else if (id == LP_M_BACKEND_DOWN) {
            const char *l[] = {b->name};
            lp_metrics_sink_put(sink, l, st.down ? 1.0 : 0.0);
        } else if (any) {
            const char *l[] = {b->name};
            lp_metrics_sink_put(sink, l, (double)st.last_duration_ms / 1000.0);
        }
    }
    lp_config_unref(cfg);
}
static void counter_probes(struct lp_metrics_sink *s, void *ctx)
{
    probe_samples(s, ctx, LP_M_PROBES_TOTAL);
}
static void gauge_backend_down(struct lp_metrics_sink *s, void *ctx)
{
    probe_samples(s, ctx, LP_M_BACKEND_DOWN);
}
static void gauge_probe_duration(struct lp_metrics_sink *s, void *ctx)
{
    probe_samples(s, ctx, LP_M_PROBE_DURATION_SECONDS);
}

static void gauge_cluster(struct lp_metrics_sink *s, void *ctx, enum lp_metric_id id)
{
    struct lp_runtime *rt = ctx;
    if (!rt->cluster)
        return;
    struct lp_cluster_status st;
    lp_cluster_get_status(rt->cluster, &st);
    switch (id) {
    case LP_M_REDIS_UP:
        lp_metrics_sink_put(s, NULL, st.available ? 1 : 0);
        break;
    case LP_M_REDIS_LATENCY_SECONDS:
        lp_metrics_sink_put(s, NULL, (double)st.latency_us / 1e6);
        break;
    case LP_M_REDIS_ERRORS_TOTAL: {
        const char *t[] = {"timeout"}, *u[] = {"unavailable"};
        lp_metrics_sink_put(s, t, (double)st.timeouts);
        lp_metrics_sink_put(s, u, (double)st.errors);
        break;
    }
    case LP_M_CLUSTER_INSTANCES:
        lp_metrics_sink_put(s, NULL, st.instances);
        break;
    case LP_M_CLUSTER_EVENTS_TOTAL: {
        const char *a[] = {"sent"}, *b[] = {"received"}, *c[] = {"applied"};
        lp_metrics_sink_put(s, a, (double)st.events_sent);
        lp_metrics_sink_put(s, b, (double)st.events_received);
        lp_metrics_sink_put(s, c, (double)st.events_applied);
        break;
    }
    default:
        break;
    }
}
static void gauge_redis_up(struct lp_metrics_sink *s, void *ctx)
{
    gauge_cluster(s, ctx, LP_M_REDIS_UP);
}
static void gauge_redis_latency(struct lp_metrics_sink *s, void *ctx)
{
    gauge_cluster(s, ctx, LP_M_REDIS_LATENCY_SECONDS);
}
static void counter_redis_errors(struct lp_metrics_sink *s, void *ctx)
{
    gauge_cluster(s, ctx, LP_M_REDIS_ERRORS_TOTAL);
}
static void gauge_instances(struct lp_metrics_sink *s, void *ctx)
{
    gauge_cluster(s, ctx, LP_M_CLUSTER_INSTANCES);
}
static void counter_cluster_events(struct lp_metrics_sink *s, void *ctx)
{
    gauge_cluster(s, ctx, LP_M_CLUSTER_EVENTS_TOTAL);
}

/* The balancer's numbers per configured (backend, model) pair (routestats.h). */
static void gauge_routes(struct lp_metrics_sink *sink, void *ctx, enum lp_metric_id id)
{
    struct lp_runtime *rt = ctx;
    if (!rt->routestats)
        return;
    struct lp_config *cfg = lp_runtime_config(rt);
    int64_t now = lp_now_ms();
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        const struct lp_alias *al = &cfg->aliases[a];
        for (size_t r = 0; r < al->n_routes; r++) {
            const struct lp_route *ro = &al->routes[r];
            const char *bname = cfg->backends[ro->backend_idx].name;
            struct lp_routestat_view v;
            if (pair_seen_before(cfg, a, r) ||
                !lp_routestats_view(rt->routestats, bname, ro->model, now, &v))
                continue;
            if (id == LP_M_ROUTE_LATENCY_SECONDS) {
                static const char *const kinds[2] = {"head", "first_event"};
                for (int k = 0; k < 2; k++) {
                    const char *l[] = {bname, ro->model, kinds[k]};
                    if (v.latency_ms[k] >= 0)
                        lp_metrics_sink_put(sink, l, v.latency_ms[k] / 1000.0);
                }
            } else {
                const char *l[] = {bname, ro->model};
                if (id == LP_M_ROUTE_IN_FLIGHT)
                    lp_metrics_sink_put(sink, l, (double)v.in_flight);
                else if (id == LP_M_ROUTE_FAILURE_SCORE)
                    lp_metrics_sink_put(sink, l, v.failure_score);
                else if (id == LP_M_ROUTE_RATELIMIT_HEADROOM && v.headroom >= 0)
                    lp_metrics_sink_put(sink, l, v.headroom);
                else if (id == LP_M_ROUTE_RATELIMIT_EXHAUSTED)
                    lp_metrics_sink_put(sink, l, v.cooling_until_ms > 0 ? 1.0 : 0.0);
            }
        }
    }
    lp_config_unref(cfg);
}
static void gauge_route_latency(struct lp_metrics_sink *s, void *ctx)
{
    gauge_routes(s, ctx, LP_M_ROUTE_LATENCY_SECONDS);
}
static void gauge_route_in_flight(struct lp_metrics_sink *s, void *ctx)
{
    gauge_routes(s, ctx, LP_M_ROUTE_IN_FLIGHT);
}
static void gauge_route_failures(struct lp_metrics_sink *s, void *ctx)
{
    gauge_routes(s, ctx, LP_M_ROUTE_FAILURE_SCORE);
}
static void gauge_route_headroom(struct lp_metrics_sink *s, void *ctx)
{
    gauge_routes(s, ctx, LP_M_ROUTE_RATELIMIT_HEADROOM);
}
static void gauge_route_exhausted(struct lp_metrics_sink *s, void *ctx)
{
    gauge_routes(s, ctx, LP_M_ROUTE_RATELIMIT_EXHAUSTED);
}

void lp_admin_register_metrics(struct lp_runtime *rt)
{
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ROUTE_LATENCY_SECONDS, gauge_route_latency, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ROUTE_IN_FLIGHT, gauge_route_in_flight, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ROUTE_FAILURE_SCORE, gauge_route_failures, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ROUTE_RATELIMIT_HEADROOM, gauge_route_headroom, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ROUTE_RATELIMIT_EXHAUSTED, gauge_route_exhausted, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_REDIS_UP, gauge_redis_up, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_REDIS_LATENCY_SECONDS, gauge_redis_latency, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_REDIS_ERRORS_TOTAL, counter_redis_errors, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_CLUSTER_INSTANCES, gauge_instances, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_CLUSTER_EVENTS_TOTAL, counter_cluster_events, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ACTIVE_REQUESTS, gauge_active_requests, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ACTIVE_STREAMS, gauge_active_streams, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_COOLDOWN_ACTIVE, gauge_cooldowns, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_ALIAS_USABLE_ROUTES, gauge_usable_routes, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BREAKER_STATE, gauge_breakers, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_PROBES_TOTAL, counter_probes, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BACKEND_DOWN, gauge_backend_down, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_PROBE_DURATION_SECONDS, gauge_probe_duration, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_CLIENT_CONNECTIONS, gauge_client_connections, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_CLIENT_CONNECTIONS_LIMIT,
                            gauge_client_connections_limit, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_CLIENT_CONNECTIONS_REFUSED_TOTAL,
                            counter_connections_refused, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BODY_MEMORY_BYTES, gauge_body_memory, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BODY_MEMORY_REFUSED_TOTAL,
                            counter_body_memory_refused, rt);
}

/* ---- endpoints --------------------------------------------------------------------------- */

static void serve_metrics(struct lp_request *req)
{
    size_t len = 0;
    char *body = lp_metrics_render(req->rt->metrics, &len);
    lp_request_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, NULL, 0);
    free(body);
}

static void serve_readyz(struct lp_request *req)
{
    bool draining = atomic_load(&req->rt->draining);
    struct lp_cluster_status cs;
    lp_cluster_get_status(req->rt->cluster, &cs);
    /* With on_error: fail_closed, an instance that cannot reach Redis refuses limited traffic:
     * it is not ready. With fail_open it serves on its share: ready, and the body says so. */
    bool redis_block = cs.enabled && !cs.available && cs.on_error == LP_REDIS_FAIL_CLOSED;
    bool ok =
        !draining && !redis_block && lp_health_any_usable(req->rt->health, req->cfg, lp_now_ms());
    const char *body = draining      ? "{\"ready\":false,\"reason\":\"draining\"}"
                       : redis_block ? "{\"ready\":false,\"reason\":\"redis unavailable\"}"
                       : !ok         ? "{\"ready\":false,\"reason\":\"no usable route\"}"
                       : cs.enabled && !cs.available
                           ? "{\"ready\":true,\"redis\":\"unavailable (fail_open)\"}"
                           : "{\"ready\":true}";
    reply_json(req, ok ? 200 : 503, body, strlen(body));
}

static const char *redis_state_name(enum lp_redis_state s)
{
    return s == LP_REDIS_READY ? "ready" : s == LP_REDIS_CONNECTING ? "connecting" : "down";
}

/* GET /admin/cluster: the Redis connection and the shared state's traffic. */
static void serve_cluster(struct lp_request *req)
{
    struct lp_cluster_status st;
    lp_cluster_get_status(req->rt->cluster, &st);
    struct json_object *o = json_object_new_object();
    lp_json_set_bool(o, "enabled", st.enabled);
    if (st.enabled) {
        lp_json_set_str(o, "instance", st.instance_id);
        lp_json_set_str(o, "redis", redis_state_name(st.state));
        lp_json_set_bool(o, "available", st.available);
        lp_json_set_str(o, "on_error",
                        st.on_error == LP_REDIS_FAIL_CLOSED ? "fail_closed" : "fail_open");
        lp_json_set_int(o, "instances", st.instances);
        lp_json_set_int(o, "latency_us", st.latency_us);
        lp_json_set_int(o, "timeouts", (int64_t)st.timeouts);
        lp_json_set_int(o, "errors", (int64_t)st.errors);
        lp_json_set_int(o, "events_sent", (int64_t)st.events_sent);
        lp_json_set_int(o, "events_received", (int64_t)st.events_received);
        lp_json_set_int(o, "events_applied", (int64_t)st.events_applied);
    }
    size_t len = 0;
    const char *s = lp_json_dump(o, &len);
    reply_json(req, 200, s, len);
    json_object_put(o);
}

static void serve_stats(struct lp_request *req)
{
    size_t len = 0;
    char *body = lp_metrics_stats_json(req->rt->metrics, &len);
    reply_json(req, 200, body, len);
    free(body);
}

static void serve_backends(struct lp_request *req)
{
    char *body = lp_health_json(req->rt->health, req->cfg, lp_now_ms(), lp_wall_ms());
    body = lp_traffic_backends_json(req->rt, req->cfg, body); /* in-flight, limits, queue */
    if (req->rt->routestats) /* the balancer's numbers per model, effective routing */
        body = lp_routestats_backends_json(req->rt->routestats, req->cfg, body, lp_now_ms());
    reply_json(req, 200, body, strlen(body));
    free(body);
}

static const char *route_state_name(enum lp_route_state s)
{
    switch (s) {
    case LP_ROUTE_USABLE:
        return "usable";
    case LP_ROUTE_COOLING:
        return "cooling";
    case LP_ROUTE_OPEN:
        return "open";
    case LP_ROUTE_DRAINED:
        return "drained";
    }
    return "?";
}

/* Each alias with its routes (priority, state now) and the route a request would try first. */
static struct json_object *aliases_json(struct lp_request *req, int64_t now)
{
    const struct lp_config *cfg = req->cfg;
    struct json_object *arr = json_object_new_array();
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        const struct lp_alias *al = &cfg->aliases[a];
        struct json_object *o = json_object_new_object();
        lp_json_set_str(o, "name", al->name);
        lp_json_set_bool(o, "enabled", al->enabled);
        struct json_object *routes = json_object_new_array();
        for (size_t r = 0; r < al->n_routes; r++) {
            const struct lp_route *rt = &al->routes[r];
            struct json_object *ro = json_object_new_object();
            lp_json_set_str(ro, "backend", rt->backend);
            lp_json_set_str(ro, "model", rt->model);
            lp_json_set_int(ro, "priority", rt->priority);
            lp_json_set_bool(ro, "enabled", rt->enabled);
            if (rt->backend_idx < cfg->n_backends && rt->model) {
                int64_t until = 0;
                enum lp_route_state st = lp_health_state_fn(
                    req->rt->health, &cfg->backends[rt->backend_idx], rt->model, now, &until);
                lp_json_set_str(ro, "state", route_state_name(st));
                if (until > now)
                    lp_json_set_int(ro, "remaining_ms", until - now);
            }
            json_object_array_add(routes, ro);
        }
        lp_json_set(o, "routes", routes);
        struct lp_plan_opts po = {.client_proto = LP_PROTO_OPENAI,
                                  .allow_cross_protocol = true,
                                  .state_fn = lp_health_state_fn,
                                  .state_ctx = req->rt->health,
                                  .now_ms = now};
        struct lp_candidate first;
        if (al->enabled && lp_router_plan(cfg, al, &po, &first, 1, NULL) == 1) {
            struct json_object *p = json_object_new_object();
            lp_json_set_str(p, "backend", first.backend->name);
            lp_json_set_str(p, "model", first.route->model);
            lp_json_set_bool(p, "fallback_alias", first.level2);
            lp_json_set(o, "preferred", p);
        } else {
            lp_json_set(o, "preferred", NULL);
        }
        json_object_array_add(arr, o);
    }
    return arr;
}

/* GET /admin/status: what the status page shows, in one answer: the backends as
 * /admin/backends has them, the aliases with their routes and preferred route, the latest
 * failovers and the live counts. Rates come from the page's own /metrics deltas. */
static void serve_status(struct lp_request *req)
{
    int64_t now = lp_now_ms();
    char *b = lp_health_json(req->rt->health, req->cfg, now, lp_wall_ms());
    b = lp_traffic_backends_json(req->rt, req->cfg, b);
    if (req->rt->routestats)
        b = lp_routestats_backends_json(req->rt->routestats, req->cfg, b, now);
    struct json_object *root = lp_json_parse(b, strlen(b), NULL);
    free(b);
    if (!root)
        root = json_object_new_object();
    lp_json_set_str(root, "version", LP_VERSION);
    lp_json_set_int(root, "now_ms", lp_wall_ms());
    lp_json_set_int(root, "uptime_s", (lp_wall_ms() - req->rt->started_wall_ms) / 1000);
    lp_json_set_int(root, "active_requests", atomic_load(&req->rt->active_llm));
    lp_json_set_int(root, "active_streams", atomic_load(&req->rt->active_streams));
    lp_json_set_bool(root, "draining", atomic_load(&req->rt->draining));
    lp_json_set(root, "aliases", aliases_json(req, now));
    lp_json_set_int(root, "failovers_total", (int64_t)lp_failfeed_count());
    lp_json_set(root, "failovers", lp_failfeed_json());
    size_t len = 0;
    const char *s = lp_json_dump(root, &len);
    struct lp_edge_header h = {"Cache-Control", "no-store"};
    lp_request_reply(req, 200, "application/json", s, len, &h, 1);
    json_object_put(root);
}

/* Client keys by name with their limits and usage (never the secrets). */
static void serve_keys(struct lp_request *req)
{
    char *body = lp_traffic_keys_json(req->rt, req->cfg);
    reply_json(req, 200, body, strlen(body));
    free(body);
}

static struct json_object *masked_str(const char *s)
{
    if (!s || !*s)
        return json_object_new_string("");
    struct lp_buf b;
    lp_buf_init(&b, 256);
    lp_mask_token(s, strlen(s), &b);
    struct json_object *o = json_object_new_string(b.data ? b.data : "****");
    lp_buf_free(&b);
    return o;
}

static struct json_object *masked_url(const char *url)
{
    struct lp_buf b;
    lp_buf_init(&b, 8192);
    lp_mask(url, strlen(url), &b, NULL, 0);
    struct json_object *o = json_object_new_string(b.data ? b.data : "");
    lp_buf_free(&b);
    return o;
}

static struct json_object *timeouts_json(const struct lp_timeouts *t)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_int(o, "connect_timeout_ms", t->connect_ms);
    lp_json_set_int(o, "read_timeout_ms", t->read_ms);
    lp_json_set_int(o, "write_timeout_ms", t->write_ms);
    lp_json_set_int(o, "total_timeout_ms", t->total_ms);
    lp_json_set_int(o, "ttft_timeout_ms", t->ttft_ms);
    return o;
}

static struct json_object *backends_json(const struct lp_config *cfg)
{
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct lp_backend *b = &cfg->backends[i];
        struct json_object *o = json_object_new_object();
        lp_json_set_str(o, "name", b->name);
        lp_json_set(o, "url", masked_url(b->url));
        lp_json_set(o, "api_key", masked_str(b->api_key));
        lp_json_set_bool(o, "enabled", b->enabled);
        lp_json_set_str(o, "protocol", lp_proto_name(b->protocol));
        lp_json_set_str(o, "dialect", lp_dialect_get(b->dialect)->name);
        lp_json_set(o, "timeout", timeouts_json(&b->timeout));
        struct json_object *h = json_object_new_object();
        for (size_t k = 0; k < b->n_headers; k++)
            lp_json_set(h, b->headers[k].key, masked_str(b->headers[k].value));
        lp_json_set(o, "headers", h);
        if (b->max_tokens)
            lp_json_set_int(o, "max_tokens", b->max_tokens);
        json_object_array_add(arr, o);
    }
    return arr;
}

static struct json_object *models_json(const struct lp_config *cfg)
{
    struct json_object *m = json_object_new_object();
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        const struct lp_alias *a = &cfg->aliases[i];
        struct json_object *o = json_object_new_object();
        lp_json_set_bool(o, "enabled", a->enabled);
        struct json_object *routes = json_object_new_array();
        for (size_t r = 0; r < a->n_routes; r++) {
            const struct lp_route *ro = &a->routes[r];
            struct json_object *ro_j = json_object_new_object();
            lp_json_set_str(ro_j, "backend", ro->backend);
            lp_json_set_str(ro_j, "model", ro->model);
            lp_json_set_int(ro_j, "priority", ro->priority);
            lp_json_set_bool(ro_j, "enabled", ro->enabled);
            lp_json_set_int(ro_j, "weight", ro->weight);
            json_object_array_add(routes, ro_j);
        }
        lp_json_set(o, "routes", routes);
        struct json_object *fb = json_object_new_array();
        for (size_t k = 0; k < a->n_fallbacks; k++)
            json_object_array_add(fb, json_object_new_string(a->fallbacks[k]));
        lp_json_set(o, "alias_fallback", fb);
        lp_json_set(o, "routing", lp_routing_cfg_json(&a->routing));
        lp_json_set(m, a->name, o);
    }
    return m;
}

static struct json_object *fallback_json(const struct lp_fallback_cfg *f)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_int(o, "cooldown_seconds", f->cooldown_seconds);
    lp_json_set_int(o, "max_retries", f->max_retries);
    lp_json_set_bool(o, "enable_backoff", f->enable_backoff);
    lp_json_set_int(o, "backoff_initial_delay", f->backoff_initial_ms);
    lp_json_set_int(o, "backoff_max_delay", f->backoff_max_ms);
    lp_json_set(o, "backoff_multiplier", json_object_new_double(f->backoff_multiplier));
    lp_json_set(o, "backoff_jitter", json_object_new_double(f->backoff_jitter));
    lp_json_set_bool(o, "enable_circuit_breaker", f->enable_circuit_breaker);
    lp_json_set_int(o, "circuit_failure_threshold", f->circuit_failure_threshold);
    lp_json_set_int(o, "circuit_success_threshold", f->circuit_success_threshold);
    lp_json_set_int(o, "circuit_open_timeout", f->circuit_open_timeout_s);
    lp_json_set_int(o, "circuit_half_open_max", f->circuit_half_open_max);
    lp_json_set_str(o, "when_all_cooling",
                    f->when_all_cooling == LP_ALL_COOLING_TRY_SOONEST ? "try_soonest" : "fail");
    return o;
}

static void serve_config(struct lp_request *req)
{
    const struct lp_config *cfg = req->cfg;
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "path", cfg->path);
    lp_json_set_str(o, "listen", cfg->listen);
    lp_json_set(o, "proxy_api_key", masked_str(cfg->proxy_api_key));
    lp_json_set(o, "admin_api_key", masked_str(cfg->admin_api_key));
    lp_json_set(o, "backends", backends_json(cfg));
    lp_json_set(o, "models", models_json(cfg));
    lp_json_set(o, "fallback", fallback_json(&cfg->fallback));
    lp_json_set(o, "routing", lp_routing_cfg_json(&cfg->routing));
    lp_json_set(o, "timeout", timeouts_json(&cfg->timeout));
    struct json_object *srv = json_object_new_object();
    lp_json_set_int(srv, "max_body_size", cfg->server.max_body_size);
    lp_json_set_int(srv, "max_header_size", cfg->server.max_header_size);
    lp_json_set_int(srv, "idle_timeout_ms", cfg->server.idle_timeout_ms);
    lp_json_set_int(srv, "threads", cfg->server.threads);
    lp_json_set_int(srv, "shutdown_timeout_ms", cfg->server.shutdown_timeout_ms);
    lp_json_set_int(srv, "body_timeout_ms", cfg->server.body_timeout_ms);
    lp_json_set_int(srv, "min_body_rate", cfg->server.min_body_rate);
    lp_json_set_int(srv, "max_connections", cfg->server.max_connections);
    lp_json_set_int(srv, "max_connections_per_ip", cfg->server.max_connections_per_ip);
    lp_json_set_int(srv, "max_body_memory", cfg->server.max_body_memory);
    lp_json_set(o, "server", srv);
    struct json_object *px = json_object_new_object();
    lp_json_set_bool(px, "enable_system_prompt", cfg->proxy.enable_system_prompt);
    lp_json_set_bool(px, "forward_client_ip", cfg->proxy.forward_client_ip);
    lp_json_set_int(px, "default_max_tokens", cfg->proxy.default_max_tokens);
    lp_json_set(o, "proxy", px);
    lp_json_set(o, "traffic", lp_traffic_config_json(cfg)); /* limits; key names, masked keys */
    size_t len = 0;
    const char *s = lp_json_dump(o, &len);
    reply_json(req, 200, s, len);
    json_object_put(o);
}

static void on_reload_done(void *arg, bool ok, char *message)
{
    struct lp_request *req = arg;
    req->admin_job = NULL;
    req->on_teardown = NULL;
    struct json_object *o = json_object_new_object();
    lp_json_set_bool(o, "ok", ok);
    /* Diagnostics may quote a misplaced key value: mask with the keys of both the running and
     * (if it loaded) the new snapshot, like every other admin view. */
    struct lp_config *now = lp_runtime_config(req->rt);
    size_t n_old, n_new;
    const char *const *s_old = lp_config_secrets(req->cfg, &n_old);
    const char *const *s_new = lp_config_secrets(now, &n_new);
    const char **secrets = lp_xcalloc(n_old + n_new + 1, sizeof *secrets);
    for (size_t i = 0; i < n_old; i++)
        secrets[i] = s_old[i];
    for (size_t i = 0; i < n_new; i++)
        secrets[n_old + i] = s_new[i];
    size_t n = n_old + n_new;
    struct lp_buf mb;
    lp_buf_init(&mb, 1 << 20);
    const char *msg = message && *message ? message : (ok ? "reloaded" : "invalid");
    lp_mask(msg, strlen(msg), &mb, secrets, n);
    free(secrets);
    lp_json_set_str(o, "message", mb.data ? mb.data : "");
    lp_buf_free(&mb);
    lp_config_unref(now);
    size_t len = 0;
    const char *s = lp_json_dump(o, &len);
    reply_json(req, ok ? 200 : 400, s, len);
    json_object_put(o);
    free(message);
    lp_request_finish(req);
}

/* on_teardown hook while a reload job is pending: the client left (or the proxy stops). */
static void cancel_reload(struct lp_request *req)
{
    if (req->admin_job) {
        lp_reload_job_cancel(req->admin_job);
        req->admin_job = NULL;
    }
}

static void serve_reload(struct lp_request *req)
{
    struct lp_reloader *r = lp_reloader_get();
    if (!r) {
        lp_request_reply_error(req, 503, NULL, "reload_unavailable", "Reload is not available");
        return;
    }
    req->on_teardown = cancel_reload;
    req->admin_job = lp_reloader_run_async(r, req->w->base, on_reload_done, req);
}

static void serve_drain(struct lp_request *req, const char *rest)
{
    /* rest = "{name}/drain" or "{name}/undrain" */
    const char *slash = strrchr(rest, '/');
    if (!slash || slash == rest) {
        lp_request_reply_error(req, 404, NULL, "unknown_endpoint", "Unknown admin endpoint");
        return;
    }
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(slash - rest), rest);
    bool drain;
    if (strcmp(slash, "/drain") == 0)
        drain = true;
    else if (strcmp(slash, "/undrain") == 0)
        drain = false;
    else {
        lp_request_reply_error(req, 404, NULL, "unknown_endpoint", "Unknown admin endpoint");
        return;
    }
    if (lp_config_find_backend(req->cfg, name) < 0) {
        char msg[320];
        snprintf(msg, sizeof msg, "Unknown backend '%s'", name);
        lp_request_reply_error(req, 404, NULL, "unknown_backend", msg);
        return;
    }
    lp_health_set_drained(req->rt->health, name, drain);
    lp_log_info(req->id, "backend %s %s by admin request", name, drain ? "drained" : "undrained");
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "backend", name);
    lp_json_set_bool(o, "drained", drain);
    size_t len = 0;
    const char *body = lp_json_dump(o, &len);
    reply_json(req, 200, body, len);
    json_object_put(o);
}

void lp_admin_handle(struct lp_request *req)
{
    const char *p = req->path;
    bool get = strcmp(req->method, "GET") == 0;
    bool post = strcmp(req->method, "POST") == 0;
    if (get && strcmp(p, "/metrics") == 0) {
        serve_metrics(req);
        return;
    }
    if (get && strcmp(p, "/readyz") == 0) {
        serve_readyz(req);
        return;
    }
    if (get && lp_statuspage_owns(p)) { /* no data in it: the page asks for the key itself */
        lp_statuspage_serve(req);
        return;
    }
    const char *key = lp_admin_key(req->cfg);
    if ((!key || !key[0]) && req->cfg->n_keys > 0) {
        /* Client keys make the proxy authenticated: its admin API must not stay open. */
        lp_request_reply_error(req, 401, NULL, "invalid_api_key",
                               "The admin API needs admin_api_key or proxy_api_key when client "
                               "keys are configured");
        return;
    }
    if (!lp_request_check_auth(req, key))
        return;
    if (get && strcmp(p, "/admin/stats") == 0)
        serve_stats(req);
    else if (get && strcmp(p, "/admin/backends") == 0)
        serve_backends(req);
    else if (get && strcmp(p, "/admin/keys") == 0)
        serve_keys(req);
    else if (get && strcmp(p, "/admin/config") == 0)
        serve_config(req);
    else if (get && strcmp(p, "/admin/status") == 0)
        serve_status(req);
    else if (get && strcmp(p, "/admin/cluster") == 0)
        serve_cluster(req);
    else if (post && strcmp(p, "/admin/reload") == 0)
        serve_reload(req);
    else if (post && strncmp(p, "/admin/backends/", 16) == 0)
        serve_drain(req, p + 16);
    else
        lp_request_reply_error(req, 404, NULL, "unknown_endpoint", "Unknown admin endpoint");
}
