#!/usr/bin/env python3
"""syscalls.py - system calls per request: llm-proxy (own client and libcurl) vs nginx.

    bench/syscalls.py [--build DIR] [-n REQUESTS] [--stream]

Starts llm-mock, nginx (proxy_pass with an upstream keepalive pool) and two llm-proxy instances
(1 worker each): one with the own upstream client, one with `http2: true` (libcurl). For each
target it sends 100 warm-up requests, then attaches `strace -c -f` to the serving process (the
nginx worker, the whole llm-proxy) for REQUESTS more requests over one keep-alive client
connection (c=1), and prints the calls per request by name. The mock's side is not counted.
Python stdlib only; needs strace and nginx (scripts/install-deps.sh).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KEY = "sk-bench-proxy-key-0123456789abcdef"
NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy_temp;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering {buffering};
        }}
    }}
}}
"""

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, **kw):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_proxy(build, tmp, name, mock_port, http2):
    port = free_port()
    b = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}/v1", "api_key": "sk-up"}
    if http2:
        b["http2"] = True
    cfg = {"listen": f"127.0.0.1:{port}", "proxy_api_key": KEY, "server": {"threads": 1},
           "backends": [b],
           "models": {"m": {"routes": [{"backend": "mock", "model": "m-up", "priority": 1}]}},
           "logging": {"level": "info", "access_log": "/dev/null",
                       "error_log": f"{tmp}/{name}.log"}}
    path = f"{tmp}/{name}.yaml"
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    p = start([f"{build}/llm-proxy", "-config", path], stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL)
    wait_port(port)
    return port, p.pid


def start_nginx(tmp, mock_port, stream):
    port = free_port()
    d = f"{tmp}/nginx"
    os.makedirs(d, exist_ok=True)
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o777)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(NGINX_CONF.format(tmp=d, mock_port=mock_port, port=port,
                                  buffering="off" if stream else "on"))
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    start([nginx, "-p", d + "/", "-c", f"{d}/nginx.conf", "-e", f"{d}/nginx-error.log"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    pid = int(open(f"{d}/nginx.pid").read())
    workers = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return port, int(workers[0])


def run_requests(port, n, stream):
    body = json.dumps({"model": "m", "stream": stream,
                       "messages": [{"role": "user", "content": "hello"}]})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        c.request("POST", "/v1/chat/completions", body,
                  {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
    c.close()


def count(port, pid, n, stream):
    run_requests(port, 100, stream)
    out = tempfile.mktemp(prefix="strace-")
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    run_requests(port, n, stream)
    time.sleep(0.3)
    st.send_signal(signal.SIGINT)
    st.wait(10)
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    os.unlink(out)
    return calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build-bench"))
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--stream", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lp-syscalls-")
    try:
        mock = start([f"{a.build}/llm-mock", "--listen", "127.0.0.1:0", "--quiet"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        mock_port = int(mock.stdout.readline().decode().rsplit(":", 1)[1])
        targets = {
            "nginx": start_nginx(tmp, mock_port, a.stream),
            "llm-proxy (own client)": start_proxy(a.build, tmp, "own", mock_port, False),
            "llm-proxy (libcurl)": start_proxy(a.build, tmp, "curl", mock_port, True),
        }
        results = {name: count(port, pid, a.n, a.stream) for name, (port, pid) in targets.items()}
        names = sorted({k for r in results.values() for k in r},
                       key=lambda k: -max(r.get(k, 0) for r in results.values()))
        print(f"system calls per request ({'stream' if a.stream else 'non-stream'}, c=1, "
              f"{a.n} requests)")
        print("| call | " + " | ".join(results) + " |")
        print("|---|" + "---:|" * len(results))
        for k in names:
            print(f"| {k} | " + " | ".join(f"{r.get(k, 0) / a.n:.2f}" for r in results.values()) + " |")
        print("| **total** | " + " | ".join(f"**{sum(r.values()) / a.n:.2f}**"
                                          for r in results.values()) + " |")
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
