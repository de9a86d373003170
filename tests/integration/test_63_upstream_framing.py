"""Upstream hygiene (issue 8 scope item 4; ../shared/reviews/2026-12-hostile-probe.md rows B5, B7).

We ask every upstream for ``Accept-Encoding: identity``. A gzip/deflate body that comes anyway is
decoded (translated, buffered and streamed alike) and relayed without Content-Encoding; any
other coding, a body that does not match its coding, a truncated or bomb-sized compressed body,
conflicting framing (two Content-Lengths, Content-Length with Transfer-Encoding) and a body on a
204/304 are an upstream protocol error: before commit the request fails over to the next route,
after commit the stream ends with an error event in the client's protocol, never cleanly.

Every row runs for both client protocols, pass-through and translated, stream and non-stream.
Each case uses its own alias (its own upstream model), so a cooldown of one case never hides the
primary route from the next.
"""

import base64
import itertools
import json
import zlib

from harness import backend, config, stream, request
from proxycase import ProxyCase, an_auth, oa_auth

N_ALIASES = 200

OA_EVENTS = [
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "Hello gz"}, "finish_reason": None}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]
AN_EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello gz"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 2}}),
    ("message_stop", {"type": "message_stop"}),
]
OA_BODY = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello gz"},
                        "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
AN_BODY = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
           "content": [{"type": "text", "text": "Hello gz"}], "stop_reason": "end_turn",
           "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2}}


def sse_events(proto: str) -> list[bytes]:
    if proto == "openai":
        return [f"data: {json.dumps(e)}\n\n".encode() for e in OA_EVENTS] + [b"data: [DONE]\n\n"]
    return [f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in AN_EVENTS]


def gzip_bytes(data: bytes, wbits: int = 31) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return z.compress(data) + z.flush()


def chunked(parts: list[bytes], terminate: bool = True) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + (b"0\r\n\r\n" if terminate else b"")


def raw_step(head: str, body: bytes) -> dict:
    """A verbatim response (head lines joined with CRLF), then the mock closes the connection."""
    data = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body
    return {"raw_b64": base64.b64encode(data).decode()}


