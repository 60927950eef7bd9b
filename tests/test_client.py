"""Client, Task and TaskSet against a real gearmand.

Jobs are served by tests/rawworker.py (a raw-socket worker built on the
codec only), so these tests do not depend on the library's Worker.
"""
from __future__ import annotations

import datetime
import hashlib
import time

import gevent
import pytest
from gevent.event import Event

import gearman_gevent as gg
from gearman_gevent.exceptions import (
    InvalidArgsError,
    JobException,
    JobFailed,
    NetworkError,
    NoJobServersError,
    ServerError,
    SocketTimeoutError,
)
from rawworker import RawWorker


@pytest.fixture
def client(gearmand):
    c = gg.Client(gearmand.address)
    yield c
    c.close()


@pytest.fixture
def workers():
    started = []

    def start(*args, **kwargs):
        w = RawWorker(*args, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def reverse(job):
    return job.data[::-1]


# ----------------------------------------------------------------- basics
def test_echo_round_trips_any_bytes(client):
    data = bytes(range(256)) * 4
    assert client.echo(data) == data
    assert client.echo("päyload") == "päyload".encode()


def test_do_returns_result_with_nul_bytes(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], reverse)
    payload = b"a\0b\0\0c" + bytes(range(256))
    assert client.do(func_name, payload, timeout=10) == payload[::-1]


@pytest.mark.parametrize("payload", [b"", bytearray(b"xy\0z"), memoryview(b"mv\0"), "strüng"])
def test_payload_types(client, gearmand, workers, func_name, payload):
    workers(gearmand.address, [func_name], lambda job: job.data)
    expected = payload.encode() if isinstance(payload, str) else bytes(payload)
    assert client.do(func_name, payload, timeout=10) == expected


@pytest.mark.parametrize("size", [0, 65536 - 3, 65536, 65536 + 5, 8 * 1024 * 1024])
def test_large_payload_round_trip(client, gearmand, workers, func_name, size):
    workers(gearmand.address, [func_name], lambda job: job.data)
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    assert client.do(func_name, payload, timeout=30, unique="") == payload


def test_background_submit_is_in_server_when_submit_returns(client, gearmand, func_name):
    task = client.submit(func_name, b"data", background=True)
    assert task.handle and task.handle.startswith(b"H:")
    assert task.done and task.successful
    assert task.wait(0) is True
    assert gearmand.status()[func_name] == (1, 0, 0)


def test_500_concurrent_background_submits(client, gearmand, func_name):
    results = []

    def submit(i):
        results.append(client.submit(func_name, b"%d" % i, background=True))

    greenlets = [gevent.spawn(submit, i) for i in range(500)]
    gevent.joinall(greenlets, timeout=30, raise_error=True)
    assert len(results) == 500
    assert len({t.handle for t in results}) == 500
    assert all(t.handle for t in results)
    assert gearmand.status()[func_name] == (500, 0, 0)
    # all pipelined over the one connection
    assert len([c for c in client.pool.connections if c.connected]) == 1


def test_submit_tasks_pipelines_a_batch(client, gearmand, func_name):
    tasks = [gg.BackgroundTask(func_name, b"%d" % i) for i in range(2000)]
    assert client.submit_tasks(tasks) == tasks
    assert all(t.handle for t in tasks)
    assert gearmand.status()[func_name][0] == 2000


# ------------------------------------------------------------ task options
def test_default_unique_is_sha1_and_coalesces(client, gearmand, workers, func_name):
    t1 = gg.Task(func_name, b"same")
    assert t1.unique == hashlib.sha1(func_name.encode() + b"same").hexdigest().encode()
    assert t1.get_uniq_hash() == t1.unique.decode()
    t2 = gg.Task(func_name, b"same")
    client.submit_task(t1)
    client.submit_task(t2)
    assert t1.handle == t2.handle  # coalesced in the server
    calls = []
    workers(gearmand.address, [func_name], lambda job: calls.append(job.data) or b"r")
    assert t1.wait(10) and t2.wait(10)
    assert t1.result == t2.result == b"r"
    assert calls == [b"same"]


