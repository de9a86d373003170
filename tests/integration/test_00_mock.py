"""llm-mock on its own: default OpenAI/Anthropic answers, scripting, faults, the admin API.

The rest of the integration suite trusts the mock, so this file checks it thoroughly first.
"""

import concurrent.futures
import http.client
import json
import socket
import subprocess
import time
import unittest

from harness import (MOCK_BIN, Client, Mock, RawConn, SSEStream, http_bytes, raw_request,
                     read_then_disconnect, request, stream, wait_until)

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def chat_events(s: SSEStream):
    """All data payloads of an OpenAI stream, parsed (the [DONE] sentinel kept as a string)."""
    return [ev.data if ev.data == "[DONE]" else ev.json() for ev in s]


class MockCase(unittest.TestCase):
    """One mock for the class, reset before each test."""

    mock_args: tuple = ()

    @classmethod
    def setUpClass(cls):
        cls.mock = Mock("mock-a", *cls.mock_args).start()

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        self.mock.reset()

    @property
    def url(self):
        return self.mock.url


class TestCli(unittest.TestCase):
    def test_help_exits_zero(self):
        r = subprocess.run([MOCK_BIN, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--listen", r.stdout)
        self.assertIn("--chunk-interval-ms", r.stdout)

    def test_bad_flags_exit_nonzero(self):
        for args in (["--bogus"], ["--chunks", "x"], ["--listen", "nohostport"]):
            r = subprocess.run([MOCK_BIN, *args], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0, args)

    def test_listen_line_reports_real_port(self):
        with Mock("m") as m:
            self.assertGreater(m.port, 0)
            r = request(m.url, "GET", "/v1/models")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["x-mock-name"], "m")

    def test_sigterm_with_open_streams_exits_clean(self):
        m = Mock("m").start()
        m.script({"sse": {"events": [{"data": "x"}], "stall_after": 1}},
                 {"status": 200, "delay_ms": 10000})
        s = stream(m.url, "/v1/chat/completions", CHAT)
        raw = RawConn(m.url)
        raw.send(http_bytes("POST", "/v1/chat/completions", CHAT))
        wait_until(lambda: m.stats()["active"] == 2, msg="two active")
        self.assertEqual(m.stop(), 0)  # also asserts no sanitizer report
        s.close()
        raw.close()


class TestOpenAIDefault(MockCase):
    def test_chat_non_stream_shape(self):
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        self.assertIn("application/json", r.headers["content-type"])
        self.assertEqual(r.headers["x-mock-name"], "mock-a")
        b = r.json()
        self.assertTrue(b["id"].startswith("chatcmpl-"))
        self.assertEqual(b["object"], "chat.completion")
        self.assertIsInstance(b["created"], int)
        self.assertEqual(b["model"], "gpt-test")
        ch = b["choices"][0]
        self.assertEqual(ch["index"], 0)
        self.assertEqual(ch["message"]["role"], "assistant")
        self.assertTrue(ch["message"]["content"].startswith("Hello from mock-a"))
        self.assertEqual(ch["finish_reason"], "stop")
        u = b["usage"]
        self.assertGreater(u["prompt_tokens"], 0)
        self.assertGreater(u["completion_tokens"], 0)
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])

    def test_answer_is_deterministic(self):
        a = request(self.url, "POST", "/v1/chat/completions", CHAT).json()
        b = request(self.url, "POST", "/v1/chat/completions", CHAT).json()
        self.assertEqual(a["choices"][0]["message"]["content"],
                         b["choices"][0]["message"]["content"])
        self.assertNotEqual(a["id"], b["id"])

    def test_chat_stream_sequence(self):
        s = stream(self.url, "/v1/chat/completions", {**CHAT, "stream": True})
        self.assertEqual(s.status, 200)
        self.assertEqual(s.headers["content-type"], "text/event-stream")
        self.assertEqual(s.headers["cache-control"], "no-cache")
        evs = chat_events(s)
        self.assertTrue(s.complete)
        self.assertEqual(evs[-1], "[DONE]")
        chunks = evs[:-1]
        self.assertEqual(len(chunks), 1 + 8 + 1)  # role, 8 deltas, finish
        ids = {c["id"] for c in chunks}
        self.assertEqual(len(ids), 1)
        self.assertTrue(ids.pop().startswith("chatcmpl-"))
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            self.assertEqual(c["model"], "gpt-test")
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        for c in chunks[1:9]:
            self.assertEqual(list(c["choices"][0]["delta"]), ["content"])
            self.assertIsNone(c["choices"][0]["finish_reason"])
        self.assertEqual(chunks[9]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(chunks[9]["choices"][0]["delta"], {})
        self.assertNotIn("usage", chunks[9])
        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks[1:9])
        full = request(self.url, "POST", "/v1/chat/completions", CHAT).json()
        self.assertEqual(text, full["choices"][0]["message"]["content"])

    def test_chat_stream_include_usage(self):
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        evs = chat_events(stream(self.url, "/v1/chat/completions", body))
        self.assertEqual(evs[-1], "[DONE]")
        usage = evs[-2]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["total_tokens"],
                         usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"])
        self.assertEqual(evs[-3]["choices"][0]["finish_reason"], "stop")

    def test_path_variants(self):
        for path in ("/chat/completions", "/v1/chat/completions", "/openai/v1/chat/completions",
                     "/v1/chat/completions?api-version=1"):
            r = request(self.url, "POST", path, CHAT)
            self.assertEqual(r.json()["object"], "chat.completion", path)

    def test_other_openai_endpoints(self):
        r = request(self.url, "POST", "/v1/completions", {"model": "m1", "prompt": "x"})
        self.assertEqual(r.json()["object"], "text_completion")
        self.assertIn("Hello from mock-a", r.json()["choices"][0]["text"])
        r = request(self.url, "POST", "/v1/embeddings", {"model": "e", "input": ["a", "b"]})
        self.assertEqual([d["index"] for d in r.json()["data"]], [0, 1])
        self.assertEqual(r.json()["model"], "e")
        r = request(self.url, "POST", "/v1/responses", {"model": "r", "input": "x"})
        self.assertEqual(r.json()["object"], "response")
        self.assertEqual(r.json()["output"][0]["content"][0]["type"], "output_text")
        r = request(self.url, "GET", "/v1/models")
        self.assertEqual(r.json()["object"], "list")
        self.assertTrue(r.json()["data"])

    def test_unknown_path_and_bad_json(self):
        r = request(self.url, "POST", "/v1/nothing", CHAT)
        self.assertEqual(r.status, 404)
        self.assertIn("error", r.json())
        r = request(self.url, "POST", "/v1/chat/completions", "{not json")
        self.assertEqual(r.status, 400)
        self.assertIn("error", r.json())
        self.assertEqual(len(self.mock.requests()), 2)  # both still logged


