"""Connection: one gevent socket to one Gearman server.

Data flows one way through a Connection:

* **Writes** come from any number of greenlets.  Each call hands over whole
  packets; they are written in call order, never interleaved.  While one
  greenlet is blocked writing, packets queued by others are coalesced into
  the next single write.
* **Replies** (JOB_CREATED, ECHO_RES, STATUS_RES, OPTION_RES, NO_JOB,
  JOB_ASSIGN*, and ERROR in their place) come back in request order; a FIFO
  of waiters matches them.  A waiter whose caller timed out keeps its slot,
  so a late reply is consumed instead of being handed to the next request.
* **WORK_*** packets are routed by job handle to the tasks bound to it.  The
  handle is bound inside the reader, the moment JOB_CREATED is decoded.
* Everything else (NOOP, ``ERROR JOB_NOT_FOUND``, which answers a late result
  rather than a request) goes to :attr:`Connection.on_packet`.

One reader greenlet per socket decodes and dispatches; whatever the handlers
of one read's packets send leaves in one write.  Writes made from the reader
itself or from the hub (a reply waiter that sends the next request, a timer)
never block it: they are tried without waiting, and whatever the socket does
not take at once is finished by a short-lived greenlet.  When the socket
dies, every FIFO waiter and every task bound to it ends at once with a
:class:`~gearman_gevent.exceptions.NetworkError`.  A Connection can be
connected again afterwards; :attr:`generation` counts the sockets it had.
"""
from __future__ import annotations

import logging
import socket as _stdlib_socket
from collections import deque
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Tuple

import gevent
import gevent.lock
import gevent.socket
import gevent.ssl
from gevent.event import AsyncResult

from .exceptions import (
    DeadlockError,
    InvalidArgsError,
    JobQueueError,
    NetworkError,
    ProtocolError,
    ServerError,
    SocketTimeoutError,
)
from .packet import COMMANDS, DEFAULT_MAX_PACKET_SIZE, NUMS, RES, Decoder, Packet, pack_request

__all__ = ["Connection", "Reply", "format_server", "open_socket"]

log = logging.getLogger(__name__)

_RECV_SIZE = 256 * 1024

_JOB_CREATED = NUMS["job_created"]
_ERROR = NUMS["error"]
_NOOP = NUMS["noop"]
#: Packets routed by handle to tasks.
_ROUTED = frozenset(
    NUMS[n]
    for n in ("work_status", "work_complete", "work_fail", "work_exception", "work_data", "work_warning")
)
_TERMINAL = frozenset(NUMS[n] for n in ("work_complete", "work_fail", "work_exception"))
#: Packets that answer a request, in order.
_REPLIES = frozenset(
    NUMS[n]
    for n in (
        "job_created", "echo_res", "status_res", "status_res_unique", "option_res",
        "no_job", "job_assign", "job_assign_uniq", "job_assign_all",
    )
)

Waiter = Callable[[Optional[Packet], Optional[BaseException]], None]

#: Request type -> the reply types that may answer it (ERROR always may).
_ANSWERS: Dict[int, FrozenSet[int]] = {}
for _requests, _replies in (
    (("submit_job", "submit_job_bg", "submit_job_high", "submit_job_high_bg",
      "submit_job_low", "submit_job_low_bg", "submit_job_sched", "submit_job_epoch",
      "submit_reduce_job", "submit_reduce_job_background"), ("job_created",)),
    (("echo_req",), ("echo_res",)),
    (("get_status",), ("status_res",)),
    (("get_status_unique",), ("status_res_unique",)),
    (("option_req",), ("option_res",)),
    (("grab_job",), ("no_job", "job_assign")),
    (("grab_job_uniq",), ("no_job", "job_assign_uniq")),
    (("grab_job_all",), ("no_job", "job_assign_uniq", "job_assign_all")),
):
    for _name in _requests:
        _ANSWERS[NUMS[_name]] = frozenset(NUMS[r] for r in _replies)