def test_empty_unique_never_coalesces(client, func_name):
    t1 = client.submit(func_name, b"same", unique="", background=True)
    t2 = client.submit(func_name, b"same", unique="", background=True)
    assert t1.handle != t2.handle


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unique": "x" * 64},
        {"unique": "a\0b"},
        {"priority": "urgent"},
        {"retry_count": -1},
        {"schedule_at": "tomorrow"},
        {"schedule_at": 10, "priority": "high"},
    ],
)
def test_bad_task_options_raise_before_sending(kwargs, func_name):
    with pytest.raises(InvalidArgsError):
        gg.Task(func_name, b"", **kwargs)


@pytest.mark.parametrize("name", ["", b"", "a\0b", None, 42])
def test_bad_function_names(client, name):
    with pytest.raises(InvalidArgsError):
        client.submit(name, b"x")


def test_bad_payload_type(client, func_name):
    with pytest.raises(InvalidArgsError):
        client.submit(func_name, 12345)


def test_negative_timeout_rejected(client, func_name):
    with pytest.raises(InvalidArgsError):
        client.do(func_name, b"x", timeout=-1)
    with pytest.raises(InvalidArgsError):
        gg.Task(func_name).wait(-1)


def test_63_byte_unique_accepted(client, func_name):
    task = client.submit(func_name, b"x", unique="u" * 63, background=True)
    assert task.handle


def test_priorities_order_in_server(client, gearmand, workers, func_name):
    order = []
    client.submit(func_name, b"low", priority="low", background=True)
    client.submit(func_name, b"normal", background=True)
    client.submit(func_name, b"high", priority="high", background=True)
    done = Event()

    def handler(job):
        order.append(job.data)
        if len(order) == 3:
            done.set()
        return b""

    workers(gearmand.address, [func_name], handler, concurrency=1)
    assert done.wait(10)
    assert order == [b"high", b"normal", b"low"]


def test_schedule_at_uses_epoch_and_runs_when_due(client, gearmand, workers, func_name):
    future = client.submit(func_name, b"later", schedule_at=time.time() + 3600, unique="")
    assert future.background and future.handle
    past = client.submit(func_name, b"now", schedule_at=datetime.datetime.now() - datetime.timedelta(seconds=5), unique="")
    assert past.handle
    seen = []
    got = Event()
    workers(gearmand.address, [func_name], lambda job: (seen.append(job.data), got.set(), b"")[-1])
    assert got.wait(10)
    assert seen == [b"now"]
    # the future job is still queued in the server
    assert gearmand.status()[func_name][0] == 1


# --------------------------------------------------------------- callbacks
def test_status_data_warning_callbacks_in_order(client, gearmand, workers, func_name):
    def handler(job):
        job.send("work_status", b"1", b"3")
        job.send("work_data", b"d1\0")
        job.send("work_warning", b"careful")
        job.send("work_status", b"2", b"3")
        job.send("work_data", b"d2")
        return b"done"

    workers(gearmand.address, [func_name], handler)
    events = []
    task = gg.Task(func_name, b"x")
    task.on_created(lambda h: events.append(("created", h)))
    task.on_status(lambda n, d: events.append(("status", n, d)))
    task.on_data(lambda d: events.append(("data", d)))
    task.on_warning(lambda m: events.append(("warning", m)))

    @task.on_complete
    def complete(result):
        events.append(("complete", result))

    assert complete is not None  # decorator returns the function
    client.submit_task(task)
    assert task.wait(10)
    assert events == [
        ("created", task.handle),
        ("status", 1, 3),
        ("data", b"d1\0"),
        ("warning", b"careful"),
        ("status", 2, 3),
        ("data", b"d2"),
        ("complete", b"done"),
    ]
    assert task.status == (2, 3)
    assert task.successful and not task.failed and task.result == b"done"


def test_raising_callback_does_not_kill_reader(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], reverse)
    task = gg.Task(func_name, b"abc")
    task.on_complete(lambda r: 1 / 0)
    client.submit_task(task)
    assert task.wait(10) and task.result == b"cba"
    # the same connection still works
    assert client.do(func_name, b"xyz", timeout=10) == b"zyx"