class UpstreamFraming(ProxyCase):
    """On the own HTTP/1.1 engine (plain http:// to 127.0.0.1)."""
    mock_names = {"oa": (), "oa2": (), "an": (), "an2": ()}
    backend_extra: dict = {}

    @classmethod
    def make_config(cls, m):
        models = {}
        for i in range(N_ALIASES):
            models[f"o{i}"] = [("oa", f"gpt-{i}", 1), ("oa2", f"gpt-{i}", 2)]
            models[f"a{i}"] = [("an", f"claude-{i}", 1), ("an2", f"claude-{i}", 2)]
        x = cls.backend_extra
        cls._next = itertools.count()  # a fresh proxy: aliases from 0 again
        return config([backend(m["oa"], **x), backend(m["oa2"], **x),
                       backend(m["an"], "anthropic", **x), backend(m["an2"], "anthropic", **x)],
                      models, fallback={"enable_backoff": False, "cooldown_seconds": 60})

    # ---- helpers ---------------------------------------------------------------------------

    def combos(self):
        """(client protocol, backend protocol, stream) for every combination."""
        for client in ("openai", "anthropic"):
            for upstream in ("openai", "anthropic"):
                for st in (False, True):
                    yield client, upstream, st

    def primary(self, upstream: str):
        return self.mocks["oa" if upstream == "openai" else "an"]

    def secondary(self, upstream: str):
        return self.mocks["oa2" if upstream == "openai" else "an2"]

    def alias(self, upstream: str) -> str:
        return ("o" if upstream == "openai" else "a") + str(next(self._next))

    def send(self, client: str, alias: str, st: bool):
        msgs = [{"role": "user", "content": "hi"}]
        if client == "openai":
            path, body, hdrs = "/v1/chat/completions", {"model": alias, "messages": msgs}, oa_auth()
        else:
            path, body, hdrs = "/v1/messages", {"model": alias, "max_tokens": 16,
                                                "messages": msgs}, an_auth()
        if st:
            body["stream"] = True
            with stream(self.url, path, body, headers=hdrs) as s:
                return s.status, {k.lower(): v for k, v in s.headers.items()}, s.all(), s
        r = request(self.url, "POST", path, body, headers=hdrs)
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r, None

    def text_of(self, client: str, st: bool, payload) -> str:
        if st:
            if client == "openai":
                out = ""
                for e in payload:
                    if e.data == "[DONE]":
                        continue
                    d = json.loads(e.data)
                    self.assertNotIn("error", d, e.data)
                    for ch in d.get("choices") or []:
                        out += ch.get("delta", {}).get("content") or ""
                self.assertEqual(payload[-1].data, "[DONE]")
                return out
            self.assertEqual(payload[-1].event, "message_stop", [e.event for e in payload])
            return "".join(json.loads(e.data)["delta"].get("text", "") for e in payload
                           if e.event == "content_block_delta")
        b = payload.json()
        if client == "openai":
            return b["choices"][0]["message"]["content"]
        return b["content"][0]["text"]

    def good_reply(self, upstream: str, st: bool) -> bytes:
        return b"".join(sse_events(upstream)) if st else json.dumps(
            OA_BODY if upstream == "openai" else AN_BODY).encode()

    def assert_failed_over(self, case: str, client: str, upstream: str, st: bool, step: dict):
        alias = self.alias(upstream)
        self.primary(upstream).script(step)
        status, hdrs, payload, _ = self.send(client, alias, st)
        ctx = f"{case} client={client} upstream={upstream} stream={st}"
        self.assertEqual(status, 200, ctx)
        self.assertNotIn("content-encoding", hdrs, ctx)
        text = self.text_of(client, st, payload)
        self.assertIn("Hello from", text, f"{ctx}: the secondary's answer")
        self.assertEqual(len(self.primary(upstream).requests()), 1, ctx)
        self.assertEqual(len(self.secondary(upstream).requests()), 1, ctx)
        for m in self.mocks.values():
            m.reset()

    # ---- B5: encoded bodies are decoded ------------------------------------------------------

    def test_identity_is_requested(self):
        for client, upstream, st in self.combos():
            self.send(client, self.alias(upstream), st)
            reqs = self.primary(upstream).requests()
            self.assertEqual(reqs[-1]["headers"].get("accept-encoding"), "identity")
            self.primary(upstream).reset()

    def test_encoded_answers_are_decoded(self):
        for enc in ("gzip", "deflate", "deflate-raw"):
            for client, upstream, st in self.combos():
                ctx = f"{enc} client={client} upstream={upstream} stream={st}"
                alias = self.alias(upstream)
                step = {"encoding": enc}
                if st:
                    step["sse"] = {}
                self.primary(upstream).script(step)
                status, hdrs, payload, _ = self.send(client, alias, st)
                self.assertEqual(status, 200, ctx)
                self.assertNotIn("content-encoding", hdrs, ctx)
                self.assertIn("Hello from oa" if upstream == "openai" else "Hello from an",
                              self.text_of(client, st, payload), ctx)
                if not st:
                    self.assertEqual(int(hdrs["content-length"]), len(payload.body), ctx)
                self.assertEqual(len(self.secondary(upstream).requests()), 0, ctx)
                self.primary(upstream).reset()

    def test_close_delimited_gzip_is_decoded(self):
        """A complete gzip body without Content-Length (ended by the close) is fine."""
        for client, upstream, st in self.combos():
            ctx = f"client={client} upstream={upstream} stream={st}"
            ct = "text/event-stream" if st else "application/json"
            self.primary(upstream).script(raw_step(
                f"HTTP/1.1 200 OK\ncontent-type: {ct}\ncontent-encoding: gzip\nconnection: close",
                gzip_bytes(self.good_reply(upstream, st))))
            status, hdrs, payload, _ = self.send(client, self.alias(upstream), st)
            self.assertEqual(status, 200, ctx)
            self.assertEqual(self.text_of(client, st, payload), "Hello gz", ctx)
            self.assertEqual(len(self.secondary(upstream).requests()), 0, ctx)
            self.primary(upstream).reset()

    # ---- what fails over before commit -------------------------------------------------------

    def test_unsupported_codings_fail_over(self):
        for enc in ("br", "zstd", "compress", "x-unknown", "gzip, gzip"):
            for client, upstream, st in self.combos():
                step = {"encoding": enc}
                if st:
                    step["sse"] = {}
                self.assert_failed_over(f"coding {enc}", client, upstream, st, step)

    def test_body_not_matching_its_coding_fails_over(self):
        for enc in ("gzip", "deflate"):
            for client, upstream, st in self.combos():
                step = {"headers": {"content-encoding": enc}}
                if st:
                    step["sse"] = {}
                self.assert_failed_over(f"plain body labelled {enc}", client, upstream, st, step)

    def test_truncated_compressed_body_fails_over(self):
        for client, upstream, st in self.combos():
            ct = "text/event-stream" if st else "application/json"
            z = gzip_bytes(self.good_reply(upstream, st))
            # close-delimited: curl sees a normal end; only the gzip stream says it is cut
            self.assert_failed_over("truncated gzip (close)", client, upstream, st, raw_step(
                f"HTTP/1.1 200 OK\ncontent-type: {ct}\ncontent-encoding: gzip\nconnection: close",
                z[:len(z) // 2]))
            # chunked with a proper last chunk but an unfinished gzip stream
            self.assert_failed_over("truncated gzip (chunked)", client, upstream, st, raw_step(
                f"HTTP/1.1 200 OK\ncontent-type: {ct}\ncontent-encoding: gzip\n"
                "transfer-encoding: chunked", chunked([z[:6]])))

    def test_compression_bomb_fails_over(self):
        bomb = gzip_bytes(b"{" + b" " * (48 << 20) + b"}")
        for client, upstream in (("openai", "openai"), ("anthropic", "openai")):
            self.assert_failed_over("bomb", client, upstream, False, raw_step(
                "HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-encoding: gzip\n"
                f"content-length: {len(bomb)}", bomb))

    def test_conflicting_framing_fails_over(self):
        for client, upstream, st in self.combos():
            ct = "text/event-stream" if st else "application/json"
            body = self.good_reply(upstream, st)
            self.assert_failed_over("two Content-Lengths", client, upstream, st, raw_step(
                f"HTTP/1.1 200 OK\ncontent-type: {ct}\ncontent-length: {len(body)}\n"
                f"content-length: {len(body) + 7}", body))
            self.assert_failed_over("Content-Length list", client, upstream, st, raw_step(
                f"HTTP/1.1 200 OK\ncontent-type: {ct}\ncontent-length: {len(body)}, 3", body))
            self.assert_failed_over("Content-Length with Transfer-Encoding", client, upstream, st,
                                    raw_step(f"HTTP/1.1 200 OK\ncontent-type: {ct}\n"
                                             f"content-length: {len(body)}\n"
                                             "transfer-encoding: chunked", chunked([body])))

    def test_body_on_204_and_304_fails_over(self):
        for client, upstream, st in self.combos():
            body = self.good_reply(upstream, st)
            self.assert_failed_over("204 with Content-Length", client, upstream, st, raw_step(
                f"HTTP/1.1 204 No Content\ncontent-type: application/json\n"
                f"content-length: {len(body)}", body))
            self.assert_failed_over("204 chunked", client, upstream, st, raw_step(
                "HTTP/1.1 204 No Content\ntransfer-encoding: chunked", chunked([body])))
            self.assert_failed_over("304 chunked", client, upstream, st, raw_step(
                "HTTP/1.1 304 Not Modified\ntransfer-encoding: chunked", chunked([body])))

    # ---- after commit: an error event, never a clean end ---------------------------------------

    def broken_stream_cases(self, upstream: str):
        evs = sse_events(upstream)
        keep = evs[:2]  # enough to commit, well before the terminal event
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        parts = [z.compress(e) + z.flush(zlib.Z_SYNC_FLUSH) for e in keep]
        head = "HTTP/1.1 200 OK\ncontent-type: text/event-stream\ncontent-encoding: gzip\n"
        yield "garbage after good gzip events", raw_step(
            head + "transfer-encoding: chunked", chunked(parts + [b"\x00garbage-not-deflate" * 4]))
        yield "gzip stream cut (chunked end)", raw_step(head + "transfer-encoding: chunked",
                                                       chunked(parts))
        yield "gzip stream cut (close)", raw_step(head + "connection: close", b"".join(parts))

    def test_broken_encoded_stream_after_commit_ends_with_error_event(self):
        for client in ("openai", "anthropic"):
            for upstream in ("openai", "anthropic"):
                for case, step in self.broken_stream_cases(upstream):
                    ctx = f"{case} client={client} upstream={upstream}"
                    self.primary(upstream).script(step)
                    status, hdrs, events, s = self.send(client, self.alias(upstream), True)
                    self.assertEqual(status, 200, ctx)
                    self.assertNotIn("content-encoding", hdrs, ctx)
                    self.assertGreaterEqual(len(events), 2, ctx)
                    if client == "openai":
                        self.assertNotIn("[DONE]", [e.data for e in events], ctx)
                        self.assertIn("error", json.loads(events[-1].data), ctx)
                    else:
                        self.assertEqual(events[-1].event, "error", ctx)
                        self.assertEqual(json.loads(events[-1].data)["type"], "error", ctx)
                        self.assertNotIn("message_stop", [e.event for e in events], ctx)
                    self.assertEqual(len(self.secondary(upstream).requests()), 0, ctx)
                    for m in self.mocks.values():
                        m.reset()


class UpstreamFramingCurl(UpstreamFraming):
    """The same rows on the libcurl engine (`http2: true` selects it; plain http stays 1.1)."""
    backend_extra = {"http2": True}


del ProxyCase  # only the two concrete classes above are test cases


if __name__ == "__main__":
    import unittest
    unittest.main()
