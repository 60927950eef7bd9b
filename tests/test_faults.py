"""Faults a real gearmand does not produce, played by a scripted fake server
(tests/fakeserver.py), plus a few lifecycle checks against the real gearmand.

Every bound below is generous: it proves "does not hang / fails at once", not
speed.  Loopback only.
"""
from __future__ import annotations

import gc
import os
import socket
import time

import gevent
import pytest
from gevent.event import Event

import gearman_gevent as gg
from gearman_gevent.connection import Connection
from gearman_gevent.exceptions import (
    JobFailed,
    JobQueueError,
    NetworkError,
    NoJobServersError,
    ProtocolError,
    ServerError,
    SocketTimeoutError,
)
from gearman_gevent.packet import pack_request, pack_response
from gearman_gevent.task import Task

from fakeserver import echo_script, never_answer, wait_for
from rawworker import RawWorker
from servers import free_port, wait_until



# ------------------------------------------------------------------ helpers
@pytest.fixture
def clients():
    made = []

    def make(*args, **kwargs):
        c = gg.Client(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


class Timer:
    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.start


def live_greenlets():
    return {g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead}


def open_fds():
    """{(fd, target)} of this process; sockets read as ``socket:[inode]``, so
    a new socket never looks like an old one even if it reuses the number."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.add((name, os.readlink(f"/proc/self/fd/{name}")))
        except OSError:  # closed meanwhile (e.g. the listdir fd itself)
            pass
    return fds


def only_conn(client):
    (conn,) = client.pool.connections
    return conn


# ============================================================ garbage replies
GARBAGE = {
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "bad-magic": b"\0XYZ" + b"\0\0\0\x11\0\0\0\0",
    "req-magic": b"\0REQ" + b"\0\0\0\x11\0\0\0\x01x",
    "unknown-type": b"\0RES" + b"\0\0\0\x63\0\0\0\0",
    "too-few-args": b"\0RES\0\0\0\x14\0\0\0\x05H:1\x001",  # STATUS_RES with 2 of 5 args
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_instead_of_echo_reply(fake, clients, kind):
    def script(conn):
        conn.expect("echo_req")
        conn.send(GARBAGE[kind])
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises((ProtocolError, NetworkError)) as info:
            client.echo(b"x", timeout=5)
    assert t.elapsed < 2.5
    assert server.address in str(info.value)
    wait_for(server.conns[0].closed, what="the client to drop the connection")


@pytest.mark.parametrize("kind", ["http", "unknown-type"])
def test_garbage_instead_of_job_created(fake, clients, kind):
    def script(conn):
        if conn.index == 0:
            conn.expect("submit_job")
            conn.send(GARBAGE[kind])
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises((ProtocolError, NetworkError)) as info:
            client.submit("f", b"x", timeout=5)
    assert t.elapsed < 2.5
    assert server.address in str(info.value)


def test_length_above_cap_fails_at_once(fake, clients):
    """A header claiming 2 GiB is refused as soon as it is read, not after
    waiting for (or allocating) 2 GiB."""
    def script(conn):
        conn.expect("echo_req")
        conn.send(b"\0RES\0\0\0\x11\x80\0\0\0")  # ECHO_RES, length 2**31
        conn.send(b"x" * 100)
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(ProtocolError) as info:
            client.echo(b"x", timeout=5)
    assert t.elapsed < 2.5
    assert server.address in str(info.value)


def test_max_packet_size_is_configurable_on_the_client(fake, clients):
    server = fake(echo_script)
    client = clients(server.address, max_packet_size=1000)
    assert client.echo(b"a" * 1000, timeout=5) == b"a" * 1000
    with pytest.raises(ProtocolError):
        client.echo(b"b" * 1001, timeout=5)


# ======================================================== hang-ups mid-packet
@pytest.mark.parametrize("cut", [0, 2, 8, 15])
def test_hangup_mid_packet_ends_every_waiter_and_task_at_once(fake, clients, cut):
    hung_up = Event()

    def script(conn):
        if conn.index > 0:  # the pool's reconnects
            conn.idle()
            return
        for i in range(4):
            conn.expect("submit_job")
            conn.reply("job_created", f"H:fake:{i}".encode())
        conn.expect("echo_req")
        conn.send(pack_response("work_complete", b"H:fake:0", b"result")[:cut])
        hung_up.set()  # returning closes the socket

    server = fake(script)
    client = clients(server.address, reconnect_delay=5)
    tasks = [client.submit("f", f"d{i}".encode(), timeout=5) for i in range(3)]
    assert all(t.handle == f"H:fake:{i}".encode() for i, t in enumerate(tasks))
    doer = gevent.spawn(client.do, "f", b"d3")  # a foreground do() with no timeout
    echoer = gevent.spawn(client.echo, b"ping")  # a FIFO waiter with no timeout
    wait_for(hung_up, what="the fake server to hang up")
    with Timer() as t:
        gevent.joinall([doer, echoer], timeout=2)
        for task in tasks:
            assert task.wait(2)
    assert t.elapsed < 2
    for g in (doer, echoer):
        assert g.dead and isinstance(g.exception, NetworkError), g.exception
        assert server.address in str(g.exception)
    for task in tasks:
        assert task.failed and not task.successful
        assert isinstance(task.error, NetworkError)
        assert server.address in str(task.error)
    conn = only_conn(client)
    assert conn.pending_replies == 0 and conn.bound_tasks == 0


def test_hangup_while_the_client_writes_a_big_packet(fake, clients):
    """The server reads a header and hangs up while the client is still
    writing the body: the caller gets NetworkError at once, not a hang."""
    def script(conn):
        if conn.index == 0:
            conn._recv_exact(12)
        else:
            conn.idle()

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(NetworkError) as info:
            client.echo(b"x" * (24 << 20), timeout=5)
    assert t.elapsed < 2.5
    assert server.address in str(info.value)


# ======================================================= silence and timeouts
def _echo(client):
    return client.echo(b"x", timeout=0.5)


def _submit(client):
    return client.submit("f", b"x", timeout=0.5)


def _do(client):
    return client.do("f", b"x", timeout=0.5)


def _status(client):
    return client.get_status(b"H:fake:1", timeout=0.5)


def _status_unique(client):
    return client.get_status_unique(b"u", timeout=0.5)


@pytest.mark.parametrize("call", [_echo, _submit, _do, _status, _status_unique])
def test_accept_and_never_answer_times_out(fake, clients, call):
    server = fake(never_answer)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(SocketTimeoutError) as info:
            call(client)
    assert isinstance(info.value, TimeoutError)
    assert 0.4 < t.elapsed < 2.5


def test_task_create_timeout_applies_without_explicit_timeout(fake, clients):
    server = fake(never_answer)
    client = clients(server.address, task_create_timeout=0.5)
    with Timer() as t:
        with pytest.raises(SocketTimeoutError):
            client.submit("f", b"x")
    assert 0.4 < t.elapsed < 2.5


def _late_first_reply(conn):
    """Answer nothing until the second request arrives, then both, in order."""
    first = conn.expect("echo_req")
    second = conn.expect("echo_req")
    conn.reply("echo_res", first)
    conn.reply("echo_res", second)
    echo_script(conn)


def test_late_reply_is_consumed_not_handed_to_the_next_request(fake):
    server = fake(_late_first_reply)
    conn = Connection("127.0.0.1", server.port)
    conn.connect()
    try:
        with pytest.raises(SocketTimeoutError):
            conn.echo(b"first", timeout=0.3)
        assert conn.echo(b"second", timeout=5) == b"second"
        assert conn.echo(b"third", timeout=5) == b"third"
        assert conn.pending_replies == 0
    finally:
        conn.close()


def test_late_reply_through_the_client(fake, clients):
    server = fake(_late_first_reply)
    client = clients(server.address)
    with pytest.raises(SocketTimeoutError):
        client.echo(b"first", timeout=0.3)
    assert client.echo(b"second", timeout=5) == b"second"


def test_late_job_created_is_consumed_not_given_to_the_next_submit(fake, clients):
    def script(conn):
        conn.expect("submit_job")
        conn.expect("submit_job")
        conn.reply("job_created", b"H:late")
        conn.reply("job_created", b"H:second")
        conn.reply("work_complete", b"H:late", b"late result")
        conn.reply("work_complete", b"H:second", b"second result")
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    first = Task("f", b"1")
    with pytest.raises(SocketTimeoutError):
        client.submit_task(first, timeout=0.3)
    second = client.submit("f", b"2", timeout=5)
    assert second.handle == b"H:second"
    assert second.wait(5)
    assert second.result == b"second result"
    assert first.handle is None and first.result is None and not first.done


def test_timeout_keeps_partially_read_bytes(fake, clients):
    """A reply cut in its body when the caller times out must be completed by
    the next bytes, not restarted (PROTOCOL 4.1)."""
    def script(conn):
        first = conn.expect("echo_req")
        wire = pack_response("echo_res", first)
        conn.send(wire[:14])
        second = conn.expect("echo_req")
        conn.send(wire[14:] + pack_response("echo_res", second))
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with pytest.raises(SocketTimeoutError):
        client.echo(b"first-payload", timeout=0.3)
    assert client.echo(b"second", timeout=5) == b"second"


@pytest.mark.parametrize("request_name,call", [
    ("echo_req", lambda c: c.echo(b"x", timeout=1.0)),
    ("submit_job", lambda c: c.submit("f", b"x", timeout=1.0)),
])
def test_trickle_one_byte_per_second_still_times_out(fake, clients, request_name, call):
    reply = {"echo_req": pack_response("echo_res", b"x"),
             "submit_job": pack_response("job_created", b"H:fake:1")}[request_name]

    def script(conn):
        conn.expect(request_name)
        conn.trickle(reply, 1.0)
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(SocketTimeoutError):
            call(client)
    assert 0.9 < t.elapsed < 3


def test_trickled_reply_is_decoded(fake, clients):
    def script(conn):
        body = conn.expect("echo_req")
        conn.trickle(pack_response("echo_res", body), 0.01)
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    assert client.echo(b"hello", timeout=5) == b"hello"


# ================================================ odd but valid server bytes
def test_error_in_place_of_replies_consumes_the_fifo_slot(fake, clients):
    def script(conn):
        conn.expect("submit_job_bg")
        conn.reply("error", b"QUEUE_ERROR", b"Job queue is full")
        conn.expect("echo_req")
        conn.reply("error", b"SOME_CODE", b"some text")
        conn.expect("submit_job_bg")
        conn.reply("job_created", b"H:fake:9")
        echo_script(conn)

    server = fake(script)
    client = clients(server.address)
    with pytest.raises(JobQueueError) as info:
        client.submit("f", b"x", background=True, timeout=5)
    assert info.value.code == "QUEUE_ERROR" and info.value.text == "Job queue is full"
    with pytest.raises(ServerError) as info:
        client.echo(b"x", timeout=5)
    assert info.value.code == "SOME_CODE" and info.value.text == "some text"
    assert client.submit("f", b"y", background=True, timeout=5).handle == b"H:fake:9"
    assert client.echo(b"ok", timeout=5) == b"ok"


def test_trailing_nul_after_handles_end_to_end(fake, clients):
    """gearmand's converted WORK_FAIL is ``handle\\0``; the task must fail, not
    hang (gearman-ruby #16, gearmand #54)."""
    def script(conn):
        while True:
            conn.expect("submit_job")
            conn.send(pack_response("job_created", b"H:vm:1\0"))
            conn.send(pack_response("work_fail", b"H:vm:1\0"))

    server = fake(script)
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(JobFailed):
            client.do("f", b"x", timeout=5)
    assert t.elapsed < 2.5
    # The same through do_task, checking the handle was cut at the NUL (the
    # JOB_CREATED and WORK_FAIL arrive in one segment: the handle must be
    # bound inside the reader before the next packet is dispatched).
    task = Task("f", b"y")
    assert client.do_task(task, timeout=5) is None
    assert task.handle == b"H:vm:1" and task.failed and task.done


def test_trailing_nul_after_handle_then_complete(fake, clients):
    def script(conn):
        conn.expect("submit_job")
        conn.send(pack_response("job_created", b"H:vm:2\0")
                  + pack_response("work_complete", b"H:vm:2", b"ok\0"))
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    assert client.do("f", b"x", timeout=5) == b"ok\0"


def test_unsolicited_packets_are_ignored(fake, clients):
    def script(conn):
        body = conn.expect("echo_req")
        conn.reply("noop")
        conn.reply("work_complete", b"H:nobody", b"x")
        conn.reply("work_fail", b"H:nobody")
        conn.reply("work_status", b"H:nobody", b"1", b"2")
        conn.reply("error", b"JOB_NOT_FOUND", b"Job given in work result not found")
        conn.reply("echo_res", body)
        echo_script(conn)

    server = fake(script)
    client = clients(server.address)
    assert client.echo(b"one", timeout=5) == b"one"
    conn = only_conn(client)
    reader, generation = conn._reader, conn.generation
    assert client.echo(b"two", timeout=5) == b"two"
    assert conn._reader is reader and conn.generation == generation


def test_duplicate_handles_on_one_connection_reach_every_task(fake, clients):
    def script(conn):
        conn.expect("submit_job")
        conn.expect("submit_job")
        conn.reply("job_created", b"H:dup")
        conn.reply("job_created", b"H:dup")
        conn.reply("work_data", b"H:dup", b"d")
        conn.reply("work_complete", b"H:dup", b"\0both\0")
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    seen = []
    tasks = [Task("f", b"x", unique="same") for _ in range(2)]
    for task in tasks:
        task.on_data(seen.append)
    ts = gg.TaskSet(client)
    gevent.joinall([gevent.spawn(ts.add_task, t) for t in tasks], timeout=5, raise_error=True)
    assert ts.wait(5)
    assert [t.result for t in tasks] == [b"\0both\0"] * 2
    assert seen == [b"d", b"d"]


def test_hangup_before_job_created_resubmits_elsewhere(fake, clients):
    def bad(conn):
        conn.expect("submit_job_bg")  # then hang up without JOB_CREATED

    counter = iter(range(1000))

    def good(conn):
        while True:
            conn.expect("submit_job_bg")
            conn.reply("job_created", f"H:good:{next(counter)}".encode())

    bad_server, good_server = fake(bad), fake(good)
    client = clients([bad_server.address, good_server.address])
    tasks = [client.submit("f", f"{i}".encode(), unique="", background=True, timeout=5)
             for i in range(4)]
    assert all(t.handle.startswith(b"H:good:") for t in tasks)
    assert any(c.requests for c in bad_server.conns), "the bad server was never tried"


# =================================================== callbacks and lifecycle
def test_reader_survives_raising_callbacks(gearmand, clients, func_name, caplog):
    def handler(job):
        job.send("work_data", b"d")
        job.send("work_status", b"1", b"2")
        job.send("work_warning", b"w")
        return job.data[::-1]

    worker = RawWorker(gearmand.address, [func_name], handler)
    try:
        client = clients(gearmand.address)
        assert client.echo(b"warm", timeout=5) == b"warm"
        conn = only_conn(client)
        reader, generation = conn._reader, conn.generation
        task = Task(func_name, b"abc", unique="")
        called = []

        def boom(*args):
            called.append(args)
            raise RuntimeError("callback bug")

        for register in (task.on_created, task.on_data, task.on_status,
                         task.on_warning, task.on_complete):
            register(boom)
        client.submit_task(task, timeout=5)
        assert task.wait(5)
        assert task.successful and task.result == b"cba"
        assert len(called) == 5
        assert client.do(func_name, b"xyz", timeout=5) == b"zyx"
        assert conn._reader is reader and not reader.dead
        assert conn.generation == generation
        assert "callback bug" in caplog.text
    finally:
        worker.close()


def test_close_leaves_no_greenlets_and_no_sockets(gearmand, func_name):
    dead = f"127.0.0.1:{free_port()}"
    # Warm up whatever the hub creates once (resolver threads, watchers).
    warm = gg.Client(gearmand.address)
    warm.echo(b"x", timeout=5)
    warm.close()
    gevent.joinall(list(live_greenlets()), timeout=0.5)
    before_greenlets = live_greenlets()
    before_fds = open_fds()

    client = gg.Client([gearmand.address, dead], reconnect_delay=5)
    for _ in range(3):
        assert client.echo(b"x", timeout=5) == b"x"  # round robin meets the dead one
    client.submit(func_name, b"bg", background=True, timeout=5)
    pending = client.submit(func_name, b"fg", timeout=5)  # no worker: stays pending
    assert open_fds() - before_fds, "the client opened no socket?"
    client.close()

    assert pending.wait(2) and isinstance(pending.error, NetworkError)
    # close() kills with block=False: one turn of the hub delivers the kills.
    # Nothing may still be alive after that (no join: a greenlet that would
    # only exit after its next backoff sleep counts as left behind).
    gevent.sleep(0)
    assert [g for g in live_greenlets() - before_greenlets if not g.dead] == []
    leaked = {fd for fd in open_fds() - before_fds if fd[1].startswith("socket:")}
    assert leaked == set()


def test_one_dead_server_and_one_good_server(gearmand, clients, func_name):
    dead = f"127.0.0.1:{free_port()}"
    worker = RawWorker(gearmand.address, [func_name], lambda job: job.data[::-1])
    try:
        client = clients([dead, gearmand.address])
        with Timer() as t:
            for i in range(4):
                assert client.echo(f"e{i}".encode(), timeout=5) == f"e{i}".encode()
            for i in range(6):
                data = f"job-{i}".encode()
                assert client.do(func_name, data, timeout=5) == data[::-1]
            client.submit(func_name, b"bg", background=True, timeout=5)
            client.set_options("exceptions")
        assert t.elapsed < 10
    finally:
        worker.close()


def test_one_dead_server_and_one_fake_server(fake, clients):
    server = fake(echo_script)
    client = clients([f"127.0.0.1:{free_port()}", server.address])
    for i in range(4):
        assert client.echo(f"e{i}".encode(), timeout=5) == f"e{i}".encode()


# ======================================================= connecting failures
def test_connection_refused_is_fast_and_names_the_server(clients):
    port = free_port()
    address = f"127.0.0.1:{port}"
    conn = Connection("127.0.0.1", port)
    with Timer() as t:
        with pytest.raises(NetworkError) as info:
            conn.connect()
    assert t.elapsed < 2
    assert info.value.server == address and address in str(info.value)

    client = clients(address)
    for call in (lambda: client.echo(b"x", timeout=5),
                 lambda: client.submit("f", b"x", timeout=5),
                 lambda: client.do("f", b"x", timeout=5)):
        with Timer() as t:
            with pytest.raises(NoJobServersError) as info:
                call()
        assert t.elapsed < 2
        assert isinstance(info.value, NetworkError)
        assert address in str(info.value)


@pytest.fixture
def full_backlog():
    """A loopback port whose accept queue is full: a new connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    yield port
    for s in fillers:
        s.close()
    listener.close()


def test_connect_timeout_with_a_full_backlog(full_backlog, clients):
    address = f"127.0.0.1:{full_backlog}"
    conn = Connection("127.0.0.1", full_backlog, connect_timeout=0.5)
    with Timer() as t:
        with pytest.raises(NetworkError) as info:
            conn.connect()
    assert 0.4 < t.elapsed < 3
    assert info.value.server == address and address in str(info.value)

    client = clients(address, connect_timeout=0.5)
    with Timer() as t:
        with pytest.raises(NoJobServersError) as info:
            client.echo(b"x", timeout=5)
    assert 0.4 < t.elapsed < 3
    assert address in str(info.value)


# ================================================= more lifecycle corner cases
def test_server_that_closes_on_accept(fake, clients):
    server = fake(lambda conn: None)  # accept, then hang up at once
    client = clients(server.address)
    with Timer() as t:
        with pytest.raises(NetworkError) as info:
            client.echo(b"x", timeout=5)
    assert t.elapsed < 2.5
    assert server.address in str(info.value)


def test_abandoned_do_leaves_nothing_bound_and_late_result_is_dropped(fake, clients):
    def script(conn):
        conn.expect("submit_job")
        conn.reply("job_created", b"H:slow")
        conn.expect("submit_job")  # the first caller gave up by now
        conn.reply("work_complete", b"H:slow", b"too late")
        conn.reply("job_created", b"H:fast")
        conn.reply("work_complete", b"H:fast", b"fast result")
        conn.idle()

    server = fake(script)
    client = clients(server.address)
    with pytest.raises(SocketTimeoutError):
        client.do("f", b"slow", timeout=0.3)
    conn = only_conn(client)
    assert conn.bound_tasks == 0
    assert client.do("f", b"fast", timeout=5) == b"fast result"
    assert conn.bound_tasks == 0 and conn.pending_replies == 0


def test_write_interrupted_mid_packet_does_not_corrupt_the_stream(fake):
    """A caller wrapped in gevent.Timeout while its big request is being
    written (the server is not reading): the rest of the packet is finished in
    the background, so the same socket still carries whole packets and the
    next request gets its own answer (PROTOCOL 4.19)."""
    go = Event()

    def script(conn):
        if conn.index == 0:
            go.wait()
        echo_script(conn)

    server = fake(script)
    conn = Connection("127.0.0.1", server.port)
    conn.connect()
    try:
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.3):
                conn.echo(b"x" * (24 << 20))  # far more than the socket buffers hold
        generation = conn.generation
        go.set()
        assert conn.echo(b"after", timeout=10) == b"after"
        assert conn.generation == generation  # the same socket, not a new one
    finally:
        conn.close()


# ================================================ well-framed but wrong reply
@pytest.mark.parametrize("request_name,wrong,call", [
    ("echo_req", pack_response("job_created", b"H:fake:1"),
     lambda c: c.echo(b"x", timeout=2)),
    ("submit_job", pack_response("echo_res", b"x"),
     lambda c: c.submit("f", b"x", timeout=1)),
    ("submit_job", pack_response("no_job"),
     lambda c: c.submit("f", b"x", timeout=1)),
    ("get_status", pack_response("echo_res", b"x"),
     lambda c: c.get_status(b"H:fake:1", timeout=2)),
    ("get_status_unique", pack_response("status_res", b"u", b"1", b"1", b"0", b"0"),
     lambda c: c.get_status_unique(b"u", timeout=2)),
    ("option_req", pack_response("job_created", b"H:fake:1"),
     lambda c: c.set_options("exceptions")),
], ids=["echo<-job_created", "submit<-echo_res", "submit<-no_job",
        "get_status<-echo_res", "status_unique<-status_res", "option<-job_created"])
def test_reply_of_the_wrong_type_is_a_protocol_error(fake, clients, request_name, wrong, call):
    def script(conn):
        if conn.index == 0:
            conn.expect(request_name)
            conn.send(wrong)
        conn.idle()

    server = fake(script)
    client = clients(server.address, connect_timeout=2)
    with Timer() as t:
        with pytest.raises((ProtocolError, NetworkError)) as info:
            call(client)
    assert t.elapsed < 0.9  # immediate, not at the 1-2 s timeouts
    assert server.address in str(info.value)


# ------------------------------------------ writes from the reader or the hub
def test_writes_from_the_hub_and_the_reader_never_block_and_keep_order(fake):
    """A write made in the hub (a timer) or in the reader (a reply waiter)
    must not block on a full socket buffer: the socket takes what it can and
    a short-lived greenlet finishes the rest, before any later packet."""
    big = b"B" * (8 << 20)  # far more than loopback socket buffers hold
    gate = Event()
    got = []

    def script(conn):
        conn.expect("echo_req")
        conn.reply("echo_res", b"go")
        gate.wait(10)  # read nothing until the writers are done
        for _ in range(4):
            got.append(conn.recv_packet())
        conn.idle()

    server = fake(script)
    conn = Connection("127.0.0.1", server.port)
    conn.connect()
    try:
        done_in = {}

        def in_reader(pkt, exc):  # runs in the reader greenlet
            assert gevent.getcurrent() is conn._reader
            conn.send_update(pack_request("echo_req", big))
            conn.send_update(pack_request("echo_req", b"after-reader"))
            done_in["reader"] = True

        conn.send_with_waiter(pack_request("echo_req", b"x"), in_reader)

        def in_hub():
            conn.send_update(pack_request("echo_req", b"from-hub"))
            done_in["hub"] = True

        wait_until(lambda: done_in.get("reader"), what="the reader's writes returned")
        gevent.get_hub().loop.run_callback(in_hub)
        wait_until(lambda: done_in.get("hub"), what="the hub's write returned")
        conn.send_update(pack_request("echo_req", b"last"))  # queued behind, from a greenlet
        gate.set()
        wait_until(lambda: len(got) == 4, timeout=20, what="all four packets at the server")
        assert [body for _, body in got] == [big, b"after-reader", b"from-hub", b"last"]
        assert conn.connected
    finally:
        conn.close()
