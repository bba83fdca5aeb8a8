"""The PostgreSQL side of ``scripts/hosts.py``: the run's schema and role, URLs through a
host's forwarder, a look at who blocks whom, and the removal of a crashed run's schemas and
roles (``jobq_hosts_*``).

The role: the hosts connect as a role made for the run, ``jobq_hosts_<hex>``, with
``idle_in_transaction_session_timeout`` set on it (``--session-timeout``). Without it, a host
whose link is cut in the middle of a transaction keeps that transaction -- and its row locks
-- open on the server until the link returns, and every other supervisor's take-back of
expired leases waits behind those locks (jobq sets no such timeout itself: see the README).
The role and everything it owns are dropped at the end."""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DB = os.environ.get("JOBQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = "jobq_hosts_"


def _connect(url: str) -> Any:
    import psycopg

    from jobq.store.postgres import split_url

    return psycopg.connect(split_url(url)[0], autocommit=True, connect_timeout=5)


def _with(url: str, user: str | None = None, address: tuple[str, int] | None = None, schema: str | None = None) -> str:
    parts = urlsplit(url)
    creds = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if user is not None:
        creds = user
    host = parts.netloc.rsplit("@", 1)[-1]
    if address is not None:
        host = f"{address[0]}:{address[1]}"
    query = parts.query
    if schema is not None:
        query = "&".join([*(p for p in query.split("&") if p and not p.startswith("schema=")), f"schema={schema}"])
    return urlunsplit((parts.scheme, f"{creds}@{host}" if creds else host, parts.path, query, parts.fragment))


class Database:
    """The server, the run's schema (given in ``?schema=`` or made up) and its role."""

    def __init__(self, url: str, session_timeout: float) -> None:
        self.admin_url = url
        parts = urlsplit(url)
        self.server = (parts.hostname or "127.0.0.1", parts.port or 5432)
        given = [p.split("=", 1)[1] for p in parts.query.split("&") if p.startswith("schema=")]
        self.schema = given[0] if given else f"{PREFIX}{uuid.uuid4().hex[:10]}"
        self.own_schema = not given
        self.role = f"{PREFIX}{uuid.uuid4().hex[:10]}" if session_timeout > 0 else None
        self.session_timeout = session_timeout

    def create(self) -> None:
        """Make the role (when there is one) that the hosts and this run connect as."""
        if self.role is None:
            return
        with _connect(self.admin_url) as conn:
            dbname = conn.info.dbname
            conn.execute(f'CREATE ROLE "{self.role}" LOGIN')
            conn.execute(f'GRANT CONNECT, CREATE ON DATABASE "{dbname}" TO "{self.role}"')
            ms = max(1, int(self.session_timeout * 1000))
            conn.execute(f'ALTER ROLE "{self.role}" SET idle_in_transaction_session_timeout = {ms}')

    @property
    def url(self) -> str:
        """The URL this run's queue uses (the role, the schema)."""
        return _with(self.admin_url, user=self.role, schema=self.schema)

    def url_via(self, address: str) -> str:
        """The URL a host uses: through its forwarder at ``address`` (same port)."""
        return _with(self.url, address=(address, self.server[1]))

    def drop(self) -> None:
        """Drop the schema (when this run made it up) and the role with all it owns."""
        with _connect(self.admin_url) as conn:
            if self.own_schema:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            if self.role is not None:
                _drop_role(conn, self.role)

    def blocked(self) -> list[str]:
        """Sessions of the run's database that wait for a lock, and who holds it (for the report)."""
        out = []
        with _connect(self.admin_url) as conn:
            rows = conn.execute(
                "SELECT w.pid, left(w.query, 60), b.pid, b.state, left(b.query, 60), now() - b.xact_start "
                "FROM pg_stat_activity w JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(w.pid)) "
                "WHERE w.datname = current_database()"
            ).fetchall()
        for wpid, wquery, bpid, bstate, bquery, age in rows:
            out.append(f"session {wpid} ({wquery!r}) waits for session {bpid}, {bstate} for {age} after {bquery!r}")
        return out


def _drop_role(conn: Any, role: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        conn.execute(f'DROP OWNED BY "{role}" CASCADE')
        conn.execute(f'DROP ROLE "{role}"')


def drop_leftovers(url: str) -> None:
    """Drop every schema and role a crashed run left (``jobq_hosts_*``)."""
    with _connect(url) as conn:
        for role in [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (PREFIX,))]:
            _drop_role(conn, role)
        for schema in [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (PREFIX,))]:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
