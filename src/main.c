/* main.c - boot and teardown only: arguments, config, wiring, signals, run, drain. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin.h"
#include "cluster.h"
#include "budget.h"
#include "config.h"
#include "conncap.h"
#include "edge.h"
#include "health.h"
#include "limiter.h"
#include "log.h"
#include "logcfg.h"
#include "metrics.h"
#include "otlp.h"
#include "reload.h"
#include "routestats.h"
#include "runtime.h"
#include "tls.h"
#include "traffic.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/rand.h"
#include "worker.h"

#define MAX_WORKERS 64

struct app {
    struct lp_runtime rt;
    struct event_base *base;
    struct lp_worker *workers[MAX_WORKERS];
    int listen_fds[MAX_WORKERS];
    int n_workers;
    struct event *sig_term, *sig_int, *sig_hup, *sig_usr1, *drain_tick;
    int64_t drain_deadline_ms; /* monotonic */
    bool cut_sent;             /* the deadline passed: live requests were ended */
    bool draining;
    struct lp_reloader *reloader;
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: llm-proxy [-config FILE] [--check] [--version] [--help]\n"
        "\n"
        "  -config, -c, --config FILE  configuration file (default ./config.yaml)\n"
        "  --check                     validate the configuration, list every problem, exit 0/1\n"
        "  --version                   print the version and exit\n"
        "  --help                      this text\n"
        "\n"
        "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the config, SIGUSR1 reopens "
        "logs.\n");
}

static void print_diags(const struct lp_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        char *s = lp_diag_format(&d->items[i]);
        fprintf(stderr, "%s\n", s);
        free(s);
    }
}

/* ---- signals ----------------------------------------------------------------------------- */

static int active_requests(struct app *a)
{
    return (int)atomic_load(&a->rt.active_requests);
}

/* Drain progress: the workers leave their loops once they have no request and no connection
 * left (see worker.c); the deadline (server.shutdown_timeout) stops them regardless. */
/* After the drain deadline, how long the workers get to flush the error events of the streams
 * they ended before they are stopped outright. */
#define CUT_GRACE_MS 1000

static void stop_workers(struct app *a)
{
    for (int i = 0; i < a->n_workers; i++)
        lp_worker_command(a->workers[i], LP_WORKER_CMD_STOP);
    event_base_loopexit(a->base, NULL);
}

/* Drain progress: the workers leave their loops once they have no request and no connection
 * left (see worker.c). At the deadline (server.shutdown_timeout, monotonic clock) every live
 * request is ended in a protocol-correct way (a stream gets an error event and a proper end)
 * and the workers get CUT_GRACE_MS to flush that; then they are stopped regardless. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    int64_t now = lp_now_ms();
    bool all_done = atomic_load(&a->rt.workers_exited) >= a->n_workers;
    if (all_done || now >= a->drain_deadline_ms + (a->cut_sent ? CUT_GRACE_MS : 0)) {
        if (!all_done && a->cut_sent)
            lp_log_warn(NULL, "drain: %d request(s) still open after the grace period; closing",
                        active_requests(a));
        if (all_done || a->cut_sent) {
            stop_workers(a);
            return;
        }
        lp_log_warn(NULL, "drain deadline passed with %d request(s) in flight; ending them",
                    active_requests(a));
        a->cut_sent = true;
        for (int i = 0; i < a->n_workers; i++)
            lp_worker_command(a->workers[i], LP_WORKER_CMD_CUT);
    }
    struct timeval tv = {0, 50 * 1000};
    evtimer_add(a->drain_tick, &tv);
}

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    if (a->draining) {
        lp_log_warn(NULL, "second termination signal: exiting now");
        stop_workers(a);
        return;
    }
    a->draining = true;
    atomic_store(&a->rt.draining, true);
    struct lp_config *cfg = lp_runtime_config(&a->rt);
    a->drain_deadline_ms = lp_now_ms() + cfg->server.shutdown_timeout_ms;
    lp_config_unref(cfg);
    lp_log_info(NULL, "received %s: draining %d in-flight request(s)",
                sig == SIGINT ? "SIGINT" : "SIGTERM", active_requests(a));
    for (int i = 0; i < a->n_workers; i++)
        lp_worker_command(a->workers[i], LP_WORKER_CMD_DRAIN);
    on_drain_tick(-1, 0, a);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    lp_reloader_trigger(a->reloader, "SIGHUP");
}

static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
    lp_log_request_reopen();
}

/* ---- boot -------------------------------------------------------------------------------- */

