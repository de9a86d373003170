"""Integration-test harness for llm-proxy (Python 3.11 standard library only).

Every ``tests/integration/test_*.py`` imports this module. It starts the real binaries on
loopback ports, talks HTTP to them, and checks on shutdown that they exited cleanly and that no
sanitizer reported anything.

Quick tour::

    import unittest
    from harness import Mock, Proxy, config, backend, request, stream, PROXY_KEY

    class T(unittest.TestCase):
        def test_chat(self):
            with Mock("up-a") as up, Proxy(config([backend(up)], {"m": [("up-a", "gpt-x")]})) as px:
                up.script({"status": 500}, {})            # first call fails, then default answer
                r = request(px.url, "POST", "/v1/chat/completions",
                            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                            headers=auth())
                self.assertEqual(r.status, 200, r.text)
                self.assertEqual(len(up.requests()), 2)

Environment (set by CTest; defaults suit a by-hand run from this directory):
    LP_PROXY_BIN, LP_MOCK_BIN   the binaries (default $LP_BUILD_DIR/llm-proxy, .../llm-mock)
    LP_SOURCE_DIR               the repository (default ../..)
    LP_BUILD_DIR                the build directory (default $LP_SOURCE_DIR/build)

Every process log is also appended to $LP_BUILD_DIR/integration-logs/all.log, so a test can
grep all logs of the run (e.g. for leaked secrets).
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterator

# --------------------------------------------------------------------------------------------
# Paths and constants
# --------------------------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("LP_SOURCE_DIR") or os.path.normpath(os.path.join(_HERE, "..", ".."))
BUILD_DIR = os.environ.get("LP_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
PROXY_BIN = os.environ.get("LP_PROXY_BIN") or os.path.join(BUILD_DIR, "llm-proxy")
MOCK_BIN = os.environ.get("LP_MOCK_BIN") or os.path.join(BUILD_DIR, "llm-mock")
LOG_DIR = os.path.join(BUILD_DIR, "integration-logs")
ALL_LOG = os.path.join(LOG_DIR, "all.log")

#: The client-facing key every harness config uses (``proxy_api_key``).
PROXY_KEY = "sk-proxy-test-KEY-0123456789"

#: Markers that mean a sanitizer fired; a process log holding one fails the test.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

_all_log_lock = threading.Lock()


def backend_key(name: str) -> str:
    """The upstream API key that :func:`backend` gives backend ``name`` (for leak checks)."""
    return f"sk-backend-{name}-KEY-0123456789"


def auth(protocol: str = "openai", key: str = PROXY_KEY) -> dict[str, str]:
    """Client auth headers for the proxy: ``Authorization: Bearer`` or Anthropic ``x-api-key``."""
    if protocol == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def append_all_log(title: str, text: str) -> None:
    """Append one process's log to $LP_BUILD_DIR/integration-logs/all.log."""
    os.makedirs(LOG_DIR, exist_ok=True)
    with _all_log_lock, open(ALL_LOG, "a", encoding="utf-8", errors="replace") as f:
        f.write(f"===== {title} =====\n{text}\n")


def sanitizer_report(text: str) -> str | None:
    """The first sanitizer marker found in ``text``, or None."""
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def wait_until(pred, timeout: float = 5.0, interval: float = 0.02, msg: str = "condition"):
    """Poll ``pred()`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {msg}")
        time.sleep(interval)


def _split_url(url: str) -> tuple[str, int]:
    u = urllib.parse.urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80


def _tail(path: str, n: int = 60) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A complete HTTP response. ``headers`` is an http.client.HTTPMessage: ``headers["X-A"]``
    and ``headers.get("x-a")`` are case-insensitive; ``headers.get_all(name)`` lists repeats."""

    status: int
    headers: Any
    body: bytes
    reason: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError with the body on failure)."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ValueError(f"not JSON ({e}): {self.text[:500]!r}") from None


def _encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return json.dumps(body).encode()


