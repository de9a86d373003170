"""Resilience: the plan (priorities, L1 then L2 alias_fallback, cycles, duplicates,
max_retries), cooldown behaviour (skip, extend, all-cooling 503 + Retry-After, try_soonest,
survival across reloads) and /readyz.

Three mocks (a, b, c) for the class, reset per test; a proxy per test.
"""

import json
import signal
import threading
import time
import unittest

from harness import (Mock, Proxy, auth, backend, config, pair_health, require_proxy, request,
                     wait_until)

COOL = {"cooldown_seconds": 2}


def chat(alias):
    return {"model": alias, "messages": [{"role": "user", "content": "hi"}]}


def msg(alias):
    return {"model": alias, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


class FallbackCase(unittest.TestCase):
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

    def proxy(self, models, fallback=None, backends=None, **extra) -> Proxy:
        cfg = config(backends or [backend(m) for m in self.mocks], models,
                     fallback={**COOL, **(fallback or {})},
                     timeout={"ttft_timeout": "500ms"}, **extra)
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def post(self, px, alias, anthropic=False):
        if anthropic:
            return request(px.url, "POST", "/v1/messages", msg(alias), headers=auth("anthropic"))
        return request(px.url, "POST", "/v1/chat/completions", chat(alias), headers=auth())

    def hits(self):
        """[(mock, upstream model)] in arrival order."""
        out = []
        for m in self.mocks:
            for e in m.requests():
                out.append((e["t_us"], m.name, json.loads(e["body"])["model"]))
        return [(n, mod) for _, n, mod in sorted(out, key=lambda h: h[0])]

    def fail_all(self, status=500, times=1):
        for m in self.mocks:
            m.script({"status": status, "times": times})


class TestPlan(FallbackCase):
    def test_priority_order(self):
        px = self.proxy({"m": [("c", "mc", 3), ("a", "ma", 1), ("b", "mb", 2)]})
        self.fail_all()
        r = self.post(px, "m")
        self.assertEqual(r.status, 500, r.text)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb"), ("c", "mc")])

    def test_l1_then_l2_alias_fallback(self):
        px = self.proxy({"m": [("a", "ma")], "n": [("b", "nb"), ("c", "nc")]},
                        fallback={"alias_fallback": {"m": ["n"]}})
        self.a.script({"status": 500})
        self.b.script({"status": 503})
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("Hello from c", r.json()["choices"][0]["message"]["content"])
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "nb"), ("c", "nc")])

    def test_l2_not_used_when_l1_succeeds(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")], "n": [("c", "nc")]},
                        fallback={"alias_fallback": {"m": ["n"]}})
        self.a.script({"status": 500})
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb")])

    def test_alias_fallback_cycle_terminates(self):
        px = self.proxy({"x": [("a", "xa")], "y": [("b", "yb")]},
                        fallback={"alias_fallback": {"x": ["y"], "y": ["x"]}})
        self.fail_all(times=5)
        t0 = time.monotonic()
        r = self.post(px, "x")
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(r.status, 500, r.text)
        self.assertEqual(self.hits(), [("a", "xa"), ("b", "yb")])
        # From the other side the plan is y then x: both pairs cool now, so nothing is tried.
        self.assertEqual(self.post(px, "y").status, 503)
        self.assertEqual(len(self.hits()), 2)

    def test_self_fallback_cycle(self):
        px = self.proxy({"x": [("a", "xa"), ("b", "xb")]},
                        fallback={"alias_fallback": {"x": ["x"]}})
        self.fail_all(times=5)
        r = self.post(px, "x")
        self.assertEqual(r.status, 500, r.text)
        self.assertEqual(self.hits(), [("a", "xa"), ("b", "xb")])

    def test_same_pair_never_tried_twice(self):
        px = self.proxy({"p": [("a", "same", 1), ("a", "same", 2), ("b", "pb", 3)],
                         "q": [("a", "same"), ("c", "qc")]},
                        fallback={"alias_fallback": {"p": ["q"]}})
        self.fail_all(times=5)
        r = self.post(px, "p")
        self.assertEqual(r.status, 500, r.text)
        self.assertEqual(self.hits(), [("a", "same"), ("b", "pb"), ("c", "qc")])

    def test_same_backend_other_model_is_tried(self):
        px = self.proxy({"p": [("a", "m1"), ("a", "m2")]})
        self.a.script({"status": 500})
        r = self.post(px, "p")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.hits(), [("a", "m1"), ("a", "m2")])

    def test_max_retries_1_means_two_attempts(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb"), ("c", "mc")]}, fallback={"max_retries": 1})
        self.a.script({"status": 500})
        self.b.script({"status": 502})
        r = self.post(px, "m")
        self.assertEqual(r.status, 502, r.text)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb")])
        msg_ = r.json()["error"]["message"]
        self.assertIn("a/ma", msg_)
        self.assertIn("b/mb", msg_)
        self.assertNotIn("c/mc", msg_)

    def test_max_retries_2_means_three_attempts(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb"), ("c", "mc")]}, fallback={"max_retries": 2})
        self.a.script({"status": 500})
        self.b.script({"status": 500})
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb"), ("c", "mc")])

    def test_max_retries_0_means_every_route(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb"), ("c", "mc")]}, fallback={"max_retries": 0})
        self.a.script({"status": 500})
        self.b.script({"status": 500})
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(len(self.hits()), 3)

    def test_max_retries_counts_l2_routes(self):
        px = self.proxy({"m": [("a", "ma")], "n": [("b", "nb"), ("c", "nc")]},
                        fallback={"alias_fallback": {"m": ["n"]}, "max_retries": 1})
        self.fail_all()
        r = self.post(px, "m")
        self.assertEqual(r.status, 500, r.text)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "nb")])


