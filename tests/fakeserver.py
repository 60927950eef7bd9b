"""A tiny scripted Gearman server for fault tests.

Each accepted connection runs ``script(conn)`` in its own greenlet, where
``conn`` is a :class:`FakeConn`: the script reads the client's requests with
:meth:`FakeConn.recv_packet` and answers with exactly the bytes it wants
(valid packets, garbage, half packets, late or trickled replies, a hang-up).

The request reader here is deliberately independent of
``gearman_gevent.packet.Decoder`` (it reads a 12-byte header, then the body),
so a bug in the codec under test cannot hide behind the fake server.

Loopback only (``127.0.0.1``, port 0).  :meth:`FakeServer.stop` closes every
accepted socket and kills every script greenlet.
"""
from __future__ import annotations

import socket
import struct
from typing import Callable, List, Optional, Tuple

import gevent
import gevent.pool
from gevent.event import Event
from gevent.server import StreamServer

from gearman_gevent.packet import COMMANDS, pack_response

_HEADER = struct.Struct(">4sII")


class FakeConn:
    """One accepted client connection, seen from the fake server."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index  # 0 for the first connection the server accepted
        self._buf = b""
        self.requests: List[Tuple[str, bytes]] = []
        self.closed = Event()

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("client closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv_packet(self) -> Tuple[str, bytes]:
        """Block until one whole binary request arrives; ``(name, body)``.

        Raises EOFError when the client hangs up.
        """
        magic, num, size = _HEADER.unpack(self._recv_exact(12))
        if magic != b"\0REQ":
            raise AssertionError(f"client sent bad magic {magic!r}")
        body = self._recv_exact(size)
        name = COMMANDS.get(num, str(num))
        self.requests.append((name, body))
        return name, body

    def expect(self, name: str) -> bytes:
        """Receive one request, assert its type, return its body."""
        got, body = self.recv_packet()
        if got != name:
            raise AssertionError(f"expected {name}, client sent {got} {body!r}")
        return body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, name: str, *args: bytes) -> None:
        self.send(pack_response(name, *args))

    def trickle(self, data: bytes, interval: float) -> None:
        """Send *data* one byte at a time, *interval* seconds apart."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            gevent.sleep(interval)

    def idle(self) -> None:
        """Read and ignore everything until the client hangs up."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.closed.set()


class FakeServer:
    """``FakeServer(script).start()``; ``address`` is ``"127.0.0.1:PORT"``.

    *script* is called as ``script(conn)`` for each accepted connection.  When
    it returns, the connection is closed (so returning is a hang-up).  An
    EOFError/OSError inside the script (the client went away) ends it quietly.
    """

    def __init__(self, script: Callable[[FakeConn], None]) -> None:
        self.script = script
        self.conns: List[FakeConn] = []
        self.errors: List[BaseException] = []
        self.accepted = Event()
        self._pool = gevent.pool.Pool()
        self._server = StreamServer(("127.0.0.1", 0), self._handle, spawn=self._pool)

    def start(self) -> "FakeServer":
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _handle(self, sock: socket.socket, addr: tuple) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = FakeConn(sock, len(self.conns))
        self.conns.append(conn)
        self.accepted.set()
        try:
            self.script(conn)
        except (EOFError, OSError, gevent.GreenletExit):
            pass
        except BaseException as exc:  # an assertion in the script: report it
            self.errors.append(exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._server.close()
        for conn in self.conns:
            conn.close()
        self._pool.kill(block=True, timeout=5)
        self._server.stop(timeout=1)

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Re-raise the first assertion a script hit, if any."""
        if self.errors:
            raise self.errors[0]


def echo_script(conn: FakeConn) -> None:
    """A well-behaved server that answers ECHO_REQ only."""
    while True:
        name, body = conn.recv_packet()
        if name == "echo_req":
            conn.reply("echo_res", body)


def never_answer(conn: FakeConn) -> None:
    """Accept, read everything, never say a word."""
    conn.idle()


def wait_for(event: Event, timeout: float = 5.0, what: Optional[str] = None) -> None:
    if not event.wait(timeout):
        raise AssertionError(f"timed out waiting for {what or event}")
