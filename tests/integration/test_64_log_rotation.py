"""The proxy's own log rotation (issue 8 scope item 6; seed-system.md 2.11): the reference's
``logging`` rotation keys, era B flat (``max_file_size_mb``, ``max_backups``, ``compress``,
``rotate_by_size``...) and the v2.1 ``rotation:`` block, rotate the access and error logs by size
on the writer thread, gzip the rotated files and keep only ``max_backups`` of them; a live reload
turns rotation on; logrotate's rename + SIGUSR1 keeps working alongside.

Daily/hourly rotation and retention by age run on an injected clock in tests/unit/test_logrotate.c
(an integration test cannot wait for an hour).
"""

import gzip
import json
import os
import re
import signal
import time

from harness import config, backend, wait_until
from test_53_logs import CHAT, LogCase

LIMIT = 0.004  # MB: ~4 KB, a handful of access lines per file


class TestRotation(LogCase):
    def rotated(self, base):
        """Rotated files of base, oldest first (by the time in the name, then the -N suffix)."""
        def key(name):
            m = re.match(re.escape(base) + r"\.(\d{8}-\d{6})(?:-(\d+))?", name)
            return (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
        return sorted((f for f in os.listdir(self.dir) if f.startswith(base + ".")), key=key)

    def lines_of(self, name):
        p = os.path.join(self.dir, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(p, "rt", encoding="utf-8") as f:
            return [json.loads(x) for x in f.read().splitlines()]

    def drive(self, px, n):
        rids = []
        for _ in range(n):
            rid, r = self.post(px, "/v1/chat/completions", CHAT)
            self.assertEqual(r.status, 200, r.text)
            rids.append(rid)
            time.sleep(0.06)  # a writer batch per request or so: rotation happens between
        return rids

    def wait_line(self, rid):
        def seen():
            return any(e.get("req_id") == rid for e in self.lines_of("access.log"))
        wait_until(seen, 5, msg=f"access line of {rid}")

    def test_v21_block_size_rotation_with_gzip_and_backups(self):
        px = self.proxy({"level": "info", "access_log": self.access, "error_log": self.error,
                         "rotation": {"max_size_mb": LIMIT, "time_strategy": "none",
                                      "max_backups": 2, "compress": True}})
        rids = self.drive(px, 40)
        self.wait_line(rids[-1])
        rot = self.rotated("access.log")
        self.assertEqual(len(rot), 2, rot)  # more were made; only max_backups stay
        for name in rot:
            self.assertRegex(name, r"^access\.log\.\d{8}-\d{6}(-\d+)?\.gz$")
        seen = []
        for name in rot + ["access.log"]:
            lines = self.lines_of(name)  # every rotated file is complete, valid gzip of JSON
            self.assertTrue(lines, name)
            seen += [e["req_id"] for e in lines if e.get("type") == "access"]
        # no line is written twice, the newest ones are all there, in order
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(seen, rids[-len(seen):])
        self.assertGreater(len(seen), 5)
        self.assertLess(len(seen), 40)
        self.assertLessEqual(os.path.getsize(self.access), 4 * 1024 * 1024 // 1000 + 2048)

    def test_era_b_keys_rotate_uncompressed(self):
        px = self.proxy({"level": "info", "access_log": self.access, "error_log": self.error,
                         "max_file_size_mb": LIMIT, "rotate_by_size": True, "max_backups": 3,
                         "compress": False})
        rids = self.drive(px, 30)
        self.wait_line(rids[-1])
        rot = self.rotated("access.log")
        self.assertEqual(len(rot), 3, rot)
        for name in rot:
            self.assertRegex(name, r"^access\.log\.\d{8}-\d{6}(-\d+)?$")
            self.assertTrue(all(e.get("type") == "access" for e in self.lines_of(name)))

    def test_reload_turns_rotation_on_and_sigusr1_still_reopens(self):
        logging = {"level": "info", "access_log": self.access, "error_log": self.error}
        px = self.proxy(logging)
        rids = self.drive(px, 12)
        self.wait_line(rids[-1])
        self.assertEqual(self.rotated("access.log"), [])  # no rotation keys: none
        before = os.path.getsize(self.access)
        self.assertGreater(before, 4096)
        cfg = dict(px.config)
        cfg["logging"] = {**logging, "rotation": {"max_size_mb": LIMIT, "compress": True}}
        px.reload(cfg)
        def reloaded():
            with open(self.error, encoding="utf-8") as f:
                return "configuration reloaded" in f.read()
        wait_until(reloaded, 10, msg="reload logged")
        time.sleep(0.3)
        rids = self.drive(px, 10)
        self.wait_line(rids[-1])
        rot = self.rotated("access.log")
        self.assertTrue(rot, "the oversized file is rotated at the first write after the reload")
        self.assertTrue(all(n.endswith(".gz") for n in rot), rot)
        self.assertLess(os.path.getsize(self.access), before)
        # logrotate's way still works with rotation on: rename, SIGUSR1, a new file
        moved = self.access + ".manual"
        os.rename(self.access, moved)
        px.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        rid, r = self.post(px, "/v1/chat/completions", CHAT)
        self.assertEqual(r.status, 200)
        self.wait_line(rid)


if __name__ == "__main__":
    import unittest
    unittest.main()
