"""Client: submit jobs, wait for results, ask for status.

One Client may be shared by any number of greenlets.  Submissions from many
greenlets are pipelined over the same connections; each waits only for its
own JOB_CREATED (and result).  Submitting goes like this:

1. the pool picks a server (by the task's unique, so equal uniques meet in
   one gearmand; round robin for tasks without a unique);
2. the SUBMIT_* packet is written and a waiter queued for its reply;
3. the reader greenlet decodes JOB_CREATED, binds the handle to the task
   (foreground tasks) and wakes the submitter;
4. WORK_* packets for that handle update the task and run its callbacks.

If the server cannot be reached or its connection fails before JOB_CREATED,
the submission moves on to the next server.  After JOB_CREATED it is never
resubmitted silently: a lost connection fails the task with the NetworkError.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, List, Optional, Sequence, Union

import gevent
from gevent.event import Event

from ._validate import check_seconds
from .connection import Connection, _server_error
from .connection_pool import ConnectionPool, Servers
from .exceptions import (
    GearmanError,
    InvalidArgsError,
    JobException,
    JobFailed,
    NetworkError,
    NoJobServersError,
    ProtocolError,
    SocketTimeoutError,
)
from .packet import (
    DEFAULT_MAX_PACKET_SIZE,
    NUMS,
    BytesLike,
    JobStatus,
    Packet,
    UniqueStatus,
    pack_request,
    parse_status_res,
    parse_status_res_unique,
    to_bytes,
)
from .task import MAX_UNIQUE_LENGTH, Task

__all__ = ["Client"]

log = logging.getLogger(__name__)

_JOB_CREATED = NUMS["job_created"]


class _Deadline:
    __slots__ = ("end",)

    def __init__(self, timeout: Optional[float]) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> Optional[float]:
        if self.end is None:
            return None
        return max(0.0, self.end - time.monotonic())


def _creation_waiter(task: Task, attempt: int, conn: Connection):
    """The FIFO waiter for one submission attempt (runs in the reader)."""

    def waiter(pkt: Optional[Packet], exc: Optional[BaseException]) -> None:
        if task._attempt != attempt:
            return  # the submitter gave up on this attempt
        if exc is not None or pkt is None:
            task._on_submit_error(exc or NetworkError("no reply", conn.server))
        elif pkt.type == _JOB_CREATED:
            handle = pkt.args[0]
            if not task.background:
                conn.bind_task(handle, task)
            task._on_created(conn, handle)
        else:
            task._on_submit_error(_server_error(pkt, conn.server))

    return waiter


class Client:
    """A Gearman client over one or more job servers.

    :param servers: ``"host[:port]"``, ``"[v6]:port"``, ``(host, port)`` or a
        list of these; ``None`` means ``localhost:4730``.
    :param connect_timeout: seconds allowed to connect to a server.
    :param task_create_timeout: seconds a submission waits for JOB_CREATED
        when no ``timeout`` is given.
    :param ssl_context: an :class:`ssl.SSLContext` to speak TLS.
    :param reconnect_delay: longest pause between reconnect attempts.
    """

    def __init__(
        self,
        servers: Servers = None,
        *,
        connect_timeout: Optional[float] = 5.0,
        task_create_timeout: Optional[float] = 10.0,
        ssl_context: Any = None,
        reconnect_delay: float = 10.0,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        check_seconds(connect_timeout, "connect_timeout")
        check_seconds(task_create_timeout, "task_create_timeout")
        self.connect_timeout = connect_timeout
        self.task_create_timeout = task_create_timeout
        self.pool = ConnectionPool(
            servers,
            reconnect_delay=reconnect_delay,
            connect_timeout=connect_timeout,
            ssl_context=ssl_context,
            max_packet_size=max_packet_size,
        )
        self._options: List[bytes] = []
        self.pool.on_connection(self._apply_options)

    def __repr__(self) -> str:
        return f"<Client {self.pool.servers}>"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def options(self) -> List[str]:
        """Options set with :meth:`set_options` (re-applied on reconnect)."""
        return [o.decode() for o in self._options]

    # --------------------------------------------------------------- options
    def _apply_options(self, conn: Connection) -> None:
        for option in self._options:
            conn.send_request(pack_request("option_req", option), self.connect_timeout)

    def set_options(self, *options: BytesLike) -> None:
        """Send OPTION_REQ for each option to every server, e.g.
        ``set_options("exceptions")`` to receive WORK_EXCEPTION.

        Raises :class:`~gearman_gevent.exceptions.ServerError` if a server
        refuses an option.  Options are re-applied after every reconnect.
        """
        new: List[bytes] = []
        for option in options:
            raw = to_bytes(option, "option")
            if not raw or b"\0" in raw or len(raw) >= 64:
                raise InvalidArgsError(f"bad option {option!r}")
            new.append(raw)

        def apply(conn: Connection) -> None:
            for raw in new:
                conn.send_request(pack_request("option_req", raw), self.connect_timeout)

        self.pool.with_all_connections(apply)
        for raw in new:
            if raw not in self._options:
                self._options.append(raw)

    # ------------------------------------------------------------ submitting
    def submit(
        self, func: BytesLike, data: BytesLike = b"", *, timeout: Optional[float] = None, **task_options: Any
    ) -> Task:
        """Build a :class:`Task` from the arguments and submit it.

        Returns once the server acknowledged it (JOB_CREATED): a background
        job is then in the server.  Raises
        :class:`~gearman_gevent.exceptions.NoJobServersError` if no server
        took it, :class:`SocketTimeoutError` if no acknowledgement came within
        *timeout* (default ``task_create_timeout``), ``ServerError`` if the
        server refused it.
        """
        return self.submit_task(Task(func, data, **task_options), timeout)

    def submit_task(self, task: Task, timeout: Optional[float] = None) -> Task:
        """Submit *task*; like :meth:`submit`."""
        if not isinstance(task, Task):
            raise InvalidArgsError(f"submit_task needs a Task, not {type(task).__name__}")
        check_seconds(timeout)
        task._rearm()
        task._client = self
        self._submit(task, self.task_create_timeout if timeout is None else timeout)
        return task

    def _submit(
        self, task: Task, timeout: Optional[float], exclude: Sequence[Connection] = (), sleep_through: bool = False
    ) -> None:
        """Submit *task*, waiting up to *timeout* s for its JOB_CREATED,
        retrying other servers on connection errors.  With *sleep_through*
        (``task._notify`` set), the caller is not woken by JOB_CREATED but
        only when the task finished or a submission failed, or when the
        timeout passed (then the task goes on if it was created)."""
        deadline = _Deadline(timeout)
        tried: List[Connection] = list(exclude)
        key = task.unique or None
        last: Optional[BaseException] = None
        while True:
            try:
                conn = self.pool.get_connection(key, exclude=tried)
            except NoJobServersError as exc:
                if last is not None:
                    raise NoJobServersError(f"{exc}; last error: {last}") from last
                raise
            conn.check_not_reader()
            attempt = task._reset_for_submit()
            try:
                conn.send_with_waiter(task._packet(), _creation_waiter(task, attempt, conn))
            except NetworkError as exc:
                tried.append(conn)
                last = exc
                continue
            created = (self._await_submission(task, attempt, deadline) if sleep_through
                       else task._created.wait(deadline.remaining()))
            if not created:
                task._attempt += 1  # a late JOB_CREATED is consumed and ignored
                raise SocketTimeoutError(
                    f"{conn.server} did not acknowledge {task.func!r} within {timeout}s"
                )
            error = task.error
            if error is None or task.done or task._attempt != attempt:
                # Created; a resubmission after WORK_FAIL may own it now.
                # (A foreground task whose connection died right after
                # JOB_CREATED is already failed with that error: the job
                # exists on that server, so it is not resubmitted.)
                return
            if isinstance(error, (NetworkError, ProtocolError)):
                # the connection is gone and the job was not created
                log.info("resubmitting %r elsewhere: %s", task, error)
                tried.append(conn)
                last = error
                continue
            raise error

    @staticmethod
    def _await_submission(task: Task, attempt: int, deadline: _Deadline) -> bool:
        """Sleep until *task* finished or submission *attempt* failed, or
        until *deadline*; True if by then it was created (or failed to be).
        (After a WORK_FAIL with retries left, a resubmission of its own owns
        the task: only its end counts then.)"""
        notify = task._notify
        assert notify is not None
        while True:
            if task._done.is_set() or (
                task._created.is_set() and task.error is not None and task._attempt == attempt
            ):
                return True
            if not notify.wait(deadline.remaining()):
                return task._created.is_set() or task._attempt != attempt
            notify.clear()

    def submit_tasks(self, tasks: Iterable[Task], timeout: Optional[float] = None) -> List[Task]:
        """Submit many tasks at once, pipelined: their packets are written
        together and their JOB_CREATEDs awaited together.

        Returns the tasks once every one was acknowledged.  If some could not
        be submitted, the others are still submitted and the first error is
        raised afterwards (each failed task has ``error`` set).
        """
        tasks = list(tasks)
        errors = self._submit_batch(tasks, timeout)
        for err in errors:
            if err is not None:
                raise err
        return tasks

    def _submit_batch(self, tasks: List[Task], timeout: Optional[float]) -> List[Optional[GearmanError]]:
        check_seconds(timeout)
        if timeout is None:
            timeout = self.task_create_timeout
        deadline = _Deadline(timeout)
        groups: dict = {}
        errors: List[Optional[GearmanError]] = [None] * len(tasks)
        for i, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise InvalidArgsError(f"submit_tasks needs Tasks, not {type(task).__name__}")
            task._rearm()
            task._client = self
            try:
                conn = self.pool.get_connection(task.unique or None)
            except NoJobServersError as exc:
                errors[i] = exc
                continue
            conn.check_not_reader()
            groups.setdefault(conn, []).append(i)
        retry: List[tuple] = []
        for conn, indexes in groups.items():
            packets = []
            waiters = []
            for i in indexes:
                task = tasks[i]
                attempt = task._reset_for_submit()
                packets.append(task._packet())
                waiters.append(_creation_waiter(task, attempt, conn))
            try:
                conn.send_many_with_waiters(packets, waiters)
            except NetworkError:
                pass  # the waiters were failed with the error: retried below
        for conn, indexes in groups.items():
            for i in indexes:
                task = tasks[i]
                if not task._created.wait(deadline.remaining()):
                    task._attempt += 1
                    errors[i] = SocketTimeoutError(
                        f"{conn.server} did not acknowledge {task.func!r} within {timeout}s"
                    )
                elif task.done:
                    pass  # created, then its connection died: failed, not resubmitted
                elif isinstance(task.error, (NetworkError, ProtocolError)):
                    retry.append((i, conn))
                elif task.error is not None:
                    errors[i] = task.error  # type: ignore[assignment]
        for i, conn in retry:
            try:
                self._submit(tasks[i], deadline.remaining(), exclude=[conn])
            except GearmanError as exc:
                errors[i] = exc
        for i, err in enumerate(errors):
            if err is not None:
                tasks[i].error = err
        return errors

    def _resubmit(self, task: Task) -> None:
        """Resubmit *task* after a WORK_FAIL (called from the reader)."""

        def run() -> None:
            try:
                self._submit(task, self.task_create_timeout)
            except GearmanError as exc:
                log.warning("resubmitting %r failed: %s", task, exc)
                task._fail(exc)

        gevent.spawn(run)

    # --------------------------------------------------------------- running
    def do(
        self, func: BytesLike, data: BytesLike = b"", timeout: Optional[float] = None, **task_options: Any
    ) -> bytes:
        """Submit a foreground job and return its result.

        Raises :class:`JobFailed` on WORK_FAIL (after ``retry_count``
        retries), :class:`JobException` on WORK_EXCEPTION (needs
        ``set_options("exceptions")``), :class:`SocketTimeoutError` if no
        result came within *timeout* seconds (submission included),
        :class:`NetworkError` if the connection was lost while it ran.
        """
        if task_options.get("background"):
            raise InvalidArgsError("do() runs foreground jobs; use submit() for background ones")
        task = Task(func, data, **task_options)
        self._run(task, timeout)
        if task.successful:
            return task.result  # type: ignore[return-value]
        if task.exception is not None:
            raise JobException(task.exception, task)
        if task.error is not None:
            raise task.error
        raise JobFailed(f"job {task.func!r} failed (handle {task.handle!r})", task)

    def do_task(self, task: Task, timeout: Optional[float] = None) -> Optional[bytes]:
        """Submit *task* and wait for it: its result, or None if it failed.

        Raises :class:`SocketTimeoutError` on timeout and the submission's
        error if it could not be submitted.
        """
        if not isinstance(task, Task):
            raise InvalidArgsError(f"do_task needs a Task, not {type(task).__name__}")
        self._run(task, timeout)
        return task.result if task.successful else None

    def _run(self, task: Task, timeout: Optional[float]) -> None:
        check_seconds(timeout)
        deadline = _Deadline(timeout)
        create = self.task_create_timeout
        remaining = deadline.remaining()
        if remaining is not None and (create is None or remaining < create):
            create = remaining
        task._rearm()
        task._client = self
        task._notify = Event()
        try:
            self._submit(task, create, sleep_through=True)
        finally:
            task._notify = None
        if not task.wait(deadline.remaining()):
            self.abandon(task)
            raise SocketTimeoutError(f"job {task.func!r} ({task.handle!r}) did not finish within {timeout}s")

    def abandon(self, task: Task) -> None:
        """Stop tracking *task*: later packets for it are ignored."""
        task._attempt += 1
        task.retry_count = task.retries_done
        conn = task.connection
        if conn is not None and task.handle is not None:
            conn.unbind_task(task.handle, task)

    # ---------------------------------------------------------------- status
    def get_status(self, handle: Union[bytes, str, Task], timeout: Optional[float] = None) -> JobStatus:
        """GET_STATUS for a job handle (or a Task): ``JobStatus(known,
        running, numerator, denominator)``.

        For a Task the server that created it is asked; for a bare handle
        every server is asked until one knows it.
        """
        check_seconds(timeout)
        conns: List[Connection]
        if isinstance(handle, Task):
            if handle.handle is None or handle.connection is None:
                raise InvalidArgsError("the task has not been created")
            raw = handle.handle
            conns = [handle.connection]
            if not handle.connection.connected:
                conns = self.pool.connect_all()
        else:
            raw = to_bytes(handle, "handle")
            conns = self.pool.connect_all()
        if not raw or b"\0" in raw or len(raw) >= 64:
            raise InvalidArgsError(f"bad job handle {raw!r}")
        if not conns:
            raise NoJobServersError(self.pool._unavailable_message())
        status = JobStatus(False, False, 0, 0)
        for conn in conns:
            reply = conn.send_request(pack_request("get_status", raw), timeout)
            status = parse_status_res(reply.data.split(b"\0", 4))
            if status.known:
                return status
        return status

    def get_status_unique(self, unique: BytesLike, timeout: Optional[float] = None) -> UniqueStatus:
        """GET_STATUS_UNIQUE (gearmand >= 1.1): the status of the job with
        this unique, including how many clients wait for it.  The server the
        unique maps to is asked first, then the others."""
        check_seconds(timeout)
        raw = to_bytes(unique, "unique")
        if not raw or b"\0" in raw or len(raw) > MAX_UNIQUE_LENGTH:
            raise InvalidArgsError(f"bad unique {raw!r}")
        first = self.pool.get_connection(raw)
        conns = [first] + [c for c in self.pool.connect_all() if c is not first]
        status = UniqueStatus(False, False, 0, 0, 0)
        for conn in conns:
            reply = conn.send_request(pack_request("get_status_unique", raw), timeout)
            status = parse_status_res_unique(reply.data.split(b"\0", 5))
            if status.known:
                return status
        return status

    def echo(self, data: BytesLike = b"ping", timeout: Optional[float] = None) -> bytes:
        """ECHO_REQ to one server (round robin); returns the echoed bytes."""
        check_seconds(timeout)
        conn = self.pool.get_connection()
        return conn.echo(to_bytes(data, "data"), timeout)

    def close(self) -> None:
        """Close every connection; tasks still running fail with NetworkError."""
        self.pool.close()
