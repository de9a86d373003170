"""Streaming under stress: a client leaving mid-stream cancels the upstream, a slow client bounds
the proxy's memory through backpressure, and 200 concurrent streams all complete intact."""

import concurrent.futures
import time
import unittest

from harness import Mock, Proxy, RawConn, backend, config, http_bytes, request, stream, wait_until
from proxycase import (CHAT, ProxyCase, an_auth, chat, check_anthropic_stream,
                       check_openai_stream, msg, oa_auth)


class TestCancel(ProxyCase):
    mock_names = {"oa": (), "an": ()}

    @classmethod
    def make_config(cls, m):
        return config([backend(m["oa"]), backend(m["an"], "anthropic")],
                      {"gpt-a": [("oa", "gpt-up-1")], "claude-a": [("an", "claude-up-1")]})

    def _disconnect_mid_stream(self, mock, path, body, hdrs, proto):
        mock.script({"sse": {"generate": {"protocol": proto, "chunks": 3000, "interval_ms": 10}}})
        s = stream(self.url, path, body, headers=hdrs)
        self.assertEqual(s.status, 200)
        got = b""
        while len(got) < 300:
            chunk = s.read_some(100)
            self.assertTrue(chunk, "stream ended early")
            got += chunk
        wait_until(lambda: mock.stats()["active"] == 1, msg="upstream in flight")
        t0 = time.monotonic()
        s.close()
        wait_until(lambda: mock.stats()["aborted"] == 1, timeout=1.5,
                   msg="upstream aborted after the client left")
        self.assertLess(time.monotonic() - t0, 1.5)
        e = mock.requests()[0]
        self.assertTrue(e["client_aborted"])
        self.assertFalse(e["completed"])
        self.assertEqual(mock.stats()["active"], 0)
        # and the proxy is fine afterwards
        r = request(self.url, "POST", path, {**body, "stream": False}, headers=hdrs)
        self.assertEqual(r.status, 200, r.text)

    def test_disconnect_cancels_openai_upstream(self):
        self._disconnect_mid_stream(self.mocks["oa"], "/v1/chat/completions",
                                    chat(stream=True), oa_auth(), "openai")

    def test_disconnect_cancels_anthropic_upstream(self):
        self._disconnect_mid_stream(self.mocks["an"], "/v1/messages?beta=true",
                                    msg(stream=True), an_auth(), "anthropic")

    def test_disconnect_before_first_byte_cancels_upstream(self):
        mock = self.mocks["oa"]
        mock.script({"delay_ms": 10000})
        c = RawConn(self.url)
        c.send(http_bytes("POST", "/v1/chat/completions", CHAT, oa_auth()))
        wait_until(lambda: mock.stats()["active"] == 1, msg="upstream in flight")
        c.close()
        wait_until(lambda: mock.stats()["aborted"] == 1, timeout=1.5,
                   msg="upstream aborted after the client left during the wait")
        self.assertTrue(mock.requests()[0]["client_aborted"])


class TestSlowClient(unittest.TestCase):
    """~200 MB of SSE towards a client that stops reading: the proxy must pause the upstream
    (the mock's output backlog stays bounded) instead of buffering the stream."""

    CHUNKS, SIZE = 48000, 4096

    def test_slow_reader_bounded_memory(self):
        with Mock("big", "--quiet") as up, \
                Proxy(config([up], {"gpt-a": [("big", "gpt-up")]},
                             timeout={"read_timeout": "60s", "total_timeout": "5m"})) as px:
            up.script({"sse": {"generate": {"protocol": "openai", "chunks": self.CHUNKS,
                                            "chunk_bytes": self.SIZE}}})
            base = px.rss_kb()
            s = stream(px.url, "/v1/chat/completions", chat(stream=True), headers=oa_auth(),
                       timeout=120)
            self.assertEqual(s.status, 200)
            first = s.resp.read1(4096)
            self.assertTrue(first.startswith(b"data: "), first[:60])
            peak = 0
            for _ in range(15):      # the client reads nothing for ~3 s
                time.sleep(0.2)
                peak = max(peak, px.rss_kb() - base)
            self.assertLess(peak, 64 * 1024, f"proxy RSS grew {peak} KiB behind a stalled client")
            e = up.requests()[0]
            self.assertFalse(e["completed"], "upstream finished: the proxy buffered the stream")
            self.assertEqual(up.stats()["active"], 1)
            # now read everything (raw, counting events, without keeping 200 MB around)
            total, events, tail = len(first), first.count(b"\n\n"), first[-1:]
            while True:
                chunk = s.resp.read1(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                events += (tail + chunk).count(b"\n\n") - tail.count(b"\n\n")
                tail = (tail + chunk)[-16:]
            s.close()
            self.assertTrue(tail.endswith(b"data: [DONE]\n\n"), tail)
            self.assertEqual(events, self.CHUNKS + 3)  # role + deltas + finish + [DONE]
            self.assertGreater(total, self.CHUNKS * self.SIZE)
            wait_until(lambda: up.requests()[0]["completed"], msg="upstream completed")
            r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=oa_auth())
            self.assertEqual(r.status, 200, r.text)
            self.assertEqual(request(px.url, "GET", "/health").status, 200)


class TestConcurrentStreams(unittest.TestCase):
    def test_200_concurrent_streams(self):
        n = 200
        with Mock("oa", "--chunks", "8", "--chunk-interval-ms", "20", "--quiet") as oa, \
                Mock("an", "--chunks", "8", "--chunk-interval-ms", "20", "--quiet") as an, \
                Proxy(config([backend(oa), backend(an, "anthropic")],
                             {"gpt-a": [("oa", "gpt-up")], "claude-a": [("an", "claude-up")]})) as px:
            def one(i):
                if i % 2:
                    s = stream(px.url, "/v1/messages", msg(stream=True), headers=an_auth(),
                               timeout=60)
                    evs = s.all()
                    text = check_anthropic_stream(self, evs, n_deltas=8)
                else:
                    s = stream(px.url, "/v1/chat/completions", chat(stream=True),
                               headers=oa_auth(), timeout=60)
                    evs = s.all()
                    text = check_openai_stream(self, evs, n_deltas=8)
                s.close()
                return s.status, s.complete, text.startswith("Hello from " + ("an" if i % 2 else "oa"))

            with concurrent.futures.ThreadPoolExecutor(n) as ex:
                results = list(ex.map(one, range(n)))
            self.assertEqual(results, [(200, True, True)] * n)
            self.assertEqual(len(oa.requests()) + len(an.requests()), n)
            self.assertTrue(all(e["completed"] for e in oa.requests() + an.requests()))


if __name__ == "__main__":
    unittest.main()
