"""Helpers shared by the Python drivers (stdlib only: they run in two venvs).

Every driver takes the same arguments as the C program (benchmarks/c/bench.c):

    DRIVER client MODE PORT FUNC N SIZE INFLIGHT
    DRIVER worker PORT FUNC MAXJOBS CONCURRENCY SLEEP_MS

A client prints one JSON line (jobs, ok, elapsed, cpu, hwm_kb[, p50, p99]);
a worker prints READY once it is set up and, after MAXJOBS jobs (0 = never),
a JSON line (jobs, elapsed since READY) and exits.
"""
import json
import os
import resource
import signal
import sys
import time

#: Every driver kills itself after this many seconds (run.py kills it sooner).
HARD_LIMIT = 150


def arm_alarm():
    signal.alarm(HARD_LIMIT)


def cpu_self():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def hwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def parse_args(argv):
    role = argv[1]
    if role == "client":
        mode, port, func, n, size, inflight = argv[2:8]
        return role, dict(mode=mode, port=int(port), func=func, n=int(n), size=int(size),
                          inflight=max(1, int(inflight)))
    if role == "worker":
        port, func, max_jobs, conc, sleep_ms = argv[2:7]
        return role, dict(port=int(port), func=func, max_jobs=int(max_jobs), conc=max(1, int(conc)),
                          sleep_ms=int(sleep_ms))
    raise SystemExit(f"usage: {argv[0]} client MODE PORT FUNC N SIZE INFLIGHT | worker PORT FUNC MAXJOBS CONC SLEEP_MS")


def report(**fields):
    fields.setdefault("hwm_kb", hwm_kb())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def latency_fields(lat):
    if not lat:
        return {}
    lat = sorted(lat)
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)]}


_cpu_at_ready = [0.0]


def ready():
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    _cpu_at_ready[0] = cpu_self()
    return time.perf_counter()


def finish_worker(done, t0):
    report(jobs=done, elapsed=time.perf_counter() - t0, cpu=cpu_self() - _cpu_at_ready[0])
    os._exit(0)
