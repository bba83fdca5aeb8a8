"""jobq: a durable job queue on one SQLite file, run by a supervisor and its worker processes.

q = jobq.Queue("jobs.db")
job = q.submit("pkg.mod:fn", args=(1, 2))
with jobq.Supervisor(q, concurrency=2):
    print(job.join(timeout=5))
"""

from __future__ import annotations

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
    ValidationError,
)
from .executor import Executor
from .models import STATES, JobError, OutcomeKind, State
from .pool import Pool
from .process import Process
from .supervisor import Supervisor
from .worker import current_job

__version__ = "0.1.0"

__all__ = [
    "STATES",
    "ConfigError",
    "Executor",
    "Group",
    "GroupIncomplete",
    "GroupNotFound",
    "Job",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobqError",
    "OutcomeKind",
    "Pool",
    "Process",
    "Queue",
    "Settings",
    "State",
    "StoreBusy",
    "StoreError",
    "Supervisor",
    "ValidationError",
    "current_job",
    "load_settings",
    "run_chunk",
]
