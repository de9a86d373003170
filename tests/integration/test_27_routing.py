"""Smart routing (issue 13): balancing inside a priority by strategy (latency, random,
round_robin, weighted), the balancer's numbers in /admin/backends and /metrics."""

import json
import re
import time
import unittest

from harness import admin_backends, request
from proxycase import ProxyCase, chat, config, oa_auth

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


if __name__ == "__main__":
    unittest.main()
