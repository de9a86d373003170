"""Process lifecycle: SIGTERM drains in-flight streams and refuses new connections, then exits 0;
--check, --version, --help; a bad config fails at startup with file:line:col diagnostics."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (PROXY_BIN, SOURCE_DIR, Mock, Proxy, backend, config, http_bytes,
                     require_proxy, request, stream, wait_until)
from proxycase import chat, check_openai_stream, oa_auth

BAD_YAML = """\
listen: "127.0.0.1:0"
proxy_api_key: "k"
backends:
  - name: a
    url: "ftp://x"
models:
  m:
    routes:
      - {backend: nope, model: x}
timeout: {connect_timeout: banana}
"""

SYNTAX_YAML = 'listen: "127.0.0.1:0"\nbackends: [\n  - name: a\n'


def run_proxy(*args, timeout=20):
    return subprocess.run([PROXY_BIN, *args], capture_output=True, text=True, timeout=timeout)


def write_tmp(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="lp-cfg-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class TestCli(unittest.TestCase):
    def test_version(self):
        r = run_proxy("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"^llm-proxy \d+\.\d+\.\d+")

    def test_help(self):
        r = run_proxy("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("-config", "--check", "--version", "--help"):
            self.assertIn(flag, r.stdout)

    def test_unknown_argument(self):
        r = run_proxy("--bogus")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--bogus", r.stderr)

    def test_check_valid_examples(self):
        ex = os.path.join(SOURCE_DIR, "examples")
        names = sorted(f for f in os.listdir(ex) if f.endswith(".yaml"))
        self.assertIn("reference.yaml", names)
        for name in names:
            path = os.path.join(ex, name)
            r = run_proxy("--check", "-config", path)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stdout}{r.stderr}")
            self.assertIn("OK", r.stdout)
            self.assertNotIn("error", r.stderr.lower(), name)

    def test_check_invalid_lists_every_problem(self):
        path = write_tmp(BAD_YAML)
        self.addCleanup(os.unlink, path)
        r = run_proxy("--check", "-config", path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        locs = re.findall(re.escape(path) + r":(\d+):(\d+): error", r.stderr)
        self.assertEqual([int(line) for line, _ in locs], [5, 9, 10], r.stderr)
        self.assertIn("ftp://x", r.stderr)
        self.assertIn("nope", r.stderr)
        self.assertIn("banana", r.stderr)

    def test_check_yaml_syntax_error(self):
        path = write_tmp(SYNTAX_YAML)
        self.addCleanup(os.unlink, path)
        r = run_proxy("--check", "-config", path)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(path) + r":\d+:\d+: error")

    def test_check_missing_file(self):
        r = run_proxy("--check", "-config", "/nonexistent/llm-proxy.yaml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/llm-proxy.yaml", r.stderr)

    def test_bad_config_fails_startup(self):
        path = write_tmp(BAD_YAML)
        self.addCleanup(os.unlink, path)
        r = run_proxy("-config", path)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr + r.stdout, re.escape(path) + r":5:\d+: error")


class TestDrain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()

    def _connect_outcome(self, url: str) -> str:
        """'refused', 'closed' (accepted then closed at once), 'answered <status>' or 'hung'."""
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        try:
            s = socket.create_connection((host, port), timeout=1.0)
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "hung"
        try:
            s.settimeout(1.0)
            s.sendall(http_bytes("GET", "/health"))
            data = s.recv(200)
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        except socket.timeout:
            return "hung"
        finally:
            s.close()
        if not data:
            return "closed"
        return "answered " + data.split(b"\r\n", 1)[0].decode(errors="replace")

    def test_sigterm_drains_stream_and_refuses_new(self):
        with Mock("up") as up:
            px = Proxy(config([up], {"gpt-a": [("up", "m")]},
                              server={"shutdown_timeout": "20s"})).start()
            try:
                up.script({"sse": {"generate": {"protocol": "openai", "chunks": 30,
                                                "interval_ms": 50}}})
                s = stream(px.url, "/v1/chat/completions", chat(stream=True), headers=oa_auth())
                self.assertEqual(s.status, 200)
                it = s.events()
                first = [next(it) for _ in range(3)]
                px.proc.send_signal(signal.SIGTERM)
                time.sleep(0.2)
                self.assertIsNone(px.proc.poll(), "exited with a stream in flight")
                outcome = self._connect_outcome(px.url)
                rest = list(it)
                self.assertTrue(s.complete, f"stream cut by the drain: {s.error!r}")
                check_openai_stream(self, first + rest, n_deltas=30)
                s.close()
                code = px.proc.wait(10)
                self.assertEqual(code, 0)
                self.assertIn(outcome, ("refused", "closed"),
                              "a new connection during the drain must be refused")
            finally:
                self.assertEqual(px.stop(), 0)

    def test_sigterm_idle_exits_promptly(self):
        with Mock("up") as up:
            px = Proxy(config([up], {"gpt-a": [("up", "m")]})).start()
            self.assertEqual(request(px.url, "POST", "/v1/chat/completions", chat(),
                                     headers=oa_auth()).status, 200)
            t0 = time.monotonic()
            self.assertEqual(px.stop(timeout=5), 0)
            self.assertLess(time.monotonic() - t0, 3.0)

    def test_shutdown_timeout_bounds_drain(self):
        with Mock("up") as up:
            px = Proxy(config([up], {"gpt-a": [("up", "m")]},
                              server={"shutdown_timeout": "1s"})).start()
            try:
                up.script({"sse": {"events": [{"data": '{"x":1}'}], "stall_after": 1}})
                s = stream(px.url, "/v1/chat/completions", chat(stream=True), headers=oa_auth(),
                           timeout=10)
                self.assertEqual(s.status, 200)
                t0 = time.monotonic()
                px.proc.send_signal(signal.SIGTERM)
                code = px.proc.wait(8)
                self.assertLess(time.monotonic() - t0, 4.0, "drain ignored shutdown_timeout")
                self.assertEqual(code, 0)
                s.all()
                self.assertFalse(s.complete and s.body.endswith(b"[DONE]\n\n"))
                s.close()
                wait_until(lambda: up.stats()["active"] == 0, msg="upstream released")
            finally:
                self.assertEqual(px.stop(), 0)

    def test_sigterm_right_after_start(self):
        """The process must exit 0 on SIGTERM as soon as it answers /health."""
        with Mock("up") as up:
            for i in range(6):
                px = Proxy(config([up], {"gpt-a": [("up", "m")]})).start()
                code = px.stop(check=False, timeout=10)
                if code != 0:  # (the log is kept when the exit code is not 0)
                    self.fail(f"iteration {i}: exit {code}\n{px.log_text()[-2000:]}")


if __name__ == "__main__":
    unittest.main()
