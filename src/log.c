/* log.c - the asynchronous logger (see log.h for the contract).
 *
 * Two locks, never held together by a producer:
 *   - g.mu guards the queue (one pending buffer per destination) and the writer's flags. A
 *     producer holds it only to memcpy one finished line, so worker threads never wait on I/O.
 *   - g.io guards the file descriptors. The writer holds it while it writes a batch; lp_log_init
 *     takes it to swap files. Reopen (SIGUSR1) happens on the writer thread under it, so a
 *     descriptor is never closed under a write. Rotation (logging.rotation, logrotate.c) also
 *     happens there: before a batch is written to a file that is due (size or period), the file
 *     is renamed, compressed, pruned and opened afresh, all on the writer thread.
 * Formatting, JSON escaping and masking happen on the caller's thread before g.mu is taken.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "logrotate.h"
#include "mask.h"
#include "util/alloc.h"
#include "util/buf.h"

#define MSG_MAX ((size_t)64 * 1024)    /* a longer message is truncated */
#define OPS_LINE_MAX ((size_t)1 << 20) /* escaped, masked message plus the envelope */
#define ACCESS_LINE_MAX ((size_t)256 * 1024)
#define MIN_SECRET_LEN 4
#define WAKE_MS                                                                                    \
    50 /* the writer's poll period: how late a queued line or a                                    \
          reopen request may be noticed */
#define SIGNAL_BYTES                                                                               \
    (64 * 1024)                          /* wake the writer at once only past this much queued:    \
                                            no futex wake per request at ordinary rates */
#define KEEP_BATCH_CAP ((size_t)1 << 20) /* batch buffers larger than this are freed after use */
#define PATH_MAX_ERR 4200                /* a rotation error message (paths included) */

enum dest { DEST_OPS = 0, DEST_ACC = 1, N_DEST = 2 };

struct sink {
    char *path;     /* NULL = stderr */
    int fd;         /* -1 = stderr */
    uint64_t size;  /* bytes in the file (for rotation by size) */
    int64_t period; /* start of the rotation period its lines belong to */
};

struct logger {
    pthread_mutex_t mu; /* guards everything down to `io` */
    pthread_cond_t wake;
    pthread_cond_t done;
    pthread_t thread;
    bool running; /* a writer thread exists and accepts lines */
    bool stop;
    bool hold;
    struct lp_buf q[N_DEST]; /* pending lines, newline-terminated */
    size_t q_lines;
    size_t max_bytes, max_lines;
    unsigned long long seq_in, seq_out; /* lines accepted / written, for lp_log_flush */

    pthread_mutex_t io; /* guards sinks and also_stderr */
    struct sink sinks[N_DEST];
    bool also_stderr;
    struct lp_logrotate_opts rot;
    int64_t (*now_s)(void);
};

static struct logger g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .max_bytes = LP_LOG_QUEUE_MAX_BYTES,
    .max_lines = LP_LOG_QUEUE_MAX_LINES,
    .io = PTHREAD_MUTEX_INITIALIZER,
    .sinks = {{.path = NULL, .fd = -1}, {.path = NULL, .fd = -1}},
};

static atomic_int g_level = LP_LOG_INFO;
static atomic_bool g_mask = true;
static atomic_bool g_reopen;
static atomic_ulong g_dropped;

/* Registered secrets, longest first (so a secret that is a prefix of another never wins). */
static pthread_rwlock_t g_sec_lock = PTHREAD_RWLOCK_INITIALIZER;
static char **g_secrets;
static size_t g_n_secrets;

/* ---- file descriptors (writer thread or lp_log_init, under g.io) ---- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk or a closed pipe: the batch is lost, the process goes on */
        p += w;
        n -= (size_t)w;
    }
}

static int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

/* Size and period of a freshly opened sink: a non-empty file keeps the period of its last
 * write (so a restart in a new day rotates yesterday's file before the first line). */
