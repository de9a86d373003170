"""Logs: exactly one JSON access line per request with the documented fields, SIGUSR1 reopens
the files (logrotate's rename + signal), and the reference's logging keys still load.

The proxy writes to ``logging.access_log`` / ``logging.error_log`` files in its own temporary
directory; every request carries its own ``X-Request-Id`` so lines can be matched exactly.
"""

import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (PROXY_BIN, Mock, Proxy, auth, backend, config, require_proxy, request,
                     stream, wait_until)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "am", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def access_lines(path, req_id=None):
    out = []
    for line in read_lines(path):
        e = json.loads(line)  # every line of the access log is JSON
        if e.get("type") == "access" and (req_id is None or e.get("req_id") == req_id):
            out.append(e)
    return out


class LogCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("a").start()
        cls.b = Mock("b").start()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.a.reset()
        self.b.reset()
        self.dir = tempfile.mkdtemp(prefix="lp-ops-logs-")
        self.access = os.path.join(self.dir, "access.log")
        self.error = os.path.join(self.dir, "proxy.log")
        self.n = 0

    def proxy(self, logging=None, **extra) -> Proxy:
        cfg = config([backend(self.a), backend(self.b), backend(self.a, "anthropic", name="an")],
                     {"m": [("a", "ma"), ("b", "mb")], "am": [("an", "c-an")]},
                     fallback={"enable_backoff": False, "cooldown_seconds": 60},
                     logging=logging if logging is not None else
                     {"level": "info", "access_log": self.access, "error_log": self.error},
                     **extra)
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        return px

    def rid(self):
        self.n += 1
        return f"ops53-{os.getpid()}-{self.n}"

    def post(self, px, path, body, protocol="openai"):
        rid = self.rid()
        r = request(px.url, "POST", path, body, headers={**auth(protocol), "X-Request-Id": rid})
        return rid, r

    def line_of(self, rid, path=None):
        path = path or self.access
        wait_until(lambda: access_lines(path, rid), timeout=5, msg=f"access line {rid}")
        time.sleep(0.05)  # a duplicate would be written in the same batch or right after
        lines = access_lines(path, rid)
        self.assertEqual(len(lines), 1, f"{len(lines)} access lines for {rid}")
        return lines[0]


class TestAccessLog(LogCase):
    def check_common(self, e, rid, status, protocol, alias):
        self.assertEqual(e["req_id"], rid)
        self.assertEqual(e["type"], "access")
        self.assertEqual(e["client_ip"], "127.0.0.1")
        self.assertEqual(e["protocol"], protocol)
        self.assertEqual(e["alias"], alias)
        self.assertEqual(e["status"], status)
        self.assertEqual(e["method"], "POST")
        self.assertIsInstance(e["ts"], float)
        self.assertLess(abs(e["ts"] - time.time()), 60)
        for k in ("bytes_in", "bytes_out"):
            self.assertIsInstance(e[k], int, k)
        for k in ("tokens_in", "tokens_out", "tokens_cached"):
            self.assertIn(k, e)
        self.assertGreater(e["total_ms"], 0)
        self.assertGreaterEqual(e["overhead_ms"], 0)
        self.assertLessEqual(e["overhead_ms"], e["total_ms"])
        self.assertIsInstance(e["attempts"], list)
        for at in e["attempts"]:
            for k in ("backend", "model", "class", "status", "duration_ms"):
                self.assertIn(k, at)

    def test_one_line_per_request_with_fields(self):
        px = self.proxy()
        # plain success
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers.get("x-request-id"), rid)
        e = self.line_of(rid)
        self.check_common(e, rid, 200, "openai", "m")
        self.assertEqual(len(e["attempts"]), 1)
        at = e["attempts"][0]
        self.assertEqual((at["backend"], at["model"], at["class"], at["status"]),
                         ("a", "ma", "ok", 200))
        self.assertGreater(at["duration_ms"], 0)
        self.assertGreaterEqual(at["ttft_ms"], 0)
        self.assertLessEqual(at["ttft_ms"], at["duration_ms"])
        self.assertEqual(e["bytes_in"], len(json.dumps(CHAT)))
        self.assertEqual(e["bytes_out"], len(r.body))
        u = r.json()["usage"]
        self.assertEqual((e["tokens_in"], e["tokens_out"]),
                         (u["prompt_tokens"], u["completion_tokens"]))
        self.assertFalse(e["stream"])

        # failover: two attempts, in order, the first with its class and upstream status
        self.a.script({"status": 500, "body": {"error": {"message": "boom",
                                                         "type": "server_error"}}})
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200, r.text)
        e = self.line_of(rid)
        self.check_common(e, rid, 200, "openai", "m")
        self.assertEqual([(x["backend"], x["model"], x["class"], x["status"])
                          for x in e["attempts"]],
                         [("a", "ma", "server", 500), ("b", "mb", "ok", 200)])
        self.assertIn("ttft_ms", e["attempts"][1])

        # Anthropic stream
        rid = self.rid()
        s = stream(px.url, "/v1/messages", {**MSG, "stream": True},
                   headers={**auth("anthropic"), "X-Request-Id": rid})
        evs = s.all()
        self.assertEqual(evs[-1].event, "message_stop")
        e = self.line_of(rid)
        self.check_common(e, rid, 200, "anthropic", "am")
        self.assertTrue(e["stream"])
        self.assertEqual(e["bytes_out"], len(s.body))
        self.assertGreater(e["tokens_out"], 0)
        self.assertGreaterEqual(e["ttfb_ms"], 0)

        # unknown alias: no attempts, an error status, alias as requested
        rid, r = self.post(px, "/v1/chat/completions", {**CHAT, "model": "nope"})
        self.assertEqual(r.status, 404, r.text)
        e = self.line_of(rid)
        self.check_common(e, rid, 404, "openai", "nope")
        self.assertEqual(e["attempts"], [])

        # operational lines go to the error log, not the access log (and vice versa)
        for line in read_lines(self.access):
            self.assertEqual(json.loads(line)["type"], "access", line)
        ops = [json.loads(x) for x in read_lines(self.error)]
        self.assertTrue(ops, "no operational line in error_log")
        self.assertTrue(all("level" in o and "msg" in o for o in ops))
        self.assertFalse([o for o in ops if o.get("type") == "access"])
        self.assertTrue(any("failing over" in o["msg"] for o in ops), "failover not logged")

    def test_many_requests_one_line_each(self):
        px = self.proxy()
        rids = []
        for i in range(20):
            rid, r = self.post(px, "/v1/chat/completions", CHAT)
            self.assertEqual(r.status, 200)
            rids.append(rid)
        wait_until(lambda: all(access_lines(self.access, r) for r in rids), msg="20 lines")
        time.sleep(0.1)
        counts = {}
        for e in access_lines(self.access):
            counts[e["req_id"]] = counts.get(e["req_id"], 0) + 1
        self.assertEqual({r: counts.get(r) for r in rids}, {r: 1 for r in rids})

    def test_relative_access_log_under_base_dir(self):
        """docs/configuration.md: base_dir is the directory for relative log paths."""
        base = os.path.join(self.dir, "logs")
        os.makedirs(base)
        px = self.proxy({"base_dir": base, "access_log": "rel-access.log",
                         "error_log": "rel-proxy.log"})
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        e = self.line_of(rid, os.path.join(base, "rel-access.log"))
        self.assertEqual(e["status"], 200)
        self.assertTrue(read_lines(os.path.join(base, "rel-proxy.log")))


