"""ConnectionPool: the set of servers, which one to use, and reconnecting.

* Servers are given as ``"host"``, ``"host:port"``, ``"[v6addr]:port"``, a
  ``(host, port)`` tuple, or a list of these (default port 4730; ``None``
  means ``"localhost:4730"``).
* :meth:`ConnectionPool.get_connection` picks round robin over the servers
  that are up, or, given a coalesce key, the same server for the same key
  (CRC-32 of the key, stable across processes, so equal uniques submitted by
  different processes meet in one gearmand; if that server is down the next
  one in order is used).
* Connections open lazily, on first use.  A server that cannot be reached or
  whose connection is lost is retried in a background greenlet with
  exponential backoff and jitter (starting at 0.1 s, capped at
  ``reconnect_delay``), and skipped until it is back.
* :meth:`on_connection` callbacks run after every (re)connect, before the
  connection is used: the client re-applies its options there, the worker
  re-registers its abilities.
"""
from __future__ import annotations

import logging
import random
import zlib
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

import gevent

from .connection import Connection
from .exceptions import GearmanError, InvalidArgsError, NetworkError, NoJobServersError
from .packet import DEFAULT_MAX_PACKET_SIZE

__all__ = ["ConnectionPool", "parse_servers", "parse_server", "DEFAULT_PORT", "Backoff"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 4730

ServerSpec = Union[str, Tuple[str, int]]
Servers = Union[None, ServerSpec, Sequence[ServerSpec]]
T = TypeVar("T")


def parse_server(spec: ServerSpec) -> Tuple[str, int]:
    """Parse one server spec into ``(host, port)``.

    Raises :class:`InvalidArgsError` for anything that is not a valid spec.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise InvalidArgsError(f"server tuple must be (host, port), not {spec!r}")
        host, port = spec
        if not isinstance(host, str) or not host:
            raise InvalidArgsError(f"server host must be a non-empty str, not {host!r}")
        port = _port(port, spec)
        return host.strip("[]"), port
    if not isinstance(spec, str):
        raise InvalidArgsError(f"server must be a str or (host, port) tuple, not {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise InvalidArgsError("server must not be empty")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidArgsError(f"unbalanced '[' in server {spec!r}")
        host = text[1:end]
        rest = text[end + 1:]
        if not host:
            raise InvalidArgsError(f"empty IPv6 address in server {spec!r}")
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise InvalidArgsError(f"bad server {spec!r}")
        return host, _port(rest[1:], spec)
    if text.count(":") > 1:  # a bare IPv6 address without a port
        return text, DEFAULT_PORT
    host, sep, port_text = text.partition(":")
    if not host:
        raise InvalidArgsError(f"empty host in server {spec!r}")
    return host, (_port(port_text, spec) if sep else DEFAULT_PORT)


def _port(value: Any, spec: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidArgsError(f"bad port in server {spec!r}") from None
    if isinstance(value, bool) or not 0 < port < 65536:
        raise InvalidArgsError(f"port out of range in server {spec!r}")
    return port


def parse_servers(servers: Servers) -> List[Tuple[str, int]]:
    """Parse a server spec or a list of them (``None`` -> localhost:4730).

    A comma-separated string is accepted too (``"a:4730,b:4730"``).
    """
    if servers is None:
        return [("localhost", DEFAULT_PORT)]
    if isinstance(servers, str):
        items: List[Any] = [s for s in servers.split(",") if s.strip()] if "," in servers else [servers]
    elif isinstance(servers, tuple) and len(servers) == 2 and isinstance(servers[1], int):
        items = [servers]
    elif isinstance(servers, (list, tuple)):
        items = list(servers)
    else:
        raise InvalidArgsError(f"servers must be a str, tuple or list, not {type(servers).__name__}")
    if not items:
        raise InvalidArgsError("the server list is empty")
    return [parse_server(s) for s in items]


class Backoff:
    """Exponential backoff with full jitter: ``initial * 2**n`` capped at
    ``maximum``, each delay drawn uniformly from [50 %, 100 %] of that."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = max(maximum, 0.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number *attempt* (0-based)."""
        base = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return base * random.uniform(0.5, 1.0)


class ConnectionPool:
    """The connections to a set of servers.

    :param servers: see the module docstring.
    :param reconnect_delay: the longest wait between two reconnect attempts
        to a server that is down (backoff starts at 0.1 s).
    :param connect_timeout: passed to every :class:`Connection`.
    :param ssl_context: passed to every :class:`Connection` (TLS).
    """

    def __init__(
        self,
        servers: Servers = None,
        *,
        reconnect_delay: float = 10.0,
        connect_timeout: Optional[float] = 5.0,
        ssl_context: Any = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        if not isinstance(reconnect_delay, (int, float)) or reconnect_delay < 0:
            raise InvalidArgsError("reconnect_delay must be a non-negative number")
        self.reconnect_delay = float(reconnect_delay)
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.max_packet_size = max_packet_size
        self.backoff = Backoff(0.1, self.reconnect_delay)
        self.connections: List[Connection] = []
        self._callbacks: List[Callable[[Connection], Any]] = []
        self._retries: dict = {}
        self._rr = 0
        self._closed = False
        self.add_servers(servers)

    def __repr__(self) -> str:
        return f"<ConnectionPool {[c.server for c in self.connections]}>"

    def __len__(self) -> int:
        return len(self.connections)

    @property
    def servers(self) -> List[str]:
        """``host:port`` of every server, in order."""
        return [c.server for c in self.connections]

    def add_servers(self, servers: Servers) -> List[Connection]:
        """Add servers (skipping ones already present); returns the new
        connections.  Nothing connects until a connection is used."""
        added = []
        known = {(c.host, c.port) for c in self.connections}
        for host, port in parse_servers(servers):
            if (host, port) in known:
                continue
            known.add((host, port))
            conn = Connection(
                host,
                port,
                connect_timeout=self.connect_timeout,
                ssl_context=self.ssl_context,
                max_packet_size=self.max_packet_size,
            )
            conn.on_disconnect(self._connection_lost)
            self.connections.append(conn)
            added.append(conn)
        return added

    def on_connection(self, fn: Callable[[Connection], Any]) -> Callable[[Connection], Any]:
        """Call ``fn(connection)`` after each (re)connect, before use.

        If *fn* raises, the connection is closed and counts as failed.
        """
        self._callbacks.append(fn)
        return fn

    # ------------------------------------------------------------ connecting
    def _connect(self, conn: Connection) -> None:
        if conn.connected:
            return
        conn.connect()
        try:
            for fn in self._callbacks:
                fn(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, NetworkError):
                raise
            if isinstance(exc, GearmanError):
                raise NetworkError(f"setting up {conn.server} failed: {exc}", conn.server) from exc
            raise

    def _connection_lost(self, conn: Connection, exc: BaseException) -> None:
        if not self._closed:
            self._schedule_reconnect(conn)

    def in_backoff(self, conn: Connection) -> bool:
        """True while a background reconnect of *conn* is pending."""
        g = self._retries.get(conn)
        return g is not None and not g.dead

    def _schedule_reconnect(self, conn: Connection) -> None:
        if self._closed or self.in_backoff(conn):
            return
        self._retries[conn] = gevent.spawn(self._reconnect_loop, conn)

    def _reconnect_loop(self, conn: Connection) -> None:
        attempt = 0
        while not self._closed:
            gevent.sleep(self.backoff.delay(attempt))
            if self._closed:
                return
            try:
                self._connect(conn)
                log.info("reconnected to %s", conn.server)
                self._retries.pop(conn, None)
                return
            except NetworkError as exc:
                attempt += 1
                log.debug("reconnect to %s failed (attempt %d): %s", conn.server, attempt, exc)

    def _try(self, conn: Connection) -> bool:
        """Use *conn* if it is connected, or connect it now unless it is in
        backoff; False (and a background retry) if it cannot be had."""
        if conn.connected:
            return True
        if self.in_backoff(conn):
            return False
        try:
            self._connect(conn)
            return True
        except NetworkError as exc:
            log.warning("%s", exc)
            self._schedule_reconnect(conn)
            return False

    def get_connection(
        self, coalesce_key: Optional[Union[str, bytes]] = None, exclude: Iterable[Connection] = ()
    ) -> Connection:
        """Return a connected Connection.

        Without *coalesce_key*: round robin over the servers that are up.
        With it: the server chosen by the key, or the next one up after it.
        Servers in *exclude* are skipped.  Raises :class:`NoJobServersError`
        if no server can be reached.
        """
        if self._closed:
            raise NoJobServersError("the connection pool is closed")
        conns = self.connections
        n = len(conns)
        if coalesce_key is None:
            start = self._rr
            self._rr = (start + 1) % n if n else 0
        else:
            key = coalesce_key.encode() if isinstance(coalesce_key, str) else coalesce_key
            start = zlib.crc32(key) % n if n else 0
        excluded = set(exclude) if exclude else ()
        order = [conns[(start + i) % n] for i in range(n)]
        order = [c for c in order if c not in excluded] if excluded else order
        for conn in order:
            if self._try(conn):
                return conn
        # Every candidate is down or waiting out its backoff.  Rather than
        # fail while a server may already be back, try those in backoff once
        # now (a refused connect fails fast); their retry loops carry on.
        for conn in order:
            if conn.connected:
                return conn
            try:
                self._connect(conn)
                return conn
            except NetworkError as exc:
                log.debug("%s", exc)
        raise NoJobServersError(self._unavailable_message())

    def _unavailable_message(self) -> str:
        details = []
        for c in self.connections:
            err = c.last_error
            details.append(f"{c.server} ({err})" if err else c.server)
        return "no job server available: " + ", ".join(details)

    def connect_all(self) -> List[Connection]:
        """Try every server now (those in backoff excepted); return the
        connected ones."""
        return [c for c in self.connections if self._try(c)]

    def with_all_connections(self, fn: Callable[[Connection], T]) -> List[T]:
        """Call ``fn(connection)`` for every server that is up (connecting
        them first as needed) and return the results.

        Raises :class:`NoJobServersError` if no server is up.  A
        :class:`NetworkError` from one server is logged and that server
        skipped; any other exception propagates.
        """
        results: List[T] = []
        ok = 0
        for conn in self.connect_all():
            try:
                results.append(fn(conn))
                ok += 1
            except NetworkError as exc:
                log.warning("%s: %s", conn.server, exc)
        if not ok:
            raise NoJobServersError(self._unavailable_message())
        return results

    def close(self) -> None:
        """Stop reconnecting and close every connection."""
        self._closed = True
        retries = list(self._retries.values())
        self._retries.clear()
        gevent.killall(retries, block=False)
        for conn in self.connections:
            conn.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed
