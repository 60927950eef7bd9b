"""Argument checks shared by the public API (raised before any I/O)."""
from __future__ import annotations

import math
from typing import Any, Optional

from .exceptions import InvalidArgsError


def check_seconds(value: Any, what: str = "timeout", allow_none: bool = True) -> Optional[float]:
    """*value* as float seconds; ``None`` passes if *allow_none*.

    Raises :class:`InvalidArgsError` for a non-number (bools included), NaN
    or a negative value.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise InvalidArgsError(f"{what} must be a number of seconds{' or None' if allow_none else ''}, not {value!r}")
    if value < 0:
        raise InvalidArgsError(f"{what} must not be negative")
    return float(value)
