"""The job server's state machine: functions, queues, jobs, connections.

:class:`Engine` knows nothing about sockets.  A connection is a :class:`Peer`;
the I/O layer calls :meth:`Engine.connect`, feeds every decoded request to
:meth:`Engine.handle` and calls :meth:`Engine.end_batch` after each read.
Replies (and packets for *other* peers: NOOP to workers, WORK_* to clients)
are appended to each peer's ``out`` list; :meth:`Engine.end_batch` commits the
persistent queue and then asks each touched peer's transport to flush, so
one read produces at most one write per connection.

Timers (SUBMIT_JOB_EPOCH due times, CAN_DO_TIMEOUT) go through the
``call_later`` callable given to the engine, so the engine can be driven by
gevent's loop or by a fake clock in tests.

Behaviour follows gearmand 1.1.x (see PROTOCOL.md); the deliberate
differences are listed in :mod:`gearman_gevent.server`.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ..packet import NUMS, Packet, TextCommand
from .protocol import BadMagic, response
from .queue import JobQueue

__all__ = ["Engine", "Peer", "Function", "Job", "HIGH", "NORMAL", "LOW"]

log = logging.getLogger(__name__)

HIGH, NORMAL, LOW = 0, 1, 2
MAX_UNIQUE = 64
MAX_HANDLE = 64
MAX_OPTION = 64
MAX_CLIENT_ID = 127

_N = NUMS
_NOOP = response(_N["noop"])
_NO_JOB = response(_N["no_job"])
_T_JOB_CREATED = _N["job_created"]
_T_JOB_ASSIGN = _N["job_assign"]
_T_JOB_ASSIGN_UNIQ = _N["job_assign_uniq"]
_T_JOB_ASSIGN_ALL = _N["job_assign_all"]
_T_WORK_FAIL = _N["work_fail"]
_T_WORK_EXCEPTION = _N["work_exception"]
_T_ERROR = _N["error"]

#: What an admin ``version`` answers after ``OK ``.
try:  # pragma: no cover - trivial
    from .. import __version__ as _lib_version
except Exception:  # pragma: no cover
    _lib_version = "0"
VERSION = f"{_lib_version}-gearman_gevent"


class Function:
    """One function name: its three priority queues and counters."""

    __slots__ = ("name", "queues", "uniques", "total", "running", "workers", "sleepers", "max_queue", "delayed")

    def __init__(self, name: bytes) -> None:
        self.name = name
        #: queued jobs (high, normal, low); may hold ignored jobs, dropped on take
        self.queues: Tuple[Deque["Job"], Deque["Job"], Deque["Job"]] = (deque(), deque(), deque())
        #: coalescing key -> job (key is the unique, or NUL + data for "-")
        self.uniques: Dict[bytes, "Job"] = {}
        self.total = 0  # every job of this function: queued, delayed, running
        self.running = 0
        self.workers = 0  # peers that registered it
        self.delayed = 0  # epoch jobs not due yet
        #: peers that sent PRE_SLEEP since their last GRAB (dict as ordered set)
        self.sleepers: Dict["Peer", None] = {}
        self.max_queue = [0, 0, 0]


class Job:
    """One job, from submission to its terminal packet."""

    __slots__ = (
        "handle", "function", "unique", "key", "data", "priority", "background", "when",
        "reducer", "clients", "worker", "numerator", "denominator", "retries", "ignore",
        "db_id", "timer",
    )

    def __init__(self, handle: bytes, function: Function, unique: bytes, key: Optional[bytes],
                 data: bytes, priority: int, background: bool, when: int, reducer: bytes) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.key = key
        self.data = data
        self.priority = priority
        self.background = background
        self.when = when
        self.reducer = reducer
        self.clients: List[Peer] = []  # one entry per attached submission
        self.worker: Optional[Peer] = None
        self.numerator = b"0"
        self.denominator = b"0"
        self.retries = 0
        self.ignore = False
        self.db_id: Optional[int] = None
        self.timer: Any = None

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function.name!r}>"


class Peer:
    """The engine's view of one connection.

    ``transport`` must have ``flush(peer)`` (send ``peer.out``) and
    ``close()``.
    """

    __slots__ = (
        "id", "transport", "fd", "ip", "client_id", "abilities", "exceptions", "sleeping",
        "noop_sent", "jobs", "client_jobs", "out", "dirty", "closed",
    )

    def __init__(self, pid: int, transport: Any, fd: int, ip: str) -> None:
        self.id = pid
        self.transport = transport
        self.fd = fd
        self.ip = ip
        self.client_id = b"-"
        #: function name -> CAN_DO_TIMEOUT in ms (0 = none), in registration order
        self.abilities: Dict[bytes, int] = {}
        self.exceptions = False
        self.sleeping = False
        self.noop_sent = False
        self.jobs: Dict[bytes, Job] = {}  # jobs this connection is running
        self.client_jobs: Dict[bytes, Job] = {}  # jobs this connection waits for
        self.out: List[bytes] = []
        self.dirty = False
        self.closed = False

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.ip} fd={self.fd}>"


def _default_call_later(delay: float, fn: Callable[[], None]) -> Any:
    import gevent

    timer = gevent.get_hub().loop.timer(max(0.0, delay))
    timer.start(fn)
    return timer


def _cancel(timer: Any) -> None:
    if timer is not None:
        close = getattr(timer, "close", None) or getattr(timer, "cancel")
        close()


def _leading_int(raw: bytes) -> int:
    """strtol/strtoll-like: the leading decimal integer, 0 if none."""
    s = raw.strip()
    end = 0
    if s[:1] in (b"+", b"-"):
        end = 1
    while end < len(s) and 48 <= s[end] <= 57:
        end += 1
    try:
        return int(s[:end])
    except ValueError:
        return 0


_SUBMITS = {
    _N["submit_job"]: (NORMAL, False),
    _N["submit_job_bg"]: (NORMAL, True),
    _N["submit_job_high"]: (HIGH, False),
    _N["submit_job_high_bg"]: (HIGH, True),
    _N["submit_job_low"]: (LOW, False),
    _N["submit_job_low_bg"]: (LOW, True),
}


class Engine:
    """Server state and protocol logic, free of I/O.

    :param queue: a :class:`~gearman_gevent.server.queue.JobQueue` (persistent
        storage of background jobs).
    :param exceptions: make the ``exceptions`` option the default for every
        connection (gearmand's ``--exceptions``).
    :param job_retries: drop a job (WORK_FAIL to its clients) once it was
        requeued this many times; 0 = unlimited (gearmand 1.1 semantics).
    :param worker_wakeup: NOOP at most this many sleeping workers per new job;
        0 = all.
    :param handle_prefix: job handles are ``prefix + n``; default
        ``H:<hostname>:``.
    :param call_later: ``call_later(seconds, fn) -> timer`` (timer has
        ``close()`` or ``cancel()``); defaults to gevent's loop timers.
    :param clock: returns the current epoch time in seconds.
    """

    def __init__(
        self,
        queue: Optional[JobQueue] = None,
        *,
        exceptions: bool = False,
        job_retries: int = 0,
        worker_wakeup: int = 0,
        handle_prefix: Optional[bytes] = None,
        call_later: Callable[[float, Callable[[], None]], Any] = _default_call_later,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue if queue is not None else JobQueue()
        self._persistent = type(self.queue) is not JobQueue
        self.default_exceptions = exceptions
        self.job_retries = job_retries
        self.worker_wakeup = worker_wakeup
        if handle_prefix is None:
            handle_prefix = b"H:" + socket.gethostname().split(".")[0].encode() + b":"
        self.handle_prefix = handle_prefix
        self.call_later = call_later
        self.clock = clock
        self.functions: Dict[bytes, Function] = {}
        self.jobs: Dict[bytes, Job] = {}
        self.by_unique: Dict[bytes, Job] = {}  # for GET_STATUS_UNIQUE
        self.peers: Dict[int, Peer] = {}
        self._ids = itertools.count(1)
        self._handles = itertools.count(1)
        self._dirty: List[Peer] = []
        self._db_dirty = False
        self._delayed: List[Tuple[int, int, Job]] = []
        self._delay_seq = itertools.count()
        self._delay_timer: Any = None
        self._delay_at: Optional[float] = None
        #: when True, GRAB gets NO_JOB (graceful shutdown in progress)
        self.draining = False
        #: called with ``graceful: bool`` by the admin ``shutdown`` command
        self.on_shutdown: Optional[Callable[[bool], None]] = None
        self.verbose = "INFO"
        self.pid = os.getpid()
        self._dispatch: Dict[int, Callable[[Peer, Tuple[bytes, ...], int], None]] = {}
        for num in _SUBMITS:
            self._dispatch[num] = self._submit_packet
        d = self._dispatch
        d[_N["submit_job_epoch"]] = self._submit_epoch
        d[_N["submit_reduce_job"]] = self._submit_reduce
        d[_N["submit_reduce_job_background"]] = self._submit_reduce
        d[_N["grab_job"]] = self._grab
        d[_N["grab_job_uniq"]] = self._grab
        d[_N["grab_job_all"]] = self._grab
        d[_N["pre_sleep"]] = self._pre_sleep
        d[_N["can_do"]] = self._can_do
        d[_N["can_do_timeout"]] = self._can_do
        d[_N["cant_do"]] = self._cant_do
        d[_N["reset_abilities"]] = self._reset_abilities
        d[_N["work_status"]] = self._work_status
        d[_N["work_data"]] = self._work_forward
        d[_N["work_warning"]] = self._work_forward
        d[_N["work_complete"]] = self._work_complete
        d[_N["work_fail"]] = self._work_fail
        d[_N["work_exception"]] = self._work_exception
        d[_N["get_status"]] = self._get_status
        d[_N["get_status_unique"]] = self._get_status_unique
        d[_N["echo_req"]] = self._echo
        d[_N["option_req"]] = self._option
        d[_N["set_client_id"]] = self._set_client_id
        self._admin: Dict[str, Callable[[Peer, List[bytes]], bytes]] = {
            "status": self._admin_status,
            "workers": self._admin_workers,
            "version": lambda p, a: f"OK {VERSION}\n".encode(),
            "getpid": lambda p, a: f"OK {self.pid}\n".encode(),
            "verbose": lambda p, a: f"OK {self.verbose}\n".encode(),
            "maxqueue": self._admin_maxqueue,
            "show": self._admin_show,
            "cancel": self._admin_cancel,
            "prioritystatus": self._admin_prioritystatus,
            "create": self._admin_create,
            "drop": self._admin_drop,
            "shutdown": self._admin_shutdown,
        }

    # ------------------------------------------------------------ plumbing
    def connect(self, transport: Any, fd: int = -1, ip: str = "-") -> Peer:
        """Register a new connection and return its :class:`Peer`."""
        peer = Peer(next(self._ids), transport, fd, ip)
        peer.exceptions = self.default_exceptions
        self.peers[peer.id] = peer
        return peer

    def _send(self, peer: Peer, data: bytes) -> None:
        peer.out.append(data)
        if not peer.dirty:
            peer.dirty = True
            self._dirty.append(peer)

    def _error(self, peer: Peer, code: bytes, text: bytes) -> None:
        self._send(peer, response(_T_ERROR, code + b"\0" + text))

    def end_batch(self) -> None:
        """Commit the persistent queue, then flush every peer that has output."""
        if self._db_dirty:
            self._db_dirty = False
            self.queue.commit()
        while self._dirty:
            dirty = self._dirty
            self._dirty = []
            for peer in dirty:
                peer.dirty = False
                if peer.closed:
                    peer.out.clear()
                elif peer.out:
                    peer.transport.flush(peer)

    def handle(self, peer: Peer, item: Any) -> None:
        """Process one decoded request from *peer*: a ``(type, args)`` tuple
        or :class:`Packet`, a :class:`TextCommand` or a :class:`BadMagic`."""
        self.handle_many(peer, (item,))

    def handle_many(self, peer: Peer, items: Any) -> None:
        """Process decoded requests from *peer* in order (see :meth:`handle`)."""
        dispatch = self._dispatch
        for item in items:
            kind = type(item)
            if kind is tuple or kind is Packet:
                num, args = item
                fn = dispatch.get(num)
                if fn is None:
                    self._error(peer, b"INVALID_COMMAND", b"Command not expected")
                else:
                    fn(peer, args, num)
            elif kind is TextCommand:
                self._send(peer, self.admin(peer, item.line))
            elif kind is BadMagic:
                self._error(peer, b"INVALID_MAGIC", b"Request magic expected")
            else:
                raise TypeError(f"cannot handle {item!r}")
            if peer.closed:
                break

    def disconnect(self, peer: Peer) -> None:
        """Forget *peer*: requeue the jobs it was running, detach it from the
        jobs it waits for (a foreground job nobody waits for is dropped)."""
        if peer.closed:
            return
        peer.closed = True
        peer.out.clear()
        self.peers.pop(peer.id, None)
        for name in peer.abilities:
            func = self.functions.get(name)
            if func is not None:
                func.workers -= 1
                func.sleepers.pop(peer, None)
        peer.abilities = {}
        for job in list(peer.jobs.values()):
            self._requeue(job)
        for job in peer.client_jobs.values():
            job.clients = [c for c in job.clients if c is not peer]
            if not job.clients and not job.background:
                job.ignore = True
        peer.client_jobs = {}

    # ------------------------------------------------------------- helpers
    def _function(self, name: bytes) -> Function:
        func = self.functions.get(name)
        if func is None:
            func = self.functions[name] = Function(name)
        return func

    def _wake(self, func: Function) -> None:
        """NOOP sleeping workers of *func* that have no NOOP outstanding."""
        sleepers = func.sleepers
        if not sleepers or self.draining:
            return
        limit = self.worker_wakeup
        woken = 0
        name = func.name
        while sleepers:
            peer = next(iter(sleepers))
            del sleepers[peer]
            if peer.sleeping and not peer.noop_sent and not peer.closed and name in peer.abilities:
                peer.noop_sent = True
                self._send(peer, _NOOP)
                woken += 1
                if limit and woken >= limit:
                    break

    def _enqueue(self, job: Job) -> None:
        job.function.queues[job.priority].append(job)
        self._wake(job.function)

    def _take(self, func: Function) -> Optional[Job]:
        for q in func.queues:
            while q:
                job = q.popleft()
                if job.ignore:
                    self._finish(job)
                    continue
                return job
        return None

    def _runnable(self, func: Function) -> bool:
        for q in func.queues:
            while q:
                if q[0].ignore:
                    self._finish(q.popleft())
                    continue
                return True
        return False

    def _finish(self, job: Job) -> None:
        """Forget *job* everywhere (it ended, or was dropped)."""
        handle = job.handle
        if self.jobs.pop(handle, None) is None:
            return
        func = job.function
        func.total -= 1
        worker = job.worker
        if worker is not None:
            func.running -= 1
            worker.jobs.pop(handle, None)
            job.worker = None
        if job.timer is not None:
            _cancel(job.timer)
            job.timer = None
        if job.key is not None and func.uniques.get(job.key) is job:
            del func.uniques[job.key]
        if job.unique and self.by_unique.get(job.unique) is job:
            del self.by_unique[job.unique]
        for client in job.clients:
            client.client_jobs.pop(handle, None)
        if job.db_id is not None:
            self.queue.delete(job.db_id)
            job.db_id = None
            self._db_dirty = True

    def _requeue(self, job: Job) -> None:
        """Put a running job back in its queue (its worker left or timed out)."""
        worker = job.worker
        if worker is not None:
            worker.jobs.pop(job.handle, None)
            job.worker = None
            job.function.running -= 1
        if job.timer is not None:
            _cancel(job.timer)
            job.timer = None
        job.retries += 1
        if self.job_retries and job.retries >= self.job_retries:
            log.info("job %r dropped after %d attempts", job.handle, job.retries)
            pkt = response(_T_WORK_FAIL, job.handle)
            for client in job.clients:
                self._send(client, pkt)
            self._finish(job)
            return
        self._enqueue(job)

    def _persist(self, job: Job) -> bool:
        if not self._persistent:
            return True
        try:
            job.db_id = self.queue.add(
                job.function.name, job.unique, job.priority, job.data, job.when, job.reducer
            )
        except Exception:
            log.exception("persistent queue failed to store %r", job.handle)
            return False
        if job.db_id is not None:
            self._db_dirty = True
        return True

    # ------------------------------------------------------------ submitting
    def _submit_packet(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        priority, background = _SUBMITS[num]
        self.submit(peer, args[0], args[1], args[2], priority, background)

    def _submit_epoch(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        when = _leading_int(args[2])
        self.submit(peer, args[0], args[1], args[3], NORMAL, True, when=when)

    def _submit_reduce(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        background = num == _N["submit_reduce_job_background"]
        self.submit(peer, args[0], args[1], args[3], NORMAL, background, reducer=args[2])

    def submit(self, peer: Optional[Peer], name: bytes, unique: bytes, data: bytes, priority: int,
               background: bool, when: int = 0, reducer: bytes = b"") -> Optional[Job]:
        """Create a job (or attach to the one with the same unique) and reply
        JOB_CREATED or ERROR to *peer* (None: no reply, as when loading)."""
        if len(unique) > MAX_UNIQUE:
            if peer is not None:
                self._error(peer, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
            return None
        func = self.functions.get(name)
        if func is None:
            func = self.functions[name] = Function(name)
        key: Optional[bytes] = None
        if unique:
            if unique == b"-":
                key = b"\0" + data if data else None
            else:
                key = unique
        if key is not None:
            job = func.uniques.get(key)
            if job is not None:
                if job.ignore:
                    job.ignore = False  # gearmand would leave it dropped; revive it
                if background:
                    if not job.background:
                        job.background = True
                        if not self._persist(job):
                            if peer is not None:
                                self._error(peer, b"QUEUE_ERROR", b"Could not store job")
                            return None
                elif peer is not None:
                    job.clients.append(peer)
                    peer.client_jobs[job.handle] = job
                if peer is not None:
                    self._send(peer, response(_T_JOB_CREATED, job.handle))
                return job
        limit = func.max_queue[priority]
        if limit and func.total >= limit:
            if peer is not None:
                self._error(peer, b"QUEUE_ERROR", b"Job queue is full")
            return None
        handle = b"%s%d" % (self.handle_prefix, next(self._handles))
        job = Job(handle, func, unique, key, data, priority, background, when, reducer)
        if background and self._persistent and not self._persist(job):
            if peer is not None:
                self._error(peer, b"QUEUE_ERROR", b"Could not store job")
            return None
        self.jobs[handle] = job
        func.total += 1
        if key is not None:
            func.uniques[key] = job
            if unique != b"-":
                self.by_unique[unique] = job
        if peer is not None:
            if not background:
                job.clients.append(peer)
                peer.client_jobs[handle] = job
            self._send(peer, response(_T_JOB_CREATED, handle))
        if when and when > self.clock():
            self._delay(job)
        else:
            func.queues[priority].append(job)
            if func.sleepers:
                self._wake(func)
        return job

    def load(self) -> int:
        """Recreate the jobs kept by the persistent queue; return their number."""
        count = 0
        for stored in self.queue.load():
            job = self.submit(None, stored.function, stored.unique, stored.data,
                              stored.priority if stored.priority in (0, 1, 2) else NORMAL,
                              False, stored.when, stored.reducer)
            if job is None:
                continue
            job.background = True
            if job.db_id is None:
                job.db_id = stored.id
            else:  # coalesced onto an earlier row: this one is redundant
                self.queue.delete(stored.id)
                self._db_dirty = True
            count += 1
        self.end_batch()
        return count

    # --------------------------------------------------------- epoch timer
    def _delay(self, job: Job) -> None:
        job.function.delayed += 1
        heapq.heappush(self._delayed, (job.when, next(self._delay_seq), job))
        self._arm_delay()

    def _arm_delay(self) -> None:
        if not self._delayed:
            return
        due = self._delayed[0][0]
        if self._delay_at is not None and self._delay_at <= due:
            return
        _cancel(self._delay_timer)
        self._delay_at = due
        self._delay_timer = self.call_later(max(0.0, due - self.clock()), self._delay_fired)

    def _delay_fired(self) -> None:
        self._delay_timer = None
        self._delay_at = None
        now = self.clock()
        try:
            while self._delayed and self._delayed[0][0] <= now:
                _, _, job = heapq.heappop(self._delayed)
                job.function.delayed -= 1
                if job.handle in self.jobs:
                    self._enqueue(job)
            self._arm_delay()
            self.end_batch()
        except Exception:  # pragma: no cover - never kill the loop
            log.exception("epoch timer failed")

    # --------------------------------------------------------------- worker
    def _can_do(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        name = args[0]
        timeout = 0
        if len(args) > 1:
            timeout = min(_leading_int(args[1]), 2 ** 31 - 1)
            if timeout <= 0:
                timeout = 0
            elif timeout < 1000:
                timeout = 1000
        func = self._function(name)
        if name not in peer.abilities:
            func.workers += 1
        peer.abilities[name] = timeout
        if peer.sleeping and not peer.noop_sent:
            func.sleepers[peer] = None
            if self._runnable(func):
                self._wake(func)

    def _drop_abilities(self, peer: Peer, names: List[bytes]) -> None:
        for name in names:
            if peer.abilities.pop(name, None) is None:
                continue
            func = self.functions.get(name)
            if func is not None:
                func.workers -= 1
                func.sleepers.pop(peer, None)
        gone = set(names)
        for job in list(peer.jobs.values()):
            if job.function.name in gone:
                self._requeue(job)

    def _cant_do(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        self._drop_abilities(peer, [args[0]])

    def _reset_abilities(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        self._drop_abilities(peer, list(peer.abilities))

    def _set_client_id(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        peer.client_id = args[0][:MAX_CLIENT_ID] or b"-"

    def _grab(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        peer.sleeping = False
        peer.noop_sent = False
        job = None
        if not self.draining:
            functions = self.functions
            for name in peer.abilities:
                func = functions.get(name)
                if func is not None and (func.queues[0] or func.queues[1] or func.queues[2]):
                    job = self._take(func)
                    if job is not None:
                        break
        if job is None:
            self._send(peer, _NO_JOB)
            return
        job.worker = peer
        func = job.function
        func.running += 1
        handle = job.handle
        peer.jobs[handle] = job
        timeout = peer.abilities.get(func.name)
        if timeout:
            job.timer = self.call_later(timeout / 1000.0, lambda: self._job_timeout(job, peer))
        if num == 9:  # GRAB_JOB
            self._send(peer, response(_T_JOB_ASSIGN, b"\0".join((handle, func.name, job.data))))
        elif num == 39 and job.reducer:
            self._send(peer, response(
                _T_JOB_ASSIGN_ALL, b"\0".join((handle, func.name, job.unique, job.reducer, job.data))))
        else:
            self._send(peer, response(
                _T_JOB_ASSIGN_UNIQ, b"\0".join((handle, func.name, job.unique, job.data))))

    def _job_timeout(self, job: Job, peer: Peer) -> None:
        job.timer = None
        if job.worker is peer and job.handle in self.jobs:
            log.info("job %r timed out on %r; requeued", job.handle, peer)
            self._requeue(job)
            self.end_batch()

    def _pre_sleep(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        peer.sleeping = True
        if peer.noop_sent:
            return
        functions = self.functions
        if not self.draining:
            for name in peer.abilities:
                func = functions.get(name)
                if func is not None and self._runnable(func):
                    peer.noop_sent = True
                    self._send(peer, _NOOP)
                    return
        for name in peer.abilities:
            func = functions.get(name)
            if func is not None:
                func.sleepers[peer] = None

    def _owned(self, peer: Peer, handle: bytes) -> Optional[Job]:
        job = peer.jobs.get(handle)
        if job is None:
            self._error(peer, b"JOB_NOT_FOUND", b"Job given in work result not found")
        return job

    def _work_status(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        job = self._owned(peer, args[0])
        if job is None:
            return
        job.numerator = args[1]
        job.denominator = args[2]
        if job.clients:
            pkt = response(num, b"\0".join(args))
            for client in job.clients:
                self._send(client, pkt)

    def _work_forward(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        job = self._owned(peer, args[0])
        if job is not None and job.clients:
            pkt = response(num, args[0] + b"\0" + args[1])
            for client in job.clients:
                self._send(client, pkt)

    def _work_complete(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        job = peer.jobs.get(args[0])
        if job is None:
            self._error(peer, b"JOB_NOT_FOUND", b"Job given in work result not found")
            return
        clients = job.clients
        if clients:
            pkt = response(num, args[0] + b"\0" + args[1])
            send = self._send
            for client in clients:
                send(client, pkt)
        self._finish(job)

    def _work_fail(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        handle = args[0]
        nul = handle.find(b"\0")
        if nul >= 0:
            handle = handle[:nul]
        if len(handle) >= MAX_HANDLE:
            self._error(peer, b"ARGUMENT_TOO_LARGE", b"Job handle too large")
            return
        job = self._owned(peer, handle)
        if job is None:
            return
        pkt = response(_T_WORK_FAIL, handle)
        for client in job.clients:
            self._send(client, pkt)
        self._finish(job)

    def _work_exception(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        job = self._owned(peer, args[0])
        if job is None:
            return
        exc_pkt = fail_pkt = None
        for client in job.clients:
            if client.exceptions:
                if exc_pkt is None:
                    exc_pkt = response(_T_WORK_EXCEPTION, args[0] + b"\0" + args[1])
                self._send(client, exc_pkt)
            else:
                if fail_pkt is None:
                    # gearmand builds this from the parsed "handle\0" argument
                    fail_pkt = response(_T_WORK_FAIL, args[0] + b"\0")
                self._send(client, fail_pkt)
        self._finish(job)

    # --------------------------------------------------------------- client
    def _get_status(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        handle = args[0]
        if len(handle) >= MAX_HANDLE:
            self._error(peer, b"ARGUMENT_TOO_LARGE", b"Job handle too large")
            return
        job = self.jobs.get(handle)
        if job is None:
            body = handle + b"\x000\x000\x000\x000"
        else:
            body = b"\0".join((handle, b"1", b"1" if job.worker else b"0", job.numerator, job.denominator))
        self._send(peer, response(20, body))

    def _get_status_unique(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        unique = args[0]
        if len(unique) >= MAX_UNIQUE:
            self._error(peer, b"ARGUMENT_TOO_LARGE", b"Unique value too large")
            return
        job = self.by_unique.get(unique)
        if job is None:
            body = unique + b"\x000\x000\x000\x000\x000"
        else:
            body = b"\0".join((unique, b"1", b"1" if job.worker else b"0", job.numerator,
                               job.denominator, str(len(job.clients)).encode()))
        self._send(peer, response(42, body))

    def _echo(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        self._send(peer, response(17, args[0]))

    def _option(self, peer: Peer, args: Tuple[bytes, ...], num: int) -> None:
        option = args[0]
        if option == b"exceptions":
            peer.exceptions = True
            self._send(peer, response(27, option))
        else:
            self._error(peer, b"UNKNOWN_OPTION", b"Server does not recognize given option")

    # ---------------------------------------------------------------- admin
    def admin(self, peer: Peer, line: bytes) -> bytes:
        """Run one admin text command; return the reply bytes."""
        tokens = [t for t in line.split(b" ") if t]
        cmd = tokens[0].decode("latin-1").lower() if tokens else ""
        fn = self._admin.get(cmd)
        if fn is None:
            return b"ERR UNKNOWN_COMMAND Unknown+server+command" + (tokens[0] if tokens else b"") + b"\r\n"
        try:
            reply = fn(peer, tokens[1:])
        except Exception:
            log.exception("admin command %r failed", line)
            reply = b""
        return reply or b"ERR UNKNOWN_ERROR\r\n"

    def _admin_status(self, peer: Peer, args: List[bytes]) -> bytes:
        parts = [b"%s\t%d\t%d\t%d\n" % (f.name, f.total, f.running, f.workers) for f in self.functions.values()]
        parts.append(b".\n")
        return b"".join(parts)

    def _admin_prioritystatus(self, peer: Peer, args: List[bytes]) -> bytes:
        parts = []
        for f in self.functions.values():
            counts = [sum(1 for j in q if not j.ignore) for q in f.queues]
            counts[NORMAL] += f.delayed
            parts.append(b"%s\t%d\t%d\t%d\t%d\n" % (f.name, counts[0], counts[1], counts[2], f.workers))
        parts.append(b".\n")
        return b"".join(parts)

    def _admin_workers(self, peer: Peer, args: List[bytes]) -> bytes:
        parts = []
        for p in self.peers.values():
            funcs = b"".join(b" " + name for name in p.abilities)
            parts.append(b"%d %s %s :%s\n" % (p.fd, p.ip.encode(), p.client_id, funcs))
        parts.append(b".\n")
        return b"".join(parts)

    def _admin_maxqueue(self, peer: Peer, args: List[bytes]) -> bytes:
        if not args:
            return (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command"
                    b"+maxqueue\r\n")
        sizes = [_leading_int(a) for a in args[1:4]]
        if not sizes:
            sizes = [0, 0, 0]
        elif len(sizes) < 3:
            sizes = [sizes[0]] * 3
        func = self.functions.get(args[0])
        if func is not None:
            func.max_queue = [max(0, s) for s in sizes]
        return b"OK\r\n"

    def _admin_show(self, peer: Peer, args: List[bytes]) -> bytes:
        words = [a.lower() for a in args]
        if words == [b"jobs"]:
            parts = [b"%s\t%d\t%d\t%d\n" % (j.handle, j.retries, j.ignore, j.background and not j.ignore)
                     for j in self.jobs.values()]
        elif words == [b"unique", b"jobs"]:
            parts = [j.unique + b"\n" for j in self.jobs.values()]
        else:
            return b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"
        parts.append(b".\n")
        return b"".join(parts)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: WORK_FAIL to the job's clients, drop it (a
        running job keeps running).  False if the handle is unknown."""
        job = self.jobs.get(handle)
        if job is None or job.ignore:
            return False
        pkt = response(_T_WORK_FAIL, handle)
        for client in job.clients:
            self._send(client, pkt)
        job.ignore = True
        func = job.function
        if job.key is not None and func.uniques.get(job.key) is job:
            del func.uniques[job.key]  # a new submission makes a new job
        if job.unique and self.by_unique.get(job.unique) is job:
            del self.by_unique[job.unique]
        if job.db_id is not None:
            self.queue.delete(job.db_id)
            job.db_id = None
            self._db_dirty = True
        return True

    def _admin_cancel(self, peer: Peer, args: List[bytes]) -> bytes:
        if len(args) < 2 or args[0].lower() != b"job":
            return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+cancel\r\n"
        return b"OK\r\n" if self.cancel(args[1]) else b"ERR UNKNOWN_JOB\r\n"

    def _admin_create(self, peer: Peer, args: List[bytes]) -> bytes:
        if len(args) < 2 or args[0].lower() != b"function":
            return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n"
        self._function(args[1])
        return b"OK\r\n"

    def _admin_drop(self, peer: Peer, args: List[bytes]) -> bytes:
        if len(args) < 2 or args[0].lower() != b"function":
            return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n"
        func = self.functions.get(args[1])
        if func is None:
            return b"ERR function not found\r\n"
        if func.workers or func.total:
            return b"ERR there are still connected workers or executing clients\r\n"
        del self.functions[args[1]]
        return b"OK\r\n"

    def _admin_shutdown(self, peer: Peer, args: List[bytes]) -> bytes:
        graceful = bool(args) and args[0].lower() == b"graceful"
        if args and not graceful:
            return b"ERR UNKNOWN_ARGS Unknown+arguments+to+server+command+shutdown\r\n"
        if self.on_shutdown is None:
            return b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
        self.on_shutdown(graceful)
        return b"OK\r\n"

    def close(self) -> None:
        """Cancel every timer (epoch due times, CAN_DO_TIMEOUT); call when the
        server stops.  Job state is left as it is."""
        _cancel(self._delay_timer)
        self._delay_timer = None
        self._delay_at = None
        for job in self.jobs.values():
            if job.timer is not None:
                _cancel(job.timer)
                job.timer = None

    # ------------------------------------------------------------- queries
    def running_jobs(self) -> int:
        """Number of jobs a worker holds right now."""
        return sum(f.running for f in self.functions.values())
