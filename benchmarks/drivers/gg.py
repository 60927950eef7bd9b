"""Driver for gearman_gevent (this repository), run with the main venv.

Client modes (see _common.py): bg = Client.submit_tasks() in windows of
INFLIGHT background tasks (one pipelined write per window); seq = Client.do()
in a loop; conc = INFLIGHT greenlets, each calling Client.do() in a loop;
burst = TaskSet.add_tasks() of all N tasks, then TaskSet.wait().
Worker: Worker(concurrency=CONCURRENCY, grabs_in_flight=min(CONCURRENCY, 8)),
an echo ability that sleeps
SLEEP_MS with gevent.sleep first.  Every task has unique="" (the default
unique would coalesce the identical payloads).
"""
import os
import sys
import time

import gevent

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

if os.environ.get("BENCH_GG_PATH"):  # a scratch copy of the package, for experiments
    sys.path.insert(0, os.environ["BENCH_GG_PATH"])
import gearman_gevent  # noqa: E402
from gearman_gevent import Client, Task, TaskSet  # noqa: E402


def client(mode, port, func, n, size, inflight):
    data = b"x" * size
    cl = Client(f"127.0.0.1:{port}", task_create_timeout=60.0)
    cl.echo(b"warm", timeout=10)  # connect outside the timed section
    lat = []
    ok = 0
    c0, t0 = c.cpu_self(), time.perf_counter()
    if mode == "bg":
        done = 0
        while done < n:
            k = min(inflight, n - done)
            tasks = cl.submit_tasks([Task(func, data, background=True, unique="") for _ in range(k)], timeout=60)
            ok += sum(1 for t in tasks if t.successful)
            done += k
    elif mode == "seq":
        for _ in range(n):
            s = time.perf_counter()
            cl.do(func, data, timeout=30, unique="")
            lat.append(time.perf_counter() - s)
            ok += 1
    elif mode == "conc":
        left = [n]
        count = [0]

        def loop():
            while left[0] > 0:
                left[0] -= 1
                cl.do(func, data, timeout=60, unique="")
                count[0] += 1

        gevent.joinall([gevent.spawn(loop) for _ in range(min(inflight, n))], raise_error=True)
        ok = count[0]
    elif mode == "burst":
        ts = TaskSet(cl)
        ts.add_tasks([Task(func, data, unique="") for _ in range(n)], timeout=60)
        if ts.wait(timeout=100):
            ok = n
        else:
            ok = len(ts.successful)
    else:
        raise SystemExit(f"unknown mode {mode}")
    elapsed, cpu = time.perf_counter() - t0, c.cpu_self() - c0
    c.report(jobs=n, ok=ok, elapsed=elapsed, cpu=cpu, **c.latency_fields(lat))
    cl.close()


def worker(port, func, max_jobs, conc, sleep_ms):
    from gearman_gevent import Worker

    delay = sleep_ms / 1000.0
    done = [0]

    if delay:
        def fn(data, job):
            gevent.sleep(delay)
            return data
    else:
        def fn(data, job):
            return data

    # Several GRABs in flight per connection refill many free slots in one
    # round trip (Worker's grabs_in_flight; the default 1 grabs one by one).
    try:
        w = Worker(f"127.0.0.1:{port}", concurrency=conc, grabs_in_flight=min(conc, 8))
    except TypeError:  # an older copy of the package (--gg-path A/B runs)
        w = Worker(f"127.0.0.1:{port}", concurrency=conc)
    w.add_ability(func, fn)
    t0 = c.ready()
    w.work(max_jobs=max_jobs or None)
    c.finish_worker(max_jobs, t0)


if __name__ == "__main__":
    c.arm_alarm()
    role, kw = c.parse_args(sys.argv)
    (client if role == "client" else worker)(**kw)
