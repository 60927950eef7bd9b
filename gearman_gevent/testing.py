"""pytest plugin: a ``gearman_server`` fixture for testing Gearman code.

With ``gearman_gevent`` installed the plugin is registered automatically
(``pytest11`` entry point); otherwise add ``pytest_plugins =
["gearman_gevent.testing"]`` to a ``conftest.py``.

``gearman_server`` is an address string ``"127.0.0.1:PORT"``::

    def test_reverse(gearman_server):
        client = gearman_gevent.Client(gearman_server)
        ...

By default it is the embedded server, started once per test session in a
thread of this process with its own gevent hub
(:class:`gearman_gevent.server.ThreadedServer`), so it keeps serving while a
test blocks without yielding to gevent (``subprocess.run`` of the ``gearman``
CLI, stdlib sockets).  Set ``GEARMAND=/path/to/gearmand``
to run the tests against a real gearmand instead (started once per session
on a free port, killed at the end).  ``gearman_server_factory`` starts fresh,
private servers inside one test (``gearman_server_factory()`` -> address).

Tests sharing the session server should use distinct function names.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterator, List, Optional

import pytest

__all__ = ["GearmandProcess", "start_server", "gearman_server", "gearman_server_factory"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GearmandProcess:
    """A gearmand binary running on 127.0.0.1 (stopped by PID)."""

    def __init__(self, binary: str, port: Optional[int] = None, extra_args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.port = port or _free_port()
        self.dir = tempfile.mkdtemp(prefix="gearmand-")
        self.extra_args = list(extra_args or [])
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "GearmandProcess":
        """Start gearmand and return once it accepts connections."""
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1", "--port", str(self.port),
             "--log-file", os.path.join(self.dir, "gearmand.log"), "--verbose", "WARNING"]
            + self.extra_args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.binary} did not listen on {self.address}")
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM it by PID (SIGKILL after 5 s) and remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server() -> Any:
    """Start the server the environment asks for; return an object with
    ``.address`` and ``.stop()``."""
    binary = os.environ.get("GEARMAND")
    if binary:
        return GearmandProcess(binary).start()
    from .server import ThreadedServer

    return ThreadedServer("127.0.0.1", 0).start()


@pytest.fixture(scope="session")
def gearman_server() -> Iterator[str]:
    """Address (``"127.0.0.1:PORT"``) of a job server shared by the session."""
    server = start_server()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def gearman_server_factory() -> Iterator[Callable[[], str]]:
    """Start private job servers in a test; each call returns an address."""
    started: List[Any] = []

    def factory() -> str:
        server = start_server()
        started.append(server)
        return server.address

    yield factory
    for server in started:
        server.stop()
