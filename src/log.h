/* log.h - levelled operational logs and the JSON access log.
 *
 * Operational lines are JSON objects, one per line:
 *   {"ts":"2025-01-31T12:00:00.123Z","level":"info","req_id":"...","msg":"..."}
 * The access log gets one caller-built JSON object per request (see docs/operations.md).
 *
 * When masking is on (the default) every message and access line passes through lp_mask (with
 * the registered secrets) before it is queued, so a secret never reaches a log unmasked.
 *
 * Writes never block the caller on I/O: the caller formats and masks the line on its own thread,
 * then appends it under a short mutex to a bounded in-memory queue; a writer thread drains the
 * queue with write(2) in batches. When the queue is full (queue_max_bytes or queue_max_lines),
 * the line is dropped and counted (lp_log_dropped; the writer also logs a warning with the
 * count). Before lp_log_init and after lp_log_shutdown, lines are written synchronously to stderr.
 *
 * Thread-safety: every function may be called from any thread, except lp_log_init and
 * lp_log_shutdown, which must not race each other.
 */
#ifndef LP_LOG_H
#define LP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logrotate.h"
#include "status.h"

enum lp_log_level {
    LP_LOG_DEBUG = 0,
    LP_LOG_INFO = 1,
    LP_LOG_WARN = 2,
    LP_LOG_ERROR = 3,
};

/* Queue ceilings used when the options leave them 0. */
#define LP_LOG_QUEUE_MAX_BYTES ((size_t)16 << 20)
#define LP_LOG_QUEUE_MAX_LINES ((size_t)100000)

struct lp_log_opts {
    enum lp_log_level level;
    bool mask;               /* mask secrets (default true) */
    const char *error_file;  /* operational log file, NULL = stderr only */
    const char *access_file; /* access log file, NULL = stderr */
    bool also_stderr;        /* operational lines also to stderr when a file is set */
    size_t queue_max_bytes;  /* 0 = LP_LOG_QUEUE_MAX_BYTES (both logs together) */
    size_t queue_max_lines;  /* 0 = LP_LOG_QUEUE_MAX_LINES */
    /* The proxy's own rotation of the files above (logrotate.h), done on the writer thread:
     * before a batch is written to a file that is due (size, or a new daily/hourly period) the
     * file is renamed, gzipped when asked, old rotated files are pruned, and a new file opened.
     * Disabled by default (logrotate + SIGUSR1, lp_log_request_reopen, keep working either way). */
    struct lp_logrotate_opts rotate;
    int64_t (*now_s)(void); /* the clock of rotation decisions, unix seconds; NULL = time() */
};

/* Start the logger, or apply new options to a running one (level, masking and files; the queue
 * ceilings apply from the next enqueue). Files are opened O_WRONLY|O_APPEND|O_CREAT, mode 0640,
 * before returning. opts NULL means defaults (info, masked, stderr only).
 * Returns LP_OK, or LP_ERR when a file could not be opened: the reason went to stderr and that
 * log falls back to stderr (the logger still runs). Not to be called concurrently with
 * lp_log_shutdown. */
enum lp_status lp_log_init(const struct lp_log_opts *opts);
/* Write everything queued, stop the writer thread and close the files; later calls write
 * synchronously to stderr. Safe to call when not running. */
void lp_log_shutdown(void);
/* Block until every line queued before the call has been written (no-op when not running or
 * while held). For tests, and before a re-exec or an abort. */
void lp_log_flush(void);
/* Reopen the files (SIGUSR1, for logrotate). Async-signal-safe: it only sets a flag; the writer
 * thread notices within ~200 ms, or at its next batch, and reopens before writing it. */
void lp_log_request_reopen(void);
/* While held, the writer does not drain the queue (lines accumulate, then drop when full).
 * For tests of the drop path; lp_log_shutdown drains regardless. */
void lp_log_hold(bool hold);
/* Register a secret (a configured key) that must never appear in a log; it is masked wherever it
 * occurs in addition to the pattern-based masking. The string is copied. Secrets shorter than 4
 * characters are ignored (masking every "ab" would destroy the logs and protect nothing). */
void lp_log_add_secret(const char *secret);
void lp_log_clear_secrets(void);

bool lp_log_enabled(enum lp_log_level lvl);
/* Log one operational line. req_id may be NULL. Messages longer than 64 KiB are truncated. */
void lp_log(enum lp_log_level lvl, const char *req_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write one complete JSON access-log line (no trailing newline needed). Masked like the rest.
 * Lines longer than 256 KiB are dropped and counted. */
void lp_log_access(const char *json, size_t len);
/* The same for a line whose caller already masked every field that can carry a secret (the
 * request path's access line masks its client- and upstream-supplied fields itself, which is
 * much cheaper than scanning the whole line). */
void lp_log_access_premasked(const char *json, size_t len);
/* Lines dropped because the queue was full or a line was too long (cumulative per process). */
unsigned long lp_log_dropped(void);

#define lp_log_debug(rid, ...)                                                                     \
    do {                                                                                           \
        if (lp_log_enabled(LP_LOG_DEBUG))                                                          \
            lp_log(LP_LOG_DEBUG, rid, __VA_ARGS__);                                                \
    } while (0)
#define lp_log_info(rid, ...) lp_log(LP_LOG_INFO, rid, __VA_ARGS__)
#define lp_log_warn(rid, ...) lp_log(LP_LOG_WARN, rid, __VA_ARGS__)
#define lp_log_error(rid, ...) lp_log(LP_LOG_ERROR, rid, __VA_ARGS__)

#endif
