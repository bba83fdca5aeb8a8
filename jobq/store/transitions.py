"""The job state machine: every move of a job between states is one named operation here,
carrying its own fence (the ``WHERE`` of the statement that writes it), its row locks
(PostgreSQL) and its count update (SQLite keeps counts by queue and state in a table).

Each operation runs on a connection inside a write transaction its caller opened; none
waits, calls user code or does I/O besides its statements. SQLite's counts book a held job
(claimed or running) as ``running``: a start moves no count (``SQLiteStore.counts`` tells the
claimed ones apart).

    queued ──claim──▶ claimed ──start──▶ running
      ▲  ▲               └───────┬───────────┘  (held: every move below fences on owner and attempt)
      │  │                       ├──succeed──▶ succeeded
      │  │                       ├──fail_or_retry──▶ failed (no attempts left) / queued (retry)
      │  └──release─────────────┤ (never started, or drained)
      │  └──requeue_lost────────┤ (owner dead, lease expired: keeps its place in line)
      │                          └──cancel / end──▶ cancelled
    scheduled ──promote_due──▶ queued        waiting ──release_dependents──▶ queued/scheduled
    waiting/queued/scheduled ──cancel_dependents / cancel──▶ cancelled
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..core.models import (
    CANCELLED_BY_REQUEST,
    MAX_LOST_ATTEMPTS,
    JobError,
    Outcome,
    OutcomeKind,
    State,
    dumps,
    iso,
    retry_delay_seconds,
)
from . import queries as Q
from . import queries_steps as S
from .base import JobStart
from .flow import FlowControl, LimitedPick, QueueControl
from .rows import success_statements

#: (queue, old state, new state) -> how many jobs made that move in one transaction
Moves = Counter[tuple[str, str, str]]
# The states of the hot moves as plain text: an enum's ``.value`` is a descriptor call.
_QUEUED, _RUNNING, _SUCCEEDED = State.QUEUED.value, State.RUNNING.value, State.SUCCEEDED.value
_QUEUE_OF_CLAIMED = operator.itemgetter(6)  # the queue column of a CLAIM row


class Transitions(FlowControl):
    """The named transitions, mixed into the SQL stores. A backend supplies the locking
    clauses and :meth:`_count_moves`."""

    #: appended to the claim's SELECT: row locks that other claimers skip (PostgreSQL)
    claim_lock = ""
    #: appended to a SELECT whose rows the transaction then updates
    row_lock = ""
    #: appended to a SELECT of rows that must not change until the transaction ends
    share_lock = ""
    #: whether the success statement's own look at job_deps sees every dependent: true where
    #: writers take turns (SQLite); on PostgreSQL a dependent committed while the UPDATE waited
    #: on its row is outside that statement's snapshot, so a later statement looks again
    succeed_sees_dependents = False

    def _observe(self, queue: str, kind: str, started_at: float | None, run_at: float | None, finished_at: float) -> None:
        """An attempt ended (``kind``: succeeded, failed or cancelled): a backend keeping
        figures (the dashboard's histograms) books it, once its transaction commits."""

    def _observing(self) -> list[tuple[Any, ...]] | None:
        """Where :meth:`_observe` books attempts in this transaction, for a hot loop to append
        ``(queue, kind, started_at, run_at, finished_at)`` itself (None: nothing is booked)."""
        return None

    def _count_moves(self, conn: Any, moves: Moves) -> None:
        """Record state moves (a backend that keeps counts updates them here, once per
        (queue, old, new) and transaction, never per row)."""

    def _add_totals(self, conn: Any, column: str, left: Counter[tuple[str, str]]) -> None:
        """Jobs that left (queue, state) for good: ``deleted`` or ``retried`` (kept for metrics
        counters that must never go down)."""
        if left:
            rows = [(queue, str(state), n) for (queue, state), n in sorted(left.items())]
            conn.executemany(Q.ADD_TOTALS.format(column=column), rows)

    def _lock_key(self, conn: Any, key: str) -> None:
        """Make writers of the same key take turns (no-op where writes already do)."""

    def _serialize_limited_claims(self, conn: Any) -> None:
        """Make claims of concurrency-limited queues take turns (no-op where writes already do)."""

    # -- scheduled -> queued ----------------------------------------------------------
    def _promote_due(self, conn: Any, now: float) -> int:
        rows = conn.execute(Q.PROMOTE_DUE, (now,)).fetchall()
        self._count_moves(conn, Counter((r[0], State.SCHEDULED.value, State.QUEUED.value) for r in rows))
        return len(rows)

    # -- queued -> claimed ------------------------------------------------------------
    def _claim(
        self,
        conn: Any,
        owner: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease_until: float,
        promote: bool,
        slots: int | None = None,
    ) -> list[tuple[Any, ...]]:
        """queued -> claimed: the claimed rows (see :data:`Q.CLAIM`), made into jobs by
        :func:`claimed_jobs` after the commit."""
        if promote:
            self._promote_due(conn, now)
        qsql, qparams = Q.queue_filter(queues)
        if slots is not None:  # a job needing more cpu slots than the supervisor has left is not its
            qsql += " AND cpus<=?"
            qparams += (slots,)
        controls = conn.execute(Q.QUEUE_CONTROLS).fetchall()
        paused = [row[0] for row in controls if row[2]]
        if paused:
            qsql += f" AND queue NOT IN ({Q.marks(len(paused))})"
            qparams += tuple(paused)
        pick: LimitedPick | None = None
        if any(QueueControl.from_row(row).limited for row in controls):
            pick = self._pick_limited(conn, queues, qsql, qparams, limit, now, Q.ANY_SLOTS if slots is None else slots)
            if not pick.ids:
                return []
            picked = f"SELECT id FROM jobs WHERE id IN ({Q.marks(len(pick.ids))})"
            params: tuple[Any, ...] = tuple(pick.ids)
        else:
            picked = Q.PICK.format(queues=qsql, lock=self.claim_lock).replace("SELECT id, queue, cpus", "SELECT id", 1)
            params = (now, *qparams, limit)
        rows = self._claim_rows(conn, picked, (*params, owner, now, lease_until))
        if pick is not None:
            self._spend(conn, pick, [r[6] for r in rows], now)
        by_queue = Counter(map(_QUEUE_OF_CLAIMED, rows))
        self._count_moves(conn, Counter({(q, _QUEUED, _RUNNING): n for q, n in by_queue.items()}))
        for i, r in enumerate(rows):
            if r[10]:  # pass_results: the dependencies' results come first
                results = conn.execute(Q.DEPENDENCY_RESULTS, (r[0],)).fetchall()
                first = "[" + ",".join(x[0] if x[0] is not None else "null" for x in results) + "]"
                rest = r[2].strip()[1:-1].strip()
                rows[i] = (*r[:2], f"[{first},{rest}]" if rest else f"[{first}]", *r[3:])
        return rows

    # -- claimed -> running ------------------------------------------------------------
    def _start(self, conn: Any, owner: str, starts: Sequence[JobStart]) -> list[int]:
        """Jobs a worker has started: (id, attempt, worker pid, wall-clock start) each. Fenced on
        the owner and attempt; returns the ids written (a job that finished or was taken back
        meanwhile is left alone)."""
        started = []
        for job_id, attempt, worker, started_at in starts:
            if conn.execute(Q.START, (worker, started_at, job_id, owner, attempt)).fetchone() is not None:
                started.append(job_id)
        return started

    # -- held -> succeeded --------------------------------------------------------------
    def _succeed(
        self,
        conn: Any,
        owner: str,
        outcomes: Sequence[Outcome],
        now: float,
        statements: list[tuple[str, list[Any]]] | None = None,
    ) -> list[int]:
        """Fenced successes (``statements``: from :func:`success_statements`); returns the
        rejected ids."""
        done: dict[int, str] = {}
        with_dependents: list[int] = []
        finished = {o.job_id: o.finished_at or now for o in outcomes}
        booked = self._observing()
        if statements is None:
            statements = success_statements(owner, outcomes, now)
        for sql, params in statements:
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                continue
            # Column by column, in C loops: this runs for every finished job.
            ids, queues, started, due, has_dependents = zip(*rows, strict=True)
            done.update(zip(ids, queues, strict=True))
            if booked is not None:
                booked.extend(zip(queues, itertools.repeat("succeeded"), started, due, map(finished.__getitem__, ids)))
            with_dependents.extend(itertools.compress(ids, has_dependents))
        self._count_moves(conn, Counter({(q, _RUNNING, _SUCCEEDED): n for q, n in Counter(done.values()).items()}))
        for o in outcomes:
            if o.output and o.job_id in done:
                conn.execute(Q.STORE_OUTPUT, (o.job_id, o.output))
        if not self.succeed_sees_dependents:
            with_dependents = list(done)
        if with_dependents:  # where the statement says which have any, no lookup for the rest
            self._release_dependents(conn, with_dependents, now)
        return [o.job_id for o in outcomes if o.job_id not in done]

    # -- held -> queued / failed / cancelled ------------------------------------------
    def _fail_or_retry(self, conn: Any, owner: str, o: Outcome, now: float) -> bool:
        """A failed, cancelled or released attempt; False when the fence rejected it."""
        fence = (o.job_id, owner, o.attempts)
        if o.kind == OutcomeKind.RELEASED:
            return self._release(conn, owner, o, now)
        if o.kind == OutcomeKind.SUSPENDED:
            return self._suspend(conn, owner, o, now)
        row = conn.execute(Q.FENCE.format(lock=self.row_lock), fence).fetchone()
        if row is None:
            return False
        max_attempts, backoff, backoff_max, cancel_requested, queue, started_at, run_at, crashes = row
        started_at = o.started_at or started_at
        finished_at = o.finished_at or now
        cancelled = o.kind == OutcomeKind.CANCELLED or bool(cancel_requested)
        self._observe(queue, "cancelled" if cancelled else "failed", started_at, run_at, finished_at)
        if o.output:
            conn.execute(Q.STORE_OUTPUT, (o.job_id, o.output))
        if cancelled:
            return self._end_held(conn, owner, o, queue, State.CANCELLED, CANCELLED_BY_REQUEST, finished_at)
        error = o.error or JobError("Error")
        # the attempt's start beside its error: the job's timeline shows every attempt
        stored = dumps({**error.to_dict(), "started_at": iso(started_at)})
        conn.execute(Q.RECORD_ERROR, (o.job_id, o.attempts, stored, finished_at))
        quarantine = self._count_crash(conn, o, crashes, error)
        if quarantine is not None:
            return self._end_held(conn, owner, o, queue, State.FAILED, quarantine, finished_at)
        if o.retriable and o.attempts < max_attempts:
            run_at = now + retry_delay_seconds(o.attempts, backoff, backoff_max)
            cur = conn.execute(Q.REQUEUE_HELD, (run_at, error.to_json(), o.worker, o.started_at, *fence))
            if cur.rowcount == 1:
                self._count_moves(conn, Counter({(queue, State.RUNNING.value, State.QUEUED.value): 1}))
            return cur.rowcount == 1
        return self._end_held(conn, owner, o, queue, State.FAILED, error, finished_at)

    def _suspend(self, conn: Any, owner: str, o: Outcome, now: float) -> bool:
        """held -> scheduled until ``o.wake_at`` without counting the attempt (a durable sleep
        or event wait, issue 16); due at once when its event is already there. A job whose
        cancel was requested meanwhile ends cancelled instead."""
        row = conn.execute(Q.FENCE.format(lock=self.row_lock), (o.job_id, owner, o.attempts)).fetchone()
        if row is None:
            return False
        _, _, _, cancel_requested, queue, _, _, _ = row
        if o.output:
            conn.execute(Q.STORE_OUTPUT, (o.job_id, o.output))
        if cancel_requested:
            return self._end_held(conn, owner, o, queue, State.CANCELLED, CANCELLED_BY_REQUEST, o.finished_at or now)
        wake_at = o.wake_at if o.wake_at is not None else now
        if o.wait_key is not None:
            self._lock_key(conn, f"event:{o.wait_key}")  # an event sent meanwhile is seen here or wakes us
            if conn.execute(S.ANY_EVENT, (o.wait_key,)).fetchone() is not None:
                wake_at = now
        if conn.execute(S.SUSPEND, (wake_at, o.job_id, owner, o.attempts)).rowcount != 1:
            return False
        self._count_moves(conn, Counter({(queue, State.RUNNING.value, State.SCHEDULED.value): 1}))
        return True

    def _release(self, conn: Any, owner: str, o: Outcome, now: float) -> bool:
        """Back to queued without counting the attempt (never started, or drained); a job
        whose cancel was requested meanwhile ends cancelled instead."""
        fence = (o.job_id, owner, o.attempts)
        row = conn.execute(Q.FENCE.format(lock=self.row_lock), fence).fetchone()
        if row is None:
            return False
        _, _, _, cancel_requested, queue, _, _, _ = row
        if cancel_requested:
            return self._end_held(conn, owner, o, queue, State.CANCELLED, CANCELLED_BY_REQUEST, o.finished_at or now)
        row = conn.execute(Q.RELEASE, fence).fetchone()
        if row is None:
            return False
        self._count_moves(conn, Counter({(row[0], State.RUNNING.value, State.QUEUED.value): 1}))
        return True

    def _end_held(self, conn: Any, owner: str, o: Outcome, queue: str, state: State, error: JobError, now: float) -> bool:
        return self._end(conn, owner, o.job_id, o.attempts, queue, state, error, now, o.worker, o.started_at)

    def _end(
        self,
        conn: Any,
        owner: str,
        job_id: int,
        attempts: int,
        queue: str,
        state: State,
        error: JobError,
        now: float,
        worker: int | None,
        started_at: float | None,
    ) -> bool:
        cur = conn.execute(Q.END_HELD, (state.value, error.to_json(), now, worker, started_at, job_id, owner, attempts))
        if cur.rowcount != 1:
            return False
        self._count_moves(conn, Counter({(queue, State.RUNNING.value, state.value): 1}))
        self._cancel_dependents(conn, job_id, state, now)
        return True

    def _requeue_lost(self, conn: Any, now: float, owner: str | None, expired_before: float | None, reason: str) -> list[int]:
        """Take back running jobs of a dead ``owner``, or whose lease expired before
        ``expired_before``: queued again, or failed once out of (lost) attempts."""
        if owner is not None:
            # SKIP LOCKED: a row held by a stuck session (a host cut off mid-transaction) is
            # taken back by a later sweep, never waited on.
            rows = conn.execute(Q.LOST_BY_OWNER.format(lock=self.claim_lock), (owner,)).fetchall()
            kind = "SupervisorLost"
        else:
            rows = conn.execute(Q.LOST_BY_LEASE.format(lock=self.claim_lock), (expired_before,)).fetchall()
            kind = "LeaseExpired"
        taken = []
        for job_id, attempts, max_attempts, job_owner, queue in rows:
            error = JobError(kind, reason or f"supervisor {job_owner} lost the job")
            conn.execute(Q.RECORD_ERROR, (job_id, attempts, error.to_json(), now))
            if attempts < max_attempts + MAX_LOST_ATTEMPTS:
                # run_at kept: the job goes back to its place in line, not behind what came since
                cur = conn.execute(Q.REQUEUE_HELD, (None, error.to_json(), None, None, job_id, job_owner, attempts))
                if cur.rowcount == 1:
                    self._count_moves(conn, Counter({(queue, State.RUNNING.value, State.QUEUED.value): 1}))
                    taken.append(job_id)
            elif self._end(conn, job_owner, job_id, attempts, queue, State.FAILED, error, now, None, None):
                taken.append(job_id)
        return taken

    # -- waiting -> queued / scheduled ------------------------------------------------
    def _release_dependents(self, conn: Any, finished_ids: Sequence[int], now: float) -> None:
        """The jobs waiting on ``finished_ids`` (which succeeded) have one dependency fewer
        each; those with none left become due."""
        for chunk in Q.slices(finished_ids, 500):
            counts = dict(conn.execute(Q.DEPENDENTS_OF.format(marks=Q.marks(len(chunk))), tuple(chunk)).fetchall())
            if not counts:
                continue
            ids = sorted(counts)
            rows = conn.execute(Q.WAITING_ROWS.format(marks=Q.marks(len(ids)), lock=self.row_lock), ids).fetchall()
            moves: Moves = Counter()
            for job_id, queue, pending, run_at in rows:
                if pending - counts[job_id] <= 0:
                    conn.execute(Q.UNBLOCK, (now, job_id))
                    new = State.SCHEDULED if run_at > now else State.QUEUED
                    moves[(queue, State.WAITING.value, new.value)] += 1
                else:
                    conn.execute(Q.DEPS_DECREMENT, (counts[job_id], job_id))
            self._count_moves(conn, moves)

    # -- waiting / queued / scheduled -> cancelled ------------------------------------
    def _cancel_dependents(self, conn: Any, job_id: int, state: State, now: float) -> None:
        """Every job downstream of ``job_id`` (which ended ``state``) that has not started
        is cancelled with ``DependencyFailed``."""
        rows = conn.execute(Q.DOWNSTREAM.format(lock=self.row_lock), (job_id,)).fetchall()
        if not rows:
            return
        error = JobError("DependencyFailed", f"dependency {job_id} ended {state.value}")
        self._end_unstarted(conn, rows, State.CANCELLED, error, now)

    def _end_unstarted(self, conn: Any, rows: Sequence[tuple[int, str, str]], state: State, error: JobError, now: float) -> int:
        """End not-yet-running jobs (rows of id, queue, state) in ``state``."""
        moves: Moves = Counter()
        text = error.to_json()
        for job_id, queue, old in rows:
            if conn.execute(Q.END_UNSTARTED, (state.value, text, now, job_id)).rowcount == 1:
                moves[(queue, str(old), state.value)] += 1
        self._count_moves(conn, moves)
        return sum(moves.values())

    def _cancel(self, conn: Any, job_ids: Sequence[int], now: float) -> dict[int, str]:
        """A user's cancel: unstarted jobs end at once; held ones (claimed or running) are asked to
        stop: their supervisor withdraws a claimed job that no worker has started (it never starts),
        and ends the worker of a running one."""
        out: dict[int, str] = {}
        for job_id in job_ids:
            row = conn.execute(Q.STATE_FOR_UPDATE.format(lock=self.row_lock), (job_id,)).fetchone()
            if row is None:
                continue
            state, queue = row
            if state in (State.QUEUED, State.SCHEDULED, State.WAITING):
                self._end_unstarted(conn, [(job_id, queue, state)], State.CANCELLED, CANCELLED_BY_REQUEST, now)
                self._cancel_dependents(conn, job_id, State.CANCELLED, now)
                state = State.CANCELLED.value
            elif state in (State.CLAIMED, State.RUNNING):
                conn.execute(Q.REQUEST_CANCEL, (job_id,))
                state = "cancelling"
            out[job_id] = str(state)
        return out

    # -- failed / cancelled -> queued -------------------------------------------------
    def _retry(
        self, conn: Any, job_ids: Sequence[int] | None, now: float, queue: str | None, include_quarantined: bool = False
    ) -> list[int]:
        where = "state IN ('failed','cancelled')" if job_ids is not None else "state='failed'"
        if job_ids is None and not include_quarantined:
            where += " AND quarantined=0"
        params: list[Any] = []
        if job_ids is not None:
            where += f" AND id IN ({Q.marks(len(job_ids))})"
            params.extend(job_ids)
        if queue:
            where += " AND queue=?"
            params.append(queue)
        rows = conn.execute(Q.RETRYABLE.format(where=where, lock=self.row_lock), params).fetchall()
        moves: Moves = Counter()
        ids = []
        for job_id, job_queue, old in rows:
            if conn.execute(Q.RETRY, (now, job_id)).rowcount == 1:
                moves[(job_queue, str(old), State.QUEUED.value)] += 1
                ids.append(job_id)
        self._count_moves(conn, moves)
        self._add_totals(conn, "retried", Counter({(q, old): n for (q, old, _), n in moves.items()}))
        return sorted(ids)
