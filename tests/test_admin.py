"""Admin against the real C gearmand and the Perl Gearman::Server, plus tiny
fake servers for faults a real server does not produce."""
from __future__ import annotations

import re
import time

import gevent
import gevent.server
import pytest

import gearman_gevent as gg
from gearman_gevent.admin import Admin, is_client
from gearman_gevent.connection import Connection
from gearman_gevent.exceptions import (
    InvalidArgsError,
    JobQueueError,
    NetworkError,
    ProtocolError,
    ServerError,
    SocketTimeoutError,
)
from gearman_gevent.packet import FunctionStatus, pack_request
from rawworker import RawWorker
from servers import PerlGearmand, free_port


# --------------------------------------------------------------- helpers
class _Registered:
    """A raw worker connection: SET_CLIENT_ID + CAN_DO, confirmed by an ECHO
    (the server handles one connection's packets in order)."""

    def __init__(self, address: str, client_id: str, functions) -> None:
        host, port = address.rsplit(":", 1)
        self.conn = Connection(host, int(port))
        self.conn.connect()
        self.conn.send_update(pack_request("set_client_id", client_id))
        for f in functions:
            self.conn.send_update(pack_request("can_do", f))
        assert self.conn.echo(b"sync", timeout=5) == b"sync"

    def close(self) -> None:
        self.conn.close()


def _bg(client: gg.Client, func: str, n: int = 1, **kw) -> list:
    return [client.submit(func, b"x%d" % i, background=True, **kw) for i in range(n)]


