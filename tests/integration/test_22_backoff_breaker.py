"""Resilience: backoff between attempts (timing from the mocks' request timestamps), Retry-After
on the same backend, cancellation of a backoff wait by a client disconnect, and the circuit
breaker (open, skip without contact, half-open probe, close / reopen, /readyz).

Mock timestamps (t_ms) come from the shared monotonic clock, so gaps between mocks are exact.
"""

import json
import threading
import time
import unittest

from harness import (Mock, Proxy, RawConn, access_entries, access_entry, auth, backend, backend_health, config,
                     http_bytes, require_proxy, request, wait_until)

BREAKER = {"cooldown_seconds": 2, "enable_circuit_breaker": True, "circuit_failure_threshold": 2,
           "circuit_open_timeout": 1, "circuit_success_threshold": 1}


def chat(alias):
    return {"model": alias, "messages": [{"role": "user", "content": "hi"}]}


class Case(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a, cls.b, cls.c = (Mock(n).start() for n in ("a", "b", "c"))
        cls.mocks = (cls.a, cls.b, cls.c)

    @classmethod
    def tearDownClass(cls):
        for m in cls.mocks:
            m.stop()

    def setUp(self):
        for m in self.mocks:
            m.reset()

    def proxy(self, models, fallback) -> Proxy:
        cfg = config([backend(m) for m in self.mocks], models, fallback=fallback,
                     timeout={"ttft_timeout": "2s"})
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def post(self, px, alias):
        return request(px.url, "POST", "/v1/chat/completions", chat(alias), headers=auth())

    def stamps(self):
        """[(mock, model, t_ms)] of every upstream request, in time order."""
        out = [(e["t_us"], m.name, json.loads(e["body"])["model"], e["t_ms"])
               for m in self.mocks for e in m.requests()]
        return [h[1:] for h in sorted(out)]


class TestBackoff(Case):
    def test_exponential_delays_between_attempts(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb"), ("c", "mc")]},
                        {"cooldown_seconds": 2, "enable_backoff": True,
                         "backoff_initial_delay": 100, "backoff_multiplier": 2,
                         "backoff_jitter": 0, "backoff_max_delay": 1000})
        self.a.script({"status": 500})
        self.b.script({"status": 500})
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        s = self.stamps()
        self.assertEqual([h[0] for h in s], ["a", "b", "c"])
        gap1, gap2 = s[1][2] - s[0][2], s[2][2] - s[1][2]
        print(f"\n  backoff gaps: {gap1} ms, {gap2} ms (expected ~100, ~200)")
        self.assertGreaterEqual(gap1, 99, "first backoff delay is backoff_initial_delay")
        self.assertGreaterEqual(gap2, 199, "second delay is initial * multiplier")
        self.assertLess(gap1, 190, "first delay too long (multiplier applied too early?)")
        self.assertLess(gap2, 400)
        e = access_entry(px, r.headers["x-request-id"])
        self.assertGreaterEqual(e.get("backoff_ms", 0), 300, e)

    def test_no_backoff_when_disabled(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]}, {"cooldown_seconds": 2})
        self.a.script({"status": 500})
        self.assertEqual(self.post(px, "m").status, 200)
        s = self.stamps()
        self.assertLess(s[1][2] - s[0][2], 90, s)

    def test_retry_after_honoured_on_same_backend(self):
        px = self.proxy({"m": [("a", "m1"), ("a", "m2")]}, {"cooldown_seconds": 2})
        self.a.script({"status": 429, "headers": {"Retry-After": "1"},
                       "body": {"error": {"message": "slow down", "type": "rate_limit_error"}}})
        t0 = time.monotonic()
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        s = self.stamps()
        self.assertEqual([h[:2] for h in s], [("a", "m1"), ("a", "m2")])
        gap = s[1][2] - s[0][2]
        print(f"\n  Retry-After 1 s on the same backend: next attempt after {gap} ms")
        self.assertGreaterEqual(gap, 999, "Retry-After not honoured before retrying the same backend")
        self.assertLess(time.monotonic() - t0, 3)

    def test_retry_after_not_waited_for_other_backend(self):
        px = self.proxy({"m": [("a", "m1"), ("b", "m2")]}, {"cooldown_seconds": 2})
        self.a.script({"status": 429, "headers": {"Retry-After": "1"},
                       "body": {"error": {"message": "slow down", "type": "rate_limit_error"}}})
        self.assertEqual(self.post(px, "m").status, 200)
        s = self.stamps()
        self.assertLess(s[1][2] - s[0][2], 500, "a Retry-After of a must not delay b")

    def test_client_disconnect_cancels_backoff(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]},
                        {"cooldown_seconds": 2, "enable_backoff": True,
                         "backoff_initial_delay": 800, "backoff_jitter": 0})
        self.a.script({"status": 500})
        c = RawConn(px.url)
        c.send(http_bytes("POST", "/v1/chat/completions", chat("m"), auth()))
        self.a.wait_requests(1)
        time.sleep(0.15)
        c.close()
        time.sleep(1.1)  # past the 800 ms backoff
        self.assertEqual(self.b.requests(), [], "the next backend was contacted after the "
                                                "client went away during the backoff wait")
        e = wait_until(lambda: next((x for x in access_entries(px) if x.get("alias") == "m"), None),
                       msg="access line")
        self.assertTrue(e.get("client_gone"), e)
        # The proxy is fine afterwards.
        self.assertEqual(request(px.url, "GET", "/health").status, 200)


