#!/usr/bin/env bash
# Development entry point: installs what is missing, then runs a task.
#   ./dev.sh demo   - start gearmand, a worker and a client doing real jobs
#   ./dev.sh test   - run the test suite
#   ./dev.sh bench  - run the benchmark (see benchmarks/README.rst)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES="gearman-job-server gearman-tools gearman-server stunnel4 libgearman-dev gcc openssl"

install_system() {
  local missing=0
  for bin in /usr/sbin/gearmand /usr/bin/gearman /usr/bin/gearadmin /usr/bin/stunnel4 /usr/include/libgearman-1.0/gearman.h /usr/bin/gcc /usr/bin/openssl; do
    [ -e "$bin" ] || missing=1
  done
  if [ "$missing" = 1 ]; then
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
  fi
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
    install_system
    install_python
    exec .venv/bin/python examples/demo.py "$@"
    ;;
  test)
    install_system
    install_python
    exec .venv/bin/python -m pytest -q "$@"
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
