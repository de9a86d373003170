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

void lp_logcfg_rotation(const struct lp_config *cfg, struct lp_logrotate_opts *out)
{
    const struct lp_log_rotation_cfg *r = &cfg->logging.rotation;
    memset(out, 0, sizeof *out);
    out->enabled = r->max_size_mb >= 0 || r->time_strategy >= 0 || r->max_age_set ||
                   r->max_backups_set || r->compress_set || r->rotate_by_size_set ||
                   r->rotate_by_time_set;
    if (!out->enabled)
        return;
    double mb = r->max_size_mb >= 0 ? r->max_size_mb : 100;
    if (r->rotate_by_size_set && !r->rotate_by_size)
        mb = 0;
    out->max_bytes = (uint64_t)(mb * 1024 * 1024);
    out->time =
        r->time_strategy >= 0 ? (enum lp_logrotate_time)r->time_strategy : LP_ROTATE_TIME_NONE;
    if (r->rotate_by_time_set) {
        if (!r->rotate_by_time)
            out->time = LP_ROTATE_TIME_NONE;
        else if (r->time_strategy < 0)
            out->time = LP_ROTATE_DAILY;
    }
    out->max_age_s = (r->max_age_set ? r->max_age_days : 7) * 86400;
    out->max_backups = (int)(r->max_backups_set ? r->max_backups : 10);
    out->compress = r->compress_set && r->compress;
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
    lp_logcfg_rotation(cfg, &lo.rotate);
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
