"""Stores: the contract (:mod:`.base`) and its backends, chosen by the database URL."""

from __future__ import annotations

from .base import (
    GroupInfo,
    JobResult,
    JobStart,
    OutputUpdate,
    ProgressUpdate,
    QueueInfo,
    Schedule,
    Store,
    Submitted,
    SupervisorInfo,
)


def open_store(url: str, busy_timeout_seconds: float = 60.0, durability: str = "normal") -> Store:
    """The store for ``url``: a path or ``sqlite:///path`` (SQLite), ``postgresql://...``.
    ``durability`` is ``normal`` or ``full`` (see the ``durability`` setting)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, busy_timeout_seconds=busy_timeout_seconds, durability=durability)
    from .sqlite import SQLiteStore

    return SQLiteStore(url, busy_timeout_seconds=busy_timeout_seconds, durability=durability)


__all__ = [
    "GroupInfo",
    "JobResult",
    "JobStart",
    "OutputUpdate",
    "ProgressUpdate",
    "QueueInfo",
    "Schedule",
    "Store",
    "Submitted",
    "SupervisorInfo",
    "open_store",
]
