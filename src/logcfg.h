/* logcfg.h - the bridge from a config snapshot to the logger: levels, files, masking, secrets.
 * Used at boot (main.c) and by every reload (reload.c); never on the request path. */
#ifndef LP_LOGCFG_H
#define LP_LOGCFG_H

#include "config.h"

/* Start or reconfigure the logger from cfg's logging block (files are opened, and directories
 * under logging.base_dir created, here: boot or reload thread only), and register every
 * configured key as a secret to mask. Secrets are only added, never cleared: a line logged by a
 * worker during a reload must never find an empty list. */
void lp_logcfg_apply(const struct lp_config *cfg);

#endif
