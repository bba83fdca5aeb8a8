"""Job targets of the flow-control tests (issue 17)."""

from __future__ import annotations

import os
import time


def allocate(mb: int) -> int:
    """Allocate and touch ``mb`` MB; returns how many were touched."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // 2**20


def started(path: str, token: str) -> str:
    """Append ``token`` and the wall time it started to ``path``."""
    with open(path, "a") as fh:
        fh.write(f"{token} {time.time():.6f}\n")
    return token


def hold(path: str, token: str, seconds: float) -> str:
    """Hold the worker for ``seconds``; append ``token start end`` (wall times) to ``path``."""
    start = time.time()
    time.sleep(seconds)
    with open(path, "a") as fh:
        fh.write(f"{token} {start:.6f} {time.time():.6f}\n")
    return token


def spans(path: str) -> dict[str, tuple[float, float]]:
    """token -> (start, end) of the jobs :func:`hold` ran."""
    out = {}
    with open(path) as fh:
        for line in fh:
            token, start, end = line.split()
            out[token] = (float(start), float(end))
    return out


def pid() -> int:
    return os.getpid()
