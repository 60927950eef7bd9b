"""The benchmark's quick form runs, so it cannot rot (numbers are not
asserted here: speed is measured by benchmarks/run.py, not by tests)."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_runs():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for row in ("S1 bg submit", "S1 drain", "S2 sequential", "S3 100 in flight", "S4 1000 x 50 ms", "S5"):
        assert row in out, out
    assert "gearman_gevent" in out


def test_hotpath_benchmark_runs():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "hotpath.py"), "--jobs", "500", "--repeat", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "this checkout:" in proc.stdout and "us CPU per job" in proc.stdout, proc.stdout
