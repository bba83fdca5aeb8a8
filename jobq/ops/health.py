"""Is the queue being served? What ``jobq health`` answers, for container health checks and
monitoring scripts: healthy when at least one live supervisor serves the database (and the
queue, when one is named) with a heartbeat newer than ``max_age`` seconds."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.config import Settings, load_settings
from ..core.errors import JobqError
from ..store.base import SupervisorInfo


@dataclass
class Health:
    """The answer: ``healthy``, the supervisors that count, and ``reason`` when unhealthy."""

    healthy: bool
    supervisors: list[SupervisorInfo] = field(default_factory=list)
    reason: str | None = None
    max_age: float = 0.0
    checked_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "reason": self.reason,
            "max_age": self.max_age,
            "supervisors": [
                {**s.to_dict(), "heartbeat_age": round(self.checked_at - s.heartbeat_at, 3)} for s in self.supervisors
            ],
        }


def _sqlite_file(url: str) -> str | None:
    if url.startswith(("postgresql://", "postgres://")):
        return None
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
    return os.path.abspath(os.path.expanduser(path))


def check_health(
    db: str | None = None,
    *,
    config: str | Settings | None = None,
    queue: str | None = None,
    max_age: float | None = None,
    this_host: bool = False,
) -> Health:
    """Check the database's supervisors. ``max_age`` defaults to ``lease_seconds`` (past it a
    supervisor's jobs are taken back anyway). Never creates the database; a database that
    cannot be read is unhealthy, with the reason. ``this_host``: only supervisors registered
    under this machine's host id count (a container's own health check)."""
    from ..client.queue import Queue

    settings = config if isinstance(config, Settings) else load_settings(config, overrides={"db": db})
    if db is not None and isinstance(config, Settings):
        settings = settings.replace(db=db)
    age_limit = settings.lease_seconds if max_age is None else max_age
    path = _sqlite_file(settings.db)
    if path is not None and not os.path.isfile(path):
        return Health(False, reason=f"no database at {path}", max_age=age_limit, checked_at=time.time())
    try:
        q = Queue(config=settings)
        live = q.live_supervisors()
    except JobqError as exc:
        return Health(False, reason=str(exc), max_age=age_limit, checked_at=time.time())
    now = time.time()
    where = settings.db if path is None else path
    if not live:
        return Health(False, reason=f"no live supervisor serves {where}", max_age=age_limit, checked_at=now)
    if this_host:
        host = settings.host()
        live = [s for s in live if s.host == host]
        if not live:
            return Health(False, reason=f"no live supervisor of {where} on host {host}", max_age=age_limit, checked_at=now)
    if queue is not None:
        live = [s for s in live if s.queues is None or queue in s.queues]
        if not live:
            return Health(False, reason=f"no live supervisor serves queue {queue!r}", max_age=age_limit, checked_at=now)
    fresh = [s for s in live if now - s.heartbeat_at <= age_limit]
    if not fresh:
        newest = min(now - s.heartbeat_at for s in live)
        return Health(
            False,
            reason=f"no supervisor heartbeat in the last {age_limit:g}s (newest {newest:.1f}s ago)",
            max_age=age_limit,
            checked_at=now,
        )
    return Health(True, fresh, max_age=age_limit, checked_at=now)
