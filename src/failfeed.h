/* failfeed.h - the latest failovers, process-wide, for the status page (/admin/status).
 *
 * A fixed ring of LP_FAILFEED_MAX entries under a mutex, written only when an attempt fails over
 * (rare), read by the admin endpoint. Strings are copied and truncated; causes come from
 * classify (masked, no secrets).
 */
#ifndef LP_FAILFEED_H
#define LP_FAILFEED_H

#include <stdint.h>

struct json_object;

#define LP_FAILFEED_MAX 32

/* Note one failover: alias, the failed route, its class and cause, at wall time ms. */
void lp_failfeed_note(const char *alias, const char *backend, const char *model, const char *cls,
                      const char *cause, int64_t wall_ms);
/* The latest failovers, newest first, as a new JSON array. */
struct json_object *lp_failfeed_json(void);
/* How many failovers were noted since start. */
uint64_t lp_failfeed_count(void);

#endif
