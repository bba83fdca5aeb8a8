"""The one place where a stored failure becomes the exception its caller sees."""

from __future__ import annotations

from ..core.errors import JobFailed, JobNotFound
from ..core.models import JobError, State
from ..store import JobResult


def job_failed(job_id: int, state: State | str, error: JobError | None, index: int | None = None) -> JobFailed:
    """:class:`JobFailed` for a job that ended ``failed`` or ``cancelled`` with ``error``."""
    error = error or JobError("Error")
    return JobFailed(job_id, error.type, error.message, error.traceback, state=str(state), index=index)


def failure(job_id: int, outcome: JobResult | None, index: int | None = None) -> Exception:
    """What a failed, cancelled or vanished (``outcome`` None: :class:`JobNotFound`) job raises."""
    if outcome is None:
        return JobNotFound(job_id)
    return job_failed(job_id, outcome.state, outcome.error, index)
