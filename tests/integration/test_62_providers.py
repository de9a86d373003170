"""Backends as users configure them: Azure OpenAI (deployment URLs with api-version, the v1 API,
the `api-key` header), the reference's provider names, and Google Gemini / Vertex AI.

Each provider is played by llm-mock in a mode that refuses what that provider refuses
(`--mode azure`, `--mode gemini`, see docs/mock.md), so a wrong URL, a missing api-version or a
key in the wrong header fails the test instead of passing silently.
"""

import json
import unittest

from harness import (Mock, Proxy, auth, backend_key, config, request, require_proxy, stream)

AZ_KEY = "az-secret-key-1234"


def chat(alias, **extra):
    return {"model": alias, "messages": [{"role": "user", "content": "hi"}], **extra}


def msg(alias, **extra):
    return {"model": alias, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
            **extra}


class AzureCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.az = Mock("az", "--mode", "azure", "--key", AZ_KEY).start()

    @classmethod
    def tearDownClass(cls):
        cls.az.stop()

    def setUp(self):
        self.az.reset()

    def proxy(self, url, **extra):
        b = {"name": "az", "url": url, "api_key": AZ_KEY, "protocol": "azure", **extra}
        px = Proxy(config([b], {"m": [("az", "gpt-4o")]})).start()
        self.addCleanup(px.stop)
        return px

    def test_mock_refuses_what_azure_refuses(self):
        # Without the proxy: the fake must fail a plain OpenAI-style call, or the tests below
        # would prove nothing.
        r = request(self.az.url, "POST", "/openai/deployments/d/chat/completions", chat("x"),
                    headers={"api-key": AZ_KEY})
        self.assertEqual(r.status, 404, r.text)  # no api-version
        r = request(self.az.url, "POST", "/openai/deployments/d/chat/completions?api-version=1",
                    chat("x"), headers={"authorization": "Bearer " + AZ_KEY})
        self.assertEqual(r.status, 401, r.text)  # a Bearer token is not a key
        r = request(self.az.url, "POST", "/v1/chat/completions", chat("x"),
                    headers={"api-key": AZ_KEY})
        self.assertEqual(r.status, 404, r.text)

    def test_deployment_url_json(self):
        px = self.proxy(self.az.url + "/openai/deployments/my-dep")
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("Hello from az", r.json()["choices"][0]["message"]["content"])
        e = self.az.requests()[-1]
        self.assertEqual(e["path"],
                         "/openai/deployments/my-dep/chat/completions?api-version=2024-10-21")
        self.assertEqual(e["headers"]["api-key"], AZ_KEY)
        self.assertNotIn("authorization", e["headers"])

    def test_reference_full_url_and_api_version(self):
        px = self.proxy(self.az.url + "/openai/deployments/my-dep/chat/completions",
                        api_version="2025-04-01-preview")
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(self.az.requests()[-1]["path"],
                         "/openai/deployments/my-dep/chat/completions"
                         "?api-version=2025-04-01-preview")

    def test_resource_url_uses_route_model_as_deployment(self):
        px = self.proxy(self.az.url)
        with stream(px.url, "/v1/chat/completions", chat("m", stream=True),
                    headers=auth()) as s:
            evs = s.all()
        self.assertEqual(evs[-1].data, "[DONE]")
        self.assertEqual(self.az.requests()[-1]["path"],
                         "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21")

    def test_v1_url_has_no_api_version(self):
        px = self.proxy(self.az.url + "/openai/v1")
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        e = self.az.requests()[-1]
        self.assertEqual(e["path"], "/openai/v1/chat/completions")
        self.assertEqual(json.loads(e["body"])["model"], "gpt-4o")

    def test_anthropic_client_json_and_stream(self):
        px = self.proxy(self.az.url + "/openai/deployments/my-dep")
        r = request(px.url, "POST", "/v1/messages", msg("m"), headers=auth("anthropic"))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["type"], "message")
        self.assertIn("Hello from az", r.json()["content"][0]["text"])
        with stream(px.url, "/v1/messages", msg("m", stream=True),
                    headers=auth("anthropic")) as s:
            names = [e.event for e in s.all()]
        self.assertEqual(names[0], "message_start")
        self.assertEqual(names[-1], "message_stop")
        for e in self.az.requests():
            self.assertTrue(e["path"].startswith("/openai/deployments/my-dep/chat/completions?"))
            self.assertEqual(e["headers"]["api-key"], AZ_KEY)

    def test_wrong_key_is_an_auth_error(self):
        b = {"name": "az", "url": self.az.url + "/openai/deployments/d", "api_key": "wrong",
             "protocol": "azure"}
        px = Proxy(config([b], {"m": [("az", "gpt-4o")]})).start()
        self.addCleanup(px.stop)
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 401, r.text)
        self.assertNotIn("wrong", r.text)


