"""jobq: a durable job queue on one SQLite file, run by a supervisor and its worker processes.

q = jobq.Queue("jobs.db")
job = q.submit("pkg.mod:fn", args=(1, 2))
with jobq.Supervisor(q, concurrency=2):
    print(job.join(timeout=5))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the modules that define them. They are imported on first use, so that a
# command such as `jobq status` loads only what it needs (``python -X importtime``).
_EXPORTS = {
    "Executor": "compat.executor",
    "Pool": "compat.pool",
    "Process": "compat.process",
    "run_chunk": "worker.chunks",
    "STATES": "core.models",
    "ConfigError": "core.errors",
    "Group": "client.queue",
    "GroupIncomplete": "core.errors",
    "GroupNotFound": "core.errors",
    "Job": "client.queue",
    "JobError": "core.models",
    "JobFailed": "core.errors",
    "JobNotFound": "core.errors",
    "JobqError": "core.errors",
    "OutcomeKind": "core.models",
    "Queue": "client.queue",
    "Settings": "core.config",
    "State": "core.models",
    "StoreBusy": "core.errors",
    "StoreError": "core.errors",
    "Supervisor": "runtime.supervisor",
    "TargetNotAllowed": "core.errors",
    "ValidationError": "core.errors",
    "current_job": "worker.main",
    "load_settings": "core.config",
}

__all__ = [
    "Executor",
    "Pool",
    "Process",
    "run_chunk",
    "STATES",
    "ConfigError",
    "Group",
    "GroupIncomplete",
    "GroupNotFound",
    "Job",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobqError",
    "OutcomeKind",
    "Queue",
    "Settings",
    "State",
    "StoreBusy",
    "StoreError",
    "Supervisor",
    "TargetNotAllowed",
    "ValidationError",
    "current_job",
    "load_settings",
]

if TYPE_CHECKING:
    from .client.queue import Group, Job, Queue
    from .compat.executor import Executor
    from .compat.pool import Pool
    from .compat.process import Process
    from .core.config import Settings, load_settings
    from .core.errors import (
        ConfigError,
        GroupIncomplete,
        GroupNotFound,
        JobFailed,
        JobNotFound,
        JobqError,
        StoreBusy,
        StoreError,
        TargetNotAllowed,
        ValidationError,
    )
    from .core.models import STATES, JobError, OutcomeKind, State
    from .runtime.supervisor import Supervisor
    from .worker.chunks import run_chunk
    from .worker.main import current_job


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
