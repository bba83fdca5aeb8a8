"""Periodic jobs: when a schedule runs next. Cron expressions are read in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.config import Settings
from ..core.errors import ValidationError
from ..store.base import Schedule, Store


def check_cron(expression: str) -> None:
    """Raise :class:`ValidationError` unless ``expression`` is a valid cron expression."""
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ValidationError("cron", f"not a valid cron expression: {expression!r}")


def next_run_after(schedule: Any, now: float) -> float:
    """The first time strictly after ``now`` that ``schedule`` is due. Missed runs collapse:
    a supervisor that was down enqueues one run on return, not one per missed tick."""
    if schedule.every:
        every = float(schedule.every)
        start = schedule.next_run_at if schedule.next_run_at is not None else now
        if start > now:
            return start
        missed = int((now - start) // every) + 1
        return start + missed * every
    from croniter import croniter

    base = datetime.fromtimestamp(now, UTC)
    return float(croniter(schedule.cron, base).get_next(float))


def first_run_at(cron: str | None, every: float | None, now: float) -> float:
    """When a new schedule first runs: one period from now."""
    if every:
        return now + every
    assert cron is not None
    return next_run_after(Schedule("", "", [], {}, "", cron, None, now), now)


def sync_schedules(store: Store, settings: Settings, now: float) -> None:
    """Store the schedules declared in the configuration (new or changed ones)."""
    for s in settings.schedules:
        if s.cron:
            check_cron(s.cron)
        store.upsert_schedule(
            Schedule(s.name, s.target, s.args, s.kwargs, s.queue, s.cron, s.every, first_run_at(s.cron, s.every, now))
        )