class ProviderNamesCase(unittest.TestCase):
    """deepseek / groq / mistral / ... speak OpenAI; a URL with /chat/completions is not doubled."""

    def test_openai_compatible_names(self):
        require_proxy()
        with Mock("ds") as up:
            backends = [
                {"name": "deepseek", "url": up.url + "/chat/completions", "protocol": "deepseek",
                 "api_key": backend_key("ds")},
                {"name": "groq", "url": up.url + "/openai/v1", "protocol": "groq",
                 "api_key": backend_key("ds")},
                {"name": "mistral", "url": up.url + "/v1", "protocol": "Mistral",
                 "api_key": backend_key("ds")},
            ]
            models = {"d": [("deepseek", "deepseek-chat")], "g": [("groq", "llama")],
                      "mi": [("mistral", "mistral-large")]}
            with Proxy(config(backends, models)) as px:
                for alias in ("d", "g", "mi"):
                    r = request(px.url, "POST", "/v1/chat/completions", chat(alias),
                                headers=auth())
                    self.assertEqual(r.status, 200, r.text)
                paths = [e["path"] for e in up.requests()]
                self.assertEqual(paths, ["/chat/completions", "/openai/v1/chat/completions",
                                         "/v1/chat/completions"])
                for e in up.requests():
                    self.assertEqual(e["headers"]["authorization"], "Bearer " + backend_key("ds"))

    def test_parameter_fixes(self):
        require_proxy()
        with Mock("pf") as up:
            backends = [{"name": "pf", "url": up.url + "/v1", "api_key": backend_key("pf"),
                         "max_tokens_param": "max_completion_tokens",
                         "drop_params": ["logprobs", "store"]},
                        {"name": "plain", "url": up.url + "/v1", "api_key": backend_key("pf")}]
            models = {"a": [("pf", "o3")], "b": [("plain", "gpt")]}
            with Proxy(config(backends, models)) as px:
                raw = ('{"model":"a","max_tokens":20,"logprobs":true,"store":false,'
                       '"messages":[{"role":"user","content":"hi"}]}')
                r = request(px.url, "POST", "/v1/chat/completions", raw.encode(),
                            headers={**auth(), "content-type": "application/json"})
                self.assertEqual(r.status, 200, r.text)
                sent = json.loads(up.requests()[-1]["body"])
                self.assertEqual(sent["max_completion_tokens"], 20)
                for k in ("max_tokens", "logprobs", "store"):
                    self.assertNotIn(k, sent)
                # a backend without fixes gets the client's bytes (model aside) unchanged
                raw2 = raw.replace('"model":"a"', '"model":"b"')
                r = request(px.url, "POST", "/v1/chat/completions", raw2.encode(),
                            headers={**auth(), "content-type": "application/json"})
                self.assertEqual(r.status, 200, r.text)
                self.assertEqual(up.requests()[-1]["body"], raw2.replace('"model":"b"',
                                                                         '"model":"gpt"'))


