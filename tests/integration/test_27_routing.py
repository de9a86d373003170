"""Smart routing (issue 13): balancing inside a priority by strategy (latency, random,
round_robin, weighted), the balancer's numbers in /admin/backends and /metrics."""

import json
import re
import time
import unittest

from harness import admin_backends, backend, request, stream, wait_until
from proxycase import ProxyCase, an_auth, chat, config, msg, oa_auth

OA = "/v1/chat/completions"


def post(url, body, timeout=30.0):
    return request(url, "POST", OA, body, headers=oa_auth(), timeout=timeout)


def count_models(mock, model: str) -> int:
    return sum(1 for r in mock.requests() if json.loads(r["body"]).get("model") == model)


def metric(url: str, name: str, **labels) -> list[float]:
    out = []
    for line in request(url, "GET", "/metrics").text.splitlines():
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            out.append(float(m.group(3)))
    return out


def routes(backend, model, **extra):
    """Two routes of equal priority: backend `fast` and `slow`, same upstream model name."""
    return {"routes": [{"backend": "fast", "model": model, "priority": 1, **extra.get("fast", {})},
                       {"backend": "slow", "model": model, "priority": 1, **extra.get("slow", {})}],
            **({"routing": extra["routing"]} if "routing" in extra else {})}


class TestBalancing(ProxyCase):
    mock_names = {"fast": ("--latency-ms", "5"), "slow": ("--latency-ms", "150")}

    @classmethod
    def make_config(cls, m):
        return config([m["fast"], m["slow"]],
                      {"lat": routes("x", "m-lat"),
                       "rand": routes("x", "m-rand", routing={"strategy": "random"}),
                       "rr": routes("x", "m-rr", routing={"strategy": "round_robin"}),
                       "wt": routes("x", "m-wt", routing={"strategy": "weighted"},
                                    fast={"weight": 4}, slow={"weight": 1}),
                       "tier": {"routes": [{"backend": "slow", "model": "m-tier", "priority": 1},
                                           {"backend": "fast", "model": "m-tier",
                                            "priority": 2}]}},
                      routing={"decay": "600ms"})

    def test_latency_prefers_fast_and_probes_slow(self):
        n = 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            r = post(self.url, chat("lat"))
            self.assertEqual(r.status, 200, r.text)
            n += 1
        fast = count_models(self.mocks["fast"], "m-lat")
        slow = count_models(self.mocks["slow"], "m-lat")
        self.assertEqual(fast + slow, n)
        self.assertGreater(fast / n, 0.85, f"fast {fast} slow {slow}")
        # The slow route's estimate decays (decay 600ms): it is measured again now and then.
        self.assertGreaterEqual(slow, 2, f"fast {fast} slow {slow}")
        # The numbers behind it are visible.
        b = [x for x in admin_backends(self.proxy)["backends"] if x["name"] == "fast"][0]
        mo = [x for x in b["models"] if x["model"] == "m-lat"][0]
        self.assertGreater(mo["balancer"]["samples"]["head"], 0)
        self.assertIsNotNone(mo["balancer"]["latency_ms"]["head"])
        self.assertEqual(mo["balancer"]["in_flight"], 0)
        lat = metric(self.url, "llm_proxy_route_latency_seconds", backend="fast", model="m-lat",
                     kind="head")
        self.assertEqual(len(lat), 1)
        self.assertLess(lat[0], 0.1)
        self.assertEqual(metric(self.url, "llm_proxy_route_in_flight", backend="fast",
                                model="m-lat"), [0.0])

    def test_random_spreads(self):
        for _ in range(40):
            self.assertEqual(post(self.url, chat("rand")).status, 200)
        fast = count_models(self.mocks["fast"], "m-rand")
        self.assertTrue(8 <= fast <= 32, f"fast got {fast} of 40")

    def test_round_robin_alternates(self):
        for _ in range(10):
            self.assertEqual(post(self.url, chat("rr")).status, 200)
        self.assertEqual(count_models(self.mocks["fast"], "m-rr"), 5)
        self.assertEqual(count_models(self.mocks["slow"], "m-rr"), 5)

    def test_weighted(self):
        for _ in range(50):
            self.assertEqual(post(self.url, chat("wt")).status, 200)
        fast = count_models(self.mocks["fast"], "m-wt")
        self.assertTrue(30 <= fast <= 49, f"fast got {fast} of 50 (weight 4:1)")

    def test_priorities_stay_strict(self):
        # The slow route has the better priority: the latency strategy never reorders tiers.
        for _ in range(8):
            self.assertEqual(post(self.url, chat("tier")).status, 200)
        self.assertEqual(count_models(self.mocks["slow"], "m-tier"), 8)
        self.assertEqual(count_models(self.mocks["fast"], "m-tier"), 0)

    def test_effective_routing_visible(self):
        body = admin_backends(self.proxy)
        self.assertEqual(body["routing"]["strategy"], "latency")
        self.assertEqual(body["routing"]["decay_ms"], 600)
        self.assertEqual(body["routing"]["aliases"]["rr"]["strategy"], "round_robin")
        self.assertEqual(body["routing"]["aliases"]["rr"]["decay_ms"], 600)
        self.assertIsNone(body["routing"]["hedge"])


