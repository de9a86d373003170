/* mask.h - secret masking for logs and admin views (pure: no I/O, no globals).
 *
 * A secret is shown as its first 4 and last 4 characters around "****" ("sk-a****ijkl") when it
 * is at least LP_MASK_MIN_REVEAL characters long, and as "****" otherwise, so at most half of a
 * secret is ever revealed. (The reference masked only at <= 8 characters, which would show 8 of
 * a 10-character key.)
 *
 * lp_mask recognises, case-insensitively and in one left-to-right pass:
 *   - every registered secret (the configured keys, whatever their shape), anywhere;
 *   - OpenAI/Anthropic style keys: "sk-" followed by >= 20 of [A-Za-z0-9_-] (sk-ant-api03-...,
 *     sk-proj-...);
 *   - "Bearer <token>": the word is kept and the token masked ("Bearer sk-t****7890");
 *   - "authorization" / "api_key" / "api-key" / "apikey" (also inside x-api-key, proxy_api_key,
 *     admin_api_key) followed by any run of '"', ':', '=' and whitespace, then a value; an
 *     auth scheme word after "authorization" (Bearer, Basic, ...) is kept;
 *   - JSON members "access_token", "refresh_token", "client_secret", "password", "secret",
 *     "token": their string value;
 *   - query parameters ?key= &key= access_token= token= api_key= ... up to '&', '#' or space;
 *   - URL credentials: the password of "scheme://user:password@host" (the whole userinfo when
 *     it has no ':', as in "https://token@host").
 * Error codes that merely name a key ("invalid_api_key: Incorrect API key") are not keywords.
 * A registered secret that starts inside a masked region and runs past its end extends it.
 * A value that starts with '"' is masked up to the closing unescaped quote (so a JSON string
 * with spaces is masked whole); otherwise up to the first character outside
 * [A-Za-z0-9-_.~+/=].
 */
#ifndef LP_MASK_H
#define LP_MASK_H

#include <stddef.h>

#include "util/buf.h"

/* Secrets shorter than this are shown as "****" only. */
#define LP_MASK_MIN_REVEAL 16

/* Append the masked form of in[0..len) to out. Accepts any bytes (NUL included; in may be NULL
 * when len is 0). secrets[0..n_secrets) are extra literal strings to mask wherever they occur;
 * NULL or empty entries are ignored, and secrets may be NULL when n_secrets is 0. Longer secrets
 * win when two start at the same place only if they come first in the array, so callers should
 * pass them longest first when one secret is a prefix of another.
 * Output never contains an unmasked recognised secret: if out's ceiling is hit, masking stops and
 * out holds a masked prefix of the result.
 * Returns the number of regions masked. */
size_t lp_mask(const char *in, size_t len, struct lp_buf *out, const char *const *secrets,
               size_t n_secrets);

/* Append the display form of one secret value s[0..n) ("sk-a****ijkl" or "****") to out. For
 * admin views such as GET /admin/config. */
void lp_mask_token(const char *s, size_t n, struct lp_buf *out);

/* Convenience: the masked form of the NUL-terminated string s as a new heap string (caller
 * frees). NULL in, NULL out. */
char *lp_mask_dup(const char *s, const char *const *secrets, size_t n_secrets);

#endif
