"""The admin API: who may call it, /admin/config masking, drain and undrain.

Documented rule (docs/operations.md, src/admin.h): /metrics and /readyz need no key; every
/admin/... endpoint needs ``admin_api_key`` when one is configured, else ``proxy_api_key``; the
key goes in ``Authorization: Bearer`` or ``x-api-key``.
"""

import json
import unittest

from harness import (PROXY_KEY, Mock, Proxy, admin_backends, auth, backend, backend_health,
                     backend_key, config, metric, require_proxy, request, scrape, stream)

ADMIN_KEY = "adm-Zq81-distinct-admin-secret-77xy"
WRONG_KEY = "sk-proxy-test-KEY-0123456780"  # one character off the proxy key
HEADER_SECRET = "hdr-Secret-Value-5522-abcdef"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

ADMIN_GETS = ("/admin/stats", "/admin/backends", "/admin/config")


def mask(s: str) -> str:
    """The documented display form of a secret of 16+ characters."""
    return s[:4] + "****" + s[-4:]


class AdminCase(unittest.TestCase):
    admin_key: str | None = None

    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("a").start()
        cls.b = Mock("b").start()
        extra = {"admin_api_key": cls.admin_key} if cls.admin_key else {}
        try:
            cfg = config([backend(cls.a, headers={"X-Upstream-Token": HEADER_SECRET}),
                          backend(cls.b)],
                         {"m": [("a", "ma"), ("b", "mb")]},
                         fallback={"enable_backoff": False, "cooldown_seconds": 60}, **extra)
            cls.px = Proxy(cfg).start()
        except BaseException:
            cls.a.stop(check=False)
            cls.b.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        errors = []
        for p in (cls.px, cls.a, cls.b):
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))

    def setUp(self):
        self.a.reset()
        self.b.reset()

    def call(self, method, path, key=None, style="bearer"):
        h = {}
        if key is not None:
            h = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"x-api-key": key}
        return request(self.px.url, method, path, headers=h)

    def assert_401(self, r, what):
        self.assertEqual(r.status, 401, f"{what}: {r.status} {r.text[:200]}")
        self.assertIn("error", r.json(), what)


class TestAuthProxyKey(AdminCase):
    """No admin_api_key: the proxy key guards /admin/*."""

    def test_admin_needs_the_proxy_key(self):
        for path in ADMIN_GETS:
            self.assert_401(self.call("GET", path), f"{path} without a key")
            self.assert_401(self.call("GET", path, WRONG_KEY), f"{path} with a wrong key")
            self.assert_401(self.call("GET", path, WRONG_KEY, "x-api-key"), f"{path} x-api-key")
            self.assert_401(self.call("GET", path, ""), f"{path} with an empty bearer")
            for style in ("bearer", "x-api-key"):
                r = self.call("GET", path, PROXY_KEY, style)
                self.assertEqual(r.status, 200, f"{path} {style}: {r.text[:200]}")
                r.json()
        self.assert_401(self.call("POST", "/admin/reload", WRONG_KEY), "reload, wrong key")
        self.assert_401(self.call("POST", "/admin/backends/a/drain"), "drain, no key")
        self.assertFalse(backend_health(self.px, "a")["drained"], "unauthorised drain applied")

    def test_metrics_and_readyz_need_no_key(self):
        r = self.call("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn("llm_proxy_build_info", r.text)
        r = self.call("GET", "/readyz")
        self.assertEqual((r.status, r.json()), (200, {"ready": True}))
        # a wrong key does not turn them into 401 either
        self.assertEqual(self.call("GET", "/metrics", WRONG_KEY).status, 200)
        self.assertEqual(self.call("GET", "/readyz", WRONG_KEY).status, 200)

    def test_unknown_admin_path_404_after_auth(self):
        self.assert_401(self.call("GET", "/admin/nothing"), "unknown path without a key")
        r = self.call("GET", "/admin/nothing", PROXY_KEY)
        self.assertEqual(r.status, 404, r.text)


class TestAuthAdminKey(AdminCase):
    """admin_api_key set: only it opens /admin/*; the proxy key does not."""

    admin_key = ADMIN_KEY

    def test_admin_key_works_proxy_key_does_not(self):
        for path in ADMIN_GETS:
            for style in ("bearer", "x-api-key"):
                r = self.call("GET", path, ADMIN_KEY, style)
                self.assertEqual(r.status, 200, f"{path} {style}: {r.text[:200]}")
                self.assert_401(self.call("GET", path, PROXY_KEY, style),
                                f"{path} with the proxy key ({style})")
            self.assert_401(self.call("GET", path), f"{path} without a key")
            self.assert_401(self.call("GET", path, ADMIN_KEY[:-1] + "z"), f"{path} wrong key")
        self.assert_401(self.call("POST", "/admin/backends/a/drain", PROXY_KEY),
                        "drain with the proxy key")
        self.assertFalse(backend_health_admin(self, "a")["drained"], "unauthorised drain applied")
        self.assert_401(self.call("POST", "/admin/reload", PROXY_KEY), "reload with the proxy key")

    def test_admin_key_is_not_a_client_key(self):
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth(key=PROXY_KEY))
        self.assertEqual(r.status, 200, r.text)
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth(key=ADMIN_KEY))
        self.assertEqual(r.status, 401, r.text)

    def test_metrics_and_readyz_need_no_key(self):
        self.assertEqual(self.call("GET", "/metrics").status, 200)
        self.assertEqual(self.call("GET", "/readyz").status, 200)

    def test_config_masks_admin_key(self):
        r = self.call("GET", "/admin/config", ADMIN_KEY)
        self.assertEqual(r.status, 200, r.text)
        self.assertNotIn(ADMIN_KEY, r.text)
        self.assertEqual(r.json()["admin_api_key"], mask(ADMIN_KEY))


