"""Job records and job semantics. Job definitions (:class:`JobSpec`, validated with pydantic
at submit time) are in :mod:`jobq.core.spec`, imported on first use: reading jobs needs no pydantic."""

from __future__ import annotations

import importlib
import json
import random
import sys
import traceback as _traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from .codec import dumps as dumps
from .codec import loads
from .errors import ValidationError


class State(StrEnum):
    """A job's state. ``queued``/``scheduled``/``waiting`` wait to run; ``claimed`` is held by a
    supervisor that has not started it yet (a prefetch batch); ``running`` is run by a worker
    (its record names the worker); ``succeeded``/``failed``/``cancelled`` are final. Compares
    equal to its text."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the state is final."""
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    @property
    def held(self) -> bool:
        """Whether a supervisor holds the job (claimed or running)."""
        return self in (State.CLAIMED, State.RUNNING)


QUEUED, SCHEDULED, WAITING, CLAIMED, RUNNING = State.QUEUED, State.SCHEDULED, State.WAITING, State.CLAIMED, State.RUNNING
SUCCEEDED, FAILED, CANCELLED = State.SUCCEEDED, State.FAILED, State.CANCELLED
STATES = tuple(s.value for s in State)
FINISHED_STATES = (SUCCEEDED.value, FAILED.value, CANCELLED.value)
UNFINISHED_NOT_RUNNING = (QUEUED.value, SCHEDULED.value, WAITING.value)


class OutcomeKind(StrEnum):
    """How one attempt of a job ended, as a supervisor or worker reports it to the store."""

    SUCCEEDED = "succeeded"  # the return value is stored
    FAILED = "failed"  # retried when retriable and attempts remain, else final
    CANCELLED = "cancelled"  # ended by a cancel request
    RELEASED = "released"  # never started, or ended by a drain: queued again, attempt not counted
    SUSPENDED = "suspended"  # a durable sleep or event wait: scheduled until ``wake_at``, attempt not counted


