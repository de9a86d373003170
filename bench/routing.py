#!/usr/bin/env python3
"""routing.py - what smart routing does to latency and traffic share (issue 13).

    bench/routing.py [--build DIR] [--requests 400] [--conc 4] [--out FILE.md]

Two experiments, each against llm-mock upstreams and one llm-proxy (1 worker thread), with a
Python client pool at the given concurrency (non-stream chat completions):

1. share: two backends in one priority, `fast` (20 ms to the response head) and `slow`
   (100 ms); strategy latency vs random. Reports the share of requests each backend served
   (from the mocks' own request counters) and the client's p50/p99.
2. hedge: two backends in one priority (strategy random), each stalling 10% of its answers for
   2 s (a scripted pattern: 9 answers after 20 ms, then one after 2000 ms); hedging off vs
   `hedge: {delay: 100ms, max_extra: 1, budget_percent: 25}`. Reports p50/p90/p99/max, requests
   slower than 1 s, upstream requests per client request (the extra load), hedges won/lost.

Wall-clock numbers on a shared 2-core VM: compare the variants of one run, not runs.
"""

import argparse
import concurrent.futures
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "sk-bench-routing-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def http(port, method, path, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Mock:
    def __init__(self, build, name, *args):
        self.port = free_port()
        self.p = subprocess.Popen([os.path.join(build, "llm-mock"), "--listen",
                                   f"127.0.0.1:{self.port}", "--name", name, "--quiet", *args],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.name = name
        wait_port(self.port)

    def admin(self, method, path, body=None):
        return json.loads(http(self.port, method, path, body)[1] or b"null")

    def requests(self):
        return self.admin("GET", "/_mock/stats")["requests"]

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


class Proxy:
    def __init__(self, build, cfg, tmp):
        self.port = free_port()
        cfg = dict(cfg, listen=f"127.0.0.1:{self.port}", proxy_api_key=KEY,
                   server={"threads": 1},
                   logging={"level": "warn", "access_log": "/dev/null"})
        path = os.path.join(tmp, f"proxy-{self.port}.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.p = subprocess.Popen([os.path.join(build, "llm-proxy"), "-config", path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def metric(self, name, **labels):
        text = http(self.port, "GET", "/metrics")[1].decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def drive(port, n, conc):
    """n requests at concurrency conc; returns the latencies (s). Every one must be a 200."""
    body = {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}
    hdrs = {"Authorization": "Bearer " + KEY}

    def one(_):
        t0 = time.monotonic()
        status, _ = http(port, "POST", "/v1/chat/completions", body, hdrs)
        if status != 200:
            raise RuntimeError(f"status {status}")
        return time.monotonic() - t0

    with concurrent.futures.ThreadPoolExecutor(conc) as ex:
        return list(ex.map(one, range(n)))


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def backend(m):
    return {"name": m.name, "url": f"http://127.0.0.1:{m.port}/v1", "api_key": "sk-up"}


def share(build, tmp, n, conc):
    rows = []
    for strategy in ("latency", "random"):
        fast, slow = Mock(build, "fast", "--latency-ms", "20"), Mock(build, "slow", "--latency-ms", "100")
        px = Proxy(build, {"backends": [backend(fast), backend(slow)],
                           "models": {"m": {"routes": [
                               {"backend": "fast", "model": "x", "priority": 1},
                               {"backend": "slow", "model": "x", "priority": 1}]}},
                           "routing": {"strategy": strategy}}, tmp)
        try:
            lat = drive(px.port, n, conc)
            f, s = fast.requests(), slow.requests()
            rows.append((strategy, f, s, 100.0 * f / (f + s), 1000 * statistics.median(lat),
                         1000 * pct(lat, 99)))
        finally:
            px.stop()
            fast.stop()
            slow.stop()
    return rows


def stall_pattern(m, n):
    steps = []
    for _ in range(n // 10 + 2):
        steps.append({"delay_ms": 20, "times": 9})
        steps.append({"delay_ms": 2000})
    m.admin("POST", "/_mock/script", {"responses": steps})


def hedge(build, tmp, n, conc):
    rows = []
    for name, h in (("off", None),
                    ("on", {"delay": "100ms", "max_extra": 1, "budget_percent": 25})):
        a, b = Mock(build, "a"), Mock(build, "b")
        stall_pattern(a, n)
        stall_pattern(b, n)
        routing = {"strategy": "random"}
        if h:
            routing["hedge"] = h
        px = Proxy(build, {"backends": [backend(a), backend(b)],
                           "models": {"m": {"routes": [
                               {"backend": "a", "model": "x", "priority": 1},
                               {"backend": "b", "model": "x", "priority": 1}]}},
                           "routing": routing}, tmp)
        try:
            lat = drive(px.port, n, conc)
            up = a.requests() + b.requests()
            rows.append((name, 1000 * statistics.median(lat), 1000 * pct(lat, 90),
                         1000 * pct(lat, 99), 1000 * max(lat), sum(1 for x in lat if x > 1.0),
                         up / n, px.metric("llm_proxy_hedges_total", result="won"),
                         px.metric("llm_proxy_hedges_total", result="lost"),
                         px.metric("llm_proxy_hedge_budget_denied_total")))
        finally:
            px.stop()
            a.stop()
            b.stop()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--conc", type=int, default=4)
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lp-routing-") as tmp:
        s = share(args.build, tmp, args.requests, args.conc)
        h = hedge(args.build, tmp, args.requests, args.conc)
    out = [f"# Smart routing: traffic share and hedging ({time.strftime('%Y-%m-%d %H:%M')})", "",
           f"`bench/routing.py --requests {args.requests} --conc {args.conc}`: non-stream chat "
           f"completions, llm-proxy with 1 worker thread, llm-mock upstreams, Python client "
           f"pool at c={args.conc}.", "",
           "## Share: `fast` (20 ms) and `slow` (100 ms) in one priority", "",
           "| strategy | fast | slow | fast share | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for r in s:
        out.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f}% | {r[4]:.1f} | {r[5]:.1f} |")
    out += ["", "## Hedging: two backends, each stalling 10% of its answers for 2 s", "",
            "| hedging | p50 ms | p90 ms | p99 ms | max ms | > 1 s | upstream req / req | "
            "hedges won | lost | budget denied |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in h:
        out.append(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]} | "
                   f"{r[6]:.3f} | {r[7]:.0f} | {r[8]:.0f} | {r[9]:.0f} |")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
