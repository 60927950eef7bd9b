"""Conformance tests for the embedded job server (gearman_gevent.server).

Most protocol scenarios run twice: against the embedded server and against
Debian's gearmand 1.1.20 (``target`` fixture), and must behave the same.
Scenarios where we deliberately differ (epoch timer, admin shutdown) run
against the embedded server only and say so.
"""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time

import gevent
import gevent.socket
import gevent.subprocess
import pytest

from gearman_gevent import Client, JobException
from gearman_gevent.packet import ARGC, COMMANDS, NUMS, pack, pack_request
from gearman_gevent.server import Server
from gearman_gevent.server.engine import Engine
from gearman_gevent.server.protocol import BadMagic, RequestDecoder

from rawworker import RawWorker
from servers import free_port

HANDLE = re.compile(rb"^H:[^:\0]+:\d+$")

# This module compares the two servers itself (``target``: embedded, then
# gearmand), so it runs once, in the default (gearmand) pass.
pytestmark = pytest.mark.gearmand_only(
    "compares the embedded server with gearmand itself; runs once, in the default pass")


# --------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def embedded():
    server = Server("127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "gearmand"])
def target(request, embedded):
    """Address of the server under test: ours, then the real gearmand."""
    if request.param == "embedded":
        return embedded.address
    return request.getfixturevalue("gearmand").address


class Raw:
    """A raw-socket connection speaking packets (and admin lines)."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = gevent.socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""

    def send(self, name, *args) -> "Raw":
        self.sock.sendall(pack_request(name, *args))
        return self

    def send_raw(self, data: bytes) -> "Raw":
        self.sock.sendall(data)
        return self

    def _fill(self, n: int, timeout: float) -> bool:
        with gevent.Timeout(timeout, False):
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("server closed the connection")
                self.buf += chunk
            return True
        return False

    def recv(self, timeout: float = 3.0):
        """Next packet as ``(name, args, body)``; args split like gearmand."""
        if not self._fill(12, timeout):
            raise AssertionError("no packet received")
        magic, num, size = struct.unpack(">4sII", self.buf[:12])
        assert magic == b"\0RES", self.buf[:12]
        assert self._fill(12 + size, timeout)
        body, self.buf = self.buf[12:12 + size], self.buf[12 + size:]
        argc = ARGC[num]
        args = tuple(body.split(b"\0", argc - 1)) if argc > 1 else ((body,) if argc else ())
        return COMMANDS[num], args, body

    def request(self, name, *args):
        return self.send(name, *args).recv()

    def nothing(self, wait: float = 0.2) -> None:
        assert not self._fill(1, wait), f"unexpected bytes {self.buf[:60]!r}"

    def admin(self, line: str, timeout: float = 3.0) -> bytes:
        self.sock.sendall(line.encode() + b"\n")
        end = time.monotonic() + timeout
        while True:
            b = self.buf
            if b and (b == b".\n" or b.endswith(b"\n.\n") or (not b.startswith(b"\0") and b.endswith(b"\n")
                      and not _is_list(line, b))):
                self.buf = b""
                return b
            if not self._fill(len(b) + 1, max(0.01, end - time.monotonic())):
                raise AssertionError(f"admin reply to {line!r} incomplete: {b!r}")

    def close(self) -> None:
        self.sock.close()


def _is_list(line: str, reply: bytes) -> bool:
    cmd = line.strip().lower()
    lists = ("status", "workers", "prioritystatus", "show jobs", "show unique jobs")
    return cmd in lists and not reply.startswith(b"ERR")


@pytest.fixture
def raw(target):
    made = []

    def connect(address=None):
        conn = Raw(address or target)
        made.append(conn)
        return conn

    yield connect
    for conn in made:
        conn.close()


def submit(conn: Raw, name: str, func, unique=b"", data=b"x"):
    kind, args, _ = conn.request(name, func, unique, data)
    assert kind == "job_created", (kind, args)
    assert HANDLE.match(args[0]), args
    return args[0]


def worker(raw, *funcs, timeout_ms=None) -> Raw:
    w = raw()
    for f in funcs:
        if timeout_ms is None:
            w.send("can_do", f)
        else:
            w.send("can_do_timeout", f, str(timeout_ms))
    return w


# ------------------------------------------------------------ submitting
def test_submit_kinds_and_priority_order(raw, func_name):
    c = raw()
    kinds = ["submit_job_low_bg", "submit_job_bg", "submit_job_high_bg",
             "submit_job_low_bg", "submit_job_bg", "submit_job_high_bg"]
    handles = {}
    for i, kind in enumerate(kinds):
        handles[submit(c, kind, func_name, b"", b"%d" % i)] = i
    w = worker(raw, func_name)
    order = []
    for _ in kinds:
        kind, args, _ = w.request("grab_job_uniq")
        assert kind == "job_assign_uniq"
        order.append(int(args[3]))
        w.send("work_complete", args[0], b"")
    assert order == [2, 5, 1, 4, 0, 3]  # high, normal, low; FIFO within each
    assert w.request("grab_job")[0] == "no_job"


def test_foreground_kinds_complete(raw, func_name):
    c = raw()
    w = worker(raw, func_name)
    for kind in ("submit_job", "submit_job_high", "submit_job_low"):
        h = submit(c, kind, func_name, b"", b"payload\0with nul")
        kind_, args, _ = w.request("grab_job")
        assert kind_ == "job_assign" and args == (h, func_name.encode(), b"payload\0with nul")
        w.send("work_complete", h, b"res\0ult")
        assert c.recv() == ("work_complete", (h, b"res\0ult"), h + b"\0res\0ult")


def test_epoch_submission_and_sched_rejected(raw, func_name):
    c = raw()
    kind, args, _ = c.request("submit_job_epoch", func_name, b"", b"0", b"now")  # due at once
    assert kind == "job_created"
    kind, args, _ = c.send_raw(pack_request("submit_job_sched", func_name, b"", b"1", b"1", b"1", b"1", b"1",
                                            b"d")).recv()
    assert (kind, args) == ("error", (b"INVALID_COMMAND", b"Command not expected"))
    w = worker(raw, func_name)
    kind, args, _ = w.request("grab_job_uniq")
    assert kind == "job_assign_uniq" and args[3] == b"now"


def test_epoch_timer_wakes_sleeping_worker(embedded, func_name):
    """Ours only: gearmand 1.1 has no epoch timer (gearmand #101)."""
    w = Raw(embedded.address).send("can_do", func_name)
    assert w.request("grab_job")[0] == "no_job"
    w.send("pre_sleep")
    c = Raw(embedded.address)
    when = int(time.time()) + 1
    kind, args, _ = c.request("submit_job_epoch", func_name, b"", str(when).encode(), b"later")
    assert kind == "job_created"
    assert w.request("grab_job")[0] == "no_job"  # not due yet
    w.send("pre_sleep")
    t0 = time.time()
    assert w.recv(timeout=3)[0] == "noop"
    assert time.time() >= when - 0.05 and time.time() - t0 < 2.5
    kind, args, _ = w.request("grab_job")
    assert kind == "job_assign" and args[2] == b"later"
    w.close()
    c.close()


def test_reduce_job_and_grab_all(embedded, func_name):
    c = Raw(embedded.address)
    h1 = submit(c, "submit_job_bg", func_name, b"u1", b"plain")
    kind, args, _ = c.request("submit_reduce_job_background", func_name, b"u2", b"red", b"mapped")
    assert kind == "job_created"
    w = Raw(embedded.address).send("can_do", func_name)
    assert w.request("grab_job_all") == ("job_assign_uniq", (h1, func_name.encode(), b"u1", b"plain"),
                                         b"\0".join((h1, func_name.encode(), b"u1", b"plain")))
    kind, args, _ = w.request("grab_job_all")
    assert kind == "job_assign_all" and args[1:] == (func_name.encode(), b"u2", b"red", b"mapped")
    w.close()
    c.close()


# ------------------------------------------------------------ coalescing
def test_unique_coalescing(raw, func_name):
    c1, c2 = raw(), raw()
    f = func_name
    h = submit(c1, "submit_job", f, b"same", b"a")
    assert submit(c1, "submit_job", f, b"same", b"b") == h  # same connection twice
    assert submit(c2, "submit_job_high", f, b"same", b"c") == h  # other connection, other priority
    assert submit(c2, "submit_job_bg", f, b"same", b"d") == h  # background attaches too
    assert submit(c2, "submit_job", f + "-other", b"same", b"a") != h  # uniques are per function
    e1 = submit(c2, "submit_job_bg", f, b"", b"a")
    assert submit(c2, "submit_job_bg", f, b"", b"a") != e1  # empty unique: never coalesced
    d1 = submit(c2, "submit_job_bg", f, b"-", b"payload")
    assert submit(c2, "submit_job_bg", f, b"-", b"payload") == d1  # "-" hashes the data
    assert submit(c2, "submit_job_bg", f, b"-", b"other") != d1
    w = worker(raw, f)
    kind, args, _ = w.request("grab_job_uniq")
    assert args[0] == h and args[2] == b"same" and args[3] == b"a"
    # attaching to a running job works too
    c3 = raw()
    assert submit(c3, "submit_job", f, b"same", b"z") == h
    # GET_STATUS_UNIQUE ignores the function: it finds the newest "same" (the other function's)
    assert c3.request("get_status_unique", b"same")[1] == (b"same", b"1", b"0", b"0", b"0", b"1")
    w.send("work_data", h, b"chunk")
    w.send("work_complete", h, b"done")
    got1 = [c1.recv()[0] for _ in range(4)]
    assert got1 == ["work_data", "work_data", "work_complete", "work_complete"]
    assert [c2.recv()[0] for _ in range(2)] == ["work_data", "work_complete"]
    assert [c3.recv()[0] for _ in range(2)] == ["work_data", "work_complete"]
    c1.nothing(0.1)


# -------------------------------------------------------------- forwarding
def test_status_data_warning_forwarding_and_get_status(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name, b"", b"x")
    assert c.request("get_status", h)[1] == (h, b"1", b"0", b"0", b"0")
    assert c.request("get_status", b"H:nowhere:1")[1] == (b"H:nowhere:1", b"0", b"0", b"0", b"0")
    assert c.request("get_status_unique", b"no-such")[1] == (b"no-such", b"0", b"0", b"0", b"0", b"0")
    w = worker(raw, func_name)
    assert w.request("grab_job")[0] == "job_assign"
    w.send("work_status", h, b"1", b"3")
    assert c.recv()[1] == (h, b"1", b"3")
    assert c.request("get_status", h)[1] == (h, b"1", b"1", b"1", b"3")
    w.send("work_warning", h, b"careful")
    w.send("work_data", h, b"part")
    assert c.recv()[:2] == ("work_warning", (h, b"careful"))
    assert c.recv()[:2] == ("work_data", (h, b"part"))
    w.send("work_complete", h, b"ok")
    assert c.recv()[:2] == ("work_complete", (h, b"ok"))
    assert c.request("get_status", h)[1] == (h, b"0", b"0", b"0", b"0")


def test_exceptions_option(raw, func_name):
    plain, opted = raw(), raw()
    assert opted.request("option_req", b"exceptions")[:2] == ("option_res", (b"exceptions",))
    h = submit(plain, "submit_job", func_name, b"exc-u", b"x")
    assert submit(opted, "submit_job", func_name, b"exc-u", b"x") == h
    w = worker(raw, func_name)
    assert w.request("grab_job")[0] == "job_assign"
    w.send("work_exception", h, b"boom")
    assert opted.recv()[:2] == ("work_exception", (h, b"boom"))
    kind, _, body = plain.recv()
    assert (kind, body) == ("work_fail", h + b"\0")  # gearmand's converted WORK_FAIL
    # terminal: a second result is rejected
    assert w.request("work_fail", h)[1] == (b"JOB_NOT_FOUND", b"Job given in work result not found")
    opted.nothing(0.1)
    plain.nothing(0.1)


def test_work_fail(raw, func_name):
    c = raw()
    h = submit(c, "submit_job_low", func_name)
    w = worker(raw, func_name)
    w.request("grab_job")
    w.send("work_fail", h)
    assert c.recv() == ("work_fail", (h,), h)


# ------------------------------------------------------- workers, requeue
def test_requeue_on_worker_disconnect(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name, b"", b"again")
    w1 = worker(raw, func_name)
    assert w1.request("grab_job")[1][0] == h
    w1.close()
    w2 = worker(raw, func_name)
    for _ in range(50):
        kind, args, _ = w2.request("grab_job")
        if kind == "job_assign":
            break
        gevent.sleep(0.02)
    assert args[0] == h
    assert f"{h.decode()}\t1\t0\t0".encode() in w2.admin("show jobs")
    w2.send("work_complete", h, b"second try")
    assert c.recv()[:2] == ("work_complete", (h, b"second try"))


def test_cant_do_requeues_running_job_and_rejects_late_result(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name)
    w1 = worker(raw, func_name)
    assert w1.request("grab_job")[1][0] == h
    w1.send("cant_do", func_name)
    assert w1.request("echo_req", b"sync")[0] == "echo_res"  # CANT_DO processed
    w2 = worker(raw, func_name)
    assert w2.request("grab_job")[1][0] == h
    assert w1.request("work_complete", h, b"late")[1][0] == b"JOB_NOT_FOUND"
    w2.send("work_complete", h, b"ok")
    assert c.recv()[:2] == ("work_complete", (h, b"ok"))


def test_results_only_from_owning_connection(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name)
    w1, w2 = worker(raw, func_name), worker(raw, func_name)
    assert w1.request("grab_job")[1][0] == h
    for name, args in (("work_data", (b"x",)), ("work_status", (b"1", b"2")), ("work_complete", (b"x",))):
        assert w2.request(name, h, *args)[1][0] == b"JOB_NOT_FOUND"
    w1.send("work_complete", h, b"mine")
    assert c.recv()[:2] == ("work_complete", (h, b"mine"))


def test_noop_pre_sleep(raw, func_name):
    w = worker(raw, func_name)
    assert w.request("grab_job")[0] == "no_job"
    w.send("pre_sleep")
    w.nothing(0.15)
    c = raw()
    submit(c, "submit_job_bg", func_name)
    assert w.recv()[0] == "noop"
    submit(c, "submit_job_bg", func_name)
    w.nothing(0.15)  # no second NOOP before the next GRAB
    assert w.request("grab_job")[0] == "job_assign"
    w.send("pre_sleep")  # a job is still runnable: NOOP at once
    assert w.recv()[0] == "noop"
    assert w.request("grab_job_uniq")[0] == "job_assign_uniq"
    assert w.request("grab_job")[0] == "no_job"


def test_can_do_timeout_requeues(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name)
    w1 = worker(raw, func_name, timeout_ms=3)  # raised to 1000 ms
    assert w1.request("grab_job")[1][0] == h
    w2 = worker(raw, func_name)
    assert w2.request("grab_job")[0] == "no_job"
    w2.send("pre_sleep")
    t0 = time.monotonic()
    assert w2.recv(timeout=3)[0] == "noop"
    assert 0.8 < time.monotonic() - t0 < 2.5
    assert w2.request("grab_job")[1][0] == h
    w1.nothing(0.05)  # the timed-out worker is told nothing
    c.nothing(0.05)
    assert w1.request("work_complete", h, b"late")[1][0] == b"JOB_NOT_FOUND"
    w2.send("work_complete", h, b"ok")
    assert c.recv()[:2] == ("work_complete", (h, b"ok"))


def test_client_disconnect_drops_queued_job(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name)
    c.close()
    gevent.sleep(0.1)
    a = raw()
    assert f"{h.decode()}\t0\t1\t0".encode() in a.admin("show jobs")
    w = worker(raw, func_name)
    assert w.request("grab_job")[0] == "no_job"
    assert h not in a.admin("show jobs")


# ------------------------------------------------------------------ errors
def test_error_codes(raw, func_name):
    c = raw()
    assert c.send_raw(pack(b"\0RES", "echo_req", b"x")).recv()[:2] == (
        "error", (b"INVALID_MAGIC", b"Request magic expected"))
    for name, args in (("job_created", (b"x",)), ("all_yours", ()), ("noop", ())):
        assert c.send_raw(pack_request(name, *args)).recv()[1] == (b"INVALID_COMMAND", b"Command not expected")
    assert c.request("submit_job", func_name, b"u" * 65, b"x")[1] == (
        b"ARGUMENT_TOO_LARGE", b"Unique value too large")
    assert c.request("option_req", b"nope")[1] == (
        b"UNKNOWN_OPTION", b"Server does not recognize given option")
    assert c.request("work_complete", b"H:x:1", b"r")[1] == (
        b"JOB_NOT_FOUND", b"Job given in work result not found")
    assert c.request("echo_req", b"still\0alive")[:2] == ("echo_res", (b"still\0alive",))


def test_maxqueue_queue_error(raw, func_name):
    c, w = raw(), worker(raw, func_name)
    w.request("echo_req", b"sync")  # CAN_DO processed: the function exists
    assert c.admin(f"maxqueue {func_name} 2") == b"OK\r\n"
    submit(c, "submit_job_bg", func_name)
    submit(c, "submit_job_bg", func_name)
    assert c.request("submit_job_bg", func_name, b"", b"x")[1] == (b"QUEUE_ERROR", b"Job queue is full")
    assert c.admin(f"maxqueue {func_name} 5 5 1") == b"OK\r\n"
    assert c.request("submit_job_low_bg", func_name, b"", b"x")[1][0] == b"QUEUE_ERROR"
    submit(c, "submit_job_high_bg", func_name)
    assert c.admin(f"maxqueue {func_name}") == b"OK\r\n"
    submit(c, "submit_job_low_bg", func_name)


def test_protocol_garbage_drops_connection(embedded):
    c = Raw(embedded.address)
    c.send_raw(b"\0REQ" + struct.pack(">II", 77, 0))
    with pytest.raises(EOFError):
        c.recv(timeout=2)


# ------------------------------------------------------------------ admin
def test_admin_formats(raw, func_name):
    w = worker(raw, func_name)
    w.send("set_client_id", b"my-worker")
    c = raw()
    h = submit(c, "submit_job_high_bg", func_name, b"uq1")
    submit(c, "submit_job_low_bg", func_name, b"")
    a = raw()
    f = func_name.encode()
    assert re.search(rb"(^|\n)%s\t2\t0\t1\n" % re.escape(f), a.admin("status"))
    assert re.search(rb"(^|\n)%s\t1\t0\t1\t1\n" % re.escape(f), a.admin("prioritystatus"))
    workers = a.admin("workers")
    assert workers.endswith(b"\n.\n")
    assert re.search(rb"(^|\n)\d+ 127\.0\.0\.1 my-worker : %s\n" % re.escape(f), workers)
    assert re.search(rb"(^|\n)\d+ 127\.0\.0\.1 - :\n", workers)  # client connections are listed
    assert re.match(rb"^OK \S+\n$", a.admin("version"))
    assert re.match(rb"^OK \d+\n$", a.admin("getpid"))
    assert re.match(rb"^OK \S+\n$", a.admin("verbose"))
    assert re.search(rb"(^|\n)%s\t0\t0\t1\n" % re.escape(h), a.admin("show jobs"))
    assert re.search(rb"(^|\n)uq1\n", a.admin("SHOW UNIQUE JOBS"))
    assert a.admin("maxqueue") == (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this"
                                   b"+command+maxqueue\r\n")
    assert a.admin("bogus thing") == b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
    assert a.admin("cancel job H:nope:1") == b"ERR UNKNOWN_JOB\r\n"
    assert a.admin(f"drop function {func_name}") == (
        b"ERR there are still connected workers or executing clients\r\n")
    assert a.admin(f"drop function {func_name}-none") == b"ERR function not found\r\n"


def test_admin_cancel_and_functions(embedded, func_name):
    a, c = Raw(embedded.address), Raw(embedded.address)
    h = submit(c, "submit_job", func_name, b"", b"x")
    assert a.admin(f"cancel job {h.decode()}") == b"OK\r\n"
    assert c.recv() == ("work_fail", (h,), h)
    w = Raw(embedded.address).send("can_do", func_name)
    assert w.request("grab_job")[0] == "no_job"
    w.close()
    gevent.sleep(0.05)
    fn = f"{func_name}-made"
    assert a.admin(f"create function {fn}") == b"OK\r\n"
    assert f"\n{fn}\t0\t0\t0\n".encode() in b"\n" + a.admin("status")
    assert a.admin(f"drop function {fn}") == b"OK\r\n"
    assert fn.encode() not in a.admin("status")


def test_admin_shutdown_ours_only(gearmand):
    """gearmand >= 1.1.15 removed ``shutdown``; we keep it."""
    g = Raw(gearmand.address)
    assert g.admin("shutdown") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
    g.close()
    server = Server().start()
    a = Raw(server.address)
    assert a.admin("shutdown graceful") == b"OK\r\n"
    with gevent.Timeout(5):
        server.serve_forever()  # returns once stopped
    assert not server.started
    a.close()


# -------------------------------------------------------- with C tools
def _run(*cmd, timeout=10):
    return gevent.subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def test_gearman_cli_worker_and_client(embedded, func_name):
    host, port = embedded.address.rsplit(":", 1)
    proc = gevent.subprocess.Popen(["gearman", "-h", host, "-p", port, "-w", "-f", func_name, "--", "rev"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = _run("gearman", "-h", host, "-p", port, "-f", func_name, "--", "hello")
        assert r.returncode == 0 and r.stdout == b"olleh"
        r = _run("gearman", "-h", host, "-p", port, "-b", "-f", func_name, "--", "bg")
        assert r.returncode == 0
        r = _run("gearadmin", "-h", host, "-p", port, "--status", "--workers")
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert re.search(rf"^{re.escape(func_name)}\t\d+\t\d+\t1$", out, re.M), out
        assert re.search(rf"^\d+ 127\.0\.0\.1 - : {re.escape(func_name)}$", out, re.M), out
        r = _run("gearadmin", "-h", host, "-p", port, "--server-version", "--getpid")
        assert r.returncode == 0 and str(os.getpid()) in r.stdout.decode()
    finally:
        proc.kill()
        proc.wait()


# -------------------------------------------------------- library client
def test_library_client_against_embedded(embedded, func_name):
    def handler(job):
        if job.data == b"raise":
            raise RuntimeError("bad input")
        job.send("work_status", b"1", b"2")
        job.send("work_data", b"partial")
        return job.data.upper()

    rw = RawWorker(embedded.address, [func_name], handler)
    try:
        with Client(embedded.address) as client:
            task = client.submit(func_name, b"hello", unique="")
            assert task.wait(5) and task.result == b"hello".upper()
            assert task.status == (1, 2)
            assert client.do(func_name, b"abc", timeout=5) == b"ABC"
            client.set_options("exceptions")
            with pytest.raises(JobException):
                client.do(func_name, b"raise", timeout=5)
            bg = client.submit(func_name, b"bg", background=True)
            assert bg.handle
            deadline = time.monotonic() + 5
            while client.get_status(bg.handle).known and time.monotonic() < deadline:
                gevent.sleep(0.02)
            assert not client.get_status(bg.handle).known
    finally:
        rw.close()


def test_many_pipelined_jobs(embedded, func_name):
    rw = RawWorker(embedded.address, [func_name], lambda job: job.data, concurrency=50)
    try:
        with Client(embedded.address) as client:
            tasks = [client.submit(func_name, b"%d" % i, unique="") for i in range(300)]
            for i, t in enumerate(tasks):
                assert t.wait(10) and t.result == b"%d" % i
    finally:
        rw.close()


def test_library_worker_and_admin_against_embedded(embedded, func_name):
    try:
        from gearman_gevent import Admin, Worker
    except ImportError:  # pragma: no cover - built in parallel
        pytest.skip("library Worker/Admin not available")
    worker_ = Worker(embedded.address, client_id="lib-worker", concurrency=4)
    worker_.add_ability(func_name, lambda data, job: data[::-1])
    worker_.start()
    try:
        with Client(embedded.address) as client:
            results = [client.submit(func_name, b"abc%d" % i, unique="") for i in range(20)]
            assert all(t.wait(5) for t in results)
            assert [t.result for t in results] == [(b"abc%d" % i)[::-1] for i in range(20)]
        admin = Admin(embedded.address)
        try:
            assert admin.status()[func_name].workers == 1
            assert any(w.client_id == "lib-worker" and func_name in w.functions for w in admin.workers())
            assert admin.getpid() == os.getpid()
            assert admin.version()
        finally:
            admin.close()
    finally:
        worker_.stop(timeout=5)


def test_mixed_text_and_binary_on_one_connection(raw, func_name):
    c = raw()
    c.send_raw(pack_request("echo_req", b"one") + b"version\r\n" + pack_request("echo_req", b"two"))
    assert c.recv()[:2] == ("echo_res", (b"one",))
    deadline = time.monotonic() + 3
    while b"\n" not in c.buf and time.monotonic() < deadline:
        c._fill(len(c.buf) + 1, 0.5)
    line, _, c.buf = c.buf.partition(b"\n")
    assert line.startswith(b"OK ")
    assert c.recv()[:2] == ("echo_res", (b"two",))


@pytest.mark.parametrize("size", [0, 65535, 65536 + 13, 1 << 20])
def test_large_payloads(embedded, func_name, size):
    data = bytes(range(256)) * (size // 256) + b"\0" * (size % 256)
    c = Raw(embedded.address)
    h = submit(c, "submit_job", func_name, b"", data)
    w = Raw(embedded.address).send("can_do", func_name)
    kind, args, _ = w.request("grab_job")
    assert args == (h, func_name.encode(), data)
    w.send("work_complete", h, data)
    assert c.recv()[1] == (h, data)
    w.close()
    c.close()


def test_job_retries_limit_fails_job(func_name):
    with Server(job_retries=2) as server:
        c = Raw(server.address)
        h = submit(c, "submit_job", func_name)
        for _ in range(2):
            w = Raw(server.address).send("can_do", func_name)
            assert w.request("grab_job")[1][0] == h
            w.close()
        assert c.recv()[:2] == ("work_fail", (h,))
        assert h not in c.admin("show jobs")
        c.close()


def test_running_job_of_departed_client_finishes_quietly(raw, func_name):
    c = raw()
    h = submit(c, "submit_job", func_name)
    w = worker(raw, func_name)
    assert w.request("grab_job")[1][0] == h
    c.close()
    gevent.sleep(0.05)
    w.send("work_complete", h, b"nobody listens")
    assert w.request("echo_req", b"alive")[:2] == ("echo_res", (b"alive",))
    assert h not in w.admin("show jobs")


# ------------------------------------------------------------- durability
def test_sqlite_queue_survives_sigkill(tmp_path, func_name):
    db = tmp_path / "q.db"
    port = free_port()
    cmd = [sys.executable, "-m", "gearman_gevent.server", "--port", str(port), "--listen", "127.0.0.1",
           "--queue", f"sqlite:{db}"]

    def start():
        p = gevent.subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                gevent.socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return p
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline
                gevent.sleep(0.05)

    proc = start()
    try:
        with Client(f"127.0.0.1:{port}") as client:
            for i in range(50):
                client.submit(func_name, b"job%d" % i, background=True, unique="",
                              priority="high" if i == 49 else None)
            fg = client.submit(func_name, b"fg", unique="")  # foreground: not stored
            del fg
            later = client.submit(func_name + "-later", b"epoch", background=True, unique="e1",
                                  schedule_at=int(time.time()) + 3600)
            assert later.handle
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start()
        a = Raw(f"127.0.0.1:{port}")
        status = a.admin("status")
        assert f"{func_name}\t50\t0\t0".encode() in status
        assert f"{func_name}-later\t1\t0\t0".encode() in status
        assert b"e1\n" in a.admin("show unique jobs")
        w = Raw(f"127.0.0.1:{port}").send("can_do", func_name)
        got = []
        for _ in range(20):
            kind, args, _ = w.request("grab_job")
            got.append(args[2])
            w.send("work_complete", args[0], b"")
        assert got == [b"job49"] + [b"job%d" % i for i in range(19)]
        w.request("echo_req", b"sync")  # completions processed and committed
        w.close()
        a.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc = start()
        a = Raw(f"127.0.0.1:{port}")
        assert f"{func_name}\t30\t0\t0".encode() in a.admin("status")
        a.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------ unit level
def test_request_decoder_mixed_stream():
    d = RequestDecoder()
    stream = (pack_request("echo_req", b"a\0b") + b"status\r\n" + pack(b"\0RES", "echo_req", b"z")
              + pack_request("submit_job", "f", "", b"d\0x"))
    items = []
    for i in range(len(stream)):  # one byte at a time
        items.extend(d.feed(stream[i:i + 1]))
    assert [type(x).__name__ for x in items] == ["Packet", "TextCommand", "WrongMagic", "Packet"]
    assert items[0] == (NUMS["echo_req"], (b"a\0b",)) and items[1].line == b"status"
    assert isinstance(items[2], BadMagic) and items[3] == (NUMS["submit_job"], (b"f", b"", b"d\0x"))


def test_engine_with_fake_clock():
    now = [1000.0]
    timers = []

    class T:
        def __init__(self, at, fn):
            self.at, self.fn, self.closed = at, fn, False

        def close(self):
            self.closed = True

    def call_later(delay, fn):
        t = T(now[0] + delay, fn)
        timers.append(t)
        return t

    class Sink:
        def flush(self, peer):
            self.got = getattr(self, "got", []) + peer.out[:]
            peer.out.clear()

    e = Engine(call_later=call_later, clock=lambda: now[0], handle_prefix=b"H:t:")
    cl, wk = Sink(), Sink()
    c, w = e.connect(cl), e.connect(wk)
    from gearman_gevent.packet import Packet
    e.handle(w, Packet(NUMS["can_do"], (b"f",)))
    e.handle(w, Packet(NUMS["pre_sleep"], ()))
    e.handle(c, Packet(NUMS["submit_job_epoch"], (b"f", b"", b"1005", b"d")))
    e.end_batch()
    assert cl.got == [pack(b"\0RES", "job_created", b"H:t:1")]
    assert not getattr(wk, "got", None)
    now[0] = 1005.0
    live = [t for t in timers if not t.closed]
    assert len(live) == 1 and live[0].at == 1005.0
    live[0].fn()
    assert wk.got == [pack(b"\0RES", "noop")]


PLUGIN_USER_TEST = """
import socket, subprocess
import gearman_gevent

def test_uses_fixture(gearman_server):
    host, port = gearman_server.rsplit(":", 1)
    with gearman_gevent.Client(gearman_server) as client:
        assert client.echo(b"hi") == b"hi"
    # blocking, non-gevent code must not hang the embedded server
    s = socket.create_connection((host, int(port)))
    s.sendall(b"status\\n")
    assert s.recv(100).endswith(b".\\n")
    r = subprocess.run(["gearadmin", "-h", host, "-p", port, "--status"], capture_output=True, timeout=10)
    assert r.returncode == 0

def test_factory(gearman_server_factory):
    assert gearman_server_factory() != gearman_server_factory()
"""


@pytest.mark.parametrize("backend", ["embedded", "gearmand"])
def test_pytest_plugin(tmp_path, backend):
    (tmp_path / "test_user.py").write_text(PLUGIN_USER_TEST)
    env = dict(os.environ)
    env.pop("GEARMAND", None)
    if backend == "gearmand":
        env["GEARMAND"] = "/usr/sbin/gearmand"
    from importlib.metadata import entry_points

    eps = entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    registered = any(ep.value.startswith("gearman_gevent.testing") for ep in group)
    plugin = [] if registered else ["-p", "gearman_gevent.testing"]
    r = gevent.subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugin, "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_user.py")],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout.decode()
    assert b"2 passed" in r.stdout
