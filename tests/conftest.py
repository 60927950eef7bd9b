"""Shared fixtures: real job servers on free loopback ports.

* ``gearmand`` — one job server for the whole session (a ``Gearmand``-like
  object; ``.address`` is ``"127.0.0.1:PORT"``).
* ``gearmand_factory`` — start more servers in a test: ``gearmand_factory()``
  returns a started server; all are killed after the test.
* ``func_name`` — a function name no other test uses, so tests sharing the
  session server do not see each other's jobs.

Which server is behind ``gearmand``/``gearmand_factory`` is chosen with
``--job-server=gearmand|embedded`` (default: ``$GEARMAN_TEST_SERVER``, else
``gearmand``): Debian's C gearmand (:class:`servers.Gearmand`) or this
library's own server as a subprocess (:class:`servers.EmbeddedServer`).

With ``--job-server=embedded`` these tests are *deselected* (pytest reports
them as such), so the run is only the tests that say something about the
embedded server:

* tests marked ``gearmand_only`` (a documented gearmand-specific behaviour,
  or a module that starts its own servers of a given kind);
* tests that use neither ``gearmand`` nor ``gearmand_factory``: they do not
  depend on the choice, and already ran in the default pass.

With ``--job-server=gearmand`` tests marked ``embedded_only`` are deselected.
"""
from __future__ import annotations

import itertools
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from servers import SERVER_CLASSES  # noqa: E402

_counter = itertools.count()
SERVER_FIXTURES = ("gearmand", "gearmand_factory")


def pytest_addoption(parser):
    parser.addoption(
        "--job-server", choices=sorted(SERVER_CLASSES),
        default=os.environ.get("GEARMAN_TEST_SERVER") or "gearmand",
        help="job server behind the gearmand/gearmand_factory fixtures "
             "(default: $GEARMAN_TEST_SERVER, else gearmand)",
    )


def pytest_configure(config):
    if config.getoption("--job-server") not in SERVER_CLASSES:  # a bad $GEARMAN_TEST_SERVER
        raise pytest.UsageError(f"--job-server must be one of {sorted(SERVER_CLASSES)}")


def pytest_report_header(config):
    return f"job server: {config.getoption('--job-server')}"


def pytest_collection_modifyitems(config, items):
    kind = config.getoption("--job-server")
    keep, drop = [], []
    for item in items:
        if kind == "embedded":
            wanted = (item.get_closest_marker("gearmand_only") is None
                      and any(f in item.fixturenames for f in SERVER_FIXTURES))
        else:
            wanted = item.get_closest_marker("embedded_only") is None
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def server_class(pytestconfig):
    """The class behind ``gearmand``/``gearmand_factory``."""
    return SERVER_CLASSES[pytestconfig.getoption("--job-server")]


@pytest.fixture(scope="session")
def gearmand(server_class):
    server = server_class().start()
    yield server
    server.cleanup()


@pytest.fixture
def gearmand_factory(server_class):
    started = []

    def start(**kwargs):
        server = server_class(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def func_name(request):
    base = request.node.name.split("[")[0][:30]
    return f"{base}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fake():
    """``fake(script)`` starts a FakeServer (tests/fakeserver.py); all are
    stopped after the test and any assertion raised inside a script is
    re-raised."""
    from fakeserver import FakeServer

    started = []

    def start(script):
        server = FakeServer(script).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        server.check()
