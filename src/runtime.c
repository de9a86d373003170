#include "runtime.h"

#include <stdlib.h>

#include "sysprompt.h"

struct lp_config *lp_runtime_config(struct lp_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    struct lp_config *cfg = lp_config_ref(rt->cfg);
    pthread_mutex_unlock(&rt->lock);
    return cfg;
}

void lp_runtime_free_sysprompts(void *p)
{
    lp_sysprompt_free_set(p);
}

void lp_runtime_publish(struct lp_runtime *rt, struct lp_config *cfg, struct lp_sysprompts *sp)
{
    if (cfg && sp) {
        cfg->attached = sp;
        cfg->attached_free = lp_runtime_free_sysprompts;
    }
    pthread_mutex_lock(&rt->lock);
    struct lp_config *old = rt->cfg;
    rt->cfg = cfg;
    pthread_mutex_unlock(&rt->lock);
    lp_config_unref(old);
}

struct lp_sysprompts *lp_runtime_sysprompts(const struct lp_config *cfg)
{
    return cfg ? cfg->attached : NULL;
}