static void sink_stat(struct sink *s)
{
    struct stat st;
    int64_t now = g.now_s();
    s->size = 0;
    s->period = lp_logrotate_period(g.rot.time, now);
    if (s->fd >= 0 && fstat(s->fd, &st) == 0) {
        s->size = (uint64_t)st.st_size;
        if (st.st_size > 0)
            s->period = lp_logrotate_period(g.rot.time, (int64_t)st.st_mtime);
    }
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        char msg[512];
        int n = snprintf(msg, sizeof msg, "llm-proxy: cannot open log file %s: %s\n", path,
                         strerror(errno));
        write_all(2, msg, n > 0 && (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    }
    return fd;
}

static void close_sink(struct sink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    LP_FREE(&s->path);
}

/* Point s at path (NULL = stderr). On an open failure s falls back to stderr. */
static enum lp_status set_sink(struct sink *s, const char *path)
{
    close_sink(s);
    if (!path || !*path)
        return LP_OK;
    int fd = open_log(path);
    if (fd < 0)
        return LP_ERR;
    s->fd = fd;
    s->path = lp_xstrdup(path);
    sink_stat(s);
    return LP_OK;
}

/* After a rename by logrotate, open the path again; keep the old descriptor if that fails. */
static void reopen_sinks(void)
{
    for (int d = 0; d < N_DEST; d++) {
        struct sink *s = &g.sinks[d];
        if (!s->path)
            continue;
        int fd = open_log(s->path);
        if (fd < 0)
            continue;
        if (s->fd >= 0)
            close(s->fd);
        s->fd = fd;
        sink_stat(s);
    }
}

static void report_line(const char *msg);

/* Rotate s before `add` more bytes when its size or period says so (writer thread, g.io held).
 * On a failed rename the file simply grows: logging goes on. */
static void maybe_rotate(struct sink *s, size_t add)
{
    int64_t now = g.now_s();
    if (!s->path || s->fd < 0 || !lp_logrotate_due(&g.rot, s->size, s->period, add, now))
        return;
    char err[PATH_MAX_ERR];
    enum lp_status rc = lp_logrotate_rotate(s->path, &g.rot, now, err, sizeof err);
    if (rc == LP_OK) {
        int fd = open_log(s->path);
        if (fd >= 0) {
            close(s->fd);
            s->fd = fd;
        }
        sink_stat(s);
        s->period = lp_logrotate_period(g.rot.time, now);
    } else {
        s->period = lp_logrotate_period(g.rot.time, now); /* do not retry every batch */
        s->size = 0;
    }
    if (err[0])
        report_line(err);
}

static int sink_fd(const struct sink *s)
{
    return s->fd >= 0 ? s->fd : 2;
}

static void write_ops(const char *p, size_t n)
{
    struct sink *s = &g.sinks[DEST_OPS];
    write_all(sink_fd(s), p, n);
    s->size += n;
    if (g.also_stderr && s->fd >= 0)
        write_all(2, p, n);
}

/* ---- the writer thread ---- */

static void append_ts(struct lp_buf *b);

/* A warning from the writer itself (rotation trouble) into the operational log. */
static void report_line(const char *msg)
{
    struct lp_buf line;
    lp_buf_init(&line, 0);
    lp_buf_appendc(&line, '{');
    append_ts(&line);
    lp_buf_appends(&line, ",\"level\":\"warn\",\"msg\":\"log rotation: ");
    lp_buf_append_json_escaped(&line, msg, strlen(msg));
    lp_buf_appends(&line, "\"}\n");
    write_ops(line.data, line.len);
    lp_buf_free(&line);
}

static void report_drops(void)
{
    static unsigned long reported; /* writer thread only */
    unsigned long d = atomic_load_explicit(&g_dropped, memory_order_relaxed);
    if (d == reported)
        return;
    struct lp_buf line;
    lp_buf_init(&line, 0);
    lp_buf_appendc(&line, '{');
    append_ts(&line);
    lp_buf_printf(&line,
                  ",\"level\":\"warn\",\"msg\":\"log queue full: %lu lines dropped so far\"}\n", d);
    write_ops(line.data, line.len);
    lp_buf_free(&line);
    reported = d;
}

static void write_batch(struct lp_buf batch[N_DEST])
{
    pthread_mutex_lock(&g.io);
    /* Reopen before writing, so lines logged after the request land in the new file. */
    if (atomic_exchange(&g_reopen, false))
        reopen_sinks();
    if (g.rot.enabled) {
        for (int d = 0; d < N_DEST; d++)
            if (batch[d].len)
                maybe_rotate(&g.sinks[d], batch[d].len);
    }
    if (batch[DEST_OPS].len)
        write_ops(batch[DEST_OPS].data, batch[DEST_OPS].len);
    if (batch[DEST_ACC].len) {
        write_all(sink_fd(&g.sinks[DEST_ACC]), batch[DEST_ACC].data, batch[DEST_ACC].len);
        g.sinks[DEST_ACC].size += batch[DEST_ACC].len;
    }
    report_drops();
    pthread_mutex_unlock(&g.io);
    for (int d = 0; d < N_DEST; d++) {
        if (batch[d].cap > KEEP_BATCH_CAP)
            lp_buf_free(&batch[d]); /* do not keep a burst's memory forever */
        lp_buf_reset(&batch[d]);
    }
}

static bool queue_empty(void)
{
    return g.q[DEST_OPS].len == 0 && g.q[DEST_ACC].len == 0;
}

/* Called with g.mu held; returns with it held once there is something to do. */
static void wait_for_work(void)
{
    while (!g.stop && !atomic_load(&g_reopen) && (g.hold || queue_empty())) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)WAKE_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g.wake, &g.mu, &ts);
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    struct lp_buf batch[N_DEST];
    for (int d = 0; d < N_DEST; d++)
        lp_buf_init(&batch[d], 0);
    pthread_mutex_lock(&g.mu);
    for (;;) {
        wait_for_work();
        for (int d = 0; d < N_DEST; d++) {
            struct lp_buf t = g.q[d];
            g.q[d] = batch[d];
            batch[d] = t;
        }
        g.q_lines = 0;
        unsigned long long upto = g.seq_in;
        pthread_mutex_unlock(&g.mu);
        write_batch(batch);
        pthread_mutex_lock(&g.mu);
        g.seq_out = upto;
        pthread_cond_broadcast(&g.done);
        if (g.stop && queue_empty())
            break;
    }
    /* Still under g.mu with an empty queue: from here on producers write synchronously. */
    g.running = false;
    pthread_cond_broadcast(&g.done);
    pthread_mutex_unlock(&g.mu);
    for (int d = 0; d < N_DEST; d++)
        lp_buf_free(&batch[d]);
    return NULL;
}

