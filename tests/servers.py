"""Start and stop real job servers for the tests (and benchmarks).

:class:`Gearmand` runs Debian's C gearmand (``/usr/sbin/gearmand``) on a free
loopback port; :class:`PerlGearmand` runs the Perl ``Gearman::Server``
(``/usr/bin/gearmand`` from Debian's ``gearman-server``); :class:`EmbeddedServer`
runs this library's own server (``python -m gearman_gevent.server``) with the
same interface, so the integration tests can run against either (see
``--job-server`` in conftest.py).  All are separate processes stopped by PID,
and can be killed and restarted on the same port.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

GEARMAND = os.environ.get("GEARMAND", "/usr/sbin/gearmand")
PERL_GEARMAND = "/usr/bin/gearmand"


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    """Poll state that has no event to wait on (gearmand's admin output, a
    fake server's request log) until *predicate* returns something true;
    return it, or raise AssertionError after *timeout* seconds."""
    import gevent

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        gevent.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0, proc: Optional[subprocess.Popen] = None) -> None:
    """Block until *port* accepts connections (or raise RuntimeError)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.02)


class Gearmand:
    """One gearmand process on 127.0.0.1.

    ``extra_args`` are passed on the command line (e.g. ``["-q", "libsqlite3",
    "--libsqlite3-db", path]``).  Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    binary = GEARMAND

    def __init__(self, port: Optional[int] = None, extra_args: Optional[List[str]] = None, threads: int = 2) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.threads = threads
        self.proc: Optional[subprocess.Popen] = None
        self.dir = tempfile.mkdtemp(prefix="gearmand-test-")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def command(self) -> List[str]:
        return [
            self.binary,
            "--listen", self.host,
            "--port", str(self.port),
            "--threads", str(self.threads),
            "--log-file", os.path.join(self.dir, "gearmand.log"),
            "--verbose", "WARNING",
        ] + self.extra_args

    def start(self) -> "Gearmand":
        if self.proc is not None and self.proc.poll() is None:
            return self
        last = None
        for _ in range(50):  # the port may linger briefly after a kill
            self.proc = self._spawn()
            try:
                wait_for_port(self.host, self.port, proc=self.proc)
                return self
            except RuntimeError as exc:
                last = exc
                self._reap()
                time.sleep(0.1)
        raise RuntimeError(f"{self.binary} did not start on {self.address}: {last}")

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def _reap(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the server and wait for it to die."""
        self._reap()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM the server (SIGKILL after 5 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._reap()
        self.proc = None

    def restart(self) -> "Gearmand":
        self.kill()
        return self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Gearmand":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def admin(self, command: str, timeout: float = 5.0) -> str:
        """Send one admin text command with a plain socket; return the reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data.startswith(b"ERR") or data.startswith(b"OK") or data.endswith(b"\n.\n") or data == b".\n":
                    if data.endswith(b"\n"):
                        break
            return data.decode()

    def status(self) -> dict:
        """``{function: (queued, running, workers)}`` from the admin port."""
        result = {}
        for line in self.admin("status").splitlines():
            if line == "." or not line:
                continue
            name, queued, running, workers = line.split("\t")
            result[name] = (int(queued), int(running), int(workers))
        return result


class PerlGearmand(Gearmand):
    """The Perl Gearman::Server (Debian ``gearman-server``)."""

    binary = PERL_GEARMAND

    def command(self) -> List[str]:
        return ["perl", self.binary, "--port", str(self.port), "--listen", self.host]


class EmbeddedServer(Gearmand):
    """The embedded server, ``python -m gearman_gevent.server``, as a
    subprocess (so :meth:`kill` is a real SIGKILL and :meth:`restart` reuses
    the port).  Its log (stderr) goes to ``self.dir/server.log``.

    ``extra_args`` are gearmand's; the ones with an equivalent are
    translated (``-q libsqlite3 --libsqlite3-db FILE`` -> ``--queue
    sqlite:FILE``), any other raises ValueError rather than being ignored.
    ``threads`` is accepted and ignored (one gevent hub).
    """

    def command(self) -> List[str]:
        return [
            sys.executable, "-m", "gearman_gevent.server",
            "--listen", self.host, "--port", str(self.port),
        ] + self.translate_args(self.extra_args)

    #: gearmand option (short, long) -> ours; each takes one value
    OPTIONS = {
        "-j": "--job-retries", "--job-retries": "--job-retries",
        "-w": "--worker-wakeup", "--worker-wakeup": "--worker-wakeup",
        "--job-handle-prefix": "--job-handle-prefix",
        "-q": "-q", "--queue-type": "-q", "--libsqlite3-db": "--libsqlite3-db",
    }

    @classmethod
    def translate_args(cls, args: List[str]) -> List[str]:
        """gearmand's command-line arguments -> ``gearman_gevent.server``'s."""
        out: List[str] = []
        queue = db = None
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            if arg == "--exceptions":
                out.append(arg)
                continue
            name, eq, value = arg.partition("=")
            if name not in cls.OPTIONS:
                raise ValueError(f"EmbeddedServer: no equivalent for gearmand argument {arg!r}")
            if not eq:
                if not rest:
                    raise ValueError(f"gearmand option {name} needs a value")
                value = rest.pop(0)
            ours = cls.OPTIONS[name]
            if ours == "-q":
                queue = value
            elif ours == "--libsqlite3-db":
                db = value
            else:
                out += [ours, value]
        if queue is not None or db is not None:
            if queue != "libsqlite3" or db is None:
                raise ValueError(f"EmbeddedServer: only '-q libsqlite3 --libsqlite3-db FILE' has an equivalent, not {args!r}")
            out += ["--queue", f"sqlite:{db}"]
        return out

    def _spawn(self) -> subprocess.Popen:
        with open(os.path.join(self.dir, "server.log"), "ab") as log:  # its stderr, for post-mortems
            return subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True,
            )


SERVER_CLASSES = {"gearmand": Gearmand, "embedded": EmbeddedServer}
