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


if __name__ == "__main__":
    unittest.main()
