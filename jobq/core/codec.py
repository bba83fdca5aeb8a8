"""JSON as jobq stores it: :func:`dumps` (compact, strict) and :func:`loads` (what
``json.loads`` returns, faster where a C parser gives exactly the same values)."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
try:  # a C encoder made for this: ~10x the standard library's speed on a chunk of items
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library does the same, slower
    _orjson = None  # type: ignore[assignment]
else:
    # Types the standard encoder refuses or treats its own way (dataclasses, datetimes, subclasses of
    # str/int/dict/list such as IntEnum) are handed back to it rather than encoded by orjson.
    _ORJSON_OPTIONS = _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_SUBCLASS


def dumps(value: Any) -> str:
    """Compact, strict JSON (no NaN/Infinity): the same values as the standard library's
    encoder accepts, read back by any JSON parser (``json.loads`` included)."""
    if _orjson is not None:
        try:
            text = _orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
        except TypeError:
            pass  # beyond 64-bit integers, keys that are not text, handed-back types: judged below
        else:
            if "null" not in text:  # orjson writes NaN and Infinity as null, which the strict encoder refuses
                return text
    return _ENCODER.encode(value)


# 19 digits in a row: a number orjson could read differently (an integer beyond 64 bits, read
# as a float; a fraction long enough to round apart). Such texts go to the standard parser.
# Found with a byte translation and one substring search (a regular expression over a chunk's
# results cost more than parsing them).
_DIGITS = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_LONG_DIGITS = b"\x01" * 19


def loads(text: str) -> Any:
    """``json.loads(text)``: the same values and errors (NaN, Infinity and big integers
    included), parsed by orjson where it yields exactly those values."""
    if _orjson is not None:
        try:
            raw = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: the standard parser decides
            return json.loads(text)
        if _LONG_DIGITS not in raw.translate(_DIGITS):
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                pass  # NaN, Infinity, bad JSON: the standard parser decides
    return json.loads(text)
