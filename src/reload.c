/* reload.c - live reload: a reload thread, inotify watch, admin jobs. See reload.h. */
#include "reload.h"

#include <errno.h>
#include <event2/event.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "limiter.h"
#include "health.h"
#include "log.h"
#include "logcfg.h"
#include "metrics.h"
#include "otlp.h"
#include "sysprompt.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "worker.h"

struct lp_reload_job {
    struct event *ev;
    lp_reload_done_fn fn;
    void *arg;
    bool ok;
    char *msg;
    atomic_bool cancelled;
    struct lp_reload_job *next;
};

struct lp_reloader {
    struct lp_runtime *rt;
    struct event_base *base;
    struct lp_worker **workers;
    int n_workers;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending;
    bool stop;
    struct lp_reload_job *waiting;
    int ino_fd;
    struct event *ino_ev;
    struct event *debounce_ev;
    char *dir;
    char *file;
};

static struct lp_reloader *g_reloader;

struct lp_reloader *lp_reloader_get(void)
{
    return g_reloader;
}

/* Load the system prompts a config asks for; NULL when disabled. Problems in individual prompt
 * files are warnings (logged): the rest still load. */
static struct lp_sysprompts *load_sysprompts(const struct lp_config *cfg)
{
    if (!cfg->proxy.enable_system_prompt)
        return NULL;
    char *warnings = NULL;
    struct lp_sysprompts *sp = lp_sysprompt_load(cfg, &warnings);
    if (warnings) {
        lp_log_warn(NULL, "system prompts: %s", warnings);
        free(warnings);
    }
    return sp;
}

void lp_reloader_load_extras(struct lp_reloader *r, const struct lp_config *cfg)
{
    struct lp_sysprompts *sp = load_sysprompts(cfg);
    if (sp) {
        /* The initial snapshot is not shared with any worker yet. */
        struct lp_config *c = (struct lp_config *)cfg;
        c->attached = sp;
        c->attached_free = lp_runtime_free_sysprompts;
    }
}

static void count_reload(struct lp_reloader *r, bool ok)
{
    const char *l[] = {ok ? "ok" : "error"};
    lp_metrics_inc(lp_metrics_shard(r->rt->metrics, r->n_workers), LP_M_CONFIG_RELOADS_TOTAL, l, 1);
}

/* Parse, validate and publish. Runs on the reload thread. */
static bool do_reload(struct lp_reloader *r, char **msg_out)
{
    struct lp_diags diags;
    lp_diags_init(&diags);
    struct lp_buf msg;
    lp_buf_init(&msg, 64 * 1024);
    struct lp_config *cfg = lp_config_load_file(r->rt->config_path, &diags);
    for (size_t i = 0; i < diags.n; i++) {
        char *s = lp_diag_format(&diags.items[i]);
        lp_buf_printf(&msg, "%s%s", msg.len ? "\n" : "", s);
        if (diags.items[i].level == LP_DIAG_ERROR)
            lp_log_error(NULL, "reload: %s", s);
        else
            lp_log_warn(NULL, "reload: %s", s);
        free(s);
    }
    lp_diags_free(&diags);
    bool ok = cfg != NULL;
    struct lp_sysprompts *sp = ok ? load_sysprompts(cfg) : NULL;
    if (ok) {
        struct lp_config *old = lp_runtime_config(r->rt);
        if (strcmp(old->listen, cfg->listen) != 0 || old->server.threads != cfg->server.threads) {
            lp_buf_printf(&msg,
                          "%snote: a change of listen or server.threads needs a restart; the "
                          "running server keeps %s with its current threads",
                          msg.len ? "\n" : "", old->listen);
            lp_log_warn(NULL, "reload: listen/threads changed; restart needed to apply them");
        }
        lp_config_unref(old);
        lp_logcfg_apply(cfg);
        lp_health_configure(r->rt->health, cfg);
        lp_limiter_configure(r->rt->limiter, cfg); /* resizes limits, keeps their state */
        bool tracing = cfg->tracing.enabled;
        lp_runtime_publish(r->rt, cfg, sp);
        if (tracing)
            lp_otlp_start(r->rt); /* tracing enabled by this reload (idempotent) */
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i < r->n_workers; i++)
            lp_worker_command(r->workers[i], LP_WORKER_CMD_LIMITS);
        pthread_mutex_unlock(&r->mu);
        lp_log_info(NULL, "configuration reloaded from %s", r->rt->config_path);
    }
    pthread_mutex_lock(&r->rt->lock);
    free(r->rt->last_reload_error);
    r->rt->last_reload_error =
        ok ? NULL : lp_xstrdup(msg.data ? msg.data : "invalid configuration");
    r->rt->reload_count++;
    pthread_mutex_unlock(&r->rt->lock);
    count_reload(r, ok);
    *msg_out = lp_buf_steal(&msg, NULL);
    return ok;
}

