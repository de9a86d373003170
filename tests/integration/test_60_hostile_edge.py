"""Hostile clients at the HTTP edge (review 2026-12-hostile-probe, finding B1 and the edge rows of
its table): one test per probe row.

Rows that were bugs (B1): an LLM or admin request without a valid key is refused with 401 at its
head, before any body byte is read and without a 100 Continue; a Content-Length is never
allocated up front; a body with a key must arrive within server.body_timeout and above
server.min_body_rate (408); server.max_connections / max_connections_per_ip cap what peers hold;
server.max_body_memory bounds the bytes held by bodies in progress (503 + Retry-After).

Rows that were fine and must stay fine: slowloris heads, oversized heads (431), huge bodies
(413), bad chunk sizes, CL+TE, duplicate CL, other transfer-codings (501), obs-fold / NUL / bare
CR, pipelining with garbage, HTTP/1.0, HTTP/2.0, the h2 preface, absolute-form, CONNECT, HTTP/0.9.
"""

import json
import re
import socket
import time
import unittest

from harness import (PROXY_KEY, Mock, Proxy, RawConn, Response, auth, backend, config, http_bytes,
                     require_proxy, request)
from proxycase import (CHAT, MSG, ProxyCase, assert_anthropic_error, assert_openai_error, oa_auth)

BODY = json.dumps(CHAT).encode()


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    """A request head (no body) with Host and the given headers."""
    h = {"Host": "x", **(headers or {})}
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) +
            "\r\n").encode()


def key_header() -> str:
    return "Bearer " + PROXY_KEY


def closed_within(c: RawConn, timeout: float) -> tuple[bool, bytes]:
    try:
        return True, c.read_until_close(timeout)
    except TimeoutError:
        return False, c.buf


def parse_response(data: bytes) -> Response:
    """One response (head + Content-Length body) out of raw bytes."""
    h, _, rest = data.partition(b"\r\n\r\n")
    lines = h.decode("latin-1").split("\r\n")
    import http.client
    msg = http.client.HTTPMessage()
    for line in lines[1:]:
        k, _, v = line.partition(":")
        msg[k.strip()] = v.strip()
    n = int(msg.get("content-length") or 0)
    return Response(int(lines[0].split(" ")[1]), msg, rest[:n])


def split_responses(data: bytes) -> list[Response]:
    """Every Content-Length-framed response in data, in order."""
    out = []
    while data:
        h, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        r = parse_response(data)
        out.append(r)
        data = rest[len(r.body):]
    return out


class EdgeCase(ProxyCase):
    mock_names = {"oa": ()}
    server: dict = {}
    extra: dict = {}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"])], {"gpt-a": [("oa", "gpt-up-1")]},
                      admin_api_key="sk-admin-test-KEY-0123456789",
                      server={"idle_timeout": "2s", **cls.server}, **cls.extra)

    def assert_no_upstream(self):
        self.assertEqual(self.mocks["oa"].requests(), [], "nothing may reach the backend")


# ---- B1: authenticate on the head ------------------------------------------------------------


