"""The managing half of :class:`jobq.Queue` (a mixin): cancel, retry and purge jobs, cap,
pause and resume queues, declare schedules."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..core.config import Settings
from ..core.errors import JobNotFound, ValidationError
from ..core.limits import check_positive, check_rate
from ..core.local import Poker
from ..core.models import FINISHED_STATES, target_of
from ..store import QueueInfo, Schedule, Store
from .handles import _job_id
from .options import check_queue_name, duration
from .steps import StepsClient

#: "leave this control as it is" (Queue.set_queue_limit)
KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()


class QueueAdmin(StepsClient):
    """Cancel, retry, purge; queue caps and pauses; schedules. Mixed into :class:`jobq.Queue`."""

    settings: Settings
    store: Store
    _poker: Poker | None

    def cancel(self, *job_ids: Any) -> dict[int, str]:
        """Cancel jobs; a running one is ended by its supervisor within a heartbeat."""
        ids = [_job_id(j) for j in job_ids]
        known = self.store.get_states(ids)
        for jid, given in zip(ids, job_ids, strict=True):
            if jid not in known:
                raise JobNotFound(given)
        return self.store.cancel(ids, time.time())

    def retry(
        self,
        *job_ids: Any,
        failed: bool = False,
        queue: str | None = None,
        include_quarantined: bool = False,
        from_step: str | None = None,
    ) -> builtins.list[int]:
        """Requeue the given failed/cancelled jobs, or with ``failed=True`` every failed job
        but the quarantined ones (``include_quarantined=True``: those too). Recorded steps
        replay; with ``from_step``, one job (failed, cancelled or succeeded) runs again from
        its step of that name (see :meth:`retry_from_step`)."""
        if from_step is not None:
            if len(job_ids) != 1 or failed:
                raise ValidationError("from_step", "retries exactly one job, given by its id")
            return self.retry_from_step(job_ids[0], from_step)
        if failed:
            out = self.store.retry(None, time.time(), queue=queue, include_quarantined=include_quarantined)
        else:
            ids = [_job_id(j) for j in job_ids]
            known = self.store.get_states(ids)
            for jid, given in zip(ids, job_ids, strict=True):
                if jid not in known:
                    raise JobNotFound(given)
            out = self.store.retry(ids, time.time(), queue=queue)
        if out and self._poker is not None:
            self._poker.poke()
        return out

    def purge(self, states: Iterable[str] = ("succeeded", "failed", "cancelled"), older_than: float | str | None = None) -> int:
        """Delete finished jobs (of ``states``) finished more than ``older_than`` ago."""
        states = list(states)
        for state in states:
            if state not in FINISHED_STATES:
                raise ValidationError("state", f"only finished jobs can be purged ({', '.join(FINISHED_STATES)})")
        age = duration("older_than", older_than) if older_than is not None else 0.0
        return self.store.purge(time.time(), states, age)

    # -- queue controls -------------------------------------------------------------
    def set_queue_limit(self, name: str, concurrency: Any = KEEP, *, per_partition: Any = KEEP) -> None:
        """Cap how many jobs of queue ``name`` run at once across every supervisor of this
        database (None removes the cap), and with ``per_partition`` how many of each of its
        partitions (None removes it); a cap not given is left as it is. Kept in the
        database; every claim honours them."""
        check_queue_name(name)
        if concurrency is not KEEP:
            check_positive("concurrency", concurrency)
        if per_partition is not KEEP:
            check_positive("per_partition", per_partition)
        if concurrency is not KEEP:
            self.store.set_queue_limit(name, concurrency, time.time())
        if per_partition is not KEEP:
            self.store.set_partition_limit(name, per_partition, time.time())

    def set_queue_rate(self, name: str, count: int | None, per_seconds: float | None = 1.0) -> None:
        """Limit the *starts* of queue ``name`` to ``count`` per ``per_seconds`` across every
        supervisor (``count=None`` removes the rate): a token bucket whose burst is
        ``count``, spent in the claim itself. Running jobs are limited by the cap, starts by
        the rate."""
        check_queue_name(name)
        rate = None if count is None else check_rate(count, per_seconds)
        if rate is None:
            self.store.set_queue_rate(name, None, None, time.time())
        else:
            self.store.set_queue_rate(name, rate[0], rate[1], time.time())

    def pause_queue(self, name: str) -> None:
        """Stop every supervisor claiming from queue ``name``: running jobs finish, queued
        jobs wait, submits still work."""
        check_queue_name(name)
        self.store.set_queue_paused(name, True, time.time())

    def resume_queue(self, name: str) -> None:
        """Let supervisors claim from queue ``name`` again."""
        check_queue_name(name)
        self.store.set_queue_paused(name, False, time.time())
        if self._poker is not None:
            self._poker.poke()

    def queues(self) -> builtins.list[QueueInfo]:
        """Every queue that has jobs, a stored cap or pause, or a ``[queues.NAME]`` table."""
        controls = {c.name: c for c in self.store.queue_controls()}
        names = sorted(set(self.store.counts()) | set(controls) | set(self.settings.queues))
        return [controls.get(name) or QueueInfo(name) for name in names]

    def schedule(
        self,
        name: str,
        target: str | Callable[..., Any],
        args: Any = (),
        cron: str | None = None,
        every: float | str | None = None,
        *,
        kwargs: dict[str, Any] | None = None,
        queue: str = "default",
    ) -> Schedule:
        """Declare (or update) a periodic job; supervisors enqueue each run exactly once."""
        from ..core.allow import check_allowed
        from ..core.config import ScheduleSettings, validate
        from ..runtime.schedules import check_cron, first_run_at

        if callable(target) and not isinstance(target, str):
            target = target_of(target)
        s = validate(
            ScheduleSettings,
            {"name": name, "target": target, "args": args, "kwargs": kwargs or {}, "queue": queue, "cron": cron, "every": every},
            whole="schedule",
        )
        check_allowed(s.target, self.settings.allowed_targets)
        from ..core.spec import validate_spec

        validate_spec({"target": s.target, "args": s.args, "kwargs": s.kwargs, "queue": s.queue}, self.settings.max_payload_bytes)
        if s.cron:
            check_cron(s.cron)
        schedule = Schedule(
            s.name, s.target, s.args, s.kwargs, s.queue, s.cron, s.every, first_run_at(s.cron, s.every, time.time())
        )
        self.store.upsert_schedule(schedule)
        return schedule

    def schedules(self) -> builtins.list[Schedule]:
        """Every schedule: those of the configuration (stored on first sight) and of :meth:`schedule`."""
        from ..runtime.schedules import sync_schedules

        sync_schedules(self.store, self.settings, time.time())
        return self.store.schedules()
