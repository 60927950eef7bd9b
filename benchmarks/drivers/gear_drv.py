"""Driver for gear (OpenStack), run with the peers venv.  gear is threaded:
a client has a poll thread that reads replies; Client.submitJob() writes one
SUBMIT and blocks until its JOB_CREATED (so submissions from one thread do
not pipeline, and the pending-reply list is not safe to fill from many
threads at once); a Worker hands jobs to any number of threads blocked in
getJob().  So its best ways are:

client bg    submitJob(background=True) in a loop
client seq   submitJob() then wait for WORK_COMPLETE, in a loop
client conc  one submitting thread keeps INFLIGHT jobs in flight (a
             semaphore released by the poll thread on WORK_COMPLETE)
client burst submitJob() all N, then wait for all
worker       CONCURRENCY threads, each looping getJob() / sendWorkComplete()

gear does not set TCP_NODELAY.  With BENCH_GEAR_NODELAY=1 it is set on
every socket right after connect (a runtime patch: labelled "gear+nodelay").
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

import gear  # noqa: E402

if os.environ.get("BENCH_GEAR_NODELAY") == "1":
    import socket

    _connect = gear.Connection.connect

    def connect(self):
        _connect(self)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    gear.Connection.connect = connect


class Client(gear.Client):
    def __init__(self):
        super().__init__("bench")
        self.window = threading.Semaphore(1 << 30)
        self.all_done = threading.Event()
        self.expect = 1 << 62
        self.ok = 0
        self.ended = 0

    def _end(self, job):
        self.ended += 1
        job.event.set()
        self.window.release()
        if self.ended >= self.expect:
            self.all_done.set()

    def handleWorkComplete(self, packet):
        job = super().handleWorkComplete(packet)
        self.ok += 1
        self._end(job)
        return job

    def handleWorkFail(self, packet):
        job = super().handleWorkFail(packet)
        self._end(job)
        return job


def client(mode, port, func, n, size, inflight):
    data = b"x" * size
    cl = Client()
    cl.addServer("127.0.0.1", port)
    cl.waitForServer(timeout=10)
    lat = []
    ok = 0

    def job():
        j = gear.Job(func.encode(), data)
        j.event = threading.Event()
        return j

    c0, t0 = c.cpu_self(), time.perf_counter()
    if mode == "bg":
        for _ in range(n):
            j = job()
            cl.submitJob(j, background=True, timeout=30)
            ok += bool(j.handle)
    elif mode == "seq":
        for _ in range(n):
            s = time.perf_counter()
            j = job()
            cl.submitJob(j, timeout=30)
            j.event.wait(30)
            lat.append(time.perf_counter() - s)
        ok = cl.ok
    elif mode in ("conc", "burst"):
        # the poll thread releases a slot of the window on each WORK_COMPLETE/FAIL
        cl.window = threading.Semaphore(inflight if mode == "conc" else n)
        cl.expect = n
        for _ in range(n):
            if not cl.window.acquire(timeout=60):
                break
            cl.submitJob(job(), timeout=30)
        cl.all_done.wait(100)
        ok = cl.ok
    else:
        raise SystemExit(f"unknown mode {mode}")
    elapsed, cpu = time.perf_counter() - t0, c.cpu_self() - c0
    c.report(jobs=n, ok=ok, elapsed=elapsed, cpu=cpu, **c.latency_fields(lat))
    os._exit(0)  # gear's threads are not daemons


def worker(port, func, max_jobs, conc, sleep_ms):
    delay = sleep_ms / 1000.0
    w = gear.Worker("bench")
    w.addServer("127.0.0.1", port)
    w.waitForServer(timeout=10)
    w.registerFunction(func)
    lock = threading.Lock()
    done = [0]

    def loop():
        while True:
            j = w.getJob()
            if delay:
                time.sleep(delay)
            j.sendWorkComplete(j.arguments)
            with lock:
                done[0] += 1
                if max_jobs and done[0] == max_jobs:
                    c.finish_worker(done[0], t0)

    t0 = c.ready()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    time.sleep(c.HARD_LIMIT)


if __name__ == "__main__":
    c.arm_alarm()
    role, kw = c.parse_args(sys.argv)
    (client if role == "client" else worker)(**kw)
