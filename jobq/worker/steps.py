"""Durable steps inside a job (issue 16): ``@jobq.step``, ``jobq.step.run``, ``jobq.sleep``,
``jobq.wait_for`` and their ``async`` forms.

A job's run is a sequence of steps at positions 0, 1, 2...; the first time a step returns,
the worker records its JSON value in the store (one short transaction, fenced on the job's
owner and attempt, committed before the step returns). When the job runs again, each
recorded step returns its stored value without running; the first step without a record
runs for real. A durable sleep or event wait records its wake condition, then ends the
attempt with :class:`Suspend`, a ``BaseException`` (a job's ``except Exception`` does not
swallow it) that the worker turns into an outcome "scheduled until T, attempt not counted".
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..core.errors import EventTimeout, JobqError, StepMismatch, StepNotSerializable, ValidationError
from ..core.models import dumps, retry_delay_seconds
from ..core.steps import MAX_STEP_NAME, StepKind, StepRecord, StepState, WaitState, check_event_key
from ..store.steps_base import StepsContract

F = TypeVar("F", bound=Callable[..., Any])

#: how far ahead a wait without a timeout is scheduled (its event makes it due at once)
FOREVER_SECONDS = 10 * 365 * 86400.0
SLEEP_NAME = "sleep"
WAIT_NAME = "wait_for"


class Suspend(BaseException):
    """Ends the attempt: the job waits ``scheduled`` until ``wake_at`` (or its event)."""

    def __init__(self, wake_at: float, wait_key: str | None) -> None:
        super().__init__(f"suspended until {wake_at}" + (f" or event {wait_key!r}" if wait_key else ""))
        self.wake_at = wake_at
        self.wait_key = wait_key


class AttemptTakenBack(BaseException):
    """The store refused a step record: this attempt is no longer the worker's (its lease
    expired, it was cancelled or its supervisor was declared dead). The job stops here."""


#: (name, call, position) -> a context manager around a step's real run (issue 18's spans)
StepHook = Callable[[str, int, int], AbstractContextManager[Any]]


class _Env:
    """What the worker process gives the steps of its jobs."""

    store: StepsContract | None = None
    owner = ""
    max_payload_bytes = 1 << 20
    unusable = "not inside a jobq worker"
    hook: StepHook | None = None


_env = _Env()


def bind(store: StepsContract | None, owner: str, max_payload_bytes: int, unusable: str = "") -> None:
    """Called once by the worker process: where its jobs' steps are recorded."""
    _env.store, _env.owner, _env.max_payload_bytes = store, owner, max_payload_bytes
    _env.unusable = unusable or "the worker has no database connection"


def set_step_hook(hook: StepHook | None) -> None:
    """Wrap every step that runs for real (not replays) in ``hook(name, call, position)``,
    e.g. a tracing span."""
    _env.hook = hook


