"""Pass-through (same protocol on both sides): OpenAI -> OpenAI backend, Anthropic -> Anthropic
backend. What the client gets (status, headers, SSE sequence) and what the upstream received
(model rewritten, keys swapped, every other body byte identical, forwarded headers, URL joining).
"""

import json
import unittest

from harness import (PROXY_KEY, RawConn, backend, backend_key, config, http_bytes, request, stream,
                     wait_until)
from proxycase import (CHAT, MSG, ProxyCase, an_auth, assert_openai_error, chat,
                       check_anthropic_stream, check_openai_stream, msg, oa_auth)

REQID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


def weird_body(alias: str, anthropic: bool = False) -> tuple[bytes, bytes, bytes]:
    """A request body full of things a proxy could mangle. Returns (prefix, suffix, top-level
    model key text) so that the body is prefix + '"model" :  "<alias>"' + suffix and the
    upstream must receive exactly prefix + '"model" :  "<route model>"' + suffix."""
    prefix = (
        '{\n  "messages": [\n'
        '    {"role": "user", "content": "h\\u00e9llo \u4f60\u597d \U0001F600 \\"q\\" \\n",'
        ' "model": "' + alias + '", "name": {"model": "nested"}},\n'
        '    {"role": "assistant", "content": [{"type": "text", "text": "model: x"}]}\n'
        '  ],\n'
        '  "tools": [{"type": "function", "function": {"name": "f", "description": "d",'
        ' "parameters": {"type": "object", "properties": {"model": {"type": "string"}}}}}],\n'
        '  "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},\n'
        '  "seed": 123456789012345678901234567890,\n'
        '  "temperature": 0.70000000000000001,\n'
        '  "x_unknown_field": [null, true, false, -0, 1e400, {"deep": [[[]]]}],\n'
        '  ')
    if anthropic:
        prefix += '"max_tokens": 32, "metadata": {"user_id": "u-1"},\n  '
    suffix = ' ,\n  "zzz_last": "\\ud83d\\ude00"\n}\n'
    return prefix.encode(), suffix.encode(), b'"model" :  '


