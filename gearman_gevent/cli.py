"""The ``gearman-gevent`` command line (also ``python -m gearman_gevent``).

Subcommands::

    submit FUNC [DATA]          run a job (DATA or stdin) and print its result
    worker FUNC... -- CMD ARGS  run CMD for every job: data on stdin, result from stdout
    status                      functions: queued, running, workers
    workers                     worker connections and their functions
    version                     each server's version

Exit codes: 0 success; 1 a job failed or a server refused a request; 2 bad
usage or no job server reachable; 3 a timeout; 130 interrupted.  Errors are
one ``error: ...`` line on stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import io
import signal
import stat
import sys
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import gevent
import gevent.pool
import gevent.subprocess

from . import __version__
from .admin import Admin, is_client
from .client import Client
from .connection import format_server
from .connection_pool import parse_servers
from .exceptions import (
    GearmanError,
    InvalidArgsError,
    JobException,
    JobFailed,
    NetworkError,
    ServerError,
    SocketTimeoutError,
)

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_JOB_FAILED", "EXIT_USAGE", "EXIT_TIMEOUT"]

log = logging.getLogger("gearman_gevent.cli")

EXIT_OK = 0
#: A job failed (WORK_FAIL / WORK_EXCEPTION) or a server answered ERR/ERROR.
EXIT_JOB_FAILED = 1
#: Bad command line, or no job server reachable.
EXIT_USAGE = 2
#: A reply or a job did not come within ``--timeout``.
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

#: ``--timeout`` default for admin commands and connecting (seconds).
DEFAULT_ADMIN_TIMEOUT = 10.0

_READ_CHUNK = 64 * 1024


class CliError(Exception):
    """A failure to report as ``error: <message>`` with exit code *code*."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------- parser
