/* redis.h - an asynchronous Redis client for one event loop (hiredis + its libevent adapter).
 *
 * The loop never waits for Redis. A command is queued on the connection and its callback runs
 * later, exactly once, from the loop: with the reply, or with an error (timeout, connection down,
 * the connection's breaker open). Commands issued in one loop pass leave in one write (hiredis
 * buffers them), so one round trip serves every check of a pass: pipelining comes for free.
 *
 * Timeouts: every command has a deadline (the configured timeout). Redis answers in order, so
 * only the oldest command's deadline needs a timer. A command that times out gets its callback
 * at once (LP_REDIS_TIMEOUT); its reply, if it ever comes, is dropped. Too many timed-out
 * commands still on the wire, or one outstanding for ten timeouts, drop the connection.
 *
 * Failure: on a disconnect every pending command fails (LP_REDIS_DOWN) and the client reconnects
 * with exponential backoff (100 ms .. 5 s, jittered). A small breaker on the connection itself
 * (3 consecutive failures -> open for the current backoff) makes new commands fail at once
 * instead of each waiting for its own timeout while Redis is away. Recovery is automatic.
 *
 * Scripts are registered once (lp_redis_script) and sent as EVALSHA; a NOSCRIPT answer (Redis
 * restarted or flushed) re-sends that command as EVAL and reloads the script.
 *
 * Name resolution: the host is resolved when the config is loaded (boot or reload thread), never
 * on the loop; a reconnect uses the resolved address.
 *
 * Threading: one struct lp_redis per loop; every function on that loop's thread, except
 * lp_redis_url_parse (pure).
 */
#ifndef LP_REDIS_H
#define LP_REDIS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct redisReply;
struct lp_redis;
struct lp_redis_cmd;

/* A parsed redis:// URL. Strings are heap copies (lp_redis_url_free). */
struct lp_redis_url {
    char *host;     /* host name or IP literal (brackets removed) */
    int port;       /* default 6379 */
    char *user;     /* NULL unless given */
    char *password; /* NULL unless given */
    int db;         /* default 0 */
};

/* Parse "redis://[[user]:password@]host[:port][/db]" (percent-escapes in user and password are
 * decoded; "[::1]" hosts allowed). Returns false with a static reason in *why on anything else
 * (another scheme, an empty host, a bad port or db, a query). */
bool lp_redis_url_parse(const char *url, struct lp_redis_url *out, const char **why);
void lp_redis_url_free(struct lp_redis_url *u);

enum lp_redis_err {
    LP_REDIS_OK = 0,  /* a reply arrived (which may itself be a Redis error reply) */
    LP_REDIS_TIMEOUT, /* no reply within the timeout */
    LP_REDIS_DOWN,    /* not connected, connection lost, or the breaker is open */
};

enum lp_redis_state {
    LP_REDIS_DISCONNECTED = 0,
    LP_REDIS_CONNECTING, /* TCP connect, AUTH, SELECT, script loading */
    LP_REDIS_READY,
};

struct lp_redis_opts {
    const char *ip; /* resolved address, or NULL to ask ip_of at every connect */
    /* When set, called (on the loop, must not block) before every connect attempt to get the
     * current address; false = not known yet: stay down and retry after the backoff. */
    bool (*ip_of)(void *arg, char *buf, size_t n);
    void *ip_arg;
    int port;
    const char *user, *password;
    int db;
    int64_t timeout_ms; /* per command (and for the connect) */
    /* Subscriber mode: the connection SUBSCRIBEs to `channel` after every (re)connect and
     * delivers each message to on_message (no commands may be sent on it). on_subscribed runs
     * after each successful (re)subscription, e.g. to reload state missed while away. */
    const char *channel;
    void (*on_message)(void *arg, const char *payload, size_t len);
    void (*on_subscribed)(void *arg);
    void *arg;
};

/* The command callback: reply is valid only during the call (NULL unless err == LP_REDIS_OK). */
typedef void (*lp_redis_fn)(void *arg, const struct redisReply *reply, enum lp_redis_err err);

/* Create a client on base and start connecting. Copies o. Never NULL. */
struct lp_redis *lp_redis_create(struct event_base *base, const struct lp_redis_opts *o);
/* Close the connection and free everything. Pending commands are dropped WITHOUT callbacks
 * (their owners are going away too). NULL accepted. */
void lp_redis_destroy(struct lp_redis *r);

/* Register a Lua script (copied) before or after connecting; returns its id for lp_redis_eval.
 * Scripts are loaded (SCRIPT LOAD) on every connect. */
int lp_redis_script(struct lp_redis *r, const char *lua);

/* Send a command (argv/argvlen as hiredis: binary-safe). fn runs exactly once, later, from the
 * loop. Returns a handle that lp_redis_cancel accepts until fn has run. */
struct lp_redis_cmd *lp_redis_command(struct lp_redis *r, lp_redis_fn fn, void *arg, int argc,
                                      const char **argv, const size_t *argvlen);
/* EVALSHA script `id` with numkeys keys followed by args (argv holds keys then args). */
struct lp_redis_cmd *lp_redis_eval(struct lp_redis *r, int id, int numkeys, int argc,
                                   const char **argv, const size_t *argvlen, lp_redis_fn fn,
                                   void *arg);
/* The callback of c will not run (its reply, if any, is dropped). c must not be used after. */
void lp_redis_cancel(struct lp_redis_cmd *c);

enum lp_redis_state lp_redis_state(const struct lp_redis *r);
/* Whether new commands are currently failed at once (down, or the breaker is open). */
bool lp_redis_available(const struct lp_redis *r);

struct lp_redis_stats {
    uint64_t commands; /* sent */
    uint64_t replies;  /* answered in time */
    uint64_t timeouts;
    uint64_t down; /* failed because not connected / breaker open / connection lost */
    uint64_t reconnects;
    int64_t latency_us_ewma; /* smoothed round trip of answered commands */
    enum lp_redis_state state;
};
/* Counters and state; safe from any thread (relaxed atomics). */
void lp_redis_get_stats(const struct lp_redis *r, struct lp_redis_stats *out);

#endif