def backend_health_admin(tc, name):
    r = tc.call("GET", "/admin/backends", ADMIN_KEY)
    tc.assertEqual(r.status, 200, r.text)
    return next(b for b in r.json()["backends"] if b["name"] == name)


class TestConfigAndDrain(AdminCase):
    def test_config_is_effective_and_masked(self):
        r = self.call("GET", "/admin/config", PROXY_KEY)
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("application/json", r.headers["content-type"])
        for secret in (PROXY_KEY, backend_key("a"), backend_key("b"), HEADER_SECRET):
            self.assertNotIn(secret, r.text, f"{secret} unmasked in /admin/config")
            self.assertNotIn(secret[4:-4], r.text, f"the middle of {secret} in /admin/config")
        c = r.json()
        self.assertEqual(c["proxy_api_key"], mask(PROXY_KEY))
        self.assertEqual(mask(PROXY_KEY), "sk-p****6789")
        bs = {b["name"]: b for b in c["backends"]}
        self.assertEqual(set(bs), {"a", "b"})
        self.assertEqual(bs["a"]["api_key"], mask(backend_key("a")))
        self.assertEqual(bs["b"]["api_key"], mask(backend_key("b")))
        self.assertEqual(bs["a"]["headers"]["X-Upstream-Token"], mask(HEADER_SECRET))
        self.assertEqual(bs["a"]["url"], self.a.url + "/v1")
        routes = c["models"]["m"]["routes"]
        self.assertEqual([(x["backend"], x["model"]) for x in routes], [("a", "ma"), ("b", "mb")])
        self.assertEqual(c["fallback"]["cooldown_seconds"], 60)
        self.assertEqual(c["listen"], f"127.0.0.1:{self.px.port}")

    def test_drain_moves_traffic_and_undrain_restores(self):
        def ask():
            r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
            self.assertEqual(r.status, 200, r.text)
            return r.json()["choices"][0]["message"]["content"]

        self.assertTrue(ask().startswith("Hello from a"))
        r = self.call("POST", "/admin/backends/a/drain", PROXY_KEY)
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json(), {"backend": "a", "drained": True})
        self.assertTrue(backend_health(self.px, "a")["drained"])
        self.assertFalse(backend_health(self.px, "b")["drained"])
        self.assertEqual(metric(scrape(self.px), "llm_proxy_alias_usable_routes", alias="m"), 1)
        for _ in range(3):
            self.assertTrue(ask().startswith("Hello from b"))
        self.assertEqual((len(self.a.requests()), len(self.b.requests())), (1, 3))
        r = self.call("POST", "/admin/backends/a/undrain", PROXY_KEY)
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json(), {"backend": "a", "drained": False})
        self.assertFalse(backend_health(self.px, "a")["drained"])
        self.assertEqual(metric(scrape(self.px), "llm_proxy_alias_usable_routes", alias="m"), 2)
        self.assertTrue(ask().startswith("Hello from a"))
        self.assertEqual((len(self.a.requests()), len(self.b.requests())), (2, 3))

    def test_drain_lets_in_flight_stream_finish(self):
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": 6,
                                            "interval_ms": 80}}})
        s = stream(self.px.url, "/v1/chat/completions", {**CHAT, "stream": True}, headers=auth())
        self.assertEqual(s.status, 200)
        try:
            self.assertEqual(self.call("POST", "/admin/backends/a/drain", PROXY_KEY).status, 200)
            evs = s.all()
            self.assertTrue(s.complete)
            self.assertEqual(evs[-1].data, "[DONE]")
            self.assertEqual(len(self.a.requests()), 1)
        finally:
            self.call("POST", "/admin/backends/a/undrain", PROXY_KEY)

    def test_all_drained_readyz_503_then_ready(self):
        try:
            for n in ("a", "b"):
                self.assertEqual(self.call("POST", f"/admin/backends/{n}/drain", PROXY_KEY).status,
                                 200)
            r = self.call("GET", "/readyz")
            self.assertEqual(r.status, 503, r.text)
            self.assertEqual(r.json(), {"ready": False, "reason": "no usable route"})
            self.assertEqual(metric(scrape(self.px), "llm_proxy_alias_usable_routes", alias="m"),
                             0)
            r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
            self.assertGreaterEqual(r.status, 500, r.text)
            self.assertEqual(len(self.a.requests()) + len(self.b.requests()), 0)
        finally:
            for n in ("a", "b"):
                self.call("POST", f"/admin/backends/{n}/undrain", PROXY_KEY)
        self.assertEqual(self.call("GET", "/readyz").status, 200)

    def test_unknown_backend_404(self):
        for verb in ("drain", "undrain"):
            r = self.call("POST", f"/admin/backends/nope/{verb}", PROXY_KEY)
            self.assertEqual(r.status, 404, r.text)
            self.assertIn("nope", json.dumps(r.json()))
        r = self.call("POST", "/admin/backends/a/explode", PROXY_KEY)
        self.assertEqual(r.status, 404, r.text)
        self.assertEqual([b["drained"] for b in admin_backends(self.px)["backends"]],
                         [False, False])


if __name__ == "__main__":
    unittest.main()
