"""The embedded job server's I/O: a gevent StreamServer around an Engine."""
from __future__ import annotations

import logging
import socket
from typing import Any, Dict, Optional, Set, Tuple, Union

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from ..exceptions import ProtocolError
from ..packet import DEFAULT_MAX_PACKET_SIZE
from .engine import Engine, Peer
from .protocol import RequestDecoder
from .queue import JobQueue, open_queue

__all__ = ["Server", "ThreadedServer"]

log = logging.getLogger(__name__)

_RECV_SIZE = 256 * 1024


class _Transport:
    """One client connection: reads in its own greenlet, writes coalesced.

    The reading greenlet flushes its own replies with a blocking ``sendall``
    (so a client that does not read slows only itself).  Packets for this
    connection produced by *other* greenlets (NOOP, WORK_*) are sent with a
    non-blocking ``send``; what does not fit is handed to a short-lived
    writer greenlet.  At most one greenlet writes at any time.
    """

    __slots__ = ("sock", "reader", "writing", "server", "peer", "__weakref__")

    def __init__(self, server: "Server", sock: Any) -> None:
        self.server = server
        self.sock = sock
        self.reader = gevent.getcurrent()
        self.writing = False
        self.peer: Optional[Peer] = None

    def flush(self, peer: Peer) -> None:
        if self.writing:
            return  # the active writer picks the new data up
        out = peer.out
        if gevent.getcurrent() is self.reader:
            self._write_all(peer)
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            sent = self.sock.send(data, 0, 0.0)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            out.insert(0, data[sent:])
            self.writing = True
            gevent.spawn(self._write_all, peer, True)

    def _write_all(self, peer: Peer, started: bool = False) -> None:
        self.writing = True
        out = peer.out
        try:
            while out:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self.sock.sendall(data)
        except OSError:
            out.clear()
            self.close()
        finally:
            self.writing = False

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server:
    """A Gearman job server on gevent, protocol-compatible with gearmand 1.1.

    :param host: address to listen on (``"0.0.0.0"``/``"::"`` for all).
    :param port: TCP port; 0 picks a free one (see :attr:`port`).
    :param queue: ``None`` (memory only), ``"sqlite:PATH"`` for durable
        background jobs, or a :class:`~gearman_gevent.server.queue.JobQueue`.
    :param exceptions: give every connection the ``exceptions`` option.
    :param job_retries: drop a job after this many requeues (0 = never).
    :param worker_wakeup: NOOP at most this many sleepers per job (0 = all).
    :param handle_prefix: job handle prefix (default ``H:<hostname>:``).
    :param max_packet_size: largest request body accepted.
    :param backlog: listen backlog.
    :param graceful_timeout: longest wait for running jobs on the admin
        command ``shutdown graceful``.

    ``start()`` returns once the socket listens; ``serve_forever()`` blocks
    until :meth:`stop` (or the admin ``shutdown`` command).  Usable as a
    context manager (started on enter, stopped on exit).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        queue: Union[str, JobQueue, None] = None,
        exceptions: bool = False,
        job_retries: int = 0,
        worker_wakeup: int = 0,
        handle_prefix: Optional[str] = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        backlog: int = 1024,
        graceful_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.graceful_timeout = graceful_timeout
        self._requested_port = port
        self.queue_spec = queue
        self.max_packet_size = max_packet_size
        self.backlog = backlog
        self._engine_kwargs: Dict[str, Any] = dict(
            exceptions=exceptions,
            job_retries=job_retries,
            worker_wakeup=worker_wakeup,
            handle_prefix=handle_prefix.encode() if handle_prefix is not None else None,
        )
        self.engine: Optional[Engine] = None
        self._server: Optional[StreamServer] = None
        self._transports: Set[_Transport] = set()
        self._stopped = Event()
        self._stopping = False

    # ------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for)."""
        if self._server is not None:
            return self._server.server_port
        return self._requested_port

    @property
    def address(self) -> str:
        """``"host:port"``, ready for ``Client(server.address)``."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None and not self._stopping

    def start(self) -> "Server":
        """Open the queue (reloading stored jobs), listen, and return."""
        if self._server is not None:
            return self
        queue = open_queue(self.queue_spec)
        engine = Engine(queue, **self._engine_kwargs)
        engine.on_shutdown = self._admin_shutdown
        loaded = engine.load()
        if loaded:
            log.info("reloaded %d background job(s) from %r", loaded, queue)
        self.engine = engine
        self._stopping = False
        self._stopped.clear()
        server = StreamServer((self.host, self._requested_port), self._handle, backlog=self.backlog)
        server.init_socket()
        server.start()
        self._server = server
        log.info("gearman_gevent server listening on %s", self.address)
        return self

    def serve_forever(self) -> None:
        """Start if needed, then block until the server is stopped."""
        self.start()
        self._stopped.wait()

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Stop listening, close every connection (running jobs of workers are
        requeued, foreground jobs are lost) and close the queue."""
        if self._server is None or self._stopping:
            self._stopped.wait(timeout)
            return
        self._stopping = True
        server = self._server
        try:
            server.close()
            for transport in list(self._transports):
                transport.close()
            # reader greenlets see EOF and clean up
            deadline = gevent.Timeout(timeout)
            deadline.start()
            try:
                while self._transports:
                    gevent.sleep(0.01)
            except gevent.Timeout:
                log.warning("%d connection(s) did not close in time", len(self._transports))
            finally:
                deadline.close()
            if self.engine is not None:
                self.engine.end_batch()
                self.engine.close()
                self.engine.queue.close()
        finally:
            self._server = None
            self._stopped.set()

    def _admin_shutdown(self, graceful: bool) -> None:
        gevent.spawn(self._shutdown, graceful)

    def _shutdown(self, graceful: bool) -> None:
        gevent.sleep(0)  # let the OK reply go out first
        if graceful and self.engine is not None:
            self.engine.draining = True
            if self._server is not None:
                self._server.close()
            with gevent.Timeout(self.graceful_timeout, False):
                while self.engine.running_jobs():
                    gevent.sleep(0.05)
        self.stop()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.address} queue={self.queue_spec!r}>"

    # ---------------------------------------------------------- connections
    def _handle(self, sock: Any, addr: Tuple[Any, ...]) -> None:
        engine = self.engine
        if engine is None or self._stopping:
            sock.close()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        transport = _Transport(self, sock)
        self._transports.add(transport)
        ip = addr[0] if addr else "-"
        peer = engine.connect(transport, sock.fileno(), ip)
        transport.peer = peer
        decoder = RequestDecoder(self.max_packet_size)
        recv = sock.recv
        handle_many = engine.handle_many
        end_batch = engine.end_batch
        feed = decoder.feed
        try:
            while not peer.closed:
                data = recv(_RECV_SIZE)
                if not data:
                    break
                handle_many(peer, feed(data))
                end_batch()
        except ProtocolError as exc:
            log.info("dropping %s: %s", ip, exc)
        except OSError:
            pass
        except Exception:
            log.exception("error serving %s; connection dropped", ip)
        finally:
            try:
                engine.end_batch()  # replies already produced go out first
            except Exception:  # pragma: no cover
                log.exception("flush failed")
            engine.disconnect(peer)
            engine.end_batch()
            self._transports.discard(transport)
            try:
                sock.close()
            except OSError:
                pass


