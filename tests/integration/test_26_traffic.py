"""Traffic control: the reference's rate limits and concurrency queue, per-backend limits, client
keys with model permissions, token limits and budgets, rate-limit headers, limits across a reload,
and the official SDKs' view of a 429 (RateLimitError, Retry-After)."""

import json
import re
import socket
import threading
import time
import unittest

from harness import PROXY_KEY, Mock, Proxy, auth, backend, config, request, stream, wait_until
from proxycase import (ProxyCase, assert_anthropic_error, assert_openai_error, chat, msg, oa_auth,
                       an_auth)

OA = "/v1/chat/completions"
AN = "/v1/messages"


def post(url, path, body, headers=None, timeout=30.0):
    return request(url, "POST", path, body, headers=headers or oa_auth(), timeout=timeout)


def metric(url: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    text = request(url, "GET", "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def access_lines(px: Proxy) -> list[dict]:
    out = []
    for line in px.log_text().splitlines():
        i = line.find('{"ts"')
        if i >= 0 and '"type":"access"' in line:
            try:
                out.append(json.loads(line[i:]))
            except ValueError:
                pass
    return out


class BG(threading.Thread):
    """A request in the background; .r holds the Response (or .exc)."""

    def __init__(self, url, path, body, headers=None, timeout=30.0):
        super().__init__(daemon=True)
        self.args_ = (url, path, body, headers, timeout)
        self.r = None
        self.exc = None
        self.t_done = None

    def run(self):
        try:
            self.r = post(*self.args_)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.exc = e
        self.t_done = time.monotonic()


# ---------------------------------------------------------------------------------------------
# rate_limit
# ---------------------------------------------------------------------------------------------


class TestRateLimits(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"]), backend(m["an"], protocol="anthropic")],
                      {"gpt-a": [("oa", "gpt-up")], "gpt-m": [("oa", "gpt-up")],
                       "claude-m": [("an", "claude-up")], "gpt-ip": [("oa", "gpt-up")]},
                      rate_limit={"enabled": True, "global_rps": 1000, "per_ip_rps": 1000,
                                  "burst_factor": 1,
                                  "per_model_rps": {"gpt-m": 0.2, "claude-m": 0.2}})

    def test_per_model_openai_429_shape_and_headers(self):
        ok = post(self.url, OA, chat("gpt-m"))
        self.assertEqual(ok.status, 200, ok.text)
        self.assertEqual(ok.headers.get("x-ratelimit-limit-requests"), "1")
        self.assertEqual(ok.headers.get("x-ratelimit-remaining-requests"), "0")
        self.assertRegex(ok.headers.get("x-ratelimit-reset-requests", ""), r"^[0-9.]+m?s$")
        r = post(self.url, OA, chat("gpt-m"))
        assert_openai_error(self, r, 429, type_="rate_limit_error", code="rate_limit_exceeded",
                            contains="gpt-m")
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        self.assertEqual(r.headers.get("x-ratelimit-remaining-requests"), "0")
        self.assertEqual(len(self.mocks["oa"].requests()), 1, "nothing sent upstream when limited")
        self.assertGreaterEqual(metric(self.url, "llm_proxy_limited_total", scope="model"), 1)
        line = wait_until(lambda: [a for a in access_lines(self.proxy)
                                   if a.get("limited") == "model"], msg="access line")
        self.assertEqual(line[-1]["status"], 429)

    def test_per_model_on_messages_anthropic_shape(self):
        ok = post(self.url, AN, msg("claude-m"), an_auth())
        self.assertEqual(ok.status, 200, ok.text)
        self.assertEqual(ok.headers.get("anthropic-ratelimit-requests-limit"), "1")
        self.assertEqual(ok.headers.get("anthropic-ratelimit-requests-remaining"), "0")
        self.assertRegex(ok.headers.get("anthropic-ratelimit-requests-reset", ""),
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        r = post(self.url, AN, msg("claude-m"), an_auth())
        assert_anthropic_error(self, r, 429, type_="rate_limit_error")
        self.assertIn("Retry-After", r.headers)
        self.assertEqual(len(self.mocks["an"].requests()), 1)

    def test_untrusted_forwarded_for_is_ignored(self):
        # Without trusted_proxies the socket peer is the client: spoofed headers change nothing,
        # and gpt-a's own bucket (1000/s) lets these through.
        for i in range(3):
            r = post(self.url, OA, chat("gpt-a"),
                     {**oa_auth(), "X-Forwarded-For": f"203.0.113.{i}"})
            self.assertEqual(r.status, 200, r.text)


class TestGlobalAndPerIp(ProxyCase):
    mock_names = {"oa": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"])], {"gpt-a": [("oa", "gpt-up")]},
                      server={"trusted_proxies": ["127.0.0.1/32", "::1"]},
                      rate_limit={"enabled": True, "global_rps": 1, "per_ip_rps": 0.2,
                                  "burst_factor": 3})

    def test_burst_then_global_limit_and_trusted_proxy_ip(self):
        # per_ip 0.2/s x 3 -> burst max(1, floor(0.6)) = 1 per client address.
        h = lambda ip: {**oa_auth(), "X-Forwarded-For": ip}  # noqa: E731
        self.assertEqual(post(self.url, OA, chat(), h("198.51.100.1")).status, 200)
        r = post(self.url, OA, chat(), h("198.51.100.1"))
        assert_openai_error(self, r, 429, code="rate_limit_exceeded", contains="your address")
        # A spoofed left part does not help: the rightmost untrusted hop is the client.
        r = post(self.url, OA, chat(), h("9.9.9.9, 198.51.100.1"))
        self.assertEqual(r.status, 429)
        # Another address has its own bucket; the global bucket (burst 3) is shared.
        self.assertEqual(post(self.url, OA, chat(), h("198.51.100.2")).status, 200)
        self.assertEqual(post(self.url, OA, chat(), h("198.51.100.3")).status, 200)
        r = post(self.url, OA, chat(), h("198.51.100.4"))
        assert_openai_error(self, r, 429, code="rate_limit_exceeded", contains="this proxy")
        self.assertEqual(len(self.mocks["oa"].requests()), 3)
        self.assertGreaterEqual(metric(self.url, "llm_proxy_limited_total", scope="ip"), 2)
        self.assertGreaterEqual(metric(self.url, "llm_proxy_limited_total", scope="global"), 1)
        # health and metrics are never limited
        for _ in range(5):
            self.assertEqual(request(self.url, "GET", "/health").status, 200)


# ---------------------------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------------------------


class TestConcurrencyQueue(ProxyCase):
    mock_names = {"oa": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"])], {"gpt-a": [("oa", "gpt-up")]},
                      concurrency={"enabled": True, "max_requests": 1, "max_queue_size": 2,
                                   "queue_timeout": "2s"})

    def hold(self, delay_ms: int) -> BG:
        """Start a request that holds the only slot for delay_ms."""
        self.mocks["oa"].script({"delay_ms": delay_ms})
        t = BG(self.url, OA, chat(messages=[{"role": "user", "content": "holder"}]))
        t.start()
        self.mocks["oa"].wait_requests(1)
        return t

    def test_fifo_order_queue_full_and_health_not_queued(self):
        holder = self.hold(700)
        waiters = []
        for i in range(2):
            t = BG(self.url, OA, chat(messages=[{"role": "user", "content": f"w{i}"}]))
            t.start()
            waiters.append(t)
            wait_until(lambda: metric(self.url, "llm_proxy_queue_length") >= i + 1,
                       msg="queued")
        t0 = time.monotonic()
        r = post(self.url, OA, chat())
        assert_openai_error(self, r, 503, type_="server_error", code="queue_full")
        self.assertIn("Retry-After", r.headers)
        self.assertLess(time.monotonic() - t0, 0.5, "queue full answers at once")
        self.assertEqual(request(self.url, "GET", "/health").status, 200)
        self.assertEqual(request(self.url, "GET", "/metrics").status, 200)
        for t in [holder, *waiters]:
            t.join(10)
            self.assertEqual(t.r.status, 200, t.r.text if t.r else t.exc)
        reqs = self.mocks["oa"].requests()
        order = [json.loads(q["body"])["messages"][0]["content"] for q in reqs]
        self.assertEqual(order, ["holder", "w0", "w1"])
        self.assertGreaterEqual(metric(self.url, "llm_proxy_queued_total"), 2)
        self.assertGreaterEqual(metric(self.url, "llm_proxy_shed_total", reason="queue_full"), 1)
        lines = [a for a in access_lines(self.proxy) if a.get("queue_ms")]
        self.assertTrue(lines, "the access line says how long a request waited")

    def test_queue_timeout(self):
        holder = self.hold(3500)
        t0 = time.monotonic()
        r = post(self.url, OA, chat())
        waited = time.monotonic() - t0
        assert_openai_error(self, r, 503, code="queue_timeout")
        self.assertIn("Retry-After", r.headers)
        self.assertGreater(waited, 1.9)
        self.assertLess(waited, 3.0)
        holder.join(10)
        self.assertEqual(holder.r.status, 200)
        self.assertEqual(len(self.mocks["oa"].requests()), 1)

    def test_anthropic_client_gets_overloaded_shape(self):
        holder = self.hold(3500)
        r = post(self.url, AN, msg("gpt-a"), an_auth())
        assert_anthropic_error(self, r, 503, type_="overloaded_error")
        holder.join(10)

    def test_disconnect_while_queued_frees_the_place(self):
        holder = self.hold(1500)
        body = json.dumps(chat(messages=[{"role": "user", "content": "gone"}])).encode()
        s = socket.create_connection(("127.0.0.1", self.proxy.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + PROXY_KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_until(lambda: metric(self.url, "llm_proxy_queue_length") >= 1, msg="queued")
        s.close()
        wait_until(lambda: metric(self.url, "llm_proxy_queue_length") == 0, timeout=3,
                   msg="the departed client left the queue")
        self.assertGreaterEqual(metric(self.url, "llm_proxy_shed_total", reason="client_gone"), 1)
        # Both places are usable again.
        waiters = [BG(self.url, OA, chat()) for _ in range(2)]
        for t in waiters:
            t.start()
        for t in [holder, *waiters]:
            t.join(10)
            self.assertEqual(t.r.status, 200, t.r.text if t.r else t.exc)
        bodies = [q["body"] for q in self.mocks["oa"].requests()]
        self.assertFalse(any("gone" in b for b in bodies), "a departed client reached upstream")


class TestBackendLimits(ProxyCase):
    mock_names = {"b1": (), "b2": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["b1"], max_concurrent=1), backend(m["b2"])],
                      {"gpt-a": [("b1", "up-1", 1), ("b2", "up-2", 2)],
                       "only1": [("b1", "up-1")]},
                      concurrency={"queue_timeout": "1s"})

    def test_saturated_backend_fails_over(self):
        self.mocks["b1"].script({"delay_ms": 800})
        holder = BG(self.url, OA, chat("only1"))
        holder.start()
        self.mocks["b1"].wait_requests(1)
        bk = request(self.url, "GET", "/admin/backends", headers=oa_auth()).json()
        b1 = [b for b in bk["backends"] if b["name"] == "b1"][0]
        self.assertEqual(b1["concurrency"]["in_flight"], 1)
        self.assertEqual(b1["concurrency"]["limit"], 1)
        self.assertEqual(metric(self.url, "llm_proxy_backend_in_flight", backend="b1"), 1)
        self.assertEqual(metric(self.url, "llm_proxy_backend_concurrency_limit", backend="b1"), 1)
        t0 = time.monotonic()
        r = post(self.url, OA, chat("gpt-a"))
        self.assertEqual(r.status, 200, r.text)
        self.assertLess(time.monotonic() - t0, 0.6, "skipped at once, like a cooling route")
        self.assertEqual(len(self.mocks["b2"].requests()), 1)
        holder.join(10)
        self.assertEqual(holder.r.status, 200)

    def test_all_saturated_waits_for_a_slot(self):
        self.mocks["b1"].script({"delay_ms": 500})
        holder = BG(self.url, OA, chat("only1"))
        holder.start()
        self.mocks["b1"].wait_requests(1)
        t0 = time.monotonic()
        r = post(self.url, OA, chat("only1"))
        self.assertEqual(r.status, 200, r.text)
        self.assertGreater(time.monotonic() - t0, 0.3, "it waited for the holder")
        holder.join(10)
        self.assertEqual(len(self.mocks["b1"].requests()), 2)

    def test_all_saturated_times_out_with_503(self):
        self.mocks["b1"].script({"delay_ms": 2500})
        holder = BG(self.url, OA, chat("only1"))
        holder.start()
        self.mocks["b1"].wait_requests(1)
        t0 = time.monotonic()
        r = post(self.url, AN, msg("only1"), an_auth())
        assert_anthropic_error(self, r, 503, type_="overloaded_error", contains="concurrency limit")
        self.assertIn("Retry-After", r.headers)
        self.assertGreater(time.monotonic() - t0, 0.9)
        holder.join(10)
        self.assertGreaterEqual(
            metric(self.url, "llm_proxy_shed_total", reason="backends_saturated"), 1)


# ---------------------------------------------------------------------------------------------
# client keys
# ---------------------------------------------------------------------------------------------

KEYS = [
    {"name": "alice", "key": "sk-alice-0123456789", "models": ["gpt-*"], "rpm": 2},
    {"name": "bob", "key": "sk-bob-0123456789", "tpm": 100},
    {"name": "carol", "key": "sk-carol-0123456789", "budget": {"tokens_per_day": 50}},
    {"name": "dave", "key": "sk-dave-0123456789", "max_concurrent": 1},
]


def key_auth(name: str, protocol: str = "openai") -> dict:
    k = [k["key"] for k in KEYS if k["name"] == name][0]
    return auth(protocol, k)


class TestKeys(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"]), backend(m["an"], protocol="anthropic")],
                      {"gpt-a": [("oa", "gpt-up")], "gpt-b": [("oa", "gpt-up")],
                       "claude-a": [("an", "claude-up")]},
                      keys=KEYS)

    def test_models_restricted_403_and_unknown_key_401(self):
        r = post(self.url, AN, msg("claude-a"), key_auth("alice", "anthropic"))
        assert_anthropic_error(self, r, 403, type_="permission_error", contains="alice")
        r = post(self.url, OA, chat("claude-a"), key_auth("alice"))
        assert_openai_error(self, r, 403, type_="permission_error", code="model_not_allowed")
        r = post(self.url, OA, chat("gpt-a"), auth("openai", "sk-nobody"))
        assert_openai_error(self, r, 401)
        # the proxy key stays unrestricted; /v1/models lists what a key may use
        self.assertEqual(post(self.url, AN, msg("claude-a"), an_auth()).status, 200)
        ids = [m["id"] for m in request(self.url, "GET", "/v1/models",
                                        headers=key_auth("alice")).json()["data"]]
        self.assertEqual(sorted(ids), ["gpt-a", "gpt-b"])
        self.assertEqual(len(self.mocks["an"].requests()), 1)

    def test_admin_config_shows_names_never_secrets(self):
        cfg = request(self.url, "GET", "/admin/config", headers=oa_auth()).json()
        names = [k["name"] for k in cfg["traffic"]["keys"]]
        self.assertEqual(names, ["alice", "bob", "carol", "dave"])
        text = json.dumps(cfg)
        for k in KEYS:
            self.assertNotIn(k["key"], text)
        # client keys never open the admin API
        r = request(self.url, "GET", "/admin/keys", headers=key_auth("alice"))
        self.assertEqual(r.status, 401)

    def test_rpm_with_headers(self):
        r = post(self.url, OA, chat("gpt-b"), key_auth("alice"))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers.get("x-ratelimit-limit-requests"), "2")
        self.assertEqual(r.headers.get("x-ratelimit-remaining-requests"), "1")
        self.assertEqual(post(self.url, OA, chat("gpt-b"), key_auth("alice")).status, 200)
        r = post(self.url, OA, chat("gpt-b"), key_auth("alice"))
        assert_openai_error(self, r, 429, code="rate_limit_exceeded", contains="alice")
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 29)  # 2/min: one per 30 s
        self.assertGreaterEqual(
            metric(self.url, "llm_proxy_key_limited_total", key="alice", scope="key_rpm"), 1)

    def test_tpm_counts_streamed_usage(self):
        used = 0
        for i in range(6):
            with stream(self.url, OA, chat("gpt-a", stream=True, max_tokens=10),
                        headers=key_auth("bob")) as s:
                if s.status == 429:
                    break
                self.assertEqual(s.status, 200)
                self.assertEqual(s.headers.get("x-ratelimit-limit-tokens"), "100")
                s.all()
            keys = request(self.url, "GET", "/admin/keys", headers=oa_auth()).json()["keys"]
            bob = [k for k in keys if k["name"] == "bob"][0]
            used = bob["usage"]["input_tokens"] + bob["usage"]["output_tokens"]
            self.assertGreater(bob["usage"]["output_tokens"], 0, "stream usage counted")
        else:
            self.fail("tpm never limited")
        self.assertGreaterEqual(used, 100)
        self.assertLess(i, 6)
        r = post(self.url, OA, chat("gpt-a", max_tokens=10), key_auth("bob"))
        assert_openai_error(self, r, 429, code="rate_limit_exceeded", contains="tokens per minute")
        self.assertEqual(r.headers.get("x-ratelimit-remaining-tokens"), "0")
        self.assertGreater(metric(self.url, "llm_proxy_key_tokens_total", key="bob",
                                  type="output"), 0)

    def test_daily_budget_with_anthropic_streams(self):
        n_ok = 0
        for _ in range(5):
            with stream(self.url, AN, msg("claude-a", stream=True, max_tokens=5),
                        headers=key_auth("carol", "anthropic")) as s:
                if s.status != 200:
                    break
                s.all()
                n_ok += 1
        self.assertGreaterEqual(n_ok, 1)
        self.assertLess(n_ok, 5)
        r = post(self.url, AN, msg("claude-a", max_tokens=5), key_auth("carol", "anthropic"))
        assert_anthropic_error(self, r, 429, type_="rate_limit_error", contains="budget")
        ra = int(r.headers["Retry-After"])
        self.assertTrue(1 <= ra <= 86400, ra)
        keys = request(self.url, "GET", "/admin/keys", headers=oa_auth()).json()["keys"]
        carol = [k for k in keys if k["name"] == "carol"][0]
        self.assertEqual(carol["usage"]["requests"], n_ok)
        self.assertGreaterEqual(carol["usage"]["tokens_today"], 50)
        self.assertEqual(carol["remaining"]["tokens_today"], 0)
        self.assertNotIn("sk-carol", json.dumps(keys))

    def test_key_max_concurrent(self):
        self.mocks["oa"].script({"delay_ms": 700})
        holder = BG(self.url, OA, chat("gpt-a"), key_auth("dave"))
        holder.start()
        self.mocks["oa"].wait_requests(1)
        r = post(self.url, OA, chat("gpt-a"), key_auth("dave"))
        assert_openai_error(self, r, 429, contains="concurrent")
        holder.join(10)
        self.assertEqual(holder.r.status, 200)
        self.assertEqual(post(self.url, OA, chat("gpt-a"), key_auth("dave")).status, 200)
        lines = [a for a in access_lines(self.proxy) if a.get("key") == "dave"]
        self.assertTrue(any(a.get("limited") == "key_concurrency" for a in lines))
        self.assertNotIn("sk-dave", self.proxy.log_text())


# ---------------------------------------------------------------------------------------------
# reload, SDKs
# ---------------------------------------------------------------------------------------------


class TestAdminClosedWithOnlyKeys(unittest.TestCase):
    def test_admin_needs_a_key_when_client_keys_exist(self):
        with Mock("oa") as m:
            cfg = config([backend(m)], {"gpt-a": [("oa", "gpt-up")]}, keys=KEYS[:1])
            del cfg["proxy_api_key"]
            with Proxy(cfg) as px:
                r = request(px.url, "GET", "/admin/backends")
                self.assertEqual(r.status, 401, r.text)
                self.assertEqual(post(px.url, OA, chat(), {}).status, 401)
                self.assertEqual(post(px.url, OA, chat(), key_auth("alice")).status, 200)


class TestReload(unittest.TestCase):
    def test_limits_survive_and_resize_on_reload(self):
        with Mock("oa") as m:
            keys = [{"name": "k", "key": "sk-k-0123456789", "rpm": 2,
                     "budget": {"tokens_per_day": 1000000}}]
            cfg = config([backend(m)], {"gpt-a": [("oa", "gpt-up")]}, keys=keys,
                         concurrency={"enabled": True, "max_requests": 1, "queue_timeout": "5s"})
            with Proxy(cfg) as px:
                h = auth("openai", "sk-k-0123456789")
                for _ in range(2):
                    self.assertEqual(post(px.url, OA, chat(), h).status, 200)
                self.assertEqual(post(px.url, OA, chat(), h).status, 429)
                before = request(px.url, "GET", "/admin/keys", headers=oa_auth()).json()
                # hold the only slot, queue one, then raise max_requests and rpm by reload
                m.script({"delay_ms": 3000})
                holder = BG(px.url, OA, chat())
                holder.start()
                m.wait_requests(1)
                queued = BG(px.url, OA, chat())
                queued.start()
                wait_until(lambda: metric(px.url, "llm_proxy_queue_length") == 1, msg="queued")
                keys[0]["rpm"] = 3
                cfg2 = dict(cfg, keys=keys,
                            concurrency={"enabled": True, "max_requests": 2, "queue_timeout": "5s"})
                px.reload(cfg2)
                queued.join(10)
                self.assertEqual(queued.r.status, 200, "a raised max_requests admits the queue")
                self.assertLess(queued.t_done - holder.t_done if holder.t_done else -1, 0)
                # The key's bucket kept its level: rpm 3 now, but nothing refilled by the reload.
                r = post(px.url, OA, chat(), h)
                self.assertEqual(r.status, 429, "the bucket was not reset by the reload")
                self.assertEqual(r.headers.get("x-ratelimit-limit-requests"), "3")
                after = request(px.url, "GET", "/admin/keys", headers=oa_auth()).json()
                self.assertEqual(after["keys"][0]["usage"]["requests"],
                                 before["keys"][0]["usage"]["requests"])
                self.assertEqual(after["keys"][0]["usage"]["tokens_today"],
                                 before["keys"][0]["usage"]["tokens_today"])
                holder.join(10)


class TestSdkRateLimit(unittest.TestCase):
    def test_sdks_raise_rate_limit_error_and_honour_retry_after(self):
        from test_40_sdk import run_sdk
        with Mock("oa") as m, Mock("an") as a:
            cfg = config([backend(m), backend(a, protocol="anthropic")],
                         {"o": [("oa", "gpt-up")], "c": [("an", "claude-up")]},
                         rate_limit={"enabled": True, "global_rps": 1000, "per_ip_rps": 0,
                                     "burst_factor": 1, "per_model_rps": {"o": 0.25, "c": 0.25}})
            with Proxy(cfg) as px:
                for sdk, model, base in (("openai", "o", px.url + "/v1"),
                                         ("anthropic", "c", px.url)):
                    sc = {"sdk": sdk, "baseURL": base, "apiKey": PROXY_KEY, "model": model,
                          "max_tokens": 16}
                    first = run_sdk(sc)
                    self.assertTrue(first["ok"], first)
                    limited = run_sdk(sc)
                    self.assertFalse(limited["ok"])
                    self.assertEqual(limited["error"]["name"], "RateLimitError", limited)
                    self.assertEqual(limited["error"]["status"], 429)
                    self.assertIsNotNone(limited["error"].get("retry_after"), limited)
                    ra = int(limited["error"]["retry_after"])
                    self.assertTrue(1 <= ra <= 4, ra)
                    # With a retry allowed, the SDK waits Retry-After and then succeeds.
                    retried = run_sdk({**sc, "maxRetries": 2})
                    self.assertTrue(retried["ok"], retried)


if __name__ == "__main__":
    unittest.main()