class TestBreaker(Case):
    MODELS = {"o1": [("a", "x1"), ("a", "x2"), ("b", "y")],
              "o2": [("a", "x3"), ("b", "y")],
              "o3": [("a", "x4"), ("b", "y")],
              "only": [("a", "x5")]}

    def open_breaker(self, px):
        self.a.script({"status": 500, "times": 2})
        r = self.post(px, "o1")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual([h[:2] for h in self.stamps()], [("a", "x1"), ("a", "x2"), ("b", "y")])
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["state"], "open", br)
        self.assertEqual(br["times_opened"], 1, br)
        self.assertIsNotNone(br["open_until_ms"])
        for m in self.mocks:
            m.reset()
        return br

    def test_open_breaker_skips_backend_without_contact(self):
        px = self.proxy(self.MODELS, BREAKER)
        self.open_breaker(px)
        t0 = time.monotonic()
        r = self.post(px, "o2")
        dt = (time.monotonic() - t0) * 1000
        print(f"\n  open breaker -> failover answer in {dt:.1f} ms")
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("Hello from b", r.json()["choices"][0]["message"]["content"])
        self.assertEqual(self.a.requests(), [], "a backend with an open breaker was contacted")
        self.assertEqual(len(self.b.requests()), 1)
        self.assertEqual(self.a.stats()["connections"], 0)

    def test_open_breaker_alone_gives_503_and_readyz_503(self):
        px = self.proxy({"o1": self.MODELS["o1"][:2], "only": self.MODELS["only"]}, BREAKER)
        self.a.script({"status": 500, "times": 2})
        self.assertEqual(self.post(px, "o1").status, 500)
        for m in self.mocks:
            m.reset()
        r = self.post(px, "only")
        self.assertEqual(r.status, 503, r.text)
        self.assertIn(r.headers.get("retry-after"), ("1",), "Retry-After = time to half-open")
        self.assertEqual(self.a.requests(), [])
        rz = request(px.url, "GET", "/readyz")
        self.assertEqual(rz.status, 503, rz.text)
        # After the open timeout a probe may go through: the route is usable again.
        wait_until(lambda: request(px.url, "GET", "/readyz").status == 200, timeout=3,
                   msg="/readyz 200 once the breaker is half-open")

    def test_half_open_probe_success_closes(self):
        px = self.proxy(self.MODELS, BREAKER)
        self.open_breaker(px)
        time.sleep(1.1)
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["state"], "half_open", br)
        r = self.post(px, "o3")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual([h[:2] for h in self.stamps()], [("a", "x4")], "the probe goes to a")
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["state"], "closed", br)
        self.assertEqual(br["consecutive_failures"], 0, br)

    def test_half_open_probe_failure_reopens(self):
        px = self.proxy(self.MODELS, BREAKER)
        self.open_breaker(px)
        time.sleep(1.1)
        self.a.script({"status": 500})
        r = self.post(px, "o3")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual([h[:2] for h in self.stamps()], [("a", "x4"), ("b", "y")])
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["state"], "open", br)
        self.assertEqual(br["times_opened"], 2, br)
        for m in self.mocks:
            m.reset()
        self.assertEqual(self.post(px, "o2").status, 200)
        self.assertEqual(self.a.requests(), [], "reopened breaker must skip a again")

    def test_half_open_admits_one_probe(self):
        """circuit_half_open_max 1: while the probe is in flight, a second request skips a."""
        px = self.proxy(self.MODELS, BREAKER)
        self.open_breaker(px)
        time.sleep(1.1)
        self.a.script({"delay_ms": 600})
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", self.post(px, "o3")))
        t.start()
        self.a.wait_requests(1)
        r2 = self.post(px, "o2")
        t.join(10)
        self.assertEqual(r2.status, 200, r2.text)
        self.assertEqual(out["r"].status, 200)
        self.assertEqual(len(self.a.requests()), 1, "a second probe was admitted while half-open")
        self.assertEqual(backend_health(px, "a")["breaker"]["state"], "closed")


if __name__ == "__main__":
    unittest.main()
