"""Auth and every proxy-generated error: status, protocol shape (OpenAI {"error":{...}} on OpenAI
endpoints, Anthropic {"type":"error","error":{...}} on /v1/messages) and that nothing reached an
upstream when the proxy itself refused."""

import json
import unittest

from harness import PROXY_KEY, RawConn, backend, config, free_port, http_bytes, request, stream
from proxycase import (CHAT, MSG, ProxyCase, an_auth, assert_anthropic_error, assert_openai_error,
                       chat, msg, oa_auth)

OA_PATH, AN_PATH = "/v1/chat/completions", "/v1/messages?beta=true"


class TestErrors(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        d = [free_port() for _ in range(4)]
        return config(
            [backend(m["oa"]), backend(m["an"], "anthropic"),
             backend("dead-one", url=f"http://127.0.0.1:{d[0]}/v1"),
             backend("dead-two", "anthropic", url=f"http://127.0.0.1:{d[1]}"),
             backend("dead-three", "anthropic", url=f"http://127.0.0.1:{d[2]}"),
             backend("dead-four", url=f"http://127.0.0.1:{d[3]}/v1")],
            {"gpt-a": [("oa", "gpt-up-1")], "claude-a": [("an", "claude-up-1")],
             "gpt-off": {"enabled": False, "routes": [{"backend": "oa", "model": "x",
                                                       "priority": 1}]},
             "all-dead": [("dead-one", "m1"), ("dead-two", "m2")],
             "all-dead-2": [("dead-three", "m3"), ("dead-four", "m4")]},
            server={"max_body_size": "4KiB"},
            fallback={"enable_backoff": False, "cooldown_seconds": 1})

    def tearDown(self):
        self.assertEqual(self.upstream_count_expected, self.upstream_count(),
                         "unexpected upstream requests")

    upstream_count_expected = 0

    def upstream_count(self) -> int:
        return len(self.mocks["oa"].requests()) + len(self.mocks["an"].requests())

    # ---- auth ------------------------------------------------------------------------------

    def test_both_key_styles_accepted_on_both_endpoints(self):
        bearer = {"Authorization": f"Bearer {PROXY_KEY}"}
        xkey = {"x-api-key": PROXY_KEY}
        for path, body in ((OA_PATH, CHAT), (AN_PATH, MSG)):
            for h in (bearer, xkey):
                r = request(self.url, "POST", path, body, headers=h)
                self.assertEqual(r.status, 200, f"{path} {list(h)}: {r.text}")
        self.upstream_count_expected = 4

    def test_missing_key_401(self):
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH, CHAT), 401)
        self.assertIn("key", e["message"].lower())
        assert_anthropic_error(self, request(self.url, "POST", AN_PATH, MSG), 401,
                               type_="authentication_error")

    def test_wrong_key_401(self):
        for h in ({"Authorization": "Bearer sk-wrong"}, {"x-api-key": "sk-wrong"},
                  {"Authorization": f"Bearer {PROXY_KEY}x"}, {"x-api-key": PROXY_KEY[:-1]},
                  {"Authorization": PROXY_KEY}):
            assert_openai_error(self, request(self.url, "POST", OA_PATH, CHAT, headers=h), 401)
            assert_anthropic_error(self, request(self.url, "POST", AN_PATH, MSG, headers=h), 401,
                                   type_="authentication_error")

    def test_auth_checked_before_body(self):
        # a bad body from an unauthenticated client is a 401, not a 400
        assert_openai_error(self, request(self.url, "POST", OA_PATH, "{bad"), 401)

    # ---- request validation ----------------------------------------------------------------

    def test_malformed_json_400(self):
        for bad in ("{not json", '{"model": "gpt-a",', "[1,2]", "", '"str"'):
            assert_openai_error(self, request(self.url, "POST", OA_PATH, bad, headers={
                **oa_auth(), "Content-Type": "application/json"}), 400, type_="invalid_request_error")
            assert_anthropic_error(self, request(self.url, "POST", AN_PATH, bad, headers={
                **an_auth(), "Content-Type": "application/json"}), 400, type_="invalid_request_error")

    def test_missing_model_400(self):
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH,
                                              {"messages": CHAT["messages"]}, headers=oa_auth()),
                                400, type_="invalid_request_error")
        self.assertIn("model", e["message"])
        e = assert_anthropic_error(self, request(self.url, "POST", AN_PATH,
                                                 {"max_tokens": 5, "messages": []},
                                                 headers=an_auth()), 400,
                                   type_="invalid_request_error")
        self.assertIn("model", e["message"])

    def test_model_not_a_string_400(self):
        for model in (42, None, ["gpt-a"], {"id": "gpt-a"}, True, ""):
            e = assert_openai_error(self, request(self.url, "POST", OA_PATH,
                                                  {**CHAT, "model": model}, headers=oa_auth()),
                                    400, type_="invalid_request_error")
            self.assertIn("model", e["message"], model)
            assert_anthropic_error(self, request(self.url, "POST", AN_PATH,
                                                 {**MSG, "model": model}, headers=an_auth()),
                                   400, type_="invalid_request_error")

    def test_unknown_alias_404_names_it(self):
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH, chat("no-such-alias"),
                                              headers=oa_auth()), 404)
        self.assertIn("no-such-alias", e["message"])
        e = assert_anthropic_error(self, request(self.url, "POST", AN_PATH, msg("no-such-alias"),
                                                 headers=an_auth()), 404, type_="not_found_error")
        self.assertIn("no-such-alias", e["message"])

    def test_disabled_alias_404(self):
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH, chat("gpt-off"),
                                              headers=oa_auth()), 404)
        self.assertIn("gpt-off", e["message"])
        assert_anthropic_error(self, request(self.url, "POST", AN_PATH, msg("gpt-off"),
                                             headers=an_auth()), 404, type_="not_found_error")

    def test_body_over_limit_413(self):
        big = {**CHAT, "pad": "x" * 5000}
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH, big, headers=oa_auth()),
                                413)
        self.assertIn("4096", e["message"])
        assert_anthropic_error(self, request(self.url, "POST", AN_PATH, {**MSG, "pad": "x" * 5000},
                                             headers=an_auth()), 413, type_="request_too_large")
        # just under the limit is fine
        ok = {**CHAT, "pad": "x" * 3000}
        self.assertEqual(request(self.url, "POST", OA_PATH, ok, headers=oa_auth()).status, 200)
        self.upstream_count_expected = 1

    def test_body_over_limit_chunked_413(self):
        body = json.dumps({**MSG, "pad": "y" * 6000}).encode()
        with RawConn(self.url) as c:
            c.send(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"x-api-key: " + PROXY_KEY.encode() + b"\r\n\r\n" +
                   b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                            for i in range(0, len(body), 1000)) + b"0\r\n\r\n")
            r = c.read_response()
        assert_anthropic_error(self, r, 413, type_="request_too_large")

    # ---- upstream failures -----------------------------------------------------------------

    def test_all_routes_failed_502_names_attempts(self):
        e = assert_openai_error(self, request(self.url, "POST", OA_PATH, chat("all-dead"),
                                              headers=oa_auth()), 502, type_="server_error")
        self.assertIn("dead-one", e["message"])
        self.assertIn("dead-two", e["message"])
        self.assertRegex(e["message"].lower(), r"connect|refused")
        # (other backends: the first request put dead-one and dead-two in cooldown)
        e = assert_anthropic_error(self, request(self.url, "POST", AN_PATH, msg("all-dead-2"),
                                                 headers=an_auth()), 502, type_="api_error")
        self.assertIn("dead-three", e["message"])
        self.assertIn("dead-four", e["message"])
        self.assertRegex(e["message"].lower(), r"connect|refused")

    def test_upstream_cut_mid_stream_ends_with_error_event(self):
        self.mocks["oa"].script({"sse": {"generate": {"protocol": "openai", "chunks": 10},
                                         "cut_after": 4}})
        s = stream(self.url, OA_PATH, chat(stream=True), headers=oa_auth())
        self.assertEqual(s.status, 200)
        evs = s.all()
        self.assertEqual(len(evs), 5, [e.data for e in evs])
        self.assertNotEqual(evs[-1].data, "[DONE]")
        err = json.loads(evs[-1].data)
        self.assertIsInstance(err["error"]["message"], str)
        self.mocks["an"].script({"sse": {"cut_after": 4}})
        s = stream(self.url, AN_PATH, msg(stream=True), headers=an_auth())
        evs = s.all()
        self.assertEqual([e.event for e in evs], ["message_start", "content_block_start", "ping",
                                                  "content_block_delta", "error"])
        self.assertEqual(json.loads(evs[-1].data)["type"], "error")
        self.upstream_count_expected = 2

    # ---- routing errors --------------------------------------------------------------------

    def test_unknown_endpoint_404(self):
        r = request(self.url, "POST", "/v2/whatever", CHAT, headers=oa_auth())
        assert_openai_error(self, r, 404)
        r = request(self.url, "GET", "/", headers=oa_auth())
        assert_openai_error(self, r, 404)

    def test_wrong_method_405(self):
        r = request(self.url, "GET", OA_PATH, headers=oa_auth())
        assert_openai_error(self, r, 405)
        self.assertIn("POST", r.headers.get("allow", ""))
        r = request(self.url, "GET", "/v1/messages", headers=an_auth())
        assert_anthropic_error(self, r, 405)
        self.assertIn("POST", r.headers.get("allow", ""))
        r = request(self.url, "DELETE", "/v1/models", headers=oa_auth())
        assert_openai_error(self, r, 405)


if __name__ == "__main__":
    unittest.main()
