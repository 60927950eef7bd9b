"""The worker half of gearman_gevent: :class:`Worker`, :class:`Job`,
:class:`Ability` and the exceptions used to interrupt a job."""
from __future__ import annotations

from .ability import Ability
from .job import Job, JobInterrupted, JobStopped, JobTimedOut
from .worker import DEFAULT_WAKEUP_INTERVAL, Worker

__all__ = [
    "Worker",
    "Job",
    "Ability",
    "JobInterrupted",
    "JobTimedOut",
    "JobStopped",
    "DEFAULT_WAKEUP_INTERVAL",
]
