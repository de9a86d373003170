"""Configs as the reference published them load unchanged: every file under
examples/reference-history/ (our own fixtures with every key and protocol of the reference's
example configs, flat and structured logging, Azure, DeepSeek, Groq, Mistral, Cohere, Google
Vertex AI and Gemini API URLs that name their model) and every examples/*.yaml passes
`llm-proxy --check` with exit 0 and no error.
"""

import glob
import os
import subprocess
import unittest

from harness import PROXY_BIN, SOURCE_DIR, require_proxy

EXAMPLES = os.path.join(SOURCE_DIR, "examples")
ENV = {name: f"test-{name.lower()}" for name in (
    "LLM_PROXY_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY",
    "GEMINI_API_KEY", "VERTEX_ACCESS_TOKEN", "DEEPSEEK_API_KEY", "GROQ_API_KEY",
    "RELAY_API_KEY", "TEAM_WEB_KEY", "CLAUDE_CODE_KEY", "BATCH_KEY")}


def check(path):
    p = subprocess.run([PROXY_BIN, "-config", path, "--check"], capture_output=True, text=True,
                       timeout=30, env={**os.environ, **ENV}, cwd=os.path.dirname(path))
    return p.returncode, p.stdout + p.stderr


class ReferenceConfigs(unittest.TestCase):
    def setUp(self):
        require_proxy()

    def test_reference_history_loads(self):
        files = sorted(glob.glob(os.path.join(EXAMPLES, "reference-history", "*.yaml")))
        self.assertGreaterEqual(len(files), 2)
        protocols = set()
        for f in files:
            rc, out = check(f)
            self.assertEqual(rc, 0, f"{f}: {out}")
            self.assertNotIn("error:", out, f"{f}: {out}")
            self.assertIn("OK (", out)
            with open(f) as fh:
                for line in fh:
                    if "protocol:" in line:
                        protocols.update(x.split('"')[1] for x in line.split("protocol:")[1:]
                                         if '"' in x)
        self.assertEqual(protocols, {"openai", "anthropic", "azure", "deepseek", "groq",
                                     "mistral", "cohere", "google"})

    def test_examples_load(self):
        for f in sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml"))):
            rc, out = check(f)
            self.assertEqual(rc, 0, f"{f}: {out}")
            self.assertNotIn("error:", out, f"{f}: {out}")

    def test_unknown_protocol_still_refused(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as t:
            t.write('backends: [{name: a, url: "https://h/v1", protocol: "soap"}]\n'
                    'models: {m: [{backend: a, model: x}]}\n')
        self.addCleanup(os.unlink, t.name)
        rc, out = check(t.name)
        self.assertEqual(rc, 1, out)
        self.assertIn('unknown protocol "soap"', out)
        self.assertIn("google", out)


if __name__ == "__main__":
    unittest.main()
