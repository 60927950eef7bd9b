"""Push many jobs through with bounded concurrency and a progress line.

A pool of greenlets keeps ``--concurrency`` jobs in flight over one shared
Client until ``--count`` jobs are done.
"""
import sys
import time

import gevent.pool

import gearman_gevent as gg
from _common import parser, servers

p = parser(__doc__)
p.add_argument("--count", type=int, default=10000)
p.add_argument("--concurrency", type=int, default=200)
args = p.parse_args()

client = gg.Client(servers(args))
done = failed = 0
start = time.monotonic()


def run(i):
    global done, failed
    try:
        client.do("reverse_string", b"job %d" % i, timeout=60, unique="")
        done += 1
    except gg.GearmanError:
        failed += 1
    if (done + failed) % 1000 == 0:
        rate = (done + failed) / (time.monotonic() - start)
        print(f"\r{done + failed}/{args.count} jobs, {rate:.0f} jobs/s", end="", file=sys.stderr, flush=True)


pool = gevent.pool.Pool(args.concurrency)
for i in range(args.count):
    pool.spawn(run, i)
pool.join()
elapsed = time.monotonic() - start
print(file=sys.stderr)
print(f"{done} done, {failed} failed in {elapsed:.1f}s ({args.count / elapsed:.0f} jobs/s)")
client.close()
sys.exit(1 if failed else 0)
