"""The request core's fixes (issue: request core), over real sockets:

- a failure never reaches a client as a 2xx: an in-band first-event error, or a 200 whose body is
  an error, with no route left, is a non-2xx in the client's protocol, and the official SDKs raise;
- error types and codes name the failure (rate_limit_exceeded, insufficient_quota / billing_error,
  invalid_api_key, context_length_exceeded) instead of one generic code;
- under 200 concurrent streams, once a backend has failed no new request reaches it during its
  cooldown or Retry-After, even while streams it started earlier finish successfully (load probe
  L1);
- streams still open at the drain deadline end with an error event and a proper chunked end, and
  the access line says so (load probe L2).
"""

import json
import os
import signal
import subprocess
import threading
import time
import unittest

from harness import (PROXY_KEY, SOURCE_DIR, Mock, Proxy, access_entries, auth, backend, config,
                     pair_health, request, require, require_proxy, stream, wait_until)

SDK_DIR = os.path.join(SOURCE_DIR, "tests", "sdk")


def run_sdk(scenario: dict, timeout: float = 60.0) -> dict:
    require(os.path.isdir(os.path.join(SDK_DIR, "node_modules")), "tests/sdk/node_modules")
    p = subprocess.run(["node", "client.mjs", json.dumps(scenario)], cwd=SDK_DIR,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "AI_SDK_LOG_WARNINGS": "false"})
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise AssertionError(f"sdk client printed nothing (rc={p.returncode}): {p.stderr[-2000:]}")
    return json.loads(lines[-1])


OA_RATE = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                     "code": "rate_limit_exceeded"}}
AN_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def chat(model, stream_=False):
    return {"model": model, "stream": stream_, "messages": [{"role": "user", "content": "hi"}]}


def msg(model, stream_=False):
    return {"model": model, "max_tokens": 16, "stream": stream_,
            "messages": [{"role": "user", "content": "hi"}]}


class TestNeverA2xxFailure(unittest.TestCase):
    """One route per alias, so nothing is left to fail over to."""

    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.oa = Mock("oa").start()
        cls.an = Mock("an").start()
        cfg = config([backend(cls.oa), backend(cls.an, "anthropic")],
                     {"o": [("oa", "gpt-up")], "a": [("an", "claude-up")],
                      "o-via-a": [("an", "claude-up-2")], "a-via-o": [("oa", "gpt-up-2")]},
                     fallback={"cooldown_seconds": 1, "enable_backoff": False})
        cls.px = Proxy(cfg).start()

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()
        cls.oa.stop()
        cls.an.stop()

    def setUp(self):
        self.oa.reset()
        self.an.reset()
        time.sleep(1.05)  # the previous test's 1 s cooldown

    def script_in_band(self):
        self.oa.script({"sse": {"events": [{"data": OA_RATE}]}})
        self.an.script({"sse": {"events": [{"event": "error", "data": AN_OVERLOADED}]}})

    def test_in_band_first_event_error_is_not_200(self):
        for path, body, proto, want in (
                ("/v1/chat/completions", chat("o", True), "openai", 429),
                ("/v1/chat/completions", chat("o-via-a", True), "openai", 503),
                ("/v1/messages", msg("a", True), "anthropic", 529),
                ("/v1/messages", msg("a-via-o", True), "anthropic", 429)):
            self.script_in_band()
            time.sleep(1.05)
            r = request(self.px.url, "POST", path, body, headers=auth(proto))
            self.assertEqual(r.status, want, f"{body['model']}: {r.text}")
            b = r.json()
            if proto == "anthropic":
                self.assertEqual(b["type"], "error")
                self.assertEqual(b["error"]["type"],
                                 "overloaded_error" if want == 529 else "rate_limit_error")
            else:
                self.assertEqual(b["error"]["code"],
                                 "overloaded" if want == 503 else "rate_limit_exceeded")

    def test_error_inside_a_200_body_is_not_200(self):
        self.oa.script({"status": 200, "body": {"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota",
            "code": "insufficient_quota"}}})
        r = request(self.px.url, "POST", "/v1/chat/completions", chat("o"), headers=auth())
        self.assertEqual(r.status, 429, r.text)
        self.assertEqual(r.json()["error"]["code"], "insufficient_quota")
        # The same quota failure told to an Anthropic client is a billing error (not retried by
        # Claude Code), not a rate limit.
        time.sleep(1.05)
        self.oa.script({"status": 429, "body": {"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota",
            "code": "insufficient_quota"}}})
        r = request(self.px.url, "POST", "/v1/messages", msg("a-via-o"), headers=auth("anthropic"))
        self.assertEqual(r.status, 402, r.text)
        self.assertEqual(r.json()["error"]["type"], "billing_error")

    def test_auth_failure_code(self):
        self.oa.script({"status": 401, "body": {"error": {"message": "Incorrect API key",
                                                          "code": "invalid_api_key"}}})
        r = request(self.px.url, "POST", "/v1/chat/completions", chat("o"), headers=auth())
        self.assertEqual(r.status, 401, r.text)
        self.assertEqual(r.json()["error"]["code"], "invalid_api_key")

    def test_sdks_raise(self):
        cases = [("openai", "/v1", "o"), ("openai", "/v1", "o-via-a"), ("anthropic", "", "a"),
                 ("anthropic", "", "a-via-o")]
        for sdk, suffix, alias in cases:
            for stream_ in (True, False):
                time.sleep(1.05)
                if stream_:
                    self.script_in_band()
                else:
                    self.oa.script({"status": 200, "body": {"error": OA_RATE["error"]}})
                    self.an.script({"status": 200, "body": AN_OVERLOADED})
                out = run_sdk({"sdk": sdk, "baseURL": self.px.url + suffix, "apiKey": PROXY_KEY,
                               "model": alias, "stream": stream_})
                what = f"{sdk} {alias} stream={stream_}"
                self.assertFalse(out["ok"], f"{what}: the SDK did not raise: {out}")
                self.assertIsNotNone(out["error"].get("status"), f"{what}: {out}")
                self.assertGreaterEqual(out["error"]["status"], 400, f"{what}: {out}")