class FakeAdminServer:
    """Answers every command line with ``reply(line, count)``: bytes to send
    (None: send nothing, keep the connection open; b"" close it)."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.connections = 0
        self.close_after_first = False
        self.lines = []
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.address = f"127.0.0.1:{self.server.server_port}"

    def _handle(self, sock, addr) -> None:
        self.connections += 1
        f = sock.makefile("rb")
        try:
            for line in f:
                self.lines.append(line)
                out = self.reply(line, len(self.lines))
                if out is None:
                    gevent.sleep(60)
                    return
                if out == b"":
                    return
                sock.sendall(out)
                if self.close_after_first and len(self.lines) == 1:
                    return
        finally:
            f.close()
            sock.close()

    def stop(self) -> None:
        self.server.stop(timeout=1)


@pytest.fixture
def admin(gearmand):
    with Admin(gearmand.address, timeout=5) as a:
        yield a


@pytest.fixture
def client(gearmand):
    with gg.Client(gearmand.address) as c:
        yield c


# ------------------------------------------------------------ C gearmand
def test_version_and_getpid(admin, gearmand):
    assert re.match(r"^\d+\.\d+\.\d+", admin.version()), admin.version()
    assert admin.getpid() == gearmand.pid
    assert admin.connected
    assert admin.verbose() in {"FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"}


def test_status_prioritystatus_show_jobs_cancel(admin, client, gearmand, func_name):
    normal = _bg(client, func_name, 2, unique="")
    high = _bg(client, func_name, 1, priority="high", unique=f"u-{func_name}")
    low = _bg(client, func_name, 1, priority="low")
    assert admin.status()[func_name] == FunctionStatus(4, 0, 0)
    assert admin.prioritystatus()[func_name] == (1, 2, 1, 0)

    jobs = {j.handle: j for j in admin.show_jobs()}
    mine = [t.handle.decode() for t in normal + high + low]
    for handle in mine:
        assert jobs[handle] == (handle, 0, False, True)
    uniques = admin.show_unique_jobs()
    assert f"u-{func_name}" in uniques and low[0].unique.decode() in uniques

    # gearmand's "cancel job" marks the job ignored; it stays counted until
    # a worker would take it, and is then discarded instead of run
    admin.cancel_job(mine[0])
    admin.cancel_job(mine[1].encode())  # bytes accepted too
    jobs = {j.handle: j for j in admin.show_jobs()}
    assert jobs[mine[0]] == (mine[0], 0, True, False)
    assert jobs[mine[2]].ignore_job is False
    with pytest.raises(ServerError) as info:
        admin.cancel_job("H:no-such-job:1")
    assert info.value.code == "UNKNOWN_JOB" and info.value.server == admin.server
    assert admin.version()  # the connection is still in sync after an ERR

    got = []
    worker = RawWorker(gearmand.address, [func_name], lambda job: got.append(job.data) or b"ok")
    try:
        for _ in range(250):
            if admin.status()[func_name].queued == 0 and len(got) == 2:
                break
            gevent.sleep(0.02)
        assert sorted(got) == sorted(t.data for t in high + low)
        assert admin.status()[func_name] == FunctionStatus(0, 0, 1)
        assert not [j for j in admin.show_jobs() if j.handle in mine]
    finally:
        worker.close()


def test_workers_lists_workers_and_clients(admin, gearmand, func_name):
    worker = _Registered(gearmand.address, f"id-{func_name}", [func_name, func_name + "-b"])
    try:
        infos = admin.workers()
        mine = [w for w in infos if w.client_id == f"id-{func_name}"]
        assert len(mine) == 1
        assert sorted(mine[0].functions) == sorted([func_name, func_name + "-b"])
        assert mine[0].ip == "127.0.0.1" and mine[0].fd > 0 and not is_client(mine[0])
        # the admin connection itself is listed as a client: id "-", no functions
        clients = [w for w in infos if is_client(w)]
        assert any(w.client_id == "-" and w.functions == [] for w in clients)
        assert admin.status()[func_name] == FunctionStatus(0, 0, 1)
    finally:
        worker.close()
    # gearmand keeps the function (0 workers) until it is dropped
    for _ in range(100):
        if admin.status()[func_name].workers == 0:
            break
        gevent.sleep(0.02)
    assert admin.status()[func_name] == FunctionStatus(0, 0, 0)
    admin.drop_function(func_name)
    assert func_name not in admin.status()
    with pytest.raises(ServerError):
        admin.drop_function(func_name)


def test_create_function(admin, func_name):
    admin.create_function(func_name)
    status = admin.status()
    # gearmand 1.1.20 drops the name's last character; a fixed one does not
    created = func_name if func_name in status else func_name[:-1]
    assert status[created] == FunctionStatus(0, 0, 0)
    admin.drop_function(created)
    assert created not in admin.status()


def test_maxqueue(admin, client, func_name):
    jobs = _bg(client, func_name, 1, unique="")  # gearmand ignores maxqueue for unknown functions
    admin.maxqueue(func_name, 2)
    jobs += _bg(client, func_name, 1, unique="")
    with pytest.raises(JobQueueError):
        _bg(client, func_name, 1, unique="")
    admin.maxqueue(func_name)  # no size: unlimited again
    jobs += _bg(client, func_name, 1, unique="")
    # (high, normal, low); gearmand compares against all queued jobs, 0 = no limit
    admin.maxqueue(func_name, (10, 3, 0))
    with pytest.raises(JobQueueError):
        _bg(client, func_name, 1, unique="")
    jobs += _bg(client, func_name, 1, unique="", priority="low")
    jobs += _bg(client, func_name, 1, unique="", priority="high")
    assert admin.prioritystatus()[func_name] == (1, 3, 1, 0)
    admin.maxqueue(func_name, -1)
    for job in jobs:
        admin.cancel_job(job.handle)


@pytest.mark.gearmand_only("admin 'shutdown': gearmand >= 1.1.15 refuses it, the embedded server keeps it")
def test_shutdown_is_refused_by_gearmand(admin, gearmand):
    with pytest.raises(ServerError) as info:
        admin.shutdown()
    assert info.value.code == "UNKNOWN_COMMAND"
    with pytest.raises(ServerError):
        admin.shutdown(graceful=True)
    assert admin.getpid() == gearmand.pid  # still running; reconnected


@pytest.mark.embedded_only("admin 'shutdown': the embedded server keeps it, gearmand >= 1.1.15 refuses it")
@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_stops_the_embedded_server(gearmand_factory, graceful):
    server = gearmand_factory()
    with Admin(server.address, timeout=5) as a:
        a.shutdown(graceful=graceful)
        assert not a.connected
    assert server.proc.wait(timeout=10) == 0


def test_send_command_raw(admin, func_name):
    lines = admin.send_command("status")  # guessed as a list reply
    assert all(len(line.split("\t")) == 4 for line in lines)
    assert admin.send_command(b"version")[0].startswith("OK ")
    err = admin.send_command("no such command")
    assert len(err) == 1 and err[0].startswith("ERR UNKNOWN_COMMAND")
    assert admin.send_command("show unique jobs", timeout=2) is not None
    assert admin.send_command("getpid", list_reply=False)[0].startswith("OK ")


@pytest.mark.parametrize("bad", ["", "a b", "a\nb", "a\rb", "a\tb", "a\0b", b"x y", 42])
def test_invalid_arguments_send_nothing(gearmand, bad):
    with Admin(gearmand.address) as a:
        for call in (a.cancel_job, a.drop_function, a.create_function, lambda x: a.maxqueue(x, 1)):
            with pytest.raises(InvalidArgsError):
                call(bad)
        assert not a.connected


def test_invalid_command_and_sizes(gearmand):
    with Admin(gearmand.address) as a:
        for bad in ("", "   ", "status\nversion", b"x\0", None):
            with pytest.raises(InvalidArgsError):
                a.send_command(bad)
        for size in ("5", 1.5, True, (1, 2), (1, "2", 3)):
            with pytest.raises(InvalidArgsError):
                a.maxqueue("f", size)
        assert not a.connected
    with pytest.raises(InvalidArgsError):
        Admin(["a:1", "b:2"])
    with pytest.raises(InvalidArgsError):
        Admin("h:notaport")
    with pytest.raises(InvalidArgsError):
        Admin("h", timeout=-1)


def test_one_admin_shared_by_many_greenlets(admin, gearmand):
    calls = [admin.getpid, admin.version, admin.status, admin.workers] * 15
    results = gevent.joinall([gevent.spawn(fn) for fn in calls], timeout=10, raise_error=True)
    values = [g.value for g in results]
    assert len(values) == 60
    assert all(v == gearmand.pid for v in values[0::4])
    assert len(set(values[1::4])) == 1
    assert all(isinstance(v, dict) for v in values[2::4])
    assert all(isinstance(v, list) for v in values[3::4])


def test_reconnects_after_server_restart(gearmand_factory):
    server = gearmand_factory()
    with Admin(server.address, timeout=5) as a:
        pid = a.getpid()
        server.kill()
        with pytest.raises(NetworkError):
            a.getpid()
        assert not a.connected
        server.start()
        assert a.getpid() == server.pid != pid


def test_no_server_is_a_network_error():
    port = free_port()
    with Admin(f"127.0.0.1:{port}", timeout=5) as a:
        start = time.monotonic()
        with pytest.raises(NetworkError) as info:
            a.status()
        assert time.monotonic() - start < 2
        assert f"127.0.0.1:{port}" in str(info.value)


def test_tls_through_stunnel(gearmand, tmp_path):
    from tls import Stunnel, client_context, make_certs

    certs = make_certs(str(tmp_path))
    tunnel = Stunnel(gearmand.port, certs["cert"], certs["key"]).start()
    try:
        with Admin(tunnel.address, ssl_context=client_context(certs["ca"])) as a:
            assert a.getpid() == gearmand.pid
            assert a._sock.version().startswith("TLS")
            assert isinstance(a.status(), dict)
    finally:
        tunnel.stop()


# ----------------------------------------------------------- fake servers
def test_reply_that_never_ends_times_out():
    """A list reply without its final '.' line: the call ends at the timeout,
    the connection is dropped and the next call reconnects."""
    fake = FakeAdminServer(lambda line, n: b"f\t1\t0\t0\n")
    try:
        with Admin(fake.address, timeout=0.3) as a:
            start = time.monotonic()
            with pytest.raises(SocketTimeoutError) as info:
                a.status()
            elapsed = time.monotonic() - start
            assert 0.25 <= elapsed < 1.5
            assert isinstance(info.value, TimeoutError)
            assert not a.connected
            with pytest.raises(SocketTimeoutError):
                a.status(timeout=0.1)  # per-call timeout
            assert fake.connections == 2
    finally:
        fake.stop()


def test_silent_server_times_out_lock_waiters_too():
    fake = FakeAdminServer(lambda line, n: None)
    try:
        with Admin(fake.address, timeout=0.3) as a:
            start = time.monotonic()
            g = [gevent.spawn(a.version) for _ in range(3)]
            gevent.joinall(g, timeout=5)
            assert all(isinstance(x.exception, SocketTimeoutError) for x in g)
            assert time.monotonic() - start < 1.5  # each bounded, waiting included
    finally:
        fake.stop()


def test_garbled_reply_is_protocol_error_then_reconnect():
    def reply(line, n):
        if line.startswith(b"status"):
            return b"not a status line\n.\n"
        return b"OK 9.9\n"

    fake = FakeAdminServer(reply)
    try:
        with Admin(fake.address) as a:
            with pytest.raises(ProtocolError):
                a.status()
            assert not a.connected
            assert a.version() == "9.9"
            assert fake.connections == 2
    finally:
        fake.stop()


def test_close_mid_reply_is_network_error_then_reconnect():
    closes = FakeAdminServer(lambda line, n: b"f\t1\t0\t0\n" if n == 1 else b"OK 7\n")
    closes.close_after_first = True
    try:
        with Admin(closes.address) as a:
            with pytest.raises(NetworkError) as info:
                a.status()
            assert "closed" in str(info.value)
            assert not a.connected
            assert a.getpid() == 7
            assert closes.connections == 2
    finally:
        closes.stop()


def test_unexpected_extra_bytes_drop_the_connection():
    fake = FakeAdminServer(lambda line, n: b"OK 1.0\nOK stray\n")
    try:
        with Admin(fake.address) as a:
            assert a.version() == "1.0"
            assert not a.connected  # out of sync: reconnect next time
            assert a.version() == "1.0"
            assert fake.connections == 2
    finally:
        fake.stop()


# ---------------------------------------------------------- Perl server
@pytest.fixture(scope="module")
def perl_gearmand():
    server = PerlGearmand().start()
    yield server
    server.cleanup()


def test_perl_implemented_commands(perl_gearmand, func_name):
    with Admin(perl_gearmand.address, timeout=5) as a:
        assert re.match(r"^v\d+\.\d+", a.version())  # no "OK" prefix on this server
        worker = _Registered(perl_gearmand.address, f"pid-{func_name}", [func_name])
        try:
            mine = [w for w in a.workers() if w.client_id == f"pid-{func_name}"]
            assert len(mine) == 1 and mine[0].functions == [func_name]
            assert any(is_client(w) and w.client_id == "-" for w in a.workers())
            with gg.Client(perl_gearmand.address) as c:
                _bg(c, func_name + "-q", 3, unique="")
                assert a.status()[func_name] == FunctionStatus(0, 0, 1)
                assert a.status()[func_name + "-q"] == FunctionStatus(3, 0, 0)
                # Perl's maxqueue keeps the queue at the limit by failing the
                # newest queued job instead of refusing the submission
                a.maxqueue(func_name + "-q", 2)
                _bg(c, func_name + "-q", 1, unique="")
                assert a.status()[func_name + "-q"].queued == 2
                a.maxqueue(func_name + "-q")
            jobs = a.send_command("jobs")  # Perl-only list command
            assert sum(1 for j in jobs if j.startswith(func_name + "-q\t")) == 2
        finally:
            worker.close()


@pytest.mark.parametrize(
    "call",
    ["getpid", "show_jobs", "show_unique_jobs", "prioritystatus", "verbose",
     "cancel_job", "create_function", "drop_function"],
)
def test_perl_unimplemented_commands_raise_server_error(perl_gearmand, call):
    with Admin(perl_gearmand.address, timeout=5) as a:
        fn = getattr(a, call)
        start = time.monotonic()
        with pytest.raises(ServerError) as info:
            fn("H:x:1") if call in ("cancel_job", "create_function", "drop_function") else fn()
        assert info.value.code == "unknown_command"
        assert time.monotonic() - start < 2
        assert a.version()  # still in sync


@pytest.mark.parametrize("graceful", [False, True])
def test_perl_shutdown(graceful):
    server = PerlGearmand().start()
    try:
        with Admin(server.address, timeout=5) as a:
            a.shutdown(graceful=graceful)
            assert not a.connected
        assert server.proc.wait(timeout=10) == 0
    finally:
        server.cleanup()
