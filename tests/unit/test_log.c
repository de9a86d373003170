/* test_log.c - the asynchronous logger: order, masking, reopen after rename, drop-on-full,
 * level filtering, concurrent producers and the synchronous fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util/alloc.h"
#include "util/json.h"

static char g_dir[256];

static char *path_in_dir(const char *name)
{
    return lp_xasprintf("%s/%s", g_dir, name);
}

/* The whole file as a string ("" when missing). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lp_xstrdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = lp_xmalloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int setup(void **state)
{
    (void)state;
    umask(022);
    snprintf(g_dir, sizeof g_dir, "/tmp/lp_test_log_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lp_log_shutdown();
    lp_log_clear_secrets();
    char *cmd = lp_xasprintf("rm -rf '%s'", g_dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static void start(const char *ops, const char *acc, enum lp_log_level lvl, size_t max_lines)
{
    char *o = ops ? path_in_dir(ops) : NULL, *a = acc ? path_in_dir(acc) : NULL;
    struct lp_log_opts opts = {.level = lvl,
                               .mask = true,
                               .error_file = o,
                               .access_file = a,
                               .queue_max_lines = max_lines};
    assert_int_equal(lp_log_init(&opts), LP_OK);
    free(o);
    free(a);
}

/* Every line is one JSON object with the fields documented in log.h, in order. */
static void test_order_and_format(void **state)
{
    (void)state;
    start("ops.log", "acc.log", LP_LOG_DEBUG, 0);
    for (int i = 0; i < 1000; i++)
        lp_log_info(i % 2 ? "req-1" : NULL, "line %d \"quoted\"", i);
    const char *a1 = "{\"req_id\":\"r1\",\"status\":200}",
               *a2 = "{\"req_id\":\"r2\",\"status\":502}\n";
    lp_log_access(a1, strlen(a1));
    lp_log_access(a2, strlen(a2));
    lp_log_shutdown();

    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_int_equal(count_lines(s), 1000);
    char *line = s;
    for (int i = 0; i < 1000; i++) {
        char *nl = strchr(line, '\n');
        struct json_object *o = lp_json_parse(line, (size_t)(nl - line), NULL);
        assert_non_null(o);
        char want[64];
        snprintf(want, sizeof want, "line %d \"quoted\"", i);
        assert_string_equal(lp_json_get_str(o, "msg"), want);
        assert_string_equal(lp_json_get_str(o, "level"), "info");
        assert_non_null(lp_json_get_str(o, "ts"));
        if (i % 2)
            assert_string_equal(lp_json_get_str(o, "req_id"), "req-1");
        else
            assert_null(lp_json_get(o, "req_id"));
        json_object_put(o);
        line = nl + 1;
    }
    free(s);
    free(p);
    p = path_in_dir("acc.log");
    s = slurp(p);
    assert_string_equal(s,
                        "{\"req_id\":\"r1\",\"status\":200}\n{\"req_id\":\"r2\",\"status\":502}\n");
    free(s);
    free(p);
}

/* A registered secret and pattern secrets never reach either file. */
static void test_masking(void **state)
{
    (void)state;
    start("ops.log", "acc.log", LP_LOG_INFO, 0);
    lp_log_add_secret("cfg-secret-0123456789");
    lp_log_add_secret("abc"); /* too short: ignored, so "abc" below survives */
    lp_log_warn("r", "backend key cfg-secret-0123456789 with Bearer tok0123456789abcdefgh abc");
    const char *acc = "{\"headers\":{\"authorization\":\"Bearer sk-abcdefghijklmnopqrstuvwx\"},"
                      "\"k\":\"cfg-secret-0123456789\"}";
    lp_log_access(acc, strlen(acc));
    lp_log_shutdown();

    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_null(strstr(s, "cfg-secret-0123456789"));
    assert_null(strstr(s, "tok0123456789abcdefgh"));
    assert_non_null(strstr(s, "cfg-****6789"));
    assert_non_null(strstr(s, "Bearer tok0****efgh abc"));
    free(s);
    free(p);
    p = path_in_dir("acc.log");
    s = slurp(p);
    assert_null(strstr(s, "cfg-secret-0123456789"));
    assert_null(strstr(s, "abcdefghijklmnopqrstuvwx"));
    assert_non_null(strstr(s, "\"Bearer sk-a****uvwx\""));
    free(s);
    free(p);
}

/* Masking can be turned off (e.g. for a debugging session). */
static void test_masking_off(void **state)
{
    (void)state;
    char *o = path_in_dir("ops.log");
    struct lp_log_opts opts = {.level = LP_LOG_INFO, .mask = false, .error_file = o};
    assert_int_equal(lp_log_init(&opts), LP_OK);
    lp_log_info(NULL, "Bearer tok0123456789abcdefgh");
    lp_log_shutdown();
    char *s = slurp(o);
    assert_non_null(strstr(s, "Bearer tok0123456789abcdefgh"));
    free(s);
    free(o);
}

