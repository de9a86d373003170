/* redis.c - asynchronous Redis client on one libevent loop (see redis.h).
 *
 * State: DISCONNECTED --connect--> CONNECTING --(AUTH, SELECT, SCRIPT LOAD answered)--> READY.
 * Any failure: every pending command fails (DOWN), the context is freed by hiredis, and a
 * reconnect is scheduled after the current backoff.
 *
 * Commands in flight are kept in a FIFO in the order they were written: Redis answers in order,
 * so the FIFO's head is the next reply, and the head's deadline is the only one to watch.
 */
#include "redis.h"

#include <ctype.h>
#include <stdatomic.h>
#include <errno.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/rand.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define BREAKER_FAILURES 3 /* consecutive failures that open the connection's breaker */
#define MAX_STALE 1024     /* timed-out commands still on the wire before we reconnect */
#define MAX_SCRIPTS 16

struct lp_redis_cmd {
    struct lp_redis *r;
    lp_redis_fn fn;
    void *arg;
    int64_t deadline_us;
    int64_t sent_us;
    bool done;     /* the callback ran (reply, timeout or down) or was cancelled */
    bool internal; /* a setup command: its failure restarts the connection */
    int script;    /* EVALSHA of this script (-1 otherwise): NOSCRIPT resends as EVAL */
    char **argv;   /* kept for a NOSCRIPT resend (scripts only) */
    size_t *argvlen;
    int argc;
    struct lp_redis_cmd *next; /* FIFO on the wire, or the deferred-failure list */
};

struct script {
    struct lp_redis *r;
    char *lua;
    char sha[41]; /* from SCRIPT LOAD's answer (Redis names scripts by their SHA-1) */
};

struct lp_redis {
    struct event_base *base;
    struct lp_redis_opts o; /* strings owned below */
    char *ip, *user, *password, *channel;
    redisAsyncContext *ac;
    enum lp_redis_state state;
    bool destroying;
    int pending_setup;                /* setup replies still expected */
    struct lp_redis_cmd *head, *tail; /* on the wire, in order */
    size_t n_stale;                   /* timed out, reply still to come */
    struct lp_redis_cmd *failq;       /* commands to fail from the loop (never synchronously) */
    struct event timeout_ev, reconnect_ev, defer_ev, connect_ev;
    int64_t backoff_ms;
    int failures;          /* consecutive failures (breaker) */
    int64_t open_until_us; /* breaker open until */
    struct script scripts[MAX_SCRIPTS];
    int n_scripts;
    uint64_t rng;
    struct {
        atomic_ullong commands, replies, timeouts, down, reconnects;
        atomic_llong latency_us_ewma;
        atomic_int state; /* mirror of `state` for other threads */
    } st;
};

#define ST_INC(r, f) atomic_fetch_add_explicit(&(r)->st.f, 1, memory_order_relaxed)

static void connect_now(struct lp_redis *r);
static void arm_timeout(struct lp_redis *r);

static void set_state(struct lp_redis *r, enum lp_redis_state s)
{
    r->state = s;
    atomic_store_explicit(&r->st.state, (int)s, memory_order_relaxed);
}

/* ---- URL ------------------------------------------------------------------------------------ */

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char *unescape(const char *s, size_t n)
{
    char *out = lp_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            out[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

static bool parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool lp_redis_url_parse(const char *url, struct lp_redis_url *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        *why = "the URL must start with redis://";
        return false;
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#') {
        *why = "query strings and fragments are not supported";
        return false;
    }
    const char *at = memrchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                out->user = unescape(p, (size_t)(colon - p));
            out->password = unescape(colon + 1, (size_t)(at - colon - 1));
        } else {
            out->password = unescape(p, (size_t)(at - p)); /* redis://secret@host */
        }
        p = at + 1;
    }
    const char *host = p, *hend;
    if (*p == '[') {
        hend = memchr(p, ']', (size_t)(end - p));
        if (!hend) {
            *why = "unterminated [IPv6] host";
            goto bad;
        }
        host = p + 1;
        p = hend + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (!hend)
            hend = end;
        p = hend;
    }
    if (hend == host) {
        *why = "empty host";
        goto bad;
    }
    out->host = lp_xstrndup(host, (size_t)(hend - host));
    if (p < end && *p == ':') {
        long port;
        if (!parse_int(p + 1, (size_t)(end - p - 1), 1, 65535, &port)) {
            *why = "bad port";
            goto bad;
        }
        out->port = (int)port;
    } else if (p != end) {
        *why = "unexpected characters after the host";
        goto bad;
    }
    if (*end == '/' && end[1]) {
        long db;
        if (!parse_int(end + 1, strlen(end + 1), 0, 100000, &db)) {
            *why = "bad database number";
            goto bad;
        }
        out->db = (int)db;
    }
    *why = NULL;
    return true;
