"""The options of a submit, in one place: :class:`SubmitOptions`.

Every entry point (``Queue.submit``/``map``/``submit_many``/``submit_batch``, ``@q.task``,
``jobq.Process``/``Pool``/``Executor`` and ``jobq submit``) builds one of these, so an option
is named, checked and defaulted once. ``None`` means "the queue's default, then the global one"
(``[queues.NAME]`` and the settings), resolved by :meth:`SubmitOptions.spec_data`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ..core.config import QUEUE_NAME_PATTERN, Settings, parse_duration
from ..core.errors import ValidationError
from ..core.models import target_of


@dataclass(slots=True)
class SubmitOptions:
    """The keywords of :meth:`jobq.Queue.submit` (see its docstring for each). Treated as
    immutable (:meth:`merged` makes a changed copy); not frozen, since a frozen dataclass's
    constructor costs four microseconds more on every submit."""

    queue: str = "default"
    priority: int | None = None
    name: str | None = None
    timeout: float | str | None = None
    retries: int | None = None
    retry_backoff: float | str | None = None
    retry_backoff_max: float | str | None = None
    delay: float | str | None = None
    run_at: datetime | None = None
    key: str | None = None
    depends_on: Any = None
    pass_results: bool = False
    result_ttl: float | str | None = None
    check: bool = True
    #: the caller's connection whose open transaction takes the insert (issue 18)
    conn: Any = None
    # issue 17: a fair share inside the queue, a memory cap (MB), cpu slots, and debounce
    partition: str | None = None
    memory_mb: int | None = None
    cpus: int | None = None
    on_conflict: str = "return"

    # Options that name one job (a key, its dependencies, its own time): not for a batch.
    PER_JOB: ClassVar[frozenset[str]] = frozenset({"key", "depends_on", "pass_results", "on_conflict"})
    # Options of one call that a Pool, an Executor or a Process cannot apply to its every job.
    PER_CALL: ClassVar[frozenset[str]] = frozenset({"conn"})
    # What makes sense for every job of a @task (per-call notions go through q.submit).
    TASK: ClassVar[frozenset[str]] = frozenset(
        {
            "queue",
            "priority",
            "name",
            "timeout",
            "retries",
            "retry_backoff",
            "retry_backoff_max",
            "result_ttl",
            "check",
            "partition",
            "memory_mb",
            "cpus",
        }
    )

    @classmethod
    def names(cls) -> frozenset[str]:
        """Every option's name."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(
        cls, options: Mapping[str, Any], *, allowed: Iterable[str] | None = None, where: str = "submit", hint: str = ""
    ) -> SubmitOptions:
        """Options from keywords; a keyword that is not an option (or not ``allowed`` here)
        raises :class:`ValidationError` naming it."""
        permitted = cls.names() if allowed is None else frozenset(allowed)
        for name in sorted(options):
            if name not in permitted:
                raise ValidationError(str(name), f"not an option of {where}{hint}")
        return cls(**options)

    def merged(self, **overrides: Any) -> SubmitOptions:
        """A copy with ``overrides`` (option names) replaced."""
        return dataclasses.replace(self, **overrides)

    def given(self) -> dict[str, Any]:
        """The options that differ from their defaults, as keywords."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def check_batch(self) -> None:
        """Refuse the per-job options in a map or ``submit_many``."""
        for name in sorted(self.PER_JOB):
            if getattr(self, name) not in (None, False, "return"):
                raise ValidationError(name, "not supported by map/submit_many; use submit")

    def spec_data(
        self,
        target: str | Callable[..., Any],
        args: Any,
        kwargs: Any,
        settings: Settings,
        now: float,
        dependency_ids: Callable[[Any], list[int]],
    ) -> dict[str, Any]:
        """The input of :func:`jobq.core.spec.validate_spec` for one job: absent options take
        the queue's (``[queues.NAME]``), then the global, defaults."""
        if callable(target) and not isinstance(target, str):
            target = target_of(target)
        if not isinstance(target, str):
            raise ValidationError("target", "expected 'package.module:function' or a function")
        qs = settings.queue_settings(self.queue) if isinstance(self.queue, str) else None

        def pick(value: Any, attr: str, default: Any) -> Any:
            if value is not None:
                return value
            per_queue = getattr(qs, attr) if qs is not None else None
            return per_queue if per_queue is not None else default

        data: dict[str, Any] = {
            "target": target,
            "args": list(args) if isinstance(args, tuple) else args,
            "kwargs": {} if kwargs is None else kwargs,
            "queue": self.queue,
            "priority": pick(self.priority, "priority", 0),
            "name": self.name,
            "timeout": duration("timeout", pick(self.timeout, "timeout", settings.timeout)),
            "retries": pick(self.retries, "retries", settings.retries),
            "retry_backoff": duration("retry_backoff", pick(self.retry_backoff, "retry_backoff", settings.retry_backoff)),
            "retry_backoff_max": duration(
                "retry_backoff_max", pick(self.retry_backoff_max, "retry_backoff_max", settings.retry_backoff_max)
            ),
            "key": self.key,
            "pass_results": bool(self.pass_results),
            "result_ttl": duration("result_ttl", self.result_ttl),
            "partition": self.partition,
            "memory_mb": pick(self.memory_mb, "memory_mb", None),
            "cpus": 1 if self.cpus is None else self.cpus,
            "on_conflict": self.on_conflict,
        }
        if self.delay is not None and self.run_at is not None:
            raise ValidationError("delay", "give delay or run_at, not both")
        if self.delay is not None:
            data["run_at"] = now + (duration("delay", self.delay) or 0.0)
        elif self.run_at is not None:
            if not isinstance(self.run_at, datetime) or self.run_at.tzinfo is None:
                raise ValidationError("run_at", "expected a timezone-aware datetime")
            data["run_at"] = self.run_at.timestamp()
        if self.depends_on is not None:
            ids = dependency_ids(self.depends_on)
            if ids:
                data["depends_on"] = ids
        return data


def duration(field: str, value: Any) -> float | None:
    """Seconds from a number or a text such as ``30s``, ``5m``, ``2h``; None stays None."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValidationError(field, str(exc)) from None


def check_queue_name(name: str) -> None:
    """Raise :class:`ValidationError` unless ``name`` is a valid queue name."""
    if not isinstance(name, str) or not re.match(QUEUE_NAME_PATTERN, name):
        raise ValidationError("queue", f"bad queue name {name!r}: 1-64 of letters, digits, _ . -")


def as_args(item: Any, tuple_only: bool) -> Any:
    """The argument list of a map item (a tuple, or a list too unless ``tuple_only``)."""
    if isinstance(item, tuple) or (not tuple_only and isinstance(item, list)):
        return item
    return (item,)
