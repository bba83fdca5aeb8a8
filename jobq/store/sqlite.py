"""The SQLite store: one file, WAL, ``BEGIN IMMEDIATE`` for every write, fenced finishes."""

from __future__ import annotations

import operator
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.codec import loads
from ..core.errors import StoreBusy, StoreError, ValidationError
from . import queries as Q
from .base import Submitted
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .queries import INSERT_JOB, JOB_INSERT_COLUMNS, ROW_QUEUE, ROW_STATE
from .sql import SQLStore
from .transitions import Moves

if TYPE_CHECKING:
    from ..core.spec import JobSpec

T = TypeVar("T")

# A connection inherited across fork must never be closed (nor used) by the child: closing
# it could disturb the parent's locks. Children park them here for the life of the process.
_INHERITED: list[sqlite3.Connection] = []
_ARGS_OF_CLAIMED = operator.itemgetter(2)  # the args column of a CLAIM row


AUTOCHECKPOINT_PAGES = 10000
# A waiting Job.join looks whether another connection committed every COMMIT_POLL_SECONDS
# (at the least) in its waits of up to COMMIT_POLL_UNTIL_SECONDS, the first few ms of a join,
# when most jobs finish; a longer wait sleeps (looking there cost a second-long join 3-4% of
# a core).
COMMIT_POLL_SECONDS = 0.0001
COMMIT_POLL_UNTIL_SECONDS = 0.001

# The one-job submit: its count and its row, two statements in one short transaction.
_COUNT_ONE = "INSERT INTO job_counts(queue, state, n) VALUES (?, ?, 1) ON CONFLICT(queue, state) DO UPDATE SET n = n + 1"
_INSERT_COLUMNS = JOB_INSERT_COLUMNS.split(", ")
_INSERT_BY_COLUMNS: dict[tuple[int, ...], str] = {}


