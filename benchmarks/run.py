#!/usr/bin/env python3
"""Benchmark gearman_gevent against a libgearman C ceiling, pygearman and gear.

    .venv/bin/python benchmarks/run.py                 # full run (~5-10 min)
    .venv/bin/python benchmarks/run.py --quick         # CI form, a few seconds
    .venv/bin/python benchmarks/run.py --scenarios S1,S3 --repeat 5
    .venv/bin/python benchmarks/run.py --profile --scenarios S3   # py-spy our side

Every measurement starts its own gearmand on a free 127.0.0.1 port, runs the
client and the worker as separate processes (drivers in benchmarks/drivers/,
the C program in benchmarks/c/), takes CPU time from /proc/PID/stat and peak
RSS from VmHWM, and stops everything it started, by PID.  Each measurement is
repeated and the median is reported; ratios are between numbers of this run.
See benchmarks/README.rst.  Uses the standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "build")
DRIVERS = os.path.join(HERE, "drivers")
PEERS_VENV = os.path.join(HERE, ".venv-peers")
PEER_PACKAGES = ["pygearman", "gear"]
GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
#: Which job server every measurement starts: "gearmand" or "embedded"
#: (gearman_gevent.server); set by --server.
SERVER = "gearmand"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FUNC = "bench"
SIZE = 100

#: Implementations, in table order.  Each drives its own client and worker.
IMPLS = ["c", "gg", "ggx", "pyg", "gear", "gear_nd"]
LABELS = {
    "c": "C",
    "gg": "gearman_gevent",
    "ggx": "gg --gg-path",
    "pyg": "pygearman",
    "gear": "gear",
    "gear_nd": "gear+nodelay",
}

#: Client windows tried for S1 background submits (submits pipelined per
#: window); the best median is reported.  gear cannot pipeline (window 1).
S1_WINDOWS = {"c": [100, 1000, 20000], "gg": [100, 1000, 20000], "ggx": [100, 1000, 20000],
              "pyg": [1000], "gear": [1], "gear_nd": [1]}
S1_WINDOWS_QUICK = {"c": [1000], "gg": [1000], "ggx": [1000]}
#: The window of the client that preloads the queue for S1 drain.
LOAD_WINDOW = 1000

#: Workers without job concurrency (S3/S4/S5 use one job at a time there).
NO_CONCURRENCY = {"pyg"}


class Skip(Exception):
    """A measurement that cannot be made (reported, not fatal)."""


class Failed(Exception):
    """A measurement that went wrong (timeout, crash, wrong count)."""


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- processes
class Proc:
    """A child process we started; always stopped by its PID.

    Its stdout is read unbuffered, line by line; its stderr goes to a file in
    build/logs/ (a pipe nobody reads could fill up and block it)."""

    live: "list[Proc]" = []
    counter = 0

    def __init__(self, argv, *, env=None, stdout=subprocess.PIPE, name=""):
        self.name = name or os.path.basename(argv[0])
        os.makedirs(os.path.join(BUILD, "logs"), exist_ok=True)
        Proc.counter += 1
        safe = "".join(ch if ch.isalnum() else "_" for ch in self.name)
        self.errpath = os.path.join(BUILD, "logs", f"{Proc.counter % 20:02d}-{safe}.stderr")
        self._err = open(self.errpath, "wb")
        self.p = subprocess.Popen(
            argv, stdout=stdout, stderr=self._err, stdin=subprocess.DEVNULL,
            env=env, bufsize=0, start_new_session=True,
        )
        self.pid = self.p.pid
        self.profiler = os.path.basename(argv[0]) == "py-spy"
        self._buf = b""
        Proc.live.append(self)

    def children(self) -> "list[int]":
        pids = []
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                    pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return pids

    def stop(self, grace: float = 2.0) -> None:
        if self.profiler and self.p.poll() is None:
            # py-spy writes its profile on SIGINT; then stop the profiled child by PID
            kids = self.children()
            os.kill(self.pid, signal.SIGINT)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                pass
            for kid in kids:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.kill(kid, sig)
                        time.sleep(0.2)
                    except ProcessLookupError:
                        break
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        if self.p.stdout is not None:
            self.p.stdout.close()
        self._err.close()
        if self in Proc.live:
            Proc.live.remove(self)

    def readline(self, timeout: float) -> str:
        """One line of stdout within *timeout* seconds ('' on EOF)."""
        import selectors

        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            try:
                ready = sel.select(max(0.0, left))
            finally:
                sel.close()
            if not ready:
                raise Failed(f"{self.name}: no output within {timeout:.0f}s (hung; killed)")
            chunk = os.read(fd, 65536)
            if not chunk:
                line, self._buf = self._buf, b""
                return line.decode()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        if self.profiler and not line.startswith((b"{", b"READY")):  # the profiler's own output
            return self.readline(max(0.1, deadline - time.monotonic()))
        return line.decode() + "\n"

    def stderr_tail(self) -> str:
        try:
            self._err.flush()
            with open(self.errpath, "rb") as f:
                return f.read()[-800:].decode("utf-8", "replace")
        except OSError:
            return ""


def stop_all() -> None:
    for p in list(Proc.live):
        p.stop(grace=1.0)


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gearmand:
    def __init__(self):
        os.makedirs(os.path.join(BUILD, "logs"), exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            logf = os.path.join(BUILD, "logs", "gearmand.log")
            if SERVER == "embedded":  # gearman_gevent's own job server
                cmd = [sys.executable, "-m", "gearman_gevent.server", "--listen", "127.0.0.1",
                       "--port", str(self.port)]
            else:
                cmd = [GEARMAND, "--listen", "127.0.0.1", "--port", str(self.port), "--threads", "2",
                       "--log-file", logf]
            self.proc = Proc(cmd, stdout=subprocess.DEVNULL, name="gearmand")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.p.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.02)
            self.proc.stop()
        raise Failed("gearmand did not start")

    @property
    def pid(self):
        return self.proc.pid

    def status(self) -> dict:
        """Admin 'status': {func: (queued, running, workers)}."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"status\n")
            buf = b""
            while not buf.endswith(b".\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        out = {}
        for line in buf.decode().splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                out[parts[0]] = tuple(int(x) for x in parts[1:])
        return out

    def wait_workers(self, func: str, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().get(func, (0, 0, 0))[2] >= n:
                return
            time.sleep(0.02)
        raise Failed(f"only {self.status().get(func, (0, 0, 0))[2]} of {n} worker connections registered {func}")

    def stop(self):
        self.proc.stop()


# ------------------------------------------------------------------ drivers
class Env:
    def __init__(self, args):
        self.args = args
        self.main_py = sys.executable
        self.peers_py = None
        self.c_bin = None
        self.have_worker = False
        self.notes: list[str] = []

    def cmd(self, impl: str, role: str):
        if impl == "c":
            return [self.c_bin], None
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if impl in ("gg", "ggx"):
            if impl == "ggx":
                env["BENCH_GG_PATH"] = self.args.gg_path
            return [self.main_py, os.path.join(DRIVERS, "gg.py")], env
        py = self.peers_py
        if impl == "pyg":
            return [py, os.path.join(DRIVERS, "pyg.py")], env
        if impl in ("gear", "gear_nd"):
            env["BENCH_GEAR_NODELAY"] = "1" if impl == "gear_nd" else "0"
            return [py, os.path.join(DRIVERS, "gear_drv.py")], env
        raise ValueError(impl)

    def profiled(self, impl, role, argv, tag):
        if not (self.args.profile and impl == "gg"):
            return argv
        spy = shutil.which("py-spy") or os.path.join(PEERS_VENV, "bin", "py-spy")
        if not os.path.exists(spy):
            return argv
        out = os.path.join(BUILD, "profiles", f"{tag}-{role}.txt")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        return [spy, "record", "--nonblocking", "-r", "997", "-f", "raw", "-o", out, "--"] + argv

    def worker_impl(self, impl: str) -> str:
        """The worker that pairs with *impl*'s client."""
        if impl in ("gg", "ggx") and not self.have_worker:
            return "c" if self.c_bin else ""
        return impl


def setup_c(env: Env) -> None:
    src = os.path.join(HERE, "c", "bench.c")
    out = os.path.join(BUILD, "bench")
    os.makedirs(BUILD, exist_ok=True)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        r = subprocess.run(["gcc", "-O2", "-Wall", "-o", out, src, "-lgearman", "-lpthread"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            env.notes.append("C ceiling not built (gcc/libgearman-dev missing?): " + r.stderr.strip()[-300:])
            return
    env.c_bin = out


def setup_peers(env: Env) -> None:
    py = os.path.join(PEERS_VENV, "bin", "python")
    if not os.path.exists(py):
        log(f"creating {PEERS_VENV} ...")
        try:
            venv.EnvBuilder(with_pip=True).create(PEERS_VENV)
        except Exception as exc:  # noqa: BLE001
            env.notes.append(f"peers venv not created: {exc}")
            return
    missing = []
    for mod, pkg in (("gearman", "pygearman"), ("gear", "gear"), (None, "py-spy")):
        if mod is None:
            if not os.path.exists(os.path.join(PEERS_VENV, "bin", "py-spy")):
                missing.append(pkg)
        elif subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode:
            missing.append(pkg)
    if missing:
        log(f"installing {' '.join(missing)} into {PEERS_VENV} from PyPI ...")
        r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + missing,
                           capture_output=True, text=True, timeout=600)
        if r.returncode:
            # one at a time, so one broken package does not take the others down
            for pkg in missing:
                subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", pkg],
                               capture_output=True, text=True, timeout=300)
    env.peers_py = py
    env.peer_ok = {}
    for mod, impls in (("gearman", ["pyg"]), ("gear", ["gear", "gear_nd"])):
        ok = subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode == 0
        for impl in impls:
            env.peer_ok[impl] = ok
        if not ok:
            env.notes.append(f"peer {mod!r} could not be installed from PyPI: skipped")


def versions(env: Env) -> dict:
    out = {}
    for name, py, code in (
        ("gearman_gevent", env.main_py, "import gearman_gevent as m; print(m.__version__)"),
        ("gevent", env.main_py, "import gevent as m; print(m.__version__)"),
        ("pygearman", env.peers_py, "import importlib.metadata as m; print(m.version('pygearman'))"),
        ("gear", env.peers_py, "import importlib.metadata as m; print(m.version('gear'))"),
    ):
        if py:
            r = subprocess.run([py, "-c", code], capture_output=True, text=True)
            out[name] = r.stdout.strip() or "n/a"
    r = subprocess.run([GEARMAND, "--version"], capture_output=True, text=True)
    out["gearmand"] = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"
    return out


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "python": platform.python_version()}


# -------------------------------------------------------------- measuring
def run_client(env: Env, impl, gd: Gearmand, mode, n, inflight, timeout, tag):
    argv, penv = env.cmd(impl, "client")
    argv = env.profiled(impl, "client", argv + ["client", mode, str(gd.port), FUNC, str(n), str(SIZE), str(inflight)], tag)
    p = Proc(argv, env=penv, name=f"{LABELS[impl]} client")
    try:
        line = p.readline(timeout)
        if not line.startswith("{"):
            p.p.wait(5) if p.p.poll() is None else None
            raise Failed(f"{LABELS[impl]} client failed: {p.stderr_tail().strip()[-400:]}")
        res = json.loads(line)
    finally:
        p.stop()
    if res.get("ok", res["jobs"]) < n:
        raise Failed(f"{LABELS[impl]} client: only {res.get('ok')} of {n} jobs succeeded")
    return res


def start_worker(env: Env, impl, gd: Gearmand, max_jobs, conc, sleep_ms, tag):
    argv, penv = env.cmd(impl, "worker")
    argv = env.profiled(impl, "worker", argv + ["worker", str(gd.port), FUNC, str(max_jobs), str(conc), str(sleep_ms)], tag)
    w = Proc(argv, env=penv, name=f"{LABELS[impl]} worker")
    line = w.readline(20)
    if line.strip() != "READY":
        tail = w.stderr_tail() if w.p.poll() is not None else ""
        w.stop()
        raise Failed(f"{LABELS[impl]} worker did not start: {line.strip()} {tail.strip()[-400:]}")
    return w


def measure_fg(env: Env, impl, mode, n, inflight, conc, sleep_ms, timeout, tag):
    """A foreground scenario: a worker of *impl* (kept running) and a client."""
    wimpl = env.worker_impl(impl)
    if not wimpl:
        raise Skip("no worker available (our Worker missing and no C build)")
    if wimpl in NO_CONCURRENCY:
        conc = 1
    gd = Gearmand()
    w = None
    try:
        w = start_worker(env, wimpl, gd, 0, conc, sleep_ms, tag)
        gd.wait_workers(FUNC, conc if wimpl == "c" else 1)
        time.sleep(0.05)
        wc0, gc0 = cpu_seconds(w.pid), cpu_seconds(gd.pid)
        res = run_client(env, impl, gd, mode, n, inflight, timeout, tag)
        res["worker_cpu"] = cpu_seconds(w.pid) - wc0
        res["gearmand_cpu"] = cpu_seconds(gd.pid) - gc0
        res["worker_hwm_kb"] = vm_hwm_kb(w.pid)
        res["worker_impl"] = wimpl
        return res
    finally:
        if w is not None:
            w.stop()
        gd.stop()


def measure_submit(env: Env, impl, n, window, timeout, tag):
    gd = Gearmand()
    try:
        gc0 = cpu_seconds(gd.pid)
        res = run_client(env, impl, gd, "bg", n, window, timeout, tag)
        res["gearmand_cpu"] = cpu_seconds(gd.pid) - gc0
        return res
    finally:
        gd.stop()


def measure_drain(env: Env, impl, n, timeout, tag):
    wimpl = env.worker_impl(impl)
    if wimpl != impl:
        raise Skip("our Worker is not there yet")
    gd = Gearmand()
    w = None
    try:
        loader = "c" if env.c_bin else "gg"
        run_client(env, loader, gd, "bg", n, LOAD_WINDOW, timeout, tag + "-load")
        queued = gd.status().get(FUNC, (0, 0, 0))[0]
        if queued < n:
            raise Failed(f"only {queued} of {n} jobs queued")
        gc0 = cpu_seconds(gd.pid)
        w = start_worker(env, impl, gd, n, 1, 0, tag)
        line = w.readline(timeout)
        if not line.startswith("{"):
            raise Failed(f"{LABELS[impl]} worker: {line.strip()} {w.stderr_tail()[-300:]}")
        res = json.loads(line)
        res["worker_cpu"] = res.pop("cpu")
        res["worker_hwm_kb"] = res.pop("hwm_kb")
        res["gearmand_cpu"] = cpu_seconds(gd.pid) - gc0
        return res
    finally:
        if w is not None:
            w.stop()
        gd.stop()


# ---------------------------------------------------------------- scenarios
def plan(quick: bool):
    """(key, title, kind, params) for every measurement row."""
    q = quick
    rows = [
        ("S1 submit", "S1 bg submit (jobs/s)", "submit", dict(n=5000 if q else 20000)),
        ("S1 drain", "S1 drain, 1 worker (jobs/s)", "drain", dict(n=5000 if q else 20000)),
        ("S2", "S2 sequential round trip (jobs/s)", "fg", dict(mode="seq", n=500 if q else 2000, inflight=1, conc=1, sleep_ms=0)),
        ("S3", "S3 100 in flight, 100 slots (jobs/s)", "fg", dict(mode="conc", n=5000 if q else 20000, inflight=100, conc=100, sleep_ms=0)),
        ("S4", "S4 1000 x 50 ms, 100 slots (wall s)", "fg", dict(mode="burst", n=1000, inflight=1000, conc=100, sleep_ms=50)),
        ("S5 mem", "S5 10000 in flight / 1000 slots (RSS)", "fg", dict(mode="burst", n=2000 if q else 10000, inflight=10000, conc=1000, sleep_ms=50)),
    ]
    for k in ((1, 100) if q else (1, 10, 100, 1000)):
        n = (300 if q else 2000) if k == 1 else (2000 if q else 10000)
        rows.append((f"S5 cpu@{k}", f"S5 CPU/job at {k} in flight", "fg", dict(mode="conc", n=n, inflight=k, conc=k, sleep_ms=0)))
    return rows


#: Per-implementation scale-downs of job counts, so a slow peer stays bounded
#: (gear as released waits ~40 ms per job on Nagle + delayed ACK in its worker).
SCALE = {
    ("gear", "S1 drain"): 0.01, ("gear", "S2"): 0.1, ("gear", "S3"): 0.0125,
    ("pyg", "S3"): 0.5,
}
#: Rows measured only for some implementations (S5 is about our library).
ONLY = {"S5 mem": {"c", "gg", "ggx"}}


def scenario_of(key: str) -> str:
    return key.split()[0]


def run_all(env: Env, args) -> dict:
    results: dict = {}
    impls = [i for i in IMPLS if i in env.impls]
    wanted = set(args.scenarios) if args.scenarios else None
    for key, title, kind, params in plan(args.quick):
        if wanted and scenario_of(key) not in wanted:
            continue
        if key.startswith("S5 cpu"):
            row_impls = [i for i in impls if i in ("c", "gg", "ggx")]
        else:
            row_impls = [i for i in impls if i in ONLY.get(key, impls)]
        results[key] = {"title": title, "cells": {}}
        for impl in row_impls:
            p = dict(params)
            scale = SCALE.get((impl, key), 1.0)
            if "n" in p and scale != 1.0:
                p["n"] = max(50, int(p["n"] * scale))
            if key == "S4" and impl in NO_CONCURRENCY:
                results[key]["cells"][impl] = {"skip": "no job concurrency: 1000 x 50 ms would take 50 s"}
                continue
            if kind == "submit":
                windows = (S1_WINDOWS_QUICK if args.quick else S1_WINDOWS).get(impl, S1_WINDOWS[impl])
            else:
                windows = [None]
            best = None
            for window in windows:
                cell = measure_cell(env, args, key, kind, impl, p, window)
                if best is None or ("rate" in cell and cell["rate"] > best.get("rate", -1)):
                    best = cell
            results[key]["cells"][impl] = best
    return results


def measure_cell(env, args, key, kind, impl, p, window):
    """Repeat one measurement; the medians (or why there are none)."""
    if True:
        if True:
            runs, errors = [], []
            tag = f"{key.replace(' ', '_').replace('@', '')}-{impl}"
            for r in range(args.repeat):
                t_start = time.monotonic()
                try:
                    if kind == "submit":
                        res = measure_submit(env, impl, p["n"], window, args.timeout, tag)
                    elif kind == "drain":
                        res = measure_drain(env, impl, p["n"], args.timeout, tag)
                    else:
                        res = measure_fg(env, impl, p["mode"], p["n"], p["inflight"], p["conc"], p["sleep_ms"],
                                         args.timeout, tag)
                except Skip as exc:
                    errors.append(f"skipped: {exc}")
                    break
                except Failed as exc:
                    errors.append(str(exc))
                    log(f"  {key} {LABELS[impl]}: FAILED: {exc}")
                    stop_all()
                    if "hung" in str(exc):
                        break
                    continue
                res["n"] = p["n"]
                runs.append(res)
                w = f" window {window}" if window else ""
                log(f"  {key:12} {LABELS[impl]:15} run {r + 1}{w}: {summary(key, res)}  ({time.monotonic() - t_start:.1f}s)")
            cell: dict = {"runs": runs, "n": p["n"]}
            if errors:
                cell["errors"] = errors
            if not runs:
                cell["skip"] = errors[0] if errors else "no result"
            else:
                cell.update(medians(runs))
                if runs[0].get("worker_impl") and runs[0]["worker_impl"] != impl:
                    cell["worker_impl"] = runs[0]["worker_impl"]
            if window:
                cell["window"] = window
            return cell


def medians(runs):
    out = {}
    keys = set().union(*(r.keys() for r in runs))
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = statistics.median(vals)
    n = out["jobs"]
    out["rate"] = statistics.median(r["jobs"] / r["elapsed"] for r in runs)
    for who in ("cpu", "worker_cpu", "gearmand_cpu"):
        if who in out:
            out[who + "_us"] = out[who] / n * 1e6
    return out


def summary(key, res):
    s = f"{res['jobs'] / res['elapsed']:9.0f} jobs/s  {res['elapsed']:.3f}s"
    if "p50" in res:
        s += f"  p50 {res['p50'] * 1e6:.0f}us p99 {res['p99'] * 1e6:.0f}us"
    return s


# --------------------------------------------------------------- reporting
TARGETS = {
    "S1 submit": ("rate", 0.80, "≥0.80×"),
    "S1 drain": ("rate", 0.70, "≥0.70×"),
    "S2": ("rate", 0.70, "≥0.70×"),
    "S3": ("rate", 0.50, "≥0.50×"),
    "S4": ("wall", 0.95, "≥0.95×"),
}


def fmt_cell(key, cell):
    if not cell:
        return "—"
    if "skip" in cell:
        return "n/a"
    if key == "S4":
        s = f"{cell['elapsed']:.3f} s"
    elif key == "S5 mem":
        s = f"cl {cell['hwm_kb'] / 1024:.0f} / wk {cell['worker_hwm_kb'] / 1024:.0f} MB"
    elif key.startswith("S5 cpu"):
        parts = [f"{cell.get(w + '_us', float('nan')):.0f}" for w in ("cpu", "worker_cpu", "gearmand_cpu")]
        s = "/".join(parts) + " µs"
    else:
        s = f"{cell['rate']:,.0f}"
        if key == "S2" and "p50" in cell:
            s += f" (p50 {cell['p50'] * 1e6:.0f} / p99 {cell['p99'] * 1e6:.0f} µs)"
    if key == "S1 submit" and cell.get("window"):
        s += f" (w={cell['window']})"
    if cell.get("n") and key in ("S1 drain", "S2", "S3") and cell["n"] < 1000:
        s += f" [n={cell['n']}]"
    if cell.get("worker_impl"):
        s += f" [{LABELS[cell['worker_impl']]} worker]"
    return s


def ratio_and_target(key, cells):
    ratio, target = _ratio_and_target(key, cells, "gg")
    x = cells.get("ggx")
    if x and "skip" not in x and key != "S5 mem" and not key.startswith("S5 cpu"):
        r2, _ = _ratio_and_target(key, cells, "ggx")
        ratio += f" (scratch {r2})"
    return ratio, target


def _ratio_and_target(key, cells, ours):
    c, g = cells.get("c"), cells.get(ours)
    if key == "S5 mem":
        if g and "skip" not in g:
            okc = g["hwm_kb"] <= 60 * 1024
            okw = g["worker_hwm_kb"] <= 80 * 1024
            return "—", f"cl ≤60 / wk ≤80 MB: {'met' if okc and okw else 'MISSED'}"
        return "—", "cl ≤60 / wk ≤80 MB"
    if key.startswith("S5 cpu"):
        if c and g and "skip" not in c and "skip" not in g:
            return f"{g['cpu_us'] / c['cpu_us']:.1f}× client CPU", "—"
        return "—", "—"
    tgt = TARGETS.get(key)
    if not (c and g and "skip" not in c and "skip" not in g):
        return "—", (tgt[2] if tgt else "—")
    if key == "S4":
        ratio = c["elapsed"] / g["elapsed"]
    else:
        ratio = g["rate"] / c["rate"]
    verdict = ("met" if ratio >= tgt[1] else "MISSED") if tgt else ""
    return f"{ratio:.2f}×", f"{tgt[2]} {verdict}"


def table(results, impls):
    cols = ["scenario"] + [LABELS[i] for i in impls] + ["ratio gg/C", "target"]
    rows = []
    for key, r in results.items():
        ratio, target = ratio_and_target(key, r["cells"])
        rows.append([r["title"]] + [fmt_cell(key, r["cells"].get(i)) for i in impls] + [ratio, target])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [sep, line(cols), sep.replace("-", "=")] + [line(r) for r in rows] + [sep]
    return "\n".join(out)


def cpu_table(results, impls):
    """CPU µs per job of client / worker / gearmand for every row."""
    lines = ["CPU µs per job (client / worker / gearmand), peak RSS MB (client / worker):"]
    for key, r in results.items():
        for impl in impls:
            cell = r["cells"].get(impl)
            if not cell or "skip" in cell:
                continue
            us = "/".join(f"{cell[w + '_us']:.0f}" if w + "_us" in cell else "-" for w in ("cpu", "worker_cpu", "gearmand_cpu"))
            rss = "/".join(f"{cell[k] / 1024:.0f}" if k in cell else "-" for k in ("hwm_kb", "worker_hwm_kb"))
            lines.append(f"  {key:12} {LABELS[impl]:15} {us:>16} µs   {rss:>9} MB   (n={cell['n']}, {len(cell['runs'])} runs)")
    return "\n".join(lines)


def summarize_profiles():
    """Top self-time frames of every py-spy raw profile in build/profiles."""
    d = os.path.join(BUILD, "profiles")
    if not os.path.isdir(d):
        return ""
    out = []
    for name in sorted(os.listdir(d)):
        if not name.endswith(".txt"):
            continue
        selfs: dict = {}
        total = 0
        with open(os.path.join(d, name)) as f:
            for line in f:
                stack, _, count = line.rstrip().rpartition(" ")
                if not count.isdigit():
                    continue
                c = int(count)
                total += c
                leaf = stack.split(";")[-1]
                selfs[leaf] = selfs.get(leaf, 0) + c
        if not total:
            continue
        out.append(f"{name}: {total} samples; top self time:")
        for leaf, c in sorted(selfs.items(), key=lambda kv: -kv[1])[:12]:
            out.append(f"  {100 * c / total:5.1f}%  {leaf}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("gearmand", "embedded"), default="gearmand",
                    help="the job server to measure through (default gearmand; 'embedded' is "
                         "gearman_gevent.server, to compare the two servers' throughput)")
    ap.add_argument("--quick", action="store_true", help="CI form: small counts, 1 repeat, C and gearman_gevent only")
    ap.add_argument("--scenarios", type=lambda s: [x.strip().upper() for x in s.split(",") if x.strip()],
                    help="comma-separated subset, e.g. S1,S3")
    ap.add_argument("--impls", type=lambda s: [x.strip() for x in s.split(",")],
                    help=f"comma-separated subset of {','.join(IMPLS)}")
    ap.add_argument("--repeat", type=int, help="repeats per measurement (default 3; 1 with --quick)")
    ap.add_argument("--timeout", type=float, help="seconds a client/worker may take (default 60; 15 with --quick)")
    ap.add_argument("--no-peers", action="store_true", help="skip pygearman and gear")
    ap.add_argument("--profile", action="store_true", help="run our client/worker under py-spy (build/profiles)")
    ap.add_argument("--gg-path", help="also measure a scratch copy of gearman_gevent found at this path "
                    "(column 'gg --gg-path'), for A/B tests of library changes")
    ap.add_argument("--json", default=os.path.join(BUILD, "results.json"), help="where to write raw results")
    args = ap.parse_args(argv)
    global SERVER
    SERVER = args.server
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.timeout = args.timeout or (15.0 if args.quick else 60.0)

    t0 = time.monotonic()
    env = Env(args)
    setup_c(env)
    env.impls = ["gg"] + (["c"] if env.c_bin else []) + (["ggx"] if args.gg_path else [])
    if not (args.quick or args.no_peers):
        setup_peers(env)
        env.impls += [i for i in ("pyg", "gear", "gear_nd") if env.peer_ok.get(i)]
    if args.impls:
        env.impls = [i for i in env.impls if i in args.impls]
    r = subprocess.run([env.main_py, "-c", "import gearman_gevent; gearman_gevent.Worker"], capture_output=True)
    env.have_worker = r.returncode == 0
    if not env.have_worker:
        env.notes.append("gearman_gevent.Worker not available yet: our client is paired with the C worker "
                         "(marked [C worker]); S1 drain skipped for us")
    if env.c_bin is None:
        env.notes.append("no C ceiling: ratios cannot be computed")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = run_all(env, args)
    finally:
        stop_all()

    impls = [i for i in IMPLS if i in env.impls]
    info = {"machine": machine(), "versions": versions(env), "quick": args.quick, "repeat": args.repeat}
    print()
    m = info["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, {m['ram_gb']} GB RAM, Linux {m['kernel']}, Python {m['python']}")
    print(f"job server: {'gearman_gevent.server (embedded)' if SERVER == 'embedded' else 'gearmand'}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"medians of {args.repeat} run(s); ratio = gearman_gevent / C measured in this run "
          f"(S4: C wall / our wall); S5 cpu cells: client/worker/gearmand µs per job")
    print(table(results, impls))
    print(cpu_table(results, impls))
    for note in env.notes:
        print("note: " + note)
    for key, r in results.items():
        for impl, cell in r["cells"].items():
            for err in cell.get("errors", []):
                print(f"note: {key} {LABELS[impl]}: {err}")
    prof = summarize_profiles() if args.profile else ""
    if prof:
        print(prof)
    print(f"total {time.monotonic() - t0:.0f}s")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"info": info, "results": results, "notes": env.notes}, f, indent=1, default=str)

    # Exit status: non-zero only if our library is broken (a gearman_gevent
    # measurement failed rather than being skipped).
    broken = [
        f"{key}: {err}"
        for key, r in results.items()
        for impl, cell in r["cells"].items()
        if impl == "gg"
        for err in cell.get("errors", [])
        if not err.startswith("skipped")
    ]
    if broken:
        print("gearman_gevent FAILED: " + "; ".join(broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
