/* breaker.c - see breaker.h. */
#include "breaker.h"

#include <string.h>

static struct lp_breaker_cfg normalised(const struct lp_breaker_cfg *in)
{
    struct lp_breaker_cfg c = in ? *in : (struct lp_breaker_cfg){0};
    if (c.failure_threshold <= 0)
        c.failure_threshold = 5;
    if (c.success_threshold <= 0)
        c.success_threshold = 2;
    if (c.open_timeout_ms <= 0)
        c.open_timeout_ms = 60000;
    if (c.half_open_max <= 0)
        c.half_open_max = 1;
    return c;
}

struct lp_breaker_cfg lp_breaker_cfg_from(const struct lp_fallback_cfg *f)
{
    struct lp_breaker_cfg c = {0};
    if (f) {
        c.failure_threshold = f->circuit_failure_threshold;
        c.success_threshold = f->circuit_success_threshold;
        c.open_timeout_ms = (int64_t)f->circuit_open_timeout_s * 1000;
        c.half_open_max = f->circuit_half_open_max;
    }
    return normalised(&c);
}

void lp_breaker_init(struct lp_breaker *b, const struct lp_breaker_cfg *cfg)
{
    memset(b, 0, sizeof *b);
    b->cfg = normalised(cfg);
    b->state = LP_BREAKER_CLOSED;
}

void lp_breaker_reconfigure(struct lp_breaker *b, const struct lp_breaker_cfg *cfg)
{
    b->cfg = normalised(cfg);
}

static bool timed_out(const struct lp_breaker *b, int64_t now_ms)
{
    return now_ms >= b->opened_at_ms + b->cfg.open_timeout_ms;
}

static void trip(struct lp_breaker *b, int64_t now_ms)
{
    b->state = LP_BREAKER_OPEN;
    b->opened_at_ms = now_ms;
    b->failures = 0;
    b->successes = 0;
    b->in_flight = 0;
    b->times_opened++;
}

static void enter_half_open(struct lp_breaker *b)
{
    b->state = LP_BREAKER_HALF_OPEN;
    b->successes = 0;
    b->in_flight = 0;
    b->gen++;
    if (b->gen == 0) /* 0 means "admitted while closed"; skip it on wrap-around */
        b->gen = 1;
}

static void close_breaker(struct lp_breaker *b)
{
    b->state = LP_BREAKER_CLOSED;
    b->failures = 0;
    b->successes = 0;
    b->in_flight = 0;
}

/* A report belongs to the current half-open period only if its ticket says so. */
static bool is_current_probe(const struct lp_breaker *b, uint32_t ticket)
{
    return b->state == LP_BREAKER_HALF_OPEN && ticket != 0 && ticket == b->gen;
}

bool lp_breaker_allow(struct lp_breaker *b, int64_t now_ms, uint32_t *ticket)
{
    if (ticket)
        *ticket = 0;
    if (b->state == LP_BREAKER_CLOSED)
        return true;
    if (b->state == LP_BREAKER_OPEN) {
        if (!timed_out(b, now_ms))
            return false;
        enter_half_open(b);
    }
    if (b->in_flight >= b->cfg.half_open_max)
        return false;
    b->in_flight++;
    if (ticket)
        *ticket = b->gen;
    return true;
}

void lp_breaker_on_success(struct lp_breaker *b, int64_t now_ms, uint32_t ticket,
                           int64_t started_ms)
{
    (void)now_ms;
    if (b->state == LP_BREAKER_CLOSED) {
        /* Only a success that started after the latest failure is evidence against it: under
         * concurrency, requests admitted before a backend broke keep finishing well afterwards. */
        if (started_ms >= b->last_failure_ms)
            b->failures = 0;
        return;
    }
    if (!is_current_probe(b, ticket))
        return;
    b->in_flight--;
    if (++b->successes >= b->cfg.success_threshold)
        close_breaker(b);
}

void lp_breaker_on_failure(struct lp_breaker *b, int64_t now_ms, uint32_t ticket)
{
    if (b->state == LP_BREAKER_CLOSED) {
        b->last_failure_ms = now_ms;
        if (++b->failures >= b->cfg.failure_threshold)
            trip(b, now_ms);
        return;
    }
    if (is_current_probe(b, ticket))
        trip(b, now_ms); /* any probe failure reopens; the open timer restarts */
}

bool lp_breaker_adopt_open(struct lp_breaker *b, int64_t now_ms, int64_t until_ms)
{
    if (until_ms <= now_ms)
        return false;
    if (b->state == LP_BREAKER_OPEN && b->opened_at_ms + b->cfg.open_timeout_ms >= until_ms)
        return false;
    trip(b, until_ms - b->cfg.open_timeout_ms);
    return true;
}

bool lp_breaker_force_close(struct lp_breaker *b, int64_t before_ms)
{
    if (b->state == LP_BREAKER_CLOSED || b->opened_at_ms > before_ms)
        return false;
    b->state = LP_BREAKER_CLOSED;
    b->failures = 0;
    b->successes = 0;
    b->in_flight = 0;
    b->gen++; /* tickets of the abandoned half-open period are stale from now on */
    return true;
}

void lp_breaker_release(struct lp_breaker *b, uint32_t ticket)
{
    if (is_current_probe(b, ticket) && b->in_flight > 0)
        b->in_flight--;
}

enum lp_breaker_state lp_breaker_state(const struct lp_breaker *b, int64_t now_ms)
{
    if (b->state == LP_BREAKER_OPEN && timed_out(b, now_ms))
        return LP_BREAKER_HALF_OPEN;
    return b->state;
}

bool lp_breaker_would_allow(const struct lp_breaker *b, int64_t now_ms)
{
    switch (b->state) {
    case LP_BREAKER_CLOSED:
        return true;
    case LP_BREAKER_OPEN:
        return timed_out(b, now_ms) && b->cfg.half_open_max > 0;
    default:
        return b->in_flight < b->cfg.half_open_max;
    }
}

int64_t lp_breaker_open_until(const struct lp_breaker *b)
{
    return b->state == LP_BREAKER_OPEN ? b->opened_at_ms + b->cfg.open_timeout_ms : 0;
}

const char *lp_breaker_state_name(enum lp_breaker_state s)
{
    switch (s) {
    case LP_BREAKER_CLOSED:
        return "closed";
    case LP_BREAKER_OPEN:
        return "open";
    case LP_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}
