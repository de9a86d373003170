/* relay.c - the client side of a stream: head, events, backpressure, end (see relay.h).
 *
 * Runs on the worker's loop, inside the entry points of the relaying attempt (upstream data and
 * end of transfer) or of forward.c (commit, deadline, shutdown). Touches only the request's
 * client side (er, byte counters, cork state) and the stream state it is given.
 */
#include "relay.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "apierr.h"
#include "edge.h"
#include "log.h"
#include "mask.h"
#include "runtime.h"
#include "util/clock.h"
#include "worker.h"

#define STREAM_HIGH_WATER (256 * 1024) /* client output queued before pausing the upstream */
#define STREAM_LOW_WATER (64 * 1024)
#define OUT_MAX (8 * 1024 * 1024) /* one translated batch */
#define ERR_DATA_MAX (64 * 1024)  /* an upstream error event kept for classification */

void lp_stream_state_init(struct lp_stream_state *st, enum lp_proto up, enum lp_proto client,
                          struct lp_stream_xlat *xlat, bool client_wants_usage)
{
    memset(st, 0, sizeof *st);
    st->xlat = xlat;
    st->up = up;
    if (!xlat)
        lp_stream_tap_init(&st->tap, client, client_wants_usage);
    lp_buf_init(&st->out, OUT_MAX);
    lp_buf_init(&st->err_data, ERR_DATA_MAX);
}

void lp_stream_state_free(struct lp_stream_state *st)
{
    lp_stream_xlat_free(st->xlat);
    st->xlat = NULL;
    lp_buf_free(&st->out);
    lp_buf_free(&st->err_data);
}

/* ---- writing ------------------------------------------------------------------------------- */

bool lp_relay_write(struct lp_request *req, const char *p, size_t n)
{
    if (req->client_gone || !req->er)
        return false;
    if (!n)
        return true;
    if (lp_edge_write(req->er, p, n) != LP_OK) {
        req->client_gone = true;
        return false;
    }
    req->bytes_out += n;
    return true;
}

void lp_relay_commit(struct lp_request *req, const struct lp_edge_header *extra, size_t n_extra)
{
    struct lp_edge_header h[48];
    size_t n = 0;
    h[n++] = (struct lp_edge_header){"Content-Type", "text/event-stream; charset=utf-8"};
    h[n++] = (struct lp_edge_header){"Cache-Control", "no-cache"};
    h[n++] = (struct lp_edge_header){"X-Accel-Buffering", "no"};
    h[n++] = (struct lp_edge_header){"X-Request-Id", req->id};
    for (size_t i = 0; i < n_extra && n < sizeof h / sizeof h[0]; i++)
        h[n++] = extra[i];
    lp_request_set_phase(req, LP_PHASE_COMMITTED); /* COMMIT: no failover after this line */
    req->final_status = 200;
    req->t_first_byte_us = lp_now_us();
    req->stream_counted = true;
    atomic_fetch_add(&req->rt->active_streams, 1);
    if (!req->client_gone && req->er)
        lp_edge_start(req->er, 200, h, n);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct lp_request *req = arg;
    if (req->corked && req->er)
        lp_edge_uncork(req->er);
    req->corked = false;
}

void lp_relay_cork_batch(struct lp_request *req)
{
    /* The upstream client hands over one chunk per call, several per socket read. Cork the
     * client connection and uncork from an event activated now, which runs right after the
     * batch in this loop pass: everything one read produced (and the response head) goes out
     * in one sendmsg, with no added delay. */
    if (!req->er || req->corked)
        return;
    if (!req->flush_ready) {
        event_assign(&req->flush_ev, req->w->base, -1, 0, on_flush, req);
        req->flush_ready = true;
    }
    lp_edge_cork(req->er);
    req->corked = true;
    event_active(&req->flush_ev, EV_TIMEOUT, 0);
}

bool lp_relay_congested(const struct lp_request *req)
{
    return !req->client_gone && req->er && lp_edge_pending(req->er) > STREAM_HIGH_WATER;
}

struct drain_hook {
    void (*fn)(void *);
    void *arg;
};

static void on_client_drain(struct lp_edge_req *er, void *arg)
{
    struct lp_request *req = arg;
    lp_edge_set_drain_cb(er, 0, NULL, NULL);
    if (req->drain_fn) {
        void (*fn)(void *) = req->drain_fn;
        req->drain_fn = NULL;
        lp_request_enter(req);
        fn(req->drain_arg);
        lp_request_leave(req);
    }
}

