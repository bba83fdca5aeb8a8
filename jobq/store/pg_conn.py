"""A psycopg connection as the PostgreSQL store uses it: the shared SQL (``?`` placeholders)
run unchanged, one-shot statements on a kept cursor, and the plain ``q.submit`` as one prepared
statement sent through libpq directly (issue 15: a single submit is one round trip, and its
client CPU is most of what it costs beyond the server's commit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .queries import JOB_INSERT_COLUMNS

_SQL_CACHE: dict[str, str] = {}


def translate_sql(sql: str) -> str:
    """The shared SQL in psycopg's placeholders (``%s``)."""
    out = _SQL_CACHE.get(sql)
    if out is None:
        out = _SQL_CACHE[sql] = sql.replace("%", "%%").replace("?", "%s")
    return out


# -- one job and its wake-up in one statement ---------------------------------------------------
# In autocommit the statement is its transaction, so the NOTIFY is sent when, and only when,
# the row commits.
_INSERT_COLUMNS = [c.strip() for c in JOB_INSERT_COLUMNS.split(",")]
_ONE_INSERT: dict[tuple[int, ...], tuple[str, bytes, bytes]] = {}


def set_columns(row: Sequence[Any]) -> tuple[int, ...]:
    """The positions in ``row`` (a row of INSERT_JOB) of the columns the job sets (not NULL)."""
    return tuple(i for i, value in enumerate(row) if value is not None)


def one_insert(present: tuple[int, ...]) -> tuple[str, bytes, bytes]:
    """The one-job insert with its NOTIFY, naming only the columns at ``present`` (positions in
    a row of INSERT_JOB; the others take their default, NULL: a default job sets 14 of 23):
    (the statement with ``?`` placeholders, its prepared statement's name, its text with
    ``$n`` placeholders). The NOTIFY's channel is the last parameter."""
    statement = _ONE_INSERT.get(present)
    if statement is None:
        columns = ", ".join(_INSERT_COLUMNS[i] for i in present)
        marks = [f"${n}" for n in range(1, len(present) + 2)]
        text = f"WITH j AS (INSERT INTO jobs({columns}) VALUES ({{}}) RETURNING id) SELECT id, pg_notify({{}}, '') FROM j"
        sql = text.format(", ".join(["?"] * len(present)), "?")
        dollar = text.format(", ".join(marks[:-1]), marks[-1])
        name = f"jobq_insert_{len(_ONE_INSERT)}".encode()
        statement = _ONE_INSERT[present] = (sql, name, dollar.encode())
    return statement


def _text(value: Any, encoding: str) -> bytes:
    if isinstance(value, str):
        return value.encode(encoding)
    return str(int(value) if isinstance(value, bool) else value).encode()


class Conn:
    """A psycopg connection (``raw``, autocommit) that runs the shared SQL unchanged."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._one_shot: Any = None  # the cursor of fetch_all, made once
        self._prepared: set[bytes] = set()  # names of the one-job inserts prepared on it

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.raw.cursor()
        cur.execute(translate_sql(sql), tuple(params))
        return cur

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement, read whole on a cursor kept for that (a cursor made for
        each call cost a single submit about 15 us of client CPU)."""
        cur = self._one_shot
        if cur is None or cur.closed:
            cur = self._one_shot = self.raw.cursor()
        cur.execute(translate_sql(sql), params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(translate_sql(sql), rows)
        return cur

    def insert_one(self, row: Sequence[Any], channel: str) -> int | None:
        """Insert one job (a row of INSERT_JOB) and notify ``channel``, in one round trip, through
        libpq's prepared statement (psycopg's cursor costs about 40 us of client CPU more a
        submit). Returns its id, or None when the statement failed (an error rolls it back)
        or could not be sent: the caller runs it through psycopg (:meth:`fetch_all`), which
        raises the error, or on a fresh connection inserts the job (as psycopg's path does
        after a lost connection)."""
        from psycopg import pq

        present = set_columns(row)
        _, name, text = one_insert(present)
        pgconn = self.raw.pgconn
        if self.raw.closed or pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return None
        if name not in self._prepared:
            if pgconn.prepare(name, text).status != pq.ExecStatus.COMMAND_OK:
                return None
            self._prepared.add(name)
        encoding = self.raw.info.encoding
        # Text parameters, typed by the server from the columns: str() of an int or a float
        # is its exact value (a float's shortest repr reads back as the same double).
        params = [_text(row[i], encoding) for i in present]
        params.append(channel.encode(encoding))
        result = pgconn.exec_prepared(name, params)
        if result.status != pq.ExecStatus.TUPLES_OK or result.ntuples != 1:
            self._prepared.discard(name)  # gone (DEALLOCATE ALL, a new session)? prepared again next time
            return None
        return int(result.get_value(0, 0))
