/* worker.h - one worker thread: an event loop, an HTTP edge on its own SO_REUSEPORT listener and
 * a libcurl multi client, so a request lives and dies on one thread. */
#ifndef LP_WORKER_H
#define LP_WORKER_H

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

struct lp_edge;
struct lp_upstream;
struct lp_metrics_shard;
struct lp_request;

struct lp_worker {
    int idx;
    pthread_t thread;
    bool started; /* the thread was created (join only then) */
    bool draining;
    struct event_base *base;
    struct lp_edge *edge;
    struct lp_upstream *up;
    struct lp_runtime *rt;
    struct lp_metrics_shard *metrics;
    uint64_t rng;
    int listen_fd;
    struct event *wake_ev; /* activated from other threads: drain / stop */
    atomic_int command;    /* pending LP_WORKER_CMD_* bits (commands never overwrite each other) */
    struct event *drain_timer;
    size_t requests;          /* in-flight requests owned by this worker */
    struct lp_request *live;  /* those requests (request.c keeps the list) */
    struct lp_redis *redis;   /* this loop's Redis client (cluster.h), or NULL */
    struct lp_prober *prober; /* active health probes on this loop (prober.h) */
};

enum {
    LP_WORKER_CMD_NONE = 0,
    LP_WORKER_CMD_DRAIN = 1,  /* stop accepting; exit the loop once idle */
    LP_WORKER_CMD_STOP = 2,   /* exit the loop now (drain deadline passed) */
    LP_WORKER_CMD_LIMITS = 4, /* re-read edge limits from the current config (after a reload) */
    LP_WORKER_CMD_CUT = 8,    /* the drain deadline passed: end every live request in a
                                 protocol-correct way (streams get an error event), then leave
                                 once the answers are flushed */
};

/* Create a worker bound to listen_fd, which it takes over (closed on drain or destroy). Returns
 * NULL on failure (the fd is then closed too). */
struct lp_worker *lp_worker_create(int idx, struct lp_runtime *rt, int listen_fd);
/* Run the loop on a new thread. */
int lp_worker_start(struct lp_worker *w);
/* Thread-safe: ask the worker to drain or stop. */
void lp_worker_command(struct lp_worker *w, int cmd);
void lp_worker_join(struct lp_worker *w);
void lp_worker_destroy(struct lp_worker *w);

struct lp_edge_limits;
/* Edge limits derived from a config's server and timeout blocks. */
void lp_worker_limits(const struct lp_config *cfg, struct lp_edge_limits *lim);
/* The effective connection caps of a config: server.max_connections, or when 0 half of the
 * process's file-descriptor limit less a reserve (the other half is left for upstream sockets,
 * logs and the loops), between 16 and 16384; server.max_connections_per_ip, or when 0 half of
 * the total. */
void lp_worker_conn_caps(const struct lp_config *cfg, size_t *max_total, size_t *max_per_ip);
/* Apply a config's process-wide limits (connection caps, body memory) to rt's shared objects.
 * Idempotent; any thread. */
void lp_worker_apply_shared(const struct lp_config *cfg, struct lp_runtime *rt);

#endif
