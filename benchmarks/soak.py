#!/usr/bin/env python3
"""Soak test: jobs through client and worker processes of gearman_gevent while
gearmand is SIGKILLed and restarted at random moments.

    .venv/bin/python benchmarks/soak.py                  # ~3 min, 2 servers
    .venv/bin/python benchmarks/soak.py --quick          # CI form, ~30 s
    .venv/bin/python benchmarks/soak.py --duration 300 --rate 800 --json

What runs
---------
* ``--servers`` gearmand processes on free 127.0.0.1 ports, each with its
  own persistent queue (``-q libsqlite3 --libsqlite3-db FILE``), so that a
  background job gearmand acknowledged survives a SIGKILL.
* ``--workers`` worker processes (this library's ``Worker``, serving every
  server).  The background ability appends the job's id to the worker's
  ledger file (flushed per job) *before* it returns; the foreground ability
  returns a value derived from the payload (and fails on purpose for one id
  in 97, so "failed and reported" is exercised by the worker too).
* ``--clients`` client processes (one shared ``Client`` each, ``--greenlets``
  greenlets), together submitting about ``--rate`` jobs/s for ``--duration``
  seconds: alternately background and foreground jobs, each with a unique
  integer id.  Every outcome goes to the client's ledger.
* The chaos thread of this (orchestrating) process SIGKILLs one gearmand at a
  random moment every ``--min-gap``..``--max-gap`` seconds and restarts it on
  the same port (same queue file) after 0.1..``--max-down`` seconds.  Only one
  server is down at a time.
* When the clients are done, every server is up again, and the workers drain
  the queues; then the workers are stopped with SIGTERM (graceful).

Counting (each job id is counted exactly once)
----------------------------------------------
acknowledged
    ``submit`` returned a created task (the server answered JOB_CREATED).
executed
    background: the id is in some worker's ledger (a job that ran more than
    once -- gearmand replays a job whose WORK_COMPLETE it never processed --
    counts once; the extra runs are reported as ``duplicates``);
    foreground: the caller received WORK_COMPLETE with the expected result.
failed and reported
    the caller was told: ``submit`` raised (the job was never acknowledged),
    or a foreground task ended failed (WORK_FAIL, or a ``NetworkError``
    because its server died under it).
lost
    acknowledged, but neither executed nor reported failed: a background id
    acknowledged by a server that no worker ever ran by the end of the drain
    (``--drain`` seconds), or a foreground task that got neither a result nor
    a failure within ``--job-timeout`` seconds.  **Must be 0.**
corrupt
    a foreground result that is not the expected one.  Must be 0.

Peak RSS is each process's ``VmHWM`` from ``/proc/PID/status`` (clients and
workers report their own at exit; gearmand's is read before every kill and at
the end, and the largest incarnation is shown).

The last line with ``--json`` is a JSON object with every figure.  The exit
status is 0 only if lost == 0 and corrupt == 0 (and every process ran).
The orchestrator uses the standard library only; it stops everything it
started, by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GEARMAND = os.environ.get("GEARMAND") or shutil.which("gearmand") or "/usr/sbin/gearmand"
#: "gearmand" or "embedded" (gearman_gevent.server); set by --server.
SERVER = "gearmand"
BG_FUNC = "soak-bg"
FG_FUNC = "soak-fg"


def vm_hwm_kb(pid: Optional[int] = None) -> int:
    """Peak resident set size (VmHWM) of *pid* (self if None), in kB; 0 if gone."""
    path = f"/proc/{pid}/status" if pid else "/proc/self/status"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fg_expected(data: bytes) -> bytes:
    return b"done:" + data[::-1]


# ===================================================================== worker
def worker_main(args: argparse.Namespace) -> int:
    import logging

    import gevent

    import gearman_gevent as gg

    logging.basicConfig(level=logging.ERROR, format="worker %(process)d: %(message)s")
    ledger = open(args.ledger, "a", buffering=1)
    counts = {"bg_runs": 0, "fg_runs": 0}
    rng = random.Random(args.seed)
    w = gg.Worker(args.servers.split(","), concurrency=args.concurrency,
                  reconnect_delay=0.5, network_timeout=5, client_id=f"soak-worker-{args.index}")

    def background(data: bytes, job: gg.Job) -> bytes:
        if rng.random() < 0.05:
            gevent.sleep(rng.random() * 0.01)
        ledger.write(data.decode() + "\n")  # line buffered: one write per job
        counts["bg_runs"] += 1
        return b"ok"

    def foreground(data: bytes, job: gg.Job):
        counts["fg_runs"] += 1
        if rng.random() < 0.05:
            gevent.sleep(rng.random() * 0.01)
        if int(data) % 97 == 0:
            return None  # WORK_FAIL: the caller must be told
        return fg_expected(data)

    w.add_ability(BG_FUNC, background)
    w.add_ability(FG_FUNC, foreground)
    w.install_signal_handlers(timeout=5)
    print(json.dumps({"ready": True}), flush=True)
    w.work()
    ledger.close()
    print(json.dumps({"role": "worker", "index": args.index, **counts, "vm_hwm_kb": vm_hwm_kb()}),
          flush=True)
    return 0


# ===================================================================== client
def client_main(args: argparse.Namespace) -> int:
    import logging

    import gevent

    import gearman_gevent as gg

    logging.basicConfig(level=logging.CRITICAL)
    ledger = open(args.ledger, "a", buffering=1 << 16)
    client = gg.Client(args.servers.split(","), reconnect_delay=0.5, task_create_timeout=10)
    counts = {"bg_ack": 0, "bg_raised": 0, "fg_ok": 0, "fg_failed": 0, "fg_raised": 0,
              "fg_timeout": 0, "fg_corrupt": 0}
    t0 = time.monotonic()
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    deadline = t0 + args.duration
    next_slot = [0]

    def one(job_id: int) -> None:
        data = b"%d" % job_id
        if job_id % 2 == 0:
            try:
                client.submit(BG_FUNC, data, background=True)
            except gg.GearmanError as exc:
                counts["bg_raised"] += 1
                ledger.write(f"BGRAISED {job_id} {type(exc).__name__}\n")
                return
            counts["bg_ack"] += 1
            ledger.write(f"BGACK {job_id}\n")
            return
        task = gg.Task(FG_FUNC, data)
        try:
            client.submit_task(task)
        except gg.GearmanError as exc:
            counts["fg_raised"] += 1
            ledger.write(f"FGRAISED {job_id} {type(exc).__name__}\n")
            return
        if not task.wait(args.job_timeout):
            client.abandon(task)
            counts["fg_timeout"] += 1
            ledger.write(f"FGTIMEOUT {job_id}\n")
        elif task.successful:
            if task.result == fg_expected(data):
                counts["fg_ok"] += 1
                ledger.write(f"FGOK {job_id}\n")
            else:
                counts["fg_corrupt"] += 1
                ledger.write(f"FGCORRUPT {job_id} {task.result!r}\n")
        else:
            counts["fg_failed"] += 1
            why = type(task.error).__name__ if task.error is not None else "WORK_FAIL"
            ledger.write(f"FGFAILED {job_id} {why}\n")

    def runner() -> None:
        # An open-loop schedule shared by all greenlets: slot k is due at
        # t0 + k / rate (a greenlet busy waiting for a result skips nothing:
        # the next free greenlet takes the next slot).
        while True:
            k = next_slot[0]
            if k >= args.jobs:
                return
            next_slot[0] = k + 1
            due = t0 + k * interval
            if due >= deadline:
                return
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            one(args.first_id + k)

    pool = [gevent.spawn(runner) for _ in range(args.greenlets)]
    gevent.joinall(pool, timeout=args.duration + args.job_timeout + 30)
    for g in pool:
        g.kill()
    ledger.close()
    client.close()
    print(json.dumps({"role": "client", "index": args.index, **counts, "vm_hwm_kb": vm_hwm_kb()}),
          flush=True)
    return 0


# =============================================================== orchestrator
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """One gearmand with a persistent sqlite queue, restartable on its port."""

    def __init__(self, directory: str, index: int) -> None:
        self.port = free_port()
        self.db = os.path.join(directory, f"queue-{index}.sqlite")
        self.log = os.path.join(directory, f"gearmand-{index}.log")
        self.proc: Optional[subprocess.Popen] = None
        self.peak_kb = 0
        self.kills = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        for _ in range(100):  # the port may linger briefly after a kill
            if SERVER == "embedded":  # gearman_gevent.server with its sqlite queue
                cmd = [sys.executable, "-m", "gearman_gevent.server", "--listen", "127.0.0.1",
                       "--port", str(self.port), "--queue", f"sqlite:{self.db}"]
            else:
                cmd = [GEARMAND, "--listen", "127.0.0.1", "--port", str(self.port), "--threads", "2",
                       "-q", "libsqlite3", "--libsqlite3-db", self.db,
                       "--log-file", self.log, "--verbose", "ERROR"]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_open(self.port):
                    return
                time.sleep(0.02)
            self._reap()
            time.sleep(0.1)
        raise RuntimeError(f"gearmand did not start on {self.address}")

    def _reap(self) -> None:
        if self.proc is None:
            return
        self.peak_kb = max(self.peak_kb, vm_hwm_kb(self.proc.pid))
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self._reap()
        self.kills += 1

    def stop(self) -> None:
        self._reap()


def spawn_child(role: str, extra: List[str]) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role] + extra,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def read_json_lines(text: str) -> List[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def read_executed(paths: List[str]) -> Dict[int, int]:
    runs: Dict[int, int] = {}
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    if line.endswith("\n"):
                        job_id = int(line)
                        runs[job_id] = runs.get(job_id, 0) + 1
        except FileNotFoundError:
            pass
    return runs


def wait_ready(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait for a worker's ``{"ready": true}`` line."""
    result: List[str] = []
    t = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not result or "ready" not in result[0]:
        raise RuntimeError(f"worker {proc.pid} did not start: {result!r}")


