"""A worker that reverses strings (gearman-ruby's examples/worker_reverse_string.rb)."""
import logging

import gearman_gevent as gg
from _common import parser

p = parser(__doc__)
p.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
args = p.parse_args()
logging.basicConfig(level=logging.INFO)

worker = gg.Worker(args.servers.split(","), concurrency=10)
worker.add_ability("reverse_string", lambda data, job: data[::-1])
worker.install_signal_handlers()
print("worker ready", flush=True)
worker.work(max_jobs=args.max_jobs)
