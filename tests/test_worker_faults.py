"""Worker robustness: broken servers, hostile abilities, bad arguments,
payload edges, TLS, and memory over 10 000 jobs.

* Faults a real gearmand does not produce (garbage, hang-ups mid-packet,
  silence, one byte per second, unsolicited ERRORs) are played by the
  scripted fake server of ``tests/fakeserver.py``; the Worker must keep
  serving the *real* gearmand next to it and leave nothing behind on stop.
* Everything else runs against the real gearmand (``conftest.py``).

Time bounds are generous: they prove "no hang" / "not serialised behind a
broken server", never speed.  Loopback only.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time

import gevent
import pytest
from gevent.event import Event

from gearman_gevent import Client, InvalidArgsError, JobFailed, Task, Worker
from gearman_gevent.packet import pack_response

from fakeserver import FakeConn
from servers import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------ helpers
def live_greenlets():
    return {g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead}


def open_sockets():
    """{(fd, "socket:[inode]")} of this process (an inode is never reused
    while the socket is open, so a new socket never looks like an old one)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            fds.add((name, target))
    return fds


@pytest.fixture
def uncaught(monkeypatch):
    """Greenlets that died of an exception nobody handled (gevent's hub
    would print their tracebacks): a list of ``(greenlet, exception)``."""
    hub = gevent.get_hub()
    seen = []
    original = hub.print_exception

    def record(context, type_, value, tb):
        seen.append((context, value))
        original(context, type_, value, tb)

    monkeypatch.setattr(hub, "print_exception", record)
    return seen


