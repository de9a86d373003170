"""Regression tests for findings of the proxy-core review (/work/briefs/review.md).

Each test names its finding (R1, R2, ...). They assert the correct behaviour, so a test fails
while its finding is unfixed.
"""

import json
import signal
import socket
import time
import unittest

from harness import (Mock, Proxy, RawConn, auth, backend, backend_health, config,
                     http_bytes, pair_health, require_proxy, request, stream, wait_until)

OA_CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "ma",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                         "finish_reason": None}]}


def chat(alias="m", stream_=True):
    return {"model": alias, "stream": stream_, "messages": [{"role": "user", "content": "hi"}]}


def msg(alias="am", stream_=True):
    return {"model": alias, "stream": stream_, "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}]}


def an_message_start(model="ma"):
    return {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}


class ReviewCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a, cls.b = Mock("a").start(), Mock("b").start()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.a.reset()
        self.b.reset()

    def start_proxy(self, **extra):
        cfg = config(
            [backend(self.a), backend(self.b),
             backend("a-an", "anthropic", url=self.a.url), backend("b-an", "anthropic", url=self.b.url)],
            {"m": [("a", "ma"), ("b", "mb")], "am": [("a-an", "ma"), ("b-an", "mb")],
             "x": [("a-an", "xa"), ("b", "xb")], "y": [("a", "ya"), ("b-an", "yb")]},
            **extra)
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def assert_openai_error_end(self, events):
        datas = [e.data for e in events]
        self.assertNotIn("[DONE]", datas, "a broken stream must not end with [DONE]")
        self.assertTrue(datas, "no events at all")
        try:
            last = json.loads(datas[-1])
        except ValueError:
            self.fail(f"last event is not JSON: {datas[-1][:200]!r}")
        self.assertIsInstance(last.get("error"), dict,
                              f"broken stream ended silently; last event: {datas[-1][:200]}")

    def assert_anthropic_error_end(self, events):
        names = [e.event for e in events]
        self.assertNotIn("message_stop", names)
        self.assertEqual(names[-1] if names else None, "error",
                         f"broken stream ended silently; events: {names}")


class TestR1BrokenStreamEndsWithError(ReviewCase):
    """R1: a stream that breaks after commit because the translator rejects an event
    (LP_ERR_PARSE / LP_ERR_TOOBIG) or an SSE event exceeds the 4 MiB ceiling must end with a
    protocol-correct error event, never with a clean terminal chunk and no error."""

    def test_translated_stream_bad_json_event_openai_client(self):
        # OpenAI client, Anthropic upstream (alias x -> a-an): the 3rd event is not JSON.
        self.a.script({"sse": {"events": [
            {"event": "message_start", "data": an_message_start()},
            {"event": "content_block_start",
             "data": {"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}}},
            {"event": "content_block_delta", "data": "{not json"},
            {"event": "message_stop", "data": {"type": "message_stop"}, "delay_ms": 200}]}})
        px = self.start_proxy()
        s = stream(px.url, "/v1/chat/completions", chat("x"), headers=auth())
        self.assertEqual(s.status, 200)
        self.assert_openai_error_end(s.all())

    def test_translated_stream_bad_json_event_anthropic_client(self):
        # Anthropic client, OpenAI upstream (alias y -> a): the 2nd chunk is not JSON.
        self.a.script({"sse": {"events": [
            {"data": OA_CHUNK},
            {"data": "{not json"},
            {"data": "[DONE]", "delay_ms": 200}]}})
        px = self.start_proxy()
        s = stream(px.url, "/v1/messages", msg("y"), headers=auth("anthropic"))
        self.assertEqual(s.status, 200)
        self.assert_anthropic_error_end(s.all())

    def test_passthrough_oversized_event_after_commit(self):
        # A first normal chunk commits the stream; the second event is over the 4 MiB ceiling.
        big = "x" * (5 * 1024 * 1024)
        self.a.script({"sse": {"events": [
            {"data": OA_CHUNK},
            {"raw": "data: " + big + "\n\n"},
            {"data": "[DONE]"}]}})
        px = self.start_proxy()
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth(), timeout=60)
        self.assertEqual(s.status, 200)
        self.assert_openai_error_end(s.all())


OA_ERROR = {"error": {"message": "The server had an error while processing your request.",
                      "type": "server_error", "param": None, "code": None}}
BREAKER = {"cooldown_seconds": 1, "enable_circuit_breaker": True, "circuit_failure_threshold": 1,
           "circuit_open_timeout": 1, "circuit_success_threshold": 1}


class TestR2MidStreamErrorReleasesProbe(ReviewCase):
    """R2: a committed stream that ends with an upstream error event (or a translator error)
    reports nothing to the health store: a half-open probe slot is never given back, so the
    backend stays half-open with every probe slot taken, i.e. unusable, forever."""

    def test_probe_slot_released_after_midstream_error_event(self):
        px = self.start_proxy(fallback=BREAKER)
        self.a.script({"status": 500})
        r = request(px.url, "POST", "/v1/chat/completions", chat("m", False), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(backend_health(px, "a")["breaker"]["state"], "open")
        time.sleep(1.2)
        self.a.reset()
        self.a.script({"sse": {"events": [{"data": OA_CHUNK}, {"data": OA_ERROR}]}})
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(s.status, 200)
        s.all()
        self.assertEqual(len(self.a.requests()), 1, "the half-open probe went to a")
        br = backend_health(px, "a")["breaker"]
        self.assertEqual(br["probes_in_flight"], 0, f"probe slot leaked: {br}")



class TestR3AttemptStateReset(ReviewCase):
    """R3: per-attempt flags (stream_error, resp_overflow, paused, tap) are not reset by
    start_attempt. An oversized first event on backend a sets stream_error before commit; the
    failover to b then commits a stream whose every event is skipped and which ends cleanly."""

    def test_failover_after_oversized_first_event_relays_next_stream(self):
        big = "x" * (5 * 1024 * 1024)
        self.a.script({"sse": {"events": [{"raw": "data: " + big + "\n\n"}]}})
        px = self.start_proxy()
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth(), timeout=60)
        self.assertEqual(s.status, 200)
        datas = [e.data for e in s.all()]
        self.assertEqual(len(self.b.requests()), 1, "failed over to b")
        self.assertTrue(datas and datas[-1] == "[DONE]", f"b's stream was not relayed: {datas}")
        text = "".join((json.loads(d)["choices"][0]["delta"].get("content") or "")
                       for d in datas[:-1] if json.loads(d).get("choices"))
        self.assertTrue(text.startswith("Hello from b"), text)



class TestR4InbandClientErrorStatus(ReviewCase):
    """R4: an in-band error as the FIRST SSE event that is not failed over (a client-class error
    such as context length) is relayed with the upstream's HTTP status, which is 200: the client
    gets `200 application/json` carrying an error body."""

    def test_first_event_client_error_not_200(self):
        err = {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "prompt is too long: 250000 tokens > 200000 maximum"}}
        self.a.script({"sse": {"events": [{"event": "error", "data": err}]}})
        px = self.start_proxy()
        r = request(px.url, "POST", "/v1/messages", msg("am"), headers=auth("anthropic"))
        self.assertEqual(len(self.b.requests()), 0, "a client error is not failed over")
        self.assertNotEqual(r.status, 200, f"error body with status 200: {r.text[:300]}")
        self.assertGreaterEqual(r.status, 400)
        self.assertEqual(r.json()["type"], "error")
        self.assertTrue(r.headers.get("x-request-id"))



class TestR5ClientGoneDoesNotBlameUpstream(ReviewCase):
    """R5: when the edge reports a failed write synchronously (lp_edge_write -> LP_ERR) during a
    committed stream, the transfer is aborted and on_stream_done reports a network failure of
    the BACKEND (cooldown + breaker failure) for what was the client leaving."""

    def test_client_reset_mid_stream_does_not_cool_backend(self):
        px = self.start_proxy(fallback={"cooldown_seconds": 30})
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": 20000,
                                            "chunk_bytes": 2048}}, "times": -1})
        body = http_bytes("POST", "/v1/chat/completions", chat("m"),
                          {**auth(), "Content-Type": "application/json"})
        for _ in range(15):
            with RawConn(px.url) as c:
                c.send(body)
                c.recv_until(b"data:", timeout=10)
                # Stop reading so the proxy's socket buffer fills, then reset.
                time.sleep(0.05)
                c.close(reset=True)
            time.sleep(0.05)
        time.sleep(0.3)
        p = pair_health(px, "a", "ma")
        self.assertFalse(p["cooling"], f"client disconnects cooled the backend down: {p}")
        self.assertIsNone(backend_health(px, "a")["last_error"])



