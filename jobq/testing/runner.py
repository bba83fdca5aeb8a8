"""The runner of :mod:`jobq.testing`: :func:`drain` and :func:`run_inline`.

- :func:`drain` runs every due job of the database, one at a time in order, until none is due,
  and returns what each attempt did. Jobs move through the store's own claim, start and
  finish (the fences, retries, dependencies, durable steps and counts of a real run); the
  attempt runs through the worker's own code (:func:`jobq.worker.main.run_task`).
- :func:`run_inline` makes ``submit``/``map``/``submit_many`` of one queue drain at once, so
  code that submits and joins at once works in a test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.models import JobError, State
from ..store import JobStart
from ..worker import steps
from ..worker.main import WorkerConfig, run_task
from ..worker.messages import Task

if TYPE_CHECKING:
    from ..client.queue import Queue

__all__ = ["Ran", "drain", "run_inline"]


@dataclass(frozen=True)
class Ran:
    """One attempt :func:`drain` ran: the job's state after it (``succeeded``, ``failed``, or
    ``queued``/``scheduled`` when it will be retried), its return value or its error (type,
    message and traceback), and what it printed (empty: output is not captured in a test)."""

    job_id: int
    target: str
    queue: str
    attempt: int
    state: State
    result: Any = None
    error: JobError | None = None

    @property
    def ok(self) -> bool:
        """Whether the attempt succeeded."""
        return self.error is None


_draining: set[int] = set()  # ids of queues a drain is running for (a job that submits)


def drain(q: Queue, queue: str | None = None) -> list[Ran]:
    """Run every due job of ``q``'s database (of ``queue`` only, when given) in this process,
    one at a time in claim order (priority, then due time, then id), until none is due; the
    attempts it ran, in order.

    A job that fails with retries left is run again within the same drain once its backoff
    is over, if that is before the drain runs out of due jobs (submit with ``retry_backoff=0``
    in tests to retry at once); a job scheduled for later stays scheduled; a dependant runs
    once its dependencies succeeded; durable steps are recorded and replayed, and a durable
    sleep or wait leaves its job ``scheduled`` (a later drain runs it once it is due).
    Timeouts are not enforced (nothing can end the test's own process for it)."""
    import json

    settings = q.settings
    owner = f"testing-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(
        supervisor_pid=os.getpid(),
        capture_path="",
        max_payload_bytes=settings.max_payload_bytes,
        allowed_targets=list(settings.allowed_targets) if settings.allowed_targets else None,
    )
    queues = [queue] if queue is not None else None
    cache: dict[str, Any] = {}
    ran: list[Ran] = []
    _draining.add(id(q))
    # Durable steps record through this store, fenced on this drain's owner, as a worker's do.
    env = steps._env  # noqa: SLF001 - what the worker bound, put back afterwards
    bound = (env.store, env.owner, env.max_payload_bytes, env.unusable)
    steps.bind(q.store, owner, settings.max_payload_bytes)
    try:
        while True:
            now = time.time()
            claimed = q.store.claim(owner, queues, 1, now, now + settings.lease_seconds)
            if not claimed:
                return ran
            job = claimed[0]
            task = Task(job.id, job.attempts, job.target, job.args_json, job.kwargs_json, job.queue, job.trace)
            # As a worker takes a claimed job: the store records its start (it reads running).
            q.store.start(owner, [JobStart(job.id, job.attempts, os.getpid(), time.time())])
            result = run_task(task, config, None, cache)
            q.store.finish(owner, [result.outcome(os.getpid())], time.time())
            state = q.store.get_states([job.id]).get(job.id, State.FAILED.value)
            value = json.loads(result.result_json) if result.result_json is not None else None
            ran.append(Ran(job.id, job.target, job.queue, job.attempts, State(state), value, result.error))
    finally:
        _draining.discard(id(q))
        env.store, env.owner, env.max_payload_bytes, env.unusable = bound


@contextmanager
def run_inline(q: Queue, queue: str | None = None) -> Iterator[list[Ran]]:
    """Within the block, every submit of ``q`` (``submit``, ``map``, ``submit_many``, ``@q.task``
    submits) stores its jobs and then runs them at once in this process (:func:`drain`: every
    due job of the database, the new ones included), so ``job.join()`` returns at once. Yields
    the list of attempts run so far. A submit in the caller's transaction (``conn=``) is left
    to run after the caller commits (a later submit or :func:`drain` runs it)."""
    ran: list[Ran] = []
    previous = q._after_submit

    def run_now() -> None:
        if id(q) not in _draining:  # a job that submits: the drain running it picks the new ones up
            ran.extend(drain(q, queue))

    q._after_submit = run_now
    try:
        yield ran
    finally:
        q._after_submit = previous
