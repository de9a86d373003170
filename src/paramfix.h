/* paramfix.h - per-backend request parameter fixes: the last change to an upstream body before
 * it is sent, for providers that differ from the API they otherwise speak.
 *
 *   max_tokens_param: max_tokens | max_completion_tokens
 *       the name the backend wants for the output limit (newer OpenAI models refuse
 *       max_tokens; many OpenAI-compatible servers only know max_tokens). The other name is
 *       renamed; when both are present the wanted one is kept and the other dropped.
 *   drop_params: [name, ...]
 *       top-level body members the backend refuses (e.g. `logprobs`, `parallel_tool_calls`,
 *       `store`); removed silently, each logged at debug level by the caller.
 *
 * Pure; a backend without these options, or a body they do not touch, is not re-serialised:
 * the caller sends the original bytes.
 */
#ifndef LP_PARAMFIX_H
#define LP_PARAMFIX_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Whether b has any parameter fix configured (a cheap test before parsing anything). */
bool lp_paramfix_wanted(const struct lp_backend *b);

/* The fixed body as a new heap string (*out_len set), or NULL when nothing changed or the body
 * is not a JSON object (then the original is sent as is). */
char *lp_paramfix_apply(const struct lp_backend *b, const char *body, size_t len, size_t *out_len);

#endif