/* ---- producers ---- */

static void enqueue(enum dest d, const char *line, size_t n)
{
    pthread_mutex_lock(&g.mu);
    if (!g.running) {
        pthread_mutex_unlock(&g.mu);
        write_all(2, line, n); /* before init / after shutdown: synchronous stderr */
        return;
    }
    size_t queued = g.q[DEST_OPS].len + g.q[DEST_ACC].len;
    if (g.q_lines >= g.max_lines ||
        n > g.max_bytes - (queued < g.max_bytes ? queued : g.max_bytes)) {
        pthread_mutex_unlock(&g.mu);
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
        return;
    }
    (void)lp_buf_append(&g.q[d], line, n); /* unbounded buffer; the check above is the ceiling */
    g.q_lines++;
    g.seq_in++;
    /* Operational lines are rare and wanted now: wake the writer when the queue was empty.
     * Access lines (one per request) are picked up by the writer's poll, or once a batch is
     * big, so that a busy proxy pays no futex wake per request. */
    bool wake = d == DEST_OPS ? queued == 0 : (queued < SIGNAL_BYTES && queued + n >= SIGNAL_BYTES);
    if (wake && !g.hold)
        pthread_cond_signal(&g.wake);
    pthread_mutex_unlock(&g.mu);
}

/* Append s[0..n) to out, masked when masking is on. */
static void append_masked(struct lp_buf *out, const char *s, size_t n)
{
    if (!atomic_load_explicit(&g_mask, memory_order_relaxed)) {
        (void)lp_buf_append(out, s, n);
        return;
    }
    pthread_rwlock_rdlock(&g_sec_lock);
    lp_mask(s, n, out, (const char *const *)g_secrets, g_n_secrets);
    pthread_rwlock_unlock(&g_sec_lock);
}