def chaos(servers: List[Server], stop: threading.Event, rng: random.Random,
          min_gap: float, max_gap: float, max_down: float, events: List[str], t0: float) -> None:
    while not stop.wait(rng.uniform(min_gap, max_gap)):
        victim = rng.choice(servers)
        victim.kill()
        down = rng.uniform(0.1, max_down)
        events.append(f"{time.monotonic() - t0:6.1f}s  SIGKILL {victim.address}, down {down:.2f}s")
        time.sleep(down)  # the server stays down even if stop is set meanwhile
        victim.start()


def orchestrate(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="gg-soak-")
    servers = [Server(work, i) for i in range(args.servers)]
    procs: List[subprocess.Popen] = []
    addresses = ",".join(s.address for s in servers)
    events: List[str] = []
    stop_chaos = threading.Event()
    chaos_thread = None
    summary: dict = {}
    ok = False
    try:
        for s in servers:
            s.start()
        t0 = time.monotonic()
        worker_ledgers = [os.path.join(work, f"worker-{i}.ledger") for i in range(args.workers)]
        workers = []
        for i, ledger in enumerate(worker_ledgers):
            p = spawn_child("worker", ["--servers", addresses, "--ledger", ledger, "--index", str(i),
                                       "--concurrency", str(args.concurrency),
                                       "--seed", str(rng.randrange(1 << 30))])
            procs.append(p)
            workers.append(p)
        for p in workers:
            wait_ready(p)
        client_ledgers = [os.path.join(work, f"client-{i}.ledger") for i in range(args.clients)]
        clients = []
        per_client = args.jobs // args.clients
        for i, ledger in enumerate(client_ledgers):
            p = spawn_child("client", ["--servers", addresses, "--ledger", ledger, "--index", str(i),
                                       "--first-id", str(1 + i * per_client), "--jobs", str(per_client),
                                       "--rate", str(args.rate / args.clients),
                                       "--duration", str(args.duration),
                                       "--greenlets", str(args.greenlets),
                                       "--job-timeout", str(args.job_timeout)])
            procs.append(p)
            clients.append(p)
        chaos_thread = threading.Thread(
            target=chaos, args=(servers, stop_chaos, rng, args.min_gap, args.max_gap,
                                args.max_down, events, t0), daemon=True)
        chaos_thread.start()

        client_reports = []
        for p in clients:
            out, err = p.communicate(timeout=args.duration + args.job_timeout + 60)
            reports = [r for r in read_json_lines(out) if r.get("role") == "client"]
            if p.returncode != 0 or not reports:
                raise RuntimeError(f"client {p.pid} failed ({p.returncode}): {err[-2000:]}")
            client_reports.extend(reports)
        submit_done = time.monotonic() - t0
        stop_chaos.set()
        chaos_thread.join(args.max_down + 30)
        for s in servers:  # all up for the drain
            if s.proc is None or s.proc.poll() is not None:
                s.start()

        # ---- ledgers
        acked_bg, raised_bg = set(), set()
        reasons: Dict[str, int] = {}
        fg = {"FGOK": set(), "FGFAILED": set(), "FGRAISED": set(), "FGTIMEOUT": set(),
              "FGCORRUPT": set()}
        for path in client_ledgers:
            with open(path) as f:
                for line in f:
                    kind, job_id, *rest = line.split()
                    if kind in ("FGFAILED", "FGRAISED", "BGRAISED"):
                        key = f"{kind.lower()}:{rest[0] if rest else '?'}"
                        reasons[key] = reasons.get(key, 0) + 1
                    if kind == "BGACK":
                        acked_bg.add(int(job_id))
                    elif kind == "BGRAISED":
                        raised_bg.add(int(job_id))
                    else:
                        fg[kind].add(int(job_id))

        # ---- drain: every acknowledged background job must run
        drain_deadline = time.monotonic() + args.drain
        outstanding = []  # (seconds into the drain, background jobs not yet run)
        drain_t0 = time.monotonic()
        while True:
            runs = read_executed(worker_ledgers)
            missing = acked_bg - runs.keys()
            if not outstanding or time.monotonic() - drain_t0 >= len(outstanding):
                outstanding.append((round(time.monotonic() - drain_t0, 1), len(missing)))
            if not missing or time.monotonic() > drain_deadline:
                break
            time.sleep(0.2)
        drained_after = time.monotonic() - t0 - submit_done
        for s in servers:
            s.peak_kb = max(s.peak_kb, vm_hwm_kb(s.proc.pid if s.proc else None) if s.proc else 0)

        worker_reports = []
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            out, err = p.communicate(timeout=30)
            reports = [r for r in read_json_lines(out) if r.get("role") == "worker"]
            if p.returncode != 0 or not reports:
                raise RuntimeError(f"worker {p.pid} failed ({p.returncode}): {err[-2000:]}")
            worker_reports.extend(reports)
        runs = read_executed(worker_ledgers)
        missing = sorted(acked_bg - runs.keys())
        unacked_ran = sorted(runs.keys() - acked_bg)  # ran though submit raised: fine (reported)

        fg_acked = sum(len(v) for k, v in fg.items() if k != "FGRAISED")
        acknowledged = len(acked_bg) + fg_acked
        executed = len(acked_bg & runs.keys()) + len(fg["FGOK"])
        failed_reported = len(raised_bg) + len(fg["FGRAISED"]) + len(fg["FGFAILED"])
        lost = len(missing) + len(fg["FGTIMEOUT"])
        corrupt = len(fg["FGCORRUPT"])
        duplicates = sum(n - 1 for n in runs.values() if n > 1)
        summary = {
            "duration_s": round(submit_done, 1),
            "drain_s": round(drained_after, 1),
            "drain_outstanding": outstanding,
            "servers": len(servers), "clients": args.clients, "workers": args.workers,
            "restarts": sum(s.kills for s in servers),
            "jobs_attempted": acknowledged + len(raised_bg) + len(fg["FGRAISED"]),
            "acknowledged": acknowledged,
            "acknowledged_background": len(acked_bg),
            "acknowledged_foreground": fg_acked,
            "executed": executed,
            "executed_background": len(acked_bg & runs.keys()),
            "completed_foreground": len(fg["FGOK"]),
            "failed_and_reported": failed_reported,
            "background_submit_raised": len(raised_bg),
            "foreground_submit_raised": len(fg["FGRAISED"]),
            "foreground_failed": len(fg["FGFAILED"]),
            "failure_reasons": reasons,
            "background_duplicate_runs": duplicates,
            "background_ran_though_submit_raised": len(unacked_ran),
            "lost": lost,
            "lost_background_ids": missing[:20],
            "lost_foreground_timeouts": len(fg["FGTIMEOUT"]),
            "corrupt": corrupt,
            "peak_rss_kb": {
                **{f"client-{r['index']}": r["vm_hwm_kb"] for r in client_reports},
                **{f"worker-{r['index']}": r["vm_hwm_kb"] for r in worker_reports},
                **{f"gearmand-{i}": s.peak_kb for i, s in enumerate(servers)},
            },
        }
        ok = lost == 0 and corrupt == 0
    finally:
        stop_chaos.set()
        if chaos_thread is not None:
            chaos_thread.join(args.max_down + 30)
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for s in servers:
            s.stop()
        if args.keep:
            print(f"files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print("gearman_gevent soak")
    for line in events:
        print("  " + line)
    s = summary
    print(f"submitting: {s['duration_s']} s with {s['restarts']} gearmand SIGKILL+restarts "
          f"over {s['servers']} servers; {s['clients']} client and {s['workers']} worker processes")
    print(f"jobs acknowledged:      {s['acknowledged']} (background {s['acknowledged_background']}, "
          f"foreground {s['acknowledged_foreground']})")
    print(f"executed:               {s['executed']} (background {s['executed_background']}, "
          f"foreground completed {s['completed_foreground']}; "
          f"background re-runs after a restart: {s['background_duplicate_runs']})")
    print(f"failed and reported:    {s['failed_and_reported']} (submit raised: background "
          f"{s['background_submit_raised']}, foreground {s['foreground_submit_raised']}; "
          f"foreground failed: {s['foreground_failed']})")
    print("  by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(s["failure_reasons"].items())) or "-"))
    print(f"lost:                   {s['lost']}" + (f"  ids {s['lost_background_ids']} "
                                                     f"fg timeouts {s['lost_foreground_timeouts']}"
                                                     if s["lost"] else ""))
    print(f"corrupt results:        {s['corrupt']}")
    print(f"drained {s['drain_s']} s after the clients finished; background jobs not yet run "
          f"(s into the drain, count): {s['drain_outstanding'][:12]}")
    print("peak RSS (VmHWM): " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in s["peak_rss_kb"].items()))
    if args.json:
        print(json.dumps(s))
    return 0 if ok else 1


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=["gearmand", "embedded"], default="gearmand",
                   help="the job server to soak (default gearmand; 'embedded' is gearman_gevent.server)")
    p.add_argument("--quick", action="store_true", help="CI form: ~30 s in all")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of submitting")
    p.add_argument("--rate", type=float, default=600.0, help="jobs/s over all clients")
    p.add_argument("--jobs", type=int, default=None, help="cap on jobs (default duration*rate)")
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--greenlets", type=int, default=50, help="submitting greenlets per client")
    p.add_argument("--concurrency", type=int, default=20, help="jobs at once per worker")
    p.add_argument("--min-gap", type=float, default=4.0, help="seconds between kills, at least")
    p.add_argument("--max-gap", type=float, default=10.0, help="seconds between kills, at most")
    p.add_argument("--max-down", type=float, default=1.5, help="longest downtime of a server")
    p.add_argument("--job-timeout", type=float, default=60.0, help="foreground wait before 'lost'")
    p.add_argument("--drain", type=float, default=60.0, help="seconds allowed to drain the queues")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print every figure as JSON at the end")
    p.add_argument("--keep", action="store_true", help="keep ledgers, queues and logs")
    # child processes
    p.add_argument("--role", choices=["orchestrator", "client", "worker"], default="orchestrator",
                   help=argparse.SUPPRESS)
    p.add_argument("--ledger", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--first-id", type=int, default=1, help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--role" in argv and argv[argv.index("--role") + 1] != "orchestrator":
        # children get "--servers host:port,host:port"
        cp = argparse.ArgumentParser()
        cp.add_argument("--role")
        cp.add_argument("--servers")
        cp.add_argument("--ledger")
        cp.add_argument("--index", type=int)
        cp.add_argument("--concurrency", type=int, default=20)
        cp.add_argument("--seed", type=int, default=0)
        cp.add_argument("--first-id", type=int, default=1)
        cp.add_argument("--jobs", type=int, default=0)
        cp.add_argument("--rate", type=float, default=0)
        cp.add_argument("--duration", type=float, default=0)
        cp.add_argument("--greenlets", type=int, default=50)
        cp.add_argument("--job-timeout", type=float, default=60)
        child = cp.parse_args(argv)
        return worker_main(child) if child.role == "worker" else client_main(child)
    args = parse_args(argv)
    global SERVER
    SERVER = args.server
    if args.quick:
        args.duration = min(args.duration, 18.0)
        args.rate = min(args.rate, 500.0)
        args.min_gap, args.max_gap = 2.0, 4.0
        args.max_down = 1.0
        args.drain = min(args.drain, 20.0)
        args.job_timeout = min(args.job_timeout, 20.0)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.jobs is None:
        args.jobs = int(args.duration * args.rate) + args.clients
    print(f"seed {args.seed}; job servers: {SERVER}", flush=True)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
