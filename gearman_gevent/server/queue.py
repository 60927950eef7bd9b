"""Persistent queues for background jobs of the embedded server.

Only background jobs are stored (as gearmand does): a row is written when
the job is created and deleted when it ends.  The engine groups the writes
of one batch of packets into one transaction and commits it *before* any
reply of that batch (JOB_CREATED) is sent, so an acknowledged background job
survives a crash of the server process (SIGKILL included).

``sqlite:PATH`` uses the standard library's sqlite3 in WAL mode with
``synchronous=NORMAL`` by default: a commit survives the death of the
process, but the last transactions may be lost if the *machine* loses power.
Append ``?synchronous=FULL`` to the spec to fsync every commit.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Iterator, NamedTuple, Optional

__all__ = ["StoredJob", "JobQueue", "SqliteQueue", "open_queue"]

log = logging.getLogger(__name__)


class StoredJob(NamedTuple):
    """One background job as a persistent queue keeps it."""

    id: int
    function: bytes
    unique: bytes
    priority: int  # 0 high, 1 normal, 2 low
    data: bytes
    when: int  # epoch seconds; 0 = run at once
    reducer: bytes


class JobQueue:
    """Interface of a persistent queue (the default does nothing)."""

    def add(self, function: bytes, unique: bytes, priority: int, data: bytes, when: int, reducer: bytes) -> Optional[int]:
        """Store a job; return its id (None if nothing is stored)."""
        return None

    def delete(self, job_id: int) -> None:
        """Forget the job stored under *job_id*."""

    def commit(self) -> None:
        """Make every add/delete since the last commit durable."""

    def load(self) -> Iterator[StoredJob]:
        """Yield the stored jobs in the order they were added."""
        return iter(())

    def close(self) -> None:
        """Release the storage."""


class SqliteQueue(JobQueue):
    """Background jobs in an SQLite database file (stdlib :mod:`sqlite3`)."""

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS gearman_jobs ("
            " id INTEGER PRIMARY KEY, function BLOB NOT NULL, uniq BLOB NOT NULL,"
            " priority INTEGER NOT NULL, data BLOB NOT NULL, when_to_run INTEGER NOT NULL,"
            " reducer BLOB NOT NULL)"
        )
        self._in_tx = False

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def add(self, function: bytes, unique: bytes, priority: int, data: bytes, when: int, reducer: bytes) -> int:
        self._begin()
        cur = self._db.execute(
            "INSERT INTO gearman_jobs (function, uniq, priority, data, when_to_run, reducer)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (function, unique, priority, data, when, reducer),
        )
        return cur.lastrowid  # type: ignore[return-value]

    def delete(self, job_id: int) -> None:
        self._begin()
        self._db.execute("DELETE FROM gearman_jobs WHERE id = ?", (job_id,))

    def commit(self) -> None:
        if self._in_tx:
            self._in_tx = False
            self._db.execute("COMMIT")

    def load(self) -> Iterator[StoredJob]:
        rows = self._db.execute(
            "SELECT id, function, uniq, priority, data, when_to_run, reducer"
            " FROM gearman_jobs ORDER BY id"
        ).fetchall()
        for row in rows:
            yield StoredJob(row[0], bytes(row[1]), bytes(row[2]), row[3], bytes(row[4]), row[5], bytes(row[6]))

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()

    def __repr__(self) -> str:
        return f"<SqliteQueue {self.path}>"


def open_queue(spec: "str | JobQueue | None") -> JobQueue:
    """A queue from a spec: None (memory only), ``"sqlite:PATH"`` (optionally
    ``"sqlite:PATH?synchronous=FULL"``) or a :class:`JobQueue` instance."""
    if spec is None:
        return JobQueue()
    if isinstance(spec, JobQueue):
        return spec
    if isinstance(spec, str) and spec.startswith("sqlite:"):
        path = spec[len("sqlite:"):]
        sync = "NORMAL"
        if "?" in path:
            path, _, query = path.partition("?")
            for item in query.split("&"):
                key, _, value = item.partition("=")
                if key == "synchronous":
                    sync = value
                else:
                    raise ValueError(f"unknown queue option {key!r}")
        if not path:
            raise ValueError("sqlite queue needs a path: sqlite:PATH")
        return SqliteQueue(path, sync)
    raise ValueError(f"unknown queue spec {spec!r} (use sqlite:PATH)")
