"""``@q.task(...)``: a function that stays callable, and submits itself as a job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..core.errors import ValidationError
from .options import SubmitOptions
from .protocols import QueueLike


def task(q: QueueLike, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate ``fn`` (``@q.task`` or ``@q.task(retries=3, ...)``): it is returned itself,
    still callable directly, with ``submit``, ``map`` and ``asubmit`` attached."""
    options = SubmitOptions.of(
        options, allowed=SubmitOptions.TASK, where="@task", hint=" (queue, priority, name, timeout, retries, ...)"
    ).given()

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise ValidationError("target", f"{f!r} is not callable")

        def submit(*args: Any, **kwargs: Any) -> Any:
            """Submit a job calling this function with these arguments."""
            return q.submit(f, args, kwargs, **options)

        def map_(iterable: Iterable[Any], chunksize: int = 1) -> Any:
            """One job per item (per ``chunksize`` items) as a group; see ``Queue.map``."""
            return q.map(f, iterable, chunksize=chunksize, **options)

        async def asubmit(*args: Any, **kwargs: Any) -> Any:
            """:func:`submit` for asyncio code."""
            return await q.asubmit(f, args, kwargs, **options)

        f.submit = submit  # type: ignore[attr-defined]
        f.map = map_  # type: ignore[attr-defined]
        f.asubmit = asubmit  # type: ignore[attr-defined]
        f.options = dict(options)  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap
