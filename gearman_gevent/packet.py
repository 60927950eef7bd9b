"""Sans-IO codec for the Gearman protocol: no sockets, no gevent.

Binary packets (``\\0REQ``/``\\0RES`` + type + length + NUL-separated
arguments) are built with :func:`pack_request` / :func:`pack_response` and read
back incrementally with :class:`Decoder`, which accepts bytes in chunks of any
size and returns whole :class:`Packet` objects.  The admin text protocol's
replies are read with :class:`AdminReplyParser` and turned into values by the
``parse_*`` helpers.

Command names follow gearman-ruby (``"submit_job_high_bg"``,
``"grab_job_uniq"``, ...); :data:`COMMANDS` maps number to name and
:data:`NUMS` name to number.
"""
from __future__ import annotations

import struct
from urllib.parse import unquote_plus
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from .exceptions import InvalidArgsError, ProtocolError, ServerError

__all__ = [
    "REQ",
    "RES",
    "COMMANDS",
    "NUMS",
    "ARGC",
    "DEFAULT_MAX_PACKET_SIZE",
    "Packet",
    "TextCommand",
    "WrongMagic",
    "Decoder",
    "pack",
    "pack_request",
    "pack_response",
    "to_bytes",
    "AdminReplyParser",
    "FunctionStatus",
    "PriorityStatus",
    "WorkerInfo",
    "JobInfo",
    "parse_status",
    "parse_prioritystatus",
    "parse_workers",
    "parse_show_jobs",
    "parse_show_unique_jobs",
    "parse_ok",
    "LIST_COMMANDS",
    "JobStatus",
    "UniqueStatus",
    "parse_status_res",
    "parse_status_res_unique",
]

REQ = b"\0REQ"
RES = b"\0RES"
HEADER = struct.Struct(">4sII")
HEADER_SIZE = 12
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024
#: The longest admin text line the decoder buffers before giving up.
MAX_TEXT_LINE = 64 * 1024

# number: (name, argument count)
_TABLE: Dict[int, Tuple[str, int]] = {
    1: ("can_do", 1),
    2: ("cant_do", 1),
    3: ("reset_abilities", 0),
    4: ("pre_sleep", 0),
    6: ("noop", 0),
    7: ("submit_job", 3),
    8: ("job_created", 1),
    9: ("grab_job", 0),
    10: ("no_job", 0),
    11: ("job_assign", 3),
    12: ("work_status", 3),
    13: ("work_complete", 2),
    14: ("work_fail", 1),
    15: ("get_status", 1),
    16: ("echo_req", 1),
    17: ("echo_res", 1),
    18: ("submit_job_bg", 3),
    19: ("error", 2),
    20: ("status_res", 5),
    21: ("submit_job_high", 3),
    22: ("set_client_id", 1),
    23: ("can_do_timeout", 2),
    24: ("all_yours", 0),
    25: ("work_exception", 2),
    26: ("option_req", 1),
    27: ("option_res", 1),
    28: ("work_data", 2),
    29: ("work_warning", 2),
    30: ("grab_job_uniq", 0),
    31: ("job_assign_uniq", 4),
    32: ("submit_job_high_bg", 3),
    33: ("submit_job_low", 3),
    34: ("submit_job_low_bg", 3),
    35: ("submit_job_sched", 8),
    36: ("submit_job_epoch", 4),
    37: ("submit_reduce_job", 4),
    38: ("submit_reduce_job_background", 4),
    39: ("grab_job_all", 0),
    40: ("job_assign_all", 5),
    41: ("get_status_unique", 1),
    42: ("status_res_unique", 6),
}

#: Packet type number -> gearman-ruby command name.
COMMANDS: Dict[int, str] = {num: name for num, (name, _) in _TABLE.items()}
#: Command name -> packet type number.
NUMS: Dict[str, int] = {name: num for num, name in COMMANDS.items()}
#: Packet type number -> number of NUL-separated arguments.
ARGC: Dict[int, int] = {num: argc for num, (_, argc) in _TABLE.items()}

# Single-argument packets whose argument is a handle/name that some servers
# follow with a stray NUL (gearmand's converted WORK_FAIL is ``handle\0``).
_CUT_AT_NUL = frozenset((NUMS["job_created"], NUMS["work_fail"], NUMS["option_res"]))

BytesLike = Union[bytes, bytearray, memoryview, str]


class Packet(NamedTuple):
    """One decoded binary packet: its type number and its arguments (bytes)."""

    type: int
    args: Tuple[bytes, ...]

    @property
    def name(self) -> str:
        """The gearman-ruby name of the packet type (``"job_created"``...)."""
        return COMMANDS[self.type]

    @property
    def data(self) -> bytes:
        """The raw packet body: the arguments joined by NUL bytes."""
        return b"\0".join(self.args)


