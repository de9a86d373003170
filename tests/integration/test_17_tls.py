"""HTTPS upstreams on both engines, entirely on loopback: the own client (HTTP/1.1 over TLS, the
default) and libcurl (`http2: true`, HTTP/2 over TLS). Every case runs on both.

Debian's nginx (nginx-light: http_ssl + http_v2) terminates TLS with ``ssl http2`` in front of
llm-mock. A private CA and a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1 and
DNS:localhost) are made with ``openssl`` in a temp dir, so nothing outside the test trusts them.

What is asserted:
  * peer verification is on: with only the system CA store the attempt fails as a network/TLS
    error naming the backend and a certificate problem, and neither nginx nor the mock ever sees
    a request;
  * host name verification is on: a trusted certificate presented for another address fails;
  * with the private CA trusted (backend key ``tls_ca_file``) non-stream and stream requests work;
  * the upstream requests arrive as HTTP/1.1 (own client) or HTTP/2.0 (libcurl) and sequential
    requests share one TLS connection (nginx logs ``$server_protocol`` and ``$connection``);
  * a paced stream crosses TLS event by event, not buffered to the end;
  * the own client resumes its TLS session on a new connection (nginx logs
    ``$ssl_session_reused``).

libcurl reads no environment variable for its CA store (``CURL_CA_BUNDLE`` and ``SSL_CERT_FILE``
are read by the curl *tool* only; libcurl passes its compiled-in bundle path to OpenSSL, so
OpenSSL's ``SSL_CERT_FILE`` is never consulted), hence the config key.

nginx or openssl missing is a failure (run scripts/install-deps.sh), not a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from typing import Iterator

from harness import (Client, Mock, Proxy, access_entry, auth, backend, config, free_port,
                     wait_until)

NGINX_SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
MODEL = "up-tls-model"
CHUNKS, INTERVAL_MS = 8, 100  # the mock's default stream: 8 deltas, 100 ms apart

CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = llm-proxy test CA (test_17_tls)
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# One line per request: connection serial number, protocol, status, path. nginx writes the line
# when the request ends (unbuffered, since no buffer= is given).
NGINX_CONF = """\
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format lp '$connection $server_protocol $status $server_addr $request_uri $ssl_session_reused';
    access_log {d}/access.log lp;
    ssl_session_cache shared:lpssl:1m;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        listen 127.0.0.2:{port} ssl http2;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        location / {{
            proxy_pass http://127.0.0.1:{mock_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{port2} ssl;
        keepalive_requests 1;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        location / {{
            proxy_pass http://127.0.0.1:{mock_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _tool(name: str) -> str:
    path = shutil.which(name, path=NGINX_SEARCH_PATH)
    if not path:
        raise AssertionError(f"test_17_tls needs `{name}` (Debian packages nginx-light and openssl);"
                             f" run scripts/install-deps.sh")
    return path


def _run(cmd: list[str], cwd: str) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")


def make_pki(openssl: str, d: str) -> None:
    """ca.pem (a private CA) and server.pem/server.key for 127.0.0.1 signed by it, in ``d``."""
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(CA_CNF)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write(SERVER_EXT)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run([openssl, "req", "-x509", "-config", "ca.cnf", *ec, "-keyout", "ca.key", "-out", "ca.pem",
          "-days", "2"], d)
    _run([openssl, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=127.0.0.1"], d)
    _run([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-set_serial", "2", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"], d)
    _run([openssl, "verify", "-CAfile", "ca.pem", "server.pem"], d)


class Nginx:
    """nginx as a non-daemon child terminating TLS (+h2) on 127.0.0.1:PORT and 127.0.0.2:PORT,
    proxying to ``mock_port``. Everything (pid, logs, temp paths) lives in ``d``."""

    def __init__(self, nginx: str, d: str, mock_port: int):
        self.nginx, self.dir, self.mock_port = nginx, d, mock_port
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.port2 = 0  # closes every connection after one request
        self.access_log = os.path.join(d, "access.log")
        self.error_log = os.path.join(d, "error.log")

    def start(self) -> "Nginx":
        # Root runs the worker as `nobody` (no `user` directive: as non-root it would only warn);
        # let it traverse the temp dir to reach its temp paths.
        os.chmod(self.dir, 0o711)
        last = ""
        for _ in range(3):  # free_port() can race with another test grabbing the port
            self.port, self.port2 = free_port(), free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(d=self.dir, port=self.port, port2=self.port2,
                                          mock_port=self.mock_port))
            self.proc = subprocess.Popen(
                [self.nginx, "-p", self.dir + "/", "-e", self.error_log, "-c", conf,
                 "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_listening():
                return self
            last = self._error_tail()
            self.stop()
        raise AssertionError(f"nginx did not start:\n{last}")

    def _wait_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.2", self.port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _error_tail(self) -> str:
        try:
            with open(self.error_log, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown; the master reaps its worker
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def entries(self) -> list[dict]:
        """The access log so far: ``{"conn", "proto", "status", "addr", "uri"}`` per request."""
        out = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    conn, proto, status, addr, uri, reused = line.split()
                    out.append({"conn": conn, "proto": proto, "status": int(status),
                                "addr": addr, "uri": uri, "reused": reused == "r"})
        except FileNotFoundError:
            pass
        return out

    def wait_entries(self, n: int) -> list[dict]:
        return wait_until(lambda: (lambda e: e if len(e) >= n else None)(self.entries()),
                          msg=f"{n} lines in the nginx access log")


def chat(stream: bool = False) -> dict:
    return {"model": "gpt-tls", "stream": stream,
            "messages": [{"role": "user", "content": "hi over TLS"}]}


class TestTLSUpstream(unittest.TestCase):
    """One CA, one mock and one nginx for the class; a fresh proxy per test (a failed attempt
    puts the route into cooldown, which must not leak into the next test). The own client."""

    http2 = False          # the backend's `http2:` key: which engine carries the requests
    proto = "HTTP/1.1"     # what nginx sees

    @classmethod
    def setUpClass(cls):
        nginx, openssl = _tool("nginx"), _tool("openssl")
        cls.dir = tempfile.mkdtemp(prefix="lp-tls-")
        make_pki(openssl, cls.dir)
        cls.ca = os.path.join(cls.dir, "ca.pem")
        cls.mock = Mock("tls-mock", "--chunks", str(CHUNKS),
                        "--chunk-interval-ms", str(INTERVAL_MS)).start()
        try:
            cls.nginx = Nginx(nginx, cls.dir, cls.mock.port).start()
        except BaseException:
            cls.mock.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        cls.mock.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.mock.reset()
        self.log_mark = len(self.nginx.entries())

    def new_entries(self, n: int) -> list[dict]:
        """The nginx access-log lines written by this test (waits for at least ``n``)."""
        return self.nginx.wait_entries(self.log_mark + n)[self.log_mark:]

    def proxy(self, trusted: bool, host: str = "127.0.0.1", port: int = 0) -> Proxy:
        extra = {"tls_ca_file": self.ca} if trusted else {}
        if self.http2:
            extra["http2"] = True
        b = backend("tls-up", url=f"https://{host}:{port or self.nginx.port}/v1", **extra)
        cfg = config([b], {"gpt-tls": [("tls-up", MODEL)]},
                     server={"threads": 1})  # one worker = one upstream connection pool
        return Proxy(cfg)

    @contextlib.contextmanager
    def trusted_proxy(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[Proxy]:
        """A running proxy whose backend trusts the private CA (fails clearly without the key)."""
        with self.proxy(trusted=True, host=host, port=port) as px:
            if "tls_ca_file: unknown key" in px.log_text():
                self.fail("llm-proxy has no backend key `tls_ca_file` (a CA bundle for one "
                          "backend), so the private CA cannot be trusted")
            yield px

    def assert_nothing_reached_upstream(self):
        time.sleep(0.2)  # nginx logs at request end: give a stray request time to show up
        self.assertEqual(self.nginx.entries()[self.log_mark:], [],
                         "a request went through TLS it should not have passed")
        self.assertEqual(self.mock.requests(), [])

    def assert_tls_failure(self, px: Proxy, r, cause_has: str):
        self.assertEqual(r.status, 502, r.text)
        err = r.json()["error"]
        self.assertIn("tls-up", err["message"])
        self.assertIn(cause_has.lower(), err["message"].lower())
        e = access_entry(px, err["request_id"])
        self.assertEqual(e["status"], 502)
        self.assertEqual(len(e["attempts"]), 1, e)
        a = e["attempts"][0]
        self.assertEqual(a["backend"], "tls-up")
        self.assertIn(a["class"], ("network", "tls"), a)
        self.assertIn(cause_has.lower(), a["cause"].lower(), a)

    # ---- verification ------------------------------------------------------------------------

    def test_untrusted_ca_is_rejected(self):
        """System CA store only: the private CA is unknown, so the handshake must fail."""
        with self.proxy(trusted=False) as px, Client(px.url) as c:
            r = c.request("POST", "/v1/chat/completions", chat(), auth())
            self.assert_tls_failure(px, r, "certificate")
            s = c.stream("/v1/chat/completions", chat(stream=True), auth())
            body = bytes(s.resp.read())
            self.assertGreaterEqual(s.status, 500, body)  # cooling down now or a 502 again
        self.assert_nothing_reached_upstream()

    def test_host_name_is_verified(self):
        """A certificate from the trusted CA, but for 127.0.0.1, served on 127.0.0.2."""
        with self.trusted_proxy("127.0.0.2") as px, Client(px.url) as c:
            r = c.request("POST", "/v1/chat/completions", chat(), auth())
            self.assert_tls_failure(px, r, "127.0.0.2")
        self.assert_nothing_reached_upstream()

    # ---- trusted CA --------------------------------------------------------------------------

    def test_trusted_ca_non_stream_and_stream(self):
        with self.trusted_proxy() as px, Client(px.url) as c:
            r = c.request("POST", "/v1/chat/completions", chat(), auth())
            self.assertEqual(r.status, 200, r.text)
            self.assertIn("Hello from tls-mock", r.json()["choices"][0]["message"]["content"])
            s = c.stream("/v1/chat/completions", chat(stream=True), auth())
            self.assertEqual(s.status, 200)
            events = s.all()
            self.assertTrue(s.complete, "stream cut short")
            self.assertEqual(events[-1].data, "[DONE]")
            text = "".join((json.loads(e.data)["choices"] or [{}])[0].get("delta", {})
                           .get("content") or "" for e in events[:-1])
            self.assertTrue(text.startswith("Hello from tls-mock"), text)
        reqs = self.mock.requests()
        self.assertEqual([json.loads(q["body"])["model"] for q in reqs], [MODEL, MODEL])

    def test_http2_and_one_connection_for_sequential_requests(self):
        n = 4
        with self.trusted_proxy() as px:
            for i in range(n):
                with Client(px.url) as c:  # a fresh client connection each time
                    r = c.request("POST", "/v1/chat/completions", chat(), auth())
                    self.assertEqual(r.status, 200, f"request {i}: {r.text}")
            lines = self.new_entries(n)
        self.assertEqual(len(lines), n, lines)
        self.assertEqual({e["proto"] for e in lines}, {self.proto}, lines)
        self.assertEqual({e["uri"] for e in lines}, {"/v1/chat/completions"}, lines)
        self.assertEqual(len({e["conn"] for e in lines}), 1,
                         f"sequential upstream requests used several TLS connections: {lines}")

    def test_stream_arrives_event_by_event(self):
        with self.trusted_proxy() as px, Client(px.url) as c:
            t0 = time.monotonic()
            s = c.stream("/v1/chat/completions", chat(stream=True), auth())
            self.assertEqual(s.status, 200)
            arrivals = []
            for ev in s:
                arrivals.append(time.monotonic() - t0)
                if ev.data == "[DONE]":
                    break
            lines = self.new_entries(1)
        # role chunk, CHUNKS deltas, finish chunk, [DONE]
        self.assertEqual(len(arrivals), CHUNKS + 3, arrivals)
        span = (CHUNKS - 1) * INTERVAL_MS / 1000
        deltas = arrivals[1:1 + CHUNKS]
        self.assertGreater(deltas[-1] - deltas[0], span * 0.6,
                           f"deltas arrived in a burst, not as sent: {arrivals}")
        gaps = [b - a for a, b in zip(deltas, deltas[1:])]
        spaced = sum(g >= INTERVAL_MS / 1000 * 0.4 for g in gaps)
        self.assertGreaterEqual(spaced, len(gaps) // 2, f"events were batched: gaps {gaps}")
        self.assertEqual(lines[0]["proto"], self.proto, lines)

    def test_name_verified_and_session_resumed(self):
        """`localhost` is in the certificate as a DNS name (SNI and host check by name). The
        second server closes every connection after one request: the next connection resumes
        the TLS session."""
        with self.trusted_proxy("localhost", self.nginx.port2) as px, Client(px.url) as c:
            for i in range(3):
                r = c.request("POST", "/v1/chat/completions", chat(), auth())
                self.assertEqual(r.status, 200, f"request {i}: {r.text}")
            lines = self.new_entries(3)
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(len({e["conn"] for e in lines}), 3, lines)
        self.assertFalse(lines[0]["reused"], lines)
        self.assertTrue(lines[1]["reused"] and lines[2]["reused"],
                        f"TLS session not resumed: {lines}")


class TestTLSUpstreamLibcurl(TestTLSUpstream):
    """The same cases through libcurl (`http2: true`): HTTP/2 over TLS."""

    http2 = True
    proto = "HTTP/2.0"


if __name__ == "__main__":
    unittest.main()
