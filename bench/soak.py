#!/usr/bin/env python3
"""soak.py - a long run of mixed traffic at a fixed rate; fails on memory/fd growth or a bad answer.

    bench/soak.py --duration SECONDS [--rate 120] [--build build-bench] [--warmup S]
                  [--window S] [--sample 10] [--flap-period 60] [--out FILE.md] [--json FILE]

(`bench/soak.sh DURATION` is the usual entry point: it accepts 90s / 2m / 1h and runs this under
`nice`.)

What runs: two llm-mock upstreams, `a` (flaps) and `b` (healthy), each serving both protocols,
and llm-proxy (a Release build, default build-bench/) with four backends (a-oa, b-oa OpenAI;
a-an, b-an Anthropic) and three aliases: `to-oa` and `to-an` route to a then b of that protocol
(so an OpenAI client on `to-oa` is passed through and on `to-an` is translated, and the other
way round for an Anthropic client), `flaky` routes to a only (so a's faults reach the client as
errors).

Traffic: an open loop at --rate requests per second (a dispatcher thread submits on a fixed
schedule to a worker pool; keep-alive connections per worker). Each request draws its shape:
client protocol (OpenAI / Anthropic), stream or not, direct or translated; ~5 % use `flaky`;
~3 % are bad requests (invalid JSON, unknown model: a 4xx is expected); ~4 % disconnect (a
stream dropped after its first event, or a request dropped before its answer).

Flapping (period --flap-period, default 60 s): a is healthy for the first third (and, as every
alias's first route, carries the traffic); then it is killed with SIGKILL (streams in flight are
cut after their first bytes reached the client: the proxy must end them with a protocol error
event), stays down 5 s (connection refused) and is restarted on the same port; until two thirds
it is scripted (docs/mock.md) with a repeating cycle of 500, connection close, 503 with a body,
429 with Retry-After, 502, slow answers and successes; then it is healthy again.

Every answer is checked (a disconnect is not):
- 2xx JSON: a chat.completion / Anthropic message whose text starts "Hello from ".
- 2xx stream: text/event-stream, framing complete, every data line JSON; OpenAI ends with
  `data: [DONE]` after the text, or with a `data: {"error":{...}}` event and no [DONE];
  Anthropic starts with message_start and ends with message_stop, or with `event: error`.
- non-2xx: a JSON body in the client's protocol (`{"error":{"message",...}}`, Anthropic
  `{"type":"error","error":{"type","message"}}`) and an X-Request-Id header.
Anything else (wrong shape, a connection error or timeout on a request we did not drop) is a
bad response.

RSS (VmRSS) and open fds of the proxy are sampled every --sample seconds. After --warmup
(default: a tenth of the run, between 30 s and 300 s) the baseline is the median of the samples in
the next --window seconds (same default), the end value the median of the last --window seconds.
The run FAILS when RSS or fds grow more than 5 % from baseline to end (for fds also by more than
4, since they are small integers that move with the requests in flight), when any response is bad,
when the proxy dies, or when it does not exit 0 on SIGTERM at the end.

Python 3 standard library only (the integration-test harness). Prints Markdown; exit 1 on FAIL.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, required=True, help="seconds of traffic")
    p.add_argument("--rate", type=float, default=120.0, help="requests per second (default 120)")
    p.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--window", type=float, default=None)
    p.add_argument("--sample", type=float, default=10.0)
    p.add_argument("--flap-period", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=96)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="also write the Markdown report here")
    p.add_argument("--json", help="write samples and counters as JSON here")
    a = p.parse_args()
    auto = max(30.0, min(300.0, a.duration / 10))
    a.warmup = auto if a.warmup is None else a.warmup
    a.window = auto if a.window is None else a.window
    return a


ARGS = parse_args()
os.environ.setdefault("LP_BUILD_DIR", ARGS.build)
os.environ.setdefault("LP_PROXY_BIN", os.path.join(ARGS.build, "llm-proxy"))
os.environ.setdefault("LP_MOCK_BIN", os.path.join(ARGS.build, "llm-mock"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from harness import Client, Mock, Proxy, auth, backend, config, request  # noqa: E402

FAULT_CYCLE = [
    {"status": 500},
    {},
    {"close": True},
    {"delay_ms": 40},
    {"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}},
    {},
    {"status": 429, "headers": {"Retry-After": "1"}},
    {"close": True},
    {"status": 502},
]


# --------------------------------------------------------------------------------------------
# The flapping upstream
# --------------------------------------------------------------------------------------------

class FlapMock(Mock):
    """A Mock that can be killed and restarted on the same port."""

    def restart(self):
        port = self.port
        cmd = [harness.MOCK_BIN, "--listen", f"127.0.0.1:{port}", "--name", self.name, *self.args]
        for _ in range(50):
            logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf,
                                         stdin=subprocess.DEVNULL)
            logf.close()
            line = self.proc.stdout.readline().decode()
            if line.startswith("listening on "):
                self._stopped = False
                return True
            self.proc.wait()
            time.sleep(0.2)
        return False

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


class Flapper(threading.Thread):
    def __init__(self, mock, period, stop_evt):
        super().__init__(daemon=True)
        self.mock, self.period, self.stop_evt = mock, period, stop_evt
        self.phase = "healthy"
        self.kills = 0
        self.restart_failures = 0

    def run(self):
        """Each period: healthy for a third (a carries the traffic: it is every alias's first
        route), then killed (streams in flight are cut), down 5 s, restarted, scripted faults
        until two thirds, healthy again to the end of the period."""
        t0 = time.monotonic()
        killed_in = -1
        while not self.stop_evt.is_set():
            el = time.monotonic() - t0
            n, t = int(el // self.period), el % self.period
            third = self.period / 3
            try:
                if t < third or t >= 2 * third:
                    if self.phase != "healthy":
                        self.phase = "healthy"
                        self.mock.reset()
                elif killed_in != n:
                    killed_in = n
                    self.phase = "down"
                    self.mock.kill()
                    self.kills += 1
                    self.stop_evt.wait(5.0)
                    if not self.mock.restart():
                        self.restart_failures += 1
                        return
                    continue
                else:
                    self.phase = "faulty"
                    if self.mock.stats()["queued"] < 40:
                        self.mock.script(*(FAULT_CYCLE * 10))
            except Exception as e:  # noqa: BLE001 - admin calls may race a restart
                sys.stderr.write(f"flapper: {e!r}\n")
            self.stop_evt.wait(0.5)


# --------------------------------------------------------------------------------------------
# Requests and their checks
# --------------------------------------------------------------------------------------------

def check_error(anthropic, status, headers, body):
    if not headers.get("X-Request-Id"):
        return f"{status} without X-Request-Id"
    try:
        j = json.loads(body)
    except ValueError:
        return f"{status} with a non-JSON body {body[:200]!r}"
    if anthropic:
        ok = (isinstance(j, dict) and j.get("type") == "error" and isinstance(j.get("error"), dict)
              and isinstance(j["error"].get("type"), str) and isinstance(j["error"].get("message"), str))
    else:
        ok = (isinstance(j, dict) and isinstance(j.get("error"), dict)
              and isinstance(j["error"].get("message"), str))
    return "" if ok else f"{status} error body not in the client's protocol: {body[:300]!r}"


def check_json(anthropic, body):
    try:
        j = json.loads(body)
        text = j["content"][0]["text"] if anthropic else j["choices"][0]["message"]["content"]
        if anthropic and j.get("type") != "message":
            return f"200 not a message: {body[:300]!r}"
        if not anthropic and j.get("object") != "chat.completion":
            return f"200 not a chat.completion: {body[:300]!r}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"200 with a malformed body {body[:300]!r}"
    return "" if text.startswith("Hello from ") else f"200 with unexpected text {text[:100]!r}"


def check_stream(anthropic, s, events):
    """Returns (problem, ended_with_error_event)."""
    if not s.complete:
        return f"stream framing not complete ({s.error!r}): {bytes(s.body[-300:])!r}", False
    if not events:
        return "200 stream without events", False
    if anthropic:
        names = [e.event for e in events]
        for e in events:
            try:
                json.loads(e.data)
            except ValueError:
                return f"non-JSON data in event {e.event}: {e.data[:200]!r}", False
        if names[0] != "message_start":
            return f"stream starts with {names[0]!r}", False
        if names[-1] == "error":
            j = json.loads(events[-1].data)
            if j.get("type") == "error" and isinstance(j.get("error"), dict) and "message_stop" not in names:
                return "", True
            return f"malformed error event {events[-1].data[:200]!r}", False
        if names[-1] != "message_stop" or "error" in names:
            return f"stream ends with {names[-1]!r} ({names[-4:]})", False
        text = "".join(json.loads(e.data).get("delta", {}).get("text", "")
                       for e in events if e.event == "content_block_delta")
    else:
        datas = [e.data for e in events]
        for d in datas[:-1]:
            try:
                j = json.loads(d)
            except ValueError:
                return f"non-JSON data before the end: {d[:200]!r}", False
            if "error" in j:
                return f"error event before the end: {d[:200]!r}", False
        last = datas[-1]
        if last != "[DONE]":
            try:
                j = json.loads(last)
            except ValueError:
                return f"stream ends with non-JSON {last[:200]!r}", False
            if isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str):
                return "", True
            return f"stream ends without [DONE] or an error: {last[:200]!r}", False
        text = ""
        for d in datas[:-1]:
            for c in json.loads(d).get("choices", []):
                text += (c.get("delta") or {}).get("content") or ""
    return ("" if text.startswith("Hello from ") else f"stream text {text[:80]!r}"), False


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.bad = []
        self.done = 0

    def add(self, outcome, problem=""):
        with self.lock:
            self.counts[outcome] += 1
            self.done += 1
            if problem:
                self.counts["BAD"] += 1
                if len(self.bad) < 200:
                    self.bad.append(problem)


class Traffic:
    def __init__(self, url, stats, seed):
        self.url = url
        self.stats = stats
        self.local = threading.local()
        self.seed = seed
        self.clients = []
        self.clients_lock = threading.Lock()

    def client(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = Client(self.url, timeout=30)
            self.local.c = c
            with self.clients_lock:
                self.clients.append(c)
        return c

    def drop_client(self):
        c = getattr(self.local, "c", None)
        if c is not None:
            c.close()

    def close_all(self):
        with self.clients_lock:
            for c in self.clients:
                c.close()

    def one(self, i):
        rnd = random.Random(self.seed * 1_000_003 + i)
        anthropic = rnd.random() < 0.5
        streaming = rnd.random() < 0.5
        translated = rnd.random() < 0.5
        x = rnd.random()
        kind = "normal"
        if x < 0.05:
            kind = "flaky"
        elif x < 0.08:
            kind = "bad-request"
        elif x < 0.12:
            kind = "disconnect"
        if anthropic:
            path, hdrs = "/v1/messages", auth("anthropic")
            alias = "to-oa" if translated else "to-an"
            body = {"model": alias, "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"soak {i}"}]}
        else:
            path, hdrs = "/v1/chat/completions", auth()
            alias = "to-an" if translated else "to-oa"
            body = {"model": alias, "messages": [{"role": "user", "content": f"soak {i}"}]}
            if streaming and rnd.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        if kind == "flaky":
            body["model"] = "flaky"
        if streaming:
            body["stream"] = True
        label = (f"{'an' if anthropic else 'oa'}/{'stream' if streaming else 'json'}/"
                 f"{'xlat' if translated else 'direct'}")
        if kind == "bad-request":
            if rnd.random() < 0.5:
                payload = b'{"model": "to-oa", "messages": [{"role": '
                label = "bad/invalid-json"
            else:
                body["model"] = "no-such-alias"
                payload = json.dumps(body).encode()
                label = "bad/unknown-model"
            hdrs = dict(hdrs, **{"Content-Type": "application/json"})
            return self._send(anthropic, False, path, payload, hdrs, label, expect_error=True)
        payload = json.dumps(body).encode()
        hdrs = dict(hdrs, **{"Content-Type": "application/json"})
        if kind == "disconnect":
            return self._disconnect(streaming, path, payload, hdrs, rnd)
        if kind == "flaky":
            label = f"flaky/{'an' if anthropic else 'oa'}/{'stream' if streaming else 'json'}"
        return self._send(anthropic, streaming, path, payload, hdrs, label)

    def _disconnect(self, streaming, path, payload, hdrs, rnd):
        if streaming:
            try:
                s = harness.stream(self.url, path, payload, headers=hdrs, timeout=30)
                if s.status == 200:
                    for _ in s.events():
                        break
                s.close()
                self.stats.add("disconnect/mid-stream")
            except OSError as e:
                self.stats.add("disconnect/mid-stream", f"disconnect request failed early: {e!r}")
            return
        head = (f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(payload)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode()
        host, port = self.url.rsplit("/", 1)[1].split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=10) as sk:
                sk.sendall(head + payload)
                time.sleep(rnd.random() * 0.01)
            self.stats.add("disconnect/before-answer")
        except OSError as e:
            self.stats.add("disconnect/before-answer", f"could not send: {e!r}")

    def _send(self, anthropic, streaming, path, payload, hdrs, label, expect_error=False):
        for attempt in range(2):
            c = self.client()
            fresh = c.conn is None
            try:
                if streaming:
                    s = c.stream(path, payload, headers=hdrs)
                    events = s.all()
                    if s.complete and not s.resp.isclosed():
                        s.resp.read()  # a Content-Length body read by read1 leaves it open
                    if s.status // 100 == 2:
                        if s.headers.get("Content-Type", "").split(";")[0] != "text/event-stream":
                            problem, err_end = f"stream with content-type {s.headers.get('Content-Type')}", False
                        else:
                            problem, err_end = check_stream(anthropic, s, events)
                        if not s.complete or s.headers.get("Connection", "").lower() == "close":
                            self.drop_client()
                        outcome = f"{label} 200{' error-event' if err_end else ''}"
                    else:
                        problem = check_error(anthropic, s.status, s.headers, bytes(s.body))
                        if not s.complete:
                            problem = problem or "error body framing not complete"
                            self.drop_client()
                        outcome = f"{label} {s.status}"
                    if s.resp.will_close:
                        self.drop_client()
                else:
                    r = c.request("POST", path, payload, hdrs)
                    if r.status // 100 == 2:
                        problem = check_json(anthropic, r.body)
                        if expect_error:
                            problem = f"bad request answered {r.status}"
                    else:
                        problem = check_error(anthropic, r.status, r.headers, r.body)
                        if expect_error and r.status // 100 != 4:
                            problem = problem or f"bad request answered {r.status}, not 4xx"
                    outcome = f"{label} {r.status}"
                self.stats.add(outcome, problem and f"{label}: {problem}")
                return
            except (ConnectionError, OSError, harness.http.client.HTTPException) as e:
                self.drop_client()
                # A keep-alive connection the server closed while idle: retry once, fresh.
                if (attempt == 0 and not fresh and isinstance(
                        e, (harness.http.client.RemoteDisconnected, BrokenPipeError,
                            ConnectionResetError))):
                    with self.stats.lock:
                        self.stats.counts["keepalive-retry"] += 1
                    continue
                self.stats.add(f"{label} EXC", f"{label}: {type(e).__name__}: {e}")
                return


# --------------------------------------------------------------------------------------------
# Sampling and the run
# --------------------------------------------------------------------------------------------

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_classes(pid, port):
    """(client connections, other TCP sockets) among the proxy's fds: sockets whose local port is
    the proxy's listening port (listeners excluded) are client connections; the rest are upstream
    connections."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    client = upstream = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(f).readlines()[1:]
        except OSError:
            continue
        for line in rows:
            p = line.split()
            if p[9] not in inodes or p[3] == "0A":
                continue
            if int(p[1].rsplit(":", 1)[1], 16) == port:
                client += 1
            else:
                upstream += 1
    return client, upstream


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def main():
    a, b = FlapMock("a", "--quiet", "--chunks", "8", "--chunk-interval-ms", "10").start(), \
        Mock("b", "--quiet", "--chunks", "8", "--chunk-interval-ms", "10").start()
    models = {
        "to-oa": [("a-oa", "gpt-a"), ("b-oa", "gpt-b")],
        "to-an": [("a-an", "claude-a"), ("b-an", "claude-b")],
        "flaky": [("a-oa", "gpt-a")],
    }
    cfg = config([backend("a-oa", url=a.url + "/v1"), backend("b-oa", url=b.url + "/v1"),
                  backend("a-an", "anthropic", url=a.url), backend("b-an", "anthropic", url=b.url)],
                 models,
                 fallback={"cooldown_seconds": 1, "enable_circuit_breaker": True,
                           "circuit_failure_threshold": 3, "circuit_open_timeout": 2,
                           "circuit_success_threshold": 1},
                 timeout={"ttft_timeout": "3s", "read_timeout": "3s"},
                 logging={"level": "warn", "access_log": "/dev/null"})
    px = Proxy(cfg).start()
    pid = px.pid
    stats = Stats()
    traffic = Traffic(px.url, stats, ARGS.seed)
    stop_evt = threading.Event()
    flapper = Flapper(a, ARGS.flap_period, stop_evt)
    samples = []
    t0 = time.monotonic()
    idle_rss, idle_fds = rss_kb(pid), nfds(pid)
    late = 0
    failed_reason = []

    def sample(now):
        with stats.lock:
            done, bad = stats.done, stats.counts["BAD"]
        cl, up = fd_classes(pid, px.port)
        samples.append({"t": round(now - t0, 1), "rss_kb": rss_kb(pid), "fds": nfds(pid),
                        "client_conns": cl, "upstream_conns": up,
                        "done": done, "bad": bad, "cpu_s": round(cpu_s(pid), 2),
                        "flap": flapper.phase})

    flapper.start()
    interval = 1.0 / ARGS.rate
    next_sample = t0 + ARGS.sample
    i = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=ARGS.workers) as ex:
        # Start every worker now: each keeps one keep-alive connection, so the number of client
        # connections is fixed from the start instead of ratcheting up with load bursts (which
        # would read as fd and memory growth of the proxy).
        barrier = threading.Barrier(ARGS.workers)
        for f in [ex.submit(barrier.wait) for _ in range(ARGS.workers)]:
            f.result()
        pending = set()
        while True:
            now = time.monotonic()
            if now - t0 >= ARGS.duration:
                break
            if not px.alive():
                failed_reason.append("the proxy died")
                break
            if now >= next_sample:
                sample(now)
                s = samples[-1]
                sys.stderr.write(f"  t={s['t']:7.1f}s rss={s['rss_kb']} kB fds={s['fds']} "
                                 f"(client {s['client_conns']}, upstream {s['upstream_conns']}) "
                                 f"done={s['done']} bad={s['bad']} flap={s['flap']}\n")
                next_sample += ARGS.sample
            due = t0 + i * interval
            if due > now:
                time.sleep(min(due - now, max(0.0, next_sample - now)))
                continue
            pending = {f for f in pending if not f.done()}
            if len(pending) >= ARGS.workers * 4:
                late += 1  # the pool is saturated: skip this slot rather than queue unboundedly
            else:
                pending.add(ex.submit(traffic.one, i))
            i += 1
        stop_evt.set()
        for f in pending:
            f.result()
    if px.alive():
        sample(time.monotonic())  # the last point under (just finished) load
    flapper.join(10)
    traffic.close_all()
    time.sleep(3)
    drained_rss, drained_fds = (rss_kb(pid), nfds(pid)) if px.alive() else (0, 0)
    try:
        code = px.stop()
    except AssertionError as e:
        code = None
        failed_reason.append(f"proxy stop: {str(e)[:500]}")
    try:
        a.stop(check=False)
        b.stop()
    except AssertionError as e:
        failed_reason.append(f"mock stop: {str(e)[:300]}")
    return report(samples, stats, (idle_rss, idle_fds), (drained_rss, drained_fds), code,
                  flapper, late, i, failed_reason)


