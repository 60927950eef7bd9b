"""A client submitting a few 'sleep' jobs in a TaskSet (gearman-ruby's
examples/client.rb).  Run examples/worker.py first."""
import logging

import gearman_gevent as gg
from _common import parser, servers

args = parser(__doc__).parse_args()
logging.basicConfig(level=logging.WARNING)

client = gg.Client(servers(args))
taskset = gg.TaskSet(client)

for seconds in (1, 2):
    task = gg.Task("sleep", str(seconds), unique="")
    task.on_status(lambda num, den, s=seconds: print(f"sleep {s}: {num}/{den}"))
    task.on_complete(lambda result, s=seconds: print(f"sleep {s}: done, worker said {result.decode()!r}"))
    taskset.add_task(task)

print("all done" if taskset.wait(30) else "timed out")
client.close()
