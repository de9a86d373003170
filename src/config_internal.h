/* config_internal.h - private plumbing shared by config.c, config_walk.c and config_value.c.
 *
 * Not part of the public contract: nothing outside src/config*.c includes this header.
 * config.c owns the snapshot lifecycle and diagnostics, config_walk.c turns a libyaml document
 * into a struct lp_config (schema tables), config_value.c parses scalars (durations, sizes,
 * listen addresses, URLs, ${ENV} expansion).
 */
#ifndef LP_CONFIG_INTERNAL_H
#define LP_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"
#include "util/buf.h"

/* Limits that keep garbage input cheap: the fuzzer and a hostile file both hit these. */
#define LP_CONFIG_MAX_INPUT (4u << 20)  /* bytes of YAML */
#define LP_CONFIG_MAX_EVENTS 200000     /* YAML events (~ nodes) in one document */
#define LP_CONFIG_MAX_DEPTH 64          /* nesting of collections */
#define LP_CONFIG_MAX_VISITS 200000     /* node visits by the walker (alias expansion) */
#define LP_CONFIG_MAX_SCALAR (1u << 20) /* a scalar after ${ENV} expansion */

/* State of one load: the document being walked, where diagnostics go, the key path of the node
 * being looked at, and what was seen that needs a cross-check or a summary at the end. */
struct lp_config_walk {
    yaml_document_t *doc;
    const char *file;
    struct lp_diags *diags;
    size_t diags_start; /* diags->n when this load started */
    size_t n_added;     /* diagnostics offered by this load (stored or dropped) */
    struct lp_config *cfg;
    struct lp_buf path; /* e.g. "backends[2].url"; capped, so it may be truncated */
    size_t visits;
    bool stop;             /* the visit budget ran out: unwind without looking further */
    struct lp_buf ignored; /* "rate_limit, logging.format, ..." for the single summary warning */
    size_t n_ignored;
    int ignored_line, ignored_col;
    int root_line, root_col;
    bool saw_backends; /* a `backends` key was present (its own handler reports emptiness) */
};

/* Append a diagnostic (msg is formatted, then prefixed with "<path>: " when the path is set).
 * line/col are 1-based; 0 means "not tied to a position". */
void lp_config_diag(struct lp_config_walk *w, enum lp_diag_level lvl, int line, int col,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same without the path prefix. */
void lp_config_diag_raw(struct lp_config_walk *w, enum lp_diag_level lvl, int line, int col,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Walk the root node of w->doc into w->cfg (whose defaults are already set). */
void lp_config_walk_root(struct lp_config_walk *w);

/* Free the members of a client key (not the struct itself); the secret is wiped first. */
void lp_config_free_key(struct lp_client_key *k);

/* Free the members of a backend (not the struct itself). */
void lp_config_free_backend(struct lp_backend *b);
/* Read a whole regular file of at most LP_CONFIG_MAX_INPUT bytes; NULL with *err (an errno) on
 * failure. The buffer has one spare byte after *len for a terminator. */
char *lp_config_read_file(const char *path, size_t *len, int *err);

/* Scalar parsers: the whole string must match; false leaves *out untouched. */
bool lp_config_parse_bool(const char *s, bool *out);
bool lp_config_parse_int(const char *s, int64_t *out);
bool lp_config_parse_float(const char *s, double *out);
/* NULL when `url` is an acceptable backend base URL, else a static reason. */
const char *lp_config_url_problem(const char *url);

/* Called for each ${VAR} without a default whose variable is unset. */
typedef void (*lp_env_missing_fn)(void *ctx, const char *name);
/* Expand ${VAR}, ${VAR:-default} and $$ in s[0..len) into a new heap string. A '$' not followed
 * by '{' or '$' is literal; a malformed ${...} is kept literally and reported through *bad.
 * NULL when the result would exceed LP_CONFIG_MAX_SCALAR. */
char *lp_config_expand_env(const char *s, size_t len, lp_env_missing_fn on_missing, void *ctx,
                           bool *bad);

#endif
