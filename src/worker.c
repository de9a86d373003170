/* worker.c - worker threads: loop, edge and upstream client per thread. */
#include "worker.h"

#include "prober.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "budget.h"
#include "conncap.h"
#include "edge.h"
#include "log.h"
#include "metrics.h"
#include "cluster.h"
#include "intake.h"
#include "request.h"
#include "upstream.h"
#include "util/alloc.h"
#include "util/rand.h"

static void on_request(struct lp_edge_req *er, void *arg)
{
    lp_intake_handle(arg, er);
}

static void on_reject(struct lp_edge_req *er, int status, const char *reason, void *arg)
{
    lp_intake_reject(arg, er, status, reason);
}

static void on_head(struct lp_edge_req *er, void *arg)
{
    lp_intake_head(arg, er);
}

void lp_worker_limits(const struct lp_config *cfg, struct lp_edge_limits *lim)
{
    *lim = (struct lp_edge_limits){0};
    lim->max_header_bytes = (size_t)cfg->server.max_header_size;
    lim->max_body_bytes = (size_t)cfg->server.max_body_size;
    lim->header_timeout_ms = cfg->server.idle_timeout_ms;
    lim->body_timeout_ms = cfg->server.body_timeout_ms;
    lim->body_idle_timeout_ms = cfg->timeout.read_ms;
    lim->min_body_rate = (uint64_t)cfg->server.min_body_rate;
    lim->idle_timeout_ms = cfg->server.idle_timeout_ms;
    lim->write_timeout_ms = cfg->timeout.write_ms;
}

#define AUTO_CONN_MIN 16
#define AUTO_CONN_MAX 16384
#define FD_RESERVE 128 /* listeners, loops, log files, resolver, curl's own descriptors */

static size_t auto_max_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return AUTO_CONN_MAX;
    size_t fds = (size_t)rl.rlim_cur;
    size_t n = fds > 2 * FD_RESERVE ? (fds - FD_RESERVE) / 2 : fds / 4;
    return n < AUTO_CONN_MIN ? AUTO_CONN_MIN : n > AUTO_CONN_MAX ? AUTO_CONN_MAX : n;
}

void lp_worker_conn_caps(const struct lp_config *cfg, size_t *max_total, size_t *max_per_ip)
{
    *max_total = cfg->server.max_connections > 0 ? (size_t)cfg->server.max_connections
                                                 : auto_max_connections();
    *max_per_ip = cfg->server.max_connections_per_ip > 0
                      ? (size_t)cfg->server.max_connections_per_ip
                      : (*max_total + 1) / 2;
}

void lp_worker_apply_shared(const struct lp_config *cfg, struct lp_runtime *rt)
{
    size_t total, per_ip;
    lp_worker_conn_caps(cfg, &total, &per_ip);
    if (rt->conncap)
        lp_conncap_set_limits(rt->conncap, total, per_ip);
    if (rt->bodies)
        lp_budget_set_limit(rt->bodies, (uint64_t)cfg->server.max_body_memory);
}

/* Drain: check whether this worker is idle, and if so leave the loop. */
static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct lp_worker *w = arg;
    /* Idle means no request in flight AND no connection still flushing a response: a finished
     * request's last bytes may still sit in the edge's output buffer. */
    if (w->requests == 0 && lp_edge_open_connections(w->edge) == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = {0, 50 * 1000};
    evtimer_add(w->drain_timer, &tv);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lp_worker *w = arg;
    int cmd = atomic_exchange(&w->command, LP_WORKER_CMD_NONE);
    if (cmd & LP_WORKER_CMD_STOP) {
        event_base_loopbreak(w->base);
        return;
    }
    if (cmd & LP_WORKER_CMD_CUT) {
        /* End every live request the way its owner knows (a committed stream gets an error
         * event and a proper end, not a silent cut); the drain check then waits for the
         * answers to be flushed. */
        size_t n = 0;
        struct lp_request *next;
        for (struct lp_request *r = w->live; r; r = next, n++) {
            next = r->live_next; /* ending r never ends another request */
            if (r->on_shutdown)
                r->on_shutdown(r);
            else
                lp_request_finish(r);
        }
        if (n)
            lp_log_warn(NULL, "worker %d: drain deadline passed; ended %zu request(s)", w->idx, n);
    }
    if (cmd & LP_WORKER_CMD_LIMITS) {
        struct lp_config *cfg = lp_runtime_config(w->rt);
        struct lp_edge_limits lim;
        lp_worker_limits(cfg, &lim);
        lp_edge_set_limits(w->edge, &lim);
        lp_worker_apply_shared(cfg, w->rt);
        lp_config_unref(cfg);
    }
    if ((cmd & LP_WORKER_CMD_DRAIN) && !w->draining) {
        w->draining = true;
        lp_prober_stop(w->prober);
        lp_edge_drain(w->edge);
        /* Close the listening socket so that new connections are refused at once instead of
         * waiting in the backlog until the drain deadline. */
        if (w->listen_fd >= 0) {
            close(w->listen_fd);
            w->listen_fd = -1;
        }
        on_drain_check(-1, 0, w);
    }
}