class TestR6DrainKeepsQueuedOutput(unittest.TestCase):
    """R6: on SIGTERM a worker leaves its loop as soon as no REQUEST is in flight, although the
    edge may still hold queued response bytes for a slow reader; lp_worker_destroy then closes
    the connection and the client receives a truncated response."""

    def test_sigterm_does_not_truncate_queued_response(self):
        require_proxy()
        with Mock("big", "--response-bytes", "24000000") as up:
            px = Proxy(config([backend(up)], {"m": [("big", "mb")]})).start()
            try:
                with RawConn(px.url, timeout=30) as c:
                    c.send(http_bytes("POST", "/v1/chat/completions", chat("m", False),
                                      {**auth(), "Content-Type": "application/json"}))
                    head = c.recv_until(b"\r\n\r\n", timeout=30)
                    self.assertIn(b" 200 ", head.split(b"\r\n")[0])
                    n = int([l.split(b":")[1] for l in head.split(b"\r\n")
                             if l.lower().startswith(b"content-length:")][0])
                    time.sleep(0.5)  # the proxy has the whole body; most is still queued
                    px.proc.send_signal(signal.SIGTERM)
                    time.sleep(0.5)
                    body = c.buf
                    while len(body) < n:
                        try:
                            chunk = c.sock.recv(1 << 20)
                        except (ConnectionResetError, TimeoutError, socket.timeout):
                            break
                        if not chunk:
                            break
                        body += chunk
                    self.assertEqual(len(body), n, "response truncated by the drain")
            finally:
                px.stop()



