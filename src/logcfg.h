/* logcfg.h - the bridge from a config snapshot to the logger: levels, files, masking, secrets.
 * Used at boot (main.c) and by every reload (reload.c); never on the request path. */
#ifndef LP_LOGCFG_H
#define LP_LOGCFG_H

#include "config.h"
#include "logrotate.h"

/* Start or reconfigure the logger from cfg's logging block (files are opened, and directories
 * under logging.base_dir created, here: boot or reload thread only), and register every
 * configured key as a secret to mask. Secrets are only added, never cleared: a line logged by a
 * worker during a reload must never find an empty list. */
void lp_logcfg_apply(const struct lp_config *cfg);

/* Pure: the rotation of cfg's logging block. Off unless a rotation key is given (era B
 * max_file_size_mb, max_age_days, max_backups, compress, rotate_by_size, rotate_by_time,
 * time_rotation; v2.1 rotation{max_size_mb, time_strategy, max_age_days, max_backups,
 * compress}). Then: size limit max_size_mb (default 100; 0 or rotate_by_size: false = none),
 * period time_strategy/time_rotation (rotate_by_time: true alone = daily, false = none; default
 * none), max_age_days default 7 (0 = keep), max_backups default 10 (0 = no limit), compress
 * default false. */
void lp_logcfg_rotation(const struct lp_config *cfg, struct lp_logrotate_opts *out);

#endif
