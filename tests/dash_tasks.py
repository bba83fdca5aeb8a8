"""Job functions of the dashboard tests. Importable as ``tests.dash_tasks``."""

from __future__ import annotations

import os
import time


def fail_once(path: str) -> str:
    """Print the attempt number; the first call raises, later ones return ``fixed``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    calls = os.path.getsize(path)
    print(f"attempt {calls} of fail_once")
    if calls == 1:
        raise RuntimeError("first call fails on purpose")
    return "fixed"


def say(text: str) -> str:
    """Print ``text`` and return it."""
    print(text)
    return text


def nap(seconds: float) -> float:
    """Sleep ``seconds`` (a job that stays running a while)."""
    time.sleep(seconds)
    return seconds


def ticker(lines: int, seconds: float) -> int:
    """Print ``line N`` every ``seconds`` (output that grows while the job runs)."""
    for i in range(lines):
        print(f"line {i}", flush=True)
        time.sleep(seconds)
    return lines


def _inner(text: str) -> None:
    raise ValueError(text)


def boom(text: str) -> None:
    """Raise ValueError(text) from a nested call of this module."""
    _inner(text)
