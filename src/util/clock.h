/* util/clock.h - monotonic and wall clocks in milliseconds / microseconds. */
#ifndef LP_UTIL_CLOCK_H
#define LP_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t lp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t lp_now_ms(void)
{
    return lp_now_us() / 1000;
}

/* Unix time in milliseconds. */
static inline int64_t lp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
