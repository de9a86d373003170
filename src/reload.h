/* reload.h - live configuration reload.
 *
 * Triggers: SIGHUP, a change of the config file (inotify on its directory, debounced 200 ms),
 * or POST /admin/reload. The file is parsed and validated on a reload thread, never on a worker
 * loop; a valid snapshot is published atomically (lp_runtime_publish) and in-flight requests
 * finish on the snapshot they hold. An invalid file keeps the old config; its diagnostics are
 * logged and kept for /admin/reload. Health state is keyed by names, so cooldowns and breakers
 * carry over for backends that still exist.
 */
#ifndef LP_RELOAD_H
#define LP_RELOAD_H

#include <event2/event.h>
#include <stdbool.h>

#include "runtime.h"

struct lp_reloader;
struct lp_worker;

/* Create the reloader on the main loop `base` (for inotify and the debounce timer). */
struct lp_reloader *lp_reloader_create(struct lp_runtime *rt, struct event_base *base);
void lp_reloader_set_workers(struct lp_reloader *r, struct lp_worker **w, int n);
/* Load what a config refers to (system prompts) for the initial snapshot; file problems are
 * logged as warnings. */
void lp_reloader_load_extras(struct lp_reloader *r, const struct lp_config *cfg);
/* Start a reload in the background (coalesced if one is running). Thread-safe. */
void lp_reloader_trigger(struct lp_reloader *r, const char *why);

/* Completion of an admin-triggered reload: ok, and a heap message (diagnostics or notes) that
 * the callback takes ownership of. Runs on the requesting worker's loop. */
typedef void (*lp_reload_done_fn)(void *arg, bool ok, char *message);
struct lp_reload_job;
/* Run a reload and report back on `base` (a worker loop). Returns a job handle that can be
 * cancelled (the callback then never runs). */
struct lp_reload_job *lp_reloader_run_async(struct lp_reloader *r, struct event_base *base,
                                            lp_reload_done_fn fn, void *arg);
void lp_reload_job_cancel(struct lp_reload_job *job);
void lp_reloader_destroy(struct lp_reloader *r);

/* The process-wide reloader (set at boot) for the admin endpoint. */
struct lp_reloader *lp_reloader_get(void);

#endif