def test_blocking_call_in_a_callback_on_its_own_connection_raises_at_once(
        client, gearmand, workers, func_name):
    """A task callback runs in the connection's reader; a blocking call there
    that waits on the same connection could never be answered: it raises
    DeadlockError at once (not a hang until its timeout, or forever)."""
    workers(gearmand.address, [func_name], reverse)
    seen = {}
    done = Event()
    other = gg.Task(func_name + "-nobody", b"other", unique="")  # no worker: never done
    client.submit_task(other)

    def callback(result):
        t0 = time.monotonic()
        for name, call in (("do", lambda: client.do(func_name, b"inner", timeout=None)),
                           ("echo", lambda: client.echo(b"x", timeout=None)),
                           ("wait", lambda: other.wait(None))):
            try:
                call()
                seen[name] = "returned"
            except gg.DeadlockError as exc:
                seen[name] = str(exc)
        seen["took"] = time.monotonic() - t0
        done.set()

    task = gg.Task(func_name, b"abc", unique="")
    task.on_complete(callback)
    client.submit_task(task)
    assert done.wait(10)
    assert all("reader" in seen[k] for k in ("do", "echo", "wait")), seen
    assert seen["took"] < 1.0, seen
    assert task.result == b"cba"
    assert issubclass(gg.DeadlockError, gg.GearmanError)
    # the reader survived, and nothing was submitted by the refused calls
    assert client.do(func_name, b"xyz", timeout=10) == b"zyx"
    assert not other.done


def test_blocking_call_in_a_callback_on_another_server_works(gearmand_factory, workers, func_name):
    """Only a wait on the reader's own connection is refused: from a
    callback on server A, a do() that goes to server B completes."""
    a, b = gearmand_factory(), gearmand_factory()
    workers(b.address, [func_name], reverse)
    on_a = gg.Client(a.address)
    to_b = gg.Client(b.address)
    try:
        workers(a.address, [func_name], reverse)
        got = []
        done = Event()

        def callback(result):
            got.append(to_b.do(func_name, result, timeout=10))
            done.set()

        task = gg.Task(func_name, b"abc", unique="")
        task.on_complete(callback)
        on_a.submit_task(task)
        assert done.wait(10) and got == [b"abc"]
    finally:
        on_a.close()
        to_b.close()


# ---------------------------------------------------- failures, exceptions
def test_work_fail_raises_job_failed(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], lambda job: None)
    with pytest.raises(JobFailed):
        client.do(func_name, b"x", timeout=10)
    task = gg.Task(func_name, b"y")
    fails = []
    task.on_fail(lambda: fails.append(True))
    assert client.do_task(task, timeout=10) is None
    assert task.failed and fails == [True]


def test_exception_without_option_is_a_failure(client, gearmand, workers, func_name):
    def boom(job):
        raise RuntimeError("kaboom")

    workers(gearmand.address, [func_name], boom)
    with pytest.raises(JobFailed):
        client.do(func_name, b"x", timeout=10)


def test_exception_with_option(client, gearmand, workers, func_name):
    def boom(job):
        raise RuntimeError("kaboom")

    workers(gearmand.address, [func_name], boom)
    client.set_options("exceptions")
    assert client.options == ["exceptions"]
    with pytest.raises(JobException) as info:
        client.do(func_name, b"x", timeout=10)
    assert "kaboom" in info.value.message
    task = gg.Task(func_name, b"y")
    seen = []
    task.on_exception(seen.append)
    assert client.do_task(task, timeout=10) is None
    assert task.exception == seen[0] and "kaboom" in seen[0]
    assert task.failed


def test_unknown_option_raises_server_error(client):
    with pytest.raises(ServerError) as info:
        client.set_options("bogus")
    assert info.value.code == "UNKNOWN_OPTION"
    assert client.options == []


