#!/usr/bin/env python3
"""hostile_rss.py - what slow-body connections make llm-proxy hold (RSS and file descriptors).

    bench/hostile_rss.py [--bin PATH] [--mock PATH] [-n 500] [--burst BYTES] [--seconds 30]
                         [--key] [--rate BYTES_PER_S] [--threads N] [--set server.k=v ...]

Starts llm-mock and llm-proxy (a Release build; default build-rel/), measures the proxy's idle
RSS, then opens N connections that each send the head of `POST /v1/chat/completions` announcing
`Content-Length: 64 MiB`, a first burst of body bytes (--burst, default 64 KiB), and then keep
dribbling: one byte per second per connection, or --rate bytes per second with --key. Without
--key the requests carry no API key (the unauthenticated probe of review B1); with --key they
carry the proxy key (a key holder pinning memory). RSS (VmRSS) and open fds of the proxy are
sampled after each connection's burst and then every second for --seconds; the report gives
idle, peak and final values and how the connections ended (status line received, closed by the server, still open).

Python 3 standard library only. Prints a Markdown block to stdout.
"""

import argparse
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "sk-hostile-bench-proxy-key-0123456789"


def wait_line(path, regex, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                m = re.search(regex, f.read())
                if m:
                    return m.group(1)
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {regex!r} in {path}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def set_path(cfg, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        cfg = cfg.setdefault(k, {})
    try:
        cfg[keys[-1]] = json.loads(value)
    except ValueError:
        cfg[keys[-1]] = value


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "llm-proxy"))
    ap.add_argument("--mock", default=None, help="llm-mock (default: next to --bin)")
    ap.add_argument("-n", type=int, default=500, help="connections (default 500)")
    ap.add_argument("--burst", type=int, default=64 << 10, help="body bytes sent at once first")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--key", action="store_true", help="send the proxy key")
    ap.add_argument("--rate", type=int, default=1, help="bytes per second per connection after the burst")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override a.b=value")
    a = ap.parse_args()
    mock_bin = a.mock or os.path.join(os.path.dirname(a.bin), "llm-mock")

    tmp = tempfile.mkdtemp(prefix="lp-hostile-")
    procs = []

    def cleanup(*_):
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        mlog = os.path.join(tmp, "mock.log")
        procs.append(subprocess.Popen([mock_bin, "--listen", "127.0.0.1:0", "--quiet"],
                                      stdout=open(mlog, "w"), stderr=subprocess.STDOUT))
        mport = wait_line(mlog, r"listening on [^ ]*:(\d+)", 10)
        cfg = {"listen": "127.0.0.1:0", "proxy_api_key": KEY,
               "server": {"threads": a.threads},
               "backends": [{"name": "m", "url": f"http://127.0.0.1:{mport}/v1", "api_key": "x"}],
               "models": {"m": {"routes": [{"backend": "m", "model": "gpt", "priority": 1}]}},
               "logging": {"level": "warn", "access_log": "/dev/null"}}
        for s in a.set:
            k, _, v = s.partition("=")
            set_path(cfg, k, v)
        cpath = os.path.join(tmp, "proxy.yaml")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        plog = os.path.join(tmp, "proxy.log")
        proxy = subprocess.Popen([a.bin, "-config", cpath], stdout=open(plog, "w"),
                                 stderr=subprocess.STDOUT)
        procs.append(proxy)
        # "listening on" is logged at info; the warn level hides it: poll the port instead.
        port = None
        deadline = time.monotonic() + 10
        while port is None and time.monotonic() < deadline:
            out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if f"pid={proxy.pid}," in line:
                    port = int(line.split()[3].rsplit(":", 1)[1])
            time.sleep(0.05)
        if port is None:
            sys.exit("proxy did not listen:\n" + open(plog).read())
        time.sleep(0.5)
        idle_rss, idle_fds = rss_kb(proxy.pid), fds(proxy.pid)

        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {64 << 20}\r\n" +
                (f"Authorization: Bearer {KEY}\r\n" if a.key else "") + "\r\n").encode()
        sel = selectors.DefaultSelector()
        state = {}
        t_open = time.monotonic()
        for i in range(a.n):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            state[s] = {"status": None, "closed": False, "sent": 0}
            try:
                s.send(head)
            except OSError:
                pass
            sel.register(s, selectors.EVENT_READ)
        burst = b" " * a.burst
        peak_rss, peak_fds = rss_kb(proxy.pid), fds(proxy.pid)  # also sampled during the bursts
        for s, st in state.items():
            off = 0
            end = time.monotonic() + 2.0
            while off < len(burst) and time.monotonic() < end:
                try:
                    off += s.send(burst[off:])
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError:
                    break
            st["sent"] += off
            peak_rss, peak_fds = max(peak_rss, rss_kb(proxy.pid)), max(peak_fds, fds(proxy.pid))
        samples = []
        t0 = time.monotonic()
        next_tick = t0
        while time.monotonic() - t0 < a.seconds:
            for key, _ in sel.select(timeout=0.05):
                s, st = key.fileobj, state[key.fileobj]
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, OSError):
                    data = b""
                if data and st["status"] is None and data.startswith(b"HTTP/1.1 "):
                    st["status"] = int(data[9:12])
                if not data:
                    st["closed"] = True
                    sel.unregister(s)
            if time.monotonic() >= next_tick:
                next_tick += 1.0
                chunk = b" " * a.rate
                for s, st in state.items():
                    if not st["closed"]:
                        try:
                            st["sent"] += s.send(chunk)
                        except (BlockingIOError, OSError):
                            pass
                r, d = rss_kb(proxy.pid), fds(proxy.pid)
                peak_rss, peak_fds = max(peak_rss, r), max(peak_fds, d)
                samples.append((round(time.monotonic() - t0), r, d))
        final_rss, final_fds = rss_kb(proxy.pid), fds(proxy.pid)
        statuses = {}
        for st in state.values():
            k = str(st["status"]) if st["status"] else "none"
            statuses[k] = statuses.get(k, 0) + 1
        closed = sum(1 for st in state.values() if st["closed"])
        for s in state:
            s.close()
        time.sleep(1.0)
        after_rss = rss_kb(proxy.pid)
        print(f"### {a.n} slow-body connections, {'with' if a.key else 'without'} the key")
        print()
        print(f"- binary: `{a.bin}`, {a.threads} worker thread(s), overrides: {a.set or 'none'}")
        print(f"- each: head announcing Content-Length 64 MiB, a {a.burst}-byte burst, then "
              f"{a.rate} byte(s)/s for {a.seconds:.0f} s")
        print(f"- idle: RSS {idle_rss / 1024:.1f} MB, {idle_fds} fds")
        print(f"- peak: RSS {peak_rss / 1024:.1f} MB (**+{(peak_rss - idle_rss) / 1024:.1f} MB** "
              f"above idle), {peak_fds} fds")
        print(f"- at the end: RSS {final_rss / 1024:.1f} MB, {final_fds} fds; "
              f"1 s after the clients closed: RSS {after_rss / 1024:.1f} MB")
        print(f"- responses: {statuses}; closed by the server: {closed}/{a.n}; "
              f"body bytes sent in total: {sum(st['sent'] for st in state.values()):,}")
        print("- series (s, RSS KiB, fds): " + " ".join(f"{t}:{r}:{d}" for t, r, d in samples))
        print()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
