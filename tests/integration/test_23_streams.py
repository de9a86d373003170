"""Resilience of streams: failover before the commit point (in-band error as the first event,
TTFT stall) is invisible to the client; after the commit point (mid-stream cut, mid-stream
stall, error event) the stream ends with a protocol-correct error event, never a clean end, and
the official SDKs raise.
"""

import json
import os
import shutil
import subprocess
import time
import unittest

from harness import (PROXY_KEY, require, SOURCE_DIR, Mock, Proxy, RawConn, access_entry, auth, backend,
                     config, http_bytes, pair_health, require_proxy, stream, upstream_hits,
                     wait_until)

SDK_DIR = os.path.join(SOURCE_DIR, "tests", "sdk")
TTFT_S = 0.5
READ_S = 1.0

AN_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
OA_ERROR = {"error": {"message": "The server had an error while processing your request.",
                      "type": "server_error", "param": None, "code": None}}


def chat(alias="m"):
    return {"model": alias, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def msg(alias="am"):
    return {"model": alias, "stream": True, "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}]}


def an_message_start(model="ma"):
    return {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}


class StreamCase(unittest.TestCase):
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
        cfg = config(
            [backend(self.a), backend(self.b),
             backend("a-an", "anthropic", url=self.a.url), backend("b-an", "anthropic", url=self.b.url)],
            {"m": [("a", "ma"), ("b", "mb")], "am": [("a-an", "ma"), ("b-an", "mb")],
             "x": [("a-an", "xa"), ("b", "xb")]},
            fallback={"cooldown_seconds": 2},
            timeout={"ttft_timeout": "500ms", "read_timeout": "1s"})
        self.px = Proxy(cfg).start()
        self.addCleanup(self.px.stop)

    def oa(self, alias="m"):
        return stream(self.px.url, "/v1/chat/completions", chat(alias), headers=auth())

    def an(self):
        return stream(self.px.url, "/v1/messages", msg(), headers=auth("anthropic"))

    # ---- checks ---------------------------------------------------------------------------

    def assert_clean_openai(self, events, who="b"):
        datas = [e.data for e in events]
        self.assertEqual(datas[-1], "[DONE]", datas)
        chunks = [json.loads(d) for d in datas[:-1]]
        for c in chunks:
            self.assertNotIn("error", c, f"an error reached the client: {c}")
            self.assertEqual(c["object"], "chat.completion.chunk")
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        self.assertTrue(text.startswith(f"Hello from {who}"), text)
        self.assertEqual(sum(1 for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")), 1)

    def assert_clean_anthropic(self, events, who="b"):
        names = [e.event for e in events]
        self.assertEqual(names, ["message_start", "content_block_start", "ping"] +
                         ["content_block_delta"] * 8 +
                         ["content_block_stop", "message_delta", "message_stop"])
        text = "".join(json.loads(e.data)["delta"].get("text", "") for e in events
                       if e.event == "content_block_delta")
        self.assertTrue(text.startswith(f"Hello from {who}"), text)

    def assert_openai_error_end(self, s, events):
        datas = [e.data for e in events]
        self.assertNotIn("[DONE]", datas, "a broken stream must not end with [DONE]")
        self.assertTrue(datas, "no events at all")
        last = json.loads(datas[-1])
        self.assertIsInstance(last.get("error"), dict, f"last event is not an error: {datas[-1]}")
        self.assertIsInstance(last["error"].get("message"), str)
        self.assertIsNone(events[-1].event)
        for d in datas[:-1]:
            self.assertNotIn("finish_reason\":\"stop", d, "finish_reason before the error")
        return last

    def assert_anthropic_error_end(self, s, events):
        names = [e.event for e in events]
        self.assertNotIn("message_stop", names, "a broken stream must not end with message_stop")
        self.assertEqual(names[-1], "error", names)
        d = json.loads(events[-1].data)
        self.assertEqual(d["type"], "error")
        self.assertIsInstance(d["error"]["type"], str)
        self.assertIsInstance(d["error"]["message"], str)
        return d

    def sdk(self, sdk, alias, stream_=True):
        require(bool(shutil.which("node")) and os.path.isdir(os.path.join(SDK_DIR, "node_modules")),
                "node or tests/sdk/node_modules missing (npm install in tests/sdk)")
        base = self.px.url + ("/v1" if sdk == "openai" else "")
        sc = {"sdk": sdk, "baseURL": base, "apiKey": PROXY_KEY, "model": alias, "stream": stream_}
        p = subprocess.run(["node", "client.mjs", json.dumps(sc)], cwd=SDK_DIR,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])


class TestBeforeCommit(StreamCase):
    def test_inband_error_first_event_anthropic_fails_over(self):
        self.a.script({"sse": {"events": [{"event": "error", "data": AN_OVERLOADED}]}})
        s = self.an()
        self.assertEqual(s.status, 200)
        events = s.all()
        self.assertNotIn("error", [e.event for e in events])
        self.assert_clean_anthropic(events)
        self.assertEqual([h[0] for h in upstream_hits(self.a, self.b)], ["a", "b"])
        p = pair_health(self.px, "a-an", "ma")
        self.assertTrue(p["cooling"], p)
        self.assertEqual(p["class"], "overloaded", p)

    def test_inband_error_first_event_openai_fails_over(self):
        self.a.script({"sse": {"events": [{"data": OA_ERROR}]}})
        s = self.oa()
        self.assertEqual(s.status, 200)
        events = s.all()
        self.assert_clean_openai(events)
        self.assertEqual([h[0] for h in upstream_hits(self.a, self.b)], ["a", "b"])
        p = pair_health(self.px, "a", "ma")
        self.assertTrue(p["cooling"], p)
        self.assertEqual(p["class"], "server", p)

    def test_inband_error_first_event_translated_fails_over(self):
        """OpenAI client, Anthropic backend first: its in-band overloaded_error is not shown."""
        self.a.script({"sse": {"events": [{"event": "error", "data": AN_OVERLOADED}]}})
        s = self.oa("x")
        self.assertEqual(s.status, 200)
        self.assert_clean_openai(s.all())
        self.assertEqual([h[0] for h in upstream_hits(self.a, self.b)], ["a", "b"])
        self.assertEqual(pair_health(self.px, "a-an", "xa")["class"], "overloaded")

    def test_every_attempt_fails_before_commit_gives_json_error(self):
        """A stream request whose attempts all fail before the first event gets a normal JSON
        error with the last upstream status, not a 200 stream."""
        self.a.script({"status": 500})
        self.b.script({"status": 502})
        s = self.oa()
        self.assertEqual(s.status, 502)
        self.assertIn("application/json", s.headers.get("content-type", ""))
        body = json.loads(s.read_some() + s.read_some())
        self.assertIn("a/ma", body["error"]["message"])

    def test_ttft_stall_fails_over_within_ttft(self):
        self.a.script({"sse": {"stall_after": 0}})  # head sent, then silence
        t0 = time.monotonic()
        s = self.oa()
        events = s.all()
        dt = time.monotonic() - t0
        print(f"\n  TTFT stall -> clean answer from b in {dt * 1000:.0f} ms (ttft_timeout 500 ms)")
        self.assertEqual(s.status, 200)
        self.assert_clean_openai(events)
        self.assertGreaterEqual(dt, TTFT_S - 0.05)
        self.assertLess(dt, TTFT_S + 0.7, "failover took much longer than ttft_timeout")
        self.assertEqual([h[0] for h in upstream_hits(self.a, self.b)], ["a", "b"])
        self.assertEqual(pair_health(self.px, "a", "ma")["class"], "timeout")

    def test_ttft_counts_events_not_keepalive_comments(self):
        """An SSE comment before the first event does not satisfy ttft_timeout."""
        self.a.script({"sse": {"events": [{"raw": ": keep-alive\n\n"},
                                          {"data": OA_ERROR, "delay_ms": 3000}]}})
        t0 = time.monotonic()
        events = self.oa().all()
        self.assertLess(time.monotonic() - t0, TTFT_S + 0.7)
        self.assert_clean_openai(events)
        self.assertEqual(pair_health(self.px, "a", "ma")["class"], "timeout")

    def test_ttft_stall_anthropic(self):
        self.a.script({"sse": {"stall_after": 0}})
        t0 = time.monotonic()
        events = self.an().all()
        self.assertLess(time.monotonic() - t0, TTFT_S + 0.7)
        self.assert_clean_anthropic(events)


class TestAfterCommit(StreamCase):
    def test_mid_stream_cut_openai_ends_with_error(self):
        self.a.script({"sse": {"cut_after": 3}})
        s = self.oa()
        self.assertEqual(s.status, 200)
        events = s.all()
        self.assert_openai_error_end(s, events)
        self.assertEqual(len(events), 4, [e.data for e in events])  # 3 chunks + error
        self.assertEqual(self.b.requests(), [], "no failover after the commit point")
        e = access_entry(self.px, s.headers["x-request-id"])
        self.assertTrue(e.get("abort"), e)

    def test_mid_stream_cut_anthropic_ends_with_error(self):
        self.a.script({"sse": {"cut_after": 4}})
        s = self.an()
        events = s.all()
        self.assert_anthropic_error_end(s, events)
        self.assertEqual([e.event for e in events],
                         ["message_start", "content_block_start", "ping", "content_block_delta",
                          "error"])
        self.assertEqual(self.b.requests(), [])

    def test_mid_stream_cut_translated_ends_with_openai_error(self):
        """OpenAI client, Anthropic backend cut after a delta: OpenAI error chunk, no [DONE]."""
        self.a.script({"sse": {"cut_after": 4}})
        s = self.oa("x")
        self.assertEqual(s.status, 200)
        events = s.all()
        self.assert_openai_error_end(s, events)
        self.assertEqual(self.b.requests(), [])

    def test_cut_before_message_stop_anthropic_is_an_error(self):
        """Everything but the final message_stop arrived: still not a clean end."""
        self.a.script({"sse": {"cut_after": 13}})
        events = self.an().all()
        self.assert_anthropic_error_end(None, events)
        self.assertEqual([e.event for e in events][-2:], ["message_delta", "error"])

    def test_mid_stream_stall_openai_read_timeout(self):
        self.a.script({"sse": {"stall_after": 3}})
        t0 = time.monotonic()
        s = self.oa()
        events = s.all()
        dt = time.monotonic() - t0
        print(f"\n  mid-stream stall -> error event after {dt * 1000:.0f} ms (read_timeout 1 s)")
        self.assert_openai_error_end(s, events)
        self.assertGreaterEqual(dt, READ_S - 0.05)
        self.assertLess(dt, READ_S + 1.0)
        self.assertEqual(self.b.requests(), [])

    def test_mid_stream_stall_anthropic_read_timeout(self):
        self.a.script({"sse": {"stall_after": 5}})
        t0 = time.monotonic()
        events = self.an().all()
        self.assertLess(time.monotonic() - t0, READ_S + 1.0)
        self.assert_anthropic_error_end(None, events)
        self.assertEqual(self.b.requests(), [])

    def test_error_event_mid_stream_anthropic_relayed_and_ends(self):
        self.a.script({"sse": {"events": [
            {"event": "message_start", "data": an_message_start()},
            {"event": "content_block_start",
             "data": {"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}}},
            {"event": "content_block_delta",
             "data": {"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": "Hel"}}},
            {"event": "error", "data": AN_OVERLOADED},
            {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
            {"event": "message_stop", "data": {"type": "message_stop"}}]}})
        s = self.an()
        events = s.all()
        d = self.assert_anthropic_error_end(s, events)
        self.assertEqual(d["error"]["type"], "overloaded_error")
        self.assertEqual([e.event for e in events],
                         ["message_start", "content_block_start", "content_block_delta", "error"])
        self.assertEqual(self.b.requests(), [])

    def test_error_event_mid_stream_openai_relayed_and_ends(self):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "ma",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                              "finish_reason": None}]}
        self.a.script({"sse": {"events": [{"data": chunk}, {"data": OA_ERROR}, {"data": "[DONE]"}]}})
        s = self.oa()
        events = s.all()
        last = self.assert_openai_error_end(s, events)
        self.assertEqual(last["error"]["type"], "server_error")
        self.assertEqual(len(events), 2)
        self.assertEqual(self.b.requests(), [])


class TestClientGone(StreamCase):
    """A client that goes away is not a backend failure: no failover, no cooldown, and the
    upstream transfer is cancelled."""

    def test_disconnect_while_waiting_for_head(self):
        self.a.script({"delay_ms": 1500})
        c = RawConn(self.px.url)
        c.send(http_bytes("POST", "/v1/chat/completions",
                          {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, auth()))
        self.a.wait_requests(1)
        time.sleep(0.1)
        c.close()
        wait_until(lambda: self.a.requests()[0]["client_aborted"], timeout=3,
                   msg="the proxy cancels the upstream request")
        self.assertEqual(self.b.requests(), [])
        self.assertFalse(pair_health(self.px, "a", "ma")["cooling"])

    def test_disconnect_mid_stream(self):
        self.a.script({"sse": {"generate": {"chunks": 50, "interval_ms": 40}}})
        s = self.oa()
        it = iter(s)
        for _ in range(3):
            next(it)
        s.close()
        wait_until(lambda: self.a.requests()[0]["client_aborted"], timeout=3,
                   msg="the proxy cancels the upstream stream")
        self.assertEqual(self.b.requests(), [])
        self.assertFalse(pair_health(self.px, "a", "ma")["cooling"])


class TestSdkRaises(StreamCase):
    def test_openai_sdk_raises_on_cut(self):
        self.a.script({"sse": {"cut_after": 3}})
        out = self.sdk("openai", "m")
        self.assertFalse(out["ok"], out)

    def test_anthropic_sdk_raises_on_cut(self):
        self.a.script({"sse": {"cut_after": 4}})
        out = self.sdk("anthropic", "am")
        self.assertFalse(out["ok"], out)

    def test_sdks_complete_after_prefirst_failover(self):
        """Control: the same SDK runs succeed when the failure happens before the commit."""
        self.a.script({"sse": {"events": [{"data": OA_ERROR}]}})
        out = self.sdk("openai", "m")
        self.assertTrue(out["ok"], out)
        self.assertTrue(out["text"].startswith("Hello from b"), out)
        self.a.script({"sse": {"events": [{"event": "error", "data": AN_OVERLOADED}]}})
        out = self.sdk("anthropic", "am")
        self.assertTrue(out["ok"], out)
        self.assertTrue(out["text"].startswith("Hello from b"), out)


if __name__ == "__main__":
    unittest.main()
