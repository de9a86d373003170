"""Connection limits: slowloris heads and idle connections are cut by server.idle_timeout, an
oversized head gets 431, and the proxy keeps serving while that happens."""

import socket
import time
import unittest

from harness import RawConn, backend, config, request
from proxycase import CHAT, ProxyCase, oa_auth

IDLE_S = 1.0


def closed_within(c: RawConn, timeout: float) -> tuple[bool, bytes]:
    """(True, bytes) when the peer closed within timeout, else (False, bytes)."""
    try:
        return True, c.read_until_close(timeout)
    except TimeoutError:
        return False, c.buf


class TestLimits(ProxyCase):
    mock_names = {"oa": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"])], {"gpt-a": [("oa", "gpt-up-1")]},
                      server={"idle_timeout": "1s", "max_header_size": "8KiB"},
                      timeout={"read_timeout": "2s"})

    def assert_timeout_answer(self, data: bytes) -> None:
        """The proxy may just close, or answer 408 first; anything else is wrong."""
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])

    def test_slowloris_partial_header_cut(self):
        with RawConn(self.url) as c:
            t0 = time.monotonic()
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            closed = False
            # Keep trickling a header byte every 0.25 s: a per-read timer alone never fires.
            while time.monotonic() - t0 < IDLE_S * 4:
                try:
                    c.send(b"X")
                except OSError:
                    closed = True
                    break
                ok, data = closed_within(c, 0.25)
                if ok:
                    closed = True
                    self.assert_timeout_answer(data)
                    break
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, f"slowloris head still open after {elapsed:.1f}s "
                                f"(idle_timeout {IDLE_S}s)")
        self.assertLess(elapsed, IDLE_S * 2 + 0.5)
        self.assertEqual(self.mocks["oa"].requests(), [])
        self.assertEqual(request(self.url, "GET", "/health").status, 200)

    def test_silent_connection_closed(self):
        with RawConn(self.url) as c:
            t0 = time.monotonic()
            ok, data = closed_within(c, IDLE_S * 3)
            self.assertTrue(ok, "a connection that never sends is not closed")
            self.assert_timeout_answer(data)
            self.assertGreaterEqual(time.monotonic() - t0, IDLE_S * 0.8)

    def test_idle_keepalive_connection_closed(self):
        with RawConn(self.url) as c:
            body = b'{"model":"gpt-a","messages":[]}'
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   oa_auth()["Authorization"][7:].encode() +
                   b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                   + body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.text)
            t0 = time.monotonic()
            ok, data = closed_within(c, IDLE_S * 3)
            self.assertTrue(ok, "idle keep-alive connection not closed")
            self.assertEqual(data, b"")
            self.assertGreaterEqual(time.monotonic() - t0, IDLE_S * 0.8)

    def test_partial_body_cut(self):
        """A body that stops arriving is cut after timeout.read_timeout of silence (408). (With
        a valid key: without one the request is refused at its head with 401.)"""
        with RawConn(self.url) as c:
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                   b"Authorization: " + oa_auth()["Authorization"].encode() +
                   b"\r\n\r\n{\"model\":")
            t0 = time.monotonic()
            ok, data = closed_within(c, 4.0)
            self.assertTrue(ok, "a request whose body never completes is not cut")
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
            self.assertGreaterEqual(time.monotonic() - t0, 1.5)
        self.assertEqual(self.mocks["oa"].requests(), [])

    def test_header_too_large_431(self):
        with RawConn(self.url) as c:
            c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            try:
                r = c.read_response(timeout=5)
            except (ConnectionError, socket.error) as e:  # pragma: no cover - reported below
                self.fail(f"connection dropped without a 431: {e!r}")
        self.assertEqual(r.status, 431, r.text)
        self.assertEqual(request(self.url, "POST", "/v1/chat/completions", CHAT,
                                 headers=oa_auth()).status, 200)


if __name__ == "__main__":
    unittest.main()
