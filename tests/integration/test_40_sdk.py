"""Official SDKs as clients: the openai and @anthropic-ai/sdk packages and the Vercel AI SDK
validate every response and stream we produce, pass-through and translated.

The node scripts live in tests/sdk (client.mjs); scripts/test.sh installs their packages.
"""

import json
import os
import subprocess
import unittest

from harness import PROXY_KEY, SOURCE_DIR, Mock, Proxy, backend, config

SDK_DIR = os.path.join(SOURCE_DIR, "tests", "sdk")


def run_sdk(scenario: dict, timeout: float = 60.0) -> dict:
    """Run tests/sdk/client.mjs with one scenario; return its JSON outcome."""
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=SDK_DIR, check=True, timeout=600)
    p = subprocess.run(["node", "client.mjs", json.dumps(scenario)], cwd=SDK_DIR,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "AI_SDK_LOG_WARNINGS": "false"})
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise AssertionError(f"sdk client printed nothing (rc={p.returncode}): {p.stderr[-2000:]}")
    return json.loads(lines[-1])


def openai_chunk(delta: dict, finish=None, model="up-model") -> dict:
    return {"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def openai_tool_stream(calls: list[tuple[str, str, str]]) -> dict:
    """An OpenAI SSE plan streaming the given (id, name, json-args) tool calls, args in 2 parts."""
    ev = [{"data": openai_chunk({"role": "assistant", "content": None})}]
    for i, (cid, name, args) in enumerate(calls):
        ev.append({"data": openai_chunk({"tool_calls": [{"index": i, "id": cid, "type": "function",
                                                          "function": {"name": name, "arguments": ""}}]})})
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            ev.append({"data": openai_chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})})
    ev.append({"data": openai_chunk({}, "tool_calls")})
    ev.append({"data": {"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1,
                        "model": "up-model", "choices": [],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}})
    ev.append({"data": "[DONE]"})
    return {"sse": {"events": ev}}


