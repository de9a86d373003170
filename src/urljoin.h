/* urljoin.h - build the upstream URL from a backend base URL and the client's request path.
 *
 * Backend URLs in the config are written several ways: "https://h/v1" (the usual OpenAI form),
 * "https://api.anthropic.com" (no /v1), "https://r.openai.azure.com/openai/deployments/x" (a
 * prefix) and "https://api.deepseek.com/chat/completions" (the full endpoint). The reference's
 * "smart path join" handles the first three; the last one is an explicit fix of its doubled
 * path bug.
 */
#ifndef LP_URLJOIN_H
#define LP_URLJOIN_H

/* Join a backend base URL (scheme://authority[/base/path][?query], trailing slashes ignored)
 * with the client request path (e.g. "/v1/chat/completions"; a missing leading '/' is added)
 * and raw query (NULL or "" = none; without '?'). The path is chosen by the first rule that
 * applies (comparisons are segment-wise: "/v1" is a prefix of "/v1/x", not of "/v1x"):
 *   1. base path empty                                  -> req_path
 *   2. req_path starts with the base path               -> req_path
 *   3. base path ends with "/v1", req_path starts "/v1/" -> base path + req_path minus "/v1"
 *   4. base path ends with the request's endpoint suffix (req_path minus a leading "/v1",
 *      at least one segment)                            -> base path as-is
 *   5. otherwise                                        -> base path + req_path
 * The query: base query and request query joined with '&' (either alone if the other is
 * empty), after '?'. A '#fragment' in the base is dropped. Nothing is percent-decoded or
 * normalised. A base without "://" is treated as having an empty scheme (never fails).
 * Returns a NUL-terminated heap string the caller frees; never NULL. */
char *lp_urljoin(const char *base, const char *req_path, const char *query);

#endif
