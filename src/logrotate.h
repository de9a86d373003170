/* logrotate.h - the proxy's own log rotation: when to rotate (pure, on an injected clock) and
 * how (rename, gzip, retention by age and count: file I/O, for the log writer thread only).
 *
 * A file `PATH` is rotated by renaming it to `PATH.YYYYMMDD-HHMMSS` (the UTC time of the
 * rotation; `-N` is appended when that name is taken), optionally compressed to that name plus
 * `.gz`, after which the writer opens a fresh `PATH`. Retention looks at the rotated files of
 * PATH only (names of exactly that shape) and deletes those older than max_age_s (by the time in
 * their name) and all but the max_backups newest.
 *
 * Nothing here is called on a worker thread: compression and directory scans block.
 */
#ifndef LP_LOGROTATE_H
#define LP_LOGROTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum lp_logrotate_time {
    LP_ROTATE_TIME_NONE = 0,
    LP_ROTATE_DAILY,  /* at 00:00 UTC */
    LP_ROTATE_HOURLY, /* at every full hour */
};

struct lp_logrotate_opts {
    bool enabled;                /* false: the proxy never rotates (logrotate + SIGUSR1) */
    uint64_t max_bytes;          /* rotate before a write would pass this size; 0 = no limit */
    enum lp_logrotate_time time; /* rotate when a write falls in a new period */
    int64_t max_age_s;           /* delete rotated files older than this; 0 = keep */
    int max_backups;             /* keep at most this many rotated files; 0 = no limit */
    bool compress;               /* gzip rotated files */
};

/* The start (unix seconds) of the UTC period of `t`; 0 for LP_ROTATE_TIME_NONE. */
int64_t lp_logrotate_period(enum lp_logrotate_time tm, int64_t t);

/* Pure: must a file of `size` bytes whose lines belong to the period starting `period` be rotated
 * before `add` more bytes are written at time `now`? Never for an empty file, so one line larger
 * than max_bytes does not rotate forever. */
bool lp_logrotate_due(const struct lp_logrotate_opts *o, uint64_t size, int64_t period, size_t add,
                      int64_t now);

/* Rename `path` to its rotated name for time `now`, compress it when o->compress, then apply
 * retention. The caller reopens `path` afterwards. Returns LP_ERR when the rename failed (the
 * file stays; err holds the reason); a compression failure keeps the uncompressed file and is
 * reported in err with LP_OK (the rotation itself happened). */
enum lp_status lp_logrotate_rotate(const char *path, const struct lp_logrotate_opts *o, int64_t now,
                                   char *err, size_t errlen);

/* gzip `src` to `src.gz` (written as `src.gz.tmp`, then renamed) and delete `src`. On failure
 * nothing but `src` remains. */
enum lp_status lp_logrotate_compress(const char *src);

/* Delete the rotated files of `path` beyond o->max_age_s / o->max_backups at time `now`.
 * Returns how many were deleted. */
int lp_logrotate_prune(const char *path, const struct lp_logrotate_opts *o, int64_t now);

/* Format the rotated name of `path` for time `now` (without `-N` or `.gz`) into out. */
void lp_logrotate_name(const char *path, int64_t now, char *out, size_t cap);

#endif
