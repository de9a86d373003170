"""How pass-through streams end: an upstream that reached its finish point but closed without the
terminal event still ends normally (the terminal event is supplied); one that did not is ended
with an error event; /v1/responses streams end with the upstream's own terminal event."""

import json
import unittest

from harness import Mock, Proxy, auth, backend, config, stream


def chunk(delta, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class StreamEndTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up_o = Mock("end-openai").start()
        cls.up_a = Mock("end-anthropic").start()

    @classmethod
    def tearDownClass(cls):
        cls.up_o.stop()
        cls.up_a.stop()

    def setUp(self):
        # A fresh proxy per test: a cut stream cools its backend down.
        self.up_o.reset()
        self.up_a.reset()
        self.px = Proxy(config([backend(self.up_o), backend(self.up_a, protocol="anthropic")],
                               {"o": [("end-openai", "gpt-up")], "a": [("end-anthropic", "claude-up")]})).start()

    def tearDown(self):
        self.px.stop()

    def test_openai_finish_without_done_gets_done(self):
        self.up_o.script({"sse": {"events": [{"data": chunk({"role": "assistant", "content": ""})},
                                             {"data": chunk({"content": "Hi"})},
                                             {"data": chunk({}, "stop")}]}})
        with stream(self.px.url, "/v1/chat/completions",
                    {"model": "o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                    headers=auth()) as s:
            events = s.all()
        datas = [e.data for e in events]
        self.assertEqual(datas[-1], "[DONE]")
        self.assertFalse(any('"error"' in d for d in datas), datas)
        self.assertEqual(json.loads(datas[-2])["choices"][0]["finish_reason"], "stop")

    def test_openai_cut_before_finish_ends_with_error(self):
        self.up_o.script({"sse": {"events": [{"data": chunk({"role": "assistant", "content": ""})},
                                             {"data": chunk({"content": "Hi"})}]}})
        with stream(self.px.url, "/v1/chat/completions",
                    {"model": "o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                    headers=auth()) as s:
            events = s.all()
        last = json.loads(events[-1].data)
        self.assertIn("error", last)
        self.assertNotIn("[DONE]", [e.data for e in events])

    def test_anthropic_message_delta_without_stop_gets_message_stop(self):
        ev = [("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "Hi"}}),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 2}})]
        self.up_a.script({"sse": {"events": [{"event": n, "data": d} for n, d in ev]}})
        with stream(self.px.url, "/v1/messages",
                    {"model": "a", "max_tokens": 10, "stream": True,
                     "messages": [{"role": "user", "content": "x"}]}, headers=auth("anthropic")) as s:
            events = s.all()
        self.assertEqual([e.event for e in events][-2:], ["message_delta", "message_stop"])

    def test_responses_stream_passes_through_and_ends_cleanly(self):
        evs = [("response.created", {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
               ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
               ("response.completed", {"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
                                                                                  "usage": {"input_tokens": 5, "output_tokens": 1}}})]
        self.up_o.script({"sse": {"events": [{"event": n, "data": d} for n, d in evs]}})
        with stream(self.px.url, "/v1/responses",
                    {"model": "o", "stream": True, "input": "x"}, headers=auth()) as s:
            events = s.all()
        self.assertEqual([e.event for e in events], [n for n, _ in evs])
        req = self.up_o.requests()[0]
        self.assertTrue(req["path"].endswith("/responses"), req["path"])
        self.assertEqual(json.loads(req["body"])["model"], "gpt-up")
        # Codex's request must not be touched beyond the model (no stream_options injected).
        self.assertNotIn("stream_options", json.loads(req["body"]))


class TranslatedFirstEventTests(unittest.TestCase):
    """A translated stream whose first upstream event is garbage fails over before commit."""

    def test_invalid_first_event_fails_over(self):
        with Mock("bad-anthropic") as bad, Mock("good-openai") as good:
            cfg = config([backend(bad, protocol="anthropic"), backend(good)],
                         {"m": [("bad-anthropic", "claude-x"), ("good-openai", "gpt-y")]})
            with Proxy(cfg) as px:
                bad.script({"sse": {"events": [{"event": "message_start", "data": "{not json"}]}})
                with stream(px.url, "/v1/chat/completions",
                            {"model": "m", "stream": True,
                             "messages": [{"role": "user", "content": "x"}]}, headers=auth()) as s:
                    self.assertEqual(s.status, 200)
                    events = s.all()
                self.assertEqual(events[-1].data, "[DONE]")
                text = "".join(json.loads(e.data)["choices"][0]["delta"].get("content") or ""
                               for e in events[:-1] if json.loads(e.data).get("choices"))
                self.assertIn("Hello from good-openai", text)
                self.assertEqual(len(bad.requests()), 1)
                self.assertEqual(len(good.requests()), 1)


if __name__ == "__main__":
    unittest.main()
