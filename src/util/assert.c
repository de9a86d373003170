/* util/assert.c - see assert.h. */
#include "util/assert.h"

#include <stdio.h>
#include <stdlib.h>

atomic_ulong lp_assert_soft_count;

void lp_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "llm-proxy: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
