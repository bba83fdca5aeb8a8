"""The jobq dashboard: web pages, a JSON HTTP API under ``/api/v1`` and ``/metrics``.

``jobq.dashboard.app(queue, token=None, read_only=False, public=None, metrics_public=False)`` returns the ASGI application, to
serve with uvicorn (``jobq dashboard``) or mount in a FastAPI or Starlette application. It
needs the ``dashboard`` extra (FastAPI, uvicorn, Jinja2, prometheus_client)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client.queue import Queue

INSTALL_LINE = "pip install 'jobq[dashboard]'"
_NEEDS = ("fastapi", "uvicorn", "jinja2", "prometheus_client")


def missing() -> list[str]:
    """The dashboard's libraries that are not installed."""
    return [name for name in _NEEDS if importlib.util.find_spec(name) is None]


def app(
    queue: Queue, token: str | None = None, read_only: bool = False, *, public: bool | None = None, metrics_public: bool = False
) -> Any:
    """The dashboard's ASGI application over ``queue``. Writes need ``token`` as a bearer
    token, or a page session with its CSRF token; ``read_only`` refuses every write (403).

    Reads need the same credentials off loopback: ``public=True`` for every request (what
    ``jobq dashboard --host`` beyond loopback sets), ``False`` for none, ``None`` (the
    default) for each request that did not both arrive on and come from a loopback address.
    ``metrics_public`` leaves ``/metrics`` open."""
    absent = missing()
    if absent:
        raise ImportError(f"the dashboard needs {', '.join(absent)}: {INSTALL_LINE}")
    from .factory import build

    return build(queue, token=token, read_only=read_only, public=public, metrics_public=metrics_public)


__all__ = ["INSTALL_LINE", "app", "missing"]
