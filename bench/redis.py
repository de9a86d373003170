#!/usr/bin/env python3
"""redis.py - what sharing limits through Redis costs: llm-proxy with the same rate limits and a
client key (rpm, tpm, daily budget) in process vs through a local redis-server, interleaved in
one run.

    bench/redis.py [--build DIR] [--rounds 3] [--duration 5] [--conc 64] [--out FILE.md]

Variants: local (no Redis), redis (limits shared), redis-cc (limits shared and
concurrency.scope: cluster, so each request also takes and gives back a lease).
Per round and variant: wrk at the given concurrency against one llm-proxy (1 worker thread) in
front of llm-mock; reports requests/s, p50/p99 latency, llm-proxy CPU microseconds per request,
redis-server CPU microseconds per request, and Redis commands per request (INFO stats
total_commands_processed). The Redis variant's "redis write() calls per request" comes from the
proxy's /proc/PID/io syscw counter and shows the pipelining: one write can carry the admission
checks of several requests of one loop pass.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "sk-bench-client-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def syscw(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("syscw:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def redis_cmd(port, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"$"):
                n = int(data[1:data.index(b"\r\n")])
                if len(data) >= data.index(b"\r\n") + 2 + n + 2:
                    break
            elif data.endswith(b"\r\n"):
                break
        return data.decode(errors="replace")


def commands(port):
    """Commands clients sent (scripts count once; the commands a script runs inside Redis are
    not round trips)."""
    info = redis_cmd(port, "INFO", "commandstats")
    total = 0
    for name, calls in re.findall(r"cmdstat_([a-z|]+):calls=(\d+)", info):
        if name in ("evalsha", "eval", "scan", "mget", "subscribe", "script|load", "info"):
            total += int(calls)
    return total


def wait_port(port, timeout=10):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not answering")


def config(mock_port, port, redis_port=None, cluster_conc=False):
    cfg = {
        "listen": f"127.0.0.1:{port}",
        "proxy_api_key": "sk-bench",
        "server": {"threads": 1},
        "backends": [{"name": "m", "url": f"http://127.0.0.1:{mock_port}/v1"}],
        "models": {"bench-model": {"routes": [{"backend": "m", "model": "up", "priority": 1}]}},
        # global_rps is capped at 10000, which a saturating run exceeds: the limits measured
        # are the client key's (rpm, tpm and a daily budget: three levels in one script).
        "rate_limit": {"enabled": False},
        "keys": [{"name": "bench", "key": KEY, "rpm": 100000000, "tpm": 100000000000,
                  "budget": {"tokens_per_day": 100000000000}}],
        "logging": {"access_log": "off", "level": "warn"},
    }
    if redis_port:
        cfg["redis"] = {"url": f"redis://127.0.0.1:{redis_port}/0", "timeout": "200ms"}
    if cluster_conc:  # the slot is a lease in Redis too (take + give back per request)
        cfg["concurrency"] = {"enabled": True, "max_requests": 10000, "scope": "cluster"}
    return cfg


def run_wrk(port, conc, duration):
    p = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conc}", f"-d{duration}s",
                        "--latency", "-s", os.path.join(HERE, "post.lua"),
                        f"http://127.0.0.1:{port}/v1/chat/completions", "--", KEY, "json",
                        "bench-model"], capture_output=True, text=True, timeout=duration + 60)
    line = next((l for l in p.stdout.splitlines() if l.startswith("LUA ")), None)
    if not line:
        raise RuntimeError(p.stdout[-800:] + p.stderr[-800:])
    out = {}
    for kv in line[4:].split():
        k, _, v = kv.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    proxy_bin = os.path.join(args.build, "llm-proxy")
    mock_bin = os.path.join(args.build, "llm-mock")
    tmp = tempfile.mkdtemp(prefix="lp-redis-bench-")
    procs = []

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    try:
        mock_port = free_port()
        start(["taskset", "-c", "1", mock_bin, "--listen", f"127.0.0.1:{mock_port}", "--quiet"])
        redis_port = free_port()
        redis = start(["taskset", "-c", "1", shutil.which("redis-server"), "--port",
                       str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                       "no", "--dir", tmp])
        wait_port(mock_port)
        wait_port(redis_port)
        variants = ("local", "redis", "redis-cc")
        results = {v: [] for v in variants}
        for rnd in range(args.rounds):
            for variant in variants:
                port = free_port()
                path = os.path.join(tmp, f"{variant}.yaml")
                with open(path, "w") as f:
                    json.dump(config(mock_port, port, redis_port if variant != "local" else None,
                                     variant == "redis-cc"), f)
                px = start(["taskset", "-c", "0", proxy_bin, "-config", path], cwd=tmp)
                wait_port(port)
                time.sleep(0.5)
                run_wrk(port, args.conc, 1)  # warm-up (connections, scripts loaded)
                c0, r0, w0, k0 = cpu_s(px.pid), cpu_s(redis.pid), syscw(px.pid), commands(redis_port)
                out = run_wrk(port, args.conc, args.duration)
                c1, r1, w1, k1 = cpu_s(px.pid), cpu_s(redis.pid), syscw(px.pid), commands(redis_port)
                n = max(1, out["requests"])
                row = {"rps": out["requests"] / args.duration, "p50_us": out["p50_us"],
                       "p99_us": out["p99_us"], "proxy_cpu_us": (c1 - c0) * 1e6 / n,
                       "redis_cpu_us": (r1 - r0) * 1e6 / n, "redis_cmds": (k1 - k0) / n,
                       "writes": (w1 - w0) / n, "errors": out.get("non200", 0) + out.get("badbody", 0)}
                results[variant].append(row)
                if variant != "local" and os.environ.get("LP_BENCH_DEBUG"):
                    print(redis_cmd(redis_port, "INFO", "commandstats"))
                print(f"round {rnd} {variant}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()),
                      flush=True)
                px.send_signal(signal.SIGTERM)
                px.wait(15)
        med = {v: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
               for v, rows in results.items()}
        lo, re_ = med["local"], med["redis"]
        lines = [
            f"# Redis-shared limits vs in-process (c={args.conc}, {args.rounds} interleaved "
            f"rounds of {args.duration} s, medians)", "",
            "| variant | req/s | p50 µs | p99 µs | proxy CPU µs/req | redis CPU µs/req | "
            "Redis cmds/req | proxy write() calls/req | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for v in variants:
            m = med[v]
            lines.append(f"| {v} | {m['rps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | "
                         f"{m['proxy_cpu_us']:.1f} | {m['redis_cpu_us']:.1f} | "
                         f"{m['redis_cmds']:.2f} | {m['writes']:.2f} | {m['errors']:.0f} |")
        lines += ["", f"Added p50: {re_['p50_us'] - lo['p50_us']:.0f} µs; added proxy CPU: "
                  f"{re_['proxy_cpu_us'] - lo['proxy_cpu_us']:.1f} µs/request "
                  f"({(re_['proxy_cpu_us'] / lo['proxy_cpu_us'] - 1) * 100:.0f}%); Redis CPU "
                  f"{re_['redis_cpu_us']:.1f} µs/request. With cluster-scoped concurrency "
                  f"(redis-cc): added p50 {med['redis-cc']['p50_us'] - lo['p50_us']:.0f} µs, "
                  f"added proxy CPU {med['redis-cc']['proxy_cpu_us'] - lo['proxy_cpu_us']:.1f} "
                  f"µs/request.",
                  "", "Spread (per round): " + "; ".join(
                      f"{v}: p50 {[round(r['p50_us']) for r in rows]}, proxy CPU "
                      f"{[round(r['proxy_cpu_us'], 1) for r in rows]}"
                      for v, rows in results.items())]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
