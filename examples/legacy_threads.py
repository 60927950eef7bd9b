"""A monkey-patched legacy app: plain threads call a shared Client.

After ``gevent.monkey.patch_all()`` threads are greenlets and blocking
sockets are gevent sockets, so code written for threads uses the library
unchanged.
"""
from gevent import monkey

monkey.patch_all()

import threading  # noqa: E402  (after patching, on purpose)
import queue  # noqa: E402

import gearman_gevent as gg  # noqa: E402
from _common import parser, servers  # noqa: E402

args = parser(__doc__).parse_args()
client = gg.Client(servers(args))
results = queue.Queue()


def legacy_thread(n):
    # ordinary blocking code: no gevent in sight
    results.put((n, client.do("reverse_string", f"thread {n}", timeout=10, unique="").decode()))


threads = [threading.Thread(target=legacy_thread, args=(n,)) for n in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for n, text in sorted(results.get() for _ in threads):
    print(n, text)
client.close()
