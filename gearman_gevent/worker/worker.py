"""Worker: grab jobs from one or more gearmand servers and run them in greenlets.

How it works
------------
* A :class:`~gearman_gevent.ConnectionPool` of the worker's own holds one
  connection per server (never shared with a Client).  After every
  (re)connect its ``on_connection`` hook re-registers the worker: one
  SET_CLIENT_ID, one CAN_DO / CAN_DO_TIMEOUT per ability, then an ECHO round
  trip that proves the server has processed them.  A server that goes away
  is retried in the background with backoff and jitter while the other
  servers keep being served.
* Grabbing is driven by events, with no greenlet of its own: each
  registered connection sends GRAB_JOB_UNIQ while it holds a free slot, and
  the reply is handled the moment the connection's reader decodes it::

      free slot -> GRAB_JOB_UNIQ -> JOB_ASSIGN_UNIQ -> hand the job (and its
                                                       slot) to a job greenlet;
                                                       GRAB again if a slot is free
                                 -> NO_JOB -> free the slot, PRE_SLEEP, sleep
                                              until NOOP (or the wake-up
                                              interval), then GRAB again

  A worker with no job running sends PRE_SLEEP right behind its GRABs
  ("grab, then sleep"): gearmand answers the GRABs first and then NOOPs at
  once if more jobs wait, so a worker fed one job at a time saves the
  NO_JOB / PRE_SLEEP round trip after every job.  (Not done when an ability
  has a server timeout: PRE_SLEEP drops gearmand's CAN_DO_TIMEOUT timer.)
  A connection has at most ``grabs_in_flight`` GRABs outstanding (1 by
  default), each backed by a slot, so the worker never holds more jobs than
  ``concurrency``.  Connections that wait for a slot queue for it first come,
  first served, which shares the worker fairly between servers.  When a job
  ends, its slot goes straight to a waiting connection, and if that is the
  job's own connection the result and the next GRAB leave in one write.  A
  NOOP is acted on only while the connection sleeps after PRE_SLEEP (with no
  GRAB sent since); any other NOOP is ignored.  The ``connect`` callback
  runs in a greenlet of its own; ``grab_job`` and ``no_job`` run in whichever
  greenlet caused the event (a reader, a job greenlet, the hub), so they must
  not block.  A GRAB left unanswered for ``network_timeout`` seconds drops
  the connection (a watchdog checks about once a second); it is reconnected
  like any lost one.
* Every job runs in its own greenlet (never in a connection's reader), so a
  job that blocks cooperatively stalls nothing else.  Its WORK_* packets go
  out on the connection it came from; if that socket has died or been
  replaced meanwhile they are dropped with a log line (gearmand has requeued
  the job already).
* :meth:`Worker.stop` stops grabbing, waits for running jobs to finish and
  report, interrupts those still running after its timeout (gearmand
  requeues them when the connection closes), then closes the connections.
  It never sends CANT_DO or RESET_ABILITIES, which would make gearmand
  requeue the running jobs.
"""
from __future__ import annotations

import functools
import logging
import os
import signal as _signal
import socket
import time
import uuid
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

import gevent
import gevent.pool
import gevent.queue
from gevent.event import Event

from ..connection import Connection, _answers, _server_error
from .._validate import check_seconds
from ..connection_pool import ConnectionPool, Servers, parse_servers
from ..exceptions import InvalidArgsError, NetworkError, SocketTimeoutError
from ..packet import DEFAULT_MAX_PACKET_SIZE, NUMS, BytesLike, Packet, pack_request, to_bytes
from ..task import validate_function_name
from .ability import Ability, AbilityFn, AfterFn
from .callbacks import Callbacks
from .job import Job, JobInterrupted, JobStopped, JobTimedOut, coerce_result

__all__ = ["Worker", "DEFAULT_WAKEUP_INTERVAL"]

log = logging.getLogger(__name__)

#: Seconds an idle connection sleeps before it GRABs again without a NOOP
#: (a safety net for lost NOOPs and for SUBMIT_JOB_EPOCH jobs, which gearmand
#: 1.1 announces to no one when they fall due).
DEFAULT_WAKEUP_INTERVAL = 30.0
#: gearmand truncates client ids to 127 bytes.
MAX_CLIENT_ID_LENGTH = 127

_GRAB = pack_request("grab_job_uniq")
_NO_JOB = NUMS["no_job"]
_GRAB_ANSWERS = _answers(_GRAB)
_PRE_SLEEP = pack_request("pre_sleep")
_NOOP = NUMS["noop"]
_ERROR = NUMS["error"]

Callback = Callable[[], Any]


def _default_client_id() -> str:
    host = socket.gethostname().split(".")[0] or "worker"
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in host)
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _ConnState:
    """The grab state of one socket (one generation of a Connection)."""

    __slots__ = ("conn", "generation", "alive", "sleeping", "empty", "grabs",
                 "queued", "timer", "on_reply", "sleep_since")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.generation = conn.generation
        self.alive = True
        #: PRE_SLEEP sent; waiting for a NOOP or the wake-up timer.
        self.sleeping = False
        #: A NO_JOB came back: grab no more until asleep and woken.
        self.empty = False
        #: GRABs sent and not answered yet, and when each was sent.
        self.grabs: Deque[float] = deque()
        #: In the worker's queue of connections waiting for a free slot.
        self.queued = False
        self.timer: Any = None
        self.sleep_since = 0.0
        self.on_reply: Any = None


