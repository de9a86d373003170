"""Deploy artifacts: alert rules, Grafana dashboard, systemd unit, logrotate snippet.

Static checks run the real tools (promtool, systemd-analyze, logrotate; scripts/install-deps.sh
installs them) and cross-check every metric name against the one table in src/metrics.c. Two
end-to-end checks run the real proxy: its /metrics passes `promtool check metrics`, and a
logrotate run with the shipped snippet (postrotate kill -USR1) moves logging to the new files
without losing a line.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import (PROXY_BIN, PROXY_KEY, SOURCE_DIR, Mock, Proxy, auth, backend_key, config,
                     request, wait_until)

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
METRICS_C = os.path.join(SOURCE_DIR, "src", "metrics.c")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        raise AssertionError(f"{name} is not installed: run scripts/install-deps.sh "
                             "(packages prometheus, systemd, logrotate)")
    return path


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60)


def table_metrics() -> tuple[set[str], set[str]]:
    """(all metric names, histogram names) declared in src/metrics.c's table."""
    src = read(METRICS_C)
    table = src[src.index("g_defs[LP_M__COUNT]"):]
    names = set(re.findall(r'"(llm_proxy_[a-z0-9_]+)"', table))
    hists = set(re.findall(r'HISTOGRAM\(\s*"(llm_proxy_[a-z0-9_]+)"', table))
    return names, hists


def referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bllm_proxy_[a-z0-9_]+", text))


def unknown_metrics(used: set[str]) -> set[str]:
    names, hists = table_metrics()
    ok = set(names) | {h + s for h in hists for s in ("_bucket", "_sum", "_count")}
    return used - ok


class TableTest(unittest.TestCase):
    def test_table_is_sane(self):
        names, hists = table_metrics()
        self.assertGreaterEqual(len(names), 20)
        self.assertTrue(hists <= names)
        for n in ("llm_proxy_requests_total", "llm_proxy_upstream_ttft_seconds",
                  "llm_proxy_breaker_state", "llm_proxy_alias_usable_routes",
                  "llm_proxy_cooldown_active", "llm_proxy_tokens_total"):
            self.assertIn(n, names)