class TestAnthropicDefault(MockCase):
    def test_messages_non_stream_shape(self):
        r = request(self.url, "POST", "/v1/messages?beta=true", MSG)
        self.assertEqual(r.status, 200)
        b = r.json()
        self.assertTrue(b["id"].startswith("msg_"))
        self.assertEqual((b["type"], b["role"], b["model"]), ("message", "assistant", "claude-test"))
        self.assertEqual(b["content"][0]["type"], "text")
        self.assertTrue(b["content"][0]["text"].startswith("Hello from mock-a"))
        self.assertEqual(b["stop_reason"], "end_turn")
        self.assertIsNone(b["stop_sequence"])
        self.assertGreater(b["usage"]["input_tokens"], 0)
        self.assertGreater(b["usage"]["output_tokens"], 0)

    def test_messages_stream_exact_sequence(self):
        s = stream(self.url, "/v1/messages", {**MSG, "stream": True})
        self.assertEqual(s.headers["content-type"], "text/event-stream")
        evs = s.all()
        self.assertTrue(s.complete)
        names = [e.event for e in evs]
        self.assertEqual(names, ["message_start", "content_block_start", "ping"] +
                         ["content_block_delta"] * 8 +
                         ["content_block_stop", "message_delta", "message_stop"])
        data = [e.json() for e in evs]
        for name, d in zip(names, data):
            self.assertEqual(d["type"], name)
        start = data[0]["message"]
        self.assertEqual((start["role"], start["model"], start["content"]),
                         ("assistant", "claude-test", []))
        self.assertGreater(start["usage"]["input_tokens"], 0)
        self.assertEqual(data[1]["content_block"], {"type": "text", "text": ""})
        self.assertEqual(data[1]["index"], 0)
        text = ""
        for d in data[3:11]:
            self.assertEqual(d["index"], 0)
            self.assertEqual(d["delta"]["type"], "text_delta")
            text += d["delta"]["text"]
        self.assertEqual(data[12]["delta"]["stop_reason"], "end_turn")
        self.assertGreater(data[12]["usage"]["output_tokens"], 0)
        full = request(self.url, "POST", "/v1/messages", MSG).json()
        self.assertEqual(text, full["content"][0]["text"])

    def test_count_tokens_and_prefixes(self):
        r = request(self.url, "POST", "/v1/messages/count_tokens?beta=true", MSG)
        self.assertEqual(list(r.json()), ["input_tokens"])
        self.assertGreater(r.json()["input_tokens"], 0)
        r = request(self.url, "POST", "/messages", MSG)
        self.assertEqual(r.json()["type"], "message")
        r = request(self.url, "POST", "/v1/messages", "]")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["type"], "error")


