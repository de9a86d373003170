/* test_conncap.c - process-wide connection caps: total, per address (IPv4, IPv6, mapped), the
 * table under churn against a reference model, live limits, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "conncap.h"

static struct lp_conncap_addr v4(const char *ip)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET, ip, &s.sin_addr), 1);
    struct lp_conncap_addr a;
    assert_true(lp_conncap_addr_from((struct sockaddr *)&s, &a));
    return a;
}

static struct lp_conncap_addr v6(const char *ip)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET6, ip, &s.sin6_addr), 1);
    struct lp_conncap_addr a;
    assert_true(lp_conncap_addr_from((struct sockaddr *)&s, &a));
    return a;
}

static void test_addresses(void **state)
{
    struct lp_conncap_addr a = v4("10.1.2.3"), m = v6("::ffff:10.1.2.3"), b = v6("2001:db8::1");
    assert_int_equal(a.len, 4);
    assert_int_equal(m.len, 4); /* mapped IPv6 is the IPv4 address */
    assert_memory_equal(a.b, m.b, 4);
    assert_int_equal(b.len, 16);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    struct lp_conncap_addr x;
    assert_false(lp_conncap_addr_from((struct sockaddr *)&u, &x));
    assert_int_equal(x.len, 0);
}

static void test_total_cap(void **state)
{
    struct lp_conncap *c = lp_conncap_create(3, 0, 1);
    assert_true(lp_conncap_reserve(c));
    assert_true(lp_conncap_reserve(c));
    assert_true(lp_conncap_reserve(c));
    assert_false(lp_conncap_reserve(c));
    struct lp_conncap_stats st;
    lp_conncap_stats(c, &st);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.refused_total, 1);
    lp_conncap_unreserve(c);
    assert_true(lp_conncap_reserve(c));
    lp_conncap_set_limits(c, 0, 0); /* unlimited */
    for (int i = 0; i < 100; i++)
        assert_true(lp_conncap_reserve(c));
    lp_conncap_set_limits(c, 10, 0); /* lowered: open ones stay, new ones wait */
    assert_false(lp_conncap_reserve(c));
    for (int i = 0; i < 103; i++)
        lp_conncap_unreserve(c);
    lp_conncap_stats(c, &st);
    assert_int_equal(st.open, 0);
    lp_conncap_destroy(c);
    lp_conncap_destroy(NULL);
}

static void test_per_address_cap(void **state)
{
    struct lp_conncap *c = lp_conncap_create(0, 2, 7);
    struct lp_conncap_addr a = v4("192.0.2.1"), m = v6("::ffff:192.0.2.1"), b = v6("2001:db8::2");
    assert_true(lp_conncap_admit(c, &a));
    assert_true(lp_conncap_admit(c, &m)); /* same peer */
    assert_false(lp_conncap_admit(c, &a));
    assert_false(lp_conncap_admit(c, &m));
    assert_true(lp_conncap_admit(c, &b)); /* another peer */
    assert_int_equal(lp_conncap_addr_count(c, &a), 2);
    assert_int_equal(lp_conncap_addr_count(c, &b), 1);
    struct lp_conncap_stats st;
    lp_conncap_stats(c, &st);
    assert_int_equal(st.addrs, 2);
    assert_int_equal(st.refused_addr, 2);
    lp_conncap_leave(c, &a);
    assert_true(lp_conncap_admit(c, &m));
    struct lp_conncap_addr none = {0}; /* uncounted family: always admitted */
    for (int i = 0; i < 5; i++)
        assert_true(lp_conncap_admit(c, &none));
    lp_conncap_leave(c, &none);
    lp_conncap_set_limits(c, 0, 5);
    assert_true(lp_conncap_admit(c, &a));
    lp_conncap_leave(c, &a);
    lp_conncap_leave(c, &a);
    lp_conncap_leave(c, &a);
    lp_conncap_leave(c, &b);
    lp_conncap_stats(c, &st);
    assert_int_equal(st.addrs, 0);
    assert_int_equal(lp_conncap_addr_count(c, &a), 0);
    lp_conncap_destroy(c);
}

/* Many addresses coming and going (growth, backward-shift removal) against a plain array model:
 * every count stays right. */
#define N_ADDR 3000
static void test_table_churn(void **state)
{
    struct lp_conncap *c = lp_conncap_create(0, 4, 0xdeadbeef);
    static struct lp_conncap_addr addrs[N_ADDR];
    static unsigned model[N_ADDR];
    for (int i = 0; i < N_ADDR; i++) {
        char ip[64];
        if (i % 2)
            snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        else
            snprintf(ip, sizeof ip, "2001:db8::%x:%x", i >> 8, i & 255);
        addrs[i] = i % 2 ? v4(ip) : v6(ip);
    }
    uint64_t rng = 12345;
    for (int step = 0; step < 200000; step++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int i = (int)((rng >> 33) % N_ADDR);
        if ((rng >> 20) % 3 != 0) {
            bool ok = lp_conncap_admit(c, &addrs[i]);
            assert_int_equal(ok, model[i] < 4);
            if (ok)
                model[i]++;
        } else if (model[i] > 0) {
            lp_conncap_leave(c, &addrs[i]);
            model[i]--;
        }
        if (step % 10007 == 0) {
            size_t distinct = 0;
            for (int k = 0; k < N_ADDR; k++) {
                assert_int_equal(lp_conncap_addr_count(c, &addrs[k]), model[k]);
                distinct += model[k] > 0;
            }
            struct lp_conncap_stats st;
            lp_conncap_stats(c, &st);
            assert_int_equal(st.addrs, distinct);
        }
    }
    for (int i = 0; i < N_ADDR; i++)
        while (model[i]--)
            lp_conncap_leave(c, &addrs[i]);
    struct lp_conncap_stats st;
    lp_conncap_stats(c, &st);
    assert_int_equal(st.addrs, 0);
    lp_conncap_destroy(c);
}

/* Threads admitting and leaving the same few addresses and reserving slots: counts end at 0 and
 * no address ever holds more than its cap. */
static struct lp_conncap *shared;

static void *worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    char ip[32];
    snprintf(ip, sizeof ip, "198.51.100.%u", (unsigned)(id % 2));
    struct lp_conncap_addr a = v4(ip);
    for (int i = 0; i < 50000; i++) {
        if (!lp_conncap_reserve(shared))
            continue;
        if (lp_conncap_admit(shared, &a)) {
            assert_true(lp_conncap_addr_count(shared, &a) <= 3);
            lp_conncap_leave(shared, &a);
        }
        lp_conncap_unreserve(shared);
    }
    return NULL;
}

static void test_threads(void **state)
{
    shared = lp_conncap_create(3, 3, 99);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    struct lp_conncap_stats st;
    lp_conncap_stats(shared, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.addrs, 0);
    lp_conncap_destroy(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),       cmocka_unit_test(test_total_cap),
        cmocka_unit_test(test_per_address_cap), cmocka_unit_test(test_table_churn),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