class AlertsTest(unittest.TestCase):
    path = os.path.join(DEPLOY, "alerts.yml")

    def test_promtool_check_rules(self):
        r = run(tool("promtool"), "check", "rules", self.path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_only_known_metrics(self):
        used = referenced_metrics(read(self.path))
        self.assertTrue(used)
        self.assertEqual(unknown_metrics(used), set())

    def test_required_alerts_present(self):
        text = read(self.path)
        for name in ("LlmProxyBreakerOpen", "LlmProxyBackendErrorRatioHigh",
                     "LlmProxyAliasUnusable", "LlmProxyStreamAborts", "LlmProxyUpstreamTTFTHigh"):
            self.assertIn(f"alert: {name}", text)

    def test_alerts_fire(self):
        """promtool's rule unit tests: the alerts fire on synthetic series, and stay quiet on
        healthy ones."""
        tests = f"""
rule_files:
  - {self.path}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'llm_proxy_breaker_state{{backend="a",instance="i1"}}'
        values: '1x10'
      - series: 'llm_proxy_breaker_state{{backend="b",instance="i1"}}'
        values: '0x10'
      - series: 'llm_proxy_alias_usable_routes{{alias="fast",instance="i1"}}'
        values: '0x10'
      - series: 'llm_proxy_alias_usable_routes{{alias="slow",instance="i1"}}'
        values: '2x10'
      - series: 'llm_proxy_build_info{{version="1",instance="i1"}}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: LlmProxyBreakerOpen
        exp_alerts:
          - exp_labels: {{severity: warning, backend: a}}
            exp_annotations:
              summary: "Circuit breaker open for backend a"
              description: "The breaker of a has been open for 2 minutes; its traffic is failing over to other routes."
      - eval_time: 5m
        alertname: LlmProxyAliasUnusable
        exp_alerts:
          - exp_labels: {{severity: critical, alias: fast}}
            exp_annotations:
              summary: "All routes of alias fast are unusable"
              description: "Every route of fast is cooling down, behind an open breaker or drained; requests for it fail with 502/503."
      - eval_time: 5m
        alertname: LlmProxyMetricsAbsent
        exp_alerts: []
  - interval: 1m
    input_series:
      # backend a: 60 attempts/min, half of them timeouts; backend b: healthy
      - series: 'llm_proxy_upstream_attempts_total{{backend="a",model="m",class="ok"}}'
        values: '0+30x30'
      - series: 'llm_proxy_upstream_attempts_total{{backend="a",model="m",class="timeout"}}'
        values: '0+30x30'
      - series: 'llm_proxy_upstream_attempts_total{{backend="b",model="m",class="ok"}}'
        values: '0+60x30'
      - series: 'llm_proxy_upstream_attempts_total{{backend="b",model="m",class="context_length"}}'
        values: '0+30x30'
      - series: 'llm_proxy_stream_aborts_total{{reason="upstream_cut"}}'
        values: '0+10x30'
      - series: 'llm_proxy_stream_aborts_total{{reason="client_gone"}}'
        values: '0+100x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: LlmProxyBackendErrorRatioHigh
        exp_alerts:
          - exp_labels: {{severity: warning, backend: a}}
            exp_annotations:
              summary: "Backend a fails 50% of attempts"
              description: "More than 20% of upstream attempts to a failed (network, timeout, rate limit, overload, 5xx, auth, quota) over 10 minutes."
      - eval_time: 20m
        alertname: LlmProxyStreamAborts
        exp_alerts:
          - exp_labels: {{severity: warning, reason: upstream_cut}}
            exp_annotations:
              summary: "Streams aborted after commit (upstream_cut)"
              description: "Committed streams are ending with an error event (upstream_cut) at 166.7m/s; clients see truncated answers."
"""
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "alerts_test.yml")
            with open(p, "w") as f:
                f.write(tests)
            r = run(tool("promtool"), "test", "rules", p)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class DashboardTest(unittest.TestCase):
    path = os.path.join(DEPLOY, "grafana-dashboard.json")

    def setUp(self):
        with open(self.path) as f:
            self.dash = json.load(f)
        self.exprs = [t["expr"] for p in self.dash["panels"] for t in p.get("targets", [])]

    def test_structure(self):
        self.assertEqual(self.dash["uid"], "llm-proxy")
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        self.assertGreaterEqual(len(self.exprs), 20)
        names = {v["name"] for v in self.dash["templating"]["list"]}
        self.assertEqual(names, {"datasource", "alias", "backend"})
        for p in self.dash["panels"]:
            if p["type"] != "row":
                self.assertTrue(p.get("targets"), p["title"])
                self.assertEqual(p["datasource"]["uid"], "${datasource}")

    def test_only_known_metrics(self):
        used = referenced_metrics(json.dumps(self.dash))
        self.assertEqual(unknown_metrics(used), set())

    def test_covers_the_brief(self):
        text = "\n".join(self.exprs)
        for needle in ("llm_proxy_requests_total", 'class!="ok"', "llm_proxy_failovers_total",
                       "histogram_quantile(0.99, sum by (le) (rate(llm_proxy_upstream_ttft_seconds_bucket",
                       "llm_proxy_breaker_state", "llm_proxy_cooldown_active",
                       "llm_proxy_tokens_total", "llm_proxy_overhead_seconds_bucket"):
            self.assertIn(needle, text)

    def test_exprs_are_valid_promql(self):
        """Each panel query, with Grafana's variables substituted, parses as PromQL (checked by
        promtool as a recording rule)."""
        subst = {"$__rate_interval": "5m", "$__range": "1h", "$alias": ".*", "$backend": ".*"}
        rules = []
        for i, e in enumerate(self.exprs):
            for k, v in subst.items():
                e = e.replace(k, v)
            self.assertNotIn("$", e)
            rules.append({"record": f"dashboard:expr{i}", "expr": e})
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "rules.yml")
            with open(p, "w") as f:
                json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
            r = run(tool("promtool"), "check", "rules", p)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class SystemdUnitTest(unittest.TestCase):
    path = os.path.join(DEPLOY, "llm-proxy.service")

    def setUp(self):
        self.text = read(self.path)

    def test_hardening_directives(self):
        for line in ("ExecStart=/usr/local/bin/llm-proxy ", "ExecReload=/bin/kill -HUP $MAINPID",
                     "KillSignal=SIGTERM", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ReadWritePaths=/var/log/llm-proxy", "ProtectHome=yes", "PrivateTmp=yes",
                     "PrivateDevices=yes", "CapabilityBoundingSet=\n",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                     "SystemCallFilter=@system-service", "LimitNOFILE=", "TimeoutStopSec="):
            self.assertIn(line, self.text)

    def verified_copy(self, d: str) -> str:
        self.assertTrue(os.access(PROXY_BIN, os.X_OK), f"LP_PROXY_BIN {PROXY_BIN} not built")
        unit = os.path.join(d, "llm-proxy.service")
        with open(unit, "w") as f:
            f.write(self.text.replace("ExecStart=/usr/local/bin/llm-proxy",
                                      f"ExecStart={os.path.abspath(PROXY_BIN)}"))
        return unit

    def test_systemd_analyze_verify(self):
        with tempfile.TemporaryDirectory() as d:
            r = run(tool("systemd-analyze"), "verify", self.verified_copy(d))
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 0, out)
            self.assertNotRegex(out, r"Unknown (key|section|lvalue)|Failed to parse", out)

    def test_security_exposure_low(self):
        """systemd's own exposure score stays at 2.0 or below ("OK")."""
        with tempfile.TemporaryDirectory() as d:
            r = run(tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20",
                    self.verified_copy(d))
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)