class WrongMagic(NamedTuple):
    """A well-formed packet that carried the other magic (a response sent to
    a server); returned instead of raising by a decoder made with
    ``tolerate_magic=True``, because gearmand answers it with ``ERROR
    INVALID_MAGIC`` and keeps the connection."""

    type: int
    args: Tuple[bytes, ...]


class TextCommand(NamedTuple):
    """One admin text line received by a server (``b"status"``...)."""

    line: bytes


def to_bytes(value: BytesLike, what: str = "argument") -> bytes:
    """Return *value* as bytes: str is UTF-8 encoded, bytes-likes copied.

    Raises :class:`InvalidArgsError` for any other type.
    """
    if type(value) is bytes:
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgsError(
        f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}"
    )


def _type_number(command: Union[str, int]) -> int:
    if isinstance(command, int) and not isinstance(command, bool):
        if command not in COMMANDS:
            raise InvalidArgsError(f"unknown packet type {command}")
        return command
    try:
        return NUMS[command]  # type: ignore[index]
    except (KeyError, TypeError):
        raise InvalidArgsError(f"unknown packet type {command!r}") from None


def pack(magic: bytes, command: Union[str, int], *args: BytesLike) -> bytes:
    """Build one packet with *magic* (:data:`REQ` or :data:`RES`).

    Exactly ``argc - 1`` NUL separators are emitted; the last argument may hold
    any bytes, the others must be free of NUL (else :class:`InvalidArgsError`).
    """
    num = NUMS.get(command) if type(command) is str else None  # type: ignore[arg-type]
    if num is None:
        num = _type_number(command)
    argc = ARGC[num]
    if len(args) != argc:
        raise InvalidArgsError(
            f"{COMMANDS[num]} takes {argc} argument(s), {len(args)} given"
        )
    if argc == 0:
        return HEADER.pack(magic, num, 0)
    parts = [a if type(a) is bytes else to_bytes(a) for a in args]
    for part in parts[:-1]:
        if b"\0" in part:
            raise InvalidArgsError(f"{COMMANDS[num]}: only the last argument may contain NUL")
    body = b"\0".join(parts) if argc > 1 else parts[0]
    return HEADER.pack(magic, num, len(body)) + body


def pack_request(command: Union[str, int], *args: BytesLike) -> bytes:
    """Build a request packet (``\\0REQ``), e.g. ``pack_request("echo_req", b"x")``."""
    return pack(REQ, command, *args)


def pack_response(command: Union[str, int], *args: BytesLike) -> bytes:
    """Build a response packet (``\\0RES``), as a server sends it."""
    return pack(RES, command, *args)


