/* hedge.c - hedge budget and delay. See hedge.h for the contract. */
#include "hedge.h"

#include <stdlib.h>

static void start(struct lp_hedge_budget *b)
{
    if (!b->started) {
        b->tokens = LP_HEDGE_BUDGET_START;
        b->started = true;
    }
}

void lp_hedge_budget_credit(struct lp_hedge_budget *b, int budget_percent)
{
    start(b);
    if (budget_percent <= 0)
        return;
    b->tokens += (double)budget_percent / 100.0;
    if (b->tokens > LP_HEDGE_BUDGET_CAP)
        b->tokens = LP_HEDGE_BUDGET_CAP;
}

bool lp_hedge_budget_take(struct lp_hedge_budget *b)
{
    start(b);
    if (b->tokens < 1.0 - 1e-9)
        return false;
    b->tokens -= 1.0;
    if (b->tokens < 0)
        b->tokens = 0;
    return true;
}

void lp_hedge_window_add(struct lp_hedge_window *w, double ms)
{
    if (!(ms >= 0))
        return;
    w->v[w->next] = (float)ms;
    w->next = (w->next + 1) % LP_HEDGE_WINDOW;
    if (w->n < LP_HEDGE_WINDOW)
        w->n++;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

bool lp_hedge_window_pct(const struct lp_hedge_window *w, int pct, double *ms)
{
    if (w->n < LP_HEDGE_MIN_SAMPLES || pct <= 0 || pct > 100)
        return false;
    float s[LP_HEDGE_WINDOW];
    for (uint32_t i = 0; i < w->n; i++)
        s[i] = w->v[i];
    qsort(s, w->n, sizeof s[0], cmp_float);
    uint32_t rank = (uint32_t)(((uint64_t)pct * w->n + 99) / 100); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    *ms = s[rank - 1];
    return true;
}

int64_t lp_hedge_delay_ms(const struct lp_hedge_cfg *h, const struct lp_hedge_window *w)
{
    int64_t d = h->delay_ms > 0 ? h->delay_ms : 500;
    double p;
    if (h->delay_pct > 0 && w && lp_hedge_window_pct(w, h->delay_pct, &p))
        d = (int64_t)(p + 0.5);
    return d < 1 ? 1 : d;
}