_EPILOG = """\
servers: --servers, else $GEARMAN_SERVERS, else localhost:4730
  ("host[:port][,host[:port]...]", "[v6addr]:port").
exit codes: 0 ok, 1 job failed or server refused, 2 usage or no server,
  3 timeout, 130 interrupted.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> Optional[float]:
    if text.lower() in ("none", "forever", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options; on subcommands they default to SUPPRESS so that a
    value given before the subcommand is not overwritten."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--servers", "-s", metavar="LIST", default=default,
        help="job servers, comma separated (default: $GEARMAN_SERVERS or localhost:4730)",
    )
    parser.add_argument(
        "--timeout", "-t", metavar="SECONDS", type=_seconds, default=default,
        help="seconds to wait for a reply or a job's result "
        f"(default: {DEFAULT_ADMIN_TIMEOUT:g} for admin commands, forever for jobs; "
        "'none' = forever)",
    )
    parser.add_argument(
        "--verbose", "-v", action="count", default=argparse.SUPPRESS if suppress else 0,
        help="log to stderr (-v info, -vv debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="gearman-gevent",
        description="Gearman client, worker and admin tool (gearman_gevent %s)." % __version__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gearman_gevent {__version__}")
    _add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "submit", help="submit a job and print its result",
        description="Submit a job to FUNC with DATA (or stdin) and print its result "
        "(raw bytes) to stdout; a background job prints its handle.",
    )
    _add_common(p, suppress=True)
    p.add_argument("func", metavar="FUNC", help="function name")
    p.add_argument("data", metavar="DATA", nargs="?", help="job data (default: read stdin)")
    p.add_argument("--background", "-b", action="store_true", help="submit a background job; print its handle")
    p.add_argument("--priority", "-p", choices=("high", "normal", "low"), default="normal")
    p.add_argument(
        "--unique", "-u", metavar="ID", default="",
        help="unique id (equal ids are coalesced by the server; default: none)",
    )
    p.add_argument(
        "--lines", "-l", action="store_true",
        help="one job per input line (without its newline); results in input order, one per line",
    )
    p.add_argument(
        "--concurrency", "-c", type=_positive_int, default=10, metavar="N",
        help="with --lines: jobs in flight at once (default 10)",
    )
    p.add_argument(
        "--no-progress", action="store_true",
        help="with --lines: no progress line on stderr (shown only when stderr is a terminal)",
    )

    p = sub.add_parser(
        "worker", help="run a command for every job",
        description="Register FUNC... and run COMMAND for every job: the job data on its "
        "stdin, its stdout returned as the result; a non-zero exit fails the job.  "
        "The command sees GEARMAN_FUNCTION, GEARMAN_HANDLE and GEARMAN_UNIQUE in its "
        "environment.  SIGTERM/SIGINT stop gracefully (running jobs finish); a second "
        "signal stops at once.",
        usage="%(prog)s [options] FUNC [FUNC ...] -- COMMAND [ARG ...]",
    )
    _add_common(p, suppress=True)
    p.add_argument("funcs", metavar="FUNC", nargs="+", help="function names to register")
    p.add_argument("--concurrency", "-c", type=_positive_int, default=1, metavar="N",
                   help="jobs run at once (default 1)")
    p.add_argument("--client-id", metavar="ID", default=None, help="worker id shown by 'workers'")
    p.add_argument("--job-timeout", metavar="SECONDS", type=_seconds, default=None,
                   help="fail a job whose command runs longer (the command is killed)")
    p.add_argument("--grace", metavar="SECONDS", type=_seconds, default=30.0,
                   help="on SIGTERM/SIGINT, how long running jobs may finish (default 30)")
    p.add_argument("--max-jobs", metavar="N", type=_positive_int, default=None,
                   help="exit after N jobs")

    p = sub.add_parser(
        "server", help="run the embedded job server",
        description="Run gearman_gevent's embedded job server (gearmand's protocol, "
        "on gevent) until SIGTERM/SIGINT.",
    )
    from .server.__main__ import add_arguments as add_server_arguments

    add_server_arguments(p)

    for name, text in (
        ("status", "per function: jobs queued (running included), running, workers"),
        ("workers", "connections to the server and the functions they registered"),
        ("version", "each server's version"),
    ):
        p = sub.add_parser(name, help=text, description=text.capitalize() + ".")
        _add_common(p, suppress=True)
        p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
        if name == "workers":
            p.add_argument("--all", "-a", action="store_true",
                           help="list client connections (no functions) too")
    return parser


def _split_worker_command(argv: List[str]) -> Tuple[List[str], Optional[List[str]]]:
    """Split ``... worker FUNC... -- COMMAND ARGS`` at the ``--``."""
    if "worker" in argv and "--" in argv:
        idx = argv.index("--")
        if argv.index("worker") < idx:
            return argv[:idx], argv[idx + 1:]
    return argv, None


# ---------------------------------------------------------------- helpers
def _servers(args: argparse.Namespace) -> List[Tuple[str, int]]:
    spec = args.servers or os.environ.get("GEARMAN_SERVERS") or "localhost:4730"
    try:
        return parse_servers(spec)
    except InvalidArgsError as exc:
        raise CliError(f"bad --servers {spec!r}: {exc}") from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Aligned columns: numbers right-aligned, text left-aligned."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if i in numeric:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)


def _cooperative_lines(stream: Any) -> Iterator[bytes]:
    """Yield the lines of *stream* without their line end, reading in a
    thread so that running jobs are not blocked by a slow producer."""
    pool = gevent.get_hub().threadpool
    read = getattr(stream, "read1", stream.read)
    buf = b""
    while True:
        chunk = pool.apply(read, (_READ_CHUNK,))
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if buf:
        yield buf[:-1] if buf.endswith(b"\r") else buf


class _Progress:
    """A one-line progress display on stderr (only on a terminal): a bar
    when the number of jobs is known, else counters; the final state stays
    on screen."""

    def __init__(self, enabled: bool, total: Optional[int] = None) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, in_flight: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        rate = self.done / max(now - self.started, 1e-6)
        tail = f"{self.failed} failed, {in_flight} running, {rate:.1f}/s"
        if self.total:
            width = 24
            filled = min(width, self.done * width // self.total)
            pct = 100 * self.done // self.total
            text = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} ({pct}%), {tail}"
        else:
            text = f"{self.done} done, {tail}"
        sys.stderr.write(f"\r{text}\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(0, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _count_lines(stream: Any) -> Optional[int]:
    """Number of lines of *stream* if it is a regular file (rewound after
    counting), else None."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        pos = stream.tell()
        count = 0
        last = b"\n"
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            count += chunk.count(b"\n")
            last = chunk[-1:]
        stream.seek(pos)
        return count + (last != b"\n")
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


# ---------------------------------------------------------------- submit
def _submit_options(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "priority": None if args.priority == "normal" else args.priority,
        "unique": args.unique,
    }


