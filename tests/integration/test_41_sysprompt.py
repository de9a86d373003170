"""System-prompt injection end to end: prompt files next to the config, loaded at reload time,
applied to OpenAI system messages and Anthropic top-level `system`, filtered by alias globs."""

import json
import os
import unittest

from harness import Mock, Proxy, auth, backend, config, request


class SystemPromptTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up_o = Mock("sp-openai").start()
        cls.up_a = Mock("sp-anthropic").start()
        cls.cfg = config([backend(cls.up_o), backend(cls.up_a, protocol="anthropic")],
                         {"gpt-main": [("sp-openai", "gpt-up")],
                          "claude-main": [("sp-anthropic", "claude-up")],
                          "other": [("sp-openai", "gpt-other")]})
        cls.px = Proxy(cls.cfg).start()
        d = os.path.dirname(cls.px.config_path)
        with open(os.path.join(d, "system_prompt.md"), "w") as f:
            f.write("---\nposition: before\nmodels: [\"gpt-*\", \"claude-*\"]\npriority: 10\n---\n"
                    "Gateway rule A on ${_OS}.")
        os.makedirs(os.path.join(d, "system_prompts"), exist_ok=True)
        with open(os.path.join(d, "system_prompts", "b.md"), "w") as f:
            f.write("---\nposition: before\nmodels: [\"gpt-*\", \"claude-*\"]\npriority: 20\n---\n"
                    "Gateway rule B for ${TEAM_NAME:-nobody}.")
        with open(os.path.join(d, "system_prompts", "tail.md"), "w") as f:
            f.write("---\nposition: after\nseparator: newline\nmodels: [\"claude-*\"]\n---\nTail rule.")
        cfg = dict(cls.cfg, proxy={"enable_system_prompt": True})
        cls.px.write_config(cfg)
        r = request(cls.px.url, "POST", "/admin/reload", headers=auth())
        assert r.status == 200 and r.json()["ok"], r.text

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()
        cls.up_o.stop()
        cls.up_a.stop()

    def setUp(self):
        self.up_o.reset()
        self.up_a.reset()

    def upstream_body(self, mock):
        reqs = mock.requests()
        self.assertEqual(len(reqs), 1)
        return json.loads(reqs[0]["body"])

    def test_openai_first_system_message_gets_prompts_in_order(self):
        r = request(self.px.url, "POST", "/v1/chat/completions",
                    {"model": "gpt-main", "messages": [
                        {"role": "system", "content": "Client system."},
                        {"role": "developer", "content": "Client developer."},
                        {"role": "user", "content": "hi"}]}, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        msgs = self.upstream_body(self.up_o)["messages"]
        self.assertEqual([m["role"] for m in msgs], ["system", "developer", "user"])
        self.assertEqual(msgs[0]["content"],
                         "Gateway rule A on linux.\n\nGateway rule B for nobody.\n\nClient system.")
        self.assertEqual(msgs[1]["content"], "Client developer.")

    def test_openai_without_system_message_gets_one_inserted(self):
        r = request(self.px.url, "POST", "/v1/chat/completions",
                    {"model": "gpt-main", "messages": [{"role": "user", "content": "hi"}]}, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        msgs = self.upstream_body(self.up_o)["messages"]
        self.assertEqual(msgs[0]["role"], "system")
        self.assertIn("Gateway rule A", msgs[0]["content"])
        self.assertEqual(msgs[1], {"role": "user", "content": "hi"})

    def test_anthropic_top_level_system_blocks_keep_cache_control(self):
        r = request(self.px.url, "POST", "/v1/messages?beta=true",
                    {"model": "claude-main", "max_tokens": 50,
                     "system": [{"type": "text", "text": "Client block.",
                                 "cache_control": {"type": "ephemeral"}}],
                     "messages": [{"role": "user", "content": "hi"}]}, headers=auth("anthropic"))
        self.assertEqual(r.status, 200, r.text)
        system = self.upstream_body(self.up_a)["system"]
        texts = [b["text"] for b in system]
        self.assertEqual(texts[0], "Gateway rule A on linux.")
        self.assertEqual(texts[1], "Gateway rule B for nobody.")
        self.assertIn("Client block.", texts)
        client_block = next(b for b in system if b["text"] == "Client block.")
        self.assertEqual(client_block["cache_control"], {"type": "ephemeral"})
        self.assertEqual(texts[-1], "Tail rule.")

    def test_alias_not_matching_any_glob_is_untouched(self):
        body = {"model": "other", "messages": [{"role": "system", "content": "Only mine."},
                                               {"role": "user", "content": "hi"}]}
        r = request(self.px.url, "POST", "/v1/chat/completions", body, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        msgs = self.upstream_body(self.up_o)["messages"]
        self.assertEqual(msgs, body["messages"])

    def test_injection_also_applies_when_translating(self):
        # An OpenAI client on an Anthropic route: the prompts land in the translated `system`.
        cfg = dict(self.cfg, proxy={"enable_system_prompt": True})
        cfg["models"] = dict(cfg["models"], **{"gpt-x": {"routes": [{"backend": "sp-anthropic",
                                                                      "model": "claude-up", "priority": 1}]}})
        self.px.write_config(cfg)
        r = request(self.px.url, "POST", "/admin/reload", headers=auth())
        self.assertEqual(r.status, 200, r.text)
        r = request(self.px.url, "POST", "/v1/chat/completions",
                    {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        system = self.upstream_body(self.up_a)["system"]
        flat = json.dumps(system)
        self.assertIn("Gateway rule A on linux.", flat)
        self.assertIn("Gateway rule B for nobody.", flat)


if __name__ == "__main__":
    unittest.main()
