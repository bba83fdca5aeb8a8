"""jobq: a durable job queue on one SQLite file, run by a supervisor and its worker processes.

q = jobq.Queue("jobs.db")
job = q.submit("pkg.mod:fn", args=(1, 2))
with jobq.Supervisor(q, concurrency=2):
    print(job.join(timeout=5))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core import __version__ as __version__

# Public names and the modules that define them: the one list of jobq's exports. They are
# imported on first use, so that a command such as `jobq status` loads only what it needs
# (``python -X importtime``); the TYPE_CHECKING block below tells type checkers the same.
_EXPORTS = {
    "Executor": "compat.executor",
    "Pool": "compat.pool",
    "Process": "compat.process",
    "run_chunk": "worker.chunks",
    "STATES": "core.models",
    "ConfigError": "core.errors",
    "Group": "client.handles",
    "GroupIncomplete": "core.errors",
    "GroupNotFound": "core.errors",
    "Job": "client.handles",
    "JobError": "core.models",
    "JobFailed": "core.errors",
    "JobNotFound": "core.errors",
    "JobqError": "core.errors",
    "OutcomeKind": "core.models",
    "Queue": "client.queue",
    "Settings": "core.config",
    "State": "core.models",
    "StoreBusy": "core.errors",
    "SubmitOptions": "client.options",
    "StoreError": "core.errors",
    "Supervisor": "runtime.supervisor",
    "TargetNotAllowed": "core.errors",
    "ValidationError": "core.errors",
    "current_job": "worker.context",
    "load_settings": "core.config",
    "step": "worker.steps",
    "sleep": "worker.steps",
    "wait_for": "worker.steps",
    "asleep": "worker.steps",
    "await_event": "worker.steps",
    "StepMismatch": "core.errors",
    "StepNotSerializable": "core.errors",
    "EventTimeout": "core.errors",
}

__all__ = [*_EXPORTS]  # the export table above is the one list of public names

if TYPE_CHECKING:  # the same names for type checkers (`X as X`: re-exported)
    from .client.handles import Group as Group
    from .client.handles import Job as Job
    from .client.options import SubmitOptions as SubmitOptions
    from .client.queue import Queue as Queue
    from .compat.executor import Executor as Executor
    from .compat.pool import Pool as Pool
    from .compat.process import Process as Process
    from .core.config import Settings as Settings
    from .core.config import load_settings as load_settings
    from .core.errors import (
        ConfigError as ConfigError,
    )
    from .core.errors import (
        EventTimeout as EventTimeout,
    )
    from .core.errors import (
        GroupIncomplete as GroupIncomplete,
    )
    from .core.errors import (
        GroupNotFound as GroupNotFound,
    )
    from .core.errors import (
        JobFailed as JobFailed,
    )
    from .core.errors import (
        JobNotFound as JobNotFound,
    )
    from .core.errors import (
        JobqError as JobqError,
    )
    from .core.errors import (
        StepMismatch as StepMismatch,
    )
    from .core.errors import (
        StepNotSerializable as StepNotSerializable,
    )
    from .core.errors import (
        StoreBusy as StoreBusy,
    )
    from .core.errors import (
        StoreError as StoreError,
    )
    from .core.errors import (
        TargetNotAllowed as TargetNotAllowed,
    )
    from .core.errors import (
        ValidationError as ValidationError,
    )
    from .core.models import STATES as STATES
    from .core.models import JobError as JobError
    from .core.models import OutcomeKind as OutcomeKind
    from .core.models import State as State
    from .runtime.supervisor import Supervisor as Supervisor
    from .worker.chunks import run_chunk as run_chunk
    from .worker.context import current_job as current_job
    from .worker.steps import asleep as asleep
    from .worker.steps import await_event as await_event
    from .worker.steps import sleep as sleep
    from .worker.steps import step as step
    from .worker.steps import wait_for as wait_for


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