def test_retries_on_work_fail(client, gearmand, workers, func_name):
    attempts = []

    def flaky(job):
        attempts.append(job.handle)
        return None if len(attempts) < 3 else b"finally"

    workers(gearmand.address, [func_name], flaky)
    task = gg.Task(func_name, b"x", retry_count=3, unique="")
    retries = []
    task.on_retry(retries.append)
    assert client.do_task(task, timeout=10) == b"finally"
    assert retries == [1, 2]
    assert task.retries_done == 2
    assert len(attempts) == 3


def test_retries_exhausted(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], lambda job: None)
    task = gg.Task(func_name, b"x", retry_count=2)
    retries = []
    task.on_retry(retries.append)
    with pytest.raises(JobFailed):
        client.do(func_name, b"x", timeout=10, retry_count=2)
    assert client.do_task(task, timeout=10) is None
    assert retries == [1, 2]


# ----------------------------------------------------------------- timeouts
def test_do_times_out_without_worker(client, func_name):
    start = time.monotonic()
    with pytest.raises(SocketTimeoutError) as info:
        client.do(func_name, b"x", timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert 0.4 < time.monotonic() - start < 3
    # the connection is still fine, and the abandoned task is not tracked
    assert client.echo(b"still") == b"still"
    assert client.pool.connections[0].bound_tasks == 0


def test_task_wait_and_taskset_wait_time_out(client, func_name):
    ts = gg.TaskSet(client)
    assert ts.add_task(func_name, b"never")
    start = time.monotonic()
    assert ts.wait(0.3) is False
    assert time.monotonic() - start < 2
    assert ts.tasks[0].wait(0.05) is False


# ----------------------------------------------------------------- TaskSet
def test_twenty_tasksets_wait_at_once(client, gearmand, workers, func_name):
    def slow(job):
        gevent.sleep(0.2)
        return job.data

    workers(gearmand.address, [func_name], slow, concurrency=100)
    results = {}

    def run(n):
        ts = gg.TaskSet(client)
        tasks = [gg.Task(func_name, b"%d-%d" % (n, i)) for i in range(5)]
        for t in tasks:
            assert ts.add_task(t)
        results[n] = (ts.wait(20), [t.result for t in tasks])

    start = time.monotonic()
    gevent.joinall([gevent.spawn(run, n) for n in range(20)], timeout=30, raise_error=True)
    elapsed = time.monotonic() - start
    assert len(results) == 20
    for n, (ok, res) in results.items():
        assert ok
        assert res == [b"%d-%d" % (n, i) for i in range(5)]
    # 100 jobs of 0.2 s on 100 slots: concurrent, far below 20 s serial
    assert elapsed < 8


def test_taskset_add_tasks_and_failure_accounting(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], lambda job: None if job.data == b"bad" else job.data)
    ts = gg.TaskSet(client)
    tasks = [gg.Task(func_name, d) for d in (b"a", b"bad", b"c")]
    assert ts.add_tasks(tasks) == 3
    assert ts.wait(10) is False  # one failed
    assert [t.result for t in ts.successful] == [b"a", b"c"]
    assert [t.data for t in ts.failed] == [b"bad"]
    assert len(ts) == 3


def test_taskset_wait_forever_true(client, gearmand, workers, func_name):
    workers(gearmand.address, [func_name], reverse)
    ts = gg.TaskSet(client)
    ts.add_task(gg.Task(func_name, b"ab"))
    ts.add_task(gg.BackgroundTask(func_name + "-bg", b"x"))
    assert ts.wait_forever() is True


# ------------------------------------------------------------------ status
def test_get_status_of_background_job(client, gearmand, func_name):
    task = client.submit(func_name, b"x", background=True)
    status = client.get_status(task.handle)
    assert status == gg.JobStatus(True, False, 0, 0)
    assert client.get_status(task) == status
    assert client.get_status(b"H:nowhere:1") == gg.JobStatus(False, False, 0, 0)


def test_get_status_running_with_progress(client, gearmand, workers, func_name):
    release = Event()
    reported = Event()

    def handler(job):
        job.send("work_status", b"5", b"10")
        reported.set()
        release.wait(10)
        return b""

    workers(gearmand.address, [func_name], handler)
    task = client.submit(func_name, b"x", background=True)
    assert reported.wait(10)
    deadline = time.monotonic() + 5
    while client.get_status(task).numerator != 5 and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert client.get_status(task) == gg.JobStatus(True, True, 5, 10)
    release.set()


