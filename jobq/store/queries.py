"""The SQL statements both SQL backends run, by name (``?`` placeholders; the PostgreSQL
connection translates them). Backend-specific statements live in :mod:`.sqlite` and
:mod:`.postgres`. ``{lock}`` marks where a backend's row-locking clause goes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

JOB_COLUMNS = (
    "id, name, target, args, kwargs, queue, priority, state, attempts, max_attempts, run_at, "
    "created_at, started_at, finished_at, result, error, owner, worker, timeout, key, group_id, "
    "group_index, progress, progress_message, cancel_requested, partition_key, memory_mb, cpus, crashes, quarantined, claimed_at"
)
JOB_COLUMN_NAMES = tuple(c.strip() for c in JOB_COLUMNS.split(","))
SCHEDULE_COLUMNS = "name, target, args, kwargs, queue, cron, every, next_run_at, last_run_at"
SUPERVISOR_COLUMNS = "id, host, pid, concurrency, queues, started_at, heartbeat_at, lock_path, presence"
SCHEDULE_COLUMN_NAMES = tuple(c.strip() for c in SCHEDULE_COLUMNS.split(","))
SUPERVISOR_COLUMN_NAMES = tuple(c.strip() for c in SUPERVISOR_COLUMNS.split(","))

JOB_INSERT_COLUMNS = (
    "name, target, args, kwargs, queue, priority, state, max_attempts, retries, retry_backoff, "
    "retry_backoff_max, timeout, run_at, created_at, key, group_id, group_index, pass_results, result_ttl, trace, "
    "partition_key, memory_mb, cpus"
)
INSERT_JOB = f"INSERT INTO jobs({JOB_INSERT_COLUMNS}) VALUES ({', '.join(['?'] * 23)})"
# Positions in a row of INSERT_JOB.
ROW_QUEUE, ROW_STATE, ROW_GROUP_ID = 4, 6, 15

FINISH_CHUNKS = (256, 64, 16, 4, 1)  # batch sizes of the success statement; descending, ends with 1
ANY_SLOTS = 1 << 30  # the cpu slots of a claim that sets no bound
PURGE_CHUNK = 500  # rows a purge transaction deletes: keeps the write lock short

# -- submitting -----------------------------------------------------------------------------
INSERT_GROUP = "INSERT INTO job_groups(size, created_at, sealed, updated_at) VALUES (?, ?, ?, ?) RETURNING id"
GROW_GROUP = "UPDATE job_groups SET size=size+?, updated_at=? WHERE id=?"
SEAL_GROUP = "UPDATE job_groups SET sealed=1, updated_at=? WHERE id=?"
ABORT_GROUP = "UPDATE job_groups SET sealed=-1, updated_at=? WHERE id=?"
FIND_KEY = (
    "SELECT id, state FROM jobs WHERE key=? AND state IN ('queued','scheduled','waiting','claimed','running') ORDER BY id LIMIT 1"
)
# Debounce (on_conflict="replace"): the newest arguments replace those of a job that never
# ran (one waiting for a retry, or suspended between steps, keeps the arguments it ran with).
REPLACE_ARGS = "UPDATE jobs SET args=?, kwargs=? WHERE id=? AND state IN ('queued','scheduled','waiting') AND attempts=0"
# A queue that ever held a partitioned job is claimed fairly; set once (the read keeps
# later submits from writing, or locking, the queue's row).
MARK_PARTITIONED = (
    "INSERT INTO queues(name, concurrency, paused, updated_at, partitioned) SELECT ?, NULL, 0, ?, 1 "
    "WHERE NOT EXISTS(SELECT 1 FROM queues WHERE name=? AND partitioned=1) "
    "ON CONFLICT(name) DO UPDATE SET partitioned=1"
)
INSERT_DEP = "INSERT INTO job_deps(job_id, depends_on, position) VALUES (?, ?, ?)"
SET_DEPS_PENDING = "UPDATE jobs SET deps_pending=? WHERE id=?"

# -- claiming -------------------------------------------------------------------------------
# Paused queues do not count: a burst supervisor with only paused work left exits. Nor do
# jobs needing more cpu slots than the asking supervisor has. Queued jobs are in one of two
# partial indexes (without a partition, with one): each is asked on its own.
DUE = (
    "SELECT EXISTS(SELECT 1 FROM jobs WHERE state='queued' AND partition_key IS NULL AND run_at<=? AND cpus<=? {queues} "
    "AND queue NOT IN (SELECT name FROM queues WHERE paused<>0)) "
    "OR EXISTS(SELECT 1 FROM jobs WHERE state='queued' AND partition_key IS NOT NULL "
    "AND run_at<=? AND cpus<=? {queues} AND queue NOT IN (SELECT name FROM queues WHERE paused<>0)), "
    "EXISTS(SELECT 1 FROM jobs WHERE state='scheduled' AND run_at<=? {queues})"
)
QUEUE_CONTROL_COLUMNS = (
    "name, concurrency, paused, rate_count, rate_period, tokens, refilled_at, partition_concurrency, partitioned, rr_cursor"
)
QUEUE_CONTROLS = (
    f"SELECT {QUEUE_CONTROL_COLUMNS} FROM queues WHERE paused<>0 OR concurrency IS NOT NULL "
    "OR rate_count IS NOT NULL OR partitioned<>0"
)
# A queue's cap counts the jobs supervisors hold (claimed or running), so no claim overshoots it.
HELD_BY_QUEUE = "SELECT queue, count(*) FROM jobs WHERE state IN ('claimed','running') AND queue IN ({marks}) GROUP BY queue"
PICK = (
    "SELECT id, queue, cpus FROM jobs WHERE state='queued' AND partition_key IS NULL AND run_at<=? {queues} "
    "ORDER BY priority DESC, run_at, id LIMIT ?{lock}"
)
# Fair claims: the partitions of a queue that hold queued jobs, in key order from a cursor,
# each found by one seek of the partition index (a loose index scan), with its head job.
_NEXT_HEAD = (
    "(SELECT j.{col} FROM jobs j WHERE j.state='queued' AND j.queue=? AND j.partition_key>p.k AND j.run_at<=? "
    "AND j.cpus<=? ORDER BY j.partition_key, j.priority DESC, j.run_at, j.id LIMIT 1)"
)
PARTITION_HEADS = (
    "WITH RECURSIVE p(k, id) AS (SELECT partition_key, id FROM (SELECT partition_key, id FROM jobs "
    "WHERE state='queued' AND queue=? AND partition_key>? AND run_at<=? AND cpus<=? "
    "ORDER BY partition_key, priority DESC, run_at, id LIMIT 1) AS first "
    f"UNION ALL SELECT {_NEXT_HEAD.format(col='partition_key')}, {_NEXT_HEAD.format(col='id')} "
    "FROM p WHERE p.k IS NOT NULL) SELECT k, id FROM p WHERE k IS NOT NULL LIMIT ?"
)
PICK_PARTITION = (
    "SELECT id, queue, cpus FROM jobs WHERE state='queued' AND queue=? AND partition_key=? AND run_at<=? AND cpus<=? "
    "ORDER BY priority DESC, run_at, id LIMIT ?{lock}"
)
# A partition's cap counts its held jobs (claimed or running), as a queue's cap does.
HELD_BY_PARTITION = (
    "SELECT partition_key, count(*) FROM jobs WHERE state IN ('claimed','running') AND queue=? "
    "AND partition_key IS NOT NULL GROUP BY partition_key"
)
SPEND_TOKENS = "UPDATE queues SET tokens=?, refilled_at=? WHERE name=?"
MOVE_CURSOR = "UPDATE queues SET rr_cursor=? WHERE name=?"
CLAIM = (
    "WITH picked AS ({picked}) "
    "UPDATE jobs SET state='claimed', owner=?, claimed_at=?, attempts=attempts+1, started_at=NULL, "
    "lease_expires_at=?, worker=NULL, cancel_requested=0 WHERE id IN (SELECT id FROM picked) AND state='queued' "
    # The first ten columns are a ClaimedJob's fields, in order (jobq.store.rows builds it in C).
    "RETURNING id, target, args, kwargs, attempts, timeout, queue, trace, memory_mb, cpus, pass_results, priority, run_at"
)
# SQLite: the same claim in three single-row statements. Fetching a claim's rows one by one
# costs the sqlite3 module a release and retake of the GIL per row (a fifth of a claim); the
# ids picked and the claimed jobs come back as one JSON array each instead.
PICKED_IDS = "SELECT json_group_array(id) FROM ({picked})"
CLAIM_IDS = (
    "UPDATE jobs SET state='claimed', owner=?, claimed_at=?, attempts=attempts+1, started_at=NULL, "
    "lease_expires_at=?, worker=NULL, cancel_requested=0 WHERE id IN (SELECT value FROM json_each(?)) AND state='queued'"
)
# A claim of fewer than FEW_CLAIMED jobs returns their rows from its UPDATE (one statement
# fewer); a claim of more, as one JSON array (CLAIMED_ROWS).
CLAIM_IDS_RETURNING = CLAIM_IDS + " RETURNING " + CLAIM.split("RETURNING ", 1)[1]
FEW_CLAIMED = 8
JSON_CLAIM_MAX_ARGS_BYTES = 256  # and while the last claim's jobs averaged fewer bytes of arguments
CLAIMED_ROWS = (
    "SELECT json_group_array(json_array(id, target, args, kwargs, attempts, timeout, queue, trace, memory_mb, cpus, "
    "pass_results, priority, run_at)) FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
)
DEPENDENCY_RESULTS = "SELECT j.result FROM job_deps d JOIN jobs j ON j.id=d.depends_on WHERE d.job_id=? ORDER BY d.position"
PROMOTE_DUE = "UPDATE jobs SET state='queued' WHERE state='scheduled' AND run_at<=? RETURNING queue"

COUNTS = "SELECT queue, state, n FROM job_counts WHERE n != 0"
# Statements on held jobs repeat the jobs_held index's own term (HELD) word for word: SQLite
# plans a partial index only for a query that states its WHERE as written.
CLAIMED_BY_QUEUE = "SELECT queue, count(*) FROM jobs WHERE state IN ('claimed','running') AND state='claimed' GROUP BY queue"
BUSY_WORKERS = (
    "SELECT owner, count(DISTINCT worker) FROM jobs WHERE state IN ('claimed','running') AND state='running' GROUP BY owner"
)

# -- starting: a worker took a claimed job (the supervisor writes it once it has run a while) --
START = (
    "UPDATE jobs SET state='running', worker=?, started_at=? "
    "WHERE id=? AND state='claimed' AND owner=? AND attempts=? RETURNING queue"
)

# -- finishing (every statement that moves a held job, claimed or running, is fenced on its
# owner and attempt; started_at is the worker's own start time, sent with the outcome) --
HELD = "state IN ('claimed','running')"
SUCCESS_ROW = (
    "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), "
    "CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION))"
)
SUCCEED = (
    "WITH v(id, owner, attempts, result, finished_at, worker, started_at) AS (VALUES {values}) "
    "UPDATE jobs SET state='succeeded', result=v.result, error=NULL, finished_at=v.finished_at, "
    "worker=v.worker, started_at=coalesce(v.started_at, jobs.started_at), lease_expires_at=NULL FROM v "
    f"WHERE jobs.id=v.id AND jobs.{HELD} AND jobs.owner=v.owner AND jobs.attempts=v.attempts "
    "RETURNING jobs.id, jobs.queue, jobs.started_at, jobs.run_at, "
    "EXISTS(SELECT 1 FROM job_deps WHERE job_deps.depends_on = jobs.id)"
)
FENCE = (
    "SELECT max_attempts, retry_backoff, retry_backoff_max, cancel_requested, queue, started_at, run_at, crashes FROM jobs "
    f"WHERE id=? AND {HELD} AND owner=? AND attempts=?{{lock}}"
)
RELEASE = (
    "UPDATE jobs SET state='queued', attempts=attempts-1, owner=NULL, worker=NULL, started_at=NULL, "
    f"lease_expires_at=NULL WHERE id=? AND {HELD} AND owner=? AND attempts=? RETURNING queue"
)
# run_at: a retry's backoff, or (None) the job keeps its place in line (taken back from a
# dead supervisor or an expired lease: its original due time and priority).
REQUEUE_HELD = (
    "UPDATE jobs SET state='queued', run_at=coalesce(?, run_at), error=?, owner=NULL, worker=coalesce(?, worker), "
    f"started_at=coalesce(?, started_at), lease_expires_at=NULL WHERE id=? AND {HELD} AND owner=? AND attempts=?"
)
END_HELD = (
    "UPDATE jobs SET state=?, error=?, finished_at=?, worker=coalesce(?, worker), started_at=coalesce(?, started_at), "
    f"lease_expires_at=NULL WHERE id=? AND {HELD} AND owner=? AND attempts=?"
)
# Quarantine: a worker's death by a signal counts; any other end of an attempt resets it.
SET_CRASHES = "UPDATE jobs SET crashes=?, quarantined=? WHERE id=?"
RECORD_ERROR = (
    "INSERT INTO job_errors(job_id, attempt, error, at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(job_id, attempt) DO UPDATE SET error=excluded.error, at=excluded.at"
)
STORE_OUTPUT = "INSERT INTO job_output(job_id, output) VALUES (?, ?) ON CONFLICT(job_id) DO UPDATE SET output=excluded.output"
LOST_BY_OWNER = f"SELECT id, attempts, max_attempts, owner, queue FROM jobs WHERE {HELD} AND owner=?{{lock}}"
LOST_BY_LEASE = f"SELECT id, attempts, max_attempts, owner, queue FROM jobs WHERE {HELD} AND lease_expires_at<?{{lock}}"
ANY_LEASE_EXPIRED = f"SELECT EXISTS(SELECT 1 FROM jobs WHERE {HELD} AND lease_expires_at<?)"

# -- dependencies ---------------------------------------------------------------------------
# Run as statements of their own after the finishing one: on PostgreSQL each statement sees
# what committed before it began, so a dependent submitted while the job finished is seen.
DEPENDENTS_OF = "SELECT job_id, count(*) FROM job_deps WHERE depends_on IN ({marks}) GROUP BY job_id"
WAITING_ROWS = "SELECT id, queue, deps_pending, run_at FROM jobs WHERE id IN ({marks}) AND state='waiting'{lock}"
UNBLOCK = (
    "UPDATE jobs SET deps_pending=0, state=CASE WHEN run_at>? THEN 'scheduled' ELSE 'queued' END WHERE id=? AND state='waiting'"
)
DEPS_DECREMENT = "UPDATE jobs SET deps_pending=deps_pending-? WHERE id=? AND state='waiting'"
DOWNSTREAM = (
    "WITH RECURSIVE down(id) AS (SELECT job_id FROM job_deps WHERE depends_on=? "
    "UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on=down.id) "
    "SELECT j.id, j.queue, j.state FROM jobs j WHERE j.id IN (SELECT id FROM down) "
    "AND j.state IN ('waiting','queued','scheduled'){lock}"
)
END_UNSTARTED = "UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=? AND state IN ('waiting','queued','scheduled')"
DEPENDENCY_STATES = "SELECT id, state FROM jobs WHERE id IN ({marks}){lock}"

# -- user actions ---------------------------------------------------------------------------
STATE_FOR_UPDATE = "SELECT state, queue FROM jobs WHERE id=?{lock}"
REQUEST_CANCEL = f"UPDATE jobs SET cancel_requested=1 WHERE id=? AND {HELD}"
RETRYABLE = "SELECT id, queue, state FROM jobs WHERE {where}{lock}"
RETRY = (
    "UPDATE jobs SET state='queued', run_at=?, max_attempts=attempts+retries+1, finished_at=NULL, "
    "owner=NULL, worker=NULL, cancel_requested=0, deps_pending=0, crashes=0, quarantined=0 "
    "WHERE id=? AND state IN ('failed','cancelled')"
)
PURGE_PICK = "SELECT id, queue, state FROM jobs WHERE {where} LIMIT {limit}"
PURGE_TABLES = (
    ("job_output", "job_id"),
    ("job_errors", "job_id"),
    ("job_deps", "job_id"),
    ("job_steps", "job_id"),
    ("events", "consumed_by"),
    ("jobs", "id"),
)

# -- supervisors, progress, schedules, queues -----------------------------------------------
REGISTER_SUPERVISOR = (
    f"INSERT INTO supervisors({SUPERVISOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at"
)
HEARTBEAT = "UPDATE supervisors SET heartbeat_at=? WHERE id=?"
RENEW_LEASES = f"UPDATE jobs SET lease_expires_at=? WHERE owner=? AND {HELD} RETURNING id, cancel_requested"
SET_PROGRESS = f"UPDATE jobs SET progress=?, progress_message=? WHERE id=? AND {HELD} AND owner=? AND attempts=?"
# The output of a running job so far; only while that attempt runs (its final output, written
# with its outcome, is never overwritten by a late one).
SET_RUNNING_OUTPUT = (
    "INSERT INTO job_output(job_id, output) SELECT ?, ? "
    f"WHERE EXISTS(SELECT 1 FROM jobs WHERE id=? AND {HELD} AND owner=? AND attempts=?) "
    "ON CONFLICT(job_id) DO UPDATE SET output=excluded.output"
)
# Totals of jobs that left the counts by queue and state (deleted, or retried out of a
# finished state): with the counts, they make counters that never go down (metrics).
ADD_TOTALS = (
    "INSERT INTO job_totals(queue, state, {column}) VALUES (?, ?, ?) "
    "ON CONFLICT(queue, state) DO UPDATE SET {column} = job_totals.{column} + excluded.{column}"
)
UPSERT_QUEUE_LIMIT = (
    "INSERT INTO queues(name, concurrency, paused, updated_at) VALUES (?, ?, 0, ?) "
    "ON CONFLICT(name) DO UPDATE SET concurrency=excluded.concurrency, updated_at=excluded.updated_at"
)
UPSERT_QUEUE_PAUSED = (
    "INSERT INTO queues(name, concurrency, paused, updated_at) VALUES (?, NULL, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET paused=excluded.paused, updated_at=excluded.updated_at"
)
QUEUE_ROWS = f"SELECT {QUEUE_CONTROL_COLUMNS} FROM queues ORDER BY name"
UPSERT_QUEUE_RATE = (
    "INSERT INTO queues(name, concurrency, paused, updated_at, rate_count, rate_period, tokens, refilled_at) "
    "VALUES (?, NULL, 0, ?, ?, ?, NULL, NULL) ON CONFLICT(name) DO UPDATE SET rate_count=excluded.rate_count, "
    "rate_period=excluded.rate_period, tokens=NULL, refilled_at=NULL, updated_at=excluded.updated_at"
)
UPSERT_PARTITION_LIMIT = (
    "INSERT INTO queues(name, concurrency, paused, updated_at, partition_concurrency) VALUES (?, NULL, 0, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET partition_concurrency=excluded.partition_concurrency, updated_at=excluded.updated_at"
)
# Per-partition counts of a queue's unfinished jobs, the largest first (the dashboard's top N).
PARTITION_COUNTS = (
    "SELECT partition_key, state, count(*) FROM jobs WHERE queue=? AND state IN ('queued','claimed','running') "
    "AND partition_key IS NOT NULL GROUP BY partition_key, state"
)


# -- reads, groups, supervisors and schedules (jobq/store/sql_admin.py) ----------------------
JOB_DEPENDENCIES = "SELECT depends_on FROM job_deps WHERE job_id=? ORDER BY position"
JOB_ERRORS = "SELECT attempt, error, at FROM job_errors WHERE job_id=? ORDER BY attempt"
JOB_RESULT = "SELECT id, state, result, error FROM jobs WHERE id=?"
COUNT_JOBS = "SELECT count(*) FROM jobs"
JOB_OUTPUT = "SELECT output FROM job_output WHERE job_id=?"
GROUP_ROW = "SELECT size, sealed, created_at, updated_at FROM job_groups WHERE id=?"
GROUP_EXISTS = "SELECT 1 FROM job_groups WHERE id=?"
GROUP_JOB_IDS = "SELECT id FROM jobs WHERE group_id=? ORDER BY group_index"
GROUP_RESULTS = "SELECT id, state, result, error FROM jobs WHERE group_id=? ORDER BY group_index"
GROUP_COUNTS = "SELECT state, count(*) FROM jobs WHERE group_id=? GROUP BY state"
UNREGISTER_SUPERVISOR = "DELETE FROM supervisors WHERE id=?"
SUPERVISORS = f"SELECT {SUPERVISOR_COLUMNS} FROM supervisors ORDER BY started_at"
ANY_STALE_SUPERVISOR = "SELECT 1 FROM supervisors WHERE heartbeat_at<? LIMIT 1"
PRUNE_SUPERVISORS = "DELETE FROM supervisors WHERE heartbeat_at<? RETURNING id"
SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
ANY_SCHEDULE_DUE = "SELECT 1 FROM schedules WHERE next_run_at<=? LIMIT 1"
DUE_SCHEDULES = "SELECT " + SCHEDULE_COLUMNS + " FROM schedules WHERE next_run_at<=?{lock}"
ADVANCE_SCHEDULE = "UPDATE schedules SET next_run_at=?, last_run_at=? WHERE name=?"
UPSERT_SCHEDULE = (
    "INSERT INTO schedules(name, target, args, kwargs, queue, cron, every, next_run_at) VALUES (?,?,?,?,?,?,?,?) "
    "ON CONFLICT(name) DO UPDATE SET target=excluded.target, args=excluded.args, kwargs=excluded.kwargs, "
    "queue=excluded.queue, cron=excluded.cron, every=excluded.every, next_run_at=excluded.next_run_at "
    "WHERE schedules.target <> excluded.target OR schedules.args <> excluded.args "
    "OR schedules.kwargs <> excluded.kwargs OR schedules.queue <> excluded.queue "
    "OR coalesce(schedules.cron, '') <> coalesce(excluded.cron, '') "
    "OR coalesce(schedules.every, -1) <> coalesce(excluded.every, -1)"
)
DELETE_ROWS = "DELETE FROM {table} WHERE {column} IN ({marks})"
JOBS_WHERE = f"SELECT {JOB_COLUMNS} FROM jobs {{where}}"
STATES_OF = "SELECT id, state FROM jobs WHERE id IN ({marks})"
UNSTARTED_AMONG = "SELECT id, queue, state FROM jobs WHERE id IN ({marks}) AND state IN ('waiting','queued','scheduled'){lock}"


def queue_filter(queues: Sequence[str] | None) -> tuple[str, tuple[Any, ...]]:
    """The ``AND queue IN (...)`` clause (and its parameters) for a supervisor's queues."""
    if not queues:
        return "", ()
    return f"AND queue IN ({marks(len(queues))})", tuple(queues)


def marks(n: int) -> str:
    """``?,?,...`` for ``n`` parameters."""
    return ",".join("?" * n)


def fixed_chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """Slices of a few fixed sizes only (:data:`FINISH_CHUNKS`): each size is one SQL text, so
    the connection's statement cache (and a worker's memory) stays small whatever the batch sizes."""
    start = 0
    for size in FINISH_CHUNKS:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size


def slices(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
