/* test_logrotate.c - the proxy's own log rotation: the pure decisions on an injected clock, the
 * file operations (rename, -N on collisions, gzip, retention by count and age) in a temporary
 * directory, the logger rotating on its writer thread with an injected clock, and how the
 * reference's keys (era B flat, v2.1 block) resolve. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "logcfg.h"
#include "logrotate.h"

#define T0 1796342400 /* 2026-12-04 00:00:00 UTC */

static char g_dir[64];

static int setup(void **st)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/lp_test_rot_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **st)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Names in g_dir starting with prefix, sorted; returns the count. */
static int list(const char *prefix, char names[][128], int max)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n < max)
            snprintf(names[n++], 128, "%.127s", e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[128];
                memcpy(t, names[i], 128);
                memcpy(names[i], names[j], 128);
                memcpy(names[j], t, 128);
            }
    return n;
}

static size_t gunzip_len(const char *path, char *out, size_t cap)
{
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    int n = gzread(f, out, (unsigned)cap);
    assert_true(n >= 0);
    assert_int_equal(gzclose(f), Z_OK);
    return (size_t)n;
}

/* ---- pure decisions -------------------------------------------------------------------------- */

static void test_period(void **st)
{
    assert_int_equal(lp_logrotate_period(LP_ROTATE_TIME_NONE, T0 + 5), 0);
    assert_int_equal(lp_logrotate_period(LP_ROTATE_DAILY, T0), T0);
    assert_int_equal(lp_logrotate_period(LP_ROTATE_DAILY, T0 + 86399), T0);
    assert_int_equal(lp_logrotate_period(LP_ROTATE_DAILY, T0 + 86400), T0 + 86400);
    assert_int_equal(lp_logrotate_period(LP_ROTATE_HOURLY, T0 + 3599), T0);
    assert_int_equal(lp_logrotate_period(LP_ROTATE_HOURLY, T0 + 3600 + 7), T0 + 3600);
}

static void test_due(void **st)
{
    struct lp_logrotate_opts o = {.enabled = true, .max_bytes = 1000};
    assert_false(lp_logrotate_due(&o, 0, 0, 5000, T0));  /* empty: never */
    assert_false(lp_logrotate_due(&o, 900, 0, 100, T0)); /* exactly full */
    assert_true(lp_logrotate_due(&o, 900, 0, 101, T0));
    o.enabled = false;
    assert_false(lp_logrotate_due(&o, 900, 0, 101, T0));
    o = (struct lp_logrotate_opts){.enabled = true, .time = LP_ROTATE_HOURLY};
    int64_t p = lp_logrotate_period(LP_ROTATE_HOURLY, T0 + 10);
    assert_false(lp_logrotate_due(&o, 10, p, 1, T0 + 3599));
    assert_true(lp_logrotate_due(&o, 10, p, 1, T0 + 3600));
    assert_false(lp_logrotate_due(&o, 10 * 1000 * 1000, p, 1, T0 + 3599)); /* no size limit */
    o.time = LP_ROTATE_DAILY;
    p = lp_logrotate_period(LP_ROTATE_DAILY, T0);
    assert_false(lp_logrotate_due(&o, 10, p, 1, T0 + 86399));
    assert_true(lp_logrotate_due(&o, 10, p, 1, T0 + 86400));
}

/* ---- file operations --------------------------------------------------------------------------
 */

static void test_rotate_names_and_collisions(void **st)
{
    char path[256], want[512];
    snprintf(path, sizeof path, "%s/access.log", g_dir);
    struct lp_logrotate_opts o = {.enabled = true};
    char err[512];
    for (int i = 0; i < 3; i++) {
        write_file(path, "line\n");
        assert_int_equal(lp_logrotate_rotate(path, &o, T0 + 3661, err, sizeof err), LP_OK);
        assert_string_equal(err, "");
        assert_false(exists(path));
    }
    snprintf(want, sizeof want, "%s/access.log.20261204-010101", g_dir);
    assert_true(exists(want));
    snprintf(want, sizeof want, "%s/access.log.20261204-010101-1", g_dir);
    assert_true(exists(want));
    snprintf(want, sizeof want, "%s/access.log.20261204-010101-2", g_dir);
    assert_true(exists(want));
    /* a file that is missing cannot be rotated: an error, nothing else changes */
    assert_int_equal(lp_logrotate_rotate(path, &o, T0, err, sizeof err), LP_ERR);
    assert_non_null(strstr(err, "cannot rename"));
}