class Worker:
    """A Gearman worker running up to ``concurrency`` jobs at once.

    :param servers: ``"host[:port]"``, ``"[v6]:port"``, ``(host, port)`` or a
        list of these; ``None`` means ``localhost:4730``.
    :param client_id: the id shown by gearmand's ``workers`` admin command
        (SET_CLIENT_ID); default ``<hostname>-<pid>-<random>``.  At most 127
        bytes, no NUL or whitespace (they corrupt the admin listing).
    :param concurrency: the most jobs run at once, over all servers.
    :param network_timeout: seconds allowed to connect to a server and for it
        to answer a request (registration, GRAB); a server that does not
        answer in time is disconnected and retried.
    :param reconnect_delay: the longest pause between reconnect attempts to a
        server that is down (backoff with jitter starts at 0.1 s).
    :param ssl_context: an :class:`ssl.SSLContext` to speak TLS.
    :param wakeup_interval: seconds an idle connection sleeps (after
        PRE_SLEEP) before it GRABs again even without a NOOP.
    :param max_packet_size: the largest packet accepted from a server.
    :param grabs_in_flight: how many GRAB_JOB_UNIQs one connection may have
        outstanding at once, each backed by a free slot (so the worker never
        holds more jobs than ``concurrency``).  1 (the default) grabs one job
        per round trip; a worker with many slots and short jobs refills them
        much faster with e.g. 8 (gearmand answers pipelined GRABs in order;
        see benchmarks/README.rst for the measured effect).

    Typical use::

        worker = Worker("127.0.0.1:4730", concurrency=10)

        @worker.add_ability("reverse")
        def reverse(data, job):
            job.report_status(1, 1)
            return data[::-1]

        worker.install_signal_handlers()   # SIGTERM/SIGINT -> graceful stop
        worker.work()
    """

    def __init__(
        self,
        servers: Servers = None,
        *,
        client_id: Optional[BytesLike] = None,
        concurrency: int = 1,
        network_timeout: Optional[float] = 10.0,
        reconnect_delay: float = 1.0,
        ssl_context: Any = None,
        wakeup_interval: float = DEFAULT_WAKEUP_INTERVAL,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        grabs_in_flight: int = 1,
    ) -> None:
        self._servers = parse_servers(servers)
        if not isinstance(grabs_in_flight, int) or isinstance(grabs_in_flight, bool) or grabs_in_flight < 1:
            raise InvalidArgsError(f"grabs_in_flight must be an int >= 1, not {grabs_in_flight!r}")
        self.grabs_in_flight = grabs_in_flight
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidArgsError(f"concurrency must be an int >= 1, not {concurrency!r}")
        self.network_timeout = check_seconds(network_timeout, "network_timeout")
        delay = check_seconds(reconnect_delay, "reconnect_delay", False)
        assert delay is not None
        self.reconnect_delay: float = delay
        wakeup = check_seconds(wakeup_interval, "wakeup_interval", False)
        if not wakeup:
            raise InvalidArgsError("wakeup_interval must be positive")
        self.wakeup_interval: float = wakeup
        self.ssl_context = ssl_context
        self.max_packet_size = max_packet_size
        self._concurrency = concurrency
        self._client_id = self._check_client_id(
            _default_client_id() if client_id is None else client_id
        )
        self._abilities: Dict[bytes, Ability] = {}
        self._callbacks = Callbacks()
        self._pool: Optional[ConnectionPool] = None
        self._states: Dict[Connection, _ConnState] = {}
        # slots
        self._free = concurrency
        self._slot_queue: Deque[_ConnState] = deque()
        # jobs
        self._jobs = gevent.pool.Group()  # runner greenlets (see _runner)
        self._job_queue: "gevent.queue.Queue[Job]" = gevent.queue.Queue()
        self._idle_runners = 0
        self._active: Dict[Job, None] = {}
        self._idle = Event()
        self._idle.set()
        self._jobs_done = 0
        # run state
        self._running = False
        self._stopping = False
        self._work_greenlet: Optional[gevent.Greenlet] = None
        self._stop_requested = Event()
        self._stop_changed = Event()
        self._stopped = Event()
        self._stopped.set()
        self._stop_deadline: Optional[float] = None
        self._max_jobs: Optional[int] = None
        self._run_done = 0
        self._assigned = 0
        self._grabs_pending = 0
        self._grabs_done = Event()
        self._watchdog: Optional[gevent.Greenlet] = None
        self._sleepy_ok = True

    def __repr__(self) -> str:
        state = "running" if self._running else "idle"
        return f"<Worker {self.servers} {self._client_id.decode('utf-8', 'replace')} {state}>"

    @staticmethod
    def _check_client_id(client_id: BytesLike) -> bytes:
        raw = to_bytes(client_id, "client_id")
        if not raw:
            raise InvalidArgsError("client_id must not be empty")
        if len(raw) > MAX_CLIENT_ID_LENGTH:
            raise InvalidArgsError(f"client_id is {len(raw)} bytes; gearmand keeps {MAX_CLIENT_ID_LENGTH}")
        if b"\0" in raw or any(c in raw for c in b" \t\r\n\v\f"):
            raise InvalidArgsError(f"client_id {raw!r} must not contain NUL or whitespace")
        return raw

    # ------------------------------------------------------------ properties
    @property
    def client_id(self) -> str:
        """The id sent with SET_CLIENT_ID (shown by gearmand's ``workers``)."""
        return self._client_id.decode("utf-8", "surrogateescape")

    @property
    def concurrency(self) -> int:
        """The most jobs this worker runs at once."""
        return self._concurrency

    @property
    def abilities(self) -> Dict[str, Ability]:
        """A copy of ``{function name: Ability}`` for the registered functions."""
        return {name.decode("utf-8", "surrogateescape"): a for name, a in self._abilities.items()}

    @property
    def servers(self) -> List[str]:
        """``host:port`` of every server."""
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self._servers]

    @property
    def running(self) -> bool:
        """True between :meth:`work`/:meth:`start` and the end of the stop."""
        return self._running

    @property
    def running_jobs(self) -> int:
        """Number of jobs running now."""
        return len(self._active)

    @property
    def jobs_done(self) -> int:
        """Number of jobs finished (any outcome) since this Worker was made."""
        return self._jobs_done

    @property
    def connections(self) -> List[Connection]:
        """The worker's connections that are registered and up right now."""
        return [st.conn for st in self._states.values() if st.alive and st.conn.connected]

    # ------------------------------------------------------------- abilities
    def add_ability(
        self,
        func: BytesLike,
        fn: Optional[AbilityFn] = None,
        timeout: Optional[float] = None,
        *,
        server_timeout: Optional[float] = None,
    ) -> Any:
        """Register ``fn(data: bytes, job: Job)`` for function *func*.

        Without *fn* this returns a decorator::

            @worker.add_ability("resize", timeout=30)
            def resize(data, job): ...

        What the ability does decides the job's outcome: returning bytes or
        str (or any object, sent as ``str(obj)``) sends WORK_COMPLETE;
        returning ``None`` or ``False`` sends WORK_FAIL; raising sends
        WORK_EXCEPTION with the exception's text (and nothing after it:
        gearmand 1.1 ends the job there and sends WORK_FAIL to clients that
        did not ask for exceptions).  The worker survives every exception,
        ``BaseException`` subclasses such as an uncaught ``gevent.Timeout``
        included; only ``SystemExit`` and ``KeyboardInterrupt`` propagate
        (nothing is sent; gearmand requeues the job when the process's
        connections close).

        *timeout* (seconds): a job running longer is abandoned -- its greenlet
        is interrupted (with :class:`~gearman_gevent.worker.job.JobTimedOut`,
        a ``BaseException``) and WORK_FAIL is sent, so the client sees a
        failure after about *timeout* s.  The server is also told
        CAN_DO_TIMEOUT as a backstop for a worker that stops responding:
        *server_timeout* seconds, default ``timeout + 1`` (sent in
        milliseconds, at least 1000); ``server_timeout=0`` sends plain CAN_DO.
        gearmand's caveats: on expiry it *requeues* the job (it runs again
        elsewhere; nothing is sent to the client), its timer is one per
        connection so with ``concurrency > 1`` it covers only some jobs, and
        before gearmand 2.0 a timer on a reused connection may fire for a
        stale job and hang the server (gearmand bug #301).  See
        :mod:`gearman_gevent.worker.ability`.

        Registering a function again replaces its callable; if its timeouts
        changed the server gets CANT_DO and the new CAN_DO(_TIMEOUT), which
        makes gearmand requeue running jobs of that function on this worker.

        While the worker runs, the function is announced to every connected
        server before this returns (blocking the calling greenlet for one
        round trip, to all servers at once; a server that does not answer
        costs at most ``network_timeout``).  Called in a connection's reader
        (a callback), it raises
        :class:`~gearman_gevent.exceptions.DeadlockError`.  Returns *fn*.
        """
        name = validate_function_name(func)
        if fn is None:
            def decorator(f: AbilityFn) -> AbilityFn:
                self.add_ability(func, f, timeout, server_timeout=server_timeout)
                return f
            return decorator
        ability = Ability(name, fn, timeout, server_timeout)
        old = self._abilities.get(name)
        if old is not None:
            ability.after = old.after
        self._abilities[name] = ability
        self._update_sleepy()
        if old is None:
            self._announce([ability.registration()])
        elif old.registration() != ability.registration():
            self._announce([pack_request("cant_do", name), ability.registration()])
        return fn

    def after_ability(self, func: BytesLike, fn: Optional[AfterFn] = None) -> Any:
        """Run ``fn(result, data)`` after a job of *func* succeeded.

        It runs in the job's greenlet after WORK_COMPLETE was sent (only for
        jobs that returned a result and whose WORK_COMPLETE went out);
        *result* is what the ability returned, *data* the job's payload.  An
        exception in it is logged.  The function must already be registered
        (:class:`InvalidArgsError` otherwise).  Usable as a decorator.
        """
        name = validate_function_name(func)
        if name not in self._abilities:
            raise InvalidArgsError(f"no ability {name!r} registered")
        if fn is None:
            def decorator(f: AfterFn) -> AfterFn:
                self.after_ability(func, f)
                return f
            return decorator
        if not callable(fn):
            raise InvalidArgsError(f"after_ability needs a callable, not {type(fn).__name__}")
        self._abilities[name].after = fn
        return fn

    def remove_ability(self, func: BytesLike) -> None:
        """Unregister *func* (CANT_DO on every connected server).

        Returns once every connected server has processed the CANT_DO.
        Caveat: gearmand requeues jobs of *func* that this worker is running
        at that moment (their results are then refused).  A job that was
        already on its way is answered with WORK_FAIL.  Unknown names are
        ignored.
        """
        name = validate_function_name(func)
        if self._abilities.pop(name, None) is not None:
            self._update_sleepy()
            self._announce([pack_request("cant_do", name)])

    def _announce(self, packets: List[bytes]) -> None:
        """Send *packets* on every registered connection, then wait for an
        ECHO round trip so each server has processed them.  The servers are
        updated at once, so servers that stopped answering cost
        ``network_timeout`` in all, not each."""
        data = b"".join(packets)
        states = [st for st in self._states.values() if st.alive]
        for st in states:
            st.conn.check_not_reader()  # it would wait on its own reader

        def update(st: _ConnState) -> None:
            try:
                st.conn.send_update(data)
                st.conn.send_request(pack_request("echo_req", b"abilities"), self.network_timeout)
            except (NetworkError, SocketTimeoutError) as exc:
                # The reconnect re-registers from the current ability set.
                log.warning("updating abilities on %s failed: %s", st.conn.server, exc)

        if len(states) == 1:
            update(states[0])
        elif states:
            gevent.joinall([gevent.spawn(update, st) for st in states])

    # ------------------------------------------------------------- callbacks
    def on_connect(self, fn: Callback) -> Callback:
        """Call ``fn()`` each time a server connection is (re)registered."""
        return self._callbacks.add("connect", fn)

    def on_grab_job(self, fn: Callback) -> Callback:
        """Call ``fn()`` before each GRAB_JOB_UNIQ is sent."""
        return self._callbacks.add("grab_job", fn)

    def on_no_job(self, fn: Callback) -> Callback:
        """Call ``fn()`` when a server answers NO_JOB."""
        return self._callbacks.add("no_job", fn)

    def on_job_assign(self, fn: Callback) -> Callback:
        """Call ``fn()`` when a job arrives (in the job's greenlet)."""
        return self._callbacks.add("job_assign", fn)

    def on_work_complete(self, fn: Callback) -> Callback:
        """Call ``fn()`` after a WORK_COMPLETE was sent."""
        return self._callbacks.add("work_complete", fn)

    def on_work_fail(self, fn: Callback) -> Callback:
        """Call ``fn()`` after a WORK_FAIL was sent."""
        return self._callbacks.add("work_fail", fn)

    def on_work_exception(self, fn: Callback) -> Callback:
        """Call ``fn()`` after a WORK_EXCEPTION was sent."""
        return self._callbacks.add("work_exception", fn)

    # ----------------------------------------------------------- run / stop
    def work(self, max_jobs: Optional[int] = None) -> None:
        """Run the worker in the calling greenlet until :meth:`stop` is called
        or *max_jobs* jobs have finished (any outcome).

        Connects to every server (those that are down are retried in the
        background), registers, grabs and runs jobs.  Returns after the
        worker has stopped and closed its connections.  Raises
        :class:`RuntimeError` if the worker is already running.
        """
        self._begin(max_jobs)
        self._work_greenlet = gevent.getcurrent()
        self._run()

    def start(self, max_jobs: Optional[int] = None) -> gevent.Greenlet:
        """Run :meth:`work` in a new greenlet and return it (already marked
        running, so a :meth:`stop` right after this call is not lost)."""
        self._begin(max_jobs)
        glet = gevent.Greenlet(self._run)
        self._work_greenlet = glet
        glet.start()
        return glet

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop gracefully: grab no more jobs, let running jobs finish and
        report for up to *timeout* seconds (None = as long as they take),
        then interrupt those still running (with
        :class:`~gearman_gevent.worker.job.JobStopped`; nothing is sent for
        them and gearmand requeues them when the connection closes), and
        close the connections.  CANT_DO/RESET_ABILITIES are never sent.

        Safe from any greenlet.  Called from outside the worker it returns
        once the worker has stopped; called from one of the worker's own
        greenlets (a job, a callback) or from the hub, it only requests the
        stop and returns at once.  Calling it again with a shorter timeout
        shortens the wait.  Does nothing if the worker is not running.
        """
        timeout = check_seconds(timeout, "timeout")
        if not self._running:
            return
        self._request_stop(timeout)
        current = gevent.getcurrent()
        if current is gevent.get_hub() or current is self._work_greenlet or self._owns(current):
            return
        self._stopped.wait()

    def install_signal_handlers(
        self,
        signals: Iterable[int] = (_signal.SIGTERM, _signal.SIGINT),
        timeout: Optional[float] = None,
    ) -> Callable[[], None]:
        """Make *signals* stop the worker gracefully (``stop(timeout)``); a
        second signal stops it at once (``stop(0)``).

        Uses :func:`gevent.signal_handler`, so call it from the main thread.
        Returns a function that removes the handlers and restores the
        previous ones.
        """
        signals = list(signals)
        previous = {signum: _signal.getsignal(signum) for signum in signals}

        def handle(signum: int) -> None:
            if self._stop_requested.is_set():
                log.warning("signal %d again: stopping now", signum)
                self.stop(0)
            else:
                log.info("signal %d: stopping gracefully", signum)
                self.stop(timeout)

        handlers = [gevent.signal_handler(signum, handle, signum) for signum in signals]

        def uninstall() -> None:
            for handler in handlers:
                handler.cancel()
            for signum, prev in previous.items():
                if prev is not None:
                    _signal.signal(signum, prev)

        return uninstall

    def _owns(self, glet: Any) -> bool:
        """True for the greenlets that run the worker's own code and user
        callbacks: job greenlets and the connections' readers."""
        if glet in self._jobs:
            return True
        return any(st.conn._reader is glet for st in self._states.values())

    def _begin(self, max_jobs: Optional[int]) -> None:
        if self._running:
            raise RuntimeError("the worker is already running")
        if max_jobs is not None and (
            not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1
        ):
            raise InvalidArgsError(f"max_jobs must be an int >= 1 or None, not {max_jobs!r}")
        self._running = True
        self._stopping = False
        self._stop_requested = Event()
        self._stop_changed = Event()
        self._stopped = Event()
        self._stop_deadline = None
        self._max_jobs = max_jobs
        self._run_done = 0
        self._assigned = 0
        self._grabs_pending = 0
        self._grabs_done = Event()
        self._free = self._concurrency
        self._slot_queue = deque()
        self._states = {}
        pool = ConnectionPool(
            self._servers,
            reconnect_delay=self.reconnect_delay,
            connect_timeout=self.network_timeout,
            ssl_context=self.ssl_context,
            max_packet_size=self.max_packet_size,
        )
        for conn in pool.connections:
            conn.on_disconnect(self._on_disconnect)
        pool.on_connection(self._setup)
        self._pool = pool

    def _run(self) -> None:
        pool = self._pool
        assert pool is not None
        try:
            if not self._stop_requested.is_set():
                if self.network_timeout is not None:
                    self._watchdog = gevent.spawn(self._watch_grabs, self.network_timeout)
                # One greenlet per server: a server that accepts but never
                # answers must not hold up the others for network_timeout.
                connecting = [gevent.spawn(pool._try, conn) for conn in pool.connections]
                reporter = gevent.spawn(self._report_first_connects, pool, connecting)
                try:
                    self._stop_requested.wait()
                finally:
                    gevent.killall(connecting + [reporter])
        except BaseException:
            # Killed or failed: do not wait for jobs.
            self._request_stop(0)
            raise
        finally:
            self._shutdown()

    @staticmethod
    def _report_first_connects(pool: ConnectionPool, connecting: List[gevent.Greenlet]) -> None:
        gevent.joinall(connecting)
        if not any(g.value for g in connecting):
            log.warning("no job server reachable yet (%s); retrying in the background",
                        ", ".join(pool.servers))

    def _request_stop(self, timeout: Optional[float]) -> None:
        if timeout is not None:
            deadline = time.monotonic() + timeout
            if self._stop_deadline is None or deadline < self._stop_deadline:
                self._stop_deadline = deadline
        if not self._stopping:
            self._stopping = True
            log.info("worker %s stopping", self.client_id)
            for st in list(self._states.values()):
                self._stop_timer(st)  # sleeping connections stay asleep
        self._stop_requested.set()
        self._stop_changed.set()

    def _shutdown(self) -> None:
        self._stopping = True
        try:
            # GRABs still outstanding are answered at once by gearmand; a job
            # one of them brings is run.  A GRAB still unanswered after this
            # is abandoned: if it brings a job, gearmand requeues it when the
            # connection closes.
            join_timeout = self.network_timeout if self.network_timeout is not None else 10.0
            if self._stop_deadline is not None:
                join_timeout = min(join_timeout, max(0.1, self._stop_deadline - time.monotonic()))
            if self._grabs_pending > 0:
                self._grabs_done.clear()
                self._grabs_done.wait(join_timeout)
            self._wait_for_jobs()
            if self._active:
                log.warning("stop timeout: interrupting %d running job(s); gearmand requeues them",
                            len(self._active))
                for job in list(self._active):
                    job._interrupt(JobStopped("the worker is stopping"))
                self._idle.wait(1.0)
        finally:
            if self._watchdog is not None:
                self._watchdog.kill(block=False)
                self._watchdog = None
            self._jobs.kill(block=False)  # idle runners (running jobs are done or abandoned)
            self._idle_runners = 0
            self._job_queue = gevent.queue.Queue()
            for st in list(self._states.values()):
                self._kill_state(st)
            if self._pool is not None:
                self._pool.close()
            self._states = {}
            self._slot_queue.clear()
            self._running = False
            self._stopped.set()
            log.info("worker %s stopped", self.client_id)

    def _wait_for_jobs(self) -> None:
        while self._active:
            deadline = self._stop_deadline
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._stop_changed.clear()
            gevent.wait([self._idle, self._stop_changed], timeout=remaining, count=1)

    # --------------------------------------------------------- connections
    def _setup(self, conn: Connection) -> None:
        """Pool hook, after every (re)connect: register, then start grabbing."""
        conn.on_packet = self._on_packet
        packets = [pack_request("set_client_id", self._client_id)]
        packets.extend(a.registration() for a in self._abilities.values())
        # Build the registration and publish the state with no switch in
        # between, so add_ability/remove_ability see exactly one of them.
        st = _ConnState(conn)
        st.on_reply = functools.partial(self._on_grab_reply, st)
        old = self._states.get(conn)
        if old is not None:
            self._kill_state(old)
        self._states[conn] = st
        conn.send_update(b"".join(packets))
        conn.send_request(pack_request("echo_req", b"registered"), self.network_timeout)
        log.info("registered with %s as %s (%d abilities)", conn.server, self.client_id,
                 len(packets) - 1)
        if self._stopping or not st.alive:
            return
        # The callback runs in a job greenlet of its own (it may block, and
        # this pool greenlet must not be killed by a stop() it calls).
        if self._callbacks.has("connect"):
            self._jobs.spawn(self._callbacks.fire, "connect")
        self._pump(st)

    def _kill_state(self, st: _ConnState) -> None:
        st.alive = False
        st.sleeping = False
        self._stop_timer(st)
        if st.queued:
            st.queued = False
            try:
                self._slot_queue.remove(st)
            except ValueError:  # pragma: no cover
                pass

    def _on_disconnect(self, conn: Connection, exc: BaseException) -> None:
        st = self._states.get(conn)
        if st is not None and st.generation == conn.generation:
            self._kill_state(st)

    def _on_packet(self, conn: Connection, pkt: Packet) -> None:
        """Unsolicited packets (in the reader greenlet)."""
        if pkt.type == _NOOP:
            st = self._states.get(conn)
            if st is not None and st.sleeping and st.alive and st.generation == conn.generation:
                self._wake(st)
            else:
                log.debug("%s: NOOP while not sleeping ignored", conn.server)
        elif pkt.type == _ERROR:
            code = pkt.args[0].decode("utf-8", "replace")
            text = pkt.args[1].decode("utf-8", "replace")
            log.warning("%s: ERROR %s: %s (a result for a job the server no longer "
                        "gives this connection?)", conn.server, code, text)
        else:
            log.debug("%s: unsolicited %s ignored", conn.server, pkt.name)

    # ------------------------------------------------------------- grabbing
    # Everything below runs without blocking, in whichever greenlet noticed
    # the event: a connection's reader (a GRAB reply, a NOOP), a job
    # greenlet (its slot freed), the hub (the wake-up timer), the pool's
    # greenlet (a connection registered).
    def _can_grab(self) -> bool:
        if self._free <= 0:
            return False
        max_jobs = self._max_jobs
        return max_jobs is None or self._assigned + self._grabs_pending < max_jobs

    def _pump(self, st: _ConnState, served: bool = False) -> None:
        """Send as many GRABs on *st* as free slots and ``grabs_in_flight``
        allow; queue *st* for a slot if it wants more.  *served*: *st* was
        just taken from the head of the slot queue."""
        if self._stopping or not st.alive or st.sleeping or st.empty:
            return
        want = self.grabs_in_flight - len(st.grabs)
        if want <= 0:
            return
        queue = self._slot_queue
        if queue and not served:
            self._enqueue(st)  # others were waiting first
            return
        limit = 1 if queue else want  # one at a time while others wait
        n = 0
        while n < limit and self._can_grab():
            self._free -= 1
            self._grabs_pending += 1
            n += 1
        if n < want:
            self._enqueue(st)
        if n:
            self._send_grabs(st, n)

    def _enqueue(self, st: _ConnState) -> None:
        if not st.queued:
            st.queued = True
            self._slot_queue.append(st)

    def _serve_queue(self) -> None:
        """Give free slots to the connections waiting for one, in order."""
        queue = self._slot_queue
        while queue and self._can_grab():
            st = queue.popleft()
            st.queued = False
            self._pump(st, served=True)

    def _release_slot(self) -> None:
        self._free += 1
        if self._slot_queue:
            self._serve_queue()

    def _send_grabs(self, st: _ConnState, n: int) -> None:
        """Send *n* GRAB_JOB_UNIQs on *st*; a slot and ``_grabs_pending``
        were taken for each."""
        callbacks = self._callbacks
        if callbacks.has("grab_job"):
            for _ in range(n):
                callbacks.fire("grab_job")
        conn = st.conn
        if not st.alive or not conn.connected or conn.generation != st.generation:
            # lost meanwhile: no waiter was registered; give the slots back
            self._kill_state(st)
            self._grabs_pending -= n
            for _ in range(n):
                self._release_slot()
            self._signal_grabs_done()
            return
        st.grabs.extend([time.monotonic()] * n)
        data = _GRAB * n
        if not self._active and self._sleepy_ok:
            # An idle worker grabs "and then sleeps": gearmand answers the
            # GRABs, then NOOPs at once if more jobs wait.  When jobs come
            # one at a time, this saves the NO_JOB / PRE_SLEEP round trip
            # after each.  (With jobs running, GRABs are plain: results and
            # GRABs then keep the worker busy without extra packets.)
            data += _PRE_SLEEP
            self._start_sleeping(st)
        try:
            conn._send_prepared(data, [(st.on_reply, _GRAB_ANSWERS)] * n)
        except NetworkError:
            pass  # the write failed: the connection failed the GRABs' waiters

    def _on_grab_reply(self, st: _ConnState, pkt: Optional[Packet], exc: Optional[BaseException]) -> None:
        """The answer to one GRAB (in the reader), or *exc* if the
        connection was lost first."""
        st.grabs.popleft()
        self._grabs_pending -= 1
        if exc is not None or pkt is None:
            self._kill_state(st)
            self._release_slot()
        elif pkt.type == _NO_JOB:
            if not st.sleeping:  # (else a PRE_SLEEP went with this GRAB)
                st.empty = True
            self._release_slot()
            self._callbacks.fire("no_job")
        elif pkt.type == _ERROR:
            log.error("%s refused GRAB_JOB_UNIQ: %s; reconnecting", st.conn.server,
                      _server_error(pkt, st.conn.server))
            self._release_slot()
            self._drop(st)
        else:  # JOB_ASSIGN_UNIQ (the connection checks reply types)
            self._assigned += 1
            self._start_job(self._make_job(st, pkt.args))
            self._pump(st)
        if not st.grabs:
            if st.empty and st.alive:
                self._sleep(st)
            self._signal_grabs_done()

    def _signal_grabs_done(self) -> None:
        if self._stopping and self._grabs_pending <= 0:
            self._grabs_done.set()

    def _drop(self, st: _ConnState) -> None:
        self._kill_state(st)
        if st.conn.generation == st.generation:
            st.conn.close()

    def _sleep(self, st: _ConnState) -> None:
        """PRE_SLEEP, then wait for a NOOP (or the wake-up interval)."""
        st.empty = False
        if self._stopping:
            return
        try:
            st.conn.send_update(_PRE_SLEEP)
        except NetworkError:
            return  # lost: the state is being killed
        self._start_sleeping(st)

    def _start_sleeping(self, st: _ConnState) -> None:
        st.sleeping = True
        st.sleep_since = time.monotonic()
        # The wake-up timer is armed lazily: a connection that sleeps and
        # wakes once per job keeps one timer running rather than making one
        # per sleep; when it fires it checks how long the sleep has lasted.
        if st.timer is None:
            self._arm_timer(st, self.wakeup_interval)

    def _arm_timer(self, st: _ConnState, seconds: float) -> None:
        # A fresh libev timer each time: one restarted after it fired
        # fires again at once.
        timer = st.timer = gevent.get_hub().loop.timer(seconds)
        timer.start(self._wake_up, st)

    def _wake_up(self, st: _ConnState) -> None:
        """The wake-up timer fired (in the hub)."""
        self._stop_timer(st)
        if not (st.sleeping and st.alive) or self._stopping:
            return  # awake: the next sleep arms a new timer
        remaining = st.sleep_since + self.wakeup_interval - time.monotonic()
        if remaining > 0.001:
            self._arm_timer(st, remaining)  # this sleep began after the timer
            return
        log.debug("%s: no NOOP for %s s, grabbing anyway", st.conn.server, self.wakeup_interval)
        self._wake(st)

    def _wake(self, st: _ConnState) -> None:
        st.sleeping = False
        self._pump(st)

    def _update_sleepy(self) -> None:
        # PRE_SLEEP makes gearmand drop its CAN_DO_TIMEOUT timer for the
        # connection: with server timeouts in use, PRE_SLEEP only after NO_JOB.
        self._sleepy_ok = not any(a.server_timeout for a in self._abilities.values())

    @staticmethod
    def _stop_timer(st: _ConnState) -> None:
        timer, st.timer = st.timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _watch_grabs(self, timeout: float) -> None:
        """Drop connections whose oldest GRAB is unanswered for *timeout* s."""
        interval = min(1.0, max(0.05, timeout / 4))
        while True:
            gevent.sleep(interval)
            now = time.monotonic()
            for st in list(self._states.values()):
                if st.alive and st.grabs and now - st.grabs[0] > timeout:
                    log.warning("%s did not answer GRAB_JOB_UNIQ within %s s; reconnecting",
                                st.conn.server, timeout)
                    self._drop(st)

    @staticmethod
    def _make_job(st: _ConnState, args: Tuple[bytes, ...]) -> Job:
        handle, func, unique, payload = args  # JOB_ASSIGN_UNIQ
        return Job(st.conn, handle, func, unique, payload, st.generation)

    # ------------------------------------------------------------------ jobs
    def _start_job(self, job: Job) -> None:
        self._active[job] = None
        self._idle.clear()
        if self._idle_runners:
            self._idle_runners -= 1  # that runner is waiting in get(): it takes this job
            self._job_queue.put(job)
        else:
            self._jobs.spawn(self._runner, job)

    def _runner(self, job: Job) -> None:
        """Run *job*, then wait for the next one: a job greenlet is reused
        rather than spawned per job (a new greenlet costs ~12 us on Python
        3.11: it maps and unmaps a frame stack).  At most ``concurrency``
        runners exist; idle ones are killed when the worker stops."""
        me = gevent.getcurrent()
        while True:
            job._greenlet = me
            self._run_job(job)
            if self._stopping:
                return
            self._idle_runners += 1
            job = self._job_queue.get()

    def _run_job(self, job: Job) -> None:
        try:
            self._callbacks.fire("job_assign")
            ability = self._abilities.get(job.function)
            if ability is None:
                log.warning("job %r for unregistered function %r: sending WORK_FAIL",
                            job.handle, job.function)
                if self._send_result(job, "work_fail"):
                    self._callbacks.fire("work_fail")
                return
            self._execute(job, ability)
        except Exception:  # pragma: no cover - a bug in the worker itself
            log.exception("running %r failed", job)
        finally:
            self._active.pop(job, None)
            self._jobs_done += 1
            self._run_done += 1
            if not self._active:
                self._idle.set()
            if not job._slot_released:
                job._slot_released = True
                self._release_slot()
            if self._max_jobs is not None and self._run_done >= self._max_jobs:
                self._request_stop(None)

    def _send_result(self, job: Job, name: str, *args: BytesLike, release: bool = True) -> bool:
        """Send the job's final packet.  With *release*, its slot is freed
        under a cork, so a GRAB that the free slot sends on the same
        connection leaves in the same write: one syscall and one server
        wake-up per job instead of two (and with other jobs running, their
        results too).  The server sees the result before the GRAB."""
        if not release or job._slot_released:
            return job._send(name, *args)
        job._slot_released = True
        conn = job.connection
        token = conn.cork()
        try:
            sent = job._send(name, *args)
            self._release_slot()
        finally:
            try:
                # Other jobs finishing in this same turn of the loop (many
                # slots, short jobs) add their results to this write.
                conn.uncork(token, linger=len(self._active) > 1)
            except NetworkError as exc:
                log.warning("dropping %s for job %r: %s", name.upper(), job.handle, exc)
                sent = False
        return sent

    def _execute(self, job: Job, ability: Ability) -> None:
        timer = None
        if ability.timeout is not None:
            timer = gevent.get_hub().loop.timer(ability.timeout)
            timer.start(job._deliver, JobTimedOut(f"timed out after {ability.timeout} s"))
        result: Any = None
        error: Optional[BaseException] = None
        job._interruptible = True
        try:
            result = ability.fn(job.data, job)
        except JobInterrupted:
            pass
        except gevent.GreenletExit:
            job._interrupted = job._interrupted or JobStopped("killed")
        except (KeyboardInterrupt, SystemExit):
            raise  # the process is going down; gearmand requeues the job
        except BaseException as exc:  # Exception, and e.g. an uncaught gevent.Timeout
            error = exc
        finally:
            job._interruptible = False
            if timer is not None:
                timer.stop()
                timer.close()

        interrupted = job._interrupted
        if isinstance(interrupted, JobTimedOut):
            log.warning("job %r (%r) %s: sending WORK_FAIL", job.handle, job.function, interrupted)
            if self._send_result(job, "work_fail"):
                self._callbacks.fire("work_fail")
            return
        if interrupted is not None:
            log.warning("job %r (%r) abandoned: %s", job.handle, job.function, interrupted)
            return
        if error is None:
            try:
                payload = coerce_result(result)
            except Exception as exc:
                error = exc
        if error is not None:
            log.error("job %r (%r) raised", job.handle, job.function, exc_info=error)
            text = str(error) or type(error).__name__
            if self._send_result(job, "work_exception", text):
                self._callbacks.fire("work_exception")
            return
        after = ability.after
        if payload is None:
            if self._send_result(job, "work_fail"):
                self._callbacks.fire("work_fail")
            return
        if not self._send_result(job, "work_complete", payload, release=after is None):
            return
        if after is not None:
            job._interruptible = True  # a forced stop may still cut it short
            try:
                after(result, job.data)
            except JobInterrupted:
                pass
            except (gevent.GreenletExit, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # Exception, and e.g. an uncaught gevent.Timeout
                log.exception("after_ability for %r raised", job.function)
            finally:
                job._interruptible = False
        self._callbacks.fire("work_complete")
