"""Job functions of the issue 18 tests (traces, the caller's transaction, errors as the
standard library raises them, jobq.testing). Importable as ``tests.stack_tasks``."""

from __future__ import annotations

import errno
import os

import jobq


class OrderError(Exception):
    """An application's own exception, rebuilt from its args by the caller."""


class NeedsKeyword(Exception):
    """An exception its stored args cannot rebuild (a keyword-only constructor)."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


def square(x):
    return x * x


def raise_value(message="bad value"):
    raise ValueError(message)


def raise_key(key="missing"):
    raise KeyError(key)


def raise_file_not_found(path="/nonexistent"):
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)


def raise_order(order_id=7):
    raise OrderError("order failed", order_id)


def raise_needs_keyword():
    raise NeedsKeyword(code=3)


def raise_with_object_args():
    raise OrderError(object())


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x * x


def items_then_error(n=3):
    """An iterable that yields ``n`` items, then raises (as a user's generator may)."""
    yield from range(n)
    raise KeyError("the iterable broke")


def record(path, token):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return token


def flaky(path, failures):
    """Fail the first ``failures`` calls (counted in ``path``), then succeed."""
    record(path, "call")
    with open(path) as fh:
        calls = sum(1 for _ in fh)
    if calls <= failures:
        raise RuntimeError(f"flaky failure {calls}")
    return calls


def submit_child(db, x):
    """A job that submits another job to its own database, as jobs of a workflow do."""
    return jobq.Queue(db).submit(square, (x,)).id


def progress_then_value(x):
    job = jobq.current_job()
    assert job is not None
    job.set_progress(0.5, "half")
    return {"job": job.id, "attempt": job.attempt, "x": x}


def with_step(x):
    """A job with a traced step (the hook durable steps use): a child span of its run."""
    from jobq.core.tracing import step_span

    with step_span("double", position=1):
        return x * 2


def send_confirmation(order_id):
    """The README's job: what a web handler submits for an order."""
    return "sent"


@jobq.step
def charge(path, order_id):
    """A durable step: it records each real run in ``path``."""
    record(path, f"charge {order_id}")
    return {"charged": order_id}


def checkout(path, order_id, fail_first=True):
    """A job with a durable step, then a failure on its first attempt: the retry replays the
    step (recorded once) instead of running it again."""
    receipt = charge(path, order_id)
    with open(path) as fh:
        runs = sum(1 for line in fh if line.startswith("attempt"))
    record(path, "attempt")
    if fail_first and runs == 0:
        raise RuntimeError("the mail server is down")
    return receipt


def nap_then_value(seconds):
    """A durable sleep: the attempt ends, the job waits scheduled, then finishes."""
    jobq.sleep(seconds)
    return "awake"
