"""Chunked maps: one job per ``chunksize`` items.

A chunk is an ordinary job whose target is :func:`run_chunk` and whose arguments are
``[target, first_index, items, kwargs, spread]``: the user's target, the input index of the
chunk's first item, the chunk's items (argument lists when ``spread``, else single
arguments), and the keyword arguments every item gets. The chunk
job returns the list of its items' results. So a chunked group describes itself in the
store: :func:`chunk_layout` reads the chunk size and item count back from its first and last
job, which is how ``q.group(id)`` and ``jobq wait`` count in items after the submitting
program is gone. A failing item fails its chunk; the stored error carries the item's input
index (``error["item"]``), which ``Group.join`` reports as ``JobFailed.index``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice, starmap
from operator import length_hint
from types import CoroutineType
from typing import Any

from ..core.errors import ValidationError
from ..core.models import resolve_target

CHUNK_TARGET = "jobq.chunks:run_chunk"
# A chunk calls its items in rounds (C loops) of up to _MAX_ROUND items, about _ROUND_SECONDS
# each, and reports its progress in items between rounds once it has run _QUIET_SECONDS (a
# report costs a message and a write: not for short chunks).
_MAX_ROUND = 1024
_ROUND_SECONDS = 0.05
_QUIET_SECONDS = 0.2

_targets: dict[str, Any] = {}


def run_chunk(target: str, first: int, items: list[Any], kwargs: dict[str, Any] | None = None, spread: bool = True) -> list[Any]:
    """Run ``target`` on each item of ``items`` in order (an argument list each when ``spread``,
    else the single argument); the list of results.

    An item that raises fails the whole chunk with its exception, marked with its input
    index (``first`` + its offset). Progress is reported in items. The calls run in C loops
    (``map``/``starmap``): the failing item is found from how far the items were read."""
    from .aioloop import run_coroutine
    from .context import current_job

    fn = _targets.get(target)
    if fn is None:
        fn = _targets[target] = resolve_target(target)
    call = functools.partial(fn, **kwargs) if kwargs else fn
    mapper: Any = starmap if spread else map
    job = current_job()
    n = len(items)
    it = iter(items)
    out: list[Any] = []
    size = 8  # items a round: doubled while rounds are quick, halved when slow
    started = last = time.monotonic()
    while len(out) < n:
        try:
            out.extend(mapper(call, islice(it, size)))
        except BaseException as exc:
            mark_item(exc, first + n - length_hint(it) - 1)
            raise
        now = time.monotonic()
        size = min(size * 2, _MAX_ROUND) if now - last < _ROUND_SECONDS else max(1, size // 2)
        last = now
        if job is not None and len(out) < n and now - started > _QUIET_SECONDS:
            job.set_progress(len(out) / n, f"{len(out)}/{n} items")
    if CoroutineType in set(map(type, out)):  # an async def target (coroutines have no subclasses)
        for offset, value in enumerate(out):
            if isinstance(value, CoroutineType):
                try:
                    out[offset] = run_coroutine(value)
                except BaseException as exc:
                    for rest in out[offset + 1 :]:
                        if isinstance(rest, CoroutineType):
                            rest.close()  # never started: no "never awaited" warning
                    mark_item(exc, first + offset)
                    raise
    return out


def mark_item(exc: BaseException, index: int) -> None:
    """Record on ``exc`` the input index of the map item that raised it."""
    try:
        exc.jobq_item = index  # type: ignore[attr-defined]
        exc.add_note(f"(jobq: raised by item {index} of the map)")
    except (AttributeError, TypeError):
        pass


@dataclass(frozen=True)
class ChunkLayout:
    """How a chunked group's items map onto its jobs: every job holds ``chunksize`` items
    but the last, which holds the rest; ``items`` in all."""

    chunksize: int
    items: int

    def size_of(self, position: int, jobs: int) -> int:
        """How many items the job at ``position`` (of ``jobs``) holds."""
        if position < jobs - 1:
            return self.chunksize
        return self.items - self.chunksize * (jobs - 1)


def chunk_layout(store: Any, job_ids: list[int]) -> ChunkLayout | None:
    """The layout of a group whose jobs are chunks (None for a plain group)."""
    if not job_ids:
        return None
    first = store.get(job_ids[0])
    if first is None or first.target != CHUNK_TARGET or len(first.args) < 3:
        return None
    chunksize = len(first.args[2])
    last = first if len(job_ids) == 1 else store.get(job_ids[-1])
    if last is None or last.target != CHUNK_TARGET:
        return None
    return ChunkLayout(chunksize, int(last.args[1]) + len(last.args[2]))


def chunk_args(
    target: str, items: Iterable[Any], chunksize: int, kwargs: dict[str, Any] | None, spread: bool | None = None
) -> Iterator[list[Any]]:
    """The argument list of each chunk job. With ``spread`` None (``Queue.map``), a tuple
    item is the item's argument list and any other value its single argument; True: every
    item is an argument list (``starmap``); False: every item is the single argument
    (``Pool.map``). A chunk stores its items as given unless one is spread."""
    it = iter(items)
    first = 0
    kw = kwargs or {}
    while True:
        batch = list(islice(it, chunksize))
        if not batch:
            return
        spread_this = spread
        if spread is None:  # all C loops: no Python code runs per item unless one is a tuple
            spread_this = any(issubclass(t, tuple) for t in set(map(type, batch)))
            if spread_this:
                batch = [list(x) if isinstance(x, tuple) else [x] for x in batch]
        yield [target, first, batch, kw, bool(spread_this)]
        first += len(batch)


def chunk_error(exc: ValidationError, chunksize: int) -> ValidationError:
    """The store's error about chunk job N, said of the items that chunk holds."""
    found = re.match(r"item (\d+): (.*)", exc.message, re.S)
    if exc.field != "args" or found is None:
        return exc
    first = int(found.group(1)) * chunksize
    where = f"items {first}..{first + chunksize - 1}"
    if "max_payload_bytes" in found.group(2):
        return ValidationError("chunksize", f"{where}: {found.group(2)}; use a smaller chunksize")
    return ValidationError("args", f"{where}: {found.group(2)}")


def check_chunksize(chunksize: Any) -> int:
    """``chunksize`` as a whole number of at least 1, or :class:`ValidationError`."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValidationError("chunksize", "must be a whole number of at least 1")
    return chunksize


def item_counts(layout: ChunkLayout, job_states: dict[str, int], last_state: str | None, jobs: int) -> dict[str, int]:
    """Counts by state in items, from the counts of the jobs by state and the last job's state."""
    out = {state: n * layout.chunksize for state, n in job_states.items() if n}
    if last_state is not None and jobs:
        short = layout.chunksize - layout.size_of(jobs - 1, jobs)
        if short:
            out[last_state] = out.get(last_state, 0) - short
    return {k: v for k, v in out.items() if v}


def failed_index(layout: ChunkLayout, position: int, error: Any) -> int:
    """The input index of the item that failed the chunk at ``position`` (``error``: its
    :class:`JobError`, or its stored dict)."""
    item = error.get("item") if isinstance(error, dict) else getattr(error, "item", None)
    if isinstance(item, int):
        return item
    return position * layout.chunksize


__all__ = ["CHUNK_TARGET", "ChunkLayout", "chunk_args", "chunk_layout", "run_chunk"]