class TestFlags(unittest.TestCase):
    def test_chunks_and_response_bytes(self):
        with Mock("flags", "--chunks", "3", "--response-bytes", "300") as m:
            evs = chat_events(stream(m.url, "/v1/chat/completions", {**CHAT, "stream": True}))
            deltas = [e["choices"][0]["delta"]["content"] for e in evs[1:4]]
            self.assertEqual(len(evs), 1 + 3 + 1 + 1)
            self.assertEqual(len("".join(deltas)), 300)
            self.assertTrue("".join(deltas).startswith("Hello from flags"))

    def test_latency_ttft_and_interval(self):
        with Mock("slow", "--latency-ms", "200", "--ttft-ms", "300", "--chunks", "4",
                  "--chunk-interval-ms", "100") as m:
            t0 = time.monotonic()
            s = stream(m.url, "/v1/chat/completions", {**CHAT, "stream": True})
            t_head = time.monotonic() - t0
            times = []
            for _ in s:
                times.append(time.monotonic() - t0)
            # lower bounds are exact (timers never fire early); upper ones leave room for load
            self.assertGreaterEqual(t_head, 0.19)              # latency
            self.assertLess(t_head, times[0] - 0.15)           # ttft comes after the head
            self.assertGreaterEqual(times[0], 0.49)            # latency + ttft
            # + 3 intervals (4 deltas); the mock keeps a fixed schedule, so a late first event
            # (a loaded machine) can be followed by closer ones: allow one interval of slack
            self.assertGreaterEqual(times[-1], 0.49 + 0.19)
            t0 = time.monotonic()
            request(m.url, "POST", "/v1/chat/completions", CHAT)
            self.assertGreaterEqual(time.monotonic() - t0, 0.19)


