/* cluster.h - several llm-proxy instances behave as one through Redis.
 *
 * With a `redis:` block, health decisions are shared: a cooldown, a breaker opening or a drain
 * decided on one instance is written to Redis with a TTL and published, and every instance
 * applies it to its own health store (src/health.c) within the round trip of a PUBLISH, so a dead
 * backend is tried once per cluster, not once per instance. An instance that starts, or comes
 * back after losing Redis, loads the current state first. Each instance also keeps a heartbeat,
 * so every instance knows how many are alive (the in-process fallback of the shared limiter uses
 * its share of each limit).
 *
 * Threads: the subscriber, the state loader, the heartbeat and the publishing of health changes
 * (queued by the worker that made them) run on the main thread's loop; each worker has its own
 * command client (lp_cluster_worker_client) for the shared limiter. Nothing here ever blocks a
 * loop: every Redis call is asynchronous with a timeout (src/redis.h).
 */
#ifndef LP_CLUSTER_H
#define LP_CLUSTER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "redis.h"

struct lp_cluster;
struct lp_runtime;

/* Start sharing state through cfg->redis on main_base (the main thread's loop). Returns NULL when
 * cfg has no redis block. The host name is resolved here (boot, never on a worker loop); a
 * failure is logged and retried in the background. Installs itself as the health observer. */
struct lp_cluster *lp_cluster_create(struct lp_runtime *rt, struct event_base *main_base,
                                     const struct lp_config *cfg);
/* Stop and free (after the workers have stopped). NULL accepted. */
void lp_cluster_destroy(struct lp_cluster *c);

/* A command client for one worker's loop (the shared limiter's checks run on it). Call on the
 * main thread before the worker starts; release it with lp_cluster_worker_release when the
 * worker goes. c NULL gives NULL. */
struct lp_redis *lp_cluster_worker_client(struct lp_cluster *c, struct event_base *base);
/* Make r the calling thread's client (workers call it when their loop starts; NULL clears). */
void lp_cluster_bind_thread(struct lp_redis *r);
/* The calling thread's client, or NULL (not a worker, or no cluster). */
struct lp_redis *lp_cluster_thread_client(void);
/* Register `lua` as script number `slot` (0..7) on the calling thread's client once, and
 * return its id there (-1 when it cannot be registered). The Lua text must be the same for a
 * slot on every thread. */
int lp_cluster_thread_script(struct lp_redis *r, const char *lua, int slot);
/* Destroy a worker's client (after its loop stopped). Either argument may be NULL. */
void lp_cluster_worker_release(struct lp_cluster *c, struct lp_redis *r);

struct lp_cluster_status {
    bool enabled;
    char instance_id[40];
    enum lp_redis_state state; /* of the subscriber: shared health flows while READY */
    bool available;            /* Redis answered recently (not down, breaker closed) */
    int instances;             /* live instances by heartbeat (>= 1) */
    int64_t latency_us;        /* smoothed round trip */
    uint64_t timeouts, errors; /* over every client of this instance */
    uint64_t events_sent, events_received, events_applied;
    enum lp_redis_on_error on_error;
};
/* Safe from any thread. c NULL gives {.enabled = false}. */
void lp_cluster_get_status(struct lp_cluster *c, struct lp_cluster_status *out);
/* Live instances (>= 1); 1 without a cluster. Any thread. */
int lp_cluster_instances(struct lp_cluster *c);

#endif