def _insert_without_nulls(row: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """The insert of one row that binds no None: the sqlite3 module looks up an adapter for
    every None it binds (a tenth of a plain submit); a column left out is NULL anyway."""
    present = tuple(i for i, value in enumerate(row) if value is not None)
    sql = _INSERT_BY_COLUMNS.get(present)
    if sql is None:
        columns = ", ".join(_INSERT_COLUMNS[i] for i in present)
        sql = _INSERT_BY_COLUMNS[present] = f"INSERT INTO jobs({columns}) VALUES ({', '.join('?' * len(present))}) RETURNING id"
    return sql, [row[i] for i in present]


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteStore(SQLStore):
    """The default store: one SQLite file (created with its schema when missing)."""

    #: whether the last claim's jobs had small arguments (see :meth:`_claim_rows`)
    _small_claimed_args = True

    #: waits of :meth:`wait_for_commit` up to this long end early on another's commit
    commit_poll_until_seconds = COMMIT_POLL_UNTIL_SECONDS

    succeed_sees_dependents = True  # BEGIN IMMEDIATE: no dependent commits while we write

    def __init__(self, path: str, busy_timeout_seconds: float = 60.0, durability: str = "normal") -> None:
        # durability "full": the WAL is synced at every commit (survives a power loss).
        self.synchronous = "FULL" if durability == "full" else "NORMAL"
        if path.startswith("sqlite:///"):  # sqlite:///relative/path, sqlite:////absolute/path
            path = path[len("sqlite:///") :]
        self.path = os.path.abspath(os.path.expanduser(path))
        self.url = self.path
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StoreError(f"{self.path}: directory {directory} does not exist")
        self._migrate()

    # -- connections ----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "busy_timeout_seconds": self.busy_timeout_seconds, "synchronous": self.synchronous}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.synchronous = state.get("synchronous", "NORMAL")
        self.path = state["path"]
        self.url = self.path
        self.busy_timeout_seconds = state["busy_timeout_seconds"]
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:
            _INHERITED.append(conn)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_seconds, check_same_thread=False)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")  # may wait: the schema is read here
            conn.execute("PRAGMA foreign_keys = ON")
            # From here on SQLite's own busy handler, which sleeps a millisecond or more at
            # a time, is off: writers hold the lock for far less, and _write retries sooner.
            conn.execute("PRAGMA busy_timeout = 0")
            # Whoever commits past this many WAL pages copies them back and syncs. With a
            # supervisor running, its checkpointer keeps the WAL far shorter, so no commit on
            # the job path pays for that; this is the safety net when none runs.
            conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        local.conn = conn
        local.pid = os.getpid()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.__dict__.clear()  # this thread's connection only: other threads close their own

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        low = text.lower()
        if isinstance(exc, StoreError):
            return exc
        if _is_busy(exc):
            return StoreBusy(f"{self.path}: database stayed locked for over {self.busy_timeout_seconds:g}s")
        if "not a database" in low or "malformed" in low:
            return StoreError(f"{self.path}: not a SQLite database, or corrupt ({text})")
        if "readonly" in low or "read-only" in low:
            return StoreError(f"{self.path}: database is read-only ({text})")
        if "full" in low:
            return StoreError(f"{self.path}: disk is full ({text})")
        if "unable to open" in low:
            return StoreError(f"{self.path}: cannot open the database file ({text})")
        return StoreError(f"{self.path}: {text}")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying on busy with backoff."""
        conn = self._conn()
        deadline = time.monotonic() + self.busy_timeout_seconds
        delay = 0.00005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 1.5, 0.01)
                    continue
                raise self._translate(exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn()
        deadline = time.monotonic() + self.busy_timeout_seconds
        while True:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.001)
                    continue
                raise self._translate(exc) from None

    def _migrate(self) -> None:
        conn = self._conn()
        deadline = time.monotonic() + self.busy_timeout_seconds
        while True:
            try:
                # Switching to WAL needs the file to itself: wait for other first users here.
                # SQLite can answer BUSY at once for this switch, so retry it as well.
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    import sqlite_utils  # a new file only: `jobq status` starts without it

                    sqlite_utils.Database(conn).enable_wal()
                conn.execute("PRAGMA busy_timeout = 0")
                break
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.005 * (0.5 + random.random()))
                    continue
                raise self._translate(exc) from None

        def apply(conn: sqlite3.Connection) -> None:
            import sqlite_utils

            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = set(sqlite_utils.Database(conn).table_names()) - {"sqlite_sequence"}
            if version == 0 and tables:
                raise StoreError(f"{self.path}: not a jobq database (it has tables {sorted(tables)[:3]} and no jobq schema)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this jobq ({SCHEMA_VERSION}); upgrade jobq"
                )
            for target_version, statements in MIGRATIONS:
                if target_version > version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(target_version)}")

        version = self._read("PRAGMA user_version")[0][0]
        if version != SCHEMA_VERSION:
            self._write(apply)

    @contextmanager
    def _caller_transaction(self, conn: Any) -> Iterator[sqlite3.Connection]:
        raw = getattr(conn, "conn", conn)  # a sqlite-utils Database holds its connection as .conn
        if not isinstance(raw, sqlite3.Connection):
            raise ValidationError("conn", f"expected a sqlite3.Connection or a sqlite-utils Database on {self.path}")
        try:
            files = {name: file for _, name, file in raw.execute("PRAGMA database_list").fetchall()}
        except sqlite3.Error as exc:
            raise ValidationError("conn", f"cannot use the connection: {exc}") from None
        main = files.get("main") or ""
        if not main or not os.path.exists(main) or not os.path.samefile(main, self.path):
            raise ValidationError("conn", f"the connection is on {main or 'an in-memory database'}, not on {self.path}")
        if not raw.in_transaction:
            if raw.isolation_level is None or getattr(raw, "autocommit", False) is True:
                raise ValidationError(
                    "conn", "the connection is in autocommit mode: open a transaction (BEGIN) for the job to join it"
                )
            # The sqlite3 module's default mode: it would open this transaction at our first
            # insert; we open it before the first read, as it would, and leave it to the caller.
            raw.execute(f"BEGIN {raw.isolation_level}")
        try:
            raw.execute("SAVEPOINT jobq_submit")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        try:
            yield raw
        except BaseException as exc:
            if raw.in_transaction:  # our savepoint only: the caller's transaction goes on
                raw.execute("ROLLBACK TO jobq_submit")
                raw.execute("RELEASE jobq_submit")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from None
            raise
        try:
            raw.execute("RELEASE jobq_submit")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    def submit(
        self, specs: Iterable[JobSpec], now: float, group: bool = False, conn: Any = None
    ) -> tuple[list[Submitted], str | None]:
        specs = specs if isinstance(specs, list) else list(specs)
        if conn is None and not group and len(specs) == 1:
            one = specs[0]
            if one.key is None and not one.depends_on and one.partition is None:
                # The common q.submit: no savepoint, group, key or dependency to look at.
                row = self._row(one, now, None, 0)
                sql, params = _insert_without_nulls(row)

                def insert(c: sqlite3.Connection) -> int:
                    c.execute(_COUNT_ONE, (row[ROW_QUEUE], row[ROW_STATE]))
                    job_id: int = c.execute(sql, params).fetchone()[0]
                    return job_id

                return [Submitted(self._write(insert))], None
        return super().submit(specs, now, group, conn)

    def _claim_rows(self, conn: Any, picked: str, params: tuple[Any, ...]) -> list[Any]:
        *pick_params, owner, now, lease_until = params
        ids = conn.execute(Q.PICKED_IDS.format(picked=picked), pick_params).fetchone()[0]
        if ids == "[]":
            return []
        rows: list[Any]
        if ids.count(",") + 1 < Q.FEW_CLAIMED or not self._small_claimed_args:  # ids: a JSON array of numbers
            rows = conn.execute(Q.CLAIM_IDS_RETURNING, (owner, now, lease_until, ids)).fetchall()
        else:
            conn.execute(Q.CLAIM_IDS, (owner, now, lease_until, ids))
            # Strings (arguments included) come back exactly as stored; run_at, only sorted
            # on, as SQLite's JSON writes a real number (15 significant digits).
            rows = loads(conn.execute(Q.CLAIMED_ROWS, (ids,)).fetchone()[0])
        # The JSON array pays to escape and parse each argument text: past about 256 bytes of
        # arguments a job (a chunk of a map holds kilobytes), more than the per-row fetch it
        # saves. The next claim takes the path these rows' size calls for.
        self._small_claimed_args = sum(map(len, map(_ARGS_OF_CLAIMED, rows))) < Q.JSON_CLAIM_MAX_ARGS_BYTES * len(rows)
        return rows

    def _insert_rows(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> Sequence[int]:
        self._count_inserted(conn, Counter((row[ROW_QUEUE], row[ROW_STATE]) for row in rows))
        if len(rows) == 1:
            return [conn.execute(INSERT_JOB + " RETURNING id", rows[0]).fetchone()[0]]
        conn.executemany(INSERT_JOB, rows)
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        # One writer holds the lock and ids autoincrement: the batch's ids are consecutive.
        return range(last - len(rows) + 1, last + 1)

    def _insert_args(
        self, conn: sqlite3.Connection, template: list[Any], array: str, count: int, first_index: int | None
    ) -> range:
        # One statement over a JSON array: SQLite unpacks it in C, far faster than binding
        # nineteen parameters per row from Python.
        self._count_inserted(conn, Counter({(template[ROW_QUEUE], template[ROW_STATE]): count}))
        conn.execute(
            f"INSERT INTO jobs({JOB_INSERT_COLUMNS}) SELECT ?, ?, value, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "CASE WHEN ? IS NULL THEN NULL ELSE ? + key END, ?, ?, ?, ?, ?, ? FROM json_each(?) ORDER BY key",
            (*template[0:2], *template[3:16], first_index, first_index, *template[17:23], array),
        )
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return range(last - count + 1, last + 1)

    @staticmethod
    def _count_inserted(conn: sqlite3.Connection, by_queue_state: Counter[tuple[str, str]]) -> None:
        # Every insert goes through _insert_rows or _insert_args, which count here, once per
        # (queue, state): a per-row trigger cost a quarter of a bulk submit.
        conn.executemany(
            "INSERT INTO job_counts(queue, state, n) VALUES (?, ?, ?) ON CONFLICT(queue, state) DO UPDATE SET n = n + excluded.n",
            [(queue, state, n) for (queue, state), n in by_queue_state.items()],
        )

    def _count_moves(self, conn: sqlite3.Connection, moves: Moves) -> None:
        # Every transition reports its moves here, once per (queue, old, new) and
        # transaction; a new state of "" is a deleted row.
        down: Counter[tuple[str, str]] = Counter()
        up: Counter[tuple[str, str]] = Counter()
        for (queue, old, new), n in moves.items():
            if n and old != new:
                down[(queue, old)] += n
                if new:
                    up[(queue, new)] += n
        for (queue, state), n in down.items():
            conn.execute("UPDATE job_counts SET n = n - ? WHERE queue = ? AND state = ?", (n, queue, state))
        if up:
            self._count_inserted(conn, up)

    def wait_for_commit(self, timeout: float) -> None:
        # PRAGMA data_version changes when another connection commits: a read of the WAL's
        # shared memory (about 2 µs), looked at a few times within the wait.
        if timeout > self.commit_poll_until_seconds:
            time.sleep(timeout)
            return
        conn = self._conn()
        deadline = time.monotonic() + timeout
        step = max(COMMIT_POLL_SECONDS, timeout / 8)
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(left, step))
                if conn.execute("PRAGMA data_version").fetchone()[0] != version:
                    return
        except sqlite3.Error:
            time.sleep(max(0.0, deadline - time.monotonic()))

    def checkpoint(self) -> None:
        # PASSIVE: copies what it can without blocking writers or readers; the fsyncs happen
        # here, in the supervisor's checkpointer process, not in a commit on the job path.
        try:
            self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # busy or the file went away: the next round (or any committer) catches up

    def counts(self) -> dict[str, dict[str, int]]:
        # The counts table books held jobs (claimed or running) as running, so a worker's start
        # costs no count update; the claimed ones (a few hundred at most) are told apart here.
        out: dict[str, dict[str, int]] = {}
        for queue, state, n in self._read(Q.COUNTS):
            out.setdefault(queue, {})[state] = n
        for queue, n in self._read(Q.CLAIMED_BY_QUEUE):
            states = out.setdefault(queue, {})
            states["claimed"] = n
            states["running"] = states.get("running", 0) - n
            if not states["running"]:
                del states["running"]
        return out
