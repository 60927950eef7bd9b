"""The main job, end to end: a job server, a worker process and a client.

    ./dev.sh demo            (or: .venv/bin/python examples/demo.py)

Starts gearmand on a free 127.0.0.1 port (the embedded gearman_gevent
server when no gearmand is installed, or with --embedded), starts
examples/worker_reverse_string.py as a separate worker process, then runs
real jobs through the server from this process: a few foreground jobs, a
TaskSet of 1 000 jobs in flight at once, a background job, and the server's
admin status.  Everything it started is stopped (by PID) at the end.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import gearman_gevent as gg

HERE = os.path.dirname(os.path.abspath(__file__))
GEARMAND = os.environ.get("GEARMAND", "/usr/sbin/gearmand")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the job server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the job server did not listen on port {port}")


def start_server(port, embedded, logdir):
    if not embedded and os.access(GEARMAND, os.X_OK):
        cmd = [GEARMAND, "--listen", "127.0.0.1", "--port", str(port), "--threads", "2",
               "--log-file", os.path.join(logdir, "gearmand.log")]
        name = "gearmand"
    else:
        cmd = [sys.executable, "-m", "gearman_gevent.server", "--listen", "127.0.0.1", "--port", str(port)]
        name = "embedded gearman_gevent server"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(port, proc)
    return name, proc


def stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedded", action="store_true", help="use the embedded server even if gearmand is installed")
    p.add_argument("--jobs", type=int, default=1000, help="jobs in the TaskSet (default 1000)")
    args = p.parse_args()

    port = free_port()
    address = f"127.0.0.1:{port}"
    logdir = tempfile.mkdtemp(prefix="gearman-demo-")
    name, server = start_server(port, args.embedded, logdir)
    print(f"1. {name} listening on {address} (pid {server.pid})")
    worker = None
    try:
        worker = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker_reverse_string.py"), "--servers", address],
            stdout=subprocess.PIPE, stderr=open(os.path.join(logdir, "worker.log"), "w"),
            text=True, start_new_session=True)
        if worker.stdout.readline().strip() != "worker ready":
            raise SystemExit("the worker did not start")
        print(f"2. worker process started (pid {worker.pid}): ability 'reverse_string', 10 slots")

        with gg.Client(address) as client:
            print("3. foreground jobs:")
            for text in ("Hello World", "gearman_gevent", "nul\0bytes survive"):
                print(f"     {text!r:24} -> {client.do('reverse_string', text, timeout=10)!r}")

            taskset = gg.TaskSet(client)
            tasks = [gg.Task("reverse_string", f"job {i}", unique="") for i in range(args.jobs)]
            start = time.monotonic()
            taskset.add_tasks(tasks)
            ok = taskset.wait(60)
            elapsed = time.monotonic() - start
            correct = sum(t.result == f"job {i}"[::-1].encode() for i, t in enumerate(tasks))
            print(f"4. TaskSet of {args.jobs} jobs in flight at once: all ok={ok}, "
                  f"{correct} correct results in {elapsed:.2f}s ({args.jobs / elapsed:.0f} jobs/s)")

            bg = client.submit("reverse_string", "in the background", background=True, unique="")
            print(f"5. background job {bg.handle.decode()} acknowledged by the server")
            bg_done = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not client.get_status(bg).known:
                    bg_done = True
                    break
                time.sleep(0.05)
            print(f"     ... and executed by the worker: {bg_done}")

        with gg.Admin(address) as admin:
            st = admin.status().get("reverse_string")
            print(f"6. server status for 'reverse_string': queued={st.queued} running={st.running} workers={st.workers}")
        failed = not ok or correct != args.jobs or not bg_done
    finally:
        if worker is not None:
            stop(worker)
            print(f"7. worker stopped gracefully (exit code {worker.returncode})")
        stop(server)
        shutil.rmtree(logdir, ignore_errors=True)
        print(f"8. {name} stopped")
    print("demo FAILED" if failed else "demo OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