def _cmd_submit(args: argparse.Namespace) -> int:
    if args.lines and args.unique:
        raise CliError("--unique cannot be used with --lines (every line would be the same job)")
    servers = _servers(args)
    timeout = getattr(args, "timeout", None)
    connect_timeout = DEFAULT_ADMIN_TIMEOUT if timeout is None else min(timeout, DEFAULT_ADMIN_TIMEOUT)
    with Client(servers, connect_timeout=connect_timeout,
                task_create_timeout=DEFAULT_ADMIN_TIMEOUT if timeout is None else timeout) as client:
        if args.lines:
            show = sys.stderr.isatty() and not args.no_progress
            total: Optional[int] = None
            if args.data is not None:
                items = args.data.encode("utf-8").splitlines()
                total = len(items)
                lines: Iterator[bytes] = iter(items)
            else:
                total = _count_lines(sys.stdin.buffer) if show else None
                lines = _cooperative_lines(sys.stdin.buffer)
            return _submit_lines(client, args, lines, timeout, _Progress(show, total))
        data = args.data.encode("utf-8") if args.data is not None else sys.stdin.buffer.read()
        return _submit_one(client, args, data, timeout)


def _run_job(client: Client, args: argparse.Namespace, data: bytes, timeout: Optional[float]) -> bytes:
    """One job: its result (foreground) or handle (background)."""
    if args.background:
        task = client.submit(args.func, data, background=True, timeout=timeout, **_submit_options(args))
        return task.handle  # type: ignore[return-value]
    return client.do(args.func, data, timeout=timeout, **_submit_options(args))


def _try_job(
    client: Client, args: argparse.Namespace, data: bytes, timeout: Optional[float]
) -> Tuple[bool, Any]:
    """:func:`_run_job` returning ``(True, result)`` or ``(False, error)``."""
    try:
        return True, _run_job(client, args, data, timeout)
    except GearmanError as exc:
        return False, exc


def _submit_one(client: Client, args: argparse.Namespace, data: bytes, timeout: Optional[float]) -> int:
    result = _run_job(client, args, data, timeout)
    if args.background:
        result += b"\n"
    elif sys.stdout.isatty() and not result.endswith(b"\n"):
        result += b"\n"
    _write(result)
    sys.stdout.flush()
    return EXIT_OK


def _submit_lines(
    client: Client,
    args: argparse.Namespace,
    lines: Iterator[bytes],
    timeout: Optional[float],
    progress: _Progress,
) -> int:
    """Many jobs, ``--concurrency`` at once; results printed in input order.

    A failed job prints an empty line (so output lines match input lines)
    and an ``error: line N: ...`` line on stderr; the exit code is then the
    worst one seen.
    """
    pool = gevent.pool.Pool(args.concurrency)
    window: Deque[Tuple[int, gevent.Greenlet]] = deque()
    # at most this many jobs are running or finished-but-unprinted
    limit = 4 * args.concurrency
    worst = EXIT_OK

    def flush(block: bool) -> None:
        nonlocal worst
        wrote = False
        while window and (block or window[0][1].ready()):
            number, greenlet = window.popleft()
            greenlet.join()
            ok, value = greenlet.value
            if ok:
                _write(value + b"\n")
                progress.done += 1
            else:
                exc = value
                code, message = _describe(exc)
                if code == EXIT_USAGE and isinstance(exc, NetworkError):
                    raise exc  # no server: stop, do not report every line
                worst = max(worst, code)
                progress.failed += 1
                progress.done += 1
                _write(b"\n")
                sys.stderr.write(f"error: line {number}: {message}\n")
            wrote = True
            block = False
        if wrote:
            sys.stdout.flush()
        progress.update(len(window))

    try:
        for number, line in enumerate(lines, 1):
            while len(window) >= limit:
                flush(block=True)
            greenlet = pool.spawn(_try_job, client, args, line, timeout)
            window.append((number, greenlet))
            flush(block=False)
        while window:
            flush(block=True)
    finally:
        pool.kill(block=False)
        progress.close()
    return worst


# ---------------------------------------------------------------- worker
def _job_env(job: Any) -> Dict[str, str]:
    env = dict(os.environ)
    for name, attr in (("GEARMAN_FUNCTION", "function"), ("GEARMAN_HANDLE", "handle"),
                       ("GEARMAN_UNIQUE", "unique")):
        value = getattr(job, attr, None)
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if value is not None:
            env[name] = str(value).replace("\0", "")
    return env