static void test_compress_and_retention(void **st)
{
    char path[256], names[16][128];
    snprintf(path, sizeof path, "%s/ops.log", g_dir);
    struct lp_logrotate_opts o = {.enabled = true, .compress = true, .max_backups = 3};
    char err[512];
    for (int i = 0; i < 6; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"n\":%d}\n", i);
        write_file(path, text);
        assert_int_equal(lp_logrotate_rotate(path, &o, T0 + i * 60, err, sizeof err), LP_OK);
        assert_string_equal(err, "");
    }
    /* an unrelated file with a similar name is never touched */
    char other[300];
    snprintf(other, sizeof other, "%s/ops.log.keep-me", g_dir);
    write_file(other, "x");
    int n = list("ops.log.", names, 16);
    assert_int_equal(n, 4); /* 3 newest rotated + keep-me */
    assert_string_equal(names[0], "ops.log.20261204-000300.gz");
    assert_string_equal(names[1], "ops.log.20261204-000400.gz");
    assert_string_equal(names[2], "ops.log.20261204-000500.gz");
    assert_string_equal(names[3], "ops.log.keep-me");
    char gz[512], buf[64];
    snprintf(gz, sizeof gz, "%s/%s", g_dir, names[2]);
    size_t len = gunzip_len(gz, buf, sizeof buf);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "{\"n\":5}\n", 8);
    /* retention by age: two days later with a one-day limit, every rotated file goes */
    o = (struct lp_logrotate_opts){.enabled = true, .max_age_s = 86400};
    assert_int_equal(lp_logrotate_prune(path, &o, T0 + 2 * 86400), 3);
    assert_int_equal(list("ops.log.", names, 16), 1);
    /* ... but not files younger than the limit */
    write_file(path, "y\n");
    assert_int_equal(lp_logrotate_rotate(path, &o, T0 + 2 * 86400, err, sizeof err), LP_OK);
    assert_int_equal(lp_logrotate_prune(path, &o, T0 + 2 * 86400 + 3600), 0);
    assert_int_equal(list("ops.log.", names, 16), 2);
}

/* ---- the logger, on an injected clock ---------------------------------------------------------
 */

static int64_t fake_now = T0;
static int64_t fake_clock(void)
{
    return fake_now;
}

static void test_logger_rotates_on_writer_thread(void **st)
{
    char path[256], names[64][128];
    snprintf(path, sizeof path, "%s/acc.log", g_dir);
    struct lp_log_opts lo = {
        .level = LP_LOG_INFO,
        .mask = true,
        .access_file = path,
        .rotate = {.enabled = true,
                   .max_bytes = 1000,
                   .compress = true,
                   .max_backups = 2,
                   .time = LP_ROTATE_HOURLY},
        .now_s = fake_clock,
    };
    fake_now = T0 + 10;
    assert_int_equal(lp_log_init(&lo), LP_OK);
    char line[128];
    for (int i = 0; i < 40; i++) { /* 40 x ~100 bytes: several size rotations */
        int n = snprintf(line, sizeof line, "{\"seq\":%d,\"pad\":\"%080d\"}", i, 0);
        lp_log_access(line, (size_t)n);
        lp_log_flush();
        fake_now++;
    }
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= 1000);
    int n = list("acc.log.", names, 64);
    assert_int_equal(n, 2); /* max_backups */
    for (int i = 0; i < n; i++)
        assert_non_null(strstr(names[i], ".gz"));
    /* A new hour: the small file is rotated before the first line of the hour. */
    fake_now = T0 + 3600 + 5;
    lp_log_access("{\"seq\":\"next-hour\"}", 19);
    lp_log_flush();
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 20);
    n = list("acc.log.", names, 64);
    assert_int_equal(n, 2);
    assert_string_equal(names[1], "acc.log.20261204-010005.gz");
    /* A reload without rotation: the file just grows. */
    lo.rotate.enabled = false;
    assert_int_equal(lp_log_init(&lo), LP_OK);
    for (int i = 0; i < 20; i++) {
        int k = snprintf(line, sizeof line, "{\"seq\":%d,\"pad\":\"%080d\"}", i, 0);
        lp_log_access(line, (size_t)k);
    }
    lp_log_flush();
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size > 1000);
    lp_log_shutdown();
}

