"""The PostgreSQL store: the same job semantics as SQLite (:mod:`.sql`), for supervisors on
many hosts. Claims lock rows with ``FOR UPDATE SKIP LOCKED``; LISTEN/NOTIFY wakes idle
supervisors and waiting joins, with polling as the fallback.

``postgresql://user@host:port/dbname?schema=NAME`` (schema ``jobq`` by default)."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.errors import StoreBusy, StoreError, ValidationError
from .base import Submitted
from .migrations import PG_MIGRATIONS, PG_SCHEMA_VERSION
from .pg_conn import Conn, one_insert, set_columns, translate_sql
from .queries import INSERT_JOB, JOB_INSERT_COLUMNS
from .sql import SQLStore

if TYPE_CHECKING:
    from ..core.spec import JobSpec

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - exercised by a test in a subprocess
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
INSTALL_HINT = "the PostgreSQL backend needs psycopg 3: pip install 'jobq[postgres]'"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INHERITED: list[Any] = []


def split_url(url: str) -> tuple[str, str]:
    """(connection URL without jobq's own parameters, schema name)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = "jobq"
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _SCHEMA_NAME.match(schema):
        raise StoreError(f"bad schema name {schema!r}: lower-case letters, digits and _")
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment)), schema


class PostgresStore(SQLStore):
    """jobq's tables in one schema of a PostgreSQL database."""

    claim_lock = " FOR UPDATE SKIP LOCKED"
    row_lock = " FOR UPDATE"
    like = "ILIKE"
    share_lock = " FOR SHARE"
    one_statement_steps = True

    def __init__(self, url: str, busy_timeout_seconds: float = 60.0, durability: str = "normal") -> None:
        if psycopg is None:
            raise StoreError(INSTALL_HINT)
        self.durability = durability
        self.conninfo, self.schema = split_url(url)
        self.url = url
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._channel_prefix = f"jobq_{self.schema}"
        self._migrate()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "busy_timeout_seconds": self.busy_timeout_seconds, "durability": self.durability}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["busy_timeout_seconds"], state.get("durability", "normal"))  # type: ignore[misc]

    # -- connections ----------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            options = f"-c search_path={self.schema}"
            if self.durability == "full":  # whatever the server's default: every commit waits for the WAL flush
                options += " -c synchronous_commit=on"
            # Keepalives and a TCP user timeout: a connection whose link was cut fails within
            # seconds instead of hanging on retransmissions for minutes.
            raw = psycopg.connect(
                self.conninfo,
                autocommit=True,
                options=options,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=10_000,
            )
        except psycopg.Error as exc:
            raise StoreError(f"{self._where()}: cannot connect: {str(exc).strip().splitlines()[0]}") from None
        return raw

    def _where(self) -> str:
        parts = urlsplit(self.conninfo)
        return f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path} (schema {self.schema})"

    def _conn(self) -> Conn:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid() and not conn.raw.closed:
            return conn
        if conn is not None and local.pid != os.getpid():
            _INHERITED.append(conn)  # never close a parent's connection in a child
        local.conn = Conn(self._connect())
        local.pid = os.getpid()
        return local.conn

    def close(self) -> None:
        for name in ("conn", "listener"):
            conn = getattr(self._local, name, None)
            if conn is not None and self._local.pid == os.getpid():
                (conn.raw if isinstance(conn, Conn) else conn).close()
        self._local.__dict__.clear()  # this thread's connections only: other threads close their own

    def _translate(self, exc: Exception) -> StoreError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return StoreError(f"{self._where()}: database is read-only ({text})")
        if isinstance(exc, pg_errors.DiskFull):
            return StoreError(f"{self._where()}: disk is full ({text})")
        return StoreError(f"{self._where()}: {text}")

    def _write(self, fn: Callable[[Any], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout_seconds
        delay = 0.002
        reconnected = False
        while True:
            conn = self._conn()
            try:
                with conn.raw.transaction():
                    return fn(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable):
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"{self._where()}: write conflicts for over {self.busy_timeout_seconds:g}s") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)
            except psycopg.OperationalError as exc:
                if conn.raw.closed and not reconnected:
                    reconnected = True  # the server went away: one fresh connection, then give up
                    continue
                raise self._translate(exc) from None
            except psycopg.Error as exc:
                raise self._translate(exc) from None

    def _statement(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One write that is a transaction by itself (autocommit): one round trip, where
        :meth:`_write` spends three more on BEGIN, a NOTIFY and COMMIT."""
        reconnected = False
        while True:
            conn = self._conn()
            try:
                return conn.fetch_all(sql, params)
            except psycopg.OperationalError as exc:
                if conn.raw.closed and not reconnected:
                    reconnected = True  # as _write: one fresh connection, then give up
                    continue
                raise self._translate(exc) from None
            except psycopg.Error as exc:
                raise self._translate(exc) from None

    def submit(
        self, specs: Iterable[JobSpec], now: float, group: bool = False, conn: Any = None
    ) -> tuple[list[Submitted], str | None]:
        specs = list(specs)
        if conn is not None:  # the caller's transaction: the shared path, in a savepoint
            return super().submit(specs, now, group, conn)
        one = specs[0] if len(specs) == 1 and not group else None
        if one is not None and one.key is None and not one.depends_on and one.partition is None:
            row = self._row(specs[0], now, None, 0)
            channel = f"{self._channel_prefix}_submitted"
            job_id = self._conn().insert_one(row, channel)
            if job_id is None:  # failed, nothing inserted: through psycopg, for its error (or a fresh connection)
                present = set_columns(row)
                sql = one_insert(present)[0]
                ((job_id, _),) = self._statement(sql, [*map(row.__getitem__, present), channel])
            return [Submitted(job_id)], None
        return super().submit(specs, now, group)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        for attempt in range(2):
            conn = self._conn()
            try:
                return conn.fetch_all(sql, params)
            except psycopg.OperationalError as exc:
                if conn.raw.closed and attempt == 0:
                    continue
                raise self._translate(exc) from None
            except psycopg.Error as exc:
                raise self._translate(exc) from None
        raise AssertionError("unreachable")

    def _migrate(self) -> None:
        raw = self._connect()
        try:
            with raw.transaction():
                # Concurrent first uses take turns; the lock ends with the transaction.
                raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"jobq-migrate-{self.schema}",))
                raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                tables = {
                    r[0]
                    for r in raw.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (self.schema,))
                }
                if tables and "schema_version" not in tables:
                    raise StoreError(f"{self._where()}: schema {self.schema} holds tables that are not jobq's")
                raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = raw.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] or 0
                if version > PG_SCHEMA_VERSION:
                    raise StoreError(f"{self._where()}: schema version {version} is newer than this jobq; upgrade jobq")
                for target_version, statements in PG_MIGRATIONS:
                    if target_version > version:
                        for statement in statements:
                            raw.execute(statement)
                        raw.execute("INSERT INTO schema_version(version) VALUES (%s)", (target_version,))
        except psycopg.Error as exc:
            raise self._translate(exc) from None
        finally:
            raw.close()

    def _identity(self, conn: Any) -> tuple[Any, ...]:
        """What tells one database of one server from another, as seen on ``conn``."""
        return tuple(conn.execute("SELECT current_database(), pg_postmaster_start_time(), inet_server_port()").fetchone())

    @contextmanager
    def _caller_transaction(self, conn: Any) -> Iterator[Conn]:
        if psycopg is None or not isinstance(conn, psycopg.Connection):
            raise ValidationError("conn", f"expected a psycopg connection to {self._where()}")
        if conn.autocommit:
            raise ValidationError("conn", "the connection is in autocommit mode: the job would not wait for your commit")
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            raise ValidationError("conn", "the connection's transaction has failed: roll it back first")
        theirs = Conn(conn)
        try:
            mine = getattr(self, "_identity_cache", None)
            if mine is None:
                mine = self._identity_cache = self._identity(self._conn())
            # Our first statement opens the caller's transaction if none is open yet (psycopg
            # does so for any statement on a connection that is not in autocommit mode).
            if self._identity(theirs) != mine:
                raise ValidationError("conn", f"the connection is on another database than {self._where()}")
            found = theirs.execute("SELECT to_regclass(?)", (f"{self.schema}.jobs",)).fetchone()[0]
            if found is None:
                raise ValidationError("conn", f"the connection's database has no jobq schema {self.schema}")
            old_path = theirs.execute("SELECT current_setting('search_path')").fetchone()[0]
            theirs.execute("SAVEPOINT jobq_submit")
            theirs.execute("SELECT set_config('search_path', ?, true)", (self.schema,))
        except psycopg.Error as exc:
            raise self._translate(exc) from None
        try:
            yield theirs
        except BaseException as exc:
            try:
                theirs.execute("ROLLBACK TO SAVEPOINT jobq_submit")  # ours only: the caller's transaction goes on
                theirs.execute("RELEASE SAVEPOINT jobq_submit")
            except psycopg.Error:
                pass
            if isinstance(exc, psycopg.Error):
                raise self._translate(exc) from None
            raise
        try:
            theirs.execute("SELECT set_config('search_path', ?, true)", (old_path,))
            theirs.execute("RELEASE SAVEPOINT jobq_submit")
        except psycopg.Error as exc:
            raise self._translate(exc) from None

    # -- backend specifics ----------------------------------------------------------
    def _insert_rows(self, conn: Conn, rows: list[tuple[Any, ...]]) -> list[int]:
        cur = conn.raw.cursor()
        cur.executemany(translate_sql(INSERT_JOB + " RETURNING id"), rows, returning=True)
        ids = []
        while True:
            ids.append(cur.fetchone()[0])
            if not cur.nextset():
                return ids

    def _insert_args(self, conn: Conn, template: list[Any], array: str, count: int, first_index: int | None) -> list[int]:
        rows = conn.execute(
            f"INSERT INTO jobs({JOB_INSERT_COLUMNS}) SELECT CAST(? AS TEXT), CAST(? AS TEXT), e.value::text, "
            "CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS INTEGER), "
            "CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION), "
            "CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION), "
            "CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS INTEGER) + CAST(e.ord AS INTEGER) - 1, "
            "CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), "
            "CAST(? AS INTEGER) "
            "FROM json_array_elements(CAST(? AS JSON)) WITH ORDINALITY AS e(value, ord) ORDER BY e.ord RETURNING id",
            (*template[0:2], *template[3:16], first_index, *template[17:23], array),
        ).fetchall()
        # Identity values are drawn in the SELECT's order: ascending ids follow the input.
        return sorted(r[0] for r in rows)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for queue, state, n in self._read("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"):
            out.setdefault(queue, {})[state] = n
        return out

    def tune_for_runner(self, lease_seconds: float | None = None) -> None:
        # The writes of supervisors and workers (claims, results, heartbeats) need not wait
        # for the WAL flush: one lost to a server crash only hands work back to be done
        # again (at least once). Submits, on other connections, stay fully durable. With
        # durability "full" every connection keeps synchronous_commit=on (set at connect).
        conn = self._conn()
        if self.durability != "full":
            conn.execute("SET synchronous_commit = off")
        if lease_seconds:
            # A runner's transactions last milliseconds. One left open (its host's link cut
            # mid-transaction) would hold row locks that other supervisors' take-backs wait
            # on: the server ends such a session well before the lease runs out.
            conn.execute(f"SET idle_in_transaction_session_timeout = {max(1000, int(lease_seconds * 500))}")

    def _serialize_limited_claims(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"jobq-limits-{self.schema}",))

    def _lock_key(self, conn: Any, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"jobq-key-{self.schema}-{key}",))

    def _notify(self, conn: Any, channel: str) -> None:
        conn.execute("SELECT pg_notify(?, '')", (f"{self._channel_prefix}_{channel}",))

    def _listener(self, channel: str) -> Any:
        local = self._local
        listener = getattr(local, "listener", None)
        if listener is None or getattr(local, "listener_pid", None) != os.getpid() or listener.closed:
            listener = local.listener = self._connect()
            local.listener_pid = os.getpid()
            local.channels = set()
        if channel not in local.channels:
            listener.execute(f"LISTEN {self._channel_prefix}_{channel}")
            local.channels.add(channel)
        return listener

    def wait_for_change(self, timeout: float) -> None:
        try:
            listener = self._listener("finished")
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error:
            time.sleep(timeout)

    def wakeup_fileno(self) -> int | None:
        try:
            return self._listener("submitted").fileno()
        except (psycopg.Error, StoreError):
            return None

    def drain_wakeups(self) -> None:
        listener = getattr(self._local, "listener", None)
        if listener is not None:
            try:
                for _ in listener.notifies(timeout=0):
                    pass
            except psycopg.Error:
                pass
