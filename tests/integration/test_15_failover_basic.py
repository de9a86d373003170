"""Basic failover in priority order: a 5xx or a connect error on route 1 is served by route 2; a
client error (400 invalid_request_error) is relayed verbatim and route 2 is not tried. Each test
gets a fresh proxy, since failures put backends in cooldown."""

import json
import unittest

from harness import Mock, Proxy, backend, config, free_port, require_proxy, request, stream
from proxycase import (CHAT, MSG, an_auth, assert_anthropic_error, assert_openai_error, chat,
                       check_anthropic_stream, check_openai_stream, msg, oa_auth)


class TestFailover(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("up-a").start()
        cls.b = Mock("up-b").start()
        cls.c = Mock("an-c").start()
        cls.d = Mock("an-d").start()

    @classmethod
    def tearDownClass(cls):
        for m in (cls.a, cls.b, cls.c, cls.d):
            m.stop()

    def setUp(self):
        for m in (self.a, self.b, self.c, self.d):
            m.reset()
        self.dead = free_port()
        cfg = config(
            [backend(self.a), backend(self.b), backend(self.c, "anthropic"),
             backend(self.d, "anthropic"),
             backend("dead", url=f"http://127.0.0.1:{self.dead}/v1")],
            {
                # listed out of order on purpose: priority decides
                "gpt-a": [("up-b", "model-b", 2), ("up-a", "model-a", 1)],
                "claude-a": [("an-c", "claude-c", 1), ("an-d", "claude-d", 2)],
                "gpt-dead": [("dead", "model-dead", 1), ("up-b", "model-b", 2)],
            },
            fallback={"enable_backoff": False, "cooldown_seconds": 30, "max_retries": 0})
        self.px = Proxy(cfg).start()
        self.addCleanup(self.px.stop)

    def models_seen(self, *mocks):
        return [json.loads(e["body"])["model"] for m in mocks for e in m.requests()]

    def test_priority_order(self):
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.models_seen(self.a), ["model-a"])
        self.assertEqual(self.b.requests(), [])

    def test_5xx_on_route1_served_by_route2(self):
        self.a.script({"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}})
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(r.json()["choices"][0]["message"]["content"].startswith("Hello from up-b"))
        self.assertEqual(self.models_seen(self.a), ["model-a"])
        self.assertEqual(self.models_seen(self.b), ["model-b"])

    def test_5xx_before_first_event_stream_served_by_route2(self):
        self.c.script({"status": 529, "body": {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}}})
        s = stream(self.px.url, "/v1/messages?beta=true", msg(stream=True), headers=an_auth())
        self.assertEqual(s.status, 200)
        text = check_anthropic_stream(self, s.all(), n_deltas=8)
        self.assertTrue(text.startswith("Hello from an-d"), text)
        s.close()
        self.assertEqual(self.models_seen(self.c), ["claude-c"])
        self.assertEqual(self.models_seen(self.d), ["claude-d"])
        self.assertEqual(self.d.requests()[0]["path"], "/v1/messages?beta=true")

    def test_connect_error_served_by_route2(self):
        r = request(self.px.url, "POST", "/v1/chat/completions", chat("gpt-dead"),
                    headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.models_seen(self.b), ["model-b"])
        s = stream(self.px.url, "/v1/chat/completions", chat("gpt-dead", stream=True),
                   headers=oa_auth())
        self.assertEqual(s.status, 200)
        check_openai_stream(self, s.all(), n_deltas=8)
        s.close()
        self.assertEqual(self.models_seen(self.b), ["model-b", "model-b"])

    def test_400_invalid_request_relayed_verbatim_no_failover(self):
        body = ('{"error":{"message":"Invalid \'messages\': empty array","type":'
                '"invalid_request_error","param":"messages","code":"empty_array"}}')
        self.a.script({"status": 400, "body": body, "headers": {"content-type": "application/json"}})
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        assert_openai_error(self, r, 400, type_="invalid_request_error")
        self.assertEqual(r.text, body)
        self.assertEqual(len(self.a.requests()), 1)
        self.assertEqual(self.b.requests(), [], "route 2 tried after a client error")

    def test_400_invalid_request_anthropic_no_failover(self):
        body = ('{"type":"error","error":{"type":"invalid_request_error",'
                '"message":"max_tokens: Field required"}}')
        self.c.script({"status": 400, "body": body, "headers": {"content-type": "application/json"}})
        r = request(self.px.url, "POST", "/v1/messages", MSG, headers=an_auth())
        assert_anthropic_error(self, r, 400, type_="invalid_request_error")
        self.assertEqual(r.text, body)
        self.assertEqual(self.d.requests(), [], "route 2 tried after a client error")
        # and a stream request the same (the error arrives before any event)
        self.c.script({"status": 400, "body": body, "headers": {"content-type": "application/json"}})
        r = request(self.px.url, "POST", "/v1/messages", msg(stream=True), headers=an_auth())
        self.assertEqual(r.status, 400)
        self.assertEqual(r.text, body)
        self.assertEqual(self.d.requests(), [])

    def test_all_cooling_503_then_proxy_alive(self):
        """Route 1 dead and route 2 failing: the 2nd request finds both cooling down."""
        self.b.script({"status": 503, "times": 1})
        r = request(self.px.url, "POST", "/v1/chat/completions", chat("gpt-dead"),
                    headers=oa_auth())
        self.assertIn(r.status, (502, 503), r.text)
        self.assertIn("dead", r.json()["error"]["message"])
        r = request(self.px.url, "POST", "/v1/chat/completions", chat("gpt-dead"),
                    headers=oa_auth())
        assert_openai_error(self, r, 503)
        self.assertTrue(r.headers.get("retry-after"))
        self.assertEqual(len(self.b.requests()), 1, "a cooling backend was tried")
        # the proxy survived the synchronous reply and still serves
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
        self.assertEqual(r.status, 200, r.text)


if __name__ == "__main__":
    unittest.main()