def anthropic_tool_stream(calls: list[tuple[str, str, dict]]) -> dict:
    """An Anthropic SSE plan: a text block, then one tool_use block per call."""
    ev = [{"event": "message_start", "data": {"type": "message_start", "message": {
        "id": "msg_up1", "type": "message", "role": "assistant", "model": "up-model", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 21, "output_tokens": 1}}}},
        {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}},
        {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": "Checking both."}}},
        {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}}]
    for i, (cid, name, inp) in enumerate(calls, start=1):
        js = json.dumps(inp)
        ev.append({"event": "content_block_start", "data": {"type": "content_block_start", "index": i,
                   "content_block": {"type": "tool_use", "id": cid, "name": name, "input": {}}}})
        for part in (js[:len(js) // 2], js[len(js) // 2:]):
            ev.append({"event": "content_block_delta", "data": {"type": "content_block_delta", "index": i,
                       "delta": {"type": "input_json_delta", "partial_json": part}}})
        ev.append({"event": "content_block_stop", "data": {"type": "content_block_stop", "index": i}})
    ev.append({"event": "message_delta", "data": {"type": "message_delta",
               "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 30}}})
    ev.append({"event": "message_stop", "data": {"type": "message_stop"}})
    return {"sse": {"events": ev}}


WEATHER_TOOL_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
WEATHER_TOOL_ANTHROPIC = {"name": "get_weather", "description": "Weather for a city",
                          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                           "required": ["city"]}}


class SdkTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up_o = Mock("sdk-openai").start()
        cls.up_a = Mock("sdk-anthropic").start()
        cfg = config([backend(cls.up_o), backend(cls.up_a, protocol="anthropic")],
                     {"o": [("sdk-openai", "gpt-up")],
                      "a": [("sdk-anthropic", "claude-up")]})
        cls.px = Proxy(cfg).start()

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()
        cls.up_o.stop()
        cls.up_a.stop()

    def setUp(self):
        self.up_o.reset()
        self.up_a.reset()

    def sc(self, sdk: str, model: str, **kw) -> dict:
        base = self.px.url + ("/v1" if sdk in ("openai", "ai-openai") else "")
        return {"sdk": sdk, "baseURL": base, "apiKey": PROXY_KEY, "model": model, **kw}

    # --- pass-through -----------------------------------------------------------------------

    def test_openai_sdk_stream_passthrough(self):
        r = run_sdk(self.sc("openai", "o", stream=True, include_usage=True))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from sdk-openai", r["text"])
        self.assertEqual(r["finish"], "stop")
        self.assertGreater(r["usage"]["completion_tokens"], 0)

    def test_anthropic_sdk_stream_passthrough(self):
        r = run_sdk(self.sc("anthropic", "a", stream=True))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from sdk-anthropic", r["text"])
        self.assertEqual(r["finish"], "end_turn")

    def test_openai_sdk_nonstream_passthrough(self):
        r = run_sdk(self.sc("openai", "o", stream=False))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from sdk-openai", r["text"])

    # --- translated ---------------------------------------------------------------------------

    def test_anthropic_sdk_on_openai_backend_tool_round_trip(self):
        # Turn 1: the OpenAI backend streams a tool call; the Anthropic SDK sees a tool_use block.
        self.up_o.script(openai_tool_stream([("call_1", "get_weather", '{"city":"Paris"}')]))
        r = run_sdk(self.sc("anthropic", "o", stream=True, tools=[WEATHER_TOOL_ANTHROPIC],
                            messages=[{"role": "user", "content": "Weather in Paris?"}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["finish"], "tool_use")
        self.assertEqual(len(r["tool_calls"]), 1, r)
        call = r["tool_calls"][0]
        self.assertEqual(call["name"], "get_weather")
        self.assertEqual(call["input"], {"city": "Paris"})
        self.assertEqual(r["model"], "o")
        # Turn 2: the client sends the tool result; non-streaming this time.
        history = [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": call["id"], "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                          "content": "18C and sunny"}]},
        ]
        r2 = run_sdk(self.sc("anthropic", "o", stream=False, tools=[WEATHER_TOOL_ANTHROPIC], messages=history))
        self.assertTrue(r2["ok"], r2)
        self.assertEqual(r2["finish"], "end_turn")
        self.assertIn("Hello from sdk-openai", r2["text"])
        # What the OpenAI backend received on turn 2: an assistant tool_calls message and a tool
        # message answering the same id.
        reqs = self.up_o.requests()
        self.assertEqual(len(reqs), 2)
        self.assertTrue(reqs[1]["path"].endswith("/chat/completions"), reqs[1]["path"])
        body = json.loads(reqs[1]["body"])
        self.assertEqual(body["model"], "gpt-up")
        roles = [m["role"] for m in body["messages"]]
        self.assertEqual(roles, ["user", "assistant", "tool"])
        tc = body["messages"][1]["tool_calls"][0]
        self.assertEqual(tc["id"], call["id"])
        self.assertEqual(json.loads(tc["function"]["arguments"]), {"city": "Paris"})
        self.assertEqual(body["messages"][2]["tool_call_id"], call["id"])
        self.assertIn("18C", json.dumps(body["messages"][2]["content"]))
        self.assertEqual(body["tools"][0]["function"]["name"], "get_weather")
        self.assertNotIn("x-api-key", {k.lower() for k in reqs[1]["headers"]} - {"authorization"})

    def test_openai_sdk_on_anthropic_backend_parallel_tools_streamed(self):
        self.up_a.script(anthropic_tool_stream([("toolu_1", "get_weather", {"city": "Paris"}),
                                                ("toolu_2", "get_weather", {"city": "Tokyo"})]))
        r = run_sdk(self.sc("openai", "a", stream=True, include_usage=True, tools=[WEATHER_TOOL_OPENAI],
                            messages=[{"role": "user", "content": "Weather in Paris and Tokyo?"}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["finish"], "tool_calls")
        self.assertEqual(r["text"], "Checking both.")
        self.assertEqual([c["index"] for c in r["tool_calls"]], [0, 1])
        self.assertEqual([c["id"] for c in r["tool_calls"]], ["toolu_1", "toolu_2"])
        self.assertEqual([json.loads(c["arguments"]) for c in r["tool_calls"]],
                         [{"city": "Paris"}, {"city": "Tokyo"}])
        self.assertEqual(r["usage"]["completion_tokens"], 30)
        req = self.up_a.requests()[0]
        self.assertTrue(req["path"].startswith("/v1/messages"), req["path"])
        body = json.loads(req["body"])
        self.assertEqual(body["model"], "claude-up")
        self.assertEqual(body["tools"][0]["input_schema"]["required"], ["city"])
        self.assertIn("max_tokens", body)

    def test_vercel_ai_sdk_openai_provider_on_anthropic_backend(self):
        r = run_sdk(self.sc("ai-openai", "a", prompt="Hello"))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from sdk-anthropic", r["text"])
        self.assertEqual(r["finish"], "stop")

    def test_vercel_ai_sdk_anthropic_provider_on_openai_backend(self):
        r = run_sdk(self.sc("ai-anthropic", "o", prompt="Hello"))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from sdk-openai", r["text"])
        self.assertEqual(r["finish"], "stop")

    def test_vercel_ai_sdk_tools_both_directions(self):
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        self.up_a.script(anthropic_tool_stream([("toolu_9", "get_weather", {"city": "Rome"})]))
        r = run_sdk(self.sc("ai-openai", "a", prompt="Weather in Rome?",
                            ai_tools=[{"name": "get_weather", "schema": schema}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["tool_calls"], [{"name": "get_weather", "input": {"city": "Rome"}}])
        self.assertEqual(r["finish"], "tool-calls")
        self.up_o.script(openai_tool_stream([("call_7", "get_weather", '{"city":"Oslo"}')]))
        r = run_sdk(self.sc("ai-anthropic", "o", prompt="Weather in Oslo?",
                            ai_tools=[{"name": "get_weather", "schema": schema}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["tool_calls"], [{"name": "get_weather", "input": {"city": "Oslo"}}])
        self.assertEqual(r["finish"], "tool-calls")

    # --- broken streams must raise -----------------------------------------------------------

    def test_sdks_raise_on_mid_stream_cut(self):
        # A cut cools the backend down, so each case gets a fresh proxy (same mocks).
        for sdk, model, up in (("openai", "o", self.up_o), ("anthropic", "a", self.up_a),
                               ("openai", "a", self.up_a), ("anthropic", "o", self.up_o)):
            with self.subTest(sdk=sdk, model=model):
                up.reset()
                proto = "anthropic" if up is self.up_a else "openai"
                up.script({"sse": {"generate": {"protocol": proto, "chunks": 50, "chunk_bytes": 20,
                                                "interval_ms": 0}, "cut_after": 4}})
                cfg = config([backend(self.up_o), backend(self.up_a, protocol="anthropic")],
                             {"o": [("sdk-openai", "gpt-up")], "a": [("sdk-anthropic", "claude-up")]})
                with Proxy(cfg) as px:
                    base = px.url + ("/v1" if sdk == "openai" else "")
                    r = run_sdk({"sdk": sdk, "baseURL": base, "apiKey": PROXY_KEY, "model": model,
                                 "stream": True})
                self.assertFalse(r["ok"], f"{sdk} reported a normal completion of a cut stream: {r}")
                self.assertEqual(len(up.requests()), 1)


if __name__ == "__main__":
    unittest.main()