static int open_listeners(struct app *a, const struct lp_config *cfg)
{
    char host[256];
    int port;
    if (!lp_listen_parse(cfg->listen, host, sizeof host, &port)) {
        fprintf(stderr, "llm-proxy: invalid listen address '%s'\n", cfg->listen);
        return -1;
    }
    /* SO_REUSEPORT would let a second instance bind the same port silently and take half the
     * connections: make sure nobody listens there first. */
    int probe = lp_edge_listen_socket(host, port, false);
    if (probe < 0) {
        fprintf(stderr, "llm-proxy: cannot listen on %s: %s\n", cfg->listen, strerror(errno));
        return -1;
    }
    if (port == 0)
        port = lp_edge_socket_port(probe);
    close(probe);
    for (int i = 0; i < a->n_workers; i++) {
        /* One SO_REUSEPORT socket per worker: the kernel spreads connections across them. */
        a->listen_fds[i] = lp_edge_listen_socket(host, port, true);
        if (a->listen_fds[i] < 0) {
            fprintf(stderr, "llm-proxy: cannot listen on %s: %s\n", cfg->listen, strerror(errno));
            return -1;
        }
        if (port == 0)
            port = lp_edge_socket_port(a->listen_fds[0]);
    }
    lp_log_info(NULL, "listening on %s:%d with %d worker thread(s)", host[0] ? host : "*", port,
                a->n_workers);
    return 0;
}

/* Raise the soft file-descriptor limit to the hard one (at most 1M), as Go programs and HAProxy
 * do: every client and upstream connection holds a descriptor, and the soft default of a shell
 * (1024) would make server.max_connections' automatic value needlessly small. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            lp_log_info(NULL, "file descriptor limit raised from %llu to %llu",
                        (unsigned long long)was, (unsigned long long)want);
    }
}

/* Process-wide edge limits: the objects every worker's edge shares, set from cfg. */
static void create_shared_limits(struct app *a, const struct lp_config *cfg)
{
    uint64_t seed;
    lp_rand_seed(&seed);
    a->rt.conncap = lp_conncap_create(0, 0, seed);
    a->rt.bodies = lp_budget_create(0);
    lp_worker_apply_shared(cfg, &a->rt);
    size_t total, per_ip;
    lp_worker_conn_caps(cfg, &total, &per_ip);
    lp_log_info(NULL,
                "limits: %zu client connections%s, %zu per address; request bodies may hold "
                "%lld bytes in total",
                total, cfg->server.max_connections > 0 ? "" : " (automatic)", per_ip,
                (long long)cfg->server.max_body_memory);
}

static int worker_count(const struct lp_config *cfg)
{
    int n = cfg->server.threads;
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : n;
}

static int run(struct app *a, const char *path)
{
    struct lp_diags diags;
    lp_diags_init(&diags);
    struct lp_config *cfg = lp_config_load_file(path, &diags);
    print_diags(&diags);
    lp_diags_free(&diags);
    if (!cfg) {
        fprintf(stderr, "llm-proxy: configuration %s is invalid\n", path);
        return 1;
    }
    lp_logcfg_apply(cfg);
    for (int i = 0; i < MAX_WORKERS; i++)
        a->listen_fds[i] = -1;
    pthread_mutex_init(&a->rt.lock, NULL);
    a->rt.cfg = cfg;
    a->rt.config_path = lp_xstrdup(path);
    a->rt.started_wall_ms = lp_wall_ms();
    a->n_workers = worker_count(cfg);
    a->rt.metrics = lp_metrics_create(a->n_workers + 1);
    a->rt.health = lp_health_create();
    lp_health_configure(a->rt.health, cfg);
    a->rt.routestats = lp_routestats_create();
    lp_admin_register_metrics(&a->rt);
    raise_fd_limit();
    create_shared_limits(a, cfg);
    lp_traffic_register_metrics(&a->rt);
    lp_otlp_register_metrics(&a->rt);
    if (cfg->tracing.enabled)
        lp_otlp_start(&a->rt); /* a reload that enables tracing starts it too (reload.c) */
    a->base = event_base_new();
    /* With a redis block, limits and health are shared by every instance using it. */
    a->rt.cluster = lp_cluster_create(&a->rt, a->base, cfg);
    a->rt.limiter =
        a->rt.cluster ? lp_limiter_redis_create(a->rt.cluster, cfg) : lp_limiter_local_create(NULL);
    lp_limiter_configure(a->rt.limiter, cfg);
    a->reloader = lp_reloader_create(&a->rt, a->base);
    lp_reloader_load_extras(a->reloader, cfg);
    if (open_listeners(a, cfg) != 0)
        return 1;
    /* Signals first: a SIGTERM/SIGHUP that arrives as soon as the port answers must be handled,
     * not kill the process. Worker threads block these signals (see worker.c), so they are
     * delivered to the main thread's libevent signal handling. */
    a->sig_term = evsignal_new(a->base, SIGTERM, on_terminate, a);
    a->sig_int = evsignal_new(a->base, SIGINT, on_terminate, a);
    a->sig_hup = evsignal_new(a->base, SIGHUP, on_hup, a);
    a->sig_usr1 = evsignal_new(a->base, SIGUSR1, on_usr1, a);
    a->drain_tick = evtimer_new(a->base, on_drain_tick, a);
    evsignal_add(a->sig_term, NULL);
    evsignal_add(a->sig_int, NULL);
    evsignal_add(a->sig_hup, NULL);
    evsignal_add(a->sig_usr1, NULL);
    /* An https backend verified against the system CA store: load the store now, not on a
     * worker's loop at its first request. */
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct lp_backend *b = &cfg->backends[i];
        if (strncmp(b->url, "https://", 8) == 0 && !b->http2 && !b->tls_ca_file) {
            lp_tls_preload();
            break;
        }
    }
    /* Once a worker runs, an admin reload may replace and free cfg: log from copies. */
    size_t n_backends = cfg->n_backends, n_aliases = cfg->n_aliases;
    for (int i = 0; i < a->n_workers; i++) {
        a->workers[i] = lp_worker_create(i, &a->rt, a->listen_fds[i]);
        a->listen_fds[i] = -1; /* the worker owns it now */
        if (!a->workers[i] || lp_worker_start(a->workers[i]) != 0) {
            fprintf(stderr, "llm-proxy: cannot start worker %d\n", i);
            return 1;
        }
    }
    lp_reloader_set_workers(a->reloader, a->workers, a->n_workers);
    lp_log_info(NULL, "llm-proxy %s started: %zu backend(s), %zu alias(es), config %s", LP_VERSION,
                n_backends, n_aliases, path);
    event_base_dispatch(a->base);
    return 0;
}

