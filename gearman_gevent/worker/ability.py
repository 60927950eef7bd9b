"""Ability: one function a worker can do, and how it is announced.

``timeout`` is enforced by the worker itself (the job's greenlet is
interrupted and WORK_FAIL sent).  The server is also told CAN_DO_TIMEOUT, as
a backstop for a worker that stops answering; gearmand's caveats:

* the value on the wire is **milliseconds**; gearmand raises 1..999 to 1 s;
* on expiry gearmand **requeues** the job (another worker runs it again) and
  tells neither the client nor the worker; a later result from this worker
  is answered with ``ERROR JOB_NOT_FOUND`` (logged by the worker);
* the timer is one per *connection*, armed by the last GRAB that returned a
  job and removed by PRE_SLEEP, so with ``concurrency > 1`` it covers only
  some of the running jobs;
* gearmand before 2.0 (Debian's 1.1.x included) can fire the timer for a
  stale job on a reused connection, corrupting its queue and hanging the
  server (gearmand bug #301).

For these reasons the server's timer is set later than the worker's own
(``server_timeout`` defaults to ``timeout + 1`` s): if both fired together,
gearmand would requeue the job before the worker's WORK_FAIL arrived, and the
client would never see the failure.  Pass ``server_timeout=0`` to send a
plain CAN_DO and rely on the worker's timer only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from .._validate import check_seconds
from ..exceptions import InvalidArgsError
from ..packet import pack_request

__all__ = ["Ability", "AbilityFn", "AfterFn", "DEFAULT_SERVER_TIMEOUT_MARGIN"]

#: ``fn(data, job)`` -> bytes / str / other object (WORK_COMPLETE), None or
#: False (WORK_FAIL); raising sends WORK_EXCEPTION.
AbilityFn = Callable[[bytes, Any], Any]
#: ``fn(result, data)``, run after WORK_COMPLETE was sent.
AfterFn = Callable[[Any, bytes], Any]

#: Seconds added to an ability's ``timeout`` for gearmand's CAN_DO_TIMEOUT.
DEFAULT_SERVER_TIMEOUT_MARGIN = 1.0
#: gearmand's smallest effective CAN_DO_TIMEOUT (ms).
_MIN_SERVER_TIMEOUT_MS = 1000
#: gearmand parses the value with strtol into an int and drops the connection
#: for values it cannot handle: stay well inside 32 bits.
_MAX_SERVER_TIMEOUT_MS = 2**31 - 1


class Ability:
    """A registered function: its name, callable, timeouts and after-hook.

    :param name: function name (bytes; validated by the worker).
    :param fn: ``fn(data: bytes, job: Job)``.
    :param timeout: seconds a job may run before the worker abandons it
        (WORK_FAIL); None or 0 = no limit.
    :param server_timeout: seconds for gearmand's CAN_DO_TIMEOUT; None =
        ``timeout + 1`` when *timeout* is set; 0 = plain CAN_DO.
    """

    __slots__ = ("name", "fn", "timeout", "server_timeout", "after")

    def __init__(
        self,
        name: bytes,
        fn: AbilityFn,
        timeout: Optional[float] = None,
        server_timeout: Optional[float] = None,
    ) -> None:
        if not callable(fn):
            raise InvalidArgsError(f"ability for {name!r} must be callable, not {type(fn).__name__}")
        timeout = check_seconds(timeout, "timeout") or None
        server_timeout = check_seconds(server_timeout, "server_timeout")
        if server_timeout is None and timeout is not None:
            server_timeout = timeout + DEFAULT_SERVER_TIMEOUT_MARGIN
        self.name = name
        self.fn = fn
        self.timeout: Optional[float] = timeout
        self.server_timeout: Optional[float] = server_timeout or None
        if self.server_timeout is not None and self.server_timeout * 1000 > _MAX_SERVER_TIMEOUT_MS:
            raise InvalidArgsError(f"server_timeout {server_timeout} s is too large for gearmand")
        self.after: Optional[AfterFn] = None

    def __repr__(self) -> str:
        return f"<Ability {self.name!r} timeout={self.timeout}>"

    @property
    def server_timeout_ms(self) -> Optional[int]:
        """The CAN_DO_TIMEOUT value in milliseconds (at least 1000), or None."""
        if self.server_timeout is None:
            return None
        return max(_MIN_SERVER_TIMEOUT_MS, int(math.ceil(self.server_timeout * 1000)))

    def registration(self) -> bytes:
        """The CAN_DO or CAN_DO_TIMEOUT packet announcing this ability."""
        ms = self.server_timeout_ms
        if ms is None:
            return pack_request("can_do", self.name)
        return pack_request("can_do_timeout", self.name, str(ms))
