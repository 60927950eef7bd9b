"""``python -m gearman_gevent`` / the ``gearman-gevent`` console script.

The implementation lives in :mod:`gearman_gevent.cli`.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .cli import main as _cli_main

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the process exit code."""
    return _cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
