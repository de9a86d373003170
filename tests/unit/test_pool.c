/* test_pool.c - the keep-alive pool: most recently used first, the per-origin limit closes the
 * coldest, origins kept apart, an idle connection closed by its peer leaves the pool, idle
 * expiry. Connections are socketpairs on a real event base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "pool.h"

/* A pooled end and its peer. */
static struct lp_pconn *pair(int *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct lp_pconn *c = calloc(1, sizeof *c);
    c->fd = sv[0];
    *peer = sv[1];
    return c;
}

/* Whether the pooled end of `peer` was closed (the peer reads EOF). */
static bool peer_sees_close(int peer)
{
    char b;
    return recv(peer, &b, 1, 0) == 0;
}

static void run_for(struct event_base *base, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_mru_and_limit(void **state)
{
    struct event_base *base = event_base_new();
    struct lp_pool *p = lp_pool_create(base, 2, 50000);
    int peer[3];
    struct lp_pconn *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = pair(&peer[i]);
        lp_pool_put(p, "http://a", c[i]);
    }
    assert_int_equal(lp_pool_idle(p), 2);
    assert_true(peer_sees_close(peer[0])); /* the coldest went */
    assert_null(lp_pool_take(p, "http://b"));
    assert_ptr_equal(lp_pool_take(p, "http://a"), c[2]);
    assert_ptr_equal(lp_pool_take(p, "http://a"), c[1]);
    assert_null(lp_pool_take(p, "http://a"));
    assert_int_equal(lp_pool_idle(p), 0);
    lp_pconn_close(c[1]);
    lp_pconn_close(c[2]);
    for (int i = 0; i < 3; i++)
        close(peer[i]);
    lp_pool_destroy(p);
    event_base_free(base);
}

static void test_peer_close_and_expiry(void **state)
{
    struct event_base *base = event_base_new();
    struct lp_pool *p = lp_pool_create(base, 8, 60);
    int pa, pb, pc;
    struct lp_pconn *a = pair(&pa), *b = pair(&pb), *c = pair(&pc);
    lp_pool_put(p, "k1", a);
    lp_pool_put(p, "k1", b);
    lp_pool_put(p, "k2", c);
    close(pa); /* a's peer goes away while a is idle */
    run_for(base, 20);
    assert_int_equal(lp_pool_idle(p), 2);
    assert_ptr_equal(lp_pool_take(p, "k1"), b);
    assert_null(lp_pool_take(p, "k1"));
    lp_pool_put(p, "k1", b); /* in use and back: its idle clock starts again */
    run_for(base, 150);
    assert_int_equal(lp_pool_idle(p), 0); /* both expired */
    assert_true(peer_sees_close(pb));
    assert_true(peer_sees_close(pc));
    close(pb);
    close(pc);
    lp_pool_destroy(p);
    event_base_free(base);
}

static void test_destroy_closes_idle(void **state)
{
    struct event_base *base = event_base_new();
    struct lp_pool *p = lp_pool_create(base, 4, 50000);
    int peer;
    lp_pool_put(p, "k", pair(&peer));
    lp_pool_destroy(p);
    assert_true(peer_sees_close(peer));
    close(peer);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mru_and_limit),
        cmocka_unit_test(test_peer_close_and_expiry),
        cmocka_unit_test(test_destroy_closes_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