bad:
    lp_redis_url_free(out);
    return false;
}

void lp_redis_url_free(struct lp_redis_url *u)
{
    LP_FREE(&u->host);
    LP_FREE(&u->user);
    LP_FREE(&u->password);
}

/* ---- command bookkeeping -------------------------------------------------------------------- */

static void cmd_free(struct lp_redis_cmd *c)
{
    for (int i = 0; c->argv && i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->argvlen);
    free(c);
}

/* Deliver err to a command's owner (once). */
static void deliver(struct lp_redis_cmd *c, const redisReply *reply, enum lp_redis_err err)
{
    if (c->done)
        return;
    c->done = true;
    if (c->fn)
        c->fn(c->arg, reply, err);
}

static void breaker_failure(struct lp_redis *r)
{
    if (++r->failures >= BREAKER_FAILURES)
        r->open_until_us = lp_now_us() + r->backoff_ms * 1000;
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_redis *r = arg;
    struct lp_redis_cmd *q = r->failq;
    r->failq = NULL;
    while (q) {
        struct lp_redis_cmd *next = q->next;
        ST_INC(r, down);
        deliver(q, NULL, LP_REDIS_DOWN);
        cmd_free(q);
        q = next;
    }
}

/* Fail c from the loop, not from the caller's stack. */
static void fail_later(struct lp_redis *r, struct lp_redis_cmd *c)
{
    c->next = r->failq;
    r->failq = c;
    event_active(&r->defer_ev, EV_TIMEOUT, 0);
}

/* Remove c from the wire FIFO (it must be there). */
static void fifo_remove(struct lp_redis *r, struct lp_redis_cmd *c)
{
    struct lp_redis_cmd **pp = &r->head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = c->next;
    if (r->tail == c)
        r->tail = prev;
    c->next = NULL;
}

/* ---- connection lifecycle ------------------------------------------------------------------- */

