"""Request helpers shared by the routers: the queue, the guard, the write check."""

from __future__ import annotations

from fastapi import Request

from ..client.queue import Queue
from .security import Guard


def queue_of(request: Request) -> Queue:
    return request.app.state.queue


def guard_of(request: Request) -> Guard:
    return request.app.state.guard


def writer(request: Request) -> None:
    """A dependency of every write route: 401/403 unless the request may write."""
    guard_of(request).check_write(request)