class TestScript(MockCase):
    def test_status_headers_body_fifo(self):
        self.mock.script(
            {"status": 429, "headers": {"retry-after": "7", "x-custom": "yes"},
             "body": {"error": {"message": "slow down", "type": "rate_limit"}}},
            {"status": 503, "body": "<html>down</html>", "headers": {"content-type": "text/html"}},
        )
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.headers["retry-after"], "7")
        self.assertEqual(r.headers["x-custom"], "yes")
        self.assertEqual(r.headers["x-mock-name"], "mock-a")
        self.assertEqual(r.json()["error"]["type"], "rate_limit")
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.assertEqual((r.status, r.body), (503, b"<html>down</html>"))
        self.assertEqual(r.headers["content-type"], "text/html")
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)  # queue empty: default
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["object"], "chat.completion")
        self.assertEqual([q["status"] for q in self.mock.requests()], [429, 503, 200])

    def test_times_and_match(self):
        self.mock.script({"status": 500, "times": 2, "match": {"path_contains": "/messages"}},
                         {"status": 418, "body": "teapot"})
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)  # skips the /messages step
        self.assertEqual(r.status, 418)
        r = request(self.url, "POST", "/v1/messages", MSG)
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json()["type"], "error")  # Anthropic-shaped error by default
        self.assertEqual(request(self.url, "POST", "/v1/messages", MSG).status, 500)
        self.assertEqual(request(self.url, "POST", "/v1/messages", MSG).status, 200)
        self.assertEqual(self.mock.stats()["queued"], 0)

    def test_step_without_body_gets_default_answer(self):
        self.mock.script({"delay_ms": 50, "headers": {"x-a": "1"}})
        r = request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["x-a"], "1")
        self.assertEqual(r.json()["model"], "gpt-test")

    def test_invalid_script_rejected(self):
        for bad in ({"responses": 3}, {"responses": [{"status": "x"}]},
                    {"responses": [{"headers": []}]}, {"responses": [{"sse": {"events": [{}]}}]}):
            r = request(self.url, "POST", "/_mock/script", bad)
            self.assertEqual(r.status, 400, bad)
            self.assertIn("error", r.json())
        self.assertEqual(self.mock.stats()["queued"], 0)

    def test_close_without_response(self):
        self.mock.script({"close": True})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            request(self.url, "POST", "/v1/chat/completions", CHAT)
        log = self.mock.requests()
        self.assertEqual(len(log), 1)
        self.assertFalse(log[0]["completed"])
        self.assertFalse(log[0]["client_aborted"])
        self.assertEqual(request(self.url, "POST", "/v1/chat/completions", CHAT).status, 200)

    def test_sse_events_verbatim(self):
        self.mock.script({"sse": {"events": [
            {"event": "message_start", "data": {"type": "message_start"}},
            {"data": "line1\nline2"},
            {"raw": ": comment\n\ndata: raw-event\n\n"},
            {"data": "[DONE]"},
        ]}, "headers": {"x-s": "1"}})
        s = stream(self.url, "/v1/chat/completions", {**CHAT, "stream": True})
        self.assertEqual(s.headers["content-type"], "text/event-stream")
        self.assertEqual(s.headers["x-s"], "1")
        evs = s.all()
        self.assertTrue(s.complete)
        self.assertEqual([(e.event, e.data) for e in evs],
                         [("message_start", '{"type":"message_start"}'), (None, "line1\nline2"),
                          (None, "raw-event"), (None, "[DONE]")])
        self.assertIn(b"data: line1\ndata: line2\n\n", s.body)

    def test_cut_after_truncates_chunked_body(self):
        self.mock.script({"sse": {"generate": {"protocol": "openai", "chunks": 10},
                                  "cut_after": 3}})
        s = stream(self.url, "/v1/chat/completions", {**CHAT, "stream": True})
        evs = s.all()
        self.assertEqual(len(evs), 3)
        self.assertTrue(s.truncated)
        self.assertFalse(s.complete)
        self.assertIsInstance(s.error, http.client.IncompleteRead)
        log = self.mock.requests()[0]
        self.assertFalse(log["completed"])
        # the same, seen raw: no terminal chunk before the close
        self.mock.script({"sse": {"events": [{"data": "a"}, {"data": "b"}], "cut_after": 1}})
        with RawConn(self.url) as c:
            c.send(http_bytes("POST", "/v1/chat/completions", CHAT))
            raw = c.read_until_close()
        self.assertIn(b"data: a", raw)
        self.assertNotIn(b"data: b", raw)
        self.assertNotIn(b"\r\n0\r\n\r\n", raw)

    def test_default_stream_with_cut(self):
        self.mock.script({"sse": {"cut_after": 4}})
        s = stream(self.url, "/v1/messages", {**MSG, "stream": True})
        evs = s.all()
        self.assertEqual([e.event for e in evs],
                         ["message_start", "content_block_start", "ping", "content_block_delta"])
        self.assertTrue(s.truncated)

    def test_stall_after_until_client_leaves(self):
        self.mock.script({"sse": {"events": [{"data": "1"}, {"data": "2"}, {"data": "3"}],
                                  "stall_after": 2}})
        s = stream(self.url, "/v1/chat/completions", CHAT, timeout=0.5)
        got = []
        with self.assertRaises((TimeoutError, socket.timeout)):
            while True:
                chunk = s.resp.read1(100)
                if not chunk:
                    break
                got.append(chunk)
        self.assertIn(b"data: 2", b"".join(got))
        self.assertNotIn(b"data: 3", b"".join(got))
        st = self.mock.stats()
        self.assertEqual(st["active"], 1)
        s.close()
        wait_until(lambda: self.mock.stats()["active"] == 0, msg="stall ends")
        st = self.mock.stats()
        self.assertEqual(st["aborted"], 1)
        log = self.mock.requests()[0]
        self.assertTrue(log["client_aborted"])
        self.assertFalse(log["completed"])

    def test_delays_timestamps(self):
        self.mock.script({"delay_ms": 300, "sse": {"events": [
            {"data": "a"}, {"data": "b", "delay_ms": 400}, {"data": "c"}]}})
        t0 = time.monotonic()
        s = stream(self.url, "/v1/chat/completions", CHAT)
        t_head = time.monotonic() - t0
        stamps = {ev.data: time.monotonic() - t0 for ev in s}
        self.assertGreaterEqual(t_head, 0.29)
        self.assertLess(stamps["a"], 0.29 + 0.3)          # no delay of its own
        self.assertGreaterEqual(stamps["b"], 0.29 + 0.39)  # head delay + its 400 ms
        self.assertLess(stamps["c"] - stamps["b"], 0.3)    # no delay of its own
        log = self.mock.requests()[0]
        self.assertTrue(log["completed"])
        self.assertIsInstance(log["t_ms"], int)

    def test_client_abort_during_delay(self):
        self.mock.script({"delay_ms": 5000})
        c = RawConn(self.url)
        c.send(http_bytes("POST", "/v1/chat/completions", CHAT))
        wait_until(lambda: self.mock.stats()["active"] == 1, msg="request in flight")
        c.close()
        wait_until(lambda: self.mock.stats()["active"] == 0, msg="abort seen")
        self.assertTrue(self.mock.requests()[0]["client_aborted"])
        self.assertEqual(self.mock.stats()["aborted"], 1)

    def test_abort_mid_stream(self):
        self.mock.script({"sse": {"generate": {"chunks": 1000, "interval_ms": 5}}})
        got = read_then_disconnect(self.url, http_bytes("POST", "/v1/chat/completions", CHAT),
                                   nbytes=200)
        self.assertIn(b"200 OK", got)
        wait_until(lambda: self.mock.stats()["active"] == 0, msg="abort seen")
        self.assertTrue(self.mock.requests()[0]["client_aborted"])