class TestR7DeadlineMidStreamNoBlame(ReviewCase):
    """R7: total_timeout expiring in a COMMITTED stream goes through on_stream_done's generic
    branch: classified as a network reset and reported as the backend's failure (cooldown,
    breaker), although a long generation is not the backend's fault."""

    def test_total_timeout_mid_stream_does_not_cool_backend(self):
        px = self.start_proxy(timeout={"total_timeout": "1s", "read_timeout": "5s"},
                              fallback={"cooldown_seconds": 30})
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": 40,
                                            "chunk_bytes": 8, "interval_ms": 50}}})
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(s.status, 200)
        self.assert_openai_error_end(s.all())
        p = pair_health(px, "a", "ma")
        self.assertFalse(p["cooling"], f"the request's own deadline cooled the backend: {p}")



class TestR8ClientResetDetected(ReviewCase):
    """R8: a client that RESETS its connection while a request with a body larger than the
    edge's input buffer is in progress is never noticed: the edge paused reading (RM_CLOSED, only
    EV_CLOSED registered) and libevent maps EPOLLHUP/EPOLLERR to EV_READ|EV_WRITE, never to
    EV_CLOSED. The upstream request runs on to its end (tokens billed), the drain waits for it."""

    def test_reset_during_upstream_wait_cancels_upstream(self):
        px = self.start_proxy()
        self.a.script({"delay_ms": 4000})
        body = chat("m", False)
        body["messages"][0]["content"] = "x" * 300000
        with RawConn(px.url) as c:
            c.send(http_bytes("POST", "/v1/chat/completions", body,
                              {**auth(), "Content-Type": "application/json"}))
            self.a.wait_requests(1)
            time.sleep(0.2)
            c.close(reset=True)
        wait_until(lambda: self.a.stats()["aborted"] >= 1, timeout=2,
                   msg="upstream request cancelled after the client reset")



