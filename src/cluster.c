/* cluster.c - shared health and instance count through Redis (see cluster.h).
 *
 * Keys (all under redis.key_prefix, "llm-proxy:" by default):
 *   h:cool:<backend>\x1f<model>   a cooldown, value = the event (JSON), expires with it (PX)
 *   h:open:<backend>              a breaker opening, same
 *   h:drain:<backend>             a drain (no expiry); deleted by an undrain
 *   inst                          sorted set of instance ids by last heartbeat (Redis TIME)
 * Channel: <prefix>h, carrying the same JSON events.
 *
 * An event is {"o":origin,"k":"cool"|"open"|"drain","b":backend,"m":model,"u":until_unix_ms,
 * "c":class,"r":reason,"d":drained}. Times cross the wire as Unix ms (each instance's monotonic
 * clock is its own) and are turned back into monotonic time on arrival.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "runtime.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/rand.h"

#define HEARTBEAT_MS 1000
#define INSTANCE_WINDOW_MS 5000 /* an instance silent this long is gone */
#define RESOLVE_RETRY_S 5
#define MAX_CLIENTS 80
#define LOAD_BATCH "500"

/* Set a state key (keeping a longer existing expiry) and publish the event, atomically.
 * KEYS[1] key; ARGV[1] event, ARGV[2] ttl ms (0 = no expiry, -1 = delete), ARGV[3] channel. */
static const char PUBLISH_LUA[] =
    "local ttl = tonumber(ARGV[2])\n"
    "if ttl < 0 then redis.call('DEL', KEYS[1])\n"
    "elseif ttl == 0 then redis.call('SET', KEYS[1], ARGV[1])\n"
    "else\n"
    "  local cur = redis.call('PTTL', KEYS[1])\n"
    "  if cur < ttl then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) end\n"
    "end\n"
    "return redis.call('PUBLISH', ARGV[3], ARGV[1])\n";

/* Heartbeat: KEYS[1] the instance set; ARGV[1] id, ARGV[2] window ms. Returns live instances. */
static const char HEARTBEAT_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

struct lp_cluster {
    struct lp_runtime *rt;
    struct event_base *base;
    char id[40];
    char *prefix, *channel, *host;
    int port, db;
    char *user, *password;
    int64_t timeout_ms;
    enum lp_redis_on_error on_error;
    /* the resolved address, updated by the resolver thread */
    pthread_mutex_t lock;
    char ip[64];
    bool resolved;
    bool stop;
    pthread_t resolver;
    bool resolver_started;
    pthread_cond_t wake;
    /* main-loop clients */
    struct lp_redis *sub, *cmd;
    int hb_script, pub_script;
    struct event hb_ev, flush_ev;
    bool loading, loaded;
    char *scan_cursor;
    struct outbound *outq;     /* events to publish, under lock (any thread adds) */
    struct outbound *inflight; /* sent, awaiting the answer (main loop only) */
    /* every client, for stats */
    struct lp_redis *clients[MAX_CLIENTS];
    size_t n_clients;
    atomic_int instances;
    atomic_ullong sent, received, applied;
};

/* An event waiting to be written and published (on the main loop). */
struct outbound {
    struct outbound *next;
    struct outbound *iprev, *inext; /* the in-flight list */
    struct lp_cluster *c;
    char *key, *val, *ttl;
    int64_t expires_mono; /* a cooldown or opening that ended needs no sharing any more */
};

static void outbound_free(struct outbound *o)
{
    free(o->key);
    free(o->val);
    free(o->ttl);
    free(o);
}

/* ---- name resolution (never on a loop) ----------------------------------------------------- */

static bool resolve(struct lp_cluster *c)
{
    unsigned char tmp[16];
    if (inet_pton(AF_INET, c->host, tmp) == 1 || inet_pton(AF_INET6, c->host, tmp) == 1) {
        pthread_mutex_lock(&c->lock);
        snprintf(c->ip, sizeof c->ip, "%s", c->host);
        c->resolved = true;
        pthread_mutex_unlock(&c->lock);
        return true;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(c->host, NULL, &hints, &res) != 0 || !res)
        return false;
    char buf[64] = "";
    const void *addr = res->ai_family == AF_INET
                           ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                           : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    inet_ntop(res->ai_family, addr, buf, sizeof buf);
    freeaddrinfo(res);
    pthread_mutex_lock(&c->lock);
    snprintf(c->ip, sizeof c->ip, "%s", buf);
    c->resolved = true;
    pthread_mutex_unlock(&c->lock);
    return true;
}

