"""Durable steps' records (issue 16): what a job's run recorded, step by step, and the
limits on events. The runtime is :mod:`jobq.worker.steps`; the SQL is in :mod:`jobq.store`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import ValidationError
from .models import iso

#: the longest event key, in characters
MAX_EVENT_KEY = 200
#: the longest step name, in characters
MAX_STEP_NAME = 200


class StepKind(StrEnum):
    """What a recorded step is: a returned function, a durable sleep, an event wait."""

    STEP = "step"
    SLEEP = "sleep"
    WAIT = "wait"


class StepState(StrEnum):
    """A recorded step's state. ``sleeping`` reads ``slept`` once its wake time is past."""

    SUCCEEDED = "succeeded"
    SLEEPING = "sleeping"
    SLEPT = "slept"
    WAITING = "waiting"
    RECEIVED = "received"
    TIMED_OUT = "timed_out"


@dataclass
class StepRecord:
    """One recorded step of a job, at ``seq`` (0-based position in the job's run): ``call``
    counts the calls of ``name`` within the run (1-based). ``value`` is JSON text: a step's
    return value or a received event's payload."""

    job_id: int
    seq: int
    name: str
    call: int
    kind: StepKind
    state: StepState
    attempt: int
    value: str | None
    started_at: float
    finished_at: float | None
    wait_key: str | None = None
    wake_at: float | None = None

    def shown_state(self, now: float | None = None) -> StepState:
        """The state as a reader sees it (a sleep whose wake time passed has ``slept``)."""
        if self.state == StepState.SLEEPING and self.wake_at is not None and self.wake_at <= (now or time.time()):
            return StepState.SLEPT
        return self.state

    def to_dict(self) -> dict[str, Any]:
        """The public form (``jobq status ID --json``'s ``steps``, ``GET /api/v1/jobs/{id}/steps``)."""
        out: dict[str, Any] = {
            "name": self.name,
            "call": self.call,
            "state": self.shown_state().value,
            "attempt": self.attempt,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "kind": self.kind.value,
        }
        if self.wait_key is not None:
            out["key"] = self.wait_key
        if self.wake_at is not None:
            out["wake_at"] = iso(self.wake_at)
        return out


class WaitState(StrEnum):
    """What an event wait found: the event, its deadline passed, or nothing yet."""

    RECEIVED = "received"
    TIMED_OUT = "timed_out"
    WAITING = "waiting"


def check_event_key(key: Any) -> str:
    """The key, or :class:`ValidationError` naming ``key`` (a non-empty string of at most
    MAX_EVENT_KEY characters)."""
    if not isinstance(key, str) or not key:
        raise ValidationError("key", f"an event key must be a non-empty string, not {key!r}")
    if len(key) > MAX_EVENT_KEY:
        raise ValidationError("key", f"an event key is at most {MAX_EVENT_KEY} characters (got {len(key)})")
    return key
