#!/usr/bin/env python3
"""stream_rss.py - memory per open stream: llm-proxy with the own upstream client vs libcurl.

    bench/stream_rss.py [--build DIR] [-k STREAMS] [--interval-ms MS]

Starts llm-mock pacing its SSE events (--chunk-interval-ms) and two llm-proxy instances
(1 worker each; own client, and `http2: true` = libcurl). For each, opens STREAMS concurrent
streaming requests (asyncio, c=STREAMS), waits until every stream has delivered its first events,
samples the proxy's RSS while all are open, and reports (RSS open - RSS before) / STREAMS. The
streams then run to their end; all must complete. Python stdlib only.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KEY = "sk-bench-proxy-key-0123456789abcdef"
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_proxy(build, tmp, name, mock_port, http2, k):
    port = free_port()
    b = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}/v1", "api_key": "sk-up"}
    if http2:
        b["http2"] = True
    cfg = {"listen": f"127.0.0.1:{port}", "proxy_api_key": KEY, "server": {"threads": 1},
           "backends": [b],
           "models": {"m": {"routes": [{"backend": "mock", "model": "m-up", "priority": 1}]}},
           "logging": {"level": "warn", "access_log": "/dev/null",
                       "error_log": f"{tmp}/{name}.log"}}
    path = f"{tmp}/{name}.yaml"
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.Popen([f"{build}/llm-proxy", "-config", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port)
    return port, p.pid


async def one_stream(port, started, done_events):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            KEY.encode() + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await w.drain()
    seen = b""
    first = False
    while True:
        chunk = await r.read(65536)
        if not chunk:
            break
        seen += chunk[-64:]
        if not first and b"data:" in chunk:
            first = True
            started.append(1)
    w.close()
    done_events.append(b"[DONE]" in seen)


async def measure(port, pid, k):
    started, done = [], []
    base = rss_kb(pid)
    tasks = []
    for i in range(k):
        tasks.append(asyncio.create_task(one_stream(port, started, done)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    while len(started) < k:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    peak = max(rss_kb(pid) for _ in range(3))
    await asyncio.gather(*tasks)
    return base, peak, sum(done)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build-bench"))
    ap.add_argument("-k", type=int, default=1000)
    ap.add_argument("--interval-ms", type=int, default=300)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lp-stream-rss-")
    try:
        mock = subprocess.Popen([f"{a.build}/llm-mock", "--listen", "127.0.0.1:0", "--quiet",
                                 "--chunks", "20", "--chunk-interval-ms", str(a.interval_ms)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        procs.append(mock)
        mock_port = int(mock.stdout.readline().decode().rsplit(":", 1)[1])
        print(f"{a.k} concurrent paced streams (20 events, {a.interval_ms} ms apart), 1 worker")
        print("| engine | RSS before (KiB) | RSS with all open (KiB) | per open stream (bytes) | completed |")
        print("|---|---:|---:|---:|---:|")
        for name, http2 in (("own client", False), ("libcurl", True)):
            port, pid = start_proxy(a.build, tmp, name.replace(" ", "-"), mock_port, http2, a.k)
            # Warm up: one stream, so lazily created state is in the baseline.
            asyncio.run(measure(port, pid, 1))
            base, peak, ok = asyncio.run(measure(port, pid, a.k))
            print(f"| {name} | {base} | {peak} | {(peak - base) * 1024 // a.k} | {ok}/{a.k} |")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