static void append_ts(struct lp_buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[32];
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    lp_buf_printf(b, "\"ts\":\"%s.%03ldZ\"", s, ts.tv_nsec / 1000000L);
}

/* Format the message; returns a pointer to stack or a heap copy (*heap set, caller frees). */
static size_t format_msg(char *stack, size_t cap, char **heap, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(stack, cap, fmt, ap);
    *heap = NULL;
    if (n < 0) {
        va_end(ap2);
        return 0;
    }
    if ((size_t)n >= cap) {
        size_t hcap = (size_t)n + 1 < MSG_MAX ? (size_t)n + 1 : MSG_MAX;
        *heap = lp_xmalloc(hcap);
        vsnprintf(*heap, hcap, fmt, ap2);
        n = (int)(hcap - 1);
    }
    va_end(ap2);
    return (size_t)n;
}

void lp_log(enum lp_log_level lvl, const char *req_id, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (!lp_log_enabled(lvl))
        return;
    if ((int)lvl < LP_LOG_DEBUG || lvl > LP_LOG_ERROR)
        lvl = LP_LOG_ERROR;
    char stack[2048], *heap;
    va_list ap;
    va_start(ap, fmt);
    size_t n = format_msg(stack, sizeof stack, &heap, fmt, ap);
    va_end(ap);
    struct lp_buf masked, line;
    lp_buf_init(&masked, 0);
    lp_buf_init(&line, OPS_LINE_MAX);
    append_masked(&masked, heap ? heap : stack, n);
    lp_buf_appendc(&line, '{');
    append_ts(&line);
    lp_buf_printf(&line, ",\"level\":\"%s\"", names[lvl]);
    if (req_id) {
        lp_buf_appends(&line, ",\"req_id\":\"");
        lp_buf_append_json_escaped(&line, req_id, strlen(req_id));
        lp_buf_appendc(&line, '"');
    }
    lp_buf_appends(&line, ",\"msg\":\"");
    lp_buf_append_json_escaped(&line, masked.data ? masked.data : "", masked.len);
    if (lp_buf_appends(&line, "\"}\n") == LP_OK)
        enqueue(DEST_OPS, line.data, line.len);
    else
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
    lp_buf_free(&masked);
    lp_buf_free(&line);
    free(heap);
}

void lp_log_access_premasked(const char *json, size_t len)
{
    while (len > 0 && (json[len - 1] == '\n' || json[len - 1] == '\r'))
        len--;
    if (len > ACCESS_LINE_MAX) {
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
        return;
    }
    struct lp_buf line;
    lp_buf_init(&line, 0);
    (void)lp_buf_append(&line, json, len);
    lp_buf_appendc(&line, '\n');
    enqueue(DEST_ACC, line.data, line.len);
    lp_buf_free(&line);
}

void lp_log_access(const char *json, size_t len)
{
    while (len > 0 && (json[len - 1] == '\n' || json[len - 1] == '\r'))
        len--;
    if (len > ACCESS_LINE_MAX) {
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
        return;
    }
    struct lp_buf line;
    lp_buf_init(&line, 0);
    append_masked(&line, json, len);
    lp_buf_appendc(&line, '\n');
    enqueue(DEST_ACC, line.data, line.len);
    lp_buf_free(&line);
}

