/* router.c - the planner. See router.h for the contract. */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "dialect.h"
#include "util/alloc.h"

/* A growable list of candidates; the plan keeps usable and unusable ones apart so the unusable
 * ones can be appended last without disturbing the usable order. */
struct cand_list {
    struct lp_candidate *items;
    size_t n, cap;
};

struct seen_pair {
    const struct lp_backend *backend;
    const char *model;
};

struct plan {
    const struct lp_config *cfg;
    const struct lp_plan_opts *opts;
    struct lp_plan_info *info;
    struct cand_list usable;
    struct cand_list unusable;
    struct seen_pair *seen;
    size_t n_seen, cap_seen;
    const struct lp_alias **visited;
    size_t n_visited, cap_visited;
};

static void cand_push(struct cand_list *l, const struct lp_candidate *c)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->items = lp_xrealloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->n++] = *c;
}

/* True when (backend, model) was already considered; otherwise records it. */
static bool seen_or_add(struct plan *p, const struct lp_backend *b, const char *model)
{
    for (size_t i = 0; i < p->n_seen; i++)
        if (p->seen[i].backend == b && strcmp(p->seen[i].model, model) == 0)
            return true;
    if (p->n_seen == p->cap_seen) {
        p->cap_seen = p->cap_seen ? p->cap_seen * 2 : 8;
        p->seen = lp_xrealloc(p->seen, p->cap_seen * sizeof *p->seen);
    }
    p->seen[p->n_seen++] = (struct seen_pair){b, model};
    return false;
}

/* True when alias was already expanded in this plan; otherwise marks it. */
static bool visited_or_mark(struct plan *p, const struct lp_alias *a)
{
    for (size_t i = 0; i < p->n_visited; i++)
        if (p->visited[i] == a)
            return true;
    if (p->n_visited == p->cap_visited) {
        p->cap_visited = p->cap_visited ? p->cap_visited * 2 : 8;
        p->visited = lp_xrealloc(p->visited, p->cap_visited * sizeof *p->visited);
    }
    p->visited[p->n_visited++] = a;
    return false;
}

/* Linear lookup so the planner depends only on the config's data, not on its sort order. */
static const struct lp_alias *find_alias(const struct lp_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_aliases; i++)
        if (cfg->aliases[i].name && strcmp(cfg->aliases[i].name, name) == 0)
            return &cfg->aliases[i];
    return NULL;
}

static const struct lp_backend *route_backend(const struct lp_config *cfg, const struct lp_route *r)
{
    if (r->backend_idx >= cfg->n_backends)
        return NULL;
    return &cfg->backends[r->backend_idx];
}

static void note_soonest(struct lp_plan_info *info, int64_t until)
{
    if (until > 0 && (info->soonest_until_ms == 0 || until < info->soonest_until_ms))
        info->soonest_until_ms = until;
}

/* One run of usable candidates of equal priority with what the balancer knows of each. */
struct run {
    struct cand_list c;
    struct lp_balance_item *items;
    size_t cap_items;
};

/* Apply the protocol, duplicate and health filters to one eligible route; a usable one goes to
 * run (ordered by the balancer afterwards) unless its upstream said its quota is used up. */
static void consider(struct plan *p, const struct lp_alias *alias, const struct lp_route *r,
                     bool level2, struct run *run)
{
    const struct lp_plan_opts *o = p->opts;
    const struct lp_backend *b = route_backend(p->cfg, r);
    struct lp_candidate c = {
        .alias = alias,
        .route = r,
        .backend = b,
        .level2 = level2,
        .dialect = lp_dialect_get(lp_dialect_of_route(b, r)),
    };
    c.protocol = c.dialect->wire;
    if (!o->allow_cross_protocol && c.protocol != o->client_proto) {
        p->info->skipped_protocol++;
        return;
    }
    if (seen_or_add(p, b, r->model)) {
        p->info->skipped_duplicate++;
        return;
    }
    c.state = o->state_fn ? o->state_fn(o->state_ctx, b, r->model, o->now_ms, &c.until_ms)
                          : LP_ROUTE_USABLE;
    struct lp_balance_item it = {.latency_ms = -1, .share = 1.0};
    if (c.state == LP_ROUTE_USABLE && o->load_fn) {
        c.stat = o->load_fn(o->load_ctx, b, r->model, o->stream, o->now_ms, alias->routing.decay_ms,
                            &it);
        if (it.cool_until_ms > o->now_ms) { /* quota used up until its reset */
            c.state = LP_ROUTE_COOLING;
            c.until_ms = it.cool_until_ms;
        }
    }
    it.weight = r->weight;
    switch (c.state) {
    case LP_ROUTE_USABLE:
        c.until_ms = 0;
        if (run->c.n == run->cap_items) {
            run->cap_items = run->cap_items ? run->cap_items * 2 : 8;
            run->items = lp_xrealloc(run->items, run->cap_items * sizeof *run->items);
        }
        run->items[run->c.n] = it;
        cand_push(&run->c, &c);
        return;
    case LP_ROUTE_COOLING:
        p->info->skipped_cooling++;
        break;
    case LP_ROUTE_OPEN:
        p->info->skipped_open++;
        break;
    case LP_ROUTE_DRAINED:
    default:
        /* A drain is an operator's decision: never kept, even by include_unusable. */
        p->info->skipped_drained++;
        return;
    }
    note_soonest(p->info, c.until_ms);
    if (o->include_unusable)
        cand_push(&p->unusable, &c);
}

