/* conncap.c - process-wide connection caps. See conncap.h.
 *
 * Per-address table: linear probing over a power-of-two array; an entry with count 0 is empty.
 * Removal shifts the following entries of the cluster back (no tombstones), so lookups never
 * degrade with churn. Load factor stays at or below 1/2.
 */
#include "conncap.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/alloc.h"

#define TABLE_MIN 64

struct entry {
    struct lp_conncap_addr key;
    uint32_t count; /* 0 = empty slot */
};

struct lp_conncap {
    atomic_size_t open;
    atomic_size_t max_total;
    atomic_uint_fast64_t refused_total;
    pthread_mutex_t lock; /* guards everything below */
    size_t max_per_addr;
    struct entry *tab;
    size_t cap; /* power of two */
    size_t used;
    uint64_t seed;
    uint64_t refused_addr;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static size_t slot_of(const struct lp_conncap *c, const struct lp_conncap_addr *a)
{
    uint64_t w0 = 0, w1 = 0;
    memcpy(&w0, a->b, a->len < 8 ? a->len : 8);
    if (a->len > 8)
        memcpy(&w1, a->b + 8, (size_t)a->len - 8);
    uint64_t h = mix(c->seed ^ w0);
    h = mix(h ^ w1 ^ ((uint64_t)a->len << 56));
    return (size_t)h & (c->cap - 1);
}

static bool same(const struct lp_conncap_addr *x, const struct lp_conncap_addr *y)
{
    return x->len == y->len && memcmp(x->b, y->b, x->len) == 0;
}

/* Index of a's entry, or of the empty slot where it would go. */
static size_t find(const struct lp_conncap *c, const struct lp_conncap_addr *a)
{
    size_t i = slot_of(c, a);
    while (c->tab[i].count && !same(&c->tab[i].key, a))
        i = (i + 1) & (c->cap - 1);
    return i;
}

static void grow(struct lp_conncap *c)
{
    struct entry *old = c->tab;
    size_t old_cap = c->cap;
    c->cap = old_cap * 2;
    c->tab = lp_xcalloc(c->cap, sizeof *c->tab);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].count)
            c->tab[find(c, &old[i].key)] = old[i];
    free(old);
}

/* Empty slot i and shift the rest of its cluster back so every entry stays reachable. */
static void remove_at(struct lp_conncap *c, size_t i)
{
    size_t mask = c->cap - 1;
    size_t j = i;
    c->tab[i].count = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!c->tab[j].count)
            return;
        size_t home = slot_of(c, &c->tab[j].key);
        /* Entry j may move to the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        c->tab[i] = c->tab[j];
        c->tab[j].count = 0;
        i = j;
    }
}

struct lp_conncap *lp_conncap_create(size_t max_total, size_t max_per_addr, uint64_t seed)
{
    struct lp_conncap *c = lp_xcalloc(1, sizeof *c);
    atomic_init(&c->open, 0);
    atomic_init(&c->max_total, max_total);
    atomic_init(&c->refused_total, 0);
    pthread_mutex_init(&c->lock, NULL);
    c->max_per_addr = max_per_addr;
    c->cap = TABLE_MIN;
    c->tab = lp_xcalloc(c->cap, sizeof *c->tab);
    c->seed = seed;
    return c;
}

void lp_conncap_destroy(struct lp_conncap *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c->tab);
    free(c);
}

void lp_conncap_set_limits(struct lp_conncap *c, size_t max_total, size_t max_per_addr)
{
    atomic_store(&c->max_total, max_total);
    pthread_mutex_lock(&c->lock);
    c->max_per_addr = max_per_addr;
    pthread_mutex_unlock(&c->lock);
}

bool lp_conncap_reserve(struct lp_conncap *c)
{
    size_t max = atomic_load_explicit(&c->max_total, memory_order_relaxed);
    size_t before = atomic_fetch_add(&c->open, 1);
    if (max == 0 || before < max)
        return true;
    atomic_fetch_sub(&c->open, 1);
    atomic_fetch_add_explicit(&c->refused_total, 1, memory_order_relaxed);
    return false;
}

void lp_conncap_unreserve(struct lp_conncap *c)
{
    atomic_fetch_sub(&c->open, 1);
}

bool lp_conncap_addr_from(const struct sockaddr *sa, struct lp_conncap_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->len = 4;
        memcpy(a->b, &s4->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            a->len = 4;
            memcpy(a->b, &s6->sin6_addr.s6_addr[12], 4);
        } else {
            a->len = 16;
            memcpy(a->b, &s6->sin6_addr, 16);
        }
        return true;
    }
    return false;
}

bool lp_conncap_admit(struct lp_conncap *c, const struct lp_conncap_addr *a)
{
    if (a->len == 0)
        return true;
    bool ok = true;
    pthread_mutex_lock(&c->lock);
    size_t i = find(c, a);
    if (c->tab[i].count) {
        if (c->max_per_addr && c->tab[i].count >= c->max_per_addr) {
            c->refused_addr++;
            ok = false;
        } else {
            c->tab[i].count++;
        }
    } else {
        c->tab[i].key = *a;
        c->tab[i].count = 1;
        if (++c->used * 2 > c->cap)
            grow(c);
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

void lp_conncap_leave(struct lp_conncap *c, const struct lp_conncap_addr *a)
{
    if (a->len == 0)
        return;
    pthread_mutex_lock(&c->lock);
    size_t i = find(c, a);
    if (c->tab[i].count && --c->tab[i].count == 0) {
        remove_at(c, i);
        c->used--;
    }
    pthread_mutex_unlock(&c->lock);
}

size_t lp_conncap_addr_count(struct lp_conncap *c, const struct lp_conncap_addr *a)
{
    if (a->len == 0)
        return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->tab[find(c, a)].count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void lp_conncap_stats(struct lp_conncap *c, struct lp_conncap_stats *st)
{
    st->max_total = atomic_load(&c->max_total);
    st->open = atomic_load(&c->open);
    st->refused_total = atomic_load_explicit(&c->refused_total, memory_order_relaxed);
    pthread_mutex_lock(&c->lock);
    st->addrs = c->used;
    st->max_per_addr = c->max_per_addr;
    st->refused_addr = c->refused_addr;
    pthread_mutex_unlock(&c->lock);
}
