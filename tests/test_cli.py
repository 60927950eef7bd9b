"""The command line: as a real subprocess (``python -m gearman_gevent``)
against the session gearmand, and in-process ``main([...])`` where that is
enough.  Workers are the C ``gearman -w`` CLI, the test's RawWorker, or the
CLI's own ``worker`` subcommand."""
from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import signal
import subprocess
import sys
import time

import gevent
import pytest

import gearman_gevent as gg
from gearman_gevent.__main__ import main
from gearman_gevent.admin import Admin
from gearman_gevent.exceptions import JobFailed
from rawworker import RawWorker
from servers import free_port, wait_until

PYTHON = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, input=None, env=None, timeout=30, **kw):
    full_env = dict(os.environ)
    full_env.pop("GEARMAN_SERVERS", None)
    full_env.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "gearman_gevent", *args], input=input, capture_output=True,
        timeout=timeout, env=full_env, cwd=ROOT, **kw,
    )


def workers_of(address, func):
    with Admin(address) as a:
        return a.status().get(func, gg.FunctionStatus(0, 0, 0)).workers


@pytest.fixture
def c_worker(gearmand, func_name):
    """``gearman -w`` upper-casing job data for ``func_name``."""
    proc = subprocess.Popen(
        ["gearman", "-h", "127.0.0.1", "-p", str(gearmand.port), "-w", "-f", func_name,
         "--", "tr", "a-z", "A-Z"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until(lambda: workers_of(gearmand.address, func_name) == 1, what="gearman -w")
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# ------------------------------------------------------------ subprocess
def test_submit_subprocess_data_and_stdin(gearmand, func_name, c_worker):
    r = run_cli("--servers", gearmand.address, "submit", func_name, "hello world")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"HELLO WORLD", b"")
    # stdin, options after the subcommand, environment servers
    r = run_cli("submit", "--priority", "high", func_name, input=b"from\0stdin\n",
                env={"GEARMAN_SERVERS": gearmand.address})
    assert (r.returncode, r.stdout, r.stderr) == (0, b"FROM\0STDIN\n", b"")


def test_submit_background_prints_handle(gearmand, func_name):
    r = run_cli("-s", gearmand.address, "submit", "--background", "--unique", "u1", func_name, "x")
    assert r.returncode == 0, r.stderr
    handle = r.stdout.decode().strip()
    assert re.fullmatch(r"H:[^\s]+:\d+", handle)
    with Admin(gearmand.address) as a:
        assert a.status()[func_name].queued == 1
        assert handle in {j.handle for j in a.show_jobs()}
        assert "u1" in a.show_unique_jobs()
        a.cancel_job(handle)


def test_lines_subprocess_no_progress_when_stderr_is_not_a_tty(gearmand, func_name, c_worker):
    lines = [f"line {i}" for i in range(30)]
    r = run_cli("-s", gearmand.address, "submit", "--lines", "-c", "5", func_name,
                input="\n".join(lines).encode() + b"\n")
    assert r.returncode == 0
    assert r.stdout.decode().splitlines() == [x.upper() for x in lines]
    assert r.stderr == b""  # no progress bar on a pipe


def _run_with_tty_stderr(args, **kw):
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([PYTHON, "-m", "gearman_gevent", *args], stdout=subprocess.PIPE,
                              stderr=slave, timeout=30, cwd=ROOT, **kw)
    finally:
        os.close(slave)
    err = b""
    try:
        while True:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            err += chunk
    except OSError:  # EIO: every slave end closed
        pass
    finally:
        os.close(master)
    return proc, err


def test_lines_progress_on_a_terminal(gearmand, func_name, c_worker, tmp_path):
    args = ["-s", gearmand.address, "submit", "-l", func_name]
    # piped input: the total is unknown, counters only
    proc, err = _run_with_tty_stderr(args, input=b"a\nb\nc\n")
    assert proc.returncode == 0 and proc.stdout == b"A\nB\nC\n"
    final = err.rstrip(b"\r\n").rsplit(b"\r", 1)[-1]  # the tty turns \n into \r\n
    assert final.startswith(b"3 done, 0 failed, 0 running")
    # a file on stdin: its lines are counted first, so a bar with a total
    path = tmp_path / "input.txt"
    path.write_bytes(b"a\nb\nc\nd")
    with open(path, "rb") as f:
        proc, err = _run_with_tty_stderr(args, stdin=f)
    assert proc.returncode == 0 and proc.stdout == b"A\nB\nC\nD\n"
    final = err.rstrip(b"\r\n").rsplit(b"\r", 1)[-1]
    assert final.startswith(b"[" + b"#" * 24 + b"] 4/4 (100%), 0 failed, 0 running")


def test_admin_commands_subprocess(gearmand, func_name):
    worker = RawWorker(gearmand.address, [func_name], lambda job: b"ok")
    try:
        wait_until(lambda: workers_of(gearmand.address, func_name) == 1)
        r = run_cli("-s", gearmand.address, "status")
        assert r.returncode == 0 and r.stderr == b""
        lines = r.stdout.decode().splitlines()
        assert lines[0].split() == ["FUNCTION", "QUEUED", "RUNNING", "WORKERS"]
        mine = [line for line in lines if line.split()[0] == func_name]
        assert len(mine) == 1 and mine[0].split()[1:] == ["0", "0", "1"]
        # aligned: every row has the same width, numbers right-aligned
        assert len({len(line) for line in lines}) == 1
        assert lines[0].index("WORKERS") + len("WORKERS") == len(mine[0])

        r = run_cli("-s", gearmand.address, "workers", "--json")
        data = json.loads(r.stdout)
        infos = data[gearmand.address]
        assert any(w["functions"] == [func_name] for w in infos)
        assert all(w["functions"] for w in infos)  # clients hidden without --all

        r = run_cli("version", "--json", env={"GEARMAN_SERVERS": gearmand.address})
        assert re.match(r"^\d+\.\d+", json.loads(r.stdout)[gearmand.address])
    finally:
        worker.close()


def test_no_server_subprocess():
    port = free_port()
    for args in (["submit", "f", "x"], ["status"], ["workers"], ["version"]):
        r = run_cli("--servers", f"127.0.0.1:{port}", *args)
        assert r.returncode == 2, (args, r)
        assert r.stdout == b""
        err = r.stderr.decode()
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "error:" in err and "no job server available" in err and str(port) in err


def test_version_flag_and_usage_errors():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"gearman_gevent {gg.__version__}"
    r = run_cli("submit")
    assert r.returncode == 2 and b"FUNC" in r.stderr


# ------------------------------------------------------------- in-process
def test_lines_keep_input_order_with_concurrency(gearmand, func_name, capsysbinary, monkeypatch):
    """Later lines finish first; output still follows input order, and
    exactly --concurrency jobs run at once."""
    running = []
    peak = []

    def handler(job):
        running.append(1)
        peak.append(len(running))
        n = int(job.data)
        gevent.sleep(0.002 * (40 - n % 40))
        running.pop()
        return b"r%d" % n

    worker = RawWorker(gearmand.address, [func_name], handler, concurrency=50)
    try:
        _stdin(monkeypatch, b"".join(b"%d\n" % i for i in range(120)))
        code = main(["-s", gearmand.address, "submit", "--lines", "--concurrency", "8", func_name])
        out = capsysbinary.readouterr()
        assert code == 0, out.err
        assert out.out.splitlines() == [b"r%d" % i for i in range(120)]
        assert max(peak) == 8
    finally:
        worker.close()


def test_failed_jobs(gearmand, func_name, capsys, monkeypatch):
    def handler(job):
        if job.data == b"bad":
            return None  # WORK_FAIL
        return job.data.upper()

    worker = RawWorker(gearmand.address, [func_name], handler)
    try:
        assert main(["-s", gearmand.address, "submit", func_name, "bad"]) == 1
        out = capsys.readouterr()
        assert out.out == "" and out.err.startswith("error: ") and out.err.count("\n") == 1
        _stdin(monkeypatch, b"ok\nbad\nfine\n")
        assert main(["-s", gearmand.address, "submit", "-l", func_name]) == 1
        out = capsys.readouterr()
        assert out.out == "OK\n\nFINE\n"  # one output line per input line
        assert out.err.startswith("error: line 2: ") and out.err.count("\n") == 1
    finally:
        worker.close()


def test_timeout_exit_code(gearmand, func_name, capsys):
    start = time.monotonic()
    assert main(["-s", gearmand.address, "-t", "0.5", "submit", func_name, "x"]) == 3
    assert time.monotonic() - start < 3
    err = capsys.readouterr().err
    assert err.startswith("error: timed out") and err.count("\n") == 1
    with Admin(gearmand.address) as a:
        # the CLI disconnected: gearmand marks the job nobody waits for as
        # ignored (counted until a worker would take it, then discarded)
        handle = re.search(r"H:[^\s')]+", err).group(0)
        wait_until(lambda: {j.handle: j.ignore_job for j in a.show_jobs()}.get(handle),
                   what="job ignored")


def test_status_workers_tables_and_json(gearmand, func_name, capsys):
    worker = RawWorker(gearmand.address, [func_name, func_name + "-2"], lambda job: b"")
    try:
        wait_until(lambda: workers_of(gearmand.address, func_name) == 1)
        assert main(["status", "--json", "--servers", gearmand.address]) == 0
        data = json.loads(capsys.readouterr().out)[gearmand.address]
        assert data[func_name] == {"queued": 0, "running": 0, "workers": 1}

        assert main(["-s", gearmand.address, "workers"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["FD", "IP", "CLIENT-ID", "FUNCTIONS"]
        mine = [line for line in lines if func_name in line]
        assert len(mine) == 1 and sorted(mine[0].split()[3:]) == sorted([func_name, func_name + "-2"])
        col = lines[0].index("FUNCTIONS")
        assert mine[0][col:].split() == mine[0].split()[3:]  # aligned column

        assert main(["-s", gearmand.address, "workers", "--all", "--json"]) == 0
        infos = json.loads(capsys.readouterr().out)[gearmand.address]
        assert any(w["client_id"] == "-" and w["functions"] == [] for w in infos)
    finally:
        worker.close()


def test_two_servers_one_down(gearmand, capsys):
    down = f"127.0.0.1:{free_port()}"
    assert main(["-s", f"{gearmand.address},{down}", "version"]) == 2
    out = capsys.readouterr()
    rows = out.out.splitlines()
    assert rows[0].split() == ["SERVER", "VERSION"] and rows[1].split()[0] == gearmand.address
    assert out.err.startswith(f"error: {down}: no job server available") and out.err.count("\n") == 1


def test_main_leaves_logging_as_it_was(gearmand, capsys):
    lib = logging.getLogger("gearman_gevent")
    before = (lib.level, list(logging.getLogger().handlers))
    assert main(["-s", gearmand.address, "-vv", "version"]) == 0
    assert main(["-s", gearmand.address, "version"]) == 0
    assert (lib.level, list(logging.getLogger().handlers)) == before
    capsys.readouterr()


def test_usage_errors_in_process(capsys):
    assert main(["-s", "h:99999", "status"]) == 2
    assert "bad --servers" in capsys.readouterr().err
    assert main(["-s", "127.0.0.1:1", "worker", "f"]) == 2
    assert "needs a command" in capsys.readouterr().err
    assert main(["submit", "--lines", "--unique", "u", "f"]) == 2
    assert "--unique" in capsys.readouterr().err
    assert main(["submit", "-c", "0", "f"]) == 2


# ---------------------------------------------------------------- worker
def test_worker_subcommand(gearmand, func_name, tmp_path):
    f1, f2 = func_name, func_name + "-b"
    pidfile = tmp_path / "child.pid"
    script = (
        'd=$(cat); [ "$d" != fail ] || exit 3; [ "$d" != empty ] || exit 0; '
        f'if [ "$d" = hang ]; then sleep 30 & echo $! > {pidfile}; wait; fi; '
        '[ "$d" != sleep ] || sleep 0.6; '
        'printf "%s %s" "$d" "$GEARMAN_FUNCTION" | tr a-z A-Z'
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "gearman_gevent", "-s", gearmand.address, "worker", f1, f2,
         "--concurrency", "3", "--client-id", f"cli-{func_name}", "--job-timeout", "2",
         "--", "sh", "-c", script],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True,
    )
    try:
        wait_until(lambda: workers_of(gearmand.address, f1) == 1, what="CLI worker")
        with gg.Client(gearmand.address) as client, Admin(gearmand.address) as admin:
            assert client.do(f1, b"abc", timeout=10) == f"ABC {f1}".upper().encode()
            assert client.do(f2, b"xyz", timeout=10) == f"XYZ {f2}".upper().encode()
            with pytest.raises(JobFailed):
                client.do(f1, b"fail", timeout=10)  # non-zero exit -> WORK_FAIL
            assert client.do(f1, b"empty", timeout=10) == b""  # empty output is a result

            # --job-timeout: the job fails and the command's process group dies
            start = time.monotonic()
            with pytest.raises(JobFailed):
                client.do(f2, b"hang", timeout=20)
            assert 1.5 < time.monotonic() - start < 10
            child = int(pidfile.read_text())
            wait_until(lambda: not os.path.exists(f"/proc/{child}") or
                       open(f"/proc/{child}/stat").read().split()[2] == "Z", what="child killed")
            assert any(w.client_id == f"cli-{func_name}" for w in admin.workers())

            # three jobs run at once (--concurrency 3)
            tasks = [client.submit(f1, b"sleep", unique="") for _ in range(3)]
            wait_until(lambda: admin.status()[f1].running == 3, what="3 running jobs")
            assert all(t.wait(10) and t.successful for t in tasks)

            # SIGTERM while a job runs: the job still completes, then exit 0
            task = client.submit(f1, b"sleep", unique="")
            wait_until(lambda: admin.status()[f1].running == 1, what="a running job")
            os.kill(proc.pid, signal.SIGTERM)
            assert task.wait(10) and task.result == f"SLEEP {f1}".upper().encode()
            assert proc.wait(timeout=10) == 0
            assert not any(w.client_id == f"cli-{func_name}" for w in admin.workers())
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.stderr.close()


def test_server_subcommand_serves_and_stops_on_sigterm():
    import signal as _signal

    import gearman_gevent as gg

    proc = subprocess.Popen(
        [sys.executable, "-m", "gearman_gevent", "server", "--listen", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), line + proc.stderr.read()
        address = line.split()[-1]
        with gg.Client(address) as client:
            assert client.echo(b"embedded") == b"embedded"
            assert client.submit("cli-server-f", b"x", background=True).handle
        with gg.Admin(address) as admin:
            assert admin.status()["cli-server-f"].queued == 1
        proc.send_signal(_signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
