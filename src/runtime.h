/* runtime.h - process-wide state shared by the worker threads.
 *
 * The current config snapshot is published under a mutex held only for a pointer copy and a
 * refcount increment; each request keeps the snapshot it started with. Health state (cooldowns,
 * breakers, drains) and metrics live here too, keyed by names so they survive reloads.
 */
#ifndef LP_RUNTIME_H
#define LP_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct lp_health;
struct lp_routestats;
struct lp_metrics;
struct lp_sysprompts;
struct lp_conncap;
struct lp_budget;
struct lp_limiter;

struct lp_runtime {
    pthread_mutex_t lock;  /* guards cfg, sysprompts and their swap */
    struct lp_config *cfg; /* current snapshot (one reference held here) */
    struct lp_health *health;
    struct lp_routestats *routestats; /* the balancer's numbers (routestats.h) */
    struct lp_metrics *metrics;
    struct lp_conncap *conncap;  /* client connections, total and per address (every edge) */
    struct lp_budget *bodies;    /* bytes held by request bodies (every edge) */
    struct lp_cluster *cluster;  /* shared state through Redis, or NULL (cluster.h) */
    struct lp_limiter *limiter;  /* every traffic limit (limiter.h); configured on each reload */
    atomic_bool draining;        /* SIGTERM received: finish in-flight work, accept nothing new */
    atomic_long active_requests; /* every request in flight (the drain waits for 0) */
    atomic_long active_llm;      /* LLM endpoint requests in flight (the metric) */
    atomic_int workers_exited;   /* worker loops that have returned (drain progress) */
    atomic_long active_streams;
    int64_t started_wall_ms;
    char *config_path;
    uint64_t reload_count;
    char *last_reload_error; /* under lock; NULL after a good reload */
};

/* A new reference to the current config snapshot; never NULL after startup. */
struct lp_config *lp_runtime_config(struct lp_runtime *rt);
/* Publish a new snapshot (takes over the caller's reference) and drop the old one. sp (may be
 * NULL) is attached to cfg and freed with it, so in-flight requests keep the prompts of the
 * snapshot they hold. cfg NULL just drops the current one (shutdown). */
void lp_runtime_publish(struct lp_runtime *rt, struct lp_config *cfg, struct lp_sysprompts *sp);
/* The system prompts of a snapshot, or NULL. */
struct lp_sysprompts *lp_runtime_sysprompts(const struct lp_config *cfg);
/* Destructor for a config's attached system prompts. */
void lp_runtime_free_sysprompts(void *p);

#endif
