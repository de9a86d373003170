"""Resilience, per error class: what the client gets, which backends were hit in which order,
the cooldown left behind in /admin/backends, the access-log attempt list, and the final answer
when every attempt failed.

Three mocks (a, b, c) live for the whole class; each test starts its own proxy so cooldowns
never leak between tests. Cooldowns are 2 s, ttft_timeout 500 ms.
"""

import concurrent.futures
import email.utils
import json
import time
import unittest

from harness import (Mock, Proxy, access_entry, auth, backend, backend_health, backend_key,
                     config, free_port, pair_health, require_proxy, request, upstream_hits)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "am", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
COOL_MS = 2000

# Upstream error bodies (exact bytes, so verbatim relays can be compared byte for byte).
OA_INVALID = ('{"error":{"message":"Invalid value for \'temperature\': must be <= 2.",'
              '"type":"invalid_request_error","param":"temperature","code":null}}')
OA_CONTEXT = ('{"error":{"message":"This model\'s maximum context length is 8192 tokens. However, '
              'your messages resulted in 9000 tokens.","type":"invalid_request_error",'
              '"param":"messages","code":"context_length_exceeded"}}')
AN_CONTEXT = ('{"type":"error","error":{"type":"invalid_request_error",'
              '"message":"prompt is too long: 210000 tokens > 200000 maximum"}}')
OA_POLICY = ('{"error":{"message":"The response was filtered due to the prompt triggering Azure '
             'OpenAI\'s content management policy.","type":null,"param":"prompt",'
             '"code":"content_filter","status":400}}')
AN_OVERLOADED = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'


