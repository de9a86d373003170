"""GET /metrics after scripted traffic through llm-mock: counters, histograms and gauges move
exactly as the traffic says; the exposition passes ``promtool check metrics``; /admin/stats has
the reference's keys and agrees with /metrics.

One proxy for the class. Every scenario uses its own alias and backend names (several backend
entries point at the same mock), so cooldowns and breakers of one test never touch another, and
every assertion is on the delta between a scrape before and a scrape after the traffic.
"""

import json
import os
import subprocess
import unittest

from harness import (Mock, require, Proxy, auth, backend, config, has_metric, metric, pair_health,
                     parse_metrics, require_proxy, request, scrape, stream, wait_until)

PROMTOOL = "/usr/bin/promtool"


def chat(model, **kw):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}


def msg(model, **kw):
    return {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}],
            **kw}


def body_len(b) -> int:
    return len(json.dumps(b).encode())


# An Anthropic stream whose usage is split over message_start (input, cache) and message_delta
# (output), with numbers no default answer produces.
AN_USAGE_EVENTS = [
    {"event": "message_start", "data": {"type": "message_start", "message": {
        "id": "msg_usage", "type": "message", "role": "assistant", "model": "c-an", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 7,
                  "cache_creation_input_tokens": 0, "output_tokens": 1}}}},
    {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}},
    {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": "Hi"}}},
    {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
    {"event": "message_delta", "data": {"type": "message_delta",
                                        "delta": {"stop_reason": "end_turn",
                                                  "stop_sequence": None},
                                        "usage": {"output_tokens": 23}}},
    {"event": "message_stop", "data": {"type": "message_stop"}},
]

SERVER_ERROR = {"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}}


class Delta:
    """Scrape now; ``d(name, **labels)`` is the change of that sum since construction."""

    def __init__(self, px):
        self.px = px
        self.before = scrape(px)
        self.after = None

    def __call__(self, name, **labels):
        if self.after is None:
            self.after = scrape(self.px)
        return metric(self.after, name, **labels) - metric(self.before, name, **labels)


class TestMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("a").start()
        cls.b = Mock("b").start()
        cls.an = Mock("an").start()
        try:
            cfg = config(
                [backend("oa", url=cls.a.url + "/v1"), backend("fa", url=cls.a.url + "/v1"),
                 backend("fb", url=cls.b.url + "/v1"), backend("cut", url=cls.a.url + "/v1"),
                 backend("brk", url=cls.a.url + "/v1"), backend("brk-ok", url=cls.b.url + "/v1"),
                 backend("pa", url=cls.a.url + "/v1"), backend("pb", url=cls.b.url + "/v1"),
                 backend("an", url=cls.an.url, protocol="anthropic")],
                {"plain": [("oa", "m-oa")],
                 "fo": [("fa", "m-fa"), ("fb", "m-fb")],
                 "cutter": [("cut", "m-cut")],
                 "brk": [("brk", "x1"), ("brk", "x2"), ("brk-ok", "m-ok")],
                 "prom": [("pa", "m-pa"), ("pb", "m-pb")],
                 "claude": [("an", "c-an")]},
                fallback={"enable_backoff": False, "cooldown_seconds": 120, "max_retries": 0,
                          "enable_circuit_breaker": True, "circuit_failure_threshold": 2,
                          "circuit_open_timeout": 120})
            cls.px = Proxy(cfg).start()
        except BaseException:
            for m in (cls.a, cls.b, cls.an):
                m.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        errors = []
        for p in (cls.px, cls.a, cls.b, cls.an):
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))

    def setUp(self):
        for m in (self.a, self.b, self.an):
            m.reset()

    def post(self, path, body, protocol="openai"):
        return request(self.px.url, "POST", path, body, headers=auth(protocol))

    # ---- counters and histograms of plain traffic -------------------------------------------

    def test_requests_histograms_bytes_and_tokens_non_stream(self):
        d = Delta(self.px)
        bodies = [chat("plain"), chat("plain", temperature=0.5), chat("plain", user="u-1")]
        resps = [self.post("/v1/chat/completions", b) for b in bodies]
        for r in resps:
            self.assertEqual(r.status, 200, r.text)
        self.assertEqual(d("llm_proxy_requests_total", alias="plain", protocol="openai",
                           status="200"), 3)
        self.assertEqual(d("llm_proxy_request_duration_seconds_count", alias="plain"), 3)
        self.assertEqual(d("llm_proxy_ttfb_seconds_count", alias="plain"), 3)
        self.assertGreater(d("llm_proxy_request_duration_seconds_sum", alias="plain"), 0)
        self.assertEqual(d("llm_proxy_upstream_attempts_total", backend="oa", model="m-oa",
                           **{"class": "ok"}), 3)
        self.assertEqual(d("llm_proxy_upstream_attempt_duration_seconds_count", backend="oa"), 3)
        self.assertEqual(d("llm_proxy_upstream_ttft_seconds_count", backend="oa"), 3)
        self.assertEqual(d("llm_proxy_retries_total"), 0)
        self.assertEqual(d("llm_proxy_request_bytes_total", alias="plain"),
                         sum(body_len(b) for b in bodies))
        self.assertEqual(d("llm_proxy_response_bytes_total", alias="plain"),
                         sum(len(r.body) for r in resps))
        usage = [r.json()["usage"] for r in resps]
        self.assertEqual(d("llm_proxy_tokens_total", alias="plain", backend="oa", type="input"),
                         sum(u["prompt_tokens"] for u in usage))
        self.assertEqual(d("llm_proxy_tokens_total", alias="plain", backend="oa", type="output"),
                         sum(u["completion_tokens"] for u in usage))

    def test_protocol_label_and_unknown_alias(self):
        d = Delta(self.px)
        r = self.post("/v1/messages", msg("claude"), "anthropic")
        self.assertEqual(r.status, 200, r.text)
        bad = self.post("/v1/chat/completions", chat("no-such-alias"))
        self.assertGreaterEqual(bad.status, 400)
        self.assertEqual(d("llm_proxy_requests_total", alias="claude", protocol="anthropic",
                           status="200"), 1)
        self.assertEqual(d("llm_proxy_requests_total", alias="claude", protocol="openai"), 0)
        self.assertEqual(d("llm_proxy_requests_total", alias="_unknown", protocol="openai",
                           status=str(bad.status)), 1)
        self.assertFalse(has_metric(d.after, "llm_proxy_requests_total", alias="no-such-alias"),
                         "an unconfigured alias must not become a label value")
        u = r.json()["usage"]
        self.assertEqual(d("llm_proxy_tokens_total", alias="claude", backend="an", type="input"),
                         u["input_tokens"])
        self.assertEqual(d("llm_proxy_tokens_total", alias="claude", backend="an", type="output"),
                         u["output_tokens"])

    # ---- failover, retries, cooldown, breaker, usable routes --------------------------------

    def test_failover_counts_server_then_ok_and_cooldown_gauges(self):
        before = scrape(self.px)
        self.assertEqual(metric(before, "llm_proxy_alias_usable_routes", alias="fo"), 2)
        self.assertEqual(metric(before, "llm_proxy_cooldown_active", backend="fa", model="m-fa"), 0)
        d = Delta(self.px)
        self.a.script(SERVER_ERROR)
        r = self.post("/v1/chat/completions", chat("fo"))
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(r.json()["choices"][0]["message"]["content"].startswith("Hello from b"))
        self.assertEqual(d("llm_proxy_upstream_attempts_total", backend="fa", model="m-fa",
                           **{"class": "server"}), 1)
        self.assertEqual(d("llm_proxy_upstream_attempts_total", backend="fb", model="m-fb",
                           **{"class": "ok"}), 1)
        self.assertEqual(d("llm_proxy_upstream_attempts_total", backend="fa",
                           **{"class": "ok"}), 0)
        self.assertEqual(d("llm_proxy_failovers_total", reason="server"), 1)
        self.assertEqual(d("llm_proxy_retries_total"), 1)
        self.assertEqual(d("llm_proxy_requests_total", alias="fo", status="200"), 1)
        self.assertEqual(d("llm_proxy_upstream_attempt_duration_seconds_count", backend="fa"), 1)
        after = d.after
        self.assertEqual(metric(after, "llm_proxy_cooldown_active", backend="fa", model="m-fa"), 1)
        self.assertEqual(metric(after, "llm_proxy_cooldown_active", backend="fb", model="m-fb"), 0)
        self.assertEqual(metric(after, "llm_proxy_alias_usable_routes", alias="fo"), 1)
        # one failure is below the breaker threshold (2)
        self.assertEqual(metric(after, "llm_proxy_breaker_state", backend="fa"), 0)

    def test_breaker_open_gauge_and_cooldowns_under_it(self):
        before = scrape(self.px)
        self.assertEqual(metric(before, "llm_proxy_breaker_state", backend="brk"), 0)
        self.assertEqual(metric(before, "llm_proxy_alias_usable_routes", alias="brk"), 3)
        d = Delta(self.px)
        self.a.script(SERVER_ERROR, SERVER_ERROR)  # brk/x1 and brk/x2 both fail: 2 failures
        r = self.post("/v1/chat/completions", chat("brk"))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(d("llm_proxy_failovers_total", reason="server"), 2)
        self.assertEqual(d("llm_proxy_retries_total"), 2)
        after = d.after
        self.assertEqual(metric(after, "llm_proxy_breaker_state", backend="brk"), 1)
        self.assertEqual(metric(after, "llm_proxy_breaker_state", backend="brk-ok"), 0)
        self.assertEqual(metric(after, "llm_proxy_alias_usable_routes", alias="brk"), 1)
        # Both pairs are cooling (120 s) whatever the breaker says: the gauge is per pair, and
        # /admin/backends says so too.
        for model in ("x1", "x2"):
            self.assertTrue(pair_health(self.px, "brk", model)["cooling"], model)
            self.assertEqual(metric(after, "llm_proxy_cooldown_active", backend="brk",
                                    model=model), 1, f"cooldown_active brk/{model}")

    # ---- streams ----------------------------------------------------------------------------

    def test_stream_abort_upstream_cut(self):
        d = Delta(self.px)
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": 10}, "cut_after": 4}})
        s = stream(self.px.url, "/v1/chat/completions", chat("cutter", stream=True),
                   headers=auth())
        self.assertEqual(s.status, 200)
        evs = s.all()
        self.assertGreaterEqual(len(evs), 4)
        self.assertTrue(any("error" in e.data for e in evs[-2:]),
                        f"no error event after the cut: {[e.data for e in evs[-3:]]}")
        wait_until(lambda: metric(scrape(self.px), "llm_proxy_stream_aborts_total",
                                  reason="upstream_cut") >=
                   metric(d.before, "llm_proxy_stream_aborts_total", reason="upstream_cut") + 1,
                   msg="stream_aborts_total{reason=upstream_cut} + 1")
        self.assertEqual(d("llm_proxy_stream_aborts_total", reason="upstream_cut"), 1)
        self.assertEqual(d("llm_proxy_stream_aborts_total", reason="client_gone"), 0)
        self.assertEqual(d("llm_proxy_requests_total", alias="cutter"), 1)
        self.assertEqual(d("llm_proxy_upstream_attempts_total", backend="cut",
                           **{"class": "ok"}), 0)
        self.assertEqual(d("llm_proxy_response_bytes_total", alias="cutter"), len(s.body))

    def test_tokens_from_openai_stream_include_usage(self):
        d = Delta(self.px)
        body = chat("plain", stream=True, stream_options={"include_usage": True})
        s = stream(self.px.url, "/v1/chat/completions", body, headers=auth())
        self.assertEqual(s.status, 200)
        evs = s.all()
        self.assertTrue(s.complete)
        self.assertEqual(evs[-1].data, "[DONE]")
        usage = [e.json()["usage"] for e in evs[:-1] if e.json().get("usage")]
        self.assertEqual(len(usage), 1, "exactly one usage chunk")
        u = usage[0]
        self.assertEqual(d("llm_proxy_tokens_total", alias="plain", backend="oa", type="input"),
                         u["prompt_tokens"])
        self.assertEqual(d("llm_proxy_tokens_total", alias="plain", backend="oa", type="output"),
                         u["completion_tokens"])
        self.assertEqual(d("llm_proxy_request_bytes_total", alias="plain"), body_len(body))
        self.assertEqual(d("llm_proxy_response_bytes_total", alias="plain"), len(s.body))
        self.assertEqual(d("llm_proxy_ttfb_seconds_count", alias="plain"), 1)
        self.assertEqual(d("llm_proxy_stream_aborts_total"), 0)

    def test_tokens_from_anthropic_stream_start_and_delta(self):
        d = Delta(self.px)
        self.an.script({"sse": {"events": AN_USAGE_EVENTS}})
        s = stream(self.px.url, "/v1/messages", msg("claude", stream=True),
                   headers=auth("anthropic"))
        self.assertEqual(s.status, 200)
        evs = s.all()
        self.assertTrue(s.complete)
        self.assertEqual(evs[-1].event, "message_stop")
        # input counts every prompt token (uncached + cache read + cache write), like OpenAI's
        # prompt_tokens; cached is the cache-read part; output is message_delta's final count.
        self.assertEqual(d("llm_proxy_tokens_total", alias="claude", backend="an", type="input"), 18)
        self.assertEqual(d("llm_proxy_tokens_total", alias="claude", backend="an", type="cached"), 7)
        self.assertEqual(d("llm_proxy_tokens_total", alias="claude", backend="an", type="output"),
                         23)
        self.assertEqual(d("llm_proxy_requests_total", alias="claude", protocol="anthropic",
                           status="200"), 1)

    # ---- gauges at rest, process metrics, well-formedness ----------------------------------

    def test_active_gauges_back_to_zero(self):
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": 5,
                                            "interval_ms": 100}}})
        s = stream(self.px.url, "/v1/chat/completions", chat("plain", stream=True),
                   headers=auth())
        self.assertEqual(s.status, 200)
        s.read_some(10)
        during = scrape(self.px)
        self.assertGreaterEqual(metric(during, "llm_proxy_active_streams"), 1)
        self.assertGreaterEqual(metric(during, "llm_proxy_active_requests"), 1)
        s.all()
        self.assertTrue(s.complete)
        self.a.wait_idle()
        # The request is finished a moment after its last byte reached us, so poll; the scrape
        # itself is not a client request in progress, so both must reach 0.
        wait_until(lambda: (lambda m: metric(m, "llm_proxy_active_streams") == 0 and
                            metric(m, "llm_proxy_active_requests") == 0)(scrape(self.px)),
                   timeout=3, msg="active_streams and active_requests back to 0 while idle")

    def test_operator_endpoints_are_not_client_requests(self):
        d = Delta(self.px)
        for path in ("/metrics", "/health", "/readyz"):
            self.assertEqual(request(self.px.url, "GET", path).status, 200, path)
        self.assertEqual(request(self.px.url, "GET", "/admin/stats", headers=auth()).status, 200)
        self.assertEqual(d("llm_proxy_requests_total"), 0,
                         "scrapes, health checks and admin calls counted as client requests")
        self.assertEqual(d("llm_proxy_request_duration_seconds_count"), 0)

    def test_process_and_build_metrics_present(self):
        m = scrape(self.px)
        self.assertGreater(metric(m, "llm_proxy_process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric(m, "llm_proxy_process_open_fds"), 3)
        self.assertTrue(has_metric(m, "llm_proxy_process_cpu_seconds_total"))
        self.assertTrue(has_metric(m, "llm_proxy_log_lines_dropped_total"))
        self.assertEqual(sum(v for (n, _), v in m.items() if n == "llm_proxy_build_info"), 1)

    def test_histograms_consistent(self):
        self.post("/v1/chat/completions", chat("plain"))
        text = request(self.px.url, "GET", "/metrics").text
        m = parse_metrics(text)
        hist = {n[:-len("_count")] for (n, _) in m if n.endswith("_count")}
        self.assertIn("llm_proxy_request_duration_seconds", hist)
        for h in hist:
            series: dict[frozenset, list] = {}
            for (n, ls), v in m.items():
                if n == h + "_bucket":
                    le = dict(ls)["le"]
                    rest = frozenset(x for x in ls if x[0] != "le")
                    series.setdefault(rest, []).append((float(le), v))
            for rest, buckets in series.items():
                buckets.sort()
                vals = [v for _, v in buckets]
                self.assertEqual(vals, sorted(vals), f"{h}{dict(rest)} buckets not cumulative")
                self.assertEqual(buckets[-1][0], float("inf"))
                self.assertEqual(buckets[-1][1], m[(h + "_count", rest)], f"{h} +Inf != count")

    def test_promtool_check_metrics(self):
        require(os.access(PROMTOOL, os.X_OK), "promtool not installed")
        # traffic of every kind first, so that every metric family has samples
        self.a.script(SERVER_ERROR)
        self.assertEqual(self.post("/v1/chat/completions", chat("prom")).status, 200)
        self.post("/v1/messages", msg("claude"), "anthropic")
        self.post("/v1/chat/completions", chat("nope"))
        r = request(self.px.url, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"),
                        r.headers["content-type"])
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=r.body, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        self.assertEqual(p.stdout.strip(), b"", p.stdout.decode())

    # ---- /admin/stats -----------------------------------------------------------------------

    def test_admin_stats_reference_keys_agree_with_metrics(self):
        self.post("/v1/chat/completions", chat("plain"))

        def stats_when_idle():
            r = request(self.px.url, "GET", "/admin/stats", headers=auth())
            self.assertEqual(r.status, 200, r.text)
            self.assertIn("application/json", r.headers["content-type"])
            return r.json() if r.json().get("active_requests") == 0 else None

        # the stats call itself is not a request in progress: active_requests drops to 0
        st = wait_until(stats_when_idle, timeout=3, msg="/admin/stats active_requests 0")
        self.assertEqual(set(st), {"requests_total", "backend_errors", "avg_duration_ms",
                                   "active_requests"})
        m = scrape(self.px)
        for name, n in st["requests_total"].items():
            self.assertEqual(n, metric(m, "llm_proxy_upstream_attempts_total", backend=name), name)
            ok = metric(m, "llm_proxy_upstream_attempts_total", backend=name, **{"class": "ok"})
            self.assertEqual(st["backend_errors"][name], n - ok, name)
            self.assertGreater(st["avg_duration_ms"][name], 0)
        self.assertGreaterEqual(st["requests_total"]["oa"], 1)


if __name__ == "__main__":
    unittest.main()
