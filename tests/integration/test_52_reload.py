"""Live reload: POST /admin/reload, SIGHUP and the config-file watcher; an invalid file keeps
the old config; 50 streams in flight survive a reload; a listen change needs a restart;
cooldowns and drains survive.

Every test starts its own proxy (a reload changes its config). The watcher reacts to any write
of config.yaml, so the tests that must tell the triggers apart first "detach" the watcher: the
file becomes a symlink to real.yaml in the same directory, and writes to real.yaml raise no
event for the name config.yaml (the watcher compares names), while SIGHUP and /admin/reload
still read config.yaml.
"""

import concurrent.futures
import os
import re
import signal
import socket
import time
import unittest

from harness import (Mock, Proxy, auth, backend, backend_health, config, free_port, metric,
                     pair_health, require_proxy, request, scrape, stream, wait_until)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAMS = 50


def chat(model, **kw):
    return {**CHAT, "model": model, **kw}


class ReloadCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_proxy()
        cls.a = Mock("a").start()
        cls.b = Mock("b").start()
        # Paced default streams: 20 deltas 100 ms apart, about 2 s per stream.
        cls.slow = Mock("slow", "--chunks", "20", "--chunk-interval-ms", "100").start()

    @classmethod
    def tearDownClass(cls):
        for m in (cls.a, cls.b, cls.slow):
            m.stop()

    def setUp(self):
        for m in (self.a, self.b, self.slow):
            m.reset()

    def cfg(self, **aliases):
        models = {"m": [("a", "ma"), ("b", "mb")], **aliases}
        return config([backend(self.a), backend(self.b), backend(self.slow)], models,
                      fallback={"enable_backoff": False, "cooldown_seconds": 60})

    def start(self, cfg=None) -> Proxy:
        px = Proxy(cfg or self.cfg()).start()
        self.addCleanup(px.stop)
        return px

    def ask(self, px, model, timeout=10.0):
        return request(px.url, "POST", "/v1/chat/completions", chat(model), headers=auth(),
                       timeout=timeout)

    def admin_reload(self, px):
        return request(px.url, "POST", "/admin/reload", headers=auth(), timeout=20)

    def reloads(self, px, result="ok"):
        return metric(scrape(px), "llm_proxy_config_reloads_total", result=result)

    def detach_watcher(self, px) -> str:
        """Make config.yaml a symlink to real.yaml; return real.yaml's path. Waits for the reload
        that creating the link triggers, so no watcher reload is pending afterwards."""
        n = self.reloads(px)
        d = os.path.dirname(px.config_path)
        real = os.path.join(d, "real.yaml")
        os.rename(px.config_path, real)
        os.symlink("real.yaml", px.config_path)
        wait_until(lambda: self.reloads(px) >= n + 1, timeout=5, msg="reload after the symlink")
        time.sleep(0.3)  # nothing else may be debounced
        return real

    def write(self, px, path, cfg):
        with open(path, "w") as f:
            f.write(px._render(cfg))


