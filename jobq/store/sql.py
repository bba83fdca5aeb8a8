"""Job semantics shared by the SQL stores: submitting, claiming, fenced finishes, retries,
dependencies, cancellation, retention and schedules, written once in SQL that SQLite and
PostgreSQL both run (``?`` placeholders; the PostgreSQL connection translates them).

A backend supplies connections and transactions (:meth:`_write`, :meth:`_read`), its
schema, bulk inserts, counts and the row-locking clause of the claim."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..errors import ValidationError
from ..models import (
    CANCELLED,
    FAILED,
    MAX_LOST_ATTEMPTS,
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    WAITING,
    ClaimedJob,
    JobSpec,
    Outcome,
    dumps,
    retry_delay_seconds,
)
from .base import Store, Submitted
from .sql_admin import SQLAdmin
from .sql_dashboard import SQLDashboard
from .sql_rows import (
    _FINISH_CHUNKS,
    _PROMOTE_DUE,
    _SUCCESS_ROW,
    _pick_with_limits,
    _queue_filter,
)

T = TypeVar("T")


class SQLStore(SQLDashboard, SQLAdmin, Store):
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
    def _insert_args(self, conn: Any, template: list[Any], array: str, count: int, first_index: int | None) -> Sequence[int]:
        """Insert one job per element of ``array`` (a JSON array of ``count`` argument lists),
        the rest from ``template`` (a row in the order of ``_INSERT_JOB``), in one statement;
        group indexes count from ``first_index``."""

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
            index = 0
            batch: list[Any] = []
            for args in args_iter:
                batch.append(args)
                if len(batch) >= chunk:
                    ids.extend(self._insert_batch(conn, template, batch, index, group_id, kwargs_bytes, max_payload_bytes))
                    index += len(batch)
                    batch = []
            if batch:
                ids.extend(self._insert_batch(conn, template, batch, index, group_id, kwargs_bytes, max_payload_bytes))
                index += len(batch)
            if group_id is not None:
                conn.execute("UPDATE job_groups SET size=? WHERE id=?", (index, group_id))
            self._notify(conn, "submitted")
            return ids, (f"g{group_id}" if group_id is not None else None)

        return self._write(insert)

    def _insert_batch(
        self,
        conn: Any,
        template: list[Any],
        batch: list[Any],
        first: int,
        group_id: int | None,
        kwargs_bytes: int,
        max_payload_bytes: int,
    ) -> Sequence[int]:
        """Insert one job per argument list of ``batch``, encoded as one JSON array: one C call
        instead of one per job. Only when that fails or runs long are the items looked at one
        by one, to name the bad one."""
        try:
            array = dumps(batch)
        except (TypeError, ValueError):
            array = None
        if array is None or len(array) + kwargs_bytes > max_payload_bytes:
            for offset, args in enumerate(batch):
                try:
                    text = dumps(args)
                except (TypeError, ValueError) as exc:
                    raise ValidationError("args", f"item {first + offset}: not JSON-serialisable: {exc}") from None
                if len(text) + kwargs_bytes > max_payload_bytes:
                    raise ValidationError("args", f"item {first + offset}: payload over max_payload_bytes={max_payload_bytes}")
        return self._insert_args(
            conn, template, array if array is not None else dumps(batch), len(batch), first if group_id is not None else None
        )

    @staticmethod
    def _row(spec: JobSpec, now: float, group_id: int | None, index: int, state: str | None = None) -> tuple[Any, ...]:
        run_at = spec.run_at if spec.run_at is not None else now
        if state is None:
            state = SCHEDULED if run_at > now else QUEUED
        return (
            spec.name,
            spec.target,
            spec.args_json(),
            spec.kwargs_json(),
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
                raise ValidationError("depends_on", f"unknown job id {missing[0]}")  # rolls the insert back
            pending = sum(1 for d in deps if found[d] != SUCCEEDED)
            dead_dep = next((d for d in deps if found[d] in (FAILED, CANCELLED)), None)
        state = WAITING if pending else None
        job_id = self._insert_rows(conn, [self._row(spec, now, group_id, index, state)])[0]
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

    # -- claiming and finishing -----------------------------------------------------
    def has_runnable(self, queues: Sequence[str] | None, now: float) -> bool:
        return any(self._due(queues, now))

    def _due(self, queues: Sequence[str] | None, now: float) -> tuple[bool, bool]:
        """Whether queued and whether scheduled jobs of ``queues`` are due (a read)."""
        qsql, qparams = _queue_filter(queues)
        queued, scheduled = self._read(
            f"SELECT EXISTS(SELECT 1 FROM jobs WHERE state='queued' AND run_at<=? {qsql}), "
            f"EXISTS(SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=? {qsql})",
            (now, *qparams, now, *qparams),
        )[0]
        return bool(queued), bool(scheduled)

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
        queued_due, scheduled_due = self._due(queues, now)
        if not queued_due and not scheduled_due:
            return []

        def take(conn: Any) -> list[ClaimedJob]:
            if scheduled_due:
                conn.execute(_PROMOTE_DUE, (now,))
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
            self._observe_finishes(conn, owner, outcomes, now)  # dashboard: per-minute figures, before the updates
            rejected = []
            for chunk in _fixed_chunks(succeeded):
                rejected.extend(self._finish_succeeded(conn, owner, chunk, now))
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
        rows = conn.execute(
            f"WITH v(id, owner, attempts, result, finished_at, worker) AS (VALUES {values}) "
            "UPDATE jobs SET state='succeeded', result=v.result, error=NULL, finished_at=v.finished_at, "
            "worker=v.worker, lease_expires_at=NULL FROM v "
            "WHERE jobs.id=v.id AND jobs.state='running' AND jobs.owner=v.owner AND jobs.attempts=v.attempts "
            "RETURNING jobs.id, jobs.queue, EXISTS(SELECT 1 FROM job_deps WHERE job_deps.depends_on = jobs.id)",
            params,
        ).fetchall()
        done = {r[0]: r[1] for r in rows}
        self._count_moves(conn, "running", "succeeded", Counter(done.values()))
        for o in outcomes:
            if o.output and o.job_id in done:
                self._store_output(conn, o)
        for job_id, _, has_dependents in rows:
            if has_dependents:
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


def _fixed_chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """Slices of a few fixed sizes only: each size is one SQL text, so the connection's
    statement cache (and a worker's memory) stays small whatever the batch sizes."""
    start = 0
    for size in _FINISH_CHUNKS:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size