class Client:
    """A keep-alive HTTP/1.1 client bound to one base URL (one TCP connection, reused).

    ``Client(url).request("POST", "/v1/x", {...})`` sends on the same connection each time; the
    connection is re-opened transparently only if the server closed it. Use as a context manager
    or call :meth:`close`.
    """

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url
        self.host, self.port = _split_url(url)
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Response:
        """Send one request and read the whole response. ``body``: dict/list (sent as JSON),
        str or bytes (verbatim) or None."""
        hdrs = dict(headers or {})
        data = _encode_body(body, hdrs)
        conn = self._connection()
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        if resp.will_close:
            self.close()
        return Response(resp.status, resp.headers, payload, resp.reason)

    def stream(self, path: str, body: Any = None, headers: dict[str, str] | None = None,
               method: str = "POST") -> "SSEStream":
        """Like :func:`stream` but on this client's keep-alive connection."""
        hdrs = dict(headers or {})
        data = _encode_body(body, hdrs)
        conn = self._connection()
        conn.request(method, path, body=data, headers=hdrs)
        return SSEStream(conn, conn.getresponse(), owns_conn=False)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request(url: str, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
    """One request on a fresh connection (closed afterwards). For keep-alive use :class:`Client`.

    ``body``: dict/list -> JSON (with ``Content-Type: application/json`` unless given), str/bytes
    verbatim, None -> no body."""
    with Client(url, timeout) as c:
        return c.request(method, path, body, headers)


@dataclass
class SSEEvent:
    """One server-sent event: ``event`` name (None when absent), ``data`` (data lines joined
    with newlines), ``id`` (or None), ``raw`` (the event's bytes as received, without the blank
    line)."""

    event: str | None
    data: str
    id: str | None = None
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.data)


class SSEStream:
    """A streaming response. Status and headers are available before the body is read::

        s = stream(url, "/v1/chat/completions", {...})
        assert s.status == 200
        for ev in s:              # SSEEvent, parsed incrementally as bytes arrive
            ...
        assert s.complete         # the body ended properly (terminal chunk / content-length)

    If the connection breaks mid-body the iteration ends and ``s.truncated`` is True with
    ``s.error`` holding the exception. ``s.body`` holds every byte read so far. ``read_some(n)``
    reads raw body bytes (for slow-reader tests; iterating afterwards still yields every event,
    those bytes included); ``close()`` drops the connection (the server sees the client leave).
    """

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 owns_conn: bool = True):
        self.conn = conn
        self.resp = resp
        self.owns_conn = owns_conn
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers
        self.body = bytearray()  # every body byte read so far
        self.complete = False
        self.truncated = False
        self.error: BaseException | None = None
        self._pending = b""

    def read_some(self, n: int = 65536) -> bytes:
        """Read up to n raw body bytes (b"" at the end of the body or on a broken connection)."""
        if self.complete or self.truncated:
            return b""
        try:
            chunk = self.resp.read1(n)
        except (http.client.IncompleteRead, ConnectionError, OSError,
                http.client.HTTPException) as e:
            self.truncated, self.error = True, e
            return b""
        if not chunk:
            if self.resp.length:  # Content-Length body cut short
                self.truncated = True
                self.error = http.client.IncompleteRead(b"", self.resp.length)
            else:
                self.complete = True
            return b""
        self.body += chunk
        self._pending += chunk.replace(b"\r\n", b"\n")  # events() parses what we read here too
        return chunk

    def events(self) -> Iterator[SSEEvent]:
        """Yield events as they arrive (same as iterating the stream)."""
        while True:
            ev = self._next_buffered()
            if ev is not None:
                yield ev
                continue
            chunk = self.read_some()
            if not chunk:
                ev = self._flush_tail()
                if self.owns_conn:
                    self.close()  # the body is over (or broken): release the socket
                if ev is not None:
                    yield ev
                return

    __iter__ = events

    def all(self) -> list[SSEEvent]:
        """Read the whole stream and return its events."""
        return list(self.events())

    def _next_buffered(self) -> SSEEvent | None:
        while b"\n\n" in self._pending:
            block, self._pending = self._pending.split(b"\n\n", 1)
            ev = parse_sse_block(block)
            if ev is not None:
                return ev
        return None

    def _flush_tail(self) -> SSEEvent | None:
        block, self._pending = self._pending, b""
        return parse_sse_block(block) if block.strip() else None

    def close(self) -> None:
        """Drop the connection now (the server sees the client go away)."""
        try:
            self.resp.close()
        finally:
            self.conn.close()

    def __enter__(self) -> "SSEStream":
        return self

    def __exit__(self, *exc) -> None:
        if self.owns_conn:
            self.close()


