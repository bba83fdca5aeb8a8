"""What the job path does outside its write transactions: the success statements and their
parameters made before one opens, and the jobs of a claim's rows made after it commits, so
the database's write lock is held for the statements alone."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from ..core.models import ClaimedJob, Outcome
from . import queries as Q

_PRIORITY, _DUE_AND_ID = operator.itemgetter(11), operator.itemgetter(12, 0)  # a CLAIM row's priority; run_at and id
_NEW = tuple.__new__
_FIELDS = len(ClaimedJob._fields)
# The success statement of each chunk size (Q.FINISH_CHUNKS), formatted once.
_SUCCEED_BY_SIZE: dict[int, str] = {}


def success_statements(owner: str, outcomes: Sequence[Outcome], now: float) -> list[tuple[str, list[Any]]]:
    """The success statements of ``outcomes`` with their parameters, a few fixed sizes at a
    time (:func:`jobq.store.queries.fixed_chunks`)."""
    statements = []
    for chunk in Q.fixed_chunks(outcomes):
        params: list[Any] = []
        for o in chunk:
            params += (o.job_id, owner, o.attempts, o.result_json, o.finished_at or now, o.worker, o.started_at)
        sql = _SUCCEED_BY_SIZE.get(len(chunk))
        if sql is None:
            sql = _SUCCEED_BY_SIZE[len(chunk)] = Q.SUCCEED.format(values=",".join([Q.SUCCESS_ROW] * len(chunk)))
        statements.append((sql, params))
    return statements


def claimed_jobs(rows: list[tuple[Any, ...]]) -> list[ClaimedJob]:
    """The jobs of a claim's rows (:data:`jobq.store.queries.CLAIM`) in the order to run them."""
    # Priority (descending), then due time and id: two sorts in C (a stable sort keeps the
    # second's ties in the first's order), not a Python key function per row.
    rows.sort(key=_DUE_AND_ID)
    rows.sort(key=_PRIORITY, reverse=True)
    return [_NEW(ClaimedJob, r[:_FIELDS]) for r in rows]
