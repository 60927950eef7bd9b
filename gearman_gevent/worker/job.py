"""Job: what an ability receives, and the way back to the job server.

A :class:`Job` is bound to the connection (and the socket *generation* of that
connection) its JOB_ASSIGN_UNIQ arrived on: gearmand accepts WORK_* packets
for a job only from the connection that holds it.  If that socket has died or
been replaced by a reconnect, packets for the job are dropped with a log line
and never sent anywhere else.

Writes from the job's own greenlet are *shielded*: the worker interrupts a job
(ability timeout, forced stop) only while it is not in the middle of writing a
packet, so an interrupted job can never leave half a packet on the socket.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

import gevent

from ..exceptions import InvalidArgsError, NetworkError
from ..packet import BytesLike, pack_request, to_bytes

if TYPE_CHECKING:  # pragma: no cover
    from ..connection import Connection

__all__ = ["Job", "JobInterrupted", "JobTimedOut", "JobStopped"]

log = logging.getLogger(__name__)


class JobInterrupted(BaseException):
    """Raised inside an ability's greenlet when the worker abandons the job.

    A ``BaseException`` (like :class:`gevent.GreenletExit`), so that an
    ability's ``except Exception:`` does not swallow it.
    """


class JobTimedOut(JobInterrupted):
    """The ability ran longer than its ``timeout``; the worker sends WORK_FAIL."""


class JobStopped(JobInterrupted):
    """The worker's ``stop(timeout)`` ran out of patience; nothing is sent and
    gearmand requeues the job when the connection closes."""


class Job:
    """One job assigned to this worker.

    Attributes (all ``bytes``):

    * ``handle`` -- the server's job handle (``H:host:N``),
    * ``function`` -- the function name,
    * ``unique`` -- the unique id the client gave (may be empty),
    * ``data`` -- the payload.

    :meth:`report_status`, :meth:`send_data` and :meth:`report_warning` write
    WORK_STATUS / WORK_DATA / WORK_WARNING on the connection the job came from
    and return the Job, so calls chain::

        job.report_status(1, 3).send_data(b"partial")

    They never raise for a lost connection: the packet is dropped and logged
    (see :attr:`connected`).  They block only the calling greenlet.
    """

    __slots__ = (
        "handle", "function", "unique", "data", "connection", "generation",
        "_greenlet", "_interruptible", "_interrupted", "_slot_released",
    )

    def __init__(
        self,
        connection: "Connection",
        handle: bytes,
        function: bytes,
        unique: bytes,
        data: bytes,
        generation: Optional[int] = None,
    ) -> None:
        self.handle: bytes = handle
        self.function: bytes = function
        self.unique: bytes = unique
        self.data: bytes = data
        #: The :class:`~gearman_gevent.Connection` the job was assigned on.
        self.connection = connection
        #: ``connection.generation`` when the job was assigned.
        self.generation: int = connection.generation if generation is None else generation
        self._greenlet: Optional[gevent.Greenlet] = None
        self._interruptible = False
        self._interrupted: Optional[JobInterrupted] = None
        self._slot_released = False

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function!r} on {self.connection.server}>"

    @property
    def connected(self) -> bool:
        """True while the socket the job arrived on is still open, i.e. while
        packets for this job can still reach the server."""
        conn = self.connection
        return conn.connected and conn.generation == self.generation

    # -------------------------------------------------------------- updates
    def report_status(self, numerator: int, denominator: int) -> "Job":
        """Send WORK_STATUS ``numerator/denominator`` (non-negative ints)."""
        for value, what in ((numerator, "numerator"), (denominator, "denominator")):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgsError(f"{what} must be a non-negative int, not {value!r}")
        self._send("work_status", str(numerator), str(denominator))
        return self

    def send_data(self, data: BytesLike) -> "Job":
        """Send WORK_DATA with *data* (bytes-like or str; any bytes)."""
        self._send("work_data", to_bytes(data, "data"))
        return self

    def report_warning(self, message: BytesLike) -> "Job":
        """Send WORK_WARNING with *message* (bytes-like or str)."""
        self._send("work_warning", to_bytes(message, "message"))
        return self

    # ------------------------------------------------------------- plumbing
    def _send(self, name: str, *args: BytesLike) -> bool:
        """Write one WORK_* packet for this job; False if it was dropped."""
        packet = pack_request(name, self.handle, *args)
        if not self.connected:
            log.warning(
                "dropping %s for job %r: its connection to %s was lost",
                name.upper(), self.handle, self.connection.server,
            )
            return False
        try:
            # An interrupt (ability timeout, forced stop) may land while this
            # writes: the Connection then finishes the packet in the
            # background, so the stream never carries half a packet.
            self.connection.send_update(packet)
        except NetworkError as exc:
            log.warning("dropping %s for job %r: %s", name.upper(), self.handle, exc)
            return False
        return True

    def _deliver(self, exc: JobInterrupted) -> None:
        """Interrupt the ability with *exc* (called in the hub).

        Only while the job runs user code.
        """
        glet = self._greenlet
        if glet is None or glet.dead or not self._interruptible:
            return
        if self._interrupted is None:
            self._interrupted = exc
        glet.throw(exc)

    def _interrupt(self, exc: JobInterrupted) -> None:
        """Schedule :meth:`_deliver` in the hub (safe from any greenlet)."""
        gevent.get_hub().loop.run_callback(self._deliver, exc)


def coerce_result(value: Any) -> Optional[bytes]:
    """An ability's return value as WORK_COMPLETE data, or None for WORK_FAIL.

    bytes-likes are sent as they are, ``str`` UTF-8 encoded, ``None`` and
    ``False`` mean failure, anything else is sent as ``str(value)``.
    """
    if value is None or value is False:
        return None
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return to_bytes(value)
    return str(value).encode("utf-8")
