"""An embedded Gearman job server on gevent.

``pip install gearman_gevent`` is enough to run and test Gearman code: ::

    from gearman_gevent.server import Server

    with Server() as server:                 # 127.0.0.1, a free port
        client = Client(server.address)
        ...

or from a shell: ``python -m gearman_gevent.server --port 4730
--queue sqlite:/var/lib/gearman/jobs.db``.

It speaks gearmand 1.1's binary protocol and admin text protocol on one port
(see PROTOCOL.md): every SUBMIT_* kind and priority, unique coalescing,
GRAB_JOB/_UNIQ/_ALL, PRE_SLEEP/NOOP, WORK_* forwarding, the ``exceptions``
option, GET_STATUS(_UNIQUE), CAN_DO_TIMEOUT, requeue when a worker leaves,
the same ERROR codes and texts, and the admin commands ``status``,
``prioritystatus``, ``workers``, ``version``, ``getpid``, ``verbose``,
``maxqueue``, ``show jobs``, ``show unique jobs``, ``cancel job``,
``create function`` and ``drop function``, with gearmand's reply formats.
Background jobs can be kept in SQLite (``queue="sqlite:PATH"``).

Deliberate differences from gearmand 1.1.20:

* SUBMIT_JOB_EPOCH jobs have a timer: sleeping workers get a NOOP when the
  job becomes due (gearmand 1.1 waits for some other event, gearmand #101).
  A due job joins the *end* of its normal-priority queue.
* CAN_DO_TIMEOUT uses one timer per job, started when the job is assigned,
  so the stale-timer bug of gearmand #301 cannot happen.  Same units (ms,
  minimum 1 s) and the same outcome (requeue, nothing sent to anyone).
* Admin ``shutdown [graceful]`` is kept (gearmand removed it in 1.1.15).
  ``graceful`` stops accepting connections and handing out jobs, waits for
  running jobs to finish, then stops.
* A duplicate CAN_DO from one connection does not register the function
  twice (gearmand inflates ``status``/``workers`` counts).
* A submission that attaches to a job whose last client left (an "ignored"
  job) revives it; gearmand answers JOB_CREATED and then drops the job, so
  the new client waits forever.  A background submission coalesced onto a
  foreground job makes that job background (stored, and kept when the
  foreground clients leave); gearmand drops it with them.
* ``cancel job`` also deletes a background job from the persistent queue and
  forgets its unique, so a later submission creates a new job.
* Uniques of exactly 64 bytes are kept whole (gearmand truncates them to 63
  and they never coalesce); longer ones get ARGUMENT_TOO_LARGE as in gearmand.
* GET_STATUS with a handle / GET_STATUS_UNIQUE with a unique of 64 bytes or
  more gets ``ERROR ARGUMENT_TOO_LARGE`` (gearmand tears the connection down).
  SUBMIT_REDUCE_JOB(_BACKGROUND) is accepted (stored reducer, JOB_ASSIGN_ALL).
* Lists (``status``, ``workers``...) come in creation order, not hash order;
  ``version`` answers ``OK <version>-gearman_gevent``; ``verbose`` answers
  ``OK INFO``.  ``create function`` creates exactly the named function.
* Requeued jobs go to the end of their priority queue (as gearmand);
  ``--round-robin``, ``--threads`` and TLS are not implemented.
"""
from __future__ import annotations

from .engine import Engine, Function, Job, Peer
from .queue import JobQueue, SqliteQueue, open_queue
from .server import Server, ThreadedServer

__all__ = ["Server", "ThreadedServer", "Engine", "Peer", "Function", "Job", "JobQueue", "SqliteQueue", "open_queue", "main"]


def main(argv=None) -> int:  # type: ignore[no-untyped-def]
    """``python -m gearman_gevent.server`` (see :mod:`.__main__`)."""
    from .__main__ import main as _main

    return _main(argv)