def balancer(px, backend_name: str, model: str) -> dict:
    b = [x for x in admin_backends(px)["backends"] if x["name"] == backend_name][0]
    return [x for x in b["models"] if x["model"] == model][0]["balancer"]


class TestRateLimitAware(ProxyCase):
    """The upstream's own rate-limit headers: remaining 0 rests the route until its reset (before
    any 429); low headroom means proportionally less traffic."""

    mock_names = {"q1": (), "q2": (), "a1": (), "a2": ()}

    @classmethod
    def make_config(cls, m):
        def two(b1, b2, model, **kw):
            return {"routes": [{"backend": b1, "model": model, "priority": 1},
                               {"backend": b2, "model": model, "priority": 1}], **kw}
        return config([m["q1"], m["q2"], backend(m["a1"], protocol="anthropic"),
                       backend(m["a2"], protocol="anthropic")],
                      {"q": two("q1", "q2", "m-q", routing={"strategy": "round_robin"}),
                       "low": two("q1", "q2", "m-low", routing={"strategy": "random"}),
                       "qa": two("a1", "a2", "m-qa", routing={"strategy": "round_robin"})})

    def test_openai_remaining_zero_rests_until_reset(self):
        q1, q2 = self.mocks["q1"], self.mocks["q2"]
        q1.script({"headers": {"x-ratelimit-limit-requests": "100",
                               "x-ratelimit-remaining-requests": "0",
                               "x-ratelimit-reset-requests": "1.5s"}})
        t0 = time.monotonic()
        for _ in range(2):  # round robin: q1 answers once (and reports 0 left), q2 once
            self.assertEqual(post(self.url, chat("q")).status, 200)
        self.assertEqual(count_models(q1, "m-q"), 1)
        bal = balancer(self.proxy, "q1", "m-q")
        self.assertTrue(bal["ratelimit_exhausted"], bal)
        self.assertEqual(metric(self.url, "llm_proxy_route_ratelimit_exhausted", backend="q1",
                                model="m-q"), [1.0])
        sent = 0
        while time.monotonic() - t0 < 1.2:
            self.assertEqual(post(self.url, chat("q")).status, 200)
            sent += 1
        self.assertGreater(sent, 3)
        self.assertEqual(count_models(q1, "m-q"), 1, "q1 rests until its reset")
        time.sleep(max(0.0, 1.7 - (time.monotonic() - t0)))
        for _ in range(4):
            self.assertEqual(post(self.url, chat("q")).status, 200)
        self.assertGreaterEqual(count_models(q1, "m-q"), 2, "q1 is used again after its reset")
        self.assertFalse(balancer(self.proxy, "q1", "m-q")["ratelimit_exhausted"])

    def test_anthropic_remaining_zero(self):
        a1 = self.mocks["a1"]
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
        a1.script({"headers": {"anthropic-ratelimit-requests-limit": "50",
                               "anthropic-ratelimit-requests-remaining": "0",
                               "anthropic-ratelimit-requests-reset": reset}})
        for _ in range(8):
            r = request(self.url, "POST", "/v1/messages", msg("qa"), headers=an_auth())
            self.assertEqual(r.status, 200, r.text)
        self.assertEqual(count_models(a1, "m-qa"), 1)
        self.assertEqual(count_models(self.mocks["a2"], "m-qa"), 7)
        bal = balancer(self.proxy, "a1", "m-qa")
        self.assertTrue(bal["ratelimit_exhausted"])
        self.assertGreater(bal["ratelimit_reset_in_ms"], 0)

    def test_low_headroom_gets_less_traffic(self):
        q1 = self.mocks["q1"]
        q1.script({"times": -1, "headers": {"x-ratelimit-limit-requests": "1000",
                                            "x-ratelimit-remaining-requests": "50"}})
        for _ in range(80):
            self.assertEqual(post(self.url, chat("low")).status, 200)
        got = count_models(q1, "m-low")
        # Headroom 5% -> a quarter of the share: about 1 in 5 (even would be 40).
        self.assertLess(got, 30, f"q1 got {got} of 80")
        self.assertGreater(got, 2, f"q1 got {got} of 80")
        self.assertAlmostEqual(balancer(self.proxy, "q1", "m-low")["ratelimit_headroom"], 0.05)
        self.assertEqual(metric(self.url, "llm_proxy_route_ratelimit_headroom", backend="q1",
                                model="m-low"), [0.05])


