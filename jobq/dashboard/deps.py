"""Request helpers shared by the routers: the queue, the guard, the write check."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ..client.queue import Queue
from ..core.errors import ValidationError
from .security import Guard


def queue_of(request: Request) -> Queue:
    return request.app.state.queue


def guard_of(request: Request) -> Guard:
    return request.app.state.guard


def writer(request: Request) -> None:
    """A dependency of every write route: 401/403 unless the request may write."""
    guard_of(request).check_write(request)


def json_object(body: Any, what: str) -> dict[str, Any]:
    """The request body as a JSON object: a body sent without a JSON content type arrives
    as bytes and is parsed here. Raises :class:`ValidationError` naming ``body``."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body) if body.strip() else None
        except ValueError:
            raise ValidationError("body", "not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("body", f"expected a JSON object ({what})")
    return body
