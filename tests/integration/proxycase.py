"""Shared pieces of the proxy integration tests (test_1x_*.py): request bodies, SSE stream
validators, error-shape assertions and a unittest base class that runs one set of mocks and
one proxy per test class.

Not a test file itself (CTest only runs test_*.py); built on harness.py.
"""

from __future__ import annotations

import json
import unittest
from typing import Any, Callable

from harness import PROXY_KEY, Mock, Proxy, SSEEvent, auth, config, require_proxy, request

CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}]}
MSG = {"model": "claude-a", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}

ANTHROPIC_STREAM_NAMES_8 = (["message_start", "content_block_start", "ping"] +
                            ["content_block_delta"] * 8 +
                            ["content_block_stop", "message_delta", "message_stop"])


def chat(model: str = "gpt-a", **kw: Any) -> dict:
    return {**CHAT, "model": model, **kw}


def msg(model: str = "claude-a", **kw: Any) -> dict:
    return {**MSG, "model": model, **kw}


def oa_auth() -> dict[str, str]:
    return auth("openai")


def an_auth() -> dict[str, str]:
    return auth("anthropic")


def check_openai_stream(tc: unittest.TestCase, events: list[SSEEvent], model: str | None = None,
                        n_deltas: int | None = None) -> str:
    """Assert an OpenAI chat stream is well formed (chunks of one id, role first, a finish_reason,
    then ``data: [DONE]`` last); return the concatenated content."""
    tc.assertGreaterEqual(len(events), 3, [e.data for e in events])
    tc.assertEqual(events[-1].data, "[DONE]", "stream must end with [DONE]")
    chunks = []
    for e in events[:-1]:
        tc.assertIsNone(e.event, f"OpenAI chunk with an event name: {e.raw!r}")
        tc.assertNotEqual(e.data, "[DONE]", "[DONE] before the end")
        chunks.append(json.loads(e.data))
    tc.assertEqual(len({c["id"] for c in chunks}), 1, "one id for the whole stream")
    text = ""
    finished = 0
    for c in chunks:
        tc.assertEqual(c["object"], "chat.completion.chunk")
        if model is not None:
            tc.assertEqual(c["model"], model)
        if not c["choices"]:
            continue
        ch = c["choices"][0]
        text += ch["delta"].get("content") or ""
        if ch.get("finish_reason"):
            finished += 1
    tc.assertEqual(chunks[0]["choices"][0]["delta"].get("role"), "assistant")
    tc.assertEqual(finished, 1, "exactly one chunk carries finish_reason")
    if n_deltas is not None:
        tc.assertEqual(len(chunks), n_deltas + 2)
    return text


def check_anthropic_stream(tc: unittest.TestCase, events: list[SSEEvent],
                           model: str | None = None, n_deltas: int | None = None) -> str:
    """Assert an Anthropic messages stream is the exact message_start ... message_stop sequence
    with each event's ``type`` equal to its name; return the concatenated text."""
    names = [e.event for e in events]
    tc.assertEqual(names[0], "message_start")
    tc.assertEqual(names[-1], "message_stop")
    if n_deltas is not None:
        tc.assertEqual(names, ["message_start", "content_block_start", "ping"] +
                       ["content_block_delta"] * n_deltas +
                       ["content_block_stop", "message_delta", "message_stop"])
    text = ""
    open_blocks = set()
    for e in events:
        d = json.loads(e.data)
        tc.assertEqual(d["type"], e.event)
        if e.event == "message_start" and model is not None:
            tc.assertEqual(d["message"]["model"], model)
        elif e.event == "content_block_start":
            open_blocks.add(d["index"])
        elif e.event == "content_block_delta":
            tc.assertIn(d["index"], open_blocks, "delta for a block that was not started")
            text += d["delta"].get("text", "")
        elif e.event == "content_block_stop":
            open_blocks.discard(d["index"])
        elif e.event == "message_delta":
            tc.assertIn("stop_reason", d["delta"])
    tc.assertEqual(open_blocks, set(), "every content block stopped")
    return text