struct lp_worker *lp_worker_create(int idx, struct lp_runtime *rt, int listen_fd)
{
    struct lp_worker *w = lp_xcalloc(1, sizeof *w);
    w->idx = idx;
    w->rt = rt;
    w->listen_fd = listen_fd;
    lp_rand_seed(&w->rng);
    w->rng ^= (uint64_t)idx * 0x9E3779B97F4A7C15ULL;
    struct event_config *ec = event_config_new();
    /* Merges evhttp-style enable-read+write pairs into one epoll_ctl; neither we nor curl dup fds.
     */
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        goto fail;
    struct lp_config *cfg = lp_runtime_config(rt);
    struct lp_edge_limits lim;
    lp_worker_limits(cfg, &lim);
    lp_worker_apply_shared(cfg, rt);
    lp_config_unref(cfg);
    w->edge = lp_edge_create(w->base, listen_fd, &lim, on_request, on_reject, w);
    lp_edge_set_head_cb(w->edge, on_head);
    lp_edge_set_shared(w->edge, rt->conncap, rt->bodies);
    struct lp_upstream_opts uo = {.max_connects = 1024, .max_age_conn_s = 50};
    w->up = lp_upstream_create(w->base, &uo);
    w->redis = lp_cluster_worker_client(rt->cluster, w->base);
    if (!w->edge || !w->up)
        goto fail;
    w->metrics = rt->metrics ? lp_metrics_shard(rt->metrics, idx) : NULL;
    w->prober = lp_prober_create(w->base, w->up, rt, idx);
    w->wake_ev = event_new(w->base, -1, 0, on_wake, w);
    w->drain_timer = evtimer_new(w->base, on_drain_check, w);
    return w;
fail:
    lp_worker_destroy(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct lp_worker *w = arg;
    lp_cluster_bind_thread(w->redis); /* the shared limiter's client on this loop */
    event_base_dispatch(w->base);
    atomic_fetch_add(&w->rt->workers_exited, 1);
    return NULL;
}

int lp_worker_start(struct lp_worker *w)
{
    /* Workers block the process signals so they are handled by the main thread's loop. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    w->started = rc == 0;
    return rc;
}

void lp_worker_command(struct lp_worker *w, int cmd)
{
    atomic_fetch_or(&w->command, cmd);
    event_active(w->wake_ev, EV_READ, 0);
}

void lp_worker_join(struct lp_worker *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    w->started = false;
}

void lp_worker_destroy(struct lp_worker *w)
{
    if (!w)
        return;
    /* A pending STOP would break the loop passes below before the deferred work runs. */
    if (w->wake_ev)
        event_free(w->wake_ev);
    w->wake_ev = NULL;
    /* Likewise the drain check: it reads the edge, which frees itself during the passes. */
    if (w->drain_timer)
        event_free(w->drain_timer);
    w->drain_timer = NULL;
    if (w->edge)
        lp_edge_destroy(w->edge);
    w->edge = NULL;
    /* lp_edge_destroy closed every connection; the close callbacks are deferred to the loop.
     * A few non-blocking passes deliver them (requests finish and cancel their transfers) and
     * then run the deferred curl reaping. */
    for (int i = 0; w->base && i < 4; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    lp_prober_destroy(w->prober); /* its transfers live in the upstream client */
    w->prober = NULL;
    if (w->up)
        lp_upstream_destroy(w->up);
    lp_cluster_worker_release(w->rt->cluster, w->redis);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->base)
        event_base_free(w->base);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    free(w);
}
