"""The SQL stores' reads for the dashboard and its metrics: the jobs list paged by id, the
oldest queued job per queue, busy workers, per-minute figures of finished attempts and the
totals the Prometheus counters are derived from. Mixed into :class:`~jobq.store.sql.SQLStore`.

Every query here is served by an index (see migration 2) or reads a small table whose size
follows time (minutes x queues), never the number of jobs."""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import os
import time
from collections.abc import Sequence
from typing import Any

from ..core.models import FINISHED_STATES, JobRecord, iso
from . import queries as Q
from .base import Schedule

#: upper bounds (seconds) of the histogram buckets kept per minute, counted cumulatively
#: (observations <= bound) as Prometheus exposes them; +Inf is the total
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_D = ", ".join(f"d{i}" for i in range(len(BUCKETS)))
_W = ", ".join(f"w{i}" for i in range(len(BUCKETS)))
_MINUTE_COLUMNS = f"minute, queue, kind, shard, n, duration_sum, wait_sum, {_D}, {_W}"
_UPSERT_MINUTE = (
    f"INSERT INTO job_minutes({_MINUTE_COLUMNS}) VALUES ({', '.join(['?'] * (7 + 2 * len(BUCKETS)))}) "
    "ON CONFLICT(minute, queue, kind, shard) DO UPDATE SET n = job_minutes.n + excluded.n, "
    "duration_sum = job_minutes.duration_sum + excluded.duration_sum, wait_sum = job_minutes.wait_sum + excluded.wait_sum, "
    + ", ".join(f"{c} = job_minutes.{c} + excluded.{c}" for c in (*_D.split(", "), *_W.split(", ")))
)
_SUMS = f"sum(n), sum(duration_sum), sum(wait_sum), {', '.join(f'sum({c})' for c in (*_D.split(', '), *_W.split(', ')))}"
_ENDED = FINISHED_STATES
#: how often a process writes the figures it booked (a crash loses at most this much of the
#: histograms and the chart; the counters come from the job counts and are exact)
FIGURES_EVERY_SECONDS = 1.0
#: where a paused schedule's next run is parked: 9999-12-31T23:59:59Z, never due
PAUSED_UNTIL = 253402300799.0
_ENDED_SQL = "('succeeded','failed','cancelled')"
#: the shard of the rows that hold a whole hour (folded from minutes; real shards are pids)
HOUR_SHARD = -1
#: how many hours of hourly rows are kept for the charts (a week)
KEEP_HOURS = 7 * 24


OLDEST_QUEUED = (
    "SELECT (SELECT min(run_at) FROM jobs WHERE state='queued' AND partition_key IS NULL AND queue=?), "
    "(SELECT min(run_at) FROM jobs WHERE state='queued' AND partition_key IS NOT NULL AND queue=?)"
)