G_KEY = "AIza-mock-gemini-key-5678"


class GeminiCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.g = Mock("gem", "--mode", "gemini", "--key", G_KEY, "--chunks", "3").start()

    @classmethod
    def tearDownClass(cls):
        cls.g.stop()

    def setUp(self):
        self.g.reset()

    def proxy(self, url=None, key=G_KEY, model="gemini-2.5-flash", **extra):
        b = {"name": "gem", "url": url or self.g.url + "/v1beta", "protocol": "google", **extra}
        if key is not None:
            b["api_key"] = key
        px = Proxy(config([b], {"m": [("gem", model)]})).start()
        self.addCleanup(px.stop)
        return px

    def test_mock_refuses_wrong_calls(self):
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        u = "/v1beta/models/gemini-2.5-flash:generateContent"
        self.assertEqual(request(self.g.url, "POST", u, body).status, 403)
        self.assertEqual(request(self.g.url, "POST", u + "?key=" + G_KEY, body,
                                 headers={"x-goog-api-key": G_KEY}).status, 400)
        self.assertEqual(request(self.g.url, "POST", "/v1/chat/completions", chat("x"),
                                 headers={"x-goog-api-key": G_KEY}).status, 404)
        self.assertEqual(request(self.g.url, "POST", u, chat("x"),
                                 headers={"x-goog-api-key": G_KEY}).status, 400)
        self.assertEqual(request(self.g.url, "POST", u.replace(":generate", ":streamGenerate"),
                                 body, headers={"x-goog-api-key": G_KEY}).status, 400)
        self.assertEqual(request(self.g.url, "POST", u, body,
                                 headers={"x-goog-api-key": G_KEY}).status, 200)

    def test_openai_client_json(self):
        px = self.proxy()
        r = request(px.url, "POST", "/v1/chat/completions",
                    chat("m", max_tokens=50, temperature=0.2,
                         messages=[{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "hi"}]),
                    headers=auth())
        self.assertEqual(r.status, 200, r.text)
        j = r.json()
        self.assertEqual(j["object"], "chat.completion")
        self.assertEqual(j["model"], "m")
        self.assertIn("Hello from gem", j["choices"][0]["message"]["content"])
        self.assertEqual(j["choices"][0]["finish_reason"], "stop")
        self.assertGreater(j["usage"]["prompt_tokens"], 0)
        e = self.g.requests()[-1]
        self.assertEqual(e["path"], "/v1beta/models/gemini-2.5-flash:generateContent")
        self.assertEqual(e["headers"]["x-goog-api-key"], G_KEY)
        self.assertNotIn("authorization", e["headers"])
        up = json.loads(e["body"])
        self.assertEqual(up["systemInstruction"], {"parts": [{"text": "be brief"}]})
        self.assertEqual(up["contents"], [{"role": "user", "parts": [{"text": "hi"}]}])
        self.assertEqual(up["generationConfig"], {"temperature": 0.2, "maxOutputTokens": 50})

    def test_openai_client_stream(self):
        px = self.proxy()
        with stream(px.url, "/v1/chat/completions",
                    chat("m", stream=True, stream_options={"include_usage": True}),
                    headers=auth()) as s:
            evs = s.all()
        self.assertEqual(evs[-1].data, "[DONE]")
        chunks = [e.json() for e in evs[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"])
        self.assertTrue(text.startswith("Hello from gem"), text)
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        self.assertEqual([f for f in finishes if f], ["stop"])
        self.assertIn("usage", chunks[-1])
        e = self.g.requests()[-1]
        self.assertEqual(e["path"], "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")

    def test_anthropic_client_json_and_stream(self):
        px = self.proxy()
        r = request(px.url, "POST", "/v1/messages",
                    msg("m", system="be brief"), headers=auth("anthropic"))
        self.assertEqual(r.status, 200, r.text)
        j = r.json()
        self.assertEqual(j["type"], "message")
        self.assertEqual(j["stop_reason"], "end_turn")
        self.assertIn("Hello from gem", j["content"][0]["text"])
        up = json.loads(self.g.requests()[-1]["body"])
        self.assertEqual(up["systemInstruction"], {"parts": [{"text": "be brief"}]})
        self.assertEqual(up["generationConfig"]["maxOutputTokens"], 64)
        with stream(px.url, "/v1/messages", msg("m", stream=True),
                    headers=auth("anthropic")) as s:
            evs = s.all()
        names = [e.event for e in evs]
        self.assertEqual(names[0], "message_start")
        self.assertEqual(names[-1], "message_stop")
        text = "".join(e.json()["delta"].get("text", "") for e in evs
                       if e.event == "content_block_delta")
        self.assertTrue(text.startswith("Hello from gem"), text)
        md = [e.json() for e in evs if e.event == "message_delta"][0]
        self.assertEqual(md["delta"]["stop_reason"], "end_turn")
        self.assertGreater(md["usage"]["output_tokens"], 0)

    def test_reference_model_url_and_key_in_url(self):
        # The reference's form: the URL names the model; a ?key= is moved to the header.
        px = self.proxy(url=self.g.url + "/v1beta/models/gemini-1.5-pro?key=" + G_KEY, key=None)
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        e = self.g.requests()[-1]
        self.assertEqual(e["path"], "/v1beta/models/gemini-1.5-pro:generateContent")
        self.assertEqual(e["headers"]["x-goog-api-key"], G_KEY)
        self.assertNotIn(G_KEY, px.log_text())

    def test_vertex_bearer(self):
        px = self.proxy(url=self.g.url + "/v1/projects/p1/locations/us-central1")
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        e = self.g.requests()[-1]
        self.assertEqual(e["path"], "/v1/projects/p1/locations/us-central1/publishers/google/"
                                    "models/gemini-2.5-flash:generateContent")
        self.assertEqual(e["headers"]["authorization"], "Bearer " + G_KEY)
        self.assertNotIn("x-goog-api-key", e["headers"])

    def test_tools_round_trip(self):
        px = self.proxy()
        self.g.script({"body": {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "c2ln+/A="}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                              "totalTokenCount": 15}}})
        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        r = request(px.url, "POST", "/v1/chat/completions", chat("m", tools=tools),
                    headers=auth())
        self.assertEqual(r.status, 200, r.text)
        m = r.json()["choices"][0]
        self.assertEqual(m["finish_reason"], "tool_calls")
        call = m["message"]["tool_calls"][0]
        self.assertEqual(call["function"]["name"], "get_weather")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"city": "Paris"})
        up = json.loads(self.g.requests()[-1]["body"])
        decl = up["tools"][0]["functionDeclarations"][0]
        self.assertEqual(decl["parametersJsonSchema"]["properties"]["city"]["type"], "string")
        # second turn: the tool result goes back as functionResponse, the signature restored
        msgs = [{"role": "user", "content": "weather?"}, m["message"],
                {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 21}"}]
        r = request(px.url, "POST", "/v1/chat/completions", chat("m", tools=tools, messages=msgs),
                    headers=auth())
        self.assertEqual(r.status, 200, r.text)
        up = json.loads(self.g.requests()[-1]["body"])
        self.assertEqual(up["contents"][1]["parts"][0]["functionCall"]["name"], "get_weather")
        self.assertEqual(up["contents"][1]["parts"][0]["thoughtSignature"], "c2ln+/A=")
        self.assertEqual(up["contents"][2], {"role": "user", "parts": [{"functionResponse": {
            "name": "get_weather", "response": {"temp": 21}}}]})

    def test_safety_block(self):
        px = self.proxy()
        blocked = {"promptFeedback": {"blockReason": "SAFETY"},
                   "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
        self.g.script({"body": blocked}, {"body": blocked},
                      {"sse": {"events": [{"data": blocked}]}})
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 200, r.text)
        c = r.json()["choices"][0]
        self.assertEqual(c["finish_reason"], "content_filter")
        self.assertIn("SAFETY", c["message"]["refusal"])
        r = request(px.url, "POST", "/v1/messages", msg("m"), headers=auth("anthropic"))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["stop_reason"], "refusal")
        with stream(px.url, "/v1/messages", msg("m", stream=True),
                    headers=auth("anthropic")) as s:
            evs = s.all()
        md = [e.json() for e in evs if e.event == "message_delta"][0]
        self.assertEqual(md["delta"]["stop_reason"], "refusal")
        self.assertEqual(evs[-1].event, "message_stop")

    def test_errors_in_client_shape(self):
        px = self.proxy(key="wrong-key")
        r = request(px.url, "POST", "/v1/chat/completions", chat("m"), headers=auth())
        self.assertEqual(r.status, 401, r.text)
        self.assertEqual(r.json()["error"]["code"], "invalid_api_key")
        px = self.proxy(key="wrong-key")  # the first proxy now cools the backend down
        r = request(px.url, "POST", "/v1/messages", msg("m"), headers=auth("anthropic"))
        self.assertEqual(r.status, 401, r.text)
        self.assertEqual(r.json()["type"], "error")
        self.assertEqual(r.json()["error"]["type"], "authentication_error")

    def test_context_overflow_and_cut_stream(self):
        px = self.proxy()
        self.g.script({"status": 400, "body": {"error": {
            "code": 400, "status": "INVALID_ARGUMENT",
            "message": "The input token count (1200000) exceeds the maximum number of tokens "
                       "allowed (1048576)."}}})
        r = request(px.url, "POST", "/v1/messages", msg("m"), headers=auth("anthropic"))
        self.assertEqual(r.status, 400, r.text)
        self.assertIn("prompt is too long: 1200000 tokens > 1048576", r.json()["error"]["message"])
        # a stream cut before any finishReason ends with an error event, never a clean end
        self.g.script({"sse": {"events": [
            {"data": {"candidates": [{"content": {"parts": [{"text": "par"}]}}]}},
            {"data": {"candidates": [{"content": {"parts": [{"text": "tial"}]}}]}}]}})
        with stream(px.url, "/v1/messages", msg("m", stream=True),
                    headers=auth("anthropic")) as s:
            evs = s.all()
        self.assertEqual(evs[-1].event, "error")
        self.assertNotIn("message_stop", [e.event for e in evs])


