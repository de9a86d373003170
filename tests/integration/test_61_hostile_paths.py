"""Hostile paths, queries, headers and bodies from a key holder (issue: security hardening, items
2-5; ../shared/reviews/2026-12-hostile-probe.md rows B2, B3, B4, B6, B8).

The upstream path of an attempt comes from the dialect's endpoint table, never from the client's
raw path; unsafe paths are refused with 400 before anything else; unknown endpoints are 404
locally; a backend that lacks an optional endpoint is skipped without being cooled down for
everyone; credential-like query parameters and Connection-listed headers never go upstream;
duplicate top-level keys are refused.
"""

import json
import os
import resource
import socket
import unittest

from harness import (PROXY_KEY, Mock, Proxy, RawConn, backend, backend_health, config, pair_health,
                     request, require_proxy)
from proxycase import (ProxyCase, an_auth, assert_anthropic_error, assert_openai_error, chat, msg,
                       oa_auth)


def raw(url: str, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """Send one request with the target exactly as given (no client-side normalisation)."""
    h = {"Host": "x", "Content-Length": str(len(body)), "Content-Type": "application/json",
         **(headers or {})}
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    with RawConn(url) as c:
        c.send(head.encode() + b"\r\n" + body)
        return c.read_response()


class TestPaths(ProxyCase):
    mock_names = {"oa": (), "an": (), "oa2": ()}

    @classmethod
    def make_config(cls, m):
        return config(
            [backend(m["oa"]), backend(m["an"], "anthropic"), backend(m["oa2"])],
            {"gpt-a": [("oa", "gpt-up")], "claude-a": [("an", "claude-up")],
             "two": [("oa", "gpt-up", 1), ("oa2", "gpt-up-2", 2)],
             "cool": [("oa", "gpt-cool", 1), ("oa2", "gpt-up-2", 2)]},
            passthrough_paths=["/v1/rerank"],
            fallback={"enable_backoff": False, "cooldown_seconds": 30})

    def upstream(self):
        return [e for n in ("oa", "an", "oa2") for e in self.mocks[n].requests()]

    # ---- B2: path escapes ----------------------------------------------------------------------

    def test_dot_segments_and_encodings_are_400(self):
        body = json.dumps(chat("gpt-a")).encode()
        auth = {"Authorization": f"Bearer {PROXY_KEY}"}
        for target in ("/v1/../../admin/x", "/v1/chat/completions/../../../x",
                       "/v1/./chat/completions", "/v1/%2e%2e/admin/x", "/v1/%2E%2e/x",
                       "/v1%2fchat/completions", "/v1/chat%2Fcompletions", "/v1\\chat\\completions",
                       "/v1/%5cadmin", "/v1/chat/completions/..", "/v1/%00"):
            r = raw(self.url, "POST", target, body, auth)
            assert_openai_error(self, r, 400, code="invalid_path")
        # Anthropic-looking paths get the Anthropic error shape.
        r = raw(self.url, "POST", "/v1/messages/../../admin", json.dumps(msg()).encode(),
                {"x-api-key": PROXY_KEY})
        assert_anthropic_error(self, r, 400, type_="invalid_request_error")
        self.assertEqual(self.upstream(), [], "nothing may reach a backend")

    def test_unknown_v1_endpoint_is_404_locally_and_cools_nothing(self):
        """B3: /v1/does-not-exist used to reach the backend, get a 404 and cool the route down
        for everyone. Now it never leaves the proxy."""
        for _ in range(3):
            r = request(self.url, "POST", "/v1/does-not-exist", chat("gpt-a"), headers=oa_auth())
            assert_openai_error(self, r, 404, code="unknown_endpoint")
        self.assertEqual(self.upstream(), [])
        self.assertFalse(pair_health(self.proxy, "oa", "gpt-up")["cooling"])
        r = request(self.url, "POST", "/v1/chat/completions", chat("gpt-a"), headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual([e["path"] for e in self.upstream()], ["/v1/chat/completions"])

    def test_upstream_path_comes_from_the_table(self):
        """Every known endpoint reaches the backend at its canonical path, including the
        reference's paths without /v1."""
        cases = [("/v1/chat/completions", chat("gpt-a"), oa_auth(), "oa", "/v1/chat/completions"),
                 ("/chat/completions", chat("gpt-a"), oa_auth(), "oa", "/v1/chat/completions"),
                 ("/v1/embeddings", {"model": "gpt-a", "input": "x"}, oa_auth(), "oa",
                  "/v1/embeddings"),
                 ("/embeddings", {"model": "gpt-a", "input": "x"}, oa_auth(), "oa",
                  "/v1/embeddings"),
                 ("/completions", {"model": "gpt-a", "prompt": "x"}, oa_auth(), "oa",
                  "/v1/completions"),
                 ("/messages", msg(), an_auth(), "an", "/v1/messages"),
                 ("/v1/messages/count_tokens", msg(), an_auth(), "an",
                  "/v1/messages/count_tokens")]
        for path, body, h, mock, want in cases:
            for m in self.mocks.values():
                m.reset()
            r = request(self.url, "POST", path, body, headers=h)
            self.assertEqual(r.status, 200, f"{path}: {r.text}")
            self.assertEqual([e["path"] for e in self.mocks[mock].requests()], [want], path)
        r = request(self.url, "GET", "/models", headers=oa_auth())
        self.assertEqual(r.status, 200)
        self.assertIn("gpt-a", [m["id"] for m in r.json()["data"]])

    def test_passthrough_paths(self):
        self.mocks["oa"].script({"status": 200, "body": {"results": [{"index": 0}]}})
        r = request(self.url, "POST", "/v1/rerank?top_n=2&api_key=" + PROXY_KEY,
                    {"model": "gpt-a", "query": "q", "documents": ["a"]}, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        log = self.mocks["oa"].requests()
        self.assertEqual([e["path"] for e in log], ["/v1/rerank?top_n=2"])
        self.assertEqual(json.loads(log[0]["body"])["model"], "gpt-up")
        # Not listed: 404 locally.
        r = request(self.url, "POST", "/v1/score", {"model": "gpt-a"}, headers=oa_auth())
        assert_openai_error(self, r, 404, code="unknown_endpoint")
        # A passthrough path is never translated: an Anthropic-only alias has no route for it.
        r = request(self.url, "POST", "/v1/rerank", {"model": "claude-a"}, headers=oa_auth())
        self.assertGreaterEqual(r.status, 400)
        self.assertEqual(len(self.mocks["an"].requests()), 0)

    def test_wrong_method_is_405(self):
        r = request(self.url, "GET", "/v1/chat/completions", headers=oa_auth())
        assert_openai_error(self, r, 405)
        self.assertEqual(r.headers.get("allow"), "POST")
        r = request(self.url, "POST", "/v1/models", {"model": "x"}, headers=oa_auth())
        assert_openai_error(self, r, 405)

    # ---- B8: what goes upstream -----------------------------------------------------------------

    def test_query_filtered(self):
        r = request(self.url, "POST", f"/v1/messages?beta=true&key={PROXY_KEY}&x=1", msg(),
                    headers=an_auth())
        self.assertEqual(r.status, 200, r.text)
        r = request(self.url, "POST", f"/v1/chat/completions?key={PROXY_KEY}&api-version=1",
                    chat("gpt-a"), headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        paths = [e["path"] for e in self.upstream()]
        self.assertEqual(sorted(paths), ["/v1/chat/completions", "/v1/messages?beta=true"])

    def test_connection_listed_headers_dropped(self):
        body = json.dumps(chat("gpt-a")).encode()
        r = raw(self.url, "POST", "/v1/chat/completions", body,
                {"Authorization": f"Bearer {PROXY_KEY}", "Connection": "keep-alive, X-Custom",
                 "X-Custom": "secret-hop", "X-Kept": "yes"})
        self.assertEqual(r.status, 200, r.text)
        (e,) = self.mocks["oa"].requests()
        names = {k.lower() for k in e["headers"]}
        self.assertNotIn("x-custom", names)
        self.assertIn("x-kept", names)

    # ---- B6: duplicate keys ----------------------------------------------------------------------

    def test_duplicate_model_or_stream_is_400(self):
        for body, key in ((b'{"model":"claude-a","model":"gpt-a","messages":[]}', "model"),
                          (b'{"model":"gpt-a","stream":false,"messages":[],"stream":true}',
                           "stream")):
            r = raw(self.url, "POST", "/v1/chat/completions", body,
                    {"Authorization": f"Bearer {PROXY_KEY}"})
            e = assert_openai_error(self, r, 400, code="duplicate_key")
            self.assertIn(key, e["message"])
        self.assertEqual(self.upstream(), [])

    # ---- B3: a backend lacking an optional endpoint ------------------------------------------

    def test_optional_endpoint_404_fails_over_without_cooldown(self):
        """/v1/responses on a chat-only relay: 404 from the first route, answer from the second,
        and the first route stays usable for everyone else."""
        self.mocks["oa"].script({"status": 404, "body": "<html>404 Not Found</html>",
                                 "headers": {"content-type": "text/html"}})
        self.mocks["oa2"].script({"status": 200, "body": {"id": "resp_1", "object": "response"}})
        r = request(self.url, "POST", "/v1/responses", {"model": "two", "input": "hi"},
                    headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(len(self.mocks["oa"].requests()), 1)
        self.assertEqual(len(self.mocks["oa2"].requests()), 1)
        self.assertFalse(pair_health(self.proxy, "oa", "gpt-up")["cooling"])
        # The chat endpoint of the same route is still served by it.
        r = request(self.url, "POST", "/v1/chat/completions", chat("two"), headers=oa_auth())
        self.assertEqual(r.status, 200)
        self.assertEqual(len(self.mocks["oa"].requests()), 2)

    def test_core_endpoint_404_still_cools(self):
        """On chat completions a 404 is about the route itself (wrong model or base URL)."""
        self.mocks["oa"].script({"status": 404, "body": {"error": {
            "message": "The model `gpt-cool` does not exist", "code": "model_not_found"}}})
        r = request(self.url, "POST", "/v1/chat/completions", chat("cool"), headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(pair_health(self.proxy, "oa", "gpt-cool")["cooling"])


class TestHealth(unittest.TestCase):
    """/health counts enabled backends and aliases only, and says "degraded" with the aliases
    that have no usable route (the reference always said "healthy")."""

    def test_degraded_and_enabled_counts(self):
        require_proxy()
        with Mock("a") as a, Mock("b") as b:
            cfg = config([backend(a), backend(b), {**backend("off", url="http://127.0.0.1:9/v1"), "enabled": False}],
                         {"m": [("a", "up")], "n": [("b", "up")],
                          "z": {"enabled": False, "routes": [{"backend": "a", "model": "x"}]}},
                         fallback={"cooldown_seconds": 30, "enable_backoff": False})
            with Proxy(cfg) as px:
                h = request(px.url, "GET", "/health").json()
                self.assertEqual(h, {"status": "healthy", "backends": 2, "models": 2})
                b.script({"status": 500})
                r = request(px.url, "POST", "/v1/chat/completions", chat("n"), headers=oa_auth())
                self.assertEqual(r.status, 500)
                r = request(px.url, "GET", "/health")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json(), {"status": "degraded", "backends": 2, "models": 2,
                                            "unavailable_models": ["n"]})


class TestLocalFailure(unittest.TestCase):
    """B4: out of file descriptors, the proxy used to blame the backend (cooldown, then 503s after
    the flood ended). A local shortage must answer 503 + Retry-After and cool nothing."""

    def test_fd_exhaustion_is_local(self):
        require_proxy()
        with Mock("a") as a:
            cfg = config([backend(a)], {"m": [("a", "up")]},
                         fallback={"cooldown_seconds": 60, "enable_backoff": False},
                         # Caps high enough that the descriptor table, not the cap, runs out.
                         server={"threads": 1, "max_connections": 100000,
                                 "max_connections_per_ip": 100000})
            limit = 64

            def lower_limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

            px = Proxy(cfg)
            px.preexec = lower_limit
            with px:
                # Fill the process's descriptor table with idle client connections.
                conns = []
                try:
                    for _ in range(limit):
                        s = socket.create_connection(("127.0.0.1", px.port), timeout=2)
                        conns.append(s)
                except OSError:
                    pass
                self.assertGreaterEqual(len(conns), 8)
                # The first connection was accepted long before the table filled up; a request on
                # it needs one more descriptor (the upstream socket), which does not exist.
                body = json.dumps(chat("m")).encode()
                s = conns[0]
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer " + PROXY_KEY.encode() +
                          b"\r\nContent-Type: application/json\r\nContent-Length: " +
                          str(len(body)).encode() + b"\r\n\r\n" + body)
                s.settimeout(10)
                r = s.recv(65536)
                for s in conns:
                    s.close()
                status_line = r.split(b"\r\n", 1)[0]
                self.assertIn(b" 503 ", status_line, r[:400])
                self.assertIn(b"retry-after: 1", r.lower())
                self.assertIn(b"local_resource_exhausted", r)
                # Whatever happened during the flood, the backend was not blamed.
                self.assertFalse(pair_health(px, "a", "up")["cooling"])
                r2 = request(px.url, "POST", "/v1/chat/completions", chat("m"),
                             headers=oa_auth())
                self.assertEqual(r2.status, 200, r2.text)


if __name__ == "__main__":
    unittest.main()
