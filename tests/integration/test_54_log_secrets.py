"""No configured key ever reaches a log unmasked.

Self-contained (CTest runs the integration files in parallel, so this cannot rely on running
last): one proxy with distinctive keys, ``logging.level: debug`` and ``log_bodies: true``, access
and error logs in files. Requests put the keys everywhere a client or an upstream can: auth
headers, other headers, query strings, JSON bodies, a wrong key shaped like a real one, upstream
error bodies (401 and 500) and a mid-stream error event echoing the backend key, admin calls, an
invalid reload. Then every line the proxy wrote (stdout/stderr, access log, error log) is searched
for every key, and so are the llm-proxy sections of $LP_BUILD_DIR/integration-logs/all.log (which
also holds the other tests' proxies) for the harness keys. llm-mock sections are skipped: a mock
is an upstream and legitimately receives backend keys.
"""

import json
import os
import re
import signal
import tempfile
import time
import unittest

from harness import (ALL_LOG, PROXY_KEY, Mock, Proxy, backend, config, require_proxy,
                     request, stream, wait_until)

# Shapes vary on purpose: only the first matches the sk- pattern; the others are caught only
# by the registry of configured secrets.
BACKEND_KEY_OA = "sk-ant-api03-LEAKCHECKoaBackendKey0123456789abcdefXYZ"
BACKEND_KEY_AN = "ant-LEAKCHECK-anthropic-backend-key-77aa88bb99cc"
PROXY_KEY_54 = "pxk-LEAKCHECK-proxy-key-9f8e7d6c5b4a3210"
ADMIN_KEY_54 = "adm-LEAKCHECK-admin-key-1a2b3c4d5e6f7788"
WRONG_KEY = "sk-WRONGwrongWRONGleakcheck0123456789abcdef"  # not configured, shaped like a key
CONFIGURED = (BACKEND_KEY_OA, BACKEND_KEY_AN, PROXY_KEY_54, ADMIN_KEY_54)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "am", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
HARNESS_BACKEND_KEY = re.compile(r"sk-backend-[A-Za-z0-9_.-]+-KEY-0123456789")


def leaks(text: str, secrets) -> list[str]:
    """The secrets (or their hidden middles) found in text."""
    found = []
    for s in secrets:
        if s in text or s[4:-4] in text:
            found.append(s)
    return found


def proxy_sections(all_log: str) -> list[str]:
    """The llm-proxy sections of all.log."""
    out, cur = [], None
    for line in all_log.splitlines():
        if line.startswith("===== "):
            cur = [] if line.startswith("===== llm-proxy") else None
            if cur is not None:
                out.append(cur)
            continue
        if cur is not None:
            cur.append(line)
    return ["\n".join(s) for s in out]


def own_section(px) -> str:
    """px's whole stdout/stderr as appended to all.log when it stopped (its temporary directory
    is gone by then)."""
    with open(ALL_LOG, encoding="utf-8", errors="replace") as f:
        text = f.read()
    head = f"===== llm-proxy {px.describe()} "
    start = text.rindex(head)
    end = text.find("\n===== ", start + len(head))
    return text[start:end if end >= 0 else len(text)]


