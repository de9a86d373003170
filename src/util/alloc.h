/* util/alloc.h - allocation with one out-of-memory policy.
 *
 * Small allocations that fail abort the process here, in one place (the h2o/Redis policy).
 * This is defensible only because every buffer that input can grow has a ceiling checked
 * *before* allocating (see util/buf.h), so input can never drive the process out of memory.
 */
#ifndef LP_UTIL_ALLOC_H
#define LP_UTIL_ALLOC_H

#include <stddef.h>

void *lp_xmalloc(size_t n);
void *lp_xcalloc(size_t nmemb, size_t size);
void *lp_xrealloc(void *p, size_t n);
/* lp_xstrdup(NULL) returns NULL. */
char *lp_xstrdup(const char *s);
/* Copies n bytes of s and NUL-terminates; s need not be NUL-terminated. */
char *lp_xstrndup(const char *s, size_t n);
/* printf into a new heap string; aborts on OOM. */
char *lp_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Free *pp and set it to NULL, so a struct member never dangles. */
#define LP_FREE(pp)                                                                                \
    do {                                                                                           \
        free(*(pp));                                                                               \
        *(pp) = NULL;                                                                              \
    } while (0)

#endif
