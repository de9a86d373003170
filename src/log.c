/* log.c - interim synchronous implementation; replaced by the async writer (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"

static enum lp_log_level g_level = LP_LOG_INFO;

void lp_log_init(const struct lp_log_opts *opts)
{
    if (opts)
        g_level = opts->level;
}

void lp_log_shutdown(void) {}
void lp_log_request_reopen(void) {}
void lp_log_add_secret(const char *secret) { (void)secret; }
void lp_log_clear_secrets(void) {}
unsigned long lp_log_dropped(void) { return 0; }

bool lp_log_enabled(enum lp_log_level lvl)
{
    return lvl >= g_level;
}

void lp_log(enum lp_log_level lvl, const char *req_id, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (!lp_log_enabled(lvl))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct lp_buf b;
    lp_buf_init(&b, 8192);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lp_buf_printf(&b, "{\"ts\":%lld.%03ld,\"level\":\"%s\"", (long long)ts.tv_sec,
                  ts.tv_nsec / 1000000, names[lvl]);
    if (req_id) {
        lp_buf_appends(&b, ",\"req_id\":\"");
        lp_buf_append_json_escaped(&b, req_id, strlen(req_id));
        lp_buf_appendc(&b, '"');
    }
    lp_buf_appends(&b, ",\"msg\":\"");
    lp_buf_append_json_escaped(&b, msg, strlen(msg));
    lp_buf_appends(&b, "\"}\n");
    fwrite(b.data, 1, b.len, stderr);
    lp_buf_free(&b);
}

void lp_log_access(const char *json, size_t len)
{
    fwrite(json, 1, len, stderr);
    fputc('\n', stderr);
}
