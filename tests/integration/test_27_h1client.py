"""The own HTTP/1.1 upstream client against a scripted raw upstream: chunked bodies with
extensions and trailers cut into tiny writes, interim 1xx heads, bodies delimited by the close,
keep-alive reuse, a reused connection closed before answering (sent again on a fresh one),
framing errors refused, a body cut short, and a cancelled stream closing its upstream at once.
A backend with `http2: true` still goes through libcurl. Host names are resolved on the loop
against a fake name server (LP_DNS_SERVERS): answers cached for their TTL, served stale when the
name server fails, every address tried in turn, unknown names refused."""

import json
import queue
import socket
import struct
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


class FakeDns:
    """A UDP name server: A queries for names in `answers` ({name: ([ip, ...], ttl)}) are answered,
    other names get NXDOMAIN, AAAA queries an empty answer; with `servfail` set everything gets
    SERVFAIL. `queries` lists the (name, qtype) asked."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.answers: dict = {}
        self.queries: list = []
        self.servfail = False
        threading.Thread(target=self._serve, daemon=True).start()

    def a_queries(self, name: str) -> int:
        return sum(1 for n, t in self.queries if n == name and t == 1)

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                q, peer = self.sock.recvfrom(2048)
            except OSError:
                return
            qid = q[:2]
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            question = q[12:i + 5]
            qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
            name = ".".join(labels).lower()
            self.queries.append((name, qtype))
            ips, ttl = self.answers.get(name, (None, 0))
            if self.servfail:
                flags, ans = 0x8182, []
            elif ips is None:
                flags, ans = 0x8183, []
            else:
                flags = 0x8180
                ans = [b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)
                       for ip in ips] if qtype == 1 else []
            resp = qid + struct.pack(">HHHHH", flags, 1, len(ans), 0, 0) + question + b"".join(ans)
            self.sock.sendto(resp, peer)


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

    def test_early_answer_while_sending_is_relayed_not_a_reset(self):
        # An upstream that answers 413 after the head and closes, while the body is still being
        # sent: the client gets that 413, and the backend is not cooled for everybody.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(8)
        port = ls.getsockname()[1]

        def serve():
            while True:
                try:
                    c, _ = ls.accept()
                except OSError:
                    return
                data = b""
                while b"\r\n\r\n" not in data:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                body = b'{"error":{"message":"request too large","type":"invalid_request_error"}}'
                c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                c.close()
        threading.Thread(target=serve, daemon=True).start()
        self.addCleanup(ls.close)
        self.px = Proxy(config([backend("raw", url=f"http://127.0.0.1:{port}/v1")],
                               {"m": [("raw", "m-up")]}, server={"max_body_size": 8 << 20})).start()
        big = {"model": "m", "messages": [{"role": "user", "content": "a" * (4 << 20)}]}
        r = request(self.px.url, "POST", "/v1/chat/completions", big, headers=auth(), timeout=15)
        self.assertEqual(r.status, 413, r.text)
        self.assertIn("request too large", r.text)
        b = request(self.px.url, "GET", "/admin/backends", headers=auth()).json()
        self.assertNotIn('"cooling": true', json.dumps(b), "a client's large body cooled the backend")

    def test_http2_backend_uses_libcurl(self):
        """libcurl accepts a repeated equal Content-Length that the own client refuses: the
        same answer tells which engine carried the request."""
        dup = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" \
              b"Content-Length: %d\r\n\r\n" % (len(ANSWER), len(ANSWER)) + ANSWER
        self.start_proxy(http2=True)
        self.up.push({"pieces": [dup]})
        self.assert_answer(self.chat())


class DnsTests(unittest.TestCase):
    def setUp(self):
        require_proxy()
        self.up = RawUpstream()
        self.dns = FakeDns()
        self.port = int(self.up.url.rsplit(":", 1)[1])
        self.px = None

    def tearDown(self):
        if self.px:
            self.px.stop()
        self.up.close()
        self.dns.close()

    def start_proxy(self, host: str) -> None:
        url = "http://%s:%d/v1" % (host, self.port)
        self.px = Proxy(config([backend("named", url=url)], {"m": [("named", "m-up")]},
                               server={"threads": 1}),
                        env={"LP_DNS_SERVERS": self.dns.addr}).start()

    def chat(self):
        return request(self.px.url, "POST", "/v1/chat/completions", CHAT, headers=auth(),
                       timeout=15)

    def answer_and_close(self, n: int = 1) -> None:
        for _ in range(n):
            self.up.push({"pieces": [with_length(ANSWER, b"Connection: close\r\n")]})

    def test_answer_cached_for_its_ttl(self):
        self.dns.answers["api.example.test"] = (["127.0.0.1"], 60)
        self.start_proxy("api.example.test")
        self.answer_and_close(3)
        for _ in range(3):
            self.assertEqual(self.chat().status, 200)
        # Three fresh connections, one query.
        self.assertEqual(self.up.conns, 3)
        self.assertEqual(self.dns.a_queries("api.example.test"), 1)

    def test_expired_answer_refreshed_and_served_stale(self):
        self.dns.answers["short.example.test"] = (["127.0.0.1"], 1)
        self.start_proxy("short.example.test")
        self.answer_and_close(3)
        self.assertEqual(self.chat().status, 200)
        time.sleep(1.3)
        self.assertEqual(self.chat().status, 200)
        wait_until(lambda: self.dns.a_queries("short.example.test") >= 2, 3.0,
                   msg="the expired answer was refreshed")
        # The name server fails: the last answer is still served.
        self.dns.servfail = True
        time.sleep(1.3)
        r = self.chat()
        self.assertEqual(r.status, 200, r.text)

    def test_next_address_tried(self):
        # Nothing listens on 127.0.0.2 at this port: refused, then 127.0.0.1 answers.
        self.dns.answers["two.example.test"] = (["127.0.0.2", "127.0.0.1"], 60)
        self.start_proxy("two.example.test")
        self.answer_and_close()
        r = self.chat()
        self.assertEqual(r.status, 200, r.text)

    def test_unknown_name_fails_as_dns(self):
        self.start_proxy("nowhere.example.test")
        r = self.chat()
        self.assertGreaterEqual(r.status, 500, r.text)
        self.assertIn("error", r.json())
        self.assertEqual(self.up.conns, 0)
        self.assertGreaterEqual(self.dns.a_queries("nowhere.example.test"), 1)


if __name__ == "__main__":
    unittest.main()
