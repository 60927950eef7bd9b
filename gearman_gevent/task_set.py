"""TaskSet: many tasks in flight, one wait for all of them.

Any number of TaskSets may wait at the same time, in different greenlets,
over one shared :class:`~gearman_gevent.Client`.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, List, Optional, Union

from .exceptions import GearmanError, InvalidArgsError
from .packet import BytesLike
from .task import Task

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["TaskSet"]


class TaskSet:
    """A set of tasks submitted through *client* and awaited together."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.tasks: List[Task] = []

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __repr__(self) -> str:
        done = sum(1 for t in self.tasks if t.done)
        return f"<TaskSet {done}/{len(self.tasks)} done>"

    def add_task(
        self, task: Union[Task, BytesLike], data: BytesLike = b"", timeout: Optional[float] = None, **task_options: Any
    ) -> bool:
        """Submit *task* now; True once the server created it.

        *task* is a :class:`Task`, or a function name from which one is built
        with *data* and *task_options*.  Tasks in a set run concurrently: the
        job starts as soon as it is created, whatever is added after it.  If
        it cannot be submitted, the task is marked failed (``task.error`` says
        why) and False is returned.
        """
        if not isinstance(task, Task):
            task = Task(task, data, **task_options)
        elif data or task_options:
            raise InvalidArgsError("data and task options go into the Task itself")
        self.tasks.append(task)
        try:
            self.client.submit_task(task, timeout)
        except GearmanError as exc:
            task._fail(exc)
            return False
        return True

    def add_tasks(self, tasks: Iterable[Task], timeout: Optional[float] = None) -> int:
        """Submit many tasks pipelined (one write per server); returns how
        many were created.  Tasks that could not be submitted are marked
        failed with ``task.error`` set."""
        tasks = list(tasks)
        self.tasks.extend(tasks)
        errors = self.client._submit_batch(tasks, timeout)
        created = 0
        for task, err in zip(tasks, errors):
            if err is None:
                created += 1
            else:
                task._fail(err)
        return created

    def wait(self, timeout: Optional[float] = 1.0) -> bool:
        """Wait up to *timeout* seconds (None: forever) for every task.

        True if every task finished successfully (background tasks: were
        created) within the timeout, False otherwise.
        """
        if timeout is not None and timeout < 0:
            raise InvalidArgsError("timeout must not be negative")
        end = None if timeout is None else time.monotonic() + timeout
        for task in list(self.tasks):
            remaining = None if end is None else max(0.0, end - time.monotonic())
            if not task.wait(remaining):
                return False
        return all(t.successful for t in self.tasks)

    def wait_forever(self) -> bool:
        """``wait(None)``."""
        return self.wait(None)

    @property
    def successful(self) -> List[Task]:
        """The tasks that finished successfully, in the order added."""
        return [t for t in self.tasks if t.successful]

    @property
    def failed(self) -> List[Task]:
        """The tasks that failed (WORK_FAIL, exception, lost connection or
        not submitted), in the order added."""
        return [t for t in self.tasks if t.failed]