class TestHeadAuth(EdgeCase):

    def test_slow_body_without_key_refused_at_head(self):
        """probe: slow body, no key, 1 B / 3 s -> held 30 s+. Now: 401 as soon as the head is in,
        although no body byte was sent, then the connection closes."""
        with RawConn(self.url) as c:
            t0 = time.monotonic()
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Type": "application/json", "Content-Length": "1000"}))
            r = c.read_response(timeout=3)
            elapsed = time.monotonic() - t0
            e = assert_openai_error(self, r, 401, code="invalid_api_key", contains="Missing API key")
            self.assertEqual(e["type"], "invalid_request_error")
            self.assertEqual(r.headers.get("connection"), "close")
            self.assertLess(elapsed, 1.5, "the 401 must not wait for the body")
            ok, rest = closed_within(c, 3.0)
            self.assertTrue(ok, "connection still open after the 401")
            self.assertEqual(rest, b"")
        self.assert_no_upstream()

    def test_wrong_key_refused_at_head_anthropic_shape(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/messages", {"x-api-key": "sk-wrong", "Content-Length": "5000",
                                                 "anthropic-version": "2023-06-01"}))
            c.send(b'{"model":')  # a little body, then nothing
            r = c.read_response(timeout=3)
            assert_anthropic_error(self, r, 401, type_="authentication_error",
                                   contains="Invalid API key")
            self.assertTrue(closed_within(c, 3.0)[0])
        self.assert_no_upstream()

    def test_client_request_id_kept_on_head_401(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": "10", "X-Request-Id": "my-req-123"}))
            r = c.read_response(timeout=3)
        assert_openai_error(self, r, 401)
        self.assertEqual(r.headers.get("x-request-id"), "my-req-123")

    def test_64mib_content_length_without_key_allocates_nothing(self):
        """probe: 16 conns announcing 64 MiB and sending 60 MB each pinned ~1 GB. Now each gets
        401 at its head and what it still sends is discarded: RSS barely moves."""
        px = self.proxy
        rss0 = px.rss_kb()
        conns = []
        try:
            for _ in range(16):
                c = RawConn(self.url, timeout=10)
                c.send(head("POST", "/v1/chat/completions", {"Content-Length": str(64 << 20)}))
                conns.append(c)
            for c in conns:
                r = c.read_response(timeout=5)
                self.assertEqual(r.status, 401, r.text)
            chunk = b"a" * (1 << 20)
            for c in conns:  # the server discards for a while, then closes: either is fine
                try:
                    for _ in range(4):
                        c.send(chunk)
                except OSError:
                    pass
            time.sleep(0.3)
            grown_mb = (px.rss_kb() - rss0) / 1024
        finally:
            for c in conns:
                c.close()
        self.assertLess(grown_mb, 16, f"RSS grew by {grown_mb:.1f} MB for 16 refused requests")
        self.assert_no_upstream()

    def test_expect_continue_without_key_gets_401_not_100(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": str(len(BODY)), "Expect": "100-continue",
                         "Content-Type": "application/json"}))
            first = c.recv_until(b"\r\n", timeout=3)
            self.assertTrue(first.startswith(b"HTTP/1.1 401 "), first)
            c.buf = first + c.buf
            r = c.read_response(timeout=3)
            assert_openai_error(self, r, 401)
            self.assertTrue(closed_within(c, 3.0)[0])
        self.assert_no_upstream()

    def test_expect_continue_with_key_gets_100_then_answer(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": str(len(BODY)), "Expect": "100-continue",
                         "Content-Type": "application/json", "Authorization": key_header()}))
            cont = c.recv_until(b"\r\n\r\n", timeout=3)
            self.assertTrue(cont.startswith(b"HTTP/1.1 100 Continue"), cont)
            c.send(BODY)
            r = c.read_response(timeout=10)
            self.assertEqual(r.status, 200, r.text)

    def test_admin_refused_at_head(self):
        """Admin paths need the admin key (the proxy key is not enough when one is set)."""
        for hdrs in ({}, {"Authorization": key_header()}):
            with RawConn(self.url) as c:
                c.send(head("POST", "/admin/reload", {"Content-Length": "100000", **hdrs}))
                r = c.read_response(timeout=3)
                assert_openai_error(self, r, 401, code="invalid_api_key")
                self.assertTrue(closed_within(c, 3.0)[0])
        r = request(self.url, "GET", "/admin/stats",
                    headers={"Authorization": "Bearer sk-admin-test-KEY-0123456789"})
        self.assertEqual(r.status, 200, r.text)

    def test_reference_paths_without_v1_refused_at_head(self):
        for path in ("/chat/completions", "/completions", "/embeddings", "/messages", "/models",
                     "/messages/count_tokens"):
            with RawConn(self.url) as c:
                c.send(head("POST", path, {"Content-Length": "100000"}))
                r = c.read_response(timeout=3)
                self.assertEqual(r.status, 401, f"{path}: {r.text}")
                self.assertTrue(closed_within(c, 3.0)[0], path)

    def test_open_endpoints_keep_their_rules(self):
        """/health, /healthz, /readyz and /metrics need no key, as before."""
        for path in ("/health", "/healthz", "/readyz", "/metrics"):
            self.assertEqual(request(self.url, "GET", path).status, 200, path)
        r = request(self.url, "GET", "/v1/models", headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        r = request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)

    def test_head_401_keeps_access_log_and_metrics(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions", {"Content-Length": "10"}))
            rid = c.read_response(timeout=3).headers.get("x-request-id")
        from harness import access_entry, metric, scrape
        e = access_entry(self.proxy, rid)
        self.assertEqual(e["status"], 401)
        self.assertEqual(e["path"], "/v1/chat/completions")
        self.assertGreaterEqual(metric(scrape(self.proxy), "llm_proxy_requests_total",
                                       alias="_unknown", protocol="openai", status="401"), 1)


# ---- B1: body deadline and minimum rate ------------------------------------------------------


def dribble(c: RawConn, data: bytes, every: float, until: float) -> tuple[bool, bytes]:
    """Send data byte by byte every `every` s until the peer closes or `until` s passed.
    Returns (closed, what the peer sent)."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < until:
        try:
            if i < len(data):
                c.send(data[i:i + 1])
                i += 1
        except OSError:
            return True, c.buf + c.read_until_close(2.0)
        ok, got = closed_within(c, every)
        if ok:
            return True, got
    return False, c.buf


class TestBodyDeadline(EdgeCase):
    server = {"body_timeout": "2s", "min_body_rate": 0}
    extra = {"timeout": {"read_timeout": "10s"}}

    def test_slow_body_with_key_cut_by_deadline_openai(self):
        """A body that keeps trickling (so the silence timeout never fires) is cut by the overall
        deadline."""
        with RawConn(self.url) as c:
            t0 = time.monotonic()
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": "1000", "Authorization": key_header()}))
            closed, data = dribble(c, b" " * 1000, 0.2, 6.0)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "slow body not cut")
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 4.5)
        r = parse_response(data)
        assert_openai_error(self, r, 408, type_="timeout_error", contains="deadline")
        self.assertEqual(r.headers.get("connection"), "close")
        self.assert_no_upstream()

    def test_slow_body_with_key_cut_by_deadline_anthropic(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/messages",
                        {"Content-Length": "1000", "x-api-key": PROXY_KEY,
                         "anthropic-version": "2023-06-01"}))
            closed, data = dribble(c, b" " * 1000, 0.2, 6.0)
        self.assertTrue(closed)
        assert_anthropic_error(self, parse_response(data), 408, type_="timeout_error")

    def test_chunked_slow_body_cut_by_deadline(self):
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Transfer-Encoding": "chunked", "Authorization": key_header()}))
            closed, data = dribble(c, b"1\r\n \r\n" * 200, 0.2, 6.0)
        self.assertTrue(closed)
        assert_openai_error(self, parse_response(data), 408)

    def test_fast_body_within_deadline(self):
        r = request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)


class TestBodyMinRate(EdgeCase):
    server = {"body_timeout": "30s", "min_body_rate": "1KiB"}
    extra = {"timeout": {"read_timeout": "30s"}}

    def test_body_below_min_rate_cut_after_first_window(self):
        """200 B/s against a 1 KiB/s minimum: cut at the first check, 5 s after the head."""
        with RawConn(self.url) as c:
            t0 = time.monotonic()
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": "100000", "Authorization": key_header()}))
            closed = False
            data = b""
            while time.monotonic() - t0 < 9:
                try:
                    c.send(b" " * 100)
                except OSError:
                    closed, data = True, c.buf + c.read_until_close(2.0)
                    break
                ok, data = closed_within(c, 0.5)
                if ok:
                    closed = True
                    break
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a body at 200 B/s was not cut")
        self.assertGreater(elapsed, 4.5)
        self.assertLess(elapsed, 7.5)
        assert_openai_error(self, parse_response(data), 408, contains="minimum rate")
        self.assert_no_upstream()

    def test_body_above_min_rate_passes(self):
        """~4 KiB/s for 6 s (two checks) is fine: the request is answered."""
        body = BODY + b" " * 24000
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Content-Length": str(len(body)), "Authorization": key_header(),
                         "Content-Type": "application/json"}))
            for i in range(0, len(body), 2000):
                c.send(body[i:i + 2000])
                time.sleep(0.5)
            r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200, r.text)


# ---- B1: connection caps ---------------------------------------------------------------------


def connect_from(src: str, port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(src, 0))
    return s


def get_health(s: socket.socket, timeout: float = 5.0) -> bytes:
    s.settimeout(timeout)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def peer_closed(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


class TestConnectionCaps(unittest.TestCase):
    """max_connections (total, across both worker threads) pauses accepting; a peer address at
    max_connections_per_ip has further connections closed at once."""

    def test_total_and_per_address_caps(self):
        require_proxy()
        with Mock("oa") as up, Proxy(config([backend(up)], {"gpt-a": [("oa", "m")]},
                                            server={"max_connections": 4,
                                                    "max_connections_per_ip": 3,
                                                    "threads": 2})) as px:
            time.sleep(0.3)  # the start-up health checks' connections are gone
            held = []
            try:
                for _ in range(3):
                    s = connect_from("127.0.0.1", px.port)
                    self.assertIn(b" 200 ", get_health(s).split(b"\r\n")[0])
                    held.append(s)
                # A 4th from the same address: closed at once, unanswered.
                s = connect_from("127.0.0.1", px.port)
                held.append(s)
                self.assertTrue(peer_closed(s, 3.0), "per-address cap not enforced")
                # Another address: admitted (total 4 = the cap).
                b1 = connect_from("127.0.0.2", px.port)
                held.append(b1)
                self.assertIn(b" 200 ", get_health(b1).split(b"\r\n")[0])
                # The 5th connection waits in the backlog: connected, but never answered...
                b2 = connect_from("127.0.0.2", px.port)
                held.append(b2)
                b2.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                b2.settimeout(1.0)
                with self.assertRaises((TimeoutError, socket.timeout)):
                    b2.recv(100)
                # ... until a slot frees, on whichever worker.
                t0 = time.monotonic()
                held[0].close()
                b2.settimeout(3.0)
                data = b2.recv(65536)
                self.assertIn(b" 200 ", data.split(b"\r\n")[0])
                self.assertLess(time.monotonic() - t0, 2.0)
                self.assertIn("connection cap reached", px.log_text())
                self.assertIn("per-address cap", px.log_text())
                # Scraped on a held connection: a new one would wait for a slot.
                from harness import metric, parse_metrics
                b1.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                raw = b""
                while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < int(
                        re.search(rb"(?i)content-length: (\d+)", raw).group(1)):
                    raw += b1.recv(1 << 20)
                m = parse_metrics(raw.partition(b"\r\n\r\n")[2].decode())
                self.assertEqual(metric(m, "llm_proxy_client_connections_limit"), 4)
                self.assertGreaterEqual(metric(m, "llm_proxy_client_connections_refused_total"), 1)
                self.assertGreaterEqual(metric(m, "llm_proxy_client_connections"), 3)
            finally:
                for s in held:
                    s.close()
            time.sleep(0.3)
            self.assertEqual(request(px.url, "GET", "/health").status, 200)

    def test_ipv4_mapped_counts_as_ipv4(self):
        """A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: they share the IPv4 count."""
        require_proxy()
        with Mock("oa") as up:
            cfg = config([backend(up)], {"gpt-a": [("oa", "m")]},
                         server={"max_connections_per_ip": 1, "threads": 1})
            with Proxy(json.dumps({**cfg, "listen": "[::]:{port}"})) as px:
                port = px.port
                time.sleep(0.3)
                a = socket.create_connection(("127.0.0.1", port), timeout=5)
                self.assertIn(b" 200 ", get_health(a).split(b"\r\n")[0])
                b = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                b.connect(("::ffff:127.0.0.1", port))
                try:
                    self.assertTrue(peer_closed(b, 3.0), "mapped address counted apart")
                finally:
                    a.close()
                    b.close()


# ---- B1: body memory budget ------------------------------------------------------------------


class TestBodyBudget(EdgeCase):
    server = {"max_body_size": 60000, "max_body_memory": "64KiB"}

    def test_body_budget_exhausted_503_then_recovers(self):
        body = BODY + b" " * (60000 - len(BODY))
        hdrs = {"Content-Length": str(len(body)), "Authorization": key_header(),
                "Content-Type": "application/json"}
        with RawConn(self.url) as a:
            a.send(head("POST", "/v1/chat/completions", hdrs) + body[:40000])
            time.sleep(0.3)  # a's body storage has grown to its 60000 bytes
            with RawConn(self.url) as b:
                b.send(head("POST", "/v1/chat/completions", hdrs) + body[:20000])
                r = b.read_response(timeout=3)
                e = assert_openai_error(self, r, 503, contains="max_body_memory")
                self.assertEqual(e["type"], "server_error")
                self.assertEqual(r.headers.get("retry-after"), "1")
                self.assertTrue(closed_within(b, 3.0)[0])
            with RawConn(self.url) as b:  # the Anthropic shape too
                b.send(head("POST", "/v1/messages", {**hdrs, "Authorization": "",
                                                     "x-api-key": PROXY_KEY}) + body[:20000])
                assert_anthropic_error(self, b.read_response(timeout=3), 503,
                                       type_="overloaded_error")
            from harness import metric, scrape
            m = scrape(self.proxy)
            self.assertGreaterEqual(metric(m, "llm_proxy_body_memory_refused_total"), 2)
            self.assertEqual(metric(m, "llm_proxy_body_memory_bytes"), 60001)
            a.send(body[40000:])
            ra = a.read_response(timeout=10)
            self.assertEqual(ra.status, 200, ra.text)
        # The budget was given back: the same body now passes.
        r = request(self.url, "POST", "/v1/chat/completions", body, headers=hdrs)
        self.assertEqual(r.status, 200, r.text)


# ---- configuration: --check and live reload ---------------------------------------------------


class TestLimitsConfig(unittest.TestCase):

    def test_check_validates_the_new_keys(self):
        import os
        import re
        import subprocess
        import tempfile
        from harness import PROXY_BIN
        yaml = ('backends:\n  - {name: a, url: "http://127.0.0.1:1/v1"}\n'
                'server:\n  max_body_size: 512MiB\n  max_connections: -1\n'
                '  min_body_rate: fast\n  body_timeout: 0s\n')
        fd, path = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(yaml)
        self.addCleanup(os.unlink, path)
        r = subprocess.run([PROXY_BIN, "--check", "-config", path], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for key in ("server.max_connections", "server.min_body_rate", "server.body_timeout",
                    "max_body_memory"):
            self.assertRegex(r.stderr, re.escape(path) + r":\d+:\d+: error: .*" + re.escape(key))
        ok = yaml.split("server:")[0] + ("server: {max_body_memory: 1GiB, max_body_size: 512MiB, "
                                         "max_connections: 100, max_connections_per_ip: 10, "
                                         "min_body_rate: 4KiB, body_timeout: 2m}\n")
        with open(path, "w") as f:
            f.write(ok)
        r = subprocess.run([PROXY_BIN, "--check", "-config", path], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_limits_apply_on_reload(self):
        """Reloading lowers max_connections_per_ip and body_timeout for new connections and
        requests at once."""
        require_proxy()
        with Mock("oa") as up:
            cfg = config([backend(up)], {"gpt-a": [("oa", "m")]}, server={"threads": 1})
            with Proxy(cfg) as px:
                time.sleep(0.3)
                held = [connect_from("127.0.0.1", px.port) for _ in range(3)]
                for s in held:
                    self.assertIn(b" 200 ", get_health(s).split(b"\r\n")[0])
                cfg2 = {**cfg, "server": {"threads": 1, "max_connections_per_ip": 3,
                                          "body_timeout": "1s"}}
                px.reload(cfg2)
                from harness import wait_until
                wait_until(lambda: "configuration reloaded" in px.log_text(), 10, msg="reload")
                s = connect_from("127.0.0.1", px.port)
                held.append(s)
                self.assertTrue(peer_closed(s, 3.0), "reloaded per-address cap not applied")
                held.pop(0).close()
                time.sleep(0.3)
                with RawConn(px.url) as c:
                    t0 = time.monotonic()
                    c.send(head("POST", "/v1/chat/completions",
                                {"Content-Length": "1000", "Authorization": key_header()}))
                    closed, data = dribble(c, b" " * 1000, 0.2, 5.0)
                    self.assertTrue(closed)
                    self.assertLess(time.monotonic() - t0, 3.0)
                    self.assertEqual(parse_response(data).status, 408)
                for s in held:
                    s.close()


# ---- rows that were fine and stay fine -------------------------------------------------------


class TestProbeRowsStayFine(EdgeCase):
    server = {"idle_timeout": "1s", "max_header_size": "16KiB", "max_body_size": "1MiB"}

    def raw(self, data: bytes, timeout: float = 5.0) -> Response:
        with RawConn(self.url) as c:
            c.send(data)
            return c.read_response(timeout)

    def assert_reject(self, data: bytes, status: int, what: str = "") -> Response:
        r = self.raw(data)
        assert_openai_error(self, r, status)
        self.assertEqual(r.headers.get("connection"), "close", what)
        return r

    def test_slowloris_headers_cut_while_normal_traffic_flows(self):
        conns = [RawConn(self.url) for _ in range(20)]
        try:
            t0 = time.monotonic()
            for c in conns:
                c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            r = request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, 1.0)
            for c in conns:
                try:
                    c.send(b"X")
                except OSError:
                    pass
            for c in conns:
                self.assertTrue(closed_within(c, 3.0)[0], "slowloris head not cut")
            self.assertLess(time.monotonic() - t0, 3.5)
        finally:
            for c in conns:
                c.close()

    def test_oversized_heads_431(self):
        self.assert_reject(head("GET", "/health", {"X-Big": "a" * (1 << 20)}), 431, "1 MB header")
        self.assert_reject(b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431,
                           "1 MB URL")
        many = "".join(f"X-H{i}: v\r\n" for i in range(200)).encode()
        self.assert_reject(b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431,
                           "200 headers")

    def test_huge_bodies_413(self):
        r = self.assert_reject(head("POST", "/v1/chat/completions",
                                    {"Content-Length": str(1 << 30),
                                     "Authorization": key_header()}), 413)
        self.assertIn("max_body_size", r.json()["error"]["message"])
        # chunked, growing past the limit
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions",
                        {"Transfer-Encoding": "chunked", "Authorization": key_header()}))
            try:
                for _ in range(3):
                    c.send(b"80000\r\n" + b"a" * 0x80000 + b"\r\n")
            except OSError:
                pass
            assert_openai_error(self, c.read_response(timeout=5), 413)
        # no length at all: no body; what follows is not a request
        with RawConn(self.url) as c:
            c.send(head("POST", "/v1/chat/completions", {"Authorization": key_header()}) +
                   b"a" * 1000)
            assert_openai_error(self, c.read_response(timeout=5), 400)

    def test_bad_chunk_sizes(self):
        for size in (b"zz", b"-1", b"+5", b"fffffffffffffffffffff", b"0x10", b""):
            r = self.raw(head("POST", "/v1/chat/completions",
                              {"Transfer-Encoding": "chunked", "Authorization": key_header()}) +
                         size + b"\r\nabc\r\n0\r\n\r\n")
            self.assertIn(r.status, (400, 413), size)
            assert_openai_error(self, r, r.status)

    def test_content_length_smuggling_shapes(self):
        k = {"Authorization": key_header()}
        for hdrs in ({"Content-Length": "5", "Transfer-Encoding": "chunked"},
                     {"Content-Length": "+5"}, {"Content-Length": "-1"},
                     {"Content-Length": "5, 5"}, {"Content-Length": "99999999999999999999999"}):
            r = self.raw(head("POST", "/v1/chat/completions", {**k, **hdrs}) + b"hello")
            self.assertIn(r.status, (400, 413), hdrs)
            assert_openai_error(self, r, r.status)
        dup = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: " +
               key_header().encode() + b"\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
        self.assert_reject(dup, 400, "duplicate Content-Length")

    def test_other_transfer_codings_501(self):
        for te in ("gzip", "chunked, gzip", "identity", "chunked, chunked"):
            self.assert_reject(head("POST", "/v1/chat/completions",
                                    {"Transfer-Encoding": te, "Authorization": key_header()}) +
                               b"0\r\n\r\n", 501, te)

    def test_header_garbage_400(self):
        for bad in (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",      # obs-fold
                    b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",       # NUL
                    b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",         # bare CR
                    b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",                     # space before colon
                    b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"):          # duplicate Host
            self.assert_reject(bad, 400, repr(bad))

    def test_pipelining(self):
        one = http_bytes("POST", "/v1/chat/completions", CHAT, oa_auth())
        with RawConn(self.url) as c:
            c.send(one * 3)
            rs = [c.read_response(timeout=10) for _ in range(3)]
        self.assertEqual([r.status for r in rs], [200, 200, 200])
        with RawConn(self.url) as c:
            c.send(one + b"GARBAGE\r\n\r\n")
            self.assertEqual(c.read_response(timeout=10).status, 200)
            assert_openai_error(self, c.read_response(timeout=5), 400)
        with RawConn(self.url) as c:
            c.send(one + b"GET /admin/stats HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response(timeout=10).status, 200)
            assert_openai_error(self, c.read_response(timeout=5), 401)

    def test_versions_and_forms(self):
        r = self.raw(b"GET /health HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200)
        self.assert_reject(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505)
        with RawConn(self.url) as c:
            c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            r = c.read_response(timeout=5)
        self.assertIn(r.status, (400, 505))
        assert_openai_error(self, r, r.status)
        self.assert_reject(b"GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "absolute-form")
        self.assert_reject(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                           400, "CONNECT")
        with RawConn(self.url) as c:  # HTTP/0.9: no version, never a complete head
            c.send(b"GET /\r\n")
            ok, data = closed_within(c, 4.0)
            self.assertTrue(ok, "HTTP/0.9 request line not closed at the header timeout")


if __name__ == "__main__":
    unittest.main()