class ClassCase(unittest.TestCase):
    """Mocks a, b, c for the class (reset per test); :meth:`proxy` starts a per-test proxy."""

    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a, cls.b, cls.c = (Mock(n).start() for n in ("a", "b", "c"))

    @classmethod
    def tearDownClass(cls):
        for m in (cls.a, cls.b, cls.c):
            m.stop()

    def setUp(self):
        for m in (self.a, self.b, self.c):
            m.reset()

    def proxy(self, first=None, **extra) -> Proxy:
        """A proxy with alias m -> (first|a, ma), (b, mb) for OpenAI clients and alias am ->
        (a-an, ma), (b-an, mb) on the same mocks as Anthropic backends. ``first`` replaces
        backend a (e.g. a dead URL)."""
        a = first or backend(self.a)
        extra.setdefault("fallback", {"cooldown_seconds": 2})
        extra.setdefault("timeout", {"ttft_timeout": "500ms", "connect_timeout": "2s"})
        cfg = config(
            [a, backend(self.b), backend(self.c),
             backend("a-an", "anthropic", url=self.a.url), backend("b-an", "anthropic", url=self.b.url)],
            {"m": [(a["name"], "ma"), ("b", "mb")],
             "am": [("a-an", "ma"), ("b-an", "mb")]},
            **extra)
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def chat(self, px, body=None):
        return request(px.url, "POST", "/v1/chat/completions", body or CHAT, headers=auth())

    def msg(self, px, body=None):
        return request(px.url, "POST", "/v1/messages", body or MSG, headers=auth("anthropic"))

    # ---- shared checks -------------------------------------------------------------------

    def assert_cooling(self, px, name, model, cls, min_ms=1, max_ms=COOL_MS):
        p = pair_health(px, name, model)
        self.assertTrue(p["cooling"], p)
        self.assertEqual(p["class"], cls, p)
        self.assertGreaterEqual(p["remaining_ms"], min_ms, p)
        self.assertLessEqual(p["remaining_ms"], max_ms, p)
        return p

    def assert_not_cooling(self, px, name, model):
        p = pair_health(px, name, model)
        self.assertFalse(p["cooling"], p)

    def assert_attempts(self, px, r, expected):
        """The access line of response r lists exactly ``expected`` [(backend, model, class,
        status)] in order."""
        rid = r.headers.get("x-request-id")
        self.assertTrue(rid, "X-Request-Id")
        e = access_entry(px, rid)
        got = [(x["backend"], x["model"], x["class"], x["status"]) for x in e["attempts"]]
        self.assertEqual(got, expected, e)
        self.assertEqual(e["status"], r.status)
        return e

    def failover_case(self, step, cls, status, anthropic=False, min_cool_ms=1,
                      max_cool_ms=COOL_MS, first=None):
        """Mock a answers ``step``; the client must get b's answer, a must cool down with class
        ``cls``, and a second request must skip a while it cools."""
        px = self.proxy(first)
        if step is not None:
            self.a.script(step)
        a_name = first["name"] if first else ("a-an" if anthropic else "a")
        b_name = "b-an" if anthropic else "b"
        r = self.msg(px) if anthropic else self.chat(px)
        self.assertEqual(r.status, 200, r.text)
        if anthropic:
            self.assertEqual(r.json()["type"], "message")
            self.assertIn("Hello from b", r.json()["content"][0]["text"])
        else:
            self.assertIn("Hello from b", r.json()["choices"][0]["message"]["content"])
        want_a = 0 if first else 1
        self.assertEqual(len(self.a.requests()), want_a)
        self.assertEqual(len(self.b.requests()), 1)
        if want_a:
            self.assertEqual([h[0] for h in upstream_hits(self.a, self.b)], ["a", "b"])
        self.assertEqual(json.loads(self.b.requests()[0]["body"])["model"], "mb")
        self.assert_attempts(px, r, [(a_name, "ma", cls, status), (b_name, "mb", "ok", 200)])
        self.assert_cooling(px, a_name, "ma", cls, min_cool_ms, max_cool_ms)
        self.assert_not_cooling(px, b_name, "mb")
        bh = backend_health(px, a_name)
        self.assertEqual(bh["last_error"]["class"], cls, bh)
        # The cooling pair is skipped by the next request: a is not contacted again.
        self.a.reset()
        self.b.reset()
        r2 = self.msg(px) if anthropic else self.chat(px)
        self.assertEqual(r2.status, 200, r2.text)
        self.assertEqual(len(self.a.requests()), 0, "cooling pair was contacted")
        self.assertEqual(len(self.b.requests()), 1)
        self.assert_attempts(px, r2, [(b_name, "mb", "ok", 200)])
        return px, r

    def verbatim_case(self, body, cls, anthropic=False, status=400):
        """Mock a answers ``status`` with ``body``: the client gets exactly that (status and
        body), b is never tried, nothing cools down."""
        px = self.proxy()
        self.a.script({"status": status, "body": body})
        r = self.msg(px) if anthropic else self.chat(px)
        self.assertEqual(r.status, status, r.text)
        self.assertEqual(r.text, body, "the upstream error must be relayed verbatim")
        self.assertIn("application/json", r.headers.get("content-type", ""))
        self.assertEqual(len(self.a.requests()), 1)
        self.assertEqual(len(self.b.requests()), 0, "a request-shape error must not fail over")
        a_name = "a-an" if anthropic else "a"
        self.assert_attempts(px, r, [(a_name, "ma", cls, status)])
        self.assert_not_cooling(px, a_name, "ma")
        # And the next request goes to a again (no cooldown was applied).
        self.a.reset()
        r2 = self.msg(px) if anthropic else self.chat(px)
        self.assertEqual(r2.status, 200, r2.text)
        self.assertEqual(len(self.a.requests()), 1)
        self.assertEqual(len(self.b.requests()), 0)
        return px, r


