#!/usr/bin/env bash
# Development entry point: installs what is missing, then runs a task.
#   ./dev.sh demo   - start gearmand, a worker and a client doing real jobs
#   ./dev.sh test   - run the test suite (against gearmand, then the embedded server)
#   ./dev.sh bench  - run the benchmark (see benchmarks/README.rst)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES="gearman-job-server gearman-tools gearman-server stunnel4 libgearman-dev gcc openssl"

install_system() {
  local missing=0
  for bin in /usr/sbin/gearmand /usr/bin/gearman /usr/bin/gearadmin /usr/bin/stunnel4 /usr/include/libgearman-1.0/gearman.h /usr/bin/gcc /usr/bin/openssl; do
    [ -e "$bin" ] || missing=1
  done
  [ "$missing" = 1 ] || return 0
  local SUDO=
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      echo "dev.sh: not root: cannot apt-get install $APT_PACKAGES" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
}

install_python() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c "import gearman_gevent, pytest, pytest_mock, hypothesis, pytest_timeout" 2>/dev/null \
     || [ setup.cfg -nt .venv/.installed ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
  fi
}

task="${1:-test}"
shift || true
case "$task" in
  demo)
    # Without root the demo still runs: on the embedded server when no
    # gearmand is installed.
    install_system || echo "dev.sh: the demo will use the embedded gearman_gevent server" >&2
    install_python
    exec .venv/bin/python examples/demo.py "$@"
    ;;
  test)
    install_system
    install_python
    # Pass 1: the whole suite, integration tests against Debian's gearmand.
    # Pass 2: the integration tests again, unchanged, against the embedded
    # server (tests/conftest.py deselects the gearmand_only ones and those
    # that use no job server).  Both run; both must pass.
    rc=0
    echo "== pass 1/2: job server gearmand"
    .venv/bin/python -m pytest -q --job-server=gearmand "$@" || rc=1
    echo "== pass 2/2: job server embedded (gearman_gevent.server)"
    # (exit 5, "no tests ran": arguments that select only server-independent tests)
    .venv/bin/python -m pytest -q --job-server=embedded "$@" || { code=$?; [ "$code" = 5 ] || rc=1; }
    exit "$rc"
    ;;
  bench)
    install_system
    install_python
    exec .venv/bin/python benchmarks/run.py "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo|test|bench [args]" >&2
    exit 2
    ;;
esac
