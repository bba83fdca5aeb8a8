"""Job semantics shared by the SQL stores: submitting, claiming, fenced finishes, retries,
dependencies, cancellation, retention and schedules, written once in SQL that SQLite and
PostgreSQL both run (``?`` placeholders; the PostgreSQL connection translates them).

A backend supplies connections and transactions (:meth:`_write`, :meth:`_read`), its
schema, bulk inserts, counts and the row-locking clause of the claim."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..errors import StoreError, ValidationError
from ..models import (
    CANCELLED,
    FAILED,
    MAX_LOST_ATTEMPTS,
    QUEUED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    WAITING,
    ClaimedJob,
    JobRecord,
    JobSpec,
    Outcome,
    dumps,
    retry_delay_seconds,
)
from .base import Schedule, Store, Submitted, SupervisorInfo

T = TypeVar("T")

JOB_COLUMNS = (
    "id, name, target, args, kwargs, queue, priority, state, attempts, max_attempts, run_at, "
    "created_at, started_at, finished_at, result, error, owner, worker, timeout, key, group_id, "
    "group_index, progress, progress_message, cancel_requested"
)
SCHEDULE_COLUMNS = "name, target, args, kwargs, queue, cron, every, next_run_at, last_run_at"
UNFINISHED_NOT_RUNNING = (QUEUED, SCHEDULED, WAITING)


class SQLStore(Store):
    """The job semantics over SQL; subclasses bind them to one database engine."""

    #: appended to the claim's SELECT: row locks that other claimers skip (PostgreSQL)
    claim_lock = ""
    #: appended to a SELECT whose rows the transaction then updates
    row_lock = ""
    #: appended to a SELECT of rows that must not change until the transaction ends
    share_lock = ""

    @abstractmethod
    def _write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one write transaction (retried on transient conflicts)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement."""

    @abstractmethod
    def _insert_rows(self, conn: Any, rows: list[tuple[Any, ...]]) -> Sequence[int]:
        """Insert job rows (in the order of ``_INSERT_JOB``); their ids, in order."""

    @abstractmethod
    def _insert_args(self, conn: Any, template: list[Any], args_texts: list[str], first_index: int | None) -> Sequence[int]:
        """Insert one job per JSON argument list, the rest from ``template`` (a row in the
        order of ``_INSERT_JOB``), in one statement; group indexes count from ``first_index``."""

    def _serialize_limited_claims(self, conn: Any) -> None:
        """Make claims of concurrency-limited queues take turns (no-op where writes already do)."""

    def _count_moves(self, conn: Any, old: str, new: str, by_queue: Counter[str]) -> None:
        """Record that jobs moved from state ``old`` to ``new`` (a backend keeping counts
        updates them once per statement here, not once per row)."""

    def _lock_key(self, conn: Any, key: str) -> None:
        """Make submits of the same unique key take turns (no-op where writes already do)."""

    def _notify(self, conn: Any, channel: str) -> None:
        """Wake listeners of ``channel`` (``submitted`` or ``finished``) when this commits."""

    def submit(self, specs: Iterable[JobSpec], now: float, group: bool = False) -> tuple[list[Submitted], str | None]:
        specs = list(specs)

        def insert(conn: Any) -> tuple[list[Submitted], str | None]:
            group_id = None
            if group:
                group_id = conn.execute(
                    "INSERT INTO job_groups(size, created_at) VALUES (?, ?) RETURNING id", (len(specs), now)
                ).fetchone()[0]
            simple = [s for s in specs if s.key is None and not s.depends_on]
            if len(simple) == len(specs):
                rows = [self._row(s, now, group_id, i) for i, s in enumerate(specs)]
                out = [Submitted(job_id) for job_id in self._insert_rows(conn, rows)]
            else:
                out = [self._insert_one(conn, s, now, group_id, i) for i, s in enumerate(specs)]
            self._notify(conn, "submitted")
            return out, (f"g{group_id}" if group_id is not None else None)

        return self._write(insert)

    def submit_stream(
        self, base: JobSpec, args_iter: Iterable[list[Any]], now: float, group: bool, max_payload_bytes: int, chunk: int = 5000
    ) -> tuple[list[int], str | None]:
        template = list(self._row(base, now, None, 0))
        kwargs_bytes = len(template[3])

        def insert(conn: Any) -> tuple[list[int], str | None]:
            group_id = None
            if group:
                row = conn.execute("INSERT INTO job_groups(size, created_at) VALUES (0, ?) RETURNING id", (now,)).fetchone()
                group_id = template[15] = row[0]
            ids: list[int] = []
            texts: list[str] = []
            index = 0
            for args in args_iter:
                try:
                    text = dumps(args)
                except (TypeError, ValueError) as exc:
                    raise ValidationError("args", f"item {index}: not JSON-serialisable: {exc}") from None
                if len(text) + kwargs_bytes > max_payload_bytes:
                    raise ValidationError("args", f"item {index}: payload over max_payload_bytes={max_payload_bytes}")
                texts.append(text)
                index += 1
                if len(texts) >= chunk:
                    ids.extend(self._insert_args(conn, template, texts, index - len(texts) if group_id else None))
                    texts = []
            if texts:
                ids.extend(self._insert_args(conn, template, texts, index - len(texts) if group_id else None))
            if group_id is not None:
                conn.execute("UPDATE job_groups SET size=? WHERE id=?", (index, group_id))
            self._notify(conn, "submitted")
            return ids, (f"g{group_id}" if group_id is not None else None)

        return self._write(insert)

    @staticmethod
    def _row(spec: JobSpec, now: float, group_id: int | None, index: int, state: str | None = None) -> tuple[Any, ...]:
        run_at = spec.run_at if spec.run_at is not None else now
        if state is None:
            state = SCHEDULED if run_at > now else QUEUED
        return (
            spec.name,
            spec.target,
            dumps(spec.args),
            dumps(spec.kwargs),
            spec.queue,
            spec.priority,
            state,
            spec.retries + 1,
            spec.retries,
            spec.retry_backoff,
            spec.retry_backoff_max,
            spec.timeout,
            run_at,
            now,
            spec.key,
            group_id,
            index if group_id is not None else None,
            int(spec.pass_results),
            spec.result_ttl,
        )

    def _insert_one(self, conn: Any, spec: JobSpec, now: float, group_id: int | None, index: int) -> Submitted:
        if spec.key is not None:
            self._lock_key(conn, spec.key)
            row = conn.execute(
                "SELECT id FROM jobs WHERE key=? AND state IN ('queued','scheduled','waiting','running') ORDER BY id LIMIT 1",
                (spec.key,),
            ).fetchone()
            if row:
                return Submitted(row[0], existing=True)
        deps = list(dict.fromkeys(spec.depends_on))
        pending = 0
        dead_dep = None
        if deps:
            marks = ",".join("?" * len(deps))
            # Shared row locks: a dependency finishing now either commits first (we see it
            # succeeded) or waits for us (and then sees our job_deps rows).
            found = dict(conn.execute(f"SELECT id, state FROM jobs WHERE id IN ({marks}){self.share_lock}", deps).fetchall())
            missing = [d for d in deps if d not in found]
            if missing:
                raise _Rejected("depends_on", f"unknown job id {missing[0]}")
            pending = sum(1 for d in deps if found[d] != SUCCEEDED)
            dead_dep = next((d for d in deps if found[d] in (FAILED, CANCELLED)), None)
        state = WAITING if pending else None
        job_id = conn.execute(_INSERT_JOB + " RETURNING id", self._row(spec, now, group_id, index, state)).fetchone()[0]
        if deps:
            conn.executemany(
                "INSERT INTO job_deps(job_id, depends_on, position) VALUES (?, ?, ?)",
                [(job_id, d, i) for i, d in enumerate(deps)],
            )
            conn.execute("UPDATE jobs SET deps_pending=? WHERE id=?", (pending, job_id))
            if dead_dep is not None:
                error = {"type": "DependencyFailed", "message": f"dependency {dead_dep} ended {found[dead_dep]}", "traceback": ""}
                conn.execute(
                    "UPDATE jobs SET state='cancelled', finished_at=?, error=? WHERE id=?",
                    (now, dumps(error), job_id),
                )
        return Submitted(job_id)

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

    # -- claiming and finishing -----------------------------------------------------
    def has_runnable(self, queues: Sequence[str] | None, now: float) -> bool:
        qsql, qparams = _queue_filter(queues)
        row = self._read(
            f"SELECT EXISTS(SELECT 1 FROM jobs WHERE state='queued' AND run_at<=? {qsql}) "
            f"OR EXISTS(SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=? {qsql})",
            (now, *qparams, now, *qparams),
        )
        return bool(row[0][0])

    def next_run_at(self, queues: Sequence[str] | None) -> float | None:
        qsql, qparams = _queue_filter(queues)
        row = self._read(f"SELECT min(run_at) FROM jobs WHERE state IN ('queued','scheduled') {qsql}", qparams)
        return row[0][0] if row else None

    def claim(
        self,
        owner: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease_until: float,
        queue_limits: dict[str, int] | None = None,
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        qsql, qparams = _queue_filter(queues)
        # A read first, so idle supervisors never queue up for the write lock.
        queued_due, scheduled_due = self._read(
            f"SELECT EXISTS(SELECT 1 FROM jobs WHERE state='queued' AND run_at<=? {qsql}), "
            "EXISTS(SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=?)",
            (now, *qparams, now),
        )[0]
        if not queued_due and not scheduled_due:
            return []

        def take(conn: Any) -> list[ClaimedJob]:
            if scheduled_due:
                conn.execute("UPDATE jobs SET state='queued' WHERE state='scheduled' AND run_at<=?", (now,))
            if queue_limits:
                self._serialize_limited_claims(conn)
                ids = _pick_with_limits(conn, qsql, qparams, limit, now, queue_limits, self.claim_lock)
                if not ids:
                    return []
                picked = f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(ids))})"
                params: tuple[Any, ...] = tuple(ids)
            else:
                picked = (
                    f"SELECT id FROM jobs WHERE state='queued' AND run_at<=? {qsql} "
                    f"ORDER BY priority DESC, run_at, id LIMIT ?{self.claim_lock}"
                )
                params = (now, *qparams, limit)
            rows = conn.execute(
                f"WITH picked AS ({picked}) "
                "UPDATE jobs SET state='running', owner=?, attempts=attempts+1, started_at=?, "
                "lease_expires_at=?, worker=NULL, cancel_requested=0 WHERE id IN (SELECT id FROM picked) "
                "RETURNING id, target, args, kwargs, attempts, timeout, queue, pass_results, priority, run_at",
                (*params, owner, now, lease_until),
            ).fetchall()
            rows.sort(key=lambda r: (-r[8], r[9], r[0]))
            self._count_moves(conn, "queued", "running", Counter(r[6] for r in rows))
            claimed = []
            for r in rows:
                args_json = r[2]
                if r[7]:
                    results = conn.execute(
                        "SELECT j.result FROM job_deps d JOIN jobs j ON j.id=d.depends_on WHERE d.job_id=? ORDER BY d.position",
                        (r[0],),
                    ).fetchall()
                    first = "[" + ",".join(x[0] if x[0] is not None else "null" for x in results) + "]"
                    rest = args_json.strip()[1:-1].strip()
                    args_json = f"[{first},{rest}]" if rest else f"[{first}]"
                claimed.append(ClaimedJob(r[0], r[1], args_json, r[3], r[4], r[5], r[6]))
            return claimed

        return self._write(take)

    def finish(self, owner: str, outcomes: Sequence[Outcome], now: float) -> list[int]:
        if not outcomes:
            return []

        succeeded = [o for o in outcomes if o.kind == "succeeded"]
        others = [o for o in outcomes if o.kind != "succeeded"]

        def write(conn: Any) -> list[int]:
            rejected = []
            for start in range(0, len(succeeded), _FINISH_CHUNK):
                rejected.extend(self._finish_succeeded(conn, owner, succeeded[start : start + _FINISH_CHUNK], now))
            for o in others:
                if not self._finish_one(conn, owner, o, now):
                    rejected.append(o.job_id)
            self._notify(conn, "finished")
            return rejected

        return self._write(write)

    def _finish_succeeded(self, conn: Any, owner: str, outcomes: Sequence[Outcome], now: float) -> list[int]:
        """One fenced UPDATE for a batch of successes; returns the ids the fence rejected."""
        values = ",".join([_SUCCESS_ROW] * len(outcomes))
        params: list[Any] = []
        for o in outcomes:
            params += (o.job_id, owner, o.attempts, o.result_json, o.finished_at or now, o.worker)
        done = {
            r[0]: r[1]
            for r in conn.execute(
                f"WITH v(id, owner, attempts, result, finished_at, worker) AS (VALUES {values}) "
                "UPDATE jobs SET state='succeeded', result=v.result, error=NULL, finished_at=v.finished_at, "
                "worker=v.worker, lease_expires_at=NULL FROM v "
                "WHERE jobs.id=v.id AND jobs.state='running' AND jobs.owner=v.owner AND jobs.attempts=v.attempts "
                "RETURNING jobs.id, jobs.queue",
                params,
            ).fetchall()
        }
        self._count_moves(conn, "running", "succeeded", Counter(done.values()))
        for o in outcomes:
            if o.job_id in done:
                self._store_output(conn, o)
        if done:
            marks = ",".join("?" * len(done))
            for (job_id,) in conn.execute(
                f"SELECT DISTINCT depends_on FROM job_deps WHERE depends_on IN ({marks})", list(done)
            ).fetchall():
                self._release_dependents(conn, job_id, now)
        return [o.job_id for o in outcomes if o.job_id not in done]

    def _finish_one(self, conn: Any, owner: str, o: Outcome, now: float) -> bool:
        fence = (o.job_id, owner, o.attempts)
        finished_at = o.finished_at or now
        if o.kind == "released":
            cur = conn.execute(
                "UPDATE jobs SET state='queued', attempts=attempts-1, owner=NULL, worker=NULL, started_at=NULL, "
                "lease_expires_at=NULL WHERE id=? AND state='running' AND owner=? AND attempts=?",
                fence,
            )
            return cur.rowcount == 1
        row = conn.execute(
            "SELECT max_attempts, retry_backoff, retry_backoff_max, cancel_requested FROM jobs "
            "WHERE id=? AND state='running' AND owner=? AND attempts=?",
            fence,
        ).fetchone()
        if row is None:
            return False
        max_attempts, backoff, backoff_max, cancel_requested = row
        error = o.error or {"type": "Error", "message": "", "traceback": ""}
        self._store_output(conn, o)
        if o.kind == "cancelled" or cancel_requested:
            error = {"type": "Cancelled", "message": "cancelled by request", "traceback": ""}
            self._end(conn, o.job_id, CANCELLED, error, finished_at, o.worker)
            return True
        conn.execute(
            "INSERT INTO job_errors(job_id, attempt, error, at) VALUES (?, ?, ?, ?)",
            (o.job_id, o.attempts, dumps(error), finished_at),
        )
        if o.retriable and o.attempts < max_attempts:
            run_at = now + retry_delay_seconds(o.attempts, backoff, backoff_max)
            conn.execute(
                "UPDATE jobs SET state='queued', run_at=?, error=?, owner=NULL, worker=?, lease_expires_at=NULL WHERE id=?",
                (run_at, dumps(error), o.worker, o.job_id),
            )
        else:
            self._end(conn, o.job_id, FAILED, error, finished_at, o.worker)
        return True

    @staticmethod
    def _store_output(conn: Any, o: Outcome) -> None:
        if o.output:
            conn.execute(
                "INSERT INTO job_output(job_id, output) VALUES (?, ?) ON CONFLICT(job_id) DO UPDATE SET output=excluded.output",
                (o.job_id, o.output),
            )

    def _end(self, conn: Any, job_id: int, state: str, error: dict[str, Any], now: float, worker: int | None) -> None:
        conn.execute(
            "UPDATE jobs SET state=?, error=?, finished_at=?, worker=coalesce(?, worker), lease_expires_at=NULL WHERE id=?",
            (state, dumps(error), now, worker, job_id),
        )
        self._cancel_dependents(conn, job_id, state, now)

    @staticmethod
    def _release_dependents(conn: Any, job_id: int, now: float) -> None:
        dependents = [r[0] for r in conn.execute("SELECT job_id FROM job_deps WHERE depends_on=?", (job_id,))]
        if not dependents:
            return
        marks = ",".join("?" * len(dependents))
        conn.execute(f"UPDATE jobs SET deps_pending=deps_pending-1 WHERE id IN ({marks}) AND state='waiting'", dependents)
        conn.execute(
            f"UPDATE jobs SET state=CASE WHEN run_at>? THEN 'scheduled' ELSE 'queued' END, "
            "run_at=CASE WHEN run_at>? THEN run_at ELSE ? END "
            f"WHERE id IN ({marks}) AND state='waiting' AND deps_pending<=0",
            (now, now, now, *dependents),
        )

    @staticmethod
    def _cancel_dependents(conn: Any, job_id: int, state: str, now: float) -> None:
        error = {"type": "DependencyFailed", "message": f"dependency {job_id} ended {state}", "traceback": ""}
        conn.execute(
            "WITH RECURSIVE down(id) AS (SELECT job_id FROM job_deps WHERE depends_on=? "
            "UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on=down.id) "
            "UPDATE jobs SET state='cancelled', error=?, finished_at=? "
            "WHERE id IN (SELECT id FROM down) AND state IN ('waiting','queued','scheduled')",
            (job_id, dumps(error), now),
        )

    def set_progress(self, owner: str, updates: Sequence[tuple[int, int, float, str]]) -> None:
        if not updates:
            return
        self._write(
            lambda c: c.executemany(
                "UPDATE jobs SET progress=?, progress_message=? WHERE id=? AND state='running' AND owner=? AND attempts=?",
                [(fraction, message, job_id, owner, attempts) for job_id, attempts, fraction, message in updates],
            )
        )

    def requeue_lost(
        self, now: float, owner: str | None = None, expired_before: float | None = None, reason: str = ""
    ) -> list[int]:
        if owner is None and expired_before is None:
            return []
        if (
            owner is None
            and not self._read(
                "SELECT EXISTS(SELECT 1 FROM jobs WHERE state='running' AND lease_expires_at<?)", (expired_before,)
            )[0][0]
        ):
            return []

        def take_back(conn: Any) -> list[int]:
            if owner is not None:
                rows = conn.execute(
                    f"SELECT id, attempts, max_attempts, owner FROM jobs WHERE state='running' AND owner=?{self.row_lock}",
                    (owner,),
                ).fetchall()
                kind = "SupervisorLost"
            else:
                rows = conn.execute(
                    "SELECT id, attempts, max_attempts, owner FROM jobs WHERE state='running' AND lease_expires_at<?"
                    f"{self.row_lock}",
                    (expired_before,),
                ).fetchall()
                kind = "LeaseExpired"
            for job_id, attempts, max_attempts, job_owner in rows:
                error = {"type": kind, "message": reason or f"supervisor {job_owner} lost the job", "traceback": ""}
                conn.execute(
                    "INSERT INTO job_errors(job_id, attempt, error, at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(job_id, attempt) DO UPDATE SET error=excluded.error, at=excluded.at",
                    (job_id, attempts, dumps(error), now),
                )
                if attempts < max_attempts + MAX_LOST_ATTEMPTS:
                    conn.execute(
                        "UPDATE jobs SET state='queued', run_at=?, owner=NULL, worker=NULL, lease_expires_at=NULL, "
                        "error=? WHERE id=?",
                        (now, dumps(error), job_id),
                    )
                else:
                    self._end(conn, job_id, FAILED, error, now, None)
            return [r[0] for r in rows]

        return self._write(take_back)

    def prune_supervisors(self, heartbeat_before: float) -> list[str]:
        if not self._read("SELECT 1 FROM supervisors WHERE heartbeat_at<? LIMIT 1", (heartbeat_before,)):
            return []
        return self._write(
            lambda c: [r[0] for r in c.execute("DELETE FROM supervisors WHERE heartbeat_at<? RETURNING id", (heartbeat_before,))]
        )

    def promote_scheduled(self, now: float) -> int:
        if not self._read("SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=? LIMIT 1", (now,)):
            return 0
        return self._write(
            lambda c: c.execute("UPDATE jobs SET state='queued' WHERE state='scheduled' AND run_at<=?", (now,)).rowcount
        )

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
        def do(conn: Any) -> None:
            row = conn.execute(
                "SELECT target, args, kwargs, queue, cron, every FROM schedules WHERE name=?", (schedule.name,)
            ).fetchone()
            new = (schedule.target, dumps(schedule.args), dumps(schedule.kwargs), schedule.queue, schedule.cron, schedule.every)
            if row is None:
                conn.execute(
                    "INSERT INTO schedules(name, target, args, kwargs, queue, cron, every, next_run_at) VALUES (?,?,?,?,?,?,?,?)",
                    (schedule.name, *new, schedule.next_run_at),
                )
            elif tuple(row) != new:
                conn.execute(
                    "UPDATE schedules SET target=?, args=?, kwargs=?, queue=?, cron=?, every=?, next_run_at=? WHERE name=?",
                    (*new, schedule.next_run_at, schedule.name),
                )

        self._write(do)

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
                spec = JobSpec(
                    target=schedule.target, args=schedule.args, kwargs=schedule.kwargs, queue=schedule.queue, name=schedule.name
                )
                ids.append(conn.execute(_INSERT_JOB + " RETURNING id", self._row(spec, now, None, 0)).fetchone()[0])
                conn.execute(
                    "UPDATE schedules SET next_run_at=?, last_run_at=? WHERE name=?",
                    (next_after(schedule, now), now, schedule.name),
                )
            return ids

        return self._write(do)

    def running_count(self, queue: str) -> int:
        return self._read("SELECT count(*) FROM jobs WHERE state='running' AND queue=?", (queue,))[0][0]


class _Rejected(StoreError):
    """Raised inside a submit transaction to roll it back; the API turns it into ValidationError."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


_FINISH_CHUNK = 200
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
