/* tbucket.c - token bucket arithmetic (see tbucket.h). */
#include "tbucket.h"

#include <math.h>

#define MIN_RATE 1e-6

void lp_tbucket_init(struct lp_tbucket *b, double rate, double burst, int64_t now_us)
{
    b->rate = rate > MIN_RATE ? rate : MIN_RATE;
    b->burst = burst >= 1.0 ? burst : 1.0;
    b->tokens = b->burst;
    b->t_us = now_us;
}

void lp_tbucket_refill(struct lp_tbucket *b, int64_t now_us)
{
    if (now_us <= b->t_us)
        return;
    double add = (double)(now_us - b->t_us) / 1e6 * b->rate;
    b->tokens = b->tokens + add > b->burst ? b->burst : b->tokens + add;
    b->t_us = now_us;
}

void lp_tbucket_resize(struct lp_tbucket *b, double rate, double burst, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    b->rate = rate > MIN_RATE ? rate : MIN_RATE;
    b->burst = burst >= 1.0 ? burst : 1.0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

bool lp_tbucket_take(struct lp_tbucket *b, double n, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    /* A hair of tolerance: refills accumulate binary fractions (0.1 + 0.2 ...). */
    if (b->tokens + 1e-9 < n)
        return false;
    b->tokens -= n;
    return true;
}

bool lp_tbucket_take_if_positive(struct lp_tbucket *b, double n, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    if (b->tokens <= 1e-9)
        return false;
    b->tokens -= n;
    return true;
}

void lp_tbucket_adjust(struct lp_tbucket *b, double n, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    b->tokens += n;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

int64_t lp_tbucket_wait_ms(struct lp_tbucket *b, double n, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    if (n > b->burst)
        n = b->burst;
    double missing = n - b->tokens;
    if (missing <= 1e-9)
        return 0;
    return (int64_t)ceil(missing / b->rate * 1000.0);
}

int64_t lp_tbucket_full_ms(struct lp_tbucket *b, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    double missing = b->burst - b->tokens;
    return missing <= 1e-9 ? 0 : (int64_t)ceil(missing / b->rate * 1000.0);
}

bool lp_tbucket_is_full(struct lp_tbucket *b, int64_t now_us)
{
    lp_tbucket_refill(b, now_us);
    return b->tokens >= b->burst - 1e-9;
}
