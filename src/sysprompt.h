/* sysprompt.h - system-prompt injection (proxy.enable_system_prompt).
 *
 * Prompts come from `system_prompt.md` and `system_prompts/NAME.md` next to the config file. They
 * are read, parsed and variable-expanded once, at load/reload time, into an immutable set; the
 * request path only applies that set to a body (no file access, no locks: share it freely
 * between threads while it is alive). docs/translation.md "System-prompt injection" describes
 * the file format, variables and order rules.
 */
#ifndef LP_SYSPROMPT_H
#define LP_SYSPROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config.h"

struct lp_sysprompt {
    char *path;      /* file it came from */
    char *text;      /* content after front matter, trimmed, variables expanded */
    bool after;      /* position: after (true) or before (false, default) */
    char *separator; /* "\n\n" default; "\n", "", or custom_separator */
    char **models;   /* globs matched against the client's alias; default {"*"} */
    size_t n_models;
    int priority; /* default 100; lower first, ties by path */
};

struct lp_sysprompts {
    struct lp_sysprompt *items; /* enabled prompts in application order */
    size_t n;
};

/* Load the prompts for `cfg`: nothing (an empty set) unless cfg->proxy.enable_system_prompt.
 * Files resolve against cfg->dir ("." when NULL); custom variables are
 * cfg->proxy.custom_variables; dates use the current local time.
 * Returns a new set, never NULL (missing files just mean fewer prompts). Problems (an unreadable
 * or oversized file, a front matter that is not YAML, an unknown field or value) are appended to
 * *warnings as "path: problem\n" lines (a heap string the caller frees; untouched when there are
 * none; warnings may be NULL). */
struct lp_sysprompts *lp_sysprompt_load(const struct lp_config *cfg, char **warnings);

/* The same with explicit inputs (for tests and the loader above): `dir` holds the files, `vars`
 * the custom variables, `now` the time used for ${_DATE} ${_TIME} ${_DATETIME}. */
struct lp_sysprompts *lp_sysprompt_load_dir(const char *dir, const struct lp_kv *vars,
                                            size_t n_vars, time_t now, char **warnings);

/* Parse one file's text (front matter + content) into *out; `path` names it in warnings and is
 * used for ordering. Returns false (and warns) when the prompt is disabled or empty. */
bool lp_sysprompt_parse(const char *path, const char *text, size_t len, const struct lp_kv *vars,
                        size_t n_vars, time_t now, struct lp_sysprompt *out, char **warnings);

void lp_sysprompt_free_set(struct lp_sysprompts *sp);

/* Inject the prompts whose `models` match `alias` into a client request body of protocol
 * `client` (a JSON object).
 * OpenAI: the first `system` message gets before-prompts prepended and after-prompts appended
 *   (string content: joined with the separators; array content: one text part per prompt); with
 *   no system message one is inserted at index 0. Other system/developer messages are kept.
 * Anthropic: the top-level `system` likewise (string, or blocks: new text blocks are inserted
 *   around the existing ones, whose cache_control stays); `role: "system"` messages are kept.
 * Before-prompts keep their order (the first in priority order ends up first).
 * Returns a new heap body (*out_len set), or NULL when nothing applies (no set, no match, the
 * body is not a JSON object): the caller then uses the body unchanged. */
char *lp_sysprompt_apply(const struct lp_sysprompts *sp, enum lp_proto client, const char *alias,
                         const char *body, size_t len, size_t *out_len);

#endif
