"""A WSGI app for ``gunicorn -k gevent`` sharing one Client per process.

    gunicorn -k gevent -w 2 --chdir examples gunicorn_app:app

GET /reverse?text=abc  ->  cba   (a foreground job on 'reverse_string')
GET /enqueue?text=abc  ->  the handle of a background job
The servers come from $GEARMAN_SERVERS (default localhost:4730).
"""
import os
from urllib.parse import parse_qs

import gearman_gevent as gg

# One Client per worker process, created lazily (after gunicorn forks) and
# shared by every request greenlet.
_client = None


def client():
    global _client
    if _client is None:
        _client = gg.Client(os.environ.get("GEARMAN_SERVERS", "localhost:4730").split(","))
    return _client


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    text = query.get("text", [""])[0]
    path = environ.get("PATH_INFO", "/")
    try:
        if path == "/reverse":
            body = client().do("reverse_string", text, timeout=10, unique="")
        elif path == "/enqueue":
            body = client().submit("reverse_string", text, background=True, unique="").handle
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
    except gg.GearmanError as exc:
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [f"{type(exc).__name__}: {exc}\n".encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