class TestLateSuccessUnderLoad(unittest.TestCase):
    """Load probe L1: 200 streams started on A before A breaks keep finishing successfully; none of
    those successes may clear A's fresh cooldown, so no new request reaches A during it."""

    def run_case(self, fail_step: dict, cooldown_s: int, quiet_s: float):
        require_proxy()
        with Mock("a") as a, Mock("b") as b:
            cfg = config([backend(a), backend(b)], {"m": [("a", "ma", 1), ("b", "mb", 2)]},
                         fallback={"cooldown_seconds": cooldown_s, "enable_backoff": False,
                                   "enable_circuit_breaker": True,
                                   "circuit_failure_threshold": 1000},
                         server={"threads": 2})
            with Proxy(cfg) as px:
                n = 200
                a.script({"sse": {"generate": {"protocol": "openai", "chunks": 20,
                                               "interval_ms": 100}}, "times": n},
                         {**fail_step, "times": -1})
                results = []
                lock = threading.Lock()

                def one_stream():
                    try:
                        with stream(px.url, "/v1/chat/completions", chat("m", True),
                                    headers=auth(), timeout=30) as s:
                            s.all()
                            ok = s.status == 200 and s.complete
                    except OSError:
                        ok = False
                    with lock:
                        results.append(ok)

                threads = [threading.Thread(target=one_stream) for _ in range(n)]
                for t in threads:
                    t.start()
                wait_until(lambda: len(a.requests()) >= n, timeout=20, msg="200 streams on A")
                # A breaks: the next request gets the failure and fails over to B.
                r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
                self.assertEqual(r.status, 200, r.text)
                t_fail = time.monotonic()
                a_before = len(a.requests())
                # New requests while the 200 old streams finish (each reports a success).
                later = []
                while time.monotonic() - t_fail < quiet_s:
                    later.append(request(px.url, "POST", "/v1/chat/completions", chat("m"),
                                         headers=auth()).status)
                    time.sleep(0.02)
                for t in threads:
                    t.join(40)
                self.assertEqual(results.count(True), n, "every old stream completed")
                self.assertTrue(all(s == 200 for s in later), later)
                self.assertEqual(len(a.requests()), a_before,
                                 f"{len(a.requests()) - a_before} new request(s) reached A during "
                                 f"its cooldown ({len(later)} sent)")
                self.assertTrue(pair_health(px, "a", "ma")["cooling"])

    def test_500_cooldown_holds(self):
        self.run_case({"status": 500, "body": {"error": {"message": "boom"}}}, 5, 2.5)

    def test_429_retry_after_holds(self):
        self.run_case({"status": 429, "headers": {"retry-after": "4"},
                       "body": {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}},
                      1, 2.5)


class TestDrainDeadline(unittest.TestCase):
    """Load probe L2: streams longer than shutdown_timeout end with an error event and a proper
    chunked end, and are logged as cut by the shutdown, not as client_gone."""

    def test_streams_cut_at_deadline_get_error_event(self):
        require_proxy()
        with Mock("up") as up:
            cfg = config([up], {"m": [("up", "x")]}, server={"shutdown_timeout": "1s"})
            px = Proxy(cfg).start()
            try:
                up.script({"sse": {"generate": {"protocol": "openai", "chunks": 150,
                                                "interval_ms": 100}}, "times": 5})
                streams = [stream(px.url, "/v1/chat/completions", chat("m", True), headers=auth(),
                                  timeout=15) for _ in range(5)]
                for s in streams:
                    self.assertEqual(s.status, 200)
                time.sleep(0.3)
                px.proc.send_signal(signal.SIGTERM)
                for s in streams:
                    events = s.all()
                    self.assertTrue(s.complete, "the chunked stream was ended properly")
                    last = json.loads(events[-1].data)
                    self.assertIn("error", last, events[-1].data)
                    self.assertNotEqual(events[-1].data, "[DONE]")
                    s.close()
                self.assertEqual(px.proc.wait(10), 0)
                lines = [e for e in access_entries(px) if e.get("path") == "/v1/chat/completions"]
                self.assertEqual(len(lines), 5)
                for e in lines:
                    self.assertEqual(e.get("stream_end"), "shutdown", e)
                    self.assertEqual(e.get("abort"), "shutdown", e)
                    self.assertNotIn("client_gone", e)
            finally:
                px.stop(check=False)


if __name__ == "__main__":
    unittest.main()
