/* tbucket.h - a token bucket on an injected clock (pure: no I/O, no globals, no locking).
 *
 * Tokens refill continuously at `rate` per second up to `burst`. The level may go below zero
 * (lp_tbucket_charge: a reservation reconciled with a larger real cost), and then refills from
 * there. Time is monotonic microseconds passed by the caller; a clock that goes backwards is
 * treated as no time passing.
 */
#ifndef LP_TBUCKET_H
#define LP_TBUCKET_H

#include <stdbool.h>
#include <stdint.h>

struct lp_tbucket {
    double tokens; /* current level (may be negative) */
    double rate;   /* tokens per second, > 0 */
    double burst;  /* capacity, >= 1 */
    int64_t t_us;  /* when tokens was last brought up to date */
};

/* A full bucket. rate <= 0 is taken as a tiny rate; burst < 1 as 1. */
void lp_tbucket_init(struct lp_tbucket *b, double rate, double burst, int64_t now_us);
/* New rate and burst (a reload), keeping the level (clamped to the new burst). */
void lp_tbucket_resize(struct lp_tbucket *b, double rate, double burst, int64_t now_us);
/* Bring the level up to date at now_us. */
void lp_tbucket_refill(struct lp_tbucket *b, int64_t now_us);
/* Take n tokens if at least n are there (after refill). */
bool lp_tbucket_take(struct lp_tbucket *b, double n, int64_t now_us);
/* Take n tokens if the level is above zero, even if that leaves it negative (reservations:
 * concurrent admissions overshoot by at most one reservation). */
bool lp_tbucket_take_if_positive(struct lp_tbucket *b, double n, int64_t now_us);
/* Add (n > 0: a refund) or remove (n < 0: a charge) tokens unconditionally; the level stays at
 * most burst. */
void lp_tbucket_adjust(struct lp_tbucket *b, double n, int64_t now_us);
/* Milliseconds until at least n tokens are there (0 when they are now); n above burst is
 * taken as burst. */
int64_t lp_tbucket_wait_ms(struct lp_tbucket *b, double n, int64_t now_us);
/* Milliseconds until the bucket is full again. */
int64_t lp_tbucket_full_ms(struct lp_tbucket *b, int64_t now_us);
/* Whether the bucket is full at now_us (an idle entry that can be forgotten). */
bool lp_tbucket_is_full(struct lp_tbucket *b, int64_t now_us);

#endif
