"""The SQL stores' durable steps and events (issue 16). Mixed into
:class:`~jobq.store.sql.SQLStore`, whose transactions and transitions it uses.

A worker records each step of its job itself, in one short transaction fenced on the job's
owner and attempt: a worker whose attempt was taken back records nothing. Events are rows:
one sent before anybody waits stays until a job consumes it (or it is purged). An event's
send and a wait's suspension both lock the key (PostgreSQL; SQLite's writes take turns), so
a job that suspends while the event arrives sees it either way."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core.errors import ValidationError
from ..core.models import State
from ..core.steps import StepKind, StepRecord, StepState, WaitState
from . import queries_steps as S


def _step(r: Any) -> StepRecord:
    return StepRecord(r[0], r[1], r[2], r[3], StepKind(r[4]), StepState(r[5]), r[6], r[7], r[8], r[9], r[10], r[11])


def _params(step: StepRecord) -> tuple[Any, ...]:
    return (
        step.job_id,
        step.seq,
        step.name,
        step.call,
        step.kind.value,
        step.state.value,
        step.attempt,
        step.value,
        step.started_at,
        step.finished_at,
        step.wait_key,
        step.wake_at,
    )


class SQLSteps:
    """Durable steps and events over SQL (a mixin)."""

    _write: Any
    _read: Any
    _notify: Any
    _lock_key: Any
    _count_moves: Any
    _add_totals: Any
    row_lock: str
    share_lock: str

    def load_steps(self, job_id: int) -> list[StepRecord]:
        return [_step(r) for r in self._read(S.LOAD_STEPS, (job_id,))]

    def _fenced(self, conn: Any, owner: str, step: StepRecord) -> bool:
        return conn.execute(S.STEP_FENCE.format(lock=self.share_lock), (step.job_id, owner, step.attempt)).fetchone() is not None

    #: one statement that fences, records and counts (PostgreSQL), else three
    one_statement_steps = False

    def record_step(self, owner: str, step: StepRecord, replayed: int = 0) -> bool:
        totals = (step.job_id % S.TOTAL_SHARDS, 1 if step.kind == StepKind.STEP else 0, replayed)
        if self.one_statement_steps:
            params = (step.job_id, owner, step.attempt, *_params(step)[1:], *totals)
            return bool(self._write(lambda conn: conn.execute(S.PG_RECORD_STEP, params).fetchone() is not None))

        def write(conn: Any) -> bool:
            if not self._fenced(conn, owner, step):
                return False
            conn.execute(S.UPSERT_STEP, _params(step))
            conn.execute(S.ADD_STEP_TOTALS, totals)
            return True

        return bool(self._write(write))

    def count_replayed(self, job_id: int, replayed: int) -> None:
        if replayed > 0:
            self._write(lambda conn: conn.execute(S.ADD_STEP_TOTALS, (job_id % S.TOTAL_SHARDS, 0, replayed)))

    def take_event(
        self, owner: str, step: StepRecord, key: str, deadline: float | None, now: float
    ) -> tuple[WaitState | None, str | None]:
        def write(conn: Any) -> tuple[WaitState | None, str | None]:
            if not self._fenced(conn, owner, step):
                return None, None
            self._lock_key(conn, f"event:{key}")
            row = conn.execute(S.OLDEST_EVENT.format(lock=self.row_lock), (key,)).fetchone()
            if row is not None:
                conn.execute(S.CONSUME_EVENT, (step.job_id, now, row[0]))
                conn.execute(S.UPSERT_STEP, _params(_with(step, StepState.RECEIVED, row[1], now, key)))
                return WaitState.RECEIVED, str(row[1])
            if deadline is not None and deadline <= now:
                conn.execute(S.UPSERT_STEP, _params(_with(step, StepState.TIMED_OUT, None, now, key)))
                return WaitState.TIMED_OUT, None
            conn.execute(S.UPSERT_STEP, _params(_with(step, StepState.WAITING, None, None, key)))
            return WaitState.WAITING, None

        result: tuple[WaitState | None, str | None] = self._write(write)
        return result

    def send_event(self, key: str, payload_json: str, now: float) -> int:
        def write(conn: Any) -> int:
            self._lock_key(conn, f"event:{key}")
            event_id = int(conn.execute(S.SEND_EVENT, (key, payload_json, now)).fetchone()[0])
            if conn.execute(S.WAKE_WAITERS, (now, now, key)).rowcount:
                self._notify(conn, "submitted")
            return event_id

        return int(self._write(write))

    def events(self, key: str | None, limit: int) -> list[tuple[int, str, str, float, int | None, float | None]]:
        if key is None:
            return [tuple(r) for r in self._read(S.LIST_EVENTS.format(where=""), (limit,))]
        return [tuple(r) for r in self._read(S.LIST_EVENTS.format(where=" WHERE key=?"), (key, limit))]

    def purge_events(self, created_before: float, consumed_only: bool) -> int:
        sql = S.PURGE_EVENTS.format(consumed=" AND consumed_by IS NOT NULL" if consumed_only else "")
        return int(self._write(lambda conn: conn.execute(sql, (created_before,)).rowcount))

    def waiting_for(self, job_id: int) -> str | None:
        rows = self._read(S.WAITING_FOR, (job_id,))
        return str(rows[0][0]) if rows else None

    def step_totals(self) -> tuple[int, int]:
        rows = self._read(S.STEP_TOTALS)
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def retry_from_step(self, job_id: int, name: str | None, now: float) -> bool:
        def write(conn: Any) -> bool:
            row = conn.execute(S.JOB_STATE.format(lock=self.row_lock), (job_id,)).fetchone()
            seq = conn.execute(S.FIRST_CALL, (job_id, name)).fetchone()[0] if name is not None else None
            if name is not None and seq is None:
                raise ValidationError("from_step", f"job {job_id} recorded no step named {name!r}")
            if row is None or row[0] not in (State.FAILED, State.CANCELLED, State.SUCCEEDED):
                return False
            state, queue = row
            if seq is not None:
                conn.execute(S.DROP_STEPS_FROM, (job_id, seq))
            if conn.execute(S.RETRY_ANY, (now, job_id)).rowcount != 1:
                return False
            self._count_moves(conn, Counter({(queue, str(state), State.QUEUED.value): 1}))
            self._add_totals(conn, "retried", Counter({(queue, str(state)): 1}))
            self._notify(conn, "submitted")
            return True

        return bool(self._write(write))


def _with(step: StepRecord, state: StepState, value: str | None, finished_at: float | None, key: str | None) -> StepRecord:
    return StepRecord(
        step.job_id,
        step.seq,
        step.name,
        step.call,
        StepKind.WAIT,
        state,
        step.attempt,
        value,
        step.started_at,
        finished_at,
        key,
        step.wake_at,
    )