def median_of(samples, key, lo, hi):
    vals = [s[key] for s in samples if lo <= s["t"] <= hi]
    return statistics.median(vals) if vals else None, len(vals)


def report(samples, stats, idle, drained, code, flapper, late, submitted, failed_reason):
    dur = ARGS.duration
    base_lo, base_hi = ARGS.warmup, ARGS.warmup + ARGS.window
    end_lo, end_hi = dur - ARGS.window, dur + ARGS.sample
    verdict = list(failed_reason)
    growth = {}
    for key, slack in (("rss_kb", 0), ("fds", 4)):
        base, nb = median_of(samples, key, base_lo, base_hi)
        end, ne = median_of(samples, key, max(end_lo, base_hi), end_hi)
        if base is None or end is None:
            verdict.append(f"too few samples for {key} (baseline {nb}, end {ne})")
            continue
        g = (end - base) / base * 100.0
        growth[key] = (base, end, g, nb, ne)
        if g > 5.0 and end - base > slack:
            verdict.append(f"{key} grew {g:.1f} % after warm-up ({base} -> {end})")
    if stats.counts["BAD"]:
        verdict.append(f"{stats.counts['BAD']} bad responses")
    if code != 0:
        verdict.append(f"proxy exit code {code}")
    if flapper.restart_failures:
        verdict.append("the flapping mock could not be restarted on its port")
    ok = not verdict
    lines = []
    w = lines.append
    w(f"## Soak: {dur:.0f} s at {ARGS.rate:g} req/s ({'PASS' if ok else 'FAIL'})\n")
    w(f"- binary: `{os.path.relpath(harness.PROXY_BIN, ROOT)}`, started "
      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(time.time() - dur))}")
    w(f"- requests scheduled {submitted}, completed {stats.done}, skipped because the client pool "
      f"was saturated {late}; keep-alive retries {stats.counts['keepalive-retry']}")
    w(f"- bad responses: {stats.counts['BAD']}")
    w(f"- flapping backend: period {ARGS.flap_period:g} s, killed and restarted {flapper.kills} times")
    w(f"- idle before traffic: RSS {idle[0]} kB, fds {idle[1]}; after traffic stopped and clients "
      f"closed (3 s): RSS {drained[0]} kB, fds {drained[1]}")
    w(f"- warm-up {ARGS.warmup:g} s; baseline = median of samples in [{base_lo:g}, {base_hi:g}] s, "
      f"end = median of the last {ARGS.window:g} s")
    for key, (base, end, g, nb, ne) in growth.items():
        w(f"- {key}: baseline {base:g} ({nb} samples), end {end:g} ({ne} samples), growth {g:+.2f} %")
    w(f"- proxy CPU: {samples[-1]['cpu_s'] if samples else 0} s; exit code on SIGTERM: {code}")
    w(f"- verdict: {'PASS' if ok else 'FAIL: ' + '; '.join(verdict)}\n")
    w("### Outcomes\n")
    w("| outcome | count |\n|---|---:|")
    for k, v in sorted(stats.counts.items()):
        if k not in ("BAD", "keepalive-retry"):
            w(f"| {k} | {v} |")
    if stats.bad:
        w("\n### Bad responses (first 20)\n")
        for p in stats.bad[:20]:
            w(f"- {p}")
    w("\n### Series (every sample)\n")
    w("| t (s) | RSS (kB) | fds | client conns | upstream conns | requests done | bad | proxy CPU (s) | backend a |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in samples:
        w(f"| {s['t']:g} | {s['rss_kb']} | {s['fds']} | {s['client_conns']} | {s['upstream_conns']} "
          f"| {s['done']} | {s['bad']} | {s['cpu_s']} | {s['flap']} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if ARGS.out:
        with open(ARGS.out, "w") as f:
            f.write(text)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"samples": samples, "counts": dict(stats.counts), "bad": stats.bad,
                       "verdict": verdict, "args": vars(ARGS)}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
