"""Admin: gearmand's text (administrative) protocol over one connection.

An :class:`Admin` talks to exactly one server over its own socket (never a
client or worker connection, so replies cannot be confused with binary
packets).  It sends one command line at a time and reads the reply:

* a *list* reply (``status``, ``workers``, ``show jobs``, ...) is zero or
  more lines ended by a line holding a single ``.``;
* every other reply is one line (``OK``, ``OK 1.1.20``, a bare version
  string from the Perl server, ...);
* an error is always one ``ERR code text`` line, even where a list was
  expected, and raises :class:`~gearman_gevent.exceptions.ServerError`.

Blocking, timeouts, failures:

* Every call blocks only the calling greenlet.  Calls from several greenlets
  are serialized (one command on the wire at a time).
* Every call, including waiting for the lock and (re)connecting, is bounded
  by ``timeout`` seconds and raises
  :class:`~gearman_gevent.exceptions.SocketTimeoutError` when it runs out.
* A connection that fails, closes, times out mid-reply or sends something
  unparsable is closed (:class:`NetworkError` / :class:`ProtocolError` /
  :class:`SocketTimeoutError` is raised); the next call connects again.

The text formats have no escaping: function names, handles and client ids
containing whitespace would corrupt them, so arguments with whitespace are
refused with :class:`~gearman_gevent.exceptions.InvalidArgsError`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import gevent
import gevent.lock

from ._validate import check_seconds
from .connection import format_server, open_socket
from .connection_pool import ServerSpec, parse_server
from .exceptions import (
    GearmanError,
    InvalidArgsError,
    NetworkError,
    ProtocolError,
    ServerError,
    SocketTimeoutError,
)
from .packet import (
    LIST_COMMANDS,
    AdminReplyParser,
    FunctionStatus,
    JobInfo,
    PriorityStatus,
    WorkerInfo,
    parse_ok,
    parse_prioritystatus,
    parse_show_jobs,
    parse_show_unique_jobs,
    parse_status,
    parse_workers,
)

__all__ = ["Admin", "is_client", "ADMIN_LIST_COMMANDS", "MAX_ADMIN_REPLY"]

log = logging.getLogger(__name__)

#: Commands answered by a ``.``-terminated list: gearmand's, plus the Perl
#: Gearman::Server's ``jobs``, ``clients`` and ``gladiator``.
ADMIN_LIST_COMMANDS = LIST_COMMANDS

#: The largest admin reply accepted (bytes); a longer one is a ProtocolError.
MAX_ADMIN_REPLY = 64 * 1024 * 1024

_RECV_SIZE = 64 * 1024
_WHITESPACE = frozenset(" \t\r\n\v\f\0")


class _Default:
    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return "<default>"


#: Sentinel: "use the Admin's own ``timeout``".
DEFAULT = _Default()
Timeout = Union[None, float, _Default]


class _ClosedBeforeReply(NetworkError):
    """The server closed the connection after a command, before replying."""


def is_client(info: WorkerInfo) -> bool:
    """``info.is_client``: gearmand lists every connection in ``workers``,
    not only workers."""
    return info.is_client


def _word(value: Union[str, bytes], what: str) -> str:
    """Validate one whitespace-free admin argument and return it as str."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgsError(f"{what} must be UTF-8") from None
    if not isinstance(value, str):
        raise InvalidArgsError(f"{what} must be str or bytes, not {type(value).__name__}")
    if not value:
        raise InvalidArgsError(f"{what} must not be empty")
    if any(ch in _WHITESPACE for ch in value):
        raise InvalidArgsError(
            f"{what} {value!r} contains whitespace or NUL, which the admin protocol cannot carry"
        )
    return value


