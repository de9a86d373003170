/* log.h - levelled operational logs and the JSON access log.
 *
 * Operational lines are JSON objects, one per line: {"ts":...,"level":...,"req_id":...,"msg":...}.
 * When masking is on (the default) every message passes through lp_mask before it is written, so
 * a secret never reaches a log unmasked. Writes never block the caller: lines go to an in-memory
 * queue drained by a writer thread (bounded; when full, lines are dropped and counted).
 */
#ifndef LP_LOG_H
#define LP_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum lp_log_level {
    LP_LOG_DEBUG = 0,
    LP_LOG_INFO = 1,
    LP_LOG_WARN = 2,
    LP_LOG_ERROR = 3,
};

struct lp_log_opts {
    enum lp_log_level level;
    bool mask;              /* mask secrets (default true) */
    const char *error_file; /* operational log file, NULL = stderr only */
    const char *access_file;/* access log file, NULL = stderr */
    bool also_stderr;       /* operational lines also to stderr when a file is set */
};

/* Start the logger (idempotent re-init applies new options). Safe before any thread starts. */
void lp_log_init(const struct lp_log_opts *opts);
/* Flush and stop the writer thread; later calls write synchronously to stderr. */
void lp_log_shutdown(void);
/* Reopen files (SIGUSR1, for logrotate). Async-signal-safe: only sets a flag. */
void lp_log_request_reopen(void);
/* Register a secret (a configured key) that must never appear in a log; it is masked wherever it
 * occurs in addition to the pattern-based masking. */
void lp_log_add_secret(const char *secret);
void lp_log_clear_secrets(void);

bool lp_log_enabled(enum lp_log_level lvl);
/* Log one operational line. req_id may be NULL. */
void lp_log(enum lp_log_level lvl, const char *req_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write one complete JSON access-log line (no trailing newline needed). Masked like the rest. */
void lp_log_access(const char *json, size_t len);
/* Lines dropped because the queue was full. */
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