class TestGenerate(MockCase):
    def test_generate_anthropic_well_formed(self):
        self.mock.script({"sse": {"generate": {"protocol": "anthropic", "chunks": 50,
                                               "chunk_bytes": 10}}})
        evs = stream(self.url, "/v1/messages", {**MSG, "stream": True}).all()
        self.assertEqual(len(evs), 56)
        deltas = [e.json()["delta"]["text"] for e in evs if e.event == "content_block_delta"]
        self.assertEqual(len(deltas), 50)
        self.assertTrue(all(len(d) == 10 for d in deltas))
        self.assertEqual(evs[-1].event, "message_stop")

    def test_backpressure_slow_reader_bounded_rss(self):
        chunks, size = 16000, 4096  # ~70 MB of SSE
        self.mock.script({"sse": {"generate": {"protocol": "openai", "chunks": chunks,
                                               "chunk_bytes": size}}})
        base = self.mock.rss_kb()
        s = stream(self.url, "/v1/chat/completions", {**CHAT, "stream": True})
        for _ in range(20):       # a slow reader: a little data, then a pause
            s.read_some(4096)
            time.sleep(0.05)
        grown = self.mock.rss_kb() - base
        self.assertLess(grown, 24 * 1024, f"mock RSS grew {grown} KiB behind a slow reader")
        self.assertEqual(self.mock.stats()["active"], 1)
        n = sum(1 for _ in s)     # now drain it all, quickly
        self.assertTrue(s.complete)
        self.assertEqual(n, chunks + 3)
        self.assertTrue(s.body.endswith(b"data: [DONE]\n\n"))
        self.assertGreater(len(s.body), chunks * size)
        self.assertTrue(self.mock.requests()[0]["completed"])