def _int_arg(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgsError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _strip_ok(line: str) -> str:
    """The text of a single-line reply: ``OK x`` -> ``x``, other text as is
    (the Perl server answers ``version`` without ``OK``); ``ERR`` raises."""
    if line.startswith("ERR"):
        parse_ok([line])  # raises ServerError
    if line == "OK":
        return ""
    if line.startswith("OK "):
        return line[3:]
    return line


class Admin:
    """A client for the admin text protocol of one Gearman server.

    :param server: ``"host[:port]"``, ``"[v6addr]:port"`` or ``(host, port)``;
        ``None`` means ``localhost:4730``.
    :param timeout: seconds any one call may take in total (lock, connect,
        send, reply); ``None`` waits forever.  Each method also takes a
        ``timeout=`` overriding it for that call.
    :param ssl_context: an :class:`ssl.SSLContext` to speak TLS.

    The connection opens lazily on the first call.  Use as a context manager
    or call :meth:`close`.
    """

    def __init__(
        self,
        server: Optional[ServerSpec] = None,
        *,
        timeout: Optional[float] = 5.0,
        ssl_context: Any = None,
    ) -> None:
        if isinstance(server, list):
            if len(server) != 1:
                raise InvalidArgsError("Admin talks to exactly one server")
            server = server[0]
        host, port = parse_server("localhost" if server is None else server)
        check_seconds(timeout)
        self.host = host
        self.port = port
        #: ``host:port`` of the server.
        self.server = format_server(host, port)
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._sock: Any = None
        self._lock = gevent.lock.Semaphore()

    def __repr__(self) -> str:
        state = "connected" if self._sock is not None else "disconnected"
        return f"<Admin {self.server} {state}>"

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while a socket is open."""
        return self._sock is not None

    # ------------------------------------------------------------ transport
    def _connect(self) -> Any:
        if self._sock is not None:
            return self._sock
        # No connect timeout of its own: every Admin call runs under one
        # gevent.Timeout covering connect, send and reply.
        sock = open_socket(self.host, self.port, timeout=None, ssl_context=self.ssl_context)
        self._sock = sock
        log.debug("admin connection to %s open", self.server)
        return sock

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
            log.debug("admin connection to %s closed", self.server)

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        self._drop()

    def _exchange(self, line: bytes, list_reply: bool) -> List[str]:
        """Send *line* and read one reply; caller holds the lock and the
        timeout.  Any failure closes the connection."""
        sock = self._connect()
        parser = AdminReplyParser(list_reply, MAX_ADMIN_REPLY)
        try:
            sock.sendall(line + b"\n")
            while True:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    raise _ClosedBeforeReply(
                        f"{self.server} closed the admin connection before replying", self.server
                    )
                lines = parser.feed(data)
                if lines is not None:
                    break
        except GearmanError:
            self._drop()
            raise
        except OSError as exc:  # NetworkError is an OSError too: handled above
            self._drop()
            raise NetworkError(f"admin connection to {self.server} lost: {exc}", self.server) from exc
        except BaseException:
            self._drop()
            raise
        if parser.rest:
            # Bytes beyond the reply: we no longer know where the next reply
            # starts, so start over on a fresh connection next time.
            log.warning("%s: %d unexpected bytes after the reply to %r; reconnecting",
                        self.server, len(parser.rest), line)
            self._drop()
        return lines

    def send_command(
        self,
        command: Union[str, bytes],
        *,
        list_reply: Optional[bool] = None,
        timeout: Timeout = DEFAULT,
    ) -> List[str]:
        """Send one raw admin command line and return the reply's lines.

        :param command: the line, without its line end (e.g. ``"status"``).
        :param list_reply: whether the reply is a ``.``-terminated list; by
            default guessed from the command (see :data:`ADMIN_LIST_COMMANDS`).
        :param timeout: seconds for the whole call (default: ``self.timeout``).
        :returns: for a list reply its lines without the final ``.``; else a
            one-element list.  An ``ERR`` reply is returned as is, not raised.
        :raises SocketTimeoutError: the call took longer than *timeout*.
        :raises NetworkError: the server could not be reached or went away.
        :raises ProtocolError: the reply was too long.
        """
        if isinstance(command, str):
            raw = command.encode("utf-8")
        elif isinstance(command, (bytes, bytearray, memoryview)):
            raw = bytes(command)
        else:
            raise InvalidArgsError(f"command must be str or bytes, not {type(command).__name__}")
        if not raw.strip() or b"\n" in raw or b"\r" in raw or b"\0" in raw:
            raise InvalidArgsError(f"bad admin command {command!r}")
        if list_reply is None:
            words = raw.decode("utf-8", "replace").lower().split()
            list_reply = (
                " ".join(words[:3]) in ADMIN_LIST_COMMANDS
                or " ".join(words[:2]) in ADMIN_LIST_COMMANDS
                or words[0] in ADMIN_LIST_COMMANDS
            )
        limit = self.timeout if isinstance(timeout, _Default) else timeout
        check_seconds(limit)
        timer = gevent.Timeout(limit)
        timer.start()
        try:
            with self._lock:
                log.debug("%s <- %r", self.server, raw)
                return self._exchange(raw, list_reply)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self._drop()
            raise SocketTimeoutError(
                f"admin command {raw.decode('utf-8', 'replace')!r} to {self.server} "
                f"got no complete reply within {limit}s"
            ) from None
        finally:
            timer.close()

    def _call(self, command: str, list_reply: bool, timeout: Timeout) -> List[str]:
        lines = self.send_command(command, list_reply=list_reply, timeout=timeout)
        if len(lines) == 1 and lines[0].startswith("ERR"):
            try:
                parse_ok(lines)
            except ServerError as exc:
                exc.server = self.server
                exc.args = (f"{exc.args[0]} (admin {command!r} on {self.server})",)
                raise
        return lines

    def _parse(self, parser: Any, lines: List[str]) -> Any:
        try:
            return parser(lines)
        except ProtocolError as exc:
            self._drop()
            exc.args = (f"{exc.args[0]} (from {self.server})",)
            raise

    # ------------------------------------------------------------- commands
    def status(self, *, timeout: Timeout = DEFAULT) -> Dict[str, FunctionStatus]:
        """``status``: ``{function: FunctionStatus(queued, running, workers)}``.

        ``queued`` counts every job of the function in the server, the
        running ones included; ``workers`` the connections that can do it.
        """
        return self._parse(parse_status, self._call("status", True, timeout))

    def workers(self, *, timeout: Timeout = DEFAULT) -> List[WorkerInfo]:
        """``workers``: one ``WorkerInfo(fd, ip, client_id, functions)`` per
        connection to the server.  Clients (and this admin connection) are
        listed too, with no functions and, unless they set one, client id
        ``-``; filter them out with :func:`is_client`."""
        return self._parse(parse_workers, self._call("workers", True, timeout))

    def prioritystatus(self, *, timeout: Timeout = DEFAULT) -> Dict[str, PriorityStatus]:
        """``prioritystatus`` (gearmand): ``{function: PriorityStatus(high,
        normal, low, workers)}`` counting queued jobs by priority."""
        return self._parse(parse_prioritystatus, self._call("prioritystatus", True, timeout))

    def show_jobs(self, *, timeout: Timeout = DEFAULT) -> List[JobInfo]:
        """``show jobs`` (gearmand): ``JobInfo(handle, retries, ignore_job,
        job_queued)`` for every job in the server."""
        return self._parse(parse_show_jobs, self._call("show jobs", True, timeout))

    def show_unique_jobs(self, *, timeout: Timeout = DEFAULT) -> List[str]:
        """``show unique jobs`` (gearmand): the unique ids of the jobs in the
        server (jobs without a unique id are left out)."""
        return self._parse(parse_show_unique_jobs, self._call("show unique jobs", True, timeout))

    def version(self, *, timeout: Timeout = DEFAULT) -> str:
        """``version``: the server's version string (``"1.1.20+ds"``; the
        Perl Gearman::Server answers its module version, e.g. ``"v1.130.1"``)."""
        return _strip_ok(self._call("version", False, timeout)[0])

    def getpid(self, *, timeout: Timeout = DEFAULT) -> int:
        """``getpid`` (gearmand): the server's process id."""
        text = _strip_ok(self._call("getpid", False, timeout)[0])
        try:
            return int(text)
        except ValueError:
            self._drop()
            raise ProtocolError(f"unexpected getpid reply {text!r} from {self.server}") from None

    def verbose(self, *, timeout: Timeout = DEFAULT) -> str:
        """``verbose`` (gearmand): the server's log level name (``"ERROR"``...)."""
        return _strip_ok(self._call("verbose", False, timeout)[0])

    def maxqueue(
        self,
        func: Union[str, bytes],
        size: Union[None, int, Tuple[int, int, int], Sequence[int]] = None,
        *,
        timeout: Timeout = DEFAULT,
    ) -> None:
        """``maxqueue``: limit how many jobs of *func* the server queues.

        *size* is an int (every priority), a ``(high, normal, low)`` triple
        (gearmand only; the Perl server uses the first number), or None to
        remove the limit.  A submission beyond the limit is refused by the
        server with ``QUEUE_ERROR``.

        gearmand caveats: the limit is compared with *all* queued jobs of the
        function, whatever their priority; 0 or a negative size means no
        limit; and a function the server does not know yet (no job, no
        worker) is silently ignored (the reply is still ``OK``).  The Perl
        server never refuses: it fails the newest queued job instead.
        """
        name = _word(func, "function name")
        parts = ["maxqueue", name]
        if size is not None:
            if isinstance(size, (tuple, list)):
                if len(size) != 3:
                    raise InvalidArgsError("maxqueue size must be an int or a (high, normal, low) triple")
                parts.extend(str(_int_arg(s, "maxqueue size")) for s in size)
            else:
                parts.append(str(_int_arg(size, "maxqueue size")))
        self._parse(parse_ok, self._call(" ".join(parts), False, timeout))

    def cancel_job(self, handle: Union[str, bytes], *, timeout: Timeout = DEFAULT) -> None:
        """``cancel job`` (gearmand): cancel a job no worker has taken yet.

        gearmand marks the job ignored (``show_jobs()`` shows ``ignore_job``
        true): it is still counted by :meth:`status` until a worker would
        take it, and is then discarded without running.  Cancelling it again
        succeeds.  Raises :class:`ServerError` (code ``UNKNOWN_JOB``) for a
        handle the server does not know."""
        self._parse(parse_ok, self._call(f"cancel job {_word(handle, 'job handle')}", False, timeout))

    def create_function(self, func: Union[str, bytes], *, timeout: Timeout = DEFAULT) -> None:
        """``create function`` (gearmand): make the server know *func*.

        Caveat: gearmand 1.1.20 drops the last character of the name
        (``create function abc`` creates ``ab``).
        """
        self._parse(parse_ok, self._call(f"create function {_word(func, 'function name')}", False, timeout))

    def drop_function(self, func: Union[str, bytes], *, timeout: Timeout = DEFAULT) -> None:
        """``drop function`` (gearmand): forget *func*.  Raises
        :class:`ServerError` if the server does not know it."""
        self._parse(parse_ok, self._call(f"drop function {_word(func, 'function name')}", False, timeout))

    def shutdown(self, graceful: bool = False, *, timeout: Timeout = DEFAULT) -> None:
        """``shutdown [graceful]``: stop the server.

        gearmand removed this command in 1.1.15 and answers ``ERR
        UNKNOWN_COMMAND`` (raised as :class:`ServerError`); the Perl server
        implements it (graceful: stop listening, exit once no job is left).
        A server that exits without answering counts as success.  The admin
        connection is closed afterwards.
        """
        try:
            self._parse(parse_ok, self._call("shutdown graceful" if graceful else "shutdown", False, timeout))
        except _ClosedBeforeReply as exc:
            log.debug("%s went away on shutdown: %s", self.server, exc)
        finally:
            self._drop()
