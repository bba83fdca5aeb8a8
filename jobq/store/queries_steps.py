"""Statements of durable steps and events (issue 16), shared by SQLite and PostgreSQL
(``?`` placeholders; PostgreSQL's connection rewrites them)."""

from __future__ import annotations

from .queries import HELD

STEP_COLUMNS = "job_id, seq, name, call_no, kind, state, attempt, value, started_at, finished_at, wait_key, wake_at"
LOAD_STEPS = f"SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id=? ORDER BY seq"
# The fence of a worker's writes for its job: the attempt is still its own.
# (A held job is claimed or running: its start is written a while after the worker took it.)
STEP_FENCE = f"SELECT 1 FROM jobs WHERE id=? AND {HELD} AND owner=? AND attempts=?{{lock}}"
UPSERT_STEP = (
    f"INSERT INTO job_steps({STEP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(job_id, seq) DO UPDATE SET name=excluded.name, call_no=excluded.call_no, kind=excluded.kind, "
    "state=excluded.state, attempt=excluded.attempt, value=excluded.value, started_at=excluded.started_at, "
    "finished_at=excluded.finished_at, wait_key=excluded.wait_key, wake_at=excluded.wake_at"
)
TOTAL_SHARDS = 16
ADD_STEP_TOTALS = (
    "INSERT INTO step_totals(shard, run, replayed) VALUES (?, ?, ?) "
    "ON CONFLICT(shard) DO UPDATE SET run=step_totals.run+excluded.run, replayed=step_totals.replayed+excluded.replayed"
)
STEP_TOTALS = "SELECT coalesce(sum(run), 0), coalesce(sum(replayed), 0) FROM step_totals"

SEND_EVENT = "INSERT INTO events(key, payload, created_at) VALUES (?, ?, ?) RETURNING id"
# Jobs that wait for the key (scheduled until their deadline) become due now.
WAKE_WAITERS = (
    "UPDATE jobs SET run_at=? WHERE state='scheduled' AND run_at>? "
    "AND id IN (SELECT job_id FROM job_steps WHERE wait_key=? AND state='waiting')"
)
OLDEST_EVENT = "SELECT id, payload FROM events WHERE key=? AND consumed_by IS NULL ORDER BY id LIMIT 1{lock}"
CONSUME_EVENT = "UPDATE events SET consumed_by=?, consumed_at=? WHERE id=? AND consumed_by IS NULL"
ANY_EVENT = "SELECT 1 FROM events WHERE key=? AND consumed_by IS NULL LIMIT 1"
LIST_EVENTS = "SELECT id, key, payload, created_at, consumed_by, consumed_at FROM events{where} ORDER BY id DESC LIMIT ?"
PURGE_EVENTS = "DELETE FROM events WHERE created_at<?{consumed}"
WAITING_FOR = "SELECT wait_key FROM job_steps WHERE job_id=? AND state='waiting' ORDER BY seq DESC LIMIT 1"

# held -> scheduled: the attempt ended in a durable sleep or wait, not counted.
SUSPEND = (
    "UPDATE jobs SET state='scheduled', run_at=?, attempts=attempts-1, owner=NULL, worker=NULL, lease_expires_at=NULL "
    f"WHERE id=? AND {HELD} AND owner=? AND attempts=?"
)
# failed / cancelled / succeeded -> queued, keeping the steps recorded before ``seq``.
FIRST_CALL = "SELECT min(seq) FROM job_steps WHERE job_id=? AND name=?"
DROP_STEPS_FROM = "DELETE FROM job_steps WHERE job_id=? AND seq>=?"
RETRY_ANY = (
    "UPDATE jobs SET state='queued', run_at=?, max_attempts=attempts+retries+1, finished_at=NULL, result=NULL, "
    "owner=NULL, worker=NULL, cancel_requested=0, deps_pending=0 WHERE id=? AND state IN ('failed','cancelled','succeeded')"
)
JOB_STATE = "SELECT state, queue FROM jobs WHERE id=?{lock}"

# PostgreSQL: the fenced record and its count in one statement (one round trip, not three).
_STEP_VALUES = ", ".join(
    f"CAST(? AS {t})"
    for t in ("INTEGER", "TEXT", "INTEGER", "TEXT", "TEXT", "INTEGER", "TEXT", "DOUBLE PRECISION", "DOUBLE PRECISION", "TEXT")
)
PG_RECORD_STEP = (
    f"WITH fence AS (SELECT id FROM jobs WHERE id=? AND {HELD} AND owner=? AND attempts=? FOR SHARE), "
    f"ins AS (INSERT INTO job_steps({STEP_COLUMNS}) SELECT id, {_STEP_VALUES}, CAST(? AS DOUBLE PRECISION) FROM fence "
    "ON CONFLICT(job_id, seq) DO UPDATE SET name=excluded.name, call_no=excluded.call_no, kind=excluded.kind, "
    "state=excluded.state, attempt=excluded.attempt, value=excluded.value, started_at=excluded.started_at, "
    "finished_at=excluded.finished_at, wait_key=excluded.wait_key, wake_at=excluded.wake_at RETURNING job_id) "
    "INSERT INTO step_totals(shard, run, replayed) SELECT CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS BIGINT) FROM ins "
    "ON CONFLICT(shard) DO UPDATE SET run=step_totals.run+excluded.run, replayed=step_totals.replayed+excluded.replayed "
    "RETURNING 1"
)