class TestCooldown(FallbackCase):
    def test_cooling_pair_skipped_then_retried_after_expiry(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]})
        self.a.script({"status": 500})
        self.assertEqual(self.post(px, "m").status, 200)
        self.assertEqual(self.post(px, "m").status, 200)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb"), ("b", "mb")])
        remaining = pair_health(px, "a", "ma")["remaining_ms"]
        time.sleep(remaining / 1000 + 0.15)
        self.assertFalse(pair_health(px, "a", "ma")["cooling"])
        for m in self.mocks:
            m.reset()
        self.assertEqual(self.post(px, "m").status, 200)
        self.assertEqual(self.hits(), [("a", "ma")], "the pair is tried again after its cooldown")

    def test_cooldown_is_per_pair(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")], "n": [("a", "na"), ("b", "nb")]})
        self.a.script({"status": 500})
        self.assertEqual(self.post(px, "m").status, 200)
        self.assertEqual(self.post(px, "n").status, 200)
        self.assertEqual(self.hits(), [("a", "ma"), ("b", "mb"), ("a", "na")])

    def _concurrent_pair(self, first_step, second_step):
        """Two requests on a/ma overlapping: the first gets ``first_step`` (delayed), the second
        ``second_step`` (answered at once). Returns the proxy after both finished."""
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]})
        self.a.script(first_step, second_step)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r1", self.post(px, "m")))
        t.start()
        self.a.wait_requests(1)
        r2 = self.post(px, "m")
        t.join(10)
        self.assertEqual(r2.status, 200, r2.text)
        self.assertEqual(out["r1"].status, 200, out["r1"].text)
        self.assertEqual(len(self.a.requests()), 2)
        return px

    def test_later_longer_cooldown_extends(self):
        px = self._concurrent_pair(
            {"status": 429, "headers": {"Retry-After": "7"}, "delay_ms": 400,
             "body": {"error": {"message": "rate limited", "type": "rate_limit_error"}}},
            {"status": 500})
        p = pair_health(px, "a", "ma")
        self.assertEqual(p["class"], "rate_limit", p)
        self.assertGreater(p["remaining_ms"], 5500, "the later 7 s cooldown must extend the 2 s one")

    def test_later_shorter_cooldown_does_not_shorten(self):
        px = self._concurrent_pair(
            {"status": 500, "delay_ms": 400},
            {"status": 429, "headers": {"Retry-After": "7"},
             "body": {"error": {"message": "rate limited", "type": "rate_limit_error"}}})
        p = pair_health(px, "a", "ma")
        self.assertGreater(p["remaining_ms"], 5500, "a later 2 s cooldown shortened a 7 s one")

    def _cool_both(self, px, anthropic=False):
        a_step = {"status": 500}
        b_step = {"status": 429, "headers": {"Retry-After": "7"},
                  "body": {"error": {"message": "rate limited", "type": "rate_limit_error"}}}
        self.a.script(a_step)
        self.b.script(b_step)
        r = self.post(px, "am" if anthropic else "m", anthropic)
        self.assertEqual(r.status, 429, r.text)
        for m in self.mocks:
            m.reset()

    def _all_cooling_503(self, anthropic):
        models = {"m": [("a", "ma"), ("b", "mb")], "am": [("a-an", "ma"), ("b-an", "mb")]}
        backends = [backend(self.a), backend(self.b),
                    backend("a-an", "anthropic", url=self.a.url),
                    backend("b-an", "anthropic", url=self.b.url)]
        px = self.proxy(models, backends=backends)
        self._cool_both(px, anthropic)
        r = self.post(px, "am" if anthropic else "m", anthropic)
        self.assertEqual(r.status, 503, r.text)
        self.assertEqual(self.hits(), [], "no route may be contacted while all cool down")
        ra = r.headers.get("retry-after")
        self.assertIsNotNone(ra, "Retry-After on the all-cooling 503")
        # Soonest expiry: a's 2 s cooldown, not b's 7 s.
        self.assertIn(int(ra), (1, 2), f"Retry-After {ra} is not the soonest expiry")
        self.assertIn("application/json", r.headers.get("content-type", ""))
        body = r.json()
        if anthropic:
            self.assertEqual(body["type"], "error", body)
            self.assertIsInstance(body["error"]["type"], str)
            self.assertIsInstance(body["error"]["message"], str)
        else:
            self.assertNotIn("type", body)
            self.assertIsInstance(body["error"]["message"], str)
            self.assertIsInstance(body["error"]["type"], str)
        return px

    def test_all_cooling_503_retry_after_openai(self):
        self._all_cooling_503(False)

    def test_all_cooling_503_retry_after_anthropic(self):
        self._all_cooling_503(True)

    def test_all_cooling_try_soonest(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]},
                        fallback={"when_all_cooling": "try_soonest"})
        self.a.script({"status": 429, "headers": {"Retry-After": "7"},
                       "body": {"error": {"message": "rate limited", "type": "rate_limit_error"}}})
        self.b.script({"status": 500})
        self.assertEqual(self.post(px, "m").status, 500)
        for m in self.mocks:
            m.reset()
        # Both cool: a for 7 s, b for 2 s. b's cooldown ends first, so b is tried (and answers).
        r = self.post(px, "m")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.hits(), [("b", "mb")])

    def _reload_keeps_cooldown(self, via_signal):
        models = {"m": [("a", "ma"), ("b", "mb")]}
        px = self.proxy(models)
        self.a.script({"status": 429, "headers": {"Retry-After": "7"},
                       "body": {"error": {"message": "rate limited", "type": "rate_limit_error"}}})
        self.assertEqual(self.post(px, "m").status, 200)
        n_reloads = px.log_text().count("configuration reloaded")
        new_cfg = config([backend(m) for m in self.mocks], {**models, "extra": [("c", "xc")]},
                         fallback=COOL, timeout={"ttft_timeout": "500ms"})
        if via_signal:
            px.reload(new_cfg, signal.SIGHUP)
        else:
            px.write_config(new_cfg)
            r = request(px.url, "POST", "/admin/reload", headers=auth())
            self.assertEqual(r.status, 200, r.text)
        wait_until(lambda: px.log_text().count("configuration reloaded") > n_reloads,
                   msg="reload applied")
        cfg = request(px.url, "GET", "/admin/config", headers=auth()).json()
        self.assertIn("extra", cfg["models"], "the new config is live")
        p = pair_health(px, "a", "ma")
        self.assertTrue(p["cooling"], p)
        self.assertGreater(p["remaining_ms"], 4000, p)
        for m in self.mocks:
            m.reset()
        self.assertEqual(self.post(px, "m").status, 200)
        self.assertEqual(self.hits(), [("b", "mb")], "a cooled pair was contacted after reload")

    def test_cooldown_survives_sighup_reload(self):
        self._reload_keeps_cooldown(True)

    def test_cooldown_survives_admin_reload(self):
        self._reload_keeps_cooldown(False)


class TestReadyz(FallbackCase):
    def readyz(self, px):
        return request(px.url, "GET", "/readyz")

    def test_readyz_follows_cooldowns(self):
        px = self.proxy({"m": [("a", "ma"), ("b", "mb")]})
        self.assertEqual(self.readyz(px).status, 200)
        self.a.script({"status": 500})
        self.assertEqual(self.post(px, "m").status, 200)
        r = self.readyz(px)
        self.assertEqual(r.status, 200, "b/mb is still usable: " + r.text)
        self.b.script({"status": 500})
        self.a.reset()
        # a is cooling, so only b is tried; it fails too. Everything cools now.
        self.assertEqual(self.post(px, "m").status, 500)
        r = self.readyz(px)
        self.assertEqual(r.status, 503, r.text)
        self.assertFalse(r.json()["ready"])
        wait_until(lambda: self.readyz(px).status == 200, timeout=4, msg="/readyz back to 200")


if __name__ == "__main__":
    unittest.main()