/* ---- config keys ------------------------------------------------------------------------------
 */

static void rotation_of(const char *logging_yaml, struct lp_logrotate_opts *o)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "listen: \"127.0.0.1:0\"\nproxy_api_key: \"sk-test-key-123\"\n"
             "backends:\n  - {name: a, url: \"http://127.0.0.1:1/v1\"}\n"
             "models:\n  m: [{backend: a, model: x}]\nlogging:\n%s",
             logging_yaml);
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *cfg = lp_config_load_string(yaml, strlen(yaml), "t.yaml", &d);
    assert_non_null(cfg);
    lp_logcfg_rotation(cfg, o);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

static void test_config_keys(void **st)
{
    struct lp_logrotate_opts o;
    rotation_of("  level: info\n", &o);
    assert_false(o.enabled); /* nothing said: logrotate's job, as before */

    rotation_of("  rotation: {max_size_mb: 100, time_strategy: daily, max_age_days: 7,"
                " max_backups: 21, compress: true}\n",
                &o);
    assert_true(o.enabled);
    assert_int_equal(o.max_bytes, 100u << 20);
    assert_int_equal(o.time, LP_ROTATE_DAILY);
    assert_int_equal(o.max_age_s, 7 * 86400);
    assert_int_equal(o.max_backups, 21);
    assert_true(o.compress);

    rotation_of("  rotation: {time_strategy: hourly, max_size_mb: 0.5}\n", &o);
    assert_int_equal(o.max_bytes, 512u * 1024);
    assert_int_equal(o.time, LP_ROTATE_HOURLY);
    assert_int_equal(o.max_age_s, 7 * 86400); /* defaults */
    assert_int_equal(o.max_backups, 10);
    assert_false(o.compress);

    rotation_of("  max_file_size_mb: 50\n  max_backups: 3\n  compress: true\n"
                "  rotate_by_size: true\n  rotate_by_time: true\n  time_rotation: hourly\n",
                &o);
    assert_true(o.enabled);
    assert_int_equal(o.max_bytes, 50u << 20);
    assert_int_equal(o.time, LP_ROTATE_HOURLY);
    assert_int_equal(o.max_backups, 3);
    assert_true(o.compress);

    rotation_of("  rotate_by_time: true\n  rotate_by_size: false\n", &o);
    assert_int_equal(o.max_bytes, 0);
    assert_int_equal(o.time, LP_ROTATE_DAILY);

    rotation_of("  max_age_days: 0\n  time_rotation: daily\n  rotate_by_time: false\n", &o);
    assert_int_equal(o.max_age_s, 0);
    assert_int_equal(o.time, LP_ROTATE_TIME_NONE);
    assert_int_equal(o.max_bytes, 100u << 20);

    /* an unknown strategy is a config error with its position */
    char yaml[] = "listen: \"127.0.0.1:0\"\nproxy_api_key: \"sk-test-key-123\"\n"
                  "backends:\n  - {name: a, url: \"http://127.0.0.1:1/v1\"}\n"
                  "models:\n  m: [{backend: a, model: x}]\n"
                  "logging:\n  rotation: {time_strategy: weekly}\n";
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *cfg = lp_config_load_string(yaml, strlen(yaml), "t.yaml", &d);
    assert_null(cfg);
    bool found = false;
    for (size_t i = 0; i < d.n; i++) {
        char *s = lp_diag_format(&d.items[i]);
        found |= strstr(s, "t.yaml:8:") && strstr(s, "weekly");
        free(s);
    }
    assert_true(found);
    lp_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_period),
        cmocka_unit_test(test_due),
        cmocka_unit_test_setup_teardown(test_rotate_names_and_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compress_and_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logger_rotates_on_writer_thread, setup, teardown),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
