"""Shared fixtures: real gearmand servers on free loopback ports.

* ``gearmand`` — one C gearmand for the whole session (``Gearmand`` object;
  ``.address`` is ``"127.0.0.1:PORT"``).
* ``gearmand_factory`` — start more servers in a test: ``gearmand_factory()``
  returns a started ``Gearmand``; all are killed after the test.
* ``func_name`` — a function name no other test uses, so tests sharing the
  session server do not see each other's jobs.
"""
from __future__ import annotations

import itertools
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from servers import Gearmand  # noqa: E402

_counter = itertools.count()


@pytest.fixture(scope="session")
def gearmand():
    server = Gearmand().start()
    yield server
    server.cleanup()


@pytest.fixture
def gearmand_factory():
    started = []

    def start(**kwargs):
        server = Gearmand(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def func_name(request):
    base = request.node.name.split("[")[0][:30]
    return f"{base}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
