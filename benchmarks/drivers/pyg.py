"""Driver for pygearman (python-gearman's Python 3 fork), run with the
peers venv.  pygearman is synchronous (select/epoll, no threads, no gevent),
so its best ways are:

client bg    submit_multiple_jobs(background=True, wait_until_complete=False)
             in windows of INFLIGHT (one write per window)
client seq   submit_job() in a loop
client conc  submit_multiple_jobs() of INFLIGHT jobs, waiting for the whole
             batch (it has no sliding window), batch after batch
client burst submit_multiple_jobs() of all N, wait_until_complete=True
worker       GearmanWorker.work(): one job at a time (no job concurrency;
             CONCURRENCY is ignored and reported as 1)

pygearman's default unique is random per job, so nothing coalesces.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

import gearman  # noqa: E402


def client(mode, port, func, n, size, inflight):
    data = b"x" * size
    cl = gearman.GearmanClient([f"127.0.0.1:{port}"])
    cl.submit_job(func + "_warm", b"", background=True, poll_timeout=10)  # connect outside the timing
    lat = []
    ok = 0
    c0, t0 = c.cpu_self(), time.perf_counter()

    def jobs(k):
        return [{"task": func, "data": data} for _ in range(k)]

    if mode == "bg":
        done = 0
        while done < n:
            k = min(inflight, n - done)
            reqs = cl.submit_multiple_jobs(jobs(k), background=True, wait_until_complete=False, poll_timeout=60)
            ok += sum(1 for r in reqs if r.state != "UNKNOWN" and not r.timed_out)
            done += k
    elif mode == "seq":
        for _ in range(n):
            s = time.perf_counter()
            r = cl.submit_job(func, data, poll_timeout=30)
            lat.append(time.perf_counter() - s)
            ok += r.complete and r.result == data
    elif mode in ("conc", "burst"):
        window = inflight if mode == "conc" else n
        done = 0
        while done < n:
            k = min(window, n - done)
            reqs = cl.submit_multiple_jobs(jobs(k), wait_until_complete=True, poll_timeout=100)
            ok += sum(1 for r in reqs if r.complete and r.result == data)
            done += k
    else:
        raise SystemExit(f"unknown mode {mode}")
    elapsed, cpu = time.perf_counter() - t0, c.cpu_self() - c0
    c.report(jobs=n, ok=ok, elapsed=elapsed, cpu=cpu, **c.latency_fields(lat))


def worker(port, func, max_jobs, conc, sleep_ms):
    delay = sleep_ms / 1000.0
    done = [0]

    class W(gearman.GearmanWorker):
        def after_job(self):
            done[0] += 1
            if max_jobs and done[0] >= max_jobs:
                c.finish_worker(done[0], t0)
            return True

    def fn(worker, job):
        if delay:
            time.sleep(delay)
        return job.data

    w = W([f"127.0.0.1:{port}"])
    w.register_task(func.encode(), fn)
    t0 = c.ready()
    w.work(poll_timeout=1.0)


if __name__ == "__main__":
    c.arm_alarm()
    role, kw = c.parse_args(sys.argv)
    (client if role == "client" else worker)(**kw)