/* Stable insertion sort of route pointers by priority (route lists are short). */
static void sort_by_priority(const struct lp_route **rs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        const struct lp_route *x = rs[i];
        size_t j = i;
        while (j > 0 && rs[j - 1]->priority > x->priority) {
            rs[j] = rs[j - 1];
            j--;
        }
        rs[j] = x;
    }
}

/* Order one run of usable candidates of equal priority by the alias's strategy and append it to
 * the plan's usable list. */
static void balance_run(struct plan *p, const struct lp_alias *alias, struct run *run)
{
    const struct lp_plan_opts *o = p->opts;
    size_t n = run->c.n;
    if (n > 1 && n <= LP_BALANCE_MAX) {
        size_t order[LP_BALANCE_MAX];
        uint64_t rr = 0;
        if (alias->routing.strategy == LP_STRATEGY_ROUND_ROBIN && o->rr_fn)
            rr = o->rr_fn(o->load_ctx, alias);
        lp_balance_order(alias->routing.strategy, run->items, n, o->rng, rr, order);
        for (size_t i = 0; i < n; i++)
            cand_push(&p->usable, &run->c.items[order[i]]);
    } else {
        for (size_t i = 0; i < n; i++)
            cand_push(&p->usable, &run->c.items[i]);
    }
    run->c.n = 0;
}

static void plan_alias(struct plan *p, const struct lp_alias *alias, bool level2)
{
    if (visited_or_mark(p, alias))
        return;
    const struct lp_route **rs = lp_xcalloc(alias->n_routes ? alias->n_routes : 1, sizeof *rs);
    size_t n = 0;
    for (size_t i = 0; i < alias->n_routes; i++) {
        const struct lp_route *r = &alias->routes[i];
        const struct lp_backend *b = route_backend(p->cfg, r);
        if (!r->enabled || !b || !b->enabled || !r->model) {
            p->info->skipped_disabled++;
            continue;
        }
        rs[n++] = r;
    }
    sort_by_priority(rs, n);
    struct run run = {0};
    for (size_t i = 0; i < n; i++) {
        consider(p, alias, rs[i], level2, &run);
        if (i + 1 == n || rs[i + 1]->priority != rs[i]->priority)
            balance_run(p, alias, &run);
    }
    free(run.c.items);
    free(run.items);
    free(rs);

    for (size_t i = 0; i < alias->n_fallbacks; i++) {
        const struct lp_alias *fa =
            alias->fallbacks[i] ? find_alias(p->cfg, alias->fallbacks[i]) : NULL;
        if (fa && fa->enabled)
            plan_alias(p, fa, true);
    }
}

static int64_t expiry_key(const struct lp_candidate *c)
{
    return c->until_ms > 0 ? c->until_ms : INT64_MAX;
}

/* Unusable candidates: soonest expiry first; stable, so ties keep the plan order. */
static void sort_by_expiry(struct cand_list *l)
{
    for (size_t i = 1; i < l->n; i++) {
        struct lp_candidate x = l->items[i];
        size_t j = i;
        while (j > 0 && expiry_key(&l->items[j - 1]) > expiry_key(&x)) {
            l->items[j] = l->items[j - 1];
            j--;
        }
        l->items[j] = x;
    }
}

static size_t emit(const struct cand_list *l, struct lp_candidate *out, size_t at, size_t max)
{
    for (size_t i = 0; i < l->n && at < max; i++)
        out[at++] = l->items[i];
    return at;
}

size_t lp_router_plan(const struct lp_config *cfg, const struct lp_alias *alias,
                      const struct lp_plan_opts *opts, struct lp_candidate *out, size_t max,
                      struct lp_plan_info *info)
{
    struct lp_plan_info scratch;
    if (!info)
        info = &scratch;
    memset(info, 0, sizeof *info);
    if (!cfg || !alias || !opts)
        return 0;

    struct plan p = {.cfg = cfg, .opts = opts, .info = info};
    plan_alias(&p, alias, false);
    sort_by_expiry(&p.unusable);
    info->n_usable = p.usable.n;
    info->n_total = p.usable.n + p.unusable.n;

    size_t n = 0;
    if (out) {
        n = emit(&p.usable, out, 0, max);
        n = emit(&p.unusable, out, n, max);
    }
    free(p.usable.items);
    free(p.unusable.items);
    free(p.seen);
    free(p.visited);
    return n;
}

int lp_plan_max_attempts(const struct lp_fallback_cfg *f, size_t n_candidates)
{
    size_t cap = n_candidates;
    if (f && f->max_retries > 0 && (size_t)f->max_retries < n_candidates)
        cap = (size_t)f->max_retries + 1;
    if (cap > n_candidates)
        cap = n_candidates;
    return cap > (size_t)INT32_MAX ? INT32_MAX : (int)cap;
}
