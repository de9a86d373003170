"""The own HTTP/1.1 upstream client against a scripted raw upstream: chunked bodies with
extensions and trailers cut into tiny writes, interim 1xx heads, bodies delimited by the close,
keep-alive reuse, a reused connection closed before answering (sent again on a fresh one),
framing errors refused, a body cut short, and a cancelled stream closing its upstream at once.
A backend with `http2: true` still goes through libcurl."""

import json
import queue
import socket
import threading
import time
import unittest

from harness import Proxy, auth, backend, config, request, require_proxy, stream, wait_until

ANSWER = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "hello there"}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
                    ).encode()
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def with_length(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def chunked(body: bytes, size: int = 17) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: done\r\n\r\n"


class RawUpstream:
    """A scripted upstream on a raw socket. Each request (head and Content-Length body) is
    answered with the next queued action: a dict with `pieces` (bytes written one by one with
    `gap` seconds between them) and optional `close` (close after), or "drop" (close without
    answering), or `hold` (write the pieces, then wait for the peer to close)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.actions: "queue.Queue" = queue.Queue()
        self.requests: list = []   # (connection number, request head)
        self.conns = 0
        self.peer_closed: dict = {}  # connection number -> time the peer's close was seen
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def push(self, *actions) -> None:
        for a in actions:
            self.actions.put(a)

    def close(self) -> None:
        self.stopping = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                no = self.conns
            threading.Thread(target=self._serve, args=(c, no), daemon=True).start()

    def _serve(self, c: socket.socket, no: int) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        self.peer_closed[no] = time.monotonic()
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += c.recv(65536)
                buf = buf[length:]
                with self.lock:
                    self.requests.append((no, head.decode()))
                action = self.actions.get(timeout=10)
                if action == "drop":
                    return
                for p in action["pieces"]:
                    c.sendall(p)
                    if action.get("gap"):
                        time.sleep(action["gap"])
                if action.get("hold"):
                    c.settimeout(10)
                    while c.recv(65536):
                        pass
                    self.peer_closed[no] = time.monotonic()
                    return
                if action.get("close"):
                    return
        except OSError:
            self.peer_closed.setdefault(no, time.monotonic())
        finally:
            c.close()


def pieces(data: bytes, n: int) -> list:
    return [data[i:i + n] for i in range(0, len(data), n)]


class H1ClientTests(unittest.TestCase):
    def setUp(self):
        require_proxy()
        self.up = RawUpstream()
        self.px = None

    def tearDown(self):
        if self.px:
            self.px.stop()
        self.up.close()

    def start_proxy(self, **extra) -> None:
        self.px = Proxy(config([backend("raw", url=self.up.url + "/v1", **extra)],
                               {"m": [("raw", "m-up")]}, server={"threads": 1})).start()

    def chat(self):
        return request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth(),
                       timeout=15)

    def assert_answer(self, r):
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["choices"][0]["message"]["content"], "hello there")

    def test_chunked_in_tiny_writes(self):
        self.start_proxy()
        self.up.push({"pieces": pieces(chunked(ANSWER), 3), "gap": 0.001})
        self.assert_answer(self.chat())

    def test_request_head_as_sent(self):
        self.start_proxy()
        self.up.push({"pieces": [with_length(ANSWER)]})
        self.assert_answer(self.chat())
        head = self.up.requests[0][1]
        lines = head.split("\r\n")
        self.assertEqual(lines[0], "POST /v1/chat/completions HTTP/1.1")
        self.assertEqual(lines[1], "Host: " + self.up.url[len("http://"):])
        names = [ln.split(":", 1)[0].lower() for ln in lines[1:]]
        self.assertEqual(names.count("content-length"), 1)
        self.assertIn("authorization", names)
        self.assertNotIn("expect", names)
        self.assertNotIn("transfer-encoding", names)

    def test_interim_heads_skipped(self):
        self.start_proxy()
        self.up.push({"pieces": [b"HTTP/1.1 100 Continue\r\n\r\n",
                                 b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n",
                                 with_length(ANSWER)], "gap": 0.01})
        self.assert_answer(self.chat())

    def test_close_delimited_body(self):
        self.start_proxy()
        self.up.push({"pieces": [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Connection: close\r\n\r\n", ANSWER[:20], ANSWER[20:]],
                      "gap": 0.01, "close": True})
        self.assert_answer(self.chat())
        # The next request needs a new connection.
        self.up.push({"pieces": [with_length(ANSWER)]})
        self.assert_answer(self.chat())
        self.assertEqual([no for no, _ in self.up.requests], [1, 2])

    def test_keep_alive_reuse(self):
        self.start_proxy()
        for _ in range(3):
            self.up.push({"pieces": [with_length(ANSWER)]})
            self.assert_answer(self.chat())
        self.up.push({"pieces": pieces(chunked(ANSWER), 50)})
        self.assert_answer(self.chat())
        self.assertEqual([no for no, _ in self.up.requests], [1, 1, 1, 1])

    def test_connection_close_answer_not_reused(self):
        self.start_proxy()
        self.up.push({"pieces": [with_length(ANSWER, b"Connection: close\r\n")]})
        self.assert_answer(self.chat())
        self.up.push({"pieces": [with_length(ANSWER)]})
        self.assert_answer(self.chat())
        self.assertEqual([no for no, _ in self.up.requests], [1, 2])

    def test_reused_connection_closed_before_answer_is_retried_fresh(self):
        self.start_proxy()
        self.up.push({"pieces": [with_length(ANSWER)]}, "drop", {"pieces": [with_length(ANSWER)]})
        self.assert_answer(self.chat())
        self.assert_answer(self.chat())
        self.assertEqual([no for no, _ in self.up.requests], [1, 1, 2])

    def test_framing_errors_refused(self):
        bad = [
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n" % (
                len(ANSWER), len(ANSWER)) + ANSWER,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nBroken Header\r\n\r\n",
        ]
        for resp in bad:
            with self.subTest(resp=resp[:60]):
                self.start_proxy()
                self.up.push({"pieces": [resp], "close": True})
                r = self.chat()
                self.assertGreaterEqual(r.status, 500, r.text)
                self.assertIn("error", r.json())
                self.px.stop()
                self.px = None

    def test_body_cut_short(self):
        self.start_proxy()
        self.up.push({"pieces": [with_length(ANSWER)[:-10]], "close": True})
        r = self.chat()
        self.assertGreaterEqual(r.status, 500, r.text)
        self.assertIn("error", r.json())

    def test_cancelled_stream_closes_upstream_at_once(self):
        self.start_proxy()
        ev = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",' \
             b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},' \
             b'"finish_reason":null}]}\n\n'
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        self.up.push({"pieces": [head + b"%x\r\n" % len(ev) + ev + b"\r\n"], "hold": True})
        s = stream(self.px.url, "/v1/chat/completions", {**CHAT, "stream": True}, headers=auth())
        first = next(s.events())
        self.assertIn("Hi", first.data)
        closed_at = time.monotonic()
        s.close()
        wait_until(lambda: 1 in self.up.peer_closed, 3.0, msg="upstream connection closed")
        self.assertLess(self.up.peer_closed[1] - closed_at, 2.0)

    def test_http2_backend_uses_libcurl(self):
        """libcurl accepts a repeated equal Content-Length that the own client refuses: the
        same answer tells which engine carried the request."""
        dup = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" \
              b"Content-Length: %d\r\n\r\n" % (len(ANSWER), len(ANSWER)) + ANSWER
        self.start_proxy(http2=True)
        self.up.push({"pieces": [dup]})
        self.assert_answer(self.chat())


if __name__ == "__main__":
    unittest.main()