class SQLDashboard:
    """Dashboard reads and finish statistics of the SQL stores (a mixin)."""

    _write: Any
    _read: Any
    _records: Any
    _delete_jobs: Any
    _local: Any
    row_lock: str
    #: the case-insensitive LIKE (SQLite's LIKE is, for ASCII; PostgreSQL's is ILIKE)
    like = "LIKE"

    # -- the jobs list ----------------------------------------------------------------
    def jobs_page(
        self,
        state: str | None = None,
        queue: str | None = None,
        target: str | None = None,
        name: str | None = None,
        before: int | None = None,
        limit: int = 50,
        contains: str | None = None,
    ) -> list[JobRecord]:
        where: list[str] = ["id > 0"]  # the term that admits the jobs_list_* indexes
        params: list[Any] = []
        for column, value in (("state", state), ("queue", queue), ("target", target), ("name", name)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if contains:  # a scan, newest first, that stops at the page's last match
            pattern = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(" + " OR ".join(f"{c} {self.like} ? ESCAPE '\\'" for c in ("args", "kwargs", "result")) + ")")
            params.extend([pattern] * 3)
        if before is not None:
            where.append("id<?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}"
        records: list[JobRecord] = self._records(f"{clause} ORDER BY id DESC LIMIT ?", (*params, limit))
        if records:  # dependencies and earlier errors too, as get() gives them: two reads by key
            by_id = {r.id: r for r in records}
            marks = Q.marks(len(by_id))
            for job_id, dep in self._read(
                f"SELECT job_id, depends_on FROM job_deps WHERE job_id IN ({marks}) ORDER BY job_id, position", list(by_id)
            ):
                by_id[job_id].depends_on.append(dep)
            for job_id, attempt, error, at in self._read(
                f"SELECT job_id, attempt, error, at FROM job_errors WHERE job_id IN ({marks}) ORDER BY job_id, attempt",
                list(by_id),
            ):
                by_id[job_id].errors.append({"attempt": attempt, **json.loads(error), "finished_at": iso(at)})
        return records

    def dependents(self, job_id: int) -> list[int]:
        return [r[0] for r in self._read("SELECT job_id FROM job_deps WHERE depends_on=? ORDER BY job_id", (job_id,))]

    def groups_page(self, before: int | None, limit: int) -> list[tuple[str, int, float]]:
        where, params = ("WHERE id<?", (before,)) if before is not None else ("", ())
        rows = self._read(f"SELECT id, size, created_at FROM job_groups {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [(f"g{r[0]}", r[1], r[2]) for r in rows]

    def group_failed(self, group_id: str, limit: int) -> list[JobRecord]:
        if not (group_id.startswith("g") and group_id[1:].isdigit()):
            return []
        return self._records(
            "WHERE group_id=? AND state IN ('failed','cancelled') ORDER BY group_index LIMIT ?", (int(group_id[1:]), limit)
        )

    def delete_jobs(self, job_ids: Sequence[int]) -> list[int]:
        """Delete finished jobs among ``job_ids`` (with their output, errors and edges)."""
        ids = list(dict.fromkeys(int(i) for i in job_ids))
        if not ids:
            return []

        def do(conn: Any) -> list[int]:
            done: list[int] = []
            for start in range(0, len(ids), Q.PURGE_CHUNK):
                chunk = ids[start : start + Q.PURGE_CHUNK]
                where = f"id IN ({Q.marks(len(chunk))}) AND state IN {_ENDED_SQL}"
                ended = [r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE {where}{self.row_lock}", chunk)]
                if ended:  # the purge's own deletion: output, errors, edges and counts too
                    self._delete_jobs(conn, f"id IN ({Q.marks(len(ended))})", ended, len(ended))
                    done.extend(ended)
            return sorted(done)

        return self._write(do)

    # -- schedules: pause and resume ------------------------------------------------------
    def pause_schedule(self, name: str, now: float) -> bool:
        def do(conn: Any) -> bool:
            if conn.execute("UPDATE schedules SET next_run_at=? WHERE name=?", (PAUSED_UNTIL, name)).rowcount != 1:
                return False
            conn.execute("INSERT INTO schedule_pauses(name, paused_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING", (name, now))
            return True

        return self._write(do)

    def resume_schedule(self, name: str, next_run_at: float) -> bool:
        def do(conn: Any) -> bool:
            if conn.execute("DELETE FROM schedule_pauses WHERE name=?", (name,)).rowcount != 1:
                return False
            conn.execute("UPDATE schedules SET next_run_at=? WHERE name=?", (next_run_at, name))
            return True

        return self._write(do)

    def paused_schedules(self) -> set[str]:
        return {r[0] for r in self._read("SELECT name FROM schedule_pauses")}

    def upsert_schedule(self, schedule: Schedule) -> None:
        """The configuration's upsert (which gives a changed schedule a new next run), then a
        paused schedule parked again."""
        super().upsert_schedule(schedule)  # type: ignore[misc]
        if self._read("SELECT 1 FROM schedule_pauses WHERE name=?", (schedule.name,)):
            self._write(lambda c: c.execute("UPDATE schedules SET next_run_at=? WHERE name=?", (PAUSED_UNTIL, schedule.name)))

    # -- overview and metrics ---------------------------------------------------------
    def oldest_queued(self, queues: Sequence[str]) -> dict[str, float]:
        out = {}
        for queue in queues:  # each a range of the partial claim index, and of the partition index
            rows = self._read(OLDEST_QUEUED, (queue, queue))
            values = [v for v in rows[0] if v is not None]
            value = min(values) if values else None
            if value is not None:
                out[queue] = value
        return out

    def busy_workers(self) -> dict[str, int]:
        # Distinct workers: a worker runs one job at a time, so this never exceeds a
        # supervisor's concurrency, even while a finished job's result is still on its way.
        return dict(self._read(Q.BUSY_WORKERS))

    def job_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {(q, s): (d, r) for q, s, d, r in self._read("SELECT queue, state, deleted, retried FROM job_totals")}

    def finished_by_minute(self, since_minute: int, bucket: int = 1, queue: str | None = None) -> list[tuple[int, str, int]]:
        where = "minute>=?"
        params: list[Any] = [since_minute]
        if queue is not None:
            where += " AND queue=?"
            params.append(queue)
        b = max(1, int(bucket))
        return [
            (int(m), k, int(n))
            for m, k, n in self._read(
                f"SELECT (minute / {b}) * {b} AS b, kind, sum(n) FROM job_minutes WHERE {where} GROUP BY b, kind ORDER BY b",
                params,
            )
        ]

    def histograms(self) -> dict[str, tuple[int, float, float, list[int], list[int]]]:
        out = {}
        k = len(BUCKETS)
        for r in self._read(f"SELECT queue, {_SUMS} FROM job_minutes GROUP BY queue ORDER BY queue"):
            out[r[0]] = (int(r[1]), float(r[2]), float(r[3]), [int(x) for x in r[4 : 4 + k]], [int(x) for x in r[4 + k :]])
        return out

    def compact_stats(self, before_minute: int, keep_hours_from: int | None = None) -> int:
        """Fold the per-minute rows older than ``before_minute`` into one row per hour, queue
        and kind (shard :data:`HOUR_SHARD`), and those hours older than ``keep_hours_from``
        (a minute; default a week before ``before_minute``) into one row per queue and kind
        (minute 0): the table stays as small as the charts' week."""
        if keep_hours_from is None:
            keep_hours_from = before_minute - KEEP_HOURS * 60
        if not self._read(
            f"SELECT 1 FROM job_minutes WHERE minute>0 AND (minute<? AND shard<>{HOUR_SHARD} OR minute<? AND shard={HOUR_SHARD}) "
            "LIMIT 1",
            (before_minute, keep_hours_from),
        ):
            return 0

        def do(conn: Any) -> int:
            # The rows this transaction deleted, and only those, are folded: a second compaction
            # running at once deletes (and adds) nothing.
            folded: dict[tuple[int, str, str, int], list[Any]] = {}
            total = 0
            for where, param, into in (
                (f"shard<>{HOUR_SHARD} AND minute<?", before_minute, lambda m: (m // 60 * 60, HOUR_SHARD)),
                (f"shard={HOUR_SHARD} AND minute<?", keep_hours_from, lambda m: (0, 0)),
            ):
                gone = conn.execute(
                    f"DELETE FROM job_minutes WHERE minute>0 AND {where} "
                    f"RETURNING minute, queue, kind, n, duration_sum, wait_sum, {_D}, {_W}",
                    (param,),
                ).fetchall()
                total += len(gone)
                for r in gone:
                    minute, shard = into(r[0])
                    acc = folded.setdefault((minute, r[1], r[2], shard), [0] * (len(r) - 3))
                    for i, value in enumerate(r[3:]):
                        acc[i] += value
            # hours folded into minute 0 in this same pass are added to it, not kept twice
            for key in [k for k in folded if k[3] == HOUR_SHARD and k[0] < keep_hours_from]:
                acc = folded.pop(key)
                into0 = folded.setdefault((0, key[1], key[2], 0), [0] * len(acc))
                for i, value in enumerate(acc):
                    into0[i] += value
            conn.executemany(_UPSERT_MINUTE, [(m, q, k, sh, *acc) for (m, q, k, sh), acc in sorted(folded.items())])
            return total

        return self._write(do)

    # -- per-minute figures of finished attempts --------------------------------------
    def _observe(self, queue: str, kind: str, started_at: float | None, run_at: float | None, finished_at: float) -> None:
        """Book one attempt that a finish statement ended (called from the fenced
        transitions, so a rejected late finish is never booked): into this transaction's
        list, merged into the process's figures once the transaction commits."""
        pending = getattr(self._local, "observed", None)
        if pending is not None:
            pending.append((queue, kind, started_at, run_at, finished_at))

    def _observing(self) -> list[tuple[Any, ...]] | None:
        pending: list[tuple[Any, ...]] | None = getattr(self._local, "observed", None)
        return pending

    def _begin_observing(self) -> None:
        self._local.observed = []

    def _end_observing(self, committed: bool) -> None:
        """Merge what the transaction booked into the figures waiting to be written."""
        booked = getattr(self._local, "observed", None) or []
        self._local.observed = None
        if not committed or not booked:
            return
        figures = self.__dict__.setdefault("_figures", {})
        if not _book_batch(figures, booked):
            for row in booked:
                _book_batch(figures, [row])

    def flush_figures(self) -> None:
        """Write the figures this process booked and has not written yet (a worker going
        idle, a supervisor stopping)."""
        rows = self._take_figures(None)
        if rows:
            try:
                self._write(lambda conn: self._write_figures(conn, rows))
            except BaseException:
                self._restore_figures(rows)
                raise

    def _take_figures(self, now_monotonic: float | None) -> list[tuple[Any, ...]]:
        """The figures to write now (at most once per FIGURES_EVERY_SECONDS unless
        ``now_monotonic`` is None), as rows."""
        if not self.__dict__.get("_figures"):
            return []
        if now_monotonic is None:
            now_monotonic = time.monotonic()
        elif now_monotonic < self.__dict__.get("_figures_due", 0.0):
            return []
        self.__dict__["_figures_due"] = now_monotonic + FIGURES_EVERY_SECONDS
        figures = self.__dict__.pop("_figures", {})
        shard = os.getpid()
        k = len(BUCKETS)
        rows = []
        for (minute, queue, kind), acc in sorted(figures.items()):
            durations = list(itertools.accumulate(acc[3 : 3 + k]))  # observations <= each bound
            waits = list(itertools.accumulate(acc[4 + k : 4 + 2 * k]))
            rows.append((minute, queue, kind, shard, acc[0], acc[1], acc[2], *durations, *waits))
        return rows

    def _write_figures(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            conn.executemany(_UPSERT_MINUTE, rows)

    def _restore_figures(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows whose transaction failed go back to be written next time."""
        figures = self.__dict__.setdefault("_figures", {})
        k = len(BUCKETS)
        for minute, queue, kind, _shard, n, duration_sum, wait_sum, *cumulative in rows:
            mine = figures.setdefault((minute, queue, kind), [0, 0.0, 0.0] + [0] * (2 * k + 2))
            mine[0] += n
            mine[1] += duration_sum
            mine[2] += wait_sum
            durations, waits = cumulative[:k], cumulative[k:]
            for i in range(k):  # back to per-bucket counts; the rest were above every bound
                mine[3 + i] += durations[i] - (durations[i - 1] if i else 0)
                mine[4 + k + i] += waits[i] - (waits[i - 1] if i else 0)
            mine[3 + k] += n - durations[-1]
            mine[4 + 2 * k] += n - waits[-1]


def _book_batch(figures: dict[tuple[int, str, str], list[Any]], booked: list[tuple[Any, ...]]) -> bool:
    """Add attempts that ended in one minute, of one queue and kind, to ``figures`` with C
    loops (``map``), not Python code per attempt; False (nothing added) for any other batch."""
    queues, kinds, started, due, finished = zip(*booked, strict=True)
    minute = int(min(finished) // 60)
    if int(max(finished) // 60) != minute or len(set(queues)) != 1 or len(set(kinds)) != 1 or None in started or None in due:
        if len(booked) > 1:
            return False
        if started[0] is None:
            return True  # never started: no duration to book
        due = (started[0],)  # no due time: no wait
    k = len(BUCKETS)
    key = (minute, queues[0], kinds[0])
    acc = figures.get(key)
    if acc is None:
        acc = figures[key] = [0, 0.0, 0.0] + [0] * (2 * k + 2)
    acc[0] += len(started)
    # Sorted once, each figure's buckets are 14 bisects of the list, whatever its length; a
    # negative figure (clocks a hair apart) counts as 0, in the first bucket.
    for at, values in ((3, sorted(map(operator.sub, finished, started))), (4 + k, sorted(map(operator.sub, started, due)))):
        acc[1 if at == 3 else 2] += sum(values[bisect.bisect_left(values, 0.0) :])
        below = 0
        for i, bound in enumerate(BUCKETS):
            upto = bisect.bisect_right(values, bound)
            acc[at + i] += upto - below
            below = upto
        acc[at + k] += len(values) - below
    return True
