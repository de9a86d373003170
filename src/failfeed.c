/* failfeed.c - the latest failovers (see failfeed.h). */
#include "failfeed.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/json.h"

struct entry {
    int64_t wall_ms;
    char alias[96], backend[96], model[96], cls[32], cause[160];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry ring[LP_FAILFEED_MAX];
static uint64_t total;

static void copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

void lp_failfeed_note(const char *alias, const char *backend, const char *model, const char *cls,
                      const char *cause, int64_t wall_ms)
{
    pthread_mutex_lock(&mu);
    struct entry *e = &ring[total % LP_FAILFEED_MAX];
    e->wall_ms = wall_ms;
    copy(e->alias, sizeof e->alias, alias);
    copy(e->backend, sizeof e->backend, backend);
    copy(e->model, sizeof e->model, model);
    copy(e->cls, sizeof e->cls, cls);
    copy(e->cause, sizeof e->cause, cause);
    total++;
    pthread_mutex_unlock(&mu);
}

struct json_object *lp_failfeed_json(void)
{
    struct json_object *arr = json_object_new_array();
    pthread_mutex_lock(&mu);
    uint64_t n = total < LP_FAILFEED_MAX ? total : LP_FAILFEED_MAX;
    for (uint64_t i = 0; i < n; i++) {
        const struct entry *e = &ring[(total - 1 - i) % LP_FAILFEED_MAX];
        struct json_object *o = json_object_new_object();
        lp_json_set_int(o, "at_ms", e->wall_ms);
        lp_json_set_str(o, "alias", e->alias);
        lp_json_set_str(o, "backend", e->backend);
        lp_json_set_str(o, "model", e->model);
        lp_json_set_str(o, "class", e->cls);
        lp_json_set_str(o, "cause", e->cause);
        json_object_array_add(arr, o);
    }
    pthread_mutex_unlock(&mu);
    return arr;
}

uint64_t lp_failfeed_count(void)
{
    pthread_mutex_lock(&mu);
    uint64_t n = total;
    pthread_mutex_unlock(&mu);
    return n;
}
