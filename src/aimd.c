/* aimd.c - adaptive concurrency limit (see aimd.h). */
#include "aimd.h"

void lp_aimd_init(struct lp_aimd *a, int max)
{
    *a = (struct lp_aimd){.max = max >= 1 ? max : 1};
    a->limit = a->max;
    a->last_decrease_ms = INT64_MIN / 2;
}

void lp_aimd_set_max(struct lp_aimd *a, int max)
{
    a->max = max >= 1 ? max : 1;
    if (a->limit > a->max)
        a->limit = a->max;
}

int lp_aimd_limit(const struct lp_aimd *a)
{
    int n = (int)a->limit;
    return n >= 1 ? n : 1;
}

static void decrease(struct lp_aimd *a, double factor, int64_t now_ms)
{
    if (now_ms - a->last_decrease_ms < LP_AIMD_DECREASE_GAP_MS)
        return;
    a->last_decrease_ms = now_ms;
    a->limit *= factor;
    if (a->limit < 1.0)
        a->limit = 1.0;
    a->decreases++;
}

void lp_aimd_on_overload(struct lp_aimd *a, int64_t now_ms)
{
    decrease(a, 0.5, now_ms);
}

void lp_aimd_on_success(struct lp_aimd *a, double latency_ms, int64_t now_ms)
{
    if (latency_ms < 0)
        latency_ms = 0;
    a->samples++;
    if (a->baseline_ms <= 0 || latency_ms < a->baseline_ms)
        a->baseline_ms = latency_ms > 0.001 ? latency_ms : 0.001;
    else
        a->baseline_ms += (latency_ms - a->baseline_ms) * 0.01; /* forget an old minimum slowly */
    if (a->samples >= LP_AIMD_MIN_SAMPLES && latency_ms > a->baseline_ms * LP_AIMD_LATENCY_FACTOR &&
        latency_ms > 1.0) {
        decrease(a, 0.9, now_ms);
        return;
    }
    if (a->limit < a->max) {
        a->limit += 1.0 / a->limit;
        if (a->limit > a->max)
            a->limit = a->max;
        a->increases++;
    }
}