def test_get_status_unique(client, func_name):
    client.submit(func_name, b"x", unique="my-unique-1", background=True)
    st = client.get_status_unique("my-unique-1")
    assert st.known and not st.running and st.waiting_clients == 0
    assert not client.get_status_unique("no-such-unique").known
    with pytest.raises(InvalidArgsError):
        client.get_status_unique("u" * 64)


def test_bad_handle_rejected(client):
    with pytest.raises(InvalidArgsError):
        client.get_status(b"h" * 64)


# ------------------------------------------------- servers, failover, pool
def test_no_server_raises_fast():
    from servers import free_port

    c = gg.Client(f"127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(NoJobServersError) as info:
        c.submit("f", b"x", background=True)
    assert "127.0.0.1" in str(info.value)
    assert time.monotonic() - start < 3
    c.close()


def test_submit_skips_dead_server(gearmand):
    from servers import free_port

    dead = f"127.0.0.1:{free_port()}"
    c = gg.Client([dead, gearmand.address])
    try:
        for i in range(5):
            task = c.submit("skip-dead", b"%d" % i, background=True, unique="")
            assert task.connection.server == gearmand.address
    finally:
        c.close()


def test_round_robin_and_coalesce_key(gearmand_factory):
    servers = [gearmand_factory() for _ in range(3)]
    c = gg.Client([s.address for s in servers])
    try:
        used = [c.submit("rr", b"%d" % i, unique="", background=True).connection.server for i in range(6)]
        assert sorted(set(used)) == sorted(s.address for s in servers)
        assert used[:3] == used[3:]
        same = {c.submit("rr", b"x%d" % i, unique="same-key", background=True).connection.server for i in range(5)}
        assert len(same) == 1
    finally:
        c.close()


def test_failover_when_server_killed(gearmand_factory):
    a = gearmand_factory()
    b = gearmand_factory()
    c = gg.Client([a.address, b.address])
    try:
        # a foreground job in flight on server A (no worker anywhere)
        task = gg.Task("fo", b"x", unique="")
        while True:
            c.submit_task(task)
            if task.connection.server == a.address:
                break
            c.abandon(task)
            task = gg.Task("fo", b"x", unique="")
        failed = []
        task.on_fail(lambda: failed.append(True))
        a.kill()
        assert task.wait(5), "in-flight task on a killed server must end promptly"
        assert task.failed and isinstance(task.error, NetworkError)
        assert failed == [True]
        # new submissions keep working on B without errors
        for i in range(6):
            t = c.submit("fo", b"%d" % i, background=True, unique="")
            assert t.connection.server == b.address
        # a comes back: the client uses it again within a few seconds
        a.start()
        deadline = time.monotonic() + 10
        servers_used = set()
        while time.monotonic() < deadline and a.address not in servers_used:
            servers_used.add(c.submit("fo", b"y", background=True, unique="").connection.server)
            gevent.sleep(0.05)
        assert a.address in servers_used
    finally:
        c.close()


def test_do_raises_network_error_when_server_dies(gearmand_factory):
    a = gearmand_factory()
    c = gg.Client(a.address)
    try:
        g = gevent.spawn(c.do, "dies", b"x", timeout=10)
        deadline = time.monotonic() + 5
        while not c.pool.connections[0].bound_tasks and time.monotonic() < deadline:
            gevent.sleep(0.01)
        a.kill()
        g.join(5)
        assert g.dead
        assert isinstance(g.exception, NetworkError)
    finally:
        c.close()


def test_options_reapplied_after_reconnect(gearmand_factory, func_name):
    server = gearmand_factory()
    c = gg.Client(server.address)
    try:
        c.set_options("exceptions")
        server.kill()
        server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c.echo(b"x", timeout=1)
                break
            except (NetworkError, SocketTimeoutError):
                gevent.sleep(0.05)
        w = RawWorker(server.address, [func_name], lambda job: 1 / 0)
        try:
            with pytest.raises(JobException):
                c.do(func_name, b"x", timeout=10)
        finally:
            w.close()
    finally:
        c.close()


def test_client_context_manager_closes(gearmand):
    with gg.Client(gearmand.address) as c:
        assert c.echo(b"x") == b"x"
        conn = c.pool.connections[0]
        assert conn.connected
    assert not conn.connected
    with pytest.raises(NoJobServersError):
        c.echo(b"x")


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, [("localhost", 4730)]),
        ("example", [("example", 4730)]),
        ("example:1234", [("example", 1234)]),
        ("[::1]:4731", [("::1", 4731)]),
        ("[::1]", [("::1", 4730)]),
        (("h", 5), [("h", 5)]),
        (["a", "b:2", ("c", 3)], [("a", 4730), ("b", 2), ("c", 3)]),
        ("a:1,b:2", [("a", 1), ("b", 2)]),
    ],
)
def test_parse_servers(spec, expected):
    from gearman_gevent.connection_pool import parse_servers

    assert parse_servers(spec) == expected