class TestRequestLog(MockCase):
    def test_log_fields(self):
        request(self.url, "POST", "/v1/chat/completions?x=1", CHAT,
                headers={"Authorization": "Bearer sk-up", "X-Mixed-Case": "v"})
        request(self.url, "GET", "/v1/models")
        log = self.mock.requests()
        self.assertEqual([e["seq"] for e in log], [1, 2])
        e = log[0]
        self.assertEqual(e["method"], "POST")
        self.assertEqual(e["path"], "/v1/chat/completions?x=1")
        self.assertEqual(e["headers"]["authorization"], "Bearer sk-up")
        self.assertEqual(e["headers"]["x-mixed-case"], "v")
        self.assertEqual(json.loads(e["body"]), CHAT)
        self.assertEqual(e["body_bytes"], len(e["body"]))
        self.assertFalse(e["body_truncated"])
        self.assertTrue(e["completed"])
        self.assertFalse(e["client_aborted"])
        self.assertLessEqual(log[0]["t_ms"], log[1]["t_ms"])
        self.assertEqual(log[1]["body"], "")
        self.assertEqual(self.mock.stats()["requests"], 2)

    def test_big_bodies(self):
        big = b'{"model":"m","pad":"' + b"x" * (64 * 1024 * 1024 - 30) + b'"}'
        self.assertLessEqual(len(big), 64 * 1024 * 1024)
        r = request(self.url, "POST", "/v1/chat/completions", big, timeout=60)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["model"], "m")
        e = self.mock.requests()[0]
        self.assertEqual(e["body_bytes"], len(big))
        self.assertTrue(e["body_truncated"])
        self.assertEqual(len(e["body"]), 1024 * 1024)
        r = raw_request(self.url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 67108865\r\n\r\n")
        self.assertEqual(r.status, 413)

    def test_chunked_request_and_expect_continue(self):
        body = json.dumps(CHAT).encode()
        with RawConn(self.url) as c:
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" +
                   b"%x\r\n%s\r\n" % (10, body[:10]) +
                   b"%x;ext=1\r\n%s\r\n0\r\n\r\n" % (len(body) - 10, body[10:]))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body))
            self.assertIn(b"100 Continue", c.recv_until(b"\r\n\r\n"))
            c.send(body)
            self.assertEqual(c.read_response().status, 200)
        log = self.mock.requests()
        self.assertEqual([json.loads(e["body"]) for e in log], [CHAT, CHAT])
        self.assertEqual(log[0]["conn_id"], log[1]["conn_id"])

    def test_malformed_requests(self):
        r = raw_request(self.url, b"GARBAGE\r\n\r\n")
        self.assertEqual(r.status, 400)
        r = raw_request(self.url, b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
        self.assertEqual(r.status, 431)
        r = raw_request(self.url, b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        self.assertEqual(r.status, 400)
        self.assertEqual(self.mock.requests(), [])

    def test_keepalive_conn_id_reuse(self):
        with Client(self.url) as c:
            for _ in range(3):
                self.assertEqual(c.request("POST", "/v1/chat/completions", CHAT).status, 200)
            self.assertEqual(c.stream("/v1/chat/completions", {**CHAT, "stream": True}).all()[-1]
                             .data, "[DONE]")
        request(self.url, "POST", "/v1/chat/completions", CHAT)
        ids = [e["conn_id"] for e in self.mock.requests()]
        self.assertEqual(len(set(ids[:4])), 1)
        self.assertNotEqual(ids[3], ids[4])
        self.assertEqual(self.mock.stats()["connections"], 2)

    def test_reset_clears_everything(self):
        self.mock.script({"status": 500}, {"status": 501})
        request(self.url, "POST", "/v1/chat/completions", CHAT)
        self.mock.reset()
        self.assertEqual(self.mock.requests(), [])
        st = self.mock.stats()
        self.assertEqual((st["requests"], st["connections"], st["aborted"], st["queued"]),
                         (0, 0, 0, 0))
        self.assertEqual(request(self.url, "POST", "/v1/chat/completions", CHAT).status, 200)
        self.assertEqual(self.mock.requests()[0]["seq"], 1)

    def test_stats_active(self):
        self.mock.script({"delay_ms": 400})
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = ex.submit(request, self.url, "POST", "/v1/chat/completions", CHAT)
            wait_until(lambda: self.mock.stats()["active"] == 1, msg="active 1")
            self.assertEqual(fut.result().status, 200)
        self.assertEqual(self.mock.stats()["active"], 0)


class TestConcurrency(unittest.TestCase):
    def test_200_concurrent_streams(self):
        n = 200
        with Mock("conc", "--chunks", "8", "--chunk-interval-ms", "20", "--quiet") as m:
            def one(i):
                s = stream(m.url, "/v1/chat/completions", {**CHAT, "stream": True, "n": i},
                           timeout=60)
                evs = s.all()
                return s.complete, len(evs), evs[-1].data

            with concurrent.futures.ThreadPoolExecutor(n) as ex:
                results = list(ex.map(one, range(n)))
            self.assertEqual(results, [(True, 11, "[DONE]")] * n)
            log = m.requests()
            self.assertEqual(len(log), n)
            self.assertTrue(all(e["completed"] for e in log))
            self.assertEqual(len({e["conn_id"] for e in log}), n)
            # they overlapped: every stream takes >= 140 ms, and they all started within that
            st = m.wait_idle()
            self.assertEqual(st["requests"], n)


if __name__ == "__main__":
    unittest.main()