class ThreadedServer:
    """A :class:`Server` running in its own OS thread with its own gevent hub.

    Use it when the code talking to the server may block the calling
    thread without yielding to gevent (stdlib sockets without
    monkey-patching, ``subprocess.run`` of the C ``gearman`` tools, ...):
    the server keeps serving regardless.  Takes the same arguments as
    :class:`Server`; :attr:`address`/:attr:`port` are valid after
    :meth:`start`.  :meth:`stop` may be called from any thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        self._args = (host, port)
        self._kwargs = kwargs
        self.server: Optional[Server] = None
        self._loop: Any = None
        self._error: Optional[BaseException] = None
        self._ready: Any = None
        self._done: Any = None

    @property
    def address(self) -> str:
        """``"host:port"`` of the running server."""
        assert self.server is not None, "not started"
        return self.server.address

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self.server is not None, "not started"
        return self.server.port

    def start(self, timeout: float = 10.0) -> "ThreadedServer":
        """Start the thread; return once the server listens (or raise)."""
        from gevent.monkey import get_original

        start_new_thread = get_original("_thread", "start_new_thread")
        allocate_lock = get_original("_thread", "allocate_lock")
        self._ready = allocate_lock()
        self._done = allocate_lock()
        self._ready.acquire()
        self._done.acquire()
        start_new_thread(self._run, ())
        if not self._ready.acquire(True, timeout):
            raise RuntimeError("embedded server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        hub = gevent.get_hub()
        try:
            try:
                self.server = Server(*self._args, **self._kwargs).start()
                self._loop = hub.loop
            except BaseException as exc:  # reported to start()
                self._error = exc
                return
            finally:
                self._ready.release()
            self.server.serve_forever()
        finally:
            self._done.release()
            hub.destroy(destroy_loop=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for its thread to end."""
        server, loop = self.server, self._loop
        if server is None or loop is None:
            return
        self._loop = None
        loop.run_callback_threadsafe(lambda: gevent.spawn(server.stop))
        self._done.acquire(True, timeout)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