def logrotate_copy(d: str, log_dir: str, postrotate: str | None = None) -> str:
    """The shipped snippet, pointed at log_dir and the current user; optionally with another
    postrotate body."""
    import grp
    import pwd
    text = read(os.path.join(DEPLOY, "logrotate.conf"))
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = text.replace("/var/log/llm-proxy/", log_dir.rstrip("/") + "/")
    text = text.replace("llm-proxy llm-proxy", f"{user} {group}")
    if postrotate is not None:
        text = re.sub(r"postrotate\n.*?endscript", f"postrotate\n        {postrotate}\n    endscript",
                      text, flags=re.S)
    conf = os.path.join(d, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


class LogrotateTest(unittest.TestCase):
    def test_snippet(self):
        text = read(os.path.join(DEPLOY, "logrotate.conf"))
        directives = [ln.strip() for ln in text.splitlines() if not ln.strip().startswith("#")]
        self.assertNotIn("copytruncate", directives)
        self.assertRegex(text, r"postrotate\n(.|\n)*kill -USR1")
        self.assertIn("create 0640", text)

    def test_forced_rotation(self):
        with tempfile.TemporaryDirectory() as d:
            logs = os.path.join(d, "logs")
            os.mkdir(logs)
            for n in ("access.log", "ops.log"):
                with open(os.path.join(logs, n), "w") as f:
                    f.write("x\n")
            conf = logrotate_copy(d, logs)
            r = run(tool("logrotate"), "-f", "-s", os.path.join(d, "state"), conf)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            files = sorted(os.listdir(logs))
            self.assertEqual(len(files), 4, files)
            for n in ("access.log", "ops.log"):
                st = os.stat(os.path.join(logs, n))
                self.assertEqual(st.st_size, 0)
                self.assertEqual(st.st_mode & 0o777, 0o640)


class RunningProxyTest(unittest.TestCase):
    """The artifacts against the real binary."""

    def test_metrics_endpoint_passes_promtool(self):
        with Mock("up-a") as up, Proxy(config([up], {"m": [("up-a", "gpt-x")]})) as px:
            r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
            self.assertEqual(r.status, 200, r.text)
            m = request(px.url, "GET", "/metrics")
            self.assertEqual(m.status, 200, m.text)
            self.assertIn('llm_proxy_requests_total{alias="m",protocol="openai",status="200"} 1',
                          m.text)
            self.assertEqual(unknown_metrics(referenced_metrics(m.text)), set())
            p = run(tool("promtool"), "check", "metrics", stdin=m.text)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_logrotate_with_sigusr1(self):
        with tempfile.TemporaryDirectory() as d:
            logs = os.path.join(d, "logs")
            os.mkdir(logs)
            acc, ops = os.path.join(logs, "access.log"), os.path.join(logs, "ops.log")
            with Mock("up-a") as up:
                cfg = config([up], {"m": [("up-a", "gpt-x")]},
                             logging={"access_log": acc, "error_log": ops})
                with Proxy(cfg) as px:
                    def send():
                        r = request(px.url, "POST", "/v1/chat/completions", CHAT, headers=auth())
                        self.assertEqual(r.status, 200, r.text)

                    def chats(path):
                        return read(path).count('"path":"/v1/chat/completions"') if os.path.exists(path) else 0

                    send()
                    wait_until(lambda: chats(acc) == 1, msg="first access line")
                    conf = logrotate_copy(d, logs, postrotate=f"kill -USR1 {px.pid}")
                    r = run(tool("logrotate"), "-f", "-s", os.path.join(d, "state"), conf)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    rotated = [f for f in os.listdir(logs) if f.startswith("access.log-")]
                    self.assertEqual(len(rotated), 1, os.listdir(logs))
                    time.sleep(0.5)  # the writer thread notices the reopen request within ~200 ms
                    send()
                    wait_until(lambda: chats(acc) == 1, msg="line in the new file")
                    self.assertEqual(chats(os.path.join(logs, rotated[0])), 1)
            for path in [acc, ops] + [os.path.join(logs, f) for f in os.listdir(logs)]:
                text = read(path)
                self.assertNotIn(backend_key("up-a"), text, path)
                self.assertNotIn(PROXY_KEY, text, path)


if __name__ == "__main__":
    unittest.main()
