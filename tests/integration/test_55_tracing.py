"""Tracing: W3C Trace Context in and out, GenAI spans exported over OTLP/HTTP JSON.

A receiver in the test (otlp_receiver.py) validates every export against the OTLP JSON mapping.
The exporter's batch delay is shortened through OTEL_BSP_SCHEDULE_DELAY.
"""

import json
import os
import subprocess
import tempfile
import time
import unittest

from harness import (PROXY_BIN, PROXY_KEY, SOURCE_DIR, Mock, Proxy, auth, backend, config,
                     request, require_proxy, stream, wait_until)
from otlp_receiver import Receiver, attrs

CHAT = {"model": "m", "max_tokens": 77, "messages": [{"role": "user", "content": "secret prompt text"}]}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
FAST = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
SDK_DIR = os.path.join(SOURCE_DIR, "tests", "sdk")


def hdr(entry: dict, name: str):
    for k, v in entry.get("headers", {}).items():
        if k.lower() == name:
            return v
    return None


class TracingCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("ta").start()
        cls.b = Mock("tb").start()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.a.reset()
        self.b.reset()

    def receiver(self, **kw) -> Receiver:
        r = Receiver(**kw).start()
        self.addCleanup(r.stop)
        return r

    def proxy(self, tracing: dict | None, env: dict | None = None, **extra) -> Proxy:
        cfg = config([backend(self.a), backend(self.b)],
                     {"m": [("ta", "up-a"), ("tb", "up-b")]},
                     fallback={"enable_backoff": False, "cooldown_seconds": 30}, **extra)
        if tracing is not None:
            cfg["tracing"] = tracing
        px = Proxy(cfg, env=dict(FAST, **(env or {}))).start()
        self.addCleanup(px.stop)
        return px

    def metric(self, px, name: str, labels: str) -> float:
        r = request(px.url, "GET", "/metrics", headers=auth())
        for line in r.text.splitlines():
            if line.startswith(name + "{" + labels + "}"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # ---- the failover trace ------------------------------------------------------------------

    def test_failover_trace_continues_the_client_trace(self):
        self.check_failover_trace("http/json")

    def test_failover_trace_in_protobuf(self):
        self.check_failover_trace("http/protobuf")

    def check_failover_trace(self, protocol: str):
        rc = self.receiver()
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url, "sample_ratio": 0.0,
                         "service_name": "proxy-under-test", "otlp_protocol": protocol})
        self.a.script({"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}})
        r = request(px.url, "POST", "/v1/chat/completions", CHAT,
                    headers={**auth(), "traceparent": f"00-{TRACE}-{PARENT}-01",
                             "tracestate": "vendor=abc,other=1"})
        self.assertEqual(r.status, 200, r.text)
        spans = rc.wait_spans(lambda s: s["traceId"] == TRACE and s["kind"] == 2)
        server = spans[0]
        self.assertEqual(rc.errors, [])
        # The client's span is the parent (the parent-based sampler followed its flag, not ratio 0).
        self.assertEqual(server["parentSpanId"], PARENT)
        self.assertEqual(server["name"], "chat m")
        self.assertEqual(server["traceState"], "vendor=abc,other=1")
        sa = attrs(server)
        self.assertEqual(sa["gen_ai.operation.name"], "chat")
        self.assertEqual(sa["gen_ai.request.model"], "m")
        self.assertEqual(sa["gen_ai.response.model"], "up-b")
        self.assertEqual(sa["gen_ai.request.max_tokens"], 77)
        self.assertEqual(sa["http.response.status_code"], 200)
        self.assertGreater(sa["gen_ai.usage.input_tokens"], 0)
        self.assertGreater(sa["gen_ai.usage.output_tokens"], 0)
        res = server["_resource"]
        self.assertEqual(res["service.name"], "proxy-under-test")
        self.assertIn("service.version", res)
        self.assertIn("service.instance.id", res)
        fo = [e for e in server.get("events", []) if e["name"] == "llm_proxy.failover"]
        self.assertEqual(len(fo), 1, server.get("events"))
        self.assertEqual(attrs(fo[0])["llm_proxy.from.backend"], "ta")
        self.assertEqual(attrs(fo[0])["llm_proxy.to.backend"], "tb")
        # One CLIENT span per attempt, children of the server span.
        kids = sorted((s for s in rc.spans() if s["traceId"] == TRACE and s["kind"] == 3),
                      key=lambda s: attrs(s)["llm_proxy.attempt"])
        self.assertEqual(len(kids), 2)
        for k in kids:
            self.assertEqual(k["parentSpanId"], server["spanId"])
        k1, k2 = attrs(kids[0]), attrs(kids[1])
        self.assertEqual(kids[0]["name"], "chat up-a")
        self.assertEqual(k1["gen_ai.request.model"], "up-a")
        self.assertEqual(k1["gen_ai.provider.name"], "openai")
        self.assertEqual(k1["server.address"], "127.0.0.1")
        self.assertEqual(k1["server.port"], self.a.port)
        self.assertEqual(k1["http.response.status_code"], 503)
        self.assertEqual(k1["error.type"], "overloaded")  # the 503 class
        self.assertEqual(kids[0]["status"]["code"], 2)
        self.assertTrue(any(e["name"] == "llm_proxy.cooldown" for e in kids[0].get("events", [])))
        self.assertNotIn("error.type", k2)
        self.assertEqual(k2["gen_ai.request.model"], "up-b")
        self.assertEqual(kids[1].get("status", {}), {})  # unset (protobuf omits it)
        # Each upstream got our traceparent, naming its own attempt span; tracestate kept.
        ra, rb = self.a.requests()[-1], self.b.requests()[-1]
        self.assertEqual(hdr(ra, "traceparent"), f"00-{TRACE}-{kids[0]['spanId']}-01")
        self.assertEqual(hdr(rb, "traceparent"), f"00-{TRACE}-{kids[1]['spanId']}-01")
        self.assertEqual(hdr(rb, "tracestate"), "vendor=abc,other=1")
        self.assertEqual(all(p.get("protobuf", False) for p in rc.posts), protocol == "http/protobuf")
        # Never prompt text.
        for p in rc.posts:
            self.assertNotIn(b"secret prompt text", p["raw"])

    def test_spans_larger_than_the_first_guess_stay_valid(self):
        # Many failed attempts with quote-heavy causes and a long escaped tracestate outgrow the
        # span writer's first buffer: every export must still be valid OTLP JSON.
        rc = self.receiver()
        routes = [("ta", f"up-{i}") for i in range(12)]
        cfg = config([backend(self.a)], {"m": routes},
                     fallback={"enable_backoff": False, "cooldown_seconds": 30})
        cfg["tracing"] = {"enabled": True, "otlp_endpoint": rc.url, "sample_ratio": 1.0}
        px = Proxy(cfg, env=FAST).start()
        self.addCleanup(px.stop)
        self.a.script(*([{"status": 503, "body": {"error": {"message": 'busy \\"' * 40,
                                                             "type": "server_error"}}}] * 12))
        r = request(px.url, "POST", "/v1/chat/completions", CHAT,
                    headers={**auth(), "traceparent": f"00-{TRACE}-{PARENT}-01",
                             "tracestate": "a=" + "\\" * 500})
        self.assertGreaterEqual(r.status, 500, r.text)
        spans = rc.wait_spans(lambda s: s["traceId"] == TRACE and s["kind"] == 2)
        self.assertEqual(rc.errors, [])
        kids = [s for s in rc.spans() if s["traceId"] == TRACE and s["kind"] == 3]
        self.assertEqual(len(kids), 12)
        self.assertEqual(spans[0]["traceState"], "a=" + "\\" * 500)

    def test_stream_has_a_first_token_event_and_root_trace(self):
        rc = self.receiver()
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url, "sample_ratio": 1.0})
        with stream(px.url, "/v1/chat/completions", dict(CHAT, stream=True), headers=auth()) as s:
            evs = s.all()
        self.assertTrue(evs)
        got = self.a.requests()[-1]
        tp = hdr(got, "traceparent")
        self.assertIsNotNone(tp)
        _, trace, span, flags = tp.split("-")
        self.assertEqual(flags, "01")
        kid = rc.wait_spans(lambda s: s["traceId"] == trace and s["kind"] == 3)[0]
        self.assertEqual(kid["spanId"], span)
        self.assertIn("gen_ai.first_token", [e["name"] for e in kid.get("events", [])])
        server = rc.wait_spans(lambda s: s["traceId"] == trace and s["kind"] == 2)[0]
        self.assertNotIn("parentSpanId", server)  # a root: the client sent no traceparent
        self.assertEqual(attrs(server)["llm_proxy.stream_end"], "clean")
        self.assertEqual(rc.errors, [])

    def test_parent_span_from_the_opentelemetry_js_sdk(self):
        if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "@opentelemetry", "sdk-trace-base")):
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=SDK_DIR, check=True, timeout=600)
        rc = self.receiver()
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url, "sample_ratio": 0.0})
        p = subprocess.run(["node", "otel_client.mjs", json.dumps(
            {"url": px.url, "apiKey": PROXY_KEY, "model": "m"})], cwd=SDK_DIR,
            capture_output=True, text=True, timeout=60)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, p.stderr[-2000:])
        out = json.loads(lines[-1])
        self.assertTrue(out["ok"], out)
        self.assertEqual(out["headers"]["traceparent"], f"00-{out['traceId']}-{out['spanId']}-01")
        server = rc.wait_spans(lambda s: s["traceId"] == out["traceId"] and s["kind"] == 2)[0]
        self.assertEqual(server["parentSpanId"], out["spanId"], "the SDK's span is our parent")
        kid = rc.wait_spans(lambda s: s["traceId"] == out["traceId"] and s["kind"] == 3)[0]
        self.assertEqual(hdr(self.a.requests()[-1], "traceparent"),
                         f"00-{out['traceId']}-{kid['spanId']}-01")
        self.assertEqual(rc.errors, [])

    # ---- propagation without sampling ---------------------------------------------------------

    def test_propagation_when_not_sampled(self):
        rc = self.receiver()
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url, "sample_ratio": 0.0})
        cases = [
            # (client headers, expected upstream traceparent, expected tracestate)
            ({}, None, None),
            ({"traceparent": f"00-{TRACE}-{PARENT}-00", "tracestate": "k=v"},
             f"00-{TRACE}-{PARENT}-00", "k=v"),
            ({"traceparent": f"00-{TRACE.upper()}-{PARENT}-01", "tracestate": "k=v"}, None, None),
            ({"traceparent": f"00-{'0' * 32}-{PARENT}-01"}, None, None),
            ({"traceparent": "garbage", "tracestate": "k=v"}, None, None),
            ({"tracestate": "k=v"}, None, None),
        ]
        for headers, want_tp, want_ts in cases:
            with self.subTest(headers=headers):
                self.a.reset()
                r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers={**auth(), **headers})
                self.assertEqual(r.status, 200, r.text)
                got = self.a.requests()[-1]
                self.assertEqual(hdr(got, "traceparent"), want_tp)
                self.assertEqual(hdr(got, "tracestate"), want_ts)
        time.sleep(0.3)
        self.assertEqual(rc.posts, [], "nothing was sampled, nothing is exported")

    def test_tracing_off_forwards_client_headers_unchanged(self):
        px = self.proxy(None)
        r = request(px.url, "POST", "/v1/chat/completions", CHAT,
                    headers={**auth(), "traceparent": "whatever", "tracestate": "k=v"})
        self.assertEqual(r.status, 200, r.text)
        got = self.a.requests()[-1]
        self.assertEqual(hdr(got, "traceparent"), "whatever")

    # ---- the collector misbehaving changes nothing for clients -------------------------------

    def test_collector_down_drops_are_counted(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        px = self.proxy({"enabled": True, "otlp_endpoint": f"http://127.0.0.1:{dead}"},
                        env={"OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
                             "OTEL_BSP_EXPORT_TIMEOUT": "1500"})
        for _ in range(12):
            r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
            self.assertEqual(r.status, 200, r.text)
        wait_until(lambda: self.metric(px, "llm_proxy_trace_spans_total", 'result="dropped"') > 0
                   and self.metric(px, "llm_proxy_trace_spans_total", 'result="failed"') > 0,
                   timeout=10, msg="dropped and failed spans counted")

    def test_collector_credentials_never_logged(self):
        rc = self.receiver(statuses=[400])  # refused for good: the warning names the endpoint
        secret = "Zq7s3cretOtlpPassw0rd"
        url = rc.url.replace("http://", f"http://collector:{secret}@")
        px = self.proxy({"enabled": True, "otlp_endpoint": url})
        r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        wait_until(lambda: "trace export to" in px.log_text(), timeout=10,
                   msg="the refusal was logged")
        log = px.log_text()
        self.assertIn("trace export to http://collector:", log)
        self.assertIn("(HTTP 400)", log)
        self.assertNotIn(secret, log)

    def test_collector_503_is_retried(self):
        rc = self.receiver(statuses=[503])
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url})
        r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        rc.wait_spans(lambda s: s["kind"] == 2, timeout=10)
        self.assertEqual([p["status"] for p in rc.posts][:2], [503, 200])
        self.assertEqual(rc.errors, [])
        wait_until(lambda: self.metric(px, "llm_proxy_trace_spans_total", 'result="exported"') >= 2,
                   msg="exported spans counted")

    def test_slow_collector_does_not_slow_clients(self):
        rc = self.receiver(delay_s=1.5)
        px = self.proxy({"enabled": True, "otlp_endpoint": rc.url},
                        env={"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"})
        t0 = time.time()
        for _ in range(6):
            r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
            self.assertEqual(r.status, 200, r.text)
        self.assertLess(time.time() - t0, 1.5, "requests waited for the collector")

    # ---- configuration -----------------------------------------------------------------------

    def test_otel_environment_variables_are_defaults(self):
        rc = self.receiver()
        px = self.proxy({"enabled": True}, env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": rc.url + "/",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=t1, authorization=Bearer%20sk-collector-SECRET",
            "OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
        r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
        self.assertEqual(r.status, 200, r.text)
        span = rc.wait_spans(lambda s: s["kind"] == 2)[0]
        self.assertEqual(span["_resource"]["service.name"], "from-env")
        post = rc.posts[0]
        self.assertTrue(post.get("protobuf"), "OTEL_EXPORTER_OTLP_PROTOCOL applies")
        self.assertEqual(post["headers"].get("x-tenant"), "t1")
        self.assertEqual(post["headers"].get("authorization"), "Bearer sk-collector-SECRET")

    def check(self, text: str) -> subprocess.CompletedProcess:
        d = tempfile.mkdtemp(prefix="lp-trace-check-")
        path = os.path.join(d, "c.yaml")
        with open(path, "w") as f:
            f.write(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        return subprocess.run([PROXY_BIN, "--check", "-config", path], capture_output=True,
                              text=True, env=env, timeout=30)

    def test_check_validates_the_tracing_block(self):
        base = ("backends:\n  - name: a\n    url: http://127.0.0.1:1/v1\n"
                "models:\n  m:\n    routes:\n      - {backend: a, model: x}\n")
        ok = self.check(base + "tracing:\n  enabled: true\n  otlp_endpoint: http://127.0.0.1:4318\n"
                        "  sample_ratio: 0.25\n  otlp_headers: {x-key: abc}\n  otlp_protocol: http/protobuf\n")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        for bad, words in [
            ("tracing:\n  enabled: true\n", "otlp_endpoint"),
            ("tracing:\n  enabled: true\n  otlp_endpoint: grpc://x:4317\n", "http"),
            ("tracing:\n  enabled: true\n  otlp_endpoint: http://x\n  otlp_protocol: grpc\n", "grpc"),
            ("tracing:\n  enabled: true\n  otlp_endpoint: http://x\n  otlp_protocol: http/xml\n", "otlp_protocol"),
            ("tracing:\n  enabled: true\n  otlp_endpoint: http://x\n  sample_ratio: 1.5\n", "sample_ratio"),
            ("tracing:\n  enabled: true\n  otlp_endpoint: http://x\n  otlp_headers: {\"bad name\": v}\n", "header"),
        ]:
            with self.subTest(bad=bad):
                p = self.check(base + bad)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(words, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