bool lp_log_enabled(enum lp_log_level lvl)
{
    return (int)lvl >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

unsigned long lp_log_dropped(void)
{
    return atomic_load_explicit(&g_dropped, memory_order_relaxed);
}

void lp_log_request_reopen(void)
{
    atomic_store(&g_reopen, true); /* lock-free atomic store: async-signal-safe */
}

/* ---- secrets ---- */

static int by_len_desc(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
    return la < lb ? 1 : la > lb ? -1 : 0;
}

void lp_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < MIN_SECRET_LEN)
        return;
    pthread_rwlock_wrlock(&g_sec_lock);
    bool dup = false;
    for (size_t i = 0; i < g_n_secrets && !dup; i++)
        dup = strcmp(g_secrets[i], secret) == 0;
    if (!dup) {
        g_secrets = lp_xrealloc(g_secrets, (g_n_secrets + 1) * sizeof *g_secrets);
        g_secrets[g_n_secrets++] = lp_xstrdup(secret);
        qsort(g_secrets, g_n_secrets, sizeof *g_secrets, by_len_desc);
    }
    pthread_rwlock_unlock(&g_sec_lock);
}

void lp_log_clear_secrets(void)
{
    pthread_rwlock_wrlock(&g_sec_lock);
    for (size_t i = 0; i < g_n_secrets; i++)
        free(g_secrets[i]);
    LP_FREE(&g_secrets);
    g_n_secrets = 0;
    pthread_rwlock_unlock(&g_sec_lock);
}

/* ---- lifecycle ---- */

enum lp_status lp_log_init(const struct lp_log_opts *opts)
{
    struct lp_log_opts o = opts ? *opts : (struct lp_log_opts){.level = LP_LOG_INFO, .mask = true};
    atomic_store(&g_level, (int)o.level);
    atomic_store(&g_mask, o.mask);
    enum lp_status rc = LP_OK;
    pthread_mutex_lock(&g.io);
    g.rot = o.rotate;
    g.now_s = o.now_s ? o.now_s : wall_s;
    if (set_sink(&g.sinks[DEST_OPS], o.error_file) != LP_OK)
        rc = LP_ERR;
    if (set_sink(&g.sinks[DEST_ACC], o.access_file) != LP_OK)
        rc = LP_ERR;
    g.also_stderr = o.also_stderr;
    pthread_mutex_unlock(&g.io);

    pthread_mutex_lock(&g.mu);
    g.max_bytes = o.queue_max_bytes ? o.queue_max_bytes : LP_LOG_QUEUE_MAX_BYTES;
    g.max_lines = o.queue_max_lines ? o.queue_max_lines : LP_LOG_QUEUE_MAX_LINES;
    if (!g.running) {
        g.stop = false;
        g.running = pthread_create(&g.thread, NULL, writer_main, NULL) == 0;
        if (!g.running)
            rc = LP_ERR; /* lines keep going synchronously to stderr */
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void lp_log_flush(void)
{
    pthread_mutex_lock(&g.mu);
    if (g.running && !g.hold) {
        unsigned long long target = g.seq_in;
        pthread_cond_signal(&g.wake);
        while (g.running && g.seq_out < target)
            pthread_cond_wait(&g.done, &g.mu);
    }
    pthread_mutex_unlock(&g.mu);
}

void lp_log_hold(bool hold)
{
    pthread_mutex_lock(&g.mu);
    g.hold = hold;
    if (!hold)
        pthread_cond_signal(&g.wake);
    pthread_mutex_unlock(&g.mu);
}

void lp_log_shutdown(void)
{
    pthread_mutex_lock(&g.mu);
    bool running = g.running;
    if (running) {
        g.stop = true;
        pthread_cond_signal(&g.wake);
    }
    pthread_mutex_unlock(&g.mu);
    if (!running)
        return;
    pthread_join(g.thread, NULL);
    pthread_mutex_lock(&g.mu);
    g.stop = false;
    g.hold = false;
    g.q_lines = 0;
    for (int d = 0; d < N_DEST; d++)
        lp_buf_free(&g.q[d]);
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_lock(&g.io);
    for (int d = 0; d < N_DEST; d++)
        close_sink(&g.sinks[d]);
    g.also_stderr = false;
    pthread_mutex_unlock(&g.io);
}