void lp_relay_when_drained(struct lp_request *req, void (*fn)(void *), void *arg)
{
    if (!req->er)
        return;
    req->drain_fn = fn;
    req->drain_arg = arg;
    lp_edge_set_drain_cb(req->er, STREAM_LOW_WATER, on_client_drain, req);
}

/* ---- events -------------------------------------------------------------------------------- */

/* Pass-through: note the finish point (OpenAI finish_reason, Anthropic message_delta), after
 * which a clean EOF without the terminal event is still a normal end. */
static void note_finish(struct lp_request *req, struct lp_stream_state *st,
                        const struct lp_sse_event *ev)
{
    if (req->client == LP_PROTO_ANTHROPIC) {
        if (ev->event_len == 13 && memcmp(ev->event, "message_delta", 13) == 0)
            st->saw_finish = true;
    } else if (ev->data_len > 20 && memmem(ev->data, ev->data_len, "\"finish_reason\":\"", 17)) {
        st->saw_finish = true;
    }
}

static void keep_error_data(struct lp_stream_state *st, const struct lp_sse_event *ev)
{
    st->upstream_error = true;
    lp_buf_reset(&st->err_data);
    lp_buf_append(&st->err_data, ev->data,
                  ev->data_len < ERR_DATA_MAX ? ev->data_len : ERR_DATA_MAX);
}

static enum lp_relay_rc relay_translated(struct lp_request *req, struct lp_stream_state *st,
                                         const struct lp_sse_event *ev)
{
    lp_buf_reset(&st->out);
    enum lp_status rc =
        lp_stream_xlat_event(st->xlat, ev->event, ev->event_len, ev->data, ev->data_len, &st->out);
    if (rc == LP_DECLINED) {
        /* The upstream's in-band error, told in the client's protocol. */
        char type[64], msg[256];
        lp_sse_event_error_info(st->up, ev->data, ev->data_len, type, sizeof type, msg, sizeof msg);
        lp_buf_reset(&st->out);
        lp_stream_xlat_error(st->xlat, type, msg, &st->out);
        lp_relay_write(req, st->out.data, st->out.len);
        lp_reqlog_abort(req, "upstream_error_event");
        keep_error_data(st, ev);
        return LP_RELAY_ERROR;
    }
    if (rc != LP_OK) {
        /* Nothing was written for this event: the end adds an error event, so the client never
         * mistakes the truncation for a normal end. */
        st->broken = rc == LP_ERR_TOOBIG ? "upstream stream exceeded a translation limit"
                                         : "upstream sent an invalid stream event";
        return LP_RELAY_BROKEN;
    }
    lp_relay_write(req, st->out.data, st->out.len);
    if (lp_stream_xlat_done(st->xlat)) {
        st->done = true;
        return LP_RELAY_DONE;
    }
    return LP_RELAY_OK;
}

enum lp_relay_rc lp_relay_event(struct lp_request *req, struct lp_stream_state *st,
                                const struct lp_sse_event *ev)
{
    if (st->done || st->upstream_error || st->broken)
        return st->done ? LP_RELAY_DONE : st->broken ? LP_RELAY_BROKEN : LP_RELAY_ERROR;
    if (st->xlat)
        return relay_translated(req, st, ev);
    bool drop = lp_stream_tap_event(&st->tap, ev->event, ev->event_len, ev->data, ev->data_len);
    if (lp_sse_event_is_error(req->client, ev->event, ev->event_len, ev->data, ev->data_len)) {
        /* Relayed (it is protocol-correct for this client) but masked: upstreams sometimes echo
         * the operator's key in error messages. Rare, so the cost does not matter. */
        size_t n_sec;
        const char *const *secrets = lp_config_secrets(req->cfg, &n_sec);
        lp_buf_reset(&st->out);
        lp_mask(ev->raw, ev->raw_len, &st->out, secrets, n_sec);
        lp_relay_write(req, st->out.data, st->out.len);
        lp_reqlog_abort(req, "upstream_error_event");
        keep_error_data(st, ev);
        return LP_RELAY_ERROR;
    }
    if (!drop)
        lp_relay_write(req, ev->raw, ev->raw_len);
    if (st->tap.done) {
        st->done = true;
        return LP_RELAY_DONE;
    }
    note_finish(req, st, ev);
    return LP_RELAY_OK;
}

