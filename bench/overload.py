#!/usr/bin/env python3
"""overload.py - 10x overload against concurrency.max_requests.

    bench/overload.py [--build DIR] [--max-requests N] [--factor F] [--duration S]
                      [--latency-ms MS] [--queue N] [--queue-timeout S] [--no-save]

Starts llm-mock (fixed response latency) and llm-proxy with `concurrency` enabled, then runs
`factor x max_requests` closed-loop clients for `duration` seconds (bounded: every client stops
at the deadline). It reports, and checks:

  - every answer is 200, 429 or 503 (nothing else: no 5xx from overload, no resets);
  - every admitted (200) request finished within its deadline (queue_timeout + upstream latency
    + 1 s of slack, and always within total_timeout);
  - the upstream never saw more than max_requests requests at once (the mock's own count);
  - the proxy's RSS stays bounded (sampled every 0.5 s; start, peak, end).

Output: a Markdown report on stdout, and bench/results/<date>-overload.md unless --no-save.
Loopback only. Exit code 1 when a check fails.
"""
import argparse
import datetime
import http.client
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--max-requests", type=int, default=16)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--latency-ms", type=int, default=200)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--queue-timeout", type=float, default=1.0)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args()
    os.environ["LP_BUILD_DIR"] = a.build
    from harness import PROXY_KEY, Mock, Proxy, backend, config  # noqa: E402

    total_timeout_s = 10
    with Mock("up", "--latency-ms", str(a.latency_ms), "--quiet") as m:
        cfg = config([backend(m)], {"bench": [("up", "up-model")]},
                     server={"threads": 2},
                     timeout={"total_timeout": f"{total_timeout_s}s"},
                     logging={"access_log": "off", "level": "warn"},
                     concurrency={"enabled": True, "max_requests": a.max_requests,
                                  "max_queue_size": a.queue,
                                  "queue_timeout": f"{int(a.queue_timeout * 1000)}ms"})
        with Proxy(cfg) as px:
            host, port = "127.0.0.1", px.port
            body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
            hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {PROXY_KEY}"}
            stop_at = time.monotonic() + a.duration
            lock = threading.Lock()
            statuses: dict[int, int] = {}
            ok_lat: list[float] = []
            errors: list[str] = []
            peak_upstream = [0]

            def client():
                conn = http.client.HTTPConnection(host, port, timeout=total_timeout_s + 5)
                while time.monotonic() < stop_at:
                    t0 = time.monotonic()
                    try:
                        conn.request("POST", "/v1/chat/completions", body=body, headers=hdrs)
                        r = conn.getresponse()
                        r.read()
                        st = r.status
                        if r.will_close:
                            conn.close()
                            conn = http.client.HTTPConnection(host, port, timeout=total_timeout_s + 5)
                    except Exception as e:  # noqa: BLE001 - counted as a failure
                        conn.close()
                        conn = http.client.HTTPConnection(host, port, timeout=total_timeout_s + 5)
                        with lock:
                            errors.append(repr(e))
                        continue
                    dt = time.monotonic() - t0
                    with lock:
                        statuses[st] = statuses.get(st, 0) + 1
                        if st == 200:
                            ok_lat.append(dt)
                conn.close()

            rss = [px.rss_kb()]
            n_clients = a.max_requests * a.factor
            threads = [threading.Thread(target=client, daemon=True) for _ in range(n_clients)]
            t_start = time.monotonic()
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
                rss.append(px.rss_kb())
                try:
                    peak_upstream[0] = max(peak_upstream[0], m.stats()["active"])
                except Exception:  # noqa: BLE001 - the mock is busy; sample again
                    pass
                if time.monotonic() > stop_at + total_timeout_s + 10:
                    break
            wall = time.monotonic() - t_start
            rss.append(px.rss_kb())

    total = sum(statuses.values())
    ok_lat.sort()
    deadline = min(total_timeout_s, a.queue_timeout + a.latency_ms / 1000 + 1.0)
    late = [x for x in ok_lat if x > deadline]
    bad = {k: v for k, v in statuses.items() if k not in (200, 429, 503)}
    pct = lambda p: ok_lat[min(len(ok_lat) - 1, int(p * len(ok_lat)))] * 1000 if ok_lat else 0  # noqa: E731
    checks = [
        ("only 200/429/503 answers", not bad and not errors,
         f"other statuses {bad}, transport errors {len(errors)}"),
        ("every admitted request within its deadline", not late,
         f"{len(late)} over {deadline:.2f} s"),
        ("upstream concurrency <= max_requests", peak_upstream[0] <= a.max_requests,
         f"peak {peak_upstream[0]}"),
        ("RSS bounded (end <= start + 32 MiB)", rss[-1] <= rss[0] + 32 * 1024,
         f"start {rss[0]} KiB, peak {max(rss)} KiB, end {rss[-1]} KiB"),
    ]
    lines = [
        f"# Overload: {a.factor}x max_requests ({datetime.date.today().isoformat()})",
        "",
        f"`bench/overload.py --max-requests {a.max_requests} --factor {a.factor} --duration "
        f"{a.duration:g} --latency-ms {a.latency_ms} --queue {a.queue} --queue-timeout "
        f"{a.queue_timeout:g}` (build {os.path.relpath(a.build, ROOT)}, 2 worker threads, "
        f"{n_clients} closed-loop clients, loopback)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wall time | {wall:.1f} s |",
        f"| answers | {total} ({total / wall:.0f}/s) |",
        f"| 200 | {statuses.get(200, 0)} ({statuses.get(200, 0) / wall:.0f}/s; ideal "
        f"{a.max_requests / (a.latency_ms / 1000):.0f}/s) |",
        f"| 429 | {statuses.get(429, 0)} |",
        f"| 503 | {statuses.get(503, 0)} |",
        f"| other / transport errors | {sum(bad.values())} / {len(errors)} |",
        f"| admitted latency p50 / p99 / max | {pct(0.5):.0f} / {pct(0.99):.0f} / "
        f"{(ok_lat[-1] * 1000 if ok_lat else 0):.0f} ms (deadline {deadline * 1000:.0f} ms) |",
        f"| upstream in flight, peak | {peak_upstream[0]} (max_requests {a.max_requests}) |",
        f"| proxy RSS start / peak / end | {rss[0]} / {max(rss)} / {rss[-1]} KiB |",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for name, ok, detail in checks:
        lines.append(f"| {name} | {'pass' if ok else 'FAIL'} | {detail} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if not a.no_save:
        out = os.path.join(HERE, "results", f"{datetime.date.today().isoformat()}-overload.md")
        with open(out, "w") as f:
            f.write(report)
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