def assert_openai_error(tc: unittest.TestCase, r, status: int, *, type_: str | None = None,
                        code: str | None = None, contains: str | None = None) -> dict:
    """``r`` is an OpenAI-shaped error ``{"error":{"message","type",...}}`` with ``status``."""
    tc.assertEqual(r.status, status, r.text)
    tc.assertIn("application/json", r.headers.get("content-type", ""))
    tc.assertTrue(r.headers.get("x-request-id"), "X-Request-Id on an error reply")
    b = r.json()
    tc.assertIsInstance(b.get("error"), dict, r.text)
    tc.assertNotIn("type", b, f"OpenAI error must not have a top-level type: {r.text}")
    tc.assertIsInstance(b["error"].get("message"), str)
    tc.assertIsInstance(b["error"].get("type"), str)
    if type_ is not None:
        tc.assertEqual(b["error"]["type"], type_, r.text)
    if code is not None:
        tc.assertEqual(b["error"].get("code"), code, r.text)
    if contains is not None:
        tc.assertIn(contains, b["error"]["message"])
    return b["error"]


def assert_anthropic_error(tc: unittest.TestCase, r, status: int, *, type_: str | None = None,
                           contains: str | None = None) -> dict:
    """``r`` is an Anthropic-shaped error ``{"type":"error","error":{"type","message"}}``."""
    tc.assertEqual(r.status, status, r.text)
    tc.assertIn("application/json", r.headers.get("content-type", ""))
    tc.assertTrue(r.headers.get("x-request-id"), "X-Request-Id on an error reply")
    b = r.json()
    tc.assertEqual(b.get("type"), "error", r.text)
    tc.assertIsInstance(b.get("error"), dict, r.text)
    tc.assertIsInstance(b["error"].get("type"), str)
    tc.assertIsInstance(b["error"].get("message"), str)
    if type_ is not None:
        tc.assertEqual(b["error"]["type"], type_, r.text)
    if contains is not None:
        tc.assertIn(contains, b["error"]["message"])
    return b["error"]


def proxy_healthy(px: Proxy) -> bool:
    """True when px answers GET /health with 200 (a dying process is waited for briefly)."""
    try:
        if px.alive() and request(px.url, "GET", "/health", timeout=3).status == 200:
            return True
    except OSError:
        pass
    try:
        px.proc.wait(5)
    except Exception:  # still alive but not answering: stop() will report it
        pass
    return False


class ProxyCase(unittest.TestCase):
    """Mocks named in ``mock_names`` (``{name: extra mock args}``) and one proxy built by
    ``make_config(mocks)`` run for the whole class; every mock is reset before each test."""

    mock_names: dict[str, tuple] = {"oa": (), "an": ()}
    proxy_args: tuple = ()

    @classmethod
    def make_config(cls, m: dict[str, Mock]) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.mocks = {}
        try:
            for name, args in cls.mock_names.items():
                cls.mocks[name] = Mock(name, *args).start()
            cls.proxy = Proxy(cls.make_config(cls.mocks), args=cls.proxy_args).start()
        except BaseException:
            for m in cls.mocks.values():
                m.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        errors = []
        for p in [*cls.dead_proxies, cls.proxy, *cls.mocks.values()]:
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))

    dead_proxies: list = []

    def setUp(self):
        cls = type(self)
        if not proxy_healthy(cls.proxy):
            # A proxy bug killed it in an earlier test: keep that failure for tearDownClass
            # (exit code, sanitizer report) and give the remaining tests a fresh proxy.
            cls.dead_proxies = [*cls.dead_proxies, cls.proxy]
            cls.proxy = Proxy(cls.make_config(cls.mocks), args=cls.proxy_args).start()
        for m in self.mocks.values():
            m.reset()

    @property
    def url(self) -> str:
        return self.proxy.url


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, msg: str = "condition") -> Any:
    from harness import wait_until
    return wait_until(pred, timeout, msg=msg)


__all__ = ["CHAT", "MSG", "PROXY_KEY", "ProxyCase", "chat", "msg", "oa_auth", "an_auth",
           "check_openai_stream", "check_anthropic_stream", "assert_openai_error",
           "assert_anthropic_error", "config"]