static void *reload_thread(void *arg)
{
    struct lp_reloader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->pending && !r->stop)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop)
            break;
        r->pending = false;
        struct lp_reload_job *jobs = r->waiting;
        r->waiting = NULL;
        pthread_mutex_unlock(&r->mu);
        char *msg = NULL;
        bool ok = do_reload(r, &msg);
        while (jobs) {
            struct lp_reload_job *j = jobs;
            jobs = j->next;
            j->ok = ok;
            j->msg = lp_xstrdup(msg);
            event_active(j->ev, EV_TIMEOUT, 0);
        }
        free(msg);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

void lp_reloader_trigger(struct lp_reloader *r, const char *why)
{
    lp_log_info(NULL, "reload requested (%s)", why);
    pthread_mutex_lock(&r->mu);
    r->pending = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_job_done(evutil_socket_t fd, short what, void *arg)
{
    struct lp_reload_job *j = arg;
    if (!atomic_load(&j->cancelled))
        j->fn(j->arg, j->ok, j->msg);
    else
        free(j->msg);
    event_free(j->ev);
    free(j);
}

struct lp_reload_job *lp_reloader_run_async(struct lp_reloader *r, struct event_base *base,
                                            lp_reload_done_fn fn, void *arg)
{
    struct lp_reload_job *j = lp_xcalloc(1, sizeof *j);
    j->fn = fn;
    j->arg = arg;
    j->ev = event_new(base, -1, 0, on_job_done, j);
    pthread_mutex_lock(&r->mu);
    j->next = r->waiting;
    r->waiting = j;
    r->pending = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return j;
}

void lp_reload_job_cancel(struct lp_reload_job *job)
{
    if (job)
        atomic_store(&job->cancelled, true);
}

/* ---- inotify ----------------------------------------------------------------------------- */

static void on_debounce(evutil_socket_t fd, short what, void *arg)
{
    lp_reloader_trigger(arg, "config file changed");
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct lp_reloader *r = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool hit = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->len && strcmp(ev->name, r->file) == 0)
                hit = true;
            p += sizeof *ev + ev->len;
        }
    }
    if (hit) {
        /* Editors write in several steps; reload once things settle. */
        struct timeval tv = {0, 200 * 1000};
        evtimer_add(r->debounce_ev, &tv);
    }
}

static void watch_file(struct lp_reloader *r)
{
    char *p1 = lp_xstrdup(r->rt->config_path), *p2 = lp_xstrdup(r->rt->config_path);
    r->dir = lp_xstrdup(dirname(p1));
    r->file = lp_xstrdup(basename(p2));
    free(p1);
    free(p2);
    r->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->ino_fd < 0 ||
        inotify_add_watch(r->ino_fd, r->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
        lp_log_warn(NULL, "cannot watch %s for changes (%s); use SIGHUP or /admin/reload", r->dir,
                    strerror(errno));
        if (r->ino_fd >= 0)
            close(r->ino_fd);
        r->ino_fd = -1;
        return;
    }
    r->ino_ev = event_new(r->base, r->ino_fd, EV_READ | EV_PERSIST, on_inotify, r);
    event_add(r->ino_ev, NULL);
    r->debounce_ev = evtimer_new(r->base, on_debounce, r);
}

struct lp_reloader *lp_reloader_create(struct lp_runtime *rt, struct event_base *base)
{
    struct lp_reloader *r = lp_xcalloc(1, sizeof *r);
    r->rt = rt;
    r->base = base;
    r->ino_fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, reload_thread, r) == 0)
        r->thread_started = true;
    watch_file(r);
    g_reloader = r;
    return r;
}

void lp_reloader_set_workers(struct lp_reloader *r, struct lp_worker **w, int n)
{
    pthread_mutex_lock(&r->mu); /* the reload thread reads them under mu */
    r->workers = w;
    r->n_workers = n;
    pthread_mutex_unlock(&r->mu);
}

void lp_reloader_destroy(struct lp_reloader *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->thread_started)
        pthread_join(r->thread, NULL);
    while (r->waiting) {
        struct lp_reload_job *j = r->waiting;
        r->waiting = j->next;
        event_free(j->ev);
        free(j);
    }
    if (r->ino_ev)
        event_free(r->ino_ev);
    if (r->debounce_ev)
        event_free(r->debounce_ev);
    if (r->ino_fd >= 0)
        close(r->ino_fd);
    free(r->dir);
    free(r->file);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    g_reloader = NULL;
    free(r);
}