class TestAdminReload(ReloadCase):
    def test_admin_reload_new_alias_works_immediately(self):
        px = self.start()
        real = self.detach_watcher(px)
        self.assertEqual(self.ask(px, "fresh").status, 404)
        n_ok = self.reloads(px)
        self.write(px, real, self.cfg(fresh=[("b", "mb-fresh")]))
        r = self.admin_reload(px)
        self.assertEqual(r.status, 200, r.text)
        self.assertIs(r.json()["ok"], True, r.text)
        r = self.ask(px, "fresh")  # no wait: the reply came after the swap
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["model"], "mb-fresh")
        self.assertEqual(self.ask(px, "m").status, 200)
        self.assertEqual(self.reloads(px), n_ok + 1)

    def test_invalid_file_reports_position_and_keeps_old_config(self):
        px = self.start()
        real = self.detach_watcher(px)
        n_err = self.reloads(px, "error")
        bad = self.cfg(fresh=[("ghost", "g1")])  # a route to an unknown backend
        self.write(px, real, bad)
        r = self.admin_reload(px)
        self.assertEqual(r.status, 400, r.text)
        body = r.json()
        self.assertIs(body["ok"], False, r.text)
        self.assertRegex(body["message"], r"config\.yaml:\d+:\d+: error: .*ghost", r.text)
        # the reported position points at the offending value
        m = re.search(r"config\.yaml:(\d+):(\d+):", body["message"])
        line = px._render(bad).splitlines()[int(m.group(1)) - 1]
        self.assertIn('"ghost"', line[int(m.group(2)) - 1:])
        # old config keeps serving
        self.assertEqual(self.ask(px, "m").status, 200)
        self.assertEqual(self.ask(px, "fresh").status, 404)
        self.assertEqual(self.reloads(px, "error"), n_err + 1)
        # YAML syntax error
        with open(real, "w") as f:
            f.write("listen: 127.0.0.1:1\nbackends: [\n  {name: a\n")
        r = self.admin_reload(px)
        self.assertIs(r.json()["ok"], False, r.text)
        self.assertRegex(r.json()["message"], r"config\.yaml:\d+:\d+: error", r.text)
        self.assertEqual(self.ask(px, "m").status, 200)
        # fixing the file makes the next reload succeed
        self.write(px, real, self.cfg(fresh=[("b", "mb")]))
        r = self.admin_reload(px)
        self.assertIs(r.json()["ok"], True, r.text)
        self.assertEqual(self.ask(px, "fresh").status, 200)

    def test_sighup_reloads(self):
        px = self.start()
        real = self.detach_watcher(px)
        self.write(px, real, self.cfg(hup=[("a", "ma-hup")]))
        time.sleep(0.6)  # the watcher is detached: nothing happens without a trigger
        self.assertEqual(self.ask(px, "hup").status, 404, "reloaded without a trigger")
        t0 = time.monotonic()
        px.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.ask(px, "hup").status == 200, timeout=1.0,
                   msg="alias added by SIGHUP")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertTrue(px.alive())


class TestWatcher(ReloadCase):
    def test_file_rewrite_reloads_within_1s(self):
        px = self.start()
        self.assertEqual(self.ask(px, "w1").status, 404)
        t0 = time.monotonic()
        px.write_config(self.cfg(w1=[("a", "ma-w1")]))
        wait_until(lambda: self.ask(px, "w1", timeout=2).status == 200, timeout=1.0,
                   msg="alias w1 after rewriting the file")
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_atomic_rename_reloads_within_1s(self):
        """Editors and config managers write a temporary file and rename it over the config."""
        px = self.start()
        tmp = px.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(px._render(self.cfg(w2=[("b", "mb-w2")])))
        t0 = time.monotonic()
        os.rename(tmp, px.config_path)
        wait_until(lambda: self.ask(px, "w2", timeout=2).status == 200, timeout=1.0,
                   msg="alias w2 after renaming over the file")
        self.assertLess(time.monotonic() - t0, 1.0)


