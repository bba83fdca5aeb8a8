"""The typed records that cross the store's boundary: supervisors, outcomes as read back,
progress, output and start updates, groups, queues, submitted ids and schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ..core.models import JobError, State, iso


@dataclass
class SupervisorInfo:
    """A live (or lately live) supervisor as registered in the store."""

    id: str
    host: str
    pid: int
    concurrency: int
    queues: list[str] | None
    started_at: float
    heartbeat_at: float
    lock_path: str | None = None
    #: where the supervisor's lock file can be checked from: host name, boot id and the
    #: identity of its lock directory (two containers with one host name differ here)
    presence: str | None = None

    def to_dict(self) -> dict[str, Any]:

        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "concurrency": self.concurrency,
            "queues": self.queues,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
        }


class JobResult(NamedTuple):
    """What a join reads of a job: its state, its return value and its error."""

    id: int
    state: State
    result: Any
    error: JobError | None


class ProgressUpdate(NamedTuple):
    """A running job's latest progress, written fenced on (id, owner, attempt)."""

    job_id: int
    attempt: int
    fraction: float
    message: str


class JobStart(NamedTuple):
    """A worker started a claimed job: the job is written ``running`` with its worker and its
    wall-clock start, fenced on (id, owner, attempt)."""

    job_id: int
    attempt: int
    worker: int
    started_at: float


class OutputUpdate(NamedTuple):
    """What a running job has printed so far, published while it runs (fenced on its attempt)."""

    job_id: int
    attempt: int
    output: str


@dataclass
class GroupInfo:
    """A group as stored: how many jobs it has so far, and whether its submitter finished
    (``sealed``), is still adding jobs or died doing so (``open``), or gave up (``aborted``)."""

    id: str
    size: int
    status: str  # "sealed" | "open" | "aborted"
    created_at: float
    updated_at: float


@dataclass
class QueueInfo:
    """A queue's stored controls: its concurrency cap across supervisors, whether it is
    paused, its rate of starts (``rate_count`` per ``rate_period`` seconds) and its cap of
    running jobs per partition."""

    name: str
    concurrency: int | None = None
    paused: bool = False
    rate_count: int | None = None
    rate_period: float | None = None
    partition_concurrency: int | None = None
    #: whether the queue ever held a job with a partition (it is then claimed fairly)
    partitioned: bool = False

    @property
    def rate(self) -> str | None:
        """The rate as written on the command line (``100/s``), or None."""
        if not self.rate_count or not self.rate_period:
            return None
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(float(self.rate_period))
        return f"{self.rate_count}/{unit}" if unit else f"{self.rate_count}/{self.rate_period:g}s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "paused": self.paused,
            "rate": self.rate,
            "per_partition": self.partition_concurrency,
        }


@dataclass
class Submitted:
    """One submitted job: its id and whether an unfinished job with its key already existed."""

    id: int
    existing: bool = False


@dataclass
class Schedule:
    """A periodic job definition as stored."""

    name: str
    target: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    cron: str | None
    every: float | None
    next_run_at: float
    last_run_at: float | None = None

    def to_dict(self, paused: bool = False) -> dict[str, Any]:
        """The public JSON shape (``jobq schedules --json``, the HTTP API); a paused
        schedule has no next run."""

        return {
            "name": self.name,
            "target": self.target,
            "args": self.args,
            "queue": self.queue,
            "cron": self.cron,
            "every": self.every,
            "next_run_at": None if paused else iso(self.next_run_at),
            "last_run_at": iso(self.last_run_at),
        }
