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
    "Executor": "executor",
    "Pool": "pool",
    "Process": "process",
    "run_chunk": "chunks",
    "STATES": "models",
    "ConfigError": "errors",
    "Group": "api",
    "GroupIncomplete": "errors",
    "GroupNotFound": "errors",
    "Job": "api",
    "JobError": "models",
    "JobFailed": "errors",
    "JobNotFound": "errors",
    "JobqError": "errors",
    "OutcomeKind": "models",
    "Queue": "api",
    "Settings": "config",
    "State": "models",
    "StoreBusy": "errors",
    "StoreError": "errors",
    "Supervisor": "supervisor",
    "TargetNotAllowed": "errors",
    "ValidationError": "errors",
    "current_job": "worker",
    "load_settings": "config",
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
    from .api import Group, Job, Queue
    from .chunks import run_chunk
    from .config import Settings, load_settings
    from .errors import (
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
    from .executor import Executor
    from .models import STATES, JobError, OutcomeKind, State
    from .pool import Pool
    from .process import Process
    from .supervisor import Supervisor
    from .worker import current_job


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
