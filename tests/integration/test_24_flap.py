"""Resilience under load: two waves of 200 concurrent requests (OpenAI and Anthropic clients, streaming and
not) while backend a flaps between 500s, connection closes, slow answers and successes, and b is
healthy. Every request must get a correct 200 answer (failover hides a's faults), and the proxy
must exit cleanly under ASan afterwards (Proxy.stop checks the sanitizer output).
"""

import concurrent.futures
import time
import unittest

from harness import (Mock, Proxy, access_entries, admin_backends, auth, backend, config,
                     require_proxy, request, stream, wait_until)

N_REQUESTS = 200
N_ALIASES = 10


def one_request(url: str, i: int) -> tuple[int, str, str]:
    """Request i: alias i % N_ALIASES, protocol and streaming by i. Returns (status, kind,
    problem or '')."""
    anthropic = i % 2 == 1
    streaming = (i // 2) % 2 == 1
    alias = f"{'am' if anthropic else 'm'}{i % N_ALIASES}"
    kind = f"{'anthropic' if anthropic else 'openai'}/{'stream' if streaming else 'json'}"
    if anthropic:
        path, hdrs = "/v1/messages", auth("anthropic")
        body = {"model": alias, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    else:
        path, hdrs = "/v1/chat/completions", auth()
        body = {"model": alias, "messages": [{"role": "user", "content": "hi"}]}
    if streaming:
        body["stream"] = True
        s = stream(url, path, body, headers=hdrs, timeout=30)
        if s.status != 200:
            s.all()
            return s.status, kind, f"status {s.status}: {s.body[:200]!r}"
        events = s.all()
        if anthropic:
            names = [e.event for e in events]
            ok = names and names[0] == "message_start" and names[-1] == "message_stop" \
                and "error" not in names
        else:
            datas = [e.data for e in events]
            ok = datas and datas[-1] == "[DONE]" and not any('"error"' in d for d in datas)
        return 200, kind, "" if ok and s.complete else f"broken stream: {s.body[-300:]!r}"
    r = request(url, "POST", path, body, headers=hdrs, timeout=30)
    if r.status != 200:
        return r.status, kind, f"status {r.status}: {r.text[:200]}"
    b = r.json()
    text = b["content"][0]["text"] if anthropic else b["choices"][0]["message"]["content"]
    return 200, kind, "" if text.startswith("Hello from ") else f"bad body {r.text[:200]}"


class TestFlappingBackend(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("a", "--quiet").start()
        cls.b = Mock("b", "--quiet").start()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def test_200_concurrent_requests_while_a_flaps(self):
        models = {}
        for k in range(N_ALIASES):
            models[f"m{k}"] = [("a", f"ma{k}"), ("b", f"mb{k}")]
            models[f"am{k}"] = [("a-an", f"ma{k}"), ("b-an", f"mb{k}")]
        cfg = config([backend(self.a), backend(self.b),
                      backend("a-an", "anthropic", url=self.a.url),
                      backend("b-an", "anthropic", url=self.b.url)], models,
                     fallback={"cooldown_seconds": 1, "enable_circuit_breaker": True,
                               "circuit_failure_threshold": 3, "circuit_open_timeout": 1,
                               "circuit_success_threshold": 1},
                     timeout={"ttft_timeout": "2s", "read_timeout": "2s"})
        px = Proxy(cfg).start()
        self.addCleanup(px.stop)
        cycle = [{"status": 500}, {}, {"close": True}, {"delay_ms": 30},
                 {"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}},
                 {}, {"status": 429, "headers": {"Retry-After": "1"}}, {"close": True}]
        self.a.script(*(cycle * 60))
        results = []
        for wave in range(2):
            if wave:
                time.sleep(1.1)  # cooldowns (1 s) expire, open breakers turn half-open
            with concurrent.futures.ThreadPoolExecutor(max_workers=N_REQUESTS) as ex:
                results += list(ex.map(lambda i: one_request(px.url, i), range(N_REQUESTS)))
        problems = [(i, k, p) for i, (_, k, p) in enumerate(results) if p]
        self.assertEqual(problems, [], f"{len(problems)} bad answers")
        self.assertEqual(sum(1 for s, _, _ in results if s == 200), 2 * N_REQUESTS)
        n_a, n_b = len(self.a.requests()), len(self.b.requests())
        print(f"\n  flap: a served/failed {n_a} attempts, b {n_b}")
        self.assertGreater(n_a, 0)
        # One access line per request, each ending with an ok attempt.
        lines = wait_until(lambda: (lambda l: l if len(l) >= 2 * N_REQUESTS else None)(
            [e for e in access_entries(px) if e.get("alias")]), timeout=10, msg="access lines")
        self.assertEqual(len(lines), 2 * N_REQUESTS)
        for e in lines:
            self.assertEqual(e["attempts"][-1]["class"], "ok", e)
            self.assertEqual(e["status"], 200, e)
        self.assertEqual(len(admin_backends(px)["backends"]), 4)
        self.assertEqual(request(px.url, "GET", "/health").status, 200)


if __name__ == "__main__":
    unittest.main()
