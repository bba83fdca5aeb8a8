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
    """Record the start, then hold the worker for ``seconds``."""
    started(path, token)
    time.sleep(seconds)
    return token


def pid() -> int:
    return os.getpid()
