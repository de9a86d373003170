"""Keep-alive on both sides: sequential requests reuse one upstream connection (mock conn_id),
and the client's own connection stays open across requests (non-stream and stream)."""

import unittest

from harness import Client, RawConn, backend, config, http_bytes, request, stream
from proxycase import CHAT, MSG, ProxyCase, an_auth, chat, check_anthropic_stream, check_openai_stream, msg, oa_auth


class TestKeepAlive(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        # One worker, so that requests arriving on different client connections share one
        # upstream connection pool.
        return config([backend(m["oa"]), backend(m["an"], "anthropic")],
                      {"gpt-a": [("oa", "gpt-up-1")], "claude-a": [("an", "claude-up-1")]},
                      server={"threads": 1})

    def test_client_connection_kept_alive_upstream_reused(self):
        with Client(self.url) as c:
            ports = set()
            for i in range(3):
                r = c.request("POST", "/v1/chat/completions", CHAT, headers=oa_auth())
                self.assertEqual(r.status, 200, r.text)
                self.assertNotEqual((r.headers.get("connection") or "").lower(), "close")
                ports.add(c.conn.sock.getsockname()[1])
            s = c.stream("/v1/chat/completions", chat(stream=True), headers=oa_auth())
            check_openai_stream(self, s.all())
            self.assertTrue(s.complete)
            self.assertIsNotNone(c.conn.sock, "proxy closed the client connection after a stream")
            ports.add(c.conn.sock.getsockname()[1])
            r = c.request("POST", "/v1/chat/completions", CHAT, headers=oa_auth())
            self.assertEqual(r.status, 200)
            ports.add(c.conn.sock.getsockname()[1])
            self.assertEqual(len(ports), 1, "the client connection was re-opened")
        log = self.mocks["oa"].wait_requests(5)
        self.assertEqual(len(log), 5)
        self.assertEqual(len({e["conn_id"] for e in log}), 1,
                         f"upstream connections not reused: {[e['conn_id'] for e in log]}")
        self.assertEqual(self.mocks["oa"].stats()["connections"], 1)

    def test_upstream_reused_across_client_connections(self):
        for _ in range(4):
            r = request(self.url, "POST", "/v1/messages?beta=true", MSG, headers=an_auth())
            self.assertEqual(r.status, 200, r.text)
        s = stream(self.url, "/v1/messages", msg(stream=True), headers=an_auth())
        check_anthropic_stream(self, s.all(), n_deltas=8)
        s.close()
        log = self.mocks["an"].wait_requests(5)
        self.assertEqual(len({e["conn_id"] for e in log}), 1,
                         f"upstream connections not reused: {[e['conn_id'] for e in log]}")

    def test_connection_close_honoured(self):
        """A client asking for Connection: close gets its full response, then the close; the
        upstream connection is still pooled."""
        for body, proto in ((chat(stream=True), "sse"), (CHAT, "json"),
                            (msg(stream=True), "sse-an")):
            path = "/v1/messages" if proto == "sse-an" else "/v1/chat/completions"
            hdrs = {**(an_auth() if proto == "sse-an" else oa_auth()), "Connection": "close"}
            with RawConn(self.url) as c:
                c.send(http_bytes("POST", path, body, hdrs))
                r = c.read_response()
                self.assertEqual(r.status, 200, r.text)
                if proto == "sse":
                    self.assertTrue(r.body.endswith(b"data: [DONE]\n\n"), r.body[-50:])
                elif proto == "sse-an":
                    self.assertIn(b"event: message_stop", r.body)
                else:
                    self.assertEqual(r.json()["object"], "chat.completion")
                self.assertEqual(c.read_until_close(timeout=3), b"", "connection not closed")
        self.assertEqual(request(self.url, "GET", "/health").status, 200)
        log = self.mocks["oa"].wait_requests(2)
        self.assertEqual(len({e["conn_id"] for e in log}), 1)

    def test_http10_client(self):
        with RawConn(self.url) as c:
            data = http_bytes("POST", "/v1/chat/completions", CHAT, oa_auth())
            c.send(data.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            out = c.read_until_close(timeout=5)
        self.assertTrue(out.startswith(b"HTTP/1."), out[:100])
        self.assertIn(b" 200 ", out.split(b"\r\n", 1)[0])
        self.assertIn(b'"chat.completion"', out)

    def test_error_reply_keeps_client_connection(self):
        with Client(self.url) as c:
            r = c.request("POST", "/v1/chat/completions", {"model": "nope", "messages": []},
                          headers=oa_auth())
            self.assertEqual(r.status, 404)
            port = c.conn.sock.getsockname()[1]
            r = c.request("POST", "/v1/chat/completions", CHAT, headers=oa_auth())
            self.assertEqual(r.status, 200, r.text)
            self.assertEqual(c.conn.sock.getsockname()[1], port)


if __name__ == "__main__":
    unittest.main()
