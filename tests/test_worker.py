"""Worker tests against a real gearmand (see conftest.py).

Waits are on events the worker or the client fire; the only polling is of
gearmand's admin ``status``/``workers`` output, which has no event to await.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import gevent
import gevent.subprocess
import pytest
from gevent.event import Event

from gearman_gevent import (
    BackgroundTask,
    Client,
    InvalidArgsError,
    Job,
    JobException,
    JobFailed,
    NetworkError,
    Task,
    Worker,
)
from gearman_gevent.worker import JobStopped, JobTimedOut
from gearman_gevent.packet import pack_request
from servers import wait_until


# ----------------------------------------------------------------- helpers
def run(worker, connections=1, **kw):
    """Start *worker* and wait until *connections* connections registered."""
    registered = Event()
    count = [0]

    @worker.on_connect
    def _connected():
        count[0] += 1
        if count[0] >= connections:
            registered.set()

    glet = worker.start(**kw)
    assert registered.wait(10), "worker did not register"
    return glet


@pytest.fixture
def workers(gearmand):
    """Make Workers (default server: the session gearmand); stopped after."""
    made = []

    def make(servers=None, **kw):
        kw.setdefault("reconnect_delay", 0.3)
        w = Worker(servers or gearmand.address, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop(0)
        assert not w.running


@pytest.fixture
def client(gearmand):
    c = Client(gearmand.address)
    yield c
    c.close()


def status(server, func):
    return server.status().get(func, (0, 0, 0))


# ------------------------------------------------------------- concurrency
def test_concurrency_limit_and_throughput(workers, client, func_name):
    w = workers(concurrency=10)
    running = [0]
    peak = [0]

    @w.add_ability(func_name)
    def job(data, job):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            gevent.sleep(0.5)
        finally:
            running[0] -= 1
        return data

    run(w)
    t0 = time.monotonic()
    tasks = client.submit_tasks([Task(func_name, b"%d" % i, unique="") for i in range(20)])
    for t in tasks:
        assert t.wait(10)
    elapsed = time.monotonic() - t0
    assert sorted(t.result for t in tasks) == sorted(b"%d" % i for i in range(20))
    assert all(t.successful for t in tasks)
    assert peak[0] == 10  # all slots used, never more
    assert elapsed < 3.0, elapsed  # two waves of 0.5 s, not twenty
    assert w.jobs_done == 20 and w.running_jobs == 0


def test_grabs_in_flight_pipelines_within_free_slots(workers, client, func_name, mocker):
    """With grabs_in_flight=8 one connection sends several GRABs per write,
    yet never holds more jobs than its slots."""
    from gearman_gevent.connection import Connection

    spy = mocker.spy(Connection, "_send_prepared")
    w = workers(concurrency=10, grabs_in_flight=8)
    running = [0]
    peak = [0]

    @w.add_ability(func_name)
    def job(data, job):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            gevent.sleep(0.05)
        finally:
            running[0] -= 1
        return data

    tasks = client.submit_tasks([Task(func_name, b"%d" % i, unique="") for i in range(200)])
    run(w)
    for t in tasks:
        assert t.wait(20)
    assert sorted(t.result for t in tasks) == sorted(b"%d" % i for i in range(200))
    assert peak[0] == 10
    # the first write carries 8 GRABs; later ones refill the slots freed
    grab = pack_request("grab_job_uniq")
    batches = [call.args[1].count(grab) for call in spy.call_args_list]
    assert batches and batches[0] == 8 and all(1 <= b <= 8 for b in batches)
    assert [len(call.args[2]) for call in spy.call_args_list] == batches  # a waiter per GRAB
    assert w.jobs_done == 200 and w.running_jobs == 0


def test_grabs_in_flight_must_be_positive():
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:1", grabs_in_flight=0)


def test_blocked_job_does_not_stall_other_jobs(workers, client, func_name):
    w = workers(concurrency=2)
    gate = Event()
    blocked = Event()

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"block":
            blocked.set()
            gate.wait()  # blocks cooperatively
            return b"unblocked"
        for i in range(3):
            job.send_data(b"chunk%d" % i)
            gevent.sleep(0.01)
        return b"done"

    run(w)
    slow = client.submit(func_name, b"block", unique="")
    assert blocked.wait(5)
    chunks = []
    fast = Task(func_name, b"fast", unique="")
    fast.on_data(chunks.append)
    client.submit_task(fast)
    assert fast.wait(5)  # finished while the other job is still blocked
    assert fast.result == b"done" and chunks == [b"chunk0", b"chunk1", b"chunk2"]
    assert not slow.done
    gate.set()
    assert slow.wait(5) and slow.result == b"unblocked"


# ------------------------------------------------------- job -> client data
def test_status_data_warning_reach_client_in_order(workers, client, func_name):
    w = workers()

    @w.add_ability(func_name)
    def job(data, job):
        assert isinstance(job, Job)
        assert job.function == func_name.encode() and job.data == data
        assert job.handle.startswith(b"H:") and job.unique == b"u-1"
        assert job.report_status(1, 3) is job
        job.send_data(b"d\0one").report_warning("careful").report_status(2, 3)
        job.send_data(b"two")
        return b"result"

    run(w)
    events = []
    task = Task(func_name, b"payload", unique="u-1")
    task.on_status(lambda n, d: events.append(("status", n, d)))
    task.on_data(lambda d: events.append(("data", d)))
    task.on_warning(lambda m: events.append(("warning", m)))
    task.on_complete(lambda r: events.append(("complete", r)))
    assert client.do_task(task, timeout=5) == b"result"
    assert events == [
        ("status", 1, 3), ("data", b"d\0one"), ("warning", b"careful"),
        ("status", 2, 3), ("data", b"two"), ("complete", b"result"),
    ]


def test_c_cli_client_gets_results_with_nul_bytes(workers, gearmand, func_name):
    w = workers(concurrency=2)
    seen = []

    @w.add_ability(func_name)
    def reverse(data, job):
        seen.append(data)
        return data[::-1]

    run(w)
    payload = b"ab\0cd\0\0e\xff"
    proc = gevent.subprocess.run(
        ["gearman", "-h", "127.0.0.1", "-p", str(gearmand.port), "-f", func_name],
        input=payload, stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, timeout=10,
    )
    assert proc.returncode == 0, proc.stderr
    assert seen == [payload]
    assert proc.stdout.rstrip(b"\n") == payload[::-1]


@pytest.mark.parametrize(
    "returned, expected",
    [(b"raw\0bytes", b"raw\0bytes"), ("h\u00e9", "h\u00e9".encode()), (bytearray(b"ba"), b"ba"),
     (42, b"42"), (True, b"True"), (0, b"0"), (b"", b"")],
)
def test_return_values_complete(workers, client, func_name, returned, expected):
    w = workers()
    w.add_ability(func_name, lambda data, job: returned)
    run(w)
    assert client.do(func_name, b"x", timeout=5) == expected


@pytest.mark.parametrize("returned", [None, False])
def test_none_or_false_fails(workers, client, func_name, returned):
    w = workers()
    failed = Event()
    w.on_work_fail(failed.set)
    w.add_ability(func_name, lambda data, job: returned)
    run(w)
    with pytest.raises(JobFailed):
        client.do(func_name, b"x", timeout=5)
    assert failed.wait(5)


@pytest.mark.parametrize("exceptions_option", [True, False])
def test_exception_sends_work_exception_only(workers, gearmand, func_name, exceptions_option, caplog):
    w = workers()
    calls = []

    @w.add_ability(func_name)
    def job(data, job):
        calls.append(data)
        if data == b"boom":
            raise ValueError("it went boom")
        if data == b"empty":
            raise KeyError()
        return b"fine"

    run(w)
    c = Client(gearmand.address)
    try:
        if exceptions_option:
            c.set_options("exceptions")
        with caplog.at_level(logging.WARNING, logger="gearman_gevent"):
            if exceptions_option:
                with pytest.raises(JobException) as info:
                    c.do(func_name, b"boom", timeout=5)
                assert info.value.message == "it went boom"
                with pytest.raises(JobException) as info:
                    c.do(func_name, b"empty", timeout=5)
                assert info.value.message == "KeyError"
            else:
                with pytest.raises(JobFailed):
                    c.do(func_name, b"boom", timeout=5)
            # the worker survived, and a later round trip on its connection
            # shows gearmand had nothing to complain about (no second result).
            assert c.do(func_name, b"ok", timeout=5) == b"fine"
            for conn in w.connections:
                conn.echo(b"flush", 5)
        assert not [r for r in caplog.records if "JOB_NOT_FOUND" in r.getMessage()]
        # logged with its traceback
        assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)
    finally:
        c.close()
    assert calls[-1] == b"ok"


def test_unknown_function_gets_work_fail_at_once(workers, client, func_name):
    w = workers()
    ran = []
    w.add_ability(func_name, lambda data, job: ran.append(data) or b"x")
    run(w)
    # Simulate the CANT_DO race: forget the function locally only, so the
    # server still hands its jobs to this worker.
    del w._abilities[func_name.encode()]
    t0 = time.monotonic()
    with pytest.raises(JobFailed):
        client.do(func_name, b"x", timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert ran == []


# ------------------------------------------------------------- stop / run
def test_graceful_stop_finishes_running_jobs_and_leaves_queue(workers, gearmand, client, func_name):
    w = workers(concurrency=2)
    started = []
    both_running = Event()

    @w.add_ability(func_name)
    def job(data, job):
        started.append(data)
        if len(started) == 2:
            both_running.set()
        gevent.sleep(0.3)
        job.send_data(b"still reporting")
        return data + b"-done"

    run(w)
    fg = [client.submit(func_name, b"fg%d" % i, unique="") for i in range(2)]
    assert both_running.wait(5)
    bg = client.submit_tasks([BackgroundTask(func_name, b"bg%d" % i, unique="") for i in range(3)])
    assert all(t.handle for t in bg)
    t0 = time.monotonic()
    w.stop(10)  # blocks until the running jobs reported and the worker is gone
    assert time.monotonic() - t0 < 2.0
    assert not w.running
    for t in fg:
        assert t.wait(1) and t.successful
    assert sorted(t.result for t in fg) == [b"fg0-done", b"fg1-done"]
    assert sorted(started) == [b"fg0", b"fg1"]  # nothing grabbed after stop()
    assert wait_until(lambda: status(gearmand, func_name) == (3, 0, 0), what="3 queued, no worker")


def test_stop_timeout_interrupts_jobs_and_gearmand_requeues(workers, gearmand, client, func_name):
    w = workers(concurrency=1)
    started = Event()
    interrupted = []

    @w.add_ability(func_name)
    def job(data, job):
        started.set()
        try:
            gevent.sleep(30)
        except JobStopped as exc:
            interrupted.append(exc)
            raise
        return b"never"

    run(w)
    client.submit(func_name, b"long", unique="", background=True)
    assert started.wait(5)
    t0 = time.monotonic()
    w.stop(0.3)
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert len(interrupted) == 1
    # no result was sent: gearmand put the job back in the queue
    assert wait_until(lambda: status(gearmand, func_name) == (1, 0, 0), what="job requeued")


def test_stop_from_inside_a_job(workers, client, func_name):
    w = workers(concurrency=1)

    @w.add_ability(func_name)
    def job(data, job):
        w.stop()  # must not wait for itself
        return b"last result"

    glet = run(w)
    assert client.do(func_name, b"x", timeout=5) == b"last result"
    glet.join(5)
    assert glet.dead and not w.running


def test_signal_handler_stops_gracefully(workers, client, func_name):
    w = workers(concurrency=1)
    running = Event()

    @w.add_ability(func_name)
    def job(data, job):
        running.set()
        gevent.sleep(0.2)
        return b"finished"

    glet = run(w)
    uninstall = w.install_signal_handlers(timeout=5)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        task = client.submit(func_name, b"x", unique="")
        assert running.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)
        glet.join(5)
        assert glet.dead and not w.running
        assert task.wait(1) and task.result == b"finished"
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGTERM) == previous


def test_second_signal_stops_at_once(workers, gearmand, client, func_name):
    w = workers(concurrency=1)
    running = Event()
    stopped_by = []

    @w.add_ability(func_name)
    def job(data, job):
        running.set()
        try:
            gevent.sleep(30)
        except JobStopped as exc:
            stopped_by.append(exc)
            raise

    glet = run(w)
    uninstall = w.install_signal_handlers(timeout=None)  # wait forever...
    try:
        client.submit(func_name, b"x", unique="", background=True)
        assert running.wait(5)
        os.kill(os.getpid(), signal.SIGINT)
        glet.join(0.3)
        assert not glet.dead and w.running  # ...for the running job
        t0 = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)  # ...until asked again
        glet.join(5)
        assert glet.dead and time.monotonic() - t0 < 2.0
        assert len(stopped_by) == 1
    finally:
        uninstall()
    assert wait_until(lambda: status(gearmand, func_name) == (1, 0, 0), what="job requeued")


def test_max_jobs(gearmand, client, func_name):
    w = Worker(gearmand.address, concurrency=2)
    handled = []
    w.add_ability(func_name, lambda data, job: handled.append(data) or b"ok")
    client.submit_tasks([BackgroundTask(func_name, b"%d" % i, unique="") for i in range(5)])
    glet = gevent.spawn(w.work, max_jobs=3)
    glet.join(10)
    assert glet.dead and glet.successful()
    assert len(handled) == 3
    assert wait_until(lambda: status(gearmand, func_name) == (2, 0, 0), what="2 left queued")


def test_work_and_start_refuse_to_run_twice_but_restart_after_stop(workers, client, func_name):
    w = workers()
    w.add_ability(func_name, lambda d, j: b"again:" + d)
    run(w)
    with pytest.raises(RuntimeError):
        w.start()
    with pytest.raises(RuntimeError):
        w.work()
    assert client.do(func_name, b"1", timeout=5) == b"again:1"
    w.stop(1)
    assert not w.running and w.connections == []
    run(w)  # a stopped worker can run again
    assert client.do(func_name, b"2", timeout=5) == b"again:2"


def test_unsolicited_error_is_logged_and_connection_lives_on(workers, client, func_name, caplog):
    from gearman_gevent.packet import pack_request

    w = workers()

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"twice":
            # a result behind the worker's back: the worker's own WORK_COMPLETE
            # then refers to a finished job and gearmand answers ERROR
            job.connection.send_update(pack_request("work_complete", job.handle, b"early"))
        return b"late:" + data

    run(w)
    conn = w.connections[0]
    generation = conn.generation
    with caplog.at_level(logging.WARNING, logger="gearman_gevent"):
        assert client.do(func_name, b"twice", timeout=5) == b"early"
        conn.echo(b"flush", 5)  # the ERROR came before this reply
    assert any("JOB_NOT_FOUND" in r.getMessage() for r in caplog.records)
    assert client.do(func_name, b"ok", timeout=5) == b"late:ok"
    assert w.connections == [conn] and conn.generation == generation


# ---------------------------------------------------- registration, admin
def test_client_id_and_registration_visible_in_gearmand(workers, gearmand, func_name):
    w = workers(client_id="unit-worker-7", concurrency=3)
    w.add_ability(func_name, lambda d, j: d)
    w.add_ability(func_name + "-b", lambda d, j: d)
    assert w.client_id == "unit-worker-7" and w.concurrency == 3
    assert set(w.abilities) == {func_name, func_name + "-b"}
    run(w)
    lines = [l for l in gearmand.admin("workers").splitlines() if "unit-worker-7" in l]
    assert len(lines) == 1
    assert sorted(lines[0].split(" : ")[1].split()) == [func_name, func_name + "-b"]
    # each function registered exactly once (a duplicate CAN_DO counts twice)
    assert status(gearmand, func_name) == (0, 0, 1)
    assert status(gearmand, func_name + "-b") == (0, 0, 1)


def test_default_client_id_is_set(workers, gearmand, func_name):
    w = workers()
    w.add_ability(func_name, lambda d, j: d)
    run(w)
    assert w.client_id and " " not in w.client_id
    assert any(w.client_id in l and func_name in l for l in gearmand.admin("workers").splitlines())


def test_add_and_remove_ability_while_running(workers, gearmand, client, func_name):
    w = workers()
    keep, drop, late = func_name + "-keep", func_name + "-drop", func_name + "-late"
    w.add_ability(keep, lambda d, j: b"kept")
    w.add_ability(drop, lambda d, j: b"dropped")
    run(w)
    assert status(gearmand, drop) == (0, 0, 1)
    w.remove_ability(drop)  # returns once the server processed CANT_DO
    assert drop not in w.abilities
    assert status(gearmand, drop)[2] == 0
    w.add_ability(late, lambda d, j: b"late")  # announced to the running worker
    assert status(gearmand, late) == (0, 0, 1)
    assert client.do(late, timeout=5) == b"late"
    queued = client.submit(drop, b"nobody", unique="", background=True)
    assert queued.handle
    assert client.do(keep, timeout=5) == b"kept"
    assert status(gearmand, drop) == (1, 0, 0)  # left in the queue
    w.remove_ability("never-registered")  # ignored


def test_after_ability_runs_only_for_successes(workers, client, func_name):
    w = workers()
    after = []

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"fail":
            return None
        if data == b"raise":
            raise RuntimeError("no")
        return {"got": data.decode()}

    @w.after_ability(func_name)
    def hook(result, data):
        after.append((result, data))

    completed = Event()
    w.on_work_complete(completed.set)
    run(w)
    with pytest.raises(JobFailed):
        client.do(func_name, b"fail", timeout=5)
    with pytest.raises(JobFailed):
        client.do(func_name, b"raise", timeout=5)
    assert client.do(func_name, b"ok", timeout=5) == b"{'got': 'ok'}"
    assert completed.wait(5)  # fired after the after_ability hook
    assert after == [({"got": "ok"}, b"ok")]
    with pytest.raises(InvalidArgsError):
        w.after_ability("not-registered", hook)


def test_ability_timeout(workers, gearmand_factory, func_name):
    server = gearmand_factory()  # own server: CAN_DO_TIMEOUT is risky on gearmand 1.1 (#301)
    w = workers(server.address)
    interrupted = []

    @w.add_ability(func_name, timeout=1.0)
    def job(data, job):
        if data == b"quick":
            return b"quick"
        try:
            gevent.sleep(30)
        except JobTimedOut as exc:
            interrupted.append(exc)
            raise
        return b"never"

    assert w.abilities[func_name].server_timeout_ms == 2000
    run(w)
    c = Client(server.address)
    try:
        t0 = time.monotonic()
        with pytest.raises(JobFailed):
            c.do(func_name, b"slow", timeout=10)
        elapsed = time.monotonic() - t0
        assert 0.9 < elapsed < 1.8, elapsed
        assert len(interrupted) == 1
        assert c.do(func_name, b"quick", timeout=5) == b"quick"  # still serving
        assert status(server, func_name) == (0, 0, 1)
    finally:
        c.close()


def test_interrupt_never_cuts_a_packet_in_half(workers, gearmand_factory, func_name):
    """The ability timeout fires while the job is blocked writing a 16 MiB
    WORK_DATA (gearmand is SIGSTOPped): the write completes first, then the
    job is interrupted, and the connection stays usable."""
    server = gearmand_factory()
    w = workers(server.address)
    big = os.urandom(1024) * 16384
    in_job = Event()
    gate = Event()
    after_write = []

    @w.add_ability(func_name, timeout=0.5)
    def job(data, job):
        if data == b"next":
            return b"next ok"
        in_job.set()
        gate.wait()
        job.send_data(big)  # blocks: the server reads nothing
        after_write.append(True)  # not reached: the pending interrupt fires
        gevent.sleep(30)

    run(w)
    generation = w.connections[0].generation
    c = Client(server.address)
    try:
        chunks = []
        task = Task(func_name, b"big", unique="")
        task.on_data(chunks.append)
        c.submit_task(task)
        assert in_job.wait(5)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            gate.set()
            gevent.sleep(1.0)  # the 0.5 s timeout expires during the write
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert task.wait(10)
        assert task.failed and len(chunks) == 1 and chunks[0] == big
        assert after_write == []
        assert c.do(func_name, b"next", timeout=5) == b"next ok"
        assert w.connections[0].generation == generation  # never reconnected
    finally:
        c.close()


def test_ability_timeout_wire_values():
    w = Worker("127.0.0.1:1")
    w.add_ability("a", lambda d, j: d, timeout=0.25)
    w.add_ability("b", lambda d, j: d, timeout=2.5, server_timeout=5)
    w.add_ability("c", lambda d, j: d, timeout=3, server_timeout=0)
    w.add_ability("d", lambda d, j: d)
    ab = w.abilities
    assert ab["a"].server_timeout_ms == 1250
    assert ab["a"].registration() == b"\0REQ\x00\x00\x00\x17\x00\x00\x00\x06a\x001250"
    assert ab["b"].server_timeout_ms == 5000
    assert ab["c"].server_timeout_ms is None and ab["c"].timeout == 3
    assert ab["d"].registration() == b"\0REQ\x00\x00\x00\x01\x00\x00\x00\x01d"


# -------------------------------------------------------------- callbacks
def test_event_callbacks_fire_and_raising_ones_are_harmless(workers, client, func_name, caplog):
    w = workers()
    fired = []
    for event in ("connect", "grab_job", "no_job", "job_assign", "work_complete",
                  "work_fail", "work_exception"):
        register = getattr(w, "on_" + event)
        register(lambda e=event: fired.append(e))

        @register
        def broken():
            raise RuntimeError("callback bug")

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"raise":
            raise ValueError("x")
        return None if data == b"fail" else b"ok"

    with caplog.at_level(logging.ERROR, logger="gearman_gevent"):
        run(w)
        assert client.do(func_name, b"ok", timeout=5) == b"ok"
        with pytest.raises(JobFailed):
            client.do(func_name, b"fail", timeout=5)
        with pytest.raises(JobFailed):
            client.do(func_name, b"raise", timeout=5)
        assert client.do(func_name, b"ok", timeout=5) == b"ok"  # still alive
    for event in ("connect", "grab_job", "no_job", "job_assign", "work_complete",
                  "work_fail", "work_exception"):
        assert event in fired, event
    assert fired.count("job_assign") == 4 and fired.count("work_complete") == 2
    assert any("callback bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_idle_worker_sleeps_until_noop(workers, client, func_name):
    w = workers(wakeup_interval=30)
    grabs = []
    w.on_grab_job(lambda: grabs.append(time.monotonic()))
    no_job = Event()
    w.on_no_job(no_job.set)
    w.add_ability(func_name, lambda d, j: b"woken")
    run(w)
    assert no_job.wait(5)
    gevent.sleep(0.3)  # asserting an absence: no GRAB while asleep
    assert len(grabs) == 1
    t0 = time.monotonic()
    assert client.do(func_name, timeout=5) == b"woken"  # the NOOP woke it
    assert time.monotonic() - t0 < 1.0


def test_wakeup_interval_regrabs_without_noop(workers, func_name):
    w = workers(wakeup_interval=0.1)
    enough = Event()
    grabs = []

    @w.on_grab_job
    def grabbed():
        grabs.append(time.monotonic())
        if len(grabs) >= 4:
            enough.set()

    w.add_ability(func_name, lambda d, j: d)
    run(w)
    assert enough.wait(3)
    gaps = [b - a for a, b in zip(grabs, grabs[1:])]
    assert all(g >= 0.08 for g in gaps), gaps  # one GRAB per interval, no busy loop


# ------------------------------------------------------ servers, reconnect
def test_serves_two_servers_fairly(workers, gearmand_factory, func_name):
    s1, s2 = gearmand_factory(), gearmand_factory()
    w = workers([s1.address, s2.address], concurrency=1)
    order = []

    @w.add_ability(func_name)
    def job(data, job):
        order.append(job.connection.server)
        gevent.sleep(0.02)
        return data + b"@" + job.connection.server.encode()

    run(w, connections=2)
    c1, c2 = Client(s1.address), Client(s2.address)
    try:
        t1 = c1.submit_tasks([Task(func_name, b"a%d" % i, unique="") for i in range(5)])
        t2 = c2.submit_tasks([Task(func_name, b"b%d" % i, unique="") for i in range(5)])
        for t in t1 + t2:
            assert t.wait(5) and t.successful
        assert all(t.result.endswith(s1.address.encode()) for t in t1)
        assert all(t.result.endswith(s2.address.encode()) for t in t2)
        # both served throughout, not one server after the other
        assert set(order[:4]) == {s1.address, s2.address}, order
    finally:
        c1.close()
        c2.close()


def test_reconnects_after_gearmand_restart(workers, gearmand_factory, func_name, caplog):
    server = gearmand_factory()
    w = workers(server.address, client_id="phoenix")
    gate = Event()
    in_job = Event()
    registrations = []
    reregistered = Event()

    @w.on_connect
    def connected():
        registrations.append(1)
        if len(registrations) == 2:
            reregistered.set()

    @w.add_ability(func_name)
    def job(data, job):
        if data == b"hold":
            in_job.set()
            gate.wait()
            return b"stale"
        return b"served:" + data

    run(w)
    c = Client(server.address, reconnect_delay=0.3)
    try:
        assert c.do(func_name, b"1", timeout=5) == b"served:1"
        held = c.submit(func_name, b"hold", unique="")
        assert in_job.wait(5)
        server.kill()
        assert held.wait(5) and isinstance(held.error, NetworkError)  # client side
        server.start()  # same port
        assert reregistered.wait(10)
        assert status(server, func_name) == (0, 0, 1)  # registered once again
        assert "phoenix" in server.admin("workers")
        with caplog.at_level(logging.WARNING, logger="gearman_gevent"):
            gate.set()  # the old job finishes: its result must be dropped
            assert wait_until(lambda: w.running_jobs == 0, what="old job ended")
        assert any("dropping WORK_COMPLETE" in r.getMessage() for r in caplog.records)
        # (a fresh client: the old one's pool may still be in reconnect backoff)
        with Client(server.address) as c2:
            assert c2.do(func_name, b"2", timeout=5) == b"served:2"
            assert c2.do(func_name, b"3", timeout=5) == b"served:3"
    finally:
        c.close()


def test_worker_started_before_its_server(workers, gearmand_factory, func_name):
    from servers import free_port

    port = free_port()
    w = workers(f"127.0.0.1:{port}")
    w.add_ability(func_name, lambda d, j: b"late server")
    connected = Event()
    w.on_connect(connected.set)
    w.start()
    assert not connected.wait(0.2)  # nothing listens yet
    server = gearmand_factory(port=port)
    try:
        assert connected.wait(10)
        c = Client(server.address)
        assert c.do(func_name, timeout=5) == b"late server"
        c.close()
    finally:
        w.stop(0)


# ------------------------------------------------------------- arguments
def test_invalid_arguments():
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:1", concurrency=0)
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:1", client_id="has space")
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:1", client_id="x" * 128)
    with pytest.raises(InvalidArgsError):
        Worker("127.0.0.1:99999")
    w = Worker("127.0.0.1:1")
    with pytest.raises(InvalidArgsError):
        w.add_ability("", lambda d, j: d)
    with pytest.raises(InvalidArgsError):
        w.add_ability("a\0b", lambda d, j: d)
    with pytest.raises(InvalidArgsError):
        w.add_ability("a", "not callable")
    with pytest.raises(InvalidArgsError):
        w.add_ability("a", lambda d, j: d, timeout=-1)
    with pytest.raises(InvalidArgsError):
        w.on_connect("not callable")
    with pytest.raises(InvalidArgsError):
        w.start(max_jobs=0)
    assert not w.running
    w.stop()  # not running: nothing happens


def test_bare_decorator_returns_function():
    w = Worker("127.0.0.1:1")

    @w.add_ability(b"bytes-name")
    def fn(data, job):
        return data

    assert callable(fn) and w.abilities["bytes-name"].fn is fn
    assert w.add_ability("plain", fn) is fn


# ------------------------------------------------- grab, then sleep (PRE_SLEEP)
def _grab_writes(spy):
    grab, pre_sleep = pack_request("grab_job_uniq"), pack_request("pre_sleep")
    return [(call.args[1].count(grab), call.args[1].endswith(pre_sleep)) for call in spy.call_args_list]


def test_idle_worker_grabs_then_sleeps_and_a_backlog_switches_to_plain_grabs(
        workers, client, func_name, mocker):
    """An idle worker sends PRE_SLEEP in the GRAB's write (gearmand NOOPs at
    once if more jobs wait); with jobs running, GRABs go plain, so draining a
    backlog costs no extra packets per job."""
    from gearman_gevent.connection import Connection

    spy = mocker.spy(Connection, "_send_prepared")
    w = workers(concurrency=1)
    w.add_ability(func_name, lambda d, j: d)
    run(w)
    wait_until(lambda: spy.call_count >= 1, what="the first GRAB")
    assert _grab_writes(spy)[0] == (1, True)  # idle: GRAB + PRE_SLEEP
    # one job at a time: each is grabbed by GRAB + PRE_SLEEP, nothing after it
    for i in range(3):
        assert client.do(func_name, b"one%d" % i, timeout=5, unique="") == b"one%d" % i
    assert all(sleepy for _, sleepy in _grab_writes(spy)), _grab_writes(spy)
    # a backlog of 300: plain GRABs (one per job) while jobs run
    before = spy.call_count
    tasks = client.submit_tasks([BackgroundTask(func_name, b"%d" % i, unique="") for i in range(300)])
    assert all(t.successful for t in tasks)
    wait_until(lambda: w.jobs_done >= 303, timeout=20, what="the backlog drained")
    writes = _grab_writes(spy)[before:]
    assert sum(n for n, _ in writes) >= 300
    assert sum(1 for _, sleepy in writes if sleepy) < 20, writes  # only when idle


def test_abilities_with_a_server_timeout_grab_without_pre_sleep(workers, client, func_name, mocker):
    """PRE_SLEEP makes gearmand drop its CAN_DO_TIMEOUT timer, so with a
    server timeout the worker sends PRE_SLEEP only after NO_JOB."""
    from gearman_gevent.connection import Connection

    spy = mocker.spy(Connection, "_send_prepared")
    w = workers(concurrency=1)
    w.add_ability(func_name, lambda d, j: d, timeout=5)
    run(w)
    for i in range(3):
        assert client.do(func_name, b"t%d" % i, timeout=5, unique="") == b"t%d" % i
    writes = _grab_writes(spy)
    assert len(writes) >= 3 and not any(sleepy for _, sleepy in writes), writes
