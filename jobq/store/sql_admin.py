"""The SQL stores' reads and management: records and counts, supervisors, cancel, retry,
purge, progress and schedules. Mixed into :class:`~jobq.store.sql.SQLStore`, whose
transactions (``_write``/``_read``) and job endings (``_end``) it uses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import CANCELLED, FAILED, QUEUED, RUNNING, SCHEDULED, SUCCEEDED, WAITING, JobRecord, dumps
from .base import Schedule, SupervisorInfo
from .sql_rows import _PROMOTE_DUE, _PURGE_CHUNK, JOB_COLUMNS, SCHEDULE_COLUMNS, _group_int, _record

UNFINISHED_NOT_RUNNING = (QUEUED, SCHEDULED, WAITING)


class SQLAdmin:
    """Reads and management operations of the SQL stores (a mixin)."""

    _write: Any
    _read: Any
    _end: Any
    _row: Any
    _notify: Any
    _insert_rows: Any
    row_lock: str
    claim_lock: str

    # -- reading --------------------------------------------------------------------
    def get(self, job_id: int) -> JobRecord | None:
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        record = _record(rows[0])
        record.depends_on = [
            r[0] for r in self._read("SELECT depends_on FROM job_deps WHERE job_id=? ORDER BY position", (job_id,))
        ]
        record.errors = [
            {"attempt": a, **json.loads(e)}
            for a, e in self._read("SELECT attempt, error FROM job_errors WHERE job_id=? ORDER BY attempt", (job_id,))
        ]
        return record

    def outcome(self, job_id: int) -> tuple[str, Any, dict[str, Any] | None] | None:
        rows = self._read("SELECT state, result, error FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        state, result, error = rows[0]
        return state, json.loads(result) if result is not None else None, json.loads(error) if error else None

    def get_states(self, job_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        ids = list(job_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._read(f"SELECT id, state FROM jobs WHERE id IN ({marks})", chunk))
        return out

    def count_jobs(self) -> int:
        return self._read("SELECT count(*) FROM jobs")[0][0]

    def list_jobs(self, state: str | None, queue: str | None, limit: int) -> list[JobRecord]:
        where, params = [], []
        if state:
            where.append("state=?")
            params.append(state)
        if queue:
            where.append("queue=?")
            params.append(queue)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_record(r) for r in rows]

    def output(self, job_id: int) -> str | None:
        rows = self._read("SELECT output FROM job_output WHERE job_id=?", (job_id,))
        return rows[0][0] if rows else None

    def group_jobs(self, group_id: str) -> list[int] | None:
        gid = _group_int(group_id)
        if gid is None or not self._read("SELECT 1 FROM job_groups WHERE id=?", (gid,)):
            return None
        return [r[0] for r in self._read("SELECT id FROM jobs WHERE group_id=? ORDER BY group_index", (gid,))]

    def group_results(self, group_id: str) -> list[tuple[int, str, Any, dict[str, Any] | None]] | None:
        gid = _group_int(group_id)
        if gid is None:
            return None
        rows = self._read("SELECT id, state, result, error FROM jobs WHERE group_id=? ORDER BY group_index", (gid,))
        return [(r[0], r[1], json.loads(r[2]) if r[2] is not None else None, json.loads(r[3]) if r[3] else None) for r in rows]

    def group_summary(self, group_id: str) -> dict[str, int] | None:
        gid = _group_int(group_id)
        if gid is None or not self._read("SELECT 1 FROM job_groups WHERE id=?", (gid,)):
            return None
        return dict(self._read("SELECT state, count(*) FROM jobs WHERE group_id=? GROUP BY state", (gid,)))

    # -- supervisors ----------------------------------------------------------------
    def register_supervisor(self, info: SupervisorInfo) -> None:
        self._write(
            lambda c: c.execute(
                "INSERT INTO supervisors(id, host, pid, concurrency, queues, started_at, heartbeat_at, lock_path) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at",
                (
                    info.id,
                    info.host,
                    info.pid,
                    info.concurrency,
                    dumps(info.queues),
                    info.started_at,
                    info.heartbeat_at,
                    info.lock_path,
                ),
            )
        )

    def unregister_supervisor(self, supervisor_id: str) -> None:
        self._write(lambda c: c.execute("DELETE FROM supervisors WHERE id=?", (supervisor_id,)))

    def supervisors(self) -> list[SupervisorInfo]:
        rows = self._read(
            "SELECT id, host, pid, concurrency, queues, started_at, heartbeat_at, lock_path FROM supervisors ORDER BY started_at"
        )
        return [SupervisorInfo(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5], r[6], r[7]) for r in rows]

    def heartbeat(self, supervisor_id: str, now: float, lease_until: float) -> list[int]:
        def beat(conn: Any) -> list[int]:
            conn.execute("UPDATE supervisors SET heartbeat_at=? WHERE id=?", (now, supervisor_id))
            rows = conn.execute(
                "UPDATE jobs SET lease_expires_at=? WHERE owner=? AND state='running' RETURNING id, cancel_requested",
                (lease_until, supervisor_id),
            ).fetchall()
            return [job_id for job_id, cancel in rows if cancel]

        return self._write(beat)

    # -- user actions ---------------------------------------------------------------
    def cancel(self, job_ids: Sequence[int], now: float) -> dict[int, str]:
        def do(conn: Any) -> dict[int, str]:
            out = {}
            for job_id in job_ids:
                row = conn.execute(f"SELECT state FROM jobs WHERE id=?{self.row_lock}", (job_id,)).fetchone()
                if row is None:
                    continue
                state = row[0]
                if state in UNFINISHED_NOT_RUNNING:
                    self._end(
                        conn,
                        job_id,
                        CANCELLED,
                        {"type": "Cancelled", "message": "cancelled by request", "traceback": ""},
                        now,
                        None,
                    )
                    state = CANCELLED
                elif state == RUNNING:
                    conn.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
                    state = "cancelling"
                out[job_id] = state
            return out

        return self._write(do)

    def retry(self, job_ids: Sequence[int] | None, now: float, queue: str | None = None) -> list[int]:
        def do(conn: Any) -> list[int]:
            where = "state IN ('failed','cancelled')" if job_ids is not None else "state='failed'"
            params: list[Any] = []
            if job_ids is not None:
                where += f" AND id IN ({','.join('?' * len(job_ids))})"
                params.extend(job_ids)
            if queue:
                where += " AND queue=?"
                params.append(queue)
            rows = conn.execute(
                "UPDATE jobs SET state='queued', run_at=?, max_attempts=attempts+retries+1, finished_at=NULL, "
                f"owner=NULL, worker=NULL, cancel_requested=0, deps_pending=0 WHERE {where} RETURNING id",
                (now, *params),
            ).fetchall()
            self._notify(conn, "submitted")
            return sorted(r[0] for r in rows)

        return self._write(do)

    def purge(self, now: float, states: Sequence[str], older_than: float | None, default_ttl: float | None = None) -> int:
        states = [s for s in states if s in (SUCCEEDED, FAILED, CANCELLED)]
        if not states:
            return 0
        marks = ",".join("?" * len(states))
        # Each selection reads an index range (jobs_finished, jobs_ttl), never the whole table.
        if older_than is not None:
            selections = [(f"finished_at < ? AND state IN ({marks})", [now - older_than, *states])]
        else:
            selections = [(f"result_ttl IS NOT NULL AND finished_at + result_ttl < ? AND state IN ({marks})", [now, *states])]
            if default_ttl is not None:
                selections.append(
                    (f"finished_at < ? AND result_ttl IS NULL AND state IN ({marks})", [now - default_ttl, *states])
                )
        total = 0
        for where, params in selections:
            while True:
                n = self._write(lambda conn, w=where, p=params: self._delete_jobs(conn, w, p, _PURGE_CHUNK))
                total += n
                if n < _PURGE_CHUNK:
                    break
        return total

    @staticmethod
    def _delete_jobs(conn: Any, where: str, params: list[Any], limit: int) -> int:
        ids = [r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE {where} LIMIT {int(limit)}", params)]
        if not ids:
            return 0
        m = ",".join("?" * len(ids))
        for table, column in (("job_output", "job_id"), ("job_errors", "job_id"), ("job_deps", "job_id"), ("jobs", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({m})", ids)
        return len(ids)

    # -- schedules ------------------------------------------------------------------
    def upsert_schedule(self, schedule: Schedule) -> None:
        new = (schedule.target, dumps(schedule.args), dumps(schedule.kwargs), schedule.queue, schedule.cron, schedule.every)
        # One statement, so supervisors starting together cannot both insert; an unchanged
        # schedule keeps its next run time.
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO schedules(name, target, args, kwargs, queue, cron, every, next_run_at) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET target=excluded.target, args=excluded.args, kwargs=excluded.kwargs, "
                "queue=excluded.queue, cron=excluded.cron, every=excluded.every, next_run_at=excluded.next_run_at "
                "WHERE schedules.target <> excluded.target OR schedules.args <> excluded.args "
                "OR schedules.kwargs <> excluded.kwargs OR schedules.queue <> excluded.queue "
                "OR coalesce(schedules.cron, '') <> coalesce(excluded.cron, '') "
                "OR coalesce(schedules.every, -1) <> coalesce(excluded.every, -1)",
                (schedule.name, *new, schedule.next_run_at),
            )
        )

    def schedules(self) -> list[Schedule]:
        rows = self._read(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
        return [Schedule(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def enqueue_due_schedules(self, now: float, next_after: Any) -> list[int]:
        if not self._read("SELECT 1 FROM schedules WHERE next_run_at<=? LIMIT 1", (now,)):
            return []

        def do(conn: Any) -> list[int]:
            rows = conn.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_run_at<=?{self.claim_lock}",
                (now,),
            ).fetchall()
            ids = []
            for r in rows:
                schedule = Schedule(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4], r[5], r[6], r[7], r[8])
                from ..spec import JobSpec  # pydantic: only when a schedule is due

                spec = JobSpec(
                    target=schedule.target, args=schedule.args, kwargs=schedule.kwargs, queue=schedule.queue, name=schedule.name
                )
                ids.append(self._insert_rows(conn, [self._row(spec, now, None, 0)])[0])
                conn.execute(
                    "UPDATE schedules SET next_run_at=?, last_run_at=? WHERE name=?",
                    (next_after(schedule, now), now, schedule.name),
                )
            return ids

        return self._write(do)

    def running_count(self, queue: str) -> int:
        return self._read("SELECT count(*) FROM jobs WHERE state='running' AND queue=?", (queue,))[0][0]

    def set_progress(self, owner: str, updates: Sequence[tuple[int, int, float, str]]) -> None:
        if not updates:
            return
        self._write(
            lambda c: c.executemany(
                "UPDATE jobs SET progress=?, progress_message=? WHERE id=? AND state='running' AND owner=? AND attempts=?",
                [(fraction, message, job_id, owner, attempts) for job_id, attempts, fraction, message in updates],
            )
        )

    def prune_supervisors(self, heartbeat_before: float) -> list[str]:
        if not self._read("SELECT 1 FROM supervisors WHERE heartbeat_at<? LIMIT 1", (heartbeat_before,)):
            return []
        return self._write(
            lambda c: [r[0] for r in c.execute("DELETE FROM supervisors WHERE heartbeat_at<? RETURNING id", (heartbeat_before,))]
        )

    def promote_scheduled(self, now: float) -> int:
        if not self._read("SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=? LIMIT 1", (now,)):
            return 0
        return self._write(lambda c: c.execute(_PROMOTE_DUE, (now,)).rowcount)
