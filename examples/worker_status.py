"""A worker reporting status, data and warnings, and a client listening.

Runs both in one process: the worker in a greenlet, the client in another.
"""
import gevent

import gearman_gevent as gg
from _common import parser, servers

args = parser(__doc__).parse_args()

worker = gg.Worker(servers(args), concurrency=2)


@worker.add_ability("count_words")
def count_words(data, job):
    lines = data.decode().splitlines()
    total = 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            job.report_warning(f"line {i} is empty")
        total += len(line.split())
        job.send_data(f"line {i}: {len(line.split())} words").report_status(i, len(lines))
        gevent.sleep(0.05)
    return str(total)


worker.start()
with gg.Client(servers(args)) as client:
    task = gg.Task("count_words", "the quick brown fox\n\njumps over the lazy dog", unique="")
    task.on_status(lambda n, d: print(f"status {n}/{d}"))
    task.on_data(lambda d: print("data", d.decode()))
    task.on_warning(lambda w: print("warning", w.decode()))
    task.on_complete(lambda r: print("result", r.decode()))
    client.submit_task(task)
    task.wait(10)
worker.stop(timeout=5)