@pytest.mark.parametrize("spec", ["", "host:", "host:99999", "[::1", ("h", 0), 42, [], "h:x"])
def test_parse_servers_rejects(spec):
    from gearman_gevent.connection_pool import parse_servers

    with pytest.raises(InvalidArgsError):
        parse_servers(spec)


def test_connection_send_request_and_errors(gearmand):
    from gearman_gevent.packet import pack_request

    conn = gg.Connection("127.0.0.1", gearmand.port)
    conn.connect()
    try:
        reply = conn.send_request(pack_request("echo_req", b"abc"), timeout=5)
        assert reply == ("echo_res", b"abc")
        assert reply.type_name == "echo_res" and reply.data == b"abc"
        replies = conn.send_requests([pack_request("echo_req", b"1"), pack_request("echo_req", b"2\0x")], timeout=5)
        assert replies == [("echo_res", b"1"), ("echo_res", b"2\0x")]
        with pytest.raises(ServerError) as info:
            conn.send_request(pack_request("option_req", b"nope"), timeout=5)
        assert info.value.code == "UNKNOWN_OPTION"
        assert conn.is_healthy()
    finally:
        conn.close()
    assert not conn.connected


def test_pool_with_all_connections_and_on_connection(gearmand_factory):
    servers = [gearmand_factory(), gearmand_factory()]
    pool = gg.ConnectionPool([s.address for s in servers], reconnect_delay=1)
    seen = []
    pool.on_connection(lambda conn: seen.append(conn.server))
    try:
        echoes = pool.with_all_connections(lambda conn: conn.echo(b"hi", 5))
        assert echoes == [b"hi", b"hi"]
        assert sorted(seen) == sorted(s.address for s in servers)
        # a lost connection is re-established in the background
        servers[0].restart()
        deadline = time.monotonic() + 10
        while seen.count(servers[0].address) < 2 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert seen.count(servers[0].address) == 2
    finally:
        pool.close()


def test_resubmitting_a_finished_task_runs_it_again(client, gearmand, workers, func_name):
    counter = []
    workers(gearmand.address, [func_name], lambda job: b"%d" % len(counter) if not counter.append(1) else b"")
    task = gg.Task(func_name, b"x", unique="")
    assert client.do_task(task, timeout=10) == b"1"
    first_handle = task.handle
    assert client.do_task(task, timeout=10) == b"2"
    assert task.handle != first_handle and task.successful


def test_single_server_restart_is_used_without_waiting_for_backoff(gearmand_factory):
    server = gearmand_factory()
    c = gg.Client(server.address, reconnect_delay=60)
    try:
        assert c.echo(b"before") == b"before"
        lost = Event()
        c.pool.connections[0].on_disconnect(lambda conn, exc: lost.set())
        server.kill()
        assert lost.wait(5)
        with pytest.raises(NoJobServersError):
            c.echo(b"down")  # and its background retry is now backing off
        server.start()
        # the server is back: the next call connects at once
        assert c.echo(b"after") == b"after"
    finally:
        c.close()