/* Re-resolve a host name in the background (DNS changes, or a first failure at boot). */
static void *resolver_main(void *arg)
{
    struct lp_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += c->resolved ? 30 : RESOLVE_RETRY_S;
        pthread_cond_timedwait(&c->wake, &c->lock, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        if (!resolve(c))
            lp_log_warn(NULL, "redis: cannot resolve %s (retrying)", c->host);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static bool ip_of(void *arg, char *buf, size_t n)
{
    struct lp_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    bool ok = c->resolved;
    if (ok)
        snprintf(buf, n, "%s", c->ip);
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* ---- events -----------------------------------------------------------------------------------
 */

static const char *kind_name(enum lp_health_event_kind k)
{
    return k == LP_HEALTH_EV_COOLDOWN ? "cool" : k == LP_HEALTH_EV_OPEN ? "open" : "drain";
}

/* The state key of an event. */
static void event_key(struct lp_cluster *c, const struct lp_health_event *ev, struct lp_buf *b)
{
    lp_buf_appends(b, c->prefix);
    lp_buf_appends(b, "h:");
    lp_buf_appends(b, kind_name(ev->kind));
    lp_buf_appendc(b, ':');
    lp_buf_appends(b, ev->backend);
    if (ev->kind == LP_HEALTH_EV_COOLDOWN) {
        lp_buf_appendc(b, '\x1f');
        lp_buf_appends(b, ev->model ? ev->model : "");
    }
}

static void event_json(struct lp_cluster *c, const struct lp_health_event *ev, int64_t until_wall,
                       struct lp_buf *b)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "o", c->id);
    lp_json_set_str(o, "k", kind_name(ev->kind));
    lp_json_set_str(o, "b", ev->backend);
    if (ev->kind == LP_HEALTH_EV_COOLDOWN) {
        lp_json_set_str(o, "m", ev->model ? ev->model : "");
        lp_json_set_str(o, "c", lp_class_name(ev->cls));
        lp_json_set_str(o, "r", ev->reason ? ev->reason : "");
    }
    if (ev->kind != LP_HEALTH_EV_DRAIN)
        lp_json_set_int(o, "u", until_wall);
    else
        lp_json_set_bool(o, "d", ev->drained);
    size_t len = 0;
    const char *s = lp_json_dump(o, &len);
    lp_buf_append(b, s, len);
    json_object_put(o);
}

static void enqueue(struct lp_cluster *c, struct outbound *o)
{
    pthread_mutex_lock(&c->lock);
    o->next = c->outq;
    c->outq = o;
    pthread_mutex_unlock(&c->lock);
    event_active(&c->flush_ev, EV_TIMEOUT, 0); /* wakes the main loop (evthread is on) */
}

static void inflight_unlink(struct lp_cluster *c, struct outbound *o)
{
    if (o->iprev)
        o->iprev->inext = o->inext;
    else if (c->inflight == o)
        c->inflight = o->inext;
    if (o->inext)
        o->inext->iprev = o->iprev;
    o->iprev = o->inext = NULL;
}

static void on_published(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct outbound *o = arg;
    struct lp_cluster *c = o->c;
    inflight_unlink(c, o);
    if (err == LP_REDIS_OK && reply && reply->type != REDIS_REPLY_ERROR) {
        atomic_fetch_add_explicit(&c->sent, 1, memory_order_relaxed);
        outbound_free(o);
        return;
    }
    /* Redis slow or away: keep it for the next heartbeat unless it has expired meanwhile. */
    if (o->expires_mono && o->expires_mono <= lp_now_ms()) {
        outbound_free(o);
        return;
    }
    pthread_mutex_lock(&c->lock);
    o->next = c->outq;
    c->outq = o;
    pthread_mutex_unlock(&c->lock);
}

/* Main loop: publish what the workers queued. */
static void flush_outbound(struct lp_cluster *c)
{
    pthread_mutex_lock(&c->lock);
    struct outbound *q = c->outq;
    c->outq = NULL;
    pthread_mutex_unlock(&c->lock);
    bool up = lp_redis_available(c->cmd);
    while (q) {
        struct outbound *o = q;
        q = o->next;
        o->next = NULL;
        if (!up) {
            on_published(o, NULL, LP_REDIS_DOWN); /* requeued or dropped, without a round trip */
            continue;
        }
        const char *argv[] = {o->key, o->val, o->ttl, c->channel};
        size_t lens[] = {strlen(o->key), strlen(o->val), strlen(o->ttl), strlen(c->channel)};
        o->inext = c->inflight;
        if (c->inflight)
            c->inflight->iprev = o;
        c->inflight = o;
        lp_redis_eval(c->cmd, c->pub_script, 1, 4, argv, lens, on_published, o);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    flush_outbound(arg);
}

/* The health observer: a change decided here goes to every instance. Runs on the worker that
 * made the change; the main loop does the Redis work. */
static void on_health_event(void *ctx, const struct lp_health_event *ev)
{
    struct lp_cluster *c = ctx;
    int64_t now_mono = lp_now_ms(), now_wall = lp_wall_ms();
    bool drain = ev->kind == LP_HEALTH_EV_DRAIN;
    int64_t until_wall = drain ? 0 : now_wall + (ev->until_mono - now_mono);
    int64_t ttl = drain ? (ev->drained ? 0 : -1) : ev->until_mono - now_mono;
    if (!drain && ttl <= 0)
        return;
    struct lp_buf key, val;
    lp_buf_init(&key, 4096);
    lp_buf_init(&val, 8192);
    event_key(c, ev, &key);
    event_json(c, ev, until_wall, &val);
    struct outbound *o = lp_xcalloc(1, sizeof *o);
    o->c = c;
    o->key = lp_buf_steal(&key, NULL);
    o->val = lp_buf_steal(&val, NULL);
    o->ttl = lp_xasprintf("%lld", (long long)ttl);
    o->expires_mono = drain ? 0 : ev->until_mono;
    enqueue(c, o);
}

/* Apply one event (a message, or a value loaded at (re)connect) to our health store. */
static void apply_event(struct lp_cluster *c, const char *s, size_t len, bool from_load)
{
    struct json_object *o = lp_json_parse(s, len, NULL);
    if (!o)
        return;
    const char *origin = lp_json_get_str(o, "o");
    const char *k = lp_json_get_str(o, "k");
    const char *b = lp_json_get_str(o, "b");
    if (!k || !b || (!from_load && origin && strcmp(origin, c->id) == 0)) {
        json_object_put(o);
        return; /* our own event, or not ours to understand */
    }
    struct lp_health_event ev = {.backend = b};
    int64_t now_mono = lp_now_ms(), now_wall = lp_wall_ms(), until = 0;
    lp_json_get_int64(o, "u", &until);
    if (strcmp(k, "cool") == 0) {
        ev.kind = LP_HEALTH_EV_COOLDOWN;
        ev.model = lp_json_get_str(o, "m");
        ev.cls = lp_class_by_name(lp_json_get_str(o, "c"));
        ev.reason = lp_json_get_str(o, "r");
        ev.until_mono = now_mono + (until - now_wall);
    } else if (strcmp(k, "open") == 0) {
        ev.kind = LP_HEALTH_EV_OPEN;
        ev.until_mono = now_mono + (until - now_wall);
    } else if (strcmp(k, "drain") == 0) {
        ev.kind = LP_HEALTH_EV_DRAIN;
        ev.drained = lp_json_get_bool(o, "d", false);
    } else {
        json_object_put(o);
        return;
    }
    atomic_fetch_add_explicit(&c->received, 1, memory_order_relaxed);
    if (lp_health_apply_remote(c->rt->health, &ev, now_mono)) {
        atomic_fetch_add_explicit(&c->applied, 1, memory_order_relaxed);
        lp_log_info(NULL, "cluster: %s %s%s%s from instance %s", kind_name(ev.kind), b,
                    ev.model ? "/" : "", ev.model ? ev.model : "", origin ? origin : "?");
    }
    json_object_put(o);
}

static void on_message(void *arg, const char *payload, size_t len)
{
    apply_event(arg, payload, len, false);
}

/* ---- loading the current state after a (re)subscription ------------------------------------- */

static void load_batch(struct lp_cluster *c);

static void on_mget(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct lp_cluster *c = arg;
    if (err == LP_REDIS_OK && reply && reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i]->type == REDIS_REPLY_STRING)
                apply_event(c, reply->element[i]->str, reply->element[i]->len, true);
}

static void on_scan(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct lp_cluster *c = arg;
    if (err != LP_REDIS_OK || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        c->loading = false; /* tried again at the next (re)subscription or heartbeat */
        return;
    }
    const redisReply *keys = reply->element[1];
    if (keys->type == REDIS_REPLY_ARRAY && keys->elements > 0) {
        const char **argv = lp_xcalloc(keys->elements + 1, sizeof *argv);
        size_t *lens = lp_xcalloc(keys->elements + 1, sizeof *lens);
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < keys->elements; i++) {
            argv[i + 1] = keys->element[i]->str;
            lens[i + 1] = keys->element[i]->len;
        }
        lp_redis_command(c->cmd, on_mget, c, (int)keys->elements + 1, argv, lens);
        free(argv);
        free(lens);
    }
    free(c->scan_cursor);
    c->scan_cursor = lp_xstrdup(reply->element[0]->str);
    if (strcmp(c->scan_cursor, "0") == 0) {
        c->loading = false;
        c->loaded = true;
        return;
    }
    load_batch(c);
}

