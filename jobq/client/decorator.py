"""``@q.task(...)``: a function that stays callable, and submits itself as a job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..core.errors import ValidationError

if TYPE_CHECKING:
    from .queue import Group, Job, Queue

# Options of Queue.submit that make sense for every job of a task (per-call notions such as
# key, depends_on and delay are given to .submit through q.submit instead).
TASK_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "name",
        "timeout",
        "retries",
        "retry_backoff",
        "retry_backoff_max",
        "result_ttl",
        "check",
        "partition",
        "memory_mb",
        "cpus",
    }
)


def task(q: Queue, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate ``fn`` (``@q.task`` or ``@q.task(retries=3, ...)``): it is returned itself,
    still callable directly, with ``submit``, ``map`` and ``asubmit`` attached."""
    unknown = sorted(set(options) - TASK_OPTIONS)
    if unknown:
        raise ValidationError(unknown[0], "not an option of @task (queue, priority, name, timeout, retries, ...)")

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise ValidationError("target", f"{f!r} is not callable")

        def submit(*args: Any, **kwargs: Any) -> Job:
            """Submit a job calling this function with these arguments."""
            return q.submit(f, args, kwargs, **options)

        def map_(iterable: Iterable[Any], chunksize: int = 1) -> Group:
            """One job per item (per ``chunksize`` items) as a group; see ``Queue.map``."""
            return q.map(f, iterable, chunksize=chunksize, **options)

        async def asubmit(*args: Any, **kwargs: Any) -> Job:
            """:func:`submit` for asyncio code."""
            return await q.asubmit(f, args, kwargs, **options)

        f.submit = submit  # type: ignore[attr-defined]
        f.map = map_  # type: ignore[attr-defined]
        f.asubmit = asubmit  # type: ignore[attr-defined]
        f.options = dict(options)  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap
