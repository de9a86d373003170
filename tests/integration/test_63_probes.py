"""Active health probes (`health_check:` on a backend, src/prober.c).

A backend that failed and was cooled down comes back after a passing probe, long before its
cooldown would have ended, and the request that finds it working is a probe, never a client's.
A backend whose probes keep failing is marked down, probed at the configured interval and never
receives client traffic. Probes show in /admin/backends and /metrics and are not client
requests.
"""

import time
import unittest

from harness import (Mock, Proxy, auth, backend, backend_health, backend_key, config, metric,
                     request, require_proxy, scrape, wait_until)


def chat(alias):
    return {"model": alias, "messages": [{"role": "user", "content": "hi"}]}


def kinds(mock):
    """[(method, path)] of the mock's requests in order."""
    return [(e["method"], e["path"]) for e in mock.requests()]


class ProbeCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a, cls.b = Mock("a").start(), Mock("b").start()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.a.reset()
        self.b.reset()

    def proxy(self, hc, cooldown=30, **fallback):
        backends = [backend(self.a, health_check=hc), backend(self.b)]
        cfg = config(backends, {"m": [("a", "ma", 1), ("b", "mb", 2)]},
                     fallback={"cooldown_seconds": cooldown, **fallback})
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def post(self, px):
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        return r

    def test_pass_ends_cooldown_without_a_client_request(self):
        px = self.proxy({"path": "/v1/models", "interval": "300ms", "timeout": "1s"})
        self.a.script({"status": 500, "match": {"path_contains": "/chat/completions"}})
        t0 = time.monotonic()
        self.assertIn("Hello from b", self.post(px).text)  # a fails, b answers; a cools 30 s
        # the probe finds a working again: the cooldown ends
        wait_until(lambda: not backend_health(px, "a")["models"][0]["cooling"], 5.0,
                   msg="cooldown ended by a probe")
        h = backend_health(px, "a")
        self.assertTrue(h["probe"]["last_ok"])
        self.assertFalse(h["probe"]["down"])
        self.assertGreaterEqual(h["probe"]["passes"], 1)
        self.assertIn("Hello from a", self.post(px).text)  # traffic returns to a
        self.assertLess(time.monotonic() - t0, 10, "back long before the 30 s cooldown")
        k = kinds(self.a)
        posts = [i for i, x in enumerate(k) if x[0] == "POST"]
        self.assertEqual(len(posts), 2, k)
        # between the failed and the successful client request only probes reached a
        self.assertTrue(all(x == ("GET", "/v1/models") for x in k[posts[0] + 1:posts[1]]), k)
        self.assertGreaterEqual(posts[1] - posts[0], 2, k)
        for e in self.a.requests():
            if e["method"] == "GET":
                self.assertEqual(e["headers"]["authorization"], "Bearer " + backend_key("a"))

        m = scrape(px)
        self.assertGreaterEqual(metric(m, "llm_proxy_probes_total", backend="a", result="pass"), 1)
        self.assertEqual(metric(m, "llm_proxy_backend_down", backend="a"), 0)
        # probes are not client requests
        self.assertEqual(metric(m, "llm_proxy_requests_total"), 2)

    def test_failing_probe_keeps_backend_out(self):
        px = self.proxy({"path": "/v1/models", "interval": "300ms", "timeout": "1s"},
                        cooldown=1)
        self.a.script({"status": 500, "match": {"path_contains": "/chat/completions"}},
                      {"status": 503, "times": -1, "match": {"path_contains": "/models"}})
        self.post(px)
        wait_until(lambda: backend_health(px, "a")["probe"]["down"], 5.0, msg="a marked down")
        self.a.reset()
        self.a.script({"status": 503, "times": -1, "match": {"path_contains": "/models"}})
        t0 = time.monotonic()
        # the 1 s cooldown ends meanwhile: without probes a client request would be a trial on a
        for _ in range(6):
            self.assertIn("Hello from b", self.post(px).text)
            time.sleep(0.3)
        elapsed = time.monotonic() - t0
        k = kinds(self.a)
        self.assertNotIn("POST", [x[0] for x in k], k)
        probes = len(k)
        # probed at the interval (300 ms; ticks every 200 ms): neither stopped nor flooding
        self.assertGreaterEqual(probes, int(elapsed / 0.6), (probes, elapsed))
        self.assertLessEqual(probes, int(elapsed / 0.3) + 2, (probes, elapsed))
        m = scrape(px)
        self.assertEqual(metric(m, "llm_proxy_backend_down", backend="a"), 1)
        self.assertGreaterEqual(metric(m, "llm_proxy_probes_total", backend="a", result="fail"),
                                probes)
        wait_until(lambda: "marked down" in px.log_text(), 5.0, msg="operational log line")
        # the backend recovers: the next probe brings it back
        self.a.reset()
        wait_until(lambda: not backend_health(px, "a")["probe"]["down"], 5.0, msg="a back")
        self.assertIn("Hello from a", self.post(px).text)
        wait_until(lambda: "back in rotation" in px.log_text(), 5.0, msg="operational log line")

    def test_breaker_closed_by_probe(self):
        px = self.proxy({"interval": "300ms", "timeout": "1s", "healthy_after": 2},
                        cooldown=30, enable_circuit_breaker=True, circuit_failure_threshold=1,
                        circuit_open_timeout=60)
        self.a.script({"status": 500, "match": {"path_contains": "/chat/completions"}})
        self.post(px)
        self.assertEqual(backend_health(px, "a")["breaker"]["state"], "open")
        wait_until(lambda: backend_health(px, "a")["breaker"]["state"] == "closed", 5.0,
                   msg="breaker closed by probes")
        self.assertGreaterEqual(backend_health(px, "a")["probe"]["passes"], 2)
        self.assertIn("Hello from a", self.post(px).text)

    def test_healthy_backend_not_probed_without_idle_interval(self):
        px = self.proxy({"interval": "200ms"})
        self.post(px)
        time.sleep(1.0)
        self.assertEqual([x[0] for x in kinds(self.a)], ["POST"])
        self.assertIsNone(backend_health(px, "a")["probe"]["last_ok"])

    def test_idle_interval_probes_healthy_backend(self):
        px = self.proxy({"interval": "200ms", "idle_interval": "1s", "unhealthy_after": 2})
        wait_until(lambda: len(self.a.requests()) >= 2, 5.0, msg="idle probes")
        self.assertEqual({x for x in kinds(self.a)}, {("GET", "/v1/models")})
        # a healthy backend goes down only after unhealthy_after failures
        self.a.script({"status": 503, "times": -1, "match": {"path_contains": "/models"}})
        wait_until(lambda: backend_health(px, "a")["probe"]["down"], 6.0, msg="down after 2")
        self.assertGreaterEqual(backend_health(px, "a")["probe"]["fails"], 2)
        self.assertIn("Hello from b", self.post(px).text)


if __name__ == "__main__":
    unittest.main()
