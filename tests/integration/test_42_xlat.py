"""Translation fidelity end to end (issue 10, the translation probe): an Anthropic client on an
OpenAI backend (alias "claude-x") and an OpenAI client on an Anthropic backend ("gpt-x"); what
reaches the upstream (the mock's request log) and what the client gets.
"""

import json
import unittest

from harness import (Mock, Proxy, access_entry, auth, backend, config, request, require_proxy,
                     stream)

BIG = "123456789012345678901234567890"


def an_req(**kw):
    body = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


def oa_req(**kw):
    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


class XlatCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.moai = Mock("moai").start()
        cls.mant = Mock("mant").start()

    @classmethod
    def tearDownClass(cls):
        cls.moai.stop()
        cls.mant.stop()

    def setUp(self):
        self.moai.reset()
        self.mant.reset()
        # A proxy per test: an upstream error in one test must not cool a route for the next.
        self.px = Proxy(self.make_config()).start()
        self.addCleanup(self.px.stop)

    def make_config(self, **extra):
        return config([backend(self.moai), backend(self.mant, "anthropic")],
                      {"claude-x": [("moai", "gpt-4o")], "gpt-x": [("mant", "claude-sonnet-4-5")],
                       "mixed": [("moai", "gpt-4o"), ("mant", "claude-sonnet-4-5")]}, **extra)

    def an(self, body, path="/v1/messages"):
        return request(self.px.url, "POST", path, body, headers=auth("anthropic"))

    def oa(self, body):
        return request(self.px.url, "POST", "/v1/chat/completions", body, headers=auth())

    def upstream_body(self, mock):
        reqs = mock.wait_requests(1)
        return reqs[-1]["body"]

    # ---- bugs of the probe -----------------------------------------------------------------

    def test_tool_calls_without_id_get_unique_ids_and_tool_use(self):
        self.moai.script({"body": {
            "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": None, "tool_calls": [
                    {"type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"type": "function", "function": {"name": "f", "arguments": "{\"a\":2}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}})
        tools = [{"name": "f", "input_schema": {"type": "object"}}]
        r = self.an(an_req(tools=tools))
        self.assertEqual(r.status, 200, r.text)
        j = r.json()
        self.assertEqual(j["stop_reason"], "tool_use")
        ids = [b["id"] for b in j["content"] if b["type"] == "tool_use"]
        self.assertEqual(len(ids), 2)
        self.assertEqual(len(set(ids)), 2, ids)
        for i in ids:
            self.assertTrue(i.startswith("toolu_"), i)

    def test_big_integers_byte_exact_both_ways(self):
        # OpenAI client -> Anthropic upstream: tool arguments become an input object.
        body = oa_req(messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "c1", "type": "function",
                "function": {"name": "f", "arguments": '{"n":' + BIG + '}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}])
        r = self.oa(body)
        self.assertEqual(r.status, 200, r.text)
        up = self.upstream_body(self.mant)
        self.assertIn('"n":' + BIG, up)
        self.assertNotIn("18446744073709551615", up)
        # Anthropic client -> OpenAI upstream: input object becomes an arguments string.
        raw = ('{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"},'
               '{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":'
               '{"n":-' + BIG + '}}]},{"role":"user","content":[{"type":"tool_result",'
               '"tool_use_id":"t1","content":"ok"}]}]}')
        r = request(self.px.url, "POST", "/v1/messages", raw.encode(),
                    headers={**auth("anthropic"), "Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.text)
        up = json.loads(self.upstream_body(self.moai))
        self.assertEqual(up["messages"][1]["tool_calls"][0]["function"]["arguments"],
                         '{"n":-' + BIG + '}')

    def test_tool_result_search_result_kept(self):
        body = an_req(messages=[
            {"role": "user", "content": "find"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "s", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "search_result", "title": "Doc", "source": "https://example.com",
                 "content": [{"type": "text", "text": "the answer is 42"}]}]}]}])
        r = self.an(body)
        self.assertEqual(r.status, 200, r.text)
        up = json.loads(self.upstream_body(self.moai))
        tool = [m for m in up["messages"] if m["role"] == "tool"][0]
        self.assertIn("the answer is 42", tool["content"])
        self.assertIn("https://example.com", tool["content"])

    def test_count_tokens_on_translated_alias_is_estimated(self):
        r = self.an(an_req(messages=[{"role": "user", "content": "x" * 400}]),
                    path="/v1/messages/count_tokens")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers.get("x-llm-proxy-token-count"), "estimate")
        n = r.json()["input_tokens"]
        self.assertGreaterEqual(n, 100)
        self.assertLess(n, 200)
        self.assertEqual(self.moai.requests(), [])

    def test_count_tokens_uses_an_anthropic_route_when_there_is_one(self):
        r = self.an(an_req(model="mixed"), path="/v1/messages/count_tokens")
        self.assertEqual(r.status, 200, r.text)
        self.assertIsNone(r.headers.get("x-llm-proxy-token-count"))
        self.assertEqual(len(self.mant.requests()), 1)

    def test_mid_stream_error_in_client_vocabulary(self):
        # OpenAI upstream, Anthropic client: an error event after content.
        self.moai.script({"sse": {"events": [
            {"data": {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                      "choices": [{"index": 0, "delta": {"role": "assistant", "content": "he"},
                                   "finish_reason": None}]}},
            {"data": {"error": {"message": "Rate limit reached", "type": "requests",
                                "code": "rate_limit_exceeded"}}}]}})
        with stream(self.px.url, "/v1/messages", an_req(stream=True),
                    headers=auth("anthropic")) as s:
            events = s.all()
        errs = [e.json() for e in events if e.event == "error"]
        self.assertEqual(len(errs), 1, [e.data for e in events])
        self.assertEqual(errs[0]["error"]["type"], "rate_limit_error")
        # Anthropic upstream, OpenAI client.
        self.mant.script({"sse": {"events": [
            {"event": "message_start", "data": {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "content": [],
                "model": "m", "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1}}}},
            {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}}},
            {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": "hi"}}},
            {"event": "error", "data": {"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}}}]}})
        with stream(self.px.url, "/v1/chat/completions", oa_req(stream=True), headers=auth()) as s:
            events = s.all()
        errs = [e.json() for e in events if e.data and e.data.startswith("{") and "error" in e.json()]
        self.assertEqual(len(errs), 1, [e.data for e in events])
        self.assertEqual(errs[0]["error"]["type"], "server_error")
        self.assertEqual(errs[0]["error"]["code"], "overloaded")

    def test_html_error_body_message_is_page_title(self):
        self.mant.script({"status": 400, "headers": {"content-type": "text/html"},
                          "body": "<html><head><title>400 Bad Request</title></head>"
                                  "<body>nginx</body></html>"})
        r = self.oa(oa_req())
        self.assertEqual(r.status, 400, r.text)
        self.assertIn("400 Bad Request", r.json()["error"]["message"])
        self.assertNotIn("<", r.json()["error"]["message"])


    def test_insufficient_quota_is_billing_error(self):
        self.moai.script({"status": 429, "body": {"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota",
            "param": None, "code": "insufficient_quota"}}})
        r = self.an(an_req())
        self.assertGreaterEqual(r.status, 400, r.text)
        self.assertEqual(r.json()["error"]["type"], "billing_error", r.text)

    def test_no_max_tokens_gets_the_model_limit(self):
        r = self.oa(oa_req())
        self.assertEqual(r.status, 200, r.text)
        up = json.loads(self.upstream_body(self.mant))
        self.assertEqual(up["max_tokens"], 64000)  # claude-sonnet-4-5

    # ---- unsupported parameters: reject (default) or drop, always listed -----------------

    def test_unsupported_rejected_by_default_naming_the_parameter(self):
        r = self.oa(oa_req(n=2))
        self.assertEqual(r.status, 400, r.text)
        self.assertTrue(r.json()["error"]["message"].startswith("n: "), r.text)
        self.assertEqual(r.json()["error"]["type"], "invalid_request_error")
        r = self.an(an_req(stop_sequences=["a", "b", "c", "d", "e"]))
        self.assertEqual(r.status, 400, r.text)
        self.assertIn("stop_sequences", r.json()["error"]["message"])
        self.assertEqual(self.moai.requests(), [])
        self.assertEqual(self.mant.requests(), [])

    def test_dropped_parameters_listed_in_header_and_access_line(self):
        r = self.oa(oa_req(seed=7, logit_bias={"50256": -100}, temperature=1.7))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers.get("x-llm-proxy-dropped-params"),
                         "temperature,seed,logit_bias")
        up = json.loads(self.upstream_body(self.mant))
        self.assertEqual(up["temperature"], 1)
        self.assertNotIn("seed", up)
        # streamed too
        with stream(self.px.url, "/v1/messages", an_req(stream=True, top_k=4),
                    headers=auth("anthropic")) as s:
            self.assertEqual(s.resp.getheader("x-llm-proxy-dropped-params"), "top_k")
            s.all()
        e = access_entry(self.px, r.headers.get("x-request-id"))
        self.assertEqual(e.get("dropped_params"), "temperature,seed,logit_bias")

    def test_drop_policy_per_alias(self):
        self.px.stop()
        cfg = self.make_config()
        cfg["models"]["gpt-x"]["translation"] = {"unsupported": "drop"}
        self.px = Proxy(cfg).start()
        self.addCleanup(self.px.stop)
        r = self.oa(oa_req(n=3, logprobs=True))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers.get("x-llm-proxy-dropped-params"), "n,logprobs")
        # another alias keeps the default
        r = self.an(an_req(stop_sequences=["a", "b", "c", "d", "e"]))
        self.assertEqual(r.status, 400, r.text)

    def test_tool_choice_naming_a_missing_tool_is_400(self):
        r = self.an(an_req(tools=[{"name": "f", "input_schema": {"type": "object"}}],
                           tool_choice={"type": "tool", "name": "g"}))
        self.assertEqual(r.status, 400, r.text)
        self.assertEqual(r.json()["error"]["type"], "invalid_request_error")
        self.assertIn("tool_choice", r.json()["error"]["message"])


    # ---- response_format on an Anthropic backend -------------------------------------------

    def test_response_format_json_schema_non_stream_and_stream(self):
        schema = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}
        rf = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
        self.mant.script({"body": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "json_response",
                         "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 3}}})
        r = self.oa(oa_req(response_format=rf))
        self.assertEqual(r.status, 200, r.text)
        ch = r.json()["choices"][0]
        self.assertEqual(json.loads(ch["message"]["content"]), {"city": "Paris"})
        self.assertEqual(ch["finish_reason"], "stop")
        self.assertNotIn("tool_calls", ch["message"])
        self.assertIsNone(r.headers.get("x-llm-proxy-dropped-params"))
        up = json.loads(self.upstream_body(self.mant))
        self.assertEqual(up["tool_choice"], {"type": "tool", "name": "json_response"})
        self.assertEqual(up["tools"][0]["input_schema"]["properties"], schema["properties"])
        # streamed
        self.mant.reset()
        ev = [
            {"event": "message_start", "data": {"type": "message_start", "message": {
                "id": "msg_2", "type": "message", "role": "assistant", "content": [], "model": "m",
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1}}}},
            {"event": "content_block_start", "data": {
                "type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": "toolu_2", "name": "json_response", "input": {}}}},
            {"event": "content_block_delta", "data": {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}},
            {"event": "content_block_delta", "data": {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "\"Rome\"}"}}},
            {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
            {"event": "message_delta", "data": {"type": "message_delta",
                                                "delta": {"stop_reason": "tool_use"},
                                                "usage": {"output_tokens": 4}}},
            {"event": "message_stop", "data": {"type": "message_stop"}}]
        self.mant.script({"sse": {"events": ev}})
        with stream(self.px.url, "/v1/chat/completions", oa_req(stream=True, response_format=rf),
                    headers=auth()) as s:
            events = s.all()
        chunks = [e.json() for e in events if e.data != "[DONE]"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c.get("choices"))
        self.assertEqual(json.loads(text), {"city": "Rome"})
        finishes = [c["choices"][0]["finish_reason"] for c in chunks
                    if c.get("choices") and c["choices"][0].get("finish_reason")]
        self.assertEqual(finishes, ["stop"])
        self.assertFalse(any("tool_calls" in c["choices"][0]["delta"] for c in chunks
                             if c.get("choices")))


if __name__ == "__main__":
    unittest.main()
