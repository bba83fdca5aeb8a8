"""jobq.core.codec.loads returns exactly what json.loads returns (values, their types, and its
errors), though it parses with orjson where orjson reads the same values."""

from __future__ import annotations

import json
import random
import struct

import pytest

from jobq.core.codec import dumps, loads

pytestmark = pytest.mark.timeout(60)

TRICKY = [
    "[12345678901234567890123]",  # beyond 64 bits: orjson would read a float
    "[-9223372036854775809]",
    "[18446744073709551615]",
    "[9223372036854775807, -9223372036854775808]",
    "[0.1234567890123456789]",
    "[1e400]",  # json reads inf; orjson refuses
    "[NaN, Infinity, -Infinity]",
    '["\\ud800"]',  # a lone surrogate
    '["\\ud83d\\ude00", "\\u0000"]',
    '{"a": 1, "a": 2}',
    "[-0.0, 0, -0, 1E2, 1e-7, 5e-324]",
    '  {"k": [true, false, null]}  ',
    "[" * 50 + "]" * 50,
]
BAD = ["", "[1,]", "{'a': 1}", "[1] x", "nul", "[1e]"]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_read_as_the_standard_library_reads_them(text: str) -> None:
    ours, theirs = loads(text), json.loads(text)
    assert repr(ours) == repr(theirs)
    assert json.dumps(ours, allow_nan=True) == json.dumps(theirs, allow_nan=True)


@pytest.mark.parametrize("text", BAD)
def test_bad_json_raises_the_standard_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads(text)


def test_random_numbers_read_to_the_same_values_and_types() -> None:
    rng = random.Random(7)
    texts = []
    for _ in range(20000):
        kind = rng.random()
        if kind < 0.4:
            x = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            texts.append(repr(x) if x == x and abs(x) != float("inf") else "0")
        elif kind < 0.7:
            texts.append(
                f"{rng.randint(0, 10 ** rng.randint(1, 18))}.{rng.randint(0, 10 ** rng.randint(0, 17))}e{rng.randint(-330, 310)}"
            )
        else:
            texts.append(str(rng.randint(-(2**70), 2**70)))
    text = "[" + ",".join(texts) + "]"
    ours, theirs = loads(text), json.loads(text)
    assert [(type(v), repr(v)) for v in ours] == [(type(v), repr(v)) for v in theirs]
    for item in texts[:2000]:  # one by one too: a short text takes orjson's path unless it has long digits
        assert repr(loads(item)) == repr(json.loads(item))


def test_what_dumps_writes_loads_reads_back() -> None:
    value = {"n": [1, 2.5, -3, 2**80, None, True], "s": "é\u2028\U0001f600", "nested": {"k": []}}
    assert loads(dumps(value)) == value
