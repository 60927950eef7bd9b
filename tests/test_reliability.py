"""Reliability: nothing acknowledged is lost, failover across servers."""
from __future__ import annotations

import time

import gevent
import gevent.pool
from gevent.event import Event

import gearman_gevent as gg
from gearman_gevent.exceptions import GearmanError
from fakeserver import FakeServer
from rawworker import RawWorker


def test_acknowledged_background_jobs_survive_sigkill(gearmand_factory, tmp_path, func_name):
    """1 000 background jobs acknowledged by a gearmand with a persistent
    sqlite queue are all executed after that gearmand is SIGKILLed and
    restarted."""
    db = str(tmp_path / "queue.sqlite")
    server = gearmand_factory(extra_args=["-q", "libsqlite3", "--libsqlite3-db", db])
    n = 1000
    with gg.Client(server.address) as client:
        tasks = [gg.BackgroundTask(func_name, b"job-%d" % i) for i in range(n)]
        client.submit_tasks(tasks)
        assert all(t.handle for t in tasks)
    server.kill()
    server.start()
    seen = set()
    done = Event()

    def handler(job):
        seen.add(job.data)
        if len(seen) == n:
            done.set()
        return b"ok"

    worker = RawWorker(server.address, [func_name], handler, concurrency=50)
    try:
        assert done.wait(60), f"only {len(seen)} of {n} jobs ran after the restart"
    finally:
        worker.close()
    assert seen == {b"job-%d" % i for i in range(n)}


def test_every_submit_returns_or_raises_while_a_server_dies(gearmand_factory, func_name):
    """Many greenlets submit while one of three servers is SIGKILLed: every
    submit either returns a created task or raises; none hangs or vanishes,
    and every task created on a surviving server is really there."""
    servers = [gearmand_factory() for _ in range(3)]
    victim = servers[1]
    client = gg.Client([s.address for s in servers], task_create_timeout=5)
    created, failed = [], []
    n = 3000

    def submit(i):
        try:
            created.append(client.submit(func_name, b"%d" % i, background=True, unique=""))
        except GearmanError as exc:
            failed.append(exc)
        gevent.sleep(0)

    def killer():
        while len(created) < n // 3:
            gevent.sleep(0.001)
        victim.kill()

    pool = gevent.pool.Pool(200)
    k = gevent.spawn(killer)
    for i in range(n):
        pool.spawn(submit, i)
    pool.join(timeout=60)
    k.join(5)
    client.close()
    assert len(created) + len(failed) == n
    # a submit in flight on the victim before JOB_CREATED moved to a survivor
    assert failed == []
    on_survivors = [t for t in created if t.connection.server != victim.address]
    queued = sum(s.status().get(func_name, (0, 0, 0))[0] for s in servers if s is not victim)
    assert queued == len(on_survivors)
    # the victim took part before it died, and the rest went elsewhere
    assert any(t.connection.server == victim.address for t in created)
    assert len(on_survivors) > n // 2


# client.py bug (see the reliability report): Client._submit/_submit_batch
# take a task whose connection died right after JOB_CREATED for "not
# created" and submit it again elsewhere.  Remove these markers once the
# proposed fix (check ``task.done`` before resubmitting) is in client.py.


def _registered_servers(worker):
    return {c.server for c in worker.connections}


