"""Task: one job submission, its options, callbacks and outcome.

A Task is built by the caller, submitted by a :class:`~gearman_gevent.Client`,
and from then on updated by the reader greenlet of the connection it was
submitted on.  Callbacks run in that reader greenlet; an exception raised by a
callback is logged and otherwise ignored.  :meth:`Task.wait` blocks only the
calling greenlet.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

from gevent.event import Event

from .exceptions import InvalidArgsError
from .packet import NUMS, BytesLike, Packet, pack_request, to_bytes

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["Task", "BackgroundTask", "validate_function_name", "MAX_UNIQUE_LENGTH"]

log = logging.getLogger(__name__)

#: gearmand stores uniques in a 64-byte buffer: 63 bytes is the usable maximum.
MAX_UNIQUE_LENGTH = 63

_WORK_STATUS = NUMS["work_status"]
_WORK_COMPLETE = NUMS["work_complete"]
_WORK_FAIL = NUMS["work_fail"]
_WORK_EXCEPTION = NUMS["work_exception"]
_WORK_DATA = NUMS["work_data"]
_WORK_WARNING = NUMS["work_warning"]

# (background, priority) -> submit packet name
_SUBMIT = {
    (False, None): "submit_job",
    (False, "high"): "submit_job_high",
    (False, "low"): "submit_job_low",
    (True, None): "submit_job_bg",
    (True, "high"): "submit_job_high_bg",
    (True, "low"): "submit_job_low_bg",
}


def validate_function_name(func: BytesLike) -> bytes:
    """Return *func* as bytes, or raise :class:`InvalidArgsError` if it is
    empty, contains NUL, or is not str/bytes-like."""
    name = to_bytes(func, "function name")
    if not name:
        raise InvalidArgsError("function name must not be empty")
    if b"\0" in name:
        raise InvalidArgsError(f"function name {name!r} contains a NUL byte")
    return name


def _epoch(when: Union[datetime.datetime, int, float]) -> int:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            return int(when.timestamp())  # local time, as datetime does
        return int(when.timestamp())
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        if when < 0:
            raise InvalidArgsError("schedule_at must not be negative")
        return int(when)
    raise InvalidArgsError(
        f"schedule_at must be a datetime or epoch seconds, not {type(when).__name__}"
    )


class Task:
    """One job to submit, with its options, callbacks and outcome.

    :param func: the function name (str or bytes; no NUL, not empty).
    :param data: the payload (bytes-like or str, any bytes).
    :param unique: ``None`` -> SHA-1 hex of ``func + data`` (identical
        submissions coalesce in the server, as in gearman-ruby); ``""`` -> no
        unique (never coalesced); anything else is used as given (at most 63
        bytes, no NUL).
    :param priority: ``None`` (normal), ``"high"`` or ``"low"``.
    :param background: a background job: the client does not wait for it.
    :param schedule_at: a datetime or epoch seconds; submits with
        SUBMIT_JOB_EPOCH, which gearmand always runs as a normal-priority
        background job (so this implies ``background=True``).
    :param retry_count: resubmit up to this many times on WORK_FAIL.

    Every ``on_*`` method registers a callback, returns it, and so also works
    as a decorator.  Raises :class:`InvalidArgsError` for bad arguments.
    """

    __slots__ = (
        "func", "data", "unique", "priority", "background", "schedule_at",
        "retry_count", "retries_done", "handle", "result", "exception",
        "successful", "failed", "status", "error", "connection",
        "_callbacks", "_done", "_created", "_attempt", "_client", "_notify", "__weakref__",
    )

    def __init__(
        self,
        func: BytesLike,
        data: BytesLike = b"",
        *,
        unique: Optional[BytesLike] = None,
        priority: Optional[str] = None,
        background: bool = False,
        schedule_at: Union[datetime.datetime, int, float, None] = None,
        retry_count: int = 0,
    ) -> None:
        self.func: bytes = validate_function_name(func)
        self.data: bytes = to_bytes(data, "data")
        if unique is None:
            self.unique: bytes = hashlib.sha1(self.func + self.data).hexdigest().encode()
        else:
            self.unique = to_bytes(unique, "unique")
            if len(self.unique) > MAX_UNIQUE_LENGTH:
                raise InvalidArgsError(
                    f"unique is {len(self.unique)} bytes; gearmand keeps at most {MAX_UNIQUE_LENGTH}"
                )
            if b"\0" in self.unique:
                raise InvalidArgsError("unique must not contain a NUL byte")
        if priority == "normal":
            priority = None
        if priority not in (None, "high", "low"):
            raise InvalidArgsError(f"priority must be None, 'high' or 'low', not {priority!r}")
        if schedule_at is not None:
            if priority is not None:
                raise InvalidArgsError("a scheduled (epoch) job cannot have a priority")
            self.schedule_at: Optional[int] = _epoch(schedule_at)
            background = True
        else:
            self.schedule_at = None
        if not isinstance(retry_count, int) or isinstance(retry_count, bool) or retry_count < 0:
            raise InvalidArgsError("retry_count must be a non-negative int")
        self.priority: Optional[str] = priority
        self.background: bool = bool(background)
        self.retry_count: int = retry_count
        self.retries_done: int = 0
        #: The job handle (bytes) once the server created the job.
        self.handle: Optional[bytes] = None
        #: The WORK_COMPLETE payload, or None.
        self.result: Optional[bytes] = None
        #: The WORK_EXCEPTION message, or None.
        self.exception: Optional[str] = None
        self.successful: bool = False
        self.failed: bool = False
        #: ``(numerator, denominator)`` of the last WORK_STATUS, or None.
        self.status: Optional[Tuple[int, int]] = None
        #: The error that ended the task without a server verdict (e.g. the
        #: NetworkError of a lost connection), or None.
        self.error: Optional[BaseException] = None
        #: The Connection the job was created on, or None.
        self.connection: Optional["Connection"] = None
        self._callbacks: Optional[dict] = None
        self._done = Event()
        self._created = Event()
        self._attempt = 0
        self._client: Any = None
        #: Set when the task finishes or a submission fails, for a caller
        #: that waits for both at once (Client.do: one wake-up per job).
        self._notify: Optional[Event] = None

    # ------------------------------------------------------------------ info
    def __repr__(self) -> str:
        state = "done" if self.done else ("created" if self.handle else "new")
        return f"<Task {self.func!r} handle={self.handle!r} {state}>"

    @property
    def done(self) -> bool:
        """True once the task finished (completed, failed or exception), or,
        for a background task, once it was created."""
        return self._done.is_set()

    def get_uniq_hash(self) -> str:
        """The value used to pick a server so equal uniques meet in one
        gearmand (the unique itself, as text)."""
        return self.unique.decode("utf-8", "replace")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block this greenlet until the task is done; False on timeout.

        Raises :class:`DeadlockError` if called, for an unfinished task, in
        the reader greenlet of the task's own connection (a task callback):
        only that greenlet could deliver the result.
        """
        if timeout is not None and timeout < 0:
            raise InvalidArgsError("timeout must not be negative")
        if not self._done.is_set() and self.connection is not None:
            self.connection.check_not_reader()
        return self._done.wait(timeout)

    # ------------------------------------------------------------- callbacks
    def _on(self, event: str, fn: Callable) -> Callable:
        if not callable(fn):
            raise InvalidArgsError(f"on_{event} needs a callable")
        if self._callbacks is None:
            self._callbacks = {}
        self._callbacks.setdefault(event, []).append(fn)
        return fn

    def on_created(self, fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """Call ``fn(handle)`` when the server created the job."""
        return self._on("created", fn)

    def on_complete(self, fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """Call ``fn(result)`` on WORK_COMPLETE."""
        return self._on("complete", fn)

    def on_fail(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Call ``fn()`` when the task failed for good (WORK_FAIL after the
        last retry, or its connection was lost)."""
        return self._on("fail", fn)

    def on_retry(self, fn: Callable[[int], Any]) -> Callable[[int], Any]:
        """Call ``fn(retries_done)`` before each resubmission after WORK_FAIL."""
        return self._on("retry", fn)

    def on_exception(self, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``fn(message)`` on WORK_EXCEPTION (needs the ``exceptions``
        option, see :meth:`Client.set_options`)."""
        return self._on("exception", fn)

    def on_status(self, fn: Callable[[int, int], Any]) -> Callable[[int, int], Any]:
        """Call ``fn(numerator, denominator)`` on WORK_STATUS."""
        return self._on("status", fn)

    def on_warning(self, fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """Call ``fn(message)`` (bytes) on WORK_WARNING."""
        return self._on("warning", fn)

    def on_data(self, fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """Call ``fn(data)`` (bytes) on WORK_DATA."""
        return self._on("data", fn)

    def _fire(self, event: str, *args: Any) -> None:
        callbacks = self._callbacks
        if not callbacks:
            return
        for fn in callbacks.get(event, ()):
            try:
                fn(*args)
            except Exception:
                log.exception("on_%s callback of %r raised", event, self)

    # --------------------------------------------------------- wire / states
    def _packet(self) -> bytes:
        """The SUBMIT_* packet for this task."""
        if self.schedule_at is not None:
            return pack_request(
                "submit_job_epoch", self.func, self.unique, str(self.schedule_at), self.data
            )
        return pack_request(
            _SUBMIT[(self.background, self.priority)], self.func, self.unique, self.data
        )

    def _rearm(self) -> None:
        """Make a finished task submittable again (a user resubmitting it)."""
        if not self._done.is_set():
            return
        self._done.clear()
        self.handle = self.result = self.exception = self.status = self.error = None
        self.connection = None
        self.successful = self.failed = False
        self.retries_done = 0

    def _reset_for_submit(self) -> int:
        """Start a new submission attempt; returns its number."""
        self._attempt += 1
        self._created.clear()
        self.error = None
        return self._attempt

    def _on_created(self, conn: "Connection", handle: bytes) -> None:
        self.handle = handle
        self.connection = conn
        self._created.set()
        self._fire("created", handle)
        if self.background:
            self.successful = True
            self._done.set()

    def _on_submit_error(self, exc: BaseException) -> None:
        """The submission failed before JOB_CREATED (the caller decides)."""
        self.error = exc
        self._created.set()
        notify = self._notify
        if notify is not None:
            notify.set()

    def _finish(self) -> None:
        self._done.set()
        notify = self._notify
        if notify is not None:
            notify.set()

    def _handle_packet(self, conn: "Connection", pkt: Packet) -> None:
        """Apply one WORK_* packet routed to this task by its handle."""
        num = pkt.type
        args = pkt.args
        if num == _WORK_COMPLETE:
            self.result = args[1]
            self.successful = True
            self._finish()
            self._fire("complete", args[1])
        elif num == _WORK_DATA:
            self._fire("data", args[1])
        elif num == _WORK_STATUS:
            try:
                self.status = (int(args[1]), int(args[2]))
            except ValueError:
                log.warning("bad WORK_STATUS %r for %r", args, self)
                return
            self._fire("status", *self.status)
        elif num == _WORK_WARNING:
            self._fire("warning", args[1])
        elif num == _WORK_FAIL:
            if self.retries_done < self.retry_count and self._client is not None:
                self.retries_done += 1
                self._fire("retry", self.retries_done)
                self._client._resubmit(self)
                return
            self.failed = True
            self._finish()
            self._fire("fail")
        elif num == _WORK_EXCEPTION:
            self.exception = args[1].decode("utf-8", "replace")
            self.failed = True
            self._finish()
            self._fire("exception", self.exception)

    def _fail(self, exc: BaseException) -> None:
        """End the task as failed without a server verdict: its connection
        died after JOB_CREATED, or it could not be (re)submitted."""
        if self._done.is_set():
            return
        self.error = exc
        self.failed = True
        self._finish()
        self._fire("fail")


class BackgroundTask(Task):
    """A :class:`Task` with ``background=True``: done once the server has it."""

    __slots__ = ()

    def __init__(self, func: BytesLike, data: BytesLike = b"", **kw: Any) -> None:
        kw["background"] = True
        super().__init__(func, data, **kw)