WEATHER_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_ANTHROPIC = {"name": "get_weather", "description": "Weather of a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}


def gemini_call_stream():
    """A Gemini alt=sse stream that says a few words, then calls get_weather (Gemini 3 style,
    with a thought signature)."""
    ev = lambda parts, fin=None: {"data": {"candidates": [{"content": {"role": "model",
                                  "parts": parts}, **({"finishReason": fin} if fin else {})}],
                                  "usageMetadata": {"promptTokenCount": 12,
                                                    "candidatesTokenCount": 6,
                                                    "totalTokenCount": 18}}}
    return {"sse": {"events": [
        ev([{"text": "Let me check. "}]),
        ev([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "c2lnbmF0dXJl"}], "STOP")]}}


class GeminiSdkCase(unittest.TestCase):
    """The official OpenAI and Anthropic SDKs against a Gemini backend, tools included."""

    @classmethod
    def setUpClass(cls):
        require_proxy()
        from test_40_sdk import run_sdk  # the shared node runner (tests/sdk/client.mjs)
        cls.run_sdk = staticmethod(run_sdk)
        cls.g = Mock("gsdk", "--mode", "gemini", "--key", G_KEY, "--chunks", "4").start()
        b = {"name": "gem", "url": cls.g.url + "/v1beta", "protocol": "google", "api_key": G_KEY}
        cls.px = Proxy(config([b], {"m": [("gem", "gemini-2.5-flash")]})).start()

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()
        cls.g.stop()

    def setUp(self):
        self.g.reset()

    def sc(self, sdk, **kw):
        from harness import PROXY_KEY
        base = self.px.url + ("/v1" if sdk == "openai" else "")
        return {"sdk": sdk, "baseURL": base, "apiKey": PROXY_KEY, "model": "m", **kw}

    def test_openai_sdk_stream_and_json(self):
        r = self.run_sdk(self.sc("openai", stream=True, include_usage=True))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from gsdk", r["text"])
        self.assertEqual(r["finish"], "stop")
        self.assertGreater(r["usage"]["completion_tokens"], 0)
        r = self.run_sdk(self.sc("openai", stream=False))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from gsdk", r["text"])

    def test_anthropic_sdk_stream_and_json(self):
        r = self.run_sdk(self.sc("anthropic", stream=True))
        self.assertTrue(r["ok"], r)
        self.assertIn("Hello from gsdk", r["text"])
        self.assertEqual(r["finish"], "end_turn")
        r = self.run_sdk(self.sc("anthropic", stream=False, system="be brief"))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["finish"], "end_turn")

    def test_openai_sdk_tool_round_trip(self):
        self.g.script(gemini_call_stream())
        r = self.run_sdk(self.sc("openai", stream=True, tools=[WEATHER_OPENAI],
                                 messages=[{"role": "user", "content": "Weather in Paris?"}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["finish"], "tool_calls")
        call = r["tool_calls"][0]
        self.assertEqual((call["name"], json.loads(call["arguments"])),
                         ("get_weather", {"city": "Paris"}))
        history = [{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [{
                       "id": call["id"], "type": "function",
                       "function": {"name": "get_weather", "arguments": call["arguments"]}}]},
                   {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}]
        r2 = self.run_sdk(self.sc("openai", stream=False, tools=[WEATHER_OPENAI],
                                  messages=history))
        self.assertTrue(r2["ok"], r2)
        body = json.loads(self.g.requests()[-1]["body"])
        fc = body["contents"][1]["parts"][0]
        self.assertEqual(fc["functionCall"], {"name": "get_weather", "args": {"city": "Paris"}})
        self.assertEqual(fc["thoughtSignature"], "c2lnbmF0dXJl")
        self.assertEqual(body["contents"][2]["parts"][0]["functionResponse"],
                         {"name": "get_weather", "response": {"content": "18C and sunny"}})

    def test_anthropic_sdk_tool_round_trip(self):
        self.g.script(gemini_call_stream())
        r = self.run_sdk(self.sc("anthropic", stream=True, tools=[WEATHER_ANTHROPIC],
                                 messages=[{"role": "user", "content": "Weather in Paris?"}]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["finish"], "tool_use")
        call = r["tool_calls"][0]
        self.assertEqual((call["name"], call["input"]), ("get_weather", {"city": "Paris"}))
        history = [{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": [
                       {"type": "text", "text": "Let me check. "},
                       {"type": "tool_use", "id": call["id"], "name": "get_weather",
                        "input": {"city": "Paris"}}]},
                   {"role": "user", "content": [{"type": "tool_result",
                                                 "tool_use_id": call["id"],
                                                 "content": "18C and sunny"}]}]
        r2 = self.run_sdk(self.sc("anthropic", stream=False, tools=[WEATHER_ANTHROPIC],
                                  messages=history))
        self.assertTrue(r2["ok"], r2)
        self.assertEqual(r2["finish"], "end_turn")
        body = json.loads(self.g.requests()[-1]["body"])
        self.assertEqual(body["contents"][1]["parts"][-1]["thoughtSignature"], "c2lnbmF0dXJl")
        self.assertEqual(body["contents"][2]["parts"][0]["functionResponse"]["name"],
                         "get_weather")


if __name__ == "__main__":
    unittest.main()