class TestReopen(LogCase):
    def test_sigusr1_reopens_after_rename(self):
        px = self.proxy()
        rid1, _ = self.post(px, "/v1/chat/completions", CHAT)
        self.line_of(rid1)
        wait_until(lambda: read_lines(self.error), msg="error log written")
        os.rename(self.access, self.access + ".1")
        os.rename(self.error, self.error + ".1")
        px.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)  # the writer reopens within ~200 ms
        rid2, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        self.line_of(rid2)  # in the new access.log
        self.assertEqual(access_lines(self.access + ".1", rid2), [])
        self.assertEqual(len(access_lines(self.access + ".1", rid1)), 1)
        self.assertEqual(access_lines(self.access, rid1), [])
        # an operational line after the reopen lands in the new error log
        r = request(px.url, "POST", "/admin/backends/b/drain", headers=auth())
        self.assertEqual(r.status, 200)
        wait_until(lambda: any("drained" in line for line in read_lines(self.error)),
                   msg="operational line in the new error log")
        self.assertFalse(any("drained by admin" in line for line in read_lines(self.error + ".1")))
        self.assertTrue(px.alive())

    def test_sigusr1_without_rename_keeps_writing(self):
        px = self.proxy()
        for _ in range(3):
            px.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        self.line_of(rid)


REFERENCE_LOGGING_V21 = {
    "level": "info", "base_dir": "./logs", "mask_sensitive": True,
    "async": {"enabled": True, "buffer_size": 10000, "flush_interval_seconds": 5,
              "drop_on_full": False},
    "rotation": {"max_size_mb": 100, "time_strategy": "daily", "max_age_days": 7,
                 "max_backups": 21, "compress": True},
    "categories": {
        "general": {"level": "info", "target": "both", "path": "general.log"},
        "request": {"level": "info", "target": "file", "path": "requests/requests.log"},
        "error": {"level": "error", "target": "both", "path": "errors/errors.log"},
        "network": {"level": "debug", "target": "file", "path": "network/network.log"},
        "debug": {"level": "debug", "target": "file", "path": "debug/debug.log"},
        "request_body": {"level": "debug", "target": "file",
                         "path": "request_body/{date}/{time}_{req_id}_{type}.httpdump",
                         "include_body": True},
    },
}

REFERENCE_LOGGING_ERA_B = {
    "level": "debug", "console_level": "info", "base_dir": "./logs", "max_file_size_mb": 100,
    "max_age_days": 7, "max_backups": 21, "compress": True, "format": "json", "colorize": True,
    "console_style": "compact", "console_format": "markdown", "debug_mode": False,
    "async": True, "buffer_size": 10000, "flush_interval": "5s", "drop_on_full": False,
    "rotate_by_size": True, "rotate_by_time": True, "time_rotation": "daily",
    "mask_sensitive": True, "detailed_masking": False, "max_log_content_size": 0,
    "general_file": "./logs/proxy.log", "separate_files": True,
    "request_dir": "./logs/requests", "error_dir": "./logs/errors", "enable_metrics": True,
    "problematic_backends": [],
}


class TestReferenceKeys(LogCase):
    def check_loads(self, logging):
        cfg = config([backend(self.a)], {"m": [("a", "ma")]}, logging=logging)
        path = os.path.join(self.dir, "ref.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)
        p = subprocess.run([PROXY_BIN, "--check", "-config", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("error:", p.stdout + p.stderr)
        px = self.proxy(logging)
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200, r.text)
        levels = [json.loads(x).get("level") for x in px.log_text().splitlines()
                  if x.startswith("{")]
        self.assertNotIn("error", levels, px.log_text()[-2000:])

    def test_v21_block_loads(self):
        self.check_loads(REFERENCE_LOGGING_V21)

    def test_era_b_flat_keys_load(self):
        self.check_loads(REFERENCE_LOGGING_ERA_B)


if __name__ == "__main__":
    unittest.main()
