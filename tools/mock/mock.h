/* mock.h - llm-mock: a fake OpenAI- and Anthropic-compatible upstream (internal contract).
 *
 * One thread, one libevent loop. The HTTP/1.1 server side is a small hand-written layer over
 * bufferevents (conn.c) rather than evhttp, because the mock must see a client that goes away
 * while a response is delayed or stalled, and must be able to cut a chunked body mid-stream;
 * evhttp 2.1 exposes neither. Files:
 *   mock.c    main: flags, listener, signals
 *   conn.c    one TCP connection: request parsing, response writing, timers, backpressure
 *   route.c   what to answer: admin API, scripted steps, default OpenAI/Anthropic behaviour
 *   gen.c     deterministic answer text, JSON bodies and generated SSE events
 *   script.c  scripted steps: parsing and the FIFO queue
 *   reqlog.c  the bounded request log and counters
 */
#ifndef LP_MOCK_H
#define LP_MOCK_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "util/buf.h"

#define MOCK_MAX_BODY (64u * 1024 * 1024) /* largest request body accepted */
#define MOCK_MAX_HEAD (64u * 1024)        /* request line + headers */
#define MOCK_MAX_HEADERS 256
#define MOCK_LOG_ENTRIES 10000                  /* request log: newest entries kept */
#define MOCK_LOG_BODY_MAX (1024u * 1024)        /* bytes of each body kept in the log */
#define MOCK_LOG_TOTAL_MAX (256u * 1024 * 1024) /* body bytes kept in the whole log */
#define MOCK_WRITE_WATERMARK (256u * 1024)      /* stop producing SSE above this output backlog */

/* --mode: which provider's rules the mock enforces before answering. */
enum mock_mode {
    MOCK_MODE_ANY = 0, /* OpenAI and Anthropic, any path suffix, any credential */
    MOCK_MODE_AZURE,   /* Azure OpenAI: deployment paths with api-version or /openai/v1, api-key */
    MOCK_MODE_GEMINI,  /* Gemini / Vertex: models/{m}:generateContent, x-goog-api-key or Bearer */
};

struct mock_opts {
    const char *listen;
    const char *name;
    int latency_ms;
    int ttft_ms;
    int chunks;
    int chunk_interval_ms;
    int response_bytes;
    bool quiet;
    enum mock_mode mode;
    const char *key; /* NULL: any credential (but one must be present in azure/gemini mode) */
};

struct mock_hdr {
    char *name; /* lower-cased */
    char *value;
};

/* ---- script.c ---------------------------------------------------------------------------- */

struct mock_sse_event {
    char *event;  /* NULL: no "event:" line */
    char *data;   /* NULL with raw set */
    char *raw;    /* verbatim bytes instead of event/data */
    int delay_ms; /* before this event */
};

enum mock_proto { MOCK_PROTO_OPENAI, MOCK_PROTO_ANTHROPIC, MOCK_PROTO_GEMINI };

struct mock_gen_spec {
    enum mock_proto proto;
    int chunks;
    int chunk_bytes; /* 0: share response_bytes over the chunks */
    int interval_ms;
};

/* One scripted response. Refcounted: the queue holds one reference, each exchange serving it
 * holds another, so a reset never frees a step that is being sent. */
struct mock_step {
    TAILQ_ENTRY(mock_step) link;
    int refs;
    int times; /* requests left to serve; -1 = forever */
    int status;
    int delay_ms; /* -1: not set */
    struct mock_hdr *hdrs;
    size_t nhdrs;
    bool close;
    bool has_body;
    char *body;
    size_t body_len;
    bool has_sse;
    bool sse_default; /* sse without events/generate: the default stream (cut/stall apply) */
    struct mock_sse_event *events;
    size_t nevents;
    bool has_gen;
    struct mock_gen_spec gen;
    long cut_after;   /* -1: none */
    long stall_after; /* -1: none */
    char *match_path; /* NULL: matches every request */
    char *raw;        /* raw_b64 decoded: the whole response, sent verbatim, then close */
    size_t raw_len;
    bool has_raw;
    char *encoding; /* "gzip", "deflate", "deflate-raw" compress the body/stream; any other
                       name is only announced in content-encoding (NULL: none) */
};

TAILQ_HEAD(mock_step_q, mock_step);

/* Parse {"responses":[STEP,...]} and append the steps to q. On error nothing is appended and
 * *err holds a static description. Returns the number of steps appended, or -1. */
int mock_script_add(struct mock_step_q *q, const char *body, size_t len, const char **err);
/* Take a reference to the first step whose match fits path (with query), consuming one of its
 * `times`; NULL when none fits. The caller releases it with mock_step_unref. */
struct mock_step *mock_script_pop(struct mock_step_q *q, const char *path);
size_t mock_script_len(const struct mock_step_q *q);
void mock_script_clear(struct mock_step_q *q);
void mock_step_unref(struct mock_step *s);

/* ---- reqlog.c ---------------------------------------------------------------------------- */

struct mock_log_entry {
    uint64_t uid; /* never reset; 0 = empty slot */
    uint64_t seq; /* 1-based, restarts at reset */
    char *method;
    char *path;
    struct mock_hdr *hdrs;
    size_t nhdrs;
    char *body;
    size_t body_kept;
    size_t body_bytes;
    uint64_t conn_id;
    int64_t t_ms;
    int64_t t_us; /* the same instant in microseconds: orders requests across mocks */
    int status;
    bool completed;
    bool client_aborted;
};

