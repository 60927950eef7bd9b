"""The bounded (CI) form of the soak: ``benchmarks/soak.py --quick``.

Client and worker processes of this library run ~9 000 jobs (half
background, through gearmand's persistent sqlite queue; half foreground)
while two gearmands are SIGKILLed and restarted at random moments; nothing
acknowledged may be lost and no result may be wrong.  See the script's
docstring for the exact definitions.  About 20-25 s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOAK = os.path.join(ROOT, "benchmarks", "soak.py")


@pytest.mark.parametrize("server", ["gearmand", "embedded"])
def test_soak_quick_loses_nothing(server):
    proc = subprocess.run([sys.executable, SOAK, "--quick", "--json", "--server", server], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=150)
    print(proc.stdout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    s = json.loads(lines[-1])
    assert s["lost"] == 0, s
    assert s["corrupt"] == 0, s
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the run was real: gearmand died under load, jobs of both kinds flowed
    assert s["restarts"] >= 2, s
    assert s["acknowledged_background"] > 1000 and s["acknowledged_foreground"] > 1000, s
    assert s["executed_background"] == s["acknowledged_background"], s
    # every acknowledged job is accounted for exactly once
    assert s["executed"] + s["foreground_failed"] == s["acknowledged"], s
    assert set(s["peak_rss_kb"]) == {"client-0", "client-1", "worker-0", "worker-1",
                                     "gearmand-0", "gearmand-1"}
    assert all(v > 0 for v in s["peak_rss_kb"].values()), s["peak_rss_kb"]
