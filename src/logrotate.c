/* logrotate.c - rotation policy and file operations for the log writer (see logrotate.h). */
#include "logrotate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "util/alloc.h"

#define MAX_SCAN 4096 /* rotated files of one log considered by retention */

int64_t lp_logrotate_period(enum lp_logrotate_time tm, int64_t t)
{
    int64_t len = tm == LP_ROTATE_DAILY ? 86400 : tm == LP_ROTATE_HOURLY ? 3600 : 0;
    if (len == 0)
        return 0;
    int64_t p = t / len * len;
    if (t < 0 && p != t)
        p -= len;
    return p;
}

bool lp_logrotate_due(const struct lp_logrotate_opts *o, uint64_t size, int64_t period, size_t add,
                      int64_t now)
{
    if (!o->enabled || size == 0)
        return false;
    if (o->max_bytes && size + add > o->max_bytes)
        return true;
    return o->time != LP_ROTATE_TIME_NONE && lp_logrotate_period(o->time, now) != period;
}

void lp_logrotate_name(const char *path, int64_t now, char *out, size_t cap)
{
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, cap, "%s.%s", path, stamp);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

enum lp_status lp_logrotate_compress(const char *src)
{
    enum lp_status rc = LP_ERR;
    char *gz = lp_xasprintf("%s.gz", src);
    char *tmp = lp_xasprintf("%s.gz.tmp", src);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    gzFile out = NULL;
    if (in < 0)
        goto out;
    int ofd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (ofd < 0)
        goto out;
    out = gzdopen(ofd, "wb6");
    if (!out) {
        close(ofd);
        goto out;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        if (gzwrite(out, buf, (unsigned)n) != (int)n)
            goto out;
    }
    int zr = gzclose(out);
    out = NULL;
    if (zr != Z_OK || rename(tmp, gz) != 0)
        goto out;
    unlink(src);
    rc = LP_OK;
out:
    if (out)
        gzclose(out);
    if (in >= 0)
        close(in);
    if (rc != LP_OK)
        unlink(tmp);
    free(gz);
    free(tmp);
    return rc;
}

/* Parse "YYYYMMDD-HHMMSS[-N][.gz]" (the part after "PATH."): its time and sequence number. */
static bool parse_rotated(const char *s, int64_t *t, int *seq)
{
    int Y, M, D, h, m, sec, n = 0;
    if (strlen(s) < 15 || sscanf(s, "%4d%2d%2d-%2d%2d%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 ||
        n != 15)
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (s[i] < '0' || s[i] > '9'))
            return false;
    const char *rest = s + 15;
    *seq = 0;
    if (*rest == '-') {
        char *end;
        long v = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || v < 0 || v > 9999)
            return false;
        *seq = (int)v;
        rest = end;
    }
    if (*rest && strcmp(rest, ".gz") != 0)
        return false;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    *t = (int64_t)timegm(&tm);
    return true;
}

struct rotated {
    char *name;
    int64_t t;
    int seq;
};

static int newest_first(const void *a, const void *b)
{
    const struct rotated *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? 1 : -1;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

int lp_logrotate_prune(const char *path, const struct lp_logrotate_opts *o, int64_t now)
{
    if (o->max_age_s <= 0 && o->max_backups <= 0)
        return 0;
    const char *pslash = strrchr(path, '/');
    const char *base = pslash ? pslash + 1 : path;
    char *dir = !pslash          ? lp_xstrdup(".")
                : pslash == path ? lp_xstrdup("/")
                                 : lp_xstrndup(path, (size_t)(pslash - path));
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    int deleted = 0;
    struct rotated *v = NULL;
    size_t n = 0;
    if (!d)
        goto out;
    v = lp_xcalloc(MAX_SCAN, sizeof *v);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_SCAN) {
        if (strncmp(e->d_name, base, blen) != 0 || e->d_name[blen] != '.')
            continue;
        int64_t t;
        int seq;
        if (!parse_rotated(e->d_name + blen + 1, &t, &seq))
            continue;
        v[n++] = (struct rotated){lp_xstrdup(e->d_name), t, seq};
    }
    closedir(d);
    qsort(v, n, sizeof *v, newest_first);
    for (size_t i = 0; i < n; i++) {
        bool old = o->max_age_s > 0 && now - v[i].t > o->max_age_s;
        bool extra = o->max_backups > 0 && i >= (size_t)o->max_backups;
        if (old || extra) {
            char *full = lp_xasprintf("%s/%s", dir, v[i].name);
            if (unlink(full) == 0)
                deleted++;
            free(full);
        }
    }
out:
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
    free(dir);
    return deleted;
}

enum lp_status lp_logrotate_rotate(const char *path, const struct lp_logrotate_opts *o, int64_t now,
                                   char *err, size_t errlen)
{
    char name[PATH_MAX];
    char cand[PATH_MAX + 16];
    char gz[PATH_MAX + 24];
    if (errlen)
        err[0] = '\0';
    lp_logrotate_name(path, now, name, sizeof name);
    snprintf(cand, sizeof cand, "%s", name);
    for (int i = 1;; i++) {
        snprintf(gz, sizeof gz, "%s.gz", cand);
        if (!exists(cand) && !exists(gz))
            break;
        if (i > 9999) {
            snprintf(err, errlen, "no free rotated name for %s", path);
            return LP_ERR;
        }
        snprintf(cand, sizeof cand, "%s-%d", name, i);
    }
    if (rename(path, cand) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", path, strerror(errno));
        return LP_ERR;
    }
    if (o->compress && lp_logrotate_compress(cand) != LP_OK)
        snprintf(err, errlen, "cannot compress %s: %s (kept uncompressed)", cand, strerror(errno));
    lp_logrotate_prune(path, o, now);
    return LP_OK;
}
