"""Jobs made of durable steps, for tests/test_steps*.py (importable by workers)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import jobq


def _append(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@jobq.step
def record_line(path: str, n: int) -> int:
    _append(path, f"step {n}")
    return n * 10


@jobq.step(name="stall")
def stall(path: str, n: int, gate: str) -> int:
    """Step ``n`` that writes the worker's pid, then waits until ``gate`` exists."""
    _append(path, f"step {n} pid {os.getpid()}")
    while not os.path.exists(gate):
        time.sleep(0.02)
    return n * 10


def five_steps(path: str, stall_at: int, gate: str) -> list[int]:
    """Five steps, each appending a line to ``path``; step ``stall_at`` waits for ``gate``."""
    out = []
    for n in range(1, 6):
        out.append(stall(path, n, gate) if n == stall_at else record_line(path, n))
    return out


def steps_then_sleep(path: str, seconds: float) -> list[Any]:
    a = record_line(path, 1)
    b = record_line(path, 2)
    jobq.sleep(seconds)
    c = record_line(path, 3)
    return [a, b, c]


def short(n: int) -> int:
    return n


def charge_then_wait(path: str, key: str, timeout: float | None) -> Any:
    record_line(path, 1)
    try:
        payload = jobq.wait_for(key, timeout=timeout)
    except jobq.EventTimeout:
        record_line(path, 99)
        return "timed out"
    record_line(path, 2)
    return payload


def not_json() -> None:
    jobq.step.run("make-set", lambda: {1, 2, 3})


def loop_steps(n: int) -> int:
    """``n`` no-op steps (the benchmark's job and call counting)."""
    total = 0
    for i in range(n):
        total += jobq.step.run("noop", _identity, i)
    return total


def _identity(i: int) -> int:
    return i


def varying(path: str) -> int:
    """Calls a step whose name depends on whether ``path`` exists (a replay mismatch)."""
    name = "second" if os.path.exists(path) else "first"
    jobq.step.run(name, _identity, 1)
    Path(path).touch()
    raise RuntimeError("fail once to be replayed")


async def async_steps(path: str, key: str) -> Any:
    @jobq.step(name="a1")
    async def first() -> int:
        await asyncio.sleep(0)
        _append(path, "a1")
        return 1

    one = await first()
    await jobq.asleep(0.3)
    payload = await jobq.await_event(key, timeout=30)
    _append(path, "after")
    return [one, payload]


def flaky_step(path: str) -> int:
    @jobq.step(name="flaky", retries=2, retry_backoff=0)
    def flaky() -> int:
        _append(path, "try")
        if len(Path(path).read_text().splitlines()) < 3:
            raise ValueError("not yet")
        return 7

    return flaky()


def fail_after_steps(path: str, fail_file: str) -> str:
    record_line(path, 1)
    record_line(path, 2)
    if os.path.exists(fail_file):
        raise RuntimeError("failing on purpose")
    record_line(path, 3)
    return "done"


def order(path: str) -> dict[str, Any]:
    """Named steps for retry --from-step."""
    charge = jobq.step.run("charge", _logged, path, "charge")
    reserve = jobq.step.run("reserve", _logged, path, "reserve")
    ship = jobq.step.run("ship", _logged, path, "ship")
    return {"charge": charge, "reserve": reserve, "ship": ship}


def _logged(path: str, what: str) -> str:
    _append(path, what)
    return what


def chunk_item(path: str, n: int) -> int:
    return int(jobq.step.run("item", _logged, path, f"item {n}").split()[1]) * 2
