#!/usr/bin/env python3
"""run.py - benchmark llm-proxy against nginx proxy_pass (and the bare mock) in one run.

Python stdlib only. Starts llm-mock, nginx and one or more llm-proxy variants on ephemeral
loopback ports, drives them with wrk + bench/post.lua, reads CPU time and RSS from /proc, and
prints a Markdown report (also written to bench/results/). See bench/README.md.

Everything it starts is stopped on exit, on error and on SIGINT/SIGTERM.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
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
KEY = "sk-bench-proxy-key-0123456789abcdef"
BACKEND_KEY = "sk-bench-backend-key-0123456789abcdef"
ALIAS = "bench-model"
UPSTREAM_MODEL = "gpt-4o-mini"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS = []  # every subprocess.Popen we started, stopped by cleanup()
TMP = None  # the suite's temp dir


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------------------------

def allow_core():
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    except (ValueError, OSError):
        pass


def start(argv, cpus, **kw):
    """Start argv pinned to `cpus` (a string for taskset -c, or None) and remember it."""
    if cpus is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", cpus] + argv
    # cwd = the temp dir (kept when the suite fails) and core dumps on, so a crash leaves a core.
    p = subprocess.Popen(argv, cwd=TMP, preexec_fn=allow_core, **kw)
    PROCS.append(p)
    return p


def check_alive(targets):
    """Fail loudly, with the exit status / signal and the log tail, if a process died."""
    for t in targets:
        rc = t["proc"].poll()
        if rc is None:
            continue
        how = f"killed by signal {-rc} ({signal.Signals(-rc).name})" if rc < 0 else f"exit {rc}"
        tail = ""
        if t.get("stderr") and os.path.exists(t["stderr"]):
            with open(t["stderr"], errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
        raise RuntimeError(f"{t['name']} (pid {t['pid']}) died: {how}\n{tail}")


def stop(p, timeout=5.0):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def cleanup():
    for p in list(reversed(PROCS)):
        try:
            stop(p)
        except Exception as e:  # keep stopping the others
            log(f"cleanup: {e}")


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def wait_for(pred, timeout, what):
    t_end = time.time() + timeout
    while time.time() < t_end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def port_in_file(path, pattern):
    try:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        return int(m.group(1)) if m else None
    except FileNotFoundError:
        return None


def free_port():
    """A port that was free a moment ago (nginx cannot listen on port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpuset(spec):
    """A taskset -c list ("0", "0,1", "0-3") as a set; None = every CPU."""
    if spec is None:
        return set(range(os.cpu_count()))
    out = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def pin(pid, cpus):
    """Re-pin every thread of a running process (used to move the mock for the direct runs)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


# ---- /proc -------------------------------------------------------------------------------------

def proc_pids(target):
    """The pids whose CPU/RSS count for a target: the process and its children (nginx workers)."""
    pids = [target["pid"]]
    try:
        with open(f"/proc/{target['pid']}/task/{target['pid']}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_ticks(pids):
    """(utime, stime) in clock ticks summed over pids (each value covers all threads)."""
    u = s = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            u += int(fields[11])
            s += int(fields[12])
        except OSError:
            pass
    return u, s


def machine_busy_s():
    """CPU seconds all CPUs spent busy (incl. VM steal) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def mem_kb(pids, key):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---- configs -----------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi_temp;
    uwsgi_temp_path {tmp}/uwsgi_temp;
    scgi_temp_path {tmp}/scgi_temp;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 64;
    }}
    # Non-streaming requests: nginx defaults (response buffering on).
    server {{
        listen 127.0.0.1:{port_json};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    # Streaming requests: proxy_buffering off, as an SSE gateway must be configured.
    server {{
        listen 127.0.0.1:{port_stream};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(d, indent=0):
    out = []
    pad = "  " * indent
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.append(to_yaml(v, indent + 1))
        elif isinstance(v, list):
            out.append(f"{pad}{k}:")
            for item in v:
                flow = ", ".join(f"{ik}: {yaml_scalar(iv)}" for ik, iv in item.items())
                out.append(f"{pad}  - {{{flow}}}")
        else:
            out.append(f"{pad}{k}: {yaml_scalar(v)}")
    return "\n".join(out)


def proxy_config(mock_port, tmp, name, threads):
    return {
        "listen": "127.0.0.1:0",
        "proxy_api_key": KEY,
        "server": {"threads": threads},
        "backends": [{"name": "mock", "url": f"http://127.0.0.1:{mock_port}/v1",
                      "api_key": BACKEND_KEY}],
        "models": {ALIAS: {"routes": [{"backend": "mock", "model": UPSTREAM_MODEL,
                                         "priority": 1}]}},
        # wrk cuts the streams in flight when a run ends. llm-proxy (as of this commit) counts
        # such a client disconnect as an upstream failure and cools the only backend down for
        # 60 s, failing every later request with 503. try_soonest keeps the route usable.
        "fallback": {"when_all_cooling": "try_soonest"},
        # info: only start/stop lines (per-request lines are debug); the access log line is
        # still built and written for every request, to /dev/null so disk I/O does not count.
        "logging": {"level": "info", "access_log": "/dev/null",
                    "error_log": f"{tmp}/{name}-error.log"},
    }


def apply_set(cfg, dotted, value):
    try:
        value = json.loads(value)
    except ValueError:
        pass
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


# ---- targets -----------------------------------------------------------------------------------

def start_mock(args, tmp):
    out = open(f"{tmp}/mock.out", "w")
    p = start([os.path.join(args.build, "llm-mock"), "--listen", "127.0.0.1:0", "--chunks",
               str(args.chunks), "--chunk-interval-ms", "0", "--quiet"],
              args.cpu_mock, stdout=out, stderr=subprocess.STDOUT)
    port = wait_for(lambda: port_in_file(f"{tmp}/mock.out", r"listening on [^\n]*:(\d+)\n"),
                    5, "llm-mock to listen")
    return {"name": "mock", "kind": "mock", "proc": p, "pid": p.pid, "stderr": f"{tmp}/mock.out",
            "urls": {m: f"http://127.0.0.1:{port}/v1/chat/completions"
                     for m in ("json", "stream")}, "port": port}


def start_nginx(args, tmp, mock_port):
    ngx = os.path.join(tmp, "nginx")
    os.makedirs(ngx, exist_ok=True)
    last = None
    for _ in range(5):  # free_port() can race with other users of the machine: retry
        pj, ps = free_port(), free_port()
        if pj == ps:
            continue
        with open(f"{ngx}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(tmp=ngx, mock_port=mock_port, port_json=pj, port_stream=ps))
        err = open(f"{ngx}/stderr.log", "w")
        p = start([args.nginx, "-p", ngx + "/", "-c", f"{ngx}/nginx.conf", "-e",
                   f"{ngx}/nginx-error.log"], args.cpu_server, stdout=err, stderr=subprocess.STDOUT)
        t = {"name": "nginx", "kind": "nginx", "proc": p, "pid": p.pid,
             "stderr": f"{ngx}/nginx-error.log",
             "urls": {"json": f"http://127.0.0.1:{pj}/v1/chat/completions",
                      "stream": f"http://127.0.0.1:{ps}/v1/chat/completions"}}
        try:
            wait_for(lambda: p.poll() is not None or (len(proc_pids(t)) > 1 and listening(pj)
                                                      and listening(ps)), 5, "nginx to listen")
        except RuntimeError as e:
            last = e
        if p.poll() is None and listening(pj):
            return t
        stop(p)
        with open(f"{ngx}/nginx-error.log", errors="replace") as f:
            last = f.read()[-500:]
    raise RuntimeError(f"nginx did not start: {last}")


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_proxy(args, tmp, mock_port, v):
    cfg = proxy_config(mock_port, tmp, v["name"], v["threads"])
    for dotted, value in v["set"]:
        apply_set(cfg, dotted, value)
    text = to_yaml(cfg) + "\n"
    if v["extra"]:
        with open(v["extra"]) as f:
            text += "\n# ---- extra (" + v["extra"] + ")\n" + f.read() + "\n"
    path = f"{tmp}/{v['name']}.yaml"
    with open(path, "w") as f:
        f.write(text)
    errpath = f"{tmp}/{v['name']}.stderr"
    err = open(errpath, "w")
    cpus = v["cpus"] if v["cpus"] is not None else args.cpu_server
    p = start([v["bin"], "-config", path], cpus, stdout=err, stderr=subprocess.STDOUT)
    try:
        port = wait_for(lambda: p.poll() is not None or port_in_file(
            errpath, r"listening on [^\s]*:(\d+) with"), 10, f"{v['name']} to listen")
    except RuntimeError:
        port = None
    if p.poll() is not None or not port or port is True:
        with open(errpath, errors="replace") as f:
            raise RuntimeError(f"{v['name']} did not start:\n{f.read()[-2000:]}")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return {"name": v["name"], "kind": "proxy", "proc": p, "pid": p.pid, "config": path,
            "urls": {"json": url, "stream": url}, "bin": v["bin"], "stderr": errpath}


# ---- one wrk run -------------------------------------------------------------------------------

def run_wrk(args, url, conc, mode, duration, raw_path=None):
    argv = ["wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--latency", "--timeout", "5s",
            "-s", os.path.join(HERE, "post.lua"), url, "--", KEY, mode, ALIAS]
    if args.cpu_wrk is not None:
        argv = ["taskset", "-c", args.cpu_wrk] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    if raw_path:
        with open(raw_path, "w") as f:
            f.write(" ".join(argv) + "\n" + p.stdout + p.stderr)
    m = re.search(r"^LUA (.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["errors"] = int(r["non200"] + r["badbody"] + r["err_connect"] + r["err_read"] +
                      r["err_write"] + r["err_timeout"])
    return r


def measure(args, target, mock, conc, mode, duration, raw_path=None):
    pids = proc_pids(target)
    mpids = proc_pids(mock)
    b0, w0 = machine_busy_s(), children_cpu_s()
    c0, m0, t0 = cpu_ticks(pids), cpu_ticks(mpids), time.time()
    r = run_wrk(args, target["urls"][mode], conc, mode, duration, raw_path)
    c1, m1, t1 = cpu_ticks(pids), cpu_ticks(mpids), time.time()
    b1, w1 = machine_busy_s(), children_cpu_s()
    wall = t1 - t0
    n = max(r["requests"], 1)
    r["cpu_user_s"] = (c1[0] - c0[0]) / CLK_TCK
    r["cpu_sys_s"] = (c1[1] - c0[1]) / CLK_TCK
    r["cpu_s"] = r["cpu_user_s"] + r["cpu_sys_s"]
    r["cpu_us_per_req"] = r["cpu_s"] / n * 1e6
    r["cpu_user_us_per_req"] = r["cpu_user_s"] / n * 1e6
    r["cpu_sys_us_per_req"] = r["cpu_sys_s"] / n * 1e6
    r["cpu_util"] = r["cpu_s"] / wall
    r["mock_cpu_util"] = (m1[0] + m1[1] - m0[0] - m0[1]) / CLK_TCK / wall
    # CPU used by anything that is not ours (other users' builds, VM steal) during the run,
    # in CPUs: a run with a high value was disturbed. wrk is a child of ours (RUSAGE_CHILDREN).
    ours = r["cpu_s"] + (w1 - w0) + (0 if target is mock else
                                    (m1[0] + m1[1] - m0[0] - m0[1]) / CLK_TCK)
    r["foreign_cpu"] = max(0.0, (b1 - b0) - ours) / wall
    r["hwm_kb"] = mem_kb(pids, "VmHWM")
    r["rss_kb"] = mem_kb(pids, "VmRSS")
    return r


# ---- report ------------------------------------------------------------------------------------

def tool_version(argv, pattern):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, p.stdout + p.stderr)
        return m.group(1) if m else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(args):
    model = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        model = m.group(1) if m else model
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "nginx": tool_version([args.nginx, "-v"], r"nginx/(\S+)"),
        "libcurl": tool_version(["pkg-config", "--modversion", "libcurl"], r"(\S+)"),
        "libevent": tool_version(["pkg-config", "--modversion", "libevent"], r"(\S+)"),
        "wrk": tool_version(["wrk", "-v"], r"wrk (\S+)"),
        "loadavg_start": load,
    }


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 10000 else f"{us:.0f} µs"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "-"


def median_result(rs):
    keys = ["rps", "p50_us", "p99_us", "cpu_us_per_req", "cpu_user_us_per_req",
            "cpu_sys_us_per_req", "cpu_util", "mock_cpu_util", "foreign_cpu"]
    out = {k: statistics.median(r[k] for r in rs) for k in keys}
    out["errors"] = sum(r["errors"] for r in rs)
    out["requests"] = sum(r["requests"] for r in rs)
    out["first_bad_status"] = max(r["first_bad_status"] for r in rs)
    return out


def report(args, info, targets, points, results, mem, baseline, started, elapsed):
    L = []
    L.append(f"# llm-proxy benchmark — {started:%Y-%m-%d %H:%M} on {info['host']}\n")
    L.append(f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}; "
             f"load average at start {info['loadavg_start']}, at end {info['loadavg_end']}")
    L.append(f"- Versions: nginx {info['nginx']}, libcurl {info['libcurl']}, libevent "
             f"{info['libevent']}, wrk {info['wrk']}")
    L.append(f"- Pinning: server under test (llm-proxy / nginx / the mock in its direct runs) on "
             f"CPU {args.cpu_server}; llm-mock on CPU {args.cpu_mock}; wrk on CPU {args.cpu_wrk} "
             f"(1 wrk thread). Loopback only.")
    L.append(f"- Each point: {args.duration} s of wrk, {args.rounds} round(s) with all targets "
             f"interleaved; the table shows the median over rounds (errors: the sum). Mock: "
             f"`--chunks {args.chunks} --chunk-interval-ms 0`.")
    L.append("- Targets: " + "; ".join(
        f"`{t['name']}` = {describe(t)}" for t in targets))
    L.append(f"- Suite wall time {elapsed:.0f} s. `other load` = CPU used by processes that are "
             f"not part of the benchmark (and VM steal) during the run, in % of one CPU: above "
             f"~20 % the run was disturbed; trust CPU µs/req and ratios more than req/s then.\n")

    L.append("| mode | conc | target | req/s | p50 | p99 | CPU µs/req (usr+sys) | server CPU | "
             "mock CPU | other load | errors |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (mode, conc) in points:
        for t in targets:
            r = results[(t["name"], mode, conc)]
            cpu = (f"{r['cpu_us_per_req']:.1f} ({r['cpu_user_us_per_req']:.1f}+"
                   f"{r['cpu_sys_us_per_req']:.1f})")
            err = str(r["errors"]) if not r["errors"] else \
                f"**{r['errors']} FLAGGED** (status {int(r['first_bad_status'])})"
            L.append(f"| {mode} | {conc} | {t['name']} | {r['rps']:.0f} | {fmt_us(r['p50_us'])} | "
                     f"{fmt_us(r['p99_us'])} | {cpu} | {r['cpu_util'] * 100:.0f}% | "
                     f"{r['mock_cpu_util'] * 100:.0f}% | {r['foreign_cpu'] * 100:.0f}% | {err} |")

    others = [t for t in targets if t["name"] != baseline and t["kind"] != "mock"]
    if baseline in {t["name"] for t in targets} and others:
        L.append(f"\n### Ratios against `{baseline}` (value / {baseline})\n")
        L.append("req/s > 1 is better; CPU, p50, p99 < 1 are better.\n")
        L.append("| mode | conc | target | req/s | CPU µs/req | p50 | p99 |")
        L.append("|---|---:|---|---:|---:|---:|---:|")
        for (mode, conc) in points:
            b = results[(baseline, mode, conc)]
            for t in others:
                r = results[(t["name"], mode, conc)]
                L.append(f"| {mode} | {conc} | {t['name']} | {ratio(r['rps'], b['rps'])} | "
                         f"{ratio(r['cpu_us_per_req'], b['cpu_us_per_req'])} | "
                         f"{ratio(r['p50_us'], b['p50_us'])} | {ratio(r['p99_us'], b['p99_us'])} |")

    L.append("\n### Memory (RSS, all processes of the target)\n")
    L.append("| target | idle (before load) | after each round | peak (VmHWM) | peak / "
             f"{baseline} |")
    L.append("|---|---:|---|---:|---:|")
    bm = mem.get(baseline)
    for t in targets:
        if t["kind"] == "mock":
            continue
        m = mem[t["name"]]
        rounds = " → ".join(f"{kb / 1024:.1f}" for kb in m["after_round"])
        pr = ratio(m["hwm"], bm["hwm"]) if bm and t["name"] != baseline else "-"
        L.append(f"| {t['name']} | {m['idle'] / 1024:.1f} MiB | {rounds} MiB | "
                 f"{m['hwm'] / 1024:.1f} MiB | {pr} |")
    flagged = [k for k, r in results.items() if r["errors"]]
    if flagged:
        L.append("\n**WARNING: runs with errors (non-200, bad body or socket errors):** " +
                 ", ".join(f"{n}/{m}/c{c}" for n, m, c in flagged))
    return "\n".join(L) + "\n"


def describe(t):
    if t["kind"] == "mock":
        return "llm-mock directly"
    if t["kind"] == "nginx":
        return "nginx proxy_pass → mock (worker_processes 1, keepalive 64)"
    v = t["variant"]
    d = f"{os.path.relpath(v['bin'], ROOT) if v['bin'].startswith(ROOT) else v['bin']} → mock, " \
        f"threads {v['threads']}"
    if v["cpus"] is not None:
        d += f", CPUs {v['cpus']}"
    if v["set"]:
        d += ", " + ", ".join(f"{k}={val}" for k, val in v["set"])
    if v["extra"]:
        d += f", extra {v['extra']}"
    return d


# ---- main --------------------------------------------------------------------------------------

def parse_variant(spec, default_bin):
    """NAME[:bin=PATH][:threads=N][:cpus=LIST][:extra=FILE.yaml][:set=K=V[;K=V...]]"""
    parts = spec.split(":")
    v = {"name": parts[0], "bin": default_bin, "threads": 1, "cpus": None, "extra": None,
         "set": []}
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", v["name"]):
        raise SystemExit(f"bad variant name in {spec!r}")
    for p in parts[1:]:
        k, _, val = p.partition("=")
        if k == "bin":
            v["bin"] = os.path.abspath(val)
        elif k == "threads":
            v["threads"] = int(val)
        elif k == "cpus":
            v["cpus"] = val
        elif k in ("extra", "config_extra"):
            v["extra"] = os.path.abspath(val)
        elif k == "set":
            for kv in val.split(";"):
                dk, _, dv = kv.partition("=")
                v["set"].append((dk, dv))
        else:
            raise SystemExit(f"unknown variant field {k!r} in {spec!r}")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                    help="build dir holding llm-proxy and llm-mock (default build-bench)")
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--duration", type=int, default=4, help="seconds per point (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--conc", default="1,64", help="concurrency levels (default 1,64)")
    ap.add_argument("--modes", default="json,stream", help="json,stream")
    ap.add_argument("--chunks", type=int, default=8, help="mock SSE deltas per answer")
    ap.add_argument("--targets", default=None,
                    help="comma list among mock,nginx and variant names (default: all)")
    ap.add_argument("--no-mock", action="store_true", help="skip the direct-mock target")
    ap.add_argument("--no-nginx", action="store_true", help="skip nginx")
    ap.add_argument("--proxy-2t", action="store_true",
                    help="also run llm-proxy with 2 threads on both CPUs (shares CPU with wrk)")
    ap.add_argument("--variant", action="append", default=[],
                    help="llm-proxy variant NAME[:bin=PATH][:threads=N][:cpus=L]"
                         "[:extra=FILE.yaml][:set=a.b=V;c.d=V] (repeatable)")
    ap.add_argument("--compare", nargs=2, metavar=("BIN_A", "BIN_B"),
                    help="two llm-proxy binaries, interleaved; ratios are B/A")
    ap.add_argument("--baseline", default=None, help="target the ratios divide by")
    ap.add_argument("--cpu-server", default="0")
    ap.add_argument("--cpu-mock", default="1")
    ap.add_argument("--cpu-wrk", default="1")
    ap.add_argument("--no-pin", action="store_true", help="no taskset pinning at all")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--no-save", action="store_true", help="print only, write no files")
    args = ap.parse_args()
    if args.no_pin:
        args.cpu_server = args.cpu_mock = args.cpu_wrk = None

    default_bin = os.path.join(args.build, "llm-proxy")
    variants = [parse_variant(s, default_bin) for s in args.variant]
    if args.compare:
        variants = [parse_variant("A:bin=" + args.compare[0], default_bin),
                    parse_variant("B:bin=" + args.compare[1], default_bin)] + variants
    compare_mode = bool(variants)
    if not variants:
        variants = [parse_variant("proxy", default_bin)]
    if args.proxy_2t:
        variants.append(parse_variant("proxy-2t:threads=2:cpus=0,1", default_bin))
    if len({v["name"] for v in variants}) != len(variants):
        raise SystemExit("variant names must be unique")
    for v in variants:
        if not os.access(v["bin"], os.X_OK):
            raise SystemExit(f"not executable: {v['bin']} (build it first, see bench/README.md)")
    for tool in ("wrk", args.nginx, os.path.join(args.build, "llm-mock")):
        if not shutil.which(tool):
            raise SystemExit(f"missing tool: {tool}")
    want_mock = not args.no_mock and not compare_mode
    want_nginx = not args.no_nginx and not compare_mode
    if args.targets:
        names = args.targets.split(",")
        want_mock, want_nginx = "mock" in names, "nginx" in names
        variants = [v for v in variants if v["name"] in names]
    baseline = args.baseline or ("nginx" if want_nginx and not compare_mode else variants[0]["name"])

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    global TMP
    tmp = TMP = tempfile.mkdtemp(prefix="lp-bench-")
    started = datetime.datetime.now()
    info = machine_info(args)
    points = [(m, int(c)) for m in args.modes.split(",") for c in args.conc.split(",")]
    stamp = f"{started:%Y-%m-%d-%H%M}-{info['host']}"
    raw_dir = os.path.join(args.out, "raw", stamp)
    if not args.no_save:
        os.makedirs(raw_dir, exist_ok=True)
    ok = False
    try:
        mock = start_mock(args, tmp)
        targets = [mock] if want_mock else []
        if want_nginx:
            targets.append(start_nginx(args, tmp, mock["port"]))
        for v in variants:
            t = start_proxy(args, tmp, mock["port"], v)
            t["variant"] = v
            targets.append(t)
        time.sleep(0.5)
        mem = {t["name"]: {"idle": mem_kb(proc_pids(t), "VmRSS"), "after_round": []}
               for t in targets}
        log(f"targets: " + ", ".join(f"{t['name']}={t['urls']['json']}" for t in targets))

        # Warm-up: fill connection pools, fault in code, check every target answers 200.
        for t in targets:
            for mode in ("json", "stream"):
                w = run_wrk(args, t["urls"][mode], 8, mode, 1)
                if w["errors"]:
                    raise RuntimeError(f"warm-up of {t['name']} ({mode}) failed: {w}")

        runs = {}
        t_suite = time.time()
        for rnd in range(args.rounds):
            for (mode, conc) in points:
                for t in targets:
                    if t["kind"] == "mock":  # the server under test goes where the proxies run
                        pin(t["pid"], cpuset(args.cpu_server))
                    raw = os.path.join(raw_dir, f"r{rnd}-{t['name']}-{mode}-c{conc}.txt") \
                        if not args.no_save else None
                    try:
                        r = measure(args, t, mock, conc, mode, args.duration, raw)
                    finally:
                        check_alive(targets + [mock])
                    if t["kind"] == "mock":
                        pin(t["pid"], cpuset(args.cpu_mock))
                    runs.setdefault((t["name"], mode, conc), []).append(r)
                    log(f"round {rnd + 1}/{args.rounds} {mode:6} c={conc:<3} {t['name']:10} "
                        f"{r['rps']:8.0f} req/s p50 {r['p50_us']:6.0f} µs p99 {r['p99_us']:7.0f} µs "
                        f"cpu {r['cpu_us_per_req']:6.1f} µs/req other {r['foreign_cpu'] * 100:3.0f}% "
                        f"errors {r['errors']}")
            for t in targets:
                mem[t["name"]]["after_round"].append(mem_kb(proc_pids(t), "VmRSS"))
        for t in targets:
            mem[t["name"]]["hwm"] = mem_kb(proc_pids(t), "VmHWM")
            if t["proc"].poll() is not None:
                raise RuntimeError(f"{t['name']} exited during the run "
                                   f"(status {t['proc'].returncode})")
        with open("/proc/loadavg") as f:
            info["loadavg_end"] = " ".join(f.read().split()[:3])
        results = {k: median_result(v) for k, v in runs.items()}
        for t in targets:  # show why a proxy failed requests
            if t["kind"] == "proxy" and any(r["errors"] for (n, _, _), r in results.items()
                                            if n == t["name"]):
                with open(t["stderr"], errors="replace") as f:
                    log(f"---- last lines of {t['name']}'s log:\n" + "".join(f.readlines()[-15:]))
        md = report(args, info, targets, points, results, mem, baseline, started,
                    time.time() - t_suite)
        print(md)
        if not args.no_save:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, stamp + ".md")
            with open(path, "w") as f:
                f.write(md)
            with open(os.path.join(args.out, "raw", stamp + ".json"), "w") as f:
                json.dump({"info": info, "mem": mem,
                           "runs": {"/".join(map(str, k)): v for k, v in runs.items()},
                           "configs": {t["name"]: open(t["config"]).read()
                                       for t in targets if t["kind"] == "proxy"}}, f, indent=1)
            log(f"wrote {path}")
        ok = True
        return 1 if any(r["errors"] for r in results.values()) else 0
    except SystemExit:
        ok = True  # interrupted: nothing to debug, remove the temp dir
        raise
    finally:
        cleanup()
        if args.keep_tmp or not ok:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
