"""Row layouts and helpers shared by the SQL stores' modules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import JobRecord

JOB_COLUMNS = (
    "id, name, target, args, kwargs, queue, priority, state, attempts, max_attempts, run_at, "
    "created_at, started_at, finished_at, result, error, owner, worker, timeout, key, group_id, "
    "group_index, progress, progress_message, cancel_requested"
)
SCHEDULE_COLUMNS = "name, target, args, kwargs, queue, cron, every, next_run_at, last_run_at"

# Scheduled jobs whose time has come become queued (by claims, and promote_scheduled).
_PROMOTE_DUE = "UPDATE jobs SET state='queued' WHERE state='scheduled' AND run_at<=?"
_FINISH_CHUNKS = (256, 64, 16, 4, 1)  # descending; ends with 1
_PURGE_CHUNK = 500  # rows a purge transaction deletes: keeps the write lock short
_SUCCESS_ROW = (
    "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS INTEGER))"
)
_JOB_INSERT_COLUMNS = (
    "name, target, args, kwargs, queue, priority, state, max_attempts, retries, retry_backoff, "
    "retry_backoff_max, timeout, run_at, created_at, key, group_id, group_index, pass_results, result_ttl"
)
_INSERT_JOB = f"INSERT INTO jobs({_JOB_INSERT_COLUMNS}) VALUES ({', '.join(['?'] * 19)})"


def _queue_filter(queues: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    if not queues:
        return "", ()
    return f"AND queue IN ({','.join('?' * len(queues))})", tuple(queues)


def _pick_with_limits(
    conn: Any, qsql: str, qparams: tuple[str, ...], limit: int, now: float, queue_limits: dict[str, int], lock: str
) -> list[int]:
    running = dict(
        conn.execute(
            f"SELECT queue, count(*) FROM jobs WHERE state='running' AND queue IN ({','.join('?' * len(queue_limits))}) "
            "GROUP BY queue",
            tuple(queue_limits),
        ).fetchall()
    )
    room = {q: n - running.get(q, 0) for q, n in queue_limits.items()}
    full = [q for q, n in room.items() if n <= 0]
    fsql = f"AND queue NOT IN ({','.join('?' * len(full))})" if full else ""
    rows = conn.execute(
        f"SELECT id, queue FROM jobs WHERE state='queued' AND run_at<=? {qsql} {fsql} "
        f"ORDER BY priority DESC, run_at, id LIMIT ?{lock}",
        (now, *qparams, *full, limit),
    ).fetchall()
    ids = []
    for job_id, queue in rows:
        if queue in room:
            if room[queue] <= 0:
                continue
            room[queue] -= 1
        ids.append(job_id)
    return ids


def _group_int(group_id: str) -> int | None:
    text = str(group_id)
    if text.startswith("g") and text[1:].isdigit():
        return int(text[1:])
    return None


def _record(r: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=r[0],
        name=r[1],
        target=r[2],
        args=json.loads(r[3]),
        kwargs=json.loads(r[4]),
        queue=r[5],
        priority=r[6],
        state=r[7],
        attempts=r[8],
        max_attempts=r[9],
        run_at=r[10],
        created_at=r[11],
        started_at=r[12],
        finished_at=r[13],
        result=json.loads(r[14]) if r[14] is not None else None,
        error=json.loads(r[15]) if r[15] else None,
        owner=r[16],
        worker=r[17],
        timeout=r[18],
        key=r[19],
        group_id=f"g{r[20]}" if r[20] is not None else None,
        group_index=r[21],
        progress=r[22],
        progress_message=r[23],
        cancel_requested=bool(r[24]),
    )