static void load_batch(struct lp_cluster *c)
{
    struct lp_buf pat;
    lp_buf_init(&pat, 0);
    lp_buf_printf(&pat, "%sh:*", c->prefix);
    const char *argv[] = {"SCAN", c->scan_cursor, "MATCH", pat.data, "COUNT", LOAD_BATCH};
    size_t lens[] = {4, strlen(c->scan_cursor), 5, pat.len, 5, strlen(LOAD_BATCH)};
    lp_redis_command(c->cmd, on_scan, c, 6, argv, lens);
    lp_buf_free(&pat);
}

static void start_load(struct lp_cluster *c)
{
    if (c->loading)
        return;
    c->loading = true;
    free(c->scan_cursor);
    c->scan_cursor = lp_xstrdup("0");
    load_batch(c);
}

static void on_subscribed(void *arg)
{
    struct lp_cluster *c = arg;
    c->loaded = false; /* what happened while we were away is in the keys */
    lp_log_info(NULL, "cluster: subscribed to %s as instance %s; loading the shared state",
                c->channel, c->id);
    start_load(c);
}

/* ---- heartbeat ------------------------------------------------------------------------------ */

static void on_heartbeat_reply(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct lp_cluster *c = arg;
    if (err == LP_REDIS_OK && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        atomic_store(&c->instances, (int)reply->integer);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct lp_cluster *c = arg;
    struct timeval tv = {HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000};
    evtimer_add(&c->hb_ev, &tv);
    if (!lp_redis_available(c->cmd))
        return; /* (re)connecting: the next beat will do */
    if (!c->loaded && lp_redis_state(c->sub) == LP_REDIS_READY)
        start_load(c); /* the load at subscription found the command client not ready */
    flush_outbound(c);
    struct lp_buf key;
    lp_buf_init(&key, 0);
    lp_buf_printf(&key, "%sinst", c->prefix);
    char win[16];
    snprintf(win, sizeof win, "%d", INSTANCE_WINDOW_MS);
    const char *argv[] = {key.data, c->id, win};
    size_t lens[] = {key.len, strlen(c->id), strlen(win)};
    lp_redis_eval(c->cmd, c->hb_script, 1, 3, argv, lens, on_heartbeat_reply, c);
    lp_buf_free(&key);
}

/* ---- public --------------------------------------------------------------------------------- */

static struct lp_redis_opts base_opts(struct lp_cluster *c)
{
    return (struct lp_redis_opts){
        .ip_of = ip_of,
        .ip_arg = c,
        .port = c->port,
        .user = c->user,
        .password = c->password,
        .db = c->db,
        .timeout_ms = c->timeout_ms,
    };
}

static void track(struct lp_cluster *c, struct lp_redis *r)
{
    pthread_mutex_lock(&c->lock);
    if (c->n_clients < MAX_CLIENTS)
        c->clients[c->n_clients++] = r;
    pthread_mutex_unlock(&c->lock);
}

struct lp_cluster *lp_cluster_create(struct lp_runtime *rt, struct event_base *main_base,
                                     const struct lp_config *cfg)
{
    const struct lp_redis_cfg *rc = &cfg->redis;
    if (!rc->present || !rc->host)
        return NULL;
    struct lp_cluster *c = lp_xcalloc(1, sizeof *c);
    c->rt = rt;
    c->base = main_base;
    uint64_t rng;
    lp_rand_seed(&rng);
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(c->id, sizeof c->id, "%.16s-%d-%04x", host, (int)getpid(),
             (unsigned)(lp_rand_next(&rng) & 0xffff));
    c->prefix = lp_xstrdup(rc->key_prefix ? rc->key_prefix : "llm-proxy:");
    c->channel = lp_xasprintf("%sh", c->prefix);
    c->host = lp_xstrdup(rc->host);
    c->port = rc->port;
    c->db = rc->db;
    c->user = lp_xstrdup(rc->user);
    c->password = lp_xstrdup(rc->password);
    c->timeout_ms = rc->timeout_ms;
    c->on_error = rc->on_error;
    atomic_init(&c->instances, 1);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    /* Boot time: resolving here is fine (the workers are not serving yet). */
    if (!resolve(c))
        lp_log_warn(NULL, "redis: cannot resolve %s; retrying in the background", c->host);
    c->resolver_started = pthread_create(&c->resolver, NULL, resolver_main, c) == 0;

    struct lp_redis_opts so = base_opts(c);
    so.channel = c->channel;
    so.on_message = on_message;
    so.on_subscribed = on_subscribed;
    so.arg = c;
    c->sub = lp_redis_create(main_base, &so);
    struct lp_redis_opts co = base_opts(c);
    c->cmd = lp_redis_create(main_base, &co);
    c->hb_script = lp_redis_script(c->cmd, HEARTBEAT_LUA);
    c->pub_script = lp_redis_script(c->cmd, PUBLISH_LUA);
    track(c, c->sub);
    track(c, c->cmd);
    evtimer_assign(&c->hb_ev, main_base, on_heartbeat, c);
    event_assign(&c->flush_ev, main_base, -1, 0, on_flush, c);
    struct timeval tv = {0, 200 * 1000}; /* first heartbeat once connected */
    evtimer_add(&c->hb_ev, &tv);
    lp_health_set_observer(rt->health, on_health_event, c);
    lp_log_info(NULL,
                "cluster: sharing state through redis %s:%d (prefix \"%s\", instance %s, "
                "on_error %s)",
                c->host, c->port, c->prefix, c->id,
                c->on_error == LP_REDIS_FAIL_CLOSED ? "fail_closed" : "fail_open");
    return c;
}

struct lp_redis *lp_cluster_worker_client(struct lp_cluster *c, struct event_base *base)
{
    if (!c)
        return NULL;
    struct lp_redis_opts o = base_opts(c);
    struct lp_redis *r = lp_redis_create(base, &o);
    track(c, r);
    return r;
}

static __thread struct lp_redis *tls_client;
static __thread int tls_scripts[8]; /* id + 1; 0 = not registered yet */

void lp_cluster_bind_thread(struct lp_redis *r)
{
    tls_client = r;
    memset(tls_scripts, 0, sizeof tls_scripts);
}

struct lp_redis *lp_cluster_thread_client(void)
{
    return tls_client;
}

int lp_cluster_thread_script(struct lp_redis *r, const char *lua, int slot)
{
    if (!r || r != tls_client || slot < 0 || slot >= 8)
        return -1;
    if (!tls_scripts[slot])
        tls_scripts[slot] = lp_redis_script(r, lua) + 1;
    return tls_scripts[slot] - 1;
}

void lp_cluster_worker_release(struct lp_cluster *c, struct lp_redis *r)
{
    if (!c || !r)
        return;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_clients; i++) {
        if (c->clients[i] == r) {
            c->clients[i] = c->clients[--c->n_clients];
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    lp_redis_destroy(r);
}

void lp_cluster_destroy(struct lp_cluster *c)
{
    if (!c)
        return;
    lp_health_set_observer(c->rt->health, NULL, NULL);
    evtimer_del(&c->hb_ev);
    event_del(&c->flush_ev);
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    while (c->outq) {
        struct outbound *o = c->outq;
        c->outq = o->next;
        outbound_free(o);
    }
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (c->resolver_started)
        pthread_join(c->resolver, NULL);
    lp_redis_destroy(c->sub);
    lp_redis_destroy(c->cmd); /* drops pending commands without callbacks: */
    while (c->inflight) {
        struct outbound *o = c->inflight;
        c->inflight = o->inext;
        outbound_free(o);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c->scan_cursor);
    free(c->prefix);
    free(c->channel);
    free(c->host);
    free(c->user);
    free(c->password);
    free(c);
}

void lp_cluster_get_status(struct lp_cluster *c, struct lp_cluster_status *out)
{
    memset(out, 0, sizeof *out);
    if (!c) {
        out->instances = 1;
        return;
    }
    out->enabled = true;
    snprintf(out->instance_id, sizeof out->instance_id, "%s", c->id);
    out->instances = atomic_load(&c->instances);
    out->events_sent = atomic_load(&c->sent);
    out->events_received = atomic_load(&c->received);
    out->events_applied = atomic_load(&c->applied);
    out->on_error = c->on_error;
    struct lp_redis_stats s;
    lp_redis_get_stats(c->sub, &s);
    out->state = s.state;
    lp_redis_get_stats(c->cmd, &s);
    out->latency_us = s.latency_us_ewma;
    out->available = s.state == LP_REDIS_READY && out->state == LP_REDIS_READY;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_clients; i++) {
        lp_redis_get_stats(c->clients[i], &s);
        out->timeouts += s.timeouts;
        out->errors += s.down;
    }
    pthread_mutex_unlock(&c->lock);
}

int lp_cluster_instances(struct lp_cluster *c)
{
    return c ? atomic_load(&c->instances) : 1;
}