def test_failover_three_servers_client_and_worker(gearmand_factory, func_name):
    """Three gearmand, one shared Client and one Worker serving all three.

    * round robin spreads submissions over all three; equal uniques meet on
      one server;
    * 40 greenlets keep submitting foreground jobs while one server is
      SIGKILLed: no submit raises (a job not yet created moves on to a
      survivor), every job created on a survivor completes, and every job
      that fails was created on the dead server and fails with NetworkError;
    * foreground tasks in flight on the dead server (held by the worker)
      end promptly with a NetworkError cause;
    * once the server is back, the client and the worker both use it again
      within a few seconds.
    """
    servers = [gearmand_factory() for _ in range(3)]
    victim = servers[0]
    addresses = [s.address for s in servers]
    client = gg.Client(addresses, reconnect_delay=0.5, task_create_timeout=5)
    worker = gg.Worker(addresses, concurrency=40, reconnect_delay=0.5, network_timeout=5)
    held_started = []
    enough_held = Event()
    release = Event()
    registrations = []
    all_registered = Event()
    reregistered = Event()

    @worker.on_connect
    def connected():
        registrations.append(time.monotonic())
        if len(_registered_servers(worker)) == 3:
            all_registered.set()
            if len(registrations) > 3:
                reregistered.set()

    @worker.add_ability(func_name)
    def job(data, job):
        server = job.connection.server
        if data.startswith(b"hold") and server == victim.address:
            held_started.append(data)
            if len(held_started) == 2:
                enough_held.set()
            release.wait(30)
        else:
            gevent.sleep(0.002)
        return data + b"@" + server.encode()

    worker.start()
    try:
        assert all_registered.wait(10)
        # -- round robin and coalescing
        rr = client.submit_tasks([gg.Task(func_name, b"rr%d" % i, unique="") for i in range(9)], timeout=5)
        assert all(t.wait(5) and t.successful for t in rr)
        by_server = {a: sum(t.result.endswith(a.encode()) for t in rr) for a in addresses}
        assert by_server == {a: 3 for a in addresses}, by_server
        same = {client.submit(func_name, b"same%d" % i, unique="same-key", background=True).connection.server
                for i in range(6)}
        assert len(same) == 1

        # -- in-flight foreground tasks on the victim
        holds = client.submit_tasks([gg.Task(func_name, b"hold%d" % i, unique="") for i in range(6)], timeout=5)
        on_victim = [t for t in holds if t.connection.server == victim.address]
        assert len(on_victim) == 2
        assert enough_held.wait(5)

        # -- load across the kill
        outcomes = []  # (kind, task or exception)
        stop_load = Event()
        killed_at = []

        def load(g):
            i = 0
            while not stop_load.is_set() and i < 10000:
                i += 1
                task = gg.Task(func_name, b"g%d-%d" % (g, i), unique="")
                try:
                    client.submit_task(task, timeout=5)
                except GearmanError as exc:
                    outcomes.append(("raised", exc))
                    continue
                if not task.wait(10):
                    outcomes.append(("hung", task))
                elif task.successful:
                    outcomes.append(("ok", task))
                else:
                    outcomes.append(("failed", task))

        loaders = [gevent.spawn(load, g) for g in range(40)]
        deadline = time.monotonic() + 10
        while sum(k == "ok" for k, _ in outcomes) < 300 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        t_kill = time.monotonic()
        victim.kill()
        killed_at.append(t_kill)
        for t in on_victim:
            assert t.wait(3), "a task in flight on the dead server hung"
            assert t.failed and isinstance(t.error, gg.NetworkError), t.error
        assert time.monotonic() - t_kill < 3
        release.set()  # the held jobs finish; their results are dropped
        ok_before = sum(k == "ok" for k, _ in outcomes)
        while sum(k == "ok" for k, _ in outcomes) < ok_before + 300 and time.monotonic() < deadline + 10:
            gevent.sleep(0.01)
        stop_load.set()
        gevent.joinall(loaders, timeout=20)
        assert all(g.dead for g in loaders)

        kinds = [k for k, _ in outcomes]
        raised = [o for k, o in outcomes if k == "raised"]
        hung = [o for k, o in outcomes if k == "hung"]
        failed = [o for k, o in outcomes if k == "failed"]
        ok = [o for k, o in outcomes if k == "ok"]
        assert raised == [] and hung == []
        for t in failed:  # only jobs the dead server had created
            assert t.connection.server == victim.address and isinstance(t.error, gg.NetworkError), (
                t, t.error, t.result, t.connection.server)
        for t in ok:
            assert t.result == t.data + b"@" + t.connection.server.encode()
        assert {t.connection.server for t in ok} == set(addresses)  # the victim served before it died
        created_after = [t for t in ok if t.connection.server != victim.address]
        assert len(created_after) >= 300
        print(f"\nfailover load: {len(kinds)} jobs, ok {len(ok)}, failed with NetworkError "
              f"{len(failed)} (all created on the dead server), raised {len(raised)}")

        # -- the server comes back
        victim.start()
        t_back = time.monotonic()
        assert reregistered.wait(10), "the worker did not re-register with the restarted server"
        worker_back = time.monotonic() - t_back
        used = set()
        while victim.address not in used and time.monotonic() - t_back < 10:
            used.add(client.submit(func_name, b"back", unique="", background=True).connection.server)
            gevent.sleep(0.05)
        client_back = time.monotonic() - t_back
        assert victim.address in used
        assert worker_back < 5 and client_back < 5, (worker_back, client_back)
        # and the worker really serves it: a job created there completes
        with gg.Client(victim.address) as direct:
            assert direct.do(func_name, b"direct", timeout=5) == b"direct@" + victim.address.encode()
        print(f"victim back: worker re-registered after {worker_back:.2f}s, "
              f"client used it after {client_back:.2f}s")
    finally:
        release.set()
        worker.stop(5)
        client.close()


def test_job_created_then_connection_lost_is_not_resubmitted(func_name):
    """JOB_CREATED arrives and the connection dies before the submitting
    greenlet wakes up (both in one read).  The job exists on that server, so
    the task must end failed with the NetworkError, and must *not* be
    submitted a second time to another server (with a persistent queue the
    job would then run twice, and the caller would get a task that is
    marked failed yet completes later)."""

    def created_then_gone(conn):
        conn.expect("submit_job")
        conn.send(gg.packet.pack_response("job_created", b"H:dying:1"))
        # returning closes the socket: the FIN follows JOB_CREATED at once

    second = []

    def good(conn):
        while True:
            name, body = conn.recv_packet()
            second.append(name)
            if name.startswith("submit_job"):
                conn.reply("job_created", b"H:good:1")

    dying, other = FakeServer(created_then_gone).start(), FakeServer(good).start()
    client = gg.Client([dying.address, other.address], task_create_timeout=5)
    try:
        task = gg.Task(func_name, b"x", unique="")
        returned = raised = None
        try:
            returned = client.submit_task(task, timeout=5)
        except GearmanError as exc:
            raised = exc
        assert raised is None or isinstance(raised, gg.NetworkError)
        assert task.wait(2), "the task neither finished nor failed"
        assert task.failed and not task.successful
        assert task.connection is not None and task.connection.server == dying.address
        assert isinstance(task.error, gg.NetworkError), task.error
        assert second == [], "the created job was submitted again elsewhere"
        assert returned is task
    finally:
        client.close()
        dying.stop()
        other.stop()
        dying.check()
        other.check()