enum lp_relay_rc lp_relay_first_event(struct lp_request *req, struct lp_stream_state *st,
                                      const struct lp_sse_event *ev, struct lp_buf *first)
{
    if (!st->xlat) {
        /* Pass-through: the first event is relayed as is at commit (through lp_relay_event, so
         * the tap sees it); nothing to prepare. */
        return LP_RELAY_OK;
    }
    /* Translate before committing: garbage from the upstream can still fail over while the
     * client has seen nothing. */
    enum lp_status rc =
        lp_stream_xlat_event(st->xlat, ev->event, ev->event_len, ev->data, ev->data_len, first);
    if (rc != LP_OK) {
        st->broken = "upstream sent an invalid first stream event";
        return LP_RELAY_BROKEN;
    }
    if (lp_stream_xlat_done(st->xlat)) {
        st->done = true;
        return LP_RELAY_DONE;
    }
    (void)req;
    return LP_RELAY_OK;
}

enum lp_relay_rc lp_relay_clean_eof(struct lp_request *req, struct lp_stream_state *st)
{
    if (st->done)
        return LP_RELAY_DONE;
    if (st->xlat) {
        lp_buf_reset(&st->out);
        if (lp_stream_xlat_eof(st->xlat, &st->out) != LP_OK)
            return LP_RELAY_BROKEN;
        lp_relay_write(req, st->out.data, st->out.len);
        st->done = true;
        return LP_RELAY_DONE;
    }
    if (!req->chat) {
        /* Other endpoints (/v1/responses, /v1/completions) have their own terminal events; the
         * upstream closing the stream cleanly is their end. */
        st->done = true;
        return LP_RELAY_DONE;
    }
    if (!st->saw_finish)
        return LP_RELAY_BROKEN;
    if (req->client == LP_PROTO_ANTHROPIC) {
        static const char stop[] = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        lp_relay_write(req, stop, sizeof stop - 1);
    } else {
        static const char done[] = "data: [DONE]\n\n";
        lp_relay_write(req, done, sizeof done - 1);
    }
    st->done = true;
    return LP_RELAY_DONE;
}

/* ---- the end ------------------------------------------------------------------------------- */

static void write_error_event(struct lp_request *req, struct lp_stream_state *st, const char *type,
                              const char *msg)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    if (st && st->xlat) {
        lp_stream_xlat_error(st->xlat, type, msg, &b);
    } else if (req->ep == LP_EP_RESPONSES || req->ep == LP_EP_RESPONSES_COMPACT) {
        /* The Responses API's own stream error event. */
        lp_buf_appends(&b, "event: error\ndata: {\"type\":\"error\",\"code\":\"");
        lp_buf_append_json_escaped(&b, type, strlen(type));
        lp_buf_appends(&b, "\",\"message\":\"");
        lp_buf_append_json_escaped(&b, msg, strlen(msg));
        lp_buf_appends(&b, "\",\"param\":null}\n\n");
    } else {
        size_t len = 0;
        char *ev = lp_apierr_sse_event(req->client, type, NULL, msg, &len);
        lp_buf_append(&b, ev, len);
        free(ev);
    }
    lp_relay_write(req, b.data, b.len);
    lp_buf_free(&b);
}

void lp_relay_end(struct lp_request *req, struct lp_stream_state *st, enum lp_stream_end end,
                  const char *err_type, const char *msg, const char *abort_reason)
{
    req->stream_end = end;
    bool told = end == LP_END_CLEAN || end == LP_END_UPSTREAM_ERROR || end == LP_END_CLIENT_GONE;
    if (!told) {
        write_error_event(req, st, err_type ? err_type : "api_error", msg ? msg : "stream aborted");
        lp_reqlog_abort(req, abort_reason ? abort_reason : "upstream_cut");
        char note[256];
        int n = snprintf(note, sizeof note, "stream aborted: %s", msg ? msg : "");
        lp_request_note_error(req, note, n > 0 ? (size_t)n : 0);
        lp_log_warn(req->id, "stream aborted after commit (%s): %s",
                    abort_reason ? abort_reason : "upstream_cut", msg ? msg : "");
    } else if (end == LP_END_CLIENT_GONE) {
        lp_reqlog_abort(req, "client_gone");
    }
    lp_reqlog_write(req);
    if (req->er) {
        if (req->client_gone)
            lp_edge_abort(req->er);
        else
            lp_edge_end(req->er);
        req->er = NULL;
    }
    lp_request_set_phase(req, LP_PHASE_DONE);
}

const char *lp_stream_end_name(enum lp_stream_end end)
{
    switch (end) {
    case LP_END_NONE:
        return "none";
    case LP_END_CLEAN:
        return "clean";
    case LP_END_UPSTREAM_ERROR:
        return "upstream_error";
    case LP_END_BROKEN:
        return "broken";
    case LP_END_DEADLINE:
        return "deadline";
    case LP_END_SHUTDOWN:
        return "shutdown";
    case LP_END_CLIENT_GONE:
        return "client_gone";
    }
    return "?";
}
