"""The one exception hierarchy of gearman_gevent.

Every error the library raises on purpose is a :class:`GearmanError`::

    GearmanError
    ├── InvalidArgsError      (also a ValueError) bad input, raised before I/O
    ├── ProtocolError         bytes that are not the Gearman protocol
    ├── NetworkError          (also a ConnectionError) a socket failed
    │   └── NoJobServersError no server could be reached
    ├── SocketTimeoutError    (also the built-in TimeoutError) a wait timed out
    ├── DeadlockError         (also a RuntimeError) a wait only the caller could end
    ├── ServerError           an ERROR packet or an admin ``ERR`` line
    │   └── JobQueueError     the server refused a job (QUEUE_ERROR)
    ├── JobFailed             a job ended with WORK_FAIL
    └── JobException          a job ended with WORK_EXCEPTION
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "GearmanError",
    "InvalidArgsError",
    "ProtocolError",
    "NetworkError",
    "NoJobServersError",
    "JobQueueError",
    "SocketTimeoutError",
    "DeadlockError",
    "ServerError",
    "JobFailed",
    "JobException",
]


class GearmanError(Exception):
    """Base class of every error raised by gearman_gevent."""


class InvalidArgsError(GearmanError, ValueError):
    """An argument is unusable (wrong type, NUL byte, too long, ...).

    Raised before anything is sent to a server.
    """


class ProtocolError(GearmanError):
    """A peer sent bytes that are not valid Gearman protocol.

    The connection it came from is closed; nothing else is affected.
    """


class NetworkError(GearmanError, ConnectionError):
    """A connection to a server could not be made or was lost.

    ``server`` names the ``host:port`` concerned when it is known.
    """

    def __init__(self, message: str, server: Optional[str] = None) -> None:
        super().__init__(message)
        self.server = server


class NoJobServersError(NetworkError):
    """No configured job server could be reached."""


class SocketTimeoutError(GearmanError, TimeoutError):
    """A blocking call did not complete within its ``timeout``."""


class DeadlockError(GearmanError, RuntimeError):
    """A blocking call would wait for a reply that only the calling greenlet
    could read: it was made in a connection's reader (a task callback, say)
    and waits on that same connection.  Raised at once, before anything is
    sent; spawn a greenlet for such a call instead."""


class ServerError(GearmanError):
    """The server answered with an ERROR packet or an admin ``ERR`` line.

    ``code`` is the error code (``"QUEUE_ERROR"``, ``"UNKNOWN_COMMAND"``, ...)
    and ``text`` the server's explanation.
    """

    def __init__(self, code: str, text: str = "", server: Optional[str] = None) -> None:
        self.code = code
        self.text = text
        self.server = server
        where = f" from {server}" if server else ""
        super().__init__(f"{code}: {text}{where}" if text else f"{code}{where}")


class JobQueueError(ServerError):
    """The server refused to queue a job (``QUEUE_ERROR``, e.g. maxqueue)."""


class JobFailed(GearmanError):
    """A job ended with WORK_FAIL (after every retry)."""

    def __init__(self, message: str = "job failed", task: object = None) -> None:
        super().__init__(message)
        self.task = task


class JobException(GearmanError):
    """A job ended with WORK_EXCEPTION; ``message`` is the worker's text."""

    def __init__(self, message: str, task: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.task = task
