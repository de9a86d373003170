/* util/buf.h - a growable byte buffer with a ceiling.
 *
 * Invariants: data is NULL or holds cap bytes; len <= cap; len <= max; data[len] == '\0' whenever
 * data != NULL (so the contents can be used as a C string when they hold no NUL).
 * Growth beyond max is refused with LP_ERR_TOOBIG and leaves the buffer unchanged: exceeding a
 * ceiling is a normal error (413, 502), never an OOM.
 */
#ifndef LP_UTIL_BUF_H
#define LP_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "status.h"

struct lp_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* ceiling on len; 0 means SIZE_MAX/2 */
};

/* Initialise an empty buffer with ceiling max (0 = effectively unlimited). Allocates nothing. */
void lp_buf_init(struct lp_buf *b, size_t max);
/* Free the storage and reset to empty; the ceiling is kept, so the buffer can be reused.
 * Safe on a zeroed or already-freed buffer. */
void lp_buf_free(struct lp_buf *b);
/* Set len to 0, keeping the storage. */
void lp_buf_reset(struct lp_buf *b);
/* Make room for `extra` more bytes. LP_ERR_TOOBIG if len+extra would exceed max. */
enum lp_status lp_buf_reserve(struct lp_buf *b, size_t extra);
enum lp_status lp_buf_append(struct lp_buf *b, const void *p, size_t n);
enum lp_status lp_buf_appends(struct lp_buf *b, const char *s);
enum lp_status lp_buf_appendc(struct lp_buf *b, char c);
enum lp_status lp_buf_printf(struct lp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum lp_status lp_buf_vprintf(struct lp_buf *b, const char *fmt, va_list ap);
/* Append s as the inside of a JSON string literal (quotes not added), escaping as JSON needs. */
enum lp_status lp_buf_append_json_escaped(struct lp_buf *b, const char *s, size_t n);
/* Remove the first n bytes (n <= len). */
void lp_buf_consume(struct lp_buf *b, size_t n);
/* Hand the storage to the caller (who must free() it) and reset the buffer. Never NULL. */
char *lp_buf_steal(struct lp_buf *b, size_t *len_out);

#endif
