/* balance.c - route ordering and estimates. See balance.h for the contract. */
#include "balance.h"

#include <math.h>

#include "util/rand.h"

#define MIN_SHARE                                                                                  \
    0.01                /* a route near its quota still gets a trickle (and its answer's headers)  \
                         */
#define MIN_LATENCY 1.0 /* ms: keeps the in-flight factor meaningful for very fast routes */

static double decay_weight(int64_t dt_ms, int64_t decay_ms)
{
    if (dt_ms <= 0)
        return 1.0;
    if (decay_ms <= 0)
        return 0.0;
    return exp(-(double)dt_ms / (double)decay_ms);
}

double lp_ewma_read(const struct lp_ewma *e, int64_t now_ms, int64_t decay_ms)
{
    if (!e->n)
        return -1.0;
    return e->value * decay_weight(now_ms - e->at_ms, decay_ms);
}

void lp_ewma_observe(struct lp_ewma *e, double x, int64_t now_ms, int64_t decay_ms)
{
    if (!(x >= 0)) /* NaN or negative: not a latency */
        return;
    if (!e->n) {
        e->value = x;
    } else {
        double w = decay_weight(now_ms - e->at_ms, decay_ms);
        double cur = e->value * w; /* what a reader sees now */
        e->value = x > cur ? x : cur * w + x * (1.0 - w);
    }
    e->at_ms = now_ms;
    e->n++;
}

void lp_ewma_at_least(struct lp_ewma *e, double x, int64_t now_ms, int64_t decay_ms)
{
    if (!(x >= 0))
        return;
    double cur = lp_ewma_read(e, now_ms, decay_ms);
    if (x > cur) {
        e->value = x;
        e->at_ms = now_ms;
        e->n++;
    }
}

void lp_ewma_add(struct lp_ewma *e, double v, int64_t now_ms, int64_t decay_ms)
{
    double cur = e->n ? e->value * decay_weight(now_ms - e->at_ms, decay_ms) : 0.0;
    e->value = cur + v;
    e->at_ms = now_ms;
    e->n++;
}

static double share_of(const struct lp_balance_item *it)
{
    double s = it->share;
    if (!(s > MIN_SHARE))
        return MIN_SHARE;
    return s > 1.0 ? 1.0 : s;
}

double lp_balance_cost(const struct lp_balance_item *it, double fallback_latency_ms)
{
    double lat = it->latency_ms >= 0 ? it->latency_ms : fallback_latency_ms;
    if (lat < MIN_LATENCY)
        lat = MIN_LATENCY;
    double fail = it->failures > 0 ? it->failures : 0.0;
    int inf = it->in_flight > 0 ? it->in_flight : 0;
    return lat * (double)(inf + 1) * (1.0 + 3.0 * fail) / share_of(it);
}

/* Remove position k from the pending list p[0..m). */
static void take(size_t *p, size_t *m, size_t k)
{
    for (size_t i = k + 1; i < *m; i++)
        p[i - 1] = p[i];
    (*m)--;
}

static void order_latency(const struct lp_balance_item *it, size_t n, uint64_t *rng, size_t *order)
{
    double sum = 0;
    size_t known = 0;
    for (size_t i = 0; i < n; i++) {
        if (it[i].latency_ms >= 0) {
            sum += it[i].latency_ms;
            known++;
        }
    }
    double fallback = known ? sum / (double)known : MIN_LATENCY;
    size_t pend[LP_BALANCE_MAX], m = n, out = 0;
    for (size_t i = 0; i < n; i++)
        pend[i] = i;
    while (m > 1) {
        size_t k;
        if (rng) {
            size_t a = (size_t)lp_rand_below(rng, m);
            size_t b = (size_t)lp_rand_below(rng, m - 1);
            if (b >= a)
                b++;
            k = lp_balance_cost(&it[pend[b]], fallback) < lp_balance_cost(&it[pend[a]], fallback)
                    ? b
                    : a;
        } else {
            k = 0;
            for (size_t i = 1; i < m; i++)
                if (lp_balance_cost(&it[pend[i]], fallback) <
                    lp_balance_cost(&it[pend[k]], fallback))
                    k = i;
        }
        order[out++] = pend[k];
        take(pend, &m, k);
    }
    if (m == 1)
        order[out] = pend[0];
}

/* Weighted sampling without replacement; weight 0 entries follow in config order. */
static void order_weighted(const struct lp_balance_item *it, size_t n, uint64_t *rng,
                           bool by_weight, size_t *order)
{
    size_t pend[LP_BALANCE_MAX], m = 0, out = 0;
    double w[LP_BALANCE_MAX];
    for (size_t i = 0; i < n; i++) {
        double x = share_of(&it[i]);
        if (by_weight)
            x *= it[i].weight > 0 ? (double)it[i].weight : 0.0;
        w[i] = x;
        if (x > 0)
            pend[m++] = i;
    }
    while (m > 0) {
        size_t k = 0;
        if (rng && m > 1) {
            double total = 0;
            for (size_t i = 0; i < m; i++)
                total += w[pend[i]];
            double r = lp_rand_unit(rng) * total;
            for (k = 0; k < m - 1; k++) {
                r -= w[pend[k]];
                if (r < 0)
                    break;
            }
        }
        order[out++] = pend[k];
        take(pend, &m, k);
    }
    for (size_t i = 0; i < n; i++)
        if (!(w[i] > 0))
            order[out++] = i;
}

/* The reference's Fisher-Yates shuffle (used when every share is equal). */
static void order_shuffle(size_t n, uint64_t *rng, size_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (!rng)
        return;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)lp_rand_below(rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

void lp_balance_order(enum lp_strategy s, const struct lp_balance_item *items, size_t n,
                      uint64_t *rng, uint64_t rr, size_t *order)
{
    if (!items || !order || n == 0)
        return;
    for (size_t i = LP_BALANCE_MAX; i < n; i++)
        order[i] = i; /* beyond the cap: config order */
    if (n > LP_BALANCE_MAX)
        n = LP_BALANCE_MAX;
    if (n == 1) {
        order[0] = 0;
        return;
    }
    switch (s) {
    case LP_STRATEGY_ROUND_ROBIN:
        for (size_t i = 0; i < n; i++)
            order[i] = (size_t)((rr + i) % n);
        return;
    case LP_STRATEGY_WEIGHTED:
        order_weighted(items, n, rng, true, order);
        return;
    case LP_STRATEGY_RANDOM: {
        bool equal = true;
        for (size_t i = 1; i < n && equal; i++)
            equal = share_of(&items[i]) == share_of(&items[0]);
        if (equal)
            order_shuffle(n, rng, order);
        else
            order_weighted(items, n, rng, false, order);
        return;
    }
    case LP_STRATEGY_LATENCY:
    default:
        order_latency(items, n, rng, order);
        return;
    }
}
