"""CPU per job of the worker's hot path, in one process: a steady A/B metric.

``run.py`` measures what users see, across processes, and on a small shared
VM its numbers swing by about 20 % from run to run.  This script measures
only CPU time spent per job by a ``Worker(concurrency=1)`` draining jobs from
a minimal scripted server greenlet in the same process (it answers each GRAB
with a JOB_ASSIGN_UNIQ of 100 bytes, and a PRE_SLEEP with a NOOP while jobs
remain).  Nothing sleeps and both sides stay in cache, so repeated runs agree
within a few percent: good for telling whether a change to the library's hot
path made it cheaper.  The figure includes the scripted server's share,
which is the same for every copy of the library measured.

::

    .venv/bin/python benchmarks/hotpath.py                      # this checkout
    .venv/bin/python benchmarks/hotpath.py --gg-path /tmp/old   # a copy, for A/B
    .venv/bin/python benchmarks/hotpath.py --jobs 50000 --repeat 5

Loopback only; the server greenlet listens on 127.0.0.1 on a free port.
"""
import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

_HEADER = struct.Struct(">4sII")
_WARMUP = 2000


def _res(num: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(b"\0RES", num, len(body)) + body


def measure(jobs: int) -> float:
    """CPU seconds per job (process time) over *jobs* jobs after a warm-up."""
    import gevent
    import gevent.server
    from gevent.event import Event

    from gearman_gevent import Worker

    total = jobs + _WARMUP
    state = {"given": 0, "done": 0, "t0": 0.0, "t1": 0.0}
    finished = Event()

    def handle(sock, _addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            out = []
            while len(buf) >= 12:
                _, num, size = _HEADER.unpack_from(buf)
                if len(buf) < 12 + size:
                    break
                body, buf = buf[12:12 + size], buf[12 + size:]
                if num == 16:  # ECHO_REQ (end of registration)
                    out.append(_res(17, body))
                elif num == 30:  # GRAB_JOB_UNIQ
                    if state["given"] < total:
                        state["given"] += 1
                        out.append(_res(31, b"H:x:%d\0f\0\0%s" % (state["given"], b"x" * 100)))
                    else:
                        out.append(_res(10))  # NO_JOB
                elif num == 4 and state["given"] < total:  # PRE_SLEEP, jobs left
                    out.append(_res(6))  # NOOP
                elif num == 13:  # WORK_COMPLETE
                    state["done"] += 1
                    if state["done"] == _WARMUP:
                        state["t0"] = time.process_time()
                    elif state["done"] == total:
                        state["t1"] = time.process_time()
                        finished.set()
            if out:
                sock.sendall(b"".join(out))

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    worker = Worker(f"127.0.0.1:{server.server_port}", concurrency=1)
    worker.add_ability("f", lambda data, job: data)
    worker.start()
    try:
        if not finished.wait(120):
            raise SystemExit("the worker did not finish the jobs within 120 s")
    finally:
        worker.stop(1)
        server.stop()
    return (state["t1"] - state["t0"]) / jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gg-path", help="also measure the copy of gearman_gevent found in this directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:  # one measurement, in a fresh interpreter
        if args.child:
            sys.path.insert(0, args.child)
        print(measure(args.jobs))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    copies = [("this checkout", here)] + ([("--gg-path", os.path.abspath(args.gg_path))] if args.gg_path else [])
    results = {label: [] for label, _ in copies}
    for _ in range(args.repeat):
        for label, path in copies:  # interleaved, so drift hits both alike
            out = subprocess.run([sys.executable, __file__, "--jobs", str(args.jobs), "--child", path],
                                 check=True, capture_output=True, text=True).stdout
            results[label].append(float(out.strip().splitlines()[-1]))
    for label, values in results.items():
        med = statistics.median(values)
        spread = ", ".join(f"{v * 1e6:.1f}" for v in values)
        print(f"{label:>14}: {med * 1e6:6.1f} us CPU per job (median of {len(values)}: {spread})")


if __name__ == "__main__":
    main()
