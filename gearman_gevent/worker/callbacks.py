"""Worker event callbacks: no-argument callables fired on worker events.

Events: ``connect`` (a connection was (re)registered), ``grab_job`` (a
GRAB_JOB_UNIQ was sent), ``no_job`` (NO_JOB came back), ``job_assign`` (a job
arrived; fired in the job's greenlet), ``work_complete``, ``work_fail``,
``work_exception`` (fired after that packet was sent).  A callback that
raises is logged with its traceback and otherwise ignored.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List

import gevent

from ..exceptions import InvalidArgsError
from .job import JobInterrupted

__all__ = ["Callbacks", "EVENTS"]

log = logging.getLogger(__name__)

EVENTS = (
    "connect", "grab_job", "no_job", "job_assign",
    "work_complete", "work_fail", "work_exception",
)

Callback = Callable[[], object]


class Callbacks:
    """Lists of callbacks per event; :meth:`fire` runs them, logging errors."""

    __slots__ = ("_lists",)

    def __init__(self) -> None:
        self._lists: Dict[str, List[Callback]] = {event: [] for event in EVENTS}

    def add(self, event: str, fn: Callback) -> Callback:
        """Register *fn* for *event*; returns *fn* (decorator friendly)."""
        if event not in self._lists:
            raise InvalidArgsError(f"unknown worker event {event!r}")
        if not callable(fn):
            raise InvalidArgsError(f"on_{event} needs a callable, not {type(fn).__name__}")
        self._lists[event].append(fn)
        return fn

    def has(self, event: str) -> bool:
        """True if *event* has a callback."""
        return bool(self._lists[event])

    def fire(self, event: str) -> None:
        """Call every callback of *event*; exceptions are logged only."""
        for fn in self._lists[event]:
            try:
                fn()
            except (gevent.GreenletExit, JobInterrupted, KeyboardInterrupt, SystemExit):
                raise  # meant for the greenlet running the callback
            except BaseException:  # Exception, and e.g. an uncaught gevent.Timeout
                log.exception("on_%s callback %r raised", event, fn)