@dataclass(frozen=True)
class JobError:
    """Why an attempt failed: the exception's type name, its message and its traceback text."""

    type: str
    message: str = ""
    traceback: str = ""
    item: int | None = None  # the input index of the item that raised it, in a chunked map
    #: ``module:qualname`` of the exception's class and its ``args`` (when they are JSON), from
    #: which a caller rebuilds it (``jobq.Pool``, ``jobq.Executor``: as multiprocessing does)
    exc_class: str | None = None
    exc_args: list[Any] | None = None
    exc_attrs: dict[str, Any] | None = None  # its instance attributes, when they are JSON

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        """The error of an exception a job raised, with its formatted traceback."""
        text = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        item = getattr(exc, "jobq_item", None)  # set by jobq.chunks.run_chunk
        kind = type(exc)
        args, attrs = _rebuild_args(exc)
        return cls(
            kind.__name__,
            str(exc),
            text,
            item if isinstance(item, int) else None,
            f"{kind.__module__}:{kind.__qualname__}",
            args,
            attrs,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> JobError:
        """The error of its stored JSON form (missing keys stay empty)."""
        data = data or {}
        item = data.get("item")
        kind, args, attrs = data.get("class"), data.get("args"), data.get("attrs")
        return cls(
            str(data.get("type") or "Error"),
            str(data.get("message") or ""),
            str(data.get("traceback") or ""),
            item if isinstance(item, int) else None,
            kind if isinstance(kind, str) else None,
            args if isinstance(args, list) else None,
            attrs if isinstance(attrs, dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored (and public JSON) form (``item``, ``class`` and ``args`` only when set)."""
        out: dict[str, Any] = {"type": self.type, "message": self.message, "traceback": self.traceback}
        if self.item is not None:
            out["item"] = self.item
        if self.exc_class is not None:
            out["class"] = self.exc_class
        if self.exc_args is not None:
            out["args"] = self.exc_args
        if self.exc_attrs:
            out["attrs"] = self.exc_attrs
        return out

    def to_json(self) -> str:
        return dumps(self.to_dict())


def _rebuild_args(exc: BaseException) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The arguments pickle would rebuild ``exc`` from (``__reduce__``: OSError's filename is
    one) and its instance attributes, each kept only when it is JSON and not too big."""
    args: Any = exc.args
    attrs: Any = None
    try:
        reduced = exc.__reduce__()
        if isinstance(reduced, tuple) and len(reduced) >= 2 and reduced[0] is type(exc):
            args = reduced[1]
            attrs = reduced[2] if len(reduced) > 2 and isinstance(reduced[2], dict) and reduced[2] else None
    except Exception:  # noqa: BLE001 - an exception's own __reduce__ failing: keep its args
        pass
    kept: list[Any] = []
    for value in (list(args), attrs):
        try:
            kept.append(value if value is None or len(dumps(value)) <= MAX_ERROR_ARGS_BYTES else None)
        except (TypeError, ValueError):
            kept.append(None)
    return kept[0], kept[1]


CANCELLED_BY_REQUEST = JobError("Cancelled", "cancelled by request")
# An exception's args bigger than this as JSON are not kept (its message and traceback are).
MAX_ERROR_ARGS_BYTES = 65536
TARGET_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# A job whose worker dies by a signal this many attempts in a row is failed as Quarantined
# (the default of the max_crashes setting).
DEFAULT_MAX_CRASHES = 3
# A supervisor that dies with a job in hand does not spend the job's retries; this many
# such losses beyond max_attempts end the job failed, so a job that kills its supervisor
# cannot loop for ever.
MAX_LOST_ATTEMPTS = 5


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC text of a Unix timestamp (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def retry_delay_seconds(attempt: int, backoff: float, backoff_max: float) -> float:
    """Exponential backoff with full jitter in [delay/2, delay] after failed ``attempt`` (1-based)."""
    if backoff <= 0:
        return 0.0
    delay = min(backoff_max, backoff * (2 ** max(0, attempt - 1)))
    return delay / 2 + random.random() * delay / 2


def target_of(fn: Any) -> str:
    """``module:qualname`` of a function object, resolving a script's ``__main__``."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValidationError("target", f"{fn!r} is not importable by its module path")
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
        elif main is not None and getattr(main, "__file__", None):
            from pathlib import Path

            module = Path(str(main.__file__)).stem
    return f"{module}:{qualname}"


def resolve_target(target: str) -> Any:
    """Import ``module:qualname`` and return the callable. Raises ImportError/AttributeError."""
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def check_target(target: str) -> None:
    """Raise :class:`ValidationError` unless ``target`` imports to a callable here."""
    try:
        obj = resolve_target(target)
    except Exception as exc:  # any import-time failure is the caller's bad target
        raise ValidationError("target", f"cannot import {target}: {type(exc).__name__}: {exc}") from None
    if not callable(obj):
        raise ValidationError("target", f"{target} is not callable")


@dataclass
class JobRecord:
    """A job as stored. Times are Unix seconds; ``to_dict`` gives the public JSON shape."""

    id: int
    name: str | None
    target: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    state: State
    attempts: int
    max_attempts: int
    run_at: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    owner: str | None = None
    worker: int | None = None
    timeout: float | None = None
    key: str | None = None
    group_id: str | None = None
    group_index: int | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    partition: str | None = None
    memory_mb: int | None = None
    cpus: int = 1
    crashes: int = 0
    quarantined: bool = False
    claimed_at: float | None = None
    depends_on: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        """A record from a row of the ``jobs`` table, by column name."""
        return cls(
            id=row["id"],
            name=row["name"],
            target=row["target"],
            args=json.loads(row["args"]),
            kwargs=json.loads(row["kwargs"]),
            queue=row["queue"],
            priority=row["priority"],
            state=State(row["state"]),
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            result=loads(row["result"]) if row["result"] is not None else None,
            error=json.loads(row["error"]) if row["error"] else None,
            owner=row["owner"],
            worker=row["worker"],
            timeout=row["timeout"],
            key=row["key"],
            group_id=f"g{row['group_id']}" if row["group_id"] is not None else None,
            group_index=row["group_index"],
            progress=row["progress"],
            progress_message=row["progress_message"],
            cancel_requested=bool(row["cancel_requested"]),
            partition=row.get("partition_key"),
            memory_mb=row.get("memory_mb"),
            cpus=row.get("cpus") or 1,
            crashes=row.get("crashes") or 0,
            quarantined=bool(row.get("quarantined")),
            claimed_at=row.get("claimed_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The public record: what ``jobq status ID --json`` prints."""
        return {
            "id": self.id,
            "name": self.name,
            "target": self.target,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "state": self.state.value if isinstance(self.state, State) else self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "result": self.result,
            "error": self.error,
            "errors": self.errors,
            "created_at": iso(self.created_at),
            "run_at": iso(self.run_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "supervisor": self.owner,
            "worker": self.worker,
            "timeout": self.timeout,
            "key": self.key,
            "group": self.group_id,
            "group_index": self.group_index,
            "depends_on": self.depends_on,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "partition": self.partition,
            "memory_mb": self.memory_mb,
            "cpus": self.cpus,
            "crashes": self.crashes,
            "quarantined": self.quarantined,
            "claimed_at": iso(self.claimed_at),
        }


class ClaimedJob(NamedTuple):
    """What a supervisor needs to run one claimed job (a named tuple: a claim builds hundreds
    at a time, in C, from the claim's rows)."""

    id: int
    target: str
    args_json: str  # decoded by the worker: JSON work stays off the supervisor
    kwargs_json: str
    attempts: int
    timeout: float | None
    queue: str
    trace: str | None = None  # the submitter's W3C trace context (JSON), when it was traced
    memory_mb: int | None = None  # the job's memory cap (the worker sets it while the job runs)
    cpus: int = 1  # worker slots the job occupies


class Outcome(NamedTuple):
    """A finished attempt, to be written back fenced on (id, running, owner, attempts).

    ``result_json`` is set for :attr:`OutcomeKind.SUCCEEDED`; ``error`` for the others. A
    ``failed`` outcome is retried when ``retriable`` and attempts remain. (A named tuple: a
    worker makes one a job, in C.)"""

    job_id: int
    attempts: int
    kind: OutcomeKind
    result_json: str | None = None
    error: JobError | None = None
    retriable: bool = True
    worker: int | None = None
    output: str | None = None
    finished_at: float = 0.0
    started_at: float | None = None
    #: a suspended attempt: when the job runs again, and the event key it waits for
    wake_at: float | None = None
    wait_key: str | None = None
    #: the worker died by a signal the supervisor did not send (segfault, SIGKILL, OOM):
    #: counted towards quarantine, ``max_crashes`` such attempts in a row
    crashed: bool = False
    max_crashes: int = 0
