"""Flow-control values as users write them (issue 17): a rate of starts (``100/s``, ``100/m``,
``100/h``, ``none``) and the resource options of a job."""

from __future__ import annotations

import re

from .errors import ValidationError

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


def parse_rate(text: object, field: str = "rate") -> tuple[int, float] | None:
    """``(count, per_seconds)`` of ``"100/s"``, ``"100/m"`` or ``"100/h"``; None for ``"none"``.
    Raises :class:`ValidationError` naming ``field`` otherwise (a count of 0 included)."""
    if isinstance(text, str) and text.strip().lower() == "none":
        return None
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(field, f"expected COUNT/s, COUNT/m, COUNT/h or none, got {text!r}")
    count = int(match.group(1))
    if count < 1 or count > 10**9:
        raise ValidationError(field, f"the count must be between 1 and 1000000000, got {count}")
    return count, _PERIODS[match.group(2)]


def check_rate(count: object, per_seconds: object) -> tuple[int, float] | None:
    """Validate ``count`` starts per ``per_seconds`` (both None: no rate)."""
    if count is None and per_seconds is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10**9:
        raise ValidationError("rate", f"the count must be a whole number from 1 to 1000000000, got {count!r}")
    if isinstance(per_seconds, bool) or not isinstance(per_seconds, (int, float)) or not 0.001 <= per_seconds <= 10**7:
        raise ValidationError("per_seconds", f"must be a number of seconds from 0.001 to 10000000, got {per_seconds!r}")
    return count, float(per_seconds)


def check_positive(field: str, value: object, allow_none: bool = True) -> int | None:
    """A whole number of at least 1 (or None where allowed), else :class:`ValidationError`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(field, f"must be a whole number of at least 1{', or None' if allow_none else ''}, got {value!r}")
    return value