static void teardown(struct app *a)
{
    /* Order matters: stop every worker loop, then the reload thread (it may still command
     * workers or complete admin jobs on their loops), then free the workers. */
    for (int i = 0; i < a->n_workers; i++) {
        if (a->workers[i]) {
            lp_worker_command(a->workers[i], LP_WORKER_CMD_STOP);
            lp_worker_join(a->workers[i]);
        }
    }
    lp_reloader_destroy(a->reloader);
    lp_otlp_stop(); /* the workers are gone: export what they queued */
    for (int i = 0; i < a->n_workers; i++) {
        if (a->workers[i])
            lp_worker_destroy(a->workers[i]);
        if (a->listen_fds[i] >= 0)
            close(a->listen_fds[i]);
    }
    /* Already exiting: a late SIGTERM/SIGINT (a supervisor repeating itself) must not kill the
     * process with the signal's default action once libevent restores it below. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    struct event *evs[] = {a->sig_term, a->sig_int, a->sig_hup, a->sig_usr1, a->drain_tick};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    lp_cluster_destroy(a->rt.cluster); /* its clients live on the main loop */
    if (a->base)
        event_base_free(a->base);
    lp_health_destroy(a->rt.health);
    lp_routestats_destroy(a->rt.routestats);
    lp_limiter_destroy(a->rt.limiter);
    lp_metrics_destroy(a->rt.metrics);
    lp_conncap_destroy(a->rt.conncap);
    lp_budget_destroy(a->rt.bodies);
    lp_runtime_publish(&a->rt, NULL, NULL);
    free(a->rt.config_path);
    free(a->rt.last_reload_error);
    lp_log_info(NULL, "llm-proxy stopped");
    lp_log_shutdown();
}

int main(int argc, char **argv)
{
    const char *path = "config.yaml";
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-config") == 0 || strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
            i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0 || strncmp(a, "-config=", 8) == 0) {
            path = strchr(a, '=') + 1;
        } else if (strcmp(a, "--check") == 0 || strcmp(a, "-check") == 0) {
            check = true;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-version") == 0) {
            printf("llm-proxy %s\n", LP_VERSION);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-no-color") == 0 || strcmp(a, "--disable-color") == 0) {
            /* Accepted for compatibility with the reference; our logs are JSON. */
        } else {
            fprintf(stderr, "llm-proxy: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (check) {
        struct lp_diags diags;
        lp_diags_init(&diags);
        struct lp_config *cfg = lp_config_load_file(path, &diags);
        print_diags(&diags);
        bool ok = cfg != NULL;
        if (ok)
            printf("%s: OK (%zu backend(s), %zu alias(es), %zu warning(s))\n", path,
                   cfg->n_backends, cfg->n_aliases, diags.n - diags.n_errors);
        else
            printf("%s: %zu error(s)\n", path, diags.n_errors);
        lp_diags_free(&diags);
        lp_config_unref(cfg);
        return ok ? 0 : 1;
    }
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    static struct app app;
    int rc = run(&app, path);
    teardown(&app);
    return rc;
}