class Decoder:
    """Incremental packet decoder.

    Feed it bytes as they arrive (:meth:`feed`); it returns every packet that
    is complete and keeps the rest for the next call.  Arguments are split by
    each type's argument count, so the last one may contain NULs.

    *magic* is the magic expected (:data:`RES` on a client, :data:`REQ` on a
    server).  A body longer than *max_packet_size* raises
    :class:`ProtocolError` before anything is allocated for it.  With
    *allow_text*, a chunk that does not start with NUL is read as an admin
    text line and returned as :class:`TextCommand` (the server side).

    With *tolerate_magic*, a whole packet with the other magic is returned
    as :class:`WrongMagic` instead of raising.

    After a :class:`ProtocolError` the stream is unusable; close it.
    """

    __slots__ = ("magic", "max_packet_size", "allow_text", "tolerate_magic",
                 "_buf", "_parts", "_have", "_need")

    def __init__(
        self,
        magic: bytes = RES,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        allow_text: bool = False,
        tolerate_magic: bool = False,
    ) -> None:
        if magic not in (REQ, RES):
            raise InvalidArgsError("magic must be REQ or RES")
        if not isinstance(max_packet_size, int) or max_packet_size < 0:
            raise InvalidArgsError("max_packet_size must be a non-negative int")
        self.magic = magic
        self.max_packet_size = max_packet_size
        self.allow_text = allow_text
        self.tolerate_magic = tolerate_magic
        self._buf = b""
        # A large packet arriving in many chunks is collected in a list and
        # joined once it is whole, so its bytes are copied once, not per chunk.
        self._parts: List[bytes] = []
        self._have = 0
        self._need = 0

    @property
    def buffered(self) -> int:
        """Number of bytes held that do not yet make a whole packet."""
        return len(self._buf) + self._have

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Union[Packet, TextCommand, WrongMagic]]:
        """Add *data* and return the packets it completes (maybe none)."""
        if self._need:
            self._parts.append(bytes(data))
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = self._buf + b"".join(self._parts)
            self._parts = []
            self._have = self._need = 0
        else:
            buf = self._buf + data if self._buf else bytes(data)
        out: List[Union[Packet, TextCommand, WrongMagic]] = []
        pos = 0
        end = len(buf)
        unpack_from = HEADER.unpack_from
        magic_expected = self.magic
        table = ARGC
        while pos < end:
            if buf[pos] != 0:
                if not self.allow_text:
                    raise ProtocolError(f"invalid magic {buf[pos:pos + 4]!r}")
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if end - pos > MAX_TEXT_LINE:
                        raise ProtocolError("admin text line too long")
                    break
                line = buf[pos:nl]
                if line.endswith(b"\r"):
                    line = line[:-1]
                out.append(TextCommand(line))
                pos = nl + 1
                continue
            if end - pos < HEADER_SIZE:
                # Check what we have of the magic so garbage fails fast; the
                # type and length bytes after it are checked once whole.
                head = buf[pos:min(end, pos + 4)]
                if not magic_expected.startswith(head) and not (
                    self.tolerate_magic and (REQ.startswith(head) or RES.startswith(head))
                ):
                    raise ProtocolError(f"invalid magic {head!r}")
                break
            magic, num, size = unpack_from(buf, pos)
            make: Any = Packet
            if magic != magic_expected:
                if not (self.tolerate_magic and (magic == REQ or magic == RES)):
                    raise ProtocolError(f"invalid magic {magic!r}")
                make = WrongMagic
            argc = table.get(num)
            if argc is None:
                raise ProtocolError(f"unknown packet type {num}")
            if size > self.max_packet_size:
                raise ProtocolError(
                    f"packet of {size} bytes exceeds the limit of {self.max_packet_size}"
                )
            start = pos + HEADER_SIZE
            stop = start + size
            if stop > end:
                if stop - pos > 65536:
                    self._need = stop - end
                break
            pos = stop
            if argc == 1:
                body = buf[start:stop]
                if num in _CUT_AT_NUL:
                    nul = body.find(b"\0")
                    if nul >= 0:
                        body = body[:nul]
                out.append(make(num, (body,)))
            elif argc == 0:
                out.append(make(num, ()))
            else:
                args = buf[start:stop].split(b"\0", argc - 1)
                if len(args) != argc:
                    raise ProtocolError(
                        f"{COMMANDS[num]} needs {argc} arguments, got {len(args)}"
                    )
                out.append(make(num, tuple(args)))
        self._buf = buf[pos:] if pos < end else b""
        return out


class JobStatus(NamedTuple):
    """A job's state as STATUS_RES reports it."""

    known: bool
    running: bool
    numerator: int
    denominator: int


class UniqueStatus(NamedTuple):
    """A job's state as STATUS_RES_UNIQUE reports it (gearmand >= 1.1)."""

    known: bool
    running: bool
    numerator: int
    denominator: int
    waiting_clients: int


def _num(value: bytes) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        raise ProtocolError(f"non-numeric status field {value!r}") from None


def parse_status_res(args: Sequence[bytes]) -> JobStatus:
    """STATUS_RES arguments ``(handle, known, running, num, den)`` -> JobStatus."""
    return JobStatus(args[1] == b"1", args[2] == b"1", _num(args[3]), _num(args[4]))


def parse_status_res_unique(args: Sequence[bytes]) -> UniqueStatus:
    """STATUS_RES_UNIQUE arguments -> UniqueStatus."""
    return UniqueStatus(
        args[1] == b"1", args[2] == b"1", _num(args[3]), _num(args[4]), _num(args[5])
    )


# --------------------------------------------------------------------------
# Admin text protocol
# --------------------------------------------------------------------------

#: Admin commands whose reply is a list of lines ended by a ``.`` line.
LIST_COMMANDS = frozenset(
    ("status", "workers", "prioritystatus", "show jobs", "show unique jobs",
     # the Perl Gearman::Server's own list commands
     "jobs", "clients", "gladiator")
)


class FunctionStatus(NamedTuple):
    """One line of ``status``: jobs queued (including running), running, workers."""

    queued: int
    running: int
    workers: int


class PriorityStatus(NamedTuple):
    """One line of ``prioritystatus``: queued jobs by priority, and workers."""

    high: int
    normal: int
    low: int
    workers: int


