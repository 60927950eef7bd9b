"""Uniques: identical submissions coalesce into one job in the server.

The default unique is SHA-1(function + data), so the same call made twice
while the first is still queued or running runs once and both callers get the
result.  ``unique=""`` turns that off; any other string is used as given.
"""
import gevent

import gearman_gevent as gg
from _common import parser, servers

args = parser(__doc__).parse_args()

with gg.Client(servers(args)) as client:
    a = gg.Task("reverse_string", "same input")
    b = gg.Task("reverse_string", "same input")
    client.submit_tasks([a, b])
    print("same handle:", a.handle == b.handle)
    c = gg.Task("reverse_string", "same input", unique="")
    client.submit_task(c)
    print("unique='' gets its own job:", c.handle != a.handle)
    d = gg.Task("reverse_string", "other input", unique="report-2026-12")
    e = gg.Task("reverse_string", "other input, same key", unique="report-2026-12")
    client.submit_tasks([d, e])
    print("explicit unique coalesces:", d.handle == e.handle)
    for t in (a, b, c, d, e):
        t.wait(10)
    print("results:", [t.result.decode() for t in (a, b, c, d, e)])