def parse_sse_block(block: bytes) -> SSEEvent | None:
    """Parse one SSE event block (lines without the terminating blank line). Returns None for a
    block of only comments. Follows the WHATWG rules: ``field: value`` with one optional space
    after the colon, data lines joined by newlines, lines starting with ':' ignored."""
    event, ident, data, seen = None, None, [], False
    for line in block.decode("utf-8", errors="replace").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        seen = True
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = value
    if not seen:
        return None
    return SSEEvent(event, "\n".join(data), ident, block)


def stream(url: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
           method: str = "POST", timeout: float = 30.0) -> SSEStream:
    """Send a request on a fresh connection and return an :class:`SSEStream` once the response
    head has arrived (the body is read lazily by iterating)."""
    host, port = _split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    hdrs = dict(headers or {})
    data = _encode_body(body, hdrs)
    conn.request(method, path, body=data, headers=hdrs)
    return SSEStream(conn, conn.getresponse())


class RawConn:
    """A raw TCP connection for malformed requests and abrupt disconnects::

        with RawConn(px.url) as c:
            c.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n" + b"X: " + b"a" * 100000 + b"\\r\\n\\r\\n")
            head = c.recv_until(b"\\r\\n\\r\\n")
            assert b" 431 " in head.split(b"\\r\\n")[0]
    """

    def __init__(self, url: str, timeout: float = 10.0):
        self.sock = socket.create_connection(_split_url(url), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_some(self, n: int = 65536, timeout: float | None = None) -> bytes:
        """Read what is available (up to n bytes); b"" when the peer closed."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        data = self.sock.recv(n)
        self.buf += data
        return data

    def recv_until(self, marker: bytes, timeout: float = 10.0, limit: int = 1 << 24) -> bytes:
        """Read until ``marker`` appears (returns everything read so far, marker included) or the
        peer closes (returns what was read). Raises TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        while marker not in self.buf and len(self.buf) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} within {timeout}s; got {self.buf[:300]!r}")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        i = self.buf.find(marker)
        if i < 0:
            out, self.buf = self.buf, b""
            return out
        out, self.buf = self.buf[: i + len(marker)], self.buf[i + len(marker):]
        return out

    def read_until_close(self, timeout: float = 10.0) -> bytes:
        """Everything the peer sends until it closes the connection (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"peer did not close within {timeout}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                out, self.buf = self.buf, b""
                return out
            self.buf += data

    def read_response(self, timeout: float = 10.0) -> Response:
        """Read one HTTP/1.1 response (Content-Length, chunked, or until close)."""
        head = self.recv_until(b"\r\n\r\n", timeout)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        msg = http.client.HTTPMessage()
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                msg[k.strip()] = v.strip()
        status = int(parts[1])
        if msg.get("content-length") is not None:
            n = int(msg["content-length"])
            while len(self.buf) < n:
                if not self.recv_some(timeout=timeout):
                    break
            body, self.buf = self.buf[:n], self.buf[n:]
        elif "chunked" in (msg.get("transfer-encoding") or "").lower():
            body = self._read_chunked(timeout)
        else:
            body = self.read_until_close(timeout)
        return Response(status, msg, body, parts[2] if len(parts) > 2 else "")

    def _read_chunked(self, timeout: float) -> bytes:
        body = b""
        while True:
            size_line = self.recv_until(b"\r\n", timeout)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.recv_until(b"\r\n", timeout)
                return body
            while len(self.buf) < size + 2:
                if not self.recv_some(timeout=timeout):
                    raise ConnectionError("connection closed inside a chunk")
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def close(self, reset: bool = False) -> None:
        """Close; ``reset=True`` sends a TCP RST (SO_LINGER 0) instead of a FIN."""
        if reset:
            import struct
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def raw_request(url: str, data: bytes, timeout: float = 10.0) -> Response:
    """Send raw bytes on a new connection and parse the one response that comes back."""
    with RawConn(url, timeout) as c:
        c.send(data)
        return c.read_response(timeout)


def read_then_disconnect(url: str, data: bytes, nbytes: int = 1, timeout: float = 10.0,
                         reset: bool = False) -> bytes:
    """Send ``data``, read at least ``nbytes`` of the response, then drop the connection
    (a client that goes away mid-response). Returns what was read."""
    with RawConn(url, timeout) as c:
        c.send(data)
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < nbytes and time.monotonic() < deadline:
            chunk = c.recv_some(timeout=max(0.01, deadline - time.monotonic()))
            if not chunk:
                break
            got += chunk
        c.close(reset=reset)
        return got


def http_bytes(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
               host: str = "127.0.0.1") -> bytes:
    """Serialise an HTTP/1.1 request to bytes (for RawConn); dict bodies become JSON."""
    hdrs = {"Host": host, **(headers or {})}
    data = _encode_body(body, hdrs) or b""
    if data or method in ("POST", "PUT"):
        hdrs.setdefault("Content-Length", str(len(data)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode() + b"\r\n" + data


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


class _Process:
    """Shared start/stop/log logic of Mock and Proxy."""

    kind = "process"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log_path: str | None = None
        self._tmpdir: str | None = None
        self._stopped = False

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def log_text(self) -> str:
        """Everything the process wrote to stderr (and, for the proxy, stdout) so far."""
        if not self.log_path:
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def rss_kb(self) -> int:
        """Resident set size in KiB, from /proc/PID/status."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _make_tmpdir(self, prefix: str) -> str:
        self._tmpdir = tempfile.mkdtemp(prefix=prefix)
        return self._tmpdir

    def _terminate(self, timeout: float) -> int | None:
        """SIGTERM and wait; SIGKILL after the timeout. Returns the exit code (None if killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def stop(self, check: bool = True, timeout: float = 15.0) -> int | None:
        """Stop with SIGTERM. With ``check`` (default) assert exit code 0 within ``timeout`` and
        no sanitizer report in the log. The log is appended to all.log either way."""
        if self.proc is None or self._stopped:
            return self.proc.returncode if self.proc else None
        self._stopped = True
        code = self._terminate(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        text = self.log_text()
        append_all_log(f"{self.kind} {self.describe()} (exit {code})", text)
        if self._tmpdir and code == 0 and not sanitizer_report(text):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        if check:
            tail = "\n".join(text.splitlines()[-60:])
            if code is None:
                raise AssertionError(f"{self.kind} did not exit within {timeout}s of SIGTERM\n{tail}")
            if code != 0:
                raise AssertionError(f"{self.kind} exited with {code}\n{tail}")
            marker = sanitizer_report(text)
            if marker:
                raise AssertionError(f"{self.kind} log holds a sanitizer report ({marker}):\n{text[-6000:]}")
        return code

    def describe(self) -> str:
        return ""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Always stop; only let the stop check raise when the body itself succeeded.
        try:
            self.stop(check=exc_type is None)
        except AssertionError:
            if exc_type is None:
                raise

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError


class Mock(_Process):
    """A running ``llm-mock`` (see docs/mock.md) on 127.0.0.1 with an ephemeral port.

    ``Mock("up-a", "--latency-ms", "50")`` passes extra flags. ``.url`` is ``http://127.0.0.1:PORT``
    (append ``/v1`` for an OpenAI backend base URL). Admin helpers: :meth:`script`,
    :meth:`requests`, :meth:`stats`, :meth:`reset`.
    """

    kind = "llm-mock"

    def __init__(self, name: str = "mock", *args: str):
        super().__init__()
        self.name = name
        self.args = list(args)
        self.port = 0
        self.url = ""

    def describe(self) -> str:
        return f"{self.name} {self.url}"

    def start(self) -> "Mock":
        """Launch and wait for the ``listening on HOST:PORT`` line (5 s)."""
        tmp = self._make_tmpdir(f"lp-mock-{self.name}-")
        self.log_path = os.path.join(tmp, "mock.log")
        logf = open(self.log_path, "wb")
        cmd = [MOCK_BIN, "--listen", "127.0.0.1:0", "--name", self.name, *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], 5.0)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"llm-mock did not start ({cmd}): {line!r}\n{self.log_text()}")
        hostport = line.split()[-1]
        self.port = int(hostport.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        r = request(self.url, method, path, body)
        if r.status != 200:
            raise AssertionError(f"mock admin {method} {path} -> {r.status}: {r.text}")
        return r.json()

    def script(self, *steps: dict) -> dict:
        """Queue scripted responses (each a STEP dict, see docs/mock.md); returns
        ``{"added": n, "queued": total}``."""
        return self._admin("POST", "/_mock/script", {"responses": list(steps)})

    def requests(self) -> list[dict]:
        """Every upstream request received since the last reset (admin calls excluded)."""
        return self._admin("GET", "/_mock/requests")

    def stats(self) -> dict:
        """``{"connections","requests","active","aborted","accepted","queued"}``."""
        return self._admin("GET", "/_mock/stats")

    def reset(self) -> None:
        """Clear the script queue, the request log and the counters."""
        self._admin("POST", "/_mock/reset")

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[dict]:
        """Wait until at least n upstream requests were received; return the log."""
        return wait_until(lambda: (lambda r: r if len(r) >= n else None)(self.requests()),
                          timeout, msg=f"{n} requests at mock {self.name}")

    def wait_idle(self, timeout: float = 5.0) -> dict:
        """Wait until no response is in flight; return the stats."""
        return wait_until(lambda: (lambda s: s if s["active"] == 0 else None)(self.stats()),
                          timeout, msg=f"mock {self.name} idle")


def backend(mock_or_name: "Mock | str", protocol: str = "openai", url: str | None = None,
            **extra: Any) -> dict:
    """A backend entry for :func:`config`. Given a Mock, its URL is used (with ``/v1`` for
    OpenAI backends, bare for Anthropic ones, as real base URLs are written) and the api_key is
    :func:`backend_key` of its name."""
    name = mock_or_name.name if isinstance(mock_or_name, Mock) else mock_or_name
    if url is None:
        assert isinstance(mock_or_name, Mock), "give url= for a backend without a Mock"
        url = mock_or_name.url + ("" if protocol == "anthropic" else "/v1")
    b = {"name": name, "url": url, "api_key": backend_key(name), "protocol": protocol}
    b.update(extra)
    return b


def _route(r: Any, prio: int) -> dict:
    if isinstance(r, dict):
        return r
    r = tuple(r)
    out = {"backend": r[0], "model": r[1], "priority": r[2] if len(r) > 2 else prio}
    return out


def config(backends: list, models: dict | None = None, **extra: Any) -> dict:
    """A typical proxy config as a dict.

    ``backends``: dicts (see :func:`backend`) or Mocks. ``models``: alias -> list of routes, each
    a dict or a tuple ``(backend, model[, priority])`` (priority defaults to the list position),
    or alias -> a full alias dict (``{"routes": [...], ...}``). ``extra`` keys are merged at the
    top level (e.g. ``fallback={...}``, ``timeout={...}``). ``listen`` is filled in by Proxy.
    """
    cfg: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "proxy_api_key": PROXY_KEY,
        "backends": [backend(b) if isinstance(b, Mock) else b for b in backends],
        "models": {},
    }
    for alias, spec in (models or {}).items():
        if isinstance(spec, dict):
            cfg["models"][alias] = spec
        else:
            cfg["models"][alias] = {"routes": [_route(r, i + 1) for i, r in enumerate(spec)]}
    cfg.update(extra)
    return cfg


class Proxy(_Process):
    """A running ``llm-proxy`` with the given config.

    ``config`` is a dict (written as JSON, which YAML accepts; its ``listen`` is replaced by a free
    127.0.0.1 port) or a str (written verbatim; then pass ``port=`` if it listens elsewhere than
    a port the harness can guess, i.e. include the literal text ``{port}`` to have it
    substituted). ``start()`` waits until ``GET /health`` answers 200 (10 s). ``.url``, ``.port``,
    ``.config_path``, ``.log_text()``, ``.rss_kb()``, ``.reload(cfg)`` (rewrite + SIGHUP).
    """

    kind = "llm-proxy"

    def __init__(self, config: dict | str, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, health_path: str = "/health",
                 start_timeout: float = 10.0):
        super().__init__()
        self.config = config
        self.args = list(args)
        self.env = env
        self.health_path = health_path
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.config_path = ""
        self.preexec = None  # e.g. a function lowering RLIMIT_NOFILE in the child

    def describe(self) -> str:
        return f"{self.url} {self.config_path}"

    def _render(self, cfg: dict | str) -> str:
        if isinstance(cfg, dict):
            cfg = copy.deepcopy(cfg)
            cfg["listen"] = f"127.0.0.1:{self.port}"
            return json.dumps(cfg, indent=2)
        return cfg.replace("{port}", str(self.port))

    def write_config(self, cfg: dict | str) -> None:
        """(Re)write the config file (e.g. before a reload)."""
        with open(self.config_path, "w") as f:
            f.write(self._render(cfg))

    def start(self) -> "Proxy":
        tmp = self._make_tmpdir("lp-proxy-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = os.path.join(tmp, "config.yaml")
        self.write_config(self.config)
        self.log_path = os.path.join(tmp, "proxy.log")
        logf = open(self.log_path, "wb")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen([PROXY_BIN, "-config", self.config_path, *self.args],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp, env=env,
                                     preexec_fn=self.preexec)
        logf.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = request(self.url, "GET", self.health_path, timeout=1.0)
                if r.status == 200:
                    return
                last = f"{r.status} {r.text[:200]}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        code = self.proc.poll()
        if code is None:
            self.proc.kill()
            self.proc.wait()
        self._stopped = True
        text = self.log_text()
        append_all_log(f"llm-proxy {self.url} (failed to start, exit {code})", text)
        raise RuntimeError(f"llm-proxy not healthy within {self.start_timeout}s (exit {code}, "
                           f"last {last})\n--- log tail ---\n{_tail(self.log_path)}")

    def reload(self, cfg: dict | str, sig: int = signal.SIGHUP) -> None:
        """Rewrite the config file and send SIGHUP (the caller checks the effect)."""
        self.config = cfg
        self.write_config(cfg)
        self.proc.send_signal(sig)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence, for the tests that
    share state between instances. ``cmd(*args)`` runs one command with the RESP protocol (no
    client library needed); ``stop()``/``start()`` simulate an outage on the same port."""

    def __init__(self):
        self.port = 0
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="lp-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        require(os.access(binary, os.X_OK), "redis-server not installed")
        if not self.port:
            self.port = free_port()
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", self.log_path],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self._ping(), timeout=10, msg="redis-server answers PING")
        return self

    def _ping(self) -> bool:
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            return False

    def cmd(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return self._read(f)

    def _read(self, f):
        line = f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def require_proxy() -> None:
    """Check once that the proxy binary exists and serves /health with a minimal config. A proxy
    that cannot start FAILS the test (raises), it never skips it: a broken binary must not pass
    CI as "skipped"."""
    global _proxy_ok
    if _proxy_ok:
        return
    if not os.access(PROXY_BIN, os.X_OK):
        raise AssertionError(f"llm-proxy binary not executable: {PROXY_BIN}")
    with Mock("probe") as m, Proxy(config([m], {"m": [("probe", "x")]}), start_timeout=10.0):
        _proxy_ok = True


_proxy_ok = False


def require(cond: bool, what: str) -> None:
    """A test prerequisite (node modules, promtool, chromium, redis-server...). scripts/test.sh
    installs all of them and sets LP_REQUIRE_ALL=1, so a missing one FAILS there; a developer
    running one file by hand without them gets a skip."""
    if cond:
        return
    if os.environ.get("LP_REQUIRE_ALL") == "1":
        raise AssertionError(f"test prerequisite missing: {what}")
    raise unittest.SkipTest(what)


# --------------------------------------------------------------------------------------------
# Resilience-test helpers (test_2x_*.py): health view, access log, per-test proxies
# --------------------------------------------------------------------------------------------


def admin_backends(px: "Proxy") -> dict:
    """``GET /admin/backends`` (with the proxy key) parsed; asserts a 200."""
    r = request(px.url, "GET", "/admin/backends", headers=auth())
    if r.status != 200:
        raise AssertionError(f"/admin/backends -> {r.status}: {r.text[:300]}")
    return r.json()


def backend_health(px: "Proxy", name: str) -> dict:
    """The ``/admin/backends`` entry of backend ``name``."""
    for b in admin_backends(px)["backends"]:
        if b["name"] == name:
            return b
    raise AssertionError(f"backend {name} not in /admin/backends")


def pair_health(px: "Proxy", name: str, model: str) -> dict:
    """The ``/admin/backends`` model entry of (backend ``name``, ``model``)."""
    for m in backend_health(px, name)["models"]:
        if m["model"] == model:
            return m
    raise AssertionError(f"model {model} not listed under backend {name}")


def access_entries(px: "Proxy") -> list[dict]:
    """Every ``"type":"access"`` JSON line of the proxy log so far, parsed."""
    out = []
    for line in px.log_text().splitlines():
        if '"type":"access"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def access_entry(px: "Proxy", req_id: str, timeout: float = 5.0) -> dict:
    """Wait for the access-log line of request ``req_id`` (the writer is asynchronous)."""
    return wait_until(lambda: next((e for e in access_entries(px) if e.get("req_id") == req_id),
                                   None), timeout, msg=f"access line of {req_id}")


def upstream_hits(*mocks: "Mock") -> list[tuple[str, int]]:
    """(mock name, t_ms) of every upstream request the mocks received, in time order (the mocks
    stamp requests with the shared monotonic clock)."""
    hits = [(e["t_us"], m.name, e["t_ms"]) for m in mocks for e in m.requests()]
    return [(name, t_ms) for _, name, t_ms in sorted(hits)]


# --------------------------------------------------------------------------------------------
# Operations-test helpers (test_5x_*.py): /metrics parsing
# --------------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Parse a Prometheus text exposition into ``{(name, frozenset(label items)): value}``
    (comments skipped; label values unescaped for ``\\\\``, ``\\"`` and ``\\n``)."""
    out: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            i = 0
            while rest[i] != "}":
                eq = rest.index("=", i)
                key = rest[i:eq].strip().lstrip(",").strip()
                j, val = eq + 2, []
                while rest[j] != '"':
                    if rest[j] == "\\":
                        j += 1
                        val.append({"n": "\n"}.get(rest[j], rest[j]))
                    else:
                        val.append(rest[j])
                    j += 1
                labels[key] = "".join(val)
                i = j + 1
                if rest[i] == ",":
                    i += 1
            value = rest[i + 1:].split()[0]
        else:
            name, value = line.split()[:2]
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def scrape(px: "Proxy") -> dict[tuple[str, frozenset], float]:
    """``GET /metrics`` (no key) parsed with :func:`parse_metrics`; asserts a 200."""
    r = request(px.url, "GET", "/metrics")
    if r.status != 200:
        raise AssertionError(f"/metrics -> {r.status}: {r.text[:300]}")
    return parse_metrics(r.text)


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def has_metric(samples: dict, name: str, **labels: str) -> bool:
    """True when at least one sample of ``name`` has (at least) ``labels``."""
    want = set(labels.items())
    return any(n == name and want <= ls for (n, ls) in samples)
