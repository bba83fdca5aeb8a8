"""Small job functions for the demo, the docs and quick experiments."""

from __future__ import annotations

import os
import signal
import time


def worker(num: int) -> int:
    """The classic multiprocessing example: print a line, return the number."""
    print(f"Worker: {num}")
    return num


def add(x: int, y: int = 1) -> int:
    return x + y


def square(x: int) -> int:
    return x * x


def total(values: list[int]) -> int:
    """Reduce step: sum the results of a map."""
    return sum(values)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def crash() -> None:
    """Kill the worker process running this job."""
    os.kill(os.getpid(), signal.SIGKILL)