/* logrotate: rename, then SIGUSR1 -> the writer reopens the path. */
static void test_reopen_after_rename(void **state)
{
    (void)state;
    start("ops.log", "acc.log", LP_LOG_INFO, 0);
    char *p = path_in_dir("ops.log"), *p1 = path_in_dir("ops.log.1");
    char *a = path_in_dir("acc.log"), *a1 = path_in_dir("acc.log.1");
    lp_log_info(NULL, "before-rename");
    lp_log_flush();
    assert_int_equal(rename(p, p1), 0);
    assert_int_equal(rename(a, a1), 0);
    lp_log_info(NULL, "after-rename-before-reopen"); /* still the old (renamed) file */
    lp_log_flush();
    lp_log_request_reopen();
    lp_log_info(NULL, "after-reopen");
    lp_log_access("{\"n\":1}", 7);
    lp_log_shutdown();

    char *old = slurp(p1), *cur = slurp(p), *acur = slurp(a);
    assert_non_null(strstr(old, "before-rename"));
    assert_non_null(strstr(old, "after-rename-before-reopen"));
    assert_null(strstr(old, "after-reopen"));
    assert_non_null(strstr(cur, "after-reopen"));
    assert_int_equal(count_lines(cur), 1);
    assert_string_equal(acur, "{\"n\":1}\n");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640); /* umask is 022 (set in setup) */
    free(old);
    free(cur);
    free(acur);
    free(p);
    free(p1);
    free(a);
    free(a1);
}

/* A full queue drops (and counts) instead of blocking; the writer reports the count. */
static void test_drop_on_full(void **state)
{
    (void)state;
    start("ops.log", NULL, LP_LOG_INFO, 10);
    unsigned long before = lp_log_dropped();
    lp_log_hold(true);
    for (int i = 0; i < 25; i++)
        lp_log_info(NULL, "held %d", i);
    assert_int_equal(lp_log_dropped() - before, 15);
    lp_log_hold(false);
    lp_log_shutdown();
    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_non_null(strstr(s, "held 0\""));
    assert_non_null(strstr(s, "held 9\""));
    assert_null(strstr(s, "held 10\""));
    assert_non_null(strstr(s, "lines dropped"));
    assert_int_equal(count_lines(s), 11); /* 10 lines + the drop report */
    free(s);
    free(p);
}

static void test_level_filter(void **state)
{
    (void)state;
    start("ops.log", NULL, LP_LOG_WARN, 0);
    assert_false(lp_log_enabled(LP_LOG_DEBUG));
    assert_false(lp_log_enabled(LP_LOG_INFO));
    assert_true(lp_log_enabled(LP_LOG_WARN));
    lp_log_debug(NULL, "d-line");
    lp_log_info(NULL, "i-line");
    lp_log_warn(NULL, "w-line");
    lp_log_error("x", "e-line");
    lp_log_shutdown();
    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_null(strstr(s, "d-line"));
    assert_null(strstr(s, "i-line"));
    assert_non_null(strstr(s, "\"level\":\"warn\""));
    assert_non_null(strstr(s, "\"level\":\"error\",\"req_id\":\"x\",\"msg\":\"e-line\""));
    assert_int_equal(count_lines(s), 2);
    free(s);
    free(p);
}

#define N_THREADS 4
#define PER_THREAD 500

static void *producer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        lp_log_info(NULL, "t%d n%d", t, i);
    return NULL;
}

/* Several threads: nothing lost, each thread's lines stay in its order. */
static void test_threads(void **state)
{
    (void)state;
    start("ops.log", NULL, LP_LOG_INFO, 0);
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        pthread_create(&th[t], NULL, producer, (void *)(intptr_t)t);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    lp_log_shutdown();
    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_int_equal(count_lines(s), N_THREADS * PER_THREAD);
    int next[N_THREADS] = {0};
    for (char *q = strstr(s, "\"msg\":\"t"); q; q = strstr(q + 1, "\"msg\":\"t")) {
        int t, n;
        assert_int_equal(sscanf(q, "\"msg\":\"t%d n%d", &t, &n), 2);
        assert_int_equal(n, next[t]);
        next[t]++;
    }
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(next[t], PER_THREAD);
    free(s);
    free(p);
}

/* A long message is truncated, not lost. */
static void test_long_message(void **state)
{
    (void)state;
    start("ops.log", NULL, LP_LOG_INFO, 0);
    size_t n = 200000;
    char *big = lp_xmalloc(n + 1);
    memset(big, 'q', n);
    big[n] = '\0';
    lp_log_info(NULL, "%s", big);
    lp_log_shutdown();
    char *p = path_in_dir("ops.log"), *s = slurp(p);
    assert_int_equal(count_lines(s), 1);
    struct json_object *o = lp_json_parse(s, strlen(s), NULL);
    assert_non_null(o);
    assert_int_equal(strlen(lp_json_get_str(o, "msg")), 64 * 1024 - 1);
    json_object_put(o);
    free(s);
    free(p);
    free(big);
}

/* After shutdown, lines go synchronously to stderr, still masked. */
static void test_sync_fallback(void **state)
{
    (void)state;
    char *p = path_in_dir("stderr.txt");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    lp_log_add_secret("sync-secret-value-0001");
    lp_log_error(NULL, "fallback sync-secret-value-0001");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *s = slurp(p);
    assert_non_null(strstr(s, "fallback sync****0001"));
    assert_null(strstr(s, "sync-secret-value-0001"));
    free(s);
    free(p);
}

/* An unopenable file is reported and that log falls back to stderr; the logger still runs. */
static void test_bad_path(void **state)
{
    (void)state;
    struct lp_log_opts opts = {
        .level = LP_LOG_INFO, .mask = true, .error_file = "/nonexistent-dir/x/ops.log"};
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    enum lp_status rc = lp_log_init(&opts);
    lp_log_info(NULL, "to stderr");
    lp_log_shutdown();
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert_int_equal(rc, LP_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_masking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_masking_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_on_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_path, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
