/* util/arena.c - see arena.h. */
#include "util/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

struct lp_arena_block {
    struct lp_arena_block *next;
    size_t size;
    _Alignas(16) char data[];
};

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

void lp_arena_init(struct lp_arena *a, size_t max)
{
    a->blocks = NULL;
    a->cur = a->inline_block;
    a->end = a->inline_block + sizeof a->inline_block;
    a->used = 0;
    a->max = max;
}

void lp_arena_free(struct lp_arena *a)
{
    struct lp_arena_block *b = a->blocks;
    while (b) {
        struct lp_arena_block *next = b->next;
        free(b);
        b = next;
    }
    lp_arena_init(a, a->max);
}

void *lp_arena_alloc(struct lp_arena *a, size_t n)
{
    size_t need = ALIGN16(n ? n : 1);
    if (need < n || (a->max && (need > a->max || a->used > a->max - need)))
        return NULL;
    if ((size_t)(a->end - a->cur) < need) {
        size_t size = need > LP_ARENA_BLOCK ? need : LP_ARENA_BLOCK;
        struct lp_arena_block *b = lp_xmalloc(sizeof *b + size);
        b->size = size;
        b->next = a->blocks;
        a->blocks = b;
        a->cur = b->data;
        a->end = b->data + size;
    }
    void *p = a->cur;
    a->cur += need;
    a->used += need;
    return p;
}

void *lp_arena_calloc(struct lp_arena *a, size_t n)
{
    void *p = lp_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *lp_arena_strndup(struct lp_arena *a, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *p = lp_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *lp_arena_strdup(struct lp_arena *a, const char *s)
{
    return s ? lp_arena_strndup(a, s, strlen(s)) : NULL;
}

char *lp_arena_printf(struct lp_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = lp_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
