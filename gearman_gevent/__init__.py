"""gearman_gevent: a gevent-cooperative Gearman client and worker.

Blocking-style code on gevent sockets: one process waits on many TaskSets at
once, one worker process runs many jobs at once, each in its own greenlet.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .exceptions import (
    GearmanError,
    InvalidArgsError,
    JobException,
    JobFailed,
    JobQueueError,
    NetworkError,
    NoJobServersError,
    ProtocolError,
    ServerError,
    SocketTimeoutError,
    DeadlockError,
)
from .packet import FunctionStatus, JobStatus, UniqueStatus, WorkerInfo
from .connection import Connection
from .connection_pool import ConnectionPool
from .task import BackgroundTask, Task
from .task_set import TaskSet
from .client import Client
from .worker import Job, Worker
from .admin import Admin

__all__ = [
    "__version__",
    "Client",
    "Admin",
    "Task",
    "BackgroundTask",
    "TaskSet",
    "Worker",
    "Job",
    "Connection",
    "ConnectionPool",
    "JobStatus",
    "UniqueStatus",
    "FunctionStatus",
    "WorkerInfo",
    "GearmanError",
    "InvalidArgsError",
    "ProtocolError",
    "NetworkError",
    "NoJobServersError",
    "JobQueueError",
    "SocketTimeoutError",
    "DeadlockError",
    "ServerError",
    "JobFailed",
    "JobException",
]
