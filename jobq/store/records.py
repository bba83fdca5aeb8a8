"""Small records the store returns: a group's status, a queue's stored controls, a submitted
job's id (re-exported by :mod:`.base`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


__all__ = ["GroupInfo", "QueueInfo", "Submitted"]
