/* logcfg.c - apply a config snapshot's logging block to the logger (see logcfg.h). */
#include "logcfg.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "log.h"
#include "util/alloc.h"

static enum lp_log_level parse_level(const char *s)
{
    if (!s)
        return LP_LOG_INFO;
    if (strcasecmp(s, "debug") == 0)
        return LP_LOG_DEBUG;
    if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
        return LP_LOG_WARN;
    if (strcasecmp(s, "error") == 0)
        return LP_LOG_ERROR;
    return LP_LOG_INFO;
}

/* A log path from the config: "off"/"none" disable it, a relative path is taken under
 * logging.base_dir (created if missing; a relative base_dir is relative to the working
 * directory, as in the reference). Returns a heap path or NULL. Boot/reload time only. */
static char *log_path(const struct lp_config *cfg, const char *p)
{
    if (!p || !*p || strcmp(p, "off") == 0 || strcmp(p, "none") == 0)
        return NULL;
    if (p[0] == '/' || !cfg->logging.base_dir || !cfg->logging.base_dir[0])
        return lp_xstrdup(p);
    const char *dir = cfg->logging.base_dir;
    char *full = lp_xasprintf("%s/%s", dir, p);
    /* mkdir -p of the file's directory (it may have subdirectories, e.g. requests/x.log). */
    char *d = lp_xstrdup(full);
    char *slash = strrchr(d, '/');
    if (slash) {
        *slash = '\0';
        for (char *q = d + 1; *q; q++) {
            if (*q == '/') {
                *q = '\0';
                mkdir(d, 0750);
                *q = '/';
            }
        }
        mkdir(d, 0750);
    }
    free(d);
    return full;
}

void lp_logcfg_apply(const struct lp_config *cfg)
{
    char *err_file = log_path(cfg, cfg->logging.error_log);
    char *acc_file = log_path(cfg, cfg->logging.access_log);
    struct lp_log_opts lo = {
        .level = parse_level(cfg->logging.level),
        .mask = cfg->logging.mask_sensitive,
        .error_file = err_file,
        .access_file = acc_file,
        .also_stderr = true,
    };
    lp_log_init(&lo);
    free(err_file);
    free(acc_file);
    /* Add, never clear first: a line logged by a worker during a reload must not find an empty
     * secret list. Keys dropped from the config stay masked, which is harmless. */
    lp_log_add_secret(cfg->proxy_api_key);
    lp_log_add_secret(cfg->admin_api_key);
    for (size_t i = 0; i < cfg->n_backends; i++)
        lp_log_add_secret(cfg->backends[i].api_key);
    for (size_t i = 0; i < cfg->n_keys; i++)
        lp_log_add_secret(cfg->keys[i].key);
}

