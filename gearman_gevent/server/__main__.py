"""Command line: ``python -m gearman_gevent.server [--listen ADDR] [--port N]
[--queue sqlite:PATH]``.

:func:`add_arguments` and :func:`run` let another CLI (``python -m
gearman_gevent server``) reuse this one::

    add_arguments(subparsers.add_parser("server"))
    ...
    return run(args)
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import List, Optional

import gevent

from .server import Server

__all__ = ["add_arguments", "run", "main"]

log = logging.getLogger("gearman_gevent.server")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the server's options to *parser* and return it."""
    parser.add_argument("-L", "--listen", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("-p", "--port", type=int, default=4730, help="TCP port (default 4730; 0 = any free)")
    parser.add_argument("-q", "--queue", default=None,
                        help="persistent queue for background jobs: sqlite:PATH")
    parser.add_argument("--exceptions", action="store_true",
                        help="give every connection the 'exceptions' option")
    parser.add_argument("--job-retries", type=int, default=0,
                        help="drop a job after N requeues (0 = unlimited)")
    parser.add_argument("--worker-wakeup", type=int, default=0,
                        help="NOOP at most N sleeping workers per job (0 = all)")
    parser.add_argument("--job-handle-prefix", default=None, help="job handle prefix (default H:<hostname>:)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a server configured by parsed *args* until SIGTERM/SIGINT or the
    admin ``shutdown`` command; return an exit status."""
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(
        args.listen, args.port, queue=args.queue, exceptions=args.exceptions,
        job_retries=args.job_retries, worker_wakeup=args.worker_wakeup,
        handle_prefix=args.job_handle_prefix,
    )
    try:
        server.start()
    except (OSError, ValueError) as exc:
        print(f"gearman_gevent server: cannot start: {exc}", file=sys.stderr)
        return 1
    if server.engine is not None:
        server.engine.verbose = logging.getLevelName(level)

    def on_signal() -> None:
        log.info("signal received; stopping")
        gevent.spawn(server.stop)

    handlers = [gevent.signal_handler(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)]
    print(f"listening on {server.address}", flush=True)
    try:
        server.serve_forever()
    finally:
        for h in handlers:
            h.cancel()
    log.info("stopped")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Parse *argv* (default ``sys.argv[1:]``) and run the server."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m gearman_gevent.server", description="A Gearman job server on gevent."))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