class TestReloadUnderLoad(ReloadCase):
    def test_reload_with_50_streams_in_flight_loses_none(self):
        cfg = self.cfg(s=[("slow", "slow-model")])
        px = self.start(cfg)

        def one(i):
            s = stream(px.url, "/v1/chat/completions", chat("s", stream=True), headers=auth(),
                       timeout=30)
            evs = s.all()
            return s.status, s.complete, evs

        with concurrent.futures.ThreadPoolExecutor(STREAMS) as pool:
            futs = [pool.submit(one, i) for i in range(STREAMS)]
            # All 50 in progress at the proxy, and (nearly) all streaming from the mock. A few
            # cold upstream connects may lag (see bugs-ops.md O8), so not all 50 are required
            # at the mock for this test.
            wait_until(lambda: metric(scrape(px), "llm_proxy_active_requests") >= STREAMS,
                       timeout=10, msg=f"{STREAMS} requests in flight at the proxy")
            wait_until(lambda: self.slow.stats()["active"] >= STREAMS - 10, timeout=10,
                       msg=f"{STREAMS - 10}+ streams in flight at the mock")
            t0 = time.monotonic()
            px.write_config(self.cfg(s=[("slow", "slow-model")], late=[("b", "mb-late")]))
            r = self.admin_reload(px)
            self.assertIs(r.json()["ok"], True, r.text)
            late = self.ask(px, "late")
            self.assertEqual(late.status, 200, late.text)
            self.assertLess(time.monotonic() - t0, 1.0, "new alias not served within 1 s")
            self.assertGreaterEqual(self.slow.stats()["active"], STREAMS // 2,
                                    "the streams were not in flight during the reload")
            results = [f.result(timeout=60) for f in futs]
        for i, (status, complete, evs) in enumerate(results):
            self.assertEqual(status, 200, f"stream {i}")
            self.assertTrue(complete, f"stream {i} truncated")
            self.assertEqual(evs[-1].data, "[DONE]", f"stream {i} without its terminal event")
            deltas = [e for e in evs[:-1] if '"content"' in e.data and '"role"' not in e.data]
            self.assertEqual(len(deltas), 20, f"stream {i} lost chunks")
        m = scrape(px)
        self.assertEqual(metric(m, "llm_proxy_stream_aborts_total"), 0)
        self.assertEqual(metric(m, "llm_proxy_requests_total", alias="s", status="200"), STREAMS)
        wait_until(lambda: metric(scrape(px), "llm_proxy_active_streams") == 0, timeout=3,
                   msg="active_streams back to 0")


class TestReloadState(ReloadCase):
    def test_listen_change_needs_restart_and_old_port_keeps_serving(self):
        px = self.start()
        real = self.detach_watcher(px)
        other = free_port()
        text = px._render(self.cfg(moved=[("a", "ma")])).replace(
            f"127.0.0.1:{px.port}", f"127.0.0.1:{other}")
        with open(real, "w") as f:
            f.write(text)
        r = self.admin_reload(px)
        self.assertEqual(r.status, 200, r.text)
        body = r.json()
        self.assertIs(body["ok"], True, r.text)
        self.assertIn("restart", body["message"])
        self.assertIn("listen", body["message"])
        # still on the old port, with the rest of the new config applied
        self.assertEqual(self.ask(px, "moved").status, 200)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", other), timeout=1).close()
        self.assertIn("restart", px.log_text())

    def test_cooldowns_and_drains_survive_reload(self):
        px = self.start()
        self.a.script({"status": 500, "body": {"error": {"message": "boom",
                                                         "type": "server_error"}}})
        self.assertEqual(self.ask(px, "m").status, 200)
        self.assertTrue(pair_health(px, "a", "ma")["cooling"])
        r = request(px.url, "POST", "/admin/backends/slow/drain", headers=auth())
        self.assertEqual(r.status, 200, r.text)
        px.write_config(self.cfg(extra=[("slow", "x"), ("b", "mb")]))
        r = self.admin_reload(px)
        self.assertIs(r.json()["ok"], True, r.text)
        self.assertEqual(self.ask(px, "extra").status, 200)  # the new snapshot is live
        cool = pair_health(px, "a", "ma")
        self.assertTrue(cool["cooling"], "cooldown lost by the reload")
        self.assertGreater(cool["remaining_ms"], 50000)
        self.assertTrue(backend_health(px, "slow")["drained"], "drain lost by the reload")
        self.a.reset()
        self.b.reset()
        self.slow.reset()
        self.assertEqual(self.ask(px, "m").status, 200)
        self.assertEqual(len(self.a.requests()), 0, "cooling route used after the reload")
        self.assertEqual(len(self.slow.requests()), 0, "drained backend used after the reload")
        self.assertEqual(len(self.b.requests()), 1)
        self.assertEqual(metric(scrape(px), "llm_proxy_cooldown_active", backend="a",
                                model="ma"), 1)


if __name__ == "__main__":
    unittest.main()
