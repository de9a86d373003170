"""The live status page: GET /status (self-contained, no data, a strict CSP), GET /admin/status
(behind the admin key), and a real browser (Debian's chromium, headless, driven by
puppeteer-core from tests/sdk) that sees a scripted backend failure turn the backend open within
2 s and recover, with no console error and no request leaving 127.0.0.1. The screenshot is kept
in the integration logs directory.
"""

import json
import os
import shutil
import subprocess
import unittest

from harness import (LOG_DIR, PROXY_KEY, SOURCE_DIR, Mock, Proxy, auth, backend, config, request,
                     require, require_proxy)

SDK_DIR = os.path.join(SOURCE_DIR, "tests", "sdk")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class StatusPageCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.sa = Mock("sa").start()
        cls.sb = Mock("sb").start()
        cfg = config([backend(cls.sa), backend(cls.sb)],
                     {"m": [("sa", "up-a"), ("sb", "up-b")], "other": [("sb", "up-o")]},
                     admin_api_key="admin-KEY-for-status-page",
                     fallback={"enable_backoff": False, "cooldown_seconds": 1,
                               "enable_circuit_breaker": True, "circuit_failure_threshold": 2,
                               "circuit_success_threshold": 1, "circuit_open_timeout": 1})
        cls.px = Proxy(cfg).start()

    @classmethod
    def tearDownClass(cls):
        cls.px.stop()
        cls.sa.stop()
        cls.sb.stop()

    def test_page_is_self_contained_and_needs_no_key(self):
        r = request(self.px.url, "GET", "/status")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        csp = r.headers["content-security-policy"]
        for d in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "style-src 'self'"):
            self.assertIn(d, csp)
        self.assertNotIn("unsafe-inline", csp)
        html = r.text
        self.assertNotIn("http://", html.replace("http://www.w3.org", ""))
        self.assertNotIn("https://", html)
        self.assertNotIn("<script>", html)  # no inline script: the CSP would block it
        for asset, ctype in (("/status.js", "text/javascript"), ("/status.css", "text/css")):
            a = request(self.px.url, "GET", asset)
            self.assertEqual(a.status, 200)
            self.assertTrue(a.headers["content-type"].startswith(ctype))
            self.assertNotIn("https://", a.text)
        js = request(self.px.url, "GET", "/status.js").text
        self.assertIn("sessionStorage", js)
        self.assertNotIn("admin-KEY-for-status-page", html + js)

    def test_admin_status_needs_the_admin_key(self):
        r = request(self.px.url, "GET", "/admin/status")
        self.assertEqual(r.status, 401)
        r = request(self.px.url, "GET", "/admin/status", headers=auth(key="admin-KEY-for-status-page"))
        self.assertEqual(r.status, 200, r.text)
        st = r.json()
        self.assertEqual({b["name"] for b in st["backends"]}, {"sa", "sb"})
        m = next(a for a in st["aliases"] if a["name"] == "m")
        self.assertEqual([(x["backend"], x["state"]) for x in m["routes"]], [("sa", "usable"), ("sb", "usable")])
        self.assertEqual(m["preferred"]["backend"], "sa")
        self.assertIn("failovers", st)
        self.assertIn("active_requests", st)

    def test_failover_is_listed(self):
        self.sa.script({"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}})
        r = request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        st = request(self.px.url, "GET", "/admin/status",
                     headers=auth(key="admin-KEY-for-status-page")).json()
        self.assertGreaterEqual(st["failovers_total"], 1)
        f = st["failovers"][0]
        self.assertEqual((f["alias"], f["backend"], f["model"]), ("m", "sa", "up-a"))
        self.assertEqual(f["class"], "server")

    def test_browser_sees_the_backend_open_and_recover(self):
        exe = chromium()
        require(exe is not None, "chromium (scripts/install-deps.sh)")
        if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "puppeteer-core")):
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=SDK_DIR, check=True, timeout=600)
        os.makedirs(LOG_DIR, exist_ok=True)
        shot = os.path.join(LOG_DIR, "status-page.png")
        if os.path.exists(shot):
            os.remove(shot)
        sc = {"proxy": self.px.url, "key": "admin-KEY-for-status-page", "apiKey": PROXY_KEY,
              "mock": self.sa.url, "backend": "sa", "alias": "m", "failures": 2, "openMs": 1000, "gapMs": 1100,
              "chromium": exe, "screenshot": shot}
        p = subprocess.run(["node", "status_page.mjs", json.dumps(sc)], cwd=SDK_DIR,
                           capture_output=True, text=True, timeout=120)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, f"no output (rc={p.returncode}): {p.stderr[-3000:]}")
        out = json.loads(lines[-1])
        self.assertNotIn("error", out, out)
        self.assertEqual(out["violations"], [], "requests left 127.0.0.1")
        self.assertEqual(out["console"], [], "console errors")
        self.assertLessEqual(out["steps"]["open_ms"], 2000)
        self.assertTrue(out["recovered"], out)
        self.assertFalse(out["key_in_url"])
        self.assertTrue(out["key_in_session"])
        self.assertGreaterEqual(out["failovers_shown"], 1)
        self.assertTrue(os.path.getsize(shot) > 1000, "screenshot kept")
        self.assertTrue(out["ok"], out)


if __name__ == "__main__":
    unittest.main()