class TestPassthrough(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        oa, an = m["oa"], m["an"]
        return config(
            [backend(oa), backend(an, "anthropic"),
             backend("oa-bare", url=oa.url),
             backend("oa-prefix", url=oa.url + "/openai/v1/"),
             backend("oa-api", url=oa.url + "/api"),
             backend("an-v1", "anthropic", url=an.url + "/v1")],
            {"gpt-a": [("oa", "gpt-up-1")],
             "claude-a": [("an", "claude-up-1")],
             "gpt-bare": [("oa-bare", "m-bare")],
             "gpt-prefix": [("oa-prefix", "m-prefix")],
             "gpt-api": [("oa-api", "m-api")],
             "claude-v1": [("an-v1", "claude-v1-up")],
             "gpt-off": {"enabled": False, "routes": [{"backend": "oa", "model": "x",
                                                       "priority": 1}]}})

    # ---- helpers ---------------------------------------------------------------------------

    def one_upstream(self, name: str) -> dict:
        log = self.mocks[name].wait_requests(1)
        self.assertEqual(len(log), 1, [e["path"] for e in log])
        return log[0]

    def assert_no_proxy_key(self, e: dict) -> None:
        for k, v in e["headers"].items():
            self.assertNotIn(PROXY_KEY, v, f"proxy key leaked upstream in header {k}")
        self.assertNotIn(PROXY_KEY, e["body"], "proxy key leaked upstream in the body")

    def assert_openai_upstream(self, e: dict, backend_name: str, model: str) -> None:
        self.assertEqual(e["headers"].get("authorization"), f"Bearer {backend_key(backend_name)}")
        self.assertNotIn("x-api-key", e["headers"])
        self.assertEqual(json.loads(e["body"])["model"], model)
        self.assert_no_proxy_key(e)

    def assert_anthropic_upstream(self, e: dict, backend_name: str, model: str) -> None:
        self.assertEqual(e["headers"].get("x-api-key"), backend_key(backend_name))
        self.assertNotIn("authorization", e["headers"])
        self.assertEqual(json.loads(e["body"])["model"], model)
        self.assert_no_proxy_key(e)

    # ---- OpenAI ----------------------------------------------------------------------------

    def test_openai_non_stream(self):
        r = request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("application/json", r.headers["content-type"])
        self.assertTrue(r.headers.get("x-request-id"))
        b = r.json()
        self.assertEqual(b["object"], "chat.completion")
        self.assertTrue(b["choices"][0]["message"]["content"].startswith("Hello from oa"))
        e = self.one_upstream("oa")
        self.assertEqual((e["method"], e["path"]), ("POST", "/v1/chat/completions"))
        self.assert_openai_upstream(e, "oa", "gpt-up-1")
        self.assertEqual(self.mocks["an"].requests(), [])

    def test_openai_stream(self):
        s = stream(self.url, "/v1/chat/completions", chat(stream=True), headers=oa_auth())
        self.assertEqual(s.status, 200)
        self.assertTrue(s.headers["content-type"].startswith("text/event-stream"),
                        s.headers["content-type"])
        self.assertEqual(s.headers.get("x-accel-buffering"), "no")
        self.assertTrue(s.headers.get("x-request-id"))
        evs = s.all()
        self.assertTrue(s.complete, s.error)
        text = check_openai_stream(self, evs, n_deltas=8)
        self.assertTrue(text.startswith("Hello from oa"), text)
        self.assertTrue(s.body.endswith(b"data: [DONE]\n\n"), s.body[-40:])
        e = self.one_upstream("oa")
        self.assert_openai_upstream(e, "oa", "gpt-up-1")
        self.assertTrue(json.loads(e["body"])["stream"])
        self.assertTrue(e["completed"])

    # ---- Anthropic -------------------------------------------------------------------------

    def test_anthropic_non_stream_beta_query(self):
        h = {**an_auth(), "anthropic-version": "2023-01-01", "anthropic-beta": "tools-2024-04-04"}
        r = request(self.url, "POST", "/v1/messages?beta=true", MSG, headers=h)
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(r.headers.get("x-request-id"))
        b = r.json()
        self.assertEqual((b["type"], b["role"]), ("message", "assistant"))
        self.assertTrue(b["content"][0]["text"].startswith("Hello from an"))
        e = self.one_upstream("an")
        self.assertEqual(e["path"], "/v1/messages?beta=true")
        self.assert_anthropic_upstream(e, "an", "claude-up-1")
        self.assertEqual(e["headers"].get("anthropic-version"), "2023-01-01")
        self.assertEqual(e["headers"].get("anthropic-beta"), "tools-2024-04-04")
        self.assertEqual(self.mocks["oa"].requests(), [])

    def test_anthropic_version_added_when_absent(self):
        h = {"Authorization": f"Bearer {PROXY_KEY}"}
        r = request(self.url, "POST", "/v1/messages", MSG, headers=h)
        self.assertEqual(r.status, 200, r.text)
        e = self.one_upstream("an")
        self.assertEqual(e["path"], "/v1/messages")
        self.assertEqual(e["headers"].get("anthropic-version"), "2023-06-01")
        self.assert_anthropic_upstream(e, "an", "claude-up-1")

    def test_anthropic_stream(self):
        s = stream(self.url, "/v1/messages?beta=true", msg(stream=True), headers=an_auth())
        self.assertEqual(s.status, 200)
        self.assertTrue(s.headers["content-type"].startswith("text/event-stream"))
        self.assertEqual(s.headers.get("x-accel-buffering"), "no")
        self.assertTrue(s.headers.get("x-request-id"))
        evs = s.all()
        self.assertTrue(s.complete, s.error)
        text = check_anthropic_stream(self, evs, n_deltas=8)
        self.assertTrue(text.startswith("Hello from an"), text)
        e = self.one_upstream("an")
        self.assertEqual(e["path"], "/v1/messages?beta=true")
        self.assert_anthropic_upstream(e, "an", "claude-up-1")

    def test_anthropic_base_with_v1(self):
        r = request(self.url, "POST", "/v1/messages?beta=true", msg("claude-v1"),
                    headers=an_auth())
        self.assertEqual(r.status, 200, r.text)
        e = self.one_upstream("an")
        self.assertEqual(e["path"], "/v1/messages?beta=true")
        self.assert_anthropic_upstream(e, "an-v1", "claude-v1-up")

    # ---- request ids -----------------------------------------------------------------------

    def test_request_id_echoed_when_sane(self):
        rid = "client-Req_1.2:abc"
        r = request(self.url, "POST", "/v1/chat/completions", CHAT,
                    headers={**oa_auth(), "X-Request-Id": rid})
        self.assertEqual(r.headers.get("x-request-id"), rid)
        self.assertEqual(self.one_upstream("oa")["headers"].get("x-request-id"), rid)
        s = stream(self.url, "/v1/messages", msg(stream=True),
                   headers={**an_auth(), "X-Request-Id": rid + "-s"})
        self.assertEqual(s.headers.get("x-request-id"), rid + "-s")
        s.all()
        s.close()

    def test_request_id_replaced_when_insane(self):
        for bad in ("has space", "x" * 300, "semi;colon", "quote\"d"):
            r = request(self.url, "POST", "/v1/chat/completions", CHAT,
                        headers={**oa_auth(), "X-Request-Id": bad})
            self.assertEqual(r.status, 200, r.text)
            rid = r.headers.get("x-request-id")
            self.assertTrue(rid, bad)
            self.assertNotEqual(rid, bad)
            self.assertLessEqual(set(rid), REQID_CHARS, rid)
            self.assertLess(len(rid), 128)
        ups = {e["headers"].get("x-request-id") for e in self.mocks["oa"].requests()}
        self.assertEqual(len(ups), 4, "each request got its own fresh id upstream")

    def test_request_id_on_every_response_kind(self):
        for method, path, hdrs in (("GET", "/health", {}), ("GET", "/v1/models", oa_auth()),
                                   ("GET", "/nope", oa_auth()),
                                   ("POST", "/v1/chat/completions", {})):
            r = request(self.url, method, path, CHAT if method == "POST" else None, headers=hdrs)
            self.assertTrue(r.headers.get("x-request-id"), f"{method} {path} -> {r.status}")

    # ---- body fidelity ---------------------------------------------------------------------

    def _body_fidelity(self, path, alias, route_model, mock, hdrs, anthropic):
        prefix, suffix, key = weird_body(alias, anthropic)
        body = prefix + key + json.dumps(alias).encode() + suffix
        json.loads(body)  # the test's own input must be valid JSON
        r = request(self.url, "POST", path, body,
                    headers={**hdrs, "Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.text)
        e = self.one_upstream(mock)
        expected = prefix + key + json.dumps(route_model).encode() + suffix
        self.assertEqual(e["body_bytes"], len(expected))
        self.assertEqual(e["body"].encode(), expected)
        if "content-length" in e["headers"]:
            self.assertEqual(e["headers"]["content-length"], str(len(expected)))

    def test_body_bytes_identical_openai(self):
        self._body_fidelity("/v1/chat/completions", "gpt-a", "gpt-up-1", "oa", oa_auth(), False)

    def test_body_bytes_identical_anthropic(self):
        self._body_fidelity("/v1/messages?beta=true", "claude-a", "claude-up-1", "an",
                            an_auth(), True)

    # ---- forwarded headers -----------------------------------------------------------------

    def test_x_forwarded_for_appended(self):
        request(self.url, "POST", "/v1/chat/completions", CHAT,
                headers={**oa_auth(), "X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
        request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        log = self.mocks["oa"].wait_requests(2)
        self.assertEqual(log[0]["headers"].get("x-forwarded-for"),
                         "203.0.113.7, 10.0.0.1, 127.0.0.1")
        self.assertEqual(log[1]["headers"].get("x-forwarded-for"), "127.0.0.1")

    def test_hop_by_hop_not_forwarded(self):
        hdrs = {"Host": "client.example", "Authorization": f"Bearer {PROXY_KEY}",
                "Content-Type": "application/json", "Keep-Alive": "timeout=5",
                "TE": "trailers", "Trailer": "X-T", "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "Proxy-Connection": "keep-alive", "X-Custom-Client": "kept",
                "User-Agent": "itest/1.0"}
        with RawConn(self.url) as c:
            c.send(http_bytes("POST", "/v1/chat/completions", CHAT, hdrs, host="client.example"))
            r = c.read_response()
        self.assertEqual(r.status, 200, r.text)
        h = self.one_upstream("oa")["headers"]
        for name in ("keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection",
                     "upgrade", "transfer-encoding"):
            self.assertNotIn(name, h, f"hop-by-hop header {name} forwarded")
        self.assertNotEqual(h.get("host"), "client.example", "client Host forwarded upstream")
        self.assertEqual(h.get("x-custom-client"), "kept")
        self.assertEqual(h.get("user-agent"), "itest/1.0")

    def test_connection_listed_headers_not_forwarded(self):
        """RFC 9110 7.6.1: a header named in Connection is hop-by-hop and must be dropped."""
        hdrs = {"Authorization": f"Bearer {PROXY_KEY}", "Connection": "keep-alive, X-Hop-Only",
                "X-Hop-Only": "secret-hop", "X-End-To-End": "yes"}
        with RawConn(self.url) as c:
            c.send(http_bytes("POST", "/v1/chat/completions", CHAT, hdrs))
            r = c.read_response()
        self.assertEqual(r.status, 200, r.text)
        h = self.one_upstream("oa")["headers"]
        self.assertEqual(h.get("x-end-to-end"), "yes")
        self.assertNotIn("x-hop-only", h)

    # ---- URL joining -----------------------------------------------------------------------

    def test_url_joining(self):
        cases = (("gpt-bare", "oa-bare", "m-bare", "/v1/chat/completions"),
                 ("gpt-prefix", "oa-prefix", "m-prefix", "/openai/v1/chat/completions"),
                 ("gpt-api", "oa-api", "m-api", "/api/v1/chat/completions"),
                 ("gpt-a", "oa", "gpt-up-1", "/v1/chat/completions"))
        for alias, bname, model, path in cases:
            self.mocks["oa"].reset()
            r = request(self.url, "POST", "/v1/chat/completions", chat(alias), headers=oa_auth())
            self.assertEqual(r.status, 200, f"{alias}: {r.text}")
            e = self.one_upstream("oa")
            self.assertEqual(e["path"], path, alias)
            self.assert_openai_upstream(e, bname, model)

    # ---- other endpoints -------------------------------------------------------------------

    def test_other_openai_endpoints(self):
        cases = (("/v1/responses", {"model": "gpt-a", "input": "hi"}, "response"),
                 ("/v1/embeddings", {"model": "gpt-a", "input": ["a", "b"]}, "list"),
                 ("/v1/completions", {"model": "gpt-a", "prompt": "x"}, "text_completion"))
        for path, body, obj in cases:
            self.mocks["oa"].reset()
            r = request(self.url, "POST", path, body, headers=oa_auth())
            self.assertEqual(r.status, 200, f"{path}: {r.text}")
            self.assertEqual(r.json()["object"], obj, path)
            e = self.one_upstream("oa")
            self.assertEqual(e["path"], path)
            self.assert_openai_upstream(e, "oa", "gpt-up-1")
            self.assertEqual({k: v for k, v in json.loads(e["body"]).items() if k != "model"},
                             {k: v for k, v in body.items() if k != "model"})

    def test_count_tokens(self):
        r = request(self.url, "POST", "/v1/messages/count_tokens?beta=true",
                    {"model": "claude-a", "messages": MSG["messages"]}, headers=an_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertGreater(r.json()["input_tokens"], 0)
        e = self.one_upstream("an")
        self.assertEqual(e["path"], "/v1/messages/count_tokens?beta=true")
        self.assert_anthropic_upstream(e, "an", "claude-up-1")

    # ---- models, health --------------------------------------------------------------------

    def test_models_lists_enabled_aliases(self):
        want = {"gpt-a", "claude-a", "gpt-bare", "gpt-prefix", "gpt-api", "claude-v1"}
        for path in ("/v1/models", "/models"):
            for hdrs in (oa_auth(), an_auth()):
                r = request(self.url, "GET", path, headers=hdrs)
                self.assertEqual(r.status, 200, r.text)
                b = r.json()
                self.assertEqual(b["object"], "list")
                ids = [m["id"] for m in b["data"]]
                self.assertEqual(sorted(ids), sorted(want), path)
                for m in b["data"]:
                    self.assertEqual(m["object"], "model")
            assert_openai_error(self, request(self.url, "GET", path), 401)
        self.assertEqual(self.mocks["oa"].requests(), [])

    def test_no_secret_in_logs(self):
        request(self.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        request(self.url, "POST", "/v1/messages", MSG, headers=an_auth())
        request(self.url, "POST", "/v1/chat/completions", CHAT,
                headers={"Authorization": "Bearer sk-wrong-client-key-0123456789"})
        self.mocks["an"].wait_requests(1)
        wait_until(lambda: self.proxy.log_text().count('"type":"access"') >= 3,
                   msg="access log lines")
        text = self.proxy.log_text()
        for secret in (PROXY_KEY, backend_key("oa"), backend_key("an"),
                       "sk-wrong-client-key-0123456789"):
            self.assertNotIn(secret, text, "secret written to the proxy log")

    def test_health_without_auth(self):
        for path in ("/health", "/healthz"):
            r = request(self.url, "GET", path)
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.json()["status"], "healthy")
            r = request(self.url, "GET", path, headers={"Authorization": "Bearer wrong"})
            self.assertEqual(r.status, 200, "health must ignore a wrong key")


class TestNoAuth(ProxyCase):
    """An empty proxy_api_key means the proxy asks no key at all."""

    mock_names = {"oa": ()}

    @classmethod
    def make_config(cls, m):
        return config([m["oa"]], {"gpt-a": [("oa", "gpt-up-1")]}, proxy_api_key="")

    def test_no_key_needed(self):
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200, r.text)
        r = request(self.url, "POST", "/v1/chat/completions", CHAT,
                    headers={"Authorization": "Bearer anything"})
        self.assertEqual(r.status, 200, r.text)
        r = request(self.url, "GET", "/v1/models")
        self.assertEqual([m["id"] for m in r.json()["data"]], ["gpt-a"])
        log = self.mocks["oa"].wait_requests(2)
        for e in log:
            self.assertEqual(e["headers"]["authorization"], f"Bearer {backend_key('oa')}")


if __name__ == "__main__":
    unittest.main()