@pytest.fixture
def workers():
    made = []

    def make(servers, **kw):
        kw.setdefault("reconnect_delay", 0.3)
        w = Worker(servers, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop(0)
        assert not w.running


def start_and_wait(worker, server_address, timeout=10.0):
    """Start *worker*; return once it registered with *server_address*
    (asserting that happens within *timeout*)."""
    registered = Event()

    @worker.on_connect
    def connected():
        if any(c.server == server_address for c in worker.connections):
            registered.set()

    t0 = time.monotonic()
    worker.start()
    assert registered.wait(timeout), f"worker never registered with {server_address}"
    return time.monotonic() - t0


# ------------------------------------------------------ fake server scripts
def _register(conn: FakeConn) -> None:
    """Play a server during registration: swallow SET_CLIENT_ID/CAN_DO*, then
    answer the worker's ECHO_REQ (the end of its registration)."""
    while True:
        name, body = conn.recv_packet()
        if name == "echo_req":
            conn.reply("echo_res", body)
            return


def garbage_at_register(conn):
    conn.recv_packet()
    conn.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    conn.idle()


def hangup_mid_register(conn):
    while True:
        name, body = conn.recv_packet()
        if name == "echo_req":
            conn.send(pack_response("echo_res", body)[:7])  # half a header, then bye
            return


def silent(conn):
    conn.idle()


def garbage_at_grab(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.send(b"\0RES\0\0\0\x63\0\0\0\0")  # unknown packet type 99
    conn.idle()


def oversized_at_grab(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.send(b"\0RES\0\0\0\x1f\x7f\xff\xff\xff")  # JOB_ASSIGN_UNIQ of 2 GiB
    conn.idle()


def hangup_mid_assign(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    pkt = pack_response("job_assign_uniq", b"H:fake:1", b"f", b"", b"data" * 100)
    conn.send(pkt[: len(pkt) // 2])


def silent_at_grab(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.idle()


def trickle_at_grab(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.trickle(pack_response("no_job"), 1.0)
    conn.idle()


def error_at_grab(conn):
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.reply("error", b"INTERNAL", b"the server refuses the GRAB")  # in place of the reply
    conn.idle()


SCRIPTS = {
    "error-at-grab": error_at_grab,
    "garbage-at-register": garbage_at_register,
    "hangup-mid-register": hangup_mid_register,
    "silent": silent,
    "garbage-at-grab": garbage_at_grab,
    "oversized-at-grab": oversized_at_grab,
    "hangup-mid-assign": hangup_mid_assign,
    "silent-at-grab": silent_at_grab,
    "trickle-at-grab": trickle_at_grab,
}


# ======================================== broken servers next to a real one
@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_worker_keeps_serving_the_real_server_next_to_a_broken_one(
    kind, fake, workers, gearmand, func_name, uncaught
):
    """The broken server comes *first* in the list and the worker's
    network_timeout is long: the real server must still be registered at
    once (not after the broken one timed out) and serve every job, and the
    worker must go on retrying the broken server."""
    bad = fake(SCRIPTS[kind])
    w = workers([bad.address, gearmand.address], network_timeout=2.0, concurrency=4)

    @w.add_ability(func_name)
    def echo(data, job):
        return data + b"@" + job.connection.server.encode()

    elapsed = start_and_wait(w, gearmand.address)
    assert elapsed < 1.5, f"registration with the real server waited {elapsed:.2f}s for {kind}"
    assert bad.accepted.wait(5), "the broken server was never contacted"
    with Client(gearmand.address) as client:
        tasks = client.submit_tasks([Task(func_name, b"%d" % i, unique="") for i in range(20)], timeout=5)
        for t in tasks:
            assert t.wait(5), f"a job on the real server hung next to {kind}"
            assert t.successful and t.result == t.data + b"@" + gearmand.address.encode()
        # the worker gives up on the broken connection and tries again
        # (silent servers only after network_timeout), still serving meanwhile
        wait_until(lambda: len(bad.conns) >= 2, timeout=8, what=f"a reconnect to the {kind} server")
        assert client.do(func_name, b"after", timeout=5) == b"after@" + gearmand.address.encode()
    assert gearmand.status().get(func_name, (0, 0, 0))[:2] == (0, 0)
    assert uncaught == []  # every fault was handled, none killed a greenlet unhandled


def test_add_ability_returns_within_network_timeout_next_to_a_silent_server(
    fake, workers, gearmand, func_name
):
    """Announcing a new ability waits for each server's ECHO: a server that
    stopped answering costs at most network_timeout, and the real server
    gets the new function."""
    bad = fake(silent_at_grab)
    w = workers([bad.address, gearmand.address], network_timeout=1.0)
    w.add_ability(func_name, lambda d, j: b"first")
    start_and_wait(w, gearmand.address)
    wait_until(lambda: any(n == "grab_job_uniq" for c in bad.conns for n, _ in c.requests),
               what="the GRAB the fake never answers")
    t0 = time.monotonic()
    w.add_ability(func_name + "-new", lambda d, j: b"second")
    assert time.monotonic() - t0 < 2.5
    with Client(gearmand.address) as client:
        assert client.do(func_name + "-new", timeout=5) == b"second"
        assert client.do(func_name, timeout=5) == b"first"


def deaf_after_first_grab(conn):
    """Register, answer the first GRAB with NO_JOB, then read everything and
    answer nothing (so the worker sleeps, with no GRAB outstanding)."""
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.reply("no_job")
    conn.idle()


def test_add_ability_waits_for_silent_servers_at_once_not_one_by_one(fake, workers, gearmand, func_name):
    """Three servers that stopped answering cost network_timeout once: the
    servers are updated in parallel."""
    bad = [fake(deaf_after_first_grab) for _ in range(3)]
    w = workers([b.address for b in bad] + [gearmand.address], network_timeout=1.0)
    w.add_ability(func_name, lambda d, j: b"first")
    start_and_wait(w, gearmand.address)
    wait_until(lambda: len(w.connections) == 4, what="all four servers registered")
    for b in bad:
        wait_until(lambda b=b: any(n == "grab_job_uniq" for c in b.conns for n, _ in c.requests),
                   what="the deaf server's GRAB")
    t0 = time.monotonic()
    w.add_ability(func_name + "-new", lambda d, j: b"second")
    took = time.monotonic() - t0
    assert 0.9 <= took < 2.0, took  # one network_timeout, not three
    with Client(gearmand.address) as client:
        assert client.do(func_name + "-new", timeout=5) == b"second"


def unsolicited_errors(conn):
    """Register, answer the first GRAB with NO_JOB, and while the worker
    sleeps send ERROR JOB_NOT_FOUND and an ERROR of another kind; then wake
    it with NOOP and hand out one job.  (The worker sends each GRAB with a
    PRE_SLEEP after it: it sleeps once the GRAB is answered.)"""
    _register(conn)
    if conn.index > 0:  # only the first connection plays; a reconnect is a failure
        conn.idle()
        return
    conn.expect("grab_job_uniq")
    conn.expect("pre_sleep")
    conn.reply("no_job")
    conn.reply("error", b"JOB_NOT_FOUND", b"Job given in work result not found")
    conn.reply("error", b"UNEXPECTED_PACKET", b"something the server disliked")
    conn.reply("noop")
    conn.expect("grab_job_uniq")
    conn.expect("pre_sleep")
    conn.reply("job_assign_uniq", b"H:fake:1", b"f-err", b"", b"payload")
    name, body = conn.recv_packet()
    assert (name, body) == ("work_complete", b"H:fake:1\0done:payload"), (name, body)
    conn.reply("noop")  # another job came in
    conn.expect("grab_job_uniq")
    conn.reply("no_job")
    conn.idle()


def test_unsolicited_error_packets_do_not_kill_the_worker_connection(fake, workers, caplog):
    server = fake(unsolicited_errors)
    w = workers(server.address, network_timeout=5)
    done = Event()
    w.add_ability("f-err", lambda data, job: b"done:" + data)
    w.on_work_complete(done.set)
    with caplog.at_level(logging.WARNING, logger="gearman_gevent"):
        start_and_wait(w, server.address)
        generation = w.connections[0].generation
        assert done.wait(5), "the job after the ERRORs was not run"
        wait_until(lambda: [n for n, _ in server.conns[0].requests].count("grab_job_uniq") >= 3,
                   what="the GRAB after the job")
    assert len(server.conns) == 1  # never reconnected
    assert w.connections[0].generation == generation
    assert "JOB_NOT_FOUND" in caplog.text and "UNEXPECTED_PACKET" in caplog.text
    server.check()


def test_stop_leaves_no_greenlet_and_no_socket(fake, gearmand, func_name, uncaught):
    """A worker with a real server, a garbage server, a silent one, one that
    never answers GRAB, a trickling one and a dead address stops cleanly."""
    from servers import free_port

    bad = [fake(s) for s in (garbage_at_grab, silent, silent_at_grab, trickle_at_grab)]
    dead = f"127.0.0.1:{free_port()}"
    # warm up whatever the hub creates once (resolver, watchers)
    warm = Worker(gearmand.address)
    warm.add_ability(func_name, lambda d, j: d)
    start_and_wait(warm, gearmand.address)
    warm.stop(1)
    before_greenlets = live_greenlets()
    before_sockets = open_sockets()

    w = Worker([s.address for s in bad] + [dead, gearmand.address],
               network_timeout=1.0, reconnect_delay=0.2, concurrency=3)
    running = Event()
    release = Event()

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"hold":
            running.set()
            release.wait()
        return data

    start_and_wait(w, gearmand.address)
    with Client(gearmand.address) as client:
        assert client.do(func_name, b"x", timeout=5) == b"x"
        held = client.submit(func_name, b"hold", unique="")
        assert running.wait(5)
        for s in bad:
            assert s.accepted.wait(5)
        wait_until(lambda: len(bad[1].conns) >= 2, timeout=5, what="a retry of the silent server")
        t0 = time.monotonic()
        gevent.spawn_later(0.2, release.set)
        w.stop(5)  # the held job finishes and reports first
        assert time.monotonic() - t0 < 4
        assert held.wait(5) and held.result == b"hold"
    assert not w.running
    gevent.sleep(0)  # deliver the kills scheduled with block=False
    fake_greenlets = set()
    for s in bad:
        fake_greenlets |= set(s._pool)
    left = [g for g in live_greenlets() - before_greenlets - fake_greenlets if not g.dead]
    assert left == [], left
    fake_sockets = set()
    for s in bad:
        for c in s.conns:
            try:
                fd = c.sock.fileno()
                fake_sockets.add((str(fd), os.readlink(f"/proc/self/fd/{fd}")))
            except OSError:
                pass
    fake_sockets |= {(str(s._server.socket.fileno()), os.readlink(f"/proc/self/fd/{s._server.socket.fileno()}"))
                     for s in bad if s._server.socket is not None}
    leaked = open_sockets() - before_sockets - fake_sockets
    assert leaked == set(), leaked
    assert uncaught == []


# ===================================================== hostile abilities
class Unprintable:
    def __str__(self):
        raise RuntimeError("cannot print me")


class NotAnException(BaseException):
    """Neither an Exception nor one of the worker's interrupts."""


def _odd(data, job):
    kind = data.decode()
    if kind == "int":
        return 42
    if kind == "true":
        return True
    if kind == "dict":
        return {"a": 1}
    if kind == "bytearray":
        return bytearray(b"ba\0")
    if kind == "memoryview":
        return memoryview(b"mv\0x")
    if kind == "empty":
        return b""
    if kind == "false":
        return False
    if kind == "none":
        return None
    if kind == "unprintable":
        return Unprintable()
    if kind == "raise":
        raise ValueError("plain error")
    if kind == "raise-empty":
        raise KeyError()
    if kind == "gevent-timeout":
        with gevent.Timeout(0.05):  # the user's own timeout, not caught
            gevent.sleep(5)
    if kind == "base-exception":
        raise NotAnException("odd")
    if kind == "status-bad":
        job.report_status(-1, 3)  # InvalidArgsError escapes the ability
    return b"ok"


ODD_RESULTS = [
    ("int", b"42"), ("true", b"True"), ("dict", b"{'a': 1}"), ("bytearray", b"ba\0"),
    ("memoryview", b"mv\0x"), ("empty", b""),
]
ODD_FAILURES = [
    # kind, exception message the client sees with the "exceptions" option (None: WORK_FAIL)
    ("false", None), ("none", None), ("unprintable", "cannot print me"),
    ("raise", "plain error"), ("raise-empty", "KeyError"),
    ("gevent-timeout", "0.05 seconds"), ("base-exception", "odd"),
    ("status-bad", "numerator must be a non-negative int"),
]


def test_odd_results_and_exceptions_never_take_the_worker_down(workers, gearmand, func_name, uncaught):
    w = workers(gearmand.address, concurrency=4)
    w.add_ability(func_name, _odd)
    start_and_wait(w, gearmand.address)
    generation = w.connections[0].generation
    with Client(gearmand.address) as client:
        client.set_options("exceptions")
        for kind, expected in ODD_RESULTS:
            assert client.do(func_name, kind, timeout=5, unique="") == expected, kind
        for kind, message in ODD_FAILURES:
            task = Task(func_name, kind, unique="")
            client.submit_task(task, timeout=5)
            assert task.wait(5), f"{kind}: the client never got a verdict"
            assert task.failed and not task.successful, kind
            if message is None:
                assert task.exception is None, kind
            else:
                assert message in task.exception, (kind, task.exception)
        # all of that on the same connection, and the worker still serves
        tasks = client.submit_tasks([Task(func_name, "int", unique="") for _ in range(20)], timeout=5)
        assert all(t.wait(5) and t.result == b"42" for t in tasks)
    assert w.connections[0].generation == generation
    assert w.running_jobs == 0
    assert gearmand.status().get(func_name, (0, 0, 0))[:2] == (0, 0)
    assert uncaught == []


def test_callbacks_raising_anything_are_logged_only(workers, gearmand, func_name, caplog, uncaught):
    w = workers(gearmand.address)
    calls = []

    def raiser(exc):
        def cb():
            calls.append(exc)
            raise exc
        return cb

    for register in (w.on_connect, w.on_grab_job, w.on_no_job, w.on_job_assign,
                     w.on_work_complete, w.on_work_fail, w.on_work_exception):
        register(raiser(RuntimeError("cb bug")))
        register(raiser(gevent.Timeout(0.01)))  # a BaseException, not an Exception

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"raise":
            raise ValueError("x")
        return None if data == b"fail" else data

    w.after_ability(func_name, lambda result, data: (_ for _ in ()).throw(gevent.Timeout(0.01)))
    with caplog.at_level(logging.ERROR, logger="gearman_gevent"):
        start_and_wait(w, gearmand.address)
        generation = w.connections[0].generation
        with Client(gearmand.address) as client:
            for i in range(3):
                assert client.do(func_name, b"ok%d" % i, timeout=5) == b"ok%d" % i
                with pytest.raises(JobFailed):
                    client.do(func_name, b"fail", timeout=5, unique="")
                with pytest.raises(JobFailed):
                    client.do(func_name, b"raise", timeout=5, unique="")
    assert w.connections[0].generation == generation
    assert len(calls) > 20
    assert "cb bug" in caplog.text
    assert uncaught == []


def test_cpu_bound_ability_does_not_kill_the_worker(workers, gearmand, func_name):
    """An ability that never yields for ~1 s blocks the whole worker process
    (inherent to cooperative scheduling: nothing else runs, not even the
    connection's reader).  Afterwards the connection is still the same,
    gearmand did not requeue the job (no CAN_DO_TIMEOUT was sent: without it
    gearmand has no timer), the job ran exactly once, and the jobs queued
    meanwhile all complete."""
    w = workers(gearmand.address, concurrency=2)
    runs = []
    spinning = Event()

    @w.add_ability(func_name)
    def job(data, job):
        runs.append(data)
        if data == b"spin":
            spinning.set()
            end = time.monotonic() + 1.0
            n = 0
            while time.monotonic() < end:  # no gevent call: never yields
                n += 1
            return b"spun"
        return b"quick:" + data

    start_and_wait(w, gearmand.address)
    conn = w.connections[0]
    generation = conn.generation
    with Client(gearmand.address) as client:
        spin = client.submit(func_name, b"spin", unique="")
        assert spinning.wait(5)
        # queued while the worker process is frozen (this greenlet runs only
        # once the loop is over, so these are submitted right after it)
        quick = client.submit_tasks([Task(func_name, b"%d" % i, unique="") for i in range(10)], timeout=5)
        assert spin.wait(5) and spin.result == b"spun"
        for t in quick:
            assert t.wait(5) and t.result == b"quick:" + t.data
        assert client.do(func_name, b"later", timeout=5) == b"quick:later"
    assert runs.count(b"spin") == 1  # not requeued, not run twice
    assert w.connections == [conn] and conn.generation == generation
    assert gearmand.status().get(func_name, (0, 0, 0))[:2] == (0, 0)


# ======================================================== argument checks
@pytest.mark.parametrize("kwargs", [
    {"concurrency": 0}, {"concurrency": "2"}, {"concurrency": True}, {"concurrency": 1.5},
    {"network_timeout": -1}, {"network_timeout": "5"}, {"network_timeout": float("nan")},
    {"reconnect_delay": -1}, {"reconnect_delay": None}, {"reconnect_delay": "1"},
    {"wakeup_interval": 0}, {"wakeup_interval": -3},
    {"client_id": ""}, {"client_id": "a\0b"}, {"client_id": "a b"}, {"client_id": 7},
    {"client_id": "x" * 128},
])
def test_worker_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:4730", **kwargs)


@pytest.mark.parametrize("servers", [42, "", [], ["127.0.0.1:0"], "127.0.0.1:65536", ("h", "p", 1)])
def test_worker_rejects_bad_servers(servers):
    with pytest.raises(InvalidArgsError):
        Worker(servers)


def registered_then_one_job(conn):
    """Register, then hand out one job; record everything after it."""
    _register(conn)
    conn.expect("grab_job_uniq")
    conn.reply("job_assign_uniq", b"H:fake:9", b"args", b"u", b"data")
    while True:  # abilities added/removed at run time: answer their ECHO
        name, body = conn.recv_packet()
        if name == "echo_req":
            conn.reply("echo_res", body)
        elif name == "grab_job_uniq":
            conn.reply("no_job")


def test_bad_arguments_raise_before_anything_is_sent(fake, workers):
    server = fake(registered_then_one_job)
    w = workers(server.address, network_timeout=5)
    errors = []
    ran = Event()
    release = Event()

    def bad_job_calls(job):
        for call in (
            lambda: job.report_status(-1, 2), lambda: job.report_status(1, -2),
            lambda: job.report_status("1", 2), lambda: job.report_status(True, 2),
            lambda: job.report_status(1.5, 2), lambda: job.send_data(123),
            lambda: job.send_data(None), lambda: job.report_warning(object()),
        ):
            try:
                call()
            except InvalidArgsError as exc:
                errors.append(exc)

    @w.add_ability("args")
    def args(data, job):
        bad_job_calls(job)
        ran.set()
        release.wait(5)
        return b"ok"

    def bad_worker_calls():
        for call in (
            lambda: w.add_ability("", lambda d, j: d),
            lambda: w.add_ability(b"a\0b", lambda d, j: d),
            lambda: w.add_ability(None, lambda d, j: d),
            lambda: w.add_ability(42, lambda d, j: d),
            lambda: w.add_ability("x", "not callable"),
            lambda: w.add_ability("x", lambda d, j: d, timeout=-1),
            lambda: w.add_ability("x", lambda d, j: d, timeout="1"),
            lambda: w.add_ability("x", lambda d, j: d, timeout=float("nan")),
            lambda: w.add_ability("x", lambda d, j: d, server_timeout=-0.5),
            lambda: w.add_ability("x", lambda d, j: d, timeout=1, server_timeout=1e10),
            lambda: w.after_ability("not-registered", lambda r, d: None),
            lambda: w.after_ability("args", 17),
            lambda: w.remove_ability(""),
            lambda: w.remove_ability(b"a\0b"),
            lambda: w.remove_ability(3.0),
            lambda: w.on_no_job(None),
            lambda: w.stop(-1),
            lambda: w.stop("soon"),
        ):
            with pytest.raises(InvalidArgsError):
                call()

    bad_worker_calls()  # not running
    start_and_wait(w, server.address)
    assert ran.wait(5)
    (conn,) = server.conns
    seen = len(conn.requests)
    bad_worker_calls()  # running, while the job runs
    w.add_ability("valid", lambda d, j: d)  # sends CAN_DO + ECHO, waits for the reply
    release.set()
    done = Event()
    w.on_work_complete(done.set)
    assert done.wait(5)
    wait_until(lambda: any(n == "work_complete" for n, _ in conn.requests[seen:]), what="WORK_COMPLETE")
    names = [n for n, _ in conn.requests[seen:]]
    assert names[:3] == ["can_do", "echo_req", "work_complete"], names
    assert conn.requests[seen] == ("can_do", b"valid")
    assert conn.requests[seen + 2] == ("work_complete", b"H:fake:9\0ok")
    assert len(errors) == 8
    # the process-wide checks that need no server
    with pytest.raises(InvalidArgsError):
        Worker(server.address).start(max_jobs=-1)
    with pytest.raises(InvalidArgsError):
        Worker(server.address).work(max_jobs="1")
    assert len(server.conns) == 1


# ================================================== payloads through Worker
PAYLOADS = {
    "empty": b"",
    "all-bytes": bytes(range(256)) * 3,
    "64KiB-3": (bytes(range(256)) * 256)[:65536 - 3],
    "64KiB": bytes(range(256)) * 256,
    "64KiB+5": (bytes(range(256)) * 257)[:65536 + 5],
    "8MiB": bytes(range(256)) * (8 * 1024 * 1024 // 256),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payloads_round_trip_through_worker(name, workers, gearmand, func_name):
    """The library Worker receives the payload unchanged and sends it back
    unchanged both as WORK_DATA and as WORK_COMPLETE."""
    payload = PAYLOADS[name]
    w = workers(gearmand.address)
    received = []

    @w.add_ability(func_name)
    def echo(data, job):
        received.append(data)
        job.send_data(data)
        return data

    start_and_wait(w, gearmand.address)
    with Client(gearmand.address) as client:
        task = Task(func_name, payload, unique="")
        chunks = []
        task.on_data(chunks.append)
        client.submit_task(task, timeout=10)
        assert task.wait(30)
        assert task.successful
        assert type(received[0]) is bytes and received[0] == payload
        assert chunks == [payload]
        assert task.result == payload


# ==================================================================== TLS
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, gearmand):
    from tls import Stunnel, client_context, make_certs

    certs = make_certs(str(tmp_path_factory.mktemp("worker-certs")), "worker")
    tunnel = Stunnel(gearmand.port, certs["cert"], certs["key"]).start()
    yield tunnel, client_context(certs["ca"])
    tunnel.stop()


def test_worker_over_tls(tls_server, workers, gearmand, func_name):
    """A Worker with ``ssl_context`` registers through stunnel4, serves jobs
    (status, data and a 4 MiB result included) and stops cleanly."""
    tunnel, ctx = tls_server
    w = workers(tunnel.address, ssl_context=ctx, client_id="tls-worker")

    @w.add_ability(func_name)
    def job(data, job):
        job.report_status(1, 2).send_data(b"part\0" + data[:3])
        if data == b"big":
            return bytes(range(256)) * (4 * 4096)
        return data[::-1]

    start_and_wait(w, tunnel.address)
    (conn,) = w.connections
    assert conn._sock.version().startswith("TLS")
    assert "tls-worker" in gearmand.admin("workers")
    with Client(tunnel.address, ssl_context=ctx) as client:
        statuses, data = [], []
        task = Task(func_name, b"abc\0def", unique="")
        task.on_status(lambda n, d: statuses.append((n, d)))
        task.on_data(data.append)
        client.submit_task(task, timeout=10)
        assert task.wait(10) and task.result == b"fed\0cba"
        assert statuses == [(1, 2)] and data == [b"part\0abc"]
        assert client.do(func_name, b"big", timeout=20) == bytes(range(256)) * (4 * 4096)
        tasks = client.submit_tasks([Task(func_name, b"%03d" % i, unique="") for i in range(200)], timeout=10)
        for t in tasks:
            assert t.wait(10) and t.result == t.data[::-1]
    w.stop(5)
    assert not w.running and w.connections == []


def test_worker_with_wrong_ca_does_not_register(tmp_path, tls_server, gearmand, workers, func_name):
    """A certificate the worker's context does not trust: the worker keeps
    retrying in the background and never registers; stop() returns."""
    from tls import client_context, make_certs

    tunnel, _ = tls_server
    other = make_certs(str(tmp_path), "other")
    w = workers(tunnel.address, ssl_context=client_context(other["ca"]), network_timeout=2)
    w.add_ability(func_name, lambda d, j: d)
    connected = Event()
    w.on_connect(connected.set)
    w.start()
    assert not connected.wait(1.0)  # asserting an absence
    assert gearmand.status().get(func_name, (0, 0, 0))[2] == 0
    t0 = time.monotonic()
    w.stop(2)
    assert time.monotonic() - t0 < 3


# =========================================================== memory, 10k jobs
_MEMORY_WORKER = r"""
import gc, json, logging, sys
import gevent
import gearman_gevent as gg

logging.disable(logging.CRITICAL)
address, func, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
marks = {1000, total}
w = gg.Worker(address, concurrency=20, reconnect_delay=0.3)

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def job(data, job):
    kind = int(data) % 5
    if kind == 0:
        job.report_status(1, 2).send_data(data).report_warning(b"w")
        return data
    if kind == 1:
        return None            # WORK_FAIL
    if kind == 2:
        raise ValueError(data)  # WORK_EXCEPTION
    if kind == 3:
        gevent.sleep(0)
        return 12345           # str(obj)
    return "text"

w.add_ability(func, job)
done = [0]

def finished():
    done[0] += 1
    if done[0] in marks:
        gc.collect()
        print(json.dumps({"jobs": done[0], "rss_kb": rss_kb(), "objects": len(gc.get_objects())}),
              flush=True)
        if done[0] == total:
            w.stop(5)

for register in (w.on_work_complete, w.on_work_fail, w.on_work_exception):
    register(finished)
w.on_connect(lambda: print(json.dumps({"ready": True}), flush=True))
w.work()
"""


def test_worker_memory_is_flat_over_10000_jobs(gearmand, func_name, tmp_path):
    """A worker subprocess runs 10 000 jobs (completes, fails, exceptions,
    status/data/warning packets): its RSS after 10 000 jobs is within 5 MB
    of its RSS after 1 000, and its live object count hardly moves."""
    total = 10000
    script = tmp_path / "memory_worker.py"
    script.write_text(_MEMORY_WORKER)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    proc = subprocess.Popen([sys.executable, str(script), gearmand.address, func_name, str(total)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    lines = []
    try:
        reader = gevent.get_hub().threadpool.spawn(proc.stdout.readline)
        assert json.loads(reader.get(timeout=20)) == {"ready": True}
        with Client(gearmand.address) as client:
            for start in range(0, total, 1000):
                client.submit_tasks([Task(func_name, b"%d" % i, unique="", background=True)
                                     for i in range(start, start + 1000)], timeout=20)
        for _ in range(2):
            reader = gevent.get_hub().threadpool.spawn(proc.stdout.readline)
            lines.append(json.loads(reader.get(timeout=60)))
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first, last = lines
    assert first["jobs"] == 1000 and last["jobs"] == total
    growth_kb = last["rss_kb"] - first["rss_kb"]
    print(f"worker RSS after 1000 jobs: {first['rss_kb']} kB, after {total}: {last['rss_kb']} kB "
          f"(+{growth_kb} kB); objects {first['objects']} -> {last['objects']}")
    assert growth_kb < 5 * 1024, (first, last)
    assert last["objects"] - first["objects"] < 2000, (first, last)
    assert gearmand.status().get(func_name, (0, 0, 0))[:2] == (0, 0)
