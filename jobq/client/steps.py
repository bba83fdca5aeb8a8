"""The client side of durable steps (issue 16): sending events, reading a job's steps,
retrying a job from one of its steps. Mixed into :class:`jobq.Queue`."""

from __future__ import annotations

import builtins
import time
from typing import TYPE_CHECKING, Any

from ..core.errors import JobNotFound, ValidationError
from ..core.models import dumps
from ..core.steps import MAX_STEP_NAME, StepRecord, check_event_key
from .handles import _job_id

if TYPE_CHECKING:
    from ..core.config import Settings
    from ..core.local import Poker
    from ..store import Store


def encode_payload(payload: Any, max_payload_bytes: int) -> str:
    """The payload's JSON text, or :class:`ValidationError` naming ``payload``."""
    try:
        text = dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"must be JSON-serialisable: {exc}") from None
    if len(text.encode()) > max_payload_bytes:
        raise ValidationError("payload", f"is {len(text.encode())} bytes, over max_payload_bytes={max_payload_bytes}")
    return text


class StepsClient:
    """Events and steps (a mixin of :class:`jobq.Queue`)."""

    store: Store
    settings: Settings
    _poker: Poker | None

    def send_event(self, key: str, payload: Any = None) -> int:
        """Send the event ``key`` with a JSON ``payload``: a job waiting in
        ``jobq.wait_for(key)`` gets it (the one waiting longest, or the next to ask: an
        event nobody waits for is kept until a job asks or it is purged). Returns its id."""
        key = check_event_key(key)
        text = encode_payload(payload, self.settings.max_payload_bytes)
        event_id = self.store.send_event(key, text, time.time())
        if self._poker is not None:
            self._poker.poke()
        return event_id

    def events(self, key: str | None = None, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """Events, newest first (``consumed_by``: the job that received it, or None)."""
        if key is not None:
            check_event_key(key)
        from ..core.models import iso

        return [
            {"id": i, "key": k, "payload": _loads(p), "created_at": iso(c), "consumed_by": by, "consumed_at": iso(at)}
            for i, k, p, c, by, at in self.store.events(key, limit)
        ]

    def purge_events(self, older_than: float = 0.0, consumed_only: bool = False) -> int:
        """Delete events sent more than ``older_than`` seconds ago (only consumed ones with
        ``consumed_only``); how many."""
        if isinstance(older_than, bool) or not isinstance(older_than, int | float) or older_than < 0:
            raise ValidationError("older_than", f"must be a number of seconds >= 0, not {older_than!r}")
        return self.store.purge_events(time.time() - older_than, consumed_only)

    def steps(self, job_id: Any) -> builtins.list[StepRecord]:
        """The job's recorded steps in call order. Raises :class:`JobNotFound`."""
        jid = _job_id(job_id)
        if not self.store.get_states([jid]):
            raise JobNotFound(job_id)
        return self.store.load_steps(jid)

    def job_status(self, job_id: Any) -> dict[str, Any]:
        """The job's public record with its ``steps`` and the key it is ``waiting_for``:
        ``jobq status ID --json`` and ``GET /api/v1/jobs/{id}``."""
        record = self.store.get(_job_id(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return {
            **record.to_dict(),
            "steps": [s.to_dict() for s in self.store.load_steps(record.id)],
            "waiting_for": self.store.waiting_for(record.id) if record.state == "scheduled" else None,
        }

    def waiting_for(self, job_id: Any) -> str | None:
        """The event key the job waits for (None when it waits for none)."""
        jid = _job_id(job_id)
        states = self.store.get_states([jid])
        if not states:
            raise JobNotFound(job_id)
        return self.store.waiting_for(jid) if states[jid] == "scheduled" else None

    def retry_from_step(self, job_id: Any, name: str) -> builtins.list[int]:
        """Run a failed, cancelled or succeeded job again, keeping the recorded steps before
        the first call of step ``name`` and running ``name`` and everything after it again."""
        if not isinstance(name, str) or not name or len(name) > MAX_STEP_NAME:
            raise ValidationError("from_step", f"must be a step name (a string of 1 to {MAX_STEP_NAME} characters), not {name!r}")
        jid = _job_id(job_id)
        if not self.store.get_states([jid]):
            raise JobNotFound(job_id)
        out = [jid] if self.store.retry_from_step(jid, name, time.time()) else []
        if out and self._poker is not None:
            self._poker.poke()
        return out


def _loads(text: str) -> Any:
    import json

    return json.loads(text)