class TestR9DeadlineOnReusedConnection(ReviewCase):
    """R9: upstream.c map_result() calls every CURLE_OPERATION_TIMEDOUT with CONNECT_TIME 0 a
    connect timeout. On a REUSED connection CONNECT_TIME is 0, so curl's expiry of the request's
    own deadline (which races our TTFT/deadline timer, both set to the same instant) becomes
    LP_XFER_TIMEOUT_CONNECT, skips the deadline_reached() path and cools the backend down."""

    def test_deadline_on_reused_connection_does_not_cool(self):
        px = self.start_proxy(server={"threads": 1}, timeout={"total_timeout": "300ms"},
                              fallback={"cooldown_seconds": 30})
        for _ in range(8):
            r = request(px.url, "POST", "/v1/chat/completions", chat("m", False), headers=auth())
            self.assertEqual(r.status, 200, r.text)  # warms a pooled connection to a
            self.a.script({"delay_ms": 800})
            self.b.script({"delay_ms": 800})
            r = request(px.url, "POST", "/v1/chat/completions", chat("m", False), headers=auth())
            self.assertEqual(r.status, 504, r.text)
            p = pair_health(px, "a", "ma")
            self.assertFalse(p["cooling"], f"the request deadline cooled the backend: {p}")
            self.a.wait_idle(3)
            self.a.reset()
            self.b.reset()



class TestR10AllFailedRetryAfter(ReviewCase):
    """R10: when every attempt failed with 429/503 and Retry-After hints, the all-failed reply
    (status 429) carries no Retry-After, although the proxy knows when a route frees up; SDKs
    then retry blindly (and hit the cooling routes -> 503s)."""

    def test_all_rate_limited_reply_has_retry_after(self):
        px = self.start_proxy(fallback={"enable_backoff": False})
        err = {"error": {"message": "slow down", "type": "rate_limit_error"}}
        self.a.script({"status": 429, "headers": {"retry-after": "7"}, "body": err})
        self.b.script({"status": 429, "headers": {"retry-after": "9"}, "body": err})
        r = request(px.url, "POST", "/v1/chat/completions", chat("m", False), headers=auth())
        self.assertEqual(r.status, 429, r.text)
        ra = r.headers.get("retry-after")
        self.assertIsNotNone(ra, "no Retry-After on an all-rate-limited 429")
        self.assertTrue(1 <= int(ra) <= 9, ra)



class TestPausedStreamSurvivesReadTimeout(ReviewCase):
    """Guard (passes today): a stream paused by backpressure for longer than read_timeout is
    not killed by the read timer, and resuming delivers every byte."""

    def test_slow_reader_longer_than_read_timeout(self):
        px = self.start_proxy(timeout={"read_timeout": "1s"})
        n = 3000
        self.a.script({"sse": {"generate": {"protocol": "openai", "chunks": n, "chunk_bytes": 1024}}})
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth(), timeout=30)
        self.assertEqual(s.status, 200)
        s.read_some(1024)
        time.sleep(2.5)  # the proxy paused the upstream long ago; the read timer fired twice
        events = s.all()
        datas = [e.data for e in events]
        self.assertTrue(s.complete)
        self.assertEqual(datas[-1], "[DONE]", datas[-3:])
        chunks = [json.loads(d) for d in datas[:-1]]
        self.assertFalse([c for c in chunks if "error" in c])
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
        self.assertEqual(len(text), n * 1024)



class TestR11ReloadDuringShutdown(unittest.TestCase):
    """R11: a reload still parsing when SIGTERM arrives outlives the workers: main.c teardown()
    destroys the workers before lp_reloader_destroy() joins the reload thread, which then calls
    lp_worker_command() on freed workers (heap-use-after-free under ASan)."""

    def test_sighup_then_sigterm_exits_cleanly(self):
        require_proxy()
        with Mock("a") as m:
            # A large config makes the reload thread's parse last long enough to overlap.
            models = {f"m{i}": [("a", f"x{i}")] for i in range(3000)}
            for _ in range(6):
                px = Proxy(config([backend(m)], models)).start()
                px.proc.send_signal(signal.SIGHUP)
                time.sleep(0.001)
                px.proc.send_signal(signal.SIGTERM)
                px.stop()  # asserts exit 0 and no sanitizer report



class TestR13StreamRequestJsonAnswer(ReviewCase):
    """R13: a stream:true request whose upstream ignores `stream` and answers one
    application/json completion is relayed as JSON. The OpenAI SDK (stream=True) then iterates
    zero events without an error: a silent empty answer."""

    def test_stream_request_gets_event_stream(self):
        px = self.start_proxy()
        completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "ma",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        self.a.script({"body": completion})
        s = stream(px.url, "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(s.status, 200)
        self.assertIn("text/event-stream", s.headers.get("content-type", ""),
                      "a stream request was answered with a JSON body")


if __name__ == "__main__":
    unittest.main()
