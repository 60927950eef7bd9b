"""TLS through stunnel4 in front of a real gearmand."""
from __future__ import annotations

import time

import pytest

import gearman_gevent as gg
from gearman_gevent.exceptions import NetworkError, NoJobServersError
from rawworker import RawWorker
from tls import Stunnel, client_context, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    good = make_certs(str(tmp_path_factory.mktemp("certs")), "good")
    other = make_certs(str(tmp_path_factory.mktemp("other")), "other")
    return {"good": good, "other": other}


@pytest.fixture(scope="module")
def tls_gearmand(gearmand, certs):
    tunnel = Stunnel(gearmand.port, certs["good"]["cert"], certs["good"]["key"]).start()
    yield tunnel
    tunnel.stop()


def test_client_over_tls(tls_gearmand, gearmand, certs, func_name):
    ctx = client_context(certs["good"]["ca"])
    worker = RawWorker(gearmand.address, [func_name], lambda job: job.data[::-1])
    try:
        with gg.Client(tls_gearmand.address, ssl_context=ctx) as client:
            assert client.echo(b"over tls") == b"over tls"
            assert client.do(func_name, b"abc\0def", timeout=10) == b"fed\0cba"
            conn = client.pool.connections[0]
            assert conn._sock.version().startswith("TLS")  # really encrypted
    finally:
        worker.close()


def test_tls_large_payload_and_many_packets(tls_gearmand, gearmand, certs, func_name):
    """Buffered TLS records must not stall the reader: an 8 MiB reply and
    thousands of small pipelined replies arrive whole."""
    ctx = client_context(certs["good"]["ca"])
    worker = RawWorker(gearmand.address, [func_name], lambda job: job.data)
    try:
        with gg.Client(tls_gearmand.address, ssl_context=ctx) as client:
            payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)
            assert client.do(func_name, payload, timeout=30, unique="") == payload
            tasks = [gg.Task(func_name, b"%d" % i, unique="") for i in range(2000)]
            ts = gg.TaskSet(client)
            assert ts.add_tasks(tasks) == 2000
            assert ts.wait(30)
            assert [t.result for t in tasks] == [b"%d" % i for i in range(2000)]
    finally:
        worker.close()


def test_certificate_that_does_not_verify(tls_gearmand, certs):
    ctx = client_context(certs["other"]["ca"])
    client = gg.Client(tls_gearmand.address, ssl_context=ctx, connect_timeout=5)
    start = time.monotonic()
    with pytest.raises(NoJobServersError) as info:
        client.echo(b"x")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert tls_gearmand.address in message
    assert "TLS handshake" in message and "CERTIFICATE_VERIFY_FAILED" in message
    client.close()


def test_connection_raises_network_error_naming_server(tls_gearmand, certs):
    conn = gg.Connection("127.0.0.1", tls_gearmand.port, ssl_context=client_context(certs["other"]["ca"]))
    with pytest.raises(NetworkError) as info:
        conn.connect()
    assert info.value.server == tls_gearmand.address
    assert not conn.connected


def test_tls_client_against_plain_server_fails_cleanly(gearmand, certs):
    ctx = client_context(certs["good"]["ca"])
    conn = gg.Connection("127.0.0.1", gearmand.port, ssl_context=ctx, connect_timeout=3)
    start = time.monotonic()
    with pytest.raises(NetworkError):
        conn.connect()
    assert time.monotonic() - start < 5


def test_plain_client_against_tls_port_fails_cleanly(tls_gearmand):
    client = gg.Client(tls_gearmand.address)
    with pytest.raises((NetworkError, gg.SocketTimeoutError)):
        client.echo(b"x", timeout=3)
    client.close()