def make_command_ability(command: List[str]) -> Callable[[bytes, Any], Optional[bytes]]:
    """An ability running *command* per job: the data on its stdin, its
    stdout as the result; a non-zero exit returns None (WORK_FAIL).

    Each command runs in its own session (process group), so a Ctrl-C meant
    for the worker does not kill running jobs (the worker stops gracefully
    instead); if the job is interrupted (job timeout, forced stop) the
    whole group is killed, children of the command included."""

    def run(data: bytes, job: Any) -> Optional[bytes]:
        handle = getattr(job, "handle", "?")
        try:
            proc = gevent.subprocess.Popen(
                command, stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE,
                env=_job_env(job), start_new_session=True,
            )
        except OSError as exc:
            log.error("job %r: cannot run %r: %s", handle, command[0], exc)
            return None
        try:
            out, _ = proc.communicate(bytes(data))
        except BaseException:
            log.warning("job %r interrupted: killing %r (pid %d)", handle, command[0], proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            log.warning("job %r: %r exited with %d: failing the job", handle, command[0], proc.returncode)
            return None
        return out

    return run


def _cmd_worker(args: argparse.Namespace, command: Optional[List[str]]) -> int:
    if not command:
        raise CliError("worker needs a command after '--', e.g.: worker rev -- rev")
    try:
        from .worker import Worker  # the Worker is optional at import time
    except ImportError as exc:
        raise CliError(f"the Worker is not available: {exc}") from None
    servers = _servers(args)
    kwargs: Dict[str, Any] = {"concurrency": args.concurrency}
    if args.client_id:
        kwargs["client_id"] = args.client_id
    worker = Worker(servers, **kwargs)
    ability = make_command_ability(command)
    for func in args.funcs:
        if args.job_timeout is not None:
            worker.add_ability(func, ability, timeout=args.job_timeout)
        else:
            worker.add_ability(func, ability)

    install = getattr(worker, "install_signal_handlers", None)
    if install is not None:
        # first SIGTERM/SIGINT: stop(grace); a second one: stop(0)
        uninstall = install(timeout=args.grace)
    else:  # pragma: no cover - a Worker without the helper
        stopping: List[bool] = []

        def on_signal(signum: int) -> None:
            log.info("signal %d: stopping", signum)
            gevent.spawn(worker.stop, 0 if stopping else args.grace)
            stopping.append(True)

        handlers = [gevent.signal_handler(sig, on_signal, sig) for sig in (signal.SIGTERM, signal.SIGINT)]

        def uninstall() -> None:
            for h in handlers:
                h.cancel()

    log.info("worker for %s on %s running %r", ", ".join(args.funcs),
             ", ".join(format_server(h, p) for h, p in servers), command)
    try:
        worker.work(max_jobs=args.max_jobs)  # returns once stopped and closed
        worker.stop(args.grace)  # no-op unless work() ended some other way
    finally:
        uninstall()
    return EXIT_OK


# ----------------------------------------------------------------- admin
def _per_server(
    args: argparse.Namespace, fn: Callable[[Admin], Any]
) -> Tuple[Dict[str, Any], Dict[str, BaseException]]:
    """Run *fn* on an Admin for every server, concurrently."""
    timeout = getattr(args, "timeout", None)
    if timeout is None:
        timeout = DEFAULT_ADMIN_TIMEOUT
    servers = _servers(args)

    def one(host: str, port: int) -> Tuple[bool, Any]:
        try:
            with Admin((host, port), timeout=timeout) as admin:
                return True, fn(admin)
        except GearmanError as exc:
            return False, exc

    greenlets = [(format_server(h, p), gevent.spawn(one, h, p)) for h, p in servers]
    gevent.joinall([g for _, g in greenlets], raise_error=True)
    results: Dict[str, Any] = {}
    errors: Dict[str, BaseException] = {}
    for name, g in greenlets:
        ok, value = g.value
        if ok:
            results[name] = value
        else:
            errors[name] = value
    return results, errors


def _report_errors(errors: Dict[str, BaseException]) -> int:
    code = EXIT_OK
    for server, exc in errors.items():
        c, message = _describe(exc)
        sys.stderr.write(f"error: {server}: {message}\n")
        code = max(code, c)
    return code


def _cmd_status(args: argparse.Namespace) -> int:
    results, errors = _per_server(args, lambda a: a.status())
    if args.json:
        print(json.dumps({s: {f: st._asdict() for f, st in sorted(v.items())} for s, v in results.items()},
                         indent=2, sort_keys=True))
    else:
        multi = len(results) + len(errors) > 1
        rows = []
        for server, status in results.items():
            for func, st in sorted(status.items()):
                rows.append(([server] if multi else []) + [func, st.queued, st.running, st.workers])
        headers = (["SERVER"] if multi else []) + ["FUNCTION", "QUEUED", "RUNNING", "WORKERS"]
        off = 1 if multi else 0
        if results:
            sys.stdout.write(_table(headers, rows, numeric=(off + 1, off + 2, off + 3)))
    return _report_errors(errors)


def _cmd_workers(args: argparse.Namespace) -> int:
    results, errors = _per_server(args, lambda a: a.workers())
    if not args.all:
        results = {s: [w for w in v if not is_client(w)] for s, v in results.items()}
    if args.json:
        print(json.dumps({s: [w._asdict() for w in v] for s, v in results.items()}, indent=2, sort_keys=True))
    else:
        multi = len(results) + len(errors) > 1
        rows = []
        for server, infos in results.items():
            for w in infos:
                rows.append(([server] if multi else []) + [w.fd, w.ip, w.client_id, " ".join(w.functions)])
        headers = (["SERVER"] if multi else []) + ["FD", "IP", "CLIENT-ID", "FUNCTIONS"]
        if results:
            sys.stdout.write(_table(headers, rows, numeric=(1 if multi else 0,)))
    return _report_errors(errors)


def _cmd_version(args: argparse.Namespace) -> int:
    results, errors = _per_server(args, lambda a: a.version())
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        if results:
            sys.stdout.write(_table(["SERVER", "VERSION"], sorted(results.items())))
    return _report_errors(errors)


# ------------------------------------------------------------------ main
def _describe(exc: BaseException) -> Tuple[int, str]:
    """Exit code and one-line message for an exception."""
    if isinstance(exc, SocketTimeoutError):
        return EXIT_TIMEOUT, f"timed out: {exc}"
    if isinstance(exc, NetworkError):
        text = str(exc)
        if text.startswith("cannot connect"):
            text = f"no job server available: {text}"
        elif not text.startswith("no job server available"):
            text = f"network error: {text}"
        return EXIT_USAGE, text
    if isinstance(exc, JobException):
        return EXIT_JOB_FAILED, f"job raised an exception: {exc.message}"
    if isinstance(exc, JobFailed):
        return EXIT_JOB_FAILED, str(exc)
    if isinstance(exc, ServerError):
        return EXIT_JOB_FAILED, f"server refused: {exc}"
    if isinstance(exc, InvalidArgsError):
        return EXIT_USAGE, f"invalid argument: {exc}"
    if isinstance(exc, GearmanError):
        return EXIT_JOB_FAILED, str(exc)
    return EXIT_JOB_FAILED, f"{type(exc).__name__}: {exc}"


def _setup_logging(verbosity: int) -> Callable[[], None]:
    """Default: only the CLI's own warnings (failures are reported as one
    ``error:`` line, so the library's logging stays quiet); ``-v`` INFO from
    everything, ``-vv`` DEBUG.  Returns a function restoring the previous
    logging setup (``main()`` may be called in-process)."""
    root = logging.getLogger()
    lib = logging.getLogger("gearman_gevent")
    saved = (lib.level, log.level)
    handler: Optional[logging.Handler] = None
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    if verbosity <= 0:
        lib.setLevel(logging.CRITICAL)
        log.setLevel(logging.WARNING)
    else:
        level = logging.INFO if verbosity == 1 else logging.DEBUG
        lib.setLevel(level)
        log.setLevel(level)

    def restore() -> None:
        lib.setLevel(saved[0])
        log.setLevel(saved[1])
        if handler is not None:
            root.removeHandler(handler)

    return restore


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); returns
    the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, command = _split_worker_command(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "server":  # a long-running service with its own logging
        from .server.__main__ import run as run_server

        return run_server(args)
    restore_logging = _setup_logging(args.verbose)
    try:
        if args.command == "submit":
            return _cmd_submit(args)
        if args.command == "worker":
            return _cmd_worker(args, command)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "workers":
            return _cmd_workers(args)
        if args.command == "version":
            return _cmd_version(args)
        raise CliError(f"unknown command {args.command!r}")  # pragma: no cover
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except GearmanError as exc:
        code, message = _describe(exc)
        sys.stderr.write(f"error: {message}\n")
        return code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our stdout went away (e.g. `| head`): stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return EXIT_OK
    finally:
        restore_logging()
