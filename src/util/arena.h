/* util/arena.h - a per-request bump allocator with a ceiling.
 *
 * Request-scoped allocations (path and header copies, the attempt objects, URLs, header lines)
 * come from one arena that is freed at once when the request finishes, so no field needs its own
 * free() and nothing outlives the request by accident. The first block lives inside the arena
 * struct itself (embedded in the request), so a typical request makes no extra malloc for it.
 *
 * Large or input-sized data (bodies) does not belong here: it is malloc'd and freed by its owner
 * as soon as it is no longer needed, which an arena cannot do.
 *
 * Invariants: every pointer returned stays valid until lp_arena_free; allocations are aligned
 * to 16 bytes; total bytes handed out never exceed `max` (0 = unlimited), past which
 * lp_arena_alloc returns NULL (callers on input-driven paths check; fixed-size uses may not).
 */
#ifndef LP_UTIL_ARENA_H
#define LP_UTIL_ARENA_H

#include <stddef.h>

#define LP_ARENA_INLINE 1024 /* bytes of the first, embedded block */
#define LP_ARENA_BLOCK 4096  /* minimum size of every further block */

struct lp_arena_block;

struct lp_arena {
    struct lp_arena_block *blocks; /* further blocks, newest first */
    char *cur;                     /* next free byte of the current block */
    char *end;                     /* end of the current block */
    size_t used;                   /* bytes handed out so far */
    size_t max;                    /* ceiling on `used`; 0 = none */
    _Alignas(16) char inline_block[LP_ARENA_INLINE];
};

/* Initialise an empty arena in place (nothing allocated). */
void lp_arena_init(struct lp_arena *a, size_t max);
/* Free every block and reset to empty; the arena can be reused. Safe twice. */
void lp_arena_free(struct lp_arena *a);
/* n bytes, 16-aligned, uninitialised. NULL only when the ceiling would be exceeded; aborts on
 * OOM like lp_xmalloc. n == 0 returns a valid unique pointer. */
void *lp_arena_alloc(struct lp_arena *a, size_t n);
/* Zeroed n bytes (same rules). */
void *lp_arena_calloc(struct lp_arena *a, size_t n);
/* Copies of strings (NULL -> NULL; NULL too when the ceiling is hit). */
char *lp_arena_strdup(struct lp_arena *a, const char *s);
char *lp_arena_strndup(struct lp_arena *a, const char *s, size_t n);
/* printf into the arena. */
char *lp_arena_printf(struct lp_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