def access_lines(px) -> list[dict]:
    out = []
    for line in px.log_text().splitlines():
        i = line.find('{"ts"')
        if i >= 0 and '"type":"access"' in line:
            try:
                out.append(json.loads(line[i:]))
            except ValueError:
                pass
    return out


class TestHedging(ProxyCase):
    """A silent first attempt is hedged after the delay; the first usable answer commits and the
    other attempt is cancelled at once (the upstream sees the connection close)."""

    mock_names = {"h1": (), "h2": ()}

    @classmethod
    def make_config(cls, m):
        def pair(model, hedge):
            return {"routes": [{"backend": "h1", "model": model, "priority": 1},
                               {"backend": "h2", "model": model, "priority": 2}],
                    "routing": {"hedge": hedge}}
        return config([m["h1"], m["h2"]],
                      {"hedged": pair("m-h", {"delay": "200ms", "budget_percent": 100}),
                       "tight": pair("m-t", {"delay": "200ms", "budget_percent": 1}),
                       "pct": pair("m-pct", {"delay": "p90", "budget_percent": 100}),
                       "plain": {"routes": [{"backend": "h1", "model": "m-p", "priority": 1},
                                            {"backend": "h2", "model": "m-p", "priority": 2}]}},
                      timeout={"ttft_timeout": "20s"},
                      keys=[{"name": "hk", "key": "sk-client-hedge-0123456789", "rpm": 1000}])

    def aborted(self, mock, model):
        """The latest request for model on mock was aborted by its client (the proxy)."""
        reqs = [r for r in mock.requests() if json.loads(r["body"]).get("model") == model]
        return reqs and reqs[-1]["client_aborted"]

    def test_stalled_non_stream_is_hedged(self):
        h1, h2 = self.mocks["h1"], self.mocks["h2"]
        h1.script({"delay_ms": 8000})
        won = sum(metric(self.url, "llm_proxy_hedges_total", result="won"))
        cost = sum(metric(self.url, "llm_proxy_hedge_loser_tokens_total", alias="hedged"))
        t0 = time.monotonic()
        r = post(self.url, chat("hedged"))
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("h2", r.json()["choices"][0]["message"]["content"])
        self.assertGreater(took, 0.19)
        self.assertLess(took, 3.0, "answered by the hedge, not after the stall")
        self.assertEqual(count_models(h2, "m-h"), 1)
        wait_until(lambda: self.aborted(h1, "m-h"), msg="the stalled attempt was cancelled")
        self.assertEqual(sum(metric(self.url, "llm_proxy_hedges_total", result="won")), won + 1)
        # The cancelled first attempt's prompt is counted as hedging cost.
        self.assertGreater(sum(metric(self.url, "llm_proxy_hedge_loser_tokens_total",
                                      alias="hedged")), cost)
        rid = r.headers.get("X-Request-Id")
        line = wait_until(lambda: [a for a in access_lines(self.proxy)
                                   if a.get("req_id") == rid], msg="access line")[-1]
        self.assertEqual([a["backend"] for a in line["attempts"]], ["h1", "h2"])
        self.assertTrue(line["attempts"][1].get("hedge"))
        self.assertNotIn("hedge", line["attempts"][0])
        self.assertEqual(line["attempts"][0]["class"], "cancelled")
        self.assertEqual(line["attempts"][1]["class"], "ok")

    def test_client_limits_count_a_hedged_request_once(self):
        self.mocks["h1"].script({"delay_ms": 5000})
        r = request(self.url, "POST", OA, chat("hedged"),
                    headers={"Authorization": "Bearer sk-client-hedge-0123456789"})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(count_models(self.mocks["h2"], "m-h"), 1)
        keys = request(self.url, "GET", "/admin/keys", headers=oa_auth()).json()["keys"]
        usage = [k for k in keys if k["name"] == "hk"][0]["usage"]
        self.assertEqual(usage["requests"], 1)
        self.assertEqual(usage["in_flight"], 0)

    def test_stalled_stream_is_hedged(self):
        h1, h2 = self.mocks["h1"], self.mocks["h2"]
        h1.script({"sse": {"stall_after": 0}})  # the head, then nothing
        t0 = time.monotonic()
        with stream(self.url, OA, chat("hedged", stream=True), headers=oa_auth()) as s:
            self.assertEqual(s.status, 200)
            events = s.all()
        self.assertLess(time.monotonic() - t0, 3.0)
        text = "".join(json.loads(e.data)["choices"][0]["delta"].get("content", "")
                       for e in events if e.data != "[DONE]" and json.loads(e.data)["choices"])
        self.assertIn("h2", text)
        self.assertEqual(events[-1].data, "[DONE]")
        wait_until(lambda: self.aborted(h1, "m-h"), msg="the stalled stream was cancelled")
        self.assertEqual(count_models(h2, "m-h"), 1)

    def test_fast_first_attempt_is_not_hedged(self):
        for _ in range(5):
            self.assertEqual(post(self.url, chat("hedged")).status, 200)
        self.assertEqual(count_models(self.mocks["h2"], "m-h"), 0)
        # Without a hedge block nothing is hedged, even when the first attempt is slow.
        self.mocks["h1"].script({"delay_ms": 600})
        self.assertEqual(post(self.url, chat("plain")).status, 200)
        self.assertEqual(count_models(self.mocks["h2"], "m-p"), 0)

    def test_first_answer_wins_and_hedge_loses(self):
        # The first attempt answers after the hedge started, but before the hedge does.
        h1, h2 = self.mocks["h1"], self.mocks["h2"]
        h1.script({"delay_ms": 400})
        h2.script({"delay_ms": 3000})
        lost = sum(metric(self.url, "llm_proxy_hedges_total", result="lost"))
        r = post(self.url, chat("hedged"))
        self.assertEqual(r.status, 200)
        self.assertIn("h1", r.json()["choices"][0]["message"]["content"])
        wait_until(lambda: self.aborted(h2, "m-h"), msg="the losing hedge was cancelled")
        self.assertEqual(sum(metric(self.url, "llm_proxy_hedges_total", result="lost")), lost + 1)

    def test_percentile_delay(self):
        # Until 20 answers are measured the fixed 500 ms stands in; then the p90 of the
        # measured times to the response head (a few ms here) is the delay.
        h1, h2 = self.mocks["h1"], self.mocks["h2"]
        for _ in range(25):
            self.assertEqual(post(self.url, chat("pct")).status, 200)
        self.assertEqual(count_models(h2, "m-pct"), 0)
        h1.script({"delay_ms": 5000})
        t0 = time.monotonic()
        r = post(self.url, chat("pct"))
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        self.assertIn("h2", r.json()["choices"][0]["message"]["content"])
        self.assertLess(took, 0.45, "hedged after the measured p90, not the 500 ms fallback")
        wait_until(lambda: self.aborted(h1, "m-pct"), msg="the stalled attempt was cancelled")

    def test_budget_holds(self):
        # budget_percent 1: the starting token pays for one hedge; the next stalled request waits.
        h1, h2 = self.mocks["h1"], self.mocks["h2"]
        h1.script({"delay_ms": 800, "times": 3})
        denied = sum(metric(self.url, "llm_proxy_hedge_budget_denied_total", alias="tight"))
        for _ in range(3):
            self.assertEqual(post(self.url, chat("tight")).status, 200)
        self.assertEqual(count_models(h2, "m-t"), 1, "one hedge only")
        self.assertEqual(count_models(h1, "m-t"), 3)
        self.assertEqual(sum(metric(self.url, "llm_proxy_hedge_budget_denied_total",
                                    alias="tight")), denied + 2)


if __name__ == "__main__":
    unittest.main()