struct mock_log {
    struct mock_log_entry *ring; /* MOCK_LOG_ENTRIES slots, slot = uid % MOCK_LOG_ENTRIES */
    uint64_t next_uid;
    uint64_t first_uid; /* oldest uid still reported */
    uint64_t next_seq;
    size_t body_total;
    /* counters since the last reset */
    uint64_t connections;
    uint64_t requests;
    uint64_t aborted;
};

void mock_log_init(struct mock_log *l);
void mock_log_free(struct mock_log *l);
void mock_log_reset(struct mock_log *l);
/* Record a request (copies everything); returns its uid. */
uint64_t mock_log_add(struct mock_log *l, const char *method, const char *path,
                      const struct mock_hdr *hdrs, size_t nhdrs, const char *body, size_t len,
                      uint64_t conn_id);
/* The live entry for uid, or NULL once it was evicted or reset. */
struct mock_log_entry *mock_log_find(struct mock_log *l, uint64_t uid);
/* Append the log as a JSON array to b. */
void mock_log_to_json(const struct mock_log *l, struct lp_buf *b);

/* ---- conn.c ------------------------------------------------------------------------------ */

struct mock;

/* What to send for one request, decided by route.c and driven by conn.c. */
struct mock_plan {
    int status;
    int delay_ms;             /* before the head */
    bool close;               /* close the connection instead of answering */
    bool conn_close;          /* answer, then close (a scripted "connection: close" header) */
    bool sse;                 /* chunked SSE body produced event by event */
    struct lp_buf head_extra; /* "name: value\r\n" lines (content-type included) */
    struct lp_buf body;       /* non-SSE body */
    /* SSE source: the step's event list, or a generator */
    struct mock_step *step; /* referenced; events come from step->events unless gen */
    bool gen;
    struct mock_gen_spec spec;
    int first_delay_ms; /* ttft: before the first event */
    bool raw;           /* body holds the whole response: send it verbatim, then close */
    int zbits;          /* 0: no compression; else zlib window bits (31, 15, -15) */
    long cut_after;
    long stall_after;
    /* what the generated bodies and events echo */
    uint64_t resp_id;
    int64_t created;
    char *model;
    bool include_usage;
    long prompt_tokens;
    int response_bytes;
};

struct mock_req {
    char *method;
    char *target; /* path with query */
    int minor;    /* HTTP/1.minor */
    struct mock_hdr hdrs[MOCK_MAX_HEADERS];
    size_t nhdrs;
    bool keepalive;
    bool chunked;
    size_t content_length;
    struct lp_buf body;
};

/* Find a request header by lower-case name; NULL when absent. */
const char *mock_req_header(const struct mock_req *r, const char *name);

/* Accept a connected socket (takes ownership of fd). */
void mock_conn_accept(struct mock *m, int fd);
/* Free every connection (shutdown). */
void mock_conn_free_all(struct mock *m);

/* ---- route.c ----------------------------------------------------------------------------- */

/* Fill plan for req. Admin requests set *admin (never logged or counted). */
void mock_route(struct mock *m, struct mock_req *req, struct mock_plan *plan, bool *admin);
void mock_plan_init(struct mock_plan *p);
void mock_plan_free(struct mock_plan *p);

/* ---- gen.c ------------------------------------------------------------------------------- */

/* Append bytes [from, from+n) of the deterministic answer text of `name`, JSON-escaped. */
void mock_text_append(struct lp_buf *b, const char *name, size_t from, size_t n);
/* Number of events the generator emits for plan. */
long mock_gen_count(const struct mock_plan *p);
/* The delay in ms that precedes generated event i. */
int mock_gen_delay(const struct mock_plan *p, long i);
/* Append event i (0-based) of the generated stream, fully framed ("event: ..\ndata: ..\n\n"). */
void mock_gen_event(const struct mock_plan *p, const char *name, long i, struct lp_buf *out);
/* Tokens the generated answer text counts as (length / 4, at least 1). */
long mock_tokens(size_t bytes);
/* Non-streaming bodies for the plan's answer (its spec decides the text length). */
void mock_body_openai_chat(const struct mock_plan *p, const char *name, struct lp_buf *b);
void mock_body_openai_completion(const struct mock_plan *p, const char *name, struct lp_buf *b);
void mock_body_openai_responses(const struct mock_plan *p, const char *name, struct lp_buf *b);
void mock_body_embeddings(const struct mock_plan *p, size_t inputs, struct lp_buf *b);
void mock_body_anthropic(const struct mock_plan *p, const char *name, struct lp_buf *b);
void mock_body_gemini(const struct mock_plan *p, const char *name, struct lp_buf *b);

/* ---- mock.c ------------------------------------------------------------------------------ */

struct mock_conn;
TAILQ_HEAD(mock_conn_q, mock_conn);

struct mock {
    struct mock_opts opts;
    struct event_base *base;
    struct mock_step_q script;
    struct mock_log log;
    struct mock_conn_q conns;
    uint64_t next_conn_id;
    uint64_t accepted;
    uint64_t active;
    uint64_t next_resp_id;
};

#endif