class WorkerInfo(NamedTuple):
    """One line of ``workers``; client connections have no functions."""

    fd: int
    ip: str
    client_id: str
    functions: List[str]

    @property
    def is_client(self) -> bool:
        """True for a connection that registered no function (a client, an
        admin connection, or a worker before its CAN_DO)."""
        return not self.functions


class JobInfo(NamedTuple):
    """One line of ``show jobs``."""

    handle: str
    retries: int
    ignore_job: bool
    job_queued: bool


class AdminReplyParser:
    """Collects one admin reply from a byte stream.

    A list reply ends with a line holding a single ``.``; any other reply is a
    single line.  A reply whose first line starts with ``ERR`` is always a
    single line.  :meth:`feed` returns the reply's lines (without line ends)
    once it is complete, else None; :attr:`rest` holds bytes after the reply.
    """

    def __init__(self, list_reply: bool, max_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.list_reply = list_reply
        self.max_size = max_size
        self._buf = b""
        self._lines: List[str] = []
        self.rest = b""

    def feed(self, data: bytes) -> Optional[List[str]]:
        """Add *data*; the reply's lines once it is complete, else None."""
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_size:
                    raise ProtocolError("admin reply too long")
                return None
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not self._lines and (
                not self.list_reply or (line.startswith("ERR ") and "\t" not in line)
            ):
                self.rest = self._buf
                return [line]
            if line == ".":
                self.rest = self._buf
                return self._lines
            self._lines.append(line)


def _raise_err(line: str) -> None:
    if line.startswith("ERR"):
        parts = line.split(" ", 2)
        code = parts[1] if len(parts) > 1 else "UNKNOWN_ERROR"
        # gearmand writes spaces as '+'; the Perl server %-escapes too
        text = unquote_plus(parts[2]).strip() if len(parts) > 2 else ""
        raise ServerError(code, text)


def _check_list(lines: Sequence[str]) -> None:
    if len(lines) == 1:
        _raise_err(lines[0])


def _int(value: str, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(f"unexpected admin line {line!r}") from None


def parse_ok(lines: Sequence[str]) -> str:
    """Check a single-line reply: return the text after ``OK`` or raise
    :class:`ServerError` for ``ERR``."""
    line = lines[0] if lines else ""
    _raise_err(line)
    if line == "OK":
        return ""
    if line.startswith("OK "):
        return line[3:]
    raise ProtocolError(f"unexpected admin reply {line!r}")


def parse_status(lines: Sequence[str]) -> Dict[str, FunctionStatus]:
    """Parse the ``status`` reply into ``{function: FunctionStatus}``."""
    _check_list(lines)
    result: Dict[str, FunctionStatus] = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) < 4:
            raise ProtocolError(f"unexpected status line {line!r}")
        name = "\t".join(fields[:-3])
        result[name] = FunctionStatus(*(_int(f, line) for f in fields[-3:]))
    return result


def parse_prioritystatus(lines: Sequence[str]) -> Dict[str, PriorityStatus]:
    """Parse the ``prioritystatus`` reply into ``{function: PriorityStatus}``."""
    _check_list(lines)
    result: Dict[str, PriorityStatus] = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) < 5:
            raise ProtocolError(f"unexpected prioritystatus line {line!r}")
        name = "\t".join(fields[:-4])
        result[name] = PriorityStatus(*(_int(f, line) for f in fields[-4:]))
    return result


def parse_workers(lines: Sequence[str]) -> List[WorkerInfo]:
    """Parse the ``workers`` reply (every connection, clients included)."""
    _check_list(lines)
    result: List[WorkerInfo] = []
    for line in lines:
        head, sep, funcs = line.partition(" :")
        parts = head.split(" ", 2)
        if not sep or len(parts) < 3:
            raise ProtocolError(f"unexpected workers line {line!r}")
        result.append(
            WorkerInfo(_int(parts[0], line), parts[1], parts[2], funcs.split())
        )
    return result


def parse_show_jobs(lines: Sequence[str]) -> List[JobInfo]:
    """Parse the ``show jobs`` reply."""
    _check_list(lines)
    result: List[JobInfo] = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 4:
            raise ProtocolError(f"unexpected show jobs line {line!r}")
        result.append(
            JobInfo(
                fields[0],
                _int(fields[1], line),
                bool(_int(fields[2], line)),
                bool(_int(fields[3], line)),
            )
        )
    return result


def parse_show_unique_jobs(lines: Sequence[str]) -> List[str]:
    """Parse the ``show unique jobs`` reply into a list of uniques."""
    _check_list(lines)
    return [line for line in lines if line]