class _Run:
    """The steps of one attempt of one job."""

    def __init__(self, job_id: int, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.seq = 0
        self.calls: dict[str, int] = {}
        self.replayed = 0
        self._records: dict[int, StepRecord] | None = None

    @property
    def store(self) -> StepsContract:
        if _env.store is None:
            raise JobqError(f"durable steps cannot be recorded: {_env.unusable}")
        return _env.store

    def recorded(self) -> StepRecord | None:
        """The record at the current position, if any (read from the store once a run)."""
        if self._records is None:
            self._records = {r.seq: r for r in self.store.load_steps(self.job_id)}
        return self._records.get(self.seq)

    def advance(self, name: str) -> tuple[int, int]:
        seq = self.seq
        self.seq += 1
        calls = self.calls[name] = self.calls.get(name, 0) + 1
        return seq, calls

    def check(self, record: StepRecord | None, name: str, kind: StepKind, key: str | None = None) -> StepRecord | None:
        """The record of this position for step ``name``, or a :class:`StepMismatch`."""
        if record is None:
            return None
        if record.name != name or record.kind != kind or (key is not None and record.wait_key != key):
            shown = f"{record.name}({record.wait_key})" if record.wait_key else record.name
            raise StepMismatch(self.seq, shown, f"{name}({key})" if key is not None else name)
        return record

    def record(self, step: StepRecord) -> None:
        replayed, self.replayed = self.replayed, 0
        if not self.store.record_step(_env.owner, step, replayed):
            raise AttemptTakenBack(f"job {self.job_id}: attempt {self.attempt} was taken back; step {step.name!r} not recorded")

    def end(self) -> None:
        if self.replayed and _env.store is not None:
            replayed, self.replayed = self.replayed, 0
            with contextlib.suppress(JobqError):
                _env.store.count_replayed(self.job_id, replayed)


_run: _Run | None = None
#: (job id, attempt) of the attempt running in this worker; its _Run is made by its first step
_attempt: tuple[int, int] | None = None


def begin(job_id: int, attempt: int) -> None:
    """A job's attempt starts in this worker (nothing is built until it takes a step)."""
    global _run, _attempt
    _run, _attempt = None, (job_id, attempt)


def end() -> None:
    """The attempt ended: book the steps it replayed (when no later record carried them)."""
    global _run, _attempt
    run, _run, _attempt = _run, None, None
    if run is not None:
        run.end()


def _current_run() -> _Run | None:
    """The steps of the attempt running now (None outside a job)."""
    global _run
    if _run is None and _attempt is not None:
        _run = _Run(*_attempt)
    return _run


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError("name", f"a step name must be a non-empty string, not {name!r}")
    if len(name) > MAX_STEP_NAME:
        raise ValidationError("name", f"a step name is at most {MAX_STEP_NAME} characters")
    return name


def _encode(name: str, value: Any) -> str:
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise StepNotSerializable(name, f"{type(value).__name__}: {exc}") from None
    if len(text) > _env.max_payload_bytes:
        raise StepNotSerializable(name, f"{len(text)} bytes, over max_payload_bytes={_env.max_payload_bytes}")
    return text


def _replay_or_start(name: str) -> tuple[_Run | None, Any, bool]:
    """(run, stored value, replayed): the run is None outside a job (the step just runs)."""
    run = _current_run()
    if run is None:
        return None, None, False
    record = run.check(run.recorded(), name, StepKind.STEP)
    if record is not None:
        run.advance(name)
        run.replayed += 1
        return run, json.loads(record.value) if record.value is not None else None, True
    return run, None, False


def _finish(run: _Run, name: str, seq_call: tuple[int, int], started: float, value: Any) -> Any:
    text = _encode(name, value)
    seq, call = seq_call
    done = StepState.SUCCEEDED
    run.record(StepRecord(run.job_id, seq, name, call, StepKind.STEP, done, run.attempt, text, started, time.time()))
    return json.loads(text)


def _hook(name: str, seq_call: tuple[int, int]) -> AbstractContextManager[Any]:
    return _env.hook(name, seq_call[1], seq_call[0]) if _env.hook is not None else contextlib.nullcontext()


def run_step(name: str, fn: Callable[..., Any], retries: int, retry_backoff: float, args: Any, kwargs: Any) -> Any:
    """Run (or replay) one step of the current job; its JSON value."""
    run, stored, replayed = _replay_or_start(name)
    if replayed:
        return stored
    if run is None:
        return fn(*args, **kwargs)
    seq_call = run.advance(name)
    started = time.time()
    with _hook(name, seq_call):
        for attempt in range(1, retries + 2):
            try:
                value = fn(*args, **kwargs)
                break
            except Exception:
                if attempt > retries:
                    raise
                time.sleep(retry_delay_seconds(attempt, retry_backoff, 300.0))
    return _finish(run, name, seq_call, started, value)


async def arun_step(name: str, fn: Callable[..., Any], retries: int, retry_backoff: float, args: Any, kwargs: Any) -> Any:
    """:func:`run_step` of an ``async def`` step."""
    run, stored, replayed = _replay_or_start(name)
    if replayed:
        return stored
    if run is None:
        return await fn(*args, **kwargs)
    seq_call = run.advance(name)
    started = time.time()
    with _hook(name, seq_call):
        for attempt in range(1, retries + 2):
            try:
                value = await fn(*args, **kwargs)
                break
            except Exception:
                if attempt > retries:
                    raise
                import asyncio  # imported by async jobs only (19 ms at a worker's start)

                await asyncio.sleep(retry_delay_seconds(attempt, retry_backoff, 300.0))
    return _finish(run, name, seq_call, started, value)


class StepAPI:
    """``@jobq.step``, ``@jobq.step(name=..., retries=N, retry_backoff=...)`` and
    ``jobq.step.run(name, fn, *args, **kwargs)``.

    A step's return value must be JSON; it is recorded the first time the step returns in
    a job, and returned from the record (without running) when the job runs again. A step
    that raises (after its own ``retries``) records nothing and runs again in the job's
    next attempt."""

    def __call__(self, fn: Any = None, /, *, name: str | None = None, retries: int = 0, retry_backoff: float = 1.0) -> Any:
        if name is not None:
            _check_name(name)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValidationError("retries", f"must be a whole number >= 0, not {retries!r}")
        if not isinstance(retry_backoff, int | float) or retry_backoff < 0:
            raise ValidationError("retry_backoff", f"must be a number >= 0, not {retry_backoff!r}")

        def decorate(f: F) -> F:
            step_name = str(name or getattr(f, "__qualname__", None) or getattr(f, "__name__", "step"))
            if inspect.iscoroutinefunction(f):

                @functools.wraps(f)
                async def astep(*args: Any, **kwargs: Any) -> Any:
                    return await arun_step(step_name, f, retries, float(retry_backoff), args, kwargs)

                return astep  # type: ignore[return-value]

            @functools.wraps(f)
            def step(*args: Any, **kwargs: Any) -> Any:
                return run_step(step_name, f, retries, float(retry_backoff), args, kwargs)

            return step  # type: ignore[return-value]

        if fn is None:
            return decorate
        if not callable(fn):
            raise ValidationError("fn", f"@jobq.step decorates a function, not {fn!r}")
        return decorate(fn)

    @staticmethod
    def run(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as the step ``name`` (or return its recorded value)."""
        return run_step(_check_name(name), fn, 0, 1.0, args, kwargs)


step = StepAPI()


def _wake_time(seconds: float | None, until: datetime | None) -> float:
    if (seconds is None) == (until is None):
        raise ValidationError("seconds", "give seconds or until=datetime, one of them")
    if until is not None:
        if not isinstance(until, datetime):
            raise ValidationError("until", f"must be a datetime, not {type(until).__name__}")
        return (until if until.tzinfo is not None else until.replace(tzinfo=UTC)).timestamp()
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds != seconds:
        raise ValidationError("seconds", f"must be a number, not {seconds!r}")
    return time.time() + float(seconds)


def sleep(seconds: float | None = None, *, until: datetime | None = None) -> None:
    """Sleep durably: the attempt ends and frees its worker, the job waits ``scheduled``
    and runs again at the wake time, replaying its steps up to here. 0 or a time in the
    past returns at once. Outside a job, a plain ``time.sleep``. (A naive ``until`` is UTC.)"""
    wake = _wake_time(seconds, until)
    run = _current_run()
    if run is None:
        time.sleep(max(0.0, wake - time.time()))
        return
    record = run.recorded()
    if record is not None and (record.kind == StepKind.SLEEP or wake > time.time()):
        record = run.check(record, SLEEP_NAME, StepKind.SLEEP)
        assert record is not None
        run.advance(SLEEP_NAME)
        run.replayed += 1
        if record.wake_at is not None and record.wake_at > time.time():
            raise Suspend(record.wake_at, None)  # woken early (a manual retry): sleep on
        return
    now = time.time()
    if wake <= now:
        return  # nothing to wait for: not a step
    seq, call = run.advance(SLEEP_NAME)
    kind, state = StepKind.SLEEP, StepState.SLEEPING
    run.record(StepRecord(run.job_id, seq, SLEEP_NAME, call, kind, state, run.attempt, None, now, None, None, wake))
    raise Suspend(wake, None)


def wait_for(key: str, timeout: float | None = None) -> Any:
    """Wait durably for the event ``key`` (see ``Queue.send_event``) and return its JSON
    payload. The attempt ends and frees its worker while the job waits ``scheduled``; an
    event sent before the wait is kept for it. Raises :class:`jobq.EventTimeout` when no
    event came within ``timeout`` seconds (None: wait for ever)."""
    key = check_event_key(key)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0):
        raise ValidationError("timeout", f"must be a number of seconds >= 0, not {timeout!r}")
    run = _current_run()
    if run is None:
        raise JobqError("jobq.wait_for runs inside a jobq job")
    record = run.check(run.recorded(), WAIT_NAME, StepKind.WAIT, key)
    now = time.time()
    if record is not None and record.state != StepState.WAITING:
        run.advance(WAIT_NAME)
        run.replayed += 1
        if record.state == StepState.TIMED_OUT:
            raise EventTimeout(key, timeout)
        return json.loads(record.value) if record.value is not None else None
    deadline = record.wake_at if record is not None else (now + timeout if timeout is not None else None)
    started = record.started_at if record is not None else now
    seq, call = run.advance(WAIT_NAME)
    kind, waiting = StepKind.WAIT, StepState.WAITING
    step = StepRecord(run.job_id, seq, WAIT_NAME, call, kind, waiting, run.attempt, None, started, None, key, deadline)
    replayed, run.replayed = run.replayed, 0
    if replayed:
        run.store.count_replayed(run.job_id, replayed)
    state, payload = run.store.take_event(_env.owner, step, key, deadline, now)
    if state is None:
        raise AttemptTakenBack(f"job {run.job_id}: attempt {run.attempt} was taken back while waiting for {key!r}")
    if state == WaitState.RECEIVED:
        return json.loads(payload) if payload is not None else None
    if state == WaitState.TIMED_OUT:
        raise EventTimeout(key, timeout)
    raise Suspend(deadline if deadline is not None else now + FOREVER_SECONDS, key)


async def asleep(seconds: float | None = None, *, until: datetime | None = None) -> None:
    """:func:`sleep` in an ``async def`` job (outside a job, an ``asyncio.sleep``)."""
    if _attempt is None:
        import asyncio

        await asyncio.sleep(max(0.0, _wake_time(seconds, until) - time.time()))
        return
    sleep(seconds, until=until)


async def await_event(key: str, timeout: float | None = None) -> Any:
    """:func:`wait_for` in an ``async def`` job."""
    return wait_for(key, timeout)


@contextlib.contextmanager
def attempt(job_id: int, attempt_no: int) -> Iterator[None]:
    """The steps of one attempt: begun before the target runs, ended after."""
    begin(job_id, attempt_no)
    try:
        yield
    finally:
        end()
