"""A worker with a 'sleep' ability that reports its progress once a second
(gearman-ruby's examples/worker.rb).  Stop it with Ctrl-C or SIGTERM."""
import logging

import gevent

import gearman_gevent as gg
from _common import parser

p = parser(__doc__)
p.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
args = p.parse_args()
logging.basicConfig(level=logging.INFO)

worker = gg.Worker(args.servers.split(","), client_id="example-sleep-worker", concurrency=5)


@worker.add_ability("sleep")
def sleep(data, job):
    seconds = int(data or b"1")
    for i in range(seconds):
        job.report_status(i, seconds)
        gevent.sleep(1)
    job.report_status(seconds, seconds)
    return f"slept {seconds}s"


worker.install_signal_handlers()
print("worker ready", flush=True)
worker.work(max_jobs=args.max_jobs)