def _answers(packet: bytes) -> Optional[FrozenSet[int]]:
    """The reply types that may answer the request *packet* (None: any)."""
    return _ANSWERS.get(int.from_bytes(packet[4:8], "big")) if len(packet) >= 12 else None


def format_server(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Reply(Tuple[str, bytes]):
    """``(type_name, data)`` of a reply packet; ``args`` splits the data."""

    __slots__ = ()
    packet: Packet

    def __new__(cls, packet: Packet) -> "Reply":
        self = tuple.__new__(cls, (packet.name, packet.data))
        return self  # type: ignore[return-value]

    @property
    def type_name(self) -> str:
        """The reply's gearman-ruby type name (``"echo_res"``...)."""
        return self[0]

    @property
    def data(self) -> bytes:
        """The reply's body: its arguments joined by NUL bytes."""
        return self[1]


def _set_keepalive(sock: Any) -> None:
    sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        opt = getattr(_stdlib_socket, name, None)
        if opt is not None:
            try:
                sock.setsockopt(_stdlib_socket.IPPROTO_TCP, opt, value)
            except OSError:  # pragma: no cover - platform specific
                pass


def open_socket(
    host: str, port: int, *, timeout: Optional[float], ssl_context: Any = None, keepalive: bool = False
) -> Any:
    """A connected gevent socket to ``host:port`` with TCP_NODELAY (and TCP
    keepalive if asked), TLS-wrapped with *ssl_context* if given, in blocking
    mode.  *timeout* bounds the connect and the TLS handshake.

    Raises :class:`NetworkError` naming the server on any failure.
    """
    server = format_server(host, port)
    try:
        sock = gevent.socket.create_connection((host, port), timeout=timeout)
    except _stdlib_socket.timeout:
        raise NetworkError(f"connecting to {server} timed out after {timeout}s", server) from None
    except OSError as exc:
        raise NetworkError(f"cannot connect to {server}: {exc}", server) from exc
    try:
        sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        if keepalive:
            _set_keepalive(sock)
        if ssl_context is not None:
            sock = gevent.ssl.SSLSocket(
                sock=sock,
                server_side=False,
                server_hostname=host if ssl_context.check_hostname else None,
                _context=ssl_context,
            )
        sock.settimeout(None)
    except gevent.ssl.SSLError as exc:
        sock.close()
        raise NetworkError(f"TLS handshake with {server} failed: {exc}", server) from exc
    except _stdlib_socket.timeout:
        sock.close()
        raise NetworkError(f"TLS handshake with {server} timed out after {timeout}s", server) from None
    except OSError as exc:
        sock.close()
        raise NetworkError(f"cannot set up connection to {server}: {exc}", server) from exc
    return sock


class Connection:
    """One connection to one Gearman server.

    :param host: server host name or address.
    :param port: server port (4730 by default).
    :param connect_timeout: seconds allowed for TCP connect and TLS handshake.
    :param ssl_context: an :class:`ssl.SSLContext` to speak TLS, or None.
    :param max_packet_size: the largest packet body accepted from the server;
        a larger length field closes the connection with a ProtocolError.

    Connecting is explicit (:meth:`connect`) or done by the pool.  All methods
    block only the calling greenlet.
    """

    def __init__(
        self,
        host: str,
        port: int = 4730,
        *,
        connect_timeout: Optional[float] = 5.0,
        ssl_context: Any = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise InvalidArgsError(f"host must be a non-empty str, not {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise InvalidArgsError(f"port must be an int in 1..65535, not {port!r}")
        if connect_timeout is not None and connect_timeout < 0:
            raise InvalidArgsError("connect_timeout must not be negative")
        self.host = host
        self.port = port
        self.server = format_server(host, port)
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.max_packet_size = max_packet_size
        #: Number of sockets this Connection has opened so far.
        self.generation = 0
        #: Called as ``on_packet(connection, packet)`` for unsolicited packets
        #: that are not WORK_* (NOOP, ERROR JOB_NOT_FOUND, ...).
        self.on_packet: Optional[Callable[["Connection", Packet], None]] = None
        self._disconnect_callbacks: List[Callable[["Connection", BaseException], None]] = []
        self._sock: Any = None
        self._reader: Optional[gevent.Greenlet] = None
        self._fifo: Deque[Tuple[Waiter, Optional[FrozenSet[int]]]] = deque()
        self._tasks: Dict[bytes, list] = {}
        self._wbuf: List[bytes] = []
        self._writing = False
        self._corked = 0
        self._plain = False
        self._connect_lock = gevent.lock.Semaphore()
        self._hub = gevent.get_hub()
        self.last_error: Optional[BaseException] = None

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Connection {self.server} {state}>"

    # ------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        """True while a socket is open (it may still turn out to be dead)."""
        return self._sock is not None

    def on_disconnect(self, fn: Callable[["Connection", BaseException], None]) -> Callable:
        """Call ``fn(connection, exc)`` each time a socket of this connection
        is lost or closed (in the greenlet that noticed)."""
        self._disconnect_callbacks.append(fn)
        return fn

    def connect(self) -> None:
        """Open the socket if it is not open (no-op otherwise).

        Raises :class:`NetworkError` naming the server if the TCP connect or
        the TLS handshake fails or takes longer than ``connect_timeout``.
        """
        if self._sock is not None:
            return
        with self._connect_lock:
            if self._sock is not None:
                return
            try:
                sock = self._open_socket()
            except NetworkError as exc:
                self.last_error = exc
                raise
            self.last_error = None
            self.generation += 1
            self._sock = sock
            self._fifo = deque()
            self._tasks = {}
            self._wbuf = []
            self._writing = False
            self._corked = 0
            # A plain gevent socket (not TLS) allows the fast paths below.
            self._plain = type(sock) is gevent.socket.socket and all(
                hasattr(sock, a) for a in ("_sock", "_wait", "_read_event"))
            decoder = Decoder(RES, self.max_packet_size)
            self._reader = gevent.spawn(self._read_loop, sock, decoder)
            log.debug("connected to %s (generation %d)", self.server, self.generation)

    def _open_socket(self) -> Any:
        return open_socket(self.host, self.port, timeout=self.connect_timeout,
                           ssl_context=self.ssl_context, keepalive=True)

    def close(self) -> None:
        """Close the socket; waiters and bound tasks fail with NetworkError.

        The Connection may be connected again later.
        """
        sock = self._sock
        if sock is None:
            return
        reader = self._reader
        self._lost(sock, NetworkError(f"connection to {self.server} closed", self.server))
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)

    # -------------------------------------------------------------- reading
    def _read_loop(self, sock: Any, decoder: Decoder) -> None:
        exc: BaseException
        dispatch = self._dispatch
        # One receive buffer per socket: recv() of a fresh 256 KiB bytes per
        # read made malloc mmap and munmap it every time (two syscalls and
        # page faults per packet on a busy connection).
        buf = bytearray(_RECV_SIZE)
        view = memoryview(buf)
        size = len(buf)
        try:
            if self._plain:
                # A read that did not fill the buffer almost always emptied
                # the socket: wait for readability before the next recv
                # instead of trying first (a recv that fails with EAGAIN costs
                # a syscall and an exception per packet on a sequential
                # connection).  gevent's own recv_into does the same waits.
                raw_recv_into = sock._sock.recv_into
                wait = sock._wait
                read_event = sock._read_event
                while True:
                    try:
                        n = raw_recv_into(buf)
                    except BlockingIOError:
                        wait(read_event)
                        continue
                    if not n:
                        exc = NetworkError(f"{self.server} closed the connection", self.server)
                        break
                    pkts = decoder.feed(view[:n])
                    if len(pkts) == 1:
                        dispatch(pkts[0])  # type: ignore[arg-type]  # no text lines: allow_text is off
                    else:
                        self._dispatch_all(sock, pkts)  # type: ignore[arg-type]
                    if sock is not self._sock:
                        return  # closed by a waiter or callback; already torn down
                    if n < size:
                        wait(read_event)
            else:
                recv_into = sock.recv_into
                while True:
                    n = recv_into(buf)
                    if not n:
                        exc = NetworkError(f"{self.server} closed the connection", self.server)
                        break
                    self._dispatch_all(sock, decoder.feed(view[:n]))  # type: ignore[arg-type]
                    if sock is not self._sock:
                        return
        except gevent.GreenletExit:
            exc = NetworkError(f"connection to {self.server} closed", self.server)
        except ProtocolError as e:
            log.error("protocol error from %s: %s", self.server, e)
            e.args = (f"{e.args[0]} (from {self.server})",)
            exc = e
        except OSError as e:
            exc = NetworkError(f"connection to {self.server} lost: {e}", self.server)
        except BaseException as e:  # pragma: no cover - a bug; never leave waiters hanging
            log.exception("reader of %s died", self.server)
            exc = NetworkError(f"reader of {self.server} died: {e!r}", self.server)
        self._lost(sock, exc)

    def _dispatch_all(self, sock: Any, pkts: List[Packet]) -> None:
        """Dispatch the packets of one read under a cork: whatever their
        handlers send (a worker's next GRABs, say) leaves in one write."""
        self._corked += 1
        try:
            for pkt in pkts:
                self._dispatch(pkt)
        finally:
            if sock is self._sock:
                self._corked -= 1
                if not self._corked and self._wbuf and not self._writing:
                    try:
                        self._flush_nowait(sock)
                    except NetworkError:
                        pass  # torn down by _lost; the read loop ends next

    def _dispatch(self, pkt: Packet) -> None:
        num = pkt.type
        try:
            if num in _ROUTED:
                handle = pkt.args[0]
                tasks = self._tasks.get(handle)
                if tasks is None:
                    log.debug("%s: %s for unknown handle %r dropped", self.server, pkt.name, handle)
                    return
                if num in _TERMINAL:
                    del self._tasks[handle]
                for task in tasks if len(tasks) == 1 else list(tasks):
                    task._handle_packet(self, pkt)
            elif num in _REPLIES or (num == _ERROR and pkt.args[0] != b"JOB_NOT_FOUND"):
                if not self._fifo:
                    log.warning("%s: unexpected %s with no request waiting: %r",
                                self.server, pkt.name, pkt.args)
                    return
                waiter, answers = self._fifo[0]
                if answers is not None and num != _ERROR and num not in answers:
                    # The server is out of step with us: every later reply
                    # would go to the wrong caller.  Drop the connection.
                    raise ProtocolError(f"{pkt.name} does not answer the request waiting for a reply")
                self._fifo.popleft()
                waiter(pkt, None)
            else:
                handler = self.on_packet
                if handler is not None:
                    handler(self, pkt)
                elif num == _ERROR:
                    log.warning("%s: ERROR %s %r", self.server, pkt.args[0].decode("ascii", "replace"), pkt.args[1])
                elif num != _NOOP:
                    log.debug("%s: unsolicited %s ignored", self.server, pkt.name)
        except ProtocolError:
            raise
        except Exception:
            log.exception("%s: handling %s failed", self.server, COMMANDS.get(num, num))

    def _lost(self, sock: Any, exc: BaseException) -> None:
        """Tear down *sock* if it is still current; fail everything on it."""
        if sock is not self._sock:
            return
        self._sock = None
        self._reader = None
        self.last_error = exc
        try:
            sock.close()
        except OSError:  # pragma: no cover
            pass
        fifo, self._fifo = self._fifo, deque()
        tasks, self._tasks = self._tasks, {}
        self._wbuf = []
        for waiter, _ in fifo:
            try:
                waiter(None, exc)
            except Exception:  # pragma: no cover
                log.exception("waiter failed")
        for bound in tasks.values():
            for task in bound:
                try:
                    task._fail(exc)
                except Exception:  # pragma: no cover
                    log.exception("failing %r failed", task)
        log.info("disconnected from %s: %s", self.server, exc)
        for fn in list(self._disconnect_callbacks):
            try:
                fn(self, exc)
            except Exception:
                log.exception("on_disconnect callback failed")

    # -------------------------------------------------------------- writing
    def _write(self, data: bytes, cork: Optional[bool] = None) -> None:
        """Queue *data* (whole packets) and write it.

        If another greenlet is writing, or the connection is corked
        (:meth:`cork`), the data is sent with that write and this returns at
        once.  Called from the reader or the hub, it never blocks (see
        :meth:`_flush_nowait`).  Otherwise this greenlet writes everything
        queued until the queue is empty.
        """
        sock = self._sock
        if sock is None:
            raise NetworkError(f"not connected to {self.server}", self.server)
        self._wbuf.append(data)
        if self._writing or self._corked:
            return
        self._start_flush(sock, cork)

    def _start_flush(self, sock: Any, cork: Optional[bool]) -> None:
        current = gevent.getcurrent()
        if current is self._reader or current is self._hub:
            self._flush_nowait(sock)
            return
        # With other requests in flight, other greenlets are likely about to
        # write too (they were woken by the same read): let them queue their
        # packets first, so all leave in one write -- one syscall here and
        # one wake-up of the server.  A lone sequential caller is not delayed.
        if cork is None:
            cork = len(self._fifo) + len(self._tasks) > 1
        if not cork and self._plain:
            self._flush_nowait(sock, current)  # usually all of it goes at once
            return
        self._writing = True
        self._flush(sock, self._wbuf, b"", cork)

    def _flush_nowait(self, sock: Any, finisher: Any = None) -> None:
        """Write what is queued without waiting.  What the socket does not
        take at once is written by *finisher* -- the calling greenlet, which
        then blocks -- or, for the reader and the hub, which must never block
        on a full socket buffer, by a new greenlet."""
        wbuf = self._wbuf
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        if self._plain:
            try:
                sent = sock._sock.send(data)  # the non-blocking socket under gevent's
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                err = NetworkError(f"writing to {self.server} failed: {exc}", self.server)
                reader = self._reader
                self._lost(sock, err)
                if reader is not None and reader is not gevent.getcurrent():
                    reader.kill(block=False)
                raise err from exc
            if sent == len(data):
                return
            data = data[sent:]
        self._writing = True
        if finisher is not None:
            self._flush(sock, wbuf, data)
        else:
            gevent.spawn(self._finish_flush, sock, wbuf, data)

    def cork(self) -> int:
        """Hold back writes until :meth:`uncork`: packets queued meanwhile,
        by any greenlet, leave in one write.  Returns a token for
        :meth:`uncork`.  Corks nest."""
        self._corked += 1
        return self.generation

    def uncork(self, token: int, linger: bool = False) -> None:
        """Release a :meth:`cork` and write what was held back (in this
        greenlet, or without blocking in the reader or the hub).

        With *linger*, greenlets made runnable just before get to queue
        their packets first, so they share the write (as
        ``send_update(cork=True)``).  Raises :class:`NetworkError` if the
        write fails.  A token of an earlier socket is ignored (the
        connection was lost meanwhile and what was held back with it).
        """
        sock = self._sock
        if sock is None or token != self.generation:
            return
        self._corked -= 1
        if not self._corked and self._wbuf and not self._writing:
            self._start_flush(sock, linger)

    def _flush(self, sock: Any, wbuf: List[bytes], pending: bytes, cork: bool = False) -> None:
        """Write *pending*, then everything queued, with ``send`` so progress
        is known.  If this greenlet is interrupted mid-packet (killed, a
        ``gevent.Timeout``), a new greenlet finishes the write: the stream
        never carries half a packet and the connection stays usable."""
        view = memoryview(pending)
        handed_off = False
        try:
            if cork:
                gevent.sleep(0)  # an interrupt here is handed off like one in send()
            while True:
                if not view:
                    if not wbuf:
                        break
                    view = memoryview(wbuf[0] if len(wbuf) == 1 else b"".join(wbuf))
                    wbuf.clear()
                sent = sock.send(view)
                view = view[sent:]
        except OSError as exc:
            err = NetworkError(f"writing to {self.server} failed: {exc}", self.server)
            reader = self._reader
            self._lost(sock, err)
            if reader is not None:
                reader.kill(block=False)
            raise err from exc
        except BaseException:
            if sock is self._sock:
                handed_off = True
                gevent.spawn(self._finish_flush, sock, wbuf, bytes(view))
            raise
        finally:
            # After a reconnect the new socket has its own flag: leave it be.
            if sock is self._sock and not handed_off:
                self._writing = False

    def _finish_flush(self, sock: Any, wbuf: List[bytes], pending: bytes) -> None:
        try:
            self._flush(sock, wbuf, pending)
        except NetworkError:
            pass  # torn down and logged by _lost

    def send_update(self, packet: bytes, cork: bool = False) -> None:
        """Send *packet* (bytes from :func:`~gearman_gevent.packet.pack_request`)
        that expects no reply.  Raises :class:`NetworkError` if not connected.

        With *cork*, greenlets made runnable just before this call get to
        queue their packets first, so they share this write.  (To send
        several packets from one greenlet in one write, see :meth:`cork`.)
        """
        self._write(packet, cork)

    def send_with_waiter(self, packet: bytes, waiter: Waiter) -> None:
        """Send *packet* and register ``waiter(packet, exc)`` for its reply.

        The waiter runs in the reader greenlet with the reply packet, or with
        an exception if the connection dies first.  Used by the client and
        worker to bind state the moment a reply is decoded.
        """
        if self._sock is None:
            raise NetworkError(f"not connected to {self.server}", self.server)
        self._fifo.append((waiter, _answers(packet)))
        self._write(packet)

    def _send_prepared(self, data: bytes, entries: List[Tuple[Waiter, Optional[FrozenSet[int]]]]) -> None:
        """Send *data* (whole packets) and register FIFO *entries* (waiter,
        reply types) for the reply-bearing ones (the worker's GRABs)."""
        if self._sock is None:
            raise NetworkError(f"not connected to {self.server}", self.server)
        self._fifo.extend(entries)
        self._write(data)

    def send_many_with_waiters(self, packets: List[bytes], waiters: List[Waiter]) -> None:
        """Send several reply-bearing packets in one write (pipelining)."""
        if self._sock is None:
            raise NetworkError(f"not connected to {self.server}", self.server)
        self._fifo.extend(zip(waiters, map(_answers, packets)))
        self._write(b"".join(packets))

    def check_not_reader(self) -> None:
        """Raise :class:`DeadlockError` if the calling greenlet is this
        connection's reader: it would wait for a reply only it can read."""
        if self._reader is not None and gevent.getcurrent() is self._reader:
            raise DeadlockError(
                f"a blocking call on {self.server} was made in its own reader greenlet "
                "(a task callback?); it would wait on itself: spawn a greenlet for it"
            )

    def request(self, packet: bytes, timeout: Optional[float] = None) -> Packet:
        """Send *packet* and wait for its in-order reply, as a decoded
        :class:`~gearman_gevent.packet.Packet` (its arguments split).

        Raises :class:`ServerError` if the server answered ERROR,
        :class:`SocketTimeoutError` after *timeout* seconds (the request's
        slot stays, so its late reply is discarded), :class:`NetworkError` if
        the connection fails.
        """
        if timeout is not None and timeout < 0:
            raise InvalidArgsError("timeout must not be negative")
        self.check_not_reader()
        result = AsyncResult()
        self.send_with_waiter(packet, _result_waiter(result))
        try:
            pkt = result.get(timeout=timeout)
        except gevent.Timeout:
            raise SocketTimeoutError(
                f"no reply from {self.server} within {timeout}s"
            ) from None
        if pkt.type == _ERROR:
            raise _server_error(pkt, self.server)
        return pkt

    def requests(self, packets: List[bytes], timeout: Optional[float] = None) -> List[Packet]:
        """Send several requests in one write and wait for all their replies
        (pipelining); like :meth:`request` for each, in order.

        *timeout* bounds the whole wait.  If any reply is an ERROR, the
        :class:`ServerError` is raised after every reply arrived.
        """
        if timeout is not None and timeout < 0:
            raise InvalidArgsError("timeout must not be negative")
        if len(packets) == 1:
            return [self.request(packets[0], timeout)]
        self.check_not_reader()
        results = [AsyncResult() for _ in packets]
        self.send_many_with_waiters(packets, [_result_waiter(r) for r in results])
        replies: List[Packet] = []
        error: Optional[ServerError] = None
        with gevent.Timeout(timeout, False):
            for result in results:
                pkt = result.get()
                if pkt.type == _ERROR:
                    error = error or _server_error(pkt, self.server)
                else:
                    replies.append(pkt)
            if error is not None:
                raise error
            return replies
        raise SocketTimeoutError(f"no reply from {self.server} within {timeout}s")

    def send_request(self, packet: bytes, timeout: Optional[float] = None) -> Reply:
        """Like :meth:`request`, returning ``(type_name, data)`` (a
        :class:`Reply`), as gearman-ruby's ``send_request`` does."""
        return Reply(self.request(packet, timeout))

    def send_requests(self, packets: List[bytes], timeout: Optional[float] = None) -> List[Reply]:
        """Like :meth:`requests`, returning :class:`Reply` tuples."""
        return [Reply(pkt) for pkt in self.requests(packets, timeout)]

    def echo(self, data: bytes = b"ping", timeout: Optional[float] = None) -> bytes:
        """ECHO_REQ round trip; returns the echoed bytes."""
        reply = self.send_request(pack_request("echo_req", data), timeout)
        return reply.data

    def is_healthy(self, timeout: Optional[float] = 5.0) -> bool:
        """Connect if needed and check the server answers an ECHO."""
        try:
            self.connect()
            return self.echo(b"health", timeout) == b"health"
        except (NetworkError, SocketTimeoutError, ServerError):
            return False

    # ------------------------------------------------------------ task map
    def bind_task(self, handle: bytes, task: Any) -> None:
        """Route WORK_* packets for *handle* to *task* (call in the reader)."""
        bound = self._tasks.get(handle)
        if bound is None:
            self._tasks[handle] = [task]
        else:
            bound.append(task)

    def unbind_task(self, handle: bytes, task: Any) -> None:
        """Stop routing packets for *handle* to *task* (caller gave up)."""
        bound = self._tasks.get(handle)
        if bound is None:
            return
        try:
            bound.remove(task)
        except ValueError:
            return
        if not bound:
            del self._tasks[handle]

    @property
    def pending_replies(self) -> int:
        """Requests sent whose reply has not arrived yet."""
        return len(self._fifo)

    @property
    def bound_tasks(self) -> int:
        """Number of job handles with tasks waiting for WORK_* packets."""
        return len(self._tasks)


def _result_waiter(result: AsyncResult) -> Waiter:
    def waiter(pkt: Optional[Packet], exc: Optional[BaseException]) -> None:
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set(pkt)

    return waiter


def _server_error(pkt: Packet, server: str) -> ServerError:
    code = pkt.args[0].decode("utf-8", "replace")
    text = pkt.args[1].decode("utf-8", "replace")
    cls = JobQueueError if code == "QUEUE_ERROR" else ServerError
    return cls(code, text, server)