class TestLogSecrets(unittest.TestCase):
    """One proxy run (driven once, by whichever test comes first); the tests check its logs,
    the replies it sent, and all.log."""

    outcome: dict | None = None

    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("oa-up").start()
        cls.an = Mock("an-up").start()
        cls.dir = tempfile.mkdtemp(prefix="lp-ops-secrets-")
        cls.access = os.path.join(cls.dir, "access.log")
        cls.error = os.path.join(cls.dir, "proxy.log")
        cls.outcome = None

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.an.stop()

    def ensure_run(self) -> dict:
        """Start the proxy, drive every request, stop it; returns {"logs": {name: text},
        "replies": [leak descriptions]}."""
        cls = type(self)
        if cls.outcome is None:
            px = Proxy(self.cfg())
            px.start()
            try:
                self.drive(px)
                time.sleep(0.5)  # the writer drains its queue
            finally:
                px.stop()
            logs = {"proxy stdout/stderr": own_section(px)}
            for p in (self.access, self.error):
                with open(p, encoding="utf-8", errors="replace") as f:
                    logs[os.path.basename(p)] = f.read()
            cls.outcome = {"logs": logs, "replies": self.reply_leaks}
        return cls.outcome

    def cfg(self, **models):
        c = config(
            [{**backend(self.a), "api_key": BACKEND_KEY_OA},
             {**backend(self.an, "anthropic"), "api_key": BACKEND_KEY_AN},
             {**backend(self.a), "name": "oa-e500", "api_key": BACKEND_KEY_OA},
             {**backend(self.a), "name": "oa-esse", "api_key": BACKEND_KEY_OA}],
            {"m": [("oa-up", "gpt-x")], "am": [("an-up", "claude-x")],
             "both": [("oa-up", "gpt-x"), ("an-up", "claude-x")],
             "e500": [("oa-e500", "gpt-x")], "esse": [("oa-esse", "gpt-x")], **models},
            fallback={"enable_backoff": False, "cooldown_seconds": 1},
            logging={"level": "debug", "log_bodies": True, "mask_sensitive": True,
                     "access_log": self.access, "error_log": self.error})
        c["proxy_api_key"] = PROXY_KEY_54
        c["admin_api_key"] = ADMIN_KEY_54
        return c

    def note_reply(self, r, what):
        """Replies to clients must not carry a configured key either (checked after the logs,
        so that a leaky reply does not hide a leaky log)."""
        text = r.body.decode("utf-8", "replace") if isinstance(r.body, (bytes, bytearray)) \
            else r.text
        found = leaks(text, CONFIGURED + (WRONG_KEY,))
        if found:
            self.reply_leaks.append(f"{what}: {found}: {text[:400]}")

    def drive(self, px):
        self.reply_leaks = []
        url = px.url
        oa = {"Authorization": f"Bearer {PROXY_KEY_54}"}
        an = {"x-api-key": PROXY_KEY_54, "anthropic-version": "2023-06-01"}
        body_with_keys = {**CHAT, "api_key": BACKEND_KEY_OA, "user": ADMIN_KEY_54,
                          "messages": [{"role": "user", "content":
                                        f"my keys are {BACKEND_KEY_AN} and {PROXY_KEY_54}"}]}
        # ordinary traffic, both protocols, stream and not
        self.assertEqual(request(url, "POST", "/v1/chat/completions", CHAT, headers=oa).status, 200)
        self.assertEqual(request(url, "POST", "/v1/messages", MSG, headers=an).status, 200)
        s = stream(url, "/v1/chat/completions", {**CHAT, "stream": True}, headers=oa)
        s.all()
        s = stream(url, "/v1/messages", {**MSG, "stream": True}, headers=an)
        s.all()
        # keys in query strings and in bodies
        r = request(url, "POST", f"/v1/chat/completions?key={PROXY_KEY_54}&api_key="
                    f"{BACKEND_KEY_OA}&token={ADMIN_KEY_54}", body_with_keys, headers=oa)
        self.assertEqual(r.status, 200, r.text)
        r = request(url, "POST", f"/v1/messages?beta=true&key={BACKEND_KEY_AN}",
                    {**MSG, "metadata": {"user_id": PROXY_KEY_54}}, headers=an)
        self.assertEqual(r.status, 200, r.text)
        # keys in other headers
        r = request(url, "POST", "/v1/chat/completions", CHAT,
                    headers={**oa, "X-Debug-Key": BACKEND_KEY_AN, "Api-Key": ADMIN_KEY_54,
                             "Proxy-Authorization": f"Basic {BACKEND_KEY_OA}"})
        self.assertEqual(r.status, 200, r.text)
        # wrong client keys: one shaped like a real key, one that is another configured key
        for k in (WRONG_KEY, BACKEND_KEY_OA, ADMIN_KEY_54):
            r = request(url, "POST", "/v1/chat/completions", CHAT,
                        headers={"Authorization": f"Bearer {k}"})
            self.assertEqual(r.status, 401, r.text)
            self.note_reply(r, f"401 for key {k[:8]}")
            r = request(url, "POST", "/v1/messages", MSG,
                        headers={"x-api-key": k, "anthropic-version": "2023-06-01"})
            self.assertEqual(r.status, 401, r.text)
        # upstream errors echoing the key they received
        self.a.script(
            {"status": 401, "body": {"error": {
                "message": f"Incorrect API key provided: {BACKEND_KEY_OA}. You can find your "
                           f"API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "code": "invalid_api_key"}}},
            {"status": 500, "body": f"internal error while checking Authorization: Bearer "
                                    f"{BACKEND_KEY_OA} (x-api-key={BACKEND_KEY_AN})",
             "headers": {"content-type": "text/plain"}},
            {"sse": {"events": [
                {"data": {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
                          "choices": [{"index": 0, "delta": {"role": "assistant",
                                                             "content": "x"}}]}},
                {"data": {"error": {"message": f"key {BACKEND_KEY_OA} revoked",
                                    "type": "server_error"}}}]}})
        self.an.script({"status": 403, "body": {"type": "error", "error": {
            "type": "permission_error", "message": f"x-api-key {BACKEND_KEY_AN} is disabled"}}})
        r = request(url, "POST", "/v1/chat/completions", {**CHAT, "model": "both"}, headers=oa)
        self.assertEqual(r.status, 403, r.text)
        self.note_reply(r, "all attempts failed, upstream errors echoing keys")
        r = request(url, "POST", "/v1/chat/completions", {**CHAT, "model": "e500"}, headers=oa)
        self.assertEqual(r.status, 500, r.text)
        self.note_reply(r, "upstream 500 echoing keys")
        s = stream(url, "/v1/chat/completions", {**CHAT, "model": "esse", "stream": True},
                   headers=oa)
        s.all()
        self.note_reply(s, "stream with an upstream error event echoing a key")
        self.assertEqual((self.a.stats()["queued"], self.an.stats()["queued"]), (0, 0),
                         "every scripted error was served")
        r = request(url, "GET", "/admin/backends", headers={"x-api-key": ADMIN_KEY_54})
        self.assertEqual(r.status, 200, r.text)
        self.note_reply(r, "/admin/backends last errors and cooldown reasons")
        # admin calls: right key, proxy key (401), wrong key
        adm = {"Authorization": f"Bearer {ADMIN_KEY_54}"}
        self.assertEqual(request(url, "GET", "/admin/config", headers=adm).status, 200)
        self.assertEqual(request(url, "GET", "/admin/backends", headers=adm).status, 200)
        self.assertEqual(request(url, "GET", "/admin/stats",
                                 headers={"x-api-key": PROXY_KEY_54}).status, 401)
        self.assertEqual(request(url, "GET", f"/admin/config?key={ADMIN_KEY_54}").status, 401)
        # an invalid reload whose diagnostics quote the values around the keys
        bad = self.cfg()
        bad["backends"][0]["api_key"] = {"value": BACKEND_KEY_OA}
        bad["backends"][1]["timeout"] = BACKEND_KEY_AN
        bad["admin_api_key"] = [ADMIN_KEY_54]
        px.write_config(bad)
        r = request(url, "POST", "/admin/reload", headers=adm, timeout=20)
        self.assertIs(r.json()["ok"], False, r.text)
        self.note_reply(r, "/admin/reload diagnostics")
        px.write_config(self.cfg())
        px.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: request(url, "GET", "/admin/stats", headers=adm).status == 200,
                   msg="config restored")
        # unknown endpoints and methods carrying keys
        request(url, "GET", f"/v1/nothing?api_key={PROXY_KEY_54}", headers=oa)
        request(url, "DELETE", "/v1/chat/completions", headers=oa)

    def test_1_no_key_in_any_log(self):
        texts = self.ensure_run()["logs"]
        # the logs must actually hold what we grep for: debug lines, bodies, access lines
        self.assertIn('"level":"debug"', texts["proxy.log"])
        self.assertGreaterEqual(texts["access.log"].count('"type":"access"'), 20)
        self.assertIn("****", texts["access.log"] + texts["proxy.log"])
        for name, text in texts.items():
            for line in text.splitlines():
                found = leaks(line, CONFIGURED + (WRONG_KEY,))
                self.assertEqual(found, [], f"{name} leaks {found}: {line[:600]}")

    def test_2_no_key_in_replies(self):
        """Error replies (to clients and admins) must not carry a configured key either: an
        upstream that echoes the backend key must not hand it to a client."""
        self.maxDiff = None
        leaky = self.ensure_run()["replies"]
        self.assertEqual(leaky, [], "replies carrying a configured key:\n" + "\n".join(leaky))

    def test_3_all_log_has_no_harness_or_configured_key(self):
        """The llm-proxy sections of all.log (every proxy of the run that has stopped so far,
        this file's included)."""
        self.ensure_run()
        self.assertTrue(os.path.exists(ALL_LOG), "the run's proxies stopped, so all.log exists")
        with open(ALL_LOG, encoding="utf-8", errors="replace") as f:
            sections = proxy_sections(f.read())
        for sec in sections:
            for line in sec.splitlines():
                found = leaks(line, CONFIGURED + (PROXY_KEY,))
                found += HARNESS_BACKEND_KEY.findall(line)
                self.assertEqual(found, [], f"all.log leaks {found}: {line[:600]}")


if __name__ == "__main__":
    unittest.main()
