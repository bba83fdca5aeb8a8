"""The SQL stores' reads and management: records and counts, groups, supervisors, cancel,
retry, purge, progress, queue controls and schedules. Mixed into
:class:`~jobq.store.sql.SQLStore`, whose transactions and transitions it uses."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..core.codec import loads
from ..core.models import FINISHED_STATES, JobError, JobRecord, State, dumps, iso
from . import queries as Q
from .base import GroupInfo, JobResult, OutputUpdate, ProgressUpdate, QueueInfo, Schedule, SupervisorInfo

_GROUP_STATUS = {1: "sealed", 0: "open", -1: "aborted"}


def group_number(group_id: str) -> int | None:
    """The stored number of a group id as printed (``g12`` -> 12)."""
    text = str(group_id)
    if text.startswith("g") and text[1:].isdigit():
        return int(text[1:])
    return None


def _job_result(job_id: int, state: str, result: str | None, error: str | None) -> JobResult:
    return JobResult(
        job_id,
        State(state),
        loads(result) if result is not None else None,
        JobError.from_dict(json.loads(error)) if error else None,
    )


def _schedule(r: Sequence[Any]) -> Schedule:
    row = dict(zip(Q.SCHEDULE_COLUMN_NAMES, r, strict=True))
    row["args"], row["kwargs"] = json.loads(row["args"]), json.loads(row["kwargs"])
    return Schedule(**row)


def _supervisor(r: Sequence[Any]) -> SupervisorInfo:
    row = dict(zip(Q.SUPERVISOR_COLUMN_NAMES, r, strict=True))
    row["queues"] = json.loads(row["queues"]) if row["queues"] else None
    return SupervisorInfo(**row)


class SQLAdmin:
    """Reads and management operations of the SQL stores (a mixin)."""

    _write: Any
    _read: Any
    _row: Any
    _notify: Any
    _insert_rows: Any
    _cancel: Any
    _retry: Any
    _count_moves: Any
    _add_totals: Any
    row_lock: str
    claim_lock: str

    def _records(self, where: str, params: Sequence[Any]) -> list[JobRecord]:
        rows = self._read(Q.JOBS_WHERE.format(where=where), params)
        return [JobRecord.from_row(dict(zip(Q.JOB_COLUMN_NAMES, r, strict=True))) for r in rows]

    # -- reading --------------------------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        found = self._records("WHERE id=?", (job_id,))
        if not found:
            return None
        record = found[0]
        record.depends_on = [r[0] for r in self._read(Q.JOB_DEPENDENCIES, (job_id,))]
        rows = self._read(Q.JOB_ERRORS, (job_id,))
        record.errors = [{"attempt": a, **json.loads(e), "finished_at": iso(at)} for a, e, at in rows]
        return record

    def outcome(self, job_id: int) -> JobResult | None:
        rows = self._read(Q.JOB_RESULT, (job_id,))
        return _job_result(*rows[0]) if rows else None

    def get_states(self, job_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        ids = list(job_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            out.update(self._read(Q.STATES_OF.format(marks=Q.marks(len(chunk))), chunk))
        return out

    def count_jobs(self) -> int:
        return self._read(Q.COUNT_JOBS)[0][0]

    def list_jobs(self, state: str | None, queue: str | None, limit: int) -> list[JobRecord]:
        where, params = [], []
        if state:
            where.append("state=?")
            params.append(state)
        if queue:
            where.append("queue=?")
            params.append(queue)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._records(f"{clause} ORDER BY id DESC LIMIT ?", (*params, limit))

    def output(self, job_id: int) -> str | None:
        rows = self._read(Q.JOB_OUTPUT, (job_id,))
        return rows[0][0] if rows else None

    # -- groups ---------------------------------------------------------------------
    def group_info(self, group_id: str) -> GroupInfo | None:
        gid = group_number(group_id)
        if gid is None:
            return None
        rows = self._read(Q.GROUP_ROW, (gid,))
        if not rows:
            return None
        size, sealed, created_at, updated_at = rows[0]
        return GroupInfo(f"g{gid}", size, _GROUP_STATUS.get(sealed, "sealed"), created_at, updated_at or created_at)

    def group_jobs(self, group_id: str) -> list[int] | None:
        gid = group_number(group_id)
        if gid is None or not self._read(Q.GROUP_EXISTS, (gid,)):
            return None
        return [r[0] for r in self._read(Q.GROUP_JOB_IDS, (gid,))]

    def group_results(self, group_id: str) -> list[JobResult] | None:
        gid = group_number(group_id)
        if gid is None:
            return None
        rows = self._read(Q.GROUP_RESULTS, (gid,))
        return [_job_result(*r) for r in rows]

    def group_summary(self, group_id: str) -> dict[str, int] | None:
        gid = group_number(group_id)
        if gid is None or not self._read(Q.GROUP_EXISTS, (gid,)):
            return None
        return dict(self._read(Q.GROUP_COUNTS, (gid,)))

    # -- supervisors ----------------------------------------------------------------
    def register_supervisor(self, info: SupervisorInfo) -> None:
        params = (
            info.id,
            info.host,
            info.pid,
            info.concurrency,
            dumps(info.queues),
            info.started_at,
            info.heartbeat_at,
            info.lock_path,
            info.presence,
        )
        self._write(lambda c: c.execute(Q.REGISTER_SUPERVISOR, params))

    def unregister_supervisor(self, supervisor_id: str) -> None:
        self._write(lambda c: c.execute(Q.UNREGISTER_SUPERVISOR, (supervisor_id,)))

    def supervisors(self) -> list[SupervisorInfo]:
        rows = self._read(Q.SUPERVISORS)
        return [_supervisor(r) for r in rows]

    def heartbeat(self, supervisor_id: str, now: float, lease_until: float) -> list[int]:
        def beat(conn: Any) -> list[int]:
            conn.execute(Q.HEARTBEAT, (now, supervisor_id))
            rows = conn.execute(Q.RENEW_LEASES, (lease_until, supervisor_id)).fetchall()
            return [job_id for job_id, cancel in rows if cancel]

        return self._write(beat)

    def prune_supervisors(self, heartbeat_before: float) -> list[str]:
        if not self._read(Q.ANY_STALE_SUPERVISOR, (heartbeat_before,)):
            return []
        return self._write(lambda c: [r[0] for r in c.execute(Q.PRUNE_SUPERVISORS, (heartbeat_before,))])

    def set_progress(self, owner: str, updates: Sequence[ProgressUpdate]) -> None:
        if not updates:
            return
        rows = [(u.fraction, u.message, u.job_id, owner, u.attempt) for u in updates]
        self._write(lambda c: c.executemany(Q.SET_PROGRESS, rows))

    def set_output(self, owner: str, updates: Sequence[OutputUpdate]) -> None:
        if not updates:
            return
        rows = [(u.job_id, u.output, u.job_id, owner, u.attempt) for u in updates]
        self._write(lambda c: c.executemany(Q.SET_RUNNING_OUTPUT, rows))

    # -- user actions ---------------------------------------------------------------
    def cancel(self, job_ids: Sequence[int], now: float) -> dict[int, str]:
        return self._write(lambda conn: self._cancel(conn, job_ids, now))

    def retry(
        self, job_ids: Sequence[int] | None, now: float, queue: str | None = None, include_quarantined: bool = False
    ) -> list[int]:
        def do(conn: Any) -> list[int]:
            ids = self._retry(conn, job_ids, now, queue, include_quarantined)
            self._notify(conn, "submitted")
            return ids

        return self._write(do)

    def purge(self, now: float, states: Sequence[str], older_than: float | None, default_ttl: float | None = None) -> int:
        states = [s for s in states if s in FINISHED_STATES]
        if not states:
            return 0
        m = Q.marks(len(states))
        # Each selection reads an index range (jobs_finished, jobs_ttl), never the whole table.
        if older_than is not None:
            selections = [(f"finished_at < ? AND state IN ({m})", [now - older_than, *states])]
        else:
            selections = [(f"result_ttl IS NOT NULL AND finished_at + result_ttl < ? AND state IN ({m})", [now, *states])]
            if default_ttl is not None:
                selections.append((f"finished_at < ? AND result_ttl IS NULL AND state IN ({m})", [now - default_ttl, *states]))
        total = 0
        for where, params in selections:
            while True:
                n = self._write(lambda conn, w=where, p=params: self._delete_jobs(conn, w, p, Q.PURGE_CHUNK))
                total += n
                if n < Q.PURGE_CHUNK:
                    break
        return total

    def _delete_jobs(self, conn: Any, where: str, params: list[Any], limit: int) -> int:
        rows = conn.execute(Q.PURGE_PICK.format(where=where, limit=int(limit)), params).fetchall()
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        m = Q.marks(len(ids))
        for table, column in Q.PURGE_TABLES:
            conn.execute(Q.DELETE_ROWS.format(table=table, column=column, marks=m), ids)
        self._count_moves(conn, Counter((queue, state, "") for _, queue, state in rows))
        self._add_totals(conn, "deleted", Counter((queue, state) for _, queue, state in rows))
        return len(ids)

    # -- queue controls -------------------------------------------------------------
    def set_queue_limit(self, queue: str, concurrency: int | None, now: float) -> None:
        self._write(lambda c: c.execute(Q.UPSERT_QUEUE_LIMIT, (queue, concurrency, now)))

    def set_queue_paused(self, queue: str, paused: bool, now: float) -> None:
        self._write(lambda c: c.execute(Q.UPSERT_QUEUE_PAUSED, (queue, 1 if paused else 0, now)))

    def set_queue_rate(self, queue: str, count: int | None, per_seconds: float | None, now: float) -> None:
        self._write(lambda c: c.execute(Q.UPSERT_QUEUE_RATE, (queue, now, count, per_seconds if count else None)))

    def set_partition_limit(self, queue: str, per_partition: int | None, now: float) -> None:
        self._write(lambda c: c.execute(Q.UPSERT_PARTITION_LIMIT, (queue, now, per_partition)))

    def queue_controls(self) -> list[QueueInfo]:
        return [
            QueueInfo(r[0], r[1], bool(r[2]), r[3], r[4], r[7], bool(r[8]))
            for r in self._read(Q.QUEUE_ROWS)
            if r[1] is not None or any(r[2:5]) or r[7] is not None or r[8]
        ]

    def partition_counts(self, queue: str, top: int) -> list[tuple[str, int, int]]:
        counts: dict[str, list[int]] = {}
        for partition, state, n in self._read(Q.PARTITION_COUNTS, (queue,)):
            counts.setdefault(partition, [0, 0])[0 if state == State.QUEUED else 1] += n
        ranked = sorted(counts.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
        return [(k, q, r) for k, (q, r) in ranked[:top]]

    # -- schedules ------------------------------------------------------------------
    def upsert_schedule(self, schedule: Schedule) -> None:
        new = (schedule.target, dumps(schedule.args), dumps(schedule.kwargs), schedule.queue, schedule.cron, schedule.every)
        # One statement, so supervisors starting together cannot both insert; an unchanged
        # schedule keeps its next run time.
        self._write(
            lambda conn: conn.execute(
                Q.UPSERT_SCHEDULE,
                (schedule.name, *new, schedule.next_run_at),
            )
        )

    def schedules(self) -> list[Schedule]:
        return [_schedule(r) for r in self._read(Q.SCHEDULES)]

    def enqueue_due_schedules(self, now: float, next_after: Any) -> list[int]:
        if not self._read(Q.ANY_SCHEDULE_DUE, (now,)):
            return []

        def do(conn: Any) -> list[int]:
            rows = conn.execute(Q.DUE_SCHEDULES.format(lock=self.claim_lock), (now,))
            ids = []
            for r in rows.fetchall():
                schedule = _schedule(r)
                from ..core.spec import JobSpec  # pydantic: only when a schedule is due

                spec = JobSpec(
                    target=schedule.target, args=schedule.args, kwargs=schedule.kwargs, queue=schedule.queue, name=schedule.name
                )
                ids.append(self._insert_rows(conn, [self._row(spec, now, None, 0)])[0])
                conn.execute(
                    Q.ADVANCE_SCHEDULE,
                    (next_after(schedule, now), now, schedule.name),
                )
            return ids

        return self._write(do)