static void schedule_reconnect(struct lp_redis *r)
{
    if (r->destroying)
        return;
    int64_t d = r->backoff_ms;
    d += (int64_t)lp_rand_below(&r->rng, (uint64_t)(d / 5 + 1)); /* +0..20% jitter */
    struct timeval tv = {d / 1000, (d % 1000) * 1000};
    evtimer_add(&r->reconnect_ev, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* The connection is gone (hiredis frees the context itself): fail what is pending, reconnect. */
static void went_down(struct lp_redis *r)
{
    r->ac = NULL;
    set_state(r, LP_REDIS_DISCONNECTED);
    r->pending_setup = 0;
    evtimer_del(&r->timeout_ev);
    evtimer_del(&r->connect_ev);
    /* hiredis has already called every pending reply callback with NULL (see on_reply); what is
     * left on our FIFO here was never matched: fail it too. */
    while (r->head) {
        struct lp_redis_cmd *c = r->head;
        r->head = c->next;
        if (!c->done)
            ST_INC(r, down);
        deliver(c, NULL, LP_REDIS_DOWN);
        cmd_free(c);
    }
    r->tail = NULL;
    r->n_stale = 0;
    breaker_failure(r);
    schedule_reconnect(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct lp_redis *r = ac->data;
    if (!r || r->destroying || r->ac != ac)
        return;
    went_down(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lp_redis_cmd *c = privdata;
    struct lp_redis *r = c->r;
    redisReply *rp = reply;
    if (r->destroying) {
        fifo_remove(r, c);
        cmd_free(c);
        return;
    }
    fifo_remove(r, c);
    if (c->done) {
        /* Timed out or cancelled earlier: drop the late reply. */
        if (r->n_stale)
            r->n_stale--;
        cmd_free(c);
        arm_timeout(r);
        return;
    }
    if (!rp) {
        /* The connection is going away; went_down follows from the disconnect callback. */
        ST_INC(r, down);
        deliver(c, NULL, LP_REDIS_DOWN);
        cmd_free(c);
        return;
    }
    if (c->script >= 0 && rp->type == REDIS_REPLY_ERROR && rp->str &&
        strncmp(rp->str, "NOSCRIPT", 8) == 0 && r->ac) {
        /* Redis lost the script (restart, flush): send this one as EVAL; reload for the next. */
        struct script *s = &r->scripts[c->script];
        c->argv[0] = lp_xstrdup("EVAL");
        c->argvlen[0] = 4;
        free(c->argv[1]);
        c->argv[1] = lp_xstrdup(s->lua);
        c->argvlen[1] = strlen(s->lua);
        c->script = -1;
        redisAsyncCommandArgv(r->ac, on_reply, c, c->argc, (const char **)c->argv, c->argvlen);
        c->next = NULL;
        if (r->tail)
            r->tail->next = c;
        else
            r->head = c;
        r->tail = c;
        return;
    }
    int64_t rtt = lp_now_us() - c->sent_us;
    int64_t ewma = atomic_load_explicit(&r->st.latency_us_ewma, memory_order_relaxed);
    atomic_store_explicit(&r->st.latency_us_ewma, ewma ? (ewma * 7 + rtt) / 8 : rtt,
                          memory_order_relaxed);
    ST_INC(r, replies);
    r->failures = 0;
    deliver(c, rp, LP_REDIS_OK);
    cmd_free(c);
    arm_timeout(r);
}

/* Write one command on the connection. */
static struct lp_redis_cmd *send_cmd(struct lp_redis *r, struct lp_redis_cmd *c, int argc,
                                     const char **argv, const size_t *argvlen)
{
    c->r = r;
    c->sent_us = lp_now_us();
    c->deadline_us = c->sent_us + r->o.timeout_ms * 1000;
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        fail_later(r, c);
        return c;
    }
    ST_INC(r, commands);
    c->next = NULL;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    arm_timeout(r);
    return c;
}

static void become_ready(struct lp_redis *r)
{
    set_state(r, LP_REDIS_READY);
    r->backoff_ms = BACKOFF_MIN_MS;
    r->failures = 0;
    r->open_until_us = 0;
    evtimer_del(&r->connect_ev);
}

/* One setup step answered; false (and the connection restarted) when it failed. */
static bool setup_step(struct lp_redis *r, const redisReply *reply, enum lp_redis_err err)
{
    if (err != LP_REDIS_OK || !reply || reply->type == REDIS_REPLY_ERROR) {
        /* AUTH refused, SELECT out of range, script error or no answer: start over later. */
        if (r->ac)
            redisAsyncDisconnect(r->ac);
        return false;
    }
    if (--r->pending_setup == 0)
        become_ready(r);
    return true;
}

static void setup_reply(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    setup_step(arg, reply, err);
}

static void script_loaded(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct script *s = arg;
    if (err == LP_REDIS_OK && reply && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(s->sha, reply->str, 41);
    if (s->r->pending_setup > 0)
        setup_step(s->r, reply, err);
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lp_redis *r = privdata;
    redisReply *rp = reply;
    if (!rp || r->destroying || rp->type != REDIS_REPLY_ARRAY || rp->elements < 3)
        return;
    const redisReply *kind = rp->element[0];
    if (!kind || kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        become_ready(r);
        if (r->o.on_subscribed)
            r->o.on_subscribed(r->o.arg);
    } else if (strcmp(kind->str, "message") == 0 && rp->element[2]->type == REDIS_REPLY_STRING) {
        if (r->o.on_message)
            r->o.on_message(r->o.arg, rp->element[2]->str, rp->element[2]->len);
    }
}

static struct lp_redis_cmd *new_cmd(lp_redis_fn fn, void *arg, bool internal)
{
    struct lp_redis_cmd *c = lp_xcalloc(1, sizeof *c);
    c->fn = fn;
    c->arg = arg;
    c->internal = internal;
    c->script = -1;
    return c;
}

static void send_setup(struct lp_redis *r, int argc, const char **argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    r->pending_setup++;
    send_cmd(r, new_cmd(setup_reply, r, true), argc, argv, lens);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct lp_redis *r = cac->data;
    if (!r || r->destroying)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (r->ac == cac)
            went_down(r);
        return;
    }
    redisAsyncContext *ac = r->ac;
    r->pending_setup = 0;
    if (r->password) {
        const char *a3[] = {"AUTH", r->user ? r->user : "", r->password};
        if (r->user)
            send_setup(r, 3, a3);
        else {
            const char *a2[] = {"AUTH", r->password};
            send_setup(r, 2, a2);
        }
    }
    if (r->channel) {
        redisAsyncCommand(ac, on_sub_message, r, "SUBSCRIBE %s", r->channel);
        return;
    }
    if (r->o.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->o.db);
        const char *a[] = {"SELECT", db};
        send_setup(r, 2, a);
    }
    for (int i = 0; i < r->n_scripts; i++) {
        const char *a[] = {"SCRIPT", "LOAD", r->scripts[i].lua};
        size_t lens[] = {6, 4, strlen(r->scripts[i].lua)};
        r->pending_setup++;
        send_cmd(r, new_cmd(script_loaded, &r->scripts[i], true), 3, a, lens);
    }
    if (r->pending_setup == 0)
        become_ready(r);
}

/* The connect (TCP + setup) took longer than allowed. */
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lp_redis *r = arg;
    if (r->state == LP_REDIS_READY || !r->ac)
        return;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    ac->data = NULL; /* its callbacks must not find us any more */
    redisAsyncFree(ac);
    went_down(r);
}

static void connect_now(struct lp_redis *r)
{
    set_state(r, LP_REDIS_CONNECTING);
    char ipbuf[64];
    const char *ip = r->ip;
    if (r->o.ip_of) {
        if (!r->o.ip_of(r->o.ip_arg, ipbuf, sizeof ipbuf)) {
            went_down(r);
            return;
        }
        ip = ipbuf;
    }
    redisAsyncContext *ac = ip ? redisAsyncConnect(ip, r->o.port) : NULL;
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        r->ac = NULL;
        went_down(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    int64_t ms = r->o.timeout_ms < 1000 ? 1000 : r->o.timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(&r->connect_ev, &tv);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct lp_redis *r = arg;
    ST_INC(r, reconnects);
    connect_now(r);
}

/* ---- timeouts ------------------------------------------------------------------------------- */

/* Arm the timer for the oldest command still waiting for its callback. */
static void arm_timeout(struct lp_redis *r)
{
    evtimer_del(&r->timeout_ev);
    for (struct lp_redis_cmd *c = r->head; c; c = c->next) {
        if (c->done)
            continue;
        int64_t left = c->deadline_us - lp_now_us();
        if (left < 0)
            left = 0;
        struct timeval tv = {left / 1000000, left % 1000000};
        evtimer_add(&r->timeout_ev, &tv);
        return;
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lp_redis *r = arg;
    int64_t now = lp_now_us();
    bool setup_failed = false;
    for (struct lp_redis_cmd *c = r->head; c; c = c->next) {
        if (c->done)
            continue;
        if (c->deadline_us > now)
            break;
        ST_INC(r, timeouts);
        r->n_stale++;
        breaker_failure(r);
        setup_failed |= c->internal;
        deliver(c, NULL, LP_REDIS_TIMEOUT);
    }
    /* A stuck connection: too much owed, or the oldest owed for ten timeouts. */
    bool stuck =
        r->n_stale > MAX_STALE || (r->head && now - r->head->sent_us > 10 * r->o.timeout_ms * 1000);
    if ((stuck || setup_failed) && r->ac) {
        redisAsyncDisconnect(r->ac); /* on_disconnect -> went_down -> reconnect */
        return;
    }
    arm_timeout(r);
}

/* ---- public --------------------------------------------------------------------------------- */

struct lp_redis *lp_redis_create(struct event_base *base, const struct lp_redis_opts *o)
{
    struct lp_redis *r = lp_xcalloc(1, sizeof *r);
    r->base = base;
    r->o = *o;
    r->ip = lp_xstrdup(o->ip);
    r->user = lp_xstrdup(o->user);
    r->password = lp_xstrdup(o->password);
    r->channel = lp_xstrdup(o->channel);
    if (r->o.timeout_ms <= 0)
        r->o.timeout_ms = 50;
    r->backoff_ms = BACKOFF_MIN_MS;
    lp_rand_seed(&r->rng);
    evtimer_assign(&r->timeout_ev, base, on_timeout, r);
    evtimer_assign(&r->reconnect_ev, base, on_reconnect, r);
    evtimer_assign(&r->connect_ev, base, on_connect_timeout, r);
    event_assign(&r->defer_ev, base, -1, 0, on_defer, r);
    connect_now(r);
    return r;
}

void lp_redis_destroy(struct lp_redis *r)
{
    if (!r)
        return;
    r->destroying = true;
    evtimer_del(&r->timeout_ev);
    evtimer_del(&r->reconnect_ev);
    evtimer_del(&r->connect_ev);
    event_del(&r->defer_ev);
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac); /* runs on_reply(NULL) for what is pending: freed there */
    }
    while (r->head) {
        struct lp_redis_cmd *c = r->head;
        r->head = c->next;
        cmd_free(c);
    }
    while (r->failq) {
        struct lp_redis_cmd *c = r->failq;
        r->failq = c->next;
        cmd_free(c);
    }
    for (int i = 0; i < r->n_scripts; i++)
        free(r->scripts[i].lua);
    free(r->ip);
    free(r->user);
    free(r->password);
    free(r->channel);
    free(r);
}

int lp_redis_script(struct lp_redis *r, const char *lua)
{
    if (r->n_scripts >= MAX_SCRIPTS)
        return -1;
    struct script *s = &r->scripts[r->n_scripts];
    s->r = r;
    s->lua = lp_xstrdup(lua);
    if (r->state == LP_REDIS_READY && r->ac) {
        const char *a[] = {"SCRIPT", "LOAD", s->lua};
        size_t lens[] = {6, 4, strlen(s->lua)};
        send_cmd(r, new_cmd(script_loaded, s, false), 3, a, lens);
    }
    return r->n_scripts++;
}

bool lp_redis_available(const struct lp_redis *r)
{
    return r->state == LP_REDIS_READY && r->ac && lp_now_us() >= r->open_until_us;
}

struct lp_redis_cmd *lp_redis_command(struct lp_redis *r, lp_redis_fn fn, void *arg, int argc,
                                      const char **argv, const size_t *argvlen)
{
    struct lp_redis_cmd *c = new_cmd(fn, arg, false);
    c->r = r;
    if (!lp_redis_available(r) || r->channel) {
        fail_later(r, c);
        return c;
    }
    return send_cmd(r, c, argc, argv, argvlen);
}

struct lp_redis_cmd *lp_redis_eval(struct lp_redis *r, int id, int numkeys, int argc,
                                   const char **argv, const size_t *argvlen, lp_redis_fn fn,
                                   void *arg)
{
    struct lp_redis_cmd *c = new_cmd(fn, arg, false);
    c->r = r;
    if (id < 0 || id >= r->n_scripts || !lp_redis_available(r) || r->channel) {
        fail_later(r, c);
        return c;
    }
    /* Kept for a NOSCRIPT resend: EVALSHA sha numkeys args... */
    c->argc = argc + 3;
    c->argv = lp_xcalloc((size_t)c->argc, sizeof *c->argv);
    c->argvlen = lp_xcalloc((size_t)c->argc, sizeof *c->argvlen);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", numkeys);
    const struct script *s = &r->scripts[id];
    bool loaded = s->sha[0] != '\0'; /* registered after connecting: SCRIPT LOAD pending */
    c->argv[0] = lp_xstrdup(loaded ? "EVALSHA" : "EVAL");
    c->argvlen[0] = strlen(c->argv[0]);
    c->argv[1] = lp_xstrdup(loaded ? s->sha : s->lua);
    c->argvlen[1] = strlen(c->argv[1]);
    c->argv[2] = lp_xstrdup(nk);
    c->argvlen[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        c->argv[3 + i] = lp_xstrndup(argv[i], n);
        c->argvlen[3 + i] = n;
    }
    c->script = loaded ? id : -1;
    return send_cmd(r, c, c->argc, (const char **)c->argv, c->argvlen);
}

void lp_redis_cancel(struct lp_redis_cmd *c)
{
    if (c)
        c->done = true; /* the reply (or failure) still frees it, without a callback */
}

enum lp_redis_state lp_redis_state(const struct lp_redis *r)
{
    return r->state;
}

void lp_redis_get_stats(const struct lp_redis *r, struct lp_redis_stats *out)
{
    /* Relaxed loads: the counters are read from the scraping thread. */
    struct lp_redis *m = (struct lp_redis *)r;
    out->commands = atomic_load_explicit(&m->st.commands, memory_order_relaxed);
    out->replies = atomic_load_explicit(&m->st.replies, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&m->st.timeouts, memory_order_relaxed);
    out->down = atomic_load_explicit(&m->st.down, memory_order_relaxed);
    out->reconnects = atomic_load_explicit(&m->st.reconnects, memory_order_relaxed);
    out->latency_us_ewma = atomic_load_explicit(&m->st.latency_us_ewma, memory_order_relaxed);
    out->state = (enum lp_redis_state)atomic_load_explicit(&m->st.state, memory_order_relaxed);
}
