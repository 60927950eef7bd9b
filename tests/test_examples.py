"""Every example runs, against a real gearmand, as its own process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from servers import free_port, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run(name, *args, servers, timeout=60):
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), "--servers", servers, *args],
        capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


class Background:
    """An example started as a process; stopped with SIGTERM by PID."""

    def __init__(self, name, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLES, name), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=EXAMPLES, env=env,
        )

    def wait_ready(self, line="worker ready"):
        assert self.proc.stdout.readline().strip() == line, self.proc.stderr.read()
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def reverse_worker(gearmand):
    worker = Background("worker_reverse_string.py", "--servers", gearmand.address).wait_ready()
    yield worker
    assert worker.stop() == 0  # SIGTERM is a graceful stop


def test_client_reverse_nohost_and_wait(gearmand, reverse_worker):
    assert run("client_reverse_nohost.py", "Hello World", servers=gearmand.address) == "dlroW olleH\n"
    assert run("client_reverse_wait.py", "abc", servers=gearmand.address) == "result: cba\n"


def test_background(gearmand, reverse_worker):
    out = run("background.py", "--count", "3", servers=gearmand.address).splitlines()
    assert len(out) == 3
    assert all(line.startswith("H:") and "JobStatus(" in line for line in out)


def test_dedupe_uniques(gearmand, reverse_worker):
    out = run("dedupe_uniques.py", servers=gearmand.address)
    assert "same handle: True" in out
    assert "unique='' gets its own job: True" in out
    assert "explicit unique coalesces: True" in out
    assert "results: ['tupni emas', 'tupni emas', 'tupni emas', 'tupni rehto', 'tupni rehto']" in out


def test_batch_submit_10000_jobs(gearmand, reverse_worker):
    out = run("batch_submit.py", "--count", "10000", "--concurrency", "200", servers=gearmand.address, timeout=120)
    assert out.startswith("10000 done, 0 failed")


def test_legacy_threads_monkey_patched(gearmand, reverse_worker):
    out = run("legacy_threads.py", servers=gearmand.address).splitlines()
    assert out == [f"{n} {n} daerht" for n in range(10)]


def test_sleep_worker_and_client(gearmand):
    worker = Background("worker.py", "--servers", gearmand.address).wait_ready()
    try:
        out = run("client.py", servers=gearmand.address).splitlines()
    finally:
        assert worker.stop() == 0
    assert "sleep 1: done, worker said 'slept 1s'" in out
    assert "sleep 2: done, worker said 'slept 2s'" in out
    assert "sleep 2: 1/2" in out  # progress reported while it ran
    assert out[-1] == "all done"


def test_worker_status(gearmand):
    out = run("worker_status.py", servers=gearmand.address).splitlines()
    assert out == [
        "data line 1: 4 words", "status 1/3",
        "warning line 2 is empty", "data line 2: 0 words", "status 2/3",
        "data line 3: 5 words", "status 3/3",
        "result 9",
    ]


def test_gunicorn_gevent_app(gearmand, reverse_worker):
    port = free_port()
    env = dict(os.environ, GEARMAN_SERVERS=gearmand.address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--chdir", EXAMPLES, "gunicorn_app:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)

        def get(i):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/reverse?text=req{i}", timeout=30) as r:
                return r.read().decode()

        start = time.monotonic()
        with ThreadPoolExecutor(50) as pool:
            bodies = list(pool.map(get, range(200)))
        assert bodies == [f"req{i}"[::-1] for i in range(200)]
        assert time.monotonic() - start < 30
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/enqueue?text=bg", timeout=10) as r:
            assert r.read().startswith(b"H:")
    finally:
        proc.terminate()
        proc.wait(15)


def test_demo_main_job():
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "demo.py"), "--jobs", "500"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "500 correct results" in proc.stdout
    assert proc.stdout.rstrip().endswith("demo OK")


def test_demo_without_gearmand_uses_the_embedded_server():
    env = dict(os.environ, GEARMAND="/nonexistent/gearmand")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "demo.py"), "--jobs", "300"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("1. embedded gearman_gevent server listening on 127.0.0.1:")
    assert "300 correct results" in proc.stdout
    assert proc.stdout.rstrip().endswith("demo OK")