class TestFailoverClasses(ClassCase):
    def test_network_connection_refused(self):
        dead = backend("dead", url=f"http://127.0.0.1:{free_port()}/v1")
        self.failover_case(None, "network", 0, first=dead)

    def test_network_mock_close(self):
        self.failover_case({"close": True}, "network", 0)

    def test_timeout_ttft_non_stream(self):
        t0 = time.monotonic()
        self.failover_case({"delay_ms": 3000}, "timeout", 0)
        elapsed = time.monotonic() - t0
        # ttft 500 ms + the second request: well under the mock's 3 s delay.
        self.assertLess(elapsed, 2.5, "ttft_timeout did not cut the slow attempt")

    def test_rate_limit_retry_after_sets_cooldown(self):
        step = {"status": 429, "headers": {"Retry-After": "7"},
                "body": {"error": {"message": "Rate limit reached for requests",
                                   "type": "requests", "code": "rate_limit_exceeded"}}}
        # cooldown_seconds is 2: the Retry-After hint lengthens it to at least 7 s.
        self.failover_case(step, "rate_limit", 429, min_cool_ms=6000, max_cool_ms=7000)

    def test_rate_limit_retry_after_ms_and_http_date(self):
        """The other hint forms reach the classifier through the real header path."""
        step = {"status": 429, "headers": {"retry-after-ms": "5000"},
                "body": {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}}
        self.failover_case(step, "rate_limit", 429, min_cool_ms=4000, max_cool_ms=5000)
        px = self.proxy()
        self.a.reset()
        when = email.utils.formatdate(time.time() + 6, usegmt=True)
        self.a.script({"status": 429, "headers": {"Retry-After": when},
                       "body": {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}})
        self.assertEqual(self.chat(px).status, 200)
        self.assert_cooling(px, "a", "ma", "rate_limit", 4000, 6000)

    def test_overloaded_503_retry_after_lengthens_cooldown(self):
        step = {"status": 503, "headers": {"Retry-After": "5"},
                "body": {"error": {"message": "Service Unavailable", "type": "server_error"}}}
        self.failover_case(step, "server", 503, min_cool_ms=4000, max_cool_ms=5000)

    def test_overloaded_529_anthropic(self):
        step = {"status": 529, "body": AN_OVERLOADED}
        self.failover_case(step, "overloaded", 529, anthropic=True)

    def test_overloaded_503_message(self):
        step = {"status": 503, "body": {"error": {"message": "The engine is currently overloaded, "
                                                  "please try again later", "type": "server_error"}}}
        self.failover_case(step, "overloaded", 503)

    def test_server_500(self):
        self.failover_case({"status": 500}, "server", 500)

    def test_server_502(self):
        self.failover_case({"status": 502, "body": "<html>502 Bad Gateway</html>",
                            "headers": {"content-type": "text/html"}}, "server", 502)

    def test_auth_401_invalid_api_key(self):
        step = {"status": 401, "body": {"error": {
            "message": f"Incorrect API key provided: {backend_key('a')}.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}}
        px, r = self.failover_case(step, "auth", 401)
        self.assertNotIn(backend_key("a"), json.dumps(backend_health(px, "a")),
                         "backend key leaked into /admin/backends")

    def test_quota_402(self):
        step = {"status": 402, "body": {"error": {"message": "Insufficient balance",
                                                  "type": "billing_error"}}}
        self.failover_case(step, "quota", 402)

    def test_quota_429_insufficient_quota(self):
        step = {"status": 429, "body": {"error": {
            "message": "You exceeded your current quota, please check your plan and billing "
                       "details.", "type": "insufficient_quota", "code": "insufficient_quota"}}}
        self.failover_case(step, "quota", 429)

    def test_model_not_found_404(self):
        step = {"status": 404, "body": {"error": {
            "message": "The model `ma` does not exist or you do not have access to it.",
            "type": "invalid_request_error", "param": None, "code": "model_not_found"}}}
        self.failover_case(step, "model_not_found", 404)


class TestVerbatimClasses(ClassCase):
    def test_client_400_invalid_request(self):
        self.verbatim_case(OA_INVALID, "client")

    def test_context_length_openai(self):
        self.verbatim_case(OA_CONTEXT, "context_length")

    def test_context_length_anthropic_prompt_too_long(self):
        self.verbatim_case(AN_CONTEXT, "context_length", anthropic=True)

    def test_content_policy(self):
        self.verbatim_case(OA_POLICY, "content_policy")

    def test_client_error_counts_no_breaker_failure(self):
        """With breakers on (threshold 2), two request-shape errors in a row do not open a's
        breaker: the backend answered; the request was at fault."""
        px = self.proxy(fallback={"cooldown_seconds": 2, "enable_circuit_breaker": True,
                                  "circuit_failure_threshold": 2, "circuit_open_timeout": 1})
        self.a.script({"status": 400, "body": OA_INVALID, "times": 2})
        for _ in range(2):
            self.assertEqual(self.chat(px).status, 400)
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["state"], "closed", br)
        self.assertEqual(len(self.b.requests()), 0)


class TestAllFailed(ClassCase):
    def test_all_http_errors_last_status_and_attempt_list(self):
        px = self.proxy()
        self.a.script({"status": 500, "body": {"error": {"message": "boom a", "type": "server_error"}}})
        self.b.script({"status": 503, "body": {"error": {
            "message": f"upstream b down (key {backend_key('b')})", "type": "server_error"}}})
        r = self.chat(px)
        self.assertEqual(r.status, 503, r.text)
        err = r.json()["error"]
        msg = err["message"]
        self.assertIn("a/ma", msg)
        self.assertIn("b/mb", msg)
        self.assertIn("server", msg)
        self.assertLess(msg.index("a/ma"), msg.index("b/mb"), "attempts listed in order")
        for name in ("a", "b", "c", "a-an", "b-an"):
            self.assertNotIn(backend_key(name), r.text, "backend key in the client's error")
        self.assertEqual(upstream_hits(self.a, self.b, self.c)[0][0], "a")
        self.assertEqual([h[0] for h in upstream_hits(self.a, self.b, self.c)], ["a", "b"])
        self.assert_attempts(px, r, [("a", "ma", "server", 500), ("b", "mb", "server", 503)])

    def test_all_http_errors_anthropic_shape(self):
        px = self.proxy()
        self.a.script({"status": 529, "body": AN_OVERLOADED})
        self.b.script({"status": 529, "body": AN_OVERLOADED})
        r = self.msg(px)
        self.assertEqual(r.status, 529, r.text)
        b = r.json()
        self.assertEqual(b["type"], "error")
        self.assertIn("a-an/ma", b["error"]["message"])
        self.assertIn("b-an/mb", b["error"]["message"])
        self.assertIn("overloaded", b["error"]["message"])

    def test_all_network_502(self):
        dead = backend("dead", url=f"http://127.0.0.1:{free_port()}/v1")
        px = self.proxy(dead)
        self.b.script({"close": True})
        r = self.chat(px)
        self.assertEqual(r.status, 502, r.text)
        msg = r.json()["error"]["message"]
        self.assertIn("dead/ma", msg)
        self.assertIn("b/mb", msg)
        self.assertIn("network", msg)
        for name in ("dead", "b"):
            self.assertNotIn(backend_key(name), r.text)
        self.assert_attempts(px, r, [("dead", "ma", "network", 0), ("b", "mb", "network", 0)])

    def test_all_timeouts_504(self):
        px = self.proxy()
        self.a.script({"delay_ms": 3000})
        self.b.script({"delay_ms": 3000})
        t0 = time.monotonic()
        r = self.chat(px)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504, r.text)
        msg = r.json()["error"]["message"]
        self.assertIn("a/ma", msg)
        self.assertIn("b/mb", msg)
        self.assertIn("timeout", msg)
        self.assertLess(elapsed, 2.5, "two 500 ms ttft timeouts")
        self.assert_attempts(px, r, [("a", "ma", "timeout", 0), ("b", "mb", "timeout", 0)])
        self.assert_cooling(px, "a", "ma", "timeout")
        self.assert_cooling(px, "b", "mb", "timeout")

    def test_total_deadline_504(self):
        """total_timeout bounds the whole request: a slow first attempt (within its ttft) that
        runs into the deadline ends the request with 504 without trying further routes, and the
        healthy second backend is not blamed. Four requests at once (four aliases), because the
        wrong outcome depends on how the deadline timer rounds."""
        models = {f"d{i}": [("a", f"da{i}"), ("b", f"db{i}")] for i in range(4)}
        cfg = config([backend(self.a), backend(self.b)], models,
                     fallback={"cooldown_seconds": 2},
                     timeout={"ttft_timeout": "5s", "total_timeout": "1s"})
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        self.a.script({"delay_ms": 3000, "times": 4})
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            rs = list(ex.map(lambda i: self.chat(px, {**CHAT, "model": f"d{i}"}), range(4)))
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0)
        for i, r in enumerate(rs):
            self.assertEqual(r.status, 504, r.text)
            self.assertIn(f"a/da{i}", r.json()["error"]["message"])
            # b did nothing wrong: the request's own deadline must not cool it down.
            self.assert_not_cooling(px, "b", f"db{i}")
        self.assertEqual(len(self.b.requests()), 0, "an attempt was started after the deadline")


class TestAccessLog(ClassCase):
    def test_access_line_lists_attempts(self):
        px = self.proxy()
        self.a.script({"status": 429, "headers": {"Retry-After": "1"},
                       "body": {"error": {"message": "slow down", "type": "rate_limit_error"}}})
        r = self.chat(px)
        self.assertEqual(r.status, 200)
        e = self.assert_attempts(px, r, [("a", "ma", "rate_limit", 429), ("b", "mb", "ok", 200)])
        self.assertEqual(e["alias"], "m")
        self.assertEqual(e["status"], 200)
        self.assertIn("duration_ms", e["attempts"][0])
        self.assertTrue(e["attempts"][0].get("cause"), "a failed attempt has a cause")
        self.assertNotIn(backend_key("a"), json.dumps(e))


if __name__ == "__main__":
    unittest.main()
